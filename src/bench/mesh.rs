//! The mesh-scale scenario (budgets: 64 nodes started together form one mesh in under
//! 30 s; an idle node uses under 1% of a core; after kill -9 of the host the survivors
//! agree on a new one within idle timeout + 1 s). Every node of a [`LocalMesh`] is started
//! at the same moment, as after a data-centre power cut, all joining node-1; the clock runs
//! until every node lists every node as linked and Active and all name the same host.
//! Then the idle nodes' CPU time and resident memory are read from /proc, and the host is
//! killed with SIGKILL.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{admin_call, BenchError};
use crate::admin::{AdminClient, Command, Response};
use crate::local_mesh::LocalMesh;

/// How long between two looks at whether the mesh formed or agreed on a host. Each look
/// asks every node, so with many nodes a look itself takes a while; the time reported is
/// when the first look that found the mesh formed ended (an upper bound, late by at most
/// one look).
const POLL: Duration = Duration::from_millis(50);

/// What to measure and how long to wait.
#[derive(Debug, Clone)]
pub struct MeshScaleOptions {
    /// How long the nodes get to form one mesh before the run gives up.
    pub form_limit: Duration,
    /// How long to wait after the mesh formed before measuring idle CPU, so start-up work
    /// (certificates, first load reports, dissemination) is over.
    pub settle: Duration,
    /// How long idle CPU is measured over.
    pub window: Duration,
    /// The nodes' idle timeout, as their configuration sets it: the failover budget is it
    /// plus one second.
    pub idle_timeout: Duration,
}

/// What the mesh-scale scenario measured.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MeshScaleReport {
    /// Nodes started.
    pub nodes: usize,
    /// From starting the first process until every node listed every node as linked and
    /// Active and all named the same host.
    pub formed_ms: f64,
    /// The host they agreed on.
    pub host: String,
    /// Mean CPU use of an idle node over the window, in percent of one core.
    pub idle_cpu_pct_mean: f64,
    /// The busiest idle node's CPU use, in percent of one core.
    pub idle_cpu_pct_max: f64,
    /// Mean resident memory of a node after the window, in MiB.
    pub rss_mib_mean: f64,
    /// The largest node's resident memory, in MiB.
    pub rss_mib_max: f64,
    /// From the kill of the host until every survivor named the same new host.
    pub new_host_ms: f64,
    /// The new host.
    pub new_host: String,
    /// The failover budget this run is held to: the nodes' idle timeout + 1 s.
    pub failover_budget_ms: f64,
}

