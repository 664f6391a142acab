//! Fault tests (issue 15): real `cloudd` processes on hosts in network namespaces the tests
//! make (tests/netns), real `cloudctl` clients on those hosts, links cut with nftables drop
//! rules. Each scenario asserts convergence (every node linked to every other, all Active),
//! one host, that no row whose owner stayed connected to a live node is missing once the
//! mesh has converged, and what watchers saw; and prints the times it measured.
//!
//! Needs root (CI runs as root): a test that cannot make namespaces fails and says so.
//! The 150 s partition dominates the binary's wall time; the other scenarios run beside it.

mod netns;
mod procs;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use netns::{full_mesh, one_mesh, Net, Node};
use procs::{wait_until, Proc};
use serde_json::Value;

/// How long after healing the mesh must be one again (the bound).
const HEAL_BOUND: Duration = Duration::from_secs(30);

/// The default idle timeout, which the scenarios keep (as an operator would).
const IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// Room on top of the idle timeout for a loaded 2-core machine running several meshes.
const SLACK: Duration = Duration::from_secs(15);

/// Writes a 0600 secret file, as the README tells operators to.
fn secret_file(dir: &Path) -> PathBuf {
    let path = dir.join("mesh.secret");
    std::fs::write(&path, "fault-test-mesh-secret-0123456789\n").expect("write the secret");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
    path
}

