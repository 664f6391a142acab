//! A mesh of real `cloudd` processes on 127.0.0.1 (issue 3, acceptance 3): nodes join with
//! `--join`, authenticate with a shared secret file, elect the oldest member as host, and
//! survive `kill -9` of the host. Clients are real `cloudctl` processes. Every wait has a
//! deadline and every process dies with its guard.

mod procs;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use procs::{command, start_cloudd, wait_until, Daemon, Proc, CLOUDD, DEADLINE};
use serde_json::Value;

/// One `cloud.nodes` row as a node reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Member {
    name: String,
    id: String,
    host: bool,
    state: String,
}

/// Writes a 0600 secret file, the way the README tells operators to.
fn secret_file(dir: &Path, name: &str, secret: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{secret}\n")).expect("write the secret file");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
    path
}

fn utf8(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

/// `cloudctl get KEYSPEC --json` against `d`, as JSON rows; `Err` says why not (a node may
/// be busy noticing a loss, so callers poll).
fn get_rows(d: &Daemon, keyspec: &str) -> Result<Vec<Value>, String> {
    let (status, out, err) = d.ctl(&["get", keyspec, "--json"]).finish();
    if !status.success() {
        return Err(format!("get {keyspec} on {} failed: {err}", d.name));
    }
    out.lines()
        .map(|l| serde_json::from_str(l).map_err(|e| format!("{l:?} is not JSON: {e}")))
        .collect()
}

/// The members `d` lists in `cloud.nodes`, sorted by name.
fn members(d: &Daemon) -> Result<Vec<Member>, String> {
    let mut members = get_rows(d, "cloud.nodes")?
        .iter()
        .map(|row| {
            let data = row["data"]
                .as_str()
                .ok_or_else(|| format!("cloud.nodes data is not text: {row}"))?;
            let v: Value = serde_json::from_str(data)
                .map_err(|e| format!("cloud.nodes data {data:?} is not JSON: {e}"))?;
            let text = |k: &str| {
                v[k].as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("no {k} in {v}"))
            };
            // A node's row is posted by the node itself, so the row's node is its id
            // (clients see no id in the JSON unless the operator allows it).
            let id = row["node"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("no node in {row}"))?;
            Ok(Member {
                name: text("name")?,
                id,
                state: text("state")?,
                host: v["host"]
                    .as_bool()
                    .ok_or_else(|| format!("no host flag in {v}"))?,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    members.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(members)
}

/// Waits until `d` lists exactly the nodes `names`, all Active, with `host` the one host.
fn wait_for_view(d: &Daemon, names: &[&str], host: &str) -> Vec<Member> {
    let want: BTreeSet<&str> = names.iter().copied().collect();
    wait_until(
        &format!("{} to list {names:?} with host {host}", d.name),
        DEADLINE,
        || {
            let ms = members(d)?;
            let got: BTreeSet<&str> = ms.iter().map(|m| m.name.as_str()).collect();
            let hosts: Vec<&str> = ms
                .iter()
                .filter(|m| m.host)
                .map(|m| m.name.as_str())
                .collect();
            let all_active = ms.iter().all(|m| m.state == "Active");
            if got == want && ms.len() == names.len() && hosts == [host] && all_active {
                Ok(ms)
            } else {
                Err(format!("{ms:?}"))
            }
        },
    )
}

fn find<'a>(members: &'a [Member], name: &str) -> &'a Member {
    members
        .iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("{name} in {members:?}"))
}

#[test]
fn kill_9_of_the_host_elects_a_new_host_and_emits_node_lost() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let secret = secret_file(tmp.path(), "mesh.secret", &"s3cret-".repeat(6));
    let dirs: Vec<PathBuf> = ["a", "b", "c"].iter().map(|n| tmp.path().join(n)).collect();
    // An idle timeout short enough that losing a node takes seconds, long enough for a
    // loaded CI machine.
    let base = [
        "--secret-file",
        utf8(&secret),
        "--idle-timeout",
        "2s",
        "--keep-alive",
        "500ms",
    ];
    let mut a = start_cloudd("node-a", &dirs[0], &base);
    let join_a = format!("127.0.0.1:{}", a.port());
    let mut joiner = base.to_vec();
    joiner.extend(["--join", &join_a]);
    // B joins before C is started, so the join order (and the next host) is known.
    let mut b = start_cloudd("node-b", &dirs[1], &joiner);
    wait_until("node-b to show up at node-a", DEADLINE, || {
        let ms = members(&a)?;
        if ms.iter().any(|m| m.name == "node-b") {
            Ok(())
        } else {
            Err(format!("{ms:?}"))
        }
    });
    let mut c = start_cloudd("node-c", &dirs[2], &joiner);

    // Every node sees all three, and the first node (it bootstrapped the mesh) is host.
    let all = ["node-a", "node-b", "node-c"];
    let views: Vec<Vec<Member>> = [&a, &b, &c]
        .iter()
        .map(|d| wait_for_view(d, &all, "node-a"))
        .collect();
    assert!(
        views.windows(2).all(|w| w[0] == w[1]),
        "every node lists the same members: {views:?}"
    );
    let a_id = find(&views[0], "node-a").id.clone();

    let mut post = a.ctl(&["post", "players/1", "alice", "--hold", "120s"]);
    let posted = post.stdout_line("posted ...");
    assert!(posted.starts_with("posted players/1 version "), "{posted}");

    let mut watches: Vec<(&str, Proc)> = [("node-b", &b), ("node-c", &c)]
        .into_iter()
        .map(|(name, d)| (name, d.ctl(&["--json", "watch", "players", "--count", "1"])))
        .collect();
    let mut owner = None;
    for (name, w) in &mut watches {
        let snap = w.json_line("the snapshot with alice's row");
        assert_eq!(snap["event"], "snapshot", "{name}: {snap}");
        assert_eq!(snap["key"], "players/1", "{name}: {snap}");
        assert_eq!(snap["data"], "alice", "{name}: {snap}");
        assert_eq!(
            snap["node"],
            a_id.as_str(),
            "{name}: row lives on node-a: {snap}"
        );
        // The snapshot is printed before `watching`, so the subscription is in place.
        w.stderr_line("saying the watch is live", |l| l.contains("watching"));
        owner.get_or_insert_with(|| snap["owner"].clone());
        assert_eq!(Some(&snap["owner"]), owner.as_ref(), "{name}: {snap}");
    }

    a.proc.signal("-KILL");
    let killed = Instant::now();
    a.proc.wait();

    for (name, w) in &mut watches {
        let del = w.json_line("the node_lost deletion");
        let took = killed.elapsed();
        eprintln!("{name}: NodeLost deletion {took:?} after kill -9 of the host (idle timeout 2s)");
        assert_eq!(del["event"], "deleted", "{name}: {del}");
        assert_eq!(del["reason"], "node_lost", "{name}: {del}");
        assert_eq!(del["key"], "players/1", "{name}: {del}");
        assert_eq!(del["node"], a_id.as_str(), "{name}: {del}");
        assert_eq!(Some(&del["owner"]), owner.as_ref(), "{name}: {del}");
        assert_eq!(
            del["data"], "alice",
            "a deletion carries the last data: {del}"
        );
        assert!(took < DEADLINE, "{name}: {took:?}");
        let status = w.wait();
        assert!(
            status.success(),
            "{name}: watch --count 1 exits 0: {status:?}"
        );
    }

    // The oldest remaining member takes over, and both survivors agree.
    let rest = ["node-b", "node-c"];
    let vb = wait_for_view(&b, &rest, "node-b");
    let vc = wait_for_view(&c, &rest, "node-b");
    assert_eq!(vb, vc, "node-b and node-c agree");
    eprintln!(
        "new host listed everywhere {:?} after kill -9",
        killed.elapsed()
    );
    // The takeover is logged (a joining node also logs one when it learns the mesh's host,
    // so match this change exactly).
    let new_id = find(&vb, "node-b").id.clone();
    let (old, new) = (format!("old_id={a_id}"), format!("new_id={new_id}"));
    for d in [&mut b, &mut c] {
        d.proc.stderr_line("logging the host change", |l| {
            l.contains("host changed") && l.contains(&old) && l.contains(&new)
        });
    }
}

