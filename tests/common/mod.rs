//! Helpers shared by integration tests: a real node on 127.0.0.1 port 0, real QUIC clients.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use cloudmesh::client::{Client, ClientOptions, Event, Subscription};
use cloudmesh::transport::{parse_fingerprint, Trust};
use cloudmesh::{Node, NodeConfig};

/// A node under test with its temporary data directory.
pub struct TestNode {
    pub node: Node,
    pub dir: tempfile::TempDir,
}

impl TestNode {
    pub fn addr(&self) -> SocketAddr {
        self.node.local_addr()
    }

    pub fn trust(&self) -> Trust {
        Trust::Pin(parse_fingerprint(self.node.fingerprint()).expect("node fingerprint parses"))
    }

    pub async fn client(&self) -> Client {
        Client::connect(self.addr(), ClientOptions::new(self.trust()))
            .await
            .expect("client connects")
    }

    pub async fn client_with(
        &self,
        f: impl FnOnce(&mut ClientOptions),
    ) -> Result<Client, cloudmesh::client::ClientError> {
        let mut opts = ClientOptions::new(self.trust());
        f(&mut opts);
        Client::connect(self.addr(), opts).await
    }
}

/// Sends library logs to the test's captured output (shown only when a test fails); the
/// filter comes from `CLOUDMESH_TEST_LOG`, default `cloudmesh=info`.
pub fn init_test_log() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CLOUDMESH_TEST_LOG")
                .unwrap_or_else(|_| "cloudmesh=info".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Config for a node on 127.0.0.1:0 in `dir`.
pub fn config(dir: &std::path::Path) -> NodeConfig {
    let mut c = NodeConfig::new(dir);
    c.listen = "127.0.0.1:0".parse().expect("addr");
    c.name = "test-node".into();
    c
}

pub async fn node() -> TestNode {
    node_with(|_| {}).await
}

pub async fn node_with(f: impl FnOnce(&mut NodeConfig)) -> TestNode {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = config(dir.path());
    f(&mut c);
    let node = Node::start(c).await.expect("node starts");
    TestNode { node, dir }
}

/// Generous deadline for anything on a loaded 2-core machine; a hang fails instead of blocking.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {DEADLINE:?} waiting for {what}"))
}

pub async fn next_event(sub: &mut Subscription) -> Event {
    within("a subscription event", sub.next())
        .await
        .expect("subscription still open")
}

/// Polls `cond` until true or the deadline passes.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    within(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

/// A raw QUIC connection speaking ALPN `cloudmesh/1` but sending whatever the test wants.
pub struct Raw {
    pub conn: quinn::Connection,
    pub send: quinn::SendStream,
    pub recv: quinn::RecvStream,
    _endpoint: quinn::Endpoint,
}

pub async fn raw_connect(addr: SocketAddr) -> Raw {
    cloudmesh::transport::install_crypto_provider();
    let cfg = cloudmesh::transport::client_config(
        &Trust::InsecureDevOnly,
        cloudmesh::proto::ALPN_CLIENT,
        cloudmesh::transport::Timing::default(),
    )
    .expect("client config");
    let mut endpoint =
        quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("endpoint");
    endpoint.set_default_client_config(cfg);
    let conn = within("raw connect", async {
        endpoint
            .connect(addr, "localhost")
            .expect("connect")
            .await
            .expect("handshake")
    })
    .await;
    let (send, recv) = conn.open_bi().await.expect("open stream");
    Raw {
        conn,
        send,
        recv,
        _endpoint: endpoint,
    }
}

impl Raw {
    pub async fn write(&mut self, bytes: &[u8]) {
        // The node may close mid-write; that is an outcome the caller checks, not a failure.
        let _ = self.send.write_all(bytes).await;
    }

    pub async fn frame<T: serde::Serialize>(&mut self, msg: &T) {
        let b = cloudmesh::proto::encode_to_bytes(msg, 1 << 24).expect("encode");
        self.write(&b).await;
    }

    /// The node's close code and reason, waiting for the close.
    pub async fn close_code(&self) -> (Option<cloudmesh::proto::CloseCode>, String) {
        match within("the node to close the connection", self.conn.closed()).await {
            quinn::ConnectionError::ApplicationClosed(c) => (
                u32::try_from(c.error_code.into_inner())
                    .ok()
                    .and_then(cloudmesh::proto::CloseCode::from_u32),
                String::from_utf8_lossy(&c.reason).into_owned(),
            ),
            other => panic!("expected an application close from the node, got {other}"),
        }
    }
}

/// Proves a bystander is unaffected: a full post/get/release round trip on its connection.
pub async fn bystander_works(c: &Client, tag: u32) {
    use cloudmesh::proto::{Key, KeySpec};
    let key = Key::new("bystander", tag);
    within("bystander round trip", async {
        c.post(key.clone(), format!("ok-{tag}"))
            .await
            .expect("bystander post");
        let rows = c
            .get(vec![KeySpec::exact(&key)])
            .await
            .expect("bystander get");
        assert_eq!(rows.len(), 1);
        c.release(vec![key]).await.expect("bystander release");
    })
    .await
}

/// A full mesh of nodes named `names`: the first starts it, the others join it, each
/// configured by `config(c, name)`. Returns once every node links every other one and
/// knows every node's load (placement and drains pick targets by load).
pub async fn mesh_of(names: &[&str], config: fn(&mut NodeConfig, &str)) -> Vec<TestNode> {
    let mut nodes: Vec<TestNode> = Vec::new();
    for name in names {
        let name = (*name).to_owned();
        let join = nodes.first().map(|first| first.addr().to_string());
        nodes.push(
            node_with(move |c| {
                config(c, &name);
                c.join = join.into_iter().collect();
            })
            .await,
        );
    }
    let others = names.len().saturating_sub(1);
    wait_until("a full mesh with every load known", || {
        nodes
            .iter()
            .all(|t| t.node.peers().len() == others && t.node.loads().len() == names.len())
    })
    .await;
    nodes
}

/// Two nodes, a and b, both configured with a 2×1 grid of 100-unit cells and a 10-unit
/// margin. Returns once both share the host's zone map with one cell each and know each
/// other's load.
pub async fn zoned_pair() -> (TestNode, TestNode, cloudmesh::placement::ZoneConfig) {
    let zones = cloudmesh::placement::ZoneConfig {
        cell_size: 100.0,
        width: 2,
        height: 1,
        margin: 10.0,
    };
    let secret = cloudmesh::mesh::MeshSecret::new(vec![4; 32]).expect("secret");
    let (s, z) = (secret.clone(), zones.clone());
    let a = node_with(move |c| {
        c.name = "a".into();
        c.secret = Some(s);
        c.load_interval = Duration::from_millis(100);
        c.rebalance_interval = Duration::ZERO;
        c.zones = Some(z);
    })
    .await;
    let (join, z) = (a.addr().to_string(), zones.clone());
    let b = node_with(move |c| {
        c.name = "b".into();
        c.secret = Some(secret);
        c.join = vec![join];
        c.load_interval = Duration::from_millis(100);
        c.rebalance_interval = Duration::ZERO;
        c.zones = Some(z);
    })
    .await;
    wait_until("both nodes share a zone map with one cell each", || {
        let (Some(za), Some(zb)) = (a.node.zones(), b.node.zones()) else {
            return false;
        };
        za == zb
            && za.cells_of(a.node.id()).len() == 1
            && za.cells_of(b.node.id()).len() == 1
            && a.node.loads().contains_key(&b.node.id())
            && b.node.loads().contains_key(&a.node.id())
    })
    .await;
    (a, b, zones)
}
