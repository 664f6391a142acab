//! The SDK's connection(s) to the mesh, and how it changes node during a migration
//! without a call failing or a notification coming twice or out of order:
//!
//! - On `Migrate{T, ticket}` the SDK connects to T while the old link keeps working.
//! - Once T welcomes it, new requests are held back until every request in flight on the
//!   old link is answered (those answers may come from T through the old node), then they go
//!   to T: so requests apply in the order they were made.
//! - Notifications from T wait until the old link's stream has ended; per-row versions drop
//!   anything already seen. So each subscription sees every change once, in order.
//! - If the old node dies while T is being reached, calls in flight there fail, new ones wait
//!   for T, and the session continues there from what T had prepared.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::broadcast;

use super::{close_error, lock, ClientError, ClientOptions, State};
use crate::proto::{
    encode_to_bytes, outbox, ClientFrame, CloseCode, CodecError, FrameReader, Hello, NodeId,
    Notification, Outbox, Reply, ServerFrame, Welcome, WireError, ALPN_CLIENT,
};
use crate::transport::{self, Trust};

/// An open, welcomed connection.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) conn: quinn::Connection,
    pub(crate) outbox: Outbox,
    pub(crate) welcome: Welcome,
}

/// A change of node in progress: the new link is up, the old one still has answers to give.
#[derive(Debug)]
pub(crate) struct Switch {
    /// Requests sent on the old link and not answered yet.
    old_ids: HashSet<u64>,
    /// Requests made meanwhile, sent once `old_ids` is empty.
    held: Vec<Bytes>,
    /// The link to the new node.
    new: Link,
}

/// A `Migrate` instruction to follow.
#[derive(Debug, Clone)]
pub(crate) struct MigrateOrder {
    node: NodeId,
    addrs: Vec<SocketAddr>,
    ticket: Bytes,
    fingerprint: [u8; 32],
}

/// Starts following `order` (the caller holds the state lock).
fn start_migration(ctx: &Arc<Ctx>, st: &mut State, order: MigrateOrder) {
    st.migrating = Some(order.node);
    tokio::spawn(follow_migration(
        ctx.clone(),
        order.addrs,
        order.ticket,
        order.fingerprint,
    ));
}

/// The client moved from one node to another (informational; nothing to do).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migrated {
    /// The old node.
    pub from: NodeId,
    /// The new node.
    pub to: NodeId,
}

/// What the read loops and the migration task share with the client handle.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) endpoint: quinn::Endpoint,
    pub(crate) opts: ClientOptions,
    pub(crate) state: Mutex<State>,
    pub(crate) migrations: broadcast::Sender<Migrated>,
    /// Session events (lost, resumed, restored) for the application.
    pub(crate) events: broadcast::Sender<super::SessionEvent>,
    /// Request ids: one counter for the session's life, across links, so a resume can tell
    /// which requests in flight the node had read.
    pub(crate) next_id: std::sync::atomic::AtomicU64,
    /// Where the client first reached the mesh (names re-resolved when it heals).
    pub(crate) seeds: Vec<super::Seed>,
}

