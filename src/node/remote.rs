//! Request layer: the rest of the mesh as a client request sees it. Gets fanned out to the
//! peers that may hold rows and merged in global order; a peer's get served from this
//! node's store; interest registered at a newly linked peer; changes from peers passed to
//! local subscribers (and mirrored, so a lost node's rows can be deleted for them); the
//! holder index kept from peers' `Holds`.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::hub::{now_ms, push, Hub};
use super::reply::{respond, Sink};
use super::shared::{PendingGet, Shared};
use crate::mesh::merge_pages;
use crate::proto::{
    ClientId, DeleteReason, GetPage, GetQuery, Key, KeySpec, NodeId, Notification, Outbox,
    PeerFrame, Reply, Row,
};
use crate::store::Fanout;

/// Which peers a get must ask: every peer for a subscribe (a peer without rows now may
/// have one a moment later), else only those holding a queried primary. The second list
/// is the members this node has no link to: they cannot be asked, and may hold rows, so
/// the answer names them as incomplete rather than leave their rows out silently.
pub(super) fn targets_for(hub: &Hub, query: &GetQuery) -> (Vec<NodeId>, Vec<NodeId>) {
    let unlinked: Vec<NodeId> = hub
        .members()
        .others()
        .map(|m| m.id)
        .filter(|id| !hub.peers.contains_key(id))
        .collect();
    if query.subscribe {
        return (hub.peers.keys().copied().collect(), unlinked);
    }
    let mut set: HashSet<NodeId> = HashSet::new();
    for spec in &query.keys {
        if let Some(nodes) = hub.holders.get(&spec.primary) {
            set.extend(nodes.iter().filter(|n| hub.peers.contains_key(n)));
        }
    }
    (set.into_iter().collect(), unlinked)
}

/// A peer's page awaited: the request id, the peer, and where its answer arrives.
pub(super) type PageWait = (u64, NodeId, oneshot::Receiver<Option<GetPage>>);

/// Sends `query` to `targets` (under the hub lock, so it is ordered with everything else
/// on those links) and returns what to wait for.
pub(super) fn send_gets(
    shared: &Shared,
    hub: &Hub,
    targets: &[NodeId],
    query: &GetQuery,
) -> Vec<PageWait> {
    ask_pages(shared, hub, targets, |id| PeerFrame::Get {
        id,
        query: query.clone(),
    })
}

/// Sends each of `targets` the frame `ask` makes for a fresh request id, registered in the
/// table `GetResult`s are matched against (gets and queries alike are answered with one).
pub(super) fn ask_pages(
    shared: &Shared,
    hub: &Hub,
    targets: &[NodeId],
    ask: impl Fn(u64) -> PeerFrame,
) -> Vec<PageWait> {
    let mut waits = Vec::new();
    let mut pending = shared.pending();
    for node in targets {
        let Some(link) = hub.peers.get(node) else {
            continue;
        };
        let id = shared.next_request.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        pending.insert(id, PendingGet { node: *node, tx });
        push(&link.outbox, &ask(id), shared.config.max_frame);
        waits.push((id, *node, rx));
    }
    waits
}

/// Waits (bounded) for the peers' pages, merges them with the local one and answers.
pub(super) async fn answer_merged(
    shared: Arc<Shared>,
    sink: Sink,
    request: u64,
    local: GetPage,
    waits: Vec<(u64, NodeId, oneshot::Receiver<Option<GetPage>>)>,
    unlinked: Vec<NodeId>,
    limit: u32,
) {
    let deadline = tokio::time::Instant::now() + shared.config.remote_timeout;
    let mut answers = vec![(shared.id, Some(local))];
    answers.extend(unlinked.into_iter().map(|node| (node, None)));
    for (id, node, rx) in waits {
        let page = tokio::time::timeout_at(deadline, rx)
            .await
            .ok()
            .and_then(|r| r.ok())
            .flatten();
        if page.is_none() {
            shared.pending().remove(&id);
        }
        answers.push((node, page));
    }
    let l = &shared.config.limits;
    let max_rows = match limit {
        0 => l.max_get_rows,
        n => n.min(l.max_get_rows),
    } as usize;
    let merged = merge_pages(answers, max_rows, l.max_get_bytes as usize);
    respond(&shared, &sink, request, Ok(Reply::Rows(merged)));
}

