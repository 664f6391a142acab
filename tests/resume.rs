//! Session resume with real QUIC between real nodes: a client whose path to its node goes
//! dark (a UDP relay the test cuts: every datagram dropped, both ways) keeps its session
//! for the node's resume grace; tokens are single-use and bound to the client id and the
//! mesh; a session resumes on the same node or on another one; after the grace its rows
//! are deleted as `Expired` and the SDK establishes them again; a drain does not wait
//! forever for a client that ignores `Migrate`.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cloudmesh::client::{Client, ClientError, ClientOptions, Event, SessionEvent};
use cloudmesh::proto::{
    ClientFrame, ClientId, CloseCode, DeleteReason, FrameReader, Hello, Key, KeySpec,
    ResumeRefusal, ResumeRequest, ServerFrame, WireError,
};
use cloudmesh::transport::Timing;
use cloudmesh::NodeConfig;
use common::*;
use tokio::net::UdpSocket;

/// A UDP relay between clients and a node that the test can cut: while cut, every datagram
/// is dropped both ways, as a dead Wi-Fi or a pulled cable would.
struct Relay {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    /// Drops only what the node sends back (the node still hears the client).
    cut_back: Arc<AtomicBool>,
    target: Arc<Mutex<Option<SocketAddr>>>,
}

impl Relay {
    /// A relay whose target is set later ([`Relay::to`]): a node can then advertise the
    /// relay as its client address, so the SDK's only path to it is the relay.
    async fn bind() -> Relay {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind relay"));
        let addr = front.local_addr().expect("relay addr");
        let cut = Arc::new(AtomicBool::new(false));
        let cut_back = Arc::new(AtomicBool::new(false));
        let target: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        let backs: Arc<Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>> = Arc::default();
        let (f, c, t) = (front.clone(), cut.clone(), target.clone());
        let cb = cut_back.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            loop {
                let Ok((n, from)) = f.recv_from(&mut buf).await else {
                    return;
                };
                let node = *t.lock().expect("relay target");
                let Some(node) = node else { continue };
                if c.load(Ordering::SeqCst) {
                    continue;
                }
                let existing = backs.lock().expect("relay map").get(&from).cloned();
                let back = match existing {
                    Some(b) => b,
                    None => {
                        let b = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
                        backs.lock().expect("relay map").insert(from, b.clone());
                        let (f2, c2, b2, cb2) = (f.clone(), c.clone(), b.clone(), cb.clone());
                        tokio::spawn(async move {
                            let mut buf = vec![0u8; 65_536];
                            while let Ok(n) = b2.recv(&mut buf).await {
                                if !c2.load(Ordering::SeqCst) && !cb2.load(Ordering::SeqCst) {
                                    let _ = f2.send_to(&buf[..n], from).await;
                                }
                            }
                        });
                        b.connect(node).await.expect("relay connect");
                        b
                    }
                };
                let _ = back.send(&buf[..n]).await;
            }
        });
        Relay {
            addr,
            cut,
            cut_back,
            target,
        }
    }

    fn to(&self, node: SocketAddr) {
        *self.target.lock().expect("relay target") = Some(node);
    }

    fn cut(&self, on: bool) {
        self.cut.store(on, Ordering::SeqCst);
    }

    fn cut_back(&self, on: bool) {
        self.cut_back.store(on, Ordering::SeqCst);
    }
}

/// Short QUIC timing so an outage is noticed in about a second on both sides.
fn quick() -> Timing {
    Timing {
        idle_timeout: Duration::from_millis(1200),
        keep_alive: Duration::from_millis(300),
    }
}

fn fast_node(c: &mut NodeConfig, grace: Duration) {
    c.timing = quick();
    c.resume_grace = grace;
}

async fn client_via(addr: SocketAddr, t: &TestNode, heal: bool) -> Client {
    let mut opts = ClientOptions::new(t.trust());
    opts.timing = quick();
    opts.heal = heal;
    opts.heal_backoff_max = Duration::from_millis(300);
    within("client connects", Client::connect(addr, opts))
        .await
        .expect("client connects")
}

async fn next_session_event(
    rx: &mut tokio::sync::broadcast::Receiver<SessionEvent>,
) -> SessionEvent {
    within("a session event", rx.recv())
        .await
        .expect("session events open")
}

