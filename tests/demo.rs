//! `cloudctl demo` as an operator runs it (issue 6): real `cloudctl` and `cloudd` processes
//! on 127.0.0.1. The demo must bring up a mesh with its players, and leave nothing behind
//! (no process, no directory) when it ends, however it ends. Also the simulated players it
//! runs (`cloudmesh::sim`), in-process against two zoned nodes. Every wait has a deadline.

mod common;
mod procs;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cloudmesh::proto::KeySpec;
use cloudmesh::sim::{Crowd, CrowdConfig, Seed};
use cloudmesh::transport::parse_fingerprint;
use common::{within, TestNode};
use procs::{command, wait_until, Proc, CLOUDCTL, CLOUDD};
use serde_json::Value;

/// What the demo printed about itself.
#[derive(Debug)]
struct Started {
    dir: PathBuf,
    /// (name, pid, admin socket) per node, node-1 first.
    nodes: Vec<(String, u32, PathBuf)>,
}

/// `cloudctl demo ARGS...` with no inherited cloudmesh settings.
fn demo(args: &[&str]) -> Proc {
    let mut all = vec!["demo"];
    all.extend_from_slice(args);
    Proc::spawn(CLOUDCTL, &all)
}

/// The text after `word ` in `line`, up to the next space.
fn field<'a>(line: &'a str, word: &str) -> &'a str {
    line.split(&format!(" {word} "))
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .unwrap_or_else(|| panic!("no `{word}` in {line:?}"))
}

/// Reads stdout up to `demo: mesh up:`, collecting the directory and the nodes.
fn wait_up(demo: &mut Proc) -> Started {
    let mut dir = None;
    let mut nodes = Vec::new();
    loop {
        let line = demo.stdout_line("up to `demo: mesh up`");
        if let Some(d) = line.strip_prefix("demo: dir ") {
            dir = Some(PathBuf::from(d));
        } else if line.starts_with("demo: node ") {
            let name = field(&line, "node").to_owned();
            let pid = field(&line, "pid").parse().expect("pid is a number");
            let socket = line
                .split(" socket ")
                .nth(1)
                .expect("socket path at the end");
            nodes.push((name, pid, PathBuf::from(socket)));
        } else if line.starts_with("demo: mesh up:") {
            break;
        }
    }
    Started {
        dir: dir.expect("`demo: dir` came first"),
        nodes,
    }
}

/// Every live process whose command line mentions `dir` (the demo's nodes do).
fn processes_using(dir: &Path) -> Vec<String> {
    let needle = dir.to_string_lossy().into_owned();
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        if cmdline.contains(&needle) {
            found.push(format!(
                "{}: {cmdline}",
                entry.file_name().to_string_lossy()
            ));
        }
    }
    found
}

/// Whether process `pid` is a demo node still running (its pid may be reused by another
/// process once the node is gone, so the command line must name the demo's directory).
fn node_alive(pid: u32, dir: &Path) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|raw| String::from_utf8_lossy(&raw).contains(&*dir.to_string_lossy()))
}

/// `cloudctl --socket S --json ARGS...`, parsed.
fn admin_json(socket: &Path, args: &[&str]) -> Result<Value, String> {
    let mut all = vec!["--socket", socket.to_str().expect("UTF-8 path"), "--json"];
    all.extend_from_slice(args);
    let (status, out, err) = Proc::spawn(CLOUDCTL, &all).finish();
    if !status.success() {
        return Err(format!("cloudctl {args:?}: {status}: {err}"));
    }
    serde_json::from_str(&out).map_err(|e| format!("{out:?} is not JSON: {e}"))
}

