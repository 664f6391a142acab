//! The console's state and what keys and admin answers do to it. Plain data: no IO, no
//! terminal, no clock (the run loop sets [`App::set_clock`]), so every behaviour is testable
//! by calling methods and looking at fields.

use std::cell::Cell;
use std::collections::VecDeque;

use cloudmesh::admin::{
    ClientInfo, Command, Event, EventFrame, NodeInfo, PrimaryInfo, Response, RowInfo, Snapshot,
    ZoneInfo,
};
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::keymap::{self, Intent, Scope};

/// How many entries the event log keeps.
pub const LOG_CAPACITY: usize = 1_000;

/// How many msgs/s samples each node keeps for its sparkline (about two minutes at one load
/// report every two seconds).
pub const HISTORY: usize = 64;

/// How often the clients of the selected node are asked for, ms.
pub const CLIENTS_EVERY_MS: u64 = 1_500;

/// How often the primary keys are asked for while the key browser shows them, ms.
pub const PRIMARIES_EVERY_MS: u64 = 3_000;

/// How often the node list is asked for again. The watch keeps each node current; this only
/// drops members the mesh forgot (a lost node stays on screen, marked, until then).
pub const NODES_EVERY_MS: u64 = 10_000;

/// How long a changed row stays highlighted in the key browser, ms.
pub const ROW_FLASH_MS: u64 = 2_000;

/// The views, in tab order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    /// Nodes, the selected node's clients, and the newest events.
    Overview,
    /// Primary keys, then the rows under one.
    Keys,
    /// The zone grid by owner.
    Zones,
    /// The whole event log.
    Events,
}

impl Tab {
    /// Every tab, in order.
    pub const ALL: [Tab; 4] = [Tab::Overview, Tab::Keys, Tab::Zones, Tab::Events];

    /// The tab's title.
    pub fn title(self) -> &'static str {
        match self {
            Tab::Overview => "Overview",
            Tab::Keys => "Keys",
            Tab::Zones => "Zones",
            Tab::Events => "Events",
        }
    }

    /// Its position in [`Tab::ALL`].
    pub fn index(self) -> usize {
        Tab::ALL.iter().position(|t| *t == self).unwrap_or(0)
    }

    fn step(self, by: isize) -> Tab {
        let n = Tab::ALL.len() as isize;
        Tab::ALL[(self.index() as isize + by).rem_euclid(n) as usize]
    }
}

/// Which overview pane has the cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    /// The nodes table.
    Nodes,
    /// The selected node's clients.
    Clients,
}

/// Which list a filter or a cursor move is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    /// Nodes.
    Nodes,
    /// Clients of the selected node.
    Clients,
    /// Primary keys.
    Primaries,
    /// Rows under the browsed key.
    Rows,
    /// The event log.
    Events,
}

/// What the run loop should do for the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Drain a node.
    Drain {
        /// Its name.
        node: String,
    },
    /// Return a node to service.
    Undrain {
        /// Its name.
        node: String,
    },
    /// Move a client.
    Migrate {
        /// Client id (hex).
        client: String,
        /// Where it is now (for the messages).
        from: String,
        /// Target node.
        to: String,
    },
    /// One rebalance round.
    Rebalance,
    /// Reopen the watch, browsing `key` (or no key).
    Browse {
        /// The primary key whose rows to follow.
        key: Option<String>,
    },
    /// Leave the console.
    Quit,
}

impl Action {
    /// The admin command that carries this action out, for those sent on the command
    /// connection.
    pub fn command(&self) -> Option<Command> {
        match self {
            Action::Drain { node } => Some(Command::Drain {
                node: node.clone(),
                wait: false,
            }),
            Action::Undrain { node } => Some(Command::Undrain { node: node.clone() }),
            Action::Migrate { client, to, .. } => Some(Command::Migrate {
                client: client.clone(),
                to: to.clone(),
            }),
            Action::Rebalance => Some(Command::Rebalance),
            Action::Browse { .. } | Action::Quit => None,
        }
    }

    /// The action in a few words, for the status line.
    pub fn describe(&self) -> String {
        match self {
            Action::Drain { node } => format!("drain {node}"),
            Action::Undrain { node } => format!("undrain {node}"),
            Action::Migrate { client, to, .. } => format!("migrate client {client} to {to}"),
            Action::Rebalance => "rebalance".to_owned(),
            Action::Browse { key: Some(k) } => format!("browse {k}"),
            Action::Browse { key: None } => "stop browsing".to_owned(),
            Action::Quit => "quit".to_owned(),
        }
    }
}

/// A periodic question the run loop asks on the polling connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Poll {
    /// The member list (drops members the mesh forgot).
    Nodes,
    /// The clients of one node.
    Clients {
        /// The node.
        node: String,
    },
    /// The primary keys with their row counts.
    Primaries,
}

impl Poll {
    /// The admin command for it.
    pub fn command(&self) -> Command {
        match self {
            Poll::Nodes => Command::Nodes,
            Poll::Clients { node } => Command::Clients {
                node: Some(node.clone()),
            },
            Poll::Primaries => Command::Keys {
                primary: None,
                secondary: None,
            },
        }
    }
}

