//! Service: operator commands, run by the node serving the admin socket. A command aimed at
//! another node is forwarded over the authenticated mesh (`PeerFrame::Admin`) and that
//! node's answers are relayed back frame by frame; mesh-wide listings ask every member and
//! merge, naming the members that did not answer in time.
//!
//! Every command has a *local* meaning (`run_local`): what it does on the node it reaches.
//! A forwarded command always runs with that meaning, so forwarding never loops.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

use super::handoff::MigrateError;
use super::hub::{now_ms, push, Hub, Link, LinkKind};
use super::reply::Sink;
use super::request;
use super::shared::{PendingCall, Shared};
use super::{drain, gossip, migrate, place, rebalance};
use crate::admin::protocol::{
    AdminError, CandidateInfo, ClientInfo, Command, Event, EventFrame, KeysQuery, NodeInfo,
    PlaceReport, PrimaryInfo, RebalanceMove, Response, RowInfo, Snapshot, StatusInfo, ZoneInfo,
    MAX_LISTED_ROWS, MAX_RESPONSE_BYTES,
};
use crate::admin::server::CommandRunner;
use crate::mesh::MeshEvent;
use crate::proto::{
    outbox, ClientId, DeleteReason, FrameDecoder, GetQuery, KeySpec, MemberInfo, NodeId, NodeState,
    Notification, Outbox, OutboxWriter, PeerFrame, Position, QueryPage, Reply, Request, Row,
    RowQuery, ServerFrame, WireError,
};
use crate::query::{parse_near, Query, QueryError};

/// Answer frames a command may queue before its producer waits for the reader.
const ANSWER_QUEUE: usize = 64;

/// Runs operator commands on a node: what the admin socket serves. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AdminHandle {
    shared: Arc<Shared>,
}

type Out = mpsc::Sender<Response>;

impl AdminHandle {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        AdminHandle { shared }
    }
}

impl CommandRunner for AdminHandle {
    fn execute(&self, command: Command) -> mpsc::Receiver<Response> {
        let (tx, rx) = mpsc::channel(ANSWER_QUEUE);
        tokio::spawn(run(self.shared.clone(), command, tx));
        rx
    }
}

/// The command as asked of this node: forwards what names another node.
async fn run(shared: Arc<Shared>, command: Command, tx: Out) {
    if let Some(answer) = answer_here(&shared, &command) {
        let _ = tx.send(answer.unwrap_or_else(Response::Error)).await;
        return;
    }
    let result = match command {
        Command::Drain { ref node, .. } | Command::Undrain { ref node } => {
            match resolve(&shared, node) {
                Ok(id) if id == shared.id => return run_local(shared, command, tx).await,
                Ok(id) => return relay(&shared, id, &command, &tx).await,
                Err(e) => Err(e),
            }
        }
        Command::Watch { key } => return watch(shared, key, tx).await,
        Command::Clients { node, session } => clients(&shared, node, session).await,
        Command::Keys {
            primary,
            secondary,
            query: Some(query),
        } => keys_query(&shared, primary, secondary, query).await,
        Command::Keys {
            primary, secondary, ..
        } => keys(&shared, primary, secondary).await,
        Command::Migrate { client, to } => migrate_anywhere(&shared, client, to).await,
        // Answered above.
        Command::Status | Command::Nodes | Command::Rebalance | Command::Place { .. } => return,
    };
    let _ = tx.send(result.unwrap_or_else(Response::Error)).await;
}

/// The command's meaning on the node it reached (the target of a forwarded command).
async fn run_local(shared: Arc<Shared>, command: Command, tx: Out) {
    if let Some(answer) = answer_here(&shared, &command) {
        let _ = tx.send(answer.unwrap_or_else(Response::Error)).await;
        return;
    }
    let result = match command {
        Command::Clients { session, .. } => Ok(Response::Clients {
            clients: local_clients(&shared, session),
            incomplete: Vec::new(),
        }),
        // A query is mesh-wide through the request layer, never forwarded as an admin
        // command, so running it here cannot loop.
        Command::Keys {
            primary,
            secondary,
            query: Some(query),
        } => keys_query(&shared, primary, secondary, query).await,
        Command::Keys {
            primary, secondary, ..
        } => Ok(local_keys(&shared, primary, secondary)),
        Command::Drain { wait, .. } => return drain_here(shared, wait, tx).await,
        Command::Undrain { .. } => {
            gossip::set_state(&shared, NodeState::Active);
            Ok(Response::Undrained {
                node: shared.config.name.clone(),
            })
        }
        Command::Migrate { client, to } => migrate_here(&shared, &client, &to).await,
        Command::Watch { .. } => Err(AdminError::BadRequest {
            reason: "watch is served by the node asked; it is not forwarded".into(),
        }),
        Command::Status | Command::Nodes | Command::Rebalance | Command::Place { .. } => return,
    };
    let _ = tx.send(result.unwrap_or_else(Response::Error)).await;
}

