//! Service: session resume. A client that loses its connection (rather than closing it)
//! keeps its session here for `resume_grace`: its rows stay (nothing is deleted or
//! announced), its subscriptions stay, the notifications it misses queue up to a bound, and
//! its session blob stays. Every welcome hands the client a single-use token (HMAC under the
//! mesh secret over its client id, this node and an issue number); presenting it here, or
//! at any node of the mesh, takes the session back. Another node asks this one for the
//! session (`Reclaim`), which hands it over as a migration does: the rows keep their
//! identity and continue their versions, so subscribers see an update naming the new node,
//! never a deletion. When the grace ends the rows are deleted with reason `Expired`.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::hub::{now_ms, push, Hub, Link, LinkKind};
use super::remote;
use super::shared::Shared;
use crate::mesh::{check_resume, issue_resume, ResumeClaim};
use crate::proto::{
    encode_to_bytes, outbox, ClientId, CloseCode, DeleteReason, GetQuery, KeySpec, NodeId, Outbox,
    OutboxWriter, PeerFrame, ResumeOffer, ResumeRefusal, ResumeRequest, ResumedInfo, ServerFrame,
    SessionState, WireError,
};

/// Most bytes of notifications queued for a suspended session. Past it later ones are
/// dropped, and the resume tells the client so (it then reads its subscriptions afresh):
/// this bounds what a suspended session costs.
pub(super) const SUSPENDED_QUEUE_BYTES: usize = 256 * 1024;

fn refused(why: ResumeRefusal) -> WireError {
    WireError::ResumeRefused(why)
}

/// A new resume token for `client` here: its issue number (to store on the client's link)
/// and the offer for its welcome; `None` when this node keeps no sessions.
pub(super) fn new_offer(
    shared: &Shared,
    hub: &mut Hub,
    client: ClientId,
) -> (u64, Option<ResumeOffer>) {
    let grace = shared.config.resume_grace;
    if grace.is_zero() {
        return (0, None);
    }
    let nonce = hub.resume.nonce();
    let token = issue_resume(
        &hub.resume.key,
        ResumeClaim {
            client,
            node: shared.id,
            nonce,
        },
    );
    let offer = ResumeOffer {
        token,
        grace_ms: u64::try_from(grace.as_millis()).unwrap_or(u64::MAX),
    };
    (nonce, Some(offer))
}

/// Suspends `client`'s session after its connection was lost: the link keeps a bounded
/// queue (seeded with what the lost connection had not written yet, from `old`), and the
/// session expires after the grace. Returns `false` (nothing done) when this node keeps no
/// sessions or the client has no link here.
pub(super) fn suspend(
    shared: &Arc<Shared>,
    hub: &mut Hub,
    client: ClientId,
    old: Option<&mut OutboxWriter>,
) -> bool {
    let grace = shared.config.resume_grace;
    if grace.is_zero() {
        return false;
    }
    let Some(link) = hub.links.get_mut(&client) else {
        return false;
    };
    let bound = SUSPENDED_QUEUE_BYTES.min(shared.config.max_outbound_bytes);
    let (queue, writer) = outbox(bound);
    if let Some(old) = old {
        for frame in old.take_queued() {
            queue.push_response(frame);
        }
    }
    let until_ms = now_ms().saturating_add(u64::try_from(grace.as_millis()).unwrap_or(u64::MAX));
    link.outbox = queue;
    link.kind = LinkKind::Suspended { writer, until_ms };
    link.lagged = false;
    tracing::info!(%client, ?grace, "client connection lost; session suspended");
    let s = shared.clone();
    tokio::spawn(async move {
        tokio::time::sleep(grace).await;
        expire(&s, client, until_ms);
    });
    true
}

