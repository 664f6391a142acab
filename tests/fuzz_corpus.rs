//! Replays the fuzz corpus (`fuzz/corpus/<target>/`) through the decoder contracts in
//! `cloudmesh::fuzzing`, so every input a fuzzer once found stays fixed under a plain
//! `cargo test`, without a fuzzer or a special toolchain.
//!
//! The corpus holds seeds (valid messages built here from the real encoders, named `seed-*`)
//! and the inputs the fuzzers kept, minimized. After a change to what the encoders write,
//! refresh the seeds with `CLOUDMESH_WRITE_SEEDS=1 cargo test --test fuzz_corpus`.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use cloudmesh::admin::frame;
use cloudmesh::admin::{
    AdminError, AdminRequest, CandidateInfo, ClientInfo, Command, Event, EventFrame, NodeInfo,
    PlaceReport, PrimaryInfo, RebalanceMove, Response, RowInfo, Snapshot, StatusInfo, ZoneInfo,
    MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES,
};
use cloudmesh::dyndns::tsig::TsigKey;
use cloudmesh::dyndns::wire::{self, Name, TYPE_A, TYPE_AAAA};
use cloudmesh::fuzzing::TARGETS;
use cloudmesh::placement::{assign, ZoneConfig};
use cloudmesh::proto::{
    encode_to_bytes, AuthFrame, ClientFrame, ClientId, Cursor, DeleteReason, GetPage, GetQuery,
    Hello, Key, KeySpec, LimitsInfo, LoadInfo, MemberInfo, NodeId, NodeRtt, NodeState,
    Notification, PeerFrame, Placement, Position, Reply, Request, ResumeOffer, ResumeRefusal,
    ResumeRequest, ResumedInfo, Row, ServerFrame, SessionState, Welcome, WireError,
    DEFAULT_MAX_FRAME,
};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus")
}

