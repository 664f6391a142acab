//! CI's smoke runs of `cloudctl bench` (issue 7): every scenario, tiny, against the local
//! mesh of real `cloudd` processes the command starts itself when given no address. Checks
//! that each completes, reports its figures as JSON, saw no errors, loses nothing, and
//! leaves no process or directory behind. Figures are never asserted against budgets here
//! (that is BENCHMARKS.md's job, on a quiet machine).

mod procs;

use std::path::PathBuf;
use std::time::Duration;

use procs::{Proc, CLOUDCTL};
use serde_json::Value;

/// A bench run includes starting and stopping its mesh; generous for a loaded 2-core box.
const RUN_LIMIT: Duration = Duration::from_secs(120);

/// Runs `cloudctl --json bench ARGS...`, checks the common fields and cleanup, and returns
/// the report.
fn bench(args: &[&str]) -> Value {
    let mut all = vec!["--json", "bench"];
    all.extend_from_slice(args);
    let (status, out, err) = Proc::spawn(CLOUDCTL, &all).finish_within(RUN_LIMIT);
    assert!(status.success(), "bench {args:?} failed:\n{err}");
    let report: Value =
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{out:?} is not JSON: {e}"));
    assert_eq!(report["scenario"], args[0], "{report}");
    // Every load scenario reports latencies; `mesh` measures a fleet, not requests.
    if args[0] != "mesh" {
        latency_fields(&report);
    }
    // The local mesh said where it lived, and is gone: directory and processes.
    let dir = err
        .lines()
        .find_map(|l| l.strip_prefix("bench: dir "))
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("no `bench: dir` line in:\n{err}"));
    assert!(!dir.exists(), "{} left behind", dir.display());
    let left = std::process::Command::new("pgrep")
        .args(["-f", &dir.display().to_string()])
        .output()
        .expect("pgrep runs");
    assert!(
        left.stdout.is_empty(),
        "processes left: {}",
        String::from_utf8_lossy(&left.stdout)
    );
    assert!(
        err.lines().any(|l| l == "bench: stopped"),
        "the mesh was not stopped in order:\n{err}"
    );
    report
}

