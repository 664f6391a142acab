//! The client SDK: what a game server or game client links to use cloud memory.
//!
//! One QUIC connection, one ordered stream, many requests in flight. Subscriptions are
//! [`Subscription`] streams of [`Event`]s. Depends only on `proto` and `transport`, never on
//! node internals.

mod link;
mod subscription;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;

pub use link::Migrated;
pub use subscription::{Event, Subscription};

use crate::proto::{
    ClientFrame, ClientId, CloseCode, CodecError, GetPage, GetQuery, Key, KeySpec, LimitsInfo,
    NodeId, NodeRtt, Notification, Placement, Position, Reply, Request, Row, Welcome, WireError,
    ALPN_CLIENT, DEFAULT_MAX_FRAME,
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
    next_id: AtomicU64,
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
                ..opts
            },
            state: Mutex::new(state),
            migrations: tokio::sync::broadcast::channel(16).0,
        });
        tokio::spawn(link::read_loop(ctx.clone(), conn, reader));
        Ok(Client {
            inner: Arc::new(Inner {
                ctx,
                next_id: AtomicU64::new(1), // 0 is reserved for fire-and-forget requests
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
    pub async fn connect_mesh(
        seeds: &[SocketAddr],
        opts: ClientOptions,
    ) -> Result<Client, ClientError> {
        use rand::seq::SliceRandom;
        let mut order = seeds.to_vec();
        order.shuffle(&mut rand::thread_rng());
        let mut last = None;
        for addr in order {
            match Client::connect(addr, opts.clone()).await {
                Ok(client) => return client.follow_placement(opts).await,
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(ClientError::Config("no seed addresses given".into())))
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
            if let Ok(client) = Client::connect(addr, there.clone()).await {
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
            let Some(node) = record["id"]
                .as_str()
                .and_then(|s| u128::from_str_radix(s, 16).ok())
                .map(NodeId)
            else {
                continue;
            };
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

    /// Informational events when this client moves to another node (§6.1); nothing needs
    /// doing, calls and subscriptions carry on.
    pub fn migrations(&self) -> tokio::sync::broadcast::Receiver<link::Migrated> {
        self.inner.ctx.migrations.subscribe()
    }

    async fn request(&self, op: Request) -> Result<Reply, ClientError> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = ClientFrame::Request { id, op };
        let (tx, rx) = oneshot::channel();
        {
            let mut st = lock(&self.inner.ctx.state);
            if let Some(e) = &st.closed {
                return Err(e.clone());
            }
            link::push_request(&mut st, &frame, self.inner.max_frame).map_err(|e| match e {
                CodecError::TooLarge { len, max } => ClientError::Server(WireError::TooLarge {
                    what: "request".into(),
                    size: len,
                    max: max as u64,
                }),
                other => ClientError::Protocol(other.to_string()),
            })?;
            st.pending.insert(id, tx);
        }
        match rx.await {
            Ok(result) => result,
            Err(_) => Err(self.closed_now()),
        }
    }

    fn closed_now(&self) -> ClientError {
        lock(&self.inner.ctx.state)
            .closed
            .clone()
            .unwrap_or(ClientError::Closed {
                code: None,
                reason: "connection closed".into(),
            })
    }

    /// Creates or replaces this client's row under `key`; returns its new version.
    pub async fn post(&self, key: Key, data: impl Into<Bytes>) -> Result<u64, ClientError> {
        match self
            .request(Request::Post {
                key,
                data: data.into(),
            })
            .await?
        {
            Reply::Posted { version } => Ok(version),
            other => Err(unexpected(other)),
        }
    }

    /// Deletes this client's rows under `keys`; returns how many existed.
    pub async fn release(&self, keys: Vec<Key>) -> Result<u32, ClientError> {
        match self.request(Request::Release { keys }).await? {
            Reply::Released { count } => Ok(count),
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
    pub async fn get_all(&self, mut query: GetQuery) -> Result<GetPage, ClientError> {
        let mut all = GetPage::default();
        loop {
            let page = self.get_page(query.clone()).await?;
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
        match self
            .request(Request::SetSession { data: data.into() })
            .await?
        {
            Reply::SessionSet => Ok(()),
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
    /// to another node is not a close).
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
                    if st
                        .link
                        .as_ref()
                        .is_none_or(|l| l.conn.stable_id() == conn.stable_id())
                        && st.migrating.is_none()
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

fn unexpected(reply: Reply) -> ClientError {
    ClientError::Protocol(format!("unexpected reply {reply:?}"))
}
