//! `cloudctl bench`: runs the library's load scenarios ([`cloudmesh::bench`]) against the
//! given nodes, or against a local mesh of `cloudd` processes started for the run, and
//! prints what they measured.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use cloudmesh::admin::{AdminClient, Command as AdminCommand, Response};
use cloudmesh::bench::{self, FanoutOptions, MigrationOptions, Report, Target, ThroughputOptions};
use cloudmesh::local_mesh::{LocalMesh, MeshOptions};
use cloudmesh::transport::Trust;
use serde_json::json;

use crate::admin_cmds::{AdminFailure, Exit};
use crate::cli::{
    BenchTarget, BlipArgs, DrainArgs, FailoverArgs, FanoutArgs, IdleArgs, MeshArgs, MigrationArgs,
    QueryBenchArgs, ThroughputArgs,
};
use crate::client_cmds::{client_options_all, explain_connect, trust};
use crate::local_mesh::{self, find_cloudd};
use crate::output;
use crate::progress::ProgressLines;
use crate::signals::Signals;

/// Progress lines, the local mesh's among them: `bench: …` on stderr (stdout carries the
/// results).
const LINES: ProgressLines = ProgressLines::stderr("bench");

/// The nodes a scenario runs against: given ones, or a local mesh started for it.
struct Nodes {
    targets: Vec<Target>,
    /// The admin socket of each target, for a local mesh; else the `--socket` given.
    sockets: Vec<PathBuf>,
    /// The process of each target, for a local mesh.
    pids: Vec<u32>,
    mesh: Option<LocalMesh>,
    trust: Trust,
}

impl Nodes {
    /// Resolves `--server`, or starts a local mesh of `local_nodes` nodes when none is given.
    async fn up(target: &BenchTarget, local_nodes: u16, socket: &Path) -> anyhow::Result<Nodes> {
        if target.servers.is_empty() {
            let config = "# Written by `cloudctl bench`: built-in defaults.\n";
            return Nodes::local(target.cloudd.as_deref(), target.keep, local_nodes, config).await;
        }
        let trust = trust(&target.auth)?;
        let mut targets = Vec::new();
        for server in &target.servers {
            for (addr, client) in client_options_all(server, &target.auth, &trust).await? {
                targets.push(Target { addr, client });
            }
        }
        Ok(Nodes {
            sockets: vec![socket.to_owned(); targets.len()],
            pids: Vec::new(),
            targets,
            mesh: None,
            trust,
        })
    }

    async fn local(
        cloudd: Option<&Path>,
        keep: bool,
        nodes: u16,
        config: &str,
    ) -> anyhow::Result<Nodes> {
        let cloudd = find_cloudd(cloudd)?;
        let opts = MeshOptions {
            keep,
            config: config.into(),
            ..MeshOptions::new(LINES.label(), nodes)
        };
        let mut mesh = LocalMesh::create(opts, cloudd)?;
        if let Err(e) = local_mesh::bring_up(&mut mesh, LINES).await {
            local_mesh::stop(mesh, LINES).await;
            return Err(e);
        }
        let local = mesh.nodes();
        Ok(Nodes {
            targets: local
                .iter()
                .map(|n| Target {
                    addr: n.addr,
                    client: n.client_options(),
                })
                .collect(),
            sockets: local.iter().map(|n| n.socket.clone()).collect(),
            pids: local.iter().map(|n| n.pid).collect(),
            mesh: Some(mesh),
            trust: Trust::InsecureDevOnly,
        })
    }

    /// Stops the local mesh, if there is one.
    async fn down(self) {
        if let Some(mesh) = self.mesh {
            local_mesh::stop(mesh, LINES).await;
        }
    }

    /// Adds what to check to a scenario's error.
    fn explain(&self, e: bench::BenchError) -> anyhow::Error {
        match e {
            bench::BenchError::Client(c) => explain_connect(c, &self.trust),
            other => anyhow::Error::new(other),
        }
    }
}

/// Sets up the nodes, runs `scenario` on them and stops a local mesh afterwards, also on
/// Ctrl-C or SIGTERM (exit 130) so no node is left running.
async fn with_nodes<T>(
    target: &BenchTarget,
    local_nodes: u16,
    socket: &Path,
    scenario: impl AsyncFnOnce(&Nodes) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    run_on(Nodes::up(target, local_nodes, socket), scenario).await
}

