//! Dispatcher: a peer link's life after the handshake, and the membership protocol's IO.
//! The frame loop decodes each `PeerFrame` and calls one service function for it; a
//! second task feeds the link's QUIC datagrams (membership) to the SWIM core. A link that
//! ends (closed, or silent for QUIC's idle timeout) is only a link: while its node stays a
//! member it is redialed with jittered, capped backoff, and its rows stay. The gossip loop
//! wakes the core when it asks, dials the links the core and the member view want, and
//! re-resolves the join names.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::gossip;
use super::handshake::{self, DialError, Established};
use super::hub::{now_ms, DialState, Target};
use super::reply::Sink;
use super::request;
use super::shared::Shared;
use super::{admin, drain, load, migrate, rebalance, remote, resume, search, zones};
use crate::proto::{
    ClientId, CloseCode, CodecError, DeleteReason, FrameReader, NodeId, PeerFrame, Request,
    DEFAULT_PORT,
};

/// How often the join names are resolved again (a DNS name may point elsewhere now).
const RESOLVE_EVERY: Duration = Duration::from_secs(5);

/// Dials `addr`, and runs the link if one was made.
async fn dial(shared: &Arc<Shared>, addr: SocketAddr) -> Result<NodeId, DialError> {
    let (node, established) = handshake::dial(shared, addr).await?;
    if let Some(link) = established {
        run(shared, link, addr);
    }
    Ok(node)
}

/// Serves a connection that arrived with the peer ALPN.
pub(super) async fn accept(shared: Arc<Shared>, conn: quinn::Connection) {
    let remote = conn.remote_address();
    if let Some(link) = handshake::accept(&shared, conn).await {
        run(&shared, link, remote);
    }
}

/// Starts a registered link's frame loop and its datagram reader, and sends the membership
/// datagrams that waited for it.
fn run(shared: &Arc<Shared>, link: Established, remote: SocketAddr) {
    let Established { conn, reader, node } = link;
    let (s, c) = (shared.clone(), conn.clone());
    tokio::spawn(async move { datagram_loop(s, c, node).await });
    let s = shared.clone();
    tokio::spawn(async move { link_loop(s, conn, reader, node).await });
    gossip::linked(shared, node, remote);
}

/// Feeds the link's QUIC datagrams to the membership core until the link ends. They come
/// only from the node the link authenticated; the core refuses one naming another sender.
async fn datagram_loop(shared: Arc<Shared>, conn: quinn::Connection, node: NodeId) {
    while let Ok(datagram) = conn.read_datagram().await {
        gossip::on_datagram(&shared, node, &datagram);
    }
}

/// Drives the membership core: runs its wake-ups when due, and starts the dials it and
/// the member view want (one at a time per target, with backoff). Wakes early when a call
/// into the core may have changed either (`Shared::gossip_wake`).
pub(super) async fn gossip_loop(shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.clone();
    loop {
        if shared.shutting_down() {
            return;
        }
        // At least once a second: dials wait on their backoff, and queues age.
        let sleep_until = gossip::on_timeout(&shared, Instant::now() + Duration::from_secs(1));
        start_dials(&shared);
        tokio::select! {
            _ = shutdown.changed() => return,
            () = tokio::time::sleep_until(sleep_until.into()) => {}
            () = shared.gossip_wake.notified() => {}
        }
    }
}

/// Resolves the join names now and every few seconds, and hands the addresses to the
/// membership core as its seeds (it announces to them while this node is alone, and now and
/// then to those no member holds, which is what merges split meshes).
pub(super) async fn seed_loop(shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.clone();
    loop {
        let mut seeds = Vec::new();
        for target in &shared.config.join {
            for addr in resolve_join(target).await {
                if !seeds.contains(&addr) {
                    seeds.push(addr);
                }
            }
        }
        gossip::set_seeds(&shared, seeds);
        tokio::select! {
            _ = shutdown.changed() => return,
            () = tokio::time::sleep(RESOLVE_EVERY) => {}
        }
    }
}

/// Starts a dial for every wanted link that has none under way and whose backoff allows.
fn start_dials(shared: &Arc<Shared>) {
    let now = Instant::now();
    let ready: Vec<(Target, Vec<SocketAddr>)> = {
        let mut hub = shared.hub();
        let wanted = gossip::wanted_links(shared, &mut hub);
        hub.dials
            .retain(|t, d| d.in_flight || wanted.iter().any(|(w, _)| w == t));
        let mut ready = Vec::new();
        for (target, addrs) in wanted {
            let d = hub.dials.entry(target).or_insert_with(|| DialState {
                addrs: addrs.clone(),
                in_flight: false,
                failures: 0,
                next_at: now,
            });
            d.addrs = addrs;
            if !d.in_flight && d.next_at <= now && !d.addrs.is_empty() {
                d.in_flight = true;
                ready.push((target, d.addrs.clone()));
            }
        }
        ready
    };
    for (target, addrs) in ready {
        tracing::debug!(?target, ?addrs, "dialing for the membership protocol");
        let s = shared.clone();
        tokio::spawn(async move {
            let mut linked = false;
            for addr in addrs {
                match dial(&s, addr).await {
                    Ok(node) => {
                        // A member that restarted answers at its old address under a new id:
                        // the link is good, but it is not the member that was wanted.
                        linked = match target {
                            Target::Member(id) => id == node,
                            Target::Addr(_) => true,
                        };
                        break;
                    }
                    Err(DialError::Myself) => break,
                    Err(DialError::Auth(e)) => {
                        if s.quiet.allow("peer authentication failed when dialing") {
                            let what = match target {
                                Target::Addr(_) => "cannot join",
                                Target::Member(_) => "cannot link to a member",
                            };
                            tracing::warn!(%addr, error = %e,
                                "{what}: authentication failed (is the mesh secret the same on every node?)");
                        }
                    }
                    Err(e) => tracing::debug!(%addr, error = %e, "dial failed"),
                }
            }
            gossip::dial_done(&mut s.hub(), target, linked);
            s.gossip_wake.notify_one();
        });
    }
}

