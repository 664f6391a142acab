//! The client SDK: what a game server or game client links to use cloud memory.
//!
//! One QUIC connection, one ordered stream, many requests in flight. Subscriptions are
//! [`Subscription`] streams of [`Event`]s. Depends only on `proto` and `transport`, never on
//! node internals.

mod subscription;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;

pub use subscription::{Event, Subscription};

use crate::proto::{
    encode_to_bytes, outbox, ClientFrame, ClientId, CloseCode, CodecError, FrameReader, GetPage,
    GetQuery, Hello, Key, KeySpec, LimitsInfo, NodeId, NodeRtt, Outbox, Placement, Position, Reply,
    Request, Row, ServerFrame, Welcome, WireError, ALPN_CLIENT, DEFAULT_MAX_FRAME,
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

/// State shared by callers and the reader task.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// Requests waiting for their response.
    pending: HashMap<u64, oneshot::Sender<Result<Reply, ClientError>>>,
    /// Local subscriptions by id.
    pub(crate) subs: HashMap<u64, SubEntry>,
    /// Set once the connection is gone; later calls fail with it.
    closed: Option<ClientError>,
}

pub(crate) fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug)]
pub(crate) struct Inner {
    conn: quinn::Connection,
    endpoint: quinn::Endpoint,
    welcome: Welcome,
    pub(crate) outbox: Outbox,
    pub(crate) state: Arc<Mutex<State>>,
    next_id: AtomicU64,
    next_sub: AtomicU64,
    max_frame: usize,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.conn
            .close(CloseCode::Normal.to_u32().into(), b"client dropped");
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
        let cfg = transport::client_config(&opts.trust, ALPN_CLIENT, opts.timing)?;
        let bind = if addr.is_ipv6() {
            SocketAddr::from(([0u16; 8], 0))
        } else {
            SocketAddr::from(([0, 0, 0, 0], 0))
        };
        let connect_err = |reason: String| ClientError::Connect { addr, reason };
        let mut endpoint = quinn::Endpoint::client(bind).map_err(|e| connect_err(e.to_string()))?;
        endpoint.set_default_client_config(cfg);
        let hello = ClientFrame::Hello(Hello {
            class: opts.class.clone(),
            token: opts.token.clone(),
            session: opts.session.clone(),
            ticket: opts.ticket.clone(),
            rtts: opts.rtts.clone(),
            position: opts.position,
            ..Hello::current()
        });
        let max_frame = opts.max_frame;
        let handshake = async {
            let conn = endpoint
                .connect(addr, &opts.server_name)
                .map_err(|e| connect_err(e.to_string()))?
                .await
                .map_err(|e| match e {
                    quinn::ConnectionError::ApplicationClosed(_) => close_error(&e),
                    other => connect_err(other.to_string()),
                })?;
            let (mut send, recv) = conn.open_bi().await.map_err(|e| close_error(&e))?;
            let frame = encode_to_bytes(&hello, max_frame)
                .map_err(|e| ClientError::Protocol(e.to_string()))?;
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
        let (conn, mut send, reader, welcome) =
            tokio::time::timeout(opts.connect_timeout, handshake)
                .await
                .map_err(|_| {
                    connect_err(format!("no answer within {:?}", opts.connect_timeout))
                })??;

        let (outbox, writer) = outbox(usize::MAX);
        tokio::spawn(async move {
            let _ = writer.run(&mut send).await;
            let _ = send.finish();
        });
        let state = Arc::new(Mutex::new(State::default()));
        tokio::spawn(read_loop(conn.clone(), reader, state.clone()));
        Ok(Client {
            inner: Arc::new(Inner {
                conn,
                endpoint,
                welcome,
                outbox,
                state,
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
        let mut placement = self.inner.welcome.placement.clone();
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
            let endpoint = self.inner.endpoint.clone();
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

    /// The node's placement answer at connect time.
    pub fn placement(&self) -> &Placement {
        &self.inner.welcome.placement
    }

    /// This session's id (mesh-wide, survives migration).
    pub fn id(&self) -> ClientId {
        self.inner.welcome.client_id
    }

    /// The node this client is connected to.
    pub fn node_id(&self) -> NodeId {
        self.inner.welcome.node_id
    }

    /// The name of that node.
    pub fn node_name(&self) -> &str {
        &self.inner.welcome.node_name
    }

    /// The limits the node enforces.
    pub fn limits(&self) -> &LimitsInfo {
        &self.inner.welcome.limits
    }

    /// The negotiated protocol version.
    pub fn protocol_version(&self) -> u16 {
        self.inner.welcome.version
    }

    async fn request(&self, op: Request) -> Result<Reply, ClientError> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = encode_to_bytes(&ClientFrame::Request { id, op }, self.inner.max_frame)
            .map_err(|e| match e {
                CodecError::TooLarge { len, max } => ClientError::Server(WireError::TooLarge {
                    what: "request".into(),
                    size: len,
                    max: max as u64,
                }),
                other => ClientError::Protocol(other.to_string()),
            })?;
        let (tx, rx) = oneshot::channel();
        {
            let mut st = lock(&self.inner.state);
            if let Some(e) = &st.closed {
                return Err(e.clone());
            }
            st.pending.insert(id, tx);
        }
        self.inner.outbox.push_response(frame);
        match rx.await {
            Ok(result) => result,
            Err(_) => Err(self.closed_now()),
        }
    }

    fn closed_now(&self) -> ClientError {
        lock(&self.inner.state)
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
        lock(&self.inner.state).subs.insert(sub_id, entry);
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
        if let Some(entry) = lock(&self.inner.state).subs.get_mut(&sub_id) {
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

    /// One round trip to the node.
    pub async fn ping(&self) -> Result<Duration, ClientError> {
        let start = Instant::now();
        match self.request(Request::Ping).await? {
            Reply::Pong => Ok(start.elapsed()),
            other => Err(unexpected(other)),
        }
    }

    /// Waits until the connection is closed and says why.
    pub async fn closed(&self) -> ClientError {
        close_error(&self.inner.conn.closed().await)
    }

    /// Closes the connection (the node deletes this client's rows) and waits briefly for
    /// the close to be sent.
    pub async fn close(self) {
        self.inner
            .conn
            .close(CloseCode::Normal.to_u32().into(), b"client closed");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.inner.endpoint.wait_idle()).await;
    }
}

fn unexpected(reply: Reply) -> ClientError {
    ClientError::Protocol(format!("unexpected reply {reply:?}"))
}

/// Routes frames from the node to waiting calls and subscriptions.
async fn read_loop(
    conn: quinn::Connection,
    mut reader: FrameReader<quinn::RecvStream>,
    state: Arc<Mutex<State>>,
) {
    let error = loop {
        match reader.next::<ServerFrame>().await {
            Ok(Some(ServerFrame::Response { id, result })) => {
                let waiter = lock(&state).pending.remove(&id);
                if let Some(tx) = waiter {
                    let _ = tx.send(result.map_err(ClientError::Server));
                }
            }
            Ok(Some(ServerFrame::Notify(n))) => {
                let mut st = lock(&state);
                for entry in st.subs.values_mut() {
                    entry.offer(&n);
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
    let mut st = lock(&state);
    st.closed = Some(error.clone());
    for (_, tx) in st.pending.drain() {
        let _ = tx.send(Err(error.clone()));
    }
    // Dropping the senders ends every subscription stream.
    st.subs.clear();
}
