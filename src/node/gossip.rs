//! Service: membership as the SWIM core (`mesh::swim`) decides it. Every call into the
//! core happens here, under the hub lock, and is followed by [`flush`]: the datagrams it
//! wants sent go out on the authenticated peer links as QUIC datagrams (or wait, bounded,
//! for a link the dispatcher dials), and what changed is applied to the node — a member
//! declared down has its rows deleted for local subscribers (`NodeLost`), one that left
//! (`NodeLeft`) likewise but as a departure, host changes are announced, state changes
//! reported.
//!
//! Links carry membership but no longer decide it: a link that drops while its member is
//! alive is redialed, and the member's rows stay.

use std::collections::hash_map::Entry;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::hub::{Hub, Queued, Target};
use super::remote;
use super::shared::Shared;
use crate::mesh::swim::{Destination, Event, SwimError};
use crate::mesh::MeshEvent;
use crate::metrics::Counters;
use crate::proto::{CloseCode, DeleteReason, MemberInfo, NodeId, NodeState};

/// Datagrams kept per target while its link is dialed; older ones are dropped (the
/// protocol repeats what matters).
const QUEUE_PER_TARGET: usize = 8;

/// How long a queued datagram stays useful: a probe's answer is due well within it.
const QUEUE_FOR: Duration = Duration::from_secs(2);

/// How long the rows a member that left had shown local subscribers wait before those
/// still attributed to it are deleted (`NodeLeft`). A node leaving after a drain has handed
/// its clients to other nodes, which install their rows a moment after the hand-over and
/// tell subscribers from there, on their own links: the leave can overtake those updates.
/// A row re-homed within this time is a move (an update naming the new node), not a
/// deletion. Rows of clients the leaving node still held are deleted by the node itself
/// before it leaves, on its link, so they do not wait.
const LEFT_GRACE: Duration = Duration::from_secs(2);

/// A datagram from `node`'s link.
pub(super) fn on_datagram(shared: &Shared, node: NodeId, datagram: &[u8]) {
    let mut hub = shared.hub();
    let result = hub.swim.handle_data(Instant::now(), Some(node), datagram);
    note_error(shared, result);
    flush(shared, &mut hub);
}

/// Runs the core's due wake-ups, for the gossip loop; returns when it should wake next (at
/// the latest `latest`), which the loop promises by setting it here.
pub(super) fn on_timeout(shared: &Shared, latest: Instant) -> Instant {
    let mut hub = shared.hub();
    let result = hub.swim.handle_timeout(Instant::now());
    note_error(shared, result);
    flush_quietly(shared, &mut hub);
    forget_departed(shared, &mut hub);
    let at = hub
        .swim
        .poll_timeout()
        .map_or(latest, |due| due.min(latest));
    hub.gossip_wakes_at = Some(at);
    at
}

/// The join names resolve to these addresses now.
pub(super) fn set_seeds(shared: &Shared, seeds: Vec<SocketAddr>) {
    let mut hub = shared.hub();
    let local = hub.local_addr;
    let seeds = seeds.into_iter().filter(|a| *a != local).collect();
    let result = hub.swim.set_seeds(Instant::now(), seeds);
    note_error(shared, result);
    flush(shared, &mut hub);
}

/// Starts a mesh (a node with no join names), or joins behind the members already known.
pub(super) fn found(shared: &Shared) {
    let mut hub = shared.hub();
    let result = hub.swim.found(Instant::now());
    note_error(shared, result);
    flush(shared, &mut hub);
}

/// Sets this node's state mesh-wide: the member view, its `cloud.nodes` row, the host.
pub(super) fn set_state(shared: &Shared, state: NodeState) {
    let mut hub = shared.hub();
    if hub.members().me().state == state {
        return;
    }
    let result = hub.swim.set_state(Instant::now(), state);
    note_error(shared, result);
    let _ = hub.events.send(MeshEvent::StateChanged {
        node: shared.id,
        state,
    });
    tracing::info!(state = state.as_str(), "node state changed");
    hub.write_node_record(&shared.config);
    flush(shared, &mut hub);
}

/// Leaves the mesh: every live member is told now (they drop this node as left, not as
/// lost). The datagrams go out on the links; the caller closes them a moment later.
pub(super) fn leave(shared: &Shared) {
    let mut hub = shared.hub();
    let result = hub.swim.leave(Instant::now());
    note_error(shared, result);
    flush(shared, &mut hub);
    tracing::info!(members = hub.members().others().count(), "left the mesh");
}

/// A link to `node` (dialed at `remote`) is up: datagrams waiting for it go out.
pub(super) fn linked(shared: &Shared, node: NodeId, remote: SocketAddr) {
    let mut hub = shared.hub();
    let Some(conn) = hub.peers.get(&node).map(|p| p.conn.clone()) else {
        return;
    };
    let now = Instant::now();
    for target in [Target::Member(node), Target::Addr(remote)] {
        hub.dials.remove(&target);
        if let Some(queued) = hub.datagrams.remove(&target) {
            for (at, payload) in queued.payloads {
                if now.saturating_duration_since(at) < QUEUE_FOR {
                    send(&conn, payload);
                }
            }
        }
    }
}

