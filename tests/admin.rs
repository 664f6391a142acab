//! The admin socket and protocol (issue 5) against real nodes: socket security,
//! bad requests, commands forwarded over the mesh to the node they name, and `watch`.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cloudmesh::admin::{
    AdminClient, AdminError, AdminSocket, AdminSocketError, Command, Event, Response,
    MAX_REQUEST_BYTES,
};
use cloudmesh::mesh::MeshSecret;
use cloudmesh::proto::{Key, KeySpec, NodeState};
use cloudmesh::NodeConfig;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

fn mesh_config(c: &mut NodeConfig, name: &str) {
    init_test_log();
    c.name = name.into();
    c.secret = Some(MeshSecret::new(vec![7; 32]).expect("secret"));
    c.migration_timeout = Duration::from_secs(5);
    c.load_interval = Duration::from_millis(100);
    c.rebalance_interval = Duration::ZERO;
}

async fn mesh3() -> Vec<TestNode> {
    mesh_of(&["a", "b", "c"], mesh_config).await
}

/// Serves `node`'s admin socket in its data directory; returns the path.
fn serve_admin(node: &TestNode) -> PathBuf {
    let path = node.dir.path().join("run").join("admin.sock");
    let socket = AdminSocket::bind(&path).expect("admin socket binds");
    let handle = node.node.admin_handle();
    // Never flips: the server stops with the test's runtime.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        socket.serve(handle, stopped).await;
        drop(stop);
    });
    path
}

async fn call(path: &Path, command: Command) -> Response {
    let mut c = within("admin connect", AdminClient::connect(path))
        .await
        .expect("admin socket answers");
    within("admin call", c.call(command))
        .await
        .expect("an answer")
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn socket_is_private_a_stale_one_is_replaced_and_a_second_server_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cloudd").join("admin.sock");
    let first = AdminSocket::bind(&path).expect("binds");
    assert_eq!(mode(&path), 0o600, "socket only for the daemon's user");
    assert_eq!(
        mode(path.parent().expect("dir")),
        0o700,
        "directory it made"
    );

    match AdminSocket::bind(&path) {
        Err(e @ AdminSocketError::InUse { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("another cloudd"), "{msg}");
            assert!(msg.contains("--admin-socket"), "says what to do: {msg}");
        }
        other => panic!("a second server on the same path is refused, got {other:?}"),
    }
    assert!(
        path.exists(),
        "the refused server left the first one's socket alone"
    );
    drop(first);
    assert!(!path.exists(), "a stopping server removes its socket");

    // A killed daemon leaves its socket file behind; the lock (released by the kernel) tells
    // the next one it is stale.
    let stale = std::os::unix::net::UnixListener::bind(&path).expect("stale socket");
    drop(stale);
    assert!(path.exists());
    let second = AdminSocket::bind(&path).expect("replaces the stale socket");
    assert_eq!(mode(&path), 0o600);
    drop(second);

    // Something that is not a socket is never deleted.
    std::fs::write(&path, b"precious").expect("write");
    match AdminSocket::bind(&path) {
        Err(AdminSocketError::NotASocket { .. }) => {}
        other => panic!("a regular file is not replaced, got {other:?}"),
    }
    assert_eq!(std::fs::read(&path).expect("still there"), b"precious");
}

/// Sends raw bytes as one admin connection; returns the decoded answers until it closes.
async fn raw_exchange(path: &Path, bytes: &[u8]) -> Vec<serde_json::Value> {
    let mut s = UnixStream::connect(path).await.expect("connects");
    s.write_all(bytes).await.expect("write");
    s.shutdown().await.expect("half-close");
    let mut out = Vec::new();
    within("answers until close", async {
        loop {
            let mut len = [0u8; 4];
            if s.read_exact(&mut len).await.is_err() {
                break;
            }
            let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
            s.read_exact(&mut body).await.expect("body");
            out.push(serde_json::from_slice(&body).expect("answers are JSON"));
        }
    })
    .await;
    out
}