/// Connects to `addr` and completes the handshake; the writer task runs from here on.
pub(crate) async fn open(
    endpoint: &quinn::Endpoint,
    addr: SocketAddr,
    opts: &ClientOptions,
) -> Result<(Link, FrameReader<quinn::RecvStream>), ClientError> {
    let cfg = transport::client_config(&opts.trust, ALPN_CLIENT, opts.timing)?;
    let connect_err = |reason: String| ClientError::Connect { addr, reason };
    let hello = ClientFrame::Hello(Hello {
        class: opts.class.clone(),
        token: opts.token.clone(),
        session: opts.session.clone(),
        ticket: opts.ticket.clone(),
        rtts: opts.rtts.clone(),
        position: opts.position,
        resume: opts.resume.clone(),
        ..Hello::current()
    });
    let max_frame = opts.max_frame;
    let handshake = async {
        let conn = endpoint
            .connect_with(cfg, addr, &opts.server_name)
            .map_err(|e| connect_err(e.to_string()))?
            .await
            .map_err(|e| match e {
                quinn::ConnectionError::ApplicationClosed(_) => close_error(&e),
                other => connect_err(other.to_string()),
            })?;
        let (mut send, recv) = conn.open_bi().await.map_err(|e| close_error(&e))?;
        let frame =
            encode_to_bytes(&hello, max_frame).map_err(|e| ClientError::Protocol(e.to_string()))?;
        send.write_all(&frame)
            .await
            .map_err(|e| connect_err(e.to_string()))?;
        let mut reader = FrameReader::new(recv, max_frame);
        match reader.next::<ServerFrame>().await {
            Ok(Some(ServerFrame::Welcome(w))) => Ok((conn, send, reader, w)),
            Ok(Some(ServerFrame::Refused(e))) => Err(ClientError::Refused(e)),
            Ok(Some(other)) => Err(ClientError::Protocol(format!(
                "expected Welcome, got {other:?}"
            ))),
            Ok(None) | Err(CodecError::Io(_)) => Err(close_error(&conn.closed().await)),
            Err(e) => Err(ClientError::Protocol(e.to_string())),
        }
    };
    let (conn, mut send, reader, welcome) = tokio::time::timeout(opts.connect_timeout, handshake)
        .await
        .map_err(|_| connect_err(format!("no answer within {:?}", opts.connect_timeout)))??;
    let (outbox, writer) = outbox(usize::MAX);
    tokio::spawn(async move {
        let _ = writer.run(&mut send).await;
        let _ = send.finish();
    });
    Ok((
        Link {
            conn,
            outbox,
            welcome,
        },
        reader,
    ))
}

/// Finishes a switch: the new link becomes the client's link, held requests go out, and
/// the old connection is returned to be closed (outside the lock).
fn complete_switch(ctx: &Arc<Ctx>, st: &mut State) -> Option<quinn::Connection> {
    let sw = st.switch.take()?;
    for frame in sw.held.into_iter().chain(std::mem::take(&mut st.parked)) {
        sw.new.outbox.push_response(frame);
    }
    let old = st.link.replace(sw.new)?;
    st.last_welcome = st.link.as_ref().map(|l| l.welcome.clone());
    st.retired.insert(old.conn.stable_id());
    announce(ctx, st, old.welcome.node_id);
    if let Some(order) = st.next_migrate.take() {
        start_migration(ctx, st, order);
    }
    Some(old.conn)
}

/// Sends a frame on the client's current path: held during a switch, parked while the old
/// node is gone and the new one not reached yet.
pub(crate) fn push_frame(st: &mut State, frame: Bytes) {
    if let Some(sw) = st.switch.as_mut() {
        sw.held.push(frame);
    } else if let Some(link) = &st.link {
        link.outbox.push_response(frame);
    } else {
        st.parked.push(frame);
    }
}

/// Sends a request on the client's current path like [`push_frame`], encoding it straight
/// into the link's queue in the usual case (no allocation of its own).
pub(crate) fn push_request(
    st: &mut State,
    frame: &ClientFrame,
    max_frame: usize,
) -> Result<(), CodecError> {
    match &st.link {
        Some(link) if st.switch.is_none() => link.outbox.push_encoded(frame, max_frame),
        _ => {
            let bytes = encode_to_bytes(frame, max_frame)?;
            push_frame(st, bytes);
            Ok(())
        }
    }
}

fn announce(ctx: &Ctx, st: &mut State, from: NodeId) {
    if let Some(link) = &st.link {
        let _ = ctx.migrations.send(Migrated {
            from,
            to: link.welcome.node_id,
        });
    }
}

fn offer_all(st: &mut State, n: &Notification) {
    for entry in st.subs.values_mut() {
        entry.offer(n);
    }
}

/// Hands an answer to its caller; when it was the last one the old link owed during a
/// switch, completes the switch and returns the old connection to close.
fn answer(
    ctx: &Arc<Ctx>,
    st: &mut State,
    id: u64,
    result: Result<Reply, WireError>,
) -> Option<quinn::Connection> {
    if let Some(tx) = st.pending.remove(&id) {
        let _ = tx.send(result.map_err(ClientError::Server));
    }
    let drained = st.switch.as_mut().is_some_and(|sw| {
        sw.old_ids.remove(&id);
        sw.old_ids.is_empty()
    });
    if drained {
        complete_switch(ctx, st)
    } else {
        None
    }
}

