//! One client connection: handshake, request loop, cleanup.
//!
//! Bad input ends only this connection: a frame that is too large or does not decode closes
//! it with a stated code, logged once with the remote address; nothing else is affected.

use std::sync::Arc;
use std::time::{Duration, Instant};

use subtle::ConstantTimeEq;

use super::rate::TokenBucket;
use super::{migrate, now_ms, peer, place, zones, Hub, Link, Shared};
use crate::metrics::Counters;
use crate::proto::{
    encode_to_bytes, ClientFrame, ClientId, CloseCode, CodecError, DeleteReason, FrameReader,
    Hello, LimitsInfo, PeerFrame, Placement, Reply, Request, ServerFrame, Welcome, WireError,
    MIN_PROTOCOL_VERSION, PROTOCOL_VERSION,
};
use crate::proto::{outbox, Outbox, OutboxWriter};

/// The reader stops taking requests while more than this is queued to the client.
const BACKPRESSURE_MARK: usize = 1024 * 1024;

/// Most requests answered under one hold of the hub lock.
const MAX_BATCH: usize = 64;

/// How a connection ended, and what to tell the client.
struct Ending {
    code: CloseCode,
    reason: String,
}

impl Ending {
    fn new(code: CloseCode, reason: impl Into<String>) -> Self {
        Ending {
            code,
            reason: reason.into(),
        }
    }
}

/// Serves one client connection to its end.
pub(super) async fn serve(shared: Arc<Shared>, conn: quinn::Connection) {
    let remote = conn.remote_address();
    let timeout = shared.config.handshake_timeout;
    let (mut send, recv) = match tokio::time::timeout(timeout, conn.accept_bi()).await {
        Ok(Ok(streams)) => streams,
        Ok(Err(e)) => {
            tracing::debug!(%remote, error = %e, "connection ended before opening a stream");
            return;
        }
        Err(_) => {
            tracing::info!(%remote, "client opened no stream in time; closing");
            close(
                &conn,
                &Ending::new(CloseCode::Protocol, "no stream opened in time"),
            );
            return;
        }
    };
    let mut reader = FrameReader::new(recv, shared.config.max_frame);
    let hello = match tokio::time::timeout(timeout, reader.next::<ClientFrame>()).await {
        Ok(Ok(Some(ClientFrame::Hello(h)))) => h,
        Ok(Ok(Some(ClientFrame::Request { .. }))) => {
            return fail(
                &conn,
                remote,
                Ending::new(CloseCode::Protocol, "first frame must be Hello"),
            );
        }
        Ok(Ok(None)) => return,
        Ok(Err(e)) => return fail(&conn, remote, codec_ending(&e)),
        Err(_) => {
            return fail(
                &conn,
                remote,
                Ending::new(CloseCode::Protocol, "no Hello in time"),
            )
        }
    };

    let admitted = match hello.ticket.clone() {
        // A migrating client arriving from its old node (§6.1).
        Some(ticket) if migrate::is_incoming(&shared, &ticket) => match negotiate(&hello) {
            Err(e) => Err((CloseCode::UnsupportedVersion, e)),
            Ok(version) => migrate::arrive(&shared, &conn, &ticket, |client| {
                welcome_frame(&shared, version, client, Placement::Stay)
            })
            .await
            .map_err(|e| (CloseCode::Forbidden, e)),
        },
        _ => admit(&shared, &conn, &hello),
    };
    let (client, outbox, writer) = match admitted {
        Ok(admitted) => admitted,
        Err((code, err)) => {
            // Tell the client why in a frame it can decode, then close with the code.
            if let Ok(frame) =
                encode_to_bytes(&ServerFrame::Refused(err.clone()), shared.config.max_frame)
            {
                let _ = send.write_all(&frame).await;
                let _ = send.finish();
                let _ = tokio::time::timeout(Duration::from_secs(1), send.stopped()).await;
            }
            tracing::info!(%remote, error = %err, "client refused");
            close(&conn, &Ending::new(code, err.to_string()));
            return;
        }
    };
    tracing::debug!(%remote, %client, "client connected");
    Counters::bump(&shared.counters.opened);

    let writer_task = tokio::spawn(async move {
        let result = writer.run(&mut send).await;
        let _ = send.finish();
        result
    });

    let ending = request_loop(&shared, client, &outbox, &mut reader).await;

    // Remove the client and tell subscribers, in one step under the lock — unless the
    // session is no longer this connection's (it moved away, or came back on a new one).
    {
        let mut hub = shared.hub();
        let ours = hub.links.get(&client).is_some_and(|l| {
            l.conn
                .as_ref()
                .is_some_and(|c| c.stable_id() == conn.stable_id())
        });
        if ours {
            hub.links.remove(&client);
            hub.positions.remove(&client);
            // After a handover the session lives elsewhere: nothing to delete here.
            if hub.moved.remove(&client).is_none() {
                let fans = hub
                    .store
                    .remove_client(client, DeleteReason::Disconnected, now_ms());
                for fan in fans {
                    hub.deliver(fan, shared.config.max_frame, true);
                }
            }
            hub.flush_holds(shared.config.max_frame);
        }
    }
    drop(outbox);
    Counters::bump(&shared.counters.closed);
    match ending {
        Some(ending) => {
            if ending.code != CloseCode::Normal {
                tracing::warn!(%remote, %client, code = ?ending.code, reason = %ending.reason, "closing client connection");
            }
            close(&conn, &ending);
        }
        None => tracing::debug!(%remote, %client, "client disconnected"),
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), writer_task).await;
}

