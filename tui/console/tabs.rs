//! The console's views, one module each, each with its own state and key handling. The app
//! shows one at a time and hands it the keys no popup took; a tab answers with a [`Reply`]
//! when the key needs more than its own state (an action, a popup, a word in the status line).
//!
//! - [`overview`]: nodes, the selected node's clients (and the newest events);
//! - [`keys`]: the key browser, primary keys then the rows under one, live;
//! - [`zones`]: the zone map;
//! - [`events`]: the whole event log.

pub mod events;
pub mod keys;
pub mod overview;
pub mod zones;

use super::popups::Popup;
use super::requests::Action;

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

    /// The tab `by` places further, wrapping around.
    pub fn step(self, by: isize) -> Tab {
        let n = Tab::ALL.len() as isize;
        Tab::ALL[(self.index() as isize + by).rem_euclid(n) as usize]
    }
}

/// What a tab asks of the app after a key.
#[derive(Debug)]
pub enum Reply {
    /// An action for the run loop.
    Act(Action),
    /// A popup over the view.
    Open(Popup),
    /// A message in the status line.
    Say {
        /// What to say.
        text: String,
        /// Whether it is an error.
        error: bool,
    },
}

impl Reply {
    /// A message in the status line.
    pub fn say(text: impl Into<String>, error: bool) -> Reply {
        Reply::Say {
            text: text.into(),
            error,
        }
    }
}
