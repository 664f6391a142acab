//! What opens over the views, one module each, each with its own state and key handling.
//! While one is open it takes every key (but Ctrl-C); the app closes it on its [`Outcome`].
//!
//! - [`help`]: the keys, written from the keymap;
//! - [`confirm`]: a yes/no question before an action;
//! - [`migrate`]: the node to move a client to;
//! - [`filter`]: typing a list's filter (in the help bar, not over the view), and the key
//!   browser's query (in its query bar, with the same edits).

pub mod confirm;
pub mod filter;
pub mod help;
pub mod migrate;

use super::keymap::{Intent, Scope};
use super::requests::Action;
use confirm::ConfirmPopup;
use help::HelpPopup;
use migrate::MigratePicker;

/// A popup, over the view or in the help bar.
#[derive(Debug)]
pub enum Popup {
    /// The keys.
    Help(HelpPopup),
    /// Asks before an action.
    Confirm(ConfirmPopup),
    /// Picks a node to migrate a client to.
    Migrate(MigratePicker),
    /// The operator is typing a filter for the list under the cursor (the list itself
    /// keeps the text; see [`filter`]).
    Filter,
    /// The operator is typing a query in the key browser's query bar (the tab keeps the
    /// text; the keys edit it as they edit a filter).
    Query,
}

/// What a key did to a dialog.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It stays open.
    Stay,
    /// It closes.
    Close,
    /// The operator said no: it closes, and the status line says so.
    Cancel,
    /// The operator chose an action: it closes, and the run loop carries the action out.
    Act(Action),
}

impl Popup {
    /// The key scopes in force while it is open, most specific first.
    pub fn scopes(&self) -> Vec<Scope> {
        match self {
            Popup::Help(_) => vec![Scope::Help, Scope::Always],
            Popup::Confirm(_) => vec![Scope::Confirm, Scope::Always],
            Popup::Migrate(_) => vec![Scope::Picker, Scope::List, Scope::Always],
            Popup::Filter => vec![Scope::Filter, Scope::Always],
            Popup::Query => vec![Scope::Query, Scope::Always],
        }
    }

    /// Whether it is a dialog drawn over the view, which then shows no pane as focused.
    /// Typing a filter happens in the help bar, a query in the query bar: the list keeps
    /// its focus.
    pub fn is_dialog(&self) -> bool {
        !matches!(self, Popup::Filter | Popup::Query)
    }

    /// What a key does to a dialog (the filter's keys are edits: see [`filter::edit`]).
    pub fn handle(&mut self, intent: Intent) -> Outcome {
        match self {
            Popup::Help(help) => help.handle(intent),
            Popup::Confirm(confirm) => confirm.handle(intent),
            Popup::Migrate(picker) => picker.handle(intent),
            Popup::Filter | Popup::Query => Outcome::Stay,
        }
    }
}
