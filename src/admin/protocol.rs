//! The admin protocol's messages: what `cloudctl` (and the console) ask a node over its
//! Unix socket, and what it answers. JSON, so scripts and humans can read it, and versioned:
//! every request names a version (the oldest that carries its command, see
//! [`AdminRequest::new`]), and a node refuses a version outside
//! [`ADMIN_PROTOCOL_MIN_VERSION`]..=[`ADMIN_PROTOCOL_VERSION`] with
//! [`AdminError::UnsupportedVersion`] instead of guessing.
//!
//! One request at a time per connection. Most commands get exactly one response. Two stream:
//! `drain --wait` (`Progress` frames, then `Drained` or an error) and `watch`
//! (a `Snapshot`, then `Event`s until the client hangs up). [`Response::is_final`] says which
//! frame ends a command.

use serde::{Deserialize, Serialize};

/// The admin protocol version this build speaks: 2 added queries to `keys`.
pub const ADMIN_PROTOCOL_VERSION: u16 = 2;

/// The oldest version a node of this build still answers (version 1 is version 2 without
/// queries, so its requests mean the same).
pub const ADMIN_PROTOCOL_MIN_VERSION: u16 = 1;

/// Largest request a node reads: a command is a few names, never more.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// Largest response frame: a key listing or a snapshot of a big mesh, bounded.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// Most rows a `keys PRIMARY` answer lists (it says `truncated` beyond).
pub const MAX_LISTED_ROWS: usize = 10_000;

/// One request: the protocol version and the command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdminRequest {
    /// [`ADMIN_PROTOCOL_VERSION`] of the asking side.
    pub version: u16,
    /// What to do.
    pub command: Command,
}

impl AdminRequest {
    /// A request naming the oldest protocol version that carries its command, so a node of
    /// an older release answers what it can and refuses the rest by version: a node of
    /// version 1 would ignore a query it does not know and list every row, which would be
    /// taken for the matches.
    pub fn new(command: Command) -> Self {
        let version = match &command {
            Command::Keys { query: Some(_), .. } => 2,
            _ => ADMIN_PROTOCOL_MIN_VERSION,
        };
        AdminRequest { version, command }
    }
}

/// What an operator can ask. Commands naming a node run on that node (forwarded over the
/// authenticated mesh when it is not the one serving the socket).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// This node and the mesh in brief.
    Status,
    /// Every member of the mesh with its state and load.
    Nodes,
    /// Clients, connected and suspended (lost their connection, session kept for them to
    /// resume): of one node, or of every node.
    Clients {
        /// A node name; `None` for the whole mesh.
        #[serde(default)]
        node: Option<String>,
        /// Also show each client's session blob (it may hold what a game keeps private).
        #[serde(default)]
        session: bool,
    },
    /// Primary keys with row counts (no `primary`), or the rows under one key.
    Keys {
        /// The primary key to list rows of.
        #[serde(default)]
        primary: Option<String>,
        /// With `primary`: only this secondary key.
        #[serde(default)]
        secondary: Option<u32>,
        /// With `primary`: only the rows whose data matches, in the query's order
        /// (evaluated mesh-wide by the nodes that hold the rows, as `cloudctl get --where`).
        /// Absent in requests from before queries, which list every row.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        query: Option<KeysQuery>,
    },
    /// Drains a node: it takes no new clients and moves its clients away.
    Drain {
        /// The node's name.
        node: String,
        /// Stream progress until the drain ends instead of answering once it started.
        #[serde(default)]
        wait: bool,
    },
    /// Returns a draining or drained node to service.
    Undrain {
        /// The node's name.
        node: String,
    },
    /// Moves one client to another node, make-before-break.
    Migrate {
        /// The client id (hex, as `clients` lists it).
        client: String,
        /// The target node's name.
        to: String,
    },
    /// Runs one rebalance round now.
    Rebalance,
    /// Where a new client would be placed, with every candidate's score.
    Place {
        /// The client's world position, if it has one.
        #[serde(default)]
        position: Option<(f32, f32)>,
    },
    /// A snapshot of the mesh, then its events as they happen, until the client hangs up.
    Watch {
        /// A primary key whose row changes to include (the console's key browser).
        #[serde(default)]
        key: Option<String>,
    },
}