/// Resolves a join name; `NAME[:PORT]`, port 7946 when left out.
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

/// Reads one peer's frames until the link ends.
async fn link_loop(
    shared: Arc<Shared>,
    conn: quinn::Connection,
    mut reader: FrameReader<quinn::RecvStream>,
    node: NodeId,
) {
    // A dead link ends this loop through QUIC's idle timeout (the dialing end keeps a live
    // link busy with keep-alives); a dead node is declared down sooner by the membership
    // protocol, which closes its link.
    let reason = loop {
        let next = reader.next::<PeerFrame>().await;
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
                if !remote::serve_get(&shared, node, id, &query) {
                    break "link replaced".into();
                }
            }
            PeerFrame::GetResult { id, result } => remote::on_get_result(&shared, node, id, result),
            PeerFrame::Query { id, query } => {
                if !search::serve(&shared, node, id, &query) {
                    break "link replaced".into();
                }
            }
            PeerFrame::Change(n) => remote::on_change(&shared, node, n),
            PeerFrame::HeldBy {
                primary,
                node: holder,
            } => remote::on_held_by(&shared, primary, holder),
            PeerFrame::Holds { primary, held } => remote::on_holds(&shared, node, primary, held),
            PeerFrame::Unsubscribe { keys } => remote::on_unsubscribe(&shared, node, &keys),
            PeerFrame::Prepare { ticket, state } => {
                tokio::spawn(migrate::on_prepare(shared.clone(), node, ticket, state));
            }
            PeerFrame::Prepared { ticket, result } => migrate::on_prepared(&shared, ticket, result),
            PeerFrame::Handover { ticket } => migrate::on_handover(&shared, node, ticket),
            PeerFrame::Abort { ticket } => migrate::on_abort(&shared, &ticket),
            PeerFrame::Transfer { ticket, state } => migrate::on_transfer(&shared, ticket, state),
            PeerFrame::Forward { client, id, op } => on_forward(&shared, node, client, id, op),
            PeerFrame::Reclaim { client, token } => {
                resume::on_reclaim(&shared, node, client, &token)
            }
            PeerFrame::Reclaimed { client, result } => {
                resume::on_reclaimed(&shared, client, result)
            }
            PeerFrame::Forwarded { client, id, result } => {
                migrate::on_forwarded(&shared, client, id, result)
            }
            PeerFrame::Zones { json } => zones::on_zones(&shared, &json),
            PeerFrame::Rebalance { to, count } => {
                tokio::spawn(rebalance::move_clients(shared.clone(), to, count));
            }
            PeerFrame::Load(info) => load::on_load(&shared, node, info),
            PeerFrame::DrainProgress { moved, remaining } => {
                drain::on_progress(&shared, node, moved, remaining)
            }
            PeerFrame::Admin { id, command } => admin::on_command(&shared, node, id, command),
            PeerFrame::AdminReply { id, body } => admin::on_reply(&shared, id, body),
            PeerFrame::Hello { .. } => {
                conn.close(CloseCode::Protocol.to_u32().into(), b"Hello sent twice");
                break "Hello sent twice".into();
            }
        }
    };
    link_lost(&shared, node, &conn, &reason);
}

/// A link ended. The node stays a member unless the membership core says otherwise, so
/// only the link is forgotten: its stand-in's interest, the holders it told, the answers it
/// owed. Its rows stay for local subscribers (a re-link re-reads them); the gossip loop
/// redials it.
fn link_lost(shared: &Arc<Shared>, node: NodeId, conn: &quinn::Connection, reason: &str) {
    {
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
        hub.flush_holds(shared.config.max_frame);
        remote::unlinked(&mut hub, node);
        let member = hub.members().get(node).map(|m| m.name.clone());
        match member {
            Some(name) if !shared.shutting_down() => {
                tracing::info!(peer = %name, id = %node, reason, "peer link down; redialing")
            }
            _ => tracing::debug!(id = %node, reason, "peer link closed"),
        }
    }
    remote::link_lost(shared, node);
    admin::link_lost(shared, node);
    shared.gossip_wake.notify_one();
}

/// A request the client sent to its old node after the handover, executed here (where its
/// session now lives) with the answer going back the way it came.
fn on_forward(shared: &Arc<Shared>, from: NodeId, client: ClientId, id: u64, op: Request) {
    let Some(peer) = shared.hub().peers.get(&from).map(|p| p.outbox.clone()) else {
        return;
    };
    let effect = request::execute(shared, client, &Sink::Forward { peer, client }, id, op);
    zones::start(shared, effect);
}
