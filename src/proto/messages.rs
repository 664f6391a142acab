//! The client protocol's messages (ALPN `cloudmesh/1`).
//!
//! A client opens one bidirectional stream and sends [`ClientFrame::Hello`]; the node answers
//! [`ServerFrame::Welcome`] or [`ServerFrame::Refused`]. After that the client sends
//! [`ClientFrame::Request`]s, many in flight at once, and the node answers each with a
//! [`ServerFrame::Response`] carrying the same id, interleaved with
//! [`ServerFrame::Notify`] for subscribed changes. Everything travels on that one ordered
//! stream, which is what makes get+subscribe atomic and per-row order hold.
//!
//! Field order matters for postcard: new fields go at the end of a struct, and the version
//! fields of [`Hello`] stay first so any version of the node can read them.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{ClientId, Cursor, Key, KeySpec, NodeId, QueryPage, RowQuery, WireError};

/// Frames a client sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ClientFrame {
    /// First frame on the stream; nothing else is accepted before it.
    Hello(Hello),
    /// An operation; answered by a [`ServerFrame::Response`] with the same `id`.
    Request {
        /// Chosen by the client, echoed in the response; lets many requests be in flight.
        id: u64,
        /// What to do.
        op: Request,
    },
}

/// The version handshake.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// Lowest protocol version the client speaks.
    pub min_version: u16,
    /// Highest protocol version the client speaks.
    pub max_version: u16,
    /// Capability bits the client understands (none defined yet; reserved for growth).
    pub capabilities: u64,
    /// Client class for operator filter rules; `None` is the class `default`.
    pub class: Option<String>,
    /// Secret proving membership of `class`, when the operator configured one for it.
    pub token: Option<String>,
    /// Initial session blob, same limit as [`Request::SetSession`].
    pub session: Option<Bytes>,
    /// A redirect ticket from another node of the mesh: admit me here, under its client id.
    pub ticket: Option<Bytes>,
    /// Round-trip times the client measured to nodes, for placement.
    pub rtts: Vec<NodeRtt>,
    /// The client's position in the game world, for zone placement.
    pub position: Option<Position>,
    /// Resume a suspended session instead of starting a new one.
    pub resume: Option<ResumeRequest>,
}

/// A request to take back a session the client lost its connection to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeRequest {
    /// The session's client id.
    pub client: ClientId,
    /// The last resume token the session was given ([`Welcome::resume`]); each is honoured
    /// once.
    pub token: Bytes,
}

/// A round-trip time the client measured to a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRtt {
    /// The node.
    pub node: NodeId,
    /// Round trip, microseconds.
    pub micros: u32,
}

/// A position in the game world (units as in the zone config).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Position {
    /// East-west.
    pub x: f32,
    /// North-south.
    pub y: f32,
}

/// Where a client should be served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Placement {
    /// Here is fine.
    Stay,
    /// Another node is better: connect there and present the ticket.
    Redirect {
        /// The better node.
        node: NodeId,
        /// Its name.
        name: String,
        /// Where to reach it, internal first.
        addrs: Vec<std::net::SocketAddr>,
        /// Admits this client there, once, for a short while.
        ticket: Bytes,
        /// SHA-256 of its certificate, vouched for by the redirecting node (pin it).
        fingerprint: [u8; 32],
    },
}

impl Hello {
    /// A hello for this build's versions, class `default`, no session.
    pub fn current() -> Self {
        Hello {
            min_version: super::MIN_PROTOCOL_VERSION,
            max_version: super::PROTOCOL_VERSION,
            capabilities: 0,
            class: None,
            token: None,
            session: None,
            ticket: None,
            rtts: Vec::new(),
            position: None,
            resume: None,
        }
    }
}

/// Operations a client can ask of its node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Create or replace the caller's row under `key`.
    Post {
        /// Where.
        key: Key,
        /// The row's content.
        data: Bytes,
    },
    /// Delete the caller's rows under `keys`; keys it holds no row under are skipped.
    Release {
        /// Which rows.
        keys: Vec<Key>,
    },
    /// Read rows, optionally subscribing atomically with the snapshot.
    Get(GetQuery),
    /// Drop subscriptions on `keys` (for the given owners, or entirely when `None`).
    Unsubscribe {
        /// Which subscriptions, as they were given to get.
        keys: Vec<KeySpec>,
        /// `None` drops the whole subscription on each key; `Some` removes just these owners.
        owners: Option<Vec<ClientId>>,
    },
    /// Replace the caller's opaque session blob (travels on migration).
    SetSession {
        /// The blob; empty clears it.
        data: Bytes,
    },
    /// No-op round trip, for RTT measurement and liveness.
    Ping,
    /// The client moved in the game world; the node may hand it over to the zone's owner.
    SetPosition {
        /// Where it is now.
        position: Position,
    },
    /// Where should I be served? Answered with [`Reply::Placed`].
    Place {
        /// Round-trip times the client measured to nodes.
        rtts: Vec<NodeRtt>,
        /// The client's position in the game world.
        position: Option<Position>,
    },
    // New variants go last: postcard encodes the variant's index.
    /// Rows whose data matches a query, mesh-wide, in the query's order. Answered with
    /// [`Reply::Queried`].
    Query(RowQuery),
    /// Read this client's session blob (what the previous node or connection left).
    /// Answered with [`Reply::Session`].
    GetSession,
}