/// Routes frames from one link to waiting calls and subscriptions, then handles its end.
pub(crate) async fn read_loop(
    ctx: Arc<Ctx>,
    conn: quinn::Connection,
    mut reader: FrameReader<quinn::RecvStream>,
) {
    let me = conn.stable_id();
    // A frame read while routing a batch of answers, handled next.
    let mut next = None;
    let error = loop {
        let item = match next.take() {
            Some(item) => item,
            None => reader.next::<ServerFrame>().await,
        };
        match item {
            Ok(Some(ServerFrame::Response { id, result })) => {
                // Answers arrive in batches: route every one already buffered under one
                // lock. Anything else ends the batch and is handled next, in order.
                let to_close = {
                    let mut st = lock(&ctx.state);
                    let mut to_close = answer(&ctx, &mut st, id, result);
                    while to_close.is_none() {
                        match reader.next_buffered::<ServerFrame>() {
                            Ok(Some(ServerFrame::Response { id, result })) => {
                                to_close = answer(&ctx, &mut st, id, result);
                            }
                            Ok(None) => break,
                            other => {
                                next = Some(other);
                                break;
                            }
                        }
                    }
                    to_close
                };
                if let Some(old) = to_close {
                    old.close(CloseCode::Normal.to_u32().into(), b"migrated");
                }
            }
            Ok(Some(ServerFrame::Notify(n))) => {
                let mut st = lock(&ctx.state);
                match &mut st.held_notifications {
                    Some((from_link, held)) if *from_link == me => held.push(n),
                    _ => offer_all(&mut st, &n),
                }
            }
            Ok(Some(ServerFrame::Migrate {
                node,
                addrs,
                ticket,
                fingerprint,
                ..
            })) => {
                let mut st = lock(&ctx.state);
                let order = MigrateOrder {
                    node,
                    addrs,
                    ticket,
                    fingerprint,
                };
                if st.migrating.is_none() && st.switch.is_none() {
                    start_migration(&ctx, &mut st, order);
                } else {
                    // Still settling the previous move: follow this one right after.
                    st.next_migrate = Some(order);
                }
            }
            Ok(Some(other)) => {
                let reason = format!("unexpected frame {other:?}");
                conn.close(CloseCode::Protocol.to_u32().into(), reason.as_bytes());
                break ClientError::Protocol(reason);
            }
            Ok(None) | Err(CodecError::Io(_)) => {
                // The stream ended; the connection's close carries the reason.
                break match tokio::time::timeout(Duration::from_secs(2), conn.closed()).await {
                    Ok(e) => close_error(&e),
                    Err(_) => ClientError::Closed {
                        code: None,
                        reason: "the node ended the stream".into(),
                    },
                };
            }
            Err(e) => {
                let reason = e.to_string();
                conn.close(CloseCode::Protocol.to_u32().into(), reason.as_bytes());
                break ClientError::Protocol(reason);
            }
        }
    };
    link_ended(&ctx, me, error);
}

/// One link's stream ended: a retired old link (normal end of a migration), the current
/// link dying (perhaps mid-migration), or a new link that failed before taking over.
fn link_ended(ctx: &Arc<Ctx>, me: usize, error: ClientError) {
    let mut st = lock(&ctx.state);
    if st.retired.remove(&me) {
        // The old link's last word is in: now the new node's notifications, in order.
        if let Some((_, held)) = st.held_notifications.take() {
            for n in held {
                offer_all(&mut st, &n);
            }
        }
        return;
    }
    let is_current = st.link.as_ref().is_some_and(|l| l.conn.stable_id() == me);
    if !is_current {
        // A new link that died before it took over: keep using the old one.
        if st
            .switch
            .as_ref()
            .is_some_and(|sw| sw.new.conn.stable_id() == me)
        {
            if let Some(sw) = st.switch.take() {
                if let Some(link) = &st.link {
                    for frame in sw.held {
                        link.outbox.push_response(frame);
                    }
                }
            }
            st.held_notifications = None;
        }
        return;
    }
    let from = st.link.as_ref().map(|l| l.welcome.node_id);
    if let Some(sw) = st.switch.take() {
        // The old node died after the new one welcomed us: its unanswered calls fail, the
        // rest continues on the new node.
        for id in &sw.old_ids {
            if let Some(tx) = st.pending.remove(id) {
                let _ = tx.send(Err(error.clone()));
            }
        }
        st.switch = Some(sw);
        let _ = complete_switch(ctx, &mut st);
        // That old link is this one, already ended: nothing more will come from it.
        st.retired.remove(&me);
        if let Some((_, held)) = st.held_notifications.take() {
            for n in held {
                offer_all(&mut st, &n);
            }
        }
        return;
    }
    if st.migrating.is_some() {
        // The old node died while we were reaching the new one: fail what it owed, park new
        // calls until the migration settles.
        let ids: Vec<u64> = st.pending.keys().copied().collect();
        for id in ids {
            if let Some(tx) = st.pending.remove(&id) {
                let _ = tx.send(Err(error.clone()));
            }
        }
        st.link = None;
        st.dead_from = from;
        return;
    }
    if super::heal::lost(ctx, &mut st, &error) {
        // Calls wait (new ones are parked) while the session is taken back.
        return;
    }
    st.closed = Some(error.clone());
    for (_, tx) in st.pending.drain() {
        let _ = tx.send(Err(error.clone()));
    }
    st.parked.clear();
    // Dropping the senders ends every subscription stream.
    st.subs.clear();
}

