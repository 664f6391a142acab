//! Healing: what the SDK does when its connection is lost, so the application sees
//! informational events instead of errors.
//!
//! 1. The session is suspended at the node (it keeps rows, subscriptions and missed
//!    notifications for its resume grace). The SDK parks new calls and tries to take the
//!    session back with its single-use token: the node it lost first, then every other
//!    node it knows (`cloud.nodes`, and its seeds, names resolved again), with jittered,
//!    capped backoff. Any node of the mesh takes the session from the one holding it.
//! 2. Once welcomed back, calls in flight are settled by the request id the node says it
//!    read last: those it never read fail with [`ClientError::Interrupted`] `{applied:
//!    false}` (safe to repeat), those whose answer the node still had queued complete, and
//!    those it applied but whose answer was lost fail with `{applied: true}`. Nothing is
//!    silently lost or applied twice. Each subscription then reads its rows again in one
//!    atomic get+subscribe and merges them by version, so no change falls in the gap and
//!    none is delivered twice.
//! 3. If the session cannot be taken back (its node is gone, or its grace ended), the SDK
//!    connects anew to another node, posts its rows again (what it last posted, and its
//!    session blob) and subscribes again: `Restored`, with a new client id.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::Rng;

use super::link::{self, Ctx};
use super::{lock, ClientError, State};
use crate::proto::{
    ClientId, CloseCode, DeleteReason, GetQuery, Key, KeySpec, NodeId, Reply, Request,
    ResumeRefusal, ResumeRequest, WireError,
};

/// Where the SDK can reach the mesh: an address, or a DNS name with a port that is
/// resolved again whenever the SDK looks for a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seed {
    /// A socket address.
    Addr(SocketAddr),
    /// `host:port`, resolved each time.
    Name(String),
}

impl From<SocketAddr> for Seed {
    fn from(a: SocketAddr) -> Self {
        Seed::Addr(a)
    }
}

impl From<&str> for Seed {
    fn from(s: &str) -> Self {
        match s.parse() {
            Ok(a) => Seed::Addr(a),
            Err(_) => Seed::Name(s.to_owned()),
        }
    }
}

impl From<String> for Seed {
    fn from(s: String) -> Self {
        Seed::from(s.as_str())
    }
}

/// What happened to the session's connection. Informational: calls and subscriptions
/// carry on by themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// The connection to `node` was lost; calls wait while the SDK takes the session back.
    Suspended {
        /// The node the connection was to.
        node: NodeId,
        /// Why the connection ended.
        reason: String,
    },
    /// The session was taken back, unchanged (same client id, rows, subscriptions).
    Resumed {
        /// Where it was suspended.
        from: NodeId,
        /// Where it continues.
        to: NodeId,
    },
    /// The session could not be taken back (its node is gone, or its grace ended): it was
    /// established again on `to` from what this client had posted, under a new client id.
    Restored {
        /// The client id the lost session had.
        old_client: ClientId,
        /// The new one.
        new_client: ClientId,
        /// Where it continues.
        to: NodeId,
        /// Rows posted again.
        rows: usize,
    },
}

/// How long the node the session was on is tried alone before the others are asked too.
const SAME_NODE_FIRST: Duration = Duration::from_millis(300);

/// A lost connection being healed.
#[derive(Debug)]
pub(crate) struct Healing {
    /// Calls in flight when the connection was lost.
    inflight: HashSet<u64>,
}

/// Whether a connection that ended with `error` is worth healing: a lost connection, a
/// node that stopped or shed the client; not a close this client asked for, a refusal, or
/// a protocol breach.
fn healable(error: &ClientError) -> bool {
    match error {
        ClientError::Closed { code, .. } => match code {
            None => true,
            Some(c) => matches!(
                c,
                CloseCode::Shutdown | CloseCode::SlowConsumer | CloseCode::MigrateIgnored
            ),
        },
        _ => false,
    }
}