/// Registers existing local subscriptions at a newly linked peer and delivers the rows it
/// already holds to local subscribers, as changes.
///
/// After a link that dropped while its node stayed a member, this is also the resync: rows
/// local subscribers had seen from that node are re-read; newer versions reach them as
/// updates (a row they already have is not sent twice), and one the node no longer holds
/// (deleted while the link was down) is deleted for them.
pub(super) async fn subscribe_existing(
    shared: Arc<Shared>,
    node: NodeId,
    outbox: Outbox,
    specs: Vec<KeySpec>,
) {
    let before: HashSet<(Key, ClientId)> = {
        let mut hub = shared.hub();
        hub.resync.insert(node, HashSet::new());
        hub.mirror
            .get(&node)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    };
    let mut seen: HashSet<(Key, ClientId)> = HashSet::new();
    let complete = register(&shared, node, &specs, &mut seen).await;
    let mut hub = shared.hub();
    let touched = hub.resync.remove(&node).unwrap_or_default();
    if complete {
        let stale: Vec<Row> = before
            .iter()
            .filter(|id| !seen.contains(*id) && !touched.contains(*id))
            .filter_map(|id| hub.mirror.get_mut(&node)?.remove(id))
            .collect();
        delete_for_subscribers(
            &mut hub,
            stale,
            DeleteReason::NodeLost,
            shared.config.max_frame,
        );
    }
    drop(hub);
    drop(outbox);
}

/// Registers `specs` at `node` page by page, applying every row; `false` when the link
/// went away or the peer did not answer.
async fn register(
    shared: &Arc<Shared>,
    node: NodeId,
    specs: &[KeySpec],
    seen: &mut HashSet<(Key, ClientId)>,
) -> bool {
    let max_keys = (shared.config.limits.max_keys_per_query as usize).max(1);
    for chunk in specs.chunks(max_keys) {
        let mut query = GetQuery {
            keys: chunk.to_vec(),
            owners: None,
            start: None,
            limit: 0,
            subscribe: true,
        };
        for _page in 0..100_000 {
            let rx = {
                let hub = shared.hub();
                if !hub.peers.contains_key(&node) {
                    return false;
                }
                let mut waits = send_gets(shared, &hub, &[node], &query);
                match waits.pop() {
                    Some((_, _, rx)) => rx,
                    None => return false,
                }
            };
            let Ok(Ok(Some(page))) =
                tokio::time::timeout(shared.config.remote_timeout * 5, rx).await
            else {
                tracing::warn!(%node, "peer did not answer a subscription registration");
                return false;
            };
            {
                let mut hub = shared.hub();
                for row in page.rows {
                    seen.insert((row.key.clone(), row.owner));
                    apply_remote(
                        &mut hub,
                        node,
                        Notification::Updated(row),
                        shared.config.max_frame,
                    );
                }
            }
            match page.next {
                Some(c) => {
                    query.start = Some(c);
                    query.subscribe = false;
                }
                None => break,
            }
        }
    }
    true
}

/// A change that came from `node`: drop it if stale, remember it for `NodeLost`, and pass
/// it to local subscribers (never on to other peers: each subscribes at the source).
pub(super) fn apply_remote(hub: &mut Hub, node: NodeId, n: Notification, max_frame: usize) {
    let row = n.row();
    let id = (row.key.clone(), row.owner);
    if let Some(touched) = hub.resync.get_mut(&node) {
        touched.insert(id.clone());
    }
    let recipients = hub.local_subscribers(&row.key, row.owner);
    let mirror = hub.mirror.entry(node).or_default();
    match (mirror.get_mut(&id), &n) {
        // Known already and not older: a repeat (resynchronisation, a duplicate path).
        (Some(known), _) if known.version >= row.version => return,
        // An update of a row mirrored from this node: replaced in place. It is in no other
        // node's mirror (every insertion under one node removes it from the others).
        (Some(known), Notification::Updated(row)) => *known = row.clone(),
        (Some(_), Notification::Deleted { .. }) => {
            mirror.remove(&id);
        }
        (None, Notification::Updated(row)) => {
            if recipients.is_empty() {
                return;
            }
            mirror.insert(id.clone(), row.clone());
            // The row now lives on `node` (it moved there): losing its old node must not
            // delete it.
            for (other, rows) in hub.mirror.iter_mut() {
                if *other != node {
                    rows.remove(&id);
                }
            }
        }
        (None, Notification::Deleted { .. }) => {}
    }
    hub.deliver(
        Fanout {
            notification: n,
            recipients,
        },
        max_frame,
        false,
    );
}

/// A peer's get: answered from this node's store for that peer's stand-in identity, queued
/// under the hub lock so the snapshot precedes every change after it on the same link.
/// Returns `false` when the link was replaced meanwhile.
pub(super) fn serve_get(shared: &Shared, node: NodeId, id: u64, query: &GetQuery) -> bool {
    let mut hub = shared.hub();
    let Some(link) = hub.peers.get(&node) else {
        return false;
    };
    let (pseudo, out) = (link.pseudo, link.outbox.clone());
    let result = hub.store.get(pseudo, query);
    push(
        &out,
        &PeerFrame::GetResult { id, result },
        shared.config.max_frame,
    );
    true
}