/// The grace of a suspended session ended: its rows are deleted (`Expired`), unless it
/// was resumed (or suspended again, with a later expiry) meanwhile.
fn expire(shared: &Shared, client: ClientId, until_ms: u64) {
    let max = shared.config.max_frame;
    let mut hub = shared.hub();
    let ours = hub.links.get(&client).is_some_and(
        |l| matches!(l.kind, LinkKind::Suspended { until_ms: u, .. } if u == until_ms),
    );
    if !ours {
        return;
    }
    hub.links.remove(&client);
    hub.positions.remove(&client);
    let now = now_ms();
    let fans = hub.store.remove_client(client, DeleteReason::Expired, now);
    for fan in fans {
        hub.deliver(fan, max, true);
    }
    hub.flush_holds(max);
    hub.resume.expire(client, now);
    tracing::info!(%client, "suspended session expired; its rows are deleted");
}

/// What taking a session from its link here gave.
struct Taken {
    /// The suspended queue's writer (`None` when a live connection was superseded).
    writer: Option<OutboxWriter>,
    /// The highest request id read from the lost connection.
    last_request: u64,
    /// Whether notifications were dropped (queue full, or a live link superseded).
    missed_lost: bool,
}

/// Checks `claim` against the session here and takes it from its link: a suspended session,
/// or one whose connection this node has not noticed is gone yet (the token proves the
/// caller holds the session; the old connection is closed as superseded).
fn take_local(hub: &mut Hub, claim: ResumeClaim, now: u64) -> Result<Taken, WireError> {
    let client = claim.client;
    let Some(link) = hub.links.get_mut(&client) else {
        return Err(refused(if hub.resume.has_expired(client, now) {
            ResumeRefusal::Expired
        } else {
            ResumeRefusal::Gone
        }));
    };
    if link.resume_nonce == 0 || link.resume_nonce != claim.nonce {
        return Err(refused(ResumeRefusal::Used));
    }
    let last_request = link.last_request;
    let lagged = link.lagged;
    match std::mem::replace(&mut link.kind, LinkKind::Arriving) {
        LinkKind::Suspended { writer, .. } => Ok(Taken {
            writer: Some(writer),
            last_request,
            missed_lost: lagged,
        }),
        LinkKind::Client(old) => {
            old.close(
                CloseCode::Superseded.to_u32().into(),
                b"the session was resumed on another connection",
            );
            Ok(Taken {
                writer: None,
                last_request,
                missed_lost: true,
            })
        }
        other => {
            link.kind = other;
            Err(refused(ResumeRefusal::Used))
        }
    }
}

