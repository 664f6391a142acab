//! Links to other nodes: dialing and accepting with mutual authentication, the member
//! exchange, the peer frame loop, gets fanned out across the mesh, and what a lost node
//! means for local subscribers (§3.5, §4).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::conn::respond;
use super::{now_ms, Hub, Link, MeshEvent, PeerLink, PendingGet, Shared};
use crate::mesh::{authenticate, merge_pages, Role, UNJOINED};
use crate::proto::{
    encode_to_bytes, outbox, ClientId, CloseCode, CodecError, DeleteReason, FrameReader, GetPage,
    GetQuery, KeySpec, MemberInfo, NodeId, NodeState, Notification, Outbox, PeerFrame, Reply, Row,
    DEFAULT_PORT, PEER_PROTOCOL_VERSION,
};
use crate::store::Fanout;

/// Time allowed for the authentication and hello exchange.
const HANDSHAKE: Duration = Duration::from_secs(5);

/// Bytes queued to a peer before it counts as too slow (it carries many clients' changes).
const PEER_OUTBOUND: usize = 64 * 1024 * 1024;

/// Why dialing a peer failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum DialError {
    #[error("no mesh secret configured")]
    NoSecret,
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error(transparent)]
    Auth(#[from] crate::mesh::AuthError),
    #[error("peer protocol: {0}")]
    Protocol(String),
    #[error("that address is this node itself")]
    Myself,
}

impl From<CodecError> for DialError {
    fn from(e: CodecError) -> Self {
        DialError::Protocol(e.to_string())
    }
}

/// The hello this node sends now.
fn my_hello(hub: &Hub) -> PeerFrame {
    let me = hub.members.me().clone();
    PeerFrame::Hello {
        version: PEER_PROTOCOL_VERSION,
        members: hub.members.others().cloned().collect(),
        me,
        holds: hub.store.held_primaries(),
    }
}

async fn read_hello(
    reader: &mut FrameReader<quinn::RecvStream>,
) -> Result<(MemberInfo, Vec<MemberInfo>, Vec<String>), DialError> {
    match tokio::time::timeout(HANDSHAKE, reader.next::<PeerFrame>()).await {
        Ok(Ok(Some(PeerFrame::Hello {
            version,
            me,
            members,
            holds,
        }))) => {
            if version != PEER_PROTOCOL_VERSION {
                return Err(DialError::Protocol(format!(
                    "peer speaks peer protocol {version}, this node {PEER_PROTOCOL_VERSION}"
                )));
            }
            Ok((me, members, holds))
        }
        Ok(Ok(Some(other))) => Err(DialError::Protocol(format!(
            "expected Hello, got {other:?}"
        ))),
        Ok(Ok(None)) => Err(DialError::Protocol("stream ended before Hello".into())),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(DialError::Protocol("no Hello in time".into())),
    }
}

/// Connects to `addr`, authenticates, exchanges hellos and registers the link.
pub(super) async fn dial(shared: &Arc<Shared>, addr: SocketAddr) -> Result<NodeId, DialError> {
    let (Some(cfg), Some(secret)) = (&shared.peer_client, &shared.config.secret) else {
        return Err(DialError::NoSecret);
    };
    let connecting = shared
        .endpoint
        .connect_with(cfg.clone(), addr, "cloudmesh")
        .map_err(|e| DialError::Connect(e.to_string()))?;
    let conn = tokio::time::timeout(HANDSHAKE, connecting)
        .await
        .map_err(|_| DialError::Connect("no answer".into()))?
        .map_err(|e| DialError::Connect(e.to_string()))?;
    let (mut send, recv) = conn
        .open_bi()
        .await
        .map_err(|e| DialError::Connect(e.to_string()))?;
    let mut reader = FrameReader::new(recv, shared.config.max_frame);
    if let Err(e) = authenticate(
        &conn,
        &mut send,
        &mut reader,
        secret,
        Role::Dialer,
        HANDSHAKE,
    )
    .await
    {
        conn.close(
            CloseCode::Forbidden.to_u32().into(),
            b"mesh authentication failed",
        );
        return Err(e.into());
    }
    let (their, members, holds) = match read_hello(&mut reader).await {
        Ok(h) => h,
        Err(e) => {
            conn.close(
                CloseCode::Protocol.to_u32().into(),
                e.to_string().as_bytes(),
            );
            return Err(e);
        }
    };
    if their.id == shared.id {
        conn.close(CloseCode::Normal.to_u32().into(), b"connected to itself");
        return Err(DialError::Myself);
    }
    let their_id = their.id;
    establish(
        shared, conn, send, reader, their, members, holds, shared.id, None,
    )?;
    Ok(their_id)
}