/// A query over the rows `keys PRIMARY` lists, in the text syntax of `cloudctl get`'s
/// `--where`, `--sort` and `--near` (the node parses it, so every client of the admin
/// socket gets the same syntax and the same errors).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeysQuery {
    /// The filter: `region = "eu" and players < 64`.
    #[serde(default, rename = "where", skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// The order: `field [asc|desc], ...` (`-field` is descending).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort: Option<String>,
    /// Rows whose `x`, `y` (and `z`) lie within a radius: `X,Y,R` or `X,Y,Z,R`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub near: Option<String>,
    /// At most this many rows (never more than [`MAX_LISTED_ROWS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// One response frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Response {
    /// Answer to `status`.
    Status(StatusInfo),
    /// Answer to `nodes`.
    Nodes {
        /// Every member, oldest first.
        nodes: Vec<NodeInfo>,
    },
    /// Answer to `clients`.
    Clients {
        /// The clients, by node name then id.
        clients: Vec<ClientInfo>,
        /// Nodes that did not answer in time (their clients are missing).
        incomplete: Vec<String>,
    },
    /// Answer to `keys` without a primary key.
    Primaries {
        /// Primary keys in order, with their row counts mesh-wide.
        primaries: Vec<PrimaryInfo>,
        /// Nodes that did not answer in time.
        incomplete: Vec<String>,
    },
    /// Answer to `keys PRIMARY[/SECONDARY]`.
    Rows {
        /// Rows in `(secondary, owner)` order.
        rows: Vec<RowInfo>,
        /// More rows exist than [`MAX_LISTED_ROWS`].
        truncated: bool,
        /// Nodes that did not answer in time.
        incomplete: Vec<String>,
    },
    /// A drain began (the answer to `drain` without `wait`; with `wait` the first frame is a
    /// `Progress` with nothing moved yet).
    DrainStarted {
        /// The draining node.
        node: String,
        /// Clients it had when it began.
        clients: usize,
    },
    /// A drain under way (only with `wait`).
    Progress {
        /// The draining node.
        node: String,
        /// Clients moved so far.
        moved: usize,
        /// Clients still there.
        remaining: usize,
    },
    /// A drain finished: the node is Drained (only with `wait`).
    Drained {
        /// The node.
        node: String,
        /// Clients moved.
        moved: usize,
    },
    /// The node is Active again.
    Undrained {
        /// The node.
        node: String,
    },
    /// A client moved.
    Migrated {
        /// The client.
        client: String,
        /// Where it was.
        from: String,
        /// Where it is now.
        to: String,
    },
    /// Outcome of a rebalance round.
    Rebalanced {
        /// The move the host asked for; `None` when the mesh is within the threshold.
        moved: Option<RebalanceMove>,
    },
    /// Answer to `place`.
    Placement(PlaceReport),
    /// First frame of `watch`.
    Snapshot(Snapshot),
    /// Later frames of `watch`.
    Event(EventFrame),
    /// The command failed.
    Error(AdminError),
}

impl Response {
    /// Whether this frame ends its command (`Progress`, `Snapshot` and `Event` do not; after
    /// a final frame the connection takes the next request).
    pub fn is_final(&self) -> bool {
        !matches!(
            self,
            Response::Progress { .. } | Response::Snapshot(_) | Response::Event(_)
        )
    }
}

