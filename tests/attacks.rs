//! Attacks on the node's resources, made with a raw client built on `cloudmesh::proto`
//! against real `cloudd` processes on 127.0.0.1: each is refused with a typed error, the
//! node's memory stays within a stated bound (read from /proc), and a bystander on another
//! node keeps working.

mod common;
mod procs;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use cloudmesh::client::{Client, ClientOptions};
use cloudmesh::proto::{
    ClientFrame, ClientId, FrameReader, GetQuery, Hello, Key, KeySpec, Request, ServerFrame,
    WireError,
};
use cloudmesh::transport::{parse_fingerprint, Trust};
use procs::{start_cloudd, wait_until, Daemon, DEADLINE};

/// Resident memory of a process, from /proc (bytes).
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/PID/status");
    kib * 1024
}

fn secret_file(dir: &Path) -> String {
    let path = dir.join("mesh.secret");
    std::fs::write(&path, "attack-test-secret-0123456789\n").expect("write secret");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    path.to_str().expect("UTF-8").to_owned()
}

/// Three real nodes joined into one mesh; returns once each links the other two.
fn three_nodes(dir: &Path) -> Vec<Daemon> {
    let secret = secret_file(dir);
    let first = start_cloudd("node-1", &dir.join("1"), &["--secret-file", &secret]);
    let join = format!("127.0.0.1:{}", first.port());
    let mut nodes = vec![first];
    for name in ["node-2", "node-3"] {
        nodes.push(start_cloudd(
            name,
            &dir.join(name),
            &["--secret-file", &secret, "--join", &join],
        ));
    }
    for d in &nodes {
        wait_until(&format!("{} to link both others", d.name), DEADLINE, || {
            let (status, out, err) = d.admin_ctl(&["--json", "status"]).finish();
            if !status.success() {
                return Err(err);
            }
            let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| e.to_string())?;
            (v["linked"] == 2).then_some(()).ok_or(out)
        });
    }
    nodes
}

async fn client_of(d: &Daemon) -> Client {
    let trust = Trust::Pin(parse_fingerprint(&d.fingerprint).expect("fingerprint"));
    let addr = d.addr.parse().expect("addr");
    Client::connect(addr, ClientOptions::new(trust))
        .await
        .expect("client connects")
}