/// Serves a connection that arrived with the peer ALPN.
pub(super) async fn accept(shared: Arc<Shared>, conn: quinn::Connection) {
    let remote = conn.remote_address();
    let Some(secret) = shared.config.secret.clone() else {
        tracing::info!(%remote, "refusing a peer: this node has no mesh secret, so it is not part of a mesh");
        conn.close(
            CloseCode::Forbidden.to_u32().into(),
            b"this node is not part of a mesh (no secret)",
        );
        return;
    };
    if !shared.auth_limiter.allow(remote.ip(), Instant::now()) {
        conn.close(
            CloseCode::Forbidden.to_u32().into(),
            b"too many failed authentications; try later",
        );
        return;
    }
    let Ok(Ok((mut send, recv))) = tokio::time::timeout(HANDSHAKE, conn.accept_bi()).await else {
        conn.close(
            CloseCode::Protocol.to_u32().into(),
            b"no stream opened in time",
        );
        return;
    };
    let mut reader = FrameReader::new(recv, shared.config.max_frame);
    if let Err(e) = authenticate(
        &conn,
        &mut send,
        &mut reader,
        &secret,
        Role::Acceptor,
        HANDSHAKE,
    )
    .await
    {
        if shared.auth_limiter.failed(remote.ip(), Instant::now()) {
            tracing::warn!(%remote, error = %e, "peer authentication failed; closing (further failures from this address are counted, not logged)");
        }
        conn.close(
            CloseCode::Forbidden.to_u32().into(),
            b"mesh authentication failed",
        );
        return;
    }
    // Hello first from this side, with the holds it reflects, so the link can correct
    // anything that changes before it is registered.
    let (hello, sent_holds) = {
        let hub = shared.hub();
        (my_hello(&hub), hub.store.held_primaries())
    };
    match encode_to_bytes(&hello, shared.config.max_frame) {
        Ok(bytes) => {
            if send.write_all(&bytes).await.is_err() {
                return;
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "own hello does not fit a frame");
            conn.close(CloseCode::Protocol.to_u32().into(), b"hello too large");
            return;
        }
    }
    let (their, members, holds) = match read_hello(&mut reader).await {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(%remote, error = %e, "peer hello failed");
            conn.close(
                CloseCode::Protocol.to_u32().into(),
                e.to_string().as_bytes(),
            );
            return;
        }
    };
    if their.id == shared.id {
        conn.close(CloseCode::Normal.to_u32().into(), b"connected to itself");
        return;
    }
    let dialer = their.id;
    if let Err(e) = establish(
        &shared,
        conn,
        send,
        reader,
        their,
        members,
        holds,
        dialer,
        Some(sent_holds),
    ) {
        tracing::warn!(%remote, error = %e, "peer link not established");
    }
}