/// Runs the scenario on `mesh`, which must not have been started yet; `progress` gets a
/// line per step. The caller stops the mesh afterwards, whatever the outcome.
pub async fn mesh_scale(
    mesh: &mut LocalMesh,
    opts: &MeshScaleOptions,
    mut progress: impl FnMut(String),
) -> Result<MeshScaleReport, BenchError> {
    let started = Instant::now();
    mesh.start_together(|p| progress(p.to_string())).await?;
    let give_up = started + opts.form_limit;
    let host = loop {
        let missing = match mesh.formed().await {
            Ok(host) => break host,
            Err(missing) => missing,
        };
        if let Some(exit) = mesh.reap_exited().into_iter().next() {
            return Err(BenchError::Mesh(exit.to_string()));
        }
        if Instant::now() >= give_up {
            return Err(BenchError::Mesh(format!(
                "the nodes did not form one mesh within {:?}: {missing}",
                opts.form_limit
            )));
        }
        tokio::time::sleep(POLL).await;
    };
    let formed = started.elapsed();
    let nodes = mesh.nodes();
    progress(format!(
        "{} nodes formed one mesh in {:.1} s, host {host}",
        nodes.len(),
        formed.as_secs_f64()
    ));

    tokio::time::sleep(opts.settle).await;
    let tick = clock_ticks_per_second();
    let before: Vec<u64> = nodes
        .iter()
        .map(|n| cpu_ticks(n.pid))
        .collect::<Result<_, _>>()?;
    let window_start = Instant::now();
    tokio::time::sleep(opts.window).await;
    let after: Vec<u64> = nodes
        .iter()
        .map(|n| cpu_ticks(n.pid))
        .collect::<Result<_, _>>()?;
    let window = window_start.elapsed().as_secs_f64();
    let cpu: Vec<f64> = before
        .iter()
        .zip(&after)
        .map(|(b, a)| a.saturating_sub(*b) as f64 / tick / window * 100.0)
        .collect();
    let rss: Vec<f64> = nodes
        .iter()
        .map(|n| rss_bytes(n.pid).map(|b| b as f64 / f64::from(1 << 20)))
        .collect::<Result<_, _>>()?;
    progress(format!(
        "idle over {window:.0} s: CPU {:.2}% of a core per node (max {:.2}%), RSS {:.1} MiB \
         per node (max {:.1})",
        mean(&cpu),
        max(&cpu),
        mean(&rss),
        max(&rss)
    ));

    let victim = nodes
        .iter()
        .position(|n| n.name == host)
        .ok_or_else(|| BenchError::Mesh(format!("the host {host} is not one of the nodes")))?;
    let mut admins = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        if i != victim {
            admins.push(connect(&n.socket).await?);
        }
    }
    let budget = opts.idle_timeout + Duration::from_secs(1);
    progress(format!(
        "killing the host {host} (pid {})",
        nodes[victim].pid
    ));
    let killed_at = Instant::now();
    mesh.kill(victim);
    // Three budgets, and at least 30 s: asking many nodes takes a while on a small machine.
    let give_up = killed_at + (3 * budget).max(Duration::from_secs(30));
    let (new_host, new_host_ms) = loop {
        if let Some(agreed) = agreed_host(&mut admins, &host).await {
            break (agreed, killed_at.elapsed().as_secs_f64() * 1000.0);
        }
        if Instant::now() >= give_up {
            return Err(BenchError::Mesh(format!(
                "the survivors did not agree on a new host within {:?}",
                give_up - killed_at
            )));
        }
        tokio::time::sleep(POLL).await;
    };
    progress(format!(
        "survivors agreed on {new_host} after {new_host_ms:.0} ms"
    ));
    Ok(MeshScaleReport {
        nodes: nodes.len(),
        formed_ms: formed.as_secs_f64() * 1000.0,
        host,
        idle_cpu_pct_mean: mean(&cpu),
        idle_cpu_pct_max: max(&cpu),
        rss_mib_mean: mean(&rss),
        rss_mib_max: max(&rss),
        new_host_ms,
        new_host,
        failover_budget_ms: budget.as_secs_f64() * 1000.0,
    })
}

async fn connect(socket: &Path) -> Result<AdminClient, BenchError> {
    Ok(AdminClient::connect(socket).await?)
}

/// The host every survivor names, if they all name the same one and it is not `dead`.
async fn agreed_host(admins: &mut [AdminClient], dead: &str) -> Option<String> {
    let mut agreed: Option<String> = None;
    for admin in admins {
        let Ok(Response::Status(s)) = admin_call(admin, Command::Status).await else {
            return None;
        };
        if s.host == dead || agreed.as_ref().is_some_and(|h| *h != s.host) {
            return None;
        }
        agreed = Some(s.host);
    }
    agreed
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.iter().sum::<f64>() / v.len() as f64
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(0.0, f64::max)
}

/// User plus system CPU time of process `pid`, all its threads, in clock ticks
/// (/proc/PID/stat fields 14 and 15).
fn cpu_ticks(pid: u32) -> Result<u64, BenchError> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| BenchError::Mesh(format!("cannot read {path}: {e}")))?;
    parse_cpu_ticks(&text).ok_or_else(|| BenchError::Mesh(format!("cannot parse {path}")))
}

/// The fields after the command name (which may hold spaces and parentheses, so the last
/// `)` ends it) start with field 3, the state: utime and stime are the 12th and 13th.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Resident memory of process `pid` in bytes (VmRSS of /proc/PID/status).
fn rss_bytes(pid: u32) -> Result<u64, BenchError> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| BenchError::Mesh(format!("cannot read {path}: {e}")))?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .ok_or_else(|| BenchError::Mesh(format!("no VmRSS in {path}")))
}

/// The kernel's clock ticks per second, which /proc's CPU times count in (`getconf
/// CLK_TCK`; the crate forbids the `unsafe` a sysconf call needs). 100 on every Linux
/// this runs on when getconf is missing.
fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_time_past_a_command_name_with_spaces_and_parentheses() {
        let stat = "4242 (cloud d) (x)) S 1 4242 4242 0 -1 4194560 1180 0 0 0 \
                    37 12 0 0 20 0 9 0 123 456 789";
        assert_eq!(parse_cpu_ticks(stat), Some(49));
        assert_eq!(parse_cpu_ticks("4242 (cloudd) S 1 2"), None);
        assert_eq!(parse_cpu_ticks("no parenthesis"), None);
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(rss_bytes(me).expect("rss") > 1 << 20);
        cpu_ticks(me).expect("cpu time");
    }
}