/// A list on screen: its filter, which items pass it, and the cursor among those.
#[derive(Debug, Default)]
pub struct ListView {
    /// The filter text (substring, any case); empty for none.
    pub filter: String,
    /// Indices of the items that pass the filter, in order.
    pub visible: Vec<usize>,
    /// The cursor, an index into `visible`.
    pub selected: usize,
    /// The first row on screen. Only the renderer moves it (to keep the cursor in view), so
    /// it lives in a `Cell` and drawing can take `&App`.
    pub offset: Cell<usize>,
    /// Rows the renderer last had room for: what PgUp/PgDn move by.
    pub page: Cell<usize>,
}

impl ListView {
    /// The selected item's index in the full list.
    pub fn selected_item(&self) -> Option<usize> {
        self.visible.get(self.selected).copied()
    }

    /// Recomputes `visible` after the items or the filter changed, keeping the cursor on
    /// the item `keep` says was selected (else at the same place, clamped).
    fn rebuild<T>(
        &mut self,
        items: impl Iterator<Item = T>,
        matches: impl Fn(&T, &str) -> bool,
        keep: impl Fn(&T) -> bool,
    ) {
        let needle = self.filter.to_lowercase();
        self.visible.clear();
        let mut found = None;
        for (i, item) in items.enumerate() {
            if needle.is_empty() || matches(&item, &needle) {
                if found.is_none() && keep(&item) {
                    found = Some(self.visible.len());
                }
                self.visible.push(i);
            }
        }
        self.selected = match found {
            Some(at) => at,
            None => self.selected.min(self.visible.len().saturating_sub(1)),
        };
    }

    fn move_by(&mut self, delta: isize) {
        let last = self.visible.len().saturating_sub(1) as isize;
        self.selected = (self.selected as isize + delta).clamp(0, last.max(0)) as usize;
    }

    fn page_size(&self) -> isize {
        self.page.get().max(1) as isize
    }

    /// Applies a cursor intent; false when it is not one.
    fn cursor(&mut self, intent: Intent) -> bool {
        match intent {
            Intent::Up => self.move_by(-1),
            Intent::Down => self.move_by(1),
            Intent::PageUp => self.move_by(-self.page_size()),
            Intent::PageDown => self.move_by(self.page_size()),
            Intent::First => self.selected = 0,
            Intent::Last => self.selected = self.visible.len().saturating_sub(1),
            _ => return false,
        }
        true
    }

    /// Whether the cursor is on the last item (or there is none).
    pub fn at_end(&self) -> bool {
        self.selected + 1 >= self.visible.len()
    }
}

/// A node and what the console keeps about it.
#[derive(Debug, Clone)]
pub struct NodeRow {
    /// As last reported.
    pub info: NodeInfo,
    /// msgs/s at its last load reports, oldest first.
    pub history: VecDeque<f32>,
    /// The node was lost: shown, marked, until the next member list forgets it.
    pub lost: bool,
    /// The drain's last progress report: (moved, remaining).
    pub drain: Option<(usize, usize)>,
}

impl NodeRow {
    fn new(info: NodeInfo) -> NodeRow {
        let mut history = VecDeque::with_capacity(HISTORY);
        history.push_back(info.msgs_per_sec);
        NodeRow {
            info,
            history,
            lost: false,
            drain: None,
        }
    }

    fn push_sample(&mut self, v: f32) {
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(v);
    }
}

/// A row in the key browser.
#[derive(Debug, Clone)]
pub struct RowEntry {
    /// As last reported.
    pub info: RowInfo,
    /// When the console last saw it change (0: it came with the snapshot).
    pub changed_at_ms: u64,
}

/// What an event-log entry is about (its colour).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogKind {
    /// A node joined or came back.
    Join,
    /// A node was lost.
    Loss,
    /// The host changed.
    Host,
    /// A state change or a drain's progress.
    Drain,
    /// A client moved.
    Migration,
    /// Zones, lagging, and other news.
    Info,
    /// Something the operator did, and its outcome.
    Action,
    /// An operator action failed.
    Error,
    /// The console lost or regained its daemon.
    Connection,
}

/// One line of the event log.
#[derive(Debug, Clone)]
pub struct LogEntry {
    /// When it happened, ms since the Unix epoch (the daemon's clock for mesh events).
    pub at_ms: u64,
    /// What it is about.
    pub kind: LogKind,
    /// What happened.
    pub text: String,
}

/// The connection to the daemon, as far as the watch knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conn {
    /// Not connected yet.
    Connecting,
    /// The watch is live.
    Live,
    /// The watch ended; the run loop is reconnecting.
    Down {
        /// Why it ended (or why the last attempt failed).
        reason: String,
    },
}

/// A dialog over the views.
#[derive(Debug)]
pub enum Modal {
    /// The keys.
    Help {
        /// Lines scrolled.
        scroll: u16,
    },
    /// Asks before an action.
    Confirm {
        /// What `y` does.
        action: Action,
        /// The question.
        question: String,
        /// What it will do, in a sentence.
        detail: String,
    },
    /// Picks a node to migrate a client to.
    Picker {
        /// The client.
        client: String,
        /// Its node.
        from: String,
        /// The other nodes (names).
        choices: Vec<String>,
        /// The cursor.
        view: ListView,
    },
}

