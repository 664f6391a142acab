//! `cloudctl demo`: a local mesh to look at and to operate (see `cloudctl demo --help`).
//!
//! [`DemoMesh`] owns everything the demo starts: the [`LocalMesh`] of `cloudd` processes and
//! the crowd of simulated players ([`cloudmesh::sim`]). [`DemoMesh::stop`] stops them in
//! order (players leave, then the nodes and their directory go); when it is never reached
//! (an error, a panic), dropping it aborts the players, kills the processes and removes the
//! directory, so nothing is left behind.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use cloudmesh::local_mesh::{LocalMesh, MeshOptions, NodeExit, STOP_GRACE};
use cloudmesh::placement::ZoneConfig;
use cloudmesh::sim::{Crowd, CrowdConfig, Seed};

use crate::cli::DemoArgs;
use crate::local_mesh::{self, find_cloudd, is_executable};
use crate::progress::{say, warn, ProgressLines};
use crate::signals::Signals;

/// The mesh's progress lines: `demo: …` on stdout.
const LINES: ProgressLines = ProgressLines::stdout("demo");

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
        let socket = mesh.admin_socket(0).context("the demo started no node")?;
        return crate::console::run(socket.to_owned()).await;
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
                for exit in mesh.reap_exited() {
                    warn(format!("cloudctl demo: {exit}"));
                }
            }
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

/// The demo's nodes and players. Fields drop in order: the players (aborted), then the
/// mesh (nodes killed, directory removed).
#[derive(Debug)]
pub struct DemoMesh {
    crowd: Option<Crowd>,
    mesh: LocalMesh,
}

impl DemoMesh {
    /// Makes the directory with the mesh secret and the nodes' config; starts nothing.
    pub fn create(args: &DemoArgs, cloudd: std::path::PathBuf) -> anyhow::Result<DemoMesh> {
        let z = zones();
        let config = format!(
            "# Written by `cloudctl demo`: zones on, so players are placed and handed \
             over by position.\n\
             [zones]\ncell_size = {:?}\nwidth = {}\nheight = {}\nmargin = {:?}\n",
            z.cell_size, z.width, z.height, z.margin
        );
        let opts = MeshOptions {
            label: "demo".to_owned(),
            nodes: args.nodes,
            base_port: args.base_port,
            keep: args.keep,
            node_log: args.node_log.clone(),
            config,
        };
        Ok(DemoMesh {
            crowd: None,
            mesh: LocalMesh::create(opts, cloudd)?,
        })
    }

    /// Starts the nodes, waits until they form one mesh, then brings the players in.
    /// Prints the `demo: ...` lines as it goes. On an error, what started is still owned by
    /// `self`: call [`DemoMesh::stop`].
    pub async fn bring_up(&mut self, args: &DemoArgs) -> anyhow::Result<()> {
        local_mesh::bring_up(&mut self.mesh, LINES).await?;
        let nodes = self.mesh.nodes();
        let log = self.mesh.dir().join("players.log");
        log_players_to(&log)?;
        let seeds = nodes
            .iter()
            .map(|n| Seed {
                addr: n.addr,
                fingerprint: n.fingerprint,
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
            nodes.len(),
            args.players
        ));
        let Some(first) = nodes.first() else {
            anyhow::bail!("the demo started no node");
        };
        let ctl = format!("{} --socket {}", ctl_command(), first.socket.display());
        // The example drains a node other than the one the socket belongs to, if any.
        let other = nodes.get(1).unwrap_or(first).name.clone();
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
            self.mesh.dir().display()
        ));
        Ok(())
    }

    /// The admin socket of node `i` (0 is node-1), once it was started.
    pub fn admin_socket(&self, i: usize) -> Option<&Path> {
        self.mesh.admin_socket(i)
    }

    /// The nodes that exited on their own since last asked (each reported once).
    pub fn reap_exited(&mut self) -> Vec<NodeExit> {
        self.mesh.reap_exited()
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
        local_mesh::stop(self.mesh, LINES).await;
    }
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