/// 256 key specs × 250,000 owners, subscribing: under 1 MiB on the wire (small ids are
/// short varints). Before owners were bounded this grew one node by 2.4 GB.
fn owners_attack() -> ClientFrame {
    ClientFrame::Request {
        id: 7,
        op: Request::Get(GetQuery {
            keys: (0..256)
                .map(|i| KeySpec::primary(format!("k{i}")))
                .collect(),
            owners: Some((1..=250_000).map(ClientId).collect()),
            start: None,
            limit: 0,
            subscribe: true,
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_attack_is_refused_with_a_typed_error_and_costs_no_memory() {
    common::init_test_log();
    let tmp = tempfile::tempdir().expect("temp dir");
    let nodes = three_nodes(tmp.path());
    let bystander = client_of(&nodes[2]).await;
    bystander
        .post(Key::new("stays", 1), "here")
        .await
        .expect("bystander posts");
    let before: Vec<u64> = nodes.iter().map(|d| rss(d.proc.pid())).collect();

    let frame =
        cloudmesh::proto::encode_to_bytes(&owners_attack(), 1 << 24).expect("attack encodes");
    assert!(
        frame.len() < 1024 * 1024,
        "the attack fits the default frame: {} bytes",
        frame.len()
    );
    let mut raw = common::raw_connect(nodes[0].addr.parse().expect("addr")).await;
    raw.frame(&ClientFrame::Hello(Hello::current())).await;
    let mut reader = FrameReader::new(raw.recv, 1 << 24);
    let welcome = common::within("welcome", reader.next::<ServerFrame>()).await;
    assert!(
        matches!(welcome, Ok(Some(ServerFrame::Welcome(_)))),
        "{welcome:?}"
    );
    // Twenty times: re-subscribing used to merge owners with no cap.
    for round in 0..20 {
        raw.send.write_all(&frame).await.expect("attack sent");
        let answer = common::within("the refusal", reader.next::<ServerFrame>()).await;
        match answer {
            Ok(Some(ServerFrame::Response { id: 7, result })) => assert_eq!(
                result,
                Err(WireError::TooManyOwners {
                    count: 250_000,
                    max: 1024
                }),
                "round {round}"
            ),
            other => panic!("round {round}: expected a typed refusal, got {other:?}"),
        }
        common::bystander_works(&bystander, round).await;
    }
    let rows = bystander
        .get(vec![KeySpec::primary("stays")])
        .await
        .expect("bystander reads");
    assert_eq!(rows.len(), 1);

    // Decoding the frame is the only cost: 2 MB of ids at a time. Allow 32 MiB for the
    // allocator's own slack; the unbounded version grew by gigabytes.
    for (d, before) in nodes.iter().zip(&before) {
        let after = rss(d.proc.pid());
        let grown = after.saturating_sub(*before);
        eprintln!(
            "{}: RSS {} KiB before, {} KiB after 20 attacks",
            d.name,
            before / 1024,
            after / 1024
        );
        assert!(
            grown < 32 * 1024 * 1024,
            "{} grew by {} KiB under the owners attack",
            d.name,
            grown / 1024
        );
    }
}

/// Peer links and admin observers take no client slot: with `max_clients = 2`, a node
/// linked to two peers and watched by three observers still admits two clients, refuses
/// the third with `ServerFull`, and its status counts exactly the two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_clients_counts_clients_only() {
    use cloudmesh::admin::{Command, CommandRunner, Response};
    common::init_test_log();
    fn config(c: &mut cloudmesh::NodeConfig, _name: &str) {
        c.secret = Some(cloudmesh::mesh::MeshSecret::new(vec![9; 32]).expect("secret"));
        c.max_clients = 2;
        c.load_interval = std::time::Duration::from_millis(200);
    }
    let nodes = common::mesh_of(&["a", "b", "c"], config).await;
    let a = &nodes[0];
    let admin = a.node.admin_handle();
    let mut watches = Vec::new();
    for i in 0..3 {
        let mut answers = admin.execute(Command::Watch {
            key: Some(format!("watched{i}")),
        });
        let first = common::within("the watch snapshot", answers.recv()).await;
        assert!(matches!(first, Some(Response::Snapshot(_))), "{first:?}");
        watches.push(answers);
    }
    let first = a.client().await;
    let second = a.client().await;
    let third = a.client_with(|_| {}).await.expect_err("the node is full");
    assert_eq!(
        third,
        cloudmesh::client::ClientError::Refused(WireError::ServerFull { max: 2 })
    );
    assert_eq!(a.node.client_count(), 2);
    let mut status = admin.execute(Command::Status);
    match common::within("status", status.recv()).await {
        Some(Response::Status(s)) => {
            assert_eq!((s.node.clients, s.node.capacity), (2, 2), "{s:?}");
            assert_eq!(s.linked, 2, "{s:?}");
        }
        other => panic!("status: {other:?}"),
    }
    common::bystander_works(&first, 1).await;
    common::bystander_works(&second, 2).await;
}

/// A redirect ticket names a fresh client id: a client that stays connected and also
/// presents the ticket from its own `Welcome` at the target gets a second, separate session
/// there, never a copy of the first (no two rows under one owner, no spurious deletion).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_ticket_never_duplicates_a_session() {
    use cloudmesh::client::ClientOptions;
    use cloudmesh::proto::Placement;
    common::init_test_log();
    fn config(c: &mut cloudmesh::NodeConfig, _name: &str) {
        c.secret = Some(cloudmesh::mesh::MeshSecret::new(vec![8; 32]).expect("secret"));
        c.load_interval = std::time::Duration::from_millis(200);
        c.rebalance_interval = std::time::Duration::ZERO;
    }
    let nodes = common::mesh_of(&["a", "b"], config).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    // A drained node places every newcomer elsewhere.
    a.node.drain().await.expect("drain of an empty node");
    let here = a.client().await;
    let Placement::Redirect { ticket, .. } = here.placement() else {
        panic!("a drained node redirects: {:?}", here.placement());
    };
    let there = common::within("connecting with the ticket", async {
        let mut opts = ClientOptions::new(b.trust());
        opts.ticket = Some(ticket);
        Client::connect(b.addr(), opts).await
    })
    .await
    .expect("the ticket admits a client at the target");
    assert_ne!(here.id(), there.id(), "two sessions, two ids");
    here.post(Key::new("dup", 1), "from a").await.expect("post");
    there
        .post(Key::new("dup", 1), "from b")
        .await
        .expect("post");
    let rows = there.get(vec![KeySpec::primary("dup")]).await.expect("get");
    let owners: std::collections::BTreeSet<_> = rows.iter().map(|r| r.owner).collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(owners.len(), 2, "one row per session: {rows:?}");
}

/// Connections that never open a stream cost a handful of log lines, not one each: the
/// rest are counted and reported once per window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_silent_connections_are_summarised_not_logged_one_by_one() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let config = tmp.path().join("cloudd.toml");
    std::fs::write(&config, "handshake_timeout = \"1s\"\n").expect("write config");
    let mut d = start_cloudd(
        "quiet",
        &tmp.path().join("data"),
        &["--config", config.to_str().expect("UTF-8")],
    );
    let addr: std::net::SocketAddr = d.addr.parse().expect("addr");
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
    const SILENT: usize = 2_000;
    let mut held = Vec::with_capacity(SILENT);
    for chunk in 0..SILENT / 100 {
        let mut handshakes = Vec::new();
        for _ in 0..100 {
            let connecting = endpoint.connect(addr, "localhost").expect("connect");
            handshakes.push(tokio::spawn(connecting));
        }
        for h in handshakes {
            let conn = common::within("a handshake", h)
                .await
                .expect("task")
                .unwrap_or_else(|e| panic!("handshake in chunk {chunk}: {e}"));
            held.push(conn);
        }
    }
    // Every one of them is closed by the node for saying nothing.
    for conn in &held {
        common::within("the node closing a silent connection", conn.closed()).await;
    }
    let summary = d
        .proc
        .stderr_line("a summary of the silent connections", |l| {
            l.contains("more \"client opened no stream in time\"")
        });
    let full = d
        .proc
        .stderr_text()
        .lines()
        .filter(|l| l.contains("client opened no stream in time; closing"))
        .count();
    eprintln!("{full} lines in full, then: {summary}");
    assert!(
        full <= 10,
        "{full} lines for {SILENT} silent connections (5 per 10 s window)"
    );
    let suppressed: u64 = summary
        .split("suppressed=")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a count in {summary:?}"));
    assert!(
        suppressed >= (SILENT - 10) as u64 / 2,
        "the summary counts what was not logged: {summary}"
    );
}

/// Idle local connections cannot lock the operator out of the admin socket: with 100
/// connections open that never send a request, `cloudctl status` still answers (a
/// newcomer takes the slot of the connection idle the longest).
#[test]
fn idle_admin_connections_do_not_lock_out_the_operator() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let d = start_cloudd("admin-flood", &tmp.path().join("data"), &[]);
    let mut idle = Vec::new();
    for _ in 0..100 {
        idle.push(std::os::unix::net::UnixStream::connect(&d.admin).expect("connect"));
    }
    for round in 0..3 {
        let (status, out, err) = d.admin_ctl(&["--json", "status"]).finish();
        assert!(status.success(), "round {round}: {err}");
        let v: serde_json::Value = serde_json::from_str(&out).expect("status JSON");
        assert_eq!(v["type"], "status", "{out}");
    }
    // A daemon that takes the connection and never answers fails the command in time,
    // with the reason, instead of hanging a script.
    let silent = tmp.path().join("silent.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&silent).expect("bind");
    let started = std::time::Instant::now();
    let (status, _, err) = procs::Proc::spawn(
        procs::CLOUDCTL,
        &[
            "--socket",
            silent.to_str().expect("UTF-8"),
            "--timeout",
            "1s",
            "status",
        ],
    )
    .finish();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("did not answer within 1s"), "{err}");
    assert!(started.elapsed() < DEADLINE);
    drop(idle);
}

