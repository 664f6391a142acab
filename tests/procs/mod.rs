//! Real `cloudd` and `cloudctl` processes for tests: stdout and stderr arrive as lines on
//! channels, every wait has a deadline, and every child is killed when its guard drops, so
//! a failing test neither hangs nor leaks processes. Shared by tests/binaries.rs and
//! tests/mesh_process.rs.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

pub const CLOUDD: &str = env!("CARGO_BIN_EXE_cloudd");
pub const CLOUDCTL: &str = env!("CARGO_BIN_EXE_cloudctl");

/// Generous for a loaded 2-core machine; a hang fails instead of blocking.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// A child process whose stdout and stderr lines arrive on channels; killed on drop.
pub struct Proc {
    pub what: String,
    child: Child,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
    /// Every stderr line seen so far, for searches and failure messages.
    stderr_seen: Vec<String>,
}

/// Forwards lines from a pipe; a reader thread per pipe keeps the child from blocking on a
/// full pipe even when the test is not reading.
fn pump(pipe: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// A command with no inherited cloudmesh settings, so the developer's environment (say, a
/// CLOUDD_SECRET or CLOUDD_JOIN) cannot change what the test runs.
pub fn command(bin: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args(args);
    for (name, _) in std::env::vars_os() {
        let n = name.to_string_lossy();
        if n.starts_with("CLOUDD_") || n.starts_with("CLOUDMESH_") || n == "RUST_LOG" {
            cmd.env_remove(&name);
        }
    }
    cmd
}

impl Proc {
    pub fn spawn(bin: &str, args: &[&str]) -> Proc {
        Self::spawn_cmd(command(bin, args))
    }

    pub fn spawn_cmd(mut cmd: Command) -> Proc {
        let what = format!("{cmd:?}");
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let stdout = pump(child.stdout.take().expect("stdout is piped"));
        let stderr = pump(child.stderr.take().expect("stderr is piped"));
        Proc {
            what,
            child,
            stdout,
            stderr,
            stderr_seen: Vec::new(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `sig` (e.g. `-KILL`) with the real `kill`, as an operator would.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {sig} {} failed", self.pid());
    }

    /// Collects stderr lines that have arrived.
    pub fn drain_stderr(&mut self) {
        while let Ok(l) = self.stderr.try_recv() {
            self.stderr_seen.push(l);
        }
    }

    pub fn stderr_text(&mut self) -> String {
        self.drain_stderr();
        self.stderr_seen.join("\n")
    }

    /// The first stderr line matching `pred`, waiting up to the deadline.
    pub fn stderr_line(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(l) = self.stderr_seen.iter().find(|l| pred(l)) {
                return l.clone();
            }
            match self
                .stderr
                .recv_timeout(end.saturating_duration_since(Instant::now()))
            {
                Ok(l) => self.stderr_seen.push(l),
                Err(e) => panic!(
                    "{}: no stderr line {what} ({e:?}); stderr so far:\n{}",
                    self.what,
                    self.stderr_seen.join("\n")
                ),
            }
        }
    }

    /// The next stdout line, waiting up to the deadline.
    pub fn stdout_line(&mut self, what: &str) -> String {
        match self.stdout.recv_timeout(DEADLINE) {
            Ok(l) => l,
            Err(e) => {
                let why = match e {
                    RecvTimeoutError::Timeout => "timed out",
                    RecvTimeoutError::Disconnected => "stdout closed",
                };
                let err = self.stderr_text();
                panic!(
                    "{}: no stdout line {what} ({why}); stderr:\n{err}",
                    self.what
                )
            }
        }
    }

    /// The next stdout line as JSON.
    pub fn json_line(&mut self, what: &str) -> Value {
        let l = self.stdout_line(what);
        serde_json::from_str(&l).unwrap_or_else(|e| panic!("{what}: {l:?} is not JSON: {e}"))
    }

    /// Waits for the process to exit, up to the deadline.
    pub fn wait(&mut self) -> ExitStatus {
        self.wait_within(DEADLINE)
    }

    /// Like [`Proc::wait`], for commands that take longer than [`DEADLINE`] by design.
    pub fn wait_within(&mut self, limit: Duration) -> ExitStatus {
        let end = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait works") {
                return status;
            }
            if Instant::now() >= end {
                let err = self.stderr_text();
                panic!(
                    "{} did not exit within {limit:?}; stderr:\n{err}",
                    self.what
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for exit, then returns the status, all stdout and all stderr.
    pub fn finish(self) -> (ExitStatus, String, String) {
        self.finish_within(DEADLINE)
    }

    /// Like [`Proc::finish`], waiting up to `limit`.
    pub fn finish_within(mut self, limit: Duration) -> (ExitStatus, String, String) {
        let status = self.wait_within(limit);
        // The pipes close at exit, so these loops end once the pumps have forwarded all.
        let out: Vec<String> = self.stdout.iter().collect();
        let rest: Vec<String> = self.stderr.iter().collect();
        self.stderr_seen.extend(rest);
        (status, out.join("\n"), self.stderr_seen.join("\n"))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `cloudd` with the name, address and fingerprint it announced.
pub struct Daemon {
    pub proc: Proc,
    pub name: String,
    pub addr: String,
    pub fingerprint: String,
    /// Its admin socket.
    pub admin: std::path::PathBuf,
}

/// Starts `cloudd --listen 127.0.0.1:0 --data-dir DIR --name NAME
/// --admin-socket DIR/admin.sock EXTRA...` (no `--admin-socket` of its own when EXTRA has
/// one) and waits for its `listening on ADDR; certificate fingerprint sha256:HEX` line.
pub fn start_cloudd(name: &str, data_dir: &Path, extra: &[&str]) -> Daemon {
    let dir = data_dir.to_str().expect("temp dir path is UTF-8");
    let default_admin = data_dir.join("admin.sock");
    let admin_arg = default_admin.to_str().expect("UTF-8 path").to_owned();
    let mut args = vec!["--listen", "127.0.0.1:0", "--data-dir", dir, "--name", name];
    let admin = match extra.iter().position(|a| *a == "--admin-socket") {
        Some(i) => std::path::PathBuf::from(extra.get(i + 1).expect("a path after --admin-socket")),
        None => {
            args.extend(["--admin-socket", &admin_arg]);
            default_admin
        }
    };
    args.extend_from_slice(extra);
    let mut proc = Proc::spawn(CLOUDD, &args);
    let line = proc.stderr_line("announcing the address and fingerprint", |l| {
        l.contains("listening on ") && l.contains("fingerprint sha256:")
    });
    let addr = line
        .split("listening on ")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .expect("address after `listening on`")
        .to_owned();
    assert!(addr.starts_with("127.0.0.1:"), "{line}");
    let fingerprint = line
        .split("fingerprint sha256:")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("hex after `fingerprint sha256:`")
        .to_owned();
    assert_eq!(fingerprint.len(), 64, "{line}");
    Daemon {
        proc,
        name: name.to_owned(),
        addr,
        fingerprint,
        admin,
    }
}

impl Daemon {
    /// `cloudctl ARGS... --server ADDR --pin FP`.
    pub fn ctl(&self, args: &[&str]) -> Proc {
        let mut all = args.to_vec();
        all.extend(["--server", &self.addr, "--pin", &self.fingerprint]);
        Proc::spawn(CLOUDCTL, &all)
    }

    /// `cloudctl --socket ADMIN ARGS...`: an operator command against this daemon.
    pub fn admin_ctl(&self, args: &[&str]) -> Proc {
        let mut all = vec!["--socket", self.admin.to_str().expect("UTF-8 path")];
        all.extend_from_slice(args);
        Proc::spawn(CLOUDCTL, &all)
    }

    /// The port it listens on, for `--join 127.0.0.1:PORT`.
    pub fn port(&self) -> &str {
        self.addr
            .rsplit_once(':')
            .map(|(_, p)| p)
            .expect("ADDR has a port")
    }
}

/// Polls `probe` every 100 ms until it returns `Ok`, or panics at the deadline with the
/// last `Err` it gave (what the world looked like when the test gave up).
pub fn wait_until<T>(
    what: &str,
    deadline: Duration,
    mut probe: impl FnMut() -> Result<T, String>,
) -> T {
    let end = Instant::now() + deadline;
    loop {
        match probe() {
            Ok(v) => return v,
            Err(last) if Instant::now() >= end => {
                panic!("{what}: not within {deadline:?}; last seen: {last}")
            }
            Err(_) => thread::sleep(Duration::from_millis(100)),
        }
    }
}

impl Proc {
    /// The next stdout line if one arrives within `limit`; `None` when none did (or stdout
    /// closed), for tests that collect events without knowing how many will come.
    pub fn stdout_line_within(&mut self, limit: Duration) -> Option<String> {
        self.stdout.recv_timeout(limit).ok()
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}
