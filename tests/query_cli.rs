//! `cloudctl get|watch --where/--sort/--near/--limit` as an operator runs them, against a
//! real `cloudd` process, and `cloudctl keys --where ...` through the admin socket of a
//! three-node mesh. Every wait is bounded; every child is killed when its guard drops.

mod procs;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use procs::{start_cloudd, wait_until, Daemon, DEADLINE};
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

/// `cloudctl --socket S --json keys ARGS...`: the listed rows as (key, data), in order.
fn keys_rows(d: &Daemon, args: &[&str]) -> Result<Vec<(String, String)>, String> {
    let mut all = vec!["--json", "keys"];
    all.extend_from_slice(args);
    let (status, out, err) = d.admin_ctl(&all).finish();
    if !status.success() {
        return Err(format!("cloudctl {all:?} failed ({status:?}): {err}"));
    }
    let v: Value = serde_json::from_str(&out).map_err(|e| format!("not JSON ({e}): {out}"))?;
    if v["incomplete"].as_array().is_none_or(|a| !a.is_empty()) || v["truncated"] != false {
        return Err(format!("not a whole answer: {v}"));
    }
    let rows = v["rows"]
        .as_array()
        .ok_or_else(|| format!("no rows: {v}"))?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                format!(
                    "{}/{}",
                    r["primary"].as_str().unwrap_or("?"),
                    r["secondary"]
                ),
                r["data"].as_str().unwrap_or("?").to_owned(),
            )
        })
        .collect())
}

#[test]
fn keys_with_a_query_through_the_admin_socket_of_a_mesh() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let secret = tmp.path().join("mesh.secret");
    std::fs::write(&secret, "keys-query-test-secret-0123456789\n").expect("write the secret");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let utf8 = |p: &Path| p.to_str().expect("UTF-8 temp path").to_owned();
    let secret = utf8(&secret);
    // One row per page: the admin's query must page through the mesh's matches.
    let config = tmp.path().join("cloudd.toml");
    std::fs::write(&config, "[limits]\nmax_get_rows = 1\n").expect("write the config");
    let config = utf8(&config);
    let base = [
        "--secret-file",
        secret.as_str(),
        "--config",
        config.as_str(),
    ];
    let n1 = start_cloudd("node-1", &tmp.path().join("1"), &base);
    let join = format!("127.0.0.1:{}", n1.port());
    let mut joiner = base.to_vec();
    joiner.extend(["--join", &join]);
    let n2 = start_cloudd("node-2", &tmp.path().join("2"), &joiner);
    let n3 = start_cloudd("node-3", &tmp.path().join("3"), &joiner);

    // Rows held on node-2 and node-3; the query is asked of node-1, which holds none.
    let rows = [
        (
            "servers/1",
            r#"{"region":"eu","players":12,"x":1,"y":1}"#,
            &n2,
        ),
        (
            "servers/2",
            r#"{"region":"eu","players":3,"x":50,"y":50}"#,
            &n3,
        ),
        (
            "servers/3",
            r#"{"region":"us","players":7,"x":2,"y":2}"#,
            &n2,
        ),
        ("servers/4", "not json", &n3),
        (
            "servers/5",
            r#"{"region":"eu","players":40,"x":0,"y":3}"#,
            &n3,
        ),
    ];
    let mut posts = Vec::new();
    for (key, data, node) in rows {
        let mut p = node.ctl(&["post", key, data, "--hold", "120s"]);
        p.stdout_line("posted ...");
        posts.push(p);
    }
    wait_until("every row listed by node-1", DEADLINE, || {
        let listed = keys_rows(&n1, &["servers"])?;
        if listed.len() == rows.len() {
            Ok(())
        } else {
            Err(format!("{listed:?}"))
        }
    });

    // What each query should list, worked out here from the rows posted.
    let objects: Vec<(String, String, Value)> = rows
        .iter()
        .filter_map(|(k, d, _)| {
            let v: Value = serde_json::from_str(d).ok()?;
            Some((k.to_string(), d.to_string(), v))
        })
        .collect();
    let players = |v: &Value| v["players"].as_i64().unwrap_or(i64::MAX);
    let mut eu_small: Vec<&(String, String, Value)> = objects
        .iter()
        .filter(|(_, _, v)| v["region"] == "eu" && players(v) < 20)
        .collect();
    eu_small.sort_by_key(|(_, _, v)| std::cmp::Reverse(players(v)));
    let expect = |picked: &[&(String, String, Value)]| -> Vec<(String, String)> {
        picked
            .iter()
            .map(|(k, d, _)| (k.clone(), d.clone()))
            .collect()
    };
    let got = keys_rows(
        &n1,
        &[
            "servers",
            "--where",
            r#"region = "eu" and players < 20"#,
            "--sort",
            "-players",
        ],
    )
    .expect("keys --where");
    assert_eq!(got, expect(&eu_small));
    assert_eq!(got.len(), 2, "servers/1 then servers/2: {got:?}");

    let got = keys_rows(&n1, &["servers", "--sort", "players", "--limit", "2"])
        .expect("keys --sort --limit");
    let mut by_players: Vec<&(String, String, Value)> = objects.iter().collect();
    by_players.sort_by_key(|(_, _, v)| players(v));
    assert_eq!(got, expect(&by_players[..2]), "the two emptiest");

    let got = keys_rows(&n1, &["servers", "--near", "0,0,5"]).expect("keys --near");
    let near: Vec<&(String, String, Value)> = objects
        .iter()
        .filter(|(_, _, v)| {
            let (x, y) = (
                v["x"].as_f64().unwrap_or(1e9),
                v["y"].as_f64().unwrap_or(1e9),
            );
            (x * x + y * y).sqrt() <= 5.0
        })
        .collect();
    assert_eq!(got, expect(&near), "key order without a sort");

    // A mistake in the query is a usage error naming the part and the problem.
    let (status, _, err) = n1
        .admin_ctl(&["keys", "servers", "--where", "players <"])
        .finish();
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains("invalid query (where)") && err.contains("expected a value"),
        "{err}"
    );
    let (status, _, err) = n1.admin_ctl(&["keys", "servers", "--near", "1,2"]).finish();
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains("invalid query (near)") && err.contains("X,Y,R"),
        "{err}"
    );
}

