//! `cloudd`: parses its settings with the library, sets up logging and signals, runs the
//! node.

mod logging;

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use cloudmesh::admin::AdminSocket;
use cloudmesh::config::{Cli, Env, Layer, LogFormat, Settings};
use cloudmesh::dyndns::DynDns;
use cloudmesh::metrics::graphite::Exporter;
use cloudmesh::{Node, NodeError};
use tokio::signal::unix::{signal, SignalKind};
use tracing_subscriber::EnvFilter;

/// The allocator hands freed memory back to the system soon after a burst (see
/// [`return_freed_memory`]): what a client made the node hold does not stay resident after
/// it leaves.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Has jemalloc purge memory freed for a second back to the system, from a background
/// thread (so an idle node returns it too, not only one that keeps allocating). Failure only
/// costs memory, so it is logged, not fatal.
fn return_freed_memory() {
    use tikv_jemalloc_ctl::{arenas, background_thread, Access, AsName};
    const DECAY_MS: isize = 1_000;
    let mut failed = Vec::new();
    if let Err(e) = background_thread::write(true) {
        failed.push(format!("background_thread: {e}"));
    }
    // Arenas created from now on, then each existing one.
    if let Err(e) = b"arenas.dirty_decay_ms\0".name().write(DECAY_MS) {
        failed.push(format!("arenas.dirty_decay_ms: {e}"));
    }
    if let Err(e) = b"arenas.muzzy_decay_ms\0".name().write(DECAY_MS) {
        failed.push(format!("arenas.muzzy_decay_ms: {e}"));
    }
    // `narenas` counts arena slots, not arenas: one not created yet refuses settings (and
    // takes the defaults above when it is created), so only created ones are tuned.
    let count = arenas::narenas::read().unwrap_or(0);
    for i in 0..count {
        let created = format!("arena.{i}.initialized\0");
        let initialized: Result<bool, _> = created.as_bytes().name().read();
        if !initialized.unwrap_or(true) {
            continue;
        }
        for what in ["dirty", "muzzy"] {
            let key = format!("arena.{i}.{what}_decay_ms\0");
            if let Err(e) = key.as_bytes().name().write(DECAY_MS) {
                failed.push(format!("arena.{i}.{what}_decay_ms: {e}"));
            }
        }
    }
    if !failed.is_empty() {
        tracing::warn!(failed = ?failed, "could not tune the allocator; freed memory may stay resident longer");
    }
}

/// Exit code for a configuration the daemon cannot use (same as clap's usage errors).
const EXIT_CONFIG: u8 = 2;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let (settings, filter) = match configure(cli.settings) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cloudd: {e:#}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if cli.check_config {
        print!("{}", settings.summary());
        return ExitCode::SUCCESS;
    }
    // Held to the end of main: dropping it flushes buffered file logs.
    let _log_guard = match logging::init(&settings.log, filter) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("cloudd: {e:#}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    for w in &settings.warnings {
        tracing::warn!("{w}");
    }
    return_freed_memory();
    match run(settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure { error, code }) => {
            tracing::error!(error = %format!("{error:#}"), "cloudd stopped with an error");
            eprintln!("cloudd: {error:#}");
            ExitCode::from(code)
        }
    }
}

/// The settings from flags, environment and file, with their log filter.
fn configure(flags: Layer) -> anyhow::Result<(Settings, EnvFilter)> {
    let settings = Settings::load(flags, Env::read())?;
    // The filter's syntax is the log subscriber's to check; checked here, so that
    // `--check-config` refuses a bad one too.
    let filter = logging::filter(&settings.log)?;
    Ok((settings, filter))
}

/// Why `run` stopped, with the exit code that tells a supervisor whether retrying can help.
struct Failure {
    error: anyhow::Error,
    code: u8,
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Failure { error, code: 1 }
    }
}

async fn run(settings: Settings) -> Result<(), Failure> {
    // Installed before the node announces itself, so a supervisor (or test) that signals
    // right after the announcement gets a clean shutdown rather than the default action.
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;

    // Before the node starts: a daemon that cannot serve its admin socket (another one has
    // it) must not join the mesh at all.
    let admin = AdminSocket::bind(&settings.admin_socket).map_err(|e| Failure {
        error: anyhow::Error::new(e),
        code: EXIT_CONFIG,
    })?;
    let data_dir = settings.node.data_dir.clone();
    let dns = settings.dns;
    let graphite = settings.graphite;
    let node = Node::start(settings.node).await.map_err(|e| match e {
        NodeError::Transport(e) => anyhow::anyhow!(
            "cannot load or create the node's TLS identity in {}: {e} \
             (choose a writable directory with --data-dir)",
            data_dir.display()
        )
        .into(),
        // Such as --join without a mesh secret: fixing the settings is the only remedy.
        NodeError::Config(e) => Failure {
            error: anyhow::Error::new(e).context("cannot start the node"),
            code: EXIT_CONFIG,
        },
        other => anyhow::Error::new(other)
            .context("cannot start the node")
            .into(),
    })?;
    // Shared with the dynamic DNS updater and the metrics exporter, which read the node
    // through its public API.
    let node = Arc::new(node);
    let dyndns = dns.map(|cfg| DynDns::start(node.clone(), cfg));
    // Its own tasks and a bounded buffer: a slow or dead carbon never holds the node up.
    let exporter = graphite.map(|cfg| Exporter::start(node.clone(), cfg));
    let (admin_stop, admin_stopped) = tokio::sync::watch::channel(false);
    let admin_path = admin.path().to_owned();
    let admin_task = tokio::spawn(admin.serve(node.admin_handle(), admin_stopped));
    announce(&node, settings.log.format, &admin_path);

    let which = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(
        signal = which,
        "stopping: moving clients to other nodes, then leaving the mesh"
    );
    // The admin socket still serves while the node drains (an operator can watch it); a
    // second signal stops waiting for the drain.
    tokio::select! {
        () = node.leave() => {}
        _ = term.recv() => tracing::warn!("second signal: stopping without waiting for the drain"),
        _ = int.recv() => tracing::warn!("second signal: stopping without waiting for the drain"),
    }
    tracing::info!("shutting down: closing every client");
    let _ = admin_stop.send(true);
    // The socket file is removed when the server stops.
    let _ = admin_task.await;
    if let Some(d) = dyndns {
        d.stop().await;
    }
    if let Some(e) = exporter {
        e.stop().await;
    }
    // The updater and the exporter held the only other references, and they have ended.
    match Arc::try_unwrap(node) {
        Ok(node) => node.shutdown("node shutting down").await,
        Err(_) => tracing::warn!("node still in use at shutdown; closing without notice"),
    }
    Ok(())
}

/// Tells the operator where the node listens and what clients must pin, in one line that
/// scripts can parse (`listening on ADDR;` and `fingerprint sha256:HEX`).
fn announce(node: &Node, format: LogFormat, admin: &std::path::Path) {
    let (name, addr, fp) = (node.name(), node.local_addr(), node.fingerprint());
    let admin = admin.display();
    match format {
        // Printed directly so it shows whatever the log filter is.
        LogFormat::Human => eprintln!(
            "cloudd: node \"{name}\" listening on {addr}; certificate fingerprint \
             sha256:{fp} (clients: --pin {fp}); admin socket {admin}"
        ),
        // Keep stderr all JSON for log collectors.
        LogFormat::Json => tracing::info!(node = name, listen = %addr, fingerprint = fp,
            admin_socket = %admin, "node \"{name}\" listening on {addr}; clients: --pin {fp}"),
    }
}