fn utf8(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

/// Starts node `i` of `names` on host `i`, joining through `join` (none: it starts the
/// mesh), and waits until it and the nodes before it form one mesh.
fn start_in_order(net: &Net, tmp: &Path, names: &[&str], extra: &[&str]) -> Vec<Node> {
    let secret = secret_file(tmp);
    let mut nodes: Vec<Node> = Vec::new();
    let first = net.addr(0);
    for (i, name) in names.iter().enumerate() {
        let mut args = vec!["--secret-file", utf8(&secret)];
        args.extend_from_slice(extra);
        if i > 0 {
            args.extend(["--join", &first]);
        }
        let node = net.start_cloudd(i, name, &tmp.join(name), &args);
        nodes.push(node);
        // One at a time, so the join order (and so who is host) is known.
        let refs: Vec<&Node> = nodes.iter().collect();
        let host = wait_until(&format!("{name} to join"), Duration::from_secs(30), || {
            one_mesh(&refs, &names[..=i])
        });
        assert_eq!(host, names[0], "the first node is host");
    }
    nodes
}

/// A client holding one row: `cloudctl post KEY DATA --hold ...` on `node`'s host.
struct Holder {
    key: String,
    data: String,
    /// The client id the node gave it.
    client: String,
    proc: Proc,
}

fn hold(node: &Node, key: &str, data: &str) -> Holder {
    let mut proc = node.ctl(&["--json", "post", key, data, "--hold", "1h"]);
    let posted = proc.json_line("the post's JSON line");
    assert_eq!(posted["key"], key, "{posted}");
    assert_eq!(posted["node"], node.name.as_str(), "{posted}");
    Holder {
        key: key.to_owned(),
        data: data.to_owned(),
        client: posted["client"].as_str().expect("client id").to_owned(),
        proc,
    }
}

/// Waits until `node`'s get of `spec` returns exactly the rows of `holders` (key, data,
/// owner) and names no node as incomplete; returns the rows by key.
fn rows_exactly(
    node: &Node,
    spec: &str,
    holders: &[&Holder],
    within: Duration,
) -> BTreeMap<String, Value> {
    let want: BTreeSet<(String, String, String)> = holders
        .iter()
        .map(|h| (h.key.clone(), h.data.clone(), h.client.clone()))
        .collect();
    wait_until(
        &format!("{} to list every held row", node.name),
        within,
        || {
            let (rows, incomplete) = node.get(spec)?;
            let got: BTreeSet<(String, String, String)> = rows
                .iter()
                .map(|r| {
                    let s = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
                    (s("key"), s("data"), s("owner"))
                })
                .collect();
            if got == want && rows.len() == want.len() && incomplete.is_empty() {
                Ok(rows
                    .into_iter()
                    .map(|r| (r["key"].as_str().unwrap_or_default().to_owned(), r))
                    .collect())
            } else {
                let missing: Vec<_> = want.difference(&got).collect();
                let extra: Vec<_> = got.difference(&want).collect();
                Err(format!(
                    "missing {missing:?}, unexpected {extra:?}, {} rows, incomplete {incomplete:?}",
                    rows.len()
                ))
            }
        },
    )
}

/// A `cloudctl --json watch SPEC` client and every event it printed.
struct Watcher {
    at: String,
    proc: Proc,
    /// Events after the snapshot, in order.
    events: Vec<Value>,
    /// The snapshot, by key.
    snapshot: BTreeMap<String, Value>,
}

fn watch(node: &Node, spec: &str, snapshot_rows: usize) -> Watcher {
    let mut proc = node.ctl(&["--json", "watch", spec]);
    let mut snapshot = BTreeMap::new();
    for _ in 0..snapshot_rows {
        let row = proc.json_line("a snapshot row");
        assert_eq!(row["event"], "snapshot", "{}: {row}", node.name);
        snapshot.insert(row["key"].as_str().expect("key").to_owned(), row);
    }
    let line = proc.stderr_line("saying the watch is live", |l| l.contains("watching"));
    assert!(
        line.contains(&format!("{snapshot_rows} row(s) in snapshot")),
        "{}: {line}",
        node.name
    );
    Watcher {
        at: node.name.clone(),
        proc,
        events: Vec::new(),
        snapshot,
    }
}

impl Watcher {
    /// Takes every event printed within `quiet` of the previous one (bounded).
    fn collect(&mut self, quiet: Duration) {
        for _ in 0..10_000 {
            let Some(line) = self.proc.stdout_line_within(quiet) else {
                return;
            };
            let v: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("{}: {line:?} is not JSON: {e}", self.at));
            self.events.push(v);
        }
    }

    /// Waits until `pred` holds for the events so far.
    fn wait_for(&mut self, what: &str, within: Duration, pred: impl Fn(&[Value]) -> bool) {
        let end = Instant::now() + within;
        loop {
            if pred(&self.events) {
                return;
            }
            assert!(
                Instant::now() < end,
                "{}'s watcher: no {what} within {within:?}; events: {}",
                self.at,
                self.show()
            );
            if let Some(line) = self.proc.stdout_line_within(Duration::from_millis(200)) {
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("{}: {line:?} is not JSON: {e}", self.at));
                self.events.push(v);
            }
        }
    }

    /// The events for `key`, as `event[/reason]` strings.
    fn of(&self, key: &str) -> Vec<String> {
        self.events
            .iter()
            .filter(|e| e["key"] == key)
            .map(|e| match e["reason"].as_str() {
                Some(r) => format!("{}/{r}", e["event"].as_str().unwrap_or("?")),
                None => e["event"].as_str().unwrap_or("?").to_owned(),
            })
            .collect()
    }

    fn deletions(&self) -> Vec<&Value> {
        self.events
            .iter()
            .filter(|e| e["event"] == "deleted")
            .collect()
    }

    fn show(&self) -> String {
        self.events
            .iter()
            .map(|e| {
                format!(
                    "{} {} {}",
                    e["event"].as_str().unwrap_or("?"),
                    e["key"].as_str().unwrap_or("?"),
                    e["reason"].as_str().unwrap_or("")
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn has(events: &[Value], event: &str, key: &str) -> bool {
    events
        .iter()
        .any(|e| e["event"] == event && e["key"] == key)
}

/// The ids of `names` as `node` lists them.
fn ids(node: &Node) -> BTreeMap<String, String> {
    node.members()
        .expect("nodes answers")
        .into_iter()
        .map(|m| (m.name, m.id))
        .collect()
}

/// The scenario: four nodes on four hosts, `{1,2} | {3,4}` cut for 150 s, then
/// healed. Each side goes on with a host of its own; after healing there is one mesh with
/// the older side's host within 30 s, every watcher sees the other side's rows come back
/// as updates and nothing twice, and every held row is readable from every node.
#[test]
fn partition_of_150_s_then_heal_gives_one_mesh_and_resynchronised_watchers() {
    const PARTITION: Duration = Duration::from_secs(150);
    let net = Net::new(4);
    let tmp = tempfile::tempdir().expect("temp dir");
    let names = ["node-1", "node-2", "node-3", "node-4"];
    let mut nodes = start_in_order(&net, tmp.path(), &names, &[]);

    let mut holders: Vec<Holder> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| hold(n, &format!("players/{}", i + 1), &format!("p{}", i + 1)))
        .collect();
    let held: Vec<&Holder> = holders.iter().collect();
    for n in &nodes {
        rows_exactly(n, "players", &held, Duration::from_secs(20));
    }
    let mut w1 = watch(&nodes[0], "players", 4);
    let mut w4 = watch(&nodes[3], "players", 4);

    net.partition(&[0, 1], &[2, 3]);
    let cut_at = Instant::now();
    let split = |a: usize, b: usize, side: [&str; 2]| {
        wait_until(
            &format!("{side:?} to go on alone"),
            IDLE_TIMEOUT + SLACK,
            || {
                let h = one_mesh(&[&nodes[a], &nodes[b]], &side)?;
                if h == side[0] {
                    Ok(())
                } else {
                    Err(format!("host {h}, not {}", side[0]))
                }
            },
        )
    };
    split(0, 1, ["node-1", "node-2"]);
    split(2, 3, ["node-3", "node-4"]);
    eprintln!(
        "partition: each side a mesh of its own with its own host {:?} after the cut",
        cut_at.elapsed()
    );
    // Each side's watchers see the other side's rows go, as lost.
    for (w, gone) in [
        (&mut w1, ["players/3", "players/4"]),
        (&mut w4, ["players/1", "players/2"]),
    ] {
        w.wait_for(
            "node_lost deletions of the other side's rows",
            SLACK,
            |ev| {
                gone.iter().all(|k| {
                    ev.iter().any(|e| {
                        e["event"] == "deleted" && e["key"] == *k && e["reason"] == "node_lost"
                    })
                })
            },
        );
    }
    // Each side still serves its own clients' rows.
    rows_exactly(&nodes[1], "players", &held[..2], Duration::from_secs(20));
    rows_exactly(&nodes[2], "players", &held[2..], Duration::from_secs(20));

    // The partition lasts its full length, the processes checked along the way.
    while cut_at.elapsed() < PARTITION {
        thread::sleep(Duration::from_secs(1).min(PARTITION.saturating_sub(cut_at.elapsed())));
    }
    for n in &mut nodes {
        assert!(n.proc.running(), "{} died during the partition", n.name);
    }
    let during = [
        full_mesh(&nodes[0], &names[..2]),
        full_mesh(&nodes[3], &names[2..]),
    ];
    eprintln!("partition: at {:?}, views {during:?}", cut_at.elapsed());
    assert!(
        during.iter().all(Result::is_ok),
        "still two meshes before healing: {during:?}"
    );

    net.heal();
    let healed_at = Instant::now();
    let all: Vec<&Node> = nodes.iter().collect();
    let host = wait_until("one mesh after healing", HEAL_BOUND, || {
        one_mesh(&all, &names)
    });
    let took = healed_at.elapsed();
    eprintln!("partition: one full mesh of 4, host {host}, {took:?} after healing (bound 30 s)");
    assert_eq!(host, "node-1", "the older side's host stays host");

    // Every row whose client stayed connected is readable everywhere.
    for n in &nodes {
        rows_exactly(n, "players", &held, HEAL_BOUND);
    }
    // A marker from each node: once a watcher has all four, the resync of every node's
    // rows reached it before (each node's link delivers in order).
    let mut markers: Vec<Holder> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| hold(n, &format!("players/{}", 101 + i), "marker"))
        .collect();
    for w in [&mut w1, &mut w4] {
        w.wait_for("every marker", HEAL_BOUND, |ev| {
            (101..=104).all(|k| has(ev, "updated", &format!("players/{k}")))
        });
        w.collect(Duration::from_secs(2));
        eprintln!("partition: {}'s watcher saw: {}", w.at, w.show());
    }
    for (w, own, other) in [
        (&w1, ["players/1", "players/2"], ["players/3", "players/4"]),
        (&w4, ["players/3", "players/4"], ["players/1", "players/2"]),
    ] {
        for k in own {
            assert!(
                w.of(k).is_empty(),
                "{}: {k} never changed, so no event: {:?}",
                w.at,
                w.of(k)
            );
        }
        for k in other {
            assert_eq!(
                w.of(k),
                ["deleted/node_lost", "updated"],
                "{}: {k} went with the partition and came back once",
                w.at
            );
            let back = w
                .events
                .iter()
                .rev()
                .find(|e| e["key"] == k)
                .expect("an event");
            let snap = &w.snapshot[k];
            assert_eq!(back["data"], snap["data"], "{}: {back}", w.at);
            assert_eq!(back["owner"], snap["owner"], "{}: {back}", w.at);
            assert_eq!(back["node"], snap["node"], "{}: {back}", w.at);
        }
        for k in 101..=104 {
            let k = format!("players/{k}");
            assert_eq!(w.of(&k), ["updated"], "{}: {k} once", w.at);
        }
    }
    for h in holders.iter_mut().chain(markers.iter_mut()) {
        assert!(h.proc.running(), "{}'s client stayed connected", h.key);
    }
    eprintln!("partition: rows lost = 0 (4 held rows + 4 markers on every node)");
}

/// A cut between A and B only, both still reaching C. Indirect probes through C keep A and
/// B alive in everyone's view, so the mesh keeps its three members and one host; reads
/// through A or B either return the other's rows or name it as incomplete (never a silent
/// miss). After healing, A and B link again and everything is readable everywhere.
#[test]
fn asymmetric_cut_keeps_one_host_and_heals() {
    const CUT_FOR: Duration = Duration::from_secs(30);
    let net = Net::new(3);
    let tmp = tempfile::tempdir().expect("temp dir");
    let names = ["node-a", "node-b", "node-c"];
    let mut nodes = start_in_order(&net, tmp.path(), &names, &[]);
    let holders: Vec<Holder> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| hold(n, &format!("players/{}", i + 1), &format!("p{}", i + 1)))
        .collect();
    let held: Vec<&Holder> = holders.iter().collect();
    for n in &nodes {
        rows_exactly(n, "players", &held, Duration::from_secs(20));
    }
    let id = ids(&nodes[0]);
    let mut wa = watch(&nodes[0], "players", 3);
    let mut wc = watch(&nodes[2], "players", 3);

    net.cut(0, 1);
    let cut_at = Instant::now();
    // Sample every view through the cut: members, hosts, links.
    let mut samples = 0;
    let mut hosts_seen = BTreeSet::new();
    let mut one_host_samples = 0;
    let mut members_seen = BTreeSet::new();
    let mut silent_misses = Vec::new();
    let mut unlinked_ab = 0;
    while cut_at.elapsed() < CUT_FOR {
        samples += 1;
        let mut hosts = BTreeSet::new();
        for n in &nodes {
            let Ok(ms) = n.members() else { continue };
            members_seen.insert((n.name.clone(), ms.len()));
            for m in &ms {
                if m.host {
                    hosts.insert(m.name.clone());
                }
            }
            if n.name == "node-a" && ms.iter().any(|m| m.name == "node-b" && !m.linked) {
                unlinked_ab += 1;
            }
        }
        if hosts.len() == 1 {
            one_host_samples += 1;
        }
        hosts_seen.extend(hosts);
        // Honest reads: through A, B's row is there or B is named incomplete.
        if let Ok((rows, incomplete)) = nodes[0].get("players") {
            let has_b = rows.iter().any(|r| r["key"] == "players/2");
            if !has_b && !incomplete.contains(&id["node-b"]) {
                silent_misses.push(format!("{:?}: {rows:?} {incomplete:?}", cut_at.elapsed()));
            }
        }
        thread::sleep(Duration::from_millis(500));
    }
    let end_view = one_mesh(&nodes.iter().collect::<Vec<_>>(), &names);
    eprintln!(
        "asymmetric cut: {samples} samples over {CUT_FOR:?}: hosts seen {hosts_seen:?}, \
         one host in {one_host_samples}; (node, members listed) seen {members_seen:?}; \
         node-a listed node-b unlinked in {unlinked_ab} samples; at the end: {end_view:?}"
    );
    wa.collect(Duration::from_millis(500));
    wc.collect(Duration::from_millis(500));
    eprintln!(
        "asymmetric cut: node-a's watcher saw [{}], node-c's [{}]",
        wa.show(),
        wc.show()
    );
    assert!(
        silent_misses.is_empty(),
        "a get through node-a left node-b's row out silently: {silent_misses:?}"
    );
    assert_eq!(
        hosts_seen,
        BTreeSet::from(["node-a".to_owned()]),
        "one host throughout: nobody was declared down"
    );
    assert!(
        members_seen.iter().all(|(_, n)| *n == 3),
        "every node keeps all three members: {members_seen:?}"
    );
    assert!(wc.deletions().is_empty(), "node-c's watcher: {}", wc.show());
    assert!(wa.deletions().is_empty(), "node-a's watcher: {}", wa.show());

    net.heal();
    let healed_at = Instant::now();
    let all: Vec<&Node> = nodes.iter().collect();
    let host = wait_until("one mesh after healing", HEAL_BOUND, || {
        one_mesh(&all, &names)
    });
    eprintln!(
        "asymmetric cut: full mesh again, host {host}, {:?} after healing",
        healed_at.elapsed()
    );
    assert_eq!(host, "node-a");
    for n in &nodes {
        rows_exactly(n, "players", &held, HEAL_BOUND);
    }
    for n in &mut nodes {
        assert!(n.proc.running(), "{} is running", n.name);
    }
    eprintln!("asymmetric cut: rows lost = 0");
}

/// kill -9 of the host while clients post and hold rows on every node and a load client
/// runs against a survivor: the survivors agree on the next oldest as host within the idle
/// timeout plus a bound, watchers see exactly the dead node's rows go (`node_lost`), every
/// row of a client on a surviving node is still there, and the dead node's clients bring
/// theirs back on a survivor.
#[test]
fn kill_9_of_the_host_under_client_load() {
    let net = Net::new(4);
    let tmp = tempfile::tempdir().expect("temp dir");
    let names = ["node-1", "node-2", "node-3", "node-4"];
    let mut nodes = start_in_order(&net, tmp.path(), &names, &[]);
    let mut holders: Vec<Holder> = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        for j in 0..2 {
            holders.push(hold(
                n,
                &format!("players/{}{j}", i + 1),
                &format!("p{}{j}", i + 1),
            ));
        }
    }
    let held: Vec<&Holder> = holders.iter().collect();
    for n in &nodes {
        rows_exactly(n, "players", &held, Duration::from_secs(20));
    }
    let mut w2 = watch(&nodes[1], "players", 8);
    let mut w4 = watch(&nodes[3], "players", 8);
    // Load on a survivor while the host dies: clients posting and getting continuously.
    let mut load = nodes[2].ctl(&[
        "bench",
        "throughput",
        "--clients",
        "4",
        "--pipeline",
        "2",
        "--rate",
        "400",
        "--duration",
        "25s",
    ]);
    thread::sleep(Duration::from_secs(3));
    assert!(
        load.running(),
        "the load client runs: {}",
        load.stderr_text()
    );

    nodes[0].proc.signal("-KILL");
    let killed = Instant::now();
    nodes[0].proc.wait();
    let rest: Vec<&Node> = nodes[1..].iter().collect();
    let bound = IDLE_TIMEOUT + SLACK;
    let host = wait_until("the survivors to agree on a new host", bound, || {
        one_mesh(&rest, &names[1..])
    });
    let took = killed.elapsed();
    eprintln!(
        "kill -9: survivors agree on host {host} {took:?} after kill -9 of the host \
         (idle timeout {IDLE_TIMEOUT:?}, bound {bound:?})"
    );
    assert_eq!(host, "node-2", "the oldest survivor is host");

    let dead_rows = ["players/10", "players/11"];
    for w in [&mut w2, &mut w4] {
        w.wait_for("the dead node's rows deleted", bound, |ev| {
            dead_rows.iter().all(|k| has(ev, "deleted", k))
        });
        eprintln!(
            "kill -9: {}'s watcher saw the dead host's rows go {:?} after the kill",
            w.at,
            killed.elapsed()
        );
    }
    // The dead node's clients establish their sessions again on a survivor (their SDK
    // posts the rows again, under new client ids): every row is back.
    for h in &mut holders[..2] {
        let restored = loop {
            let v = h.proc.json_line("the post's restored line");
            if v["event"] == "restored" {
                break v;
            }
        };
        assert_eq!(restored["detail"], h.client.as_str(), "{restored}");
        h.client = restored["client"]
            .as_str()
            .expect("the new client id")
            .to_owned();
    }
    let all: Vec<&Holder> = holders.iter().collect();
    for n in &nodes[1..] {
        rows_exactly(n, "players", &all, Duration::from_secs(20));
    }
    let (status, out, err) = load.finish_within(Duration::from_secs(60));
    eprintln!(
        "kill -9: load on node-3: {}",
        out.lines().last().unwrap_or_default()
    );
    assert!(
        status.success(),
        "the load on a survivor went on: {out}\n{err}"
    );
    for w in [&mut w2, &mut w4] {
        w.collect(Duration::from_millis(500));
        let mut dels: Vec<String> = w
            .deletions()
            .iter()
            .map(|e| format!("{} {}", e["key"], e["reason"]))
            .collect();
        dels.sort();
        assert_eq!(
            dels,
            [
                "\"players/10\" \"node_lost\"",
                "\"players/11\" \"node_lost\""
            ],
            "{}: exactly the dead node's rows were deleted, as lost",
            w.at
        );
    }
    for h in &mut holders {
        assert!(h.proc.running(), "{}'s client stayed connected", h.key);
    }
    eprintln!("kill -9: rows lost = 0 (6 rows of clients on survivors, 2 restored)");
}