/// Registers an authenticated link and starts its tasks. The dialer sends its hello here,
/// under the hub lock, so nothing that changes afterwards is missed by the peer.
#[allow(clippy::too_many_arguments)]
fn establish(
    shared: &Arc<Shared>,
    conn: quinn::Connection,
    mut send: quinn::SendStream,
    reader: FrameReader<quinn::RecvStream>,
    their: MemberInfo,
    members: Vec<MemberInfo>,
    holds: Vec<String>,
    dialer: NodeId,
    sent_holds: Option<Vec<String>>,
) -> Result<(), DialError> {
    let cfg = &shared.config;
    let mut their = their;
    reachable_addrs(&mut their.addrs, conn.remote_address());
    let their_id = their.id;
    let mut to_dial = Vec::new();
    let (outbox, writer) = outbox(PEER_OUTBOUND);
    {
        let mut hub = shared.hub();
        if let Some(existing) = hub.peers.get(&their_id) {
            let keep_existing =
                existing.dialer == shared.id.min(their_id) || dialer != shared.id.min(their_id);
            if keep_existing {
                conn.close(CloseCode::Normal.to_u32().into(), b"duplicate link");
                return Ok(());
            }
            existing.conn.close(
                CloseCode::Normal.to_u32().into(),
                b"duplicate link replaced",
            );
            let old = existing.pseudo;
            hub.links.remove(&old);
            hub.store
                .remove_client(old, DeleteReason::Disconnected, now_ms());
            hub.peers.remove(&their_id);
        }
        if sent_holds.is_none() {
            // Dialer: a joining node takes its place in the join order from what it sees.
            if hub.members.me().join_seq == UNJOINED {
                for m in members.iter().chain(std::iter::once(&their)) {
                    hub.members.upsert(m.clone());
                }
                let seq = hub.members.next_join_seq();
                let me = hub.members.me_mut();
                me.join_seq = seq;
                me.state = NodeState::Active;
                hub.adopt_host();
                tracing::info!(join_seq = seq, via = %their.name, host = %hub.host_name, "joined the mesh");
            }
            match encode_to_bytes(&my_hello(&hub), cfg.max_frame) {
                Ok(bytes) => outbox.push_response(bytes),
                Err(e) => return Err(DialError::Protocol(e.to_string())),
            }
        }
        let pseudo = loop {
            let id = ClientId::random();
            if !hub.store.has_client(id) {
                break id;
            }
        };
        hub.store.add_system_client(pseudo);
        hub.links.insert(
            pseudo,
            Link {
                outbox: outbox.clone(),
                conn: Some(conn.clone()),
                lagged: false,
                since_ms: now_ms(),
                peer: Some(their_id),
            },
        );
        hub.peers.insert(
            their_id,
            PeerLink {
                pseudo,
                outbox: outbox.clone(),
                conn: conn.clone(),
                dialer,
            },
        );
        if let Some(sent) = sent_holds {
            // Acceptor: correct what changed since its hello.
            let now: HashSet<String> = hub.store.held_primaries().into_iter().collect();
            let sent: HashSet<String> = sent.into_iter().collect();
            for p in now.difference(&sent) {
                push(
                    &outbox,
                    &PeerFrame::Holds {
                        primary: p.clone(),
                        held: true,
                    },
                    cfg.max_frame,
                );
            }
            for p in sent.difference(&now) {
                push(
                    &outbox,
                    &PeerFrame::Holds {
                        primary: p.clone(),
                        held: false,
                    },
                    cfg.max_frame,
                );
            }
        }
        for primary in holds {
            hub.holders.entry(primary).or_default().insert(their_id);
        }
        // Others learn of the new member and connect to it.
        let news = PeerFrame::Members(vec![their.clone()]);
        if let Ok(bytes) = encode_to_bytes(&news, cfg.max_frame) {
            for (id, p) in &hub.peers {
                if *id != their_id {
                    p.outbox.push_response(bytes.clone());
                }
            }
        }
        hub.members.upsert(their.clone());
        // And the new peer learns of every member, including any that joined after the
        // hello it got (an acceptor's hello is sent before registration).
        let everyone: Vec<MemberInfo> = hub
            .members
            .all()
            .into_iter()
            .filter(|m| m.id != their_id)
            .collect();
        push(&outbox, &PeerFrame::Members(everyone), cfg.max_frame);
        // Our load now rather than at the next interval: until a node has it, this node is
        // no placement (or drain) target there.
        if let Some(load) = hub.loads.get(&shared.id).copied() {
            push(&outbox, &PeerFrame::Load(load), cfg.max_frame);
        }
        // Dial every member not linked yet (whether or not it was known before: a joiner
        // already recorded them to take its place in the join order).
        for m in members {
            if m.id != shared.id && !hub.peers.contains_key(&m.id) {
                hub.members.upsert(m.clone());
                to_dial.push(m);
            }
        }
        // Register what local subscribers want at the new peer (changes only flow to
        // nodes that asked for them).
        let specs = hub.store.client_subscription_specs();
        if !specs.is_empty() {
            let s = shared.clone();
            let out = outbox.clone();
            tokio::spawn(async move { subscribe_existing(s, their_id, out, specs).await });
        }
        let _ = hub.events.send(MeshEvent::PeerUp {
            node: their_id,
            name: their.name.clone(),
        });
        hub.check_host(cfg);
        hub.write_node_record(cfg);
    }
    tracing::info!(peer = %their.name, id = %their_id, remote = %conn.remote_address(), "peer link up");

    tokio::spawn(async move {
        let _ = writer.run(&mut send).await;
        let _ = send.finish();
    });
    let s = shared.clone();
    tokio::spawn(async move { link_loop(s, conn, reader, their_id).await });
    dial_members(shared, to_dial);
    Ok(())
}

