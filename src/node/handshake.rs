//! Dispatcher (lower half of the peer link): making a link to another node. Dial or
//! accept, mutual authentication with the mesh secret, the hello exchange, duplicate-link
//! resolution, and registering the link in the hub (membership is the SWIM core's, not
//! the links'). The caller ([`super::peer`]) runs the
//! registered link's frame loop.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::hub::{now_ms, push, Hub, Link, LinkKind, PeerLink};
use super::remote;
use super::shared::Shared;
use crate::mesh::MeshEvent;
use crate::mesh::{authenticate, Role};
use crate::proto::{
    encode_to_bytes, outbox, ClientId, CloseCode, CodecError, DeleteReason, FrameReader,
    MemberInfo, NodeId, PeerFrame, PEER_PROTOCOL_VERSION,
};

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

/// A link registered in the hub whose frame loop the caller must run.
#[derive(Debug)]
pub(super) struct Established {
    /// The connection.
    pub(super) conn: quinn::Connection,
    /// Its stream's reader, past the hello.
    pub(super) reader: FrameReader<quinn::RecvStream>,
    /// The node at the other end.
    pub(super) node: NodeId,
}

impl From<CodecError> for DialError {
    fn from(e: CodecError) -> Self {
        DialError::Protocol(e.to_string())
    }
}

/// The hello this node sends now.
fn my_hello(hub: &Hub) -> PeerFrame {
    PeerFrame::Hello {
        version: PEER_PROTOCOL_VERSION,
        me: hub.members().me().clone(),
        holds: hub.store.held_primaries(),
    }
}

async fn read_hello(
    reader: &mut FrameReader<quinn::RecvStream>,
) -> Result<(MemberInfo, Vec<String>), DialError> {
    match tokio::time::timeout(HANDSHAKE, reader.next::<PeerFrame>()).await {
        Ok(Ok(Some(PeerFrame::Hello { version, me, holds }))) => {
            if version != PEER_PROTOCOL_VERSION {
                return Err(DialError::Protocol(format!(
                    "peer speaks peer protocol {version}, this node {PEER_PROTOCOL_VERSION}"
                )));
            }
            Ok((me, holds))
        }
        Ok(Ok(Some(other))) => Err(DialError::Protocol(format!(
            "expected Hello, got {other:?}"
        ))),
        Ok(Ok(None)) => Err(DialError::Protocol("stream ended before Hello".into())),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(DialError::Protocol("no Hello in time".into())),
    }
}