/// SIGTERM of a node holding clients: it drains (its clients move, make-before-break, to
/// other nodes) and then leaves. Watchers on other nodes see the rows move and never
/// deleted, the clients stay connected, and the node exits 0.
#[test]
fn sigterm_moves_clients_and_watchers_see_no_deletion() {
    let net = Net::new(3);
    let tmp = tempfile::tempdir().expect("temp dir");
    let names = ["node-1", "node-2", "node-3"];
    let mut nodes = start_in_order(&net, tmp.path(), &names, &[]);
    let id = ids(&nodes[0]);
    let mut holders: Vec<Holder> = (1..=3)
        .map(|j| hold(&nodes[2], &format!("players/3{j}"), &format!("p3{j}")))
        .collect();
    holders.push(hold(&nodes[0], "players/10", "p10"));
    let held: Vec<&Holder> = holders.iter().collect();
    for n in &nodes {
        rows_exactly(n, "players", &held, Duration::from_secs(20));
    }
    let mut w1 = watch(&nodes[0], "players", 4);
    let mut w2 = watch(&nodes[1], "players", 4);

    nodes[2].proc.signal("-TERM");
    let stopped = Instant::now();
    let status = nodes[2].proc.wait_within(Duration::from_secs(60));
    let took = stopped.elapsed();
    let log = nodes[2].proc.stderr_text();
    assert!(status.success(), "node-3 stops cleanly: {status:?}\n{log}");
    eprintln!("sigterm: node-3 drained, left and exited {took:?} after SIGTERM");

    let rest: Vec<&Node> = nodes[..2].iter().collect();
    let host = wait_until(
        "node-1 and node-2 without node-3",
        Duration::from_secs(20),
        || one_mesh(&rest, &names[..2]),
    );
    assert_eq!(host, "node-1");
    let rows = rows_exactly(&nodes[0], "players", &held, Duration::from_secs(20));
    for j in 1..=3 {
        let k = format!("players/3{j}");
        assert_ne!(
            rows[&k]["node"],
            id["node-3"].as_str(),
            "{k} moved off node-3: {}",
            rows[&k]
        );
    }
    rows_exactly(&nodes[1], "players", &held, Duration::from_secs(20));
    for w in [&mut w1, &mut w2] {
        w.collect(Duration::from_secs(1));
        eprintln!("sigterm: {}'s watcher saw: {}", w.at, w.show());
        assert!(
            w.deletions().is_empty(),
            "{}: no deletion when clients move: {}",
            w.at,
            w.show()
        );
        for j in 1..=3 {
            let k = format!("players/3{j}");
            let last = w.events.iter().rev().find(|e| e["key"] == k.as_str());
            if let Some(last) = last {
                assert_ne!(last["node"], id["node-3"].as_str(), "{}: {last}", w.at);
            }
        }
    }
    for h in &mut holders {
        assert!(h.proc.running(), "{}'s client stayed connected", h.key);
    }
    for n in &mut nodes[..2] {
        let log = n.proc.stderr_text();
        assert!(
            log.contains("peer left"),
            "{}: logs node-3 leaving:\n{log}",
            n.name
        );
        assert!(
            !log.contains("peer lost"),
            "{}: not as lost:\n{log}",
            n.name
        );
    }
    eprintln!("sigterm: rows lost = 0, deletions seen by watchers = 0");
}

