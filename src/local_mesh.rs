//! A local mesh of real `cloudd` processes on 127.0.0.1, in a private temporary directory:
//! what `cloudctl demo` shows, what `cloudctl bench` loads when it is given no address, and
//! what a test harness can start to check the daemon as an operator runs it.
//!
//! [`LocalMesh`] owns everything it starts: the directory (secret, config, per-node data,
//! admin sockets and logs) and the `cloudd` processes. [`LocalMesh::stop`] stops them in
//! order (every node gets SIGTERM, then the directory goes); when it is never reached (an
//! error, a panic), dropping the mesh kills the processes and removes the directory, so
//! nothing is left behind.
//!
//! The library prints nothing: [`LocalMesh::bring_up`] reports each step as a [`Progress`]
//! to a callback, whose `Display` is the line a command would print.

use std::collections::VecDeque;
use std::fmt;
use std::fs::{DirBuilder, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rand::RngCore;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::admin::{AdminClient, Command as AdminCommand, NodeInfo, Response};
use crate::client::ClientOptions;
use crate::transport::{parse_fingerprint, Trust};

/// Limit on each step of coming up: a node announcing itself, the mesh forming. Generous
/// for a loaded 2-core machine.
const START_DEADLINE: Duration = Duration::from_secs(20);

/// How long nodes get to stop before they are killed (also a fair grace for whatever the
/// caller runs against them, such as simulated players).
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// Lines of a node's stderr kept to show when it dies.
const TAIL_LINES: usize = 20;

/// Unix socket paths must fit in `sun_path` (108 bytes on Linux, 104 on macOS).
const MAX_SOCKET_PATH: usize = 100;

/// How long one `nodes` question to a node may take while waiting for the mesh to form.
const ASK_LIMIT: Duration = Duration::from_secs(5);

/// Why a local mesh could not be set up or brought up.
#[derive(Debug, thiserror::Error)]
pub enum LocalMeshError {
    /// A directory could not be made.
    #[error("cannot create the directory {}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// A file (the secret, the config) could not be written.
    #[error("cannot write {}", path.display())]
    WriteFile {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// [`MeshOptions::base_port`] leaves no UDP port for the last nodes.
    #[error("base port {base} is too high for {nodes} nodes")]
    PortRange {
        /// The base port asked for.
        base: u16,
        /// The nodes asked for.
        nodes: u16,
    },
    /// No UDP port could be reserved for node-1 on 127.0.0.1.
    #[error("cannot find a free UDP port on 127.0.0.1")]
    ReservePort(#[source] io::Error),
    /// A `cloudd` process (or the thread reading its stderr) could not be started.
    #[error("cannot start {}", cloudd.display())]
    Spawn {
        /// The executable.
        cloudd: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// A node exited before it announced itself.
    #[error(
        "{node} (pid {pid}) stopped before it was ready ({status}); its last lines:\n{last_lines}"
    )]
    StoppedEarly {
        /// Its name.
        node: String,
        /// Its process id.
        pid: u32,
        /// How it ended, as far as known.
        status: String,
        /// The last lines of its stderr, indented.
        last_lines: String,
    },
    /// A node did not announce itself in time.
    #[error("{node} (pid {pid}) did not start within {limit:?}; its last lines:\n{last_lines}")]
    StartTimeout {
        /// Its name.
        node: String,
        /// Its process id.
        pid: u32,
        /// How long it had.
        limit: Duration,
        /// The last lines of its stderr, indented.
        last_lines: String,
    },
    /// A node's start line was already waited for, and never came.
    #[error("{node} never announced itself")]
    NoAnnouncement {
        /// Its name.
        node: String,
    },
    /// A node exited while the mesh was forming.
    #[error("{0}")]
    Exited(NodeExit),
    /// The nodes came up but did not all see each other, linked and Active, in time.
    #[error("the nodes did not form one mesh within {limit:?}: {missing}")]
    NotLinked {
        /// How long they had.
        limit: Duration,
        /// What was still missing at the end.
        missing: String,
    },
    /// The directory could not be removed when the mesh stopped (the nodes did stop).
    #[error("cannot remove {}", path.display())]
    RemoveDir {
        /// The directory.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
}

/// How to start a [`LocalMesh`].
#[derive(Debug, Clone)]
pub struct MeshOptions {
    /// Names the directory: `cloudmesh-LABEL-PID-RANDOM` in the temporary directory.
    pub label: String,
    /// Nodes to start: node-1, then the others joining it.
    pub nodes: u16,
    /// UDP port of node-1 (node-N gets PORT+N-1); 0 for any free port.
    pub base_port: u16,
    /// Keep the directory (data, logs) when the mesh stops.
    pub keep: bool,
    /// Log filter for the nodes' log files (`RUST_LOG` syntax).
    pub node_log: String,
    /// The nodes' TOML configuration (written to `cloudd.toml`).
    pub config: String,
}

impl MeshOptions {
    /// `nodes` nodes on any free ports, logging at info, with the built-in configuration;
    /// the directory goes when the mesh stops.
    pub fn new(label: impl Into<String>, nodes: u16) -> MeshOptions {
        MeshOptions {
            label: label.into(),
            nodes,
            base_port: 0,
            keep: false,
            node_log: "info".to_owned(),
            config: String::new(),
        }
    }
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

impl LocalNode {
    /// SDK options for a client of this node: its certificate pinned by fingerprint.
    pub fn client_options(&self) -> ClientOptions {
        ClientOptions::new(Trust::Pin(self.fingerprint))
    }
}

/// A step of [`LocalMesh::bring_up`]. Its `Display` is the line a command prints for it
/// (`dir …`, `node … pid … listen … socket …`, `mesh of N nodes linked`).
#[derive(Debug, Clone)]
pub enum Progress {
    /// Everything lives in this directory.
    Dir(PathBuf),
    /// A node announced itself.
    NodeUp(LocalNode),
    /// Every node lists every node as linked and Active.
    Linked {
        /// How many nodes.
        nodes: usize,
    },
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Progress::Dir(dir) => write!(f, "dir {}", dir.display()),
            Progress::NodeUp(n) => write!(
                f,
                "node {} pid {} listen {} socket {}",
                n.name,
                n.pid,
                n.addr,
                n.socket.display()
            ),
            Progress::Linked { nodes } => write!(f, "mesh of {nodes} nodes linked"),
        }
    }
}

/// A node that exited on its own, and what it said last.
#[derive(Debug, Clone)]
pub struct NodeExit {
    /// Its name.
    pub node: String,
    /// Its process id.
    pub pid: u32,
    /// How it exited.
    pub status: ExitStatus,
    /// The last lines of its stderr, indented.
    pub last_lines: String,
}

impl fmt::Display for NodeExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (pid {}) exited ({}); its last lines:\n{}",
            self.node, self.pid, self.status, self.last_lines
        )
    }
}

