//! Per-node metrics: the one list of metric names, the counters the node bumps
//! on its hot path, and the Graphite exporter (`graphite`).
//!
//! Counters are plain relaxed atomics bumped where things happen (no lock of their own, no
//! allocation); gauges are read when a sample is taken, once per export interval. A
//! [`Sample`] is a metric name relative to the node's prefix (e.g. `ops.post`) and a value.
//! [`METRICS`] is the list of every name a node sends; the exporter sends nothing else and
//! the Grafana dashboard's test (`tests/metrics.rs`) checks every panel target against it.
//!
//! Counters are sent as **totals since the node started** (monotonically increasing, reset
//! by a restart), never as rates: a total survives a lost sample or a slow carbon, and
//! Graphite derives rates with `perSecond()` / `nonNegativeDerivative()`, which also ignore
//! the drop at a restart.

pub mod graphite;

use std::sync::atomic::{AtomicU64, Ordering};

/// Whether a metric is a level now or a total that only grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A level sampled at each export (clients, rows, CPU).
    Gauge,
    /// A total since the node started; rates come from `perSecond()` in Graphite.
    Counter,
}

/// One metric a node sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricDef {
    /// Path below the node's prefix. `{peer}` stands for one path segment (a peer's name).
    pub name: &'static str,
    /// Gauge or counter.
    pub kind: Kind,
    /// What it measures (and its unit).
    pub doc: &'static str,
}

const fn gauge(name: &'static str, doc: &'static str) -> MetricDef {
    MetricDef {
        name,
        kind: Kind::Gauge,
        doc,
    }
}

const fn counter(name: &'static str, doc: &'static str) -> MetricDef {
    MetricDef {
        name,
        kind: Kind::Counter,
        doc,
    }
}

/// The segment of a name that stands for a peer node's (sanitized) name.
pub const PEER_PLACEHOLDER: &str = "{peer}";

/// Every metric a node sends, below its prefix (`cloudmesh.<node>` by default).
pub const METRICS: &[MetricDef] = &[
    gauge("clients", "connected clients (peer links not counted)"),
    gauge("rows", "rows stored on this node"),
    gauge("bytes", "bytes of row data stored on this node"),
    gauge(
        "subscriptions",
        "subscriptions held by clients of this node",
    ),
    gauge("peers", "authenticated links to other nodes"),
    gauge("members", "mesh members this node knows, itself included"),
    gauge("is_host", "1 while this node is the mesh host, else 0"),
    gauge(
        "migrations.in_flight",
        "migrations out of or into this node under way",
    ),
    gauge(
        "cpu_percent",
        "machine CPU use, percent of all cores (last load refresh)",
    ),
    gauge(
        "memory_bytes",
        "resident memory (RSS) of the node process, bytes",
    ),
    gauge("uptime_seconds", "seconds since the node started"),
    gauge(
        "peer.{peer}.rtt_ms",
        "QUIC round-trip time of the link to that peer, ms",
    ),
    counter("ops.post", "post requests handled"),
    counter("ops.get", "get requests without subscribe handled"),
    counter("ops.subscribe", "get+subscribe requests handled"),
    counter("ops.unsubscribe", "unsubscribe requests handled"),
    counter("ops.release", "release requests handled"),
    counter(
        "ops.other",
        "other requests (ping, session, position, place) handled",
    ),
    counter(
        "ops.errors",
        "requests answered with an error (limits, quota, filters)",
    ),
    counter(
        "ops.rate_limited",
        "requests refused by the per-client rate limit",
    ),
    counter("notifications", "notifications queued to local clients"),
    counter(
        "slow_consumers",
        "clients or peers disconnected for reading too slowly",
    ),
    counter(
        "connections.opened",
        "clients admitted (new or migrated in)",
    ),
    counter("connections.closed", "client connections ended"),
    counter("migrations.started", "migrations out of this node started"),
    counter(
        "migrations.finished",
        "migrations out of this node handed over",
    ),
    counter(
        "migrations.failed",
        "migrations refused or aborted before the client moved",
    ),
    counter(
        "migrations.rolled_back",
        "migrations rolled back: client did not arrive in time",
    ),
    counter(
        "migrations.arrived",
        "migrated clients that arrived at this node",
    ),
    counter("host_changes", "times this node saw the mesh host change"),
    counter(
        "exporter.dropped",
        "samples the exporter dropped (carbon slow or gone)",
    ),
    counter(
        "exporter.reconnects",
        "connections the exporter made to carbon",
    ),
];

