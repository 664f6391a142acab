//! Ground layer: the hub, everything a change and its delivery touch under one lock (store,
//! links, members, peers, holders, mirror, migration tables), and delivery of fan-outs.
//!
//! Nothing here starts a task or waits: callers hold the lock for one step and release it.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use super::handoff::{Incoming, Outgoing, ResumeBook};
use crate::config::NodeConfig;
use crate::mesh::swim::Swim;
use crate::mesh::Membership;
use crate::mesh::MeshEvent;
use crate::metrics::Counters;
use crate::proto::{
    encode_to_bytes, ClientId, CloseCode, Key, LoadInfo, NodeId, NotificationFrame, Outbox,
    PeerFrame, Row,
};
use crate::store::{Fanout, Store};

/// A node's row under `cloud.nodes/0`. JSON, so any client can read it; what it shows is
/// what a client needs to pick and reach a node, and the mesh's insides only when the
/// operator allows it (`expose_internals`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Node name.
    pub name: String,
    /// Addresses clients can use.
    pub addresses: Vec<String>,
    /// Joining, Active, Draining or Drained.
    pub state: String,
    /// Whether this node is the mesh host.
    pub host: bool,
    /// NodeId, hex (with `expose_internals`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The addresses peers use, internal first (with `expose_internals`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal_addresses: Option<Vec<String>>,
    /// SHA-256 of its certificate (hex), vouched for by the node a client reads it from:
    /// a client that pins certificates can move to this node when its own is lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

/// What a link is, which decides what it is counted as and where its frames go.
#[derive(Debug)]
pub(super) enum LinkKind {
    /// A client connected to this node and served here.
    Client(quinn::Connection),
    /// A client handed over to node `to` whose old connection here is still open: requests
    /// still arriving on it are forwarded there, in order.
    Departed {
        /// The old connection.
        conn: quinn::Connection,
        /// Where the session lives now.
        to: NodeId,
    },
    /// A client migrating here that has not arrived yet: its notifications queue until it
    /// does.
    Arriving,
    /// The stand-in store identity under which peer `node` registers its clients' interest
    /// here; changes for it go to that node.
    Peer {
        /// The peer node.
        node: NodeId,
        /// The link to it.
        conn: quinn::Connection,
    },
    /// The admin socket's in-node key observer: a subscriber with no connection, not a
    /// client (not counted, placed, drained or migrated).
    Observer,
    /// A client whose connection was lost, its session kept for it to resume: rows and
    /// subscriptions stay in the store, and its notifications queue (bounded) for the
    /// connection that resumes it.
    Suspended {
        /// The queue's writer, started when the client resumes.
        writer: crate::proto::OutboxWriter,
        /// When the session expires (its rows are deleted), ms since the epoch.
        until_ms: u64,
    },
}

impl LinkKind {
    /// The connection behind the link, if it has one.
    pub(super) fn conn(&self) -> Option<&quinn::Connection> {
        match self {
            LinkKind::Client(conn)
            | LinkKind::Departed { conn, .. }
            | LinkKind::Peer { conn, .. } => Some(conn),
            LinkKind::Arriving | LinkKind::Observer | LinkKind::Suspended { .. } => None,
        }
    }

    /// Whether this is a peer node's stand-in (its changes travel as `PeerFrame::Change`).
    pub(super) fn is_peer(&self) -> bool {
        matches!(self, LinkKind::Peer { .. })
    }
}

/// Where a link's frames go.
#[derive(Debug)]
pub(super) struct Link {
    /// Its outgoing queue.
    pub(super) outbox: Outbox,
    /// What it is.
    pub(super) kind: LinkKind,
    /// Set once it has been closed as a slow consumer, so that is logged once.
    pub(super) lagged: bool,
    /// When the client connected here (arrived, after a migration), ms since the epoch.
    pub(super) since_ms: u64,
    /// Issue number of the client's current resume token (0: none issued).
    pub(super) resume_nonce: u64,
    /// Highest request id read from the client's connection, told to it when it resumes.
    pub(super) last_request: u64,
}

impl Link {
    /// A new link of `kind` queueing to `outbox`.
    pub(super) fn new(outbox: Outbox, kind: LinkKind) -> Self {
        Link {
            outbox,
            kind,
            lagged: false,
            since_ms: now_ms(),
            resume_nonce: 0,
            last_request: 0,
        }
    }
}