/// A node bound to every interface advertises 0.0.0.0 or [::]; nobody can dial that. Use
/// the IP its link really came from instead (with the advertised port), which is what other
/// members can reach too.
fn reachable_addrs(addrs: &mut [SocketAddr], seen_from: SocketAddr) {
    for addr in addrs {
        if addr.ip().is_unspecified() {
            addr.set_ip(seen_from.ip());
        }
    }
}

/// Queues one frame on a peer link (a frame too large to encode is a bug, logged).
pub(super) fn push(outbox: &Outbox, frame: &PeerFrame, max: usize) {
    match encode_to_bytes(frame, max) {
        Ok(bytes) => outbox.push_response(bytes),
        Err(e) => tracing::error!(error = %e, "peer message does not fit a frame"),
    }
}

/// Dials members this node learned of. Of two nodes, the one with the lower id dials, so
/// they do not both dial at once; the other waits to be dialed.
fn dial_members(shared: &Arc<Shared>, members: Vec<MemberInfo>) {
    for m in members {
        if shared.id > m.id {
            continue;
        }
        let s = shared.clone();
        tokio::spawn(async move { connect_member(s, m).await });
    }
}

/// Tries a member's addresses in order (internal first), with bounded retries.
async fn connect_member(shared: Arc<Shared>, m: MemberInfo) {
    let mut backoff = Duration::from_millis(200);
    for _attempt in 0..8 {
        if shared.shutting_down() || shared.hub().peers.contains_key(&m.id) {
            return;
        }
        for addr in &m.addrs {
            match dial(&shared, *addr).await {
                Ok(_) => return,
                Err(e) => tracing::debug!(peer = %m.name, %addr, error = %e, "dial failed"),
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
    tracing::warn!(peer = %m.name, "could not connect to a member after 8 attempts");
}

/// Resolves the join names; `NAME[:PORT]`, port 7946 when left out.
async fn resolve_join(target: &str) -> Vec<SocketAddr> {
    if let Ok(addr) = target.parse::<SocketAddr>() {
        return vec![addr];
    }
    let with_port = if target
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        target.to_owned()
    } else {
        format!("{target}:{DEFAULT_PORT}")
    };
    let resolved = tokio::net::lookup_host(with_port.as_str()).await;
    match resolved {
        Ok(addrs) => addrs.collect(),
        Err(e) => {
            tracing::warn!(target, error = %e, "cannot resolve join name");
            Vec::new()
        }
    }
}

/// Tries every address of every join name; the first that authenticates is the way in.
/// If none answers, this node starts a mesh of its own and is its host (seed 000, 1.B).
pub(super) async fn join(shared: &Arc<Shared>) {
    if try_join(shared).await {
        return;
    }
    let cfg = &shared.config;
    let mut hub = shared.hub();
    if hub.members.me().join_seq == UNJOINED {
        let seq = hub.members.next_join_seq();
        let me = hub.members.me_mut();
        me.join_seq = seq;
        me.state = NodeState::Active;
        tracing::info!(targets = ?cfg.join, "no mesh member answered; starting a new mesh as its host");
        hub.check_host(cfg);
        hub.write_node_record(cfg);
    }
}

async fn try_join(shared: &Arc<Shared>) -> bool {
    let local = shared.hub().local_addr;
    for target in &shared.config.join {
        for addr in resolve_join(target).await {
            if addr == local {
                continue;
            }
            match dial(shared, addr).await {
                Ok(_) => return true,
                Err(DialError::Myself) => {}
                Err(DialError::Auth(e)) => {
                    tracing::warn!(%addr, error = %e, "cannot join: authentication failed (is the mesh secret the same on every node?)")
                }
                Err(e) => tracing::info!(%addr, error = %e, "join attempt failed"),
            }
        }
    }
    false
}

/// While this node has no peer, keeps trying the join names, so a node that started alone
/// finds the mesh once it is reachable (and split meshes merge).
pub(super) async fn rejoin_loop(shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.clone();
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(Duration::from_secs(3)) => {}
        }
        if shared.shutting_down() {
            return;
        }
        if shared.hub().peers.is_empty() {
            try_join(&shared).await;
        }
    }
}

