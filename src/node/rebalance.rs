//! Service: rebalancing. The host compares the Active nodes' loads and, when the busiest and
//! the idlest differ by more than the threshold, asks the busiest to move a bounded number
//! of clients to the idlest (make-before-break migrations). A joining node thus takes load
//! from overloaded ones (seed 002). Host duties are idempotent: two hosts during a split
//! brain only ask for moves the loads justify.

use std::sync::Arc;

use super::migrate;
use super::shared::Shared;
use crate::proto::{encode_to_bytes, NodeId, NodeState, PeerFrame};

/// The move one round would make: (from, to, count), or `None` within the threshold.
pub(super) fn plan(shared: &Shared) -> Option<(NodeId, NodeId, u32)> {
    let cfg = &shared.config;
    let hub = shared.hub();
    let live = u32::try_from(hub.connected_clients()).unwrap_or(u32::MAX);
    let mut nodes: Vec<(NodeId, u32, u32)> = hub
        .members()
        .all()
        .into_iter()
        .filter(|m| m.state == NodeState::Active)
        .filter_map(|m| {
            if m.id == shared.id {
                Some((m.id, live, cfg.max_clients.max(1)))
            } else {
                hub.loads
                    .get(&m.id)
                    .map(|l| (m.id, l.clients, l.capacity.max(1)))
            }
        })
        .collect();
    if nodes.len() < 2 {
        return None;
    }
    let frac = |n: &(NodeId, u32, u32)| f64::from(n.1) / f64::from(n.2);
    nodes.sort_by(|a, b| frac(a).total_cmp(&frac(b)).then(a.0.cmp(&b.0)));
    let (idle, busy) = (nodes.first()?, nodes.last()?);
    if frac(busy) - frac(idle) <= cfg.rebalance_threshold {
        return None;
    }
    let count = ((busy.1 - idle.1.min(busy.1)) / 2).min(cfg.rebalance_max_moves);
    (count > 0).then_some((busy.0, idle.0, count))
}

/// One round: plan, then move here or ask the busiest node to.
pub(super) fn round(shared: &Arc<Shared>) -> Option<(NodeId, NodeId, u32)> {
    let (from, to, count) = plan(shared)?;
    tracing::info!(%from, %to, count, "rebalance: moving clients");
    if from == shared.id {
        tokio::spawn(move_clients(shared.clone(), to, count));
    } else {
        let hub = shared.hub();
        if let (Some(link), Ok(bytes)) = (
            hub.peers.get(&from),
            encode_to_bytes(&PeerFrame::Rebalance { to, count }, shared.config.max_frame),
        ) {
            link.outbox.push_response(bytes);
        }
    }
    Some((from, to, count))
}

/// The host's periodic check.
pub(super) async fn host_loop(shared: Arc<Shared>) {
    let interval = shared.config.rebalance_interval;
    if interval.is_zero() {
        return;
    }
    let mut shutdown = shared.shutdown.clone();
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let is_host = shared.hub().members().host() == shared.id;
        if is_host {
            round(&shared);
        }
    }
}

/// Moves up to `count` of this node's clients to `to`, a batch at a time.
pub(super) async fn move_clients(shared: Arc<Shared>, to: NodeId, count: u32) {
    let mut clients = shared.hub().local_clients();
    clients.truncate(count as usize);
    let mut moved = 0;
    for batch in clients.chunks(shared.config.drain_batch.max(1)) {
        moved += migrate::move_all(&shared, batch.iter().map(|c| (*c, to))).await;
    }
    tracing::info!(%to, moved, asked = count, "rebalance moves done");
}