/// The current link ended with `error` (the caller holds the state lock and has found no
/// migration to fall back on). Starts healing and returns `true`, or `false` when the
/// client closes instead.
pub(crate) fn lost(ctx: &Arc<Ctx>, st: &mut State, error: &ClientError) -> bool {
    if !ctx.opts.heal || !healable(error) || st.healing.is_some() {
        return false;
    }
    let Some(old) = st.link.take() else {
        return false;
    };
    let welcome = old.welcome.clone();
    st.healing = Some(Healing {
        inflight: st.pending.keys().copied().collect(),
    });
    let _ = ctx.events.send(SessionEvent::Suspended {
        node: welcome.node_id,
        reason: error.to_string(),
    });
    tracing::info!(node = %welcome.node_name, error = %error, "connection lost; resuming the session");
    let first = old.conn.remote_address();
    tokio::spawn(heal(ctx.clone(), first, welcome));
    true
}

/// Resolves seeds to addresses (names looked up now), in random order.
pub(crate) async fn resolve(seeds: &[Seed]) -> Vec<SocketAddr> {
    use rand::seq::SliceRandom;
    let mut out = Vec::new();
    for seed in seeds {
        match seed {
            Seed::Addr(a) => out.push(*a),
            Seed::Name(name) => {
                if let Ok(Ok(addrs)) =
                    tokio::time::timeout(Duration::from_secs(2), tokio::net::lookup_host(name))
                        .await
                {
                    out.extend(addrs);
                }
            }
        }
    }
    out.shuffle(&mut rand::thread_rng());
    out.dedup();
    out
}

/// Where to look: the node the session was on (`lost`) first when resuming, last when
/// restoring (it is then known not to have the session, and may be dead); the nodes of
/// `cloud.nodes` (with the certificate fingerprint the mesh vouched for) and the seeds
/// (resolved again) in between.
async fn candidates(
    ctx: &Ctx,
    lost: SocketAddr,
    lost_first: bool,
) -> Vec<(SocketAddr, Option<[u8; 32]>)> {
    let mut out: Vec<(SocketAddr, Option<[u8; 32]>)> = Vec::new();
    if lost_first {
        out.push((lost, None));
    }
    let known = lock(&ctx.state).known.clone();
    let seeds = resolve(&ctx.seeds).await.into_iter().map(|a| (a, None));
    for (a, fp) in known.into_iter().chain(seeds) {
        if !out.iter().any(|(b, _)| *b == a) && (lost_first || a != lost) {
            out.push((a, fp));
        }
    }
    if !lost_first {
        out.push((lost, None));
    }
    out
}

/// The options to reach `fp`'s node: a pinned client pins the fingerprint the mesh
/// vouched for (its own pin is for the node it first reached).
fn for_node(opts: &super::ClientOptions, fp: Option<[u8; 32]>) -> super::ClientOptions {
    let mut o = opts.clone();
    if let (crate::transport::Trust::Pin(_), Some(fp)) = (&o.trust, fp) {
        o.trust = crate::transport::Trust::Pin(fp);
    }
    o
}

