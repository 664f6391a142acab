//! Composes the pieces into a running node: `Node::start(config)` binds the QUIC endpoint,
//! loads or makes the TLS identity, joins or starts a mesh, and serves clients and peers
//! until `shutdown`.

mod admin;
mod conn;
mod drain;
mod load;
mod migrate;

pub use admin::AdminHandle;
pub use drain::DrainError;
pub use migrate::MigrateError;
mod peer;
mod place;
mod rate;
mod rebalance;
mod zones;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, oneshot, watch};
use tokio::task::JoinHandle;

use crate::config::{ConfigError, NodeConfig};
use crate::mesh::{AuthLimiter, Membership, UNJOINED};
use crate::metrics::{sanitize_segment, Counters, MetricSource, Sample};
use crate::proto::{
    encode_to_bytes, ClientId, CloseCode, GetPage, Key, LoadInfo, MemberInfo, NodeId, NodeState,
    Outbox, PeerFrame, Row, ServerFrame, ALPN_CLIENT, ALPN_PEER,
};
use crate::store::{Fanout, Filters, Store, StoreStats};
use crate::transport::{self, Identity, TransportError, Trust};

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The configuration contradicts itself.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// TLS identity or QUIC setup failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The UDP port could not be bound.
    #[error("cannot listen on UDP {addr}: {source} (is another node running there? choose another with --listen)")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A node's row under `cloud.nodes/0` (§3.4). JSON, so any client can read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Node name.
    pub name: String,
    /// NodeId, hex.
    pub id: String,
    /// Addresses clients and peers can use.
    pub addresses: Vec<String>,
    /// Joining, Active, Draining or Drained.
    pub state: String,
    /// Whether this node is the mesh host.
    pub host: bool,
}

/// Something that happened to the mesh, for the admin layer and tests (§4: `HostChanged` is
/// an event in logs, admin stream and metrics).
#[derive(Debug, Clone, PartialEq)]
pub enum MeshEvent {
    /// An authenticated link to a node came up.
    PeerUp {
        /// The node.
        node: NodeId,
        /// Its name.
        name: String,
    },
    /// A link was lost; its rows were deleted for local subscribers (`NodeLost`).
    PeerLost {
        /// The node.
        node: NodeId,
        /// Rows of it that local subscribers had seen.
        rows: usize,
    },
    /// A node's lifecycle state changed (Draining, Drained, Active again).
    StateChanged {
        /// The node.
        node: NodeId,
        /// Its new state.
        state: NodeState,
    },
    /// Progress of a node's drain (this node's, or a peer's as it reported it).
    DrainProgress {
        /// The draining node.
        node: NodeId,
        /// Clients moved so far.
        moved: usize,
        /// Clients still here.
        remaining: usize,
    },
    /// The host changed.
    HostChanged {
        /// The previous host.
        old: NodeId,
        /// The new host.
        new: NodeId,
    },
    /// A node's periodic load report arrived (this node's own included).
    Load {
        /// The node.
        node: NodeId,
        /// Its load.
        info: LoadInfo,
    },
    /// A client of this node moved to another node.
    Migrated {
        /// The client.
        client: ClientId,
        /// Where it went.
        to: NodeId,
    },
    /// A newer zone map was adopted.
    ZonesChanged,
}

/// Where a link's frames go.
#[derive(Debug)]
struct Link {
    /// Its outgoing queue.
    outbox: Outbox,
    /// To close it when it lags; `None` while a migrating client has not arrived yet.
    conn: Option<quinn::Connection>,
    /// Set once it has been closed as a slow consumer, so that is logged once.
    lagged: bool,
    /// `Some` for the stand-in identity of a peer node's interest.
    peer: Option<NodeId>,
    /// When the client connected here (arrived, after a migration), ms since the epoch.
    since_ms: u64,
}

/// An authenticated connection to another node.
#[derive(Debug)]
struct PeerLink {
    /// The store identity holding that node's subscriptions here.
    pseudo: ClientId,
    /// Its outgoing queue.
    outbox: Outbox,
    /// The connection.
    conn: quinn::Connection,
    /// Which side dialed; of two links between the same nodes, the one dialed by the lower
    /// id is kept, so both ends make the same choice.
    dialer: NodeId,
}

