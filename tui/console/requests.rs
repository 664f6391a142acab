//! What the app asks the run loop to do: the [`Action`]s the operator chose and the periodic
//! [`Poll`]s that keep the listings fresh, with the [`PollClock`] that says when one is due.
//! The app only describes them; `run.rs` sends them on the admin connections.

use cloudmesh::admin::{Command, KeysQuery};

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
    /// The rows under `key` that match the key browser's query.
    Query {
        /// The primary key browsed.
        key: String,
        /// The query, as the bar's text split it.
        query: KeysQuery,
    },
}

impl Poll {
    /// The admin command for it.
    pub fn command(&self) -> Command {
        match self {
            Poll::Nodes => Command::Nodes,
            Poll::Clients { node } => Command::Clients {
                node: Some(node.clone()),
                session: false,
            },
            Poll::Primaries => Command::Keys {
                primary: None,
                secondary: None,
                query: None,
            },
            Poll::Query { key, query } => Command::Keys {
                primary: Some(key.clone()),
                secondary: None,
                query: Some(query.clone()),
            },
        }
    }
}

/// When one kind of poll was last asked, and whether its answer is still awaited: at most
/// one of each kind is in flight, so a slow daemon is not asked again and again.
#[derive(Debug, Default, Clone, Copy)]
pub struct PollClock {
    /// When it was last asked (`None`: never, or asked to ask again at once).
    pub last_ms: Option<u64>,
    /// Whether its answer is still awaited.
    pub in_flight: bool,
}

impl PollClock {
    /// Whether it is time to ask again, `every_ms` after the last time.
    pub fn due(&self, now_ms: u64, every_ms: u64) -> bool {
        !self.in_flight
            && self
                .last_ms
                .is_none_or(|l| now_ms.saturating_sub(l) >= every_ms)
    }

    /// Counts it as asked now.
    pub fn start(&mut self, now_ms: u64) {
        self.in_flight = true;
        self.last_ms = Some(now_ms);
    }

    /// The next tick asks again, whatever the interval says.
    pub fn ask_soon(&mut self) {
        self.last_ms = None;
    }
}
