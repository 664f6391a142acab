//! Load generation for `cloudctl bench` (DESIGN §9): N real QUIC clients, each with D
//! requests in flight, posting and getting against a node; reports throughput and latency
//! percentiles. Lives in the library so benches and the CLI share one implementation.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;

use crate::client::{Client, ClientError, ClientOptions};
use crate::proto::{GetQuery, Key, KeySpec};

/// Knobs of the throughput scenario.
#[derive(Debug, Clone)]
pub struct ThroughputOptions {
    /// Concurrent client connections.
    pub clients: usize,
    /// Requests in flight per client (pipelining depth).
    pub pipeline: usize,
    /// How long to measure (after connecting).
    pub duration: Duration,
    /// Bytes of data per post.
    pub value_size: usize,
    /// Distinct secondary keys each client cycles through.
    pub keys: u32,
}

impl Default for ThroughputOptions {
    fn default() -> Self {
        ThroughputOptions {
            clients: 50,
            pipeline: 1,
            duration: Duration::from_secs(10),
            value_size: 32,
            keys: 100,
        }
    }
}

/// What a run measured.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    /// Operations completed (each post and each get counts as one).
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

/// Single-node post+get throughput: each worker alternates a post of its key and a get of it.
pub async fn throughput(
    addr: SocketAddr,
    client: ClientOptions,
    opts: &ThroughputOptions,
) -> Result<Report, ClientError> {
    let mut clients = Vec::with_capacity(opts.clients);
    for _ in 0..opts.clients.max(1) {
        clients.push(Client::connect(addr, client.clone()).await?);
    }
    let value = Bytes::from(vec![0x42; opts.value_size]);
    let start = Instant::now();
    let deadline = start + opts.duration;
    let mut tasks = Vec::new();
    for (c, client) in clients.iter().enumerate() {
        for w in 0..opts.pipeline.max(1) {
            let client = client.clone();
            let value = value.clone();
            let keys = opts.keys.max(1);
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::with_capacity(1 << 16);
                let mut errors = 0u64;
                let mut i = w as u32;
                let primary = format!("bench.{c}");
                while Instant::now() < deadline {
                    let key = Key::new(primary.clone(), i % keys);
                    i = i.wrapping_add(1);
                    let t = Instant::now();
                    let ok = if i.is_multiple_of(2) {
                        client.post(key, value.clone()).await.is_ok()
                    } else {
                        let q = GetQuery {
                            keys: vec![KeySpec::exact(&key)],
                            ..GetQuery::default()
                        };
                        client.get_page(q).await.is_ok()
                    };
                    if ok {
                        lat.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
                    } else {
                        errors += 1;
                    }
                }
                (lat, errors)
            }));
        }
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        if let Ok((lat, e)) = t.await {
            all.extend(lat);
            errors += e;
        }
    }
    let elapsed = start.elapsed();
    for c in clients {
        c.close().await;
    }
    Ok(Report::from_latencies(&mut all, errors, elapsed))
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
}

/// Knobs of the fan-out scenario.
#[derive(Debug, Clone)]
pub struct FanoutOptions {
    /// Posts per second, across all posters.
    pub rate: u32,
    /// How long to post.
    pub duration: Duration,
    /// Concurrent posting connections.
    pub posters: usize,
    /// Distinct keys posted to.
    pub keys: u32,
}

impl Default for FanoutOptions {
    fn default() -> Self {
        FanoutOptions {
            rate: 10_000,
            duration: Duration::from_secs(10),
            posters: 4,
            keys: 1000,
        }
    }
}

/// What the fan-out scenario measured.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FanoutReport {
    /// Latency from post to notification at the subscriber (`ops` = notifications).
    #[serde(flatten)]
    pub latency: Report,
    /// Posts acknowledged.
    pub posted: u64,
    /// Acknowledged posts whose notification never arrived.
    pub missing: u64,
}

fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Posts on one node at a fixed rate while a subscriber on another node measures how long
/// each change takes to reach it (post sent → notification received, one process clock).
pub async fn fanout(
    post_addr: SocketAddr,
    post_client: ClientOptions,
    sub_addr: SocketAddr,
    sub_client: ClientOptions,
    opts: &FanoutOptions,
) -> Result<FanoutReport, ClientError> {
    let subscriber = Client::connect(sub_addr, sub_client).await?;
    let (_, mut sub) = subscriber
        .subscribe(vec![KeySpec::primary("bench.fanout")], None)
        .await?;
    let mut posters = Vec::new();
    for _ in 0..opts.posters.max(1) {
        posters.push(Client::connect(post_addr, post_client.clone()).await?);
    }
    let receiver = tokio::spawn(async move {
        let mut lat = Vec::with_capacity(1 << 20);
        while let Some(event) = sub.next().await {
            if let crate::client::Event::Updated(row) = event {
                if let Ok(sent) = <[u8; 8]>::try_from(&row.data[..]) {
                    let us = unix_micros().saturating_sub(u64::from_le_bytes(sent));
                    lat.push(u32::try_from(us).unwrap_or(u32::MAX));
                }
            }
        }
        lat
    });
    let n = posters.len() as u32;
    let per_poster = (f64::from(opts.rate.max(1)) / f64::from(n)).max(1.0);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (p, client) in posters.iter().enumerate() {
        let client = client.clone();
        let keys = opts.keys.max(1);
        let duration = opts.duration;
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / per_poster));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let (mut posted, mut errors) = (0u64, 0u64);
            let mut i = p as u32;
            while start.elapsed() < duration {
                tick.tick().await;
                let key = Key::new("bench.fanout", i % keys);
                i = i.wrapping_add(n);
                match client
                    .post(key, Bytes::copy_from_slice(&unix_micros().to_le_bytes()))
                    .await
                {
                    Ok(_) => posted += 1,
                    Err(_) => errors += 1,
                }
            }
            (posted, errors)
        }));
    }
    let (mut posted, mut errors) = (0, 0);
    for t in tasks {
        if let Ok((p, e)) = t.await {
            posted += p;
            errors += e;
        }
    }
    let elapsed = start.elapsed();
    // Let the last notifications arrive: a ping through the subscriber's node follows them
    // only for local changes, so allow the remote ones a bounded moment too.
    let _ = subscriber.ping().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    subscriber.clone().close().await;
    for c in posters {
        c.close().await;
    }
    let mut lat = receiver.await.unwrap_or_default();
    let received = lat.len() as u64;
    Ok(FanoutReport {
        latency: Report::from_latencies(&mut lat, errors, elapsed),
        posted,
        missing: posted.saturating_sub(received),
    })
}