/// A query is bounded in time like a get: a peer that holds matching rows but does not
/// answer (its process stopped with SIGSTOP: alive to the kernel, silent to the mesh) is
/// waited for `remote_timeout` (2 s), then named as incomplete — the query returns the rows
/// the other nodes had instead of hanging. Once the peer runs again, the same query is
/// complete again.
#[test]
fn a_query_to_a_silent_peer_returns_without_its_rows_and_names_it_incomplete() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let secret = tmp.path().join("mesh.secret");
    std::fs::write(&secret, "silent-peer-test-secret-0123456789\n").expect("write the secret");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let secret = secret.to_str().expect("UTF-8 temp path").to_owned();
    let base = ["--secret-file", secret.as_str()];
    let n1 = start_cloudd("node-1", &tmp.path().join("1"), &base);
    let join = format!("127.0.0.1:{}", n1.port());
    let mut joiner = base.to_vec();
    joiner.extend(["--join", &join]);
    let n2 = start_cloudd("node-2", &tmp.path().join("2"), &joiner);

    let mut posts = Vec::new();
    for (key, data, node) in [
        ("servers/1", r#"{"region":"eu","players":1}"#, &n1),
        ("servers/2", r#"{"region":"eu","players":2}"#, &n2),
    ] {
        let mut p = node.ctl(&["post", key, data, "--hold", "120s"]);
        p.stdout_line("posted ...");
        posts.push(p);
    }
    let query = ["get", "servers", "--where", r#"region = "eu""#, "--json"];
    let keys_of = |out: &str| -> Vec<String> {
        let mut keys: Vec<String> = json_rows(out)
            .iter()
            .map(|r| r["key"].as_str().unwrap_or_default().to_owned())
            .collect();
        keys.sort();
        keys
    };
    let both = vec!["servers/1".to_owned(), "servers/2".to_owned()];
    wait_until("node-1's query to see both rows", DEADLINE, || {
        let (status, out, err) = n1.ctl(&query).finish();
        match (status.success(), keys_of(&out)) {
            (true, keys) if keys == both => Ok(()),
            (_, keys) => Err(format!("{keys:?} {err}")),
        }
    });

    n2.proc.signal("-STOP");
    let (status, out, err) = n1.ctl(&query).finish_within(DEADLINE);
    n2.proc.signal("-CONT");
    assert!(
        status.success(),
        "the query answers with what it has: {err}"
    );
    assert_eq!(
        keys_of(&out),
        ["servers/1"],
        "node-2's row is missing: {err}"
    );
    assert!(
        err.contains("did not answer in time") && err.contains("incomplete"),
        "the silent node is named: {err}"
    );

    wait_until("the query to be complete again", DEADLINE, || {
        let (status, out, err) = n1.ctl(&query).finish();
        match (status.success(), keys_of(&out), err.contains("incomplete")) {
            (true, keys, false) if keys == both => Ok(()),
            (_, keys, _) => Err(format!("{keys:?} {err}")),
        }
    });
    drop(posts);
}
