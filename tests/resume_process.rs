//! Session resume with real processes: a `cloudctl post` killed with SIGKILL and started
//! again with its kept token is the same client with the same row, and nobody watching saw
//! it leave; a node killed with SIGKILL under a `cloudctl post` loses the session, and the
//! SDK inside `post` establishes the row again on the other node (watchers see `node_lost`,
//! then the row back).

mod procs;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use procs::{start_cloudd, Proc};
use serde_json::Value;

fn utf8(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// Reads JSON lines from `p` until one satisfies `pred`; returns it and every line before.
fn json_until(p: &mut Proc, what: &str, pred: impl Fn(&Value) -> bool) -> (Value, Vec<Value>) {
    let mut before = Vec::new();
    // Each line waits up to the harness deadline; the number of lines is bounded.
    for _ in 0..200 {
        let v = p.json_line(what);
        if pred(&v) {
            return (v, before);
        }
        before.push(v);
    }
    panic!("{what}: not among the first 200 lines: {before:?}");
}

#[test]
fn a_restarted_post_takes_its_session_back_with_the_kept_token() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let node = start_cloudd(
        "node-a",
        &tmp.path().join("a"),
        &[
            "--idle-timeout",
            "2s",
            "--keep-alive",
            "500ms",
            "--resume-grace",
            "30s",
        ],
    );
    let mut watch = node.ctl(&["watch", "players", "--json"]);
    watch.stderr_line("the watch to start", |l| l.contains("watching"));
    let file: PathBuf = tmp.path().join("post.resume");
    let mut post = node.ctl(&[
        "post",
        "players/1",
        "alice",
        "--json",
        "--resume-file",
        utf8(&file),
    ]);
    let first = post.json_line("the first post");
    let id = first["client"].as_str().expect("client id").to_owned();
    json_until(&mut watch, "the row at the watcher", |v| {
        v["event"] == "updated" && v["data"] == "alice"
    });
    assert!(file.exists(), "the token is kept");
    post.signal("-KILL");
    let _ = post.wait();

    let mut again = node.ctl(&[
        "post",
        "players/1",
        "alice-2",
        "--json",
        "--resume-file",
        utf8(&file),
    ]);
    let second = again.json_line("the post after the restart");
    assert_eq!(second["client"], id, "the same session: {second}");
    again.stderr_line("the resume", |l| l.contains("resumed the session"));
    let (_, before) = json_until(&mut watch, "the new data at the watcher", |v| {
        v["event"] == "updated" && v["data"] == "alice-2"
    });
    assert!(
        before.iter().all(|v| v["event"] != "deleted"),
        "the watcher saw the player leave: {before:?}"
    );
}

#[test]
fn a_killed_node_loses_the_session_and_post_brings_its_row_back_on_another_node() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let secret = tmp.path().join("mesh.secret");
    std::fs::write(&secret, format!("{}\n", "r3sume-".repeat(6))).expect("secret");
    let mut perms = std::fs::metadata(&secret).expect("meta").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o600);
    std::fs::set_permissions(&secret, perms).expect("chmod");
    let base = [
        "--secret-file",
        utf8(&secret),
        "--idle-timeout",
        "2s",
        "--keep-alive",
        "500ms",
    ];
    let a = start_cloudd("node-a", &tmp.path().join("a"), &base);
    let join = format!("127.0.0.1:{}", a.port());
    let mut with_join = base.to_vec();
    with_join.extend(["--join", &join]);
    let b = start_cloudd("node-b", &tmp.path().join("b"), &with_join);
    // b is a member once `cloud.nodes` read at a lists it.
    procs::wait_until("b to join", Duration::from_secs(20), || {
        let get = a.ctl(&["get", "cloud.nodes", "--json"]);
        let (status, out, _) = get.finish_within(Duration::from_secs(10));
        let n = out.lines().count();
        if status.success() && n == 2 {
            Ok(())
        } else {
            Err(format!("{n} node rows"))
        }
    });
    let mut watch = b.ctl(&["watch", "players", "--json"]);
    watch.stderr_line("the watch to start", |l| l.contains("watching"));
    let mut post = a.ctl(&["post", "players/9", "dora", "--json"]);
    let first = post.json_line("the post");
    let old = first["client"].as_str().expect("client").to_owned();
    json_until(&mut watch, "the row at b", |v| {
        v["event"] == "updated" && v["owner"] == old.as_str()
    });

    let killed = Instant::now();
    a.proc.signal("-KILL");
    let (gone, _) = json_until(&mut watch, "the row deleted as node_lost", |v| {
        v["event"] == "deleted"
    });
    assert_eq!(gone["reason"], "node_lost", "{gone}");
    let (back, _) = json_until(&mut watch, "the row back", |v| {
        v["event"] == "updated" && v["data"] == "dora"
    });
    let took = killed.elapsed();
    assert_ne!(back["owner"], old.as_str(), "a new session: {back}");
    let (restored, _) = json_until(&mut post, "post's restored line", |v| {
        v["event"] == "restored"
    });
    assert_eq!(restored["detail"], old.as_str());
    eprintln!("kill -9 of the client's node -> row back at a watcher: {took:?}");
}