/// Takes the session back, or restores it elsewhere, or closes the client.
async fn heal(ctx: Arc<Ctx>, first: SocketAddr, welcome: crate::proto::Welcome) {
    let started = Instant::now();
    let mut backoff = Duration::from_millis(100);
    let from = welcome.node_id;
    // While the token is good: try to take the session back.
    if let Some(offer) = welcome.resume.clone() {
        let grace = Duration::from_millis(offer.grace_ms);
        let mut token = Some(offer.token);
        while let Some(t) = token.take() {
            if started.elapsed() > grace {
                break;
            }
            let mut opts = heal_opts(&ctx);
            opts.resume = Some(ResumeRequest {
                client: welcome.client_id,
                token: t.clone(),
            });
            // The node the session is on first, alone for a moment (a session that stays
            // keeps its queued notifications); then every other candidate at once: a dead
            // node costs no more than the others' answers, and only one node can hand the
            // session over (the others then refuse).
            let mut attempts = tokio::task::JoinSet::new();
            let mut others = candidates(&ctx, first, true).await.into_iter();
            if let Some((addr, fp)) = others.next() {
                let (endpoint, o) = (ctx.endpoint.clone(), for_node(&opts, fp));
                attempts.spawn(async move { (addr, link::open(&endpoint, addr, &o).await) });
            }
            let head_start = tokio::time::sleep(SAME_NODE_FIRST);
            tokio::pin!(head_start);
            let mut early = None;
            tokio::select! {
                () = &mut head_start => {}
                done = attempts.join_next() => early = done,
            }
            if let Some(Ok((_, Ok((new, reader))))) = early {
                resumed(&ctx, new, reader, from);
                return;
            }
            for (addr, fp) in others {
                let (endpoint, o) = (ctx.endpoint.clone(), for_node(&opts, fp));
                attempts.spawn(async move { (addr, link::open(&endpoint, addr, &o).await) });
            }
            let mut gone = false;
            let mut refused = None;
            // The lost node's answer, if it came early and was not a welcome, counts too.
            if let Some(Ok((_, Err(ClientError::Refused(WireError::ResumeRefused(why)))))) = early {
                match why {
                    ResumeRefusal::Used | ResumeRefusal::WrongClient => refused = Some(why),
                    _ => {
                        gone = true;
                        attempts.abort_all();
                    }
                }
            }
            while let Some(done) = attempts.join_next().await {
                let Ok((addr, result)) = done else { continue };
                match result {
                    Ok((new, reader)) => {
                        attempts.abort_all();
                        resumed(&ctx, new, reader, from);
                        return;
                    }
                    Err(ClientError::Refused(WireError::ResumeRefused(why))) => match why {
                        // Nobody has the session any more (its node said so, or the mesh
                        // lost that node, or its node restarted and no longer knows the
                        // token's key): restore it without waiting for the rest.
                        ResumeRefusal::Gone
                        | ResumeRefusal::Expired
                        | ResumeRefusal::Disabled
                        | ResumeRefusal::Invalid => {
                            gone = true;
                            attempts.abort_all();
                        }
                        // Someone else holds the session now (another process with the
                        // token): this client cannot go on without making a second copy.
                        ResumeRefusal::Used | ResumeRefusal::WrongClient => refused = Some(why),
                    },
                    // That node could not reach the holder, or could not be reached.
                    Err(e) => tracing::debug!(%addr, error = %e, "resume attempt failed"),
                }
            }
            if let Some(why) = refused {
                give_up(&ctx, ClientError::Refused(WireError::ResumeRefused(why)));
                return;
            }
            if gone {
                break;
            }
            token = Some(t);
            pause(&ctx, &mut backoff).await;
        }
    }
    // The session is lost: establish it again from what this client posted.
    loop {
        if started.elapsed() > ctx.opts.heal_give_up {
            give_up(
                &ctx,
                ClientError::Closed {
                    code: None,
                    reason: "no node of the mesh could be reached".into(),
                },
            );
            return;
        }
        let mut opts = heal_opts(&ctx);
        if let Some(blob) = lock(&ctx.state).session.clone() {
            opts.session = Some(blob);
        }
        for (addr, fp) in candidates(&ctx, first, false).await {
            match link::open(&ctx.endpoint, addr, &for_node(&opts, fp)).await {
                Ok((new, reader)) => {
                    restored(&ctx, new, reader, &welcome).await;
                    return;
                }
                Err(e) => tracing::debug!(%addr, error = %e, "restore attempt failed"),
            }
        }
        pause(&ctx, &mut backoff).await;
    }
}

/// Options for healing attempts: a node that has not answered within 1.5 s (a QUIC
/// handshake is one round trip) is skipped for the next one, rather than holding the whole
/// attempt; it is tried again on the next round.
fn heal_opts(ctx: &Ctx) -> super::ClientOptions {
    let mut opts = ctx.opts.clone();
    opts.ticket = None;
    opts.resume = None;
    opts.connect_timeout = opts.connect_timeout.min(Duration::from_millis(1500));
    opts
}

