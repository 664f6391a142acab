//! The console's event log: what the mesh reported and what the operator did, newest last,
//! bounded, with the filter and cursor the events tab moves. Shared: the overview shows its
//! newest entries (through the same filter), the events tab all of it.

use std::collections::VecDeque;

use super::list::ListView;

/// How many entries the event log keeps.
pub const LOG_CAPACITY: usize = 1_000;

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

/// The entries, their filter and cursor, and whether the cursor follows new entries.
#[derive(Debug)]
pub struct EventLog {
    /// Oldest first.
    pub entries: VecDeque<LogEntry>,
    /// Cursor and filter over `entries`.
    pub view: ListView,
    /// Whether the cursor follows new entries.
    pub follow: bool,
}

impl Default for EventLog {
    fn default() -> EventLog {
        EventLog {
            entries: VecDeque::new(),
            view: ListView::default(),
            follow: true,
        }
    }
}

impl EventLog {
    /// Adds an entry, dropping the oldest past [`LOG_CAPACITY`]; the cursor follows it, or
    /// stays on its entry.
    pub fn push(&mut self, at_ms: u64, kind: LogKind, text: String) {
        if self.entries.len() == LOG_CAPACITY {
            self.entries.pop_front();
        }
        self.entries.push_back(LogEntry { at_ms, kind, text });
        let was = self.view.selected;
        self.refilter();
        if self.follow {
            self.view.selected = self.view.visible.len().saturating_sub(1);
        } else if self.entries.len() == LOG_CAPACITY {
            // The oldest entry went: the cursor's entry moved up one.
            self.view.selected = was.saturating_sub(1);
        }
    }

    /// Recomputes which entries pass the filter. Entries have no identity to keep the
    /// cursor on: it stays where it was, or at the end while following.
    pub fn refilter(&mut self) {
        self.view.rebuild(
            self.entries.iter(),
            |e, f| e.text.to_lowercase().contains(f),
            |_| false,
        );
        if self.follow {
            self.view.selected = self.view.visible.len().saturating_sub(1);
        }
    }
}
