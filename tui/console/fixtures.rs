//! Fixed states for the console's tests: a small mesh as the admin socket would describe it,
//! at a fixed "now", so renders are the same on every run.

use cloudmesh::admin::{
    ClientInfo, Event, EventFrame, NodeInfo, PrimaryInfo, Response, RowInfo, Snapshot, StatusInfo,
    ZoneInfo,
};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::app::App;
use super::requests::Poll;

/// 2026-01-02 12:34:56 UTC, in ms.
pub const NOW: u64 = 1_767_357_296_000;

/// A node as `nodes` reports it.
pub fn node(name: &str, state: &str, clients: u32, msgs: f32) -> NodeInfo {
    NodeInfo {
        name: name.to_owned(),
        id: format!("{:0>32}", name.len()),
        addresses: vec![format!("127.0.0.1:70{}", name.len())],
        state: state.to_owned(),
        host: false,
        local: false,
        linked: true,
        clients,
        capacity: 1000,
        rows: u64::from(clients) * 3,
        cpu_percent: 12.5,
        memory_bytes: 48 * 1024 * 1024,
        msgs_per_sec: msgs,
    }
}

/// Three nodes: node-1 (this node, the host), node-2 (draining) and node-3 (unlinked).
pub fn nodes() -> Vec<NodeInfo> {
    let mut n1 = node("node-1", "Active", 120, 850.0);
    n1.host = true;
    n1.local = true;
    n1.addresses = vec!["127.0.0.1:7001".into(), "[::1]:7001".into()];
    let mut n2 = node("node-2", "Draining", 40, 310.0);
    n2.addresses = vec!["127.0.0.1:7002".into()];
    let mut n3 = node("node-3", "Active", 75, 0.0);
    n3.linked = false;
    n3.addresses = vec!["127.0.0.1:7003".into()];
    vec![n1, n2, n3]
}

/// A 6×4 zone grid split between the three nodes.
pub fn zones() -> ZoneInfo {
    let owners = [
        "node-1", "node-1", "node-1", "node-2", "node-2", "node-2", //
        "node-1", "node-1", "node-1", "node-2", "node-2", "node-2", //
        "node-3", "node-3", "node-3", "node-2", "node-2", "node-2", //
        "node-3", "node-3", "node-3", "node-3", "node-1", "node-1",
    ];
    ZoneInfo {
        cell_size: 100.0,
        width: 6,
        height: 4,
        owners: owners.iter().map(|s| (*s).to_owned()).collect(),
    }
}

/// The `watch` snapshot of that mesh, from node-1.
pub fn snapshot(rows: Option<Vec<RowInfo>>) -> Response {
    let nodes = nodes();
    Response::Snapshot(Snapshot {
        status: StatusInfo {
            node: nodes[0].clone(),
            version: "0.1.0".into(),
            uptime_secs: 3600,
            listen: "127.0.0.1:7001".into(),
            fingerprint: "sha256:00".into(),
            host: "node-1".into(),
            members: 3,
            linked: 2,
            subscriptions: 4,
            data_bytes: 1234,
        },
        nodes,
        zones: Some(zones()),
        rows,
    })
}

/// A client of `node`, connected `age_s` seconds before [`NOW`].
pub fn client(n: u64, node: &str, age_s: u64) -> ClientInfo {
    ClientInfo {
        id: format!("{n:016x}"),
        node: node.to_owned(),
        address: format!("127.0.0.1:{}", 50_000 + n),
        rtt_ms: 0.4 + n as f64 / 10.0,
        zone: n
            .is_multiple_of(2)
            .then_some(((n % 6) as u32, (n % 4) as u32)),
        position: None,
        rows: (n % 3) as usize,
        connected_at_ms: NOW - age_s * 1000,
        suspended_until_ms: None,
        session_bytes: 0,
        session: None,
        session_encoding: None,
    }
}

/// A row under `players`.
pub fn row(secondary: u32, owner: u64, data: &str, version: u64) -> RowInfo {
    let (data, encoding) = RowInfo::encode_data(data.as_bytes());
    RowInfo {
        primary: "players".into(),
        secondary,
        owner: format!("{owner:016x}"),
        node: "node-1".into(),
        version,
        updated_at_ms: NOW - 5_000,
        size: data.len(),
        data,
        encoding,
    }
}

