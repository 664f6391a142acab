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
