//! Typed errors that cross the wire, and QUIC close codes.

use serde::{Deserialize, Serialize};

use super::NodeId;

/// An error a node returns for a request. Every rejection is one of these: nothing is
/// silently dropped (§2, §3.6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum WireError {
    /// The caller's stored bytes would exceed its quota.
    #[error("quota exceeded: this client would hold {would_hold} bytes, the limit is {limit}")]
    QuotaExceeded {
        /// The quota.
        limit: u64,
        /// What the client would have held had the post been accepted.
        would_hold: u64,
    },
    /// A filter rule or the reserved `cloud.` prefix denies this.
    #[error("forbidden: {reason}")]
    Forbidden {
        /// Which rule.
        reason: String,
    },
    /// Something is bigger than its limit.
    #[error("{what} is too large: {size} bytes, the limit is {max}")]
    TooLarge {
        /// What was too large (row, session, response, frame).
        what: String,
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// A query names more keys than allowed.
    #[error("too many keys in one query: {count}, the limit is {max}")]
    TooManyKeys {
        /// Keys given.
        count: u32,
        /// The limit.
        max: u32,
    },
    /// The client would hold more subscriptions than allowed.
    #[error("too many subscriptions: the limit is {max}")]
    TooManySubscriptions {
        /// The limit.
        max: u32,
    },
    /// The client sends requests faster than its allowed rate.
    #[error("rate limited: more than {per_sec} requests per second")]
    RateLimited {
        /// The allowed rate.
        per_sec: u32,
    },
    /// A key is malformed (empty or over-long primary).
    #[error("invalid key: {reason}")]
    InvalidKey {
        /// What is wrong.
        reason: String,
    },
    /// The thing asked for does not exist.
    #[error("not found")]
    NotFound,
    /// The node is draining and takes no new work of this kind.
    #[error("node is draining")]
    Draining,
    /// A node needed for the answer is unavailable.
    #[error("node {node} is unavailable")]
    Unavailable {
        /// Which node.
        node: NodeId,
    },
    /// No protocol version in common.
    #[error(
        "unsupported protocol version: client speaks {client_min}..={client_max}, \
         node speaks {node_min}..={node_max}"
    )]
    UnsupportedVersion {
        /// Client's lowest.
        client_min: u16,
        /// Client's highest.
        client_max: u16,
        /// Node's lowest.
        node_min: u16,
        /// Node's highest.
        node_max: u16,
    },
    /// The node holds its maximum number of clients.
    #[error("node is full: it serves at most {max} clients")]
    ServerFull {
        /// The limit.
        max: u32,
    },
    /// The peer broke the protocol.
    #[error("protocol error: {reason}")]
    Protocol {
        /// What was wrong.
        reason: String,
    },
    // New variants go last: postcard encodes the variant's index.
    /// A query names more owners than allowed, or a subscription would take the client's
    /// subscriptions past the owners they may name in total.
    #[error("too many owners: {count}, the limit is {max}")]
    TooManyOwners {
        /// Owners given (or that the client's subscriptions would name in total).
        count: u32,
        /// The limit.
        max: u32,
    },
}

/// QUIC application close codes. The reason phrase carries the human text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum CloseCode {
    /// Orderly close by either side.
    Normal = 0,
    /// A frame did not decode or came out of order.
    Protocol = 1,
    /// A frame's length prefix was over the maximum.
    FrameTooLarge = 2,
    /// No protocol version in common.
    UnsupportedVersion = 3,
    /// The node is shutting down.
    Shutdown = 4,
    /// The client did not read its notifications fast enough (§2 slow consumer).
    SlowConsumer = 5,
    /// The client kept sending far over its rate limit.
    Flood = 6,
    /// The node was full.
    ServerFull = 7,
    /// Authentication or class token failed.
    Forbidden = 8,
}

impl CloseCode {
    /// All codes, for mapping numbers back.
    const ALL: [CloseCode; 9] = [
        CloseCode::Normal,
        CloseCode::Protocol,
        CloseCode::FrameTooLarge,
        CloseCode::UnsupportedVersion,
        CloseCode::Shutdown,
        CloseCode::SlowConsumer,
        CloseCode::Flood,
        CloseCode::ServerFull,
        CloseCode::Forbidden,
    ];

    /// The code as sent in a QUIC CONNECTION_CLOSE.
    pub fn to_u32(self) -> u32 {
        self as u32
    }

    /// Maps a received code back; unknown codes give `None`.
    pub fn from_u32(code: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.to_u32() == code)
    }
}