/// `read_loop` behind a named `Send` future type: the read loop starts the migration
/// follower, which starts a read loop, and that cycle needs one concrete type.
pub(crate) fn boxed_read_loop(
    ctx: Arc<Ctx>,
    conn: quinn::Connection,
    reader: FrameReader<quinn::RecvStream>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    Box::pin(read_loop(ctx, conn, reader))
}

/// Follows a `Migrate` instruction: reaches the target with the ticket and switches to it.
async fn follow_migration(
    ctx: Arc<Ctx>,
    addrs: Vec<SocketAddr>,
    ticket: Bytes,
    fingerprint: [u8; 32],
) {
    let mut opts = ctx.opts.clone();
    opts.ticket = Some(ticket);
    if let Trust::Pin(_) = opts.trust {
        // The node we trust vouches for the target's certificate.
        opts.trust = Trust::Pin(fingerprint);
    }
    let mut opened = None;
    let mut last_err = None;
    for addr in addrs {
        match open(&ctx.endpoint, addr, &opts).await {
            Ok(o) => {
                opened = Some(o);
                break;
            }
            Err(e) => last_err = Some(e),
        }
    }
    let mut st = lock(&ctx.state);
    st.migrating = None;
    let Some((link, reader)) = opened else {
        let err = last_err.unwrap_or(ClientError::Closed {
            code: None,
            reason: "migration target unreachable".into(),
        });
        tracing::debug!(error = %err, "could not reach the migration target; staying");
        if st.link.is_none() {
            // The old node is gone too: nothing left to serve us.
            st.closed = Some(err.clone());
            for (_, tx) in st.pending.drain() {
                let _ = tx.send(Err(err.clone()));
            }
            st.parked.clear();
            st.subs.clear();
        }
        return;
    };
    let new_conn = link.conn.clone();
    tokio::spawn(boxed_read_loop(ctx.clone(), new_conn.clone(), reader));
    if st.link.is_none() {
        // The old node died meanwhile: take over at once.
        for frame in std::mem::take(&mut st.parked) {
            link.outbox.push_response(frame);
        }
        st.last_welcome = Some(link.welcome.clone());
        st.link = Some(link);
        if let Some(from) = st.dead_from.take() {
            announce(&ctx, &mut st, from);
        }
        if let Some(order) = st.next_migrate.take() {
            start_migration(&ctx, &mut st, order);
        }
        return;
    }
    st.held_notifications = Some((new_conn.stable_id(), Vec::new()));
    let old_ids: HashSet<u64> = st.pending.keys().copied().collect();
    st.switch = Some(Switch {
        old_ids,
        held: Vec::new(),
        new: link,
    });
    let to_close = if st.switch.as_ref().is_some_and(|sw| sw.old_ids.is_empty()) {
        complete_switch(&ctx, &mut st)
    } else {
        None
    };
    drop(st);
    if let Some(old) = to_close {
        old.close(CloseCode::Normal.to_u32().into(), b"migrated");
    }
}