fn framed(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversize_requests_get_typed_errors_and_the_socket_keeps_serving() {
    let n = node().await;
    let path = serve_admin(&n);

    // Garbage, an unknown command and an unknown version, then a good request, all on one
    // connection: each bad one is answered with an error and the connection goes on.
    let mut bytes = framed(b"\xff\x00not json");
    bytes.extend(framed(
        br#"{"version":1,"command":{"cmd":"self_destruct"}}"#,
    ));
    bytes.extend(framed(br#"{"version":99,"command":{"cmd":"status"}}"#));
    bytes.extend(framed(br#"{"version":1,"command":{"cmd":"status"}}"#));
    let answers = raw_exchange(&path, &bytes).await;
    let kinds: Vec<(&str, &str)> = answers
        .iter()
        .map(|a| {
            (
                a["type"].as_str().unwrap_or(""),
                a["error"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("error", "bad_request"),
            ("error", "bad_request"),
            ("error", "unsupported_version"),
            ("status", ""),
        ],
        "{answers:?}"
    );

    // A 4 GiB length: refused without reading it, and that connection is closed.
    let answers = raw_exchange(&path, &[0xff, 0xff, 0xff, 0xff, b'{']).await;
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(answers[0]["error"], "too_large", "{answers:?}");
    assert_eq!(answers[0]["max"], MAX_REQUEST_BYTES as u64);

    // Just over the limit, with the body really sent.
    let big = vec![b' '; MAX_REQUEST_BYTES + 1];
    let answers = raw_exchange(&path, &framed(&big)).await;
    assert_eq!(answers[0]["error"], "too_large", "{answers:?}");

    // Many junk connections at once, some cut mid-frame.
    let mut junk = Vec::new();
    for i in 0..100u32 {
        let path = path.clone();
        junk.push(tokio::spawn(async move {
            if let Ok(mut s) = UnixStream::connect(&path).await {
                let _ = s.write_all(&[0, 0, 1, (i % 251) as u8, b'{']).await;
            }
        }));
    }
    for j in junk {
        j.await.expect("junk task");
    }

    // Everyone else is unaffected.
    match call(&path, Command::Status).await {
        Response::Status(s) => assert_eq!(s.node.name, "test-node"),
        other => panic!("status after the abuse: {other:?}"),
    }
    let c = n.client().await;
    bystander_works(&c, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_asked_of_one_node_run_on_the_node_they_name() {
    let nodes = mesh3().await;
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let path = serve_admin(a);

    // Clients on b and c only, each holding rows.
    let on_b = b.client().await;
    let on_c1 = c.client().await;
    let on_c2 = c.client().await;
    for (i, cl) in [&on_b, &on_c1, &on_c2].into_iter().enumerate() {
        for s in 0..3u32 {
            cl.post(Key::new("players", i as u32 * 10 + s), format!("p{i}-{s}"))
                .await
                .expect("post");
        }
    }

    // nodes: all three, one host (a bootstrapped), a answering.
    let Response::Nodes { nodes: list } = call(&path, Command::Nodes).await else {
        panic!("nodes")
    };
    let names: Vec<&str> = list.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert_eq!(list.iter().filter(|n| n.host).count(), 1);
    assert!(list[0].host && list[0].local && list.iter().all(|n| n.linked));

    // clients --node c: c's two clients, asked of a.
    let Response::Clients {
        clients,
        incomplete,
    } = call(
        &path,
        Command::Clients {
            node: Some("c".into()),
            session: false,
        },
    )
    .await
    else {
        panic!("clients")
    };
    assert!(incomplete.is_empty());
    let mut ids: Vec<String> = clients.iter().map(|c| c.id.clone()).collect();
    ids.sort();
    let mut want = vec![on_c1.id().to_string(), on_c2.id().to_string()];
    want.sort();
    assert_eq!(ids, want);
    assert!(clients.iter().all(|x| x.node == "c" && x.rows == 3));
    assert!(clients.iter().all(|x| x.address.starts_with("127.0.0.1:")));

    // clients (whole mesh).
    let Response::Clients { clients, .. } = call(
        &path,
        Command::Clients {
            node: None,
            session: false,
        },
    )
    .await
    else {
        panic!("clients")
    };
    assert_eq!(clients.len(), 3);

    // keys: mesh-wide counts, and the rows with owners and nodes.
    let Response::Primaries { primaries, .. } = call(
        &path,
        Command::Keys {
            primary: None,
            secondary: None,
            query: None,
        },
    )
    .await
    else {
        panic!("primaries")
    };
    let players = primaries
        .iter()
        .find(|p| p.primary == "players")
        .expect("players listed");
    assert_eq!(players.rows, 9);
    assert_eq!(players.nodes, ["b", "c"]);
    let nodes_rows = primaries
        .iter()
        .find(|p| p.primary == "cloud.nodes")
        .expect("system rows listed");
    assert_eq!(nodes_rows.rows, 3, "one cloud.nodes row per node");

    let Response::Rows {
        rows, truncated, ..
    } = call(
        &path,
        Command::Keys {
            primary: Some("players".into()),
            secondary: Some(11),
            query: None,
        },
    )
    .await
    else {
        panic!("rows")
    };
    assert!(!truncated);
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].data.as_str(), rows[0].node.as_str()),
        ("p1-1", "c")
    );
    assert_eq!(rows[0].owner, on_c1.id().to_string());

    // Unknown names are typed errors that list what exists.
    match call(
        &path,
        Command::Drain {
            node: "node-9".into(),
            wait: false,
        },
    )
    .await
    {
        Response::Error(AdminError::UnknownNode { known, .. }) => {
            assert_eq!(known, ["a", "b", "c"])
        }
        other => panic!("{other:?}"),
    }
    match call(
        &path,
        Command::Migrate {
            client: "00000000000000ff".into(),
            to: "b".into(),
        },
    )
    .await
    {
        Response::Error(AdminError::UnknownClient { .. }) => {}
        other => panic!("{other:?}"),
    }

    // migrate: a client of c, moved to b, asked of a.
    match call(
        &path,
        Command::Migrate {
            client: on_c1.id().to_string(),
            to: "b".into(),
        },
    )
    .await
    {
        Response::Migrated { from, to, .. } => assert_eq!((from.as_str(), to.as_str()), ("c", "b")),
        other => panic!("{other:?}"),
    }
    wait_until("the client switched to b", || {
        on_c1.node_id() == b.node.id()
    })
    .await;

    // drain c --wait, asked of a: progress, then Drained; c's client lands elsewhere with
    // its rows.
    let mut admin = AdminClient::connect(&path).await.expect("connect");
    admin
        .send(Command::Drain {
            node: "c".into(),
            wait: true,
        })
        .await
        .expect("send");
    let mut progress = Vec::new();
    let last = within("drain to finish", async {
        loop {
            let r = admin.next().await.expect("frame");
            if r.is_final() {
                return r;
            }
            progress.push(r);
        }
    })
    .await;
    assert_eq!(
        last,
        Response::Drained {
            node: "c".into(),
            moved: 1
        },
        "after {progress:?}"
    );
    assert!(
        matches!(&progress[0], Response::Progress { node, moved: 0, remaining: 1 } if node == "c"),
        "{progress:?}"
    );
    assert_eq!(c.node.state(), NodeState::Drained);
    assert!(c.node.clients().is_empty());
    wait_until("the client switched away from c", || {
        on_c2.node_id() != c.node.id()
    })
    .await;
    let rows = on_c2
        .get(vec![KeySpec::primary("players")])
        .await
        .expect("get");
    let mine: Vec<_> = rows.iter().filter(|r| r.owner == on_c2.id()).collect();
    assert_eq!(mine.len(), 3, "rows intact after the drain: {rows:?}");
    assert!(mine.iter().all(|r| r.node == on_c2.node_id()));

    // undrain returns c to placement.
    match call(&path, Command::Undrain { node: "c".into() }).await {
        Response::Undrained { node } => assert_eq!(node, "c"),
        other => panic!("{other:?}"),
    }
    wait_until("c active again at a", || {
        a.node
            .members()
            .iter()
            .any(|m| m.name == "c" && m.state == NodeState::Active)
    })
    .await;
    let Response::Placement(report) = call(&path, Command::Place { position: None }).await else {
        panic!("place")
    };
    let cand = report
        .candidates
        .iter()
        .find(|x| x.name == "c")
        .expect("c is a candidate");
    assert!(
        cand.eligible,
        "undrained c takes placements again: {report:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_sends_a_snapshot_then_mesh_events_and_browsed_key_changes() {
    let nodes = mesh3().await;
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let path = serve_admin(a);
    let early = b.client().await;
    early
        .post(Key::new("lobby", 1), "hello")
        .await
        .expect("post");

    let mut w = AdminClient::connect(&path).await.expect("connect");
    w.send(Command::Watch {
        key: Some("lobby".into()),
    })
    .await
    .expect("send");
    let Response::Snapshot(snap) = within("snapshot", w.next()).await.expect("frame") else {
        panic!("first frame is the snapshot")
    };
    assert_eq!(snap.nodes.len(), 3);
    let rows = snap.rows.expect("browsed rows");
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].data.as_str(), rows[0].node.as_str()),
        ("hello", "b")
    );

    // Events until `done` says the test has seen what it waits for.
    async fn until(w: &mut AdminClient, what: &str, mut done: impl FnMut(&Event) -> bool) {
        within(what, async {
            loop {
                match w.next().await.expect("watch frame") {
                    Response::Event(e) if done(&e.event) => return,
                    Response::Event(_) | Response::Snapshot(_) => {}
                    other => panic!("unexpected {other:?}"),
                }
            }
        })
        .await
    }

    // A change on another node to the browsed key.
    let other = c.client().await;
    other
        .post(Key::new("lobby", 2), "from c")
        .await
        .expect("post");
    until(&mut w, "the row posted on c", |e| {
        matches!(e, Event::RowChanged(r) if r.secondary == 2 && r.data == "from c" && r.node == "c")
    })
    .await;

    // Load reports keep coming.
    until(
        &mut w,
        "a load report from b",
        |e| matches!(e, Event::Load(n) if n.name == "b"),
    )
    .await;

    // A drain of c (asked directly of c): state changes and c's own progress reach a.
    let drain = {
        let c = &c.node;
        c.drain()
    };
    let (result, ()) = tokio::join!(drain, async {
        until(&mut w, "c draining", |e| {
            matches!(e, Event::StateChanged { node, state } if node == "c" && state == "Draining")
        })
        .await;
        // Progress comes over the peer link, the state change through the membership
        // protocol: either may arrive first.
        let (mut progress, mut drained) = (false, false);
        until(&mut w, "c's drain progress and c drained", |e| {
            match e {
                Event::DrainProgress {
                    node, remaining: 0, ..
                } if node == "c" => progress = true,
                Event::StateChanged { node, state } if node == "c" && state == "Drained" => {
                    drained = true
                }
                _ => {}
            }
            progress && drained
        })
        .await;
    });
    assert_eq!(result, Ok(1));

    // The browsed row's owner leaves: a deletion.
    let gone = early.id().to_string();
    early.close().await;
    until(&mut w, "the deletion of b's row", |e| {
        matches!(e, Event::RowDeleted { row, reason } if row.owner == gone && reason == "Disconnected")
    })
    .await;
}
