//! A local mesh of real `cloudd` processes on 127.0.0.1, for `cloudctl demo` and for the
//! `cloudctl bench` scenarios run without an address.
//!
//! [`LocalMesh`] owns everything it starts: the temporary directory and the `cloudd`
//! processes. [`LocalMesh::stop`] stops them in order (nodes get SIGTERM, the directory
//! goes); when it is never reached (an error, a panic), dropping the mesh kills the
//! processes and removes the directory, so nothing is left behind.

use std::collections::VecDeque;
use std::fs::{DirBuilder, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{bail, Context};
use cloudmesh::admin::{AdminClient, Command as AdminCommand, NodeInfo, Response};
use cloudmesh::transport::parse_fingerprint;
use rand::RngCore;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::oneshot;
use tokio::time::Instant;

/// Limit on each step of coming up: a node announcing itself, the mesh forming. Generous
/// for a loaded 2-core machine.
const START_DEADLINE: Duration = Duration::from_secs(20);

/// How long players and nodes get to stop before they are killed.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// Lines of a node's stderr kept to show when it dies.
const TAIL_LINES: usize = 20;

/// Unix socket paths must fit in `sun_path` (108 bytes on Linux, 104 on macOS).
const MAX_SOCKET_PATH: usize = 100;

/// How to start a [`LocalMesh`].
#[derive(Debug, Clone)]
pub struct MeshOptions {
    /// Names the directory (`cloudmesh-LABEL-…`) and starts every progress line (`LABEL: …`).
    pub label: &'static str,
    /// Nodes to start: node-1, then the others joining it.
    pub nodes: u16,
    /// UDP port of node-1 (node-N gets PORT+N-1); 0 for any free port.
    pub base_port: u16,
    /// Keep the directory (data, logs) when the mesh stops.
    pub keep: bool,
    /// Log filter for the nodes' log files.
    pub node_log: String,
    /// The nodes' TOML configuration (written to `cloudd.toml`).
    pub config: String,
    /// Progress lines go to stderr instead of stdout (stdout carries JSON).
    pub to_stderr: bool,
}

/// A node of a [`LocalMesh`] that announced itself.
#[derive(Debug, Clone)]
pub struct LocalNode {
    /// Its name, `node-N`.
    pub name: String,
    /// Where clients reach it.
    pub addr: SocketAddr,
    /// Its certificate's fingerprint, for clients to pin.
    pub fingerprint: [u8; 32],
    /// Its admin socket.
    pub socket: PathBuf,
    /// Its process id.
    pub pid: u32,
}

/// A local mesh of `cloudd` processes on 127.0.0.1 and the directory they live in (secret,
/// config, per-node data, admin socket and logs). Fields drop in order: the nodes (killed),
/// then the directory (removed), so an error or a panic leaves nothing behind.
#[derive(Debug)]
pub struct LocalMesh {
    nodes: Vec<NodeProc>,
    dir: MeshDir,
    opts: MeshOptions,
    cloudd: PathBuf,
    secret: PathBuf,
    config: PathBuf,
}

impl LocalMesh {
    /// Makes the directory with the mesh secret and the nodes' config; starts nothing.
    pub fn create(opts: MeshOptions, cloudd: PathBuf) -> anyhow::Result<LocalMesh> {
        let dir = MeshDir::create(opts.label, opts.keep)?;
        let secret = dir.path.join("mesh.secret");
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        write_private(&secret, &format!("{}\n", hex::encode(bytes)))?;
        let config = dir.path.join("cloudd.toml");
        write_private(&config, &opts.config)?;
        Ok(LocalMesh {
            nodes: Vec::new(),
            dir,
            opts,
            cloudd,
            secret,
            config,
        })
    }

    /// Prints a progress line, `LABEL: ...`, where the options say.
    pub fn say(&self, line: impl std::fmt::Display) {
        if self.opts.to_stderr {
            warn(format!("{}: {line}", self.opts.label));
        } else {
            say(format!("{}: {line}", self.opts.label));
        }
    }

    /// The directory everything lives in.
    pub fn dir(&self) -> &Path {
        &self.dir.path
    }

    /// Starts the nodes (node-1 first, the others joining it) and waits until they form one
    /// mesh. Prints `LABEL: dir ...`, one `LABEL: node ...` line per node and `LABEL: mesh of
    /// N nodes linked`. On an error, what started is still owned by `self`: call
    /// [`LocalMesh::stop`] (or drop it).
    pub async fn bring_up(&mut self) -> anyhow::Result<()> {
        self.say(format!("dir {}", self.dir.path.display()));
        let deadline = Instant::now() + START_DEADLINE;
        self.spawn_node(1, None)?;
        let first = self.announced(0, deadline).await?;
        let deadline = Instant::now() + START_DEADLINE;
        for i in 2..=self.opts.nodes {
            self.spawn_node(i, Some(first.addr))?;
        }
        for i in 1..self.nodes.len() {
            self.announced(i, deadline).await?;
        }
        self.wait_linked().await?;
        self.say(format!("mesh of {} nodes linked", self.nodes.len()));
        Ok(())
    }

    /// The nodes that announced themselves, node-1 first.
    pub fn nodes(&self) -> Vec<LocalNode> {
        self.nodes
            .iter()
            .filter_map(|n| {
                n.announce.map(|a| LocalNode {
                    name: n.name.clone(),
                    addr: a.addr,
                    fingerprint: a.fingerprint,
                    socket: n.socket.clone(),
                    pid: n.pid(),
                })
            })
            .collect()
    }

    /// The admin socket of node `i` (0 is node-1).
    ///
    /// # Panics
    /// If there is no such node.
    pub fn admin_socket(&self, i: usize) -> &Path {
        &self.nodes[i].socket
    }

    /// Starts `node-I` (its directory holds its data, admin socket and logs).
    fn spawn_node(&mut self, i: u16, join: Option<SocketAddr>) -> anyhow::Result<()> {
        let name = format!("node-{i}");
        let home = self.dir.path.join(&name);
        DirBuilder::new()
            .mode(0o700)
            .create(&home)
            .with_context(|| format!("cannot create {}", home.display()))?;
        let socket = home.join("admin.sock");
        let port = match self.opts.base_port {
            0 => 0,
            base => base
                .checked_add(i - 1)
                .context("--base-port is too high for that many nodes")?,
        };
        let mut cmd = Process::new(&self.cloudd);
        cmd.arg("--name")
            .arg(&name)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(&home)
            .arg("--admin-socket")
            .arg(&socket)
            .arg("--secret-file")
            .arg(&self.secret)
            .arg("--config")
            .arg(&self.config)
            .arg("--log-dir")
            .arg(home.join("logs"))
            .arg("--log")
            .arg(&self.opts.node_log);
        if let Some(addr) = join {
            cmd.arg("--join").arg(addr.to_string());
        }
        // The operator's own cloudd settings must not change this mesh (CLOUDD_SECRET
        // beside --secret-file would even stop the node).
        for (key, _) in std::env::vars_os() {
            let k = key.to_string_lossy();
            if k.starts_with("CLOUDD_") || k == "RUST_LOG" {
                cmd.env_remove(&key);
            }
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            // Its own process group: a Ctrl-C at the terminal reaches only cloudctl, which
            // then stops its clients before the nodes.
            .process_group(0);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", self.cloudd.display()))?;
        self.nodes.push(NodeProc::new(name, socket, child)?);
        Ok(())
    }

    /// Waits for node `i`'s start line and prints its `LABEL: node ...` line.
    async fn announced(&mut self, i: usize, deadline: Instant) -> anyhow::Result<Announce> {
        let a = self.nodes[i].wait_announce(deadline).await?;
        let node = &self.nodes[i];
        self.say(format!(
            "node {} pid {} listen {} socket {}",
            node.name,
            node.pid(),
            a.addr,
            node.socket.display()
        ));
        Ok(a)
    }

    /// Waits until every node lists every node as linked and Active.
    async fn wait_linked(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            let last = match self.mesh_formed().await {
                Ok(()) => return Ok(()),
                Err(why) => why,
            };
            if let Some(msg) = self.reap_exited().into_iter().next() {
                bail!("{msg}");
            }
            if Instant::now() >= deadline {
                bail!("the nodes did not form one mesh within {START_DEADLINE:?}: {last}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// `Err` says what is still missing.
    async fn mesh_formed(&self) -> Result<(), String> {
        let n = self.nodes.len();
        for node in &self.nodes {
            let members = ask_nodes(&node.socket)
                .await
                .map_err(|e| format!("{}: {e:#}", node.name))?;
            let ready = members
                .iter()
                .filter(|m| m.linked && m.state == "Active")
                .count();
            if members.len() != n || ready != n {
                return Err(format!(
                    "{} sees {} members, {ready} of them linked and Active",
                    node.name,
                    members.len()
                ));
            }
        }
        Ok(())
    }

    /// One message per node that exited since last asked, with its last lines.
    pub fn reap_exited(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        for node in &mut self.nodes {
            if let Some(status) = node.newly_exited() {
                out.push(format!(
                    "{} (pid {}) exited ({status}); its last lines:\n{}",
                    node.name,
                    node.pid(),
                    node.last_lines()
                ));
            }
        }
        out
    }

    /// Stops every node (SIGTERM, then SIGKILL after [`STOP_GRACE`]) and removes the
    /// directory unless kept; prints `LABEL: stopped` (or where the directory was kept).
    pub async fn stop(mut self) {
        // All at once: a node stopping redials the peers that left before it, and waits
        // (up to 3 s) for those attempts, so one at a time would be slower.
        for node in &mut self.nodes {
            node.terminate();
        }
        let deadline = Instant::now() + STOP_GRACE;
        for node in &mut self.nodes {
            node.wait_exit(deadline).await;
            node.kill();
        }
        let path = self.dir.path.clone();
        if self.dir.keep {
            self.say(format!("stopped; kept {}", path.display()));
        } else if let Some(e) = self.dir.remove() {
            warn(format!(
                "cloudctl {}: cannot remove {}: {e}",
                self.opts.label,
                path.display()
            ));
            self.say("stopped");
        } else {
            self.say("stopped");
        }
    }
}

/// Prints a line on stdout; a closed stdout must not stop a command from cleaning up.
pub fn say(line: impl std::fmt::Display) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Prints a line on stderr, like [`say`] (`eprintln!` would panic once the terminal is gone).
pub fn warn(line: impl std::fmt::Display) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// The signals that end a command owning a local mesh (so it stops the nodes first).
pub struct Signals {
    int: Signal,
    term: Signal,
    hup: Signal,
}

impl Signals {
    pub fn new() -> anyhow::Result<Signals> {
        let on = |kind| signal(kind).context("cannot handle signals");
        Ok(Signals {
            int: on(SignalKind::interrupt())?,
            term: on(SignalKind::terminate())?,
            hup: on(SignalKind::hangup())?,
        })
    }

    /// The next one, named.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "Ctrl-C",
            _ = self.term.recv() => "SIGTERM",
            _ = self.hup.recv() => "SIGHUP",
        }
    }
}

pub fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The `cloudd` to run: `explicit`, else the one beside this executable, else the first on
/// `PATH`.
pub fn find_cloudd(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        if is_executable(path) {
            return Ok(path.to_owned());
        }
        bail!(
            "--cloudd {}: not an executable file (build it with `cargo build --release`, \
             which puts cloudd in target/release/)",
            path.display()
        );
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_owned));
    if let Some(dir) = &beside {
        let candidate = dir.join("cloudd");
        if is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("cloudd");
            if is_executable(&candidate) {
                return Ok(candidate);
            }
        }
    }
    let beside = beside.map_or_else(
        || "beside cloudctl (its location is unknown)".to_owned(),
        |d| format!("beside cloudctl in {}", d.display()),
    );
    bail!(
        "cannot find the cloudd executable: looked {beside} and on PATH\n  \
         build both with `cargo build --release` (they land in target/release/) and run \
         target/release/cloudctl again, or give the path with --cloudd PATH"
    )
}