/// The status line's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// What to say.
    pub text: String,
    /// Whether it is an error (drawn red).
    pub error: bool,
}

#[derive(Debug, Default, Clone, Copy)]
struct PollClock {
    last_ms: Option<u64>,
    in_flight: bool,
}

impl PollClock {
    fn due(&self, now_ms: u64, every_ms: u64) -> bool {
        !self.in_flight
            && self
                .last_ms
                .is_none_or(|l| now_ms.saturating_sub(l) >= every_ms)
    }

    fn start(&mut self, now_ms: u64) {
        self.in_flight = true;
        self.last_ms = Some(now_ms);
    }
}

/// Everything the console shows and remembers.
#[derive(Debug)]
pub struct App {
    /// The admin socket, as given (for messages).
    pub socket: String,
    /// Where the log goes, for the help overlay.
    pub log_path: Option<String>,
    /// Now, ms since the Unix epoch, as the run loop last said.
    pub now_ms: u64,
    /// The tab shown.
    pub tab: Tab,
    /// The overview pane with the cursor.
    pub focus: Focus,
    /// Whether the operator is typing a filter (for the list under the cursor).
    pub editing_filter: bool,
    /// A dialog, if one is open.
    pub modal: Option<Modal>,
    /// The status line's message.
    pub status: Option<Status>,
    /// The watch connection.
    pub conn: Conn,
    /// The node serving the socket.
    pub local: Option<String>,

    /// Members, oldest first.
    pub nodes: Vec<NodeRow>,
    /// Cursor and filter over `nodes`.
    pub node_view: ListView,

    /// Clients of `clients_of`.
    pub clients: Vec<ClientInfo>,
    /// The node `clients` belong to.
    pub clients_of: Option<String>,
    /// Why the clients list may be stale or incomplete.
    pub clients_note: Option<String>,
    /// Cursor and filter over `clients`.
    pub client_view: ListView,

    /// Primary keys with row counts.
    pub primaries: Vec<PrimaryInfo>,
    /// Why the key list may be stale or incomplete.
    pub primaries_note: Option<String>,
    /// Whether an answer to the key listing came yet.
    pub primaries_loaded: bool,
    /// Cursor and filter over `primaries`.
    pub primary_view: ListView,
    /// The primary key whose rows are browsed.
    pub browsing: Option<String>,
    /// Whether the snapshot of the browsed rows came yet.
    pub rows_loaded: bool,
    /// Rows under `browsing`, in (secondary, owner) order.
    pub rows: Vec<RowEntry>,
    /// Cursor and filter over `rows`.
    pub row_view: ListView,

    /// Zone ownership.
    pub zones: Option<ZoneInfo>,
    /// How far the zone map is scrolled (cells right, cells down).
    pub zone_scroll: (u32, u32),

    /// The event log, oldest first.
    pub log: VecDeque<LogEntry>,
    /// Cursor and filter over `log`.
    pub log_view: ListView,
    /// Whether the log's cursor follows new entries.
    pub log_follow: bool,

    nodes_poll: PollClock,
    nodes_stale: bool,
    clients_poll: PollClock,
    primaries_poll: PollClock,
}

impl App {
    /// A console for the daemon at `socket`, with nothing known yet.
    pub fn new(socket: impl Into<String>, log_path: Option<String>) -> App {
        App {
            socket: socket.into(),
            log_path,
            now_ms: 0,
            tab: Tab::Overview,
            focus: Focus::Nodes,
            editing_filter: false,
            modal: None,
            status: None,
            conn: Conn::Connecting,
            local: None,
            nodes: Vec::new(),
            node_view: ListView::default(),
            clients: Vec::new(),
            clients_of: None,
            clients_note: None,
            client_view: ListView::default(),
            primaries: Vec::new(),
            primaries_note: None,
            primaries_loaded: false,
            primary_view: ListView::default(),
            browsing: None,
            rows_loaded: false,
            rows: Vec::new(),
            row_view: ListView::default(),
            zones: None,
            zone_scroll: (0, 0),
            log: VecDeque::new(),
            log_view: ListView::default(),
            log_follow: true,
            nodes_poll: PollClock::default(),
            nodes_stale: false,
            clients_poll: PollClock::default(),
            primaries_poll: PollClock::default(),
        }
    }

    /// Sets "now" (ms since the Unix epoch) for ages, timestamps and polling.
    pub fn set_clock(&mut self, now_ms: u64) {
        self.now_ms = now_ms;
    }

    // ----- what is selected -----

    /// The node under the nodes cursor.
    pub fn selected_node(&self) -> Option<&NodeRow> {
        self.node_view
            .selected_item()
            .and_then(|i| self.nodes.get(i))
    }

    /// The client under the clients cursor (only when the list is the selected node's).
    pub fn selected_client(&self) -> Option<&ClientInfo> {
        if self.clients_of.as_deref() != self.selected_node().map(|n| n.info.name.as_str()) {
            return None;
        }
        self.client_view
            .selected_item()
            .and_then(|i| self.clients.get(i))
    }