/// Brings the nodes up with `up`, then as [`with_nodes`].
async fn run_on<T>(
    up: impl std::future::Future<Output = anyhow::Result<Nodes>>,
    scenario: impl AsyncFnOnce(&Nodes) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let mut signals = Signals::new()?;
    let nodes = tokio::select! {
        n = up => n?,
        which = signals.recv() => return Err(interrupted(which)),
    };
    let result = tokio::select! {
        r = scenario(&nodes) => r,
        which = signals.recv() => Err(interrupted(which)),
    };
    nodes.down().await;
    result
}

/// The error for a run stopped by a signal (exit 130).
fn interrupted(which: &str) -> anyhow::Error {
    anyhow::Error::new(AdminFailure {
        exit: Exit::Interrupted,
        message: format!("bench: {which}: stopped"),
    })
}

/// `cloudctl bench throughput`.
pub async fn throughput(args: ThroughputArgs, socket: &Path, json: bool) -> anyhow::Result<()> {
    let scenario = ThroughputOptions {
        clients: args.clients.max(1),
        pipeline: args.pipeline.max(1),
        duration: args.duration,
        value_size: args.value_size,
        keys: args.keys.max(1),
        mix: args.mix,
        rate: args.rate,
    };
    let report = with_nodes(&args.target, 1, socket, async |nodes: &Nodes| {
        progress(format!(
            "throughput: {} clients x {} in flight, {:?}, against {}",
            scenario.clients,
            scenario.pipeline,
            scenario.duration,
            addresses(&nodes.targets)
        ));
        bench::throughput(&nodes.targets, &scenario)
            .await
            .map_err(|e| nodes.explain(e))
    })
    .await?;
    if json {
        return print_json(
            &report,
            &[
                ("scenario", json!("throughput")),
                ("clients", json!(scenario.clients)),
                ("pipeline", json!(scenario.pipeline)),
            ],
        );
    }
    print_table(&report.latency)?;
    output::line(&format!(
        "posts {}, gets {}, subscribes {}, notifications {}",
        report.posts, report.gets, report.subscribes, report.notifications
    ))?;
    Ok(())
}

/// `cloudctl bench fanout`.
pub async fn fanout(args: FanoutArgs, socket: &Path, json: bool) -> anyhow::Result<()> {
    let scenario = FanoutOptions {
        rate: args.rate.max(1),
        duration: args.duration,
        posters: args.posters.max(1),
        keys: args.keys.max(1),
        value_size: args.value_size.max(8),
        pipeline: args.pipeline.max(1),
    };
    let report = with_nodes(&args.target, 3, socket, async |nodes: &Nodes| {
        let (posters, subscriber) = match &args.subscriber_server {
            // A local mesh: post on node-1, subscribe on the last node.
            None => match (nodes.targets.first(), nodes.targets.last()) {
                (Some(first), Some(last)) if nodes.mesh.is_some() => {
                    (vec![first.clone()], last.clone())
                }
                _ => bail!("--subscriber-server is needed with --server"),
            },
            Some(server) => {
                let auth = &args.target.auth;
                let trust = match args.subscriber_pin {
                    Some(pin) => Trust::Pin(pin),
                    None => nodes.trust.clone(),
                };
                let (addr, client) = client_options_all(server, auth, &trust)
                    .await?
                    .into_iter()
                    .next()
                    .context("the subscriber's node has no address")?;
                (nodes.targets.clone(), Target { addr, client })
            }
        };
        progress(format!(
            "fanout: {} posts/s on {} for {:?}, subscriber on {}",
            scenario.rate,
            addresses(&posters),
            scenario.duration,
            subscriber.addr
        ));
        bench::fanout(&posters, &subscriber, &scenario)
            .await
            .map_err(|e| nodes.explain(e))
    })
    .await?;
    if json {
        return print_json(
            &report,
            &[
                ("scenario", json!("fanout")),
                ("rate", json!(scenario.rate)),
            ],
        );
    }
    print_table(&report.latency)?;
    output::line(&format!(
        "posted {}, notifications missing {}",
        report.posted, report.missing
    ))?;
    Ok(())
}

