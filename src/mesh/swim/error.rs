//! Why the membership core refused an input.

use crate::proto::NodeId;

/// An input the membership core did not accept. None of these leaves the core in a broken
/// state: the node logs them (at debug level for datagrams, which may be junk) and goes on.
#[derive(Debug, thiserror::Error)]
pub enum SwimError {
    /// A datagram with no bytes.
    #[error("empty membership datagram")]
    Empty,
    /// A datagram of a kind this build does not know (a newer peer, or junk).
    #[error("unknown membership datagram kind {0:#04x}")]
    UnknownKind(u8),
    /// A datagram whose header cannot be read, or a wildcard datagram that is not an
    /// announce.
    #[error("malformed membership datagram: {0}")]
    Malformed(String),
    /// A datagram whose sender is not the node its authenticated link belongs to.
    #[error("membership datagram claims to come from {claimed:?} over the link of {link:?}")]
    SenderMismatch {
        /// The sender the datagram names.
        claimed: NodeId,
        /// The node the link authenticated.
        link: NodeId,
    },
    /// This node's own wildcard announce came back: a seed address leads to this node.
    #[error("a seed address leads back to this node")]
    OwnAnnounce,
    /// This node's identity is too large for a datagram to carry two of them and updates.
    #[error("this node's identity takes {size} bytes encoded; at most {max} leave room for membership updates (shorten the name or the address list)")]
    IdentityTooLarge {
        /// Encoded size.
        size: usize,
        /// Most accepted.
        max: usize,
    },
    /// Settings that cannot work together.
    #[error("invalid membership settings: {0}")]
    Config(&'static str),
    /// This node has left the mesh; the core takes no more input.
    #[error("this node has left the mesh")]
    Left,
    /// The identity was changed so many times its generation ran out; restart the node.
    #[error("identity generation exhausted")]
    GenerationExhausted,
    /// foca refused the input or failed to encode.
    #[error("membership protocol: {0}")]
    Protocol(#[from] foca::Error),
}
