//! A running node: `Node::start(config)` binds the QUIC endpoint, loads or makes the TLS
//! identity, joins or starts a mesh, and serves clients and peers until `shutdown`.
//!
//! The node is layered; a module names only modules of lower layers (and, within a layer,
//! only those listed before it), which `tests/layering.rs` checks:
//!
//! 1. **Ground** — state, no tasks: `handoff` (moves in flight),
//!    `rate` (token bucket), `quiet` (log lines summarised under attack), `hub` (store,
//!    links, members, peers under one lock; delivery), `shared` (what every task shares).
//! 2. **Requests** — `reply` (where an answer goes), `place` (where a client would be best
//!    served, from the hub's view), `remote` (gets fanned out to peers and merged, peers'
//!    gets served, remote changes for local subscribers), `request` (one client request
//!    executed under the hub lock).
//! 3. **Services** — `load`, `migrate`, `resume` (sessions kept after a lost connection),
//!    `zones`, `rebalance`, `gossip`, `drain`, `admin`:
//!    what the node does, using the layers below and each other in that order.
//! 4. **Dispatchers** — `client` (a client connection: handshake, request loop, cleanup),
//!    `handshake` (making a peer link), `peer` (a peer link's frame loop, one service
//!    call per frame; joining and redialing).
//! 5. **`Node`** (this file) — starts it all and is the library's face.

// Ground.
mod handoff;
mod hub;
mod quiet;
mod rate;
mod shared;
// Requests.
mod place;
mod remote;
mod reply;
mod request;
mod search;
// Services.
mod admin;
mod drain;
mod gossip;
mod load;
mod migrate;
mod rebalance;
mod resume;
mod zones;
// Dispatchers.
mod client;
mod handshake;
mod peer;

pub use crate::mesh::MeshEvent;
pub use admin::AdminHandle;
pub use drain::DrainError;
pub use handoff::MigrateError;
pub use hub::NodeRecord;
pub use load::LoadRecord;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, watch, Notify};
use tokio::task::JoinHandle;

