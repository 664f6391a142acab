//! Composes the pieces into a running node: `Node::start(config)` binds the QUIC endpoint,
//! loads or makes the TLS identity, and serves clients until `shutdown`.

mod conn;

mod rate;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{ConfigError, NodeConfig};
use crate::proto::{encode_to_bytes, ClientId, CloseCode, Key, NodeId, ServerFrame};
use crate::store::{Fanout, Filters, Store, StoreStats};
use crate::transport::{self, Identity, TransportError};

use crate::proto::Outbox;

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

/// The node's own row under `cloud.nodes/0` (§3.4). JSON, so any client can read it.
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

/// A connected client as the node tracks it.
#[derive(Debug)]
struct Link {
    /// Its outgoing queue.
    outbox: Outbox,
    /// To close it when it lags.
    conn: quinn::Connection,
    /// Set once it has been closed as a slow consumer, so that is logged once.
    lagged: bool,
}

/// Store plus the outgoing queues of connected clients, under one lock: a change and the
/// queueing of its notifications happen in one step, which keeps per-row order (§2).
#[derive(Debug)]
struct Hub {
    store: Store,
    links: HashMap<ClientId, Link>,
}

impl Hub {
    /// Queues one change to every recipient; encodes it once.
    fn deliver(&mut self, fan: Fanout, max_frame: usize) {
        if fan.recipients.is_empty() {
            return;
        }
        let frame = match encode_to_bytes(&ServerFrame::Notify(fan.notification), max_frame) {
            Ok(f) => f,
            Err(e) => {
                // Rows are limited well below the frame size (config validation), so this
                // is a bug, not input: say so loudly rather than drop silently.
                tracing::error!(error = %e, "notification does not fit a frame; not delivered");
                return;
            }
        };
        for id in fan.recipients {
            if let Some(link) = self.links.get_mut(&id) {
                if link.outbox.push_notification(frame.clone()).is_err() && !link.lagged {
                    link.lagged = true;
                    tracing::warn!(client = %id, remote = %link.conn.remote_address(),
                        "client reads its notifications too slowly; disconnecting it");
                    link.conn.close(
                        CloseCode::SlowConsumer.to_u32().into(),
                        b"slow consumer: notification queue full",
                    );
                }
            }
        }
    }
}

/// State shared by the accept loop and every connection task.
#[derive(Debug)]
struct Shared {
    id: NodeId,
    config: NodeConfig,
    hub: Mutex<Hub>,
}

impl Shared {
    fn hub(&self) -> MutexGuard<'_, Hub> {
        // A panic while holding the lock is a bug already reported by the panic itself;
        // the store's own invariants hold between operations, so keep serving.
        self.hub.lock().unwrap_or_else(PoisonError::into_inner)
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
    endpoint: quinn::Endpoint,
    shutdown: watch::Sender<bool>,
    accept: JoinHandle<()>,
    fingerprint: String,
    cert_generated: bool,
}

impl Node {
    /// Starts serving per `config`. Returns once the port is bound.
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
        let server =
            transport::server_config(&identity, &[crate::proto::ALPN_CLIENT], config.timing)?;
        let endpoint =
            quinn::Endpoint::server(server, config.listen).map_err(|source| NodeError::Bind {
                addr: config.listen,
                source,
            })?;
        let local = endpoint.local_addr().map_err(|source| NodeError::Bind {
            addr: config.listen,
            source,
        })?;

        let id = NodeId::random();
        let mut store = Store::new(
            id,
            config.limits.clone(),
            Filters::new(config.filters.clone()),
        );
        let system = ClientId::random();
        store.add_system_client(system);
        let record = NodeRecord {
            name: config.name.clone(),
            id: id.to_string(),
            addresses: vec![local.to_string()],
            state: "Active".into(),
            host: true,
        };
        let json = serde_json::to_vec(&record).unwrap_or_default();
        if let Err(e) = store.post(
            system,
            Key::new("cloud.nodes", 0),
            Bytes::from(json),
            now_ms(),
        ) {
            tracing::warn!(error = %e, "could not write cloud.nodes/0");
        }

        let shared = Arc::new(Shared {
            id,
            config,
            hub: Mutex::new(Hub {
                store,
                links: HashMap::new(),
            }),
        });
        let (shutdown, shutdown_rx) = watch::channel(false);
        let accept = tokio::spawn(accept_loop(shared.clone(), endpoint.clone(), shutdown_rx));
        tracing::info!(node = %shared.config.name, id = %id, listen = %local, %fingerprint,
            generated_cert = identity.generated, cert = %identity.cert_path.display(), "node serving");
        Ok(Node {
            shared,
            endpoint,
            shutdown,
            accept,
            fingerprint,
            cert_generated: identity.generated,
        })
    }

    /// The bound UDP address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.endpoint
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

    /// Connected clients.
    pub fn client_count(&self) -> usize {
        self.shared.hub().links.len()
    }

    /// Stops accepting, closes every client with `Shutdown` and the given reason, and waits
    /// (bounded) for the close to reach them.
    pub async fn shutdown(self, reason: &str) {
        let _ = self.shutdown.send(true);
        self.endpoint
            .close(CloseCode::Shutdown.to_u32().into(), reason.as_bytes());
        let _ = self.accept.await;
        if tokio::time::timeout(Duration::from_secs(3), self.endpoint.wait_idle())
            .await
            .is_err()
        {
            tracing::warn!("some clients did not acknowledge the close within 3 s");
        }
        tracing::info!(node = %self.shared.config.name, "node stopped");
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
                tokio::spawn(conn::serve(shared.clone(), incoming));
            }
        }
    }
}
