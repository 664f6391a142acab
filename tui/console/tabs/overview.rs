//! The overview tab: the cursor over the nodes, the clients of the selected node (asked for
//! on a timer while the tab is shown), and what the operator does to them: drain, undrain,
//! rebalance, migrate. The nodes themselves are shared (the app keeps them current from the
//! watch); this tab keeps only its cursor and filter over them.

use cloudmesh::admin::{ClientInfo, Response};

use crate::console::keymap::{Intent, Scope};
use crate::console::list::ListView;
use crate::console::nodes::NodeRow;
use crate::console::popups::confirm::ConfirmPopup;
use crate::console::popups::migrate::MigratePicker;
use crate::console::popups::Popup;
use crate::console::requests::{Action, Poll, PollClock};
use crate::console::text::{first_line, plural};

use super::Reply;

/// How often the clients of the selected node are asked for, ms.
pub const CLIENTS_EVERY_MS: u64 = 1_500;

/// Which overview pane has the cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    /// The nodes table.
    Nodes,
    /// The selected node's clients.
    Clients,
}

/// The overview's own state.
#[derive(Debug)]
pub struct OverviewTab {
    /// The pane with the cursor.
    pub focus: Focus,
    /// Cursor and filter over the shared nodes.
    pub node_view: ListView,
    /// Clients of `clients_of`.
    pub clients: Vec<ClientInfo>,
    /// The node `clients` belong to.
    pub clients_of: Option<String>,
    /// Why the clients list may be stale or incomplete.
    pub clients_note: Option<String>,
    /// Cursor and filter over `clients`.
    pub client_view: ListView,
    clients_poll: PollClock,
}

impl Default for OverviewTab {
    fn default() -> OverviewTab {
        OverviewTab {
            focus: Focus::Nodes,
            node_view: ListView::default(),
            clients: Vec::new(),
            clients_of: None,
            clients_note: None,
            client_view: ListView::default(),
            clients_poll: PollClock::default(),
        }
    }
}