/// Connects to `addr`, authenticates, exchanges hellos and registers the link. Returns the
/// node reached, and the link unless an existing link to it was kept instead.
pub(super) async fn dial(
    shared: &Arc<Shared>,
    addr: SocketAddr,
) -> Result<(NodeId, Option<Established>), DialError> {
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
    let (their, holds) = match read_hello(&mut reader).await {
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
    let established = establish(shared, conn, send, reader, their, holds, shared.id, None)?;
    Ok((their_id, established))
}

/// Takes a connection that arrived with the peer ALPN through authentication and the hello
/// exchange; returns the registered link, or `None` (the connection is closed, with the
/// reason logged where it matters).
pub(super) async fn accept(shared: &Arc<Shared>, conn: quinn::Connection) -> Option<Established> {
    let remote = conn.remote_address();
    let Some(secret) = shared.config.secret.clone() else {
        tracing::info!(%remote, "refusing a peer: this node has no mesh secret, so it is not part of a mesh");
        conn.close(
            CloseCode::Forbidden.to_u32().into(),
            b"this node is not part of a mesh (no secret)",
        );
        return None;
    };
    if !shared.auth_limiter.allow(remote.ip(), Instant::now()) {
        conn.close(
            CloseCode::Forbidden.to_u32().into(),
            b"too many failed authentications; try later",
        );
        return None;
    }
    let Ok(Ok((mut send, recv))) = tokio::time::timeout(HANDSHAKE, conn.accept_bi()).await else {
        conn.close(
            CloseCode::Protocol.to_u32().into(),
            b"no stream opened in time",
        );
        return None;
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
        // Only a wrong proof counts against the address: a timeout or a dropped connection
        // (many of them when a whole fleet starts at once) says nothing about the secret.
        if matches!(e, crate::mesh::AuthError::BadProof)
            && shared.auth_limiter.failed(remote.ip(), Instant::now())
        {
            tracing::warn!(%remote, error = %e, "peer authentication failed; closing (further failures from this address are counted, not logged)");
        }
        conn.close(
            CloseCode::Forbidden.to_u32().into(),
            b"mesh authentication failed",
        );
        return None;
    }
    shared.auth_limiter.succeeded(remote.ip());
    // Hello first from this side, with the holds it reflects, so the link can correct
    // anything that changes before it is registered.
    let (hello, sent_holds) = {
        let hub = shared.hub();
        (my_hello(&hub), hub.store.held_primaries())
    };
    match encode_to_bytes(&hello, shared.config.max_frame) {
        Ok(bytes) => {
            if send.write_all(&bytes).await.is_err() {
                return None;
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "own hello does not fit a frame");
            conn.close(CloseCode::Protocol.to_u32().into(), b"hello too large");
            return None;
        }
    }
    let (their, holds) = match read_hello(&mut reader).await {
        Ok(h) => h,
        Err(e) => {
            if shared.quiet.allow("peer hello failed") {
                tracing::warn!(%remote, error = %e, "peer hello failed");
            }
            conn.close(
                CloseCode::Protocol.to_u32().into(),
                e.to_string().as_bytes(),
            );
            return None;
        }
    };
    if their.id == shared.id {
        conn.close(CloseCode::Normal.to_u32().into(), b"connected to itself");
        return None;
    }
    let dialer = their.id;
    match establish(
        shared,
        conn,
        send,
        reader,
        their,
        holds,
        dialer,
        Some(sent_holds),
    ) {
        Ok(established) => established,
        Err(e) => {
            tracing::warn!(%remote, error = %e, "peer link not established");
            None
        }
    }
}

/// Registers an authenticated link and starts its writer. The dialer sends its hello here,
/// under the hub lock, so nothing that changes afterwards is missed by the peer. `None`
/// when an existing link to the same node is kept instead (the new one is closed).
#[allow(clippy::too_many_arguments)]
fn establish(
    shared: &Arc<Shared>,
    conn: quinn::Connection,
    mut send: quinn::SendStream,
    reader: FrameReader<quinn::RecvStream>,
    their: MemberInfo,
    holds: Vec<String>,
    dialer: NodeId,
    sent_holds: Option<Vec<String>>,
) -> Result<Option<Established>, DialError> {
    let cfg = &shared.config;
    let mut their = their;
    reachable_addrs(&mut their.addrs, conn.remote_address());
    reachable_addrs(&mut their.client_addrs, conn.remote_address());
    let their_id = their.id;
    let (outbox, writer) = outbox(PEER_OUTBOUND);
    {
        let mut hub = shared.hub();
        if let Some(existing) = hub.peers.get(&their_id) {
            let keep_existing =
                existing.dialer == shared.id.min(their_id) || dialer != shared.id.min(their_id);
            if keep_existing {
                conn.close(CloseCode::Normal.to_u32().into(), b"duplicate link");
                return Ok(None);
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
        } else if hub.peers.len() >= cfg.max_peers as usize {
            tracing::warn!(peer = %their.name, id = %their_id, max = cfg.max_peers,
                "refusing a peer link: this node is linked to max_peers nodes already");
            conn.close(
                CloseCode::ServerFull.to_u32().into(),
                b"too many peer links",
            );
            return Ok(None);
        }
        if sent_holds.is_none() {
            // Dialer: its hello goes first on the new link's queue.
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
            Link::new(
                outbox.clone(),
                LinkKind::Peer {
                    node: their_id,
                    conn: conn.clone(),
                },
            ),
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
        // Our load now rather than at the next interval: until a node has it, this node is
        // no placement (or drain) target there.
        if let Some(load) = hub.loads.get(&shared.id).copied() {
            push(&outbox, &PeerFrame::Load(load), cfg.max_frame);
        }
        // Register what local subscribers want at the new peer (changes only flow to
        // nodes that asked for them).
        let specs = hub.store.client_subscription_specs();
        if !specs.is_empty() {
            let s = shared.clone();
            let out = outbox.clone();
            tokio::spawn(async move { remote::subscribe_existing(s, their_id, out, specs).await });
        }
        let _ = hub.events.send(MeshEvent::PeerUp {
            node: their_id,
            name: their.name.clone(),
        });
    }
    tracing::info!(peer = %their.name, id = %their_id, remote = %conn.remote_address(), "peer link up");

    tokio::spawn(async move {
        let _ = writer.run(&mut send).await;
        let _ = send.finish();
    });
    Ok(Some(Established {
        conn,
        reader,
        node: their_id,
    }))
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