/// An authenticated connection to another node.
#[derive(Debug)]
pub(super) struct PeerLink {
    /// The store identity holding that node's subscriptions here.
    pub(super) pseudo: ClientId,
    /// Its outgoing queue.
    pub(super) outbox: Outbox,
    /// The connection.
    pub(super) conn: quinn::Connection,
    /// Which side dialed; of two links between the same nodes, the one dialed by the lower
    /// id is kept, so both ends make the same choice.
    pub(super) dialer: NodeId,
}

/// Store, mesh view and the outgoing queues of every link, under one lock: a change and
/// the queueing of its notifications happen in one step, which keeps per-row order.
#[derive(Debug)]
pub(super) struct Hub {
    /// Cloud memory: rows, subscriptions, limits.
    pub(super) store: Store,
    /// Every store identity with a queue: clients, peers' stand-ins, the admin observer.
    pub(super) links: HashMap<ClientId, Link>,
    /// The node's own identity, owner of its `cloud.` rows.
    pub(super) system: ClientId,
    /// Membership and failure detection (SWIM): the member view and the host follow it.
    pub(super) swim: Swim,
    /// Authenticated links to other nodes.
    pub(super) peers: HashMap<NodeId, PeerLink>,
    /// Which nodes hold rows under each primary key (from their `Holds` messages).
    pub(super) holders: HashMap<String, HashSet<NodeId>>,
    /// Remote rows local subscribers have seen, per node: to emit `NodeLost` deletions
    /// when that node is lost, and to drop stale versions.
    pub(super) mirror: HashMap<NodeId, HashMap<(Key, ClientId), Row>>,
    /// The host's name, kept for the log line when the host is the member that was lost.
    pub(super) host_name: String,
    /// Set when this node just joined: the host it learns next is the mesh's, taken
    /// without announcing a host change.
    pub(super) adopting_host: bool,
    /// Membership datagrams waiting for a link to their destination (dialed meanwhile).
    pub(super) datagrams: HashMap<Target, Queued>,
    /// Dials the node wants or has under way, with their backoff.
    pub(super) dials: HashMap<Target, DialState>,
    /// When the gossip loop will next wake by itself (a call into the membership core that
    /// wants a wake-up sooner wakes it).
    pub(super) gossip_wakes_at: Option<std::time::Instant>,
    /// Rows of a peer that a re-registration of interest is re-reading (see
    /// `remote::subscribe_existing`): those changed meanwhile, so they are not mistaken for
    /// rows deleted while the link was down.
    pub(super) resync: HashMap<NodeId, HashSet<(Key, ClientId)>>,
    /// Members that left, with when the rows of theirs still mirrored are deleted for local
    /// subscribers (`NodeLeft`): not at once, because rows its clients took to other nodes
    /// as it drained arrive from those nodes on other links, possibly after the leave.
    pub(super) departed: Vec<(NodeId, std::time::Instant)>,
    /// Bound address, advertised when no `advertise` is configured.
    pub(super) local_addr: SocketAddr,
    /// Mesh events to whoever listens (none is fine: sends to no receiver are dropped).
    pub(super) events: broadcast::Sender<MeshEvent>,
    /// Last load each node reported (this node's own included), for placement.
    pub(super) loads: HashMap<NodeId, LoadInfo>,
    /// Redirect tickets already honoured (each admits once).
    pub(super) tickets: crate::mesh::TicketBook,
    /// Last position each local client reported, for zone handover.
    pub(super) positions: HashMap<ClientId, crate::proto::Position>,
    /// Migrations out of this node, prepared and waiting for the client to arrive there.
    pub(super) outgoing: HashMap<Bytes, Outgoing>,
    /// Migrations into this node, waiting for their client.
    pub(super) incoming: HashMap<Bytes, Incoming>,
    /// Resume tokens, expired sessions, sessions asked of other nodes.
    pub(super) resume: ResumeBook,
    /// Zone ownership as the host last published it (`cloud.zones/0`), when zones are on.
    pub(super) zones: Option<crate::placement::ZoneMap>,
    /// The node's metric counters (the same as `Shared::counters`), for what the hub
    /// itself does: notifications queued, slow consumers, host changes.
    pub(super) counters: Arc<Counters>,
}