/// The definition of `name`, matching `{peer}` against any one segment.
pub fn lookup(name: &str) -> Option<&'static MetricDef> {
    METRICS.iter().find(|d| pattern_matches(d.name, name))
}

/// Whether a concrete metric name fits a pattern from [`METRICS`].
fn pattern_matches(pattern: &str, name: &str) -> bool {
    let mut p = pattern.split('.');
    let mut n = name.split('.');
    loop {
        match (p.next(), n.next()) {
            (None, None) => return true,
            (Some(ps), Some(ns)) if ps == PEER_PLACEHOLDER || ps == ns => {}
            _ => return false,
        }
    }
}

/// One measurement: a name below the prefix and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Path below the node's prefix, from [`METRICS`] (with `{peer}` filled in).
    pub name: String,
    /// The value.
    pub value: f64,
}

impl Sample {
    /// A sample named `name`.
    pub fn new(name: impl Into<String>, value: f64) -> Sample {
        Sample {
            name: name.into(),
            value,
        }
    }
}

/// Something that can be measured (a `Node`; a fake in tests).
pub trait MetricSource: Send + Sync + 'static {
    /// Every metric's current value. Must be quick: it runs on the exporter's task.
    fn sample(&self) -> Vec<Sample>;
}

/// The node's counters, bumped where things happen. Relaxed atomics: each is an
/// independent total, read for export only, so no ordering between them is needed.
#[derive(Debug, Default)]
pub struct Counters {
    /// `ops.post`.
    pub post: AtomicU64,
    /// `ops.get`.
    pub get: AtomicU64,
    /// `ops.subscribe`.
    pub subscribe: AtomicU64,
    /// `ops.unsubscribe`.
    pub unsubscribe: AtomicU64,
    /// `ops.release`.
    pub release: AtomicU64,
    /// `ops.other`.
    pub other: AtomicU64,
    /// `ops.errors`.
    pub errors: AtomicU64,
    /// `ops.rate_limited`.
    pub rate_limited: AtomicU64,
    /// `notifications`.
    pub notifications: AtomicU64,
    /// `slow_consumers`.
    pub slow_consumers: AtomicU64,
    /// `connections.opened`.
    pub opened: AtomicU64,
    /// `connections.closed`.
    pub closed: AtomicU64,
    /// `migrations.started`.
    pub migrations_started: AtomicU64,
    /// `migrations.finished`.
    pub migrations_finished: AtomicU64,
    /// `migrations.failed`.
    pub migrations_failed: AtomicU64,
    /// `migrations.rolled_back`.
    pub migrations_rolled_back: AtomicU64,
    /// `migrations.arrived`.
    pub migrations_arrived: AtomicU64,
    /// `host_changes`.
    pub host_changes: AtomicU64,
}

impl Counters {
    /// Adds one to `c`.
    #[inline]
    pub fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `n` to `c`.
    #[inline]
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// Every counter as a sample, named as in [`METRICS`].
    pub fn samples(&self, out: &mut Vec<Sample>) {
        let all: [(&str, &AtomicU64); 18] = [
            ("ops.post", &self.post),
            ("ops.get", &self.get),
            ("ops.subscribe", &self.subscribe),
            ("ops.unsubscribe", &self.unsubscribe),
            ("ops.release", &self.release),
            ("ops.other", &self.other),
            ("ops.errors", &self.errors),
            ("ops.rate_limited", &self.rate_limited),
            ("notifications", &self.notifications),
            ("slow_consumers", &self.slow_consumers),
            ("connections.opened", &self.opened),
            ("connections.closed", &self.closed),
            ("migrations.started", &self.migrations_started),
            ("migrations.finished", &self.migrations_finished),
            ("migrations.failed", &self.migrations_failed),
            ("migrations.rolled_back", &self.migrations_rolled_back),
            ("migrations.arrived", &self.migrations_arrived),
            ("host_changes", &self.host_changes),
        ];
        for (name, c) in all {
            out.push(Sample::new(name, c.load(Ordering::Relaxed) as f64));
        }
    }
}

