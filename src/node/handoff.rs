//! Ground layer: the state of client handoffs in flight at both ends (the tables live in the
//! hub; the migration service drives them) and why a move did not happen.

use std::collections::HashMap;

use tokio::sync::oneshot;

use crate::mesh::MeshSecret;
use crate::proto::{ClientId, NodeId, OutboxWriter, SessionState, WireError};

/// How long a node remembers that a session expired, to tell a late resume so.
const EXPIRED_MEMORY_MS: u64 = 10 * 60 * 1000;

/// Most expired sessions remembered (beyond, the oldest are forgotten: a late resume is
/// then told the session is gone, which means the same to the client).
const EXPIRED_MEMORY: usize = 10_000;

/// The answer to a `Reclaim`: the session and the highest request id it read, or why not.
pub(super) type Reclaimed = Result<(SessionState, u64), WireError>;

/// What resuming sessions needs at this node: the key tokens are signed with, their issue
/// numbers, sessions that expired lately, and sessions asked of other nodes.
#[derive(Debug)]
pub(super) struct ResumeBook {
    /// Signs and checks resume tokens: the mesh secret (any node of the mesh checks them),
    /// or a random key of this run for a node alone.
    pub(super) key: MeshSecret,
    /// Last token issue number handed out (each welcome takes the next).
    next_nonce: u64,
    /// Sessions whose grace ended, with when (ms since the epoch).
    expired: HashMap<ClientId, u64>,
    /// Sessions asked of other nodes, waiting for their `Reclaimed`.
    pub(super) reclaims: HashMap<ClientId, oneshot::Sender<Reclaimed>>,
}

impl ResumeBook {
    /// A book signing with `key`.
    pub(super) fn new(key: MeshSecret) -> Self {
        ResumeBook {
            key,
            next_nonce: 0,
            expired: HashMap::new(),
            reclaims: HashMap::new(),
        }
    }

    /// The next token issue number.
    pub(super) fn nonce(&mut self) -> u64 {
        self.next_nonce += 1;
        self.next_nonce
    }

    /// Remembers that `client`'s session expired at `now_ms`.
    pub(super) fn expire(&mut self, client: ClientId, now_ms: u64) {
        if self.expired.len() >= EXPIRED_MEMORY {
            self.expired
                .retain(|_, at| at.saturating_add(EXPIRED_MEMORY_MS) > now_ms);
            if self.expired.len() >= EXPIRED_MEMORY {
                if let Some(oldest) = self
                    .expired
                    .iter()
                    .min_by_key(|(_, at)| **at)
                    .map(|(c, _)| *c)
                {
                    self.expired.remove(&oldest);
                }
            }
        }
        self.expired.insert(client, now_ms);
    }

    /// Whether `client`'s session expired here lately.
    pub(super) fn has_expired(&self, client: ClientId, now_ms: u64) -> bool {
        self.expired
            .get(&client)
            .is_some_and(|at| at.saturating_add(EXPIRED_MEMORY_MS) > now_ms)
    }

    /// Forgets an expiry (the client id is in use again).
    pub(super) fn forget(&mut self, client: ClientId) {
        self.expired.remove(&client);
    }
}

/// Why a migration did not happen. The client then stays where it was, unharmed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MigrateError {
    /// The client is not connected to this node.
    #[error("client {0} is not connected to this node")]
    NotHere(ClientId),
    /// The target is not a linked member of the mesh.
    #[error("node {0} is not a linked member of the mesh")]
    UnknownNode(NodeId),
    /// The client is already on the target.
    #[error("the client is already on that node")]
    SameNode,
    /// A migration of this client is already under way.
    #[error("client {0} is already moving")]
    Busy(ClientId),
    /// The target refused to prepare.
    #[error("the target refused: {0}")]
    Refused(WireError),
    /// The client did not arrive at the target in time; rolled back.
    #[error("the client did not reach the target in time; it stays here")]
    Timeout,
}

/// A migration out of this node.
#[derive(Debug)]
pub(super) struct Outgoing {
    /// The client moving away.
    pub(super) client: ClientId,
    /// Where to.
    pub(super) target: NodeId,
    /// Told the target's answer to `Prepare`.
    pub(super) prepared: Option<oneshot::Sender<Result<(), WireError>>>,
    /// Told how the move ended (handed over, or why not).
    pub(super) done: Option<oneshot::Sender<Result<(), MigrateError>>>,
}

/// A migration into this node, waiting for its client.
#[derive(Debug)]
pub(super) struct Incoming {
    /// The session as prepared (used if the source dies before the handover).
    pub(super) state: SessionState,
    /// The node the client comes from.
    pub(super) source: NodeId,
    /// The pending client's writer, started when it arrives.
    pub(super) writer: Option<OutboxWriter>,
    /// Told whether the source's `Transfer` was installed (`false`: the source no longer has
    /// the session).
    pub(super) transfer: Option<oneshot::Sender<bool>>,
    /// The transferred rows are in the store.
    pub(super) installed: bool,
}