/// Answers that need no other node, whoever asks.
fn answer_here(shared: &Arc<Shared>, command: &Command) -> Option<Result<Response, AdminError>> {
    Some(Ok(match command {
        Command::Status => Response::Status(status(shared)),
        Command::Nodes => Response::Nodes {
            nodes: nodes(shared),
        },
        Command::Rebalance => {
            let moved = rebalance::round(shared).map(|(from, to, count)| {
                let hub = shared.hub();
                RebalanceMove {
                    from: name_of(&hub, from),
                    to: name_of(&hub, to),
                    count,
                }
            });
            Response::Rebalanced { moved }
        }
        Command::Place { position } => Response::Placement(place_report(shared, *position)),
        _ => return None,
    }))
}

// ---------------------------------------------------------------------------------------
// Forwarding over the mesh.

/// How long a relayed command may go without a frame: a migration (or a drain batch) may
/// take the whole migration timeout, plus the target's wait for the handover.
fn relay_idle(shared: &Shared) -> Duration {
    shared.config.migration_timeout + shared.config.remote_timeout + Duration::from_secs(5)
}

/// Sends `command` to `node`; its answers arrive on the receiver (which ends if the link
/// is lost).
fn forward(
    shared: &Shared,
    node: NodeId,
    command: &Command,
) -> Result<(u64, mpsc::UnboundedReceiver<Response>), AdminError> {
    let json = serde_json::to_vec(command).map_err(|e| AdminError::Failed {
        reason: format!("cannot encode the command: {e}"),
    })?;
    let hub = shared.hub();
    let Some(link) = hub.peers.get(&node) else {
        return Err(AdminError::Unavailable {
            node: name_of(&hub, node),
            reason: "this node has no live link to it".into(),
        });
    };
    let id = shared.next_request.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = mpsc::unbounded_channel();
    shared.admin_calls().insert(id, PendingCall { node, tx });
    push(
        &link.outbox,
        &PeerFrame::Admin {
            id,
            command: Bytes::from(json),
        },
        shared.config.max_frame,
    );
    Ok((id, rx))
}

/// Relays every frame `node` answers to `command` until the final one.
async fn relay(shared: &Arc<Shared>, node: NodeId, command: &Command, tx: &Out) {
    let name = name_of(&shared.hub(), node);
    let (id, mut rx) = match forward(shared, node, command) {
        Ok(call) => call,
        Err(e) => {
            let _ = tx.send(Response::Error(e)).await;
            return;
        }
    };
    let idle = relay_idle(shared);
    loop {
        let frame = match tokio::time::timeout(idle, rx.recv()).await {
            Ok(Some(frame)) => frame,
            Ok(None) => Response::Error(AdminError::Unavailable {
                node: name.clone(),
                reason: "the link to it was lost before it finished".into(),
            }),
            Err(_) => {
                shared.admin_calls().remove(&id);
                Response::Error(AdminError::Unavailable {
                    node: name.clone(),
                    reason: format!("no answer within {}", humantime::format_duration(idle)),
                })
            }
        };
        let last = frame.is_final() || matches!(frame, Response::Error(_));
        // A waiter that left stops the relay, not the command at the other node.
        if tx.send(frame).await.is_err() || last {
            return;
        }
    }
}

/// The final answer of a forwarded command, by `deadline`.
async fn final_answer(
    shared: &Shared,
    node: NodeId,
    call: Result<(u64, mpsc::UnboundedReceiver<Response>), AdminError>,
    deadline: Instant,
) -> Result<Response, AdminError> {
    let (id, mut rx) = call?;
    let unavailable = |reason: &str| AdminError::Unavailable {
        node: name_of(&shared.hub(), node),
        reason: reason.into(),
    };
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(Response::Error(e))) => return Err(e),
            Ok(Some(r)) if r.is_final() => return Ok(r),
            Ok(Some(_)) => {}
            Ok(None) => return Err(unavailable("the link to it was lost before it answered")),
            Err(_) => {
                shared.admin_calls().remove(&id);
                return Err(unavailable("it did not answer in time"));
            }
        }
    }
}

/// Runs `command` on every node in `targets` (locally for this one), concurrently, and
/// returns each node's final answer.
async fn gather(
    shared: &Arc<Shared>,
    targets: &[NodeId],
    command: &Command,
    timeout: Duration,
) -> Vec<(NodeId, Result<Response, AdminError>)> {
    let deadline = Instant::now() + timeout;
    let mut waits = Vec::new();
    for node in targets.iter().copied().filter(|n| *n != shared.id) {
        let call = forward(shared, node, command);
        let s = shared.clone();
        waits.push((
            node,
            tokio::spawn(async move { final_answer(&s, node, call, deadline).await }),
        ));
    }
    let mut out = Vec::new();
    if targets.contains(&shared.id) {
        let (tx, mut rx) = mpsc::channel(ANSWER_QUEUE);
        run_local(shared.clone(), command.clone(), tx).await;
        let mut last = None;
        while let Some(r) = rx.recv().await {
            last = Some(r);
        }
        out.push((
            shared.id,
            match last {
                Some(Response::Error(e)) => Err(e),
                Some(r) => Ok(r),
                None => Err(AdminError::Failed {
                    reason: "no answer".into(),
                }),
            },
        ));
    }
    for (node, task) in waits {
        let r = task.await.unwrap_or_else(|e| {
            Err(AdminError::Failed {
                reason: format!("asking {node} failed: {e}"),
            })
        });
        out.push((node, r));
    }
    out
}

