//! The real binaries as an operator runs them: `cloudd` processes on 127.0.0.1 port 0 and
//! `cloudctl` processes talking to them. Every wait is bounded by a deadline, and every
//! child is killed when its guard drops, so a failing test neither hangs nor leaks.

mod procs;

use std::path::Path;
use std::process::ExitStatus;
use std::thread;
use std::time::{Duration, Instant};

use procs::{command, Daemon, Proc, CLOUDCTL, CLOUDD, DEADLINE};
use serde_json::Value;

/// A `cloudd` named `test-node` on 127.0.0.1 port 0 in `data_dir`.
fn start_cloudd(data_dir: &Path) -> Daemon {
    procs::start_cloudd("test-node", data_dir, &[])
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

#[test]
fn post_get_watch_between_processes() {
    let dir = tempdir();
    let d = start_cloudd(dir.path());

    let mut post = d.ctl(&["post", "players/3", "hello", "--hold", "60s"]);
    let posted = post.stdout_line("posted ...");
    assert!(posted.starts_with("posted players/3 version "), "{posted}");
    assert!(posted.ends_with("on node test-node"), "{posted}");

    // The post reports success only once the node applied it, but poll anyway: nothing
    // here should depend on timing.
    let end = Instant::now() + DEADLINE;
    let rows = loop {
        let (status, out, err) = d.ctl(&["get", "players", "--json"]).finish();
        assert!(status.success(), "get failed: {err}");
        let rows: Vec<Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).expect("get --json prints JSON lines"))
            .collect();
        if !rows.is_empty() || Instant::now() >= end {
            break rows;
        }
        thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert_eq!(row["key"], "players/3");
    assert_eq!(row["primary"], "players");
    assert_eq!(row["secondary"], 3);
    assert_eq!(row["data"], "hello");
    assert_eq!(row["data_hex"], "68656c6c6f");
    assert_eq!(row["owner"].as_str().map(str::len), Some(16), "{row}");
    assert_eq!(row["node"].as_str().map(str::len), Some(32), "{row}");
    assert!(row["version"].as_u64().is_some() && row["updated_at_ms"].as_u64().is_some());

    let mut watch = d.ctl(&["watch", "players", "--json", "--count", "1"]);
    let snap = watch.json_line("the snapshot row");
    assert_eq!(snap["event"], "snapshot");
    assert_eq!(snap["key"], "players/3");
    assert_eq!(snap["owner"], row["owner"]);

    // A stopped poster takes its row with it.
    post.signal("-TERM");
    let status = post.wait();
    assert!(status.success(), "post exits 0 on SIGTERM: {status:?}");

    let del = watch.json_line("the deletion");
    assert_eq!(del["event"], "deleted", "{del}");
    assert_eq!(del["reason"], "disconnected", "{del}");
    assert_eq!(del["key"], "players/3");
    assert_eq!(del["data"], "hello", "a deletion carries the last data");
    let status = watch.wait();
    assert!(status.success(), "watch --count 1 exits 0: {status:?}");

    let (status, _, err) = d.ctl(&["get", "players"]).finish();
    assert!(status.success(), "{err}");
    assert!(err.contains("no rows"), "{err}");
}

#[test]
fn trust_options_insecure_wrong_pin_and_none() {
    let dir = tempdir();
    let d = start_cloudd(dir.path());

    let (status, out, err) = Proc::spawn(
        CLOUDCTL,
        &[
            "get",
            "cloud.nodes",
            "--json",
            "--insecure",
            "--server",
            &d.addr,
        ],
    )
    .finish();
    assert!(status.success(), "--insecure get: {err}");
    assert!(err.contains("not checked"), "--insecure warns: {err}");
    assert!(out.contains("test-node"), "the node's own row: {out}");

    let wrong = "ab".repeat(32);
    let (status, _, err) = Proc::spawn(
        CLOUDCTL,
        &["get", "players", "--pin", &wrong, "--server", &d.addr],
    )
    .finish();
    assert_eq!(
        status.code(),
        Some(1),
        "wrong pin is an operational error: {err}"
    );
    assert!(err.contains("fingerprint"), "{err}");
    assert!(
        err.contains(&d.fingerprint),
        "names the node's real fingerprint: {err}"
    );

    let (status, _, err) = Proc::spawn(CLOUDCTL, &["get", "players", "--server", &d.addr]).finish();
    assert_eq!(
        status.code(),
        Some(2),
        "no trust option is a usage error: {err}"
    );
    for choice in ["--pin", "--ca", "--insecure", "fingerprint"] {
        assert!(err.contains(choice), "explains {choice}: {err}");
    }

    let (status, _, err) = Proc::spawn(
        CLOUDCTL,
        &["get", "players", "--pin", "nothex", "--server", &d.addr],
    )
    .finish();
    assert_eq!(
        status.code(),
        Some(2),
        "a malformed pin is a usage error: {err}"
    );
}

#[test]
fn sigterm_tells_clients_the_reason_and_exits_zero() {
    let dir = tempdir();
    let mut d = start_cloudd(dir.path());

    let mut watch = d.ctl(&["watch", "players", "--json"]);
    watch.stderr_line("saying the watch is live", |l| {
        l.contains("watching players")
    });
    let mut post = d.ctl(&["post", "players/1", "x"]);
    post.stdout_line("posted ...");

    d.proc.signal("-TERM");
    let status = d.proc.wait();
    assert!(status.success(), "cloudd exits 0 on SIGTERM: {status:?}");

    // Both say why the connection ended, and wait for the node to come back (a restart
    // must not end them; tests/resume_process.rs restarts it).
    // The post's row (and, when it arrives first, its deletion) come before.
    let mut lost = watch.json_line("watch's suspended line");
    for _ in 0..5 {
        if lost["event"] == "suspended" {
            break;
        }
        lost = watch.json_line("watch's suspended line");
    }
    assert_eq!(lost["event"], "suspended", "{lost}");
    assert!(
        lost["detail"]
            .as_str()
            .is_some_and(|d| d.contains("shutting down")),
        "says the node shut down: {lost}"
    );
    post.stderr_line("post saying the node shut down", |l| {
        l.contains("shutting down") && l.contains("resuming")
    });
}

