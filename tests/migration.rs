//! Live migration between real nodes: make-before-break, no deletion, no loss,
//! rollback when the client never arrives, and the target keeping the session when the
//! source dies after preparing it.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use cloudmesh::client::{Client, ClientOptions, Event};
use cloudmesh::mesh::MeshSecret;
use cloudmesh::proto::{
    ClientFrame, FrameReader, Hello, Key, KeySpec, NodeState, Request, ServerFrame,
};
use cloudmesh::{MigrateError, NodeConfig};
use common::*;

fn spec(s: &str) -> KeySpec {
    s.parse().expect("key spec")
}

fn mesh_config(c: &mut NodeConfig, name: &str) {
    init_test_log();
    c.name = name.into();
    c.secret = Some(MeshSecret::new(vec![5; 32]).expect("secret"));
    c.migration_timeout = Duration::from_secs(2);
    c.timing.idle_timeout = Duration::from_secs(2);
    c.timing.keep_alive = Duration::from_millis(500);
    c.load_interval = Duration::from_millis(100);
    // Small enough that tens of clients are a load placement weighs.
    c.max_clients = 100;
    // No moves but the ones a test asks for.
    c.rebalance_interval = Duration::ZERO;
}

async fn mesh3() -> Vec<TestNode> {
    mesh_of(&["a", "b", "c"], mesh_config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_migration_moves_rows_and_subscriptions_without_deletion() {
    let nodes = mesh3().await;
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let x = a.client().await;
    let mut moves = x.migrations();
    for i in 0..5 {
        x.post(Key::new("k", i), format!("v{i}"))
            .await
            .expect("post");
    }
    let (_, mut x_sub) = x
        .subscribe(vec![spec("k")], None)
        .await
        .expect("x subscribes");
    let w = c.client().await;
    let (before, mut w_sub) = w
        .subscribe(vec![spec("k")], None)
        .await
        .expect("watcher subscribes");
    assert_eq!(before.len(), 5);
    assert!(before.iter().all(|r| r.node == a.node.id()));

    within("migration", a.node.migrate(x.id(), b.node.id()))
        .await
        .expect("migrated");
    wait_until("x switched to b", || x.node_id() == b.node.id()).await;
    let m = within("migrated event", moves.recv()).await.expect("event");
    assert_eq!((m.from, m.to), (a.node.id(), b.node.id()));

    // The watcher sees each row move: an update naming b, with a higher version, never a
    // deletion.
    let mut moved = HashMap::new();
    while moved.len() < 5 {
        match next_event(&mut w_sub).await {
            Event::Updated(row) => {
                assert_eq!(row.node, b.node.id());
                let old = before.iter().find(|r| r.key == row.key).expect("known row");
                assert!(row.version > old.version);
                assert_eq!(row.data, old.data);
                moved.insert(row.key.clone(), row);
            }
            other => panic!("expected a move (update), got {other:?}"),
        }
    }
    // Same client, same rows, now served by b.
    let rows = w.get(vec![spec("k")]).await.expect("get");
    assert_eq!(rows.len(), 5);
    assert!(rows
        .iter()
        .all(|r| r.node == b.node.id() && r.owner == x.id()));
    assert_eq!(a.node.client_count(), 0, "the old link is closed");
    // x keeps working and its subscription continues on b.
    x.post(Key::new("k", 0), "after").await.expect("post on b");
    let y = c.client().await;
    y.post(Key::new("k", 9), "from y").await.expect("post");
    let mut seen_y = false;
    for _ in 0..20 {
        if let Event::Updated(row) = next_event(&mut x_sub).await {
            if row.owner == y.id() {
                seen_y = true;
                break;
            }
        }
    }
    assert!(seen_y, "x's subscription follows it to b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_during_a_migration_are_neither_lost_nor_doubled() {
    let nodes = mesh3().await;
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let x = a.client().await;
    let w = c.client().await;
    let (_, mut w_sub) = w
        .subscribe(vec![spec("load")], None)
        .await
        .expect("subscribe");
    let writer = {
        let x = x.clone();
        tokio::spawn(async move {
            let mut last = Vec::new();
            for i in 0..600u32 {
                let v = x
                    .post(Key::new("load", i % 20), format!("{i}"))
                    .await
                    .expect("no error surfaces to the client");
                last.push((i % 20, i, v));
            }
            last
        })
    };
    tokio::time::sleep(Duration::from_millis(30)).await;
    within("migration under load", a.node.migrate(x.id(), b.node.id()))
        .await
        .expect("migrated");
    let acked = within("writer", writer).await.expect("writer task");
    // Versions acknowledged to the client increase.
    let mut prev = 0;
    for (_, _, v) in &acked {
        assert!(*v > prev, "acknowledged versions increase across the move");
        prev = *v;
    }
    // Every key holds its last written value, on b.
    let rows = w.get(vec![spec("load")]).await.expect("get");
    assert_eq!(
        rows.len(),
        20,
        "rows a {} b {} c {}; holders at c {:?}, at b {:?}, at a {:?} (a {:?} b {:?} c {:?}); x on {:?}",
        a.node.stats().rows,
        b.node.stats().rows,
        c.node.stats().rows,
        c.node.holders_of("load"),
        b.node.holders_of("load"),
        a.node.holders_of("load"),
        a.node.id(),
        b.node.id(),
        c.node.id(),
        x.node_id()
    );
    for row in &rows {
        let last = acked
            .iter()
            .rev()
            .find(|(k, _, _)| *k == row.key.secondary)
            .expect("written");
        assert_eq!(row.data, last.1.to_string(), "no acknowledged post lost");
        assert_eq!(row.node, b.node.id());
    }
    // The watcher saw no deletion, and versions per row only went up.
    w.ping().await.expect("ping");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut versions: HashMap<Key, u64> = HashMap::new();
    while let Some(e) = w_sub.try_next() {
        match e {
            Event::Updated(row) => {
                let v = versions.entry(row.key.clone()).or_insert(0);
                assert!(row.version > *v, "in order, no duplicate");
                *v = row.version;
            }
            other => panic!("no deletion during a migration, got {other:?}"),
        }
    }
}

/// A client that never reaches the target: the move rolls back and nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_arrives_rolls_back() {
    let nodes = mesh3().await;
    let (a, b) = (&nodes[0], &nodes[1]);
    // A raw client that ignores the Migrate instruction.
    let mut raw = raw_connect(a.addr()).await;
    raw.frame(&ClientFrame::Hello(Hello::current())).await;
    raw.frame(&ClientFrame::Request {
        id: 1,
        op: Request::Post {
            key: Key::new("stay", 1),
            data: Bytes::from_static(b"here"),
        },
    })
    .await;
    let mut reader = FrameReader::new(&mut raw.recv, 1 << 20);
    let id = match within("welcome", reader.next::<ServerFrame>())
        .await
        .expect("frame")
    {
        Some(ServerFrame::Welcome(w)) => w.client_id,
        other => panic!("expected welcome, got {other:?}"),
    };
    let w = nodes[2].client().await;
    wait_until("the row is posted", || a.node.stats().rows >= 3).await;
    let baseline = b.node.stats().clients;
    let err = within("rollback", a.node.migrate(id, b.node.id()))
        .await
        .expect_err("never arrives");
    assert_eq!(err, MigrateError::Timeout);
    let rows = w.get(vec![spec("stay")]).await.expect("get");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].node, a.node.id(), "still served by a");
    wait_until("b dropped its pending copy", || {
        b.node.stats().clients == baseline
    })
    .await;
    assert_eq!(b.node.client_count(), 0);
    // And a can still move it later, or serve it: the client is unharmed.
    assert_eq!(a.node.clients(), vec![id]);
}