/// Waits the backoff with jitter (half to full), then doubles it up to the cap.
async fn pause(ctx: &Ctx, backoff: &mut Duration) {
    let jitter = rand::thread_rng().gen_range(0.5..=1.0);
    tokio::time::sleep(backoff.mul_f64(jitter)).await;
    *backoff = (*backoff * 2).min(ctx.opts.heal_backoff_max);
}

/// Healing failed for good: every waiting call fails, subscriptions end.
fn give_up(ctx: &Ctx, error: ClientError) {
    let mut st = lock(&ctx.state);
    st.healing = None;
    st.closed = Some(error.clone());
    for (_, tx) in st.pending.drain() {
        let _ = tx.send(Err(error.clone()));
    }
    st.parked.clear();
    st.subs.clear();
    tracing::warn!(error = %error, "session lost for good");
}

/// Makes `new` the client's link (parked calls go out on it) and starts its read loop.
fn take_link(
    ctx: &Arc<Ctx>,
    st: &mut State,
    new: link::Link,
    reader: crate::proto::FrameReader<quinn::RecvStream>,
) {
    tokio::spawn(link::boxed_read_loop(ctx.clone(), new.conn.clone(), reader));
    for frame in std::mem::take(&mut st.parked) {
        new.outbox.push_response(frame);
    }
    st.last_welcome = Some(new.welcome.clone());
    st.link = Some(new);
}

/// The session was taken back: settle the calls in flight, read subscriptions again.
fn resumed(
    ctx: &Arc<Ctx>,
    new: link::Link,
    reader: crate::proto::FrameReader<quinn::RecvStream>,
    from: NodeId,
) {
    let to = new.welcome.node_id;
    let info = new.welcome.resumed.clone();
    let mut st = lock(&ctx.state);
    let inflight = st.healing.take().map(|h| h.inflight).unwrap_or_default();
    let last = info.as_ref().map_or(0, |i| i.last_request);
    // Never read by the node: never applied.
    let mut owed = Vec::new();
    for id in inflight {
        if id > last {
            if let Some(tx) = st.pending.remove(&id) {
                let _ = tx.send(Err(ClientError::Interrupted { applied: false }));
            }
        } else {
            owed.push(id);
        }
    }
    take_link(ctx, &mut st, new, reader);
    drop(st);
    let _ = ctx.events.send(SessionEvent::Resumed { from, to });
    tracing::info!(%from, %to, "session resumed");
    let ctx = ctx.clone();
    tokio::spawn(async move {
        // Answers the node still had queued come before the answer to this ping: what is
        // still owed after it was applied, but its answer was lost with the connection.
        let _ = super::request(&ctx, Request::Ping).await;
        {
            let mut st = lock(&ctx.state);
            for id in owed {
                if let Some(tx) = st.pending.remove(&id) {
                    let _ = tx.send(Err(ClientError::Interrupted { applied: true }));
                }
            }
        }
        resubscribe(&ctx, None).await;
        refresh_known_now(&ctx).await;
    });
}