#[test]
fn wrong_secret_cannot_join() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let s1 = secret_file(tmp.path(), "one.secret", "the-first-mesh-secret");
    let s2 = secret_file(tmp.path(), "two.secret", "another-mesh-secret!!");
    let (da, db) = (tmp.path().join("a"), tmp.path().join("b"));
    let mut a = start_cloudd("node-a", &da, &["--secret-file", utf8(&s1)]);
    let join_a = format!("127.0.0.1:{}", a.port());
    let mut b = start_cloudd(
        "node-b",
        &db,
        &["--secret-file", utf8(&s2), "--join", &join_a],
    );

    // A logs the failed authentication with the address it came from.
    let line = a
        .proc
        .stderr_line("logging B's failed authentication", |l| {
            l.contains("authentication") && l.contains(&b.addr)
        });
    eprintln!("node-a: {line}");
    // B says why it could not get in, and that it runs a mesh of its own.
    let line = b.proc.stderr_line("saying authentication failed", |l| {
        l.contains("cannot join") && l.contains("authentication failed") && l.contains(&a.addr)
    });
    eprintln!("node-b: {line}");
    b.proc.stderr_line("saying it starts a mesh alone", |l| {
        l.contains("starting a new mesh")
    });

    // Each is alone, and host of its own mesh.
    let va = wait_for_view(&a, &["node-a"], "node-a");
    let vb = wait_for_view(&b, &["node-b"], "node-b");
    assert_ne!(va[0].id, vb[0].id);

    // Nothing crosses: B's row is visible on B and not on A.
    let mut post = b.ctl(&["post", "players/2", "bob", "--hold", "60s"]);
    post.stdout_line("posted ...");
    let on_b = wait_until("bob's row on node-b", DEADLINE, || {
        let rows = get_rows(&b, "players")?;
        if rows.len() == 1 {
            Ok(rows)
        } else {
            Err(format!("{rows:?}"))
        }
    });
    assert_eq!(on_b[0]["data"], "bob");
    let on_a = get_rows(&a, "players").expect("get on node-a works");
    assert!(on_a.is_empty(), "node-a sees nothing of node-b: {on_a:?}");
    assert_eq!(
        members(&a).expect("node-a answers"),
        va,
        "node-b never joined node-a"
    );
}