impl Hub {
    /// Queues one change to every recipient; encodes it once per protocol. With
    /// `to_peers == false` (a change that came from a peer) only local clients get it.
    pub(super) fn deliver(&mut self, fan: Fanout, max_frame: usize, to_peers: bool) {
        if fan.recipients.is_empty() {
            return;
        }
        let mut client_frame: Option<Bytes> = None;
        let mut peer_frame: Option<Bytes> = None;
        for id in &fan.recipients {
            let Some(link) = self.links.get_mut(id) else {
                continue;
            };
            let to_peer = link.kind.is_peer();
            if to_peer && !to_peers {
                continue;
            }
            let slot = if to_peer {
                &mut peer_frame
            } else {
                &mut client_frame
            };
            if slot.is_none() {
                let encoded = if to_peer {
                    encode_to_bytes(&NotificationFrame::Change(&fan.notification), max_frame)
                } else {
                    encode_to_bytes(&NotificationFrame::Notify(&fan.notification), max_frame)
                };
                match encoded {
                    Ok(f) => *slot = Some(f),
                    Err(e) => {
                        // Rows are limited well below the frame size (config validation), so
                        // this is a bug, not input: say so loudly rather than drop silently.
                        tracing::error!(error = %e, "notification does not fit a frame; not delivered");
                        return;
                    }
                }
            }
            let Some(frame) = slot.clone() else { continue };
            if !to_peer {
                Counters::bump(&self.counters.notifications);
            }
            if link.outbox.push_notification(frame).is_err() && !link.lagged {
                link.lagged = true;
                Counters::bump(&self.counters.slow_consumers);
                let what = match &link.kind {
                    LinkKind::Peer { node, .. } => format!("peer node {node}"),
                    _ => "client".to_owned(),
                };
                let conn = link.kind.conn();
                tracing::warn!(%id, remote = ?conn.map(|c| c.remote_address()),
                    "{what} reads its notifications too slowly; disconnecting it");
                if let Some(conn) = conn {
                    conn.close(
                        CloseCode::SlowConsumer.to_u32().into(),
                        b"slow consumer: notification queue full",
                    );
                }
            }
        }
    }

    /// Clients connected here and served here: not peers' stand-ins, not a migrating
    /// client that has not arrived, not one handed over whose old link lingers.
    pub(super) fn local_clients(&self) -> Vec<ClientId> {
        let mut v: Vec<ClientId> = self
            .links
            .iter()
            .filter(|(_, l)| matches!(l.kind, LinkKind::Client(_)))
            .map(|(id, _)| *id)
            .collect();
        v.sort();
        v
    }

    /// Clients with a connection here (not peers' stand-ins, not a migrating client that has
    /// not arrived, not the admin key observer): what load reports and placement count.
    pub(super) fn connected_clients(&self) -> usize {
        self.links
            .values()
            .filter(|l| matches!(l.kind, LinkKind::Client(_) | LinkKind::Departed { .. }))
            .count()
    }

    /// Client slots in use, what `max_clients` bounds: connected clients, clients arriving
    /// by migration, suspended sessions, and departed ones whose old connection still
    /// lingers. Peer links and
    /// admin observers have limits of their own.
    pub(super) fn client_slots(&self) -> usize {
        self.links
            .values()
            .filter(|l| {
                matches!(
                    l.kind,
                    LinkKind::Client(_)
                        | LinkKind::Departed { .. }
                        | LinkKind::Arriving
                        | LinkKind::Suspended { .. }
                )
            })
            .count()
    }

    /// Sessions suspended here, waiting for their client to resume them.
    pub(super) fn suspended_clients(&self) -> Vec<ClientId> {
        let mut v: Vec<ClientId> = self
            .links
            .iter()
            .filter(|(_, l)| matches!(l.kind, LinkKind::Suspended { .. }))
            .map(|(id, _)| *id)
            .collect();
        v.sort();
        v
    }

    /// Where `client`'s session went, if it was handed over and its old link lingers here.
    pub(super) fn departed_to(&self, client: ClientId) -> Option<NodeId> {
        match self.links.get(&client)?.kind {
            LinkKind::Departed { to, .. } => Some(to),
            _ => None,
        }
    }

    /// Local clients (not peers) subscribed to changes of `owner`'s row under `key`.
    pub(super) fn local_subscribers(&self, key: &Key, owner: ClientId) -> Vec<ClientId> {
        self.store
            .subscribers(key, owner)
            .into_iter()
            .filter(|c| self.links.get(c).is_some_and(|l| !l.kind.is_peer()))
            .collect()
    }

