//! The `cloudctl` operator verbs as an operator meets them when nothing is running: the
//! error that says which socket was tried and how to start a daemon, and shell completions,
//! which need no daemon at all. (Commands against live daemons are in tests/admin.rs.)

use std::process::{Command, Output};

const CLOUDCTL: &str = env!("CARGO_BIN_EXE_cloudctl");

/// Runs cloudctl with `args`, with no inherited socket setting, so the developer's
/// environment cannot change what the test runs. Each of these exits at once.
fn cloudctl(args: &[&str]) -> Output {
    Command::new(CLOUDCTL)
        .args(args)
        .env_remove("CLOUDCTL_SOCKET")
        .output()
        .expect("cloudctl runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn no_daemon_exits_3_naming_the_socket_and_how_to_start_one() {
    let out = cloudctl(&["status", "--socket", "/nonexistent/x.sock"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "stderr: {stderr}");
    assert!(stderr.contains("/nonexistent/x.sock"), "{stderr}");
    assert!(stderr.contains("start one with `cloudd`"), "{stderr}");
    assert!(stderr.contains("--socket"), "{stderr}");
    assert!(out.stdout.is_empty(), "stdout: {}", text(&out.stdout));

    // The same in JSON mode: the error is text on stderr, stdout stays empty.
    let dir = tempfile::tempdir().expect("temp dir");
    let sock = dir.path().join("admin.sock");
    let sock = sock.to_str().expect("utf-8 temp path");
    let out = cloudctl(&["nodes", "--json", "--socket", sock]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains(sock));
    assert!(out.stdout.is_empty());
}

#[test]
fn completions_need_no_daemon() {
    let out = cloudctl(&["completions", "bash", "--socket", "/nonexistent/x.sock"]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let script = text(&out.stdout);
    assert!(script.contains("cloudctl"), "{script}");
    assert!(script.contains("drain"));

    let out = cloudctl(&["completions", "no-such-shell"]);
    assert_eq!(out.status.code(), Some(2));
}