/// A get.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct GetQuery {
    /// Keys to read; each is one key or a whole primary.
    pub keys: Vec<KeySpec>,
    /// Only rows of these owners; `None` means any owner.
    pub owners: Option<Vec<ClientId>>,
    /// Continue after this row (from [`GetPage::next`]).
    pub start: Option<Cursor>,
    /// At most this many rows; 0 means as many as the node's page limits allow.
    pub limit: u32,
    /// Also subscribe to changes of `keys` (for `owners`), atomically with this snapshot.
    pub subscribe: bool,
}

/// Successful answers, one variant per [`Request`] kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    /// The row now has this version.
    Posted {
        /// Version of the row after the post.
        version: u64,
    },
    /// This many rows were deleted.
    Released {
        /// Count of rows that existed and were deleted.
        count: u32,
    },
    /// A page of rows.
    Rows(GetPage),
    /// This many subscriptions were dropped or narrowed.
    Unsubscribed {
        /// Count of subscriptions changed.
        count: u32,
    },
    /// The session blob was stored.
    SessionSet,
    /// Answer to [`Request::Ping`].
    Pong,
    /// Answer to [`Request::SetPosition`].
    PositionSet,
    /// Answer to [`Request::Place`].
    Placed {
        /// The decision.
        placement: Placement,
        /// Per-candidate scores, as an aligned table for humans.
        explain: String,
    },
    // New variants go last: postcard encodes the variant's index.
    /// Answer to [`Request::Query`].
    Queried(QueryPage),
    /// Answer to [`Request::GetSession`].
    Session {
        /// The blob (empty when none was set).
        data: Bytes,
    },
}

/// One page of a get's result.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct GetPage {
    /// Rows in `(primary, secondary, owner)` order.
    pub rows: Vec<Row>,
    /// `Some` when more rows match: pass it as [`GetQuery::start`] to continue.
    pub next: Option<Cursor>,
    /// Nodes that did not answer in time; their rows are missing from this page.
    pub incomplete: Vec<NodeId>,
}

/// A stored row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    /// Where it is stored.
    pub key: Key,
    /// The client that posted it; at most one row per `(key, owner)`.
    pub owner: ClientId,
    /// The node the owner is connected to.
    pub node: NodeId,
    /// Content, opaque to the mesh.
    pub data: Bytes,
    /// Increases on every change of this row (deletion included).
    pub version: u64,
    /// When it last changed, milliseconds since the Unix epoch (node clock).
    pub updated_at_ms: u64,
}

/// Why a row went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DeleteReason {
    /// Its owner released it.
    Released,
    /// Its owner disconnected (after the resume grace period, if any).
    Disconnected,
    /// The node holding it was lost from the mesh.
    NodeLost,
    /// The node holding it left the mesh on purpose (it was stopped) with the row still on
    /// it.
    NodeLeft,
    /// Its owner lost its connection and did not resume the session within the node's
    /// resume grace period.
    Expired,
}

/// A change pushed to subscribers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Notification {
    /// A row was created or replaced.
    Updated(Row),
    /// A row was deleted; `row.version` is the deletion's version, `row.data` the last data.
    Deleted {
        /// The row as it was, with the deletion's version.
        row: Row,
        /// Why.
        reason: DeleteReason,
    },
}

impl Notification {
    /// The row this change is about.
    pub fn row(&self) -> &Row {
        match self {
            Notification::Updated(row) | Notification::Deleted { row, .. } => row,
        }
    }
}

