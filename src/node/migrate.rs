//! Service: live migration of a client between nodes, make-before-break.
//!
//! 1. The source S exports the session and sends it to the target T (`Prepare`). T registers
//!    the client as pending (no rows yet, but its subscriptions, with interest registered at
//!    every peer, so no change can slip between S and T) and answers `Prepared`.
//! 2. S tells the client `Migrate{T, ticket}`; the client keeps working on S meanwhile.
//! 3. The client connects to T with the ticket. T asks S for the `Handover`.
//! 4. Under its hub lock, S exports the session as it is now, forgets it silently (no
//!    deletion anywhere) and sends it in a `Transfer`. From then on, requests still arriving
//!    at S from that client are forwarded to T on the same ordered link.
//! 5. T installs the rows (versions continue), which subscribers everywhere see as updates
//!    naming T, then welcomes the client.
//!
//! If the client never reaches T, T drops its pending copy and S keeps serving: nothing
//! changed. If S dies after `Prepare`, T activates the client from the prepared snapshot.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rand::RngCore;
use tokio::sync::oneshot;

use super::handoff::{Incoming, MigrateError, Outgoing};
use super::hub::{now_ms, push, Link, LinkKind};
use super::remote;
use super::reply::{respond, Sink};
use super::shared::Shared;
use crate::mesh::MeshEvent;
use crate::metrics::Counters;
use crate::proto::{
    encode_to_bytes, outbox, ClientId, GetQuery, KeySpec, NodeId, OutboxWriter, PeerFrame, Reply,
    ServerFrame, SessionState, WireError,
};

/// How long the target waits for the source's `Transfer` before using the prepared snapshot.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(5);

/// Source side: moves a local client to `target`; returns once the session is handed over
/// (or the attempt rolled back).
pub(super) async fn migrate(
    shared: &Arc<Shared>,
    client: ClientId,
    target: NodeId,
) -> Result<(), MigrateError> {
    let max = shared.config.max_frame;
    let (ticket, prepared_rx, done_rx) = {
        let mut hub = shared.hub();
        if target == shared.id {
            return Err(MigrateError::SameNode);
        }
        let link_out = hub
            .peers
            .get(&target)
            .map(|p| p.outbox.clone())
            .ok_or(MigrateError::UnknownNode(target))?;
        if !hub
            .links
            .get(&client)
            .is_some_and(|l| matches!(l.kind, LinkKind::Client(_)))
        {
            return Err(MigrateError::NotHere(client));
        }
        if hub.outgoing.values().any(|o| o.client == client) {
            return Err(MigrateError::Busy(client));
        }
        let state = hub
            .store
            .export_client(client)
            .ok_or(MigrateError::NotHere(client))?;
        let mut t = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut t);
        let ticket = Bytes::copy_from_slice(&t);
        let (ptx, prx) = oneshot::channel();
        let (dtx, drx) = oneshot::channel();
        hub.outgoing.insert(
            ticket.clone(),
            Outgoing {
                client,
                target,
                prepared: Some(ptx),
                done: Some(dtx),
            },
        );
        push(
            &link_out,
            &PeerFrame::Prepare {
                ticket: ticket.clone(),
                state,
            },
            max,
        );
        (ticket, prx, drx)
    };
    // Counted once the attempt is under way (checks passed, Prepare sent); each one ends
    // as exactly one of finished, failed or rolled back.
    let counters = &shared.counters;
    Counters::bump(&counters.migrations_started);
    // The target answers once its peers registered the session's interest, which it waits
    // for up to `remote_timeout`: give it that, and a margin.
    let prepare_budget = shared.config.remote_timeout + TRANSFER_TIMEOUT;
    let prepared = tokio::time::timeout(prepare_budget, prepared_rx).await;
    let refused = match prepared {
        Ok(Ok(Ok(()))) => None,
        Ok(Ok(Err(e))) => Some(MigrateError::Refused(e)),
        _ => Some(MigrateError::Refused(WireError::Unavailable {
            node: target,
        })),
    };
    if let Some(e) = refused {
        abort(shared, target, &ticket);
        Counters::bump(&counters.migrations_failed);
        return Err(e);
    }
    {
        let hub = shared.hub();
        let (Some(link), Some(member)) = (hub.links.get(&client), hub.members().get(target)) else {
            drop(hub);
            abort(shared, target, &ticket);
            Counters::bump(&counters.migrations_failed);
            return Err(MigrateError::NotHere(client));
        };
        let frame = ServerFrame::Migrate {
            node: target,
            name: member.name.clone(),
            addrs: member.addrs_for_clients().to_vec(),
            ticket: ticket.clone(),
            fingerprint: member.fingerprint,
        };
        match encode_to_bytes(&frame, max) {
            Ok(bytes) => link.outbox.push_response(bytes),
            Err(e) => tracing::error!(error = %e, "migrate instruction does not fit a frame"),
        }
    }
    let result = match tokio::time::timeout(shared.config.migration_timeout, done_rx).await {
        Ok(Ok(result)) => result,
        _ => {
            // Rolled back: nothing changed here, and the target drops its pending copy.
            abort(shared, target, &ticket);
            tracing::info!(%client, %target, "migration rolled back: the client did not arrive");
            Err(MigrateError::Timeout)
        }
    };
    Counters::bump(match &result {
        Ok(()) => &counters.migrations_finished,
        Err(MigrateError::Timeout) => &counters.migrations_rolled_back,
        Err(_) => &counters.migrations_failed,
    });
    if result.is_ok() {
        let _ = shared
            .hub()
            .events
            .send(MeshEvent::Migrated { client, to: target });
    }
    result
}