fn close(conn: &quinn::Connection, ending: &Ending) {
    conn.close(ending.code.to_u32().into(), ending.reason.as_bytes());
}

fn fail(conn: &quinn::Connection, remote: std::net::SocketAddr, ending: Ending) {
    tracing::warn!(%remote, code = ?ending.code, reason = %ending.reason, "closing connection on bad input");
    close(conn, &ending);
}

fn codec_ending(e: &CodecError) -> Ending {
    match e {
        CodecError::TooLarge { .. } => Ending::new(CloseCode::FrameTooLarge, e.to_string()),
        CodecError::Malformed(_) | CodecError::Truncated { .. } => {
            Ending::new(CloseCode::Protocol, e.to_string())
        }
        CodecError::Io(_) => Ending::new(CloseCode::Normal, e.to_string()),
    }
}

/// The welcome for an admitted client.
fn welcome_frame(
    shared: &Shared,
    version: u16,
    client: ClientId,
    placement: Placement,
) -> ServerFrame {
    let cfg = &shared.config;
    let l = &cfg.limits;
    ServerFrame::Welcome(Welcome {
        version,
        capabilities: 0,
        client_id: client,
        node_id: shared.id,
        node_name: cfg.name.clone(),
        limits: LimitsInfo {
            max_frame: cfg.max_frame.try_into().unwrap_or(u32::MAX),
            max_row_bytes: l.max_row_bytes,
            max_client_bytes: l.max_client_bytes,
            max_get_bytes: l.max_get_bytes,
            max_keys_per_query: l.max_keys_per_query,
            max_subscriptions: l.max_subscriptions,
            max_session_bytes: l.max_session_bytes,
        },
        placement,
    })
}

/// The protocol version to speak with this hello, or why there is none.
fn negotiate(hello: &Hello) -> Result<u16, WireError> {
    let version = hello.max_version.min(PROTOCOL_VERSION);
    if version < hello.min_version.max(MIN_PROTOCOL_VERSION) {
        return Err(WireError::UnsupportedVersion {
            client_min: hello.min_version,
            client_max: hello.max_version,
            node_min: MIN_PROTOCOL_VERSION,
            node_max: PROTOCOL_VERSION,
        });
    }
    Ok(version)
}

