//! Request layer: one client request executed against the store under the hub lock. The
//! response (and every notification the change causes) is queued in the same step, so a
//! get+subscribe's snapshot precedes every later change. A get other nodes must answer too
//! is finished by a task once they did; anything else the request asks of the node beyond
//! the store (a zone handover) is returned to the caller as an [`Effect`].

use std::sync::Arc;

use super::hub::{now_ms, Hub};
use super::reply::{respond, Sink};
use super::shared::Shared;
use super::{place, remote, search};
use crate::metrics::Counters;
use crate::proto::{ClientId, NodeId, NodeState, PeerFrame, Position, Reply, Request, WireError};

/// What a request asks of the node beyond the store, for the caller to start (the executor
/// itself starts no service).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub(super) enum Effect {
    /// Nothing more.
    None,
    /// The client reported a position inside a zone another node owns: hand it over there.
    HandOver {
        /// The client.
        client: ClientId,
        /// The zone's owner.
        to: NodeId,
    },
}

/// Runs one request against the store. The response is queued under the same lock as the
/// change, so a get+subscribe's snapshot precedes every notification after it. A get that
/// other nodes must answer too is finished by a task once they did (or timed out).
pub(super) fn execute(
    shared: &Arc<Shared>,
    client: ClientId,
    sink: &Sink,
    id: u64,
    op: Request,
) -> Effect {
    let mut hub = shared.hub();
    execute_locked(shared, &mut hub, client, sink, id, op, now_ms())
}

/// [`execute`] for a caller that already holds the hub lock (the request loop takes it once
/// for every request that arrived together).
pub(super) fn execute_locked(
    shared: &Arc<Shared>,
    hub: &mut Hub,
    client: ClientId,
    sink: &Sink,
    id: u64,
    op: Request,
    now: u64,
) -> Effect {
    shared
        .requests
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let max = shared.config.max_frame;
    // Handed over to another node: requests still arriving here go there, in order, on the
    // link that carried the session.
    if let (Some(target), Sink::Client(_)) = (hub.departed_to(client), sink) {
        match hub.peers.get(&target) {
            Some(link) => {
                let frame = PeerFrame::Forward { client, id, op };
                if let Err(e) = link.outbox.push_encoded(&frame, max) {
                    respond(
                        shared,
                        sink,
                        id,
                        Err(WireError::Protocol {
                            reason: e.to_string(),
                        }),
                    )
                }
            }
            None => respond(
                shared,
                sink,
                id,
                Err(WireError::Unavailable { node: target }),
            ),
        }
        return Effect::None;
    }
    let c = &shared.counters;
    Counters::bump(match &op {
        Request::Post { .. } => &c.post,
        Request::Get(q) if q.subscribe => &c.subscribe,
        Request::Get(_) | Request::Query(_) => &c.get,
        Request::Unsubscribe { .. } => &c.unsubscribe,
        Request::Release { .. } => &c.release,
        Request::SetSession { .. }
        | Request::GetSession
        | Request::Ping
        | Request::SetPosition { .. }
        | Request::Place { .. } => &c.other,
    });
    let mut effect = Effect::None;
    let result = match op {
        Request::Post { key, data } => {
            hub.store
                .post(client, key, data, now)
                .map(|(version, fan)| {
                    hub.deliver(fan, max, true);
                    Reply::Posted { version }
                })
        }
        Request::Release { keys } => hub.store.release(client, &keys, now).map(|fans| {
            let count = fans.len() as u32;
            for fan in fans {
                hub.deliver(fan, max, true);
            }
            Reply::Released { count }
        }),
        Request::Get(query) => {
            let (targets, unlinked) = remote::targets_for(hub, &query);
            match hub.store.get(client, &query) {
                Ok(local) if !targets.is_empty() || !unlinked.is_empty() => {
                    let waits = remote::send_gets(shared, hub, &targets, &query);
                    tokio::spawn(remote::answer_merged(
                        shared.clone(),
                        sink.clone(),
                        id,
                        local,
                        waits,
                        unlinked,
                        query.limit,
                    ));
                    return Effect::None;
                }
                other => other.map(Reply::Rows),
            }
        }
        Request::Query(query) => match search::start(shared, hub, client, sink, id, query) {
            // Peers answer too: a task responds once they did (or timed out).
            Ok(None) => return Effect::None,
            Ok(Some(reply)) => Ok(reply),
            Err(e) => Err(e),
        },
        Request::Unsubscribe { keys, owners } => hub
            .store
            .unsubscribe(client, &keys, owners.as_deref())
            .map(|count| Reply::Unsubscribed { count }),
        Request::SetSession { data } => hub
            .store
            .set_session(client, data)
            .map(|()| Reply::SessionSet),
        Request::GetSession => Ok(Reply::Session {
            data: hub.store.session(client).cloned().unwrap_or_default(),
        }),
        Request::Ping => Ok(Reply::Pong),
        Request::SetPosition { position } => {
            hub.positions.insert(client, position);
            if let Some(to) = handover_target(hub, shared, position) {
                effect = Effect::HandOver { client, to };
            }
            Ok(Reply::PositionSet)
        }
        Request::Place { rtts, position } => {
            let decision = place::decide(hub, shared, &rtts, position);
            // A connected client that moves reconnects (its rows here are not carried; that
            // is migration's job), so its ticket names a fresh id, never its current one.
            let placement = place::placement(hub, shared, &decision, ClientId::random());
            // The score table shows every node's load and CPU: only for the classes the
            // operator lets see the mesh's insides.
            let allowed = hub
                .store
                .class_of(client)
                .is_some_and(|class| shared.config.explain_classes.iter().any(|c| c == class));
            Ok(Reply::Placed {
                placement,
                explain: if allowed {
                    decision.explain()
                } else {
                    String::new()
                },
            })
        }
    };
    hub.flush_holds(max);
    if result.is_err() {
        Counters::bump(&c.errors);
    }
    respond(shared, sink, id, result);
    effect
}

/// Where a client at `position` should go, if its zone belongs to another Active node
/// linked to this one and it is deeper than the margin inside it.
fn handover_target(hub: &Hub, shared: &Shared, position: Position) -> Option<NodeId> {
    let config = shared.config.zones.as_ref()?;
    let map = hub.zones.as_ref()?;
    let target = map.handover(shared.id, position.x, position.y, config.margin)?;
    let active = hub
        .members()
        .get(target)
        .is_some_and(|m| m.state == NodeState::Active);
    (active && hub.peers.contains_key(&target)).then_some(target)
}