/// Gives up a move before the handover: forgets it here and tells the target to drop its
/// pending copy now (rather than at its own timeout, while it would refuse the same client
/// as "already on this node").
fn abort(shared: &Shared, target: NodeId, ticket: &Bytes) {
    let mut hub = shared.hub();
    hub.outgoing.remove(ticket);
    if let Some(link) = hub.peers.get(&target) {
        push(
            &link.outbox,
            &PeerFrame::Abort {
                ticket: ticket.clone(),
            },
            shared.config.max_frame,
        );
    }
}

/// Target side: the source gave up this move. Drops the pending copy unless the client has
/// already arrived (then the handover decides).
pub(super) fn on_abort(shared: &Shared, ticket: &Bytes) {
    let mut hub = shared.hub();
    let arrived = match hub.incoming.get(ticket) {
        None => return,
        Some(i) => i.writer.is_none(),
    };
    if arrived {
        return;
    }
    if let Some(incoming) = hub.incoming.remove(ticket) {
        let client = incoming.state.client;
        hub.store.remove_client_silently(client);
        hub.links.remove(&client);
        hub.flush_holds(shared.config.max_frame);
        tracing::info!(%client, "prepared migration dropped: the source gave it up");
    }
}

/// Runs these moves concurrently; returns how many completed.
pub(super) async fn move_all(
    shared: &Arc<Shared>,
    moves: impl IntoIterator<Item = (ClientId, NodeId)>,
) -> usize {
    let tasks: Vec<_> = moves
        .into_iter()
        .map(|(client, target)| {
            let s = shared.clone();
            tokio::spawn(async move { migrate(&s, client, target).await })
        })
        .collect();
    let mut done = 0;
    for t in tasks {
        match t.await {
            Ok(Ok(())) => done += 1,
            // Each failure leaves the client where it was; say why, so a drain that does not
            // finish can be explained.
            Ok(Err(e)) => tracing::info!(error = %e, "a move did not happen"),
            Err(e) => tracing::warn!(error = %e, "a move task failed"),
        }
    }
    done
}

/// Source side: the target says the client is ready (or not).
pub(super) fn on_prepared(shared: &Shared, ticket: Bytes, result: Result<(), WireError>) {
    if let Some(tx) = shared
        .hub()
        .outgoing
        .get_mut(&ticket)
        .and_then(|o| o.prepared.take())
    {
        let _ = tx.send(result);
    }
}