/// Checks the hello and registers the client.
fn admit(
    shared: &Shared,
    conn: &quinn::Connection,
    hello: &Hello,
) -> Result<(ClientId, Outbox, OutboxWriter), (CloseCode, WireError)> {
    let version = negotiate(hello).map_err(|e| (CloseCode::UnsupportedVersion, e))?;
    let class = hello.class.as_deref().unwrap_or("default");
    let forbidden = |reason: String| (CloseCode::Forbidden, WireError::Forbidden { reason });
    match shared.config.classes.get(class) {
        None if class != "default" => {
            return Err(forbidden(format!("unknown client class {class:?}")))
        }
        Some(declared) => {
            if let Some(expected) = &declared.token {
                let given = hello.token.as_deref().unwrap_or("");
                if !bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
                    return Err(forbidden(format!(
                        "wrong or missing token for class {class:?}"
                    )));
                }
            }
        }
        None => {}
    }

    let cfg = &shared.config;
    let mut hub = shared.hub();
    if hub.links.len() >= cfg.max_clients as usize {
        return Err((
            CloseCode::ServerFull,
            WireError::ServerFull {
                max: cfg.max_clients,
            },
        ));
    }
    // A redirect ticket from another node admits the client here (no second redirect),
    // under the client id it names when that id is free here.
    let mut ticket_id = None;
    if let Some(ticket) = &hello.ticket {
        let Some(secret) = &cfg.secret else {
            return Err(forbidden(
                "this node is not part of a mesh: it takes no redirect tickets".into(),
            ));
        };
        match hub.tickets.redeem(secret, ticket, shared.id, now_ms()) {
            Ok(id) => ticket_id = Some(id).filter(|id| !hub.store.has_client(*id)),
            Err(e) => return Err(forbidden(e.to_string())),
        }
    }
    let mut id = ticket_id.unwrap_or_else(ClientId::random);
    while ticket_id.is_none() && hub.store.has_client(id) {
        id = ClientId::random();
    }
    let placement = if hello.ticket.is_some() {
        Placement::Stay
    } else {
        let decision = place::decide(&hub, shared, &hello.rtts, hello.position);
        place::placement(&hub, shared, &decision, id)
    };
    let session = hello.session.clone().unwrap_or_default();
    hub.store
        .add_client(id, class, session)
        .map_err(|e| (CloseCode::Protocol, e))?;
    let welcome = welcome_frame(shared, version, id, placement);
    let (outbox, writer) = outbox(cfg.max_outbound_bytes);
    match encode_to_bytes(&welcome, cfg.max_frame) {
        Ok(frame) => outbox.push_response(frame),
        Err(e) => {
            hub.store.remove_client(id, DeleteReason::Disconnected, 0);
            return Err((
                CloseCode::Protocol,
                WireError::Protocol {
                    reason: e.to_string(),
                },
            ));
        }
    }
    hub.links.insert(
        id,
        Link {
            outbox: outbox.clone(),
            conn: Some(conn.clone()),
            lagged: false,
            since_ms: now_ms(),
            peer: None,
        },
    );
    Ok((id, outbox, writer))
}

/// Reads and answers requests until the client leaves (`None`) or must be closed.
async fn request_loop(
    shared: &Arc<Shared>,
    client: ClientId,
    outbox: &Outbox,
    reader: &mut FrameReader<quinn::RecvStream>,
) -> Option<Ending> {
    let rate = shared.config.rate_limit;
    let mut bucket = TokenBucket::new(rate);
    // A client whose rejected requests within one second exceed twice its rate (at least
    // 2,000) is flooding rather than bursting: disconnect it.
    let flood_after = 2 * u64::from(rate.max(1000));
    let mut window = Instant::now();
    let mut rejected = 0u64;
    let sink = Sink::Client(outbox.clone());
    loop {
        outbox.wait_below(BACKPRESSURE_MARK).await;
        let first = match reader.next::<ClientFrame>().await {
            Ok(Some(frame)) => frame,
            Ok(None) => return Some(Ending::new(CloseCode::Normal, "stream finished")),
            Err(CodecError::Io(_)) => return None,
            Err(e) => return Some(codec_ending(&e)),
        };
        // Answer everything that arrived together under one hub lock, and wake the writer
        // once for the whole batch (one write, fewer packets). The batch ends early when
        // the queue to the client is long, so back-pressure still holds.
        let now = Instant::now();
        let now_ms = now_ms();
        let _hold = outbox.hold();
        let mut hub = shared.hub();
        let mut frame = first;
        let mut taken = 1;
        loop {
            let (id, op) = match frame {
                ClientFrame::Request { id, op } => (id, op),
                ClientFrame::Hello(_) => {
                    return Some(Ending::new(CloseCode::Protocol, "Hello sent twice"))
                }
            };
            if bucket.allow(now) {
                handle_locked(shared, &mut hub, client, &sink, id, op, now_ms);
            } else {
                if now.duration_since(window) > Duration::from_secs(1) {
                    window = now;
                    rejected = 0;
                }
                rejected += 1;
                Counters::bump(&shared.counters.rate_limited);
                if rejected > flood_after {
                    return Some(Ending::new(
                        CloseCode::Flood,
                        "request flood: far over the rate limit",
                    ));
                }
                respond(
                    shared,
                    &sink,
                    id,
                    Err(WireError::RateLimited { per_sec: rate }),
                );
            }
            if taken >= MAX_BATCH || outbox.queued() > BACKPRESSURE_MARK {
                break;
            }
            frame = match reader.next_buffered::<ClientFrame>() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => return Some(codec_ending(&e)),
            };
            taken += 1;
        }
    }
}

