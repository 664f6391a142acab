//! The mesh in-process: several real nodes on 127.0.0.1 talking real QUIC.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use cloudmesh::client::Event;
use cloudmesh::mesh::MeshSecret;
use cloudmesh::proto::{DeleteReason, GetQuery, Key, KeySpec, NodeId};
use cloudmesh::MeshEvent;
use common::*;

fn secret(b: u8) -> MeshSecret {
    MeshSecret::new(vec![b; 32]).expect("secret")
}

fn spec(s: &str) -> KeySpec {
    s.parse().expect("key spec")
}

async fn mesh_node(name: &str, s: Option<MeshSecret>, join: Vec<String>) -> TestNode {
    init_test_log();
    let name = name.to_owned();
    node_with(move |c| {
        c.name = name;
        c.secret = s;
        c.join = join;
        c.timing.idle_timeout = Duration::from_secs(2);
        c.timing.keep_alive = Duration::from_millis(500);
    })
    .await
}

/// Starts `n` nodes: the first alone, the rest joining it through the name `localhost`,
/// all at once. Waits until every node is linked to every other.
async fn mesh(n: usize) -> Vec<TestNode> {
    let first = mesh_node("node-0", Some(secret(7)), vec![]).await;
    let via = format!("localhost:{}", first.addr().port());
    let joins = (1..n).map(|i| mesh_node_owned(format!("node-{i}"), via.clone()));
    let mut nodes = vec![first];
    nodes.extend(join_all(joins).await);
    wait_full_mesh(&nodes).await;
    nodes
}

async fn mesh_node_owned(name: String, via: String) -> TestNode {
    mesh_node(&name, Some(secret(7)), vec![via]).await
}

async fn join_all<F>(futs: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}

