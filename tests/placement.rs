//! Placement across a real mesh: clients connecting through any node end up on
//! the node the scoring prefers, by load and by measured RTT, and tickets admit once.

mod common;

use std::time::Duration;

use cloudmesh::client::{Client, ClientError, ClientOptions};
use cloudmesh::mesh::MeshSecret;
use cloudmesh::proto::{Key, NodeRtt, Placement, WireError};
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
        // The test's clients may see the score table.
        c.explain_classes = vec!["default".into()];
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
    // The same decision through the library API, with every candidate's score.
    let decision = a.node.place_explain(&[], None);
    assert_eq!(decision.choice, Some(b.node.id()));
    assert_eq!(decision.scores.len(), 2);
    assert!(decision.scores[0].total < decision.scores[1].total);
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

/// The x coordinate of the middle of `node`'s cell, and the border x between the cells.
fn cell_middle(t: &TestNode, map: &cloudmesh::placement::ZoneMap) -> f32 {
    let cell = map.cells_of(t.node.id())[0];
    cell.x as f32 * 100.0 + 50.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_zones_clients_go_to_the_owner_of_their_cell() {
    let (a, b, _) = zoned_pair().await;
    let map = a.node.zones().expect("zone map");
    let mut opts = ClientOptions::new(a.trust());
    opts.position = Some(cloudmesh::proto::Position {
        x: cell_middle(&b, &map),
        y: 50.0,
    });
    let c = Client::connect_mesh(&[a.addr()], opts)
        .await
        .expect("connect");
    assert_eq!(
        c.node_id(),
        b.node.id(),
        "placed with the owner of its cell"
    );
    // The map is published for any client to read.
    let rows = c
        .get(vec!["cloud.zones".parse().expect("spec")])
        .await
        .expect("get");
    assert_eq!(rows.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crossing_a_border_hands_over_once_and_walking_along_it_does_not() {
    let (a, b, _) = zoned_pair().await;
    let map = a.node.zones().expect("zone map");
    let (mid_a, mid_b) = (cell_middle(&a, &map), cell_middle(&b, &map));
    let border = (mid_a + mid_b) / 2.0;
    let toward_b = if mid_b > mid_a { 1.0 } else { -1.0 };
    let c = a.client().await;
    let mut moves = c.migrations();
    c.post(Key::new("walker", 1), "me").await.expect("post");
    // Walk along the border, within the margin on both sides: no handover.
    for i in 0..20 {
        let dx = if i % 2 == 0 { 5.0 } else { -5.0 };
        c.set_position(border + dx * toward_b, 50.0)
            .await
            .expect("position");
    }
    c.ping().await.expect("ping");
    assert_eq!(
        c.node_id(),
        a.node.id(),
        "walking along the border does not hand over"
    );
    assert!(
        moves.try_recv().is_err(),
        "no migration while walking along the border"
    );
    // Cross deep into b's cell: handed over once.
    c.set_position(mid_b, 50.0).await.expect("position");
    let m = within("handover", moves.recv()).await.expect("migrated");
    assert_eq!((m.from, m.to), (a.node.id(), b.node.id()));
    assert_eq!(c.node_id(), b.node.id());
    // Still inside b's cell, moving around: no further handover.
    for dx in [-20.0, 0.0, 20.0] {
        c.set_position(mid_b + dx, 50.0).await.expect("position");
    }
    c.ping().await.expect("ping");
    assert!(moves.try_recv().is_err(), "one crossing, one handover");
    let rows = c
        .get(vec!["walker".parse().expect("spec")])
        .await
        .expect("get");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].node, b.node.id(), "its row moved with it");
}