/// A peer asks this node to run `command` (its own meaning, [`run_local`]).
pub(super) fn on_command(shared: &Arc<Shared>, node: NodeId, id: u64, command: Bytes) {
    let Some(outbox) = shared.hub().peers.get(&node).map(|l| l.outbox.clone()) else {
        return;
    };
    let shared = shared.clone();
    tokio::spawn(async move {
        let max = shared.config.max_frame;
        let reply = |r: &Response| {
            let body = match serde_json::to_vec(r) {
                Ok(json) if json.len() + 64 <= max => json,
                Ok(json) => serde_json::to_vec(&Response::Error(AdminError::Failed {
                    reason: format!(
                        "the answer ({} bytes) does not fit a mesh frame ({max} bytes); narrow the query",
                        json.len()
                    ),
                }))
                .unwrap_or_default(),
                Err(e) => serde_json::to_vec(&Response::Error(AdminError::Failed {
                    reason: format!("cannot encode the answer: {e}"),
                }))
                .unwrap_or_default(),
            };
            push(
                &outbox,
                &PeerFrame::AdminReply {
                    id,
                    body: Some(Bytes::from(body)),
                },
                max,
            );
        };
        match serde_json::from_slice::<Command>(&command) {
            Ok(command) => {
                let (tx, mut rx) = mpsc::channel(ANSWER_QUEUE);
                tokio::spawn(run_local(shared.clone(), command, tx));
                while let Some(r) = rx.recv().await {
                    reply(&r);
                }
            }
            Err(e) => {
                tracing::warn!(from = %node, error = %e, "a peer sent an admin command this node does not understand (mixed versions?)");
                reply(&Response::Error(AdminError::BadRequest {
                    reason: format!("this node does not understand the command: {e}"),
                }));
            }
        }
        push(&outbox, &PeerFrame::AdminReply { id, body: None }, max);
    });
}

/// A peer's answer to a command this node forwarded.
pub(super) fn on_reply(shared: &Shared, id: u64, body: Option<Bytes>) {
    let mut calls = shared.admin_calls();
    let Some(body) = body else {
        calls.remove(&id);
        return;
    };
    let Some(call) = calls.get(&id) else {
        return;
    };
    let response = serde_json::from_slice::<Response>(&body).unwrap_or_else(|e| {
        Response::Error(AdminError::Failed {
            reason: format!("the node sent an answer this node cannot read: {e}"),
        })
    });
    if call.tx.send(response).is_err() {
        calls.remove(&id);
    }
}

/// The link to `node` is gone: its pending answers will not come.
pub(super) fn link_lost(shared: &Shared, node: NodeId) {
    shared.admin_calls().retain(|_, c| c.node != node);
}

// ---------------------------------------------------------------------------------------
// Names and views.

/// The member called `name` (or whose id is `name`), or an error listing the known names.
fn resolve(shared: &Shared, name: &str) -> Result<NodeId, AdminError> {
    let hub = shared.hub();
    let all = hub.members().all();
    all.iter()
        .find(|m| m.name == name)
        .or_else(|| all.iter().find(|m| m.id.to_string() == name))
        .map(|m| m.id)
        .ok_or_else(|| AdminError::UnknownNode {
            name: name.to_owned(),
            known: all.iter().map(|m| m.name.clone()).collect(),
        })
}

/// A node's name, or its id when it is no longer a member.
fn name_of(hub: &Hub, id: NodeId) -> String {
    hub.members()
        .get(id)
        .map_or_else(|| id.to_string(), |m| m.name.clone())
}

fn node_info(hub: &Hub, shared: &Shared, m: &MemberInfo) -> NodeInfo {
    let local = m.id == shared.id;
    let load = hub.loads.get(&m.id).copied();
    let (clients, rows) = if local {
        // Live figures for itself; peers' as of their last report.
        (
            hub.local_clients().len() as u32,
            hub.store.stats().rows as u64,
        )
    } else {
        (load.map_or(0, |l| l.clients), load.map_or(0, |l| l.rows))
    };
    NodeInfo {
        name: m.name.clone(),
        id: m.id.to_string(),
        addresses: m.addrs.iter().map(|a| a.to_string()).collect(),
        state: m.state.as_str().to_owned(),
        host: hub.members().host() == m.id,
        local,
        linked: local || hub.peers.contains_key(&m.id),
        clients,
        capacity: load.map_or(shared.config.max_clients, |l| l.capacity),
        rows,
        cpu_percent: load.map_or(0.0, |l| l.cpu_percent),
        memory_bytes: load.map_or(0, |l| l.memory_bytes),
        msgs_per_sec: load.map_or(0.0, |l| l.msgs_per_sec),
    }
}

/// Every member, in name order (numbers in names compared as numbers: node-2 before
/// node-10), so listings do not change order with who happened to join first.
fn nodes(shared: &Shared) -> Vec<NodeInfo> {
    let hub = shared.hub();
    let mut v: Vec<NodeInfo> = hub
        .members()
        .all()
        .iter()
        .map(|m| node_info(&hub, shared, m))
        .collect();
    v.sort_by(|a, b| name_order(&a.name).cmp(&name_order(&b.name)));
    v
}

/// Sort key for node names: the name without its trailing digits, then their value.
fn name_order(name: &str) -> (&str, u64, &str) {
    let stem = name.trim_end_matches(|c: char| c.is_ascii_digit());
    let number = name[stem.len()..].parse().unwrap_or(0);
    (stem, number, name)
}

