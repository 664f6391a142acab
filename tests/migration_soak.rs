//! Issue 4, acceptance 1: 200 clients post and subscribe across three nodes
//! while clients are force-migrated at random and then node c is drained, traffic running
//! throughout. Every client's view is checked: no acknowledged post lost, no spurious
//! deletion, no duplicated or out-of-order notification, no error surfaced to a client.
//!
//! The seed (driver choices, pauses) is printed; set `SOAK_SEED` to replay one.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cloudmesh::client::{Client, Event, Subscription};
use cloudmesh::mesh::MeshSecret;
use cloudmesh::proto::{ClientId, DeleteReason, GetQuery, Key, KeySpec, NodeId, NodeState, Row};
use cloudmesh::{MigrateError, NodeConfig};
use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const CLIENTS: u32 = 200;
/// Shared primaries: every row is watched by the ~20 clients of its zone, spread over nodes.
const ZONES: u32 = 10;
/// Posts every client makes at least; it then keeps posting until the drain is over, so
/// traffic spans every migration whatever the machine's speed.
const MIN_POSTS: u32 = 40;
/// Bound on a client's posts, so its loop ends even if the driver never finishes (the
/// driver then fails on its own deadline).
const MAX_POSTS: u32 = 3_000;
/// Forced migrations the driver completes before draining c.
const MIGRATIONS: usize = 30;
/// Attempts allowed for them: the two migrators race each other on purpose.
const MIGRATION_ATTEMPTS: usize = 300;
/// Clients the migrators favour (see `migrator`).
const HOT_CLIENTS: usize = 12;
/// Clients whose index is a multiple of this release their row and re-post it every
/// `RELEASE_PERIOD`th post, so subscribers see real `Released` deletions among the moves
/// (and some releases fall right before a move).
const RELEASER_EVERY: u32 = 4;
const RELEASE_PERIOD: u32 = 5;

fn mesh_config(c: &mut NodeConfig, name: &str) {
    init_test_log();
    c.name = name.into();
    c.secret = Some(MeshSecret::new(vec![5; 32]).expect("secret"));
    // Generous: on a loaded 2-core machine a slow handshake must not turn into a rollback;
    // the test is about correctness, stalls are only reported.
    c.migration_timeout = Duration::from_secs(10);
    c.timing.idle_timeout = Duration::from_secs(10);
    // A get waits this long for other nodes before answering `incomplete`; under this much
    // load on 2 cores, 2 s can pass (seen once in ~30 runs), which is an honest answer but
    // not what this test checks.
    c.remote_timeout = Duration::from_secs(10);
    c.timing.keep_alive = Duration::from_millis(500);
    c.load_interval = Duration::from_millis(100);
    // 200 clients fit anywhere (even all on two nodes after the drain): nothing is refused.
    c.max_clients = 1000;
}

async fn mesh3() -> Vec<TestNode> {
    mesh_of(&["a", "b", "c"], mesh_config).await
}

fn zone(i: u32) -> String {
    format!("zone.{}", i % ZONES)
}

type Errors = Arc<Mutex<Vec<String>>>;

fn record(errors: &Errors, what: String) {
    errors.lock().expect("errors lock").push(what);
}

/// One subscriber's view of its zone, built from the snapshot and its events in order, with
/// every ordering rule checked as the events arrive.
struct Watch {
    who: u32,
    primary: String,
    /// The view: (secondary, owner) → row.
    view: BTreeMap<(u32, ClientId), Row>,
    /// Highest version delivered per row (kept across deletions: versions continue).
    last_version: HashMap<(u32, ClientId), u64>,
    /// Highest sequence number delivered per row (data is the owner's sequence number).
    last_seq: HashMap<(u32, ClientId), u32>,
    /// `Released` deletions seen, per owner.
    deletes: HashMap<ClientId, u32>,
    /// Every update seen: (owner, version, seq), to match against what owners were told.
    updates: Vec<(ClientId, u64, u32)>,
    events: usize,
    /// `Migrated` announcements this subscriber's client has had so far (for diagnosis).
    moved: usize,
    violations: Violations,
}

impl Watch {
    fn new(who: u32, primary: String, snapshot: Vec<Row>) -> Self {
        let mut w = Watch {
            who,
            primary,
            view: BTreeMap::new(),
            last_version: HashMap::new(),
            last_seq: HashMap::new(),
            deletes: HashMap::new(),
            updates: Vec::new(),
            events: 0,
            moved: 0,
            violations: Violations::default(),
        };
        for row in snapshot {
            w.apply(Event::Updated(row));
        }
        w.events = 0;
        w
    }