/// The session was established anew on `new`: post the rows again, subscribe again.
async fn restored(
    ctx: &Arc<Ctx>,
    new: link::Link,
    reader: crate::proto::FrameReader<quinn::RecvStream>,
    lost: &crate::proto::Welcome,
) {
    let to = new.welcome.node_id;
    let new_client = new.welcome.client_id;
    tokio::spawn(link::boxed_read_loop(ctx.clone(), new.conn.clone(), reader));
    // The rows go out first, straight on the new link, while the application's calls stay
    // parked: a call made meanwhile is newer than what is posted again, and goes after it.
    let waits: Vec<_> = {
        let mut st = lock(&ctx.state);
        // The old session is gone: whatever was in flight did not survive in it.
        let inflight = st.healing.take().map(|h| h.inflight).unwrap_or_default();
        for id in inflight {
            if let Some(tx) = st.pending.remove(&id) {
                let _ = tx.send(Err(ClientError::Interrupted { applied: false }));
            }
        }
        let rows: Vec<(Key, Bytes)> = st
            .posted
            .iter()
            .map(|(k, d)| (k.clone(), d.clone()))
            .collect();
        rows.into_iter()
            .filter_map(|(key, data)| {
                let id = ctx
                    .next_id
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let frame = crate::proto::ClientFrame::Request {
                    id,
                    op: Request::Post { key, data },
                };
                new.outbox.push_encoded(&frame, ctx.opts.max_frame).ok()?;
                let (tx, rx) = tokio::sync::oneshot::channel();
                st.pending.insert(id, tx);
                Some(rx)
            })
            .collect()
    };
    let mut posted = 0;
    for rx in waits {
        match rx.await {
            Ok(Ok(Reply::Posted { .. })) => posted += 1,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "a row could not be posted again"),
            Err(_) => {}
        }
    }
    {
        let mut st = lock(&ctx.state);
        for frame in std::mem::take(&mut st.parked) {
            new.outbox.push_response(frame);
        }
        st.last_welcome = Some(new.welcome.clone());
        st.link = Some(new);
    }
    resubscribe(ctx, Some(lost.node_id)).await;
    let _ = ctx.events.send(SessionEvent::Restored {
        old_client: lost.client_id,
        new_client,
        to,
        rows: posted,
    });
    tracing::info!(old = %lost.client_id, new = %new_client, %to, rows = posted, "session restored on another node");
    refresh_known_now(ctx).await;
}

/// A subscription to read again: its id, specs, owners, and the rows it held live.
type Resync = (
    u64,
    Vec<KeySpec>,
    Option<Vec<ClientId>>,
    HashMap<(Key, ClientId), u64>,
);

/// Each subscription reads its rows again in one atomic get+subscribe (registering it
/// again where the session is new) and merges them by version; a row it had that is gone
/// and whose deletion it never saw is reported deleted. `lost_node`: the session's old node
/// is gone (restore), so such rows went with it.
async fn resubscribe(ctx: &Arc<Ctx>, lost_node: Option<NodeId>) {
    let subs: Vec<Resync> = {
        let st = lock(&ctx.state);
        st.subs
            .iter()
            .map(|(id, e)| (*id, e.specs.clone(), e.owner_list(), e.live_versions()))
            .collect()
    };
    let reason = if lost_node.is_some() {
        DeleteReason::NodeLost
    } else {
        DeleteReason::Disconnected
    };
    for (id, keys, owners, before) in subs {
        let query = GetQuery {
            keys,
            owners,
            start: None,
            limit: 0,
            subscribe: true,
        };
        match super::get_all(ctx, query).await {
            Ok(page) => {
                let mut st = lock(&ctx.state);
                if let Some(entry) = st.subs.get_mut(&id) {
                    entry.resync(&page.rows, &before, lost_node, reason);
                }
            }
            Err(e) => tracing::warn!(error = %e, "a subscription could not be read again"),
        }
    }
}

/// Refreshes the addresses of `cloud.nodes` in the background (healing looks there).
pub(crate) fn refresh_known(ctx: &Arc<Ctx>) {
    if !ctx.opts.heal {
        return;
    }
    let ctx = ctx.clone();
    tokio::spawn(async move { refresh_known_now(&ctx).await });
}

async fn refresh_known_now(ctx: &Ctx) {
    let query = GetQuery {
        keys: vec![KeySpec::primary("cloud.nodes")],
        ..GetQuery::default()
    };
    let Ok(page) = super::get_all(ctx, query).await else {
        return;
    };
    let mut addrs = Vec::new();
    for row in page.rows {
        let Ok(record) = serde_json::from_slice::<serde_json::Value>(&row.data) else {
            continue;
        };
        let fp = record["fingerprint"]
            .as_str()
            .and_then(|f| crate::transport::parse_fingerprint(f).ok());
        addrs.extend(
            record["addresses"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str()?.parse::<SocketAddr>().ok())
                .map(|a| (a, fp)),
        );
    }
    if !addrs.is_empty() {
        lock(&ctx.state).known = addrs;
    }
}