/// The mesh's temporary directory, removed when dropped unless kept.
#[derive(Debug)]
struct MeshDir {
    path: PathBuf,
    keep: bool,
    removed: bool,
}

impl MeshDir {
    /// A fresh private directory, `cloudmesh-LABEL-PID-RANDOM` in the temporary directory
    /// (in /tmp when that is too long for the sockets inside it).
    fn create(label: &str, keep: bool) -> anyhow::Result<MeshDir> {
        let name = format!(
            "cloudmesh-{label}-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        );
        let mut path = std::env::temp_dir().join(&name);
        let longest = path.join("node-32").join("admin.sock.lock");
        if longest.as_os_str().len() > MAX_SOCKET_PATH {
            path = Path::new("/tmp").join(&name);
        }
        DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .with_context(|| format!("cannot create the directory {}", path.display()))?;
        Ok(MeshDir {
            path,
            keep,
            removed: false,
        })
    }

    /// Removes the directory (unless kept); says why not when that fails.
    fn remove(&mut self) -> Option<std::io::Error> {
        if self.keep || self.removed {
            return None;
        }
        self.removed = true;
        std::fs::remove_dir_all(&self.path).err()
    }
}

impl Drop for MeshDir {
    fn drop(&mut self) {
        let _ = self.remove();
    }
}

/// What a node announced on stderr at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Announce {
    addr: SocketAddr,
    fingerprint: [u8; 32],
}