/// The latency figures every load scenario's JSON carries, sane.
fn latency_fields(report: &Value) {
    for field in [
        "ops_per_sec",
        "p50_ms",
        "p99_ms",
        "p999_ms",
        "max_ms",
        "seconds",
    ] {
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

fn count(report: &Value, field: &str) -> u64 {
    report[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} in {report}"))
}

#[test]
fn throughput_runs_a_mix_against_a_node_it_starts() {
    let r = bench(&[
        "throughput",
        "--clients",
        "2",
        "--pipeline",
        "2",
        "--duration",
        "500ms",
        "--mix",
        "post=2,get=1,subscribe=1",
    ]);
    assert!(count(&r, "ops") > 0, "{r}");
    assert_eq!(count(&r, "errors"), 0, "{r}");
    for op in ["posts", "gets", "subscribes"] {
        assert!(count(&r, op) > 0, "{op} in {r}");
    }
    // Each subscribe watches the key its worker posts next.
    assert!(count(&r, "notifications") > 0, "{r}");
}

/// A fan-out run posted something, with no error, and its subscriber saw every post.
fn assert_every_post_delivered(r: &Value) {
    assert!(count(r, "posted") > 0, "{r}");
    assert_eq!(count(r, "missing"), 0, "{r}");
    assert_eq!(count(r, "ops"), count(r, "posted"), "{r}");
    assert_eq!(count(r, "errors"), 0, "{r}");
}

#[test]
fn fanout_notifies_across_a_three_node_mesh_it_starts() {
    let r = bench(&["fanout", "--rate", "200", "--duration", "1s"]);
    assert_every_post_delivered(&r);
}

#[test]
fn pipelined_fanout_keeps_posts_in_flight_and_misses_nothing() {
    let r = bench(&[
        "fanout",
        "--rate",
        "1000000",
        "--duration",
        "1s",
        "--posters",
        "2",
        "--pipeline",
        "8",
    ]);
    assert_every_post_delivered(&r);
}

#[test]
fn migration_moves_clients_losing_and_duplicating_nothing() {
    let r = bench(&["migration", "--clients", "6", "--migrations", "3"]);
    assert_eq!(count(&r, "migrations"), 3, "{r}");
    assert_eq!(count(&r, "failed"), 0, "{r}");
    assert_eq!(count(&r, "client_errors"), 0, "{r}");
    assert_eq!(count(&r, "lost"), 0, "{r}");
    assert_eq!(count(&r, "duplicated"), 0, "{r}");
    // The moved clients' rows are watched by their neighbours, who may see each owner move
    // (a row re-posted on the new node with the same data); never more than the moves.
    assert!(count(&r, "moves_seen") <= 3, "{r}");
}

#[test]
fn drain_moves_every_client_of_the_node() {
    let r = bench(&["drain", "--clients", "20"]);
    assert_eq!(count(&r, "clients"), 20, "{r}");
    assert_eq!(count(&r, "moved"), 20, "{r}");
    assert_eq!(count(&r, "ops"), 20, "every client was told it moved: {r}");
    assert_eq!(r["node"], "node-1", "{r}");
}

#[test]
fn idle_reads_the_node_memory_with_clients_connected() {
    let r = bench(&["idle", "--clients", "20", "--settle", "200ms"]);
    assert_eq!(count(&r, "clients"), 20, "{r}");
    let (before, after) = (count(&r, "rss_before_bytes"), count(&r, "rss_bytes"));
    assert!(before > 1 << 20, "a running node uses more than 1 MiB: {r}");
    assert!(after > 0, "{r}");
}

#[test]
fn failover_elects_a_new_host_and_deletes_the_dead_hosts_rows_everywhere() {
    let r = bench(&[
        "failover",
        "--nodes",
        "3",
        "--clients-per-node",
        "3",
        "--idle-timeout",
        "1s",
    ]);
    assert_eq!(count(&r, "rows_lost"), 3, "{r}");
    assert_eq!(count(&r, "missing"), 0, "{r}");
    assert_eq!(
        count(&r, "ops"),
        2,
        "both survivors saw every NodeLost: {r}"
    );
    assert_eq!(
        count(&r, "not_restored"),
        0,
        "the dead host's clients posted their rows again elsewhere: {r}"
    );
    let new_host = r["new_host"].as_str().unwrap_or_default();
    assert!(["node-2", "node-3"].contains(&new_host), "{r}");
}

#[test]
fn blip_resumes_every_client_with_no_deletion() {
    let r = bench(&[
        "blip",
        "--clients",
        "3",
        "--outage",
        "2s",
        "--idle-timeout",
        "1s",
    ]);
    assert_eq!(
        count(&r, "ops"),
        3,
        "every client made a call after the blip: {r}"
    );
    assert_eq!(count(&r, "deletions"), 0, "{r}");
    assert_eq!(count(&r, "new_sessions"), 0, "{r}");
}

#[test]
fn mesh_started_together_forms_measures_idle_and_fails_over() {
    let r = bench(&[
        "mesh",
        "--nodes",
        "4",
        "--settle",
        "200ms",
        "--window",
        "1s",
        "--idle-timeout",
        "1s",
    ]);
    assert_eq!(count(&r, "nodes"), 4, "{r}");
    let host = r["host"].as_str().unwrap_or_default();
    let new_host = r["new_host"].as_str().unwrap_or_default();
    assert!(host.starts_with("node-"), "{r}");
    assert!(
        new_host.starts_with("node-") && new_host != host,
        "a survivor took over: {r}"
    );
    for field in [
        "formed_ms",
        "new_host_ms",
        "rss_mib_mean",
        "idle_cpu_pct_mean",
    ] {
        let v = r[field].as_f64().unwrap_or(-1.0);
        assert!(v >= 0.0 && v.is_finite(), "{field}: {r}");
    }
    assert!(r["rss_mib_mean"].as_f64().unwrap_or(0.0) > 1.0, "{r}");
    assert_eq!(r["failover_budget_ms"].as_f64(), Some(2000.0), "{r}");
}

#[test]
fn query_answers_top_20_and_area_queries_and_misses_no_live_event() {
    let r = bench(&[
        "query",
        "--rows",
        "2000",
        "--holders",
        "4",
        "--queries",
        "50",
        "--live-rate",
        "200",
        "--live-duration",
        "1s",
        "--players",
        "12",
        "--move-rate",
        "120",
        "--aoi-duration",
        "1s",
    ]);
    assert_eq!(r["rows"], 2000, "{r}");
    assert_eq!(
        count(&r, "ops"),
        50,
        "every top-20 query answered in full: {r}"
    );
    assert_eq!(count(&r, "errors"), 0, "{r}");
    assert_eq!(count(&r, "incomplete"), 0, "{r}");
    assert!(count(&r, "top20_matching") > 20, "{r}");
    assert_eq!(r["near"]["ops"], 50, "{r}");
    assert_eq!(r["near"]["errors"], 0, "{r}");
    assert!(count(&r, "live_posted") > 0, "{r}");
    assert_eq!(count(&r, "live_missing"), 0, "{r}");
    assert_eq!(r["live"]["ops"], r["live_posted"], "{r}");
    // The area of interest under moving players: every move that enters, moves inside or
    // leaves the area reached the watcher as that event, and its final result is the
    // brute-force one.
    let aoi = &r["aoi"];
    assert_eq!(aoi["players"], 12, "{r}");
    assert_eq!(aoi["errors"], 0, "{r}");
    assert!(count(aoi, "moves") > 0, "{r}");
    assert!(
        count(aoi, "expected") > 0,
        "the watcher had moves to see: {r}"
    );
    assert_eq!(count(aoi, "missing"), 0, "{r}");
    assert_eq!(count(aoi, "unexpected"), 0, "{r}");
    assert_eq!(aoi["ops"], aoi["expected"], "{r}");
    assert_eq!(aoi["final_equal"], true, "{r}");
}

#[test]
fn a_missing_cloudd_is_a_clear_error() {
    let (status, _, err) = Proc::spawn(
        CLOUDCTL,
        &[
            "bench",
            "throughput",
            "--cloudd",
            "/nonexistent/cloudd",
            "--duration",
            "1s",
        ],
    )
    .finish();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("--cloudd /nonexistent/cloudd"), "{err}");
}

#[test]
fn help_documents_every_scenario_and_the_local_mesh() {
    let (status, out, err) = Proc::spawn(CLOUDCTL, &["bench", "--help"]).finish();
    assert!(status.success(), "{err}");
    assert!(out.contains("local mesh"), "{out}");
    for scenario in [
        "throughput",
        "fanout",
        "migration",
        "drain",
        "idle",
        "failover",
        "blip",
        "mesh",
        "query",
    ] {
        assert!(out.contains(scenario), "{scenario} missing from:\n{out}");
        let (status, help, err) = Proc::spawn(CLOUDCTL, &["bench", scenario, "--help"]).finish();
        assert!(status.success(), "{err}");
        assert!(help.contains("--server"), "{scenario}:\n{help}");
        assert!(
            help.contains("budget: "),
            "{scenario} names its budget:\n{help}"
        );
        assert!(
            !help.contains("DESIGN") && !help.contains('§'),
            "{scenario}'s help points at no document outside the repository:\n{help}"
        );
    }
}
