//! Keeps `cloud.load/0` current: client count, CPU and memory (§3.4), so game clients and
//! the router can see how busy each node is.

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sysinfo::{ProcessesToUpdate, System};

use super::{now_ms, Shared};
use crate::proto::{Key, LoadInfo, PeerFrame};

/// The JSON under `cloud.load/0`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadRecord {
    /// Connected clients.
    pub clients: usize,
    /// Rows stored on this node.
    pub rows: usize,
    /// Machine CPU use, percent of all cores.
    pub cpu: f32,
    /// Resident memory of this node process, bytes.
    pub memory_bytes: u64,
}

pub(super) async fn refresh_loop(shared: Arc<Shared>) {
    let mut sys = System::new();
    let pid = sysinfo::get_current_pid().ok();
    let mut shutdown = shared.shutdown.clone();
    // For msgs/s: requests counted at the last sample, and when.
    let mut last = (0u64, std::time::Instant::now());
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
        let memory_bytes = match pid {
            Some(pid) => {
                sys.refresh_processes(ProcessesToUpdate::Some(&[pid]), true);
                sys.process(pid).map_or(0, |p| p.memory())
            }
            None => 0,
        };
        {
            let mut hub = shared.hub();
            let record = LoadRecord {
                clients: hub.connected_clients(),
                rows: hub.store.stats().rows,
                cpu: sys.global_cpu_usage(),
                memory_bytes,
            };
            let info = LoadInfo {
                clients: u32::try_from(record.clients).unwrap_or(u32::MAX),
                capacity: shared.config.max_clients,
                cpu_percent: record.cpu,
                rows: record.rows as u64,
                memory_bytes,
                msgs_per_sec,
            };
            hub.loads.insert(shared.id, info);
            let _ = hub.events.send(super::MeshEvent::Load {
                node: shared.id,
                info,
            });
            hub.broadcast(&PeerFrame::Load(info), shared.config.max_frame);
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
        // Until the next full report, repeat this one to every peer each keep-alive
        // interval: a peer counts a link that stays silent for its idle timeout as lost
        // (link_loop), so that must never happen to a live link.
        let next = tokio::time::Instant::now() + shared.config.load_interval;
        loop {
            let beat = shared.config.timing.keep_alive;
            let wake = next.min(tokio::time::Instant::now() + beat);
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep_until(wake) => {}
            }
            if tokio::time::Instant::now() >= next {
                break;
            }
            heartbeat(&shared);
        }
    }
}

/// Sends this node's last load report to every peer again (cheap: no store write).
fn heartbeat(shared: &Shared) {
    let hub = shared.hub();
    if let Some(info) = hub.loads.get(&shared.id).copied() {
        hub.broadcast(&PeerFrame::Load(info), shared.config.max_frame);
    }
}
