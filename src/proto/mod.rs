//! The wire: messages, framing, typed errors, and the batched frame writer shared by the
//! client, peer and admin protocols. This module depends on nothing else in the crate (an
//! invariant kept so that the wire format can only change here).

mod codec;
mod error;
mod ids;
mod messages;
mod outbox;
mod peer;
mod query;

pub use codec::{encode_frame, encode_to_bytes, CodecError, FrameDecoder, FrameReader};
pub use error::{CloseCode, ResumeRefusal, WireError};
pub use ids::{ClientId, Cursor, Key, KeySpec, NodeId, ParseKeyError};
pub use messages::{
    ClientFrame, DeleteReason, GetPage, GetQuery, GrantRights, Hello, KeyPattern, LimitsInfo,
    NodeRtt, Notification, Placement, Position, Reply, Request, ResumeOffer, ResumeRequest,
    ResumedInfo, Row, ServerFrame, SessionGrant, SessionState, Welcome,
};
pub use outbox::{outbox, Lagged, Outbox, OutboxWriter};
pub use peer::{
    AuthFrame, LoadInfo, MemberInfo, NodeState, NotificationFrame, PeerFrame, ALPN_PEER,
    PEER_PROTOCOL_VERSION,
};
pub use query::{CmpOp, Point, QueryCursor, QueryPage, RowQuery, SortKey, Term, Value};

/// ALPN protocol id spoken by game clients (and `cloudctl post/get/watch`).
pub const ALPN_CLIENT: &[u8] = b"cloudmesh/1";

/// The highest client protocol version this build speaks.
pub const PROTOCOL_VERSION: u16 = 1;

/// The lowest client protocol version this build still accepts.
pub const MIN_PROTOCOL_VERSION: u16 = 1;

/// Default UDP port of a node.
pub const DEFAULT_PORT: u16 = 7946;

/// Default maximum size of one frame's payload.
pub const DEFAULT_MAX_FRAME: usize = 1 << 20;

/// Longest primary key, in bytes of UTF-8.
pub const MAX_PRIMARY_LEN: usize = 255;

/// Primary keys with this prefix belong to the mesh itself; only nodes write them.
pub const RESERVED_PREFIX: &str = "cloud.";
