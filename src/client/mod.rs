//! The client SDK: what a game server or game client links to use cloud memory.
//!
//! One QUIC connection, one ordered stream, many requests in flight. Subscriptions are
//! [`Subscription`] streams of [`Event`]s. Depends only on `proto` and `transport`, never on
//! node internals.

mod heal;
mod link;
mod live;
mod subscription;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;

pub use heal::{Seed, SessionEvent};
pub use link::Migrated;
pub use live::{LeftReason, LiveQuery, QueryEvent};
pub use subscription::{Event, Subscription};

use crate::proto::{
    ClientFrame, ClientId, CloseCode, CodecError, GetPage, GetQuery, Key, KeySpec, LimitsInfo,
    NodeId, NodeRtt, Notification, Placement, Position, QueryPage, Reply, Request, ResumeRequest,
    Row, RowQuery, Welcome, WireError, ALPN_CLIENT, DEFAULT_MAX_FRAME,
};
use crate::transport::{self, Timing, Trust};
use subscription::SubEntry;

/// Errors the SDK reports. Cloneable, so one connection loss can fail every waiting call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The options cannot work (bad CA file, bad fingerprint).
    #[error("client configuration: {0}")]
    Config(String),
    /// The node could not be reached or the TLS handshake failed.
    #[error("cannot connect to {addr}: {reason}")]
    Connect {
        /// The address tried.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// The node turned the hello down (version, class, full).
    #[error("node refused the connection: {0}")]
    Refused(WireError),
    /// The node answered the request with an error.
    #[error(transparent)]
    Server(#[from] WireError),
    /// The connection is closed; `code` is the node's close code when it sent one.
    #[error("connection closed: {reason}")]
    Closed {
        /// The close code, when the node closed with a known one.
        code: Option<CloseCode>,
        /// Human text.
        reason: String,
    },
    /// The node broke the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A query was refused before it was sent (syntax, bounds).
    #[error(transparent)]
    Query(#[from] crate::query::QueryError),
    /// The connection was lost while this call was in flight and the session was taken
    /// back (or re-established) elsewhere without its answer. `applied` says whether the
    /// node had read it: `false` means it was never applied (repeat it safely), `true`
    /// that it was applied and only its answer was lost.
    #[error(
        "the connection was lost during this call (applied: {applied}); the session continues"
    )]
    Interrupted {
        /// Whether the node applied the request before the connection was lost.
        applied: bool,
    },
}

impl ClientError {
    /// Whether repeating the call may succeed: it was interrupted by a lost connection
    /// the session survived, or the node was briefly unavailable or rate limiting.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ClientError::Interrupted { .. }
                | ClientError::Server(WireError::RateLimited { .. })
                | ClientError::Server(WireError::Unavailable { .. })
        )
    }
}

impl From<transport::TransportError> for ClientError {
    fn from(e: transport::TransportError) -> Self {
        ClientError::Config(e.to_string())
    }
}

/// How to connect.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Which node certificates to accept.
    pub trust: Trust,
    /// TLS server name; must match the certificate for [`Trust::CaFile`].
    pub server_name: String,
    /// Client class for filter rules.
    pub class: Option<String>,
    /// Token for the class, when the operator requires one.
    pub token: Option<String>,
    /// Initial session blob.
    pub session: Option<Bytes>,
    /// Largest frame accepted from the node.
    pub max_frame: usize,
    /// QUIC idle timeout and keep-alive.
    pub timing: Timing,
    /// Limit on connecting plus the version handshake.
    pub connect_timeout: Duration,
    /// The client's position in the game world, reported for zone placement.
    pub position: Option<Position>,
    /// Round-trip times to report in the hello (normally measured by [`Client::connect_mesh`]
    /// with `probe_rtt`; settable for clients that measure themselves).
    pub rtts: Vec<NodeRtt>,
    /// With [`Client::connect_mesh`]: measure the RTT to every node before asking where to
    /// be served (parallel QUIC handshakes within `probe_budget`).
    pub probe_rtt: bool,
    /// Time allowed for all RTT probes together.
    pub probe_budget: Duration,
    /// A redirect ticket to present (set by [`Client::connect_mesh`] when following one).
    pub ticket: Option<Bytes>,
    /// Take back a suspended session instead of starting a new one: a restarted process
    /// that kept [`Client::resume_token`] sets this (see [`Client::resume`]).
    pub resume: Option<ResumeRequest>,
    /// On a lost connection, take the session back on its own (same node first, then the
    /// other nodes it knows), and when that is impossible re-establish it on another node
    /// from what it posted. `false`: a lost connection closes the client.
    pub heal: bool,
    /// The longest pause between two attempts to reach a node while healing (attempts
    /// start 100 ms apart, doubling, with jitter). Short, so a client is back soon after its
    /// path is: an attempt is one QUIC handshake per known node.
    pub heal_backoff_max: Duration,
    /// How long healing keeps trying before the client closes for good.
    pub heal_give_up: Duration,
}