/// Starts `cloudd` on a fixed address (so it can be restarted there) and waits for it to
/// listen; returns the process and its certificate fingerprint.
fn cloudd_at(addr: &str, dir: &Path) -> (Proc, String) {
    let admin = dir.join("admin.sock");
    let mut p = Proc::spawn(
        procs::CLOUDD,
        &[
            "--listen",
            addr,
            "--data-dir",
            utf8(dir),
            "--name",
            "node-a",
            "--admin-socket",
            utf8(&admin),
            "--idle-timeout",
            "2s",
            "--keep-alive",
            "500ms",
        ],
    );
    let line = p.stderr_line("the node to listen", |l| {
        l.contains("listening on ") && l.contains("fingerprint sha256:")
    });
    let fp = line
        .split("fingerprint sha256:")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("fingerprint")
        .to_owned();
    (p, fp)
}

#[test]
fn post_and_watch_survive_a_restart_of_their_node() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("a");
    std::fs::create_dir_all(&dir).expect("dir");
    // A free port, to start the node there twice.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let (mut node, fp) = cloudd_at(&addr, &dir);
    let ctl = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--server", &addr, "--pin", &fp]);
        Proc::spawn(procs::CLOUDCTL, &all)
    };
    let mut watch = ctl(&["watch", "players", "--json"]);
    watch.stderr_line("the watch to start", |l| l.contains("watching"));
    let mut post = ctl(&["post", "players/4", "frank", "--json"]);
    let first = post.json_line("the post");
    let old = first["client"].as_str().expect("client").to_owned();
    json_until(&mut watch, "the row at the watcher", |v| {
        v["event"] == "updated" && v["data"] == "frank"
    });

    // An operator restart: SIGTERM, then the same node again (same data, same address).
    node.signal("-TERM");
    let _ = node.wait();
    let (_node, fp2) = cloudd_at(&addr, &dir);
    assert_eq!(fp2, fp, "the same certificate");

    let (restored, _) = json_until(&mut post, "post's restored line", |v| {
        v["event"] == "restored"
    });
    assert_eq!(restored["detail"], old.as_str());
    // The row's return and the session's `restored` line come on different streams of the
    // SDK (a subscription's events and the session's), so either may be printed first.
    let is_back = |v: &Value| v["event"] == "updated" && v["data"] == "frank";
    let (_, before) = json_until(&mut watch, "watch's restored line", |v| {
        v["event"] == "restored"
    });
    let back = match before.into_iter().find(|v| is_back(v)) {
        Some(v) => v,
        None => json_until(&mut watch, "the row back at the watcher", is_back).0,
    };
    assert_ne!(
        back["owner"],
        old.as_str(),
        "posted again by a new session: {back}"
    );
}
