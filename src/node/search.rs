//! Request layer: queries over row contents, mesh-wide. The node evaluates a query over its
//! own rows, asks the peers that hold rows under its keys to do the same over theirs (only
//! their matches cross the mesh), and merges the pages in the query's global order. A peer
//! that does not answer in time, or that this node has no link to, is named in
//! `incomplete`. Limits are the get's: rows, bytes and rows looked at per node, and the
//! remote timeout.

use std::sync::Arc;

use super::hub::{push, Hub};
use super::remote;
use super::reply::{respond, Sink};
use super::shared::Shared;
use crate::proto::{ClientId, GetPage, GetQuery, NodeId, PeerFrame, Reply, RowQuery, WireError};
use crate::query::Compiled;

/// Runs a client's query: answered now (`Some`) when no other node can hold matching rows,
/// else by a task once the peers answered (`None`). Errors are the query's own (malformed,
/// over a limit, forbidden), found before any peer is asked.
pub(super) fn start(
    shared: &Arc<Shared>,
    hub: &mut Hub,
    client: ClientId,
    sink: &Sink,
    id: u64,
    query: RowQuery,
) -> Result<Option<Reply>, WireError> {
    let local = hub.store.query(client, &query)?;
    let compiled = Compiled::new(&query).map_err(|e| WireError::InvalidQuery {
        reason: e.to_string(),
    })?;
    let holders = GetQuery {
        keys: query.keys.clone(),
        ..GetQuery::default()
    };
    let (targets, unlinked) = remote::targets_for(hub, &holders);
    if targets.is_empty() && unlinked.is_empty() {
        let page = merge(
            shared,
            &compiled,
            vec![(shared.id, Some(local))],
            query.limit,
        );
        return Ok(Some(Reply::Queried(page)));
    }
    let waits = send(shared, hub, &targets, &query);
    tokio::spawn(answer(
        shared.clone(),
        sink.clone(),
        id,
        compiled,
        query.limit,
        local,
        waits,
        unlinked,
    ));
    Ok(None)
}

type Wait = remote::PageWait;

/// Sends the query to `targets` (under the hub lock, ordered with everything else on those
/// links); their answers come back as `GetResult`s to the same table gets use.
fn send(shared: &Shared, hub: &Hub, targets: &[NodeId], query: &RowQuery) -> Vec<Wait> {
    remote::ask_pages(shared, hub, targets, |id| PeerFrame::Query {
        id,
        query: query.clone(),
    })
}

fn merge(
    shared: &Shared,
    compiled: &Compiled,
    answers: Vec<(NodeId, Option<GetPage>)>,
    limit: u32,
) -> crate::proto::QueryPage {
    let l = &shared.config.limits;
    let max_rows = match limit {
        0 => l.max_get_rows,
        n => n.min(l.max_get_rows),
    }
    .max(1) as usize;
    crate::query::merge(compiled, answers, max_rows, l.max_get_bytes as usize)
}

/// Waits (bounded by the remote timeout) for the peers' pages, merges them with the local
/// one and answers.
#[allow(clippy::too_many_arguments)]
async fn answer(
    shared: Arc<Shared>,
    sink: Sink,
    request: u64,
    compiled: Compiled,
    limit: u32,
    local: GetPage,
    waits: Vec<Wait>,
    unlinked: Vec<NodeId>,
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
    let page = merge(&shared, &compiled, answers, limit);
    respond(&shared, &sink, request, Ok(Reply::Queried(page)));
}

/// A peer's query: evaluated over this node's rows for that peer's stand-in identity and
/// answered on the same link. Returns `false` when the link was replaced meanwhile. A
/// query this node refuses (a sorted query over more rows than it looks at) is answered
/// with the error; the asking node names this node as incomplete.
pub(super) fn serve(shared: &Shared, node: NodeId, id: u64, query: &RowQuery) -> bool {
    let mut hub = shared.hub();
    let Some((pseudo, outbox)) = hub.peers.get(&node).map(|l| (l.pseudo, l.outbox.clone())) else {
        return false;
    };
    let result = hub.store.query(pseudo, query);
    if let Err(e) = &result {
        tracing::debug!(from = %node, error = %e, "refused a peer's query");
    }
    push(
        &outbox,
        &PeerFrame::GetResult { id, result },
        shared.config.max_frame,
    );
    true
}