/// Where the answer to a request goes.
#[derive(Debug, Clone)]
pub(super) enum Sink {
    /// Straight to the client's connection.
    Client(Outbox),
    /// Back to the node that forwarded the request: the client's old node during a move.
    Forward {
        /// That node's link.
        peer: Outbox,
        /// The moved client.
        client: ClientId,
    },
}

pub(super) fn respond(shared: &Shared, sink: &Sink, id: u64, result: Result<Reply, WireError>) {
    let max = shared.config.max_frame;
    let outbox = match sink {
        Sink::Client(outbox) => outbox,
        Sink::Forward { peer, client } => {
            let frame = PeerFrame::Forwarded {
                client: *client,
                id,
                result,
            };
            if let Err(e) = peer.push_encoded(&frame, max) {
                tracing::error!(error = %e, "forwarded answer does not fit a frame");
            }
            return;
        }
    };
    let Err(e) = outbox.push_encoded(&ServerFrame::Response { id, result }, max) else {
        return;
    };
    let err = WireError::TooLarge {
        what: "response".into(),
        size: match e {
            CodecError::TooLarge { len, .. } => len,
            _ => 0,
        },
        max: max as u64,
    };
    let answer = ServerFrame::Response {
        id,
        result: Err(err),
    };
    if let Err(e) = outbox.push_encoded(&answer, max) {
        tracing::error!(error = %e, "could not encode a response");
    }
}

/// Runs one request against the store. The response is queued under the same lock as the
/// change, so a get+subscribe's snapshot precedes every notification after it. A get that
/// other nodes must answer too is finished by a task once they did (or timed out).
pub(super) fn handle(shared: &Arc<Shared>, client: ClientId, sink: &Sink, id: u64, op: Request) {
    let mut hub = shared.hub();
    handle_locked(shared, &mut hub, client, sink, id, op, now_ms());
    drop(hub);
}

/// [`handle`] for a caller that already holds the hub lock (the request loop takes it once
/// for every request that arrived together).
fn handle_locked(
    shared: &Arc<Shared>,
    hub: &mut Hub,
    client: ClientId,
    sink: &Sink,
    id: u64,
    op: Request,
    now: u64,
) {
    shared
        .requests
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let max = shared.config.max_frame;
    // Handed over to another node: requests still arriving here go there, in order, on the
    // link that carried the session (§6.1 step 4).
    if let (Some(target), Sink::Client(_)) = (hub.moved.get(&client).copied(), sink) {
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
        return;
    }
    let c = &shared.counters;
    Counters::bump(match &op {
        Request::Post { .. } => &c.post,
        Request::Get(q) if q.subscribe => &c.subscribe,
        Request::Get(_) => &c.get,
        Request::Unsubscribe { .. } => &c.unsubscribe,
        Request::Release { .. } => &c.release,
        Request::SetSession { .. }
        | Request::Ping
        | Request::SetPosition { .. }
        | Request::Place { .. } => &c.other,
    });
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
            let targets = peer::targets_for(hub, &query);
            match hub.store.get(client, &query) {
                Ok(local) if !targets.is_empty() => {
                    let waits = peer::send_gets(shared, hub, &targets, &query);
                    tokio::spawn(peer::answer_merged(
                        shared.clone(),
                        sink.clone(),
                        id,
                        local,
                        waits,
                        query.limit,
                    ));
                    return;
                }
                other => other.map(Reply::Rows),
            }
        }
        Request::Unsubscribe { keys, owners } => hub
            .store
            .unsubscribe(client, &keys, owners.as_deref())
            .map(|count| Reply::Unsubscribed { count }),
        Request::SetSession { data } => hub
            .store
            .set_session(client, data)
            .map(|()| Reply::SessionSet),
        Request::Ping => Ok(Reply::Pong),
        Request::SetPosition { position } => {
            hub.positions.insert(client, position);
            if let Some(target) = zones::handover_target(hub, shared, position) {
                tokio::spawn(zones::hand_over(shared.clone(), client, target));
            }
            Ok(Reply::PositionSet)
        }
        Request::Place { rtts, position } => {
            let decision = place::decide(hub, shared, &rtts, position);
            // A connected client that moves reconnects (its rows here are not carried; that
            // is migration's job), so its ticket names a fresh id, never its current one.
            let placement = place::placement(hub, shared, &decision, ClientId::random());
            Ok(Reply::Placed {
                placement,
                explain: decision.explain(),
            })
        }
    };
    hub.flush_holds(max);
    if result.is_err() {
        Counters::bump(&c.errors);
    }
    respond(shared, sink, id, result);
}