impl ClientOptions {
    /// Defaults with the given trust.
    pub fn new(trust: Trust) -> Self {
        ClientOptions {
            trust,
            server_name: "localhost".into(),
            class: None,
            token: None,
            session: None,
            max_frame: DEFAULT_MAX_FRAME,
            timing: Timing::default(),
            connect_timeout: Duration::from_secs(10),
            position: None,
            rtts: Vec::new(),
            probe_rtt: false,
            probe_budget: Duration::from_millis(500),
            ticket: None,
            resume: None,
            heal: true,
            heal_backoff_max: Duration::from_millis(500),
            heal_give_up: Duration::from_secs(300),
        }
    }
}

/// State shared by callers, the read loops and a migration in progress.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// Requests waiting for their response.
    pending: HashMap<u64, oneshot::Sender<Result<Reply, ClientError>>, IdHash>,
    /// Local subscriptions by id.
    pub(crate) subs: HashMap<u64, SubEntry>,
    /// Set once the connection is gone for good; later calls fail with it.
    closed: Option<ClientError>,
    /// The link requests go to; `None` only while the old node is gone mid-migration.
    link: Option<link::Link>,
    /// The welcome of the node serving (or that last served) this client.
    last_welcome: Option<Welcome>,
    /// A change of node in progress.
    switch: Option<link::Switch>,
    /// A `Migrate` instruction being followed (to this node).
    migrating: Option<NodeId>,
    /// Notifications from the new link, held until the old link's stream ends.
    held_notifications: Option<(usize, Vec<Notification>)>,
    /// Old links closed by a completed switch (their end is not an error).
    retired: HashSet<usize>,
    /// Requests made while no link is usable (old node dead, new one being reached).
    parked: Vec<Bytes>,
    /// The node that died mid-migration, for the `Migrated` announcement.
    dead_from: Option<NodeId>,
    /// A `Migrate` instruction that came while another move was still settling: followed
    /// as soon as that one completes (the new node may move us on at once, e.g. draining).
    next_migrate: Option<link::MigrateOrder>,
    /// Set while the connection is lost and the session being taken back.
    pub(crate) healing: Option<heal::Healing>,
    /// This client's rows as it last posted them (what a restore posts again elsewhere).
    pub(crate) posted: HashMap<Key, Bytes>,
    /// The session blob as this client last set it (or as a resume read it).
    pub(crate) session: Option<Bytes>,
    /// Node addresses from `cloud.nodes`, refreshed after each welcome: where healing
    /// looks after the node it lost.
    pub(crate) known: Vec<(SocketAddr, Option<[u8; 32]>)>,
}

/// Hashes request ids (our own counter, not input) with one multiplication instead of
/// SipHash: the pending map is touched twice per request.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        // Fibonacci hashing: consecutive ids spread over the high bits hashbrown uses.
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

pub(crate) type IdHash = std::hash::BuildHasherDefault<IdHasher>;

pub(crate) fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) ctx: Arc<link::Ctx>,
    next_sub: AtomicU64,
    pub(crate) max_frame: usize,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(link) = &lock(&self.ctx.state).link {
            link.conn
                .close(CloseCode::Normal.to_u32().into(), b"client dropped");
        }
    }
}

/// A connection to one node. Cheap to clone; all clones share the connection.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