async fn wait_full_mesh(nodes: &[TestNode]) {
    let n = nodes.len();
    let converged = || {
        let host = nodes[0].node.host();
        nodes.iter().all(|t| {
            // Links and the member view converge separately (a link is up before the
            // gossip that lists its node as a member arrives): wait for both.
            t.node.peers().len() == n - 1 && t.node.members().len() == n && t.node.host() == host
        })
    };
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !converged() {
        if tokio::time::Instant::now() > deadline {
            let view: Vec<String> = nodes
                .iter()
                .map(|t| {
                    format!(
                        "{} {:?}: peers {:?}, members {}, host {:?}",
                        t.node.name(),
                        t.node.id(),
                        t.node.peers(),
                        t.node.members().len(),
                        t.node.host()
                    )
                })
                .collect();
            panic!(
                "no full mesh with one host within {DEADLINE:?}:\n{}",
                view.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_joining_through_a_dns_name_form_a_full_mesh_with_one_host() {
    let nodes = mesh(5).await;
    let host = nodes[0].node.host();
    assert_eq!(
        host,
        nodes[0].node.id(),
        "the first node is the oldest member, so host"
    );
    for t in &nodes {
        let members = t.node.members();
        assert_eq!(members.len(), 5);
        let ids: HashSet<NodeId> = members.iter().map(|m| m.id).collect();
        assert_eq!(ids.len(), 5);
        assert_eq!(members[0].id, host, "oldest first");
    }
    // Every node's directory row is visible from any node, with exactly one host flag.
    let c = nodes[3].client().await;
    let rows = within("cloud.nodes", async {
        loop {
            let rows = c.get(vec![spec("cloud.nodes")]).await.expect("get");
            let hosts = rows
                .iter()
                .filter(|r| {
                    serde_json::from_slice::<serde_json::Value>(&r.data).expect("json")["host"]
                        == true
                })
                .count();
            if rows.len() == 5 && hosts == 1 {
                return rows;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let (row, record) = rows
        .iter()
        .map(|r| {
            let v = serde_json::from_slice::<serde_json::Value>(&r.data).expect("json");
            (r, v)
        })
        .find(|(_, v)| v["host"] == true)
        .expect("a host row");
    assert_eq!(row.node, host, "the host's row is written by the host");
    assert_eq!(record["state"], "Active");
    assert!(
        record.get("id").is_none() && record.get("internal_addresses").is_none(),
        "clients see no ids or internal addresses unless the operator allows: {record}"
    );
    let load = c.get(vec![spec("cloud.load")]).await.expect("load rows");
    assert_eq!(load.len(), 5, "every node publishes cloud.load/0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_joining_each_other_at_once_converge_to_one_host() {
    let port = |_: u8| {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        s.local_addr().expect("addr").port()
    };
    let (pa, pb) = (port(0), port(1));
    let make = |name: &'static str, me: u16, other: u16| {
        node_with(move |c| {
            c.name = name.into();
            c.listen = format!("127.0.0.1:{me}").parse().expect("addr");
            c.secret = Some(secret(7));
            c.join = vec![format!("127.0.0.1:{other}")];
        })
    };
    let (a, b) = tokio::join!(make("a", pa, pb), make("b", pb, pa));
    let nodes = [a, b];
    wait_full_mesh(&nodes).await;
    assert_eq!(nodes[0].node.host(), nodes[1].node.host());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_on_one_node_gets_and_subscribes_to_rows_on_all_others() {
    let nodes = mesh(5).await;
    let mut posters = Vec::new();
    for (i, t) in nodes.iter().enumerate().skip(1) {
        let c = t.client().await;
        c.post(Key::new("players", i as u32), format!("on node {i}"))
            .await
            .expect("post");
        posters.push(c);
    }
    let reader = nodes[0].client().await;
    let rows = reader.get(vec![spec("players")]).await.expect("get");
    assert_eq!(rows.len(), 4);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(
            row.node,
            nodes[i + 1].node.id(),
            "each row names the node holding it"
        );
        assert_eq!(row.data, format!("on node {}", i + 1));
    }

    let (snapshot, mut sub) = reader
        .subscribe(vec![spec("players")], None)
        .await
        .expect("subscribe");
    assert_eq!(snapshot, rows);
    posters[1]
        .post(Key::new("players", 2), "moved")
        .await
        .expect("update");
    match next_event(&mut sub).await {
        Event::Updated(row) => {
            assert_eq!(row.data, "moved");
            assert_eq!(row.node, nodes[2].node.id());
            assert!(row.version > rows[1].version);
        }
        other => panic!("expected an update, got {other:?}"),
    }
    posters[3]
        .release(vec![Key::new("players", 4)])
        .await
        .expect("release");
    assert!(matches!(
        next_event(&mut sub).await,
        Event::Deleted {
            reason: DeleteReason::Released,
            ..
        }
    ));
    let leaver = posters.remove(0);
    leaver.close().await;
    match next_event(&mut sub).await {
        Event::Deleted { row, reason } => {
            assert_eq!(reason, DeleteReason::Disconnected);
            assert_eq!(row.node, nodes[1].node.id());
        }
        other => panic!("expected a deletion, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_spanning_five_nodes_and_100k_rows_returns_each_row_once() {
    const PER_NODE: u32 = 20_000;
    let nodes = mesh(5).await;
    let mut clients = Vec::new();
    for t in &nodes {
        clients.push(t.client().await);
    }
    within("posting 100,000 rows on 5 nodes", async {
        let mut tasks = Vec::new();
        for (n, c) in clients.iter().enumerate() {
            for w in 0..4u32 {
                let c = c.clone();
                tasks.push(tokio::spawn(async move {
                    for i in (w..PER_NODE).step_by(4) {
                        // Interleave the nodes' keys so every page mixes all five.
                        c.post(Key::new("wide", i * 5 + n as u32), Bytes::new())
                            .await
                            .expect("post");
                    }
                }));
            }
        }
        for t in tasks {
            t.await.expect("poster");
        }
    })
    .await;
    wait_until("every node sees all holders of `wide`", || {
        nodes.iter().all(|t| t.node.holders_of("wide").len() == 5)
    })
    .await;
    let reader = nodes[2].client().await;
    let mut query = GetQuery {
        keys: vec![spec("wide")],
        ..GetQuery::default()
    };
    let mut seen = HashSet::new();
    let mut pages = 0;
    within("paging through 100,000 rows", async {
        loop {
            pages += 1;
            assert!(pages < 10_000, "paging must terminate");
            let page = reader.get_page(query.clone()).await.expect("page");
            assert!(page.incomplete.is_empty(), "every node answered");
            for row in &page.rows {
                assert!(
                    seen.insert((row.key.clone(), row.owner)),
                    "row {} twice",
                    row.key
                );
            }
            match page.next {
                Some(c) => query.start = Some(c),
                None => break,
            }
        }
    })
    .await;
    assert_eq!(seen.len() as u32, 5 * PER_NODE);
    assert!(pages >= 10, "{pages} pages");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_is_refused_both_ways_and_nothing_crosses() {
    let a = mesh_node("a", Some(secret(1)), vec![]).await;
    let b = mesh_node("b", Some(secret(2)), vec![a.addr().to_string()]).await;
    // b could not join a: it bootstrapped its own mesh.
    assert!(a.node.peers().is_empty() && b.node.peers().is_empty());
    assert_eq!(b.node.host(), b.node.id());
    // And a correct node (secret 1) cannot join b.
    let c = mesh_node("c", Some(secret(1)), vec![b.addr().to_string()]).await;
    assert!(c.node.peers().is_empty() && b.node.peers().is_empty());

    let on_a = a.client().await;
    let on_b = b.client().await;
    let (_, mut sub_a) = on_a
        .subscribe(vec![spec("secret")], None)
        .await
        .expect("subscribe");
    on_b.post(Key::new("secret", 1), "b only")
        .await
        .expect("post");
    assert!(
        on_a.get(vec![spec("secret")])
            .await
            .expect("get")
            .is_empty(),
        "no row crosses"
    );
    on_a.ping().await.expect("ping");
    assert_eq!(sub_a.try_next(), None, "no change crosses");
    assert_eq!(a.node.members().len(), 1);
    // A node without any secret refuses peers outright.
    let lone = mesh_node("lone", None, vec![]).await;
    let d = mesh_node("d", Some(secret(1)), vec![lone.addr().to_string()]).await;
    assert!(d.node.peers().is_empty() && lone.node.peers().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_node_yields_node_lost_deletions_and_a_new_host() {
    let mut nodes = mesh(3).await;
    let host = nodes.remove(0);
    let on_host = host.client().await;
    on_host
        .post(Key::new("presence", 1), "alice")
        .await
        .expect("post");
    on_host
        .post(Key::new("presence", 2), "bob")
        .await
        .expect("post");
    let mut subs = Vec::new();
    for t in &nodes {
        let c = t.client().await;
        let (snap, sub) = c
            .subscribe(vec![spec("presence")], None)
            .await
            .expect("subscribe");
        assert_eq!(snap.len(), 2);
        subs.push((c, sub, snap));
    }
    let host_id = host.node.id();
    let mut events = nodes[0].node.events();
    // A crash, not a clean stop: the mesh must notice it by itself.
    host.node.abort("test: host goes away").await;
    for (_, sub, snap) in &mut subs {
        let mut gone = HashSet::new();
        for _ in 0..2 {
            match next_event(sub).await {
                Event::Deleted { row, reason } => {
                    assert_eq!(reason, DeleteReason::NodeLost);
                    assert_eq!(row.node, host_id);
                    let before = snap.iter().find(|r| r.key == row.key).expect("known row");
                    assert!(row.version > before.version);
                    gone.insert(row.key);
                }
                other => panic!("expected NodeLost, got {other:?}"),
            }
        }
        assert_eq!(gone.len(), 2);
    }
    wait_until("the survivors elect the older of them", || {
        nodes.iter().all(|t| {
            t.node.host() == nodes[0].node.host()
                && t.node.host() != host_id
                && t.node.members().len() == 2
        })
    })
    .await;
    assert!(subs[0]
        .0
        .get(vec![spec("presence")])
        .await
        .expect("get")
        .is_empty());
    // The admin layer sees the same story as events.
    let mut seen = Vec::new();
    while let Ok(e) = events.try_recv() {
        seen.push(e);
    }
    assert!(
        seen.contains(&MeshEvent::PeerLost {
            node: host_id,
            rows: 2
        }),
        "{seen:?}"
    );
    let new_host = nodes[0].node.host();
    assert!(
        seen.contains(&MeshEvent::HostChanged {
            old: host_id,
            new: new_host
        }),
        "{seen:?}"
    );
}

/// RakNet lost remote rows when gets ran concurrently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_gets_across_nodes_lose_no_remote_rows() {
    let nodes = mesh(3).await;
    let mut posters = Vec::new();
    for (n, t) in nodes.iter().enumerate() {
        let c = t.client().await;
        for i in 0..100u32 {
            c.post(Key::new("rows", i * 3 + n as u32), "x")
                .await
                .expect("post");
        }
        posters.push(c);
    }
    wait_until("holders known", || {
        nodes.iter().all(|t| t.node.holders_of("rows").len() == 3)
    })
    .await;
    let mut tasks = Vec::new();
    for t in &nodes {
        let c = t.client().await;
        for _ in 0..20 {
            let c = c.clone();
            tasks.push(tokio::spawn(async move {
                c.get(vec![spec("rows")]).await.expect("get").len()
            }));
        }
    }
    for t in tasks {
        assert_eq!(
            within("get", t).await.expect("task"),
            300,
            "every concurrent get sees every row"
        );
    }
}

/// RakNet's re-post inflated counters so a released key stayed indexed at other servers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reposting_then_releasing_removes_the_key_from_peers_indexes() {
    let nodes = mesh(3).await;
    let c = nodes[1].client().await;
    for i in 0..300 {
        c.post(Key::new("again", 1), format!("v{i}"))
            .await
            .expect("repost");
    }
    let b = nodes[1].node.id();
    wait_until("peers index the key as held by b", || {
        nodes.iter().all(|t| t.node.holders_of("again") == vec![b])
    })
    .await;
    c.release(vec![Key::new("again", 1)])
        .await
        .expect("release");
    wait_until("peers drop the key from their index", || {
        nodes.iter().all(|t| t.node.holders_of("again").is_empty())
    })
    .await;
}

/// Changes flow only where wanted: interest registered at peers is withdrawn when the last
/// local subscriber leaves, and registered at nodes that join later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interest_at_peers_follows_local_subscribers() {
    let nodes = mesh(2).await;
    let remote_interest = |t: &TestNode| t.node.stats().subscriptions;
    let watcher = nodes[0].client().await;
    let (_, sub) = watcher
        .subscribe(vec![spec("zone")], None)
        .await
        .expect("subscribe");
    wait_until("interest registered at the peer", || {
        remote_interest(&nodes[1]) == 1
    })
    .await;
    drop(sub);
    wait_until("interest withdrawn at the peer", || {
        remote_interest(&nodes[1]) == 0
    })
    .await;

    let (_, mut sub) = watcher
        .subscribe(vec![spec("zone")], None)
        .await
        .expect("subscribe again");
    let late = mesh_node("late", Some(secret(7)), vec![nodes[0].addr().to_string()]).await;
    wait_until("the late node learns the existing interest", || {
        remote_interest(&late) == 1
    })
    .await;
    let poster = late.client().await;
    poster
        .post(Key::new("zone", 9), "from the late node")
        .await
        .expect("post");
    match next_event(&mut sub).await {
        Event::Updated(row) => assert_eq!(row.node, late.node.id()),
        other => panic!("expected an update from the late node, got {other:?}"),
    }
}

/// A node that stops cleanly moves its clients away first (watchers see their rows move,
/// never a deletion), then leaves: the others drop it at once, as left, not lost, and the
/// next oldest becomes host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_moves_clients_away_then_leaves() {
    let mut nodes = mesh(3).await;
    wait_until("loads known everywhere", || {
        nodes.iter().all(|t| t.node.loads().len() == 3)
    })
    .await;
    let host = nodes.remove(0);
    let host_id = host.node.id();
    let player = host.client().await;
    player
        .post(Key::new("presence", 7), "carol")
        .await
        .expect("post");
    let watcher = nodes[1].client().await;
    let (snap, mut sub) = watcher
        .subscribe(vec![spec("presence")], None)
        .await
        .expect("subscribe");
    assert_eq!(snap.len(), 1);
    let mut events = nodes[0].node.events();
    host.node.shutdown("test: clean stop").await;
    // The row moves: an update naming another node, no deletion.
    match next_event(&mut sub).await {
        Event::Updated(row) => {
            assert_eq!(row.key, Key::new("presence", 7));
            assert_ne!(row.node, host_id, "the row lives on a survivor now");
        }
        other => panic!("expected the row to move, got {other:?}"),
    }
    wait_until(
        "the survivors drop the node and agree on a new host",
        || {
            nodes.iter().all(|t| {
                t.node.members().len() == 2
                    && t.node.host() != host_id
                    && t.node.host() == nodes[0].node.host()
            })
        },
    )
    .await;
    player
        .ping()
        .await
        .expect("the player is served by a survivor");
    let mut seen = Vec::new();
    while let Ok(e) = events.try_recv() {
        seen.push(e);
    }
    assert!(
        seen.iter()
            .any(|e| matches!(e, MeshEvent::PeerLeft { node, .. } if *node == host_id)),
        "{seen:?}"
    );
    assert!(
        !seen
            .iter()
            .any(|e| matches!(e, MeshEvent::PeerLost { node, .. } if *node == host_id)),
        "a clean stop is not a loss: {seen:?}"
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(300), sub.next())
            .await
            .is_err(),
        "no deletion follows"
    );
}

/// Without the drain, a stopping node's clients are disconnected and the rows still on it
/// are deleted for watchers with a reason of their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_without_drain_deletes_rows_as_node_left() {
    let first = mesh_node("node-0", Some(secret(7)), vec![]).await;
    let via = format!("127.0.0.1:{}", first.addr().port());
    let second = node_with(move |c| {
        c.name = "node-1".into();
        c.secret = Some(secret(7));
        c.join = vec![via];
        c.drain_on_stop = false;
    })
    .await;
    let pair = vec![first, second];
    wait_full_mesh(&pair).await;
    let [first, second] = <[TestNode; 2]>::try_from(pair).unwrap_or_else(|_| panic!("two"));
    let player = second.client().await;
    player
        .post(Key::new("presence", 9), "dave")
        .await
        .expect("post");
    let watcher = first.client().await;
    let (snap, mut sub) = watcher
        .subscribe(vec![spec("presence")], None)
        .await
        .expect("subscribe");
    assert_eq!(snap.len(), 1);
    second.node.shutdown("test: stop without drain").await;
    match next_event(&mut sub).await {
        Event::Deleted { row, reason } => {
            assert_eq!(reason, DeleteReason::NodeLeft);
            assert_eq!(row.key, Key::new("presence", 9));
        }
        other => panic!("expected a node_left deletion, got {other:?}"),
    }
    wait_until("the node is dropped at once", || {
        first.node.members().len() == 1
    })
    .await;
}

/// The mesh secret is rotated node by node with the mesh whole throughout: every node
/// first also accepts the new secret, then proves with it (still accepting the old), then
/// drops the old. After each restart the restarted node links to the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mesh_secret_rotates_node_by_node_without_a_split() {
    init_test_log();
    let (old, new) = (secret(7), secret(8));
    async fn start(name: &'static str, s: MeshSecret, join: Option<String>) -> TestNode {
        node_with(move |c| {
            c.name = name.into();
            c.secret = Some(s);
            c.join = join.into_iter().collect();
        })
        .await
    }
    let a = start("a", old.clone(), None).await;
    let b = start("b", old.clone(), Some(a.addr().to_string())).await;
    let mut nodes = vec![a, b];
    wait_full_mesh(&nodes).await;
    let steps = [
        old.clone().accepting(new.clone()),
        new.clone().accepting(old.clone()),
        new.clone(),
    ];
    for (step, ring) in steps.into_iter().enumerate() {
        for (i, name) in ["a", "b"].into_iter().enumerate() {
            let stopped = nodes.remove(i);
            stopped
                .node
                .shutdown("test: restart with the next secret")
                .await;
            let other = nodes[0].addr().to_string();
            nodes.insert(i, start(name, ring.clone(), Some(other)).await);
            wait_full_mesh(&nodes).await;
            eprintln!("step {step}: {name} restarted and linked");
        }
    }
    // At the end the old secret no longer gets in: a node with it gives up joining (start
    // returns once it has) and starts a mesh of its own.
    let outsider = start("outsider", old, Some(nodes[0].addr().to_string())).await;
    assert!(
        outsider.node.peers().is_empty(),
        "the old secret is refused"
    );
    assert_eq!(outsider.node.host(), outsider.node.id());
}