    /// The row under the rows cursor.
    pub fn selected_row(&self) -> Option<&RowEntry> {
        self.row_view.selected_item().and_then(|i| self.rows.get(i))
    }

    /// The list the cursor keys and `/` act on, if the view has one.
    pub fn current_list(&self) -> Option<ListKind> {
        match self.tab {
            Tab::Overview => Some(match self.focus {
                Focus::Nodes => ListKind::Nodes,
                Focus::Clients => ListKind::Clients,
            }),
            Tab::Keys if self.browsing.is_some() => Some(ListKind::Rows),
            Tab::Keys => Some(ListKind::Primaries),
            Tab::Zones => None,
            Tab::Events => Some(ListKind::Events),
        }
    }

    /// The view of one list.
    pub fn view(&self, kind: ListKind) -> &ListView {
        match kind {
            ListKind::Nodes => &self.node_view,
            ListKind::Clients => &self.client_view,
            ListKind::Primaries => &self.primary_view,
            ListKind::Rows => &self.row_view,
            ListKind::Events => &self.log_view,
        }
    }

    fn view_mut(&mut self, kind: ListKind) -> &mut ListView {
        match kind {
            ListKind::Nodes => &mut self.node_view,
            ListKind::Clients => &mut self.client_view,
            ListKind::Primaries => &mut self.primary_view,
            ListKind::Rows => &mut self.row_view,
            ListKind::Events => &mut self.log_view,
        }
    }

    /// The key scopes in force, most specific first: what keys do now, and what the help
    /// bar lists.
    pub fn scopes(&self) -> Vec<Scope> {
        match &self.modal {
            Some(Modal::Help { .. }) => return vec![Scope::Help, Scope::Always],
            Some(Modal::Confirm { .. }) => return vec![Scope::Confirm, Scope::Always],
            Some(Modal::Picker { .. }) => return vec![Scope::Picker, Scope::List, Scope::Always],
            None => {}
        }
        if self.editing_filter {
            return vec![Scope::Filter, Scope::Always];
        }
        let mut scopes = match self.tab {
            Tab::Overview => match self.focus {
                Focus::Nodes => vec![Scope::Nodes, Scope::Overview, Scope::List],
                Focus::Clients => vec![Scope::Clients, Scope::Overview, Scope::List],
            },
            Tab::Keys if self.browsing.is_some() => vec![Scope::Rows, Scope::List],
            Tab::Keys => vec![Scope::Primaries, Scope::List],
            Tab::Zones => vec![Scope::Zones],
            Tab::Events => vec![Scope::Events, Scope::List],
        };
        scopes.extend([Scope::Global, Scope::Always]);
        scopes
    }

    // ----- keys -----