/// Why a command failed. Typed, so scripts can tell "no such node" from "node unreachable".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum AdminError {
    /// The request named a protocol version this node does not speak.
    #[error("admin protocol version {requested} is not supported (this node speaks {supported}); use a cloudctl of the same release as cloudd")]
    UnsupportedVersion {
        /// What the request named.
        requested: u16,
        /// What this node speaks.
        supported: u16,
    },
    /// The request is not valid JSON for any command.
    #[error("bad request: {reason}")]
    BadRequest {
        /// What was wrong.
        reason: String,
    },
    /// The request is larger than [`MAX_REQUEST_BYTES`].
    #[error("request of {size} bytes is over the {max} byte limit")]
    TooLarge {
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// No member of the mesh has that name.
    #[error("no node named {name:?} in the mesh (known: {})", known.join(", "))]
    UnknownNode {
        /// The name asked for.
        name: String,
        /// Names of every member.
        known: Vec<String>,
    },
    /// No node serves that client.
    #[error("no node serves client {client}")]
    UnknownClient {
        /// The id asked for.
        client: String,
    },
    /// The node named could not be asked (no link, or it did not answer in time).
    #[error("node {node} did not answer: {reason}")]
    Unavailable {
        /// The node.
        node: String,
        /// Why.
        reason: String,
    },
    /// The query of `keys` is malformed or over a limit; `part` names what is wrong
    /// (`where`, `sort`, `near`, or `query` for the whole).
    #[error("invalid query ({part}): {reason}")]
    InvalidQuery {
        /// Which part of the query.
        part: String,
        /// What is wrong, and where in the text.
        reason: String,
    },
    /// The command ran and failed (a drain that could not finish, a refused migration).
    #[error("{reason}")]
    Failed {
        /// What went wrong, in the node's words.
        reason: String,
    },
}

/// A node and the mesh in brief (`cloudctl status`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusInfo {
    /// This node.
    pub node: NodeInfo,
    /// cloudd's version.
    pub version: String,
    /// Seconds since this node started.
    pub uptime_secs: u64,
    /// UDP address it listens on.
    pub listen: String,
    /// What clients pin.
    pub fingerprint: String,
    /// The host's name.
    pub host: String,
    /// Members the node knows, itself included.
    pub members: usize,
    /// Members it has a live link to.
    pub linked: usize,
    /// Subscriptions held here.
    pub subscriptions: usize,
    /// Bytes of row data stored here.
    pub data_bytes: u64,
}

/// One member of the mesh, as the answering node sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Name.
    pub name: String,
    /// This run's id (hex).
    pub id: String,
    /// Addresses it advertises.
    pub addresses: Vec<String>,
    /// Joining, Active, Draining or Drained.
    pub state: String,
    /// Whether it is the mesh host.
    pub host: bool,
    /// Whether it is the node answering.
    pub local: bool,
    /// Whether the answering node has a live link to it (always true for itself).
    pub linked: bool,
    /// Connected clients (at its last load report).
    pub clients: u32,
    /// Most clients it takes.
    pub capacity: u32,
    /// Rows stored there.
    pub rows: u64,
    /// Machine CPU use, percent.
    pub cpu_percent: f32,
    /// Resident memory of the node process, bytes.
    pub memory_bytes: u64,
    /// Client requests handled per second.
    pub msgs_per_sec: f32,
}

/// One connected client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientInfo {
    /// Client id (hex): what `migrate` takes.
    pub id: String,
    /// The node serving it.
    pub node: String,
    /// Its address as the node sees it.
    pub address: String,
    /// Round-trip time measured by QUIC, milliseconds.
    pub rtt_ms: f64,
    /// The zone cell its last position lies in, when zones are on and it reported one.
    pub zone: Option<(u32, u32)>,
    /// Its last reported position.
    pub position: Option<(f32, f32)>,
    /// Rows it holds.
    pub rows: usize,
    /// When it connected to this node (after a migration: when it arrived), ms since epoch.
    pub connected_at_ms: u64,
    /// Set while its connection is lost and its session kept: when the session expires
    /// (its rows are deleted), ms since epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspended_until_ms: Option<u64>,
    /// Size of its session blob, bytes.
    #[serde(default)]
    pub session_bytes: usize,
    /// Its session blob as text or hex (see `session_encoding`), when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// `utf8` or `hex`, with `session`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_encoding: Option<String>,
}

/// A primary key and how many rows it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrimaryInfo {
    /// The primary key.
    pub primary: String,
    /// Rows under it, mesh-wide.
    pub rows: usize,
    /// Names of the nodes holding them.
    pub nodes: Vec<String>,
}

