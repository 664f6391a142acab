//! Placement across a real mesh (DESIGN §5): clients connecting through any node end up on
//! the node the scoring prefers, by load and by measured RTT, and tickets admit once.

mod common;

use std::time::Duration;

use cloudmesh::client::{Client, ClientError, ClientOptions};
use cloudmesh::mesh::MeshSecret;
use cloudmesh::proto::{NodeRtt, Placement, WireError};
use common::*;

async fn two_nodes() -> (TestNode, TestNode) {
    let secret = MeshSecret::new(vec![3; 32]).expect("secret");
    let s = secret.clone();
    let a = node_with(move |c| {
        c.name = "a".into();
        c.secret = Some(s);
        c.load_interval = Duration::from_millis(100);
        // Load is clients / capacity: 20 clients make a node half full.
        c.max_clients = 40;
        // These tests load one node on purpose: no rebalance under them.
        c.rebalance_interval = Duration::ZERO;
    })
    .await;
    let join = a.addr().to_string();
    let b = node_with(move |c| {
        c.name = "b".into();
        c.secret = Some(secret);
        c.join = vec![join];
        c.load_interval = Duration::from_millis(100);
        // Load is clients / capacity: 20 clients make a node half full.
        c.max_clients = 40;
        // These tests load one node on purpose: no rebalance under them.
        c.rebalance_interval = Duration::ZERO;
    })
    .await;
    wait_until("a and b linked and reporting load to each other", || {
        a.node.loads().contains_key(&b.node.id()) && b.node.loads().contains_key(&a.node.id())
    })
    .await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_clients_go_to_the_idle_node() {
    let (a, b) = two_nodes().await;
    // Load node a directly (plain connect does not follow placement).
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(a.client().await);
    }
    wait_until("a's load reaches b's view", || {
        b.node
            .loads()
            .get(&a.node.id())
            .is_some_and(|l| l.clients >= 20)
    })
    .await;
    let c = Client::connect_mesh(&[a.addr()], ClientOptions::new(a.trust()))
        .await
        .expect("connect through a");
    assert_eq!(c.node_id(), b.node.id(), "placed on the idle node b");
    c.ping().await.expect("served by b");
    // The explanation names both candidates.
    let (placement, explain) = held[0].place(vec![], None).await.expect("place");
    assert!(
        matches!(placement, Placement::Redirect { ref name, .. } if name == "b"),
        "{placement:?}"
    );
    assert!(explain.contains('a') && explain.contains('b'), "{explain}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_equal_load_the_lower_rtt_wins() {
    let (a, b) = two_nodes().await;
    let rtts = |ra: u32, rb: u32| {
        vec![
            NodeRtt {
                node: a.node.id(),
                micros: ra,
            },
            NodeRtt {
                node: b.node.id(),
                micros: rb,
            },
        ]
    };
    let mut opts = ClientOptions::new(a.trust());
    opts.rtts = rtts(20_000, 2_000);
    let far = Client::connect_mesh(&[a.addr()], opts)
        .await
        .expect("connect");
    assert_eq!(far.node_id(), b.node.id(), "b is 18 ms closer");

    let mut opts = ClientOptions::new(a.trust());
    opts.rtts = rtts(2_000, 20_000);
    let near = Client::connect_mesh(&[a.addr()], opts)
        .await
        .expect("connect");
    assert_eq!(near.node_id(), a.node.id(), "a is closer: stay");

    // The SDK measures RTTs itself: one probe per node of the mesh.
    let probes = near.probe_rtts(Duration::from_secs(5)).await;
    assert_eq!(probes.len(), 2, "{probes:?}");
    let mut opts = ClientOptions::new(a.trust());
    opts.probe_rtt = true;
    let probed = Client::connect_mesh(&[a.addr(), b.addr()], opts)
        .await
        .expect("connect");
    probed.ping().await.expect("served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_ticket_admits_once_and_only_at_its_node() {
    let (a, b) = two_nodes().await;
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(a.client().await);
    }
    wait_until("a's load reaches b's view", || {
        a.node
            .loads()
            .get(&a.node.id())
            .is_some_and(|l| l.clients >= 20)
    })
    .await;
    let (placement, _) = held[0].place(vec![], None).await.expect("place");
    let Placement::Redirect { ticket, node, .. } = placement else {
        panic!("expected a redirect to b, got {placement:?}");
    };
    assert_eq!(node, b.node.id());
    let mut opts = ClientOptions::new(b.trust());
    opts.ticket = Some(ticket.clone());
    let first = Client::connect(b.addr(), opts.clone())
        .await
        .expect("ticket admits");
    assert_eq!(
        first.placement(),
        Placement::Stay,
        "a ticket holder is not redirected again"
    );
    let again = Client::connect(b.addr(), opts)
        .await
        .expect_err("used twice");
    assert!(
        matches!(again, ClientError::Refused(WireError::Forbidden { .. })),
        "{again}"
    );
    let mut elsewhere = ClientOptions::new(a.trust());
    elsewhere.ticket = Some(ticket);
    let wrong = Client::connect(a.addr(), elsewhere)
        .await
        .expect_err("ticket for b");
    assert!(
        matches!(wrong, ClientError::Refused(WireError::Forbidden { .. })),
        "{wrong}"
    );
}