#[test]
fn join_without_secret_is_refused() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (status, _, err) = Proc::spawn(
        CLOUDD,
        &[
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            utf8(tmp.path()),
            "--admin-socket",
            utf8(&tmp.path().join("admin.sock")),
            "--join",
            "127.0.0.1:1",
        ],
    )
    .finish();
    assert_eq!(status.code(), Some(2), "a configuration error: {err}");
    assert!(err.contains("--secret-file"), "says what to give: {err}");
    assert!(err.contains("CLOUDD_SECRET"), "and the alternative: {err}");
}

fn check_config(
    args: &[&str],
    envs: &[(&str, &str)],
) -> (std::process::ExitStatus, String, String) {
    let mut cmd = command(CLOUDD, args);
    cmd.arg("--check-config").envs(envs.iter().copied());
    Proc::spawn_cmd(cmd).finish()
}

#[test]
fn check_config_shows_mesh_settings_but_never_the_secret() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let secret = secret_file(tmp.path(), "mesh.secret", "do-not-print-this-secret");
    let file = utf8(&secret);

    let (status, out, err) = check_config(
        &["--secret-file", file, "--advertise", "10.0.0.9:7946"],
        &[("CLOUDD_JOIN", "mesh.example.com, 10.0.0.5:7000")],
    );
    assert!(status.success(), "{err}");
    assert!(
        out.contains("mesh.example.com, 10.0.0.5:7000"),
        "both join targets: {out}"
    );
    assert!(out.contains("10.0.0.9:7946"), "{out}");
    assert!(out.contains(&format!("set (from {file})")), "{out}");
    assert!(!out.contains("do-not-print"), "{out}");
    assert!(!out.contains("warning"), "0600 is fine: {out}");

    let (status, out, err) = check_config(
        &["--join", "10.0.0.5"],
        &[("CLOUDD_SECRET", "do-not-print-this-secret")],
    );
    assert!(status.success(), "{err}");
    assert!(out.contains("set (from CLOUDD_SECRET)"), "{out}");
    assert!(!out.contains("do-not-print") && !err.contains("do-not-print"));

    let (status, _, err) = check_config(
        &["--secret-file", file],
        &[("CLOUDD_SECRET", "do-not-print-this-secret")],
    );
    assert_eq!(status.code(), Some(2), "two secrets are refused: {err}");
    assert!(err.contains("only one"), "{err}");
    assert!(!err.contains("do-not-print"), "{err}");

    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let (status, out, err) = check_config(&["--secret-file", file], &[]);
    assert!(status.success(), "a loose mode warns but works: {err}");
    assert!(
        out.contains("warning") && out.contains("chmod 600"),
        "{out}"
    );

    let (status, out, err) = check_config(&["--join", "10.0.0.5"], &[]);
    assert_eq!(status.code(), Some(2), "join needs a secret: {out}");
    assert!(err.contains("--secret-file"), "{err}");
}
