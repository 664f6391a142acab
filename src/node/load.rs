//! Service: keeps `cloud.load/0` current: client count, CPU and memory, so game clients and
//! the router can see how busy each node is.

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sysinfo::System;

use super::hub::now_ms;
use super::shared::Shared;
use crate::mesh::MeshEvent;
use crate::proto::{Key, LoadInfo, NodeId, PeerFrame};

/// The JSON under `cloud.load/0`: how busy the node is, as a client picking a node needs
/// it; CPU, memory and rows only when the operator allows it (`expose_internals`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadRecord {
    /// Connected clients.
    pub clients: usize,
    /// Most clients it serves (`max_clients`).
    pub capacity: u32,
    /// Rows stored on this node (with `expose_internals`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<usize>,
    /// Machine CPU use, percent of all cores (with `expose_internals`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f32>,
    /// Resident memory of this node process, bytes (with `expose_internals`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
}

pub(super) async fn refresh_loop(shared: Arc<Shared>) {
    let mut sys = System::new();
    let mut shutdown = shared.shutdown.clone();
    // For msgs/s: requests counted at the last sample, and when.
    let mut last = (0u64, std::time::Instant::now());
    // The last report peers were sent, and when.
    let mut told: Option<(LoadInfo, std::time::Instant)> = None;
    loop {
        let requests = shared.requests.load(std::sync::atomic::Ordering::Relaxed);
        let elapsed = last.1.elapsed().as_secs_f64();
        let msgs_per_sec = if elapsed > 0.0 {
            (requests.saturating_sub(last.0) as f64 / elapsed) as f32
        } else {
            0.0
        };
        last = (requests, std::time::Instant::now());
        sys.refresh_cpu_usage();
        let memory_bytes = resident_bytes().unwrap_or(0);
        {
            let mut hub = shared.hub();
            let clients = hub.connected_clients();
            let rows = hub.store.stats().rows;
            let cpu = sys.global_cpu_usage();
            let info = LoadInfo {
                clients: u32::try_from(clients).unwrap_or(u32::MAX),
                capacity: shared.config.max_clients,
                cpu_percent: cpu,
                rows: rows as u64,
                memory_bytes,
                msgs_per_sec,
            };
            let internals = shared.config.expose_internals;
            let record = LoadRecord {
                clients,
                capacity: shared.config.max_clients,
                rows: internals.then_some(rows),
                cpu: internals.then_some(cpu),
                memory_bytes: internals.then_some(memory_bytes),
            };
            hub.loads.insert(shared.id, info);
            let _ = hub.events.send(MeshEvent::Load {
                node: shared.id,
                info,
            });
            if news_for_peers(told.as_ref(), &info, shared.config.load_interval) {
                hub.broadcast(&PeerFrame::Load(info), shared.config.max_frame);
                told = Some((info, std::time::Instant::now()));
            }
            let json = serde_json::to_vec(&record).unwrap_or_default();
            let system = hub.system;
            match hub.store.post(
                system,
                Key::new("cloud.load", 0),
                Bytes::from(json),
                now_ms(),
            ) {
                Ok((_, fan)) => {
                    hub.deliver(fan, shared.config.max_frame, true);
                    hub.flush_holds(shared.config.max_frame);
                }
                Err(e) => tracing::warn!(error = %e, "could not write cloud.load/0"),
            }
        }
        // Peers hear the next report after `load_interval`: the membership protocol tells
        // whether a peer lives, so nothing needs repeating in between.
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(shared.config.load_interval) => {}
        }
    }
}

/// Reports an idle node would repeat unchanged go to peers at most every this many
/// `load_interval`s: each is a frame to every peer, and a mesh of 64 idle nodes would spend
/// a fair share of its CPU telling itself nothing changed.
const REPEAT_EVERY: u32 = 5;

/// Whether `now` is worth a frame to every peer: placement and drains read clients and
/// capacity exactly, the rest roughly, so CPU must move by 2 points, memory or rows by a
/// tenth, msgs/s by a fifth; anything else waits for the next repeat.
fn news_for_peers(
    told: Option<&(LoadInfo, std::time::Instant)>,
    now: &LoadInfo,
    interval: std::time::Duration,
) -> bool {
    let Some((last, at)) = told else {
        return true;
    };
    let moved = |a: f64, b: f64, part: f64| (a - b).abs() > a.abs().max(b.abs()) * part;
    at.elapsed() >= interval * REPEAT_EVERY
        || last.clients != now.clients
        || last.capacity != now.capacity
        || (last.cpu_percent - now.cpu_percent).abs() >= 2.0
        || moved(last.memory_bytes as f64, now.memory_bytes as f64, 0.1)
        || moved(last.rows as f64, now.rows as f64, 0.1)
        || moved(
            f64::from(last.msgs_per_sec),
            f64::from(now.msgs_per_sec),
            0.2,
        )
}

/// This process's resident memory, from /proc/self/status (Linux). Read directly: asking
/// sysinfo for one process makes it list every process and thread under /proc, a cost that
/// grows with everything else running on the machine (64 nodes on one host: hundreds of
/// opens per report, most of an idle node's system calls).
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_rss(&status)
}

/// `VmRSS:   12345 kB` in bytes.
fn parse_vm_rss(status: &str) -> Option<u64> {
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// A peer's load report.
pub(super) fn on_load(shared: &Shared, node: NodeId, info: LoadInfo) {
    let mut hub = shared.hub();
    // An idle node's report repeats its last one; only a new one is news.
    if hub.loads.insert(node, info) != Some(info) {
        let _ = hub.events.send(MeshEvent::Load { node, info });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_hear_of_changes_that_matter_and_a_repeat_now_and_then() {
        let interval = std::time::Duration::from_secs(2);
        let base = LoadInfo {
            clients: 10,
            capacity: 100,
            cpu_percent: 5.0,
            rows: 1000,
            memory_bytes: 20 << 20,
            msgs_per_sec: 100.0,
        };
        assert!(news_for_peers(None, &base, interval), "the first is news");
        let just = (base, std::time::Instant::now());
        let same = |f: fn(&mut LoadInfo)| {
            let mut now = base;
            f(&mut now);
            news_for_peers(Some(&just), &now, interval)
        };
        assert!(!same(|_| {}));
        assert!(!same(|l| l.cpu_percent = 6.5));
        assert!(!same(|l| l.memory_bytes += 1 << 20));
        assert!(!same(|l| l.msgs_per_sec = 110.0));
        assert!(same(|l| l.clients = 11));
        assert!(same(|l| l.capacity = 50));
        assert!(same(|l| l.cpu_percent = 7.5));
        assert!(same(|l| l.rows = 1200));
        assert!(same(|l| l.memory_bytes = 25 << 20));
        assert!(same(|l| l.msgs_per_sec = 200.0));
        let Some(long_ago) = std::time::Instant::now().checked_sub(interval * REPEAT_EVERY) else {
            return;
        };
        assert!(news_for_peers(Some(&(base, long_ago)), &base, interval));
    }

    #[test]
    fn reads_resident_memory_from_proc_status() {
        let status = "Name:\tcloudd\nVmPeak:\t  900 kB\nVmRSS:\t   20480 kB\nThreads:\t8\n";
        assert_eq!(parse_vm_rss(status), Some(20480 * 1024));
        assert_eq!(parse_vm_rss("Name:\tcloudd\n"), None);
        assert_eq!(parse_vm_rss("VmRSS:\tlots kB\n"), None);
        assert!(resident_bytes().is_some_and(|b| b > 1 << 20));
    }
}