/// Store, mesh view and the outgoing queues of every link, under one lock: a change and
/// the queueing of its notifications happen in one step, which keeps per-row order (§2).
#[derive(Debug)]
struct Hub {
    store: Store,
    links: HashMap<ClientId, Link>,
    /// The node's own identity, owner of its `cloud.` rows.
    system: ClientId,
    members: Membership,
    peers: HashMap<NodeId, PeerLink>,
    /// Which nodes hold rows under each primary key (from their `Holds` messages).
    holders: HashMap<String, HashSet<NodeId>>,
    /// Remote rows local subscribers have seen, per node: to emit `NodeLost` deletions
    /// when that node is lost, and to drop stale versions.
    mirror: HashMap<NodeId, HashMap<(Key, ClientId), Row>>,
    /// Host as last computed, to notice changes.
    host: NodeId,
    /// Its name, kept for the log line when the host is the member that was lost.
    host_name: String,
    /// Bound address, advertised when no `advertise` is configured.
    local_addr: SocketAddr,
    /// Mesh events to whoever listens (none is fine: sends to no receiver are dropped).
    events: broadcast::Sender<MeshEvent>,
    /// Last load each node reported (this node's own included), for placement.
    loads: HashMap<NodeId, LoadInfo>,
    /// Redirect tickets already honoured (each admits once).
    tickets: crate::mesh::TicketBook,
    /// Last position each local client reported, for zone handover.
    positions: HashMap<ClientId, crate::proto::Position>,
    /// Clients handed over to another node whose old connection is still open here: their
    /// requests are forwarded there.
    moved: HashMap<ClientId, NodeId>,
    /// Migrations out of this node, prepared and waiting for the client to arrive there.
    outgoing: HashMap<Bytes, migrate::Outgoing>,
    /// Migrations into this node, waiting for their client.
    incoming: HashMap<Bytes, migrate::Incoming>,
    /// Zone ownership as the host last published it (`cloud.zones/0`), when zones are on.
    zones: Option<crate::placement::ZoneMap>,
    /// The node's metric counters (the same as `Shared::counters`), for what the hub
    /// itself does: notifications queued, slow consumers, host changes.
    counters: Arc<Counters>,
}

