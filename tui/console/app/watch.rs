//! What the watch's frames do to the app: the snapshot rebuilds the picture, each event
//! updates the nodes, the zone map or the browsed rows and goes to the event log; a lost
//! watch is reported while the run loop reconnects.

use cloudmesh::admin::{Event, EventFrame, NodeInfo, Response, Snapshot};

use super::{App, Conn};
use crate::console::event_log::LogKind;
use crate::console::nodes::{self, NodeRow};
use crate::console::requests::{Action, PollClock};
use crate::console::text::first_line;

impl App {
    /// Takes a frame of the watch. Returns an action when the frame needs one (a browse
    /// that the daemon refused goes back to no key).
    pub fn apply(&mut self, frame: Response) -> Option<Action> {
        match frame {
            Response::Snapshot(s) => self.snapshot(s),
            Response::Event(e) => self.event(e),
            Response::Error(e) => {
                self.say(format!("watch: {e}"), true);
                return self.keys.watch_refused();
            }
            other => tracing::debug!(?other, "unexpected frame on the watch"),
        }
        None
    }

    /// The watch ended or could not be opened; the run loop retries.
    pub fn watch_lost(&mut self, reason: &str) {
        let reason = first_line(reason).to_owned();
        if self.conn != Conn::Connecting && !matches!(self.conn, Conn::Down { .. }) {
            self.log_local(
                LogKind::Connection,
                format!("disconnected from {}: {reason}", self.socket),
            );
        }
        self.conn = Conn::Down { reason };
        self.overview.connection_lost();
        self.keys.connection_lost();
        self.nodes_poll = PollClock::default();
    }

    fn snapshot(&mut self, s: Snapshot) {
        match std::mem::replace(&mut self.conn, Conn::Live) {
            Conn::Down { .. } => {
                let text = format!("reconnected to {}", self.socket);
                self.say(text.clone(), false);
                self.log_local(LogKind::Connection, text);
            }
            Conn::Connecting => self.say(
                format!("connected to {} ({})", self.socket, s.status.node.name),
                false,
            ),
            Conn::Live => {}
        }
        self.local = Some(s.status.node.name.clone());
        self.replace_nodes(s.nodes);
        self.nodes_poll.last_ms = Some(self.now_ms);
        self.nodes_stale = false;
        self.zones.map = s.zones;
        self.keys.snapshot_rows(s.rows);
    }

    /// Replaces the member list, keeping each node's history and the cursor's node.
    pub(super) fn replace_nodes(&mut self, fresh: Vec<NodeInfo>) {
        self.change_nodes(|nodes| *nodes = nodes::merged(std::mem::take(nodes), fresh));
    }

    /// Changes the member list in a way the overview's filter may see (a node more, a new
    /// state), keeping the overview's cursor on its node.
    fn change_nodes(&mut self, change: impl FnOnce(&mut Vec<NodeRow>)) {
        let keep = self.overview.node_to_keep(&self.nodes);
        change(&mut self.nodes);
        self.overview.refilter_nodes(&self.nodes, keep);
    }

    fn event(&mut self, f: EventFrame) {
        let at = f.at_ms;
        match f.event {
            Event::NodeUp { node } => {
                self.log
                    .push(at, LogKind::Join, format!("{node} joined (link up)"));
                match nodes::find_mut(&mut self.nodes, &node) {
                    Some(n) => {
                        n.info.linked = true;
                        n.lost = false;
                    }
                    None => self.change_nodes(|nodes| nodes.push(NodeRow::placeholder(&node))),
                }
                // Its state and addresses come with the member list.
                self.nodes_stale = true;
            }
            Event::NodeLost { node, rows } => {
                let what = if rows == 0 {
                    String::new()
                } else {
                    format!("; {rows} of its rows gone for subscribers")
                };
                self.log
                    .push(at, LogKind::Loss, format!("{node} lost{what}"));
                if let Some(n) = nodes::find_mut(&mut self.nodes, &node) {
                    n.lost = true;
                    n.info.linked = false;
                    n.info.host = false;
                }
            }
            Event::NodeLeft { node, rows } => {
                let what = if rows == 0 {
                    String::new()
                } else {
                    format!("; {rows} of its rows gone for subscribers")
                };
                self.log
                    .push(at, LogKind::Loss, format!("{node} left the mesh{what}"));
                self.change_nodes(|nodes| nodes.retain(|n| n.info.name != node));
            }
            Event::StateChanged { node, state } => {
                self.log
                    .push(at, LogKind::Drain, format!("{node} is {state}"));
                if self.nodes.iter().any(|n| n.info.name == node) {
                    // The state column may be what the filter matches.
                    self.change_nodes(|nodes| {
                        if let Some(n) = nodes::find_mut(nodes, &node) {
                            if state != "Draining" {
                                n.drain = None;
                            }
                            n.info.state = state;
                        }
                    });
                }
            }
            Event::HostChanged { old, new } => {
                self.log
                    .push(at, LogKind::Host, format!("host changed: {old} → {new}"));
                for n in &mut self.nodes {
                    n.info.host = n.info.name == new;
                }
            }
            Event::Load(info) => match nodes::find_mut(&mut self.nodes, &info.name) {
                Some(n) => {
                    n.push_sample(info.msgs_per_sec);
                    n.lost = false;
                    n.info = info;
                }
                None => self.change_nodes(|nodes| nodes.push(NodeRow::new(info))),
            },
            Event::DrainProgress {
                node,
                moved,
                remaining,
            } => {
                self.log.push(
                    at,
                    LogKind::Drain,
                    format!("{node} draining: {moved} moved, {remaining} left"),
                );
                if let Some(n) = nodes::find_mut(&mut self.nodes, &node) {
                    n.drain = Some((moved, remaining));
                    // Fresher than its last load report.
                    n.info.clients = u32::try_from(remaining).unwrap_or(u32::MAX);
                }
            }
            Event::Migrated { client, from, to } => {
                self.log.push(
                    at,
                    LogKind::Migration,
                    format!("client {client} moved {from} → {to}"),
                );
            }
            Event::Zones(z) => {
                self.log.push(
                    at,
                    LogKind::Info,
                    format!("zone map changed ({}×{} cells)", z.width, z.height),
                );
                self.zones.map = Some(z);
            }
            Event::RowChanged(row) => self.keys.row_changed(row, self.now_ms),
            Event::RowDeleted { row, .. } => self.keys.row_deleted(&row),
            Event::Lagged { missed } => {
                self.log.push(
                    at,
                    LogKind::Info,
                    format!("the console fell behind and missed {missed} events; resyncing"),
                );
                self.say(
                    format!("missed {missed} events; a fresh snapshot follows"),
                    false,
                );
            }
        }
    }
}