/// A connection presents a resume token: takes the session back here (from this node's
/// suspended sessions, or from the node holding it), makes this connection its link and
/// queues `welcome` first. Returns the client, its queue and the queue's writer.
pub(super) async fn resume(
    shared: &Arc<Shared>,
    conn: &quinn::Connection,
    req: &ResumeRequest,
    welcome: impl FnOnce(ClientId, Option<ResumeOffer>, ResumedInfo) -> ServerFrame,
) -> Result<(ClientId, Outbox, OutboxWriter), WireError> {
    if shared.config.resume_grace.is_zero() {
        return Err(refused(ResumeRefusal::Disabled));
    }
    let claim = {
        let hub = shared.hub();
        check_resume(&hub.resume.key, &req.token).map_err(|_| refused(ResumeRefusal::Invalid))?
    };
    if claim.client != req.client {
        return Err(refused(ResumeRefusal::WrongClient));
    }
    let max = shared.config.max_frame;
    let client = claim.client;
    if claim.node == shared.id {
        let mut hub = shared.hub();
        // A draining node keeps no one: the client resumes at another node, which takes
        // the session from here.
        if hub.members().me().state != crate::proto::NodeState::Active {
            return Err(WireError::Draining);
        }
        let taken = take_local(&mut hub, claim, now_ms())?;
        let info = ResumedInfo {
            from: shared.id,
            last_request: taken.last_request,
            missed_lost: taken.missed_lost,
        };
        return install(shared, &mut hub, conn, client, taken.writer, info, welcome);
    }
    // The session is at another node: ask it.
    let rx = {
        let mut hub = shared.hub();
        // A node the mesh lost (or that left) took the session with it.
        if hub.members().get(claim.node).is_none() {
            return Err(refused(ResumeRefusal::Gone));
        }
        let cap = shared.config.max_clients;
        if hub.client_slots() >= cap as usize {
            return Err(WireError::ServerFull { max: cap });
        }
        let Some(out) = hub.peers.get(&claim.node).map(|p| p.outbox.clone()) else {
            return Err(WireError::Unavailable { node: claim.node });
        };
        let (tx, rx) = oneshot::channel();
        hub.resume.reclaims.insert(client, tx);
        push(
            &out,
            &PeerFrame::Reclaim {
                client,
                token: req.token.clone(),
            },
            max,
        );
        rx
    };
    // Until the holder answers, the budget passes, or the holder is lost from the mesh
    // (then the session is gone with it: said at once, so the client restores it).
    let deadline = tokio::time::Instant::now() + shared.config.remote_timeout;
    let mut rx = rx;
    let answer = loop {
        let step = tokio::time::Instant::now() + std::time::Duration::from_millis(100);
        match tokio::time::timeout_at(step.min(deadline), &mut rx).await {
            Ok(answer) => break answer.ok(),
            Err(_) if tokio::time::Instant::now() >= deadline => break None,
            Err(_) => {
                let lost = shared.hub().members().get(claim.node).is_none();
                if lost {
                    shared.hub().resume.reclaims.remove(&client);
                    return Err(refused(ResumeRefusal::Gone));
                }
            }
        }
    };
    let (state, last_request) = match answer {
        Some(Ok(answer)) => answer,
        Some(Err(e)) => return Err(e),
        None => {
            shared.hub().resume.reclaims.remove(&client);
            return Err(WireError::Unavailable { node: claim.node });
        }
    };
    let mut hub = shared.hub();
    if hub.links.contains_key(&client) || hub.store.has_client(client) {
        // Cannot happen (the session lived at the other node); never hold two copies.
        return Err(WireError::Protocol {
            reason: format!("client {client} is already on this node"),
        });
    }
    adopt(shared, &mut hub, &state);
    let info = ResumedInfo {
        from: claim.node,
        last_request,
        // The queue stayed at the other node: the client reads its subscriptions afresh.
        missed_lost: true,
    };
    hub.links
        .insert(client, Link::new(outbox(1).0, LinkKind::Arriving));
    install(shared, &mut hub, conn, client, None, info, welcome)
}

/// Installs a session that moved here (rows as updates naming this node, subscriptions)
/// and registers its subscriptions' interest at every peer.
fn adopt(shared: &Shared, hub: &mut Hub, state: &SessionState) {
    let max = shared.config.max_frame;
    hub.resume.forget(state.client);
    let fans = hub.store.import_client(state, now_ms());
    for fan in fans {
        hub.deliver(fan, max, true);
    }
    let peers: Vec<NodeId> = hub.peers.keys().copied().collect();
    let specs: Vec<KeySpec> = state.subs.iter().map(|(s, _)| s.clone()).collect();
    let chunk = (shared.config.limits.max_keys_per_query as usize).max(1);
    for keys in specs.chunks(chunk) {
        let query = GetQuery {
            keys: keys.to_vec(),
            owners: None,
            start: None,
            limit: 1,
            subscribe: true,
        };
        // Not awaited: the interest is registered in each peer link's order, and the
        // client reads its subscriptions afresh after a move anyway.
        drop(remote::send_gets(shared, hub, &peers, &query));
    }
    hub.flush_holds(max);
}

/// Makes `conn` the link of `client` (whose link entry exists): a fresh token, the welcome
/// first, then whatever the suspended queue held.
fn install(
    shared: &Shared,
    hub: &mut Hub,
    conn: &quinn::Connection,
    client: ClientId,
    writer: Option<OutboxWriter>,
    info: ResumedInfo,
    welcome: impl FnOnce(ClientId, Option<ResumeOffer>, ResumedInfo) -> ServerFrame,
) -> Result<(ClientId, Outbox, OutboxWriter), WireError> {
    let max = shared.config.max_frame;
    let (nonce, offer) = new_offer(shared, hub, client);
    let frame = encode_to_bytes(&welcome(client, offer, info.clone()), max).map_err(|e| {
        WireError::Protocol {
            reason: e.to_string(),
        }
    })?;
    let Some(link) = hub.links.get_mut(&client) else {
        return Err(refused(ResumeRefusal::Gone));
    };
    // A queue on the connection's limit again (not the suspended bound): the welcome
    // first, then what the suspended queue held, in order.
    let (queue, fresh) = outbox(shared.config.max_outbound_bytes);
    queue.push_response(frame);
    if let Some(mut old) = writer {
        for f in old.take_queued() {
            queue.push_response(f);
        }
    }
    link.outbox = queue.clone();
    link.kind = LinkKind::Client(conn.clone());
    link.lagged = false;
    link.since_ms = now_ms();
    link.resume_nonce = nonce;
    tracing::info!(%client, from = %info.from, last_request = info.last_request,
        missed_lost = info.missed_lost, "client resumed its session");
    Ok((client, queue, fresh))
}

