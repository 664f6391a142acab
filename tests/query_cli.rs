//! `cloudctl get|watch --where/--sort/--near/--limit` as an operator runs them, against a
//! real `cloudd` process. Every wait is bounded; every child is killed when its guard drops.

mod procs;

use std::thread;
use std::time::{Duration, Instant};

use procs::{Daemon, DEADLINE};
use serde_json::Value;

fn json_rows(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).expect("--json prints JSON lines"))
        .collect()
}

/// `get ARGS --json` until it returns `n` rows (the posts are separate processes).
fn get_until(d: &Daemon, args: &[&str], n: usize) -> Vec<Value> {
    let end = Instant::now() + DEADLINE;
    loop {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.push("--json");
        let (status, out, err) = d.ctl(&all).finish();
        assert!(status.success(), "get failed: {err}");
        let rows = json_rows(&out);
        if rows.len() == n || Instant::now() >= end {
            return rows;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn get_and_watch_with_a_query() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = procs::start_cloudd("test-node", dir.path(), &[]);
    let rows = [
        ("servers/1", r#"{"region":"eu","players":12,"x":1,"y":1}"#),
        ("servers/2", r#"{"region":"eu","players":3,"x":50,"y":50}"#),
        ("servers/3", r#"{"region":"us","players":7,"x":2,"y":2}"#),
        ("servers/4", "not json"),
    ];
    let mut posts = Vec::new();
    for (key, data) in rows {
        let mut p = d.ctl(&["post", key, data, "--hold", "60s"]);
        p.stdout_line("posted ...");
        posts.push(p);
    }
    get_until(&d, &["servers"], 4);

    let got = get_until(
        &d,
        &[
            "servers",
            "--where",
            r#"region = "eu""#,
            "--sort",
            "-players",
        ],
        2,
    );
    let keys: Vec<&str> = got.iter().filter_map(|r| r["key"].as_str()).collect();
    assert_eq!(keys, vec!["servers/1", "servers/2"]);

    let got = get_until(&d, &["servers", "--sort", "players", "--limit", "2"], 2);
    let keys: Vec<&str> = got.iter().filter_map(|r| r["key"].as_str()).collect();
    assert_eq!(keys, vec!["servers/2", "servers/3"], "the two emptiest");

    let got = get_until(&d, &["servers", "--near", "0,0,5"], 2);
    let keys: Vec<&str> = got.iter().filter_map(|r| r["key"].as_str()).collect();
    assert_eq!(keys, vec!["servers/1", "servers/3"]);

    // A mistake in the query is a usage error naming it.
    let (status, _, err) = d.ctl(&["get", "servers", "--where", "players <"]).finish();
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains("--where") && err.contains("expected a value"),
        "{err}"
    );
    let (status, _, err) = d.ctl(&["get", "servers", "--near", "1,2"]).finish();
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("X,Y,R"), "{err}");

    // Live: the matching rows, then a row entering and one leaving.
    let mut watch = d.ctl(&[
        "watch",
        "servers",
        "--where",
        "players < 10",
        "--json",
        "--count",
        "2",
    ]);
    let mut snapshot: Vec<String> = (0..2)
        .map(|_| {
            let v = watch.json_line("a snapshot row");
            assert_eq!(v["event"], "snapshot", "{v}");
            v["key"].as_str().expect("key").to_owned()
        })
        .collect();
    snapshot.sort();
    assert_eq!(snapshot, vec!["servers/2", "servers/3"]);
    let mut newcomer = d.ctl(&["post", "servers/5", r#"{"players":1}"#, "--hold", "60s"]);
    newcomer.stdout_line("posted ...");
    let entered = watch.json_line("entered");
    assert_eq!(
        (entered["event"].as_str(), entered["key"].as_str()),
        (Some("entered"), Some("servers/5")),
        "{entered}"
    );
    // servers/2's poster stops: its row is deleted, so it leaves the result.
    posts[1].signal("-TERM");
    posts[1].wait();
    let left = watch.json_line("left");
    assert_eq!(left["event"], "left", "{left}");
    assert_eq!(left["key"], "servers/2", "{left}");
    assert_eq!(left["reason"], "disconnected", "{left}");
    let status = watch.wait();
    assert!(status.success(), "watch --count 2 exits 0: {status:?}");
}