/// Limits the node enforces, told to the client at welcome so it can stay inside them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitsInfo {
    /// Largest frame payload accepted.
    pub max_frame: u32,
    /// Largest row data.
    pub max_row_bytes: u32,
    /// Most data a client may hold in rows at once.
    pub max_client_bytes: u64,
    /// Most bytes of rows in one get page.
    pub max_get_bytes: u32,
    /// Most key specs in one query.
    pub max_keys_per_query: u32,
    /// Most subscriptions one client may hold.
    pub max_subscriptions: u32,
    /// Largest session blob.
    pub max_session_bytes: u32,
}

/// The node's answer to a good [`Hello`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    /// Version chosen for this connection.
    pub version: u16,
    /// Capability bits both sides understand.
    pub capabilities: u64,
    /// The id of this client session.
    pub client_id: ClientId,
    /// The node's id.
    pub node_id: NodeId,
    /// The node's name.
    pub node_name: String,
    /// What the node enforces.
    pub limits: LimitsInfo,
    /// Whether the client should move to a better node right away.
    pub placement: Placement,
    /// How to take this session back after a lost connection; `None` when the node keeps
    /// no session after a disconnect (its resume grace is 0).
    pub resume: Option<ResumeOffer>,
    /// Set when this welcome resumed a suspended session.
    pub resumed: Option<ResumedInfo>,
}

/// What a client needs to resume its session after losing its connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeOffer {
    /// A single-use token bound to the client id and the mesh (any node of the mesh checks
    /// it); a new one comes with every welcome.
    pub token: Bytes,
    /// How long the node keeps the session after the connection is lost, milliseconds.
    pub grace_ms: u64,
}

/// What a resume found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumedInfo {
    /// The node the session was suspended on.
    pub from: NodeId,
    /// The highest request id the node had read from the lost connection: a request with a
    /// higher id was never applied; one at or below it was (its answer follows the welcome
    /// when the node still had it queued).
    pub last_request: u64,
    /// Whether notifications that fell into the gap were lost (too many to keep, or the
    /// session moved nodes): the client should read its subscriptions again.
    pub missed_lost: bool,
}

/// Frames a node sends to a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ServerFrame {
    /// The hello was accepted.
    Welcome(Welcome),
    /// The hello was refused (version, class token, node full); the connection closes next.
    Refused(WireError),
    /// Answer to the request with this id.
    Response {
        /// The request's id.
        id: u64,
        /// Its outcome.
        result: Result<Reply, WireError>,
    },
    /// A subscribed change.
    Notify(Notification),
    /// Move to another node: connect there with the ticket while this connection
    /// keeps working; this node hands the session over when the client arrives.
    Migrate {
        /// The target.
        node: NodeId,
        /// Its name.
        name: String,
        /// Where to reach it, internal first.
        addrs: Vec<std::net::SocketAddr>,
        /// Presents the session there, once.
        ticket: Bytes,
        /// SHA-256 of the target's certificate, vouched for by this node.
        fingerprint: [u8; 32],
    },
}

/// A client session as it moves between nodes: everything that makes it the same
/// client on the target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionState {
    /// Its id (unchanged by the move).
    pub client: ClientId,
    /// Its class, for filter rules.
    pub class: String,
    /// Its rows, with their versions (the target continues from them).
    pub rows: Vec<Row>,
    /// Its subscriptions: spec and owners filter (`None` = any owner).
    pub subs: Vec<(KeySpec, Option<Vec<ClientId>>)>,
    /// Its session blob.
    pub session: Bytes,
    /// The source's version clock: the target continues above it, so a row the client
    /// deleted there and creates again here still gets a higher version.
    pub clock: u64,
    /// What its token grants, when it connected with one.
    pub grant: Option<SessionGrant>,
}

/// What a client's signed token grants, as it moves with the session: the target enforces
/// the same rights and ends the session at the same expiry without seeing the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionGrant {
    /// The token's subject (`sub`).
    pub subject: String,
    /// When the token expires (its `exp`), milliseconds since the Unix epoch.
    pub expires_at_ms: u64,
    /// Its rights, claims filled in; `None` when the token had no `rights` claim (the
    /// class's filters alone decide).
    pub rights: Option<GrantRights>,
}

/// Key patterns a token grants, per operation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantRights {
    /// Post and release.
    pub post: Vec<KeyPattern>,
    /// Get.
    pub get: Vec<KeyPattern>,
    /// Subscribe.
    pub subscribe: Vec<KeyPattern>,
}

/// One granted key pattern.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyPattern {
    /// The primary key, or the prefix of primaries when `prefix`.
    pub primary: String,
    /// Whether `primary` is a prefix.
    pub prefix: bool,
    /// One secondary key; `None` covers every secondary.
    pub secondary: Option<u32>,
}
