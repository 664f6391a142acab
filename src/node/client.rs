//! Dispatcher: one client connection. Handshake (version, class, token, redirect ticket or
//! a migrating client's arrival), then the request loop: every request already buffered is
//! executed under one hub lock and answered with one writer wake-up; then cleanup.
//!
//! Bad input ends only this connection: a frame that is too large or does not decode closes
//! it with a stated code, logged once with the remote address; nothing else is affected.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::hub::{now_ms, Link, LinkKind};
use super::rate::TokenBucket;
use super::reply::{respond, Sink};
use super::request;
use super::shared::Shared;
use super::{migrate, place, resume, zones};
use crate::metrics::Counters;
use crate::proto::{
    encode_to_bytes, ClientFrame, ClientId, CloseCode, CodecError, DeleteReason, FrameReader,
    Hello, LimitsInfo, Placement, ResumeOffer, ResumedInfo, ServerFrame, Welcome, WireError,
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
            if shared.quiet.allow("client opened no stream in time") {
                tracing::info!(%remote, "client opened no stream in time; closing");
            }
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
                &shared,
                &conn,
                remote,
                Ending::new(CloseCode::Protocol, "first frame must be Hello"),
            );
        }
        Ok(Ok(None)) => return,
        Ok(Err(e)) => return fail(&shared, &conn, remote, codec_ending(&e)),
        Err(_) => {
            return fail(
                &shared,
                &conn,
                remote,
                Ending::new(CloseCode::Protocol, "no Hello in time"),
            )
        }
    };

    let admitted = match (&hello.resume, hello.ticket.clone()) {
        // A client taking back its session after a lost connection.
        (Some(req), _) => match negotiate(&hello) {
            Err(e) => Err((CloseCode::UnsupportedVersion, e)),
            Ok(version) => resume::resume(&shared, &conn, req, |client, offer, info| {
                welcome_frame(&shared, version, client, Placement::Stay, offer, Some(info))
            })
            .await
            .map_err(|e| (CloseCode::Forbidden, e)),
        },
        // A migrating client arriving from its old node.
        (None, Some(ticket)) if migrate::is_incoming(&shared, &ticket) => match negotiate(&hello) {
            Err(e) => Err((CloseCode::UnsupportedVersion, e)),
            Ok(version) => migrate::arrive(&shared, &conn, &ticket, |client, hub| {
                let (nonce, offer) = resume::new_offer(&shared, hub, client);
                if let Some(link) = hub.links.get_mut(&client) {
                    link.resume_nonce = nonce;
                }
                welcome_frame(&shared, version, client, Placement::Stay, offer, None)
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
            if shared.quiet.allow("client refused") {
                tracing::info!(%remote, error = %err, "client refused");
            }
            close(&conn, &Ending::new(code, err.to_string()));
            return;
        }
    };
    tracing::debug!(%remote, %client, "client connected");
    Counters::bump(&shared.counters.opened);
    // A signed token's expiry ends the session, here or on the node it moved to (the grant
    // travels with the session).
    let expires_at_ms = shared.hub().store.grant(client).map(|g| g.expires_at_ms);

    // The writer stops with the connection but is kept: what it had not written yet is
    // whole frames, kept for the client if it resumes.
    let closing = conn.clone();
    let mut writer_task = tokio::spawn(async move {
        let mut writer = writer;
        let result = tokio::select! {
            r = writer.write_to(&mut send) => r,
            e = closing.closed() => Err(std::io::Error::other(e)),
        };
        let _ = send.finish();
        (writer, result)
    });

    let ending = request_loop(&shared, &conn, client, &outbox, &mut reader, expires_at_ms).await;

    // A lost connection (not one the client closed, not one this node ended for cause)
    // suspends the session; the writer's unwritten frames go with it.
    let lost = ending.is_none()
        && !matches!(
            conn.close_reason(),
            Some(quinn::ConnectionError::ApplicationClosed(_))
        );
    let mut kept_writer = None;
    if lost && !shared.config.resume_grace.is_zero() {
        if let Ok(Ok((w, _))) = tokio::time::timeout(Duration::from_secs(1), &mut writer_task).await
        {
            kept_writer = Some(w);
        }
    }

    // Remove the client and tell subscribers, in one step under the lock — unless the
    // session is no longer this connection's (it moved away, or came back on a new one).
    {
        let mut hub = shared.hub();
        let ours = hub.links.get(&client).is_some_and(|l| {
            l.kind
                .conn()
                .is_some_and(|c| c.stable_id() == conn.stable_id())
        });
        let departed = ours && hub.departed_to(client).is_some();
        if ours
            && lost
            && !departed
            && resume::suspend(&shared, &mut hub, client, kept_writer.as_mut())
        {
            // Kept for the client to resume: nothing deleted, nothing announced.
        } else if ours {
            hub.links.remove(&client);
            hub.positions.remove(&client);
            // After a handover the session lives elsewhere: nothing to delete here.
            if !departed {
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
        Some(ending) if ending.code == CloseCode::TokenExpired => {
            if shared.quiet.allow("client token expired") {
                tracing::info!(%remote, %client, "client token expired; connection closed");
            }
            close(&conn, &ending);
        }
        Some(ending) => {
            if ending.code != CloseCode::Normal && shared.quiet.allow("closing client connection") {
                tracing::warn!(%remote, %client, code = ?ending.code, reason = %ending.reason, "closing client connection");
            }
            close(&conn, &ending);
        }
        None => tracing::debug!(%remote, %client, "client disconnected"),
    }
    if kept_writer.is_none() {
        let _ = tokio::time::timeout(Duration::from_secs(1), writer_task).await;
    }
}

fn close(conn: &quinn::Connection, ending: &Ending) {
    conn.close(ending.code.to_u32().into(), ending.reason.as_bytes());
}

fn fail(shared: &Shared, conn: &quinn::Connection, remote: std::net::SocketAddr, ending: Ending) {
    if shared.quiet.allow("closing connection on bad input") {
        tracing::warn!(%remote, code = ?ending.code, reason = %ending.reason, "closing connection on bad input");
    }
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
    resume: Option<ResumeOffer>,
    resumed: Option<ResumedInfo>,
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
        resume,
        resumed,
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
    let forbidden = |reason: String| (CloseCode::Forbidden, WireError::Forbidden { reason });
    let cfg = &shared.config;
    // A signed token is verified here, once; its grant then lives with the session.
    let admitted = cfg
        .admit(hello.class.as_deref(), hello.token.as_deref(), now_ms())
        .map_err(|e| forbidden(e.to_string()))?;

    let mut hub = shared.hub();
    if hub.client_slots() >= cfg.max_clients as usize {
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
        // The ticket names a fresh id, never this session's: a client that stays connected
        // here and also presents it elsewhere gets a second, separate session there, never
        // a second copy of this one.
        place::placement(&hub, shared, &decision, ClientId::random())
    };
    let session = hello.session.clone().unwrap_or_default();
    hub.store
        .add_client_with(id, &admitted.class, session, admitted.grant)
        .map_err(|e| (CloseCode::Protocol, e))?;
    hub.resume.forget(id);
    let (nonce, offer) = resume::new_offer(shared, &mut hub, id);
    let welcome = welcome_frame(shared, version, id, placement, offer, None);
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
    let mut link = Link::new(outbox.clone(), LinkKind::Client(conn.clone()));
    link.resume_nonce = nonce;
    hub.links.insert(id, link);
    Ok((id, outbox, writer))
}

/// Reads and answers requests until the client leaves (`None`) or must be closed, at the
/// latest when its token expires (`expires_at_ms`, milliseconds since the Unix epoch).
async fn request_loop(
    shared: &Arc<Shared>,
    conn: &quinn::Connection,
    client: ClientId,
    outbox: &Outbox,
    reader: &mut FrameReader<quinn::RecvStream>,
    expires_at_ms: Option<u64>,
) -> Option<Ending> {
    let rate = shared.config.rate_limit;
    let mut bucket = TokenBucket::new(rate);
    // A client whose rejected requests within one second exceed twice its rate (at least
    // 2,000) is flooding rather than bursting: disconnect it.
    let flood_after = 2 * u64::from(rate.max(1000));
    let mut window = Instant::now();
    let mut rejected = 0u64;
    let sink = Sink::Client(outbox.clone());
    // The expiry as a timer on the monotonic clock, set from the wall clock once, so the
    // connection closes at `exp` even while the client sends nothing.
    let expires = expires_at_ms
        .map(|at| tokio::time::Instant::now() + Duration::from_millis(at.saturating_sub(now_ms())));
    let expiry = async move {
        match expires {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(expiry);
    let expired = || {
        Ending::new(
            CloseCode::TokenExpired,
            "the client token expired: connect again with a new one",
        )
    };
    loop {
        // Both the wait and the read are cancel-safe: read bytes stay in the reader.
        let read = tokio::select! {
            biased;
            () = &mut expiry => return Some(expired()),
            read = async {
                outbox.wait_below(BACKPRESSURE_MARK).await;
                reader.next::<ClientFrame>().await
            } => read,
        };
        let first = match read {
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
        // Nothing is served past expiry, even a batch that arrived as the timer fired.
        if expires_at_ms.is_some_and(|at| now_ms >= at) {
            return Some(expired());
        }
        let _hold = outbox.hold();
        let mut hub = shared.hub();
        // A session resumed on another connection is no longer this one's: nothing more
        // read here applies to it.
        let mine = hub.links.get(&client).is_some_and(|l| {
            l.kind
                .conn()
                .is_some_and(|c| c.stable_id() == conn.stable_id())
        });
        if !mine {
            return Some(Ending::new(
                CloseCode::Superseded,
                "the session was resumed on another connection",
            ));
        }
        let mut frame = first;
        let mut taken = 1;
        let mut last_id = 0;
        let ending = loop {
            let (id, op) = match frame {
                ClientFrame::Request { id, op } => (id, op),
                ClientFrame::Hello(_) => {
                    break Some(Ending::new(CloseCode::Protocol, "Hello sent twice"))
                }
            };
            last_id = last_id.max(id);
            if bucket.allow(now) {
                let effect =
                    request::execute_locked(shared, &mut hub, client, &sink, id, op, now_ms);
                zones::start(shared, effect);
            } else {
                if now.duration_since(window) > Duration::from_secs(1) {
                    window = now;
                    rejected = 0;
                }
                rejected += 1;
                Counters::bump(&shared.counters.rate_limited);
                if rejected > flood_after {
                    break Some(Ending::new(
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
                break None;
            }
            frame = match reader.next_buffered::<ClientFrame>() {
                Ok(Some(frame)) => frame,
                Ok(None) => break None,
                Err(e) => break Some(codec_ending(&e)),
            };
            taken += 1;
        };
        // What a resume tells the client about its requests in flight: every id up to
        // this one was read (and answered) here.
        if let Some(link) = hub.links.get_mut(&client) {
            link.last_request = link.last_request.max(last_id);
        }
        if ending.is_some() {
            return ending;
        }
    }
}
