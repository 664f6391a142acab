//! Operating a mesh of real `cloudd` processes with `cloudctl` (issue 5, acceptance 1–3):
//! `cloudctl drain node-3 --wait` asked of node-1 moves node-3's clients away with their
//! rows, `undrain` returns it to placement, the JSON listings agree with what clients posted,
//! and the admin socket is private and owned by one daemon at a time.

mod procs;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use cloudmesh::client::{Client, ClientOptions};
use cloudmesh::proto::{Key, KeySpec};
use cloudmesh::transport::{parse_fingerprint, Trust};
use procs::{start_cloudd, wait_until, Daemon, Proc, CLOUDD, DEADLINE};
use serde_json::Value;

fn secret_file(dir: &Path) -> PathBuf {
    let path = dir.join("mesh.secret");
    std::fs::write(&path, "admin-process-test-secret-0123456789\n").expect("write the secret");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
    path
}

fn utf8(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

/// `cloudctl --socket S --json ARGS...` as one JSON document; `Err` says why not.
fn json(d: &Daemon, args: &[&str]) -> Result<Value, String> {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let (status, out, err) = d.admin_ctl(&all).finish();
    if !status.success() {
        return Err(format!("cloudctl {args:?} failed ({status:?}): {err}"));
    }
    serde_json::from_str(&out)
        .map_err(|e| format!("cloudctl {args:?} printed non-JSON ({e}): {out}"))
}

fn node<'a>(nodes: &'a Value, name: &str) -> Result<&'a Value, String> {
    nodes["nodes"]
        .as_array()
        .and_then(|a| a.iter().find(|n| n["name"] == name))
        .ok_or_else(|| format!("{name} not in {nodes}"))
}