fn status(shared: &Shared) -> StatusInfo {
    let hub = shared.hub();
    let me = hub.members().me().clone();
    let stats = hub.store.stats();
    StatusInfo {
        node: node_info(&hub, shared, &me),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        uptime_secs: shared.started.elapsed().as_secs(),
        listen: hub.local_addr.to_string(),
        fingerprint: shared.fingerprint.clone(),
        host: name_of(&hub, hub.members().host()),
        members: hub.members().all().len(),
        linked: hub.peers.len(),
        subscriptions: stats.subscriptions,
        data_bytes: stats.data_bytes,
    }
}

fn zone_info(hub: &Hub) -> Option<ZoneInfo> {
    let z = hub.zones.as_ref()?;
    Some(ZoneInfo {
        cell_size: z.cell_size,
        width: z.width,
        height: z.height,
        owners: z.owners.iter().map(|id| name_of(hub, *id)).collect(),
    })
}

fn row_info(hub: &Hub, row: &Row) -> RowInfo {
    let (data, encoding) = RowInfo::encode_data(&row.data);
    RowInfo {
        primary: row.key.primary.clone(),
        secondary: row.key.secondary,
        owner: row.owner.to_string(),
        node: name_of(hub, row.node),
        version: row.version,
        updated_at_ms: row.updated_at_ms,
        data,
        encoding,
        size: row.data.len(),
    }
}

fn local_clients(shared: &Shared, with_session: bool) -> Vec<ClientInfo> {
    let hub = shared.hub();
    let mut ids = hub.local_clients();
    ids.extend(hub.suspended_clients());
    ids.into_iter()
        .filter_map(|id| {
            let link = hub.links.get(&id)?;
            let conn = link.kind.conn();
            let suspended_until_ms = match &link.kind {
                LinkKind::Suspended { until_ms, .. } => Some(*until_ms),
                _ => None,
            };
            let position = hub.positions.get(&id).copied();
            let blob = hub.store.session(id);
            let (session, session_encoding) = match blob.filter(|_| with_session) {
                Some(b) => {
                    let (text, encoding) = RowInfo::encode_data(b);
                    (Some(text), Some(encoding))
                }
                None => (None, None),
            };
            Some(ClientInfo {
                id: id.to_string(),
                node: shared.config.name.clone(),
                address: conn.map_or_else(String::new, |c| c.remote_address().to_string()),
                rtt_ms: conn.map_or(0.0, |c| c.rtt().as_secs_f64() * 1000.0),
                suspended_until_ms,
                session_bytes: blob.map_or(0, |b| b.len()),
                session,
                session_encoding,
                zone: position.and_then(|p| {
                    let cell = hub.zones.as_ref()?.cell_of(p.x, p.y);
                    Some((cell.x, cell.y))
                }),
                position: position.map(|p| (p.x, p.y)),
                rows: hub.store.client_row_count(id).unwrap_or(0),
                connected_at_ms: link.since_ms,
            })
        })
        .collect()
}

async fn clients(
    shared: &Arc<Shared>,
    node: Option<String>,
    session: bool,
) -> Result<Response, AdminError> {
    let command = Command::Clients {
        node: None,
        session,
    };
    let timeout = shared.config.remote_timeout;
    if let Some(name) = node {
        // One node asked by name: its failure is the answer, not a footnote.
        let id = resolve(shared, &name)?;
        let mut answers = gather(shared, &[id], &command, timeout).await;
        return answers.pop().map_or_else(
            || {
                Err(AdminError::Failed {
                    reason: "no answer".into(),
                })
            },
            |(_, r)| r,
        );
    }
    let members = member_ids(shared);
    let mut clients = Vec::new();
    let mut incomplete = Vec::new();
    for (node, answer) in gather(shared, &members, &command, timeout).await {
        match answer {
            Ok(Response::Clients { clients: c, .. }) => clients.extend(c),
            _ => incomplete.push(name_of(&shared.hub(), node)),
        }
    }
    clients.sort_by(|a, b| (&a.node, &a.id).cmp(&(&b.node, &b.id)));
    Ok(Response::Clients {
        clients,
        incomplete,
    })
}

fn member_ids(shared: &Shared) -> Vec<NodeId> {
    shared.hub().members().all().iter().map(|m| m.id).collect()
}

/// This node's primaries, or its rows under one key, bounded to fit one mesh frame.
fn local_keys(shared: &Shared, primary: Option<String>, secondary: Option<u32>) -> Response {
    let hub = shared.hub();
    let Some(primary) = primary else {
        return Response::Primaries {
            primaries: hub
                .store
                .primaries()
                .into_iter()
                .map(|(primary, rows)| PrimaryInfo {
                    primary,
                    rows,
                    nodes: vec![shared.config.name.clone()],
                })
                .collect(),
            incomplete: Vec::new(),
        };
    };
    let (rows, mut truncated) = hub.store.rows_under(&primary, secondary, MAX_LISTED_ROWS);
    // Hex doubles data; leave room for the other fields and the frame.
    let budget = shared.config.max_frame / 2;
    let mut used = 0;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        used += row.data.len() * 2 + row.key.primary.len() + 256;
        if used > budget {
            truncated = true;
            break;
        }
        out.push(row_info(&hub, row));
    }
    Response::Rows {
        rows: out,
        truncated,
        incomplete: Vec::new(),
    }
}