/// Sends what the core wants sent and applies what changed. Call after every call into the
/// core, under the same hold of the lock.
///
/// Wakes the gossip loop when it must act sooner than it planned: a datagram waits for a
/// link to dial, or the core wants a wake-up before the loop's.
fn flush(shared: &Shared, hub: &mut Hub) {
    if flush_quietly(shared, hub) {
        shared.gossip_wake.notify_one();
    }
}

/// [`flush`] without the wake-up, for the gossip loop itself; returns whether one is due.
fn flush_quietly(shared: &Shared, hub: &mut Hub) -> bool {
    let now = Instant::now();
    let mut queued = false;
    while let Some(t) = hub.swim.poll_transmit() {
        let (target, addrs) = match t.to {
            Destination::Member { id, addrs } => (Target::Member(id), addrs),
            Destination::Addr(addr) => (Target::Addr(addr), vec![addr]),
        };
        let link = match target {
            Target::Member(id) => hub.peers.get(&id),
            Target::Addr(addr) => hub.peers.values().find(|p| p.conn.remote_address() == addr),
        };
        match link {
            Some(link) => send(&link.conn, t.payload),
            None => {
                queue(hub, target, addrs, t.payload, now);
                queued = true;
            }
        }
    }
    while let Some(event) = hub.swim.poll_event() {
        apply(shared, hub, event);
    }
    let sooner = match (hub.swim.poll_timeout(), hub.gossip_wakes_at) {
        (Some(due), Some(planned)) => due < planned,
        (Some(_), None) => true,
        (None, _) => false,
    };
    queued || sooner
}

fn send(conn: &quinn::Connection, payload: Bytes) {
    if let Err(e) = conn.send_datagram(payload) {
        // The protocol tolerates loss; a link that cannot carry datagrams at all is noticed
        // by the member being declared down.
        tracing::debug!(remote = %conn.remote_address(), error = %e, "membership datagram not sent");
    }
}

fn queue(hub: &mut Hub, target: Target, addrs: Vec<SocketAddr>, payload: Bytes, now: Instant) {
    let queued = hub.datagrams.entry(target).or_insert_with(|| Queued {
        addrs: addrs.clone(),
        payloads: Default::default(),
    });
    queued.addrs = addrs;
    queued
        .payloads
        .retain(|(at, _)| now.saturating_duration_since(*at) < QUEUE_FOR);
    if queued.payloads.len() == QUEUE_PER_TARGET {
        queued.payloads.pop_front();
    }
    queued.payloads.push_back((now, payload));
}

/// Links the node wants and does not have: members the lower id links to (one link per
/// pair), members and addresses with datagrams waiting. Queues past their use are dropped.
pub(super) fn wanted_links(shared: &Shared, hub: &mut Hub) -> Vec<(Target, Vec<SocketAddr>)> {
    let now = Instant::now();
    hub.datagrams.retain(|_, q| {
        q.payloads
            .retain(|(at, _)| now.saturating_duration_since(*at) < QUEUE_FOR);
        !q.payloads.is_empty()
    });
    let mut wanted: Vec<(Target, Vec<SocketAddr>)> = hub
        .members()
        .others()
        .filter(|m| !hub.peers.contains_key(&m.id))
        .filter(|m| shared.id < m.id || hub.datagrams.contains_key(&Target::Member(m.id)))
        .map(|m| (Target::Member(m.id), m.addrs.clone()))
        .collect();
    for (target, q) in &hub.datagrams {
        let linked = match target {
            Target::Member(id) => hub.peers.contains_key(id),
            Target::Addr(addr) => hub.peers.values().any(|p| p.conn.remote_address() == *addr),
        };
        if !linked && !wanted.iter().any(|(t, _)| t == target) {
            wanted.push((*target, q.addrs.clone()));
        }
    }
    wanted
}

fn apply(shared: &Shared, hub: &mut Hub, event: Event) {
    let cfg = &shared.config;
    match event {
        Event::Joined { join_seq, founded } => {
            if founded && !cfg.join.is_empty() {
                tracing::info!(targets = ?cfg.join, join_seq,
                    "no mesh member answered; starting a new mesh as its host");
            } else if !founded {
                tracing::info!(join_seq, host = %name_of(hub, hub.swim.host()), "joined the mesh");
            }
            // The mesh's host did not change because this node arrived: take it silently.
            hub.host_name = name_of(hub, hub.swim.host());
            hub.adopting_host = true;
            hub.write_node_record(cfg);
        }
        Event::MemberUp(m) => {
            tracing::debug!(member = %m.name, id = %m.id, "member up");
        }
        Event::MemberChanged { before, after } => {
            if before.state != after.state {
                let _ = hub.events.send(MeshEvent::StateChanged {
                    node: after.id,
                    state: after.state,
                });
            }
        }
        Event::MemberDown(m) => gone(shared, hub, &m, false),
        Event::MemberLeft(m) => gone(shared, hub, &m, true),
        Event::HostChanged { from, to } if from == shared.id && hub.adopting_host => {
            hub.adopting_host = false;
            hub.host_name = name_of(hub, to);
            hub.write_node_record(cfg);
        }
        Event::HostChanged { from, to } => {
            hub.adopting_host = false;
            Counters::bump(&hub.counters.host_changes);
            let new_name = name_of(hub, to);
            tracing::info!(old = %hub.host_name, new = %new_name, old_id = %from, new_id = %to, "host changed");
            let _ = hub
                .events
                .send(MeshEvent::HostChanged { old: from, new: to });
            hub.host_name = new_name;
            hub.write_node_record(cfg);
        }
        Event::Renewed { generation } => {
            tracing::warn!(
                generation,
                "the mesh wrongly declared this node down; it rejoined under the same id"
            );
        }
        Event::Isolated => {
            tracing::warn!("every member is gone; announcing to the join names until one answers");
        }
        Event::Defunct => {
            tracing::error!(
                "the mesh declared this node down and it cannot rejoin under its id; restart it"
            );
        }
    }
}