    /// Tells every peer that `node` now holds the primaries of `session`'s rows (a session
    /// moving there). Sent before this node says it may no longer hold them: on each
    /// ordered link the first precedes the second.
    pub(super) fn announce_held_by(
        &self,
        session: &crate::proto::SessionState,
        node: NodeId,
        max_frame: usize,
    ) {
        let mut primaries: Vec<&str> = session
            .rows
            .iter()
            .map(|r| r.key.primary.as_str())
            .collect();
        primaries.sort_unstable();
        primaries.dedup();
        for primary in primaries {
            self.broadcast(
                &PeerFrame::HeldBy {
                    primary: primary.to_owned(),
                    node,
                },
                max_frame,
            );
        }
    }

    /// Sends a frame to every peer.
    pub(super) fn broadcast(&self, frame: &PeerFrame, max_frame: usize) {
        if self.peers.is_empty() {
            return;
        }
        match encode_to_bytes(frame, max_frame) {
            Ok(bytes) => {
                for p in self.peers.values() {
                    p.outbox.push_response(bytes.clone());
                }
            }
            Err(e) => tracing::error!(error = %e, "peer message does not fit a frame"),
        }
    }

    /// Tells peers about primaries that became held or unheld here, and withdraws interest
    /// no local client has any more (changes flow only where they are wanted).
    pub(super) fn flush_holds(&mut self, max_frame: usize) {
        for (primary, held) in self.store.take_hold_changes() {
            tracing::debug!(%primary, held, peers = self.peers.len(), "holds changed; telling peers");
            self.broadcast(&PeerFrame::Holds { primary, held }, max_frame);
        }
        let dropped = self.store.take_interest_dropped();
        if !dropped.is_empty() {
            self.broadcast(&PeerFrame::Unsubscribe { keys: dropped }, max_frame);
        }
    }

    /// Rewrites this node's `cloud.nodes/0` row (state, host flag, addresses).
    pub(super) fn write_node_record(&mut self, cfg: &NodeConfig) {
        let me = self.members().me().clone();
        let texts = |addrs: &[SocketAddr]| addrs.iter().map(|a| a.to_string()).collect();
        let record = NodeRecord {
            name: me.name.clone(),
            addresses: texts(me.addrs_for_clients()),
            state: me.state.as_str().into(),
            host: self.swim.host() == me.id,
            id: cfg.expose_internals.then(|| me.id.to_string()),
            internal_addresses: cfg.expose_internals.then(|| texts(&me.addrs)),
            fingerprint: (me.fingerprint != [0; 32]).then(|| hex::encode(me.fingerprint)),
        };
        let json = serde_json::to_vec(&record).unwrap_or_default();
        match self.store.post(
            self.system,
            Key::new("cloud.nodes", 0),
            Bytes::from(json),
            now_ms(),
        ) {
            Ok((_, fan)) => {
                self.deliver(fan, cfg.max_frame, true);
                self.flush_holds(cfg.max_frame);
            }
            Err(e) => tracing::warn!(error = %e, "could not write cloud.nodes/0"),
        }
    }

    /// The member view (this node included), as the membership protocol keeps it.
    pub(super) fn members(&self) -> &Membership {
        self.swim.members()
    }
}

/// Milliseconds since the Unix epoch, for `updated_at_ms`.
pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Where a membership datagram (or a dial) goes: a member, or whoever listens at an
/// address (a join name's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Target {
    /// A member, by id.
    Member(NodeId),
    /// An address.
    Addr(SocketAddr),
}

/// Datagrams for a target with no link yet.
#[derive(Debug, Default)]
pub(super) struct Queued {
    /// Where to dial, internal first.
    pub(super) addrs: Vec<SocketAddr>,
    /// The datagrams, oldest first, with when each was queued.
    pub(super) payloads: std::collections::VecDeque<(std::time::Instant, Bytes)>,
}

/// A dial's backoff: failures so far and when the next attempt may start.
#[derive(Debug, Clone)]
pub(super) struct DialState {
    /// Where to dial, internal first.
    pub(super) addrs: Vec<SocketAddr>,
    /// A dial is under way.
    pub(super) in_flight: bool,
    /// Failed attempts in a row.
    pub(super) failures: u32,
    /// No attempt before this.
    pub(super) next_at: std::time::Instant,
}

/// Queues one frame on a peer link (a frame too large to encode is a bug, logged).
pub(super) fn push(outbox: &Outbox, frame: &PeerFrame, max: usize) {
    match encode_to_bytes(frame, max) {
        Ok(bytes) => outbox.push_response(bytes),
        Err(e) => tracing::error!(error = %e, "peer message does not fit a frame"),
    }
}