/// Sixteen nodes started at the same moment, each joining through the same three
/// addresses (as a DNS name with three records would give): one full mesh with one host.
#[test]
fn simultaneous_start_of_16_nodes_forms_one_mesh() {
    const N: usize = 16;
    let net = Net::new(N);
    let tmp = tempfile::tempdir().expect("temp dir");
    let secret = secret_file(tmp.path());
    let names: Vec<String> = (1..=N).map(|i| format!("node-{i:02}")).collect();
    let seeds: Vec<String> = (0..3).map(|i| net.addr(i)).collect();
    let mut args = vec!["--secret-file", utf8(&secret)];
    for s in &seeds {
        args.extend(["--join", s]);
    }
    let started = Instant::now();
    let mut nodes: Vec<Node> = names
        .iter()
        .enumerate()
        .map(|(i, name)| net.spawn_cloudd(i, name, &tmp.path().join(name), &args))
        .collect();
    for n in &mut nodes {
        n.ready();
    }
    let all: Vec<&Node> = nodes.iter().collect();
    let want: Vec<&str> = names.iter().map(String::as_str).collect();
    let host = wait_until("16 nodes to form one mesh", Duration::from_secs(90), || {
        one_mesh(&all, &want)
    });
    let took = started.elapsed();
    eprintln!(
        "simultaneous start: 16 nodes in one full mesh with host {host} {took:?} after start"
    );
    let mut auth_failures = 0;
    for n in &mut nodes {
        let log = n.proc.stderr_text();
        auth_failures += log
            .lines()
            .filter(|l| l.contains("authentication failed"))
            .count();
    }
    assert_eq!(
        auth_failures, 0,
        "no node refused a peer that knows the secret"
    );
}