/// `cloudctl bench migration`.
pub async fn migration(args: MigrationArgs, socket: &Path, json: bool) -> anyhow::Result<()> {
    let opts = MigrationOptions {
        clients: args.clients.max(2),
        migrations: args.migrations,
        ..MigrationOptions::default()
    };
    let r = with_nodes(&args.target, 3, socket, async |nodes: &Nodes| {
        let target = first(&nodes.targets)?;
        progress(format!(
            "migration: {} clients on {}, {} migrations",
            opts.clients, target.addr, opts.migrations
        ));
        bench::migration(target, &nodes.sockets[0], &opts)
            .await
            .map_err(|e| nodes.explain(e))
    })
    .await?;
    if json {
        return print_json(
            &r,
            &[
                ("scenario", json!("migration")),
                ("clients", json!(opts.clients)),
            ],
        );
    }
    output::line(&format!(
        "migrations {} (failed {}), client errors {}, notifications lost {}, duplicated {} \
         (row moves seen by subscribers {})",
        r.migrations, r.failed, r.client_errors, r.lost, r.duplicated, r.moves_seen
    ))?;
    output::line(&format!(
        "stall p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms (baseline gap p99 {:.3} ms)",
        r.stall.p50_ms, r.stall.p99_ms, r.stall.p999_ms, r.stall.max_ms, r.baseline_p99_ms
    ))?;
    Ok(())
}

/// `cloudctl bench drain`.
pub async fn drain(args: DrainArgs, socket: &Path, json: bool) -> anyhow::Result<()> {
    let r = with_nodes(&args.target, 3, socket, async |nodes: &Nodes| {
        let target = first(&nodes.targets)?;
        progress(format!(
            "drain: {} clients on {}, then drain {}",
            args.clients,
            target.addr,
            args.node.as_deref().unwrap_or("their node")
        ));
        // A mesh that goes on after the run gets its node back.
        let undrain = nodes.mesh.is_none();
        bench::drain(
            target,
            &nodes.sockets[0],
            args.node.clone(),
            args.clients,
            undrain,
        )
        .await
        .map_err(|e| nodes.explain(e))
    })
    .await?;
    if json {
        return print_json(&r, &[("scenario", json!("drain"))]);
    }
    output::line(&format!(
        "drained {} of {} clients from {} in {:.3} s",
        r.moved, r.clients, r.node, r.moves.seconds
    ))?;
    output::line(&format!(
        "time until moved per client: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        r.moves.p50_ms, r.moves.p99_ms, r.moves.max_ms
    ))?;
    Ok(())
}

/// `cloudctl bench idle`.
pub async fn idle(args: IdleArgs, socket: &Path, json: bool) -> anyhow::Result<()> {
    let (report, before, after) = with_nodes(&args.target, 1, socket, async |nodes: &Nodes| {
        let target = first(&nodes.targets)?;
        let memory = Memory::of(nodes).await?;
        let before = memory.read().await?;
        progress(format!(
            "idle: {} clients x {} rows on {} ({} handshakes at a time)",
            args.clients, args.rows, target.addr, args.concurrency
        ));
        let idle = bench::idle(
            target,
            args.clients,
            args.rows,
            args.value_size,
            args.concurrency,
        )
        .await
        .map_err(|e| nodes.explain(e))?;
        progress(format!(
            "idle: {} connected; reading memory in {:?}",
            idle.len(),
            args.settle
        ));
        tokio::time::sleep(args.settle).await;
        let after = memory.read().await;
        let report = idle.report.clone();
        idle.close(args.concurrency).await;
        Ok((report, before, after?))
    })
    .await?;
    let clients = report.ops;
    let per_client = after.saturating_sub(before) / clients.max(1);
    if json {
        return print_json(
            &report,
            &[
                ("scenario", json!("idle")),
                ("clients", json!(clients)),
                ("rss_before_bytes", json!(before)),
                ("rss_bytes", json!(after)),
                ("bytes_per_client", json!(per_client)),
            ],
        );
    }
    output::line(&format!(
        "{clients} idle clients: node RSS {} before, {} after, {} per client",
        mib(before),
        mib(after),
        kib(per_client)
    ))?;
    output::line(&format!(
        "connect + post: {:.0}/s, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        report.ops_per_sec, report.p50_ms, report.p99_ms, report.max_ms
    ))?;
    Ok(())
}