/// Another node asks for a session whose client resumed there: if the token is the
/// session's current one, the session is forgotten here silently (as at a migration's
/// handover: first every peer learns the asker holds its primaries) and sent over with the
/// highest request id read from the lost connection.
pub(super) fn on_reclaim(shared: &Shared, from: NodeId, client: ClientId, token: &Bytes) {
    let max = shared.config.max_frame;
    let mut hub = shared.hub();
    let Some(out) = hub.peers.get(&from).map(|p| p.outbox.clone()) else {
        return;
    };
    let result = reclaim(shared, &mut hub, from, client, token);
    if result.is_ok() {
        hub.flush_holds(max);
        tracing::info!(%client, to = %from, "suspended session handed to the node it resumed at");
    }
    push(&out, &PeerFrame::Reclaimed { client, result }, max);
}

fn reclaim(
    shared: &Shared,
    hub: &mut Hub,
    from: NodeId,
    client: ClientId,
    token: &[u8],
) -> Result<(SessionState, u64), WireError> {
    let max = shared.config.max_frame;
    let claim =
        check_resume(&hub.resume.key, token).map_err(|_| refused(ResumeRefusal::Invalid))?;
    if claim.client != client {
        return Err(refused(ResumeRefusal::WrongClient));
    }
    if claim.node != shared.id {
        return Err(refused(ResumeRefusal::Gone));
    }
    let taken = take_local(hub, claim, now_ms())?;
    let Some(state) = hub.store.export_client(client) else {
        hub.links.remove(&client);
        return Err(refused(ResumeRefusal::Gone));
    };
    hub.announce_held_by(&state, from, max);
    hub.store.remove_client_silently(client);
    hub.links.remove(&client);
    hub.positions.remove(&client);
    Ok((state, taken.last_request))
}

/// The answer to a `Reclaim` this node sent.
pub(super) fn on_reclaimed(
    shared: &Shared,
    client: ClientId,
    result: Result<(SessionState, u64), WireError>,
) {
    if let Some(tx) = shared.hub().resume.reclaims.remove(&client) {
        let _ = tx.send(result);
    }
}

/// A client that did not follow a `Migrate` in time (a drain cannot wait for it): its
/// connection is closed with a reason of its own and its session suspended, so it can
/// resume it on another node (which takes it from here). Returns whether it was suspended.
pub(super) fn evict(shared: &Arc<Shared>, client: ClientId) -> bool {
    let mut hub = shared.hub();
    let Some(conn) = hub.links.get(&client).and_then(|l| match &l.kind {
        LinkKind::Client(conn) => Some(conn.clone()),
        _ => None,
    }) else {
        return false;
    };
    let suspended = suspend(shared, &mut hub, client, None);
    if !suspended {
        // No sessions kept here: the client leaves as a disconnect does.
        hub.links.remove(&client);
        hub.positions.remove(&client);
        let fans = hub
            .store
            .remove_client(client, DeleteReason::Disconnected, now_ms());
        for fan in fans {
            hub.deliver(fan, shared.config.max_frame, true);
        }
        hub.flush_holds(shared.config.max_frame);
    }
    drop(hub);
    conn.close(
        CloseCode::MigrateIgnored.to_u32().into(),
        b"did not follow the migrate instruction in time; resume on another node",
    );
    tracing::info!(%client, suspended, "client ignored a migrate instruction; disconnected");
    true
}