use crate::config::{ConfigError, NodeConfig};
use crate::dyndns::MeshView;
use crate::mesh::swim::{Swim, SwimConfig};
use crate::mesh::{AuthLimiter, UNJOINED};
use crate::metrics::{sanitize_segment, Counters, MetricSource, Sample};
use crate::proto::{
    ClientId, CloseCode, DeleteReason, LoadInfo, MemberInfo, NodeId, NodeState, ALPN_CLIENT,
    ALPN_PEER,
};
use crate::store::{Filters, Store, StoreStats};
use crate::transport::{self, Identity, TransportError, Trust};
use hub::{now_ms, Hub};
use shared::Shared;

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
                peer_timing(config.timing),
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
        let addrs = if config.advertise.is_empty() {
            vec![local]
        } else {
            config.advertise.clone()
        };
        // For clients: what the operator said, else the public ones among the advertised;
        // none (clients then use the advertised ones) when the mesh is on a private network.
        let client_addrs = if config.advertise_client.is_empty() {
            addrs
                .iter()
                .copied()
                .filter(|a| transport::is_public(a.ip()))
                .collect()
        } else {
            config.advertise_client.clone()
        };
        let me = MemberInfo {
            id,
            name: config.name.clone(),
            addrs,
            join_seq: UNJOINED,
            state: NodeState::Joining,
            fingerprint: crate::transport::parse_fingerprint(&fingerprint).unwrap_or([0; 32]),
            client_addrs,
        };
        let swim_config = SwimConfig::for_links(
            config.timing.idle_timeout,
            config.timing.keep_alive,
            config.max_peers,
        );
        let swim = Swim::new(me, swim_config, Instant::now(), now_ms(), rand::random())
            .map_err(|e| ConfigError(format!("membership: {e}")))?;
        let counters = Arc::new(Counters::default());
        let mut hub = Hub {
            store,
            links: HashMap::new(),
            system,
            swim,
            peers: HashMap::new(),
            holders: HashMap::new(),
            mirror: HashMap::new(),
            host_name: config.name.clone(),
            adopting_host: false,
            datagrams: HashMap::new(),
            dials: HashMap::new(),
            gossip_wakes_at: None,
            resync: HashMap::new(),
            departed: Vec::new(),
            local_addr: local,
            events: broadcast::channel(1024).0,
            counters: counters.clone(),
            loads: HashMap::new(),
            tickets: crate::mesh::TicketBook::default(),
            zones: None,
            positions: HashMap::new(),
            outgoing: HashMap::new(),
            incoming: HashMap::new(),
            resume: handoff::ResumeBook::new(resume_key(&config)),
        };
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
            drain_running: AtomicBool::new(false),
            quiet: quiet::Quiet::default(),
            gossip_wake: Notify::new(),
            stopping: AtomicBool::new(false),
            left: AtomicBool::new(false),
        });
        let accept = tokio::spawn(accept_loop(shared.clone(), endpoint, shutdown_rx));
        tracing::info!(node = %shared.config.name, id = %id, listen = %local, %fingerprint,
            generated_cert = identity.generated, cert = %identity.cert_path.display(), "node serving");
        tokio::spawn(peer::gossip_loop(shared.clone()));
        if shared.config.join.is_empty() {
            gossip::found(&shared);
        } else {
            tokio::spawn(peer::seed_loop(shared.clone()));
            wait_joined(&shared).await;
        }
        tokio::spawn(load::refresh_loop(shared.clone()));
        tokio::spawn(rebalance::host_loop(shared.clone()));
        tokio::spawn(zones::host_loop(shared.clone()));
        tokio::spawn(quiet_loop(shared.clone()));
        tokio::spawn(trim_loop(shared.clone()));
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
            let is_host = hub.swim.host() == self.shared.id;
            let gauges = [
                ("clients", hub.connected_clients() as f64),
                ("rows", stats.rows as f64),
                ("bytes", stats.data_bytes as f64),
                ("subscriptions", stats.subscriptions as f64),
                ("peers", hub.peers.len() as f64),
                ("members", hub.members().all().len() as f64),
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
                    .members()
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
        self.shared.hub().members().all()
    }

    /// The host as this node sees it.
    pub fn host(&self) -> NodeId {
        self.shared.hub().swim.host()
    }

    /// Moves a client connected here to node `to`, make-before-break. Returns once
    /// the session is handed over, or with why not (then the client stays here, unharmed).
    pub async fn migrate(&self, client: ClientId, to: NodeId) -> Result<(), MigrateError> {
        migrate::migrate(&self.shared, client, to).await
    }

    /// Sessions kept here for clients that lost their connection (waiting to resume).
    pub fn suspended(&self) -> Vec<ClientId> {
        self.shared.hub().suspended_clients()
    }

    /// Clients connected to this node (not counting peers), by id.
    pub fn clients(&self) -> Vec<ClientId> {
        self.shared.hub().local_clients()
    }

    /// Drains this node: it turns Draining mesh-wide (no new placements; host duties
    /// pass on), moves its clients to placement-chosen nodes, `drain_batch` at a time,
    /// and ends Drained. Returns how many clients moved.
    pub async fn drain(&self) -> Result<usize, DrainError> {
        drain::drain(&self.shared).await
    }

    /// Returns a draining or drained node to service (Active).
    pub fn undrain(&self) {
        gossip::set_state(&self.shared, NodeState::Active);
    }

    /// Where this node would place a client with these RTTs and position, with every
    /// candidate's score (`Decision::explain` renders the table; `cloudctl place --explain`).
    pub fn place_explain(
        &self,
        rtts: &[crate::proto::NodeRtt],
        position: Option<crate::proto::Position>,
    ) -> crate::placement::Decision {
        let hub = self.shared.hub();
        place::decide(&hub, &self.shared, rtts, position)
    }

    /// Runs one rebalance round now, as the host would (`cloudctl rebalance`): returns
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
        self.shared.hub().members().me().state
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
    /// Leaves the mesh cleanly, without stopping: drains the node first unless configured
    /// not to (its clients move to other nodes make-before-break, for at most
    /// `stop_timeout`), deletes the rows of any client still here with reason `NodeLeft`,
    /// and tells every member it is leaving (they drop it at once, not as lost). The admin
    /// socket can still watch it meanwhile. [`Node::shutdown`] does this first when it has
    /// not been done.
    ///
    /// A second call (after the first was given up, say on a second signal) skips the drain.
    pub async fn leave(&self) {
        let shared = &self.shared;
        let cfg = &shared.config;
        let first = !shared
            .stopping
            .swap(true, std::sync::atomic::Ordering::SeqCst);
        let clients = shared.hub().local_clients().len();
        if first && cfg.drain_on_stop && clients > 0 {
            tracing::info!(clients, timeout = ?cfg.stop_timeout, "stopping: draining first");
            match tokio::time::timeout(cfg.stop_timeout, drain::drain(shared)).await {
                Ok(Ok(moved)) => tracing::info!(moved, "drained"),
                Ok(Err(e)) => tracing::warn!(error = %e, "drain at stop did not finish"),
                Err(_) => tracing::warn!(timeout = ?cfg.stop_timeout,
                    "drain at stop took longer than the stop timeout; disconnecting the rest"),
            }
        }
        self.depart().await;
    }

    /// Tells the mesh this node is leaving, now: the rows of clients still here are deleted
    /// as `NodeLeft`, and every member learns it leaves. Once.
    async fn depart(&self) {
        let shared = &self.shared;
        let cfg = &shared.config;
        if shared.left.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        {
            let mut hub = shared.hub();
            let mut stayed = hub.local_clients();
            // Sessions kept for clients that lost their connection go too: this node will
            // not be here for them to resume.
            for client in hub.suspended_clients() {
                hub.links.remove(&client);
                stayed.push(client);
            }
            let now = now_ms();
            for client in &stayed {
                let fans = hub
                    .store
                    .remove_client(*client, DeleteReason::NodeLeft, now);
                for fan in fans {
                    hub.deliver(fan, cfg.max_frame, true);
                }
            }
            hub.flush_holds(cfg.max_frame);
            if !stayed.is_empty() {
                tracing::info!(
                    clients = stayed.len(),
                    "rows of clients still here deleted as node_left"
                );
            }
        }
        gossip::leave(shared);
        // The leave goes out as datagrams on the links; give them a moment before the
        // connections close.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    /// Stops accepting, closes every client and peer with `Shutdown` and the given reason,
    /// and waits (bounded) for the close to reach them. Leaves the mesh cleanly first
    /// ([`Node::leave`]) unless that was done.
    pub async fn shutdown(self, reason: &str) {
        self.leave().await;
        self.close(reason).await;
    }

    /// Stops at once, without draining or telling the mesh: to the other nodes it is a
    /// crash, noticed by the membership protocol (its rows are deleted there as `NodeLost`).
    /// For a supervisor that must stop now, and for tests of what a crash does.
    pub async fn abort(self, reason: &str) {
        self.shared
            .stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.shared
            .left
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.close(reason).await;
    }

    async fn close(self, reason: &str) {
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

impl MeshView for Node {
    fn id(&self) -> NodeId {
        Node::id(self)
    }
    fn host(&self) -> NodeId {
        Node::host(self)
    }
    fn members(&self) -> Vec<MemberInfo> {
        Node::members(self)
    }
    fn events(&self) -> broadcast::Receiver<MeshEvent> {
        Node::events(self)
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

/// Waits (bounded) until the membership protocol has given this node its place: through a
/// member at a join address, or as the founder of a mesh when none answers. Callers get a
/// node that is part of a mesh, as they did when joining was a blocking dial.
async fn wait_joined(shared: &Shared) {
    let bound = Duration::from_secs(12);
    let start = tokio::time::Instant::now();
    while !shared.hub().swim.is_joined() {
        if start.elapsed() > bound {
            tracing::warn!("not part of a mesh yet; going on and joining in the background");
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Reports the summaries of log lines counted rather than logged, window by window.
async fn quiet_loop(shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.clone();
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
        shared.quiet.flush();
    }
}

/// How often idle connections' outgoing buffers are given back.
const TRIM_EVERY: Duration = Duration::from_secs(1);

/// Gives back the outgoing buffers of connections with nothing queued, every
/// [`TRIM_EVERY`]: an idle client then holds no queue buffer, while a busy one, which is
/// rarely caught empty, keeps reusing its own (a trim only costs it one allocation).
/// The hub lock is held only to copy the list of queues, not to trim them.
async fn trim_loop(shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.clone();
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(TRIM_EVERY) => {}
        }
        let outboxes: Vec<_> = shared
            .hub()
            .links
            .values()
            .map(|link| link.outbox.clone())
            .collect();
        for outbox in &outboxes {
            outbox.trim();
        }
    }
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
                        client::serve(shared, conn).await;
                    }
                });
            }
        }
    }
}

/// The key resume tokens are signed with: the mesh secret, so any node of the mesh checks
/// them; a node alone signs with a random key of this run (its sessions end with it).
fn resume_key(config: &NodeConfig) -> crate::mesh::MeshSecret {
    if let Some(secret) = &config.secret {
        return secret.clone();
    }
    let mut key = vec![0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut key);
    // 32 random bytes always make a valid secret; the fallback is never reached.
    crate::mesh::MeshSecret::new(key).unwrap_or_else(|_| unreachable!())
}

/// The timing of links this node dials to peers: the same idle timeout, keep-alives a third
/// of it (two may be lost before the link times out). Peer links need keep-alives only to
/// notice a dead link while its node lives (the membership protocol notices dead nodes),
/// so they need not come as often as clients' do, which are dozens of packets a second on
/// every node of a large mesh.
fn peer_timing(timing: transport::Timing) -> transport::Timing {
    transport::Timing {
        keep_alive: (timing.idle_timeout / 3).max(timing.keep_alive),
        ..timing
    }
}
