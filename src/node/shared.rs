//! Ground layer: what every task of a node shares (configuration, the hub behind its lock,
//! the endpoint, the tables of answers awaited from peers, counters).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::{mpsc, oneshot, watch, Notify};

use super::hub::Hub;
use super::quiet::Quiet;
use crate::admin::protocol::Response;
use crate::config::NodeConfig;
use crate::mesh::AuthLimiter;
use crate::metrics::Counters;
use crate::proto::{GetPage, NodeId};

/// A get this node sent to a peer, waiting for its answer.
#[derive(Debug)]
pub(super) struct PendingGet {
    /// The node asked (its loss ends the wait).
    pub(super) node: NodeId,
    /// Where its page goes; `None` when it answered with an error.
    pub(super) tx: oneshot::Sender<Option<GetPage>>,
}

/// An admin command forwarded to a peer, waiting for its replies.
#[derive(Debug)]
pub(super) struct PendingCall {
    /// The node asked (its loss ends the call).
    pub(super) node: NodeId,
    /// Where its answers go.
    pub(super) tx: mpsc::UnboundedSender<Response>,
}

/// State shared by the accept loop, every connection task and every peer link.
#[derive(Debug)]
pub(super) struct Shared {
    /// This run's id.
    pub(super) id: NodeId,
    /// The configuration the node started with.
    pub(super) config: NodeConfig,
    /// Everything a change touches, under one lock (see [`Hub`]).
    pub(super) hub: Mutex<Hub>,
    /// To dial peers from the same UDP port.
    pub(super) endpoint: quinn::Endpoint,
    /// Client config for peer links; `Some` only with a mesh secret.
    pub(super) peer_client: Option<quinn::ClientConfig>,
    /// Failed peer authentications per address, to refuse a guesser before any work.
    pub(super) auth_limiter: AuthLimiter,
    /// Ids for gets and admin commands sent to peers.
    pub(super) next_request: AtomicU64,
    /// Gets sent to peers, by id.
    pub(super) pending: Mutex<HashMap<u64, PendingGet>>,
    /// Flips to true at shutdown; background tasks stop.
    pub(super) shutdown: watch::Receiver<bool>,
    /// Client requests handled since start (for msgs/s in load reports).
    pub(super) requests: AtomicU64,
    /// Metric counters, bumped where things happen (relaxed atomics, no lock).
    pub(super) counters: Arc<Counters>,
    /// Admin commands sent to peers, waiting for their replies.
    pub(super) admin_calls: Mutex<HashMap<u64, PendingCall>>,
    /// When the node started, for `status`'s uptime.
    pub(super) started: std::time::Instant,
    /// Certificate fingerprint, for `status`.
    pub(super) fingerprint: String,
    /// Set while an admin-started drain runs, so a second one is refused, not doubled.
    pub(super) drain_running: AtomicBool,
    /// Per-connection log lines an attacker could repeat, summarised past a few.
    pub(super) quiet: Quiet,
    /// Wakes the gossip loop: the membership core may want a wake-up sooner, or a link.
    pub(super) gossip_wake: Notify,
    /// Set when the node starts to stop (`Node::leave`): a second stop skips the drain.
    pub(super) stopping: AtomicBool,
    /// Set once the node has left the mesh, so it is done once.
    pub(super) left: AtomicBool,
}

impl Shared {
    /// The hub, locked. Never held across an `.await`.
    pub(super) fn hub(&self) -> MutexGuard<'_, Hub> {
        // A panic while holding the lock is a bug already reported by the panic itself;
        // the store's own invariants hold between operations, so keep serving.
        self.hub.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Gets awaited from peers, locked.
    pub(super) fn pending(&self) -> MutexGuard<'_, HashMap<u64, PendingGet>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admin commands awaited from peers, locked.
    pub(super) fn admin_calls(&self) -> MutexGuard<'_, HashMap<u64, PendingCall>> {
        self.admin_calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the node is stopping (background tasks end, lost peers are not redialed).
    pub(super) fn shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }
}