/// `cloudctl bench failover`.
pub async fn failover(args: FailoverArgs, json: bool) -> anyhow::Result<()> {
    let idle = args.idle_timeout.max(Duration::from_millis(500));
    let config = format!(
        "# Written by `cloudctl bench failover`.\nidle_timeout = \"{}ms\"\nkeep_alive = \"{}ms\"\n",
        idle.as_millis(),
        (idle / 5).as_millis()
    );
    let up = Nodes::local(args.cloudd.as_deref(), args.keep, args.nodes, &config);
    let r = run_on(up, async |nodes: &Nodes| {
        let mesh = nodes.mesh.as_ref().context("no local mesh")?;
        let local = mesh.nodes();
        let mut admin = AdminClient::connect(&nodes.sockets[0]).await?;
        let host = match admin.call(AdminCommand::Status).await? {
            Response::Status(s) => s.host,
            other => bail!("unexpected answer to `status`: {other:?}"),
        };
        let i = local
            .iter()
            .position(|n| n.name == host)
            .with_context(|| format!("the host {host} is not one of the local nodes"))?;
        let survivors: Vec<bench::Survivor> = (0..local.len())
            .filter(|j| *j != i)
            .map(|j| bench::Survivor {
                target: nodes.targets[j].clone(),
                socket: nodes.sockets[j].clone(),
            })
            .collect();
        let pid = local[i].pid;
        progress(format!(
            "failover: {} clients on each of {} nodes; killing the host {host} (pid {pid})",
            args.clients_per_node,
            local.len()
        ));
        bench::failover(
            &nodes.targets[i],
            &host,
            &survivors,
            args.clients_per_node,
            idle,
            || sigkill(pid),
        )
        .await
        .map_err(|e| nodes.explain(e))
    })
    .await?;
    if json {
        return print_json(&r, &[("scenario", json!("failover"))]);
    }
    output::line(&format!(
        "new host {} after {:.0} ms; budget (idle timeout + 1 s) {:.0} ms",
        r.new_host, r.new_host_ms, r.budget_ms
    ))?;
    output::line(&format!(
        "{} rows lost with the host; NodeLost everywhere: p50 {:.0} ms, max {:.0} ms; \
         missing {}",
        r.rows_lost, r.deletions.p50_ms, r.deletions.max_ms, r.missing
    ))?;
    output::line(&format!(
        "every row back (posted again by its client's SDK on a survivor) after {:.0} ms; \
         budget (idle timeout + 2 s) {:.0} ms; not back {}",
        r.restored_ms, r.restore_budget_ms, r.not_restored
    ))?;
    Ok(())
}

/// `cloudctl bench mesh`.
pub async fn mesh(args: MeshArgs, json: bool) -> anyhow::Result<()> {
    let timing = cloudmesh::transport::Timing::default();
    let (idle, config) = match args.idle_timeout {
        None => (
            timing.idle_timeout,
            "# Written by `cloudctl bench mesh`: built-in defaults.\n".to_owned(),
        ),
        Some(idle) => {
            let idle = idle.max(Duration::from_millis(500));
            let config = format!(
                "# Written by `cloudctl bench mesh`.\nidle_timeout = \"{}ms\"\n\
                 keep_alive = \"{}ms\"\n",
                idle.as_millis(),
                (idle / 5).as_millis()
            );
            (idle, config)
        }
    };
    let cloudd = find_cloudd(args.cloudd.as_deref())?;
    let opts = MeshOptions {
        keep: args.keep,
        config,
        ..MeshOptions::new(LINES.label(), args.nodes)
    };
    let mut mesh = LocalMesh::create(opts, cloudd)?;
    let scale = bench::MeshScaleOptions {
        form_limit: args.form_limit,
        settle: args.settle,
        window: args.window,
        idle_timeout: idle,
    };
    let mut signals = Signals::new()?;
    let result = tokio::select! {
        r = bench::mesh_scale(&mut mesh, &scale, |line| LINES.line(line)) => {
            r.map_err(anyhow::Error::new)
        }
        which = signals.recv() => Err(interrupted(which)),
    };
    local_mesh::stop(mesh, LINES).await;
    let r = result?;
    if json {
        return print_json(&r, &[("scenario", json!("mesh"))]);
    }
    output::line(&format!(
        "{} nodes started together: one mesh after {:.1} s (budget for 64: 30 s), host {}",
        r.nodes,
        r.formed_ms / 1000.0,
        r.host
    ))?;
    output::line(&format!(
        "idle: {:.2}% of a core per node (max {:.2}%; budget 1%), RSS {:.1} MiB per node \
         (max {:.1})",
        r.idle_cpu_pct_mean, r.idle_cpu_pct_max, r.rss_mib_mean, r.rss_mib_max
    ))?;
    output::line(&format!(
        "host killed: survivors agreed on {} after {:.0} ms (budget: idle timeout + 1 s = \
         {:.0} ms)",
        r.new_host, r.new_host_ms, r.failover_budget_ms
    ))?;
    Ok(())
}