/// One row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowInfo {
    /// Primary key.
    pub primary: String,
    /// Secondary key.
    pub secondary: u32,
    /// Owning client (hex).
    pub owner: String,
    /// Node of the owner.
    pub node: String,
    /// Row version.
    pub version: u64,
    /// When it last changed, ms since the Unix epoch.
    pub updated_at_ms: u64,
    /// The data as text when it is printable UTF-8, else as hex.
    pub data: String,
    /// `"utf8"` or `"hex"`: how `data` is written.
    pub encoding: String,
    /// Size of the data in bytes.
    pub size: usize,
}

impl RowInfo {
    /// Renders `data` as text when it is printable UTF-8, else hex.
    pub fn encode_data(data: &[u8]) -> (String, String) {
        match std::str::from_utf8(data) {
            Ok(s) if s.chars().all(|c| !c.is_control() || c == '\n' || c == '\t') => {
                (s.to_owned(), "utf8".to_owned())
            }
            _ => (hex::encode(data), "hex".to_owned()),
        }
    }
}

/// A rebalance move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebalanceMove {
    /// The busiest node.
    pub from: String,
    /// The idlest node.
    pub to: String,
    /// Clients asked to move.
    pub count: u32,
}

/// Where a new client would go and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlaceReport {
    /// The chosen node, `None` when none may take a client.
    pub choice: Option<String>,
    /// Every candidate, best first.
    pub candidates: Vec<CandidateInfo>,
    /// The same as a table, as the node renders it.
    pub explain: String,
}

/// One candidate's score terms (already weighted; lower total is better).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateInfo {
    /// Node name.
    pub name: String,
    /// Whether it may take the client.
    pub eligible: bool,
    /// Why not, when not.
    pub reason: Option<String>,
    /// Load term.
    pub load: Option<f64>,
    /// CPU term.
    pub cpu: Option<f64>,
    /// RTT term.
    pub rtt: Option<f64>,
    /// Zone term.
    pub zone: Option<f64>,
    /// Sum; `None` when not eligible (infinite).
    pub total: Option<f64>,
}

/// The first frame of `watch`: everything the console draws.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The answering node.
    pub status: StatusInfo,
    /// Every member.
    pub nodes: Vec<NodeInfo>,
    /// Zone ownership, when zones are on and published.
    pub zones: Option<ZoneInfo>,
    /// Rows under the browsed key, when one was given.
    pub rows: Option<Vec<RowInfo>>,
}

/// Zone ownership as names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZoneInfo {
    /// Side of a cell, world units.
    pub cell_size: f32,
    /// Cells along x.
    pub width: u32,
    /// Cells along y.
    pub height: u32,
    /// Owner name of each cell, row-major.
    pub owners: Vec<String>,
}

/// One event of `watch`, stamped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventFrame {
    /// When the answering node saw it, ms since the Unix epoch.
    pub at_ms: u64,
    /// What happened.
    pub event: Event,
}