    fn violation(&mut self, kind: &'static str, text: String) {
        let text = format!(
            "subscriber {} ({}, moved {} times so far): {text}",
            self.who, self.primary, self.moved
        );
        self.violations.add(kind, text);
    }

    fn drain(&mut self, sub: &mut Subscription) {
        while let Some(e) = sub.try_next() {
            self.apply(e);
        }
    }

    fn apply(&mut self, e: Event) {
        self.events += 1;
        let row = e.row().clone();
        if row.key.primary != self.primary {
            self.violation("event outside the subscription", format!("{e:?}"));
            return;
        }
        let id = (row.key.secondary, row.owner);
        let prev = self.last_version.get(&id).copied().unwrap_or(0);
        if row.version <= prev {
            self.violation(
                "duplicated or out-of-order notification",
                format!(
                    "{}/{:?}: version {} after {prev}: {e:?}",
                    row.key, row.owner, row.version
                ),
            );
        }
        self.last_version.insert(id, row.version.max(prev));
        match e {
            Event::Updated(row) => {
                let Some(seq) = parse_seq(&row) else {
                    self.violation("row data is not a sequence number", format!("{row:?}"));
                    return;
                };
                let prev_seq = self.last_seq.get(&id).copied().unwrap_or(0);
                if seq < prev_seq {
                    self.violation(
                        "older data after newer",
                        format!(
                            "{}/{:?}: seq {seq} after {prev_seq} (version {})",
                            row.key, row.owner, row.version
                        ),
                    );
                }
                self.last_seq.insert(id, seq.max(prev_seq));
                self.updates.push((row.owner, row.version, seq));
                self.view.insert(id, row);
            }
            Event::Deleted { row, reason } => {
                if reason != DeleteReason::Released {
                    self.violation("spurious deletion", format!("{reason:?}: {row:?}"));
                }
                *self.deletes.entry(row.owner).or_insert(0) += 1;
                if self.view.remove(&id).is_none() {
                    self.violation("deletion of a row not in the view", format!("{row:?}"));
                }
            }
        }
    }

    /// Differences between the view and the truth for this zone (empty when equal).
    fn diff(&self, truth: &BTreeMap<(u32, ClientId), Row>) -> Vec<String> {
        let mut out = Vec::new();
        for (id, row) in truth {
            match self.view.get(id) {
                Some(v) if v == row => {}
                Some(v) => out.push(format!("has {v:?}, truth {row:?}")),
                None => out.push(format!("misses {row:?}")),
            }
        }
        for (id, v) in &self.view {
            if !truth.contains_key(id) {
                out.push(format!("has {v:?}, absent from the truth"));
            }
        }
        out
    }
}

