//! The run loop's requests and what they bring back: the polls due now, their answers, and
//! the outcome of the operator's actions.

use cloudmesh::admin::Response;

use super::{App, Conn};
use crate::console::event_log::LogKind;
use crate::console::requests::{Action, Poll};
use crate::console::tabs::Tab;
use crate::console::text::{first_line, plural};

/// How often the node list is asked for again. The watch keeps each node current; this only
/// drops members the mesh forgot (a lost node stays on screen, marked, until then).
const NODES_EVERY_MS: u64 = 10_000;

impl App {
    /// The questions due now; the app counts them as asked. The tab shown asks for what it
    /// shows (the clients of the selected node, the primary keys).
    pub fn due_polls(&mut self) -> Vec<Poll> {
        let now = self.now_ms;
        let mut polls = Vec::new();
        if self.conn != Conn::Live {
            return polls;
        }
        if self.nodes_poll.due(now, NODES_EVERY_MS)
            || (self.nodes_stale && !self.nodes_poll.in_flight)
        {
            self.nodes_poll.start(now);
            self.nodes_stale = false;
            polls.push(Poll::Nodes);
        }
        let shown = match self.tab {
            Tab::Overview => self.overview.due_poll(now, &self.nodes),
            Tab::Keys => self.keys.due_poll(now),
            Tab::Zones | Tab::Events => None,
        };
        polls.extend(shown);
        polls
    }

    /// The answer to a poll.
    pub fn poll_done(&mut self, poll: Poll, result: Result<Response, String>) {
        match poll {
            Poll::Nodes => {
                self.nodes_poll.in_flight = false;
                match result {
                    Ok(Response::Nodes { nodes }) => self.replace_nodes(nodes),
                    other => tracing::debug!(?other, "nodes poll"),
                }
            }
            Poll::Clients { node } => self.overview.clients_answered(node, result, &self.nodes),
            Poll::Primaries => self.keys.primaries_answered(result),
            Poll::Query { key, query } => {
                self.keys.query_answered(&key, &query, result, self.now_ms)
            }
        }
    }

    /// The outcome of an action the run loop carried out: the status line and the log say it.
    pub fn command_done(&mut self, action: &Action, result: Result<Response, String>) {
        let (text, ok) = match result {
            Ok(Response::DrainStarted { node, clients }) => (
                format!(
                    "draining {node}: {clients} client{} to move",
                    plural(clients)
                ),
                true,
            ),
            Ok(Response::Undrained { node }) => (format!("{node} is active again"), true),
            Ok(Response::Migrated { client, from, to }) => {
                self.overview.client_moved();
                (format!("moved client {client} from {from} to {to}"), true)
            }
            Ok(Response::Rebalanced { moved: Some(m) }) => (
                format!(
                    "rebalance: asked {} to move {} client{} to {}",
                    m.from,
                    m.count,
                    plural(m.count as usize),
                    m.to
                ),
                true,
            ),
            Ok(Response::Rebalanced { moved: None }) => (
                "rebalance: the mesh is within the threshold; nothing to move".to_owned(),
                true,
            ),
            Ok(Response::Error(e)) => (
                format!(
                    "{} failed: {}",
                    action.describe(),
                    first_line(&e.to_string())
                ),
                false,
            ),
            Ok(other) => (
                format!("{}: unexpected answer {other:?}", action.describe()),
                false,
            ),
            Err(e) => (
                format!("{} failed: {}", action.describe(), first_line(&e)),
                false,
            ),
        };
        self.say(text.clone(), !ok);
        self.log_local(if ok { LogKind::Action } else { LogKind::Error }, text);
    }
}