/// A plain start warns about nothing: an operator reads every warning at start as
/// something to fix. (jemalloc counts arena slots, created or not, and refuses settings for
/// one not created yet; the node used to report each as a failure to tune the allocator.)
#[test]
fn a_plain_start_logs_no_warning() {
    let dir = tempdir();
    let mut d = start_cloudd(dir.path());
    let text = d.proc.stderr_text();
    assert!(
        !text
            .lines()
            .any(|l| l.contains(" WARN ") || l.contains(" ERROR ")),
        "{text}"
    );
}

#[test]
fn restart_on_the_same_data_dir_keeps_the_fingerprint() {
    let dir = tempdir();
    let mut first = start_cloudd(dir.path());
    first.proc.signal("-TERM");
    assert!(first.proc.wait().success());
    let second = start_cloudd(dir.path());
    assert_eq!(first.fingerprint, second.fingerprint);
    let (status, _, err) = second.ctl(&["get", "players"]).finish();
    assert!(status.success(), "the old pin still works: {err}");
}

fn check_config(args: &[&str], envs: &[(&str, &str)]) -> (ExitStatus, String, String) {
    let mut cmd = command(CLOUDD, args);
    cmd.arg("--check-config").envs(envs.iter().copied());
    Proc::spawn_cmd(cmd).finish()
}

#[test]
fn config_files_are_checked() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/cloudd.example.toml");
    let (status, out, err) = check_config(&["--config", example], &[]);
    assert!(status.success(), "the example parses: {err}");
    assert!(out.contains("configuration OK"), "{out}");
    assert!(out.contains("0.0.0.0:7946"), "{out}");

    let dir = tempdir();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "listen = \"127.0.0.1:7000\"\nmax_clientz = 5\n").expect("write");
    let bad = bad.to_str().expect("UTF-8 path");
    let (status, _, err) = check_config(&["--config", bad], &[]);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("max_clientz"), "names the key: {err}");
    assert!(err.contains(bad), "names the file: {err}");

    let contradictory = dir.path().join("c.toml");
    std::fs::write(
        &contradictory,
        "idle_timeout = \"1s\"\nkeep_alive = \"2s\"\n",
    )
    .expect("write");
    let c = contradictory.to_str().expect("UTF-8 path");
    let (status, _, err) = check_config(&["--config", c], &[]);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("keep_alive"), "{err}");

    // Precedence: flag > environment > file > default.
    let good = dir.path().join("good.toml");
    std::fs::write(&good, "name = \"from-file\"\nlisten = \"127.0.0.1:7000\"\n").expect("write");
    let good = good.to_str().expect("UTF-8 path");
    let (status, out, err) = check_config(&["--config", good], &[]);
    assert!(status.success(), "{err}");
    assert!(
        out.contains("from-file") && out.contains("127.0.0.1:7000"),
        "{out}"
    );
    let (_, out, _) = check_config(&["--config", good], &[("CLOUDD_NAME", "from-env")]);
    assert!(
        out.contains("from-env") && out.contains("127.0.0.1:7000"),
        "{out}"
    );
    let (_, out, _) = check_config(
        &["--config", good, "--name", "from-flag"],
        &[("CLOUDD_NAME", "from-env")],
    );
    assert!(out.contains("from-flag"), "{out}");
    let (_, out, _) = check_config(&[], &[("CLOUDD_CONFIG", good)]);
    assert!(
        out.contains("from-file"),
        "CLOUDD_CONFIG names the file: {out}"
    );
}

#[test]
fn start_errors_say_what_to_do() {
    let dir = tempdir();
    let d = start_cloudd(dir.path());
    // The same UDP port twice: the second cannot bind.
    let other = tempdir();
    let (status, _, err) = Proc::spawn(
        CLOUDD,
        &[
            "--listen",
            &d.addr,
            "--data-dir",
            other.path().to_str().expect("UTF-8 path"),
            "--admin-socket",
            other
                .path()
                .join("admin.sock")
                .to_str()
                .expect("UTF-8 path"),
        ],
    )
    .finish();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("--listen"), "suggests another address: {err}");
}

/// CI's smoke run of the benchmark: a tiny load completes and reports sane figures.
#[test]
fn bench_throughput_smoke_run() {
    let dir = tempdir();
    let node = start_cloudd(dir.path());
    let bench = node.ctl(&[
        "--json",
        "bench",
        "throughput",
        "--clients",
        "2",
        "--pipeline",
        "2",
        "--duration",
        "500ms",
    ]);
    let (status, out, err) = bench.finish();
    assert!(status.success(), "bench failed: {err}");
    let report: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{out:?}: {e}"));
    assert_eq!(report["scenario"], "throughput");
    assert!(report["ops"].as_u64().expect("ops") > 0, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    for field in ["ops_per_sec", "p50_ms", "p99_ms", "p999_ms", "max_ms"] {
        assert!(
            report[field].as_f64().is_some_and(|v| v >= 0.0),
            "{field} in {report}"
        );
    }
    assert!(
        report["p50_ms"].as_f64() <= report["max_ms"].as_f64(),
        "{report}"
    );
}