#[test]
fn drain_asked_of_node_1_empties_node_3_and_undrain_returns_it() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let secret = secret_file(tmp.path());
    let base = ["--secret-file", utf8(&secret)];
    let n1 = start_cloudd("node-1", &tmp.path().join("1"), &base);
    let join = format!("127.0.0.1:{}", n1.port());
    let mut joiner = base.to_vec();
    joiner.extend(["--join", &join]);
    let n2 = start_cloudd("node-2", &tmp.path().join("2"), &joiner);
    let n3 = start_cloudd("node-3", &tmp.path().join("3"), &joiner);

    // Every node linked and reporting load, seen from node-1's socket.
    wait_until("a mesh of three seen by node-1", DEADLINE, || {
        let nodes = json(&n1, &["nodes"])?;
        let list = nodes["nodes"].as_array().ok_or("no list")?;
        let ready = list.len() == 3
            && list
                .iter()
                .all(|n| n["linked"] == true && n["state"] == "Active");
        if ready {
            Ok(())
        } else {
            Err(nodes.to_string())
        }
    });

    // Simulated players on node-3, each holding two rows.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let trust = Trust::Pin(parse_fingerprint(&n3.fingerprint).expect("fingerprint"));
    let addr = n3.addr.parse().expect("addr");
    let players: Vec<Client> = (0..6u32)
        .map(|i| {
            rt.block_on(async {
                let c = Client::connect(addr, ClientOptions::new(trust.clone()))
                    .await
                    .expect("player connects to node-3");
                c.post(Key::new("players", i), format!("player-{i}"))
                    .await
                    .expect("post");
                c.post(Key::new("scores", i), format!("{}", i * 100))
                    .await
                    .expect("post");
                c
            })
        })
        .collect();
    let ids: Vec<String> = players.iter().map(|c| c.id().to_string()).collect();

    // The listings agree with what the players posted.
    let clients = json(&n1, &["clients", "--node", "node-3"]).expect("clients --json");
    let listed = clients["clients"].as_array().expect("client list");
    assert_eq!(listed.len(), 6, "{clients}");
    for c in listed {
        assert!(
            ids.contains(&c["id"].as_str().unwrap_or("").to_owned()),
            "{c}"
        );
        assert_eq!(c["node"], "node-3");
        assert_eq!(c["rows"], 2);
    }
    let keys = json(&n1, &["keys"]).expect("keys --json");
    let primaries = keys["primaries"].as_array().expect("primaries");
    let players_entry = primaries
        .iter()
        .find(|p| p["primary"] == "players")
        .expect("players listed");
    assert_eq!(players_entry["rows"], 6, "{keys}");
    let rows = json(&n1, &["keys", "players"]).expect("keys players --json");
    let rows = rows["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 6);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r["secondary"], i as u64);
        assert_eq!(r["data"], format!("player-{i}"));
        assert_eq!(r["node"], "node-3");
    }
    // The human output is an aligned table: every line as wide as its cells need, with the
    // column starts lined up under the header.
    let (status, out, err) = n1.admin_ctl(&["nodes"]).finish();
    assert!(status.success(), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.len() >= 4, "header and three nodes: {out}");
    let state_col = lines[0].find("STATE").expect("a STATE column");
    for l in &lines[1..4] {
        let cell = l.get(state_col..).unwrap_or("");
        assert!(
            ["Active", "Draining", "Drained", "Joining"]
                .iter()
                .any(|s| cell.starts_with(s)),
            "STATE aligned in {l:?}\n{out}"
        );
    }

    // The drain, asked of node-1.
    let (status, out, err) = n1.admin_ctl(&["drain", "node-3", "--wait"]).finish();
    assert!(status.success(), "drain --wait: {err}\n{out}");
    assert!(
        format!("{out}{err}").contains("drained"),
        "says it is done: {out} {err}"
    );

    let nodes = json(&n1, &["nodes"]).expect("nodes");
    assert_eq!(node(&nodes, "node-3").expect("node-3")["state"], "Drained");
    // Every player now lives on node-1 or node-2, with both rows, seen by everyone.
    wait_until("players listed on the other nodes", DEADLINE, || {
        let clients = json(&n1, &["clients"])?;
        let listed = clients["clients"].as_array().ok_or("no list")?;
        let moved = listed
            .iter()
            .filter(|c| ids.contains(&c["id"].as_str().unwrap_or("").to_owned()))
            .filter(|c| c["node"] != "node-3" && c["rows"] == 2)
            .count();
        if moved == 6 {
            Ok(())
        } else {
            Err(clients.to_string())
        }
    });
    for (i, p) in players.iter().enumerate() {
        let rows = rt
            .block_on(p.get(vec![
                KeySpec::primary("players"),
                KeySpec::primary("scores"),
            ]))
            .expect("get after the drain");
        let mine: Vec<_> = rows.iter().filter(|r| r.owner == p.id()).collect();
        assert_eq!(mine.len(), 2, "player {i} kept both rows: {rows:?}");
        assert!(mine.iter().all(|r| r.node == p.node_id()));
        assert_ne!(p.node_name(), "node-3");
    }
    let rows = json(&n1, &["keys", "players"]).expect("keys");
    let rows = rows["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 6, "rows intact: {rows:?}");
    assert!(rows.iter().all(|r| r["node"] != "node-3"));

    // undrain: Active again and eligible for placement.
    let (status, _, err) = n1.admin_ctl(&["undrain", "node-3"]).finish();
    assert!(status.success(), "undrain: {err}");
    wait_until("node-3 eligible for placement again", DEADLINE, || {
        let place = json(&n1, &["place", "--explain"])?;
        let cand = place["candidates"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["name"] == "node-3"))
            .ok_or_else(|| place.to_string())?;
        if cand["eligible"] == true {
            Ok(())
        } else {
            Err(place.to_string())
        }
    });

    // Unknown names: exit 4 and the known names listed.
    let (status, _, err) = n1.admin_ctl(&["drain", "node-9"]).finish();
    assert_eq!(status.code(), Some(4), "{err}");
    for name in ["node-1", "node-2", "node-3"] {
        assert!(err.contains(name), "lists {name}: {err}");
    }
    drop(players);
    drop((n2, n3));
}

#[test]
fn the_admin_socket_is_private_and_served_by_one_daemon_at_a_time() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let sock = tmp.path().join("run").join("admin.sock");
    let mut first = start_cloudd(
        "first",
        &tmp.path().join("a"),
        &["--admin-socket", utf8(&sock)],
    );
    let mode = std::fs::symlink_metadata(&sock)
        .expect("socket exists")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");

    // A second daemon on the same socket path refuses to start, saying why.
    let (status, _, err) = Proc::spawn(
        CLOUDD,
        &[
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            utf8(&tmp.path().join("b")),
            "--admin-socket",
            utf8(&sock),
        ],
    )
    .finish();
    assert!(!status.success(), "second daemon must not start: {err}");
    assert!(err.contains("another cloudd already serves"), "{err}");
    assert!(err.contains(utf8(&sock)), "names the path: {err}");
    // The first is untouched.
    let (status, out, err) = first.admin_ctl(&["--json", "status"]).finish();
    assert!(status.success(), "{err}");
    assert!(out.contains("\"first\""), "{out}");

    // kill -9 leaves a stale socket; the next daemon replaces it.
    first.proc.signal("-KILL");
    first.proc.wait();
    assert!(sock.exists(), "a killed daemon leaves its socket file");
    let second = start_cloudd(
        "second",
        &tmp.path().join("b"),
        &["--admin-socket", utf8(&sock)],
    );
    let (status, out, err) = second.admin_ctl(&["--json", "status"]).finish();
    assert!(status.success(), "{err}");
    assert!(out.contains("\"second\""), "{out}");
}