impl Hub {
    /// Queues one change to every recipient; encodes it once per protocol. With
    /// `to_peers == false` (a change that came from a peer) only local clients get it.
    fn deliver(&mut self, fan: Fanout, max_frame: usize, to_peers: bool) {
        if fan.recipients.is_empty() {
            return;
        }
        let mut client_frame: Option<Bytes> = None;
        let mut peer_frame: Option<Bytes> = None;
        for id in &fan.recipients {
            let Some(link) = self.links.get_mut(id) else {
                continue;
            };
            if link.peer.is_some() && !to_peers {
                continue;
            }
            let slot = if link.peer.is_some() {
                &mut peer_frame
            } else {
                &mut client_frame
            };
            if slot.is_none() {
                let encoded = if link.peer.is_some() {
                    encode_to_bytes(&PeerFrame::Change(fan.notification.clone()), max_frame)
                } else {
                    encode_to_bytes(&ServerFrame::Notify(fan.notification.clone()), max_frame)
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
            if link.peer.is_none() {
                Counters::bump(&self.counters.notifications);
            }
            if link.outbox.push_notification(frame).is_err() && !link.lagged {
                link.lagged = true;
                Counters::bump(&self.counters.slow_consumers);
                let what = if link.peer.is_some() {
                    "peer node"
                } else {
                    "client"
                };
                tracing::warn!(%id, remote = ?link.conn.as_ref().map(|c| c.remote_address()),
                    "{what} reads its notifications too slowly; disconnecting it");
                if let Some(conn) = &link.conn {
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
    fn local_clients(&self) -> Vec<ClientId> {
        let mut v: Vec<ClientId> = self
            .links
            .iter()
            .filter(|(id, l)| l.peer.is_none() && l.conn.is_some() && !self.moved.contains_key(id))
            .map(|(id, _)| *id)
            .collect();
        v.sort();
        v
    }

    /// Clients with a connection here (not peers' stand-ins, not a migrating client that has
    /// not arrived, not the admin key observer): what load reports and placement count.
    fn connected_clients(&self) -> usize {
        self.links
            .values()
            .filter(|l| l.peer.is_none() && l.conn.is_some())
            .count()
    }

    /// Local clients (not peers) subscribed to changes of `owner`'s row under `key`.
    fn local_subscribers(&self, key: &Key, owner: ClientId) -> Vec<ClientId> {
        self.store
            .subscribers(key, owner)
            .into_iter()
            .filter(|c| self.links.get(c).is_some_and(|l| l.peer.is_none()))
            .collect()
    }

    /// Sends a frame to every peer.
    fn broadcast(&self, frame: &PeerFrame, max_frame: usize) {
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
    /// no local client has any more (changes flow only where they are wanted, §3.5).
    fn flush_holds(&mut self, max_frame: usize) {
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
    fn write_node_record(&mut self, cfg: &NodeConfig) {
        let me = self.members.me().clone();
        let record = NodeRecord {
            name: me.name.clone(),
            id: me.id.to_string(),
            addresses: me.addrs.iter().map(|a| a.to_string()).collect(),
            state: me.state.as_str().into(),
            host: self.members.host() == me.id,
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

    /// Recomputes the host; on a change logs `HostChanged` and updates the node record.
    fn check_host(&mut self, cfg: &NodeConfig) {
        let host = self.members.host();
        if host != self.host {
            Counters::bump(&self.counters.host_changes);
            let new_name = self
                .members
                .get(host)
                .map_or_else(|| host.to_string(), |m| m.name.clone());
            tracing::info!(old = %self.host_name, new = %new_name, old_id = %self.host, new_id = %host, "host changed");
            let _ = self.events.send(MeshEvent::HostChanged {
                old: self.host,
                new: host,
            });
            self.adopt_host();
            self.write_node_record(cfg);
        }
    }

    /// Takes the computed host as the current one without announcing a change (at start and
    /// when joining: the mesh's host did not change because this node arrived).
    fn adopt_host(&mut self) {
        self.host = self.members.host();
        self.host_name = self
            .members
            .get(self.host)
            .map_or_else(|| self.host.to_string(), |m| m.name.clone());
    }
}

/// A get this node sent to a peer, waiting for its answer.
#[derive(Debug)]
struct PendingGet {
    node: NodeId,
    tx: oneshot::Sender<Option<GetPage>>,
}

/// State shared by the accept loop, every connection task and every peer link.
#[derive(Debug)]
struct Shared {
    id: NodeId,
    config: NodeConfig,
    hub: Mutex<Hub>,
    /// To dial peers from the same UDP port.
    endpoint: quinn::Endpoint,
    /// Client config for peer links; `Some` only with a mesh secret.
    peer_client: Option<quinn::ClientConfig>,
    auth_limiter: AuthLimiter,
    /// Ids for gets sent to peers.
    next_request: AtomicU64,
    /// Gets sent to peers, by id.
    pending: Mutex<HashMap<u64, PendingGet>>,
    /// Flips to true at shutdown; background tasks stop.
    shutdown: watch::Receiver<bool>,
    /// Client requests handled since start (for msgs/s in load reports).
    requests: AtomicU64,
    /// Metric counters, bumped where things happen (relaxed atomics, no lock).
    counters: Arc<Counters>,
    /// Admin commands sent to peers, waiting for their replies (§7 forwarding).
    admin_calls: Mutex<HashMap<u64, admin::PendingCall>>,
    /// When the node started, for `status`'s uptime.
    started: std::time::Instant,
    /// Certificate fingerprint, for `status`.
    fingerprint: String,
    /// Set while an admin-started drain runs, so a second one is refused, not doubled.
    drain_running: std::sync::atomic::AtomicBool,
}

impl Shared {
    fn hub(&self) -> MutexGuard<'_, Hub> {
        // A panic while holding the lock is a bug already reported by the panic itself;
        // the store's own invariants hold between operations, so keep serving.
        self.hub.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn pending(&self) -> MutexGuard<'_, HashMap<u64, PendingGet>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn admin_calls(&self) -> MutexGuard<'_, HashMap<u64, admin::PendingCall>> {
        self.admin_calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }
}

/// Milliseconds since the Unix epoch, for `updated_at_ms`.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A running node.
#[derive(Debug)]
pub struct Node {
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    accept: JoinHandle<()>,
    fingerprint: String,
    cert_generated: bool,
}

impl Node {
    /// Starts serving per `config`: binds the port, then joins the mesh named by
    /// `config.join` (or starts one alone). Returns once it serves.
    pub async fn start(config: NodeConfig) -> Result<Node, NodeError> {
        transport::install_crypto_provider();
        config.validate()?;
        let names = vec![
            config.name.clone(),
            "localhost".to_owned(),
            "cloudmesh".to_owned(),
        ];
        let identity = Identity::load_or_generate(&config.data_dir, &names)?;
        let fingerprint = identity.fingerprint();
        let server = transport::server_config(&identity, &[ALPN_CLIENT, ALPN_PEER], config.timing)?;
        let endpoint = transport::server_endpoint(server, config.listen).map_err(|source| {
            NodeError::Bind {
                addr: config.listen,
                source,
            }
        })?;
        let local = endpoint.local_addr().map_err(|source| NodeError::Bind {
            addr: config.listen,
            source,
        })?;
        // Peers are not authenticated by certificate (each node's is self-signed) but by the
        // mesh secret, bound to this TLS session's exporter: a relay cannot pass the check.
        let peer_client = match &config.secret {
            Some(_) => Some(transport::client_config(
                &Trust::InsecureDevOnly,
                ALPN_PEER,
                config.timing,
            )?),
            None => None,
        };

        let id = NodeId::random();
        let mut store = Store::new(
            id,
            config.limits.clone(),
            Filters::new(config.filters.clone()),
        );
        let system = ClientId::random();
        store.add_system_client(system);
        let me = MemberInfo {
            id,
            name: config.name.clone(),
            addrs: if config.advertise.is_empty() {
                vec![local]
            } else {
                config.advertise.clone()
            },
            join_seq: if config.join.is_empty() { 0 } else { UNJOINED },
            state: if config.join.is_empty() {
                NodeState::Active
            } else {
                NodeState::Joining
            },
            fingerprint: crate::transport::parse_fingerprint(&fingerprint).unwrap_or([0; 32]),
        };
        let counters = Arc::new(Counters::default());
        let mut hub = Hub {
            store,
            links: HashMap::new(),
            system,
            members: Membership::new(me),
            peers: HashMap::new(),
            holders: HashMap::new(),
            mirror: HashMap::new(),
            host: id,
            host_name: String::new(),
            local_addr: local,
            events: broadcast::channel(1024).0,
            counters: counters.clone(),
            loads: HashMap::new(),
            tickets: crate::mesh::TicketBook::default(),
            zones: None,
            moved: HashMap::new(),
            positions: HashMap::new(),
            outgoing: HashMap::new(),
            incoming: HashMap::new(),
        };
        hub.adopt_host();
        hub.write_node_record(&config);
        hub.store.take_hold_changes();

        let (shutdown, shutdown_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            id,
            config,
            hub: Mutex::new(hub),
            endpoint: endpoint.clone(),
            peer_client,
            auth_limiter: AuthLimiter::new(5, Duration::from_secs(10)),
            next_request: AtomicU64::new(1),
            pending: Mutex::new(HashMap::new()),
            shutdown: shutdown_rx.clone(),
            requests: AtomicU64::new(0),
            counters,
            admin_calls: Mutex::new(HashMap::new()),
            started: std::time::Instant::now(),
            fingerprint: fingerprint.clone(),
            drain_running: std::sync::atomic::AtomicBool::new(false),
        });
        let accept = tokio::spawn(accept_loop(shared.clone(), endpoint, shutdown_rx));
        tracing::info!(node = %shared.config.name, id = %id, listen = %local, %fingerprint,
            generated_cert = identity.generated, cert = %identity.cert_path.display(), "node serving");
        if !shared.config.join.is_empty() {
            peer::join(&shared).await;
            tokio::spawn(peer::rejoin_loop(shared.clone()));
        }
        tokio::spawn(load::refresh_loop(shared.clone()));
        tokio::spawn(rebalance::host_loop(shared.clone()));
        tokio::spawn(zones::host_loop(shared.clone()));
        Ok(Node {
            shared,
            shutdown,
            accept,
            fingerprint,
            cert_generated: identity.generated,
        })
    }

    /// The bound UDP address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared
            .endpoint
            .local_addr()
            .unwrap_or(self.shared.config.listen)
    }

    /// SHA-256 fingerprint of the node certificate, what clients pin.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Whether this start generated the certificate (first start in this data dir).
    pub fn cert_generated(&self) -> bool {
        self.cert_generated
    }

    /// This run's id.
    pub fn id(&self) -> NodeId {
        self.shared.id
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.shared.config.name
    }

    /// Store figures.
    pub fn stats(&self) -> StoreStats {
        self.shared.hub().store.stats()
    }

    /// Every metric's current value, named as in [`crate::metrics::METRICS`] (the
    /// exporter's own `exporter.*` counters excepted). Holds the hub lock briefly: counts
    /// and per-peer RTTs are read, nothing is computed over the rows.
    pub fn metrics(&self) -> Vec<Sample> {
        let mut out = Vec::with_capacity(48);
        {
            let hub = self.shared.hub();
            let stats = hub.store.stats();
            let load = hub.loads.get(&self.shared.id).copied();
            let is_host = hub.members.host() == self.shared.id;
            let gauges = [
                ("clients", hub.connected_clients() as f64),
                ("rows", stats.rows as f64),
                ("bytes", stats.data_bytes as f64),
                ("subscriptions", stats.subscriptions as f64),
                ("peers", hub.peers.len() as f64),
                ("members", hub.members.all().len() as f64),
                ("is_host", if is_host { 1.0 } else { 0.0 }),
                (
                    "migrations.in_flight",
                    (hub.outgoing.len() + hub.incoming.len()) as f64,
                ),
                (
                    "cpu_percent",
                    load.map_or(0.0, |l| f64::from(l.cpu_percent)),
                ),
                ("memory_bytes", load.map_or(0.0, |l| l.memory_bytes as f64)),
                (
                    "uptime_seconds",
                    self.shared.started.elapsed().as_secs() as f64,
                ),
            ];
            for (name, value) in gauges {
                out.push(Sample::new(name, value));
            }
            for (id, link) in &hub.peers {
                let name = hub
                    .members
                    .get(*id)
                    .map_or_else(|| id.to_string(), |m| m.name.clone());
                out.push(Sample::new(
                    format!("peer.{}.rtt_ms", sanitize_segment(&name)),
                    link.conn.rtt().as_secs_f64() * 1000.0,
                ));
            }
        }
        self.shared.counters.samples(&mut out);
        out
    }

    /// Connected clients (peer links not counted).
    pub fn client_count(&self) -> usize {
        self.shared.hub().connected_clients()
    }

    /// A handle that runs operator commands on this node (the admin socket's executor).
    pub fn admin_handle(&self) -> AdminHandle {
        AdminHandle::new(self.shared.clone())
    }

    /// Every member this node knows, itself included, oldest first.
    pub fn members(&self) -> Vec<MemberInfo> {
        self.shared.hub().members.all()
    }

    /// The host as this node sees it.
    pub fn host(&self) -> NodeId {
        self.shared.hub().members.host()
    }

    /// Moves a client connected here to node `to`, make-before-break (§6.1). Returns once
    /// the session is handed over, or with why not (then the client stays here, unharmed).
    pub async fn migrate(&self, client: ClientId, to: NodeId) -> Result<(), MigrateError> {
        migrate::migrate(&self.shared, client, to).await
    }

    /// Clients connected to this node (not counting peers), by id.
    pub fn clients(&self) -> Vec<ClientId> {
        self.shared.hub().local_clients()
    }

    /// Drains this node (§6.2): it turns Draining mesh-wide (no new placements; host duties
    /// pass on), moves its clients to placement-chosen nodes, `drain_batch` at a time,
    /// and ends Drained. Returns how many clients moved.
    pub async fn drain(&self) -> Result<usize, DrainError> {
        drain::drain(&self.shared).await
    }

    /// Returns a draining or drained node to service (Active).
    pub fn undrain(&self) {
        drain::set_state(&self.shared, NodeState::Active);
    }

    /// Where this node would place a client with these RTTs and position, with every
    /// candidate's score (`Decision::explain` renders the table; §5 `place --explain`).
    pub fn place_explain(
        &self,
        rtts: &[crate::proto::NodeRtt],
        position: Option<crate::proto::Position>,
    ) -> crate::placement::Decision {
        let hub = self.shared.hub();
        place::decide(&hub, &self.shared, rtts, position)
    }

    /// Runs one rebalance round now, as the host would (§6.3 `cloudctl rebalance`): returns
    /// the move it asked for, `None` when the mesh is within the threshold.
    pub fn rebalance(&self) -> Option<(NodeId, NodeId, u32)> {
        rebalance::round(&self.shared)
    }

    /// Zone ownership as this node knows it (`None` with zones off or before the host
    /// published a map).
    pub fn zones(&self) -> Option<crate::placement::ZoneMap> {
        self.shared.hub().zones.clone()
    }

    /// This node's lifecycle state.
    pub fn state(&self) -> NodeState {
        self.shared.hub().members.me().state
    }

    /// Mesh events from now on (peer up/lost, host changes). A receiver that falls more than
    /// 1,024 events behind gets `Lagged` and should re-read the state.
    pub fn events(&self) -> broadcast::Receiver<MeshEvent> {
        self.shared.hub().events.subscribe()
    }

    /// Nodes this node has an authenticated link to.
    pub fn peers(&self) -> Vec<NodeId> {
        let mut v: Vec<NodeId> = self.shared.hub().peers.keys().copied().collect();
        v.sort();
        v
    }

    /// The last load each node reported, this node's own included (for placement).
    pub fn loads(&self) -> HashMap<NodeId, LoadInfo> {
        self.shared.hub().loads.clone()
    }

    /// Nodes this node believes hold rows under `primary` (itself included when it does).
    pub fn holders_of(&self, primary: &str) -> Vec<NodeId> {
        let hub = self.shared.hub();
        let mut v: Vec<NodeId> = hub
            .holders
            .get(primary)
            .into_iter()
            .flatten()
            .copied()
            .collect();
        if hub.store.held_primaries().iter().any(|p| p == primary) {
            v.push(self.shared.id);
        }
        v.sort();
        v
    }

    /// Stops accepting, closes every client and peer with `Shutdown` and the given reason,
    /// and waits (bounded) for the close to reach them.
    pub async fn shutdown(self, reason: &str) {
        let _ = self.shutdown.send(true);
        self.shared
            .endpoint
            .close(CloseCode::Shutdown.to_u32().into(), reason.as_bytes());
        let _ = self.accept.await;
        if tokio::time::timeout(Duration::from_secs(3), self.shared.endpoint.wait_idle())
            .await
            .is_err()
        {
            tracing::warn!("some connections did not acknowledge the close within 3 s");
        }
        tracing::info!(node = %self.shared.config.name, "node stopped");
    }
}

impl MetricSource for Node {
    fn sample(&self) -> Vec<Sample> {
        self.metrics()
    }
}

/// The negotiated ALPN of a connection.
fn alpn(conn: &quinn::Connection) -> Option<Vec<u8>> {
    conn.handshake_data()?
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()?
        .protocol
}

async fn accept_loop(
    shared: Arc<Shared>,
    endpoint: quinn::Endpoint,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            incoming = endpoint.accept() => {
                let Some(incoming) = incoming else { break };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let remote = incoming.remote_address();
                    let conn = match incoming.await {
                        Ok(c) => c,
                        Err(e) => {
                            tracing::debug!(%remote, error = %e, "handshake failed");
                            return;
                        }
                    };
                    if alpn(&conn).as_deref() == Some(ALPN_PEER) {
                        peer::accept(shared, conn).await;
                    } else {
                        conn::serve(shared, conn).await;
                    }
                });
            }
        }
    }
}