/// Collects every event of a subscription that arrives within `quiet` of the last one.
async fn drain_events(sub: &mut cloudmesh::client::Subscription, quiet: Duration) -> Vec<Event> {
    let mut out = Vec::new();
    while let Ok(Some(e)) = tokio::time::timeout(quiet, sub.next()).await {
        out.push(e);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_longer_than_the_idle_timeout_but_within_the_grace_loses_nothing() {
    init_test_log();
    let relay = Relay::bind().await;
    let node = node_with(|c| {
        fast_node(c, Duration::from_secs(20));
        c.advertise_client = vec![relay.addr];
    })
    .await;
    relay.to(node.addr());
    let player = client_via(relay.addr, &node, true).await;
    let watcher = node.client().await;
    let id = player.id();
    player
        .post(Key::new("players", 1), "alice")
        .await
        .expect("post");
    let (_, mut chat) = player
        .subscribe(vec![KeySpec::primary("chat")], None)
        .await
        .expect("subscribe");
    let (rows, mut seen) = watcher
        .subscribe(vec![KeySpec::primary("players")], None)
        .await
        .expect("watch");
    assert_eq!(rows.len(), 1);
    let mut events = player.session_events();

    relay.cut(true);
    // Both sides notice (idle timeout): the node suspends, the SDK starts to resume.
    assert!(matches!(
        next_session_event(&mut events).await,
        SessionEvent::Suspended { .. }
    ));
    wait_until("the node to suspend the session", || {
        node.node.suspended() == vec![id]
    })
    .await;
    // Missed while away: queued at the node for the client.
    for i in 0..3u32 {
        watcher
            .post(Key::new("chat", i), format!("hello {i}"))
            .await
            .expect("chat post");
    }
    // A call made during the outage waits and completes after the resume.
    let parked = {
        let p = player.clone();
        tokio::spawn(async move { p.post(Key::new("players", 2), "alice-2").await })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    relay.cut(false);

    match next_session_event(&mut events).await {
        SessionEvent::Resumed { from, to } => {
            assert_eq!(from, node.node.id());
            assert_eq!(to, node.node.id());
        }
        other => panic!("expected Resumed, got {other:?}"),
    }
    assert_eq!(player.id(), id, "the same session");
    within("the parked post", parked)
        .await
        .expect("task")
        .expect("the call made during the outage completes");
    // Every chat line missed arrives once, in order.
    let mut got = Vec::new();
    while got.len() < 3 {
        match next_event(&mut chat).await {
            Event::Updated(row) => got.push(row.key.secondary),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, vec![0, 1, 2]);
    assert!(
        drain_events(&mut chat, Duration::from_millis(300))
            .await
            .is_empty(),
        "no duplicates"
    );
    // The watcher saw no deletion at all: the player never left.
    let seen_events = drain_events(&mut seen, Duration::from_millis(300)).await;
    assert!(
        seen_events
            .iter()
            .all(|e| matches!(e, Event::Updated(r) if r.owner == id)),
        "{seen_events:?}"
    );
    assert!(node.node.suspended().is_empty());
    player.ping().await.expect("the session goes on");
}

/// Connects with a raw hello (the test decides what it carries) and returns the node's
/// first answer.
async fn hello_raw(addr: SocketAddr, hello: Hello) -> (Raw, ServerFrame) {
    let mut raw = raw_connect(addr).await;
    raw.frame(&ClientFrame::Hello(hello)).await;
    let frame = {
        let mut reader = FrameReader::new(&mut raw.recv, 1 << 20);
        within("the node's answer", reader.next::<ServerFrame>())
            .await
            .expect("decodes")
            .expect("an answer")
    };
    (raw, frame)
}

fn resume_hello(client: ClientId, token: Bytes) -> Hello {
    Hello {
        resume: Some(ResumeRequest { client, token }),
        ..Hello::current()
    }
}

async fn refused_with(addr: SocketAddr, client: ClientId, token: Bytes) -> ResumeRefusal {
    match hello_raw(addr, resume_hello(client, token)).await.1 {
        ServerFrame::Refused(WireError::ResumeRefused(why)) => why,
        other => panic!("expected a resume refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_tokens_are_refused_when_forged_replayed_expired_or_for_another_client() {
    init_test_log();
    let node = node_with(|c| fast_node(c, Duration::from_millis(800))).await;
    let first = node.client().await;
    let (id, token) = first.resume_token().expect("a resume token");

    // Forged: one bit flipped.
    let mut forged = token.to_vec();
    forged[3] ^= 1;
    assert_eq!(
        refused_with(node.addr(), id, Bytes::from(forged)).await,
        ResumeRefusal::Invalid
    );
    // Another client id than the token's.
    assert_eq!(
        refused_with(node.addr(), ClientId(id.0 ^ 1), token.clone()).await,
        ResumeRefusal::WrongClient
    );
    // A good token takes the session, even from a connection the node still thinks alive
    // (a restarted process): the old connection is closed as superseded.
    let (raw, frame) = hello_raw(node.addr(), resume_hello(id, token.clone())).await;
    let ServerFrame::Welcome(w) = frame else {
        panic!("expected a welcome, got {frame:?}");
    };
    assert_eq!(w.client_id, id);
    assert!(w.resumed.is_some());
    assert!(matches!(
        within("the old connection to close", first.closed()).await,
        ClientError::Closed {
            code: Some(CloseCode::Superseded),
            ..
        }
    ));
    // Replayed: the token was used; the welcome carried the next one.
    assert_eq!(
        refused_with(node.addr(), id, token).await,
        ResumeRefusal::Used
    );
    // A client that closes its connection ends its session: nothing left to resume.
    let next = w.resume.expect("a new token").token;
    raw.conn.close(0u32.into(), b"");
    drop(raw);
    wait_until("the session to end", || node.node.clients().is_empty()).await;
    assert!(node.node.suspended().is_empty(), "a close is not a loss");
    assert_eq!(
        refused_with(node.addr(), id, next).await,
        ResumeRefusal::Gone
    );

    // Expired: a client whose path goes dark; the grace (0.8 s) passes.
    let relay = Relay::bind().await;
    relay.to(node.addr());
    let lost = client_via(relay.addr, &node, false).await;
    let (lost_id, lost_token) = lost.resume_token().expect("a resume token");
    relay.cut(true);
    wait_until("the session suspended", || {
        node.node.suspended() == vec![lost_id]
    })
    .await;
    wait_until("the grace to pass", || node.node.suspended().is_empty()).await;
    assert_eq!(
        refused_with(node.addr(), lost_id, lost_token).await,
        ResumeRefusal::Expired
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_past_its_grace_is_deleted_as_expired_and_restored_by_the_sdk() {
    init_test_log();
    let relay = Relay::bind().await;
    let node = node_with(|c| {
        fast_node(c, Duration::from_millis(1500));
        c.advertise_client = vec![relay.addr];
    })
    .await;
    relay.to(node.addr());
    let player = client_via(relay.addr, &node, true).await;
    let watcher = node.client().await;
    let old = player.id();
    player
        .post(Key::new("players", 7), "bob")
        .await
        .expect("post");
    player.set_session("level=3").await.expect("session");
    let (_, mut seen) = watcher
        .subscribe(vec![KeySpec::primary("players")], None)
        .await
        .expect("watch");
    let mut events = player.session_events();
    relay.cut(true);
    assert!(matches!(
        next_session_event(&mut events).await,
        SessionEvent::Suspended { .. }
    ));
    // The grace passes: the watcher sees the row deleted as expired.
    match next_event(&mut seen).await {
        Event::Deleted { row, reason } => {
            assert_eq!(reason, DeleteReason::Expired);
            assert_eq!(row.owner, old);
        }
        other => panic!("expected an expired deletion, got {other:?}"),
    }
    relay.cut(false);
    match next_session_event(&mut events).await {
        SessionEvent::Restored {
            old_client,
            new_client,
            rows,
            ..
        } => {
            assert_eq!(old_client, old);
            assert_ne!(new_client, old);
            assert_eq!(rows, 1);
        }
        other => panic!("expected Restored, got {other:?}"),
    }
    match next_event(&mut seen).await {
        Event::Updated(row) => {
            assert_eq!(row.owner, player.id());
            assert_eq!(&row.data[..], b"bob");
        }
        other => panic!("expected the row back, got {other:?}"),
    }
    assert_eq!(
        &player.session().await.expect("session")[..],
        b"level=3",
        "the session blob came back too"
    );
}

fn meshed(c: &mut NodeConfig, _name: &str) {
    c.secret = Some(cloudmesh::mesh::MeshSecret::new(vec![42; 32]).expect("secret"));
    c.timing = quick();
    c.resume_grace = Duration::from_secs(20);
    c.migration_timeout = Duration::from_secs(1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_resumes_on_another_node_and_moves_there_without_a_deletion() {
    init_test_log();
    let relay = Relay::bind().await;
    let a = node_with(|c| {
        meshed(c, "a");
        c.name = "a".into();
        c.advertise_client = vec![relay.addr];
    })
    .await;
    relay.to(a.addr());
    let b = node_with(|c| {
        meshed(c, "b");
        c.name = "b".into();
        c.join = vec![a.addr().to_string()];
    })
    .await;
    wait_until("a and b linked", || {
        a.node.peers().len() == 1 && b.node.peers().len() == 1
    })
    .await;
    let (a, b) = (&a, &b);
    let player = client_via(relay.addr, a, true).await;
    let id = player.id();
    player
        .post(Key::new("players", 3), "carol")
        .await
        .expect("post");
    player.set_session("inventory").await.expect("session");
    let watcher = b.client().await;
    let (rows, mut seen) = watcher
        .subscribe(vec![KeySpec::primary("players")], None)
        .await
        .expect("watch");
    assert_eq!(rows.len(), 1);
    // The SDK learns b's address from `cloud.nodes` after its welcome (in the background).
    wait_until("the SDK to know b", || {
        player.known_nodes().contains(&b.addr())
    })
    .await;
    let mut events = player.session_events();
    relay.cut(true);
    assert!(matches!(
        next_session_event(&mut events).await,
        SessionEvent::Suspended { .. }
    ));
    match next_session_event(&mut events).await {
        SessionEvent::Resumed { from, to } => {
            assert_eq!(from, a.node.id());
            assert_eq!(to, b.node.id());
        }
        other => panic!("expected Resumed on b, got {other:?}"),
    }
    assert_eq!(player.id(), id);
    assert_eq!(player.node_id(), b.node.id());
    assert_eq!(&player.session().await.expect("session")[..], b"inventory");
    // The watcher saw the row move to b, never go away.
    let e = next_event(&mut seen).await;
    match &e {
        Event::Updated(row) => {
            assert_eq!(row.owner, id);
            assert_eq!(row.node, b.node.id());
        }
        other => panic!("expected the row to move, got {other:?}"),
    }
    assert!(drain_events(&mut seen, Duration::from_millis(300))
        .await
        .iter()
        .all(|e| !matches!(e, Event::Deleted { .. })));
    assert!(a.node.suspended().is_empty());
    player
        .post(Key::new("players", 3), "carol-2")
        .await
        .expect("the session goes on at b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_disconnects_a_client_that_ignores_migrate_and_its_session_resumes_elsewhere() {
    init_test_log();
    let nodes = mesh_of(&["a", "b"], meshed).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    // A raw client that never follows a Migrate instruction.
    let (raw, frame) = hello_raw(a.addr(), Hello::current()).await;
    let ServerFrame::Welcome(w) = frame else {
        panic!("expected a welcome, got {frame:?}");
    };
    let token = w.resume.expect("a resume token").token;
    let drained = within("the drain", a.node.drain()).await;
    assert!(drained.is_ok(), "{drained:?}");
    let (code, _) = raw.close_code().await;
    assert_eq!(code, Some(CloseCode::MigrateIgnored));
    assert_eq!(a.node.suspended(), vec![w.client_id]);
    // It resumes at b, which takes the session from a.
    let (_raw2, frame) = hello_raw(b.addr(), resume_hello(w.client_id, token)).await;
    let ServerFrame::Welcome(w2) = frame else {
        panic!("expected a welcome at b, got {frame:?}");
    };
    assert_eq!(w2.client_id, w.client_id);
    assert_eq!(w2.node_id, b.node.id());
    wait_until("the session to leave a", || a.node.suspended().is_empty()).await;
    assert!(b.node.clients().contains(&w.client_id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_completes_while_a_session_is_suspended_and_the_session_resumes_elsewhere() {
    init_test_log();
    let relay = Relay::bind().await;
    let a = node_with(|c| {
        meshed(c, "a");
        c.name = "a".into();
        c.advertise_client = vec![relay.addr];
    })
    .await;
    relay.to(a.addr());
    // b too is reached by clients through a relay of its own, so both can be cut.
    let relay_b = Relay::bind().await;
    let b = node_with(|c| {
        meshed(c, "b");
        c.name = "b".into();
        c.join = vec![a.addr().to_string()];
        c.advertise_client = vec![relay_b.addr];
    })
    .await;
    relay_b.to(b.addr());
    wait_until("a and b linked with loads known", || {
        a.node.peers().len() == 1 && b.node.loads().len() == 2 && a.node.loads().len() == 2
    })
    .await;
    let player = client_via(relay.addr, &a, true).await;
    let id = player.id();
    player
        .post(Key::new("players", 5), "erin")
        .await
        .expect("post");
    wait_until("the SDK to know b", || {
        player.known_nodes().contains(&relay_b.addr)
    })
    .await;
    let mut events = player.session_events();
    // The client's way to both nodes goes dark.
    relay.cut(true);
    relay_b.cut(true);
    wait_until("the session suspended at a", || {
        a.node.suspended() == vec![id]
    })
    .await;
    // The drain does not wait for a suspended session.
    let drained = within("the drain", a.node.drain()).await;
    assert!(drained.is_ok(), "{drained:?}");
    relay.cut(false);
    relay_b.cut(false);
    loop {
        match next_session_event(&mut events).await {
            SessionEvent::Suspended { .. } => continue,
            SessionEvent::Resumed { to, .. } => {
                assert_eq!(to, b.node.id(), "resumed away from the drained node");
                break;
            }
            other => panic!("expected Resumed, got {other:?}"),
        }
    }
    assert_eq!(player.id(), id);
    assert!(a.node.suspended().is_empty());
    player.ping().await.expect("the session goes on at b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_blob_is_readable_after_a_migration_and_listed_for_admins() {
    use cloudmesh::admin::{Command, CommandRunner, Response};
    init_test_log();
    let nodes = mesh_of(&["a", "b"], meshed).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let player = a.client().await;
    player.set_session("quest=7").await.expect("session");
    let mut moves = player.migrations();
    within("the migration", a.node.migrate(player.id(), b.node.id()))
        .await
        .expect("migrates");
    within("the move to settle", moves.recv())
        .await
        .expect("a migration event");
    assert_eq!(player.node_id(), b.node.id());
    assert_eq!(
        &player.session().await.expect("session")[..],
        b"quest=7",
        "the game server receiving the player reads what the previous one left"
    );
    // Admins see the size always, the content only when they ask for it.
    let list = |session: bool| {
        let admin = b.node.admin_handle();
        async move {
            let mut rx = admin.execute(Command::Clients {
                node: None,
                session,
            });
            match within("the clients listing", rx.recv()).await {
                Some(Response::Clients { clients, .. }) => clients,
                other => panic!("unexpected {other:?}"),
            }
        }
    };
    let id = player.id().to_string();
    let plain = list(false).await;
    let me = plain.iter().find(|c| c.id == id).expect("listed");
    assert_eq!(me.session_bytes, 7);
    assert_eq!(me.session, None);
    let full = list(true).await;
    let me = full.iter().find(|c| c.id == id).expect("listed");
    assert_eq!(me.session.as_deref(), Some("quest=7"));
    assert_eq!(me.session_encoding.as_deref(), Some("utf8"));
    assert_eq!(me.suspended_until_ms, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_in_flight_when_the_connection_is_lost_say_whether_they_were_applied() {
    init_test_log();
    let relay = Relay::bind().await;
    let node = node_with(|c| {
        fast_node(c, Duration::from_secs(20));
        c.advertise_client = vec![relay.addr];
    })
    .await;
    relay.to(node.addr());
    let player = client_via(relay.addr, &node, true).await;
    let watcher = node.client().await;
    let id = player.id();
    let mut events = player.session_events();

    // The node hears the post but its answer never comes back: applied, answer lost.
    let rows_before = node.node.stats().rows;
    relay.cut_back(true);
    let applied = {
        let p = player.clone();
        tokio::spawn(async move { p.post(Key::new("players", 1), "one").await })
    };
    wait_until("the node to apply the post", || {
        node.node.stats().rows > rows_before
    })
    .await;
    assert!(matches!(
        next_session_event(&mut events).await,
        SessionEvent::Suspended { .. }
    ));
    relay.cut_back(false);
    assert!(matches!(
        next_session_event(&mut events).await,
        SessionEvent::Resumed { .. }
    ));
    let result = within("the applied call", applied).await.expect("task");
    assert_eq!(result, Err(ClientError::Interrupted { applied: true }));
    assert!(result.as_ref().is_err_and(ClientError::is_retryable));
    let rows = watcher
        .get(vec![KeySpec::exact(&Key::new("players", 1))])
        .await
        .expect("get");
    assert_eq!(rows.len(), 1, "applied once");

    // The node never hears the post: not applied.
    relay.cut(true);
    let never = {
        let p = player.clone();
        tokio::spawn(async move { p.post(Key::new("players", 2), "two").await })
    };
    assert!(matches!(
        next_session_event(&mut events).await,
        SessionEvent::Suspended { .. }
    ));
    relay.cut(false);
    assert!(matches!(
        next_session_event(&mut events).await,
        SessionEvent::Resumed { .. }
    ));
    let result = within("the unapplied call", never).await.expect("task");
    assert_eq!(result, Err(ClientError::Interrupted { applied: false }));
    let rows = watcher
        .get(vec![KeySpec::exact(&Key::new("players", 2))])
        .await
        .expect("get");
    assert!(rows.is_empty(), "never applied");
    assert_eq!(player.id(), id);
    // Repeating it is safe and works.
    player
        .post(Key::new("players", 2), "two")
        .await
        .expect("the repeated call");
}
