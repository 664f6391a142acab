//! Service: draining a node. Draining mesh-wide, clients moved away with at most
//! `drain_batch` make-before-break migrations in flight, then Drained. Undrain returns it
//! to Active. A client that does not follow its `Migrate` within `migration_timeout` is
//! disconnected (`MigrateIgnored`) with its session suspended, so every drain ends.

use std::sync::Arc;

use super::gossip::set_state;
use super::handoff::MigrateError;
use super::shared::Shared;
use super::{migrate, place, resume};
use crate::mesh::MeshEvent;
use crate::proto::{ClientId, NodeId, NodeState, PeerFrame};

/// Rounds a drain makes over its remaining clients before giving up on the stragglers
/// (a client that cannot be moved, e.g. one that never follows the instruction).
const MAX_ROUNDS: usize = 5;

/// Why a drain did not finish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DrainError {
    /// No other node can take clients (none Active, or all full).
    #[error("no other node can take clients; {remaining} remain here (the node stays Draining)")]
    NoTarget {
        /// Clients still here.
        remaining: usize,
    },
    /// The node was returned to service (undrain) while draining.
    #[error("cancelled: the node was undrained; {remaining} clients stay here")]
    Cancelled {
        /// Clients still here.
        remaining: usize,
    },
    /// Some clients could not be moved after several rounds.
    #[error("{remaining} clients could not be moved after {MAX_ROUNDS} rounds (the node stays Draining)")]
    Stuck {
        /// Clients still here.
        remaining: usize,
    },
}

fn local_clients(shared: &Shared) -> Vec<ClientId> {
    shared.hub().local_clients()
}

/// Targets for `n` clients: placement's scores (this node, Draining, is never eligible),
/// adding each client assigned in this batch to its target's load, so a batch spreads
/// instead of landing on whichever node looked idlest at the last load report.
fn pick_targets(shared: &Shared, n: usize) -> Vec<crate::proto::NodeId> {
    let hub = shared.hub();
    let decision = place::decide(&hub, shared, &[], None);
    let eligible: Vec<(crate::proto::NodeId, f64, f64)> = decision
        .scores
        .iter()
        .filter(|s| s.eligible && s.id != shared.id)
        .map(|s| {
            let capacity = hub
                .loads
                .get(&s.id)
                .map_or(1.0, |l| f64::from(l.capacity.max(1)));
            (s.id, s.total, shared.config.placement.load / capacity)
        })
        .collect();
    let mut added = vec![0.0f64; eligible.len()];
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let best = (0..eligible.len()).min_by(|&a, &b| {
            let score = |i: usize| eligible[i].1 + added[i];
            score(a).total_cmp(&score(b))
        });
        let Some(i) = best else { break };
        added[i] += eligible[i].2;
        out.push(eligible[i].0);
    }
    out
}

/// Drains: up to `drain_batch` moves in flight at once, a new one starting as each ends
/// (a slow move holds up only its own slot, not a whole batch). Each round spreads all the
/// remaining clients over the targets in one go.
pub(super) async fn drain(shared: &Arc<Shared>) -> Result<usize, DrainError> {
    set_state(shared, NodeState::Draining);
    let window = shared.config.drain_batch.max(1);
    let mut moved = 0;
    for _round in 0..MAX_ROUNDS {
        let clients = local_clients(shared);
        if clients.is_empty() {
            break;
        }
        let targets = pick_targets(shared, clients.len());
        if targets.is_empty() {
            return Err(DrainError::NoTarget {
                remaining: clients.len(),
            });
        }
        let mut waiting = clients.into_iter().zip(targets);
        let mut running = tokio::task::JoinSet::new();
        let mut unreported = 0;
        let mut cancelled = false;
        loop {
            // Moves already under way finish (a migration is not abandoned half-way);
            // after an undrain no new one starts.
            cancelled = cancelled || shared.hub().members().me().state != NodeState::Draining;
            while !cancelled && running.len() < window {
                let Some((client, target)) = waiting.next() else {
                    break;
                };
                let s = shared.clone();
                running.spawn(async move { (client, migrate::migrate(&s, client, target).await) });
            }
            let Some(done) = running.join_next().await else {
                break;
            };
            match done {
                Ok((_, Ok(()))) => moved += 1,
                // It was told to move and did not within `migration_timeout`: a drain does
                // not wait for it again. Disconnected with a reason of its own, its session
                // suspended (it resumes on another node, which takes the session from here).
                Ok((client, Err(MigrateError::Timeout))) => {
                    resume::evict(shared, client);
                }
                // The client stays here; a later round retries it. Say why, so a drain
                // that does not finish can be explained.
                Ok((_, Err(e))) => tracing::info!(error = %e, "a move did not happen"),
                Err(e) => tracing::warn!(error = %e, "a move task failed"),
            }
            unreported += 1;
            if unreported >= window || running.is_empty() {
                unreported = 0;
                report_progress(shared, moved);
            }
        }
        if cancelled {
            return Err(DrainError::Cancelled {
                remaining: local_clients(shared).len(),
            });
        }
    }
    let remaining = local_clients(shared).len();
    if remaining > 0 {
        return Err(DrainError::Stuck { remaining });
    }
    set_state(shared, NodeState::Drained);
    Ok(moved)
}

/// Tells the operator (events, admin `drain --wait`) and the peers how far the drain is.
fn report_progress(shared: &Shared, moved: usize) {
    let remaining = local_clients(shared).len();
    let _ = shared.hub().events.send(MeshEvent::DrainProgress {
        node: shared.id,
        moved,
        remaining,
    });
    shared.hub().broadcast(
        &PeerFrame::DrainProgress {
            moved: moved as u64,
            remaining: remaining as u64,
        },
        shared.config.max_frame,
    );
    tracing::info!(moved, remaining, "drain progress");
}

/// A peer's drain progress: fresher than its last load report, so `nodes` shows its client
/// count falling, and an event for whoever watches.
pub(super) fn on_progress(shared: &Shared, node: NodeId, moved: u64, remaining: u64) {
    let mut hub = shared.hub();
    if let Some(load) = hub.loads.get_mut(&node) {
        load.clients = u32::try_from(remaining).unwrap_or(u32::MAX);
    }
    let _ = hub.events.send(MeshEvent::DrainProgress {
        node,
        moved: moved as usize,
        remaining: remaining as usize,
    });
}
