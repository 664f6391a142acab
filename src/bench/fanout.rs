//! The fan-out scenario (budget: post on node A → notification at a subscriber on node C, p99
//! < 5 ms at 10k/s): posters on some nodes at a fixed total rate, one subscriber elsewhere
//! measuring each change's delay (post sent → notification received, one process clock).
//! With `pipeline` > 1 each poster keeps that many posts in flight, as a publisher that
//! batches does: with a rate too high to reach, this measures how many deliveries per
//! second the notification path carries.

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;

use super::{BenchError, Report, Target};
use crate::client::{Client, Event};
use crate::proto::{Key, KeySpec};

/// How long notifications still on their way after the last post may take to count.
const DRAIN_WAIT: Duration = Duration::from_secs(5);

/// Knobs of the fan-out scenario.
#[derive(Debug, Clone)]
pub struct FanoutOptions {
    /// Posts per second, across all posters.
    pub rate: u32,
    /// How long to post.
    pub duration: Duration,
    /// Concurrent posting connections (spread over the poster targets in turn).
    pub posters: usize,
    /// Distinct keys posted to.
    pub keys: u32,
    /// Bytes of data per post (at least 8: the send time travels in the row).
    pub value_size: usize,
    /// Posts in flight per poster (1: each waits for the previous one's acknowledgement).
    pub pipeline: usize,
}

impl Default for FanoutOptions {
    fn default() -> Self {
        FanoutOptions {
            rate: 10_000,
            duration: Duration::from_secs(10),
            posters: 4,
            keys: 1000,
            value_size: 32,
            pipeline: 1,
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

/// A monotonic microsecond clock shared by posters and the subscriber (same process).
fn clock(origin: Instant) -> u64 {
    u64::try_from(origin.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// Runs the scenario; `posters` are the nodes posted to, `subscriber` the node watched from.
pub async fn fanout(
    posters: &[Target],
    subscriber: &Target,
    opts: &FanoutOptions,
) -> Result<FanoutReport, BenchError> {
    if posters.is_empty() {
        return Err(BenchError::Mesh("no node to post to".into()));
    }
    let origin = Instant::now();
    let sub_client = Client::connect(subscriber.addr, subscriber.client.clone()).await?;
    let (_, mut sub) = sub_client
        .subscribe(vec![KeySpec::primary("bench.fanout")], None)
        .await?;
    let mut clients = Vec::new();
    for i in 0..opts.posters.max(1) {
        let t = &posters[i % posters.len()];
        clients.push(Client::connect(t.addr, t.client.clone()).await?);
    }
    let (count_tx, mut count_rx) = tokio::sync::watch::channel(0u64);
    let receiver = tokio::spawn(async move {
        let mut lat = Vec::with_capacity(1 << 20);
        while let Some(event) = sub.next().await {
            if let Event::Updated(row) = event {
                if let Some(sent) = row.data.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
                    let us = clock(origin).saturating_sub(u64::from_le_bytes(sent));
                    lat.push(u32::try_from(us).unwrap_or(u32::MAX));
                    let _ = count_tx.send(lat.len() as u64);
                }
            }
        }
        lat
    });
    // Every poster runs `pipeline` post loops at once, each at its share of the rate.
    let depth = opts.pipeline.max(1);
    let n = (clients.len() * depth) as u32;
    let per_loop = (f64::from(opts.rate.max(1)) / f64::from(n)).max(1.0);
    let pad = opts.value_size.saturating_sub(8);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (p, client) in clients.iter().enumerate() {
        let mut in_flight = Vec::with_capacity(depth);
        for d in 0..depth {
            let client = client.clone();
            let keys = opts.keys.max(1);
            let duration = opts.duration;
            let first = (p * depth + d) as u32;
            in_flight.push(async move {
                let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / per_loop));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                let (mut posted, mut errors) = (0u64, 0u64);
                let mut i = first;
                let mut data = Vec::with_capacity(8 + pad);
                while start.elapsed() < duration {
                    tick.tick().await;
                    let key = Key::new("bench.fanout", i % keys);
                    i = i.wrapping_add(n);
                    data.clear();
                    data.extend_from_slice(&clock(origin).to_le_bytes());
                    data.resize(8 + pad, 0x42);
                    match client.post(key, Bytes::copy_from_slice(&data)).await {
                        Ok(_) => posted += 1,
                        Err(_) => errors += 1,
                    }
                }
                (posted, errors)
            });
        }
        // One task per poster drives its posts in flight, as an application would.
        tasks.push(tokio::spawn(async move {
            futures_util::future::join_all(in_flight)
                .await
                .into_iter()
                .fold((0u64, 0u64), |(p, e), (p2, e2)| (p + p2, e + e2))
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
    // Let the last notifications arrive (bounded: what has not come by then is missing).
    let _ = tokio::time::timeout(DRAIN_WAIT, count_rx.wait_for(|n| *n >= posted)).await;
    sub_client.clone().close().await;
    super::close_all(clients).await;
    let mut lat = receiver.await.unwrap_or_default();
    let received = lat.len() as u64;
    Ok(FanoutReport {
        // Throughput is notifications per second of posting, not of the final wait.
        latency: Report::from_latencies(&mut lat, errors, elapsed),
        posted,
        missing: posted.saturating_sub(received),
    })
}
