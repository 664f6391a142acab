//! Typed errors that cross the wire, and QUIC close codes.

use serde::{Deserialize, Serialize};

use super::NodeId;

/// An error a node returns for a request. Every rejection is one of these: nothing is
/// silently dropped.
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
    /// A query is malformed or over a bound (syntax, nesting, sizes, a cursor of another
    /// query's shape); the reason names the problem.
    #[error("invalid query: {reason}")]
    InvalidQuery {
        /// What is wrong.
        reason: String,
    },
    /// A resume was refused; the session cannot be taken back with this token.
    #[error("resume refused: {0}")]
    ResumeRefused(ResumeRefusal),
}

/// Why a resume token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ResumeRefusal {
    /// Not a token of this mesh (forged, damaged, or from another mesh).
    #[error("the token is not valid for this mesh")]
    Invalid,
    /// Issued to another client id than the one presented.
    #[error("the token belongs to another client")]
    WrongClient,
    /// An older token of the session, or one already used.
    #[error("the token was already used")]
    Used,
    /// The session's grace period ended; its rows were deleted.
    #[error("the session expired")]
    Expired,
    /// The session is not known where the token says it is (the node restarted or is
    /// gone, or the session ended).
    #[error("the session is gone")]
    Gone,
    /// This node keeps no sessions (resume grace 0, or not part of a mesh for a token
    /// from another node).
    #[error("this node does not resume sessions")]
    Disabled,
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
    /// The client did not read its notifications fast enough (slow consumer).
    SlowConsumer = 5,
    /// The client kept sending far over its rate limit.
    Flood = 6,
    /// The node was full.
    ServerFull = 7,
    /// Authentication or class token failed.
    Forbidden = 8,
    // New codes go last.
    /// The client's signed token expired (its `exp` passed): connect again with a new one.
    TokenExpired = 9,
    /// The client did not follow a `Migrate` instruction in time (a drain cannot wait for
    /// it): its session is suspended, to be resumed on another node.
    MigrateIgnored = 10,
    /// Another connection resumed this session.
    Superseded = 11,
}

impl CloseCode {
    /// All codes, for mapping numbers back.
    const ALL: [CloseCode; 12] = [
        CloseCode::Normal,
        CloseCode::Protocol,
        CloseCode::FrameTooLarge,
        CloseCode::UnsupportedVersion,
        CloseCode::Shutdown,
        CloseCode::SlowConsumer,
        CloseCode::Flood,
        CloseCode::ServerFull,
        CloseCode::Forbidden,
        CloseCode::TokenExpired,
        CloseCode::MigrateIgnored,
        CloseCode::Superseded,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_map_back_and_keep_their_numbers() {
        for code in CloseCode::ALL {
            assert_eq!(CloseCode::from_u32(code.to_u32()), Some(code));
        }
        // Numbers are the wire: a code keeps its number, new ones come after.
        assert_eq!(CloseCode::Forbidden.to_u32(), 8);
        assert_eq!(CloseCode::TokenExpired.to_u32(), 9);
        assert_eq!(CloseCode::MigrateIgnored.to_u32(), 10);
        assert_eq!(CloseCode::from_u32(12), None);
    }
}