/// A local mesh of in-process nodes on 127.0.0.1 for the scenarios that need to drive the
/// nodes themselves (migration, drain). Data directories are temporary.
async fn local_mesh(n: usize) -> Result<(Vec<crate::Node>, Vec<std::path::PathBuf>), String> {
    let mut secret = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut secret);
    let secret = crate::mesh::MeshSecret::new(secret.to_vec()).map_err(|e| e.to_string())?;
    let mut nodes: Vec<crate::Node> = Vec::new();
    let mut dirs = Vec::new();
    for i in 0..n {
        let dir =
            std::env::temp_dir().join(format!("cloudmesh-bench-{}-{i}", rand::random::<u64>()));
        let mut c = crate::NodeConfig::new(&dir);
        c.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        c.name = format!("bench-{i}");
        c.secret = Some(secret.clone());
        c.rebalance_interval = Duration::ZERO;
        c.load_interval = Duration::from_millis(200);
        if let Some(first) = nodes.first() {
            c.join = vec![first.local_addr().to_string()];
        }
        nodes.push(crate::Node::start(c).await.map_err(|e| e.to_string())?);
        dirs.push(dir);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while !nodes
        .iter()
        .all(|x| x.peers().len() == n - 1 && x.loads().len() == n)
    {
        if Instant::now() > deadline {
            return Err("the local mesh did not form within 20 s".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok((nodes, dirs))
}

async fn stop_mesh(nodes: Vec<crate::Node>, dirs: Vec<std::path::PathBuf>) {
    for n in nodes {
        n.shutdown("benchmark done").await;
    }
    for d in dirs {
        let _ = std::fs::remove_dir_all(d);
    }
}

fn pin_of(node: &crate::Node) -> ClientOptions {
    let pin = crate::transport::parse_fingerprint(node.fingerprint()).unwrap_or([0; 32]);
    ClientOptions::new(crate::transport::Trust::Pin(pin))
}

/// What the migration scenario measured.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MigrationReport {
    /// Migrations completed.
    pub migrations: u64,
    /// Migrations that did not complete (rolled back or raced).
    pub failed: u64,
    /// Errors any client saw (must be 0).
    pub client_errors: u64,
    /// Per migration: the longest gap between a client's successful posts around its move.
    pub stall_p50_ms: f64,
    /// 99th percentile of that.
    pub stall_p99_ms: f64,
    /// Worst of that.
    pub stall_max_ms: f64,
    /// Gap between successful posts of clients that were not moving (the baseline).
    pub baseline_p99_ms: f64,
}

/// Client-visible stall during migration (§9): `clients` clients on one node of a local
/// three-node mesh post continuously; `migrations` of them are moved one after another;
/// for each move, the longest gap between that client's successful posts is its stall.
pub async fn migration(clients: usize, migrations: usize) -> Result<MigrationReport, String> {
    let (nodes, dirs) = local_mesh(3).await?;
    let opts = pin_of(&nodes[0]);
    let mut cs = Vec::new();
    for _ in 0..clients.max(1) {
        cs.push(
            Client::connect(nodes[0].local_addr(), opts.clone())
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for (i, c) in cs.iter().enumerate() {
        let c = c.clone();
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            // (time of each success) and errors
            let mut times = Vec::with_capacity(4096);
            let mut errors = 0u64;
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match c
                    .post(
                        Key::new("bench.migration", i as u32),
                        Bytes::copy_from_slice(&n.to_le_bytes()),
                    )
                    .await
                {
                    Ok(_) => times.push(Instant::now()),
                    Err(_) => errors += 1,
                }
                n = n.wrapping_add(1);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            (times, errors)
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut windows = Vec::new();
    let (mut done, mut failed) = (0u64, 0u64);
    for k in 0..migrations {
        let idx = k % cs.len();
        let client = cs[idx].id();
        let from = nodes.iter().find(|n| n.clients().contains(&client));
        let Some(from) = from else {
            failed += 1;
            continue;
        };
        let to = nodes
            .iter()
            .find(|n| n.id() != from.id())
            .map(|n| n.id())
            .unwrap_or(from.id());
        let start = Instant::now();
        match from.migrate(client, to).await {
            Ok(()) => done += 1,
            Err(_) => failed += 1,
        }
        // The client finishes switching shortly after the handover: include that.
        let deadline = Instant::now() + Duration::from_secs(2);
        while cs[idx].node_id() != to && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        windows.push((idx, start, Instant::now() + Duration::from_millis(50)));
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut all_times = Vec::new();
    let mut client_errors = 0;
    for w in writers {
        if let Ok((t, e)) = w.await {
            all_times.push(t);
            client_errors += e;
        } else {
            all_times.push(Vec::new());
        }
    }
    let max_gap = |times: &[Instant], from: Instant, to: Instant| -> u32 {
        let inside: Vec<Instant> = times
            .iter()
            .copied()
            .filter(|t| *t >= from && *t <= to)
            .collect();
        let mut points = vec![from];
        points.extend(inside);
        points.push(to.min(*times.last().unwrap_or(&to)).max(from));
        points
            .windows(2)
            .map(|w| {
                u32::try_from(w[1].saturating_duration_since(w[0]).as_micros()).unwrap_or(u32::MAX)
            })
            .max()
            .unwrap_or(0)
    };
    let mut stalls: Vec<u32> = windows
        .iter()
        .map(|(i, a, b)| max_gap(&all_times[*i], *a, *b))
        .collect();
    let moved: std::collections::HashSet<usize> = windows.iter().map(|w| w.0).collect();
    let mut baseline: Vec<u32> = all_times
        .iter()
        .enumerate()
        .filter(|(i, _)| !moved.contains(i))
        .flat_map(|(_, t)| {
            t.windows(2)
                .map(|w| u32::try_from(w[1].duration_since(w[0]).as_micros()).unwrap_or(u32::MAX))
                .collect::<Vec<_>>()
        })
        .collect();
    let s = Report::from_latencies(&mut stalls, 0, Duration::from_secs(1));
    let b = Report::from_latencies(&mut baseline, 0, Duration::from_secs(1));
    for c in cs {
        c.close().await;
    }
    stop_mesh(nodes, dirs).await;
    Ok(MigrationReport {
        migrations: done,
        failed,
        client_errors,
        stall_p50_ms: s.p50_ms,
        stall_p99_ms: s.p99_ms,
        stall_max_ms: s.max_ms,
        baseline_p99_ms: b.p99_ms,
    })
}

/// What the drain scenario measured.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DrainReport {
    /// Clients on the drained node at the start.
    pub clients: usize,
    /// Clients the drain moved.
    pub moved: usize,
    /// Wall time of the drain, seconds.
    pub seconds: f64,
}

/// Time to drain `clients` connected clients (each holding one row) from one node of a local
/// three-node mesh (§9 budget: 1,000 clients in < 3 s).
pub async fn drain(clients: usize) -> Result<DrainReport, String> {
    let (nodes, dirs) = local_mesh(3).await?;
    let opts = pin_of(&nodes[0]);
    let mut cs = Vec::new();
    for i in 0..clients {
        let c = Client::connect(nodes[0].local_addr(), opts.clone())
            .await
            .map_err(|e| e.to_string())?;
        c.post(Key::new("bench.drain", i as u32), Bytes::from_static(b"x"))
            .await
            .map_err(|e| e.to_string())?;
        cs.push(c);
    }
    let start = Instant::now();
    let moved = nodes[0].drain().await.map_err(|e| e.to_string())?;
    let seconds = start.elapsed().as_secs_f64();
    for c in cs {
        c.close().await;
    }
    stop_mesh(nodes, dirs).await;
    Ok(DrainReport {
        clients,
        moved,
        seconds,
    })
}