fn close_error(e: &quinn::ConnectionError) -> ClientError {
    match e {
        quinn::ConnectionError::ApplicationClosed(close) => ClientError::Closed {
            code: u32::try_from(close.error_code.into_inner())
                .ok()
                .and_then(CloseCode::from_u32),
            reason: String::from_utf8_lossy(&close.reason).into_owned(),
        },
        quinn::ConnectionError::LocallyClosed => ClientError::Closed {
            code: Some(CloseCode::Normal),
            reason: "closed by this client".into(),
        },
        quinn::ConnectionError::TimedOut => ClientError::Closed {
            code: None,
            reason: "connection timed out: the node stopped answering".into(),
        },
        other => ClientError::Closed {
            code: None,
            reason: other.to_string(),
        },
    }
}

impl Client {
    /// Connects to the node at `addr` and performs the version handshake.
    pub async fn connect(addr: SocketAddr, opts: ClientOptions) -> Result<Client, ClientError> {
        Client::connect_seeded(addr, opts, vec![Seed::Addr(addr)]).await
    }

    /// Takes back a session a previous process of this application lost (it kept
    /// [`Client::resume_token`]): same client id, same rows and subscriptions at the node,
    /// within the node's resume grace. `addr` may be any node of the mesh.
    pub async fn resume(
        addr: SocketAddr,
        client: ClientId,
        token: Bytes,
        mut opts: ClientOptions,
    ) -> Result<Client, ClientError> {
        opts.resume = Some(ResumeRequest { client, token });
        Client::connect(addr, opts).await
    }

    async fn connect_seeded(
        addr: SocketAddr,
        opts: ClientOptions,
        seeds: Vec<Seed>,
    ) -> Result<Client, ClientError> {
        transport::install_crypto_provider();
        let bind = if addr.is_ipv6() {
            SocketAddr::from(([0u16; 8], 0))
        } else {
            SocketAddr::from(([0, 0, 0, 0], 0))
        };
        let endpoint = quinn::Endpoint::client(bind).map_err(|e| ClientError::Connect {
            addr,
            reason: e.to_string(),
        })?;
        let (first, reader) = link::open(&endpoint, addr, &opts).await?;
        let conn = first.conn.clone();
        let max_frame = opts.max_frame;
        let state = State {
            last_welcome: Some(first.welcome.clone()),
            link: Some(first),
            ..State::default()
        };
        let ctx = Arc::new(link::Ctx {
            endpoint,
            opts: ClientOptions {
                ticket: None,
                resume: None,
                ..opts
            },
            state: Mutex::new(state),
            migrations: tokio::sync::broadcast::channel(16).0,
            events: tokio::sync::broadcast::channel(64).0,
            next_id: AtomicU64::new(1), // 0 is reserved for fire-and-forget requests
            seeds,
        });
        tokio::spawn(link::read_loop(ctx.clone(), conn, reader));
        heal::refresh_known(&ctx);
        Ok(Client {
            inner: Arc::new(Inner {
                ctx,
                next_sub: AtomicU64::new(1),
                max_frame,
            }),
        })
    }

