//! Load generation for `cloudctl bench`: real QUIC clients driving nodes, each
//! scenario reporting throughput and latency percentiles. Lives in the library so the CLI
//! and any other harness share one implementation; the CLI starts a local mesh when it is
//! given no address, so here every scenario takes the nodes to load as [`Target`]s (and an
//! admin socket where the scenario must operate the mesh: migrate, drain).
//!
//! - [`throughput`]: N clients × D requests in flight, a post/get/subscribe mix.
//! - [`fanout`]: posts on one node, one subscriber on another: notification latency.
//! - [`migration`]: clients moved while posting and subscribed: stall, lost, duplicated.
//! - [`drain`]: time for a node's clients to be moved elsewhere.
//! - [`idle`]: N clients connected and idle, for the node's memory per client.
//! - [`failover`]: the host killed: time to a new host, to `NodeLost` everywhere, and to
//!   every row of its clients back (their SDK restores them on a survivor).
//! - [`blip`]: the path between clients and their node cut for longer than the idle
//!   timeout, within the resume grace: time to the next successful call, deletions seen.
//! - [`mesh_scale`]: N nodes started at once: time to one mesh, idle CPU and memory per
//!   node, time to agree on a new host after the host is killed.
//! - [`query`]: top-20 and area-of-interest query latency over many rows, live-query delivery.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

use crate::admin::{AdminClient, AdminClientError, Command, Response};
use crate::client::{ClientError, ClientOptions};

mod blip;
mod failover;
mod fanout;
mod idle;
mod mesh;
mod migration;
mod query;
mod throughput;

pub use blip::{blip, BlipReport, Relay};
pub use failover::{failover, FailoverReport, Survivor};
pub use fanout::{fanout, FanoutOptions, FanoutReport};
pub use idle::{idle, IdleClients};
pub use mesh::{mesh_scale, MeshScaleOptions, MeshScaleReport};
pub use migration::{drain, migration, DrainReport, MigrationOptions, MigrationReport};
pub use query::{query, AoiReport, QueryOptions, QueryReport};
pub use throughput::{throughput, Mix, ThroughputOptions, ThroughputReport};

/// A node to load: where it is and how to trust it.
#[derive(Debug, Clone)]
pub struct Target {
    /// The node's client address.
    pub addr: SocketAddr,
    /// Trust and identity for clients connecting to it.
    pub client: ClientOptions,
}

/// Why a scenario could not run (what clients saw during a run is counted, not returned).
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A benchmark client could not connect or set up its rows.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The admin socket failed.
    #[error(transparent)]
    Admin(#[from] AdminClientError),
    /// The local mesh a scenario starts itself could not be set up.
    #[error(transparent)]
    Local(#[from] crate::local_mesh::LocalMeshError),
    /// The mesh refused or did not allow what the scenario needs.
    #[error("{0}")]
    Mesh(String),
}

/// Throughput and latency of one run; every scenario's JSON carries these fields.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    /// Operations completed (what an operation is depends on the scenario).
    pub ops: u64,
    /// Operations that returned an error.
    pub errors: u64,
    /// Measured wall time in seconds.
    pub seconds: f64,
    /// `ops / seconds`.
    pub ops_per_sec: f64,
    /// Median latency.
    pub p50_ms: f64,
    /// 99th percentile latency.
    pub p99_ms: f64,
    /// 99.9th percentile latency.
    pub p999_ms: f64,
    /// Slowest operation.
    pub max_ms: f64,
}

impl Report {
    /// Builds a report from latencies in microseconds (sorted in place).
    pub fn from_latencies(latencies_us: &mut [u32], errors: u64, elapsed: Duration) -> Report {
        latencies_us.sort_unstable();
        let pct = |p: f64| -> f64 {
            if latencies_us.is_empty() {
                return 0.0;
            }
            let i =
                ((latencies_us.len() as f64 * p).ceil() as usize).clamp(1, latencies_us.len()) - 1;
            f64::from(latencies_us[i]) / 1000.0
        };
        let ops = latencies_us.len() as u64;
        let seconds = elapsed.as_secs_f64();
        Report {
            ops,
            errors,
            seconds,
            ops_per_sec: if seconds > 0.0 {
                ops as f64 / seconds
            } else {
                0.0
            },
            p50_ms: pct(0.50),
            p99_ms: pct(0.99),
            p999_ms: pct(0.999),
            max_ms: latencies_us.last().map_or(0.0, |v| f64::from(*v) / 1000.0),
        }
    }
}