/// A peer's answer to a get this node sent: rows local subscribers may see are remembered
/// for `NodeLost`, and the waiting request gets the page.
pub(super) fn on_get_result(
    shared: &Shared,
    node: NodeId,
    id: u64,
    result: Result<GetPage, crate::proto::WireError>,
) {
    let waiter = shared.pending().remove(&id);
    let page = result.ok();
    if let Some(page) = &page {
        let mut hub = shared.hub();
        // A subscription registration at `node` (re)reading its rows mirrors them itself as
        // it applies them, so that a row local subscribers have not seen from it (after it
        // was lost and came back, say) reaches them as an update; mirrored here first, the
        // row would look already seen and never be delivered.
        let registering = hub.resync.contains_key(&node);
        for row in page.rows.iter().filter(|_| !registering) {
            let wanted = hub
                .store
                .subscribers(&row.key, row.owner)
                .iter()
                .any(|c| hub.links.get(c).is_some_and(|l| !l.kind.is_peer()));
            if wanted {
                let mirror = hub.mirror.entry(node).or_default();
                let id = (row.key.clone(), row.owner);
                if mirror
                    .get(&id)
                    .is_none_or(|known| known.version < row.version)
                {
                    mirror.insert(id.clone(), row.clone());
                    // A row is mirrored under one node only, the one it lives on (what
                    // `apply_remote` relies on to update a mirrored row in place).
                    for (other, rows) in hub.mirror.iter_mut() {
                        if *other != node {
                            rows.remove(&id);
                        }
                    }
                }
            }
        }
    }
    if let Some(w) = waiter {
        let _ = w.tx.send(page);
    }
}

/// A peer says `holder` holds rows under `primary` now (a client moved there).
pub(super) fn on_held_by(shared: &Shared, primary: String, holder: NodeId) {
    let mut hub = shared.hub();
    if holder != shared.id && hub.peers.contains_key(&holder) {
        hub.holders.entry(primary).or_default().insert(holder);
    }
}

/// A peer's first row under `primary` came or its last one went.
pub(super) fn on_holds(shared: &Shared, node: NodeId, primary: String, held: bool) {
    tracing::debug!(%primary, held, from = %node, "peer holds changed");
    let mut hub = shared.hub();
    if held {
        hub.holders.entry(primary).or_default().insert(node);
    } else if let Some(set) = hub.holders.get_mut(&primary) {
        set.remove(&node);
        if set.is_empty() {
            hub.holders.remove(&primary);
        }
    }
}

/// A peer's clients no longer want changes under `keys`.
pub(super) fn on_unsubscribe(shared: &Shared, node: NodeId, keys: &[KeySpec]) {
    let mut hub = shared.hub();
    if let Some(pseudo) = hub.peers.get(&node).map(|l| l.pseudo) {
        let _ = hub.store.unsubscribe(pseudo, keys, None);
    }
}

/// Forgets what `node` held, for a node gone from the mesh: it no longer holds anything,
/// and every row of it local subscribers had seen is deleted for them (with `reason` and
/// the next version). Returns how many rows that was.
pub(super) fn forget_node(
    hub: &mut Hub,
    node: NodeId,
    reason: DeleteReason,
    max_frame: usize,
) -> usize {
    for set in hub.holders.values_mut() {
        set.remove(&node);
    }
    hub.holders.retain(|_, s| !s.is_empty());
    let rows: Vec<Row> = hub
        .mirror
        .remove(&node)
        .map(|m| m.into_values().collect())
        .unwrap_or_default();
    let count = rows.len();
    delete_for_subscribers(hub, rows, reason, max_frame);
    count
}

/// Tells local subscribers that these rows of another node are gone, each with the next
/// version (so it orders after the last change they saw).
fn delete_for_subscribers(hub: &mut Hub, rows: Vec<Row>, reason: DeleteReason, max_frame: usize) {
    let now = now_ms();
    for mut row in rows {
        row.version += 1;
        row.updated_at_ms = now;
        let recipients = hub.local_subscribers(&row.key, row.owner);
        let fan = Fanout {
            notification: Notification::Deleted { row, reason },
            recipients,
        };
        hub.deliver(fan, max_frame, false);
    }
}

/// The link to `node` dropped while it stays a member: it can no longer be asked for its
/// rows (gets name it as incomplete until it is linked again, and tell its holds anew).
pub(super) fn unlinked(hub: &mut Hub, node: NodeId) {
    for set in hub.holders.values_mut() {
        set.remove(&node);
    }
    hub.holders.retain(|_, s| !s.is_empty());
}

/// Gets awaited from a lost node will not come.
pub(super) fn link_lost(shared: &Shared, node: NodeId) {
    shared.pending().retain(|_, p| p.node != node);
}

/// A change from a peer, for local subscribers.
pub(super) fn on_change(shared: &Shared, node: NodeId, n: Notification) {
    apply_remote(&mut shared.hub(), node, n, shared.config.max_frame);
}