/// Which peers a get must ask: every peer for a subscribe (a peer without rows now may
/// have one a moment later), else only those holding a queried primary.
pub(super) fn targets_for(hub: &Hub, query: &GetQuery) -> Vec<NodeId> {
    if query.subscribe {
        return hub.peers.keys().copied().collect();
    }
    let mut set: HashSet<NodeId> = HashSet::new();
    for spec in &query.keys {
        if let Some(nodes) = hub.holders.get(&spec.primary) {
            set.extend(nodes.iter().filter(|n| hub.peers.contains_key(n)));
        }
    }
    set.into_iter().collect()
}

/// Sends `query` to `targets` (under the hub lock, so it is ordered with everything else
/// on those links) and returns what to wait for.
pub(super) fn send_gets(
    shared: &Shared,
    hub: &Hub,
    targets: &[NodeId],
    query: &GetQuery,
) -> Vec<(u64, NodeId, oneshot::Receiver<Option<GetPage>>)> {
    let mut waits = Vec::new();
    let mut pending = shared.pending();
    for node in targets {
        let Some(link) = hub.peers.get(node) else {
            continue;
        };
        let id = shared.next_request.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        pending.insert(id, PendingGet { node: *node, tx });
        push(
            &link.outbox,
            &PeerFrame::Get {
                id,
                query: query.clone(),
            },
            shared.config.max_frame,
        );
        waits.push((id, *node, rx));
    }
    waits
}