/// Kills a process at once, as a crash would (std can only kill its own children, and the
/// crate forbids `unsafe`; kill(1) is on every Unix).
fn sigkill(pid: u32) -> Result<(), String> {
    let status = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .map_err(|e| format!("cannot run kill: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("kill -KILL {pid} failed ({status})"))
    }
}

/// `cloudctl bench blip`.
pub async fn blip(args: BlipArgs, json: bool) -> anyhow::Result<()> {
    let idle = args.idle_timeout.max(Duration::from_millis(500));
    let outage = args.outage.max(idle + Duration::from_millis(500));
    let relay = bench::Relay::bind()
        .await
        .context("cannot bind the relay")?;
    let config = format!(
        "# Written by `cloudctl bench blip`.\nidle_timeout = \"{}ms\"\nkeep_alive = \"{}ms\"\n\
         resume_grace = \"{}ms\"\nadvertise_client = [\"{}\"]\n",
        idle.as_millis(),
        (idle / 5).as_millis(),
        (outage * 3 + Duration::from_secs(10)).as_millis(),
        relay.addr()
    );
    let up = Nodes::local(args.cloudd.as_deref(), args.keep, 1, &config);
    let (r, before, suspended) = run_on(up, async |nodes: &Nodes| {
        let target = first(&nodes.targets)?;
        relay.forward_to(target.addr);
        let memory = Memory::of(nodes).await?;
        let before = memory.read().await?;
        progress(format!(
            "blip: {} clients through a relay to {}; cutting it for {:?}",
            args.clients, target.addr, outage
        ));
        let suspended = std::cell::Cell::new(0u64);
        let r = bench::blip(target, &relay, args.clients, outage, idle, async || {
            if let Ok(m) = memory.read().await {
                suspended.set(m);
            }
        })
        .await
        .map_err(|e| nodes.explain(e))?;
        Ok((r, before, suspended.get()))
    })
    .await?;
    let per_session = suspended.saturating_sub(before) / (r.resumed.ops.max(1));
    if json {
        return print_json(
            &r,
            &[
                ("scenario", json!("blip")),
                ("rss_before_bytes", json!(before)),
                ("rss_suspended_bytes", json!(suspended)),
                ("bytes_per_suspended_session", json!(per_session)),
            ],
        );
    }
    output::line(&format!(
        "outage {:.0} ms; next call after the path came back: p50 {:.0} ms, max {:.0} ms \
         (budget {:.0} ms); deletions seen {}; new sessions {}",
        r.outage_ms, r.resumed.p50_ms, r.resumed.max_ms, r.budget_ms, r.deletions, r.new_sessions
    ))?;
    output::line(&format!(
        "node RSS {} before the clients, {} with their sessions suspended ({} per session)",
        before, suspended, per_session
    ))?;
    Ok(())
}

/// Where the loaded node's resident memory is read from.
enum Memory {
    /// A local node's process: /proc/PID/status, exact and immediate.
    Process(u32),
    /// A remote node: its last load report, through the admin socket.
    Admin {
        /// Any member's admin socket.
        socket: PathBuf,
        /// The loaded node's name.
        node: String,
    },
}

impl Memory {
    /// The first target's memory; for a remote node, a probe client learns its name.
    async fn of(nodes: &Nodes) -> anyhow::Result<Memory> {
        if let Some(pid) = nodes.pids.first() {
            return Ok(Memory::Process(*pid));
        }
        let (Some(socket), Some(target)) = (nodes.sockets.first(), nodes.targets.first()) else {
            bail!("no node to measure");
        };
        let probe = cloudmesh::client::Client::connect(target.addr, target.client.clone())
            .await
            .map_err(|e| explain_connect(e, &nodes.trust))?;
        let node = probe.node_name();
        probe.close().await;
        Ok(Memory::Admin {
            socket: socket.clone(),
            node,
        })
    }

    async fn read(&self) -> anyhow::Result<u64> {
        match self {
            Memory::Process(pid) => {
                let path = format!("/proc/{pid}/status");
                let status = std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {path}"))?;
                vm_rss(&status).with_context(|| format!("no VmRSS line in {path}"))
            }
            Memory::Admin { socket, node } => {
                let mut admin = AdminClient::connect(socket).await?;
                match admin.call(AdminCommand::Nodes).await? {
                    Response::Nodes { nodes } => nodes
                        .into_iter()
                        .find(|n| n.name == *node)
                        .map(|n| n.memory_bytes)
                        .with_context(|| format!("the mesh does not list {node}")),
                    other => bail!("unexpected answer to `nodes`: {other:?}"),
                }
            }
        }
    }
}

/// Resident memory in bytes from a /proc/PID/status text (`VmRSS:  1234 kB`).
fn vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn kib(bytes: u64) -> String {
    format!("{:.1} KiB", bytes as f64 / 1024.0)
}

/// `cloudctl bench query`.
pub async fn query(args: QueryBenchArgs, socket: &Path, json: bool) -> anyhow::Result<()> {
    let opts = bench::QueryOptions {
        rows: args.rows.max(1),
        holders: args.holders.max(1),
        queries: args.queries.max(1),
        live_rate: args.live_rate,
        live_duration: args.live_duration,
        players: args.players,
        move_rate: args.move_rate.max(1),
        aoi_duration: args.aoi_duration,
    };
    let r = with_nodes(&args.target, 3, socket, async |nodes: &Nodes| {
        progress(format!(
            "query: {} rows over {} holders on {}, {} queries of each kind",
            opts.rows,
            opts.holders,
            addresses(&nodes.targets),
            opts.queries
        ));
        bench::query(&nodes.targets, &opts)
            .await
            .map_err(|e| nodes.explain(e))
    })
    .await?;
    if json {
        return print_json(
            &r,
            &[("scenario", json!("query")), ("budget_p99_ms", json!(5.0))],
        );
    }
    output::line(&format!(
        "loaded {} rows in {:.1} s; the top-20 filter matches {} of them",
        r.rows, r.load_seconds, r.top20_matching
    ))?;
    output::line("top-20 (region = \"eu\" and players < 32, sort players, limit 20):")?;
    print_table(&r.top20)?;
    output::line(&format!(
        "area of interest (near(x, y, 50), {:.0} rows per answer on average):",
        r.near_rows_avg
    ))?;
    print_table(&r.near)?;
    if let Some(live) = &r.live {
        output::line(&format!(
            "live query at {} changes/s (event delay):",
            opts.live_rate
        ))?;
        print_table(live)?;
        output::line(&format!(
            "posted {}, events missing {}",
            r.live_posted, r.live_missing
        ))?;
    }
    if let Some(aoi) = &r.aoi {
        output::line(&format!(
            "area of interest near({}, {}, {}) live under {} moving players at {} moves/s \
             (event delay):",
            aoi.x, aoi.y, aoi.radius, aoi.players, opts.move_rate
        ))?;
        print_table(&aoi.delay)?;
        output::line(&format!(
            "moves {}, events expected {} (entered {}, updated {}, left {}), missing {}, \
             unexpected {}; final result {} rows, equal to brute force: {}",
            aoi.moves,
            aoi.expected,
            aoi.entered,
            aoi.updated,
            aoi.left,
            aoi.missing,
            aoi.unexpected,
            aoi.final_rows,
            if aoi.final_equal { "yes" } else { "NO" }
        ))?;
    }
    output::line(&format!(
        "answers naming a node incomplete: {}",
        r.incomplete
    ))?;
    Ok(())
}

fn first(targets: &[Target]) -> anyhow::Result<&Target> {
    targets.first().context("no node to load")
}

fn addresses(targets: &[Target]) -> String {
    targets
        .iter()
        .map(|t| t.addr.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A progress line on stderr (stdout carries the results).
fn progress(line: String) {
    LINES.line(line);
}

/// One JSON line: the report's fields plus the scenario's own (`scenario`, knobs).
fn print_json(
    report: &impl serde::Serialize,
    extra: &[(&str, serde_json::Value)],
) -> anyhow::Result<()> {
    output::json_line(&bench::json_with(report, extra)?)?;
    Ok(())
}

fn print_table(report: &Report) -> anyhow::Result<()> {
    output::line(&report.table("ops/s"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vm_rss_from_proc_status() {
        let status = "Name:\tcloudd\nVmPeak:\t  999 kB\nVmRSS:\t   41236 kB\nThreads:\t3\n";
        assert_eq!(vm_rss(status), Some(41236 * 1024));
        assert_eq!(vm_rss("Name:\tx\n"), None);
    }

    #[test]
    fn sizes_print_in_binary_units() {
        assert_eq!(mib(3 * 1024 * 1024 / 2), "1.5 MiB");
        assert_eq!(kib(2048), "2.0 KiB");
    }
}