/// What became of the directory when the mesh stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// It was removed.
    Removed,
    /// It was kept ([`MeshOptions::keep`]), here.
    Kept(PathBuf),
}

/// A local mesh of `cloudd` processes on 127.0.0.1 and the directory they live in. Fields
/// drop in order: the nodes (killed), then the directory (removed), so an error or a panic
/// leaves nothing behind.
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
    /// `cloudd` is the executable the nodes run.
    pub fn create(opts: MeshOptions, cloudd: PathBuf) -> Result<LocalMesh, LocalMeshError> {
        let dir = MeshDir::create(&opts.label, opts.keep)?;
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

    /// The directory everything lives in.
    pub fn dir(&self) -> &Path {
        &self.dir.path
    }

    /// Starts the nodes (node-1 first, the others joining it) and waits until they form one
    /// mesh, reporting each step to `progress`. On an error, what started is still owned by
    /// `self`: call [`LocalMesh::stop`] (or drop it).
    pub async fn bring_up(
        &mut self,
        mut progress: impl FnMut(&Progress),
    ) -> Result<(), LocalMeshError> {
        progress(&Progress::Dir(self.dir.path.clone()));
        let deadline = Instant::now() + START_DEADLINE;
        self.spawn_node(1, None)?;
        let first = self.announced(0, deadline, &mut progress).await?;
        let deadline = Instant::now() + START_DEADLINE;
        for i in 2..=self.opts.nodes {
            self.spawn_node(i, Some(first.addr))?;
        }
        for i in 1..self.nodes.len() {
            self.announced(i, deadline, &mut progress).await?;
        }
        self.wait_linked().await?;
        progress(&Progress::Linked {
            nodes: self.nodes.len(),
        });
        Ok(())
    }

    /// Starts every node at once, as after a power cut: node-1 on a port reserved for it,
    /// all the others joining it (and racing it: they may dial before it listens, as a
    /// fleet's nodes do). Returns when every node announced itself, without waiting for
    /// the mesh to form: time that with [`LocalMesh::formed`].
    pub async fn start_together(
        &mut self,
        mut progress: impl FnMut(&Progress),
    ) -> Result<(), LocalMeshError> {
        progress(&Progress::Dir(self.dir.path.clone()));
        let first = match self.opts.base_port {
            0 => free_udp_port()?,
            base => base,
        };
        let join: SocketAddr = SocketAddr::from(([127, 0, 0, 1], first));
        let deadline = Instant::now() + START_DEADLINE;
        for i in 1..=self.opts.nodes {
            let port = if i == 1 { Some(first) } else { None };
            self.spawn_node_on(i, port, (i != 1).then_some(join))?;
        }
        for i in 0..self.nodes.len() {
            self.announced(i, deadline, &mut progress).await?;
        }
        Ok(())
    }

    /// Whether the mesh has formed: every node lists every node as linked and Active, and
    /// all name the same host. `Ok` is the host's name; `Err` says what is still missing.
    pub async fn formed(&self) -> Result<String, String> {
        let n = self.nodes.len();
        let mut host: Option<String> = None;
        for node in &self.nodes {
            let members = ask_nodes(&node.socket)
                .await
                .map_err(|e| format!("{}: {e}", node.name))?;
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
            let named: Vec<&NodeInfo> = members.iter().filter(|m| m.host).collect();
            let [one] = named.as_slice() else {
                return Err(format!("{} names {} hosts", node.name, named.len()));
            };
            match &host {
                None => host = Some(one.name.clone()),
                Some(h) if *h == one.name => {}
                Some(h) => {
                    return Err(format!(
                        "{} names {} as host, another node {h}",
                        node.name, one.name
                    ))
                }
            }
        }
        host.ok_or_else(|| "no nodes".to_owned())
    }

    /// Kills node `i` (0 is node-1) at once with SIGKILL, as a crash would, and reaps it.
    /// Returns whether it was running.
    pub fn kill(&mut self, i: usize) -> bool {
        let Some(node) = self.nodes.get_mut(i) else {
            return false;
        };
        let running = node.running();
        node.kill();
        // Reported as killed here, not as having exited on its own.
        node.exited = node.child.try_wait().ok().flatten();
        running
    }

    /// The nodes that announced themselves, node-1 first.
    pub fn nodes(&self) -> Vec<LocalNode> {
        self.nodes.iter().filter_map(NodeProc::local_node).collect()
    }

    /// The admin socket of node `i` (0 is node-1), once it was started.
    pub fn admin_socket(&self, i: usize) -> Option<&Path> {
        self.nodes.get(i).map(|n| n.socket.as_path())
    }

    /// The nodes that exited on their own since last asked (each reported once).
    pub fn reap_exited(&mut self) -> Vec<NodeExit> {
        self.nodes
            .iter_mut()
            .filter_map(|node| {
                let status = node.newly_exited()?;
                Some(NodeExit {
                    node: node.name.clone(),
                    pid: node.pid(),
                    status,
                    last_lines: node.last_lines(),
                })
            })
            .collect()
    }

    /// Stops every node (SIGTERM, then SIGKILL after [`STOP_GRACE`]) and removes the
    /// directory unless it is kept. An error says only that the directory could not be
    /// removed: the nodes are stopped whatever happens.
    pub async fn stop(mut self) -> Result<Stopped, LocalMeshError> {
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
        if self.dir.keep {
            return Ok(Stopped::Kept(self.dir.path.clone()));
        }
        match self.dir.remove() {
            None => Ok(Stopped::Removed),
            Some(source) => Err(LocalMeshError::RemoveDir {
                path: self.dir.path.clone(),
                source,
            }),
        }
    }

    /// Starts `node-I` (its directory holds its data, admin socket and logs) on the port
    /// [`MeshOptions::base_port`] gives it.
    fn spawn_node(&mut self, i: u16, join: Option<SocketAddr>) -> Result<(), LocalMeshError> {
        self.spawn_node_on(i, None, join)
    }

    /// Starts `node-I` on `port`, else on the one [`MeshOptions::base_port`] gives it.
    fn spawn_node_on(
        &mut self,
        i: u16,
        port: Option<u16>,
        join: Option<SocketAddr>,
    ) -> Result<(), LocalMeshError> {
        let name = format!("node-{i}");
        let home = self.dir.path.join(&name);
        DirBuilder::new()
            .mode(0o700)
            .create(&home)
            .map_err(|source| LocalMeshError::CreateDir {
                path: home.clone(),
                source,
            })?;
        let socket = home.join("admin.sock");
        let port = match (port, self.opts.base_port) {
            (Some(port), _) => port,
            (None, 0) => 0,
            (None, base) => base.checked_add(i - 1).ok_or(LocalMeshError::PortRange {
                base,
                nodes: self.opts.nodes,
            })?,
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
            // Its own process group: a Ctrl-C at the terminal reaches only the program
            // owning the mesh, which then stops its clients before the nodes.
            .process_group(0);
        let spawn_error = |source| LocalMeshError::Spawn {
            cloudd: self.cloudd.clone(),
            source,
        };
        let child = cmd.spawn().map_err(spawn_error)?;
        let node = NodeProc::new(name, socket, child).map_err(spawn_error)?;
        self.nodes.push(node);
        Ok(())
    }

    /// Waits for node `i`'s start line and reports it.
    async fn announced(
        &mut self,
        i: usize,
        deadline: Instant,
        progress: &mut impl FnMut(&Progress),
    ) -> Result<Announce, LocalMeshError> {
        let node = &mut self.nodes[i];
        let a = node.wait_announce(deadline).await?;
        if let Some(up) = node.local_node() {
            progress(&Progress::NodeUp(up));
        }
        Ok(a)
    }

    /// Waits until every node lists every node as linked and Active, with one host.
    async fn wait_linked(&mut self) -> Result<(), LocalMeshError> {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            let missing = match self.formed().await {
                Ok(_) => return Ok(()),
                Err(missing) => missing,
            };
            if let Some(exit) = self.reap_exited().into_iter().next() {
                return Err(LocalMeshError::Exited(exit));
            }
            if Instant::now() >= deadline {
                return Err(LocalMeshError::NotLinked {
                    limit: START_DEADLINE,
                    missing,
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
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
    fn create(label: &str, keep: bool) -> Result<MeshDir, LocalMeshError> {
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
            .map_err(|source| LocalMeshError::CreateDir {
                path: path.clone(),
                source,
            })?;
        Ok(MeshDir {
            path,
            keep,
            removed: false,
        })
    }

    /// Removes the directory (unless kept); says why not when that fails.
    fn remove(&mut self) -> Option<io::Error> {
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

/// One `cloudd` the mesh started; killed when dropped if still running.
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
    fn new(name: String, socket: PathBuf, mut child: Child) -> io::Result<NodeProc> {
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
            return Err(io::Error::other(format!(
                "{}: its stderr is not piped",
                node.name
            )));
        };
        std::thread::Builder::new()
            .name(format!("{}-stderr", node.name))
            .spawn(move || read_stderr(stderr, tx, &tail))?;
        Ok(node)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The node as its owner sees it, once it announced itself.
    fn local_node(&self) -> Option<LocalNode> {
        self.announce.map(|a| LocalNode {
            name: self.name.clone(),
            addr: a.addr,
            fingerprint: a.fingerprint,
            socket: self.socket.clone(),
            pid: self.pid(),
        })
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
    async fn wait_announce(&mut self, deadline: Instant) -> Result<Announce, LocalMeshError> {
        if let Some(a) = self.announce {
            return Ok(a);
        }
        let Some(rx) = self.announced.take() else {
            return Err(LocalMeshError::NoAnnouncement {
                node: self.name.clone(),
            });
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
                Err(LocalMeshError::StoppedEarly {
                    node: self.name.clone(),
                    pid: self.pid(),
                    status,
                    last_lines: self.last_lines(),
                })
            }
            Err(_) => Err(LocalMeshError::StartTimeout {
                node: self.name.clone(),
                pid: self.pid(),
                limit: START_DEADLINE,
                last_lines: self.last_lines(),
            }),
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

/// Every member `socket`'s node lists, asked once (bounded); `Err` says why not, for the
/// message about what is still missing.
async fn ask_nodes(socket: &Path) -> Result<Vec<NodeInfo>, String> {
    let ask = async {
        let mut client = AdminClient::connect(socket).await?;
        client.call(AdminCommand::Nodes).await
    };
    match tokio::time::timeout(ASK_LIMIT, ask).await {
        Err(_) => Err(format!("no answer within {ASK_LIMIT:?}")),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(Response::Nodes { nodes })) => Ok(nodes),
        Ok(Ok(Response::Error(e))) => Err(e.to_string()),
        Ok(Ok(other)) => Err(format!("unexpected answer {other:?}")),
    }
}

/// A UDP port on 127.0.0.1 that was free a moment ago (the node binds it right after;
/// another program taking it in between makes node-1 fail to start, with its own message).
fn free_udp_port() -> Result<u16, LocalMeshError> {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .map_err(LocalMeshError::ReservePort)
}

/// Writes a file only this user may read (the secret must not leak; cloudd warns if it
/// could).
fn write_private(path: &Path, text: &str) -> Result<(), LocalMeshError> {
    let write = || -> io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        file.write_all(text.as_bytes())
    };
    write().map_err(|source| LocalMeshError::WriteFile {
        path: path.to_owned(),
        source,
    })
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
    fn progress_reads_as_the_lines_commands_print() {
        let node = LocalNode {
            name: "node-2".into(),
            addr: "127.0.0.1:7002".parse().expect("addr"),
            fingerprint: [0; 32],
            socket: PathBuf::from("/tmp/m/node-2/admin.sock"),
            pid: 42,
        };
        assert_eq!(
            Progress::NodeUp(node).to_string(),
            "node node-2 pid 42 listen 127.0.0.1:7002 socket /tmp/m/node-2/admin.sock"
        );
        assert_eq!(
            Progress::Dir(PathBuf::from("/tmp/m")).to_string(),
            "dir /tmp/m"
        );
        assert_eq!(
            Progress::Linked { nodes: 3 }.to_string(),
            "mesh of 3 nodes linked"
        );
    }

    #[tokio::test]
    async fn a_node_that_exits_at_once_fails_the_mesh_and_leaves_nothing() {
        // /bin/false stands in for a cloudd that cannot start.
        let mut mesh = LocalMesh::create(MeshOptions::new("test", 2), PathBuf::from("/bin/false"))
            .expect("the directory");
        let dir = mesh.dir().to_owned();
        assert!(dir.join("mesh.secret").exists() && dir.join("cloudd.toml").exists());
        let mut steps = Vec::new();
        let err = mesh
            .bring_up(|p| steps.push(p.to_string()))
            .await
            .expect_err("node-1 exits");
        assert!(
            matches!(&err, LocalMeshError::StoppedEarly { node, .. } if node == "node-1"),
            "{err}"
        );
        assert_eq!(steps, [format!("dir {}", dir.display())]);
        assert_eq!(mesh.stop().await.expect("stops"), Stopped::Removed);
        assert!(!dir.exists(), "{} is removed", dir.display());
    }
}
