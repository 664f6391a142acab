//! Load generation for `cloudctl bench` (DESIGN §9): N real QUIC clients, each with D
//! requests in flight, posting and getting against a node; reports throughput and latency
//! percentiles. Lives in the library so benches and the CLI share one implementation.

use std::net::SocketAddr;
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
                    let ok = if i % 2 == 0 {
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