impl OverviewTab {
    /// The node under the nodes cursor.
    pub fn selected_node<'a>(&self, nodes: &'a [NodeRow]) -> Option<&'a NodeRow> {
        self.node_view.selected_item().and_then(|i| nodes.get(i))
    }

    /// The client under the clients cursor (only when the list is the selected node's).
    pub fn selected_client(&self, nodes: &[NodeRow]) -> Option<&ClientInfo> {
        if self.clients_of.as_deref() != self.selected_node(nodes).map(|n| n.info.name.as_str()) {
            return None;
        }
        self.client_view
            .selected_item()
            .and_then(|i| self.clients.get(i))
    }

    /// The key scopes of the focused pane, most specific first.
    pub fn scopes(&self) -> Vec<Scope> {
        match self.focus {
            Focus::Nodes => vec![Scope::Nodes, Scope::Overview, Scope::List],
            Focus::Clients => vec![Scope::Clients, Scope::Overview, Scope::List],
        }
    }

    /// The focused pane's list: what the cursor keys and `/` act on.
    pub fn list(&self) -> &ListView {
        match self.focus {
            Focus::Nodes => &self.node_view,
            Focus::Clients => &self.client_view,
        }
    }

    /// The focused pane's list, to edit its filter.
    pub fn list_mut(&mut self) -> &mut ListView {
        match self.focus {
            Focus::Nodes => &mut self.node_view,
            Focus::Clients => &mut self.client_view,
        }
    }

    /// Recomputes which items of the focused list pass its filter, keeping the cursor on
    /// its item.
    pub fn refilter(&mut self, nodes: &[NodeRow]) {
        match self.focus {
            Focus::Nodes => {
                let keep = self.node_to_keep(nodes);
                self.refilter_nodes(nodes, keep);
            }
            Focus::Clients => {
                let keep = self
                    .client_view
                    .selected_item()
                    .and_then(|i| self.clients.get(i))
                    .map(|c| c.id.clone());
                self.client_view
                    .rebuild(self.clients.iter(), client_matches, |c| {
                        Some(&c.id) == keep.as_ref()
                    });
            }
        }
    }

    /// The name of the node under the cursor, to find it again after the nodes changed.
    pub fn node_to_keep(&self, nodes: &[NodeRow]) -> Option<String> {
        self.selected_node(nodes).map(|n| n.info.name.clone())
    }

    /// Recomputes which nodes pass the filter after the nodes (or the filter) changed; the
    /// cursor goes to `keep` when it is still there, and the clients of whatever node the
    /// cursor is on now are asked for at the next tick unless it is still `keep`.
    pub fn refilter_nodes(&mut self, nodes: &[NodeRow], keep: Option<String>) {
        let kept = |name: &str| keep.as_deref() == Some(name);
        self.node_view
            .rebuild(nodes.iter(), |n, f| n.matches(f), |n| kept(&n.info.name));
        if self
            .selected_node(nodes)
            .is_none_or(|n| !kept(&n.info.name))
        {
            self.clients_poll.ask_soon();
        }
    }

    /// What a key does here.
    pub fn handle(&mut self, intent: Intent, nodes: &[NodeRow]) -> Option<Reply> {
        match intent {
            Intent::Open => {
                if self.focus == Focus::Nodes && self.selected_node(nodes).is_some() {
                    self.focus = Focus::Clients;
                }
                None
            }
            Intent::Back => {
                if !self.list().filter.is_empty() {
                    self.list_mut().filter.clear();
                    self.refilter(nodes);
                } else if self.focus == Focus::Clients {
                    self.focus = Focus::Nodes;
                }
                None
            }
            Intent::Drain => Some(self.ask_drain(true, nodes)),
            Intent::Undrain => Some(self.ask_drain(false, nodes)),
            Intent::Rebalance => Some(Reply::Open(Popup::Confirm(ConfirmPopup {
                action: Action::Rebalance,
                question: "Run a rebalance round now?".to_owned(),
                detail: "The host moves clients from the busiest to the idlest Active node \
                         when they differ by more than the threshold."
                    .to_owned(),
            }))),
            Intent::Migrate => Some(self.ask_migrate(nodes)),
            other => {
                let was = self.node_view.selected_item();
                self.list_mut().cursor(other);
                if self.focus == Focus::Nodes && self.node_view.selected_item() != was {
                    self.clients_poll.ask_soon();
                }
                None
            }
        }
    }

    /// Asks before draining (or undraining) the selected node; says why not when it
    /// already is.
    fn ask_drain(&self, drain: bool, nodes: &[NodeRow]) -> Reply {
        let Some(node) = self.selected_node(nodes) else {
            return Reply::say("no node selected", true);
        };
        let name = node.info.name.clone();
        let state = node.info.state.as_str();
        if drain && (state == "Draining" || state == "Drained") {
            return Reply::say(
                format!("{name} is already {} (u undrains it)", state.to_lowercase()),
                false,
            );
        }
        if !drain && state == "Active" {
            return Reply::say(format!("{name} is already active"), false);
        }
        let clients = node.info.clients;
        Reply::Open(Popup::Confirm(if drain {
            ConfirmPopup {
                action: Action::Drain { node: name.clone() },
                question: format!("Drain {name}?"),
                detail: format!(
                    "It takes no new clients and moves its {clients} client{} to the other \
                     nodes, then is Drained.",
                    plural(clients as usize)
                ),
            }
        } else {
            ConfirmPopup {
                action: Action::Undrain { node: name.clone() },
                question: format!("Undrain {name}?"),
                detail: "It becomes Active again: placement and rebalancing consider it."
                    .to_owned(),
            }
        }))
    }

    /// Opens the migration target picker for the selected client.
    fn ask_migrate(&self, nodes: &[NodeRow]) -> Reply {
        let Some(client) = self.selected_client(nodes) else {
            return Reply::say("no client selected", true);
        };
        match MigratePicker::new(client.id.clone(), client.node.clone(), nodes) {
            Some(picker) => Reply::Open(Popup::Migrate(picker)),
            None => Reply::say("no other node to move it to", true),
        }
    }

    /// The clients poll, when one is due: at once for a node just selected, then every
    /// [`CLIENTS_EVERY_MS`]; never two at a time.
    pub fn due_poll(&mut self, now_ms: u64, nodes: &[NodeRow]) -> Option<Poll> {
        let node = self.selected_node(nodes)?.info.name.clone();
        let other_node = self.clients_of.as_deref() != Some(node.as_str());
        if !self.clients_poll.in_flight
            && (other_node || self.clients_poll.due(now_ms, CLIENTS_EVERY_MS))
        {
            self.clients_poll.start(now_ms);
            return Some(Poll::Clients { node });
        }
        None
    }

    /// The answer to the clients poll for `node`.
    pub fn clients_answered(
        &mut self,
        node: String,
        result: Result<Response, String>,
        nodes: &[NodeRow],
    ) {
        self.clients_poll.in_flight = false;
        if self.selected_node(nodes).map(|n| n.info.name.as_str()) != Some(node.as_str()) {
            // The cursor moved on meanwhile; the next poll asks for the right node.
            return;
        }
        match result {
            Ok(Response::Clients {
                clients,
                incomplete,
            }) => {
                let keep = self.selected_client(nodes).map(|c| c.id.clone());
                if self.clients_of.as_deref() != Some(node.as_str()) {
                    self.client_view.selected = 0;
                    self.client_view.offset.set(0);
                }
                self.clients = clients;
                self.clients_of = Some(node);
                self.clients_note = (!incomplete.is_empty())
                    .then(|| format!("no answer from {}", incomplete.join(", ")));
                self.client_view
                    .rebuild(self.clients.iter(), client_matches, |c| {
                        Some(&c.id) == keep.as_ref()
                    });
            }
            Ok(Response::Error(e)) => {
                self.clients_note = Some(first_line(&e.to_string()).to_owned())
            }
            Ok(other) => tracing::debug!(?other, "clients poll"),
            Err(e) => self.clients_note = Some(first_line(&e).to_owned()),
        }
    }

    /// A client moved: the list is asked for again at once.
    pub fn client_moved(&mut self) {
        self.clients_poll.ask_soon();
    }

    /// The daemon went away: whatever was asked will not be answered.
    pub fn connection_lost(&mut self) {
        self.clients_poll = PollClock::default();
    }
}

fn client_matches(c: &&ClientInfo, f: &str) -> bool {
    c.id.contains(f)
        || c.address.to_lowercase().contains(f)
        || c.zone.is_some_and(|(x, y)| format!("{x},{y}").contains(f))
}