#[test]
fn demo_brings_up_a_mesh_with_players_and_leaves_nothing_behind() {
    assert!(
        Path::new(CLOUDD).exists(),
        "cloudd is built beside cloudctl"
    );
    let mut proc = demo(&["--nodes", "3", "--players", "20", "--no-console"]);
    let started = wait_up(&mut proc);
    assert_eq!(
        started
            .nodes
            .iter()
            .map(|(n, _, _)| n.as_str())
            .collect::<Vec<_>>(),
        ["node-1", "node-2", "node-3"]
    );
    assert!(started.dir.is_dir(), "{} exists", started.dir.display());
    for (name, pid, _) in &started.nodes {
        assert!(node_alive(*pid, &started.dir), "{name} (pid {pid}) runs");
    }
    let socket = &started.nodes[0].2;

    // Clients counts come from load reports (every 2 s), so poll.
    wait_until(
        "3 Active nodes serving the 20 players",
        Duration::from_secs(30),
        || {
            let v = admin_json(socket, &["nodes"])?;
            let nodes = v["nodes"].as_array().ok_or(format!("no nodes in {v}"))?;
            let active = nodes.iter().filter(|n| n["state"] == "Active").count();
            let clients: u64 = nodes.iter().filter_map(|n| n["clients"].as_u64()).sum();
            if nodes.len() == 3 && active == 3 && clients == 20 {
                Ok(())
            } else {
                Err(format!(
                    "{active}/{} Active, {clients} clients: {v}",
                    nodes.len()
                ))
            }
        },
    );
    // Every player holds its row, seen from any node.
    wait_until("20 player rows", Duration::from_secs(20), || {
        let v = admin_json(&started.nodes[2].2, &["keys", "players"])?;
        let rows = v["rows"].as_array().map_or(0, Vec::len);
        if rows == 20 {
            Ok(())
        } else {
            Err(format!("{rows} rows: {v}"))
        }
    });

    let begun = Instant::now();
    proc.signal("-TERM");
    let (status, out, err) = proc.finish();
    assert!(
        status.success(),
        "demo exits 0 on SIGTERM: {status}\n{out}\n{err}"
    );
    assert!(
        out.lines().any(|l| l == "demo: stopped"),
        "says it stopped: {out}"
    );
    assert!(
        begun.elapsed() < Duration::from_secs(15),
        "stopped within the grace periods: {:?}",
        begun.elapsed()
    );
    for (name, pid, _) in &started.nodes {
        assert!(
            !node_alive(*pid, &started.dir),
            "{name} (pid {pid}) is gone"
        );
    }
    assert_eq!(processes_using(&started.dir), Vec::<String>::new());
    assert!(
        !started.dir.exists(),
        "{} is removed",
        started.dir.display()
    );
}

/// The two runnable examples, as the README tells users to run them: against the demo's
/// mesh, given a node's address and certificate fingerprint. Each checks itself (the browser
/// compares its live list with a fresh query, the directory its slot accounting) and exits 1
/// if something is off. `cargo test` builds the examples beside the binaries.
#[test]
fn the_examples_run_against_the_demo_mesh() {
    let examples = Path::new(CLOUDCTL)
        .parent()
        .expect("cloudctl sits in a target directory")
        .join("examples");
    for example in ["server_browser", "instance_directory"] {
        assert!(
            examples.join(example).exists(),
            "{} is missing: a plain `cargo test` builds the examples (a single `--test demo` \
             does not: run `cargo build --examples` first)",
            examples.join(example).display()
        );
    }
    let mut proc = demo(&["--nodes", "3", "--players", "10", "--no-console"]);
    let started = wait_up(&mut proc);
    let status = admin_json(&started.nodes[0].2, &["status"]).expect("node-1's status");
    let (addr, pin) = (
        status["listen"]
            .as_str()
            .expect("status has listen")
            .to_owned(),
        status["fingerprint"]
            .as_str()
            .expect("status has the fingerprint")
            .to_owned(),
    );
    let mut runs = Vec::new();
    for (example, args) in [
        (
            "server_browser",
            &["--servers", "8", "--top", "5", "--duration", "3s"][..],
        ),
        (
            "instance_directory",
            &[
                "--hosts",
                "2",
                "--instances",
                "2",
                "--players",
                "6",
                "--slots",
                "2",
            ][..],
        ),
    ] {
        let mut cmd = command(
            examples.join(example).to_str().expect("UTF-8 path"),
            &["--server", &addr, "--pin", &pin],
        );
        cmd.args(args);
        runs.push((
            example,
            Proc::spawn_cmd(cmd).finish_within(Duration::from_secs(90)),
        ));
    }
    // The demo stops its nodes on SIGTERM: stopped before any assertion, so a failing
    // example leaves no node running.
    proc.signal("-TERM");
    let (status, out, err) = proc.finish();
    for (example, (status, out, err)) in runs {
        assert!(
            status.success(),
            "{example} against the demo mesh: {status}\n{out}\n{err}"
        );
    }
    assert!(status.success(), "demo exits 0: {status}\n{out}\n{err}");
}

#[test]
fn a_node_that_cannot_start_fails_the_demo_cleanly() {
    // An executable that exits at once, standing in for a cloudd that cannot start.
    let mut proc = demo(&["--nodes", "2", "--players", "5", "--cloudd", "/bin/false"]);
    let line = proc.stdout_line("`demo: dir`");
    let dir = PathBuf::from(line.strip_prefix("demo: dir ").expect("the dir line first"));
    let (status, out, err) = proc.finish();
    assert_eq!(status.code(), Some(1), "{out}\n{err}");
    assert!(
        err.contains("node-1") && err.contains("stopped before it was ready"),
        "says which node failed and how: {err}"
    );
    assert!(!dir.exists(), "{} is removed", dir.display());
}

