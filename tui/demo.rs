//! `cloudctl demo`: a local mesh to look at and to operate (see `cloudctl demo --help`).
//!
//! [`DemoMesh`] owns everything the demo starts: the temporary directory, the `cloudd`
//! processes and the crowd of simulated players ([`cloudmesh::sim`]). [`DemoMesh::stop`]
//! stops them in order (players leave, nodes get SIGTERM, the directory goes); when it is
//! never reached (an error, a panic), dropping the mesh kills the processes and removes the
//! directory, so nothing is left behind.

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
use cloudmesh::placement::ZoneConfig;
use cloudmesh::sim::{Crowd, CrowdConfig, Seed};
use cloudmesh::transport::parse_fingerprint;
use rand::RngCore;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::cli::DemoArgs;

/// Limit on each step of coming up: a node announcing itself, the mesh forming. Generous
/// for a loaded 2-core machine.
const START_DEADLINE: Duration = Duration::from_secs(20);

/// How long players and nodes get to stop before they are killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Lines of a node's stderr kept to show when it dies.
const TAIL_LINES: usize = 20;

/// Unix socket paths must fit in `sun_path` (108 bytes on Linux, 104 on macOS).
const MAX_SOCKET_PATH: usize = 100;

/// The zone grid the nodes use and the players walk: 8×8 cells of 100 units.
fn zones() -> ZoneConfig {
    ZoneConfig {
        cell_size: 100.0,
        width: 8,
        height: 8,
        margin: 10.0,
    }
}

/// `cloudctl demo`.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    // First, so a Ctrl-C at any moment is an orderly stop rather than the default death
    // that would leave the nodes running.
    let mut signals = Signals::new()?;
    let cloudd = find_cloudd(args.cloudd.as_deref())?;
    let mut mesh = DemoMesh::create(&args, cloudd)?;
    let up = tokio::select! {
        r = mesh.bring_up(&args) => r.map(|()| true),
        which = signals.recv() => {
            say(format!("demo: {which} while starting"));
            Ok(false)
        }
    };
    let result = match up {
        Ok(true) => attend(&mut mesh, &args, &mut signals).await,
        Ok(false) => Ok(()),
        Err(e) => Err(e),
    };
    mesh.stop().await;
    result
}

/// What the demo does while the mesh runs, until the operator is done.
async fn attend(mesh: &mut DemoMesh, args: &DemoArgs, signals: &mut Signals) -> anyhow::Result<()> {
    if !args.no_console {
        // The console quits on `q`, Ctrl-C, SIGTERM and SIGHUP by itself, restoring the
        // terminal; then the demo stops everything it started. Nothing else may print while
        // it owns the screen.
        return crate::console::run(mesh.admin_socket(0).to_owned()).await;
    }
    say("demo: Ctrl-C stops the demo");
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            which = signals.recv() => {
                say(format!("demo: {which}"));
                return Ok(());
            }
            _ = tick.tick() => {
                // A node may be killed on purpose (to watch the mesh cope): say so, go on.
                for msg in mesh.reap_exited() {
                    warn(format!("cloudctl demo: {msg}"));
                }
            }
        }
    }
}

/// Prints a line on stdout; a closed stdout must not stop the demo from cleaning up.
fn say(line: impl std::fmt::Display) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Prints a line on stderr, like [`say`] (`eprintln!` would panic once the terminal is gone).
fn warn(line: impl std::fmt::Display) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// The signals that end the demo.
struct Signals {
    int: Signal,
    term: Signal,
    hup: Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Signals> {
        let on = |kind| signal(kind).context("cannot handle signals");
        Ok(Signals {
            int: on(SignalKind::interrupt())?,
            term: on(SignalKind::terminate())?,
            hup: on(SignalKind::hangup())?,
        })
    }

    /// The next one, named.
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "Ctrl-C",
            _ = self.term.recv() => "SIGTERM",
            _ = self.hup.recv() => "SIGHUP",
        }
    }
}