async fn keys(
    shared: &Arc<Shared>,
    primary: Option<String>,
    secondary: Option<u32>,
) -> Result<Response, AdminError> {
    if let Some(p) = &primary {
        KeySpec {
            primary: p.clone(),
            secondary,
        }
        .validate()
        .map_err(|e| AdminError::BadRequest {
            reason: e.to_string(),
        })?;
    } else if secondary.is_some() {
        return Err(AdminError::BadRequest {
            reason: "a secondary key needs a primary key".into(),
        });
    }
    let command = Command::Keys {
        primary: primary.clone(),
        secondary,
        query: None,
    };
    let members = member_ids(shared);
    let answers = gather(shared, &members, &command, shared.config.remote_timeout).await;
    let mut incomplete = Vec::new();
    if primary.is_none() {
        let mut merged: BTreeMap<String, (usize, BTreeSet<String>)> = BTreeMap::new();
        for (node, answer) in answers {
            match answer {
                Ok(Response::Primaries { primaries, .. }) => {
                    for p in primaries {
                        let e = merged.entry(p.primary).or_default();
                        e.0 += p.rows;
                        e.1.extend(p.nodes);
                    }
                }
                _ => incomplete.push(name_of(&shared.hub(), node)),
            }
        }
        return Ok(Response::Primaries {
            primaries: merged
                .into_iter()
                .map(|(primary, (rows, nodes))| PrimaryInfo {
                    primary,
                    rows,
                    nodes: nodes.into_iter().collect(),
                })
                .collect(),
            incomplete,
        });
    }
    let mut rows = Vec::new();
    let mut truncated = false;
    for (node, answer) in answers {
        match answer {
            Ok(Response::Rows {
                rows: r,
                truncated: t,
                ..
            }) => {
                rows.extend(r);
                truncated |= t;
            }
            _ => incomplete.push(name_of(&shared.hub(), node)),
        }
    }
    rows.sort_by(|a, b| (a.secondary, &a.owner).cmp(&(b.secondary, &b.owner)));
    if rows.len() > MAX_LISTED_ROWS {
        rows.truncate(MAX_LISTED_ROWS);
        truncated = true;
    }
    Ok(Response::Rows {
        rows,
        truncated,
        incomplete,
    })
}

/// The rows under `primary[/secondary]` whose data matches `query`, in its order: the
/// same mesh-wide evaluation a client's query gets (the request layer asks the nodes that
/// hold rows under the key, only matches cross the mesh), page after page up to the
/// query's limit or [`MAX_LISTED_ROWS`].
async fn keys_query(
    shared: &Arc<Shared>,
    primary: Option<String>,
    secondary: Option<u32>,
    query: KeysQuery,
) -> Result<Response, AdminError> {
    let Some(primary) = primary else {
        return Err(AdminError::BadRequest {
            reason: "a query needs a primary key to look under".into(),
        });
    };
    let spec = KeySpec { primary, secondary };
    spec.validate().map_err(|e| AdminError::BadRequest {
        reason: e.to_string(),
    })?;
    let base = compile_query(spec, &query)?;
    let cap = query
        .limit
        .map_or(MAX_LISTED_ROWS, |l| (l as usize).min(MAX_LISTED_ROWS));
    let mut asker = Observer::register(shared)?;
    let mut rows = Vec::new();
    let mut incomplete = BTreeSet::new();
    let mut truncated = false;
    let mut start = None;
    // The answer goes out in one admin frame: bound it the way a listing is bounded.
    let budget = MAX_RESPONSE_BYTES / 2;
    let mut used = 0;
    'pages: loop {
        let page = asker
            .query(RowQuery {
                limit: u32::try_from(cap - rows.len()).unwrap_or(u32::MAX),
                start: start.take(),
                ..base.clone()
            })
            .await?;
        let hub = shared.hub();
        incomplete.extend(page.incomplete.iter().map(|n| name_of(&hub, *n)));
        // More may match than the listing holds; a limit the operator set is not that.
        let over_listing = query.limit.is_none_or(|l| l as usize > MAX_LISTED_ROWS);
        for row in &page.rows {
            if rows.len() == cap {
                truncated = over_listing;
                break 'pages;
            }
            used += row.data.len() * 2 + row.key.primary.len() + 256;
            if used > budget {
                truncated = true;
                break 'pages;
            }
            rows.push(row_info(&hub, row));
        }
        match page.next {
            Some(next) if rows.len() < cap => start = Some(next),
            Some(_) => {
                truncated = over_listing;
                break;
            }
            None => break,
        }
    }
    Ok(Response::Rows {
        rows,
        truncated,
        incomplete: incomplete.into_iter().collect(),
    })
}

/// The wire form of an admin query over `spec`, each malformed part named.
fn compile_query(spec: KeySpec, q: &KeysQuery) -> Result<RowQuery, AdminError> {
    let invalid = |part: &str, e: QueryError| AdminError::InvalidQuery {
        part: part.to_owned(),
        reason: e.to_string(),
    };
    let mut built = Query::on([spec]);
    if let Some(text) = &q.filter {
        built = built.where_text(text).map_err(|e| invalid("where", e))?;
    }
    if let Some(text) = &q.sort {
        built = built.sort_text(text).map_err(|e| invalid("sort", e))?;
    }
    if let Some(text) = &q.near {
        built = built.filter(parse_near(text).map_err(|e| invalid("near", e))?);
    }
    built.build().map_err(|e| invalid("query", e))
}