#[test]
fn without_cloudd_the_demo_says_where_it_looked() {
    // A cloudctl with no cloudd beside it, and a PATH without one.
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let scratch = tempfile::tempdir_in(&base).expect("scratch dir");
    let lonely = scratch.path().join("cloudctl");
    if std::fs::hard_link(CLOUDCTL, &lonely).is_err() {
        std::fs::copy(CLOUDCTL, &lonely).expect("copy cloudctl");
    }
    let empty = scratch.path().join("empty");
    std::fs::create_dir(&empty).expect("an empty PATH dir");
    let mut cmd = command(lonely.to_str().expect("UTF-8 path"), &["demo"]);
    cmd.env("PATH", &empty);
    let (status, out, err) = Proc::spawn_cmd(cmd).finish();
    assert_eq!(status.code(), Some(1), "{out}\n{err}");
    assert!(
        err.contains("cannot find the cloudd executable")
            && err.contains(&*scratch.path().to_string_lossy())
            && err.contains("PATH")
            && err.contains("cargo build --release"),
        "names where it looked and how to get cloudd: {err}"
    );
    assert!(out.is_empty(), "started nothing: {out}");
}

fn seed(t: &TestNode) -> Seed {
    Seed {
        addr: t.addr(),
        fingerprint: parse_fingerprint(t.node.fingerprint()).expect("fingerprint"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_players_post_walk_across_zones_and_leave_cleanly() {
    common::init_test_log();
    let (a, b, zones) = common::zoned_pair().await;
    let mut config = CrowdConfig::new(vec![seed(&a), seed(&b)], zones);
    // Quick, long strides: every player crosses the border between the two nodes often.
    config.step_every = (Duration::from_millis(30), Duration::from_millis(60));
    config.speed = 40.0;
    config.batch = 4;
    let crowd = within("the crowd connects", Crowd::start(config, 12)).await;
    let counts = crowd.counts();
    assert_eq!(counts.connected, 12, "{counts:?}");
    assert_eq!(counts.by_node.values().sum::<usize>(), 12, "{counts:?}");

    let watcher = a.client().await;
    common::wait_until("players walk and are handed over between the nodes", || {
        let c = crowd.counts();
        c.steps >= 100 && c.migrations >= 10
    })
    .await;
    // Every player holds its row. A get asks each node in turn, so a row moving between
    // them meanwhile can be missed once: look until all are seen together.
    within("the 12 players' rows", async {
        loop {
            let rows = watcher
                .get(vec![KeySpec::primary(cloudmesh::sim::PLAYERS)])
                .await
                .expect("get players");
            let mut names: Vec<String> = rows
                .iter()
                .map(|r| {
                    let v: Value = serde_json::from_slice(&r.data).expect("JSON row");
                    assert!(
                        v["hp"].as_u64().is_some_and(|hp| (1..=100).contains(&hp)),
                        "{v}"
                    );
                    v["name"].as_str().expect("a name").to_owned()
                })
                .collect();
            names.sort();
            names.dedup();
            if names.len() == 12 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    // Every player shows up in the cell it stands in. Players keep walking, and two gets
    // are not one snapshot, so gather over a few looks.
    let mut present = std::collections::BTreeSet::new();
    within("every player present in a cell", async {
        while present.len() < 12 {
            let rows = watcher
                .get(vec![
                    KeySpec::primary("cell.0.0"),
                    KeySpec::primary("cell.1.0"),
                ])
                .await
                .expect("get the cells");
            for row in rows {
                let data: Value = serde_json::from_slice(&row.data).expect("JSON presence");
                assert_eq!(data["name"], format!("player-{}", row.key.secondary));
                present.insert(row.key.secondary);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(
        present.into_iter().collect::<Vec<_>>(),
        (0..12).collect::<Vec<u32>>()
    );
    let counts = crowd.counts();
    assert_eq!(
        (counts.errors, counts.reconnects),
        (0, 0),
        "migrations fail no call: {counts:?}"
    );

    within("the crowd stops", crowd.stop(Duration::from_secs(5))).await;
    // Each node deletes a client's rows as it sees its connection close.
    within("every player's rows are gone", async {
        loop {
            let rows = watcher
                .get(vec![KeySpec::primary(cloudmesh::sim::PLAYERS)])
                .await
                .expect("get players");
            if rows.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}