/// Runs every input of one target's corpus through its check; fails naming each input that
/// breaks a contract (the panic message above says which and how).
fn replay(target: &str) {
    let check = TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .map(|(_, check)| *check)
        .unwrap_or_else(|| panic!("no check named {target}"));
    let dir = corpus().join(target);
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "{} is empty", dir.display());
    let broken: Vec<String> = inputs
        .iter()
        .filter(|path| {
            let data = std::fs::read(path).expect("corpus input reads");
            catch_unwind(AssertUnwindSafe(|| check(&data))).is_err()
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(
        broken.is_empty(),
        "{} of {} inputs break a contract:\n{}",
        broken.len(),
        inputs.len(),
        broken.join("\n")
    );
}

macro_rules! corpus_tests {
    ($($target:ident),* $(,)?) => {
        $(
            #[test]
            fn $target() {
                replay(stringify!($target));
            }
        )*

        /// Every check has a corpus (and a test above), and every corpus a check.
        #[test]
        fn every_target_has_a_corpus_and_a_test() {
            let tested: BTreeSet<&str> = [$(stringify!($target)),*].into_iter().collect();
            let checks: BTreeSet<&str> = TARGETS.iter().map(|(name, _)| *name).collect();
            let dirs: BTreeSet<String> = std::fs::read_dir(corpus())
                .expect("fuzz/corpus exists")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect();
            assert_eq!(tested, checks, "a check without a test here, or the reverse");
            let dirs: BTreeSet<&str> = dirs.iter().map(String::as_str).collect();
            assert_eq!(dirs, checks, "fuzz/corpus/ and cloudmesh::fuzzing::TARGETS differ");
        }
    };
}

corpus_tests!(
    client_frames,
    server_frames,
    peer_frames,
    auth_exchange,
    admin_frames,
    dns_message,
    tsig_key,
    zone_map,
    redirect_ticket,
    config_file,
);

/// The seeds are in the corpus as the encoders write them today (or are written there with
/// `CLOUDMESH_WRITE_SEEDS=1`).
#[test]
fn seeds_are_in_the_corpus() {
    let write = std::env::var_os("CLOUDMESH_WRITE_SEEDS").is_some();
    let mut stale = Vec::new();
    for (target, name, bytes) in seeds() {
        let path = corpus().join(target).join(format!("seed-{name}"));
        if write {
            std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
            std::fs::write(&path, &bytes).expect("write seed");
        } else if std::fs::read(&path).ok().as_ref() != Some(&bytes) {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "seeds missing or different (refresh with CLOUDMESH_WRITE_SEEDS=1 cargo test --test \
         fuzz_corpus):\n{}",
        stale.join("\n")
    );
}

/// `[limit selector 0 (the default), split selector, frames...]`, as the frame checks read it.
fn stream<T: serde::Serialize>(split: u8, frames: &[T]) -> Vec<u8> {
    let mut out = vec![0, split];
    for f in frames {
        out.extend_from_slice(&encode_to_bytes(f, DEFAULT_MAX_FRAME).expect("seed encodes"));
    }
    out
}

fn node(n: u8) -> NodeId {
    NodeId(u128::from(n) << 100 | 0xfeed)
}

fn key(p: &str, s: u32) -> Key {
    Key::new(p, s)
}

fn row(n: u8) -> Row {
    Row {
        key: key("players", u32::from(n)),
        owner: ClientId(0x1000 + u64::from(n)),
        node: node(n),
        data: Bytes::from(format!("row {n}")),
        version: 7 + u64::from(n),
        updated_at_ms: 1_700_000_000_000,
    }
}

fn addrs() -> Vec<SocketAddr> {
    vec![
        "10.0.0.1:7946".parse().expect("addr"),
        "[fd00::1]:7946".parse().expect("addr"),
    ]
}

fn wire_errors() -> Vec<WireError> {
    vec![
        WireError::QuotaExceeded {
            limit: 1,
            would_hold: 2,
        },
        WireError::Forbidden {
            reason: "cloud.".into(),
        },
        WireError::TooLarge {
            what: "row".into(),
            size: 3,
            max: 2,
        },
        WireError::TooManyKeys { count: 9, max: 8 },
        WireError::TooManySubscriptions { max: 4 },
        WireError::RateLimited { per_sec: 100 },
        WireError::InvalidKey {
            reason: "empty".into(),
        },
        WireError::NotFound,
        WireError::Draining,
        WireError::Unavailable { node: node(3) },
        WireError::UnsupportedVersion {
            client_min: 2,
            client_max: 3,
            node_min: 1,
            node_max: 1,
        },
        WireError::ServerFull { max: 10 },
        WireError::Protocol {
            reason: "order".into(),
        },
        WireError::TooManyOwners {
            count: 5000,
            max: 1024,
        },
        WireError::ResumeRefused(ResumeRefusal::Used),
        WireError::ResumeRefused(ResumeRefusal::Expired),
    ]
}

fn requests() -> Vec<Request> {
    let query = GetQuery {
        keys: vec![
            KeySpec::primary("players"),
            KeySpec::exact(&key("zones", 3)),
        ],
        owners: Some(vec![ClientId(1), ClientId(2)]),
        start: Some(Cursor {
            key: key("players", 1),
            owner: ClientId(9),
        }),
        limit: 100,
        subscribe: true,
    };
    vec![
        Request::Post {
            key: key("players", 3),
            data: Bytes::from_static(b"{\"hp\":10}"),
        },
        Request::Release {
            keys: vec![key("players", 3), key("a", 0)],
        },
        Request::Get(query),
        Request::Unsubscribe {
            keys: vec![KeySpec::primary("players")],
            owners: None,
        },
        Request::SetSession {
            data: Bytes::from_static(b"session"),
        },
        Request::Ping,
        Request::SetPosition {
            position: Position { x: 1.5, y: -2.0 },
        },
        Request::Place {
            rtts: vec![NodeRtt {
                node: node(1),
                micros: 350,
            }],
            position: Some(Position { x: 0.0, y: 99.0 }),
        },
        Request::GetSession,
    ]
}

fn replies() -> Vec<Reply> {
    vec![
        Reply::Posted { version: 3 },
        Reply::Released { count: 1 },
        Reply::Rows(GetPage {
            rows: vec![row(1), row(2)],
            next: Some(Cursor {
                key: key("players", 2),
                owner: ClientId(0x1002),
            }),
            incomplete: vec![node(4)],
        }),
        Reply::Unsubscribed { count: 2 },
        Reply::SessionSet,
        Reply::Pong,
        Reply::PositionSet,
        Reply::Placed {
            placement: Placement::Redirect {
                node: node(2),
                name: "node-2".into(),
                addrs: addrs(),
                ticket: Bytes::from_static(&[7; 64]),
                fingerprint: [9; 32],
            },
            explain: "node-2  0.1\n".into(),
        },
        Reply::Session {
            data: Bytes::from_static(b"level=3"),
        },
    ]
}

fn member(n: u8) -> MemberInfo {
    MemberInfo {
        id: node(n),
        name: format!("node-{n}"),
        addrs: addrs(),
        join_seq: u64::from(n),
        state: NodeState::Active,
        fingerprint: [n; 32],
        client_addrs: addrs(),
    }
}

fn session_state() -> SessionState {
    SessionState {
        client: ClientId(0x77),
        class: "default".into(),
        rows: vec![row(1)],
        subs: vec![
            (KeySpec::primary("players"), None),
            (KeySpec::exact(&key("zones", 1)), Some(vec![ClientId(3)])),
        ],
        session: Bytes::from_static(b"blob"),
        clock: 42,
        grant: None,
    }
}

fn zone_json() -> Vec<u8> {
    let config = ZoneConfig {
        width: 4,
        height: 3,
        ..ZoneConfig::default()
    };
    let map = assign(&config, &[(node(1), 1.0), (node(2), 1.5)], None).expect("a map");
    serde_json::to_vec(&map).expect("serializes")
}

fn node_info(n: u8) -> NodeInfo {
    NodeInfo {
        name: format!("node-{n}"),
        id: format!("{:032x}", node(n).0),
        addresses: vec!["10.0.0.1:7946".into()],
        state: "Active".into(),
        host: n == 1,
        local: n == 1,
        linked: true,
        clients: 3,
        capacity: 100,
        rows: 9,
        cpu_percent: 12.5,
        memory_bytes: 1 << 26,
        msgs_per_sec: 40.0,
    }
}

fn row_info() -> RowInfo {
    RowInfo {
        primary: "players".into(),
        secondary: 3,
        owner: "0000000000000077".into(),
        node: "node-1".into(),
        version: 5,
        updated_at_ms: 1_700_000_000_000,
        data: "hello".into(),
        encoding: "utf8".into(),
        size: 5,
    }
}

fn status() -> StatusInfo {
    StatusInfo {
        node: node_info(1),
        version: "0.1.0".into(),
        uptime_secs: 60,
        listen: "0.0.0.0:7946".into(),
        fingerprint: "ab".repeat(32),
        host: "node-1".into(),
        members: 2,
        linked: 1,
        subscriptions: 4,
        data_bytes: 1024,
    }
}

fn commands() -> Vec<Command> {
    vec![
        Command::Status,
        Command::Nodes,
        Command::Clients {
            node: Some("node-2".into()),
            session: false,
        },
        Command::Keys {
            primary: Some("players".into()),
            secondary: Some(3),
            query: None,
        },
        Command::Drain {
            node: "node-2".into(),
            wait: true,
        },
        Command::Undrain {
            node: "node-2".into(),
        },
        Command::Migrate {
            client: "0000000000000077".into(),
            to: "node-1".into(),
        },
        Command::Rebalance,
        Command::Place {
            position: Some((10.0, 20.5)),
        },
        Command::Watch {
            key: Some("players".into()),
        },
    ]
}

fn responses() -> Vec<Response> {
    let zones = ZoneInfo {
        cell_size: 100.0,
        width: 2,
        height: 1,
        owners: vec!["node-1".into(), "node-2".into()],
    };
    let event = |event| {
        Response::Event(EventFrame {
            at_ms: 1_700_000_000_000,
            event,
        })
    };
    vec![
        Response::Status(status()),
        Response::Nodes {
            nodes: vec![node_info(1), node_info(2)],
        },
        Response::Clients {
            clients: vec![ClientInfo {
                id: "0000000000000077".into(),
                node: "node-1".into(),
                address: "127.0.0.1:5000".into(),
                rtt_ms: 0.25,
                zone: Some((1, 0)),
                position: Some((150.0, 20.0)),
                rows: 1,
                connected_at_ms: 1_700_000_000_000,
                suspended_until_ms: Some(1_700_000_030_000),
                session_bytes: 5,
                session: Some("hello".into()),
                session_encoding: Some("utf8".into()),
            }],
            incomplete: vec!["node-3".into()],
        },
        Response::Primaries {
            primaries: vec![PrimaryInfo {
                primary: "players".into(),
                rows: 2,
                nodes: vec!["node-1".into()],
            }],
            incomplete: vec![],
        },
        Response::Rows {
            rows: vec![row_info()],
            truncated: false,
            incomplete: vec![],
        },
        Response::DrainStarted {
            node: "node-2".into(),
            clients: 3,
        },
        Response::Progress {
            node: "node-2".into(),
            moved: 1,
            remaining: 2,
        },
        Response::Drained {
            node: "node-2".into(),
            moved: 3,
        },
        Response::Undrained {
            node: "node-2".into(),
        },
        Response::Migrated {
            client: "0000000000000077".into(),
            from: "node-1".into(),
            to: "node-2".into(),
        },
        Response::Rebalanced {
            moved: Some(RebalanceMove {
                from: "node-1".into(),
                to: "node-2".into(),
                count: 1,
            }),
        },
        Response::Placement(PlaceReport {
            choice: Some("node-1".into()),
            candidates: vec![CandidateInfo {
                name: "node-1".into(),
                eligible: true,
                reason: None,
                load: Some(0.5),
                cpu: Some(0.1),
                rtt: None,
                zone: Some(0.0),
                total: Some(0.6),
            }],
            explain: "node-1 0.6".into(),
        }),
        Response::Snapshot(Snapshot {
            status: status(),
            nodes: vec![node_info(1)],
            zones: Some(zones.clone()),
            rows: Some(vec![row_info()]),
        }),
        event(Event::NodeUp {
            node: "node-2".into(),
        }),
        event(Event::NodeLost {
            node: "node-2".into(),
            rows: 4,
        }),
        event(Event::StateChanged {
            node: "node-2".into(),
            state: "Draining".into(),
        }),
        event(Event::HostChanged {
            old: "node-1".into(),
            new: "node-2".into(),
        }),
        event(Event::Load(node_info(2))),
        event(Event::DrainProgress {
            node: "node-2".into(),
            moved: 1,
            remaining: 1,
        }),
        event(Event::Migrated {
            client: "0000000000000077".into(),
            from: "node-1".into(),
            to: "node-2".into(),
        }),
        event(Event::Zones(zones)),
        event(Event::RowChanged(row_info())),
        event(Event::RowDeleted {
            row: row_info(),
            reason: "Released".into(),
        }),
        event(Event::Lagged { missed: 3 }),
        Response::Error(AdminError::UnknownNode {
            name: "node-9".into(),
            known: vec!["node-1".into()],
        }),
        Response::Error(AdminError::UnsupportedVersion {
            requested: 2,
            supported: 1,
        }),
        Response::Error(AdminError::BadRequest { reason: "x".into() }),
        Response::Error(AdminError::TooLarge { size: 1, max: 0 }),
        Response::Error(AdminError::UnknownClient {
            client: "77".into(),
        }),
        Response::Error(AdminError::Unavailable {
            node: "node-2".into(),
            reason: "no link".into(),
        }),
        Response::Error(AdminError::Failed {
            reason: "refused".into(),
        }),
    ]
}

/// Valid inputs for every target, built with the real encoders.
fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut add = |target: &'static str, name: &str, bytes: Vec<u8>| {
        out.push((target, name.to_owned(), bytes));
    };

    // Client frames: a hello with everything, then one request of each kind.
    let full_hello = ClientFrame::Hello(Hello {
        class: Some("game-server".into()),
        token: Some("t0ken".into()),
        session: Some(Bytes::from_static(b"resume")),
        ticket: Some(Bytes::from_static(&[1; 64])),
        rtts: vec![NodeRtt {
            node: node(2),
            micros: 900,
        }],
        position: Some(Position { x: 3.0, y: 4.0 }),
        resume: Some(ResumeRequest {
            client: ClientId(0x77),
            token: Bytes::from_static(&[5; 64]),
        }),
        ..Hello::current()
    });
    add(
        "client_frames",
        "hello",
        stream(0, &[ClientFrame::Hello(Hello::current())]),
    );
    let mut session: Vec<ClientFrame> = vec![full_hello];
    session.extend(
        requests()
            .into_iter()
            .zip(1..)
            .map(|(op, id)| ClientFrame::Request { id, op }),
    );
    add("client_frames", "session", stream(0, &session));
    add("client_frames", "session-split", stream(3, &session));

    // Server frames: welcome, refusals, a response of each kind, notifications, a move.
    let welcome = ServerFrame::Welcome(Welcome {
        version: 1,
        capabilities: 0,
        client_id: ClientId(0x77),
        node_id: node(1),
        node_name: "node-1".into(),
        limits: LimitsInfo {
            max_frame: 1 << 20,
            max_row_bytes: 65536,
            max_client_bytes: 1 << 24,
            max_get_bytes: 1 << 20,
            max_keys_per_query: 64,
            max_subscriptions: 256,
            max_session_bytes: 65536,
        },
        placement: Placement::Stay,
        resume: Some(ResumeOffer {
            token: Bytes::from_static(&[5; 64]),
            grace_ms: 30_000,
        }),
        resumed: Some(ResumedInfo {
            from: node(2),
            last_request: 41,
            missed_lost: true,
        }),
    });
    let mut answers = vec![welcome];
    answers.extend(
        replies()
            .into_iter()
            .zip(1..)
            .map(|(r, id)| ServerFrame::Response { id, result: Ok(r) }),
    );
    answers.extend(
        wire_errors()
            .into_iter()
            .zip(100..)
            .map(|(e, id)| ServerFrame::Response { id, result: Err(e) }),
    );
    answers.push(ServerFrame::Notify(Notification::Updated(row(1))));
    answers.push(ServerFrame::Notify(Notification::Deleted {
        row: row(2),
        reason: DeleteReason::NodeLost,
    }));
    answers.push(ServerFrame::Migrate {
        node: node(2),
        name: "node-2".into(),
        addrs: addrs(),
        ticket: Bytes::from_static(&[5; 64]),
        fingerprint: [6; 32],
    });
    add("server_frames", "session", stream(0, &answers));
    add("server_frames", "session-split", stream(5, &answers));
    add(
        "server_frames",
        "refused",
        stream(0, &[ServerFrame::Refused(WireError::ServerFull { max: 1 })]),
    );

    // Peer frames: one of each kind.
    let command = serde_json::to_vec(&Command::Nodes).expect("json");
    let reply = serde_json::to_vec(&Response::Nodes {
        nodes: vec![node_info(1)],
    })
    .expect("json");
    let peer = vec![
        PeerFrame::Hello {
            version: 2,
            me: member(1),
            holds: vec!["players".into()],
        },
        PeerFrame::Holds {
            primary: "players".into(),
            held: true,
        },
        PeerFrame::HeldBy {
            primary: "players".into(),
            node: node(2),
        },
        PeerFrame::Get {
            id: 1,
            query: GetQuery {
                keys: vec![KeySpec::primary("players")],
                subscribe: true,
                ..GetQuery::default()
            },
        },
        PeerFrame::GetResult {
            id: 1,
            result: Ok(GetPage {
                rows: vec![row(1)],
                next: None,
                incomplete: vec![],
            }),
        },
        PeerFrame::GetResult {
            id: 2,
            result: Err(WireError::Draining),
        },
        PeerFrame::Unsubscribe {
            keys: vec![KeySpec::primary("players")],
        },
        PeerFrame::Change(Notification::Updated(row(3))),
        PeerFrame::Load(LoadInfo {
            clients: 3,
            capacity: 100,
            cpu_percent: 20.0,
            rows: 10,
            memory_bytes: 1 << 25,
            msgs_per_sec: 55.5,
        }),
        PeerFrame::Prepare {
            ticket: Bytes::from_static(&[2; 64]),
            state: session_state(),
        },
        PeerFrame::Prepared {
            ticket: Bytes::from_static(&[2; 64]),
            result: Ok(()),
        },
        PeerFrame::Handover {
            ticket: Bytes::from_static(&[2; 64]),
        },
        PeerFrame::Transfer {
            ticket: Bytes::from_static(&[2; 64]),
            state: Some(session_state()),
        },
        PeerFrame::Forward {
            client: ClientId(0x77),
            id: 9,
            op: Request::Ping,
        },
        PeerFrame::Zones {
            json: Bytes::from(zone_json()),
        },
        PeerFrame::Rebalance {
            to: node(2),
            count: 3,
        },
        PeerFrame::Admin {
            id: 5,
            command: Bytes::from(command),
        },
        PeerFrame::AdminReply {
            id: 5,
            body: Some(Bytes::from(reply)),
        },
        PeerFrame::AdminReply { id: 5, body: None },
        PeerFrame::DrainProgress {
            moved: 1,
            remaining: 2,
        },
        PeerFrame::Abort {
            ticket: Bytes::from_static(&[2; 64]),
        },
        PeerFrame::Forwarded {
            client: ClientId(0x77),
            id: 9,
            result: Ok(Reply::Pong),
        },
        PeerFrame::Reclaim {
            client: ClientId(0x77),
            token: Bytes::from_static(&[5; 64]),
        },
        PeerFrame::Reclaimed {
            client: ClientId(0x77),
            result: Ok((session_state(), 41)),
        },
        PeerFrame::Reclaimed {
            client: ClientId(0x78),
            result: Err(WireError::ResumeRefused(ResumeRefusal::Gone)),
        },
    ];
    add("peer_frames", "link", stream(0, &peer));
    add("peer_frames", "link-split", stream(7, &peer));

    // The authentication exchange: a challenge, with and without the honest proof after it,
    // in both roles; and a proof out of turn.
    let challenge = encode_to_bytes(&AuthFrame::Challenge { nonce: [0x33; 32] }, 1024)
        .expect("encodes")
        .to_vec();
    for (flags, name) in [
        (0u8, "dialer"),
        (1, "acceptor"),
        (2, "dialer-honest"),
        (3, "acceptor-honest"),
    ] {
        let mut input = vec![flags, 0];
        input.extend_from_slice(&challenge);
        add("auth_exchange", name, input);
    }
    let mut out_of_turn = vec![1, 0];
    out_of_turn.extend_from_slice(
        &encode_to_bytes(&AuthFrame::Proof { mac: [4; 32] }, 1024).expect("encodes"),
    );
    add("auth_exchange", "proof-first", out_of_turn);

    // Admin frames: every request, then every response, each a stream of frames.
    let mut requests = vec![0, 0];
    for c in commands() {
        requests.extend(frame::encode(&AdminRequest::new(c), MAX_REQUEST_BYTES).expect("encodes"));
    }
    add("admin_frames", "requests", requests);
    let mut answers = vec![1, 0];
    for r in responses() {
        answers.extend(frame::encode(&r, MAX_RESPONSE_BYTES).expect("encodes"));
    }
    add("admin_frames", "responses", answers);

    // DNS: a query, an update, an update signed with TSIG, an answer with compression.
    let name = |s: &str| Name::parse(s).expect("name");
    add(
        "dns_message",
        "query",
        wire::query(0xbfdd, &name("cloud.mesh.test"), TYPE_A),
    );
    let addrs: Vec<std::net::IpAddr> = vec![
        "127.0.0.11".parse().expect("ip"),
        "fd00::11".parse().expect("ip"),
    ];
    let update = wire::update(7, &name("mesh.test"), &name("cloud.mesh.test"), 30, &addrs);
    add("dns_message", "update", update.clone());
    let tsig = TsigKey::parse("hmac-sha256:cloudd-test:c2VjcmV0c2VjcmV0").expect("key");
    let mut signed = update;
    tsig.sign(&mut signed, 1_700_000_000);
    add("dns_message", "update-signed", signed);
    let mut answer = wire::query(0x1234, &name("mesh.example.com"), TYPE_AAAA);
    answer[2] = 0x84;
    answer[7] = 2;
    for ip in [[127, 0, 0, 11], [127, 0, 0, 12]] {
        answer.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        answer.extend_from_slice(&ip);
    }
    add("dns_message", "answer-compressed", answer);

    // TSIG key files in both forms.
    add(
        "tsig_key",
        "bind",
        b"key \"cloudd-test\" {\n\talgorithm hmac-sha256;\n\tsecret \
          \"r+E3Y8W5EX9ahKzIvSrLWFXRh4rY5hDzbgvUf4eFTeo=\";\n};\n"
            .to_vec(),
    );
    add(
        "tsig_key",
        "bind-commented",
        b"# tsig-keygen\n/* block */ key k { algorithm HMAC-SHA512; secret \"c2VjcmV0\"; } // end\n"
            .to_vec(),
    );
    add("tsig_key", "line", b"hmac-sha384:other:c2VjcmV0\n".to_vec());
    add("tsig_key", "line-short", b"name:c2VjcmV0".to_vec());

    // Zone maps: one from `assign`, and the example of the documentation.
    add("zone_map", "assigned", zone_json());
    add(
        "zone_map",
        "documented",
        br#"{"epoch":3,"cell_size":100.0,"width":2,"height":1,"nodes":["00000000000000000000000000000001","00000000000000000000000000000002"],"owners":[0,1]}"#
            .to_vec(),
    );

    // Tickets: one as `issue` writes them (valid for another mesh), then fields.
    let other = cloudmesh::mesh::MeshSecret::new(vec![1; 32]).expect("secret");
    let ticket = cloudmesh::mesh::issue_ticket(&other, ClientId(0x77), node(1), u64::MAX);
    add("redirect_ticket", "issued", ticket.to_vec());
    let mut fields = Vec::new();
    fields.extend_from_slice(&0x77u64.to_be_bytes());
    fields.extend_from_slice(&u64::MAX.to_be_bytes());
    fields.extend_from_slice(&1_700_000_000_000u64.to_be_bytes());
    fields.push(3);
    add("redirect_ticket", "fields", fields);

    // The configuration file: the shipped example with every setting uncommented, and a
    // small one with every table.
    let example = include_str!("../assets/cloudd.example.toml");
    let uncommented: String = example
        .lines()
        .map(|l| {
            l.strip_prefix('#')
                .filter(|r| !r.starts_with(' '))
                .unwrap_or(l)
        })
        .collect::<Vec<_>>()
        .join("\n");
    add("config_file", "example", example.as_bytes().to_vec());
    add(
        "config_file",
        "example-uncommented",
        uncommented.into_bytes(),
    );
    add(
        "config_file",
        "tables",
        b"max_clients = 10\njoin = [\"127.0.0.1:7000\"]\n[limits]\nmax_row_bytes = 1000\n\
          [[filters]]\naction = \"deny\"\nprefix = \"x\"\n[classes.server]\ntoken = \"t\"\n\
          [zones]\ncell_size = 10.0\nwidth = 2\nheight = 2\nmargin = 1.0\n"
            .to_vec(),
    );
    out
}