/// Broken invariants by kind: a count and the first few cases of each, so one broken rule
/// repeated thousands of times still gives a readable failure.
#[derive(Default)]
struct Violations(BTreeMap<&'static str, (usize, Vec<String>)>);

impl Violations {
    fn add(&mut self, kind: &'static str, text: String) {
        let e = self.0.entry(kind).or_default();
        e.0 += 1;
        if e.1.len() < 6 {
            e.1.push(text);
        }
    }

    fn merge(&mut self, other: &Violations) {
        for (kind, (n, texts)) in &other.0 {
            let e = self.0.entry(kind).or_default();
            e.0 += n;
            for t in texts {
                if e.1.len() < 6 {
                    e.1.push(t.clone());
                }
            }
        }
    }

    fn report(&self) -> String {
        let mut out = String::new();
        for (kind, (n, texts)) in &self.0 {
            let _ = writeln!(out, "- {kind}: {n}");
            for t in texts {
                let _ = writeln!(out, "    {t}");
            }
        }
        out
    }
}

fn parse_seq(row: &Row) -> Option<u32> {
    std::str::from_utf8(&row.data).ok()?.parse().ok()
}

/// One acknowledged post.
#[derive(Debug, Clone, Copy)]
struct Ack {
    seq: u32,
    version: u64,
    /// The client released its row just before this post.
    after_release: bool,
    /// Where the client was served just after the acknowledgement (for diagnosis only).
    node: NodeId,
}

/// What one client did.
struct Log {
    /// Every acknowledged post, in order.
    acked: Vec<Ack>,
    releases: u32,
    /// Longest time between two successful posts (pause included): the client-visible stall.
    max_gap: Duration,
    migrated: usize,
}

async fn run_client(
    i: u32,
    client: Client,
    mut sub: Subscription,
    mut watch: Watch,
    seed: u64,
    stop: Arc<AtomicBool>,
    errors: Errors,
) -> (Client, Subscription, Watch, Log) {
    let mut rng = StdRng::seed_from_u64(seed ^ (u64::from(i) << 32));
    let mut moves = client.migrations();
    let key = Key::new(zone(i), i);
    let releaser = i.is_multiple_of(RELEASER_EVERY);
    let mut log = Log {
        acked: Vec::new(),
        releases: 0,
        max_gap: Duration::ZERO,
        migrated: 0,
    };
    let mut last_ok = Instant::now();
    for seq in 1..=MAX_POSTS {
        if seq > MIN_POSTS && stop.load(Ordering::Acquire) {
            break;
        }
        let mut after_release = false;
        if releaser && seq % RELEASE_PERIOD == 0 {
            after_release = true;
            match tokio::time::timeout(DEADLINE, client.release(vec![key.clone()])).await {
                Ok(Ok(1)) => log.releases += 1,
                Ok(Ok(n)) => record(
                    &errors,
                    format!("client {i}: release of its row at seq {seq} released {n} rows"),
                ),
                Ok(Err(e)) => record(&errors, format!("client {i}: release at seq {seq}: {e}")),
                Err(_) => record(&errors, format!("client {i}: release at seq {seq} hung")),
            }
        }
        match tokio::time::timeout(DEADLINE, client.post(key.clone(), seq.to_string())).await {
            Ok(Ok(version)) => {
                let now = Instant::now();
                log.max_gap = log.max_gap.max(now - last_ok);
                last_ok = now;
                log.acked.push(Ack {
                    seq,
                    version,
                    after_release,
                    node: client.node_id(),
                });
            }
            Ok(Err(e)) => record(&errors, format!("client {i}: post seq {seq}: {e}")),
            Err(_) => {
                record(&errors, format!("client {i}: post seq {seq} hung"));
                break;
            }
        }
        while moves.try_recv().is_ok() {
            log.migrated += 1;
        }
        watch.moved = log.migrated;
        // Keeps the unbounded event queue short and checks ordering as it happens.
        watch.drain(&mut sub);
        tokio::time::sleep(Duration::from_millis(rng.gen_range(5..=20))).await;
    }
    while moves.try_recv().is_ok() {
        log.migrated += 1;
    }
    (client, sub, watch, log)
}

#[derive(Default)]
struct DriverStats {
    done: AtomicUsize,
    attempts: AtomicUsize,
    busy: AtomicUsize,
    not_here: AtomicUsize,
    in_transit: AtomicUsize,
}

/// One migrator: picks a random client, finds its node, moves it to another random node.
async fn migrator(
    worker: u64,
    nodes: &[TestNode],
    ids: &[ClientId],
    seed: u64,
    stats: &DriverStats,
    errors: &Errors,
) {
    let mut rng = StdRng::seed_from_u64(seed.wrapping_add(worker).wrapping_mul(0x9e37_79b9));
    while stats.done.load(Ordering::Acquire) < MIGRATIONS
        && stats.attempts.fetch_add(1, Ordering::AcqRel) < MIGRATION_ATTEMPTS
    {
        // Half the picks come from a small hot set, so some clients move again soon after
        // arriving (and the two migrators sometimes collide on one client).
        let id = if rng.gen_bool(0.5) {
            ids[rng.gen_range(0..HOT_CLIENTS)]
        } else {
            ids[rng.gen_range(0..ids.len())]
        };
        let Some(from) = nodes.iter().position(|t| t.node.clients().contains(&id)) else {
            // Between two nodes right now (the other migrator is moving it).
            stats.in_transit.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        let to = (from + rng.gen_range(1..nodes.len())) % nodes.len();
        let target = nodes[to].node.id();
        match within("a forced migration", nodes[from].node.migrate(id, target)).await {
            Ok(()) => {
                stats.done.fetch_add(1, Ordering::AcqRel);
            }
            Err(MigrateError::Busy(_)) => {
                stats.busy.fetch_add(1, Ordering::Relaxed);
            }
            Err(MigrateError::NotHere(_)) => {
                stats.not_here.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => record(
                errors,
                format!("forced migration of {id:?} from node {from} to node {to}: {e:?}"),
            ),
        }
        // A little traffic between moves, so they are spread over the run.
        tokio::time::sleep(Duration::from_millis(rng.gen_range(10..=40))).await;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_clients_under_traffic_survive_forced_migrations_and_a_drain() {
    let seed: u64 = std::env::var("SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().gen());
    eprintln!("migration soak: seed {seed} (replay with SOAK_SEED={seed})");
    let started = Instant::now();
    let nodes = mesh3().await;
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let errors: Errors = Arc::new(Mutex::new(Vec::new()));

    // Connect and subscribe everyone before any traffic, so every subscriber sees every
    // change to its zone; a few at a time keeps handshakes within their deadline.
    let mut ready: Vec<Option<(Client, Subscription, Watch)>> =
        (0..CLIENTS).map(|_| None).collect();
    for chunk in (0..CLIENTS).collect::<Vec<_>>().chunks(20) {
        let mut set = tokio::task::JoinSet::new();
        for &i in chunk {
            let addr_node = &nodes[(i % 3) as usize];
            let (addr, trust) = (addr_node.addr(), addr_node.trust());
            set.spawn(async move {
                let client =
                    Client::connect(addr, cloudmesh::client::ClientOptions::new(trust)).await;
                let client = match client {
                    Ok(c) => c,
                    Err(e) => return (i, Err(format!("connect: {e}"))),
                };
                match client
                    .subscribe(vec![KeySpec::primary(zone(i))], None)
                    .await
                {
                    Ok((snapshot, sub)) => {
                        let watch = Watch::new(i, zone(i), snapshot);
                        (i, Ok((client, sub, watch)))
                    }
                    Err(e) => (i, Err(format!("subscribe: {e}"))),
                }
            });
        }
        while let Some(joined) = within("clients connecting", set.join_next()).await {
            let (i, r) = joined.expect("connect task");
            match r {
                Ok(x) => ready[i as usize] = Some(x),
                Err(e) => panic!("client {i} could not start: {e}"),
            }
        }
    }
    let ids: Vec<ClientId> = ready
        .iter()
        .map(|r| r.as_ref().expect("started").0.id())
        .collect();
    assert_eq!(
        nodes.iter().map(|t| t.node.clients().len()).sum::<usize>(),
        CLIENTS as usize,
        "every client connected where it was sent"
    );
    eprintln!(
        "migration soak: {CLIENTS} clients connected and subscribed in {:?}",
        started.elapsed()
    );

    let stop = Arc::new(AtomicBool::new(false));
    let traffic_started = Instant::now();
    let tasks: Vec<_> = ready
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let (client, sub, watch) = r.expect("started");
            tokio::spawn(run_client(
                i as u32,
                client,
                sub,
                watch,
                seed,
                stop.clone(),
                errors.clone(),
            ))
        })
        .collect();

    // The driver: forced migrations by two racing migrators, then a full drain of c, all
    // while the clients keep posting.
    let stats = DriverStats::default();
    tokio::join!(
        migrator(0, &nodes, &ids, seed, &stats, &errors),
        migrator(1, &nodes, &ids, seed, &stats, &errors),
    );
    let migrations_done = stats.done.load(Ordering::Acquire);
    assert!(
        migrations_done >= MIGRATIONS,
        "only {migrations_done} of {MIGRATIONS} forced migrations succeeded in \
         {MIGRATION_ATTEMPTS} attempts (busy {}, not here {}, in transit {}); errors: {:?}",
        stats.busy.load(Ordering::Relaxed),
        stats.not_here.load(Ordering::Relaxed),
        stats.in_transit.load(Ordering::Relaxed),
        errors.lock().expect("errors lock"),
    );
    let migrations_time = traffic_started.elapsed();
    let on_c = c.node.clients().len();
    let drain_started = Instant::now();
    let moved = within("the drain of c", c.node.drain())
        .await
        .unwrap_or_else(|e| panic!("drain of c failed: {e}"));
    let drain_time = drain_started.elapsed();
    assert_eq!(c.node.state(), NodeState::Drained);
    wait_until("c has no client left", || c.node.clients().is_empty()).await;
    stop.store(true, Ordering::Release);

    let mut done = Vec::new();
    for t in tasks {
        done.push(
            within("a client's traffic to end", t)
                .await
                .expect("client task"),
        );
    }
    let traffic_time = traffic_started.elapsed();

    let names: HashMap<NodeId, &str> = nodes
        .iter()
        .zip(["a", "b", "c"])
        .map(|(t, n)| (t.node.id(), n))
        .collect();
    let name = |id: NodeId| names.get(&id).copied().unwrap_or("?");
    let mut violations = Violations::default();

    // 6. Nobody is left on c; every client knows it is served by a or b.
    let switched = tokio::time::timeout(DEADLINE, async {
        while !done
            .iter()
            .all(|(cl, ..)| cl.node_id() == a.node.id() || cl.node_id() == b.node.id())
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    if switched.is_err() {
        for (i, (cl, ..)) in done.iter().enumerate() {
            if cl.node_id() != a.node.id() && cl.node_id() != b.node.id() {
                violations.add(
                    "client not on a or b after the drain",
                    format!("client {i} is on {}", name(cl.node_id())),
                );
            }
        }
    }
    if !c.node.clients().is_empty() {
        violations.add(
            "clients left on c after the drain",
            format!("{:?}", c.node.clients()),
        );
    }

    // 1. No call surfaced an error (pings included).
    for (i, (cl, ..)) in done.iter().enumerate() {
        if let Err(e) = within("a ping", cl.ping()).await {
            record(&errors, format!("client {i}: ping: {e}"));
        }
    }
    for e in errors.lock().expect("errors lock").iter() {
        violations.add("error (a client call or a forced migration)", e.clone());
    }

    // The truth, read through both remaining nodes (they must agree).
    let readers = [a.client().await, b.client().await];
    let mut truth: Vec<BTreeMap<(u32, ClientId), Row>> = Vec::new();
    for k in 0..ZONES {
        let mut per_node = Vec::new();
        for r in &readers {
            let page = within(
                "a get of a zone",
                r.get_all(GetQuery {
                    keys: vec![KeySpec::primary(zone(k))],
                    ..GetQuery::default()
                }),
            )
            .await
            .expect("get");
            if !page.incomplete.is_empty() {
                violations.add("incomplete get", format!("zone {k}: {:?}", page.incomplete));
            }
            let rows: BTreeMap<(u32, ClientId), Row> = page
                .rows
                .into_iter()
                .map(|r| ((r.key.secondary, r.owner), r))
                .collect();
            per_node.push(rows);
        }
        if per_node[0] != per_node[1] {
            violations.add(
                "a and b disagree on a zone",
                format!(
                    "zone {k}: nodes a {:?} b {:?} c {:?}; holders of the zone as a sees them {:?}, as b sees them {:?}\n      a {:?}\n      b {:?}",
                    a.node.id(),
                    b.node.id(),
                    c.node.id(),
                    a.node.holders_of(&zone(k)),
                    b.node.holders_of(&zone(k)),
                    per_node[0],
                    per_node[1]
                ),
            );
        }
        truth.push(per_node.swap_remove(0));
    }

    // 2. Zero lost acknowledged posts: each client's row holds its last acknowledged seq.
    // Its version is the last acknowledged one, or higher only through moves (a move gives
    // the row a new version, same data); the subscriber check below ties every version a
    // subscriber saw to what the owner was told.
    let show = |acks: &[Ack]| -> String {
        acks.iter()
            .map(|k| {
                format!(
                    "seq {} v{}{} on {}",
                    k.seq,
                    k.version,
                    if k.after_release {
                        " (after release)"
                    } else {
                        ""
                    },
                    name(k.node)
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (i, (cl, _, _, log)) in done.iter().enumerate() {
        let i = i as u32;
        for (n, w) in log.acked.windows(2).enumerate() {
            if w[1].version <= w[0].version {
                let from = n.saturating_sub(2);
                let to = (n + 4).min(log.acked.len());
                violations.add(
                    "acknowledged versions of a row not increasing",
                    format!("client {i}: {}", show(&log.acked[from..to])),
                );
            }
        }
        let Some(last) = log.acked.last() else {
            violations.add("no post acknowledged", format!("client {i}"));
            continue;
        };
        let mine: Vec<&Row> = truth[(i % ZONES) as usize]
            .values()
            .filter(|r| r.owner == cl.id())
            .collect();
        let [row] = mine[..] else {
            violations.add(
                "a client does not own exactly one row",
                format!("client {i}: {mine:?}; last acknowledged {}", show(&[*last])),
            );
            continue;
        };
        if row.key != Key::new(zone(i), i) {
            violations.add("row under a wrong key", format!("client {i}: {row:?}"));
        }
        if parse_seq(row) != Some(last.seq) || row.version < last.version {
            let from = log.acked.len().saturating_sub(3);
            violations.add(
                "lost acknowledged post",
                format!(
                    "client {i}: row {row:?}; last acknowledged: {}",
                    show(&log.acked[from..])
                ),
            );
        }
        if row.node != cl.node_id() {
            violations.add(
                "row served elsewhere than its owner",
                format!("client {i} on {}: {row:?}", name(cl.node_id())),
            );
        }
    }
    for (k, rows) in truth.iter().enumerate() {
        if rows.len() != (CLIENTS / ZONES) as usize {
            violations.add(
                "zone does not hold exactly its clients' rows",
                format!("zone {k}: {} rows", rows.len()),
            );
        }
    }

    // 3. Every subscriber converges to the truth (condition-based: poll until equal, then
    // the comparison below names whatever still differs).
    let mut done = done;
    let _ = tokio::time::timeout(DEADLINE, async {
        loop {
            let mut pending = 0;
            for (i, (_, sub, watch, _)) in done.iter_mut().enumerate() {
                watch.drain(sub);
                if !watch.diff(&truth[i % ZONES as usize]).is_empty() {
                    pending += 1;
                }
            }
            if pending == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;

    // 3-5. Views equal the truth; no spurious deletion; no duplicate or reordering (checked
    // as events arrived); every version a subscriber saw carries the data its owner was told
    // that version holds.
    let by_owner: HashMap<ClientId, (u32, &Log)> = done
        .iter()
        .enumerate()
        .map(|(i, (cl, _, _, l))| (cl.id(), (i as u32, l)))
        .collect();
    let mut events_seen = 0usize;
    let mut deletes_seen = 0u32;
    for (i, (_, _, watch, _)) in done.iter().enumerate() {
        events_seen += watch.events;
        violations.merge(&watch.violations);
        for d in watch.diff(&truth[i % ZONES as usize]) {
            violations.add(
                "subscriber's view differs from the truth",
                format!("subscriber {i}: {d}"),
            );
        }
        for (owner, n) in &watch.deletes {
            deletes_seen += n;
            let released = by_owner.get(owner).map_or(0, |(_, l)| l.releases);
            if *n > released {
                violations.add(
                    "more deletions seen than releases made",
                    format!("subscriber {i}: {n} deletions of {owner:?}'s row, released {released} times"),
                );
            }
        }
        for &(owner, version, seq) in &watch.updates {
            let Some(&(o, log)) = by_owner.get(&owner) else {
                violations.add(
                    "update from an unknown owner",
                    format!("subscriber {i}: {owner:?}"),
                );
                continue;
            };
            // The post acknowledged with this version, or (a move) the last one before it.
            match log.acked.iter().take_while(|k| k.version <= version).last() {
                Some(k) if k.seq == seq => {}
                told => violations.add(
                    "a version carries other data than its owner was told",
                    format!(
                        "subscriber {i} saw client {o}'s row at v{version} with seq {seq}; \
                         the owner's last post at or below that version: {}",
                        told.map_or("none".into(), |k| show(&[*k]))
                    ),
                ),
            }
        }
    }

    // Figures: printed, not asserted (timing belongs to benchmarks).
    let mut gaps: Vec<Duration> = done.iter().map(|(.., l)| l.max_gap).collect();
    gaps.sort();
    let posts: usize = done.iter().map(|(.., l)| l.acked.len()).sum();
    let releases: u32 = done.iter().map(|(.., l)| l.releases).sum();
    let client_moves: usize = done.iter().map(|(.., l)| l.migrated).sum();
    eprintln!(
        "migration soak: forced migrations {migrations_done} in {migrations_time:?} (busy {}, \
         not here {}, picked while in transit {}); drain of c moved {moved} (c had {on_c}) in \
         {drain_time:?}; Migrated events seen by clients {client_moves}",
        stats.busy.load(Ordering::Relaxed),
        stats.not_here.load(Ordering::Relaxed),
        stats.in_transit.load(Ordering::Relaxed),
    );
    eprintln!(
        "migration soak: {posts} posts and {releases} releases acknowledged in {traffic_time:?}; \
         {events_seen} notifications checked, {deletes_seen} Released deletions"
    );
    eprintln!(
        "migration soak: max gap between successful posts per client (5-20 ms pause \
         included): p50 {:?}, p99 {:?}, max {:?}; total {:?}",
        percentile(&gaps, 0.5),
        percentile(&gaps, 0.99),
        gaps.last().copied().unwrap_or_default(),
        started.elapsed()
    );
    assert!(
        violations.0.is_empty(),
        "broken invariants (seed {seed}, replay with SOAK_SEED={seed}):\n{}",
        violations.report()
    );
}
