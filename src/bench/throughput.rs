//! The throughput scenario: N clients, each with D requests in flight, running a mix of
//! posts, gets and subscribes against one or more nodes.

use std::str::FromStr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use serde::Serialize;

use super::{micros, BenchError, Report, Target};
use crate::client::{Client, Subscription};
use crate::proto::{GetQuery, Key, KeySpec};

/// Relative weights of the operations a worker runs, e.g. `post=50,get=50`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mix {
    /// Posts (create or replace one of the worker's rows).
    pub post: u32,
    /// Exact-key gets of one of the worker's rows.
    pub get: u32,
    /// Get+subscribe of one of the worker's keys; the subscription is held until the
    /// worker's next subscribe, so later posts to that key notify it.
    pub subscribe: u32,
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            post: 50,
            get: 50,
            subscribe: 0,
        }
    }
}

impl FromStr for Mix {
    type Err = String;

    fn from_str(s: &str) -> Result<Mix, String> {
        let mut mix = Mix {
            post: 0,
            get: 0,
            subscribe: 0,
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (op, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?} is not OP=WEIGHT (e.g. post=50)"))?;
            let weight: u32 = weight
                .trim()
                .parse()
                .map_err(|_| format!("{weight:?} in {part:?} is not a whole number"))?;
            match op.trim() {
                "post" => mix.post = weight,
                "get" => mix.get = weight,
                "subscribe" | "sub" => mix.subscribe = weight,
                other => {
                    return Err(format!(
                        "unknown operation {other:?}: use post, get and subscribe"
                    ))
                }
            }
        }
        if mix.total() == 0 {
            return Err("the mix has no operation with a weight above 0".into());
        }
        Ok(mix)
    }
}

/// One operation of the mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Post,
    Get,
    Subscribe,
}

impl Mix {
    fn total(&self) -> u32 {
        self.post
            .saturating_add(self.get)
            .saturating_add(self.subscribe)
    }

    /// The weights divided by their greatest common divisor, so `post=50,get=50` runs
    /// post, get, post, get… rather than 50 posts then 50 gets.
    fn reduced(&self) -> Mix {
        fn gcd(a: u32, b: u32) -> u32 {
            if b == 0 {
                a
            } else {
                gcd(b, a % b)
            }
        }
        let g = gcd(gcd(self.post, self.get), self.subscribe).max(1);
        Mix {
            post: self.post / g,
            get: self.get / g,
            subscribe: self.subscribe / g,
        }
    }

    /// The `i`-th operation of a worker's cycle.
    fn op(&self, i: u32) -> Op {
        let slot = i % self.total().max(1);
        if slot < self.post {
            Op::Post
        } else if slot < self.post + self.get {
            Op::Get
        } else {
            Op::Subscribe
        }
    }
}

/// Knobs of the throughput scenario.
#[derive(Debug, Clone)]
pub struct ThroughputOptions {
    /// Concurrent client connections (spread over the targets in turn).
    pub clients: usize,
    /// Requests in flight per client (pipelining depth).
    pub pipeline: usize,
    /// How long to measure (after connecting).
    pub duration: Duration,
    /// Bytes of data per post.
    pub value_size: usize,
    /// Distinct secondary keys each client cycles through.
    pub keys: u32,
    /// What the workers do.
    pub mix: Mix,
    /// Target rate in operations/s over all clients; `None` runs flat out.
    pub rate: Option<u32>,
}

impl Default for ThroughputOptions {
    fn default() -> Self {
        ThroughputOptions {
            clients: 50,
            pipeline: 1,
            duration: Duration::from_secs(10),
            value_size: 32,
            keys: 100,
            mix: Mix::default(),
            rate: None,
        }
    }
}

/// What the throughput scenario measured.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ThroughputReport {
    /// All operations together.
    #[serde(flatten)]
    pub latency: Report,
    /// Posts completed.
    pub posts: u64,
    /// Gets completed.
    pub gets: u64,
    /// Subscribes completed.
    pub subscribes: u64,
    /// Notifications the workers' subscriptions received.
    pub notifications: u64,
}

/// What one worker saw.
#[derive(Debug, Default)]
struct Tally {
    latencies: Vec<u32>,
    errors: u64,
    counts: [u64; 3],
    notifications: u64,
}