/// Parses cloudd's start line: `cloudd: node "NAME" listening on ADDR; certificate
/// fingerprint sha256:HEX (clients: --pin HEX); admin socket PATH`.
fn parse_announce(line: &str) -> Option<Announce> {
    let addr = line.split("listening on ").nth(1)?.split(';').next()?;
    let fp = line
        .split("fingerprint sha256:")
        .nth(1)?
        .split_whitespace()
        .next()?;
    Some(Announce {
        addr: addr.trim().parse().ok()?,
        fingerprint: parse_fingerprint(fp).ok()?,
    })
}

/// One `cloudd` the demo started; killed when dropped if still running.
#[derive(Debug)]
struct NodeProc {
    name: String,
    socket: PathBuf,
    child: Child,
    /// Its address and fingerprint, once it announced them.
    announce: Option<Announce>,
    announced: Option<oneshot::Receiver<Announce>>,
    /// The last lines of its stderr.
    tail: Arc<Mutex<VecDeque<String>>>,
    /// How it exited, once it did and that was reported.
    exited: Option<ExitStatus>,
}

impl NodeProc {
    /// Starts reading the child's stderr in a thread: the pipe never fills (the node would
    /// block), the start line is picked out, the last lines are kept.
    fn new(name: String, socket: PathBuf, mut child: Child) -> anyhow::Result<NodeProc> {
        let stderr = child.stderr.take();
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let (tx, rx) = oneshot::channel();
        // Made before anything can fail, so the child is killed on every error path.
        let node = NodeProc {
            name,
            socket,
            child,
            announce: None,
            announced: Some(rx),
            tail: tail.clone(),
            exited: None,
        };
        let Some(stderr) = stderr else {
            bail!("{}: its stderr is not piped", node.name);
        };
        std::thread::Builder::new()
            .name(format!("{}-stderr", node.name))
            .spawn(move || read_stderr(stderr, tx, &tail))
            .context("cannot start a thread")?;
        Ok(node)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines of its stderr, indented, for an error message.
    fn last_lines(&self) -> String {
        let tail = self.tail.lock().unwrap_or_else(PoisonError::into_inner);
        if tail.is_empty() {
            return "  (nothing on stderr)".to_owned();
        }
        tail.iter()
            .map(|l| format!("  {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits (until `deadline`) for its start line.
    async fn wait_announce(&mut self, deadline: Instant) -> anyhow::Result<Announce> {
        if let Some(a) = self.announce {
            return Ok(a);
        }
        let Some(rx) = self.announced.take() else {
            bail!("{} never announced itself", self.name);
        };
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(a)) => {
                self.announce = Some(a);
                Ok(a)
            }
            // Its stderr closed without the line: it exited (or is about to).
            Ok(Err(_)) => {
                let until = Instant::now() + Duration::from_secs(2);
                let status = loop {
                    match self.child.try_wait() {
                        Ok(Some(s)) => break s.to_string(),
                        _ if Instant::now() >= until => break "closed its stderr".to_owned(),
                        _ => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                };
                bail!(
                    "{} (pid {}) stopped before it was ready ({status}); its last lines:\n{}",
                    self.name,
                    self.pid(),
                    self.last_lines()
                )
            }
            Err(_) => bail!(
                "{} (pid {}) did not start within {START_DEADLINE:?}; its last lines:\n{}",
                self.name,
                self.pid(),
                self.last_lines()
            ),
        }
    }

    /// Whether it has exited since last asked; reported once.
    fn newly_exited(&mut self) -> Option<ExitStatus> {
        if self.exited.is_some() {
            return None;
        }
        let status = self.child.try_wait().ok().flatten()?;
        self.exited = Some(status);
        Some(status)
    }

    fn running(&mut self) -> bool {
        self.exited.is_none() && matches!(self.child.try_wait(), Ok(None))
    }

    /// Asks it to stop (SIGTERM: it closes its clients and leaves the mesh cleanly).
    fn terminate(&mut self) {
        if !self.running() {
            return;
        }
        // std can only SIGKILL, and signalling ourselves would need `unsafe`, which this
        // crate forbids; kill(1) is on every Unix. The child is not reaped yet, so its pid
        // cannot have been reused.
        let sent = Process::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !sent {
            let _ = self.child.kill();
        }
    }

    /// Waits for it to exit, until `deadline` at most.
    async fn wait_exit(&mut self, deadline: Instant) {
        while self.running() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn kill(&mut self) {
        if self.running() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads a node's stderr to its end: sends the start line, keeps the last lines.
fn read_stderr(
    stderr: impl Read,
    announce: oneshot::Sender<Announce>,
    tail: &Mutex<VecDeque<String>>,
) {
    let mut announce = Some(announce);
    let mut reader = BufReader::new(stderr);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let line = String::from_utf8_lossy(&buf).trim_end().to_owned();
        if announce.is_some() {
            if let Some(a) = parse_announce(&line) {
                if let Some(tx) = announce.take() {
                    let _ = tx.send(a);
                }
            }
        }
        let mut tail = tail.lock().unwrap_or_else(PoisonError::into_inner);
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
}

/// Every member `socket`'s node lists, asked once (bounded).
async fn ask_nodes(socket: &Path) -> anyhow::Result<Vec<NodeInfo>> {
    let ask = async {
        let mut client = AdminClient::connect(socket).await?;
        anyhow::Ok(client.call(AdminCommand::Nodes).await?)
    };
    match tokio::time::timeout(Duration::from_secs(5), ask).await {
        Err(_) => bail!("no answer within 5 s"),
        Ok(Err(e)) => Err(e),
        Ok(Ok(Response::Nodes { nodes })) => Ok(nodes),
        Ok(Ok(Response::Error(e))) => bail!("{e}"),
        Ok(Ok(other)) => bail!("unexpected answer {other:?}"),
    }
}

/// Writes a file only this user may read (the secret must not leak; cloudd warns if it
/// could).
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_start_line() {
        let fp = "7df85ebc6645bdc5920801b3acdaab3fbead8eceead440ede6604c90616df3dd";
        let line = format!(
            "cloudd: node \"node-1\" listening on 127.0.0.1:40123; certificate fingerprint \
             sha256:{fp} (clients: --pin {fp}); admin socket /tmp/x/node-1/admin.sock"
        );
        let a = parse_announce(&line).expect("parses");
        assert_eq!(a.addr, "127.0.0.1:40123".parse().expect("addr"));
        assert_eq!(hex::encode(a.fingerprint), fp);
        assert_eq!(parse_announce("2024 INFO joined the mesh"), None);
        assert_eq!(
            parse_announce("listening on nowhere; fingerprint sha256:zz"),
            None
        );
    }

    #[test]
    fn a_missing_cloudd_says_where_it_looked() {
        let e = find_cloudd(Some(Path::new("/nonexistent/cloudd"))).expect_err("missing");
        assert!(e.to_string().contains("cargo build --release"), "{e}");
    }
}