/// How to run this cloudctl from another terminal: `cloudctl` when that is the one on
/// `PATH`, else its full path (e.g. a fresh clone's target/release/cloudctl).
fn ctl_command() -> String {
    let Ok(me) = std::env::current_exe().and_then(std::fs::canonicalize) else {
        return "cloudctl".to_owned();
    };
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("cloudctl"))
            .find(|c| is_executable(c))
    });
    match on_path.and_then(|c| std::fs::canonicalize(c).ok()) {
        Some(found) if found == me => "cloudctl".to_owned(),
        _ => me.display().to_string(),
    }
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The `cloudd` to run: `explicit`, else the one beside this executable, else the first on
/// `PATH`.
fn find_cloudd(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
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
         target/release/cloudctl demo, or give the path with --cloudd PATH"
    )
}

/// The demo's temporary directory, removed when dropped unless kept.
#[derive(Debug)]
struct DemoDir {
    path: PathBuf,
    keep: bool,
    removed: bool,
}

impl DemoDir {
    /// A fresh private directory, `cloudmesh-demo-PID-RANDOM` in the temporary directory
    /// (in /tmp when that is too long for the sockets inside it).
    fn create(keep: bool) -> anyhow::Result<DemoDir> {
        let name = format!(
            "cloudmesh-demo-{}-{:08x}",
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
        Ok(DemoDir {
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

impl Drop for DemoDir {
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

    fn pid(&self) -> u32 {
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

/// A local mesh of `cloudd` processes with a crowd of simulated players, and the directory
/// they live in. Fields drop in order: the players (aborted), the nodes (killed), the
/// directory (removed).
#[derive(Debug)]
pub struct DemoMesh {
    crowd: Option<Crowd>,
    nodes: Vec<NodeProc>,
    dir: DemoDir,
    cloudd: PathBuf,
    secret: PathBuf,
    config: PathBuf,
}

impl DemoMesh {
    /// Makes the directory with the mesh secret and the nodes' config; starts nothing.
    pub fn create(args: &DemoArgs, cloudd: PathBuf) -> anyhow::Result<DemoMesh> {
        let dir = DemoDir::create(args.keep)?;
        let secret = dir.path.join("mesh.secret");
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        write_private(&secret, &format!("{}\n", hex::encode(bytes)))?;
        let config = dir.path.join("cloudd.toml");
        let z = zones();
        write_private(
            &config,
            &format!(
                "# Written by `cloudctl demo`: zones on, so players are placed and handed \
                 over by position.\n\
                 [zones]\ncell_size = {:?}\nwidth = {}\nheight = {}\nmargin = {:?}\n",
                z.cell_size, z.width, z.height, z.margin
            ),
        )?;
        Ok(DemoMesh {
            crowd: None,
            nodes: Vec::new(),
            dir,
            cloudd,
            secret,
            config,
        })
    }

    /// Starts the nodes (node-1 first, the others joining it), waits until they form one
    /// mesh, then brings the players in. Prints the `demo: ...` lines as it goes. On an
    /// error, what started is still owned by `self`: call [`DemoMesh::stop`].
    pub async fn bring_up(&mut self, args: &DemoArgs) -> anyhow::Result<()> {
        say(format!("demo: dir {}", self.dir.path.display()));
        let deadline = Instant::now() + START_DEADLINE;
        self.spawn_node(1, args, None)?;
        let first = self.announced(0, deadline).await?;
        let deadline = Instant::now() + START_DEADLINE;
        for i in 2..=args.nodes {
            self.spawn_node(i, args, Some(first.addr))?;
        }
        for i in 1..self.nodes.len() {
            self.announced(i, deadline).await?;
        }
        self.wait_linked().await?;
        say(format!("demo: mesh of {} nodes linked", self.nodes.len()));

        let log = self.dir.path.join("players.log");
        log_players_to(&log)?;
        let seeds = self
            .nodes
            .iter()
            .filter_map(|n| n.announce)
            .map(|a| Seed {
                addr: a.addr,
                fingerprint: a.fingerprint,
            })
            .collect();
        let crowd = Crowd::start(CrowdConfig::new(seeds, zones()), args.players).await;
        let counts = crowd.counts();
        self.crowd = Some(crowd);
        let spread: Vec<String> = counts
            .by_node
            .iter()
            .map(|(node, n)| format!("{node} {n}"))
            .collect();
        let spread = if spread.is_empty() {
            String::new()
        } else {
            format!(" ({})", spread.join(", "))
        };
        say(format!(
            "demo: players {}/{} connected{spread}; log {}",
            counts.connected,
            counts.players,
            log.display()
        ));
        say(format!(
            "demo: mesh up: {} nodes, {} players",
            self.nodes.len(),
            args.players
        ));
        let ctl = format!(
            "{} --socket {}",
            ctl_command(),
            self.admin_socket(0).display()
        );
        let other = self.nodes.get(1).unwrap_or(&self.nodes[0]).name.clone();
        say("  operate it from another terminal (any node's socket answers for the mesh):");
        for verb in [
            "nodes",
            "clients",
            "keys players",
            &format!("drain {other}"),
        ] {
            say(format!("    {ctl} {verb}"));
        }
        say(format!(
            "  node logs: {}/node-N/logs",
            self.dir.path.display()
        ));
        Ok(())
    }

    /// The admin socket of node `i` (0 is node-1).
    ///
    /// # Panics
    /// If there is no such node.
    pub fn admin_socket(&self, i: usize) -> &Path {
        &self.nodes[i].socket
    }

    /// Starts `node-I` (its directory holds its data, admin socket and logs).
    fn spawn_node(
        &mut self,
        i: u16,
        args: &DemoArgs,
        join: Option<SocketAddr>,
    ) -> anyhow::Result<()> {
        let name = format!("node-{i}");
        let home = self.dir.path.join(&name);
        DirBuilder::new()
            .mode(0o700)
            .create(&home)
            .with_context(|| format!("cannot create {}", home.display()))?;
        let socket = home.join("admin.sock");
        let port = match args.base_port {
            0 => 0,
            base => base
                .checked_add(i - 1)
                .context("--base-port is too high for that many --nodes")?,
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
            .arg(&args.node_log);
        if let Some(addr) = join {
            cmd.arg("--join").arg(addr.to_string());
        }
        // The operator's own cloudd settings must not change the demo (CLOUDD_SECRET
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
            // then stops the players before the nodes.
            .process_group(0);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", self.cloudd.display()))?;
        self.nodes.push(NodeProc::new(name, socket, child)?);
        Ok(())
    }

    /// Waits for node `i`'s start line and prints its `demo: node ...` line.
    async fn announced(&mut self, i: usize, deadline: Instant) -> anyhow::Result<Announce> {
        let node = &mut self.nodes[i];
        let a = node.wait_announce(deadline).await?;
        say(format!(
            "demo: node {} pid {} listen {} socket {}",
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

    /// Stops everything: the players leave, every node gets SIGTERM (and SIGKILL after
    /// [`STOP_GRACE`]), the directory is removed unless kept.
    pub async fn stop(mut self) {
        say("demo: stopping");
        if let Some(crowd) = self.crowd.take() {
            let c = crowd.counts();
            crowd.stop(STOP_GRACE).await;
            say(format!(
                "demo: players took {} steps, moved {} times between nodes, reconnected {} \
                 times, {} errors",
                c.steps, c.migrations, c.reconnects, c.errors
            ));
        }
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
            say(format!("demo: stopped; kept {}", path.display()));
        } else if let Some(e) = self.dir.remove() {
            warn(format!(
                "cloudctl demo: cannot remove {}: {e}",
                path.display()
            ));
            say("demo: stopped");
        } else {
            say("demo: stopped");
        }
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

/// Sends this process's log (the players' errors) to `path`, never to the terminal.
fn log_players_to(path: &Path) -> anyhow::Result<()> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    // `try_init`: a subscriber installed before (by the console) stays.
    let _ = tracing_subscriber::fmt()
        .with_writer(Mutex::new(file))
        .with_ansi(false)
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .try_init();
    Ok(())
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
