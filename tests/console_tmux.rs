//! The console as a person drives it (issue 6, acceptance 2): `cloudctl demo` in a real
//! terminal (tmux), keys sent with `send-keys`, the screen read with `capture-pane`. It sees
//! the nodes, drains node-3 from the console and watches it become Drained with no clients
//! left, then quits, leaving no process behind.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const CLOUDCTL: &str = env!("CARGO_BIN_EXE_cloudctl");
const DEADLINE: Duration = Duration::from_secs(60);

/// A tmux server of the test's own (`-L`), killed when the test ends however it ends.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux runs (CI installs it; locally: apt-get install tmux)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "demo"])
    }

    fn keys(&self, keys: &str) {
        self.run(&["send-keys", "-t", "demo", keys]);
    }

    /// Polls the screen until `probe` accepts it; panics with the last screen at the deadline.
    fn wait_for(&self, what: &str, mut probe: impl FnMut(&str) -> bool) -> String {
        let end = Instant::now() + DEADLINE;
        loop {
            let screen = self.screen();
            if probe(&screen) {
                return screen;
            }
            if Instant::now() > end {
                panic!("{what}: not within {DEADLINE:?}; the screen:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .arg("kill-server")
            .output();
    }
}

/// The nodes-table line of `node` and its client count (the `N/CAP` cell).
fn node_row(screen: &str, node: &str) -> Option<(String, u32)> {
    screen.lines().find_map(|l| {
        if !l.contains(node) {
            return None;
        }
        let clients = l.split_whitespace().find_map(|t| {
            let (n, cap) = t.split_once('/')?;
            cap.parse::<u32>().ok()?;
            n.parse::<u32>().ok()
        })?;
        Some((l.to_owned(), clients))
    })
}

/// Processes whose command line mentions `dir` (the demo's nodes run from inside it).
fn processes_under(dir: &Path) -> Vec<String> {
    let needle = dir.to_string_lossy().into_owned();
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for e in entries.flatten() {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(&needle) && !cmd.contains("tmux") {
                found.push(format!("{}: {cmd}", e.file_name().to_string_lossy()));
            }
        }
    }
    found
}

#[test]
fn drain_a_node_from_the_console_of_a_demo_then_quit_cleanly() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let exit_file = tmp.path().join("exit-code");
    let tmux = Tmux {
        socket: format!("cloudmesh-test-{}", std::process::id()),
    };
    // TMPDIR puts the demo's directory (node data, sockets) inside ours, so its processes
    // can be found by path afterwards.
    let script = format!(
        "TMPDIR='{tmp}' '{CLOUDCTL}' demo --nodes 3 --players 30; echo $? > '{exit}'",
        tmp = tmp.path().display(),
        exit = exit_file.display()
    );
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "demo",
        "-x",
        "120",
        "-y",
        "40",
        "sh",
        "-c",
        &script,
    ]);

    // The console shows the three nodes, Active, with the players spread over them.
    tmux.wait_for("three Active nodes with node-3 serving players", |s| {
        ["node-1", "node-2", "node-3"]
            .iter()
            .all(|n| node_row(s, n).is_some_and(|(line, _)| line.contains("Active")))
            && node_row(s, "node-3").is_some_and(|(_, clients)| clients > 0)
    });

    // Cursor starts on node-1 (the oldest member): down twice to node-3, drain, confirm.
    tmux.keys("j");
    tmux.keys("j");
    tmux.wait_for("the cursor on node-3", |s| {
        node_row(s, "node-3").is_some_and(|(line, _)| line.contains('▶'))
    });
    tmux.keys("d");
    tmux.wait_for("the drain confirmation", |s| s.contains("Drain node-3?"));
    tmux.keys("y");
    let screen = tmux.wait_for("node-3 Drained with no clients", |s| {
        node_row(s, "node-3")
            .is_some_and(|(line, clients)| line.contains("Drained") && clients == 0)
    });
    // The others carry the players now.
    let others: u32 = ["node-1", "node-2"]
        .iter()
        .filter_map(|n| node_row(&screen, n).map(|(_, c)| c))
        .sum();
    assert!(others > 0, "the players moved to node-1/node-2:\n{screen}");

    // Quit: the demo stops everything it started.
    tmux.keys("q");
    let end = Instant::now() + DEADLINE;
    let code = loop {
        if let Ok(code) = std::fs::read_to_string(&exit_file) {
            break code;
        }
        assert!(
            Instant::now() < end,
            "the demo did not exit after q; the screen:\n{}",
            tmux.screen()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(code.trim(), "0", "the demo exits 0 after q");
    let left = processes_under(tmp.path());
    assert!(left.is_empty(), "processes left behind: {left:?}");
}