impl Report {
    /// Two aligned lines for a terminal: a header and the figures; `rate` names the
    /// throughput column (e.g. `ops/s`).
    pub fn table(&self, rate: &str) -> String {
        format!(
            "{rate:>12} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}\n\
             {:>12.0} {:>8} {:>8} {:>8.3} {:>8.3} {:>8.3} {:>8.3}",
            "ops",
            "errors",
            "p50 ms",
            "p99 ms",
            "p99.9 ms",
            "max ms",
            self.ops_per_sec,
            self.ops,
            self.errors,
            self.p50_ms,
            self.p99_ms,
            self.p999_ms,
            self.max_ms
        )
    }
}

/// A report as one JSON object with the scenario's own fields added (`scenario`, its
/// knobs): the shape every `--json` benchmark line has.
pub fn json_with(
    report: &impl Serialize,
    extra: &[(&str, serde_json::Value)],
) -> serde_json::Result<serde_json::Value> {
    let mut value = serde_json::to_value(report)?;
    if let Some(obj) = value.as_object_mut() {
        for (k, v) in extra {
            obj.insert((*k).into(), v.clone());
        }
    }
    Ok(value)
}

/// Microseconds of `d`, saturating (a latency sample).
pub(crate) fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// One admin command, one final answer; an `Error` answer becomes [`BenchError::Mesh`].
pub(crate) async fn admin_call(
    admin: &mut AdminClient,
    command: Command,
) -> Result<Response, BenchError> {
    match admin.call(command).await? {
        Response::Error(e) => Err(BenchError::Mesh(e.to_string())),
        other => Ok(other),
    }
}

/// The names of the mesh's Active members, asked through `admin`.
pub(crate) async fn active_nodes(admin: &mut AdminClient) -> Result<Vec<String>, BenchError> {
    match admin_call(admin, Command::Nodes).await? {
        Response::Nodes { nodes } => Ok(nodes
            .into_iter()
            .filter(|n| n.state == "Active")
            .map(|n| n.name)
            .collect()),
        other => Err(BenchError::Mesh(format!(
            "unexpected answer to `nodes`: {other:?}"
        ))),
    }
}

/// Closes every client at once. A client's `close` waits for its QUIC connections to finish
/// closing (about three probe timeouts, some 150 ms on loopback, longer for a client that
/// migrated); one at a time, 10,000 clients would take half an hour.
async fn close_all(clients: impl IntoIterator<Item = crate::client::Client>) {
    futures_util::future::join_all(clients.into_iter().map(|c| c.close())).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_right_ranks() {
        let mut lat: Vec<u32> = (1..=1000).rev().collect();
        let r = Report::from_latencies(&mut lat, 0, Duration::from_secs(2));
        assert_eq!(r.ops, 1000);
        assert_eq!(r.ops_per_sec, 500.0);
        assert_eq!(r.p50_ms, 0.5);
        assert_eq!(r.p99_ms, 0.99);
        assert_eq!(r.p999_ms, 0.999);
        assert_eq!(r.max_ms, 1.0);
    }

    #[test]
    fn the_table_aligns_figures_under_their_headers() {
        let mut lat = vec![1000, 2000];
        let t = Report::from_latencies(&mut lat, 0, Duration::from_secs(1)).table("ops/s");
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2, "{t}");
        assert_eq!(lines[0].len(), lines[1].len(), "{t}");
        assert!(lines[0].trim_start().starts_with("ops/s"), "{t}");
        assert!(lines[1].ends_with("2.000"), "{t}");
    }

    #[test]
    fn an_empty_run_reports_zeroes() {
        let r = Report::from_latencies(&mut [], 3, Duration::ZERO);
        assert_eq!((r.ops, r.errors, r.ops_per_sec, r.p99_ms), (0, 3, 0.0, 0.0));
    }
}