/// The source dies after preparing: the client presents its ticket to the target and lands
/// there with its rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_dying_after_prepare_still_lands_the_client_on_the_target() {
    let mut nodes = mesh3().await;
    let a = nodes.remove(0);
    let (b, c) = (&nodes[0], &nodes[1]);
    let mut raw = raw_connect(a.addr()).await;
    raw.frame(&ClientFrame::Hello(Hello::current())).await;
    raw.frame(&ClientFrame::Request {
        id: 1,
        op: Request::Post {
            key: Key::new("carry", 1),
            data: Bytes::from_static(b"my row"),
        },
    })
    .await;
    let mut reader = FrameReader::new(&mut raw.recv, 1 << 20);
    let id = match within("welcome", reader.next::<ServerFrame>())
        .await
        .expect("frame")
    {
        Some(ServerFrame::Welcome(w)) => w.client_id,
        other => panic!("expected welcome, got {other:?}"),
    };
    wait_until("the row is posted", || {
        a.node.clients() == vec![id] && a.node.stats().rows >= 3
    })
    .await;
    let target = b.node.id();
    let shared_a = std::sync::Arc::new(a);
    let mover = {
        let a = shared_a.clone();
        tokio::spawn(async move { a.node.migrate(id, target).await })
    };
    // Read until the Migrate instruction arrives; keep its ticket.
    let (ticket, fingerprint) = within("migrate instruction", async {
        loop {
            match reader.next::<ServerFrame>().await.expect("frame") {
                Some(ServerFrame::Migrate {
                    ticket,
                    fingerprint,
                    node,
                    ..
                }) => {
                    assert_eq!(node, target);
                    break (ticket, fingerprint);
                }
                Some(_) => continue,
                None => panic!("stream ended"),
            }
        }
    })
    .await;
    mover.abort();
    let _ = mover.await;
    let a = std::sync::Arc::try_unwrap(shared_a).unwrap_or_else(|_| panic!("a still shared"));
    a.node.abort("test: the source dies").await;

    let mut opts = ClientOptions::new(cloudmesh::transport::Trust::Pin(fingerprint));
    opts.ticket = Some(ticket);
    let landed = within("landing", Client::connect(b.addr(), opts))
        .await
        .expect("the ticket works without the source");
    assert_eq!(landed.id(), id, "same client");
    let w = c.client().await;
    let rows = within("rows", async {
        loop {
            let rows = w.get(vec![spec("carry")]).await.expect("get");
            if rows.len() == 1 {
                return rows;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(rows[0].data, "my row");
    assert_eq!(rows[0].node, b.node.id());
    assert_eq!(rows[0].owner, id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_a_node_moves_every_client_and_ends_drained() {
    let nodes = mesh3().await;
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    wait_until("loads known everywhere", || {
        nodes.iter().all(|t| t.node.loads().len() == 3)
    })
    .await;
    assert_eq!(a.node.host(), a.node.id(), "a is the oldest: host");
    let mut clients = Vec::new();
    for i in 0..40u32 {
        let cl = a.client().await;
        cl.post(Key::new("drain", i), format!("client {i}"))
            .await
            .expect("post");
        clients.push(cl);
    }
    let watcher = c.client().await;
    let (before, mut sub) = watcher
        .subscribe(vec![spec("drain")], None)
        .await
        .expect("subscribe");
    assert_eq!(before.len(), 40);

    let moved = within("drain", a.node.drain()).await.expect("drained");
    assert_eq!(moved, 40);
    assert_eq!(a.node.state(), NodeState::Drained);
    wait_until("a's old links closed", || a.node.client_count() == 0).await;
    wait_until("everyone sees a Drained and a new host", || {
        nodes.iter().all(|t| {
            t.node
                .members()
                .iter()
                .any(|m| m.id == a.node.id() && m.state == NodeState::Drained)
                && t.node.host() == b.node.id()
        })
    })
    .await;

    let rows = watcher.get(vec![spec("drain")]).await.expect("get");
    assert_eq!(rows.len(), 40);
    for row in &rows {
        assert_ne!(row.node, a.node.id());
        let old = before.iter().find(|r| r.key == row.key).expect("known");
        assert_eq!(
            (row.owner, &row.data),
            (old.owner, &old.data),
            "same owner, same data"
        );
    }
    let on_b = rows.iter().filter(|r| r.node == b.node.id()).count();
    assert!(
        on_b > 0 && on_b < 40,
        "the drain spreads clients ({on_b} of 40 on b)"
    );
    for (i, cl) in clients.iter().enumerate() {
        cl.post(Key::new("drain", i as u32), "still here")
            .await
            .expect("clients keep working");
        assert_ne!(cl.node_id(), a.node.id());
    }
    watcher.ping().await.expect("ping");
    while let Some(e) = sub.try_next() {
        assert!(
            matches!(e, Event::Updated(_)),
            "no deletion during a drain: {e:?}"
        );
    }

    a.node.undrain();
    wait_until("a is Active again everywhere", || {
        nodes.iter().all(|t| {
            t.node
                .members()
                .iter()
                .any(|m| m.id == a.node.id() && m.state == NodeState::Active)
        })
    })
    .await;
}

/// A node that joins takes load from the busy one through rebalance, at a bounded rate,
/// and once the loads are within the threshold nothing more moves (hysteresis).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_node_takes_load_through_rebalance() {
    let a = node_with(|c| {
        mesh_config(c, "a");
        c.rebalance_interval = Duration::from_millis(200);
    })
    .await;
    let mut clients = Vec::new();
    for i in 0..30u32 {
        let cl = a.client().await;
        cl.post(Key::new("spread", i), format!("{i}"))
            .await
            .expect("post");
        clients.push(cl);
    }
    let via = a.addr().to_string();
    let b = node_with(move |c| {
        mesh_config(c, "b");
        c.join = vec![via];
        c.rebalance_interval = Duration::from_millis(200);
    })
    .await;
    let watcher = b.client().await;
    let (before, mut sub) = watcher
        .subscribe(vec![spec("spread")], None)
        .await
        .expect("subscribe");
    assert_eq!(before.len(), 30);
    wait_until("load spread over both nodes and settled", || {
        let (na, nb) = (a.node.client_count(), b.node.client_count());
        na >= 10
            && nb >= 10
            && na + nb == 31
            && a.node.rebalance().is_none()
            && b.node.rebalance().is_none()
    })
    .await;
    let rows = watcher.get(vec![spec("spread")]).await.expect("get");
    assert_eq!(rows.len(), 30);
    assert!(
        rows.iter().any(|r| r.node == b.node.id()),
        "some rows moved to b with their clients"
    );
    for row in &rows {
        let old = before.iter().find(|r| r.key == row.key).expect("known");
        assert_eq!((row.owner, &row.data), (old.owner, &old.data));
    }
    for cl in &clients {
        cl.ping().await.expect("every client still served");
    }
    watcher.ping().await.expect("ping");
    while let Some(e) = sub.try_next() {
        assert!(
            matches!(e, Event::Updated(_)),
            "no deletion while rebalancing: {e:?}"
        );
    }
}