/// What `watch` reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// A link to a node came up.
    NodeUp {
        /// The node.
        node: String,
    },
    /// A node was lost.
    NodeLost {
        /// The node.
        node: String,
        /// Its rows local subscribers had seen (now deleted as `NodeLost`).
        rows: usize,
    },
    /// A node left the mesh on purpose (it was stopped).
    NodeLeft {
        /// The node.
        node: String,
        /// Its rows local subscribers had seen (now deleted as `NodeLeft`).
        rows: usize,
    },
    /// A node's state changed.
    StateChanged {
        /// The node.
        node: String,
        /// Its state.
        state: String,
    },
    /// The host changed.
    HostChanged {
        /// Before.
        old: String,
        /// Now.
        new: String,
    },
    /// A node's periodic load report.
    Load(NodeInfo),
    /// A drain's progress.
    DrainProgress {
        /// The draining node.
        node: String,
        /// Clients moved so far.
        moved: usize,
        /// Clients still there.
        remaining: usize,
    },
    /// A client moved between nodes.
    Migrated {
        /// The client.
        client: String,
        /// Where it was.
        from: String,
        /// Where it is now.
        to: String,
    },
    /// Zone ownership changed.
    Zones(ZoneInfo),
    /// A row under the browsed key changed.
    RowChanged(RowInfo),
    /// A row under the browsed key went away.
    RowDeleted {
        /// The row as it was.
        row: RowInfo,
        /// Released, Disconnected, NodeLost or NodeLeft.
        reason: String,
    },
    /// The watcher fell behind and missed events; a fresh `Snapshot` follows.
    Lagged {
        /// How many were missed.
        missed: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_plain_json() {
        let r = AdminRequest::new(Command::Drain {
            node: "node-3".into(),
            wait: true,
        });
        let json = serde_json::to_string(&r).expect("encode");
        assert_eq!(
            json,
            r#"{"version":1,"command":{"cmd":"drain","node":"node-3","wait":true}}"#
        );
        let back: AdminRequest =
            serde_json::from_str(r#"{"version":1,"command":{"cmd":"drain","node":"n"}}"#)
                .expect("decode with default");
        assert_eq!(
            back.command,
            Command::Drain {
                node: "n".into(),
                wait: false
            }
        );
    }

    #[test]
    fn only_a_query_needs_version_2() {
        let plain = AdminRequest::new(Command::Keys {
            primary: Some("servers".into()),
            secondary: None,
            query: None,
        });
        assert_eq!(plain.version, 1, "an older node still answers it");
        let asked = AdminRequest::new(Command::Keys {
            primary: Some("servers".into()),
            secondary: None,
            query: Some(KeysQuery {
                filter: Some("players < 10".into()),
                ..KeysQuery::default()
            }),
        });
        assert_eq!(
            asked.version, 2,
            "an older node refuses it rather than ignore the query"
        );
        assert_eq!(AdminRequest::new(Command::Status).version, 1);
    }

    #[test]
    fn keys_requests_from_before_queries_still_parse() {
        let old: Command = serde_json::from_str(r#"{"cmd":"keys","primary":"servers"}"#)
            .expect("decode without a query");
        assert_eq!(
            old,
            Command::Keys {
                primary: Some("servers".into()),
                secondary: None,
                query: None
            }
        );
        // A plain listing is written as before, so an older peer reads it.
        let json = serde_json::to_string(&old).expect("encode");
        assert_eq!(
            json,
            r#"{"cmd":"keys","primary":"servers","secondary":null}"#
        );
        let asked: Command = serde_json::from_str(
            r#"{"cmd":"keys","primary":"servers","query":{"where":"players < 10","limit":5}}"#,
        )
        .expect("decode with a query");
        let Command::Keys { query: Some(q), .. } = asked else {
            panic!("no query in {asked:?}");
        };
        assert_eq!(q.filter.as_deref(), Some("players < 10"));
        assert_eq!((q.sort, q.near, q.limit), (None, None, Some(5)));
    }

    #[test]
    fn which_frames_end_a_command() {
        assert!(Response::Error(AdminError::Failed { reason: "x".into() }).is_final());
        assert!(Response::Drained {
            node: "n".into(),
            moved: 1
        }
        .is_final());
        assert!(!Response::Progress {
            node: "n".into(),
            moved: 1,
            remaining: 2
        }
        .is_final());
        assert!(!Response::Event(EventFrame {
            at_ms: 0,
            event: Event::Lagged { missed: 1 }
        })
        .is_final());
    }

    #[test]
    fn data_is_text_when_printable_else_hex() {
        assert_eq!(
            RowInfo::encode_data(b"hello"),
            ("hello".into(), "utf8".into())
        );
        assert_eq!(
            RowInfo::encode_data(&[0, 1, 0xff]),
            ("0001ff".into(), "hex".into())
        );
    }

    #[test]
    fn unknown_node_lists_the_known_names() {
        let e = AdminError::UnknownNode {
            name: "node-9".into(),
            known: vec!["node-1".into(), "node-2".into()],
        };
        assert_eq!(
            e.to_string(),
            "no node named \"node-9\" in the mesh (known: node-1, node-2)"
        );
    }
}
