//! The console's state and where keys go. Plain data: no IO, no terminal, no clock (the run
//! loop sets [`App::set_clock`]), so every behaviour is testable by calling methods and
//! looking at fields.
//!
//! The app holds what every view shares: the connection, the status line, the mesh's nodes
//! and the event log. Each tab ([`super::tabs`]) and popup ([`super::popups`]) keeps its own
//! state; the app hands a key to the open popup, else to the tab shown, and carries out what
//! they answer. What the watch and the other admin answers do is in [`watch`] and [`answers`].

mod answers;
mod watch;

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::event_log::{EventLog, LogKind};
use super::keymap::{self, Intent, Scope};
use super::list::ListView;
use super::nodes::NodeRow;
use super::popups::help::HelpPopup;
use super::popups::{filter, Outcome, Popup};
use super::requests::{Action, PollClock};
use super::tabs::keys::KeysTab;
use super::tabs::overview::OverviewTab;
use super::tabs::zones::ZonesTab;
use super::tabs::{events, Reply, Tab};

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

/// The status line's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// What to say.
    pub text: String,
    /// Whether it is an error (drawn red).
    pub error: bool,
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
    /// The watch connection.
    pub conn: Conn,
    /// The node serving the socket.
    pub local: Option<String>,
    /// The status line's message.
    pub status: Option<Status>,

    /// The tab shown.
    pub tab: Tab,
    /// A popup, if one is open: it takes the keys.
    pub popup: Option<Popup>,

    /// Members, oldest first (the header, the overview, the zone legend and the migration
    /// picker show them).
    pub nodes: Vec<NodeRow>,
    /// The event log (the overview shows its tail, the events tab all of it).
    pub log: EventLog,

    /// The overview tab: the cursor over `nodes`, the selected node's clients.
    pub overview: OverviewTab,
    /// The key browser tab.
    pub keys: KeysTab,
    /// The zone map tab.
    pub zones: ZonesTab,

    nodes_poll: PollClock,
    /// A node appeared that the member list has not described yet: ask for it at once.
    nodes_stale: bool,
}

impl App {
    /// A console for the daemon at `socket`, not connected yet.
    pub fn new(socket: impl Into<String>, log_path: Option<String>) -> App {
        App {
            socket: socket.into(),
            log_path,
            now_ms: 0,
            conn: Conn::Connecting,
            local: None,
            status: None,
            tab: Tab::Overview,
            popup: None,
            nodes: Vec::new(),
            log: EventLog::default(),
            overview: OverviewTab::default(),
            keys: KeysTab::default(),
            zones: ZonesTab::default(),
            nodes_poll: PollClock::default(),
            nodes_stale: false,
        }
    }

    /// Sets "now" (ms since the Unix epoch) for ages, timestamps and polling.
    pub fn set_clock(&mut self, now_ms: u64) {
        self.now_ms = now_ms;
    }

    /// The key scopes in force, most specific first: what keys do now, and what the help
    /// bar lists.
    pub fn scopes(&self) -> Vec<Scope> {
        if let Some(popup) = &self.popup {
            return popup.scopes();
        }
        let mut scopes = match self.tab {
            Tab::Overview => self.overview.scopes(),
            Tab::Keys => self.keys.scopes(),
            Tab::Zones => self.zones.scopes(),
            Tab::Events => events::scopes(),
        };
        scopes.extend([Scope::Global, Scope::Always]);
        scopes
    }

    /// Whether a dialog is drawn over the view (then no pane shows as focused).
    pub fn dialog_open(&self) -> bool {
        self.popup.as_ref().is_some_and(Popup::is_dialog)
    }

    /// The list `/` filters, if the view shown has one (in the key browser's rows `/`
    /// opens the query bar instead).
    pub fn filter_view(&self) -> Option<&ListView> {
        match self.tab {
            Tab::Overview => Some(self.overview.list()),
            Tab::Keys if self.keys.browsing.is_some() => None,
            Tab::Keys => Some(self.keys.list()),
            Tab::Zones => None,
            Tab::Events => Some(&self.log.view),
        }
    }