    /// What a key press does; the action, when the run loop has to carry one out.
    pub fn handle_key(&mut self, key: KeyEvent) -> Option<Action> {
        if key.kind == KeyEventKind::Release {
            return None;
        }
        if let (KeyCode::Char(c), KeyModifiers::ALT) = (key.code, key.modifiers) {
            // Esc and a key typed fast (or sent together, as tmux does) arrive as Alt+key;
            // the console binds no Alt keys, so it is taken as the two.
            let esc = self.handle_key(KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE));
            let then = self.handle_key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE));
            return then.or(esc);
        }
        let scopes = self.scopes();
        let intent = keymap::lookup(&scopes, &key);
        if intent == Some(Intent::Quit) {
            return Some(Action::Quit);
        }
        if self.editing_filter {
            self.filter_key(intent, &key);
            return None;
        }
        if self.modal.is_some() {
            return self.modal_key(intent?);
        }
        self.view_key(intent?)
    }

    fn filter_key(&mut self, intent: Option<Intent>, key: &KeyEvent) {
        let Some(kind) = self.current_list() else {
            self.editing_filter = false;
            return;
        };
        match intent {
            Some(Intent::KeepFilter) => self.editing_filter = false,
            Some(Intent::ClearFilter) => {
                self.editing_filter = false;
                self.view_mut(kind).filter.clear();
            }
            Some(Intent::DeleteChar) => {
                self.view_mut(kind).filter.pop();
            }
            _ => match key.code {
                KeyCode::Char(c)
                    if !key
                        .modifiers
                        .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT) =>
                {
                    self.view_mut(kind).filter.push(c)
                }
                _ => return,
            },
        }
        self.refilter(kind);
    }

    fn modal_key(&mut self, intent: Intent) -> Option<Action> {
        match self.modal.as_mut()? {
            Modal::Help { scroll } => match intent {
                Intent::Up => *scroll = scroll.saturating_sub(1),
                Intent::Down => *scroll = scroll.saturating_add(1),
                Intent::No => self.modal = None,
                _ => {}
            },
            Modal::Confirm { .. } => match intent {
                Intent::Yes => {
                    let Some(Modal::Confirm { action, .. }) = self.modal.take() else {
                        return None;
                    };
                    self.say(format!("{}…", action.describe()), false);
                    return Some(action);
                }
                Intent::No => {
                    self.modal = None;
                    self.say("cancelled", false);
                }
                _ => {}
            },
            Modal::Picker {
                client,
                from,
                choices,
                view,
            } => match intent {
                Intent::Open => {
                    let to = view.selected_item().and_then(|i| choices.get(i)).cloned()?;
                    let action = Action::Migrate {
                        client: client.clone(),
                        from: from.clone(),
                        to,
                    };
                    self.modal = None;
                    self.say(format!("{}…", action.describe()), false);
                    return Some(action);
                }
                Intent::No => {
                    self.modal = None;
                    self.say("cancelled", false);
                }
                other => {
                    view.cursor(other);
                }
            },
        }
        None
    }

    fn view_key(&mut self, intent: Intent) -> Option<Action> {
        match intent {
            Intent::Help => self.modal = Some(Modal::Help { scroll: 0 }),
            Intent::NextTab => self.set_tab(self.tab.step(1)),
            Intent::PrevTab => self.set_tab(self.tab.step(-1)),
            Intent::GoTab(t) => self.set_tab(t),
            Intent::Filter => match self.current_list() {
                Some(_) => self.editing_filter = true,
                None => self.say("nothing to filter in this view", false),
            },
            Intent::Open => return self.open(),
            Intent::Back => return self.back(),
            Intent::Drain => self.ask_drain(true),
            Intent::Undrain => self.ask_drain(false),
            Intent::Rebalance => {
                self.modal = Some(Modal::Confirm {
                    action: Action::Rebalance,
                    question: "Run a rebalance round now?".to_owned(),
                    detail: "The host moves clients from the busiest to the idlest Active node \
                             when they differ by more than the threshold."
                        .to_owned(),
                })
            }
            Intent::Migrate => self.open_picker(),
            Intent::Left | Intent::Right | Intent::Up | Intent::Down if self.tab == Tab::Zones => {
                self.scroll_zones(intent)
            }
            other => {
                let kind = self.current_list()?;
                let was = self.view(kind).selected_item();
                self.view_mut(kind).cursor(other);
                if kind == ListKind::Events {
                    self.log_follow = self.log_view.at_end();
                }
                if kind == ListKind::Nodes && self.node_view.selected_item() != was {
                    self.clients_changed_node();
                }
            }
        }
        None
    }

    fn set_tab(&mut self, tab: Tab) {
        self.tab = tab;
    }

    fn open(&mut self) -> Option<Action> {
        match self.current_list()? {
            ListKind::Nodes => {
                if self.selected_node().is_some() {
                    self.focus = Focus::Clients;
                }
                None
            }
            ListKind::Primaries => {
                let key = self
                    .primary_view
                    .selected_item()
                    .and_then(|i| self.primaries.get(i))?
                    .primary
                    .clone();
                self.browsing = Some(key.clone());
                self.rows.clear();
                self.rows_loaded = false;
                self.row_view = ListView::default();
                Some(Action::Browse { key: Some(key) })
            }
            _ => None,
        }
    }

    fn back(&mut self) -> Option<Action> {
        let kind = self.current_list()?;
        if !self.view(kind).filter.is_empty() {
            self.view_mut(kind).filter.clear();
            self.refilter(kind);
            return None;
        }
        match kind {
            ListKind::Clients => {
                self.focus = Focus::Nodes;
                None
            }
            ListKind::Rows => {
                self.browsing = None;
                self.rows.clear();
                self.rows_loaded = false;
                // The list may have changed while the rows were shown.
                self.primaries_poll.last_ms = None;
                Some(Action::Browse { key: None })
            }
            _ => None,
        }
    }

    fn ask_drain(&mut self, drain: bool) {
        let Some(node) = self.selected_node() else {
            self.say("no node selected", true);
            return;
        };
        let name = node.info.name.clone();
        let state = node.info.state.as_str();
        if drain && (state == "Draining" || state == "Drained") {
            self.say(
                format!("{name} is already {} (u undrains it)", state.to_lowercase()),
                false,
            );
            return;
        }
        if !drain && state == "Active" {
            self.say(format!("{name} is already active"), false);
            return;
        }
        let clients = node.info.clients;
        self.modal = Some(if drain {
            Modal::Confirm {
                action: Action::Drain { node: name.clone() },
                question: format!("Drain {name}?"),
                detail: format!(
                    "It takes no new clients and moves its {clients} client{} to the other \
                     nodes, then is Drained.",
                    if clients == 1 { "" } else { "s" }
                ),
            }
        } else {
            Modal::Confirm {
                action: Action::Undrain { node: name.clone() },
                question: format!("Undrain {name}?"),
                detail: "It becomes Active again: placement and rebalancing consider it."
                    .to_owned(),
            }
        });
    }

    fn open_picker(&mut self) {
        let Some(client) = self.selected_client() else {
            self.say("no client selected", true);
            return;
        };
        let (client, from) = (client.id.clone(), client.node.clone());
        let choices: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| n.info.name != from && !n.lost)
            .map(|n| n.info.name.clone())
            .collect();
        if choices.is_empty() {
            self.say("no other node to move it to", true);
            return;
        }
        let mut view = ListView::default();
        view.rebuild(choices.iter(), |_, _| true, |_| false);
        // Start on the first node that takes clients.
        if let Some(at) = choices.iter().position(|c| {
            self.nodes
                .iter()
                .any(|n| &n.info.name == c && n.info.state == "Active")
        }) {
            view.selected = at;
        }
        self.modal = Some(Modal::Picker {
            client,
            from,
            choices,
            view,
        });
    }

    fn scroll_zones(&mut self, intent: Intent) {
        let (w, h) = self.zones.as_ref().map_or((0, 0), |z| {
            (z.width.saturating_sub(1), z.height.saturating_sub(1))
        });
        let (x, y) = &mut self.zone_scroll;
        match intent {
            Intent::Left => *x = x.saturating_sub(1),
            Intent::Right => *x = (*x + 1).min(w),
            Intent::Up => *y = y.saturating_sub(1),
            Intent::Down => *y = (*y + 1).min(h),
            _ => {}
        }
    }

    // ----- the watch -----

    /// Takes a frame of the watch. Returns an action when the frame needs one (a browse
    /// that the daemon refused goes back to no key).
    pub fn apply(&mut self, frame: Response) -> Option<Action> {
        match frame {
            Response::Snapshot(s) => self.snapshot(s),
            Response::Event(e) => self.event(e),
            Response::Error(e) => {
                self.say(format!("watch: {e}"), true);
                if self.browsing.take().is_some() {
                    self.rows.clear();
                    return Some(Action::Browse { key: None });
                }
            }
            other => tracing::debug!(?other, "unexpected frame on the watch"),
        }
        None
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
        self.zones = s.zones;
        if self.browsing.is_some() {
            if let Some(rows) = s.rows {
                self.rows = rows
                    .into_iter()
                    .map(|info| RowEntry {
                        info,
                        changed_at_ms: 0,
                    })
                    .collect();
                self.rows
                    .sort_by(|a, b| row_order(&a.info).cmp(&row_order(&b.info)));
                self.rows_loaded = true;
                self.refilter(ListKind::Rows);
            }
        }
    }

    /// Replaces the member list, keeping each node's history and the cursor's node.
    fn replace_nodes(&mut self, fresh: Vec<NodeInfo>) {
        let keep = self.keep(ListKind::Nodes);
        let mut old = std::mem::take(&mut self.nodes);
        self.nodes = fresh
            .into_iter()
            .map(
                |info| match old.iter().position(|n| n.info.name == info.name) {
                    Some(i) => {
                        let mut row = old.swap_remove(i);
                        row.lost = false;
                        if info.state != "Draining" {
                            row.drain = None;
                        }
                        row.info = info;
                        row
                    }
                    None => NodeRow::new(info),
                },
            )
            .collect();
        self.refilter_keeping(ListKind::Nodes, keep);
    }

    fn node_mut(&mut self, name: &str) -> Option<&mut NodeRow> {
        self.nodes.iter_mut().find(|n| n.info.name == name)
    }

    fn event(&mut self, f: EventFrame) {
        let at = f.at_ms;
        match f.event {
            Event::NodeUp { node } => {
                self.log_at(at, LogKind::Join, format!("{node} joined (link up)"));
                match self.node_mut(&node) {
                    Some(n) => {
                        n.info.linked = true;
                        n.lost = false;
                    }
                    None => {
                        self.nodes.push(NodeRow::new(placeholder(&node)));
                        self.refilter(ListKind::Nodes);
                    }
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
                self.log_at(at, LogKind::Loss, format!("{node} lost{what}"));
                if let Some(n) = self.node_mut(&node) {
                    n.lost = true;
                    n.info.linked = false;
                    n.info.host = false;
                }
            }
            Event::StateChanged { node, state } => {
                self.log_at(at, LogKind::Drain, format!("{node} is {state}"));
                if let Some(n) = self.node_mut(&node) {
                    if state != "Draining" {
                        n.drain = None;
                    }
                    n.info.state = state;
                }
                if self.nodes.iter().any(|n| n.info.name == node) {
                    // The state column may be what the filter matches.
                    self.refilter(ListKind::Nodes);
                }
            }
            Event::HostChanged { old, new } => {
                self.log_at(at, LogKind::Host, format!("host changed: {old} → {new}"));
                for n in &mut self.nodes {
                    n.info.host = n.info.name == new;
                }
            }
            Event::Load(info) => match self.node_mut(&info.name) {
                Some(n) => {
                    n.push_sample(info.msgs_per_sec);
                    n.lost = false;
                    n.info = info;
                }
                None => {
                    self.nodes.push(NodeRow::new(info));
                    self.refilter(ListKind::Nodes);
                }
            },
            Event::DrainProgress {
                node,
                moved,
                remaining,
            } => {
                self.log_at(
                    at,
                    LogKind::Drain,
                    format!("{node} draining: {moved} moved, {remaining} left"),
                );
                if let Some(n) = self.node_mut(&node) {
                    n.drain = Some((moved, remaining));
                    // Fresher than its last load report.
                    n.info.clients = u32::try_from(remaining).unwrap_or(u32::MAX);
                }
            }
            Event::Migrated { client, from, to } => {
                self.log_at(
                    at,
                    LogKind::Migration,
                    format!("client {client} moved {from} → {to}"),
                );
            }
            Event::Zones(z) => {
                self.log_at(
                    at,
                    LogKind::Info,
                    format!("zone map changed ({}×{} cells)", z.width, z.height),
                );
                self.zones = Some(z);
            }
            Event::RowChanged(row) => {
                if self.browsing.as_deref() == Some(row.primary.as_str()) {
                    self.upsert_row(row);
                }
            }
            Event::RowDeleted { row, .. } => {
                if self.browsing.as_deref() == Some(row.primary.as_str()) {
                    self.delete_row(&row);
                }
            }
            Event::Lagged { missed } => {
                self.log_at(
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

    fn upsert_row(&mut self, info: RowInfo) {
        let keep = self.keep(ListKind::Rows);
        let owner = info.owner.clone();
        let order = (info.secondary, owner.as_str());
        let entry = RowEntry {
            info,
            changed_at_ms: self.now_ms,
        };
        match self
            .rows
            .binary_search_by(|r| row_order(&r.info).cmp(&order))
        {
            Ok(i) => {
                if self.rows[i].info.version <= entry.info.version {
                    self.rows[i] = entry;
                }
            }
            Err(i) => self.rows.insert(i, entry),
        }
        self.refilter_keeping(ListKind::Rows, keep);
    }

    fn delete_row(&mut self, info: &RowInfo) {
        let order = row_order(info);
        if let Ok(i) = self
            .rows
            .binary_search_by(|r| row_order(&r.info).cmp(&order))
        {
            // A deletion carries its own, newer version; an older one is stale.
            if self.rows[i].info.version <= info.version {
                let keep = self.keep(ListKind::Rows);
                self.rows.remove(i);
                self.refilter_keeping(ListKind::Rows, keep);
            }
        }
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
        self.clients_poll = PollClock::default();
        self.primaries_poll = PollClock::default();
        self.nodes_poll = PollClock::default();
    }

    /// The status line's connection text, when the connection is what matters most.
    pub fn conn_text(&self) -> Option<String> {
        match &self.conn {
            Conn::Connecting => Some(format!("connecting to {}…", self.socket)),
            Conn::Live => None,
            Conn::Down { reason } => Some(format!(
                "disconnected from {} — reconnecting… ({reason})",
                self.socket
            )),
        }
    }

    // ----- polls and commands -----

    /// The questions due now; the app counts them as asked.
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
        if self.tab == Tab::Overview {
            if let Some(node) = self.selected_node().map(|n| n.info.name.clone()) {
                let other_node = self.clients_of.as_deref() != Some(node.as_str());
                if !self.clients_poll.in_flight
                    && (other_node || self.clients_poll.due(now, CLIENTS_EVERY_MS))
                {
                    self.clients_poll.start(now);
                    polls.push(Poll::Clients { node });
                }
            }
        }
        if self.tab == Tab::Keys
            && self.browsing.is_none()
            && self.primaries_poll.due(now, PRIMARIES_EVERY_MS)
        {
            self.primaries_poll.start(now);
            polls.push(Poll::Primaries);
        }
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
            Poll::Clients { node } => {
                self.clients_poll.in_flight = false;
                if self.selected_node().map(|n| n.info.name.as_str()) != Some(node.as_str()) {
                    // The cursor moved on meanwhile; the next poll asks for the right node.
                    return;
                }
                match result {
                    Ok(Response::Clients {
                        clients,
                        incomplete,
                    }) => {
                        let keep = self.selected_client().map(|c| c.id.clone());
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
            Poll::Primaries => {
                self.primaries_poll.in_flight = false;
                match result {
                    Ok(Response::Primaries {
                        primaries,
                        incomplete,
                    }) => {
                        let keep = self
                            .primary_view
                            .selected_item()
                            .and_then(|i| self.primaries.get(i))
                            .map(|p| p.primary.clone());
                        self.primaries = primaries;
                        self.primaries_loaded = true;
                        self.primaries_note = (!incomplete.is_empty())
                            .then(|| format!("no answer from {}", incomplete.join(", ")));
                        self.primary_view
                            .rebuild(self.primaries.iter(), primary_matches, |p| {
                                Some(&p.primary) == keep.as_ref()
                            });
                    }
                    Ok(Response::Error(e)) => {
                        self.primaries_note = Some(first_line(&e.to_string()).to_owned())
                    }
                    Ok(other) => tracing::debug!(?other, "keys poll"),
                    Err(e) => self.primaries_note = Some(first_line(&e).to_owned()),
                }
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
                self.clients_poll.last_ms = None;
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

    // ----- the log and the status line -----

    fn say(&mut self, text: impl Into<String>, error: bool) {
        self.status = Some(Status {
            text: text.into(),
            error,
        });
    }

    fn log_local(&mut self, kind: LogKind, text: String) {
        self.log_at(self.now_ms, kind, text);
    }

    fn log_at(&mut self, at_ms: u64, kind: LogKind, text: String) {
        if self.log.len() == LOG_CAPACITY {
            self.log.pop_front();
        }
        self.log.push_back(LogEntry { at_ms, kind, text });
        let was = self.log_view.selected;
        self.refilter(ListKind::Events);
        if self.log_follow {
            self.log_view.selected = self.log_view.visible.len().saturating_sub(1);
        } else if self.log.len() == LOG_CAPACITY {
            // The oldest entry went: the cursor's entry moved up one.
            self.log_view.selected = was.saturating_sub(1);
        }
    }

    /// Recomputes which items of a list pass its filter, keeping the cursor on its item.
    pub fn refilter(&mut self, kind: ListKind) {
        let keep = self.keep(kind);
        self.refilter_keeping(kind, keep);
    }

    /// What the cursor of a list is on, to find it again after the list changed.
    fn keep(&self, kind: ListKind) -> Keep {
        match kind {
            ListKind::Nodes => self
                .selected_node()
                .map_or(Keep::Nothing, |n| Keep::Name(n.info.name.clone())),
            ListKind::Clients => self
                .client_view
                .selected_item()
                .and_then(|i| self.clients.get(i))
                .map_or(Keep::Nothing, |c| Keep::Name(c.id.clone())),
            ListKind::Primaries => self
                .primary_view
                .selected_item()
                .and_then(|i| self.primaries.get(i))
                .map_or(Keep::Nothing, |p| Keep::Name(p.primary.clone())),
            ListKind::Rows => self.selected_row().map_or(Keep::Nothing, |r| {
                Keep::Row(r.info.secondary, r.info.owner.clone())
            }),
            // Entries have no identity; `log_at` keeps the cursor where it was.
            ListKind::Events => Keep::Nothing,
        }
    }

    /// Recomputes `visible` of a list after its items or filter changed; the cursor goes to
    /// the item `keep` names when it is still there.
    fn refilter_keeping(&mut self, kind: ListKind, keep: Keep) {
        let name = |s: &str| matches!(&keep, Keep::Name(k) if k == s);
        match kind {
            ListKind::Nodes => {
                self.node_view
                    .rebuild(self.nodes.iter(), node_matches, |n| name(&n.info.name));
                if self.selected_node().is_none_or(|n| !name(&n.info.name)) {
                    self.clients_changed_node();
                }
            }
            ListKind::Clients => {
                self.client_view
                    .rebuild(self.clients.iter(), client_matches, |c| name(&c.id));
            }
            ListKind::Primaries => {
                self.primary_view
                    .rebuild(self.primaries.iter(), primary_matches, |p| name(&p.primary));
            }
            ListKind::Rows => {
                self.row_view.rebuild(self.rows.iter(), row_matches, |r| {
                    matches!(&keep, Keep::Row(s, o) if r.info.secondary == *s && r.info.owner == *o)
                });
            }
            ListKind::Events => {
                self.log_view.rebuild(
                    self.log.iter(),
                    |e, f| e.text.to_lowercase().contains(f),
                    |_| false,
                );
                if self.log_follow {
                    self.log_view.selected = self.log_view.visible.len().saturating_sub(1);
                }
            }
        }
    }

    /// The selected node changed: its clients are asked for at the next tick.
    fn clients_changed_node(&mut self) {
        self.clients_poll.last_ms = None;
    }
}

/// The item a cursor was on.
#[derive(Debug)]
enum Keep {
    /// Nothing (an empty list).
    Nothing,
    /// A node, client or primary key by name.
    Name(String),
    /// A row by (secondary, owner).
    Row(u32, String),
}

/// A node known by name only (its link came up before its member record).
fn placeholder(name: &str) -> NodeInfo {
    NodeInfo {
        name: name.to_owned(),
        id: String::new(),
        addresses: Vec::new(),
        state: "Joining".to_owned(),
        host: false,
        local: false,
        linked: true,
        clients: 0,
        capacity: 0,
        rows: 0,
        cpu_percent: 0.0,
        memory_bytes: 0,
        msgs_per_sec: 0.0,
    }
}

fn row_order(r: &RowInfo) -> (u32, &str) {
    (r.secondary, r.owner.as_str())
}

fn node_matches(n: &&NodeRow, f: &str) -> bool {
    n.info.name.to_lowercase().contains(f)
        || n.info.state.to_lowercase().contains(f)
        || n.info.addresses.iter().any(|a| a.contains(f))
}

fn client_matches(c: &&ClientInfo, f: &str) -> bool {
    c.id.contains(f)
        || c.address.to_lowercase().contains(f)
        || c.zone.is_some_and(|(x, y)| format!("{x},{y}").contains(f))
}

fn primary_matches(p: &&PrimaryInfo, f: &str) -> bool {
    p.primary.to_lowercase().contains(f)
}

fn row_matches(r: &&RowEntry, f: &str) -> bool {
    r.info.secondary.to_string().contains(f)
        || r.info.owner.contains(f)
        || r.info.node.to_lowercase().contains(f)
        || r.info.data.to_lowercase().contains(f)
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// The first line of a message (some errors explain themselves over several lines; the
/// status line has one).
pub fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

#[cfg(test)]
mod tests;