/// A member was declared down (or left): its link closes, its rows are deleted for local
/// subscribers with the reason that says which, and answers it owed will not come.
fn gone(shared: &Shared, hub: &mut Hub, m: &MemberInfo, left: bool) {
    let node = m.id;
    if let Some(link) = hub.peers.get(&node) {
        let why: &[u8] = if left {
            b"the node left the mesh"
        } else {
            b"the mesh declared the node down"
        };
        link.conn.close(CloseCode::Normal.to_u32().into(), why);
    }
    hub.loads.remove(&node);
    hub.datagrams.remove(&Target::Member(node));
    hub.dials.remove(&Target::Member(node));
    let rows = if left {
        // It holds nothing any more; what local subscribers saw of it waits for rows that
        // moved off it to arrive from their new nodes (see LEFT_GRACE).
        remote::unlinked(hub, node);
        hub.departed.retain(|(n, _)| *n != node);
        hub.departed.push((node, Instant::now() + LEFT_GRACE));
        hub.mirror.get(&node).map_or(0, |m| m.len())
    } else {
        remote::forget_node(hub, node, DeleteReason::NodeLost, shared.config.max_frame)
    };
    if left {
        let _ = hub.events.send(MeshEvent::PeerLeft { node, rows });
        tracing::info!(peer = %m.name, id = %node, rows,
            "peer left the mesh; rows of it not moved elsewhere are deleted for local subscribers shortly (NodeLeft)");
    } else {
        let _ = hub.events.send(MeshEvent::PeerLost { node, rows });
        tracing::warn!(peer = %m.name, id = %node, rows,
            "peer lost; its rows are gone for local subscribers (NodeLost)");
    }
    remote::link_lost(shared, node);
    shared.admin_calls().retain(|_, c| c.node != node);
}

/// Deletes, for local subscribers, the rows still attributed to members that left
/// [`LEFT_GRACE`] ago (rows that moved to another node meanwhile are no longer theirs). A
/// member that is back by then keeps its rows.
fn forget_departed(shared: &Shared, hub: &mut Hub) {
    let now = Instant::now();
    let due: Vec<NodeId> = hub
        .departed
        .iter()
        .filter(|(_, at)| *at <= now)
        .map(|(n, _)| *n)
        .collect();
    if due.is_empty() {
        return;
    }
    hub.departed.retain(|(_, at)| *at > now);
    for node in due {
        if hub.members().get(node).is_some() {
            continue;
        }
        let rows = remote::forget_node(hub, node, DeleteReason::NodeLeft, shared.config.max_frame);
        if rows > 0 {
            tracing::info!(id = %node, rows,
                "rows still on a node that left deleted for local subscribers (NodeLeft)");
        }
    }
}

fn name_of(hub: &Hub, id: NodeId) -> String {
    hub.members()
        .get(id)
        .map_or_else(|| id.to_string(), |m| m.name.clone())
}

/// A call into the core that failed: mostly what a peer sent (logged quietly, the protocol
/// repeats itself), or this node having left (nothing to do).
fn note_error(shared: &Shared, result: Result<(), SwimError>) {
    match result {
        Ok(()) | Err(SwimError::Left) => {}
        Err(e) => {
            if shared.quiet.allow("membership datagram refused") {
                tracing::debug!(error = %e, "membership datagram refused");
            }
        }
    }
}

/// Records a dial's outcome for its backoff: after a failure the next attempt waits
/// 200 ms × 2^failures, at most 10 s, with ±50 % jitter (so a fleet started at once does not
/// redial in lockstep).
pub(super) fn dial_done(hub: &mut Hub, target: Target, ok: bool) {
    if let Entry::Occupied(mut e) = hub.dials.entry(target) {
        let d = e.get_mut();
        d.in_flight = false;
        if ok {
            e.remove();
        } else {
            d.failures = d.failures.saturating_add(1);
            let base = Duration::from_millis(200)
                .saturating_mul(1u32 << d.failures.min(6))
                .min(Duration::from_secs(10));
            let jitter = rand::random::<f64>() + 0.5;
            d.next_at = Instant::now() + base.mul_f64(jitter);
        }
    }
}