/// Waits (bounded) for the peers' pages, merges them with the local one and answers.
pub(super) async fn answer_merged(
    shared: Arc<Shared>,
    sink: super::conn::Sink,
    request: u64,
    local: GetPage,
    waits: Vec<(u64, NodeId, oneshot::Receiver<Option<GetPage>>)>,
    limit: u32,
) {
    let deadline = tokio::time::Instant::now() + shared.config.remote_timeout;
    let mut answers = vec![(shared.id, Some(local))];
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
async fn subscribe_existing(
    shared: Arc<Shared>,
    node: NodeId,
    outbox: Outbox,
    specs: Vec<KeySpec>,
) {
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
                    return;
                }
                let mut waits = send_gets(&shared, &hub, &[node], &query);
                match waits.pop() {
                    Some((_, _, rx)) => rx,
                    None => return,
                }
            };
            let Ok(Ok(Some(page))) =
                tokio::time::timeout(shared.config.remote_timeout * 5, rx).await
            else {
                tracing::warn!(%node, "peer did not answer a subscription registration");
                return;
            };
            {
                let mut hub = shared.hub();
                for row in page.rows {
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
    drop(outbox);
}

/// A change that came from `node`: drop it if stale, remember it for `NodeLost`, and pass
/// it to local subscribers (never on to other peers: each subscribes at the source).
fn apply_remote(hub: &mut Hub, node: NodeId, n: Notification, max_frame: usize) {
    let row = n.row();
    let id = (row.key.clone(), row.owner);
    let recipients = hub.local_subscribers(&row.key, row.owner);
    let mirror = hub.mirror.entry(node).or_default();
    if mirror
        .get(&id)
        .is_some_and(|known| known.version >= row.version)
    {
        return;
    }
    match &n {
        Notification::Updated(row) => {
            if recipients.is_empty() && !mirror.contains_key(&id) {
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
        Notification::Deleted { .. } => {
            mirror.remove(&id);
        }
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

/// Reads one peer's frames until the link ends.
async fn link_loop(
    shared: Arc<Shared>,
    conn: quinn::Connection,
    mut reader: FrameReader<quinn::RecvStream>,
    node: NodeId,
) {
    let max = shared.config.max_frame;
    // Every peer sends at least a load report each keep-alive interval (load.rs), so a link
    // silent for the idle timeout is dead. Noticing that here, rather than waiting for
    // QUIC's own idle timer (which restarts when this side sends its next keep-alive, up
    // to a keep-alive interval later), keeps a lost node's NodeLost within the idle
    // timeout of its last word (§9).
    // One timer for the link, re-armed only when it fires and a frame came meanwhile: a
    // timer per frame would cost a timer-wheel insert and removal for every notification
    // crossing the mesh. (`FrameReader::next` is cancel-safe: what it read stays buffered.)
    let silence = shared.config.timing.idle_timeout;
    let mut last_frame = tokio::time::Instant::now();
    let silent = tokio::time::sleep(silence);
    tokio::pin!(silent);
    let reason = loop {
        let next = tokio::select! {
            next = reader.next::<PeerFrame>() => next,
            () = &mut silent => {
                let due = last_frame + silence;
                if due > tokio::time::Instant::now() {
                    silent.as_mut().reset(due);
                    continue;
                }
                let why = format!("no frame from the peer within the idle timeout ({silence:?})");
                conn.close(CloseCode::Normal.to_u32().into(), why.as_bytes());
                break why;
            }
        };
        last_frame = tokio::time::Instant::now();
        let frame = match next {
            Ok(Some(f)) => f,
            Ok(None) => break "stream ended".to_owned(),
            Err(CodecError::Io(e)) => break e.to_string(),
            Err(e) => {
                conn.close(
                    CloseCode::Protocol.to_u32().into(),
                    e.to_string().as_bytes(),
                );
                break e.to_string();
            }
        };
        match frame {
            PeerFrame::Get { id, query } => {
                let mut hub = shared.hub();
                let Some(link) = hub.peers.get(&node) else {
                    break "link replaced".into();
                };
                let (pseudo, out) = (link.pseudo, link.outbox.clone());
                let result = hub.store.get(pseudo, &query);
                // Queued under the lock: the snapshot precedes every change after it.
                push(&out, &PeerFrame::GetResult { id, result }, max);
            }
            PeerFrame::GetResult { id, result } => {
                let waiter = shared.pending().remove(&id);
                let page = result.ok();
                if let Some(page) = &page {
                    // Rows local subscribers may see: remembered for NodeLost.
                    let mut hub = shared.hub();
                    for row in &page.rows {
                        let wanted = hub
                            .store
                            .subscribers(&row.key, row.owner)
                            .iter()
                            .any(|c| hub.links.get(c).is_some_and(|l| l.peer.is_none()));
                        if wanted {
                            let mirror = hub.mirror.entry(node).or_default();
                            let id = (row.key.clone(), row.owner);
                            if mirror
                                .get(&id)
                                .is_none_or(|known| known.version < row.version)
                            {
                                mirror.insert(id, row.clone());
                            }
                        }
                    }
                }
                if let Some(w) = waiter {
                    let _ = w.tx.send(page);
                }
            }
            PeerFrame::Change(n) => apply_remote(&mut shared.hub(), node, n, max),
            PeerFrame::HeldBy {
                primary,
                node: holder,
            } => {
                let mut hub = shared.hub();
                if holder != shared.id && hub.peers.contains_key(&holder) {
                    hub.holders.entry(primary).or_default().insert(holder);
                }
            }
            PeerFrame::Holds { primary, held } => {
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
            PeerFrame::Unsubscribe { keys } => {
                let mut hub = shared.hub();
                if let Some(pseudo) = hub.peers.get(&node).map(|l| l.pseudo) {
                    let _ = hub.store.unsubscribe(pseudo, &keys, None);
                }
            }
            PeerFrame::Members(list) => {
                let mut to_dial = Vec::new();
                {
                    let mut hub = shared.hub();
                    for m in list {
                        if m.id == shared.id {
                            continue;
                        }
                        if hub
                            .members
                            .get(m.id)
                            .is_some_and(|known| known.state != m.state)
                        {
                            let _ = hub.events.send(MeshEvent::StateChanged {
                                node: m.id,
                                state: m.state,
                            });
                        }
                        hub.members.upsert(m.clone());
                        if !hub.peers.contains_key(&m.id) {
                            to_dial.push(m);
                        }
                    }
                    hub.check_host(&shared.config);
                }
                dial_members(&shared, to_dial);
            }
            PeerFrame::Prepare { ticket, state } => {
                tokio::spawn(super::migrate::on_prepare(
                    shared.clone(),
                    node,
                    ticket,
                    state,
                ));
            }
            PeerFrame::Prepared { ticket, result } => {
                super::migrate::on_prepared(&shared, ticket, result)
            }
            PeerFrame::Handover { ticket } => super::migrate::on_handover(&shared, node, ticket),
            PeerFrame::Abort { ticket } => super::migrate::on_abort(&shared, &ticket),
            PeerFrame::Transfer { ticket, state } => {
                super::migrate::on_transfer(&shared, ticket, state)
            }
            PeerFrame::Forward { client, id, op } => {
                super::migrate::on_forward(&shared, node, client, id, op)
            }
            PeerFrame::Forwarded { client, id, result } => {
                super::migrate::on_forwarded(&shared, client, id, result)
            }
            PeerFrame::Zones { json } => super::zones::on_zones(&shared, &json),
            PeerFrame::Rebalance { to, count } => {
                tokio::spawn(super::rebalance::move_clients(shared.clone(), to, count));
            }
            PeerFrame::Load(info) => {
                let mut hub = shared.hub();
                // Heartbeats repeat the last report; only a new one is news.
                if hub.loads.insert(node, info) != Some(info) {
                    let _ = hub.events.send(MeshEvent::Load { node, info });
                }
            }
            PeerFrame::DrainProgress { moved, remaining } => {
                let mut hub = shared.hub();
                // Fresher than its last load report: `nodes` shows the count falling.
                if let Some(load) = hub.loads.get_mut(&node) {
                    load.clients = u32::try_from(remaining).unwrap_or(u32::MAX);
                }
                let _ = hub.events.send(MeshEvent::DrainProgress {
                    node,
                    moved: moved as usize,
                    remaining: remaining as usize,
                });
            }
            PeerFrame::Admin { id, command } => {
                super::admin::on_command(&shared, node, id, command)
            }
            PeerFrame::AdminReply { id, body } => super::admin::on_reply(&shared, id, body),
            PeerFrame::Hello { .. } => {
                conn.close(CloseCode::Protocol.to_u32().into(), b"Hello sent twice");
                break "Hello sent twice".into();
            }
        }
    };
    link_lost(&shared, node, &conn, &reason);
}

/// A link ended: forget the node, tell local subscribers its rows are gone, re-elect.
fn link_lost(shared: &Arc<Shared>, node: NodeId, conn: &quinn::Connection, reason: &str) {
    let cfg = &shared.config;
    let lost = {
        let mut hub = shared.hub();
        match hub.peers.get(&node) {
            Some(link) if link.conn.stable_id() == conn.stable_id() => {}
            // A duplicate that was replaced, or already handled.
            _ => return,
        }
        let Some(link) = hub.peers.remove(&node) else {
            return;
        };
        hub.links.remove(&link.pseudo);
        hub.store
            .remove_client(link.pseudo, DeleteReason::Disconnected, now_ms());
        let info = hub.members.remove(node);
        hub.loads.remove(&node);
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
        let now = now_ms();
        for mut row in rows {
            row.version += 1;
            row.updated_at_ms = now;
            let recipients = hub.local_subscribers(&row.key, row.owner);
            let fan = Fanout {
                notification: Notification::Deleted {
                    row,
                    reason: DeleteReason::NodeLost,
                },
                recipients,
            };
            hub.deliver(fan, cfg.max_frame, false);
        }
        let _ = hub.events.send(MeshEvent::PeerLost { node, rows: count });
        tracing::warn!(peer = info.as_ref().map_or("?", |m| m.name.as_str()), id = %node, reason,
            rows = count, "peer lost; its rows are gone for local subscribers (NodeLost)");
        hub.check_host(cfg);
        hub.write_node_record(cfg);
        info
    };
    // Answers it owed will not come.
    shared.pending().retain(|_, p| p.node != node);
    super::admin::link_lost(shared, node);
    if let Some(m) = lost {
        if !shared.shutting_down() {
            let s = shared.clone();
            tokio::spawn(async move { connect_member(s, m).await });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_addresses_become_the_seen_ip_with_the_advertised_port() {
        let mut addrs: Vec<SocketAddr> = vec![
            "0.0.0.0:7946".parse().expect("addr"),
            "[::]:7000".parse().expect("addr"),
            "10.1.2.3:7946".parse().expect("addr"),
        ];
        reachable_addrs(&mut addrs, "192.0.2.7:40000".parse().expect("addr"));
        let want: Vec<SocketAddr> = vec![
            "192.0.2.7:7946".parse().expect("addr"),
            "192.0.2.7:7000".parse().expect("addr"),
            "10.1.2.3:7946".parse().expect("addr"),
        ];
        assert_eq!(addrs, want);
    }
}
