//! A real network outage between a client and its node (nftables drops every packet both
//! ways, in network namespaces this test makes): longer than the idle timeout, shorter than
//! the resume grace. The node suspends the session (the admin listing shows it), nobody
//! watching sees the client leave, and the client (`cloudctl post`, the SDK inside it)
//! resumes the same session when the network is back.

mod netns;
mod procs;

use std::time::{Duration, Instant};

use netns::Net;
use procs::{Proc, CLOUDCTL};
use serde_json::Value;

/// Reads JSON lines from `p` until one satisfies `pred`; returns it and every line before.
fn json_until(p: &mut Proc, what: &str, pred: impl Fn(&Value) -> bool) -> (Value, Vec<Value>) {
    let mut before = Vec::new();
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
fn an_outage_longer_than_the_idle_timeout_within_the_grace_deletes_nothing() {
    let net = Net::new(3);
    let tmp = tempfile::tempdir().expect("tempdir");
    let node = net.start_cloudd(
        0,
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
    // A client on host `host`, reaching the node over the bridge.
    let client = |host: usize, args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--server", &node.addr, "--pin", &node.fingerprint]);
        Proc::spawn_cmd(net.command(host, CLOUDCTL, &all))
    };
    let mut watch = client(2, &["watch", "players", "--json"]);
    watch.stderr_line("the watch to start", |l| l.contains("watching"));
    let mut post = client(1, &["post", "players/1", "alice", "--json"]);
    let first = post.json_line("the post");
    let id = first["client"].as_str().expect("client id").to_owned();
    json_until(&mut watch, "the row at the watcher", |v| {
        v["event"] == "updated" && v["data"] == "alice"
    });

    // 7 s of silence: past the node's idle timeout (2 s) and the client's (5 s), well
    // within the grace (30 s).
    net.cut(0, 1);
    let cut_at = Instant::now();
    json_until(&mut post, "post to notice", |v| v["event"] == "suspended");
    procs::wait_until(
        "the node to list the session as suspended",
        Duration::from_secs(20),
        || {
            let (status, out, err) = node.admin_ctl(&["clients", "--json"]).finish();
            if !status.success() {
                return Err(err);
            }
            let v: Value = serde_json::from_str(out.trim()).map_err(|e| e.to_string())?;
            let listed = v["clients"].as_array().cloned().unwrap_or_default();
            listed
                .iter()
                .find(|c| c["id"] == id.as_str() && c["suspended_until_ms"].is_u64())
                .map(|_| ())
                .ok_or(format!("{listed:?}"))
        },
    );
    std::thread::sleep(Duration::from_secs(7).saturating_sub(cut_at.elapsed()));
    net.heal();

    let (resumed, _) = json_until(&mut post, "post to resume", |v| v["event"] == "resumed");
    assert_eq!(
        resumed["client"],
        id.as_str(),
        "the same session: {resumed}"
    );
    // A later change bounds what the watcher saw meanwhile: no deletion.
    let mut other = client(2, &["post", "players/2", "bob", "--json"]);
    other.json_line("the other post");
    let (_, before) = json_until(&mut watch, "the later change", |v| {
        v["event"] == "updated" && v["data"] == "bob"
    });
    assert!(
        before.iter().all(|v| v["event"] != "deleted"),
        "the watcher saw the client leave: {before:?}"
    );
}