/// Source side: the client reached the target; hand the session over, atomically.
pub(super) fn on_handover(shared: &Shared, from: NodeId, ticket: Bytes) {
    let max = shared.config.max_frame;
    let mut hub = shared.hub();
    let Some(out) = hub.peers.get(&from).map(|p| p.outbox.clone()) else {
        return;
    };
    let entry = match hub.outgoing.remove(&ticket) {
        Some(o) if o.target == from => o,
        other => {
            if let Some(o) = other {
                hub.outgoing.insert(ticket.clone(), o);
            }
            push(
                &out,
                &PeerFrame::Transfer {
                    ticket,
                    state: None,
                },
                max,
            );
            return;
        }
    };
    let state = hub.store.export_client(entry.client);
    if let Some(st) = &state {
        // First tell everyone the target holds these primaries now, then (below) that this
        // node may not: on each ordered link the first precedes the second.
        hub.announce_held_by(st, from, max);
        hub.store.remove_client_silently(entry.client);
        // Its old connection lingers until the client closes it; requests still arriving
        // on it are forwarded to the target.
        if let Some(link) = hub.links.get_mut(&entry.client) {
            if let LinkKind::Client(conn) = &link.kind {
                link.kind = LinkKind::Departed {
                    conn: conn.clone(),
                    to: from,
                };
            }
        }
        hub.flush_holds(max);
    }
    let handed = state.is_some();
    push(&out, &PeerFrame::Transfer { ticket, state }, max);
    if let Some(done) = entry.done {
        let _ = done.send(if handed {
            Ok(())
        } else {
            Err(MigrateError::NotHere(entry.client))
        });
    }
    tracing::debug!(client = %entry.client, to = %from, handed, "session handed over");
}

/// Source side: the answer to a forwarded request, for the client's old connection.
pub(super) fn on_forwarded(
    shared: &Shared,
    client: ClientId,
    id: u64,
    result: Result<Reply, WireError>,
) {
    let hub = shared.hub();
    if let Some(link) = hub.links.get(&client) {
        respond(shared, &Sink::Client(link.outbox.clone()), id, result);
    }
}