/// Runs the scenario: connects every client first, then measures for `duration`.
pub async fn throughput(
    targets: &[Target],
    opts: &ThroughputOptions,
) -> Result<ThroughputReport, BenchError> {
    if targets.is_empty() {
        return Err(BenchError::Mesh("no node to load".into()));
    }
    let mut clients = Vec::with_capacity(opts.clients);
    for i in 0..opts.clients.max(1) {
        let t = &targets[i % targets.len()];
        clients.push(Client::connect(t.addr, t.client.clone()).await?);
    }
    let value = Bytes::from(vec![0x42; opts.value_size]);
    let mix = opts.mix.reduced();
    let workers = clients.len() * opts.pipeline.max(1);
    // Each worker paces itself at its share of the rate.
    let period = opts
        .rate
        .filter(|r| *r > 0)
        .map(|r| Duration::from_secs_f64(workers as f64 / f64::from(r)));
    let start = Instant::now();
    let deadline = start + opts.duration;
    let mut tasks = Vec::with_capacity(clients.len());
    for (c, client) in clients.iter().enumerate() {
        let mut in_flight = Vec::with_capacity(opts.pipeline.max(1));
        for w in 0..opts.pipeline.max(1) {
            let client = client.clone();
            let value = value.clone();
            let keys = opts.keys.max(1);
            in_flight.push(async move {
                let mut tally = Tally {
                    latencies: Vec::with_capacity(1 << 16),
                    ..Tally::default()
                };
                let mut held: Option<Subscription> = None;
                let mut tick = period.map(|p| {
                    let mut t = tokio::time::interval(p);
                    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    t
                });
                let primary = format!("bench.{c}");
                let mut i = w as u32;
                // One clock read per operation: the end of one is the start of the next
                // (and the deadline check), so the harness costs the machine little.
                let mut now = Instant::now();
                while now < deadline {
                    if let Some(tick) = tick.as_mut() {
                        tick.tick().await;
                        now = Instant::now();
                    }
                    // Workers of one client start at different keys and ops.
                    let key = Key::new(primary.clone(), i % keys);
                    let op = mix.op(i);
                    i = i.wrapping_add(1);
                    let t = now;
                    let ok = match op {
                        Op::Post => client.post(key, value.clone()).await.is_ok(),
                        Op::Get => {
                            let q = GetQuery {
                                keys: vec![KeySpec::exact(&key)],
                                ..GetQuery::default()
                            };
                            client.get_page(q).await.is_ok()
                        }
                        Op::Subscribe => {
                            // The key this worker touches next, so that a following post
                            // notifies the subscription.
                            let next = KeySpec::exact(&Key::new(primary.clone(), i % keys));
                            match client.subscribe(vec![next], None).await {
                                Ok((_, sub)) => {
                                    held = Some(sub);
                                    true
                                }
                                Err(_) => false,
                            }
                        }
                    };
                    now = Instant::now();
                    if ok {
                        tally.latencies.push(micros(now - t));
                        tally.counts[op as usize] += 1;
                    } else {
                        tally.errors += 1;
                    }
                    if let Some(sub) = held.as_mut() {
                        while sub.try_next().is_some() {
                            tally.notifications += 1;
                        }
                    }
                }
                tally
            });
        }
        // One task per client runs its D requests in flight, as an application would:
        // answers that arrive together wake it once, not D tasks. `FuturesUnordered` polls
        // only the requests whose answer came (`join_all` would poll all D each time).
        tasks.push(tokio::spawn(async move {
            let mut running: FuturesUnordered<_> = in_flight.into_iter().collect();
            let mut tallies = Vec::with_capacity(running.len());
            while let Some(t) = running.next().await {
                tallies.push(t);
            }
            tallies
        }));
    }
    let mut all = Vec::new();
    let (mut errors, mut counts, mut notifications) = (0, [0u64; 3], 0);
    for t in tasks {
        let Ok(tallies) = t.await else { continue };
        for tally in tallies {
            all.extend(tally.latencies);
            errors += tally.errors;
            notifications += tally.notifications;
            for (sum, n) in counts.iter_mut().zip(tally.counts) {
                *sum += n;
            }
        }
    }
    let elapsed = start.elapsed();
    super::close_all(clients).await;
    Ok(ThroughputReport {
        latency: Report::from_latencies(&mut all, errors, elapsed),
        posts: counts[Op::Post as usize],
        gets: counts[Op::Get as usize],
        subscribes: counts[Op::Subscribe as usize],
        notifications,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixes_parse_and_interleave() {
        let m: Mix = "post=50,get=50".parse().expect("parses");
        let r = m.reduced();
        let ops: Vec<Op> = (0..4).map(|i| r.op(i)).collect();
        assert_eq!(ops, [Op::Post, Op::Get, Op::Post, Op::Get]);
        let m: Mix = "post=2, get=1, subscribe=1".parse().expect("parses");
        let ops: Vec<Op> = (0..4).map(|i| m.reduced().op(i)).collect();
        assert_eq!(ops, [Op::Post, Op::Post, Op::Get, Op::Subscribe]);
        assert_eq!(
            "get=10".parse::<Mix>().map(|m| m.reduced().op(7)),
            Ok(Op::Get)
        );
    }

    #[test]
    fn bad_mixes_say_what_is_wrong() {
        for (text, says) in [
            ("post", "OP=WEIGHT"),
            ("post=x", "whole number"),
            ("put=1", "unknown operation"),
            ("post=0,get=0", "no operation"),
            ("", "no operation"),
        ] {
            let e = text.parse::<Mix>().expect_err(text);
            assert!(e.contains(says), "{text:?}: {e}");
        }
    }
}