/// A row with binary data.
pub fn binary_row(secondary: u32, owner: u64) -> RowInfo {
    let (data, encoding) = RowInfo::encode_data(&[0, 1, 2, 0xfe, 0xff]);
    RowInfo {
        primary: "players".into(),
        secondary,
        owner: format!("{owner:016x}"),
        node: "node-2".into(),
        version: 9,
        updated_at_ms: NOW - 1_000,
        size: 5,
        data,
        encoding,
    }
}

/// An event at `NOW - ago_s` seconds.
pub fn event(ago_s: u64, event: Event) -> Response {
    Response::Event(EventFrame {
        at_ms: NOW - ago_s * 1000,
        event,
    })
}

/// A key press.
pub fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

/// A character typed.
pub fn ch(c: char) -> KeyEvent {
    key(KeyCode::Char(c))
}

/// The app after the snapshot, with clients of node-1 answered and a few events logged.
pub fn live_app() -> App {
    let mut app = App::new(
        "/run/cloudd/admin.sock",
        Some("/tmp/cloudctl-tui.log".into()),
    );
    app.set_clock(NOW);
    app.apply(snapshot(None));
    for (i, v) in [200.0, 400.0, 650.0, 800.0, 900.0, 700.0, 850.0]
        .into_iter()
        .enumerate()
    {
        let mut n = nodes()[0].clone();
        n.msgs_per_sec = v;
        app.apply(event(20 - i as u64, Event::Load(n)));
    }
    let polls = answer_polls(&mut app);
    assert!(polls.contains(&Poll::Clients {
        node: "node-1".into()
    }));
    app.apply(event(
        300,
        Event::NodeUp {
            node: "node-2".into(),
        },
    ));
    app.apply(event(
        120,
        Event::StateChanged {
            node: "node-2".into(),
            state: "Draining".into(),
        },
    ));
    app.apply(event(
        100,
        Event::DrainProgress {
            node: "node-2".into(),
            moved: 10,
            remaining: 30,
        },
    ));
    app.apply(event(
        90,
        Event::Migrated {
            client: format!("{:016x}", 77),
            from: "node-2".into(),
            to: "node-1".into(),
        },
    ));
    app.apply(event(
        60,
        Event::HostChanged {
            old: "node-0".into(),
            new: "node-1".into(),
        },
    ));
    app.apply(event(
        30,
        Event::NodeLost {
            node: "node-4".into(),
            rows: 3,
        },
    ));
    // NodeUp asked for the member list.
    answer_polls(&mut app);
    app.status = None;
    app
}

/// Answers the polls due with the fixture mesh; returns them.
pub fn answer_polls(app: &mut App) -> Vec<Poll> {
    let polls = app.due_polls();
    for p in polls.clone() {
        let answer = match &p {
            Poll::Clients { node } => Response::Clients {
                clients: (1..=12).map(|n| client(n, node, n * 37)).collect(),
                incomplete: vec![],
            },
            Poll::Nodes => Response::Nodes { nodes: nodes() },
            Poll::Primaries => Response::Primaries {
                primaries: primaries(),
                incomplete: vec![],
            },
            Poll::Query { .. } => Response::Rows {
                rows: vec![],
                truncated: false,
                incomplete: vec![],
            },
        };
        app.poll_done(p, Ok(answer));
    }
    polls
}

/// Primary keys with counts.
pub fn primaries() -> Vec<PrimaryInfo> {
    vec![
        PrimaryInfo {
            primary: "cloud.load".into(),
            rows: 3,
            nodes: vec!["node-1".into(), "node-2".into(), "node-3".into()],
        },
        PrimaryInfo {
            primary: "cloud.nodes".into(),
            rows: 3,
            nodes: vec!["node-1".into(), "node-2".into(), "node-3".into()],
        },
        PrimaryInfo {
            primary: "players".into(),
            rows: 235,
            nodes: vec!["node-1".into(), "node-2".into()],
        },
    ]
}