/// Target side: the source offers a session. Registers it as pending, with its interest at
/// every peer, then says `Prepared`; drops it if the client does not come.
pub(super) async fn on_prepare(
    shared: Arc<Shared>,
    from: NodeId,
    ticket: Bytes,
    state: SessionState,
) {
    let max = shared.config.max_frame;
    let client = state.client;
    // A client moving back here while its old link here is still finishing: let that link
    // close first (one link per client id here), within a bound.
    for _ in 0..100 {
        let lingering = {
            let hub = shared.hub();
            hub.links.contains_key(&client)
        };
        if !lingering {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let waits = {
        let mut hub = shared.hub();
        let Some(out) = hub.peers.get(&from).map(|p| p.outbox.clone()) else {
            return;
        };
        if hub.store.has_client(client) || hub.links.contains_key(&client) {
            let result = Err(WireError::Protocol {
                reason: format!("client {client} is already on this node"),
            });
            push(&out, &PeerFrame::Prepared { ticket, result }, max);
            return;
        }
        // Subscriptions now, rows at the handover.
        let pending = SessionState {
            rows: Vec::new(),
            ..state.clone()
        };
        hub.store.import_client(&pending, now_ms());
        let (outbox, writer) = outbox(shared.config.max_outbound_bytes);
        hub.links
            .insert(client, Link::new(outbox, LinkKind::Arriving));
        let specs: Vec<KeySpec> = state.subs.iter().map(|(s, _)| s.clone()).collect();
        hub.incoming.insert(
            ticket.clone(),
            Incoming {
                state,
                source: from,
                writer: Some(writer),
                transfer: None,
                installed: false,
            },
        );
        let peers: Vec<NodeId> = hub.peers.keys().copied().collect();
        let mut waits = Vec::new();
        let chunk = (shared.config.limits.max_keys_per_query as usize).max(1);
        for keys in specs.chunks(chunk) {
            let query = GetQuery {
                keys: keys.to_vec(),
                owners: None,
                start: None,
                limit: 1,
                subscribe: true,
            };
            waits.extend(remote::send_gets(&shared, &hub, &peers, &query));
        }
        hub.flush_holds(max);
        waits
    };
    let deadline = tokio::time::Instant::now() + shared.config.remote_timeout;
    for (_, _, rx) in waits {
        let _ = tokio::time::timeout_at(deadline, rx).await;
    }
    if let Some(out) = shared.hub().peers.get(&from).map(|p| p.outbox.clone()) {
        push(
            &out,
            &PeerFrame::Prepared {
                ticket: ticket.clone(),
                result: Ok(()),
            },
            max,
        );
    }
    tokio::time::sleep(shared.config.migration_timeout).await;
    let mut hub = shared.hub();
    if hub.incoming.remove(&ticket).is_some() {
        hub.store.remove_client_silently(client);
        hub.links.remove(&client);
        hub.flush_holds(max);
        tracing::info!(%client, "prepared migration dropped: the client did not arrive");
    }
}

/// Target side: the source's `Transfer`. Installed here, in the link's order, so every
/// request the source forwards after it applies to the installed session.
pub(super) fn on_transfer(shared: &Shared, ticket: Bytes, state: Option<SessionState>) {
    let max = shared.config.max_frame;
    let mut hub = shared.hub();
    let Some(incoming) = hub.incoming.get_mut(&ticket) else {
        return;
    };
    let tx = incoming.transfer.take();
    let installed = match state {
        Some(state) => {
            incoming.installed = true;
            let fans = hub.store.import_rows(&state, now_ms());
            for fan in fans {
                hub.deliver(fan, max, true);
            }
            hub.flush_holds(max);
            true
        }
        None => false,
    };
    if let Some(tx) = tx {
        let _ = tx.send(installed);
    }
}

/// Whether `ticket` names a migration waiting here.
pub(super) fn is_incoming(shared: &Shared, ticket: &[u8]) -> bool {
    shared.hub().incoming.contains_key(ticket)
}

/// Target side: the migrating client arrived with its ticket. Gets the session from the
/// source (or uses the prepared one if the source is gone), installs it, and returns the
/// client's id, outbox and writer with the welcome queued first; `Err` to refuse.
pub(super) async fn arrive(
    shared: &Arc<Shared>,
    conn: &quinn::Connection,
    ticket: &Bytes,
    welcome: impl FnOnce(ClientId, &mut super::hub::Hub) -> ServerFrame,
) -> Result<(ClientId, crate::proto::Outbox, OutboxWriter), WireError> {
    let max = shared.config.max_frame;
    let rx = {
        let mut hub = shared.hub();
        let Some(source) = hub.incoming.get(ticket).map(|i| i.source) else {
            return Err(WireError::NotFound);
        };
        match hub.peers.get(&source).map(|p| p.outbox.clone()) {
            Some(out) => {
                let (tx, rx) = oneshot::channel();
                if let Some(i) = hub.incoming.get_mut(ticket) {
                    i.transfer = Some(tx);
                }
                push(
                    &out,
                    &PeerFrame::Handover {
                        ticket: ticket.clone(),
                    },
                    max,
                );
                Some(rx)
            }
            None => None,
        }
    };
    if let Some(rx) = rx {
        match tokio::time::timeout(TRANSFER_TIMEOUT, rx).await {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => {
                let mut hub = shared.hub();
                if let Some(i) = hub.incoming.remove(ticket) {
                    hub.store.remove_client_silently(i.state.client);
                    hub.links.remove(&i.state.client);
                    hub.flush_holds(max);
                }
                return Err(WireError::NotFound);
            }
            // The source went away: the prepared snapshot is what survives.
            _ => {}
        }
    }
    let mut hub = shared.hub();
    let Some(mut incoming) = hub.incoming.remove(ticket) else {
        return Err(WireError::NotFound);
    };
    let client = incoming.state.client;
    if !incoming.installed {
        let state = incoming.state.clone();
        let fans = hub.store.import_rows(&state, now_ms());
        for fan in fans {
            hub.deliver(fan, max, true);
        }
        hub.flush_holds(max);
    }
    let Some(mut writer) = incoming.writer.take() else {
        return Err(WireError::NotFound);
    };
    let welcome = welcome(client, &mut hub);
    let Some(link) = hub.links.get_mut(&client) else {
        return Err(WireError::NotFound);
    };
    link.kind = LinkKind::Client(conn.clone());
    link.since_ms = now_ms();
    let outbox = link.outbox.clone();
    let queued = writer.take_queued();
    match encode_to_bytes(&welcome, max) {
        Ok(bytes) => outbox.push_response(bytes),
        Err(e) => {
            return Err(WireError::Protocol {
                reason: e.to_string(),
            })
        }
    }
    for frame in queued {
        outbox.push_response(frame);
    }
    Counters::bump(&hub.counters.migrations_arrived);
    tracing::info!(%client, from = %incoming.source, "client migrated here");
    Ok((client, outbox, writer))
}