    fn filter_view_mut(&mut self) -> Option<&mut ListView> {
        match self.tab {
            Tab::Overview => Some(self.overview.list_mut()),
            Tab::Keys if self.keys.browsing.is_some() => None,
            Tab::Keys => Some(self.keys.list_mut()),
            Tab::Zones => None,
            Tab::Events => Some(&mut self.log.view),
        }
    }

    /// Recomputes which items of the list under the cursor pass its filter.
    fn refilter_current(&mut self) {
        match self.tab {
            Tab::Overview => self.overview.refilter(&self.nodes),
            Tab::Keys => self.keys.refilter(),
            Tab::Zones => {}
            Tab::Events => self.log.refilter(),
        }
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
        match &mut self.popup {
            Some(Popup::Filter) => {
                self.filter_key(intent, &key);
                None
            }
            Some(Popup::Query) => {
                self.query_key(intent, &key);
                None
            }
            Some(popup) => {
                let outcome = popup.handle(intent?);
                self.close_on(outcome)
            }
            None => self.view_key(intent?),
        }
    }

    /// Carries out what a key did to a dialog.
    fn close_on(&mut self, outcome: Outcome) -> Option<Action> {
        match outcome {
            Outcome::Stay => None,
            Outcome::Close => {
                self.popup = None;
                None
            }
            Outcome::Cancel => {
                self.popup = None;
                self.say("cancelled", false);
                None
            }
            Outcome::Act(action) => {
                self.popup = None;
                self.say(format!("{}…", action.describe()), false);
                Some(action)
            }
        }
    }

    /// A key while typing a filter: the list narrows as it is typed.
    fn filter_key(&mut self, intent: Option<Intent>, key: &KeyEvent) {
        let Some(view) = self.filter_view_mut() else {
            self.popup = None;
            return;
        };
        let Some(edit) = filter::edit(intent, key) else {
            return;
        };
        edit.apply(&mut view.filter);
        if edit.ends_typing() {
            self.popup = None;
        }
        self.refilter_current();
    }

    /// A key while typing in the key browser's query bar: Enter runs the query (the bar
    /// stays open while what was typed cannot be run), Esc clears it.
    fn query_key(&mut self, intent: Option<Intent>, key: &KeyEvent) {
        if self.tab != Tab::Keys || self.keys.browsing.is_none() {
            self.popup = None;
            return;
        }
        match filter::edit(intent, key) {
            Some(filter::FilterEdit::Keep) => {
                let ran = self.keys.run_query();
                if ran {
                    self.popup = None;
                }
            }
            Some(filter::FilterEdit::Clear) => {
                self.keys.clear_query();
                self.popup = None;
            }
            Some(edit) => edit.apply(&mut self.keys.query.text),
            None => {}
        }
    }

    /// A key no popup took: the keys that work in every view, else the tab's.
    fn view_key(&mut self, intent: Intent) -> Option<Action> {
        let reply = match intent {
            Intent::Help => Some(Reply::Open(Popup::Help(HelpPopup::default()))),
            Intent::NextTab => {
                self.tab = self.tab.step(1);
                None
            }
            Intent::PrevTab => {
                self.tab = self.tab.step(-1);
                None
            }
            Intent::GoTab(t) => {
                self.tab = t;
                None
            }
            Intent::Filter => match self.filter_view() {
                Some(_) => Some(Reply::Open(Popup::Filter)),
                None => Some(Reply::say("nothing to filter in this view", false)),
            },
            other => match self.tab {
                Tab::Overview => self.overview.handle(other, &self.nodes),
                Tab::Keys => self.keys.handle(other),
                Tab::Zones => {
                    self.zones.handle(other);
                    None
                }
                Tab::Events => {
                    events::handle(&mut self.log, other);
                    None
                }
            },
        };
        match reply? {
            Reply::Act(action) => Some(action),
            Reply::Open(popup) => {
                self.popup = Some(popup);
                None
            }
            Reply::Say { text, error } => {
                self.say(text, error);
                None
            }
        }
    }

    // ----- the status line and the log -----

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

    fn say(&mut self, text: impl Into<String>, error: bool) {
        self.status = Some(Status {
            text: text.into(),
            error,
        });
    }

    /// Logs something that happened here, now (not a mesh event with its own time).
    fn log_local(&mut self, kind: LogKind, text: String) {
        self.log.push(self.now_ms, kind, text);
    }
}

#[cfg(test)]
mod tests;