    /// Connects to the mesh through `seeds` (tried in random order until one answers, so
    /// the loss of any one node does not matter) and ends up on the node placement chose:
    /// with `probe_rtt` it measures RTTs to every node and asks; either way it follows a
    /// `Redirect` (closing the seed connection). If the chosen node cannot be reached, it
    /// stays where it is.
    ///
    /// A seed is a socket address or a DNS name with a port (`"mesh.example.net:7946"`),
    /// resolved now and again each time the client heals, so a name that follows the mesh
    /// keeps working.
    pub async fn connect_mesh<S: Into<Seed> + Clone>(
        seeds: &[S],
        opts: ClientOptions,
    ) -> Result<Client, ClientError> {
        let seeds: Vec<Seed> = seeds.iter().cloned().map(Into::into).collect();
        let order = heal::resolve(&seeds).await;
        let mut last = None;
        for addr in order {
            match Client::connect_seeded(addr, opts.clone(), seeds.clone()).await {
                Ok(client) => return client.follow_placement(opts).await,
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(ClientError::Config("no seed resolved to an address".into())))
    }

    async fn follow_placement(self, opts: ClientOptions) -> Result<Client, ClientError> {
        let mut placement = self.placement();
        if opts.probe_rtt {
            let rtts = self.probe_rtts(opts.probe_budget).await;
            if let Ok((p, _)) = self.place(rtts, opts.position).await {
                placement = p;
            }
        }
        let Placement::Redirect {
            addrs,
            ticket,
            fingerprint,
            ..
        } = placement
        else {
            return Ok(self);
        };
        let mut there = opts;
        there.ticket = Some(ticket);
        if let Trust::Pin(_) = there.trust {
            // The node we trust vouches for the target's certificate.
            there.trust = Trust::Pin(fingerprint);
        }
        for addr in addrs {
            let seeds = self.inner.ctx.seeds.clone();
            if let Ok(client) = Client::connect_seeded(addr, there.clone(), seeds).await {
                self.close().await;
                return Ok(client);
            }
        }
        Ok(self)
    }

    /// Where should this client be served? The node answers with a decision and an
    /// explanation (per-candidate scores).
    pub async fn place(
        &self,
        rtts: Vec<NodeRtt>,
        position: Option<Position>,
    ) -> Result<(Placement, String), ClientError> {
        match self.request(Request::Place { rtts, position }).await? {
            Reply::Placed { placement, explain } => Ok((placement, explain)),
            other => Err(unexpected(other)),
        }
    }

    /// Measures the round trip to every node listed in `cloud.nodes`, in parallel within
    /// `budget`; nodes that do not answer in time are left out. A probe is a bare QUIC
    /// handshake: nothing (no class, token or session) is sent to the probed node.
    pub async fn probe_rtts(&self, budget: Duration) -> Vec<NodeRtt> {
        let Ok(rows) = self.get(vec![KeySpec::primary("cloud.nodes")]).await else {
            return Vec::new();
        };
        let mut probes = Vec::new();
        for row in rows {
            let Ok(record) = serde_json::from_slice::<serde_json::Value>(&row.data) else {
                continue;
            };
            // The row's writer is the node itself.
            let node = row.node;
            let addrs: Vec<SocketAddr> = record["addresses"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str()?.parse().ok())
                .collect();
            let Some(addr) = addrs.first().copied() else {
                continue;
            };
            let endpoint = self.inner.ctx.endpoint.clone();
            probes.push(tokio::spawn(async move {
                let cfg = transport::client_config(
                    &Trust::InsecureDevOnly,
                    ALPN_CLIENT,
                    Timing::default(),
                )
                .ok()?;
                let conn = endpoint
                    .connect_with(cfg, addr, "cloudmesh")
                    .ok()?
                    .await
                    .ok()?;
                let rtt = conn.rtt();
                conn.close(CloseCode::Normal.to_u32().into(), b"rtt probe");
                Some(NodeRtt {
                    node,
                    micros: u32::try_from(rtt.as_micros()).unwrap_or(u32::MAX),
                })
            }));
        }
        let deadline = tokio::time::Instant::now() + budget;
        let mut out = Vec::new();
        for p in probes {
            if let Ok(Ok(Some(r))) = tokio::time::timeout_at(deadline, p).await {
                out.push(r);
            }
        }
        out
    }

    fn welcome(&self) -> Option<Welcome> {
        lock(&self.inner.ctx.state).last_welcome.clone()
    }

    /// The placement answer of the node this client is connected to, at connect time.
    pub fn placement(&self) -> Placement {
        self.welcome().map_or(Placement::Stay, |w| w.placement)
    }

    /// This session's id (mesh-wide, survives migration).
    pub fn id(&self) -> ClientId {
        self.welcome().map_or(ClientId(0), |w| w.client_id)
    }

    /// The node serving this client now (it changes when the client migrates).
    pub fn node_id(&self) -> NodeId {
        self.welcome().map_or(NodeId(0), |w| w.node_id)
    }

    /// The name of that node.
    pub fn node_name(&self) -> String {
        self.welcome().map(|w| w.node_name).unwrap_or_default()
    }

    /// The limits that node enforces.
    pub fn limits(&self) -> Option<LimitsInfo> {
        self.welcome().map(|w| w.limits)
    }

    /// The negotiated protocol version.
    pub fn protocol_version(&self) -> u16 {
        self.welcome().map_or(0, |w| w.version)
    }

    /// Informational events when this client moves to another node; nothing needs
    /// doing, calls and subscriptions carry on.
    pub fn migrations(&self) -> tokio::sync::broadcast::Receiver<link::Migrated> {
        self.inner.ctx.migrations.subscribe()
    }

    async fn request(&self, op: Request) -> Result<Reply, ClientError> {
        request(&self.inner.ctx, op).await
    }

    /// Informational events about the session's connection: lost (`Suspended`), taken
    /// back (`Resumed`), or re-established elsewhere (`Restored`). Nothing needs doing:
    /// calls and subscriptions carry on.
    pub fn session_events(&self) -> tokio::sync::broadcast::Receiver<SessionEvent> {
        self.inner.ctx.events.subscribe()
    }

    /// The node addresses this client would look for its session at if its connection
    /// were lost (from `cloud.nodes`, refreshed after each welcome), besides its seeds.
    pub fn known_nodes(&self) -> Vec<SocketAddr> {
        lock(&self.inner.ctx.state)
            .known
            .iter()
            .map(|(a, _)| *a)
            .collect()
    }

    /// What a restarted process needs to take this session back ([`Client::resume`]): the
    /// client id and its current single-use token. Changes with every welcome (connect,
    /// resume, migration); `None` when the node keeps no sessions.
    pub fn resume_token(&self) -> Option<(ClientId, Bytes)> {
        let w = self.welcome()?;
        Some((w.client_id, w.resume?.token))
    }

    /// Reads this client's session blob from its node: what it set, or what the node it
    /// came from (a migration, a resume) handed over with the session.
    pub async fn session(&self) -> Result<Bytes, ClientError> {
        match self.request(Request::GetSession).await? {
            Reply::Session { data } => Ok(data),
            other => Err(unexpected(other)),
        }
    }

    /// Creates or replaces this client's row under `key`; returns its new version.
    pub async fn post(&self, key: Key, data: impl Into<Bytes>) -> Result<u64, ClientError> {
        let ctx = &self.inner.ctx;
        let data = data.into();
        let (answer, sent) = send(ctx, Request::Post { key, data })?;
        match answer_of(ctx, answer).await? {
            Reply::Posted { version } => {
                // What a restore posts again if the session is lost with its node: the
                // request's own key and data, no copy.
                if let (true, Request::Post { key, data }) = (ctx.opts.heal, sent) {
                    lock(&ctx.state).posted.insert(key, data);
                }
                Ok(version)
            }
            other => Err(unexpected(other)),
        }
    }

    /// Deletes this client's rows under `keys`; returns how many existed.
    pub async fn release(&self, keys: Vec<Key>) -> Result<u32, ClientError> {
        let forget = self.inner.ctx.opts.heal.then(|| keys.clone());
        match self.request(Request::Release { keys }).await? {
            Reply::Released { count } => {
                if let Some(keys) = forget {
                    let mut st = lock(&self.inner.ctx.state);
                    for k in &keys {
                        st.posted.remove(k);
                    }
                }
                Ok(count)
            }
            other => Err(unexpected(other)),
        }
    }

    /// One page of a get, exactly as the node returned it.
    pub async fn get_page(&self, query: GetQuery) -> Result<GetPage, ClientError> {
        match self.request(Request::Get(query)).await? {
            Reply::Rows(page) => Ok(page),
            other => Err(unexpected(other)),
        }
    }

    /// Every matching row, following continuation cursors; `query.start` is where to begin.
    pub async fn get_all(&self, query: GetQuery) -> Result<GetPage, ClientError> {
        get_all(&self.inner.ctx, query).await
    }

    /// Every row under `keys` (any owner).
    pub async fn get(&self, keys: Vec<KeySpec>) -> Result<Vec<Row>, ClientError> {
        Ok(self
            .get_all(GetQuery {
                keys,
                ..GetQuery::default()
            })
            .await?
            .rows)
    }

    /// One page of a query over row contents, exactly as the node returned it: the first
    /// matches (mesh-wide) after `query.start` in the query's order, `next` to continue,
    /// and the nodes whose rows are missing in `incomplete`.
    pub async fn query_page(&self, query: RowQuery) -> Result<QueryPage, ClientError> {
        match self.request(Request::Query(query)).await? {
            Reply::Queried(page) => Ok(page),
            other => Err(unexpected(other)),
        }
    }

    /// Builds and runs a query (see [`crate::query::Query`]); returns its first page: at
    /// most its limit of rows, the best ones in its order.
    pub async fn query(&self, query: &crate::query::Query) -> Result<QueryPage, ClientError> {
        self.query_page(query.build()?).await
    }

    /// Every match of a query, following continuation cursors from `query.start`.
    pub async fn query_all(&self, mut query: RowQuery) -> Result<QueryPage, ClientError> {
        let mut all = QueryPage::default();
        loop {
            let page = self.query_page(query.clone()).await?;
            all.rows.extend(page.rows);
            for n in page.incomplete {
                if !all.incomplete.contains(&n) {
                    all.incomplete.push(n);
                }
            }
            match page.next {
                Some(cursor) => query.start = Some(cursor),
                None => return Ok(all),
            }
        }
    }

    /// Runs a query live: returns its current result (the first `limit` rows in its order,
    /// all with limit 0) and a stream of rows entering, changing in and leaving it. Taken
    /// atomically like [`Client::subscribe`] (no change missed or seen twice); evaluated
    /// here over every change under the query's keys.
    pub async fn watch_query(
        &self,
        query: &crate::query::Query,
    ) -> Result<(Vec<Row>, LiveQuery), ClientError> {
        let wire = query.build()?;
        let compiled = crate::query::Compiled::new(&wire)?;
        let (rows, sub) = self.subscribe(wire.keys.clone(), None).await?;
        let live = LiveQuery::new(sub, compiled, wire.limit, rows);
        Ok((live.current(), live))
    }

    /// Reads the rows under `keys` and subscribes to their changes in one atomic step: the
    /// stream carries every change after the returned snapshot, none of those already in it.
    pub async fn subscribe(
        &self,
        keys: Vec<KeySpec>,
        owners: Option<Vec<ClientId>>,
    ) -> Result<(Vec<Row>, Subscription), ClientError> {
        let sub_id = self.inner.next_sub.fetch_add(1, Ordering::Relaxed);
        let (entry, rx) = SubEntry::new(keys.clone(), owners.clone());
        lock(&self.inner.ctx.state).subs.insert(sub_id, entry);
        let sub = Subscription::new(sub_id, rx, Arc::downgrade(&self.inner));
        let query = GetQuery {
            keys,
            owners,
            start: None,
            limit: 0,
            subscribe: true,
        };
        // On error `sub` drops here, which removes the local entry.
        let page = self.get_all(query).await?;
        if let Some(entry) = lock(&self.inner.ctx.state).subs.get_mut(&sub_id) {
            entry.activate(&page.rows);
        }
        Ok((page.rows, sub))
    }

    /// Drops the node-side subscriptions on `keys` (see [`Request::Unsubscribe`]).
    pub async fn unsubscribe(
        &self,
        keys: Vec<KeySpec>,
        owners: Option<Vec<ClientId>>,
    ) -> Result<u32, ClientError> {
        match self.request(Request::Unsubscribe { keys, owners }).await? {
            Reply::Unsubscribed { count } => Ok(count),
            other => Err(unexpected(other)),
        }
    }

    /// Replaces this client's session blob.
    pub async fn set_session(&self, data: impl Into<Bytes>) -> Result<(), ClientError> {
        let data = data.into();
        match self
            .request(Request::SetSession { data: data.clone() })
            .await?
        {
            Reply::SessionSet => {
                lock(&self.inner.ctx.state).session = Some(data);
                Ok(())
            }
            other => Err(unexpected(other)),
        }
    }

    /// Reports this client's position in the game world. When it goes deep enough into a
    /// zone another node owns, the node hands the client over there (a migration the
    /// application only sees as a `Migrated` event).
    pub async fn set_position(&self, x: f32, y: f32) -> Result<(), ClientError> {
        match self
            .request(Request::SetPosition {
                position: Position { x, y },
            })
            .await?
        {
            Reply::PositionSet => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// One round trip to the node.
    pub async fn ping(&self) -> Result<Duration, ClientError> {
        let start = Instant::now();
        match self.request(Request::Ping).await? {
            Reply::Pong => Ok(start.elapsed()),
            other => Err(unexpected(other)),
        }
    }

    /// Waits until the client's connection is closed for good and says why (a migration
    /// to another node, or a lost connection the SDK is healing, is not a close).
    pub async fn closed(&self) -> ClientError {
        loop {
            let conn = {
                let st = lock(&self.inner.ctx.state);
                if let Some(e) = &st.closed {
                    return e.clone();
                }
                st.link.as_ref().map(|l| l.conn.clone())
            };
            match conn {
                Some(conn) => {
                    let e = conn.closed().await;
                    // Let the read loop record what this close means.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    let st = lock(&self.inner.ctx.state);
                    if let Some(closed) = &st.closed {
                        return closed.clone();
                    }
                    // A migration or a heal in progress is not a close.
                    if st
                        .link
                        .as_ref()
                        .is_none_or(|l| l.conn.stable_id() == conn.stable_id())
                        && st.migrating.is_none()
                        && st.healing.is_none()
                    {
                        return close_error(&e);
                    }
                }
                None => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    /// Closes the connection (the node deletes this client's rows) and waits briefly for
    /// the close to be sent.
    pub async fn close(self) {
        if let Some(link) = &lock(&self.inner.ctx.state).link {
            link.conn
                .close(CloseCode::Normal.to_u32().into(), b"client closed");
        }
        let _ =
            tokio::time::timeout(Duration::from_secs(1), self.inner.ctx.endpoint.wait_idle()).await;
    }
}

/// Sends one request on the client's current path and waits for its answer.
pub(crate) async fn request(ctx: &link::Ctx, op: Request) -> Result<Reply, ClientError> {
    let (answer, _) = send(ctx, op)?;
    answer_of(ctx, answer).await
}

/// Queues one request on the client's current path; returns where its answer will come
/// and the request itself, encoded already, for a caller that keeps parts of it (a post
/// remembers its key and data without copying them).
fn send(
    ctx: &link::Ctx,
    op: Request,
) -> Result<(oneshot::Receiver<Result<Reply, ClientError>>, Request), ClientError> {
    let id = ctx.next_id.fetch_add(1, Ordering::Relaxed);
    let frame = ClientFrame::Request { id, op };
    let (tx, rx) = oneshot::channel();
    {
        let mut st = lock(&ctx.state);
        if let Some(e) = &st.closed {
            return Err(e.clone());
        }
        link::push_request(&mut st, &frame, ctx.opts.max_frame).map_err(|e| match e {
            CodecError::TooLarge { len, max } => ClientError::Server(WireError::TooLarge {
                what: "request".into(),
                size: len,
                max: max as u64,
            }),
            other => ClientError::Protocol(other.to_string()),
        })?;
        st.pending.insert(id, tx);
    }
    match frame {
        ClientFrame::Request { op, .. } => Ok((rx, op)),
        // Built as a request just above.
        _ => unreachable!("a request frame holds a request"),
    }
}

/// Waits for the answer to a request [`send`] queued.
async fn answer_of(
    ctx: &link::Ctx,
    answer: oneshot::Receiver<Result<Reply, ClientError>>,
) -> Result<Reply, ClientError> {
    match answer.await {
        Ok(result) => result,
        Err(_) => Err(lock(&ctx.state)
            .closed
            .clone()
            .unwrap_or(ClientError::Closed {
                code: None,
                reason: "connection closed".into(),
            })),
    }
}

/// Every matching row, following continuation cursors (the subscription, if asked for,
/// is made with the first page).
pub(crate) async fn get_all(ctx: &link::Ctx, mut query: GetQuery) -> Result<GetPage, ClientError> {
    let mut all = GetPage::default();
    loop {
        let page = match request(ctx, Request::Get(query.clone())).await? {
            Reply::Rows(page) => page,
            other => return Err(unexpected(other)),
        };
        all.rows.extend(page.rows);
        for n in page.incomplete {
            if !all.incomplete.contains(&n) {
                all.incomplete.push(n);
            }
        }
        match page.next {
            Some(cursor) => {
                query.start = Some(cursor);
                query.subscribe = false;
            }
            None => return Ok(all),
        }
    }
}

fn unexpected(reply: Reply) -> ClientError {
    ClientError::Protocol(format!("unexpected reply {reply:?}"))
}