/// Makes `text` one valid Graphite path segment: letters, digits, `_` and `-` are kept,
/// anything else (dots, spaces, slashes, non-ASCII) becomes `_`; empty becomes `_`.
pub fn sanitize_segment(text: &str) -> String {
    let s: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        "_".to_owned()
    } else {
        s
    }
}

/// Makes `text` a valid dotted Graphite prefix: each segment sanitized, empty segments
/// (leading, trailing or doubled dots) dropped. `None` if nothing is left.
pub fn sanitize_prefix(text: &str) -> Option<String> {
    let segs: Vec<String> = text
        .split('.')
        .filter(|s| !s.trim().is_empty())
        .map(sanitize_segment)
        .collect();
    if segs.is_empty() {
        None
    } else {
        Some(segs.join("."))
    }
}

/// The default prefix for a node named `name`: `cloudmesh.<name>`, the name one segment
/// (a host name's dots become `_`, so `cloudmesh.*` selects every node).
pub fn default_prefix(name: &str) -> String {
    format!("cloudmesh.{}", sanitize_segment(name))
}

/// One line of carbon's plaintext protocol: `prefix.name value timestamp\n`. Values that
/// are not finite are not sent (carbon would refuse the line).
pub fn plaintext_line(prefix: &str, sample: &Sample, unix_secs: u64) -> Option<String> {
    if !sample.value.is_finite() {
        return None;
    }
    // Integers print without a fraction; others keep what f64's Display gives (no exponent).
    Some(format!(
        "{prefix}.{} {} {unix_secs}\n",
        sample.name, sample.value
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_valid_and_counters_are_sampled() {
        let mut seen = std::collections::HashSet::new();
        for d in METRICS {
            assert!(seen.insert(d.name), "{} listed twice", d.name);
            for seg in d.name.split('.') {
                assert!(
                    seg == PEER_PLACEHOLDER || sanitize_segment(seg) == seg,
                    "bad segment in {}",
                    d.name
                );
            }
            assert!(!d.doc.is_empty());
        }
        let mut out = Vec::new();
        Counters::default().samples(&mut out);
        for s in &out {
            let def = lookup(&s.name).unwrap_or_else(|| panic!("{} not listed", s.name));
            assert_eq!(def.kind, Kind::Counter, "{}", s.name);
        }
    }

    #[test]
    fn peer_placeholder_matches_one_segment() {
        assert!(lookup("peer.node-2.rtt_ms").is_some());
        assert!(lookup("peer.a.b.rtt_ms").is_none());
        assert!(lookup("peer.rtt_ms").is_none());
        assert!(lookup("clients").is_some());
        assert!(lookup("clients.x").is_none());
    }

    #[test]
    fn sanitizing() {
        assert_eq!(sanitize_segment("node-1.example.com"), "node-1_example_com");
        assert_eq!(sanitize_segment("a b/c*d"), "a_b_c_d");
        assert_eq!(sanitize_segment("dé"), "d_");
        assert_eq!(sanitize_segment(""), "_");
        assert_eq!(
            sanitize_prefix(".cloud mesh..eu/1.").as_deref(),
            Some("cloud_mesh.eu_1")
        );
        assert_eq!(sanitize_prefix("..."), None);
        assert_eq!(default_prefix("web 1.lan"), "cloudmesh.web_1_lan");
    }

    #[test]
    fn plaintext_format() {
        let line = plaintext_line("cloudmesh.n1", &Sample::new("clients", 3.0), 1700000000);
        assert_eq!(line.as_deref(), Some("cloudmesh.n1.clients 3 1700000000\n"));
        let line = plaintext_line("p", &Sample::new("cpu_percent", 12.5), 7);
        assert_eq!(line.as_deref(), Some("p.cpu_percent 12.5 7\n"));
        let big = plaintext_line("p", &Sample::new("bytes", 1e21), 7);
        assert_eq!(big.as_deref(), Some("p.bytes 1000000000000000000000 7\n"));
        assert_eq!(plaintext_line("p", &Sample::new("x", f64::NAN), 7), None);
        assert_eq!(
            plaintext_line("p", &Sample::new("x", f64::INFINITY), 7),
            None
        );
    }
}