/// Clients see what they need to pick and reach a node, not the mesh's insides: no node
/// ids, internal addresses, CPU, memory or row counts in `cloud.nodes`/`cloud.load`, no
/// score table with `Place` — unless the operator allows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_see_client_addresses_and_no_internals() {
    let read = |c: &Client, primary: &'static str| {
        let c = c.clone();
        async move {
            let rows = c
                .get(vec![KeySpec::primary(primary)])
                .await
                .expect("read the node's own rows");
            assert_eq!(rows.len(), 1, "{primary}");
            serde_json::from_slice::<serde_json::Value>(&rows[0].data).expect("JSON")
        }
    };
    let internal: std::net::SocketAddr = "10.0.0.5:7946".parse().expect("addr");
    let public: std::net::SocketAddr = "203.0.113.7:7946".parse().expect("addr");
    let hidden = common::node_with(move |c| {
        c.advertise = vec![internal];
        c.advertise_client = vec![public];
    })
    .await;
    let client = hidden.client().await;
    let node = read(&client, "cloud.nodes").await;
    assert_eq!(
        node["addresses"],
        serde_json::json!(["203.0.113.7:7946"]),
        "{node}"
    );
    for inside in ["id", "internal_addresses"] {
        assert!(node.get(inside).is_none(), "{inside} shown: {node}");
    }
    let load = common::within("the first load report", async {
        loop {
            let l = read(&client, "cloud.load").await;
            if l.get("capacity").is_some() {
                return l;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    for inside in ["cpu", "memory_bytes", "rows"] {
        assert!(load.get(inside).is_none(), "{inside} shown: {load}");
    }
    let (_, explain) = client.place(vec![], None).await.expect("place");
    assert!(
        explain.is_empty(),
        "no score table for class default: {explain}"
    );

    // Allowed by config: everything, as before.
    let open = common::node_with(|c| {
        c.expose_internals = true;
        c.explain_classes = vec!["default".into()];
    })
    .await;
    let client = open.client().await;
    let node = read(&client, "cloud.nodes").await;
    assert_eq!(node["id"], open.node.id().to_string(), "{node}");
    assert!(node["internal_addresses"].is_array(), "{node}");
    let (_, explain) = client.place(vec![], None).await.expect("place");
    assert!(explain.contains("test-node"), "{explain}");
}

/// Memory a departed attacker made the node hold goes back: 40 clients fill most of their
/// quota (2.5 MB each, 100 MB in all) and subscribe, then leave; the node's resident memory
/// returns to within twice what it was before (the allocator must hand freed memory back to
/// the system, not keep it for a burst that is over).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_returns_after_the_attacker_leaves() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let d = start_cloudd("memory", &tmp.path().join("data"), &[]);
    let pid = d.proc.pid();
    // Settled: a first client's connection costs what any later one does.
    let warm = client_of(&d).await;
    warm.ping().await.expect("ping");
    let before = rss(pid);
    let mut attackers = Vec::new();
    for a in 0..40u32 {
        let c = client_of(&d).await;
        let (_, _sub) = c
            .subscribe(vec![KeySpec::primary(format!("watch{a}"))], None)
            .await
            .expect("subscribe");
        let mut posts = Vec::new();
        for n in 0..2_500u32 {
            posts.push(c.post(Key::new(format!("junk{a}"), n), vec![b'x'; 1_000]));
        }
        for p in futures_util::future::join_all(posts).await {
            p.expect("post within quota");
        }
        attackers.push(c);
    }
    let peak = rss(pid);
    for c in attackers {
        c.close().await;
    }
    let settled = wait_until("memory to return", DEADLINE, || {
        let now = rss(pid);
        if now <= 2 * before {
            Ok(now)
        } else {
            Err(format!("{} KiB (before {} KiB)", now / 1024, before / 1024))
        }
    });
    eprintln!(
        "RSS: {} KiB before, {} KiB with 100 MB of rows, {} KiB after they left",
        before / 1024,
        peak / 1024,
        settled / 1024
    );
    assert!(
        peak > before + 50 * 1024 * 1024,
        "the rows were really held"
    );
    warm.ping().await.expect("the node still serves");
}