fn place_report(shared: &Shared, position: Option<(f32, f32)>) -> PlaceReport {
    let hub = shared.hub();
    let decision = place::decide(&hub, shared, &[], position.map(|(x, y)| Position { x, y }));
    // JSON has no infinity: a term that is not finite (an ineligible node) is `null`.
    let finite = |v: f64| Some(v).filter(|v| v.is_finite());
    PlaceReport {
        choice: decision.choice.map(|id| name_of(&hub, id)),
        candidates: decision
            .scores
            .iter()
            .map(|s| CandidateInfo {
                name: s.name.clone(),
                eligible: s.eligible,
                reason: s.reason.clone(),
                load: finite(s.load),
                cpu: finite(s.cpu),
                rtt: finite(s.rtt),
                zone: finite(s.zone),
                total: finite(s.total),
            })
            .collect(),
        explain: decision.explain(),
    }
}

// ---------------------------------------------------------------------------------------
// Drain and migrate.

/// Clears `drain_running` when the drain ends, however it ends.
struct DrainGuard(Arc<Shared>);

impl Drop for DrainGuard {
    fn drop(&mut self) {
        self.0.drain_running.store(false, Ordering::SeqCst);
    }
}

async fn drain_here(shared: Arc<Shared>, wait: bool, tx: Out) {
    let name = shared.config.name.clone();
    if shared.drain_running.swap(true, Ordering::SeqCst) {
        let _ = tx
            .send(Response::Error(AdminError::Failed {
                reason: format!("a drain of {name} is already under way"),
            }))
            .await;
        return;
    }
    // Subscribed before the drain starts, so no progress report is missed.
    let mut events = shared.hub().events.subscribe();
    let clients = shared.hub().local_clients().len();
    let guard = DrainGuard(shared.clone());
    // The drain runs on its own: a waiter that leaves does not stop it.
    let mut task = tokio::spawn(async move {
        let result = drain::drain(&guard.0).await;
        drop(guard);
        result
    });
    if !wait {
        let _ = tx
            .send(Response::DrainStarted {
                node: name,
                clients,
            })
            .await;
        return;
    }
    let progress = |moved, remaining| Response::Progress {
        node: name.clone(),
        moved,
        remaining,
    };
    if tx.send(progress(0, clients)).await.is_err() {
        return;
    }
    let mut events_open = true;
    loop {
        tokio::select! {
            result = &mut task => {
                let answer = match result {
                    Ok(Ok(moved)) => Response::Drained { node: name.clone(), moved },
                    Ok(Err(e)) => Response::Error(AdminError::Failed { reason: format!("drain of {name}: {e}") }),
                    Err(e) => Response::Error(AdminError::Failed { reason: format!("drain of {name} failed: {e}") }),
                };
                let _ = tx.send(answer).await;
                return;
            }
            event = events.recv(), if events_open => match event {
                Ok(MeshEvent::DrainProgress { node, moved, remaining })
                    if node == shared.id && tx.send(progress(moved, remaining)).await.is_err() => {
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => events_open = false,
                _ => {}
            },
        }
    }
}

fn parse_client(client: &str) -> Result<ClientId, AdminError> {
    client.parse().map_err(|_| AdminError::BadRequest {
        reason: format!(
            "{client:?} is not a client id (16 hex digits, as `cloudctl clients` lists them)"
        ),
    })
}

async fn migrate_here(
    shared: &Arc<Shared>,
    client: &str,
    to: &str,
) -> Result<Response, AdminError> {
    let id = parse_client(client)?;
    let target = resolve(shared, to)?;
    if !shared.hub().local_clients().contains(&id) {
        return Err(AdminError::UnknownClient {
            client: id.to_string(),
        });
    }
    match migrate::migrate(shared, id, target).await {
        Ok(()) => Ok(Response::Migrated {
            client: id.to_string(),
            from: shared.config.name.clone(),
            to: name_of(&shared.hub(), target),
        }),
        Err(MigrateError::NotHere(_)) => Err(AdminError::UnknownClient {
            client: id.to_string(),
        }),
        Err(e) => Err(AdminError::Failed {
            reason: format!("migrating {id} to {to}: {e}"),
        }),
    }
}

/// Migrates `client` from whichever node serves it.
async fn migrate_anywhere(
    shared: &Arc<Shared>,
    client: String,
    to: String,
) -> Result<Response, AdminError> {
    let id = parse_client(&client)?;
    resolve(shared, &to)?;
    if shared.hub().local_clients().contains(&id) {
        return migrate_here(shared, &client, &to).await;
    }
    let peers: Vec<NodeId> = shared.hub().peers.keys().copied().collect();
    let command = Command::Migrate {
        client: client.clone(),
        to,
    };
    // A refusal from the node that has the client says more than an unreachable node,
    // which says more than "no such client".
    let mut failure: Option<AdminError> = None;
    for (_, answer) in gather(shared, &peers, &command, relay_idle(shared)).await {
        match answer {
            Ok(r @ Response::Migrated { .. }) => return Ok(r),
            Ok(_) | Err(AdminError::UnknownClient { .. }) => {}
            Err(e @ AdminError::Unavailable { .. }) => {
                failure.get_or_insert(e);
            }
            Err(e) => failure = Some(e),
        }
    }
    Err(failure.unwrap_or(AdminError::UnknownClient {
        client: id.to_string(),
    }))
}

// ---------------------------------------------------------------------------------------
// Watch.

/// An in-node subscriber to one primary key: a store client with no connection whose
/// queue this task reads (the console's key browser sees the same merged, mesh-wide view
/// a game client would).
struct Observer {
    shared: Arc<Shared>,
    id: ClientId,
    /// Where the answers to its requests are queued.
    outbox: Outbox,
    next_request: u64,
    writer: OutboxWriter,
    decoder: FrameDecoder,
    /// Queued bytes not decoded yet.
    buf: BytesMut,
}

impl Observer {
    /// A store client for the admin's own requests: no rows, no connection.
    fn register(shared: &Arc<Shared>) -> Result<Observer, AdminError> {
        let (outbox, writer) = outbox(shared.config.max_outbound_bytes);
        let id = {
            let mut hub = shared.hub();
            let mut id = ClientId::random();
            while hub.store.has_client(id) || hub.links.contains_key(&id) {
                id = ClientId::random();
            }
            hub.store
                .add_client(id, "default", Bytes::new())
                .map_err(|e| AdminError::Failed {
                    reason: e.to_string(),
                })?;
            // No connection: not counted, placed, drained or migrated as a client.
            hub.links
                .insert(id, Link::new(outbox.clone(), LinkKind::Observer));
            id
        };
        Ok(Observer {
            shared: shared.clone(),
            id,
            outbox,
            next_request: 1,
            writer,
            decoder: FrameDecoder::new(shared.config.max_frame),
            buf: BytesMut::new(),
        })
    }

    /// An observer subscribed to every row under `primary`.
    fn open(shared: &Arc<Shared>, primary: &str) -> Result<Observer, AdminError> {
        let spec = KeySpec::primary(primary);
        spec.validate().map_err(|e| AdminError::BadRequest {
            reason: e.to_string(),
        })?;
        let mut observer = Observer::register(shared)?;
        let query = GetQuery {
            keys: vec![spec],
            owners: None,
            start: None,
            limit: 0,
            subscribe: true,
        };
        observer.send(Request::Get(query));
        Ok(observer)
    }

    /// Sends a request as this observer; its answer comes on the observer's queue.
    fn send(&mut self, request: Request) -> u64 {
        let id = self.next_request;
        self.next_request += 1;
        // A get or a query asks nothing of the node beyond the store and its peers.
        let _ = request::execute(
            &self.shared,
            self.id,
            &Sink::Client(self.outbox.clone()),
            id,
            request,
        );
        id
    }

    /// One page of a query, evaluated mesh-wide as a client's query is.
    async fn query(&mut self, query: RowQuery) -> Result<QueryPage, AdminError> {
        let asked = self.send(Request::Query(query));
        match self.answer(Some(asked)).await? {
            Ok(Reply::Queried(page)) => Ok(page),
            Ok(other) => Err(unexpected(other)),
            Err(WireError::InvalidQuery { reason }) => Err(AdminError::InvalidQuery {
                part: "query".into(),
                reason,
            }),
            Err(e) => Err(AdminError::Failed {
                reason: e.to_string(),
            }),
        }
    }

    async fn next(&mut self) -> Option<ServerFrame> {
        loop {
            match self.decoder.decode::<ServerFrame>(&mut self.buf) {
                Ok(Some(frame)) => return Some(frame),
                Ok(None) => {}
                // Our own encoding: failing to read it is a bug, not input.
                Err(e) => {
                    tracing::error!(error = %e, "admin observer could not read a frame");
                    self.buf.clear();
                }
            }
            // The queue hands over whole frames, one or several at a time.
            let bytes = self.writer.recv().await?;
            self.buf.extend_from_slice(&bytes);
        }
    }

    /// The answer to request `id` (to the first request answered, with `None`), skipping
    /// the notifications queued before it.
    async fn answer(&mut self, id: Option<u64>) -> Result<Result<Reply, WireError>, AdminError> {
        loop {
            match self.next().await {
                Some(ServerFrame::Response { id: got, result }) if id.is_none_or(|i| i == got) => {
                    return Ok(result)
                }
                Some(_) => {}
                None => {
                    return Err(AdminError::Failed {
                        reason: "node shutting down".into(),
                    })
                }
            }
        }
    }

    /// The snapshot: the first page of the merged get.
    async fn snapshot(&mut self) -> Result<Vec<Row>, AdminError> {
        match self.answer(None).await? {
            Ok(Reply::Rows(page)) => Ok(page.rows),
            Ok(other) => Err(unexpected(other)),
            Err(e) => Err(AdminError::Failed {
                reason: e.to_string(),
            }),
        }
    }
}

fn unexpected(reply: Reply) -> AdminError {
    AdminError::Failed {
        reason: format!("unexpected answer {reply:?}"),
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        let mut hub = self.shared.hub();
        hub.links.remove(&self.id);
        // It holds no rows: removing it notifies nobody, but withdraws its interest.
        hub.store
            .remove_client(self.id, DeleteReason::Disconnected, now_ms());
        hub.flush_holds(self.shared.config.max_frame);
    }
}

async fn next_change(observer: &mut Option<Observer>) -> Option<ServerFrame> {
    match observer {
        Some(o) => o.next().await,
        None => std::future::pending().await,
    }
}

/// The snapshot frame (and a fresh observer when a key is browsed).
async fn snapshot(
    shared: &Arc<Shared>,
    key: Option<&str>,
) -> Result<(Response, Option<Observer>), AdminError> {
    let mut observer = key.map(|k| Observer::open(shared, k)).transpose()?;
    let rows = match &mut observer {
        Some(o) => Some(o.snapshot().await?),
        None => None,
    };
    let hub = shared.hub();
    let rows = rows.map(|rows| rows.iter().map(|r| row_info(&hub, r)).collect());
    let zones = zone_info(&hub);
    drop(hub);
    let snap = Snapshot {
        status: status(shared),
        nodes: nodes(shared),
        zones,
        rows,
    };
    Ok((Response::Snapshot(snap), observer))
}

async fn watch(shared: Arc<Shared>, key: Option<String>, tx: Out) {
    // Subscribed before the snapshot is taken: nothing falls between the two.
    let mut events = shared.hub().events.subscribe();
    let (first, mut observer) = match snapshot(&shared, key.as_deref()).await {
        Ok(s) => s,
        Err(e) => {
            let _ = tx.send(Response::Error(e)).await;
            return;
        }
    };
    // Names of nodes seen, for events about a node already removed from the member list.
    let mut names: HashMap<NodeId, String> = {
        let hub = shared.hub();
        hub.members()
            .all()
            .iter()
            .map(|m| (m.id, m.name.clone()))
            .collect()
    };
    if tx.send(first).await.is_err() {
        return;
    }
    loop {
        let event = tokio::select! {
            _ = tx.closed() => return,
            event = events.recv() => match event {
                Ok(e) => translate(&shared, &mut names, e),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    let lagged = Response::Event(EventFrame { at_ms: now_ms(), event: Event::Lagged { missed } });
                    if tx.send(lagged).await.is_err() {
                        return;
                    }
                    drop(observer.take());
                    match snapshot(&shared, key.as_deref()).await {
                        Ok((snap, o)) => {
                            observer = o;
                            if tx.send(snap).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            let _ = tx.send(Response::Error(e)).await;
                            return;
                        }
                    }
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            frame = next_change(&mut observer) => match frame {
                Some(ServerFrame::Notify(n)) => {
                    let hub = shared.hub();
                    Some(match n {
                        Notification::Updated(row) => Event::RowChanged(row_info(&hub, &row)),
                        Notification::Deleted { row, reason } => Event::RowDeleted {
                            row: row_info(&hub, &row),
                            reason: format!("{reason:?}"),
                        },
                    })
                }
                Some(_) => None,
                None => return,
            },
        };
        if let Some(event) = event {
            let frame = Response::Event(EventFrame {
                at_ms: now_ms(),
                event,
            });
            if tx.send(frame).await.is_err() {
                return;
            }
        }
    }
}

/// A mesh event as the operator sees it.
fn translate(shared: &Shared, names: &mut HashMap<NodeId, String>, e: MeshEvent) -> Option<Event> {
    if let MeshEvent::PeerUp { node, name } = e {
        names.insert(node, name.clone());
        return Some(Event::NodeUp { node: name });
    }
    let name = |id: NodeId| {
        names
            .get(&id)
            .cloned()
            .unwrap_or_else(|| name_of(&shared.hub(), id))
    };
    Some(match e {
        MeshEvent::PeerUp { .. } => return None,
        MeshEvent::PeerLeft { node, rows } => Event::NodeLeft {
            node: name(node),
            rows,
        },
        MeshEvent::PeerLost { node, rows } => Event::NodeLost {
            node: name(node),
            rows,
        },
        MeshEvent::StateChanged { node, state } => Event::StateChanged {
            node: name(node),
            state: state.as_str().to_owned(),
        },
        MeshEvent::HostChanged { old, new } => Event::HostChanged {
            old: name(old),
            new: name(new),
        },
        MeshEvent::DrainProgress {
            node,
            moved,
            remaining,
        } => Event::DrainProgress {
            node: name(node),
            moved,
            remaining,
        },
        MeshEvent::Migrated { client, to } => Event::Migrated {
            client: client.to_string(),
            from: shared.config.name.clone(),
            to: name(to),
        },
        MeshEvent::Load { node, .. } => {
            let hub = shared.hub();
            let m = hub.members().get(node)?.clone();
            Event::Load(node_info(&hub, shared, &m))
        }
        MeshEvent::ZonesChanged => Event::Zones(zone_info(&shared.hub())?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_sort_with_their_numbers_as_numbers() {
        let mut names = vec!["node-10", "node-2", "edge", "node-1", "node-", "alpha-3"];
        names.sort_by_key(|n| name_order(n));
        assert_eq!(
            names,
            ["alpha-3", "edge", "node-", "node-1", "node-2", "node-10"]
        );
    }
}
