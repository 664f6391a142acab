//! The query scenario (budgets: a filtered, sorted top-20 over 100,000 rows on a 3-node mesh
//! p99 < 5 ms; a live query's delivery p99 < 5 ms with nothing missing): holders spread over
//! the nodes post server rows, then one client runs queries one after another and measures
//! each; then a watcher runs a live query while a poster changes matching rows at a fixed
//! rate, measuring each event's delay (post sent → event received, one process clock).

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::{micros, BenchError, Report, Target};
use crate::client::{Client, QueryEvent};
use crate::proto::{Key, KeySpec, Point};
use crate::query::{field, near, Query};

/// Primary key of the scenario's rows.
const PRIMARY: &str = "bench.query";
/// Posts in flight per holder while loading.
const IN_FLIGHT: usize = 256;
/// How long events still on their way after the last post may take to count.
const DRAIN_WAIT: Duration = Duration::from_secs(5);
/// The game world's side, for positions.
const WORLD: f64 = 1000.0;

/// Knobs of the query scenario.
#[derive(Debug, Clone)]
pub struct QueryOptions {
    /// Rows posted in all.
    pub rows: u32,
    /// Connections holding them, spread over the nodes in turn.
    pub holders: usize,
    /// Top-20 queries measured (and as many area-of-interest queries).
    pub queries: u32,
    /// Changes per second during the live part (0 skips it).
    pub live_rate: u32,
    /// How long the live part posts.
    pub live_duration: Duration,
}

impl Default for QueryOptions {
    fn default() -> Self {
        QueryOptions {
            rows: 100_000,
            holders: 30,
            queries: 2000,
            live_rate: 10_000,
            live_duration: Duration::from_secs(5),
        }
    }
}

/// What the query scenario measured.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct QueryReport {
    /// Rows loaded.
    pub rows: u64,
    /// Seconds the load took.
    pub load_seconds: f64,
    /// `region = "eu" and players < 32`, sorted by players, limit 20 (`ops` = queries);
    /// its fields are the report's own, as in every scenario.
    #[serde(flatten)]
    pub top20: Report,
    /// Rows in the mesh the top-20 filter matches (checked once, paging to the end).
    pub top20_matching: u64,
    /// `near(x, y, 50)` at random centres, all matches (`ops` = queries).
    pub near: Report,
    /// Rows the area-of-interest queries returned on average.
    pub near_rows_avg: f64,
    /// Answers that named a node as incomplete (counted among errors too).
    pub incomplete: u64,
    /// Live-query event delay (`ops` = events); absent when the live part is skipped.
    pub live: Option<Report>,
    /// Posts acknowledged during the live part.
    pub live_posted: u64,
    /// Acknowledged live-part posts whose event never arrived.
    pub live_missing: u64,
}

fn server_json(rng: &mut impl Rng, i: u32) -> String {
    let region = ["eu", "us", "asia"][rng.gen_range(0..3)];
    let map = ["dust", "harbor", "forest", "docks"][rng.gen_range(0..4)];
    serde_json::json!({
        "name": format!("server-{i}"),
        "region": region,
        "map": map,
        "players": rng.gen_range(0..64),
        "max": 64,
        "x": (rng.gen_range(0.0..WORLD) * 10.0_f64).round() / 10.0,
        "y": (rng.gen_range(0.0..WORLD) * 10.0_f64).round() / 10.0,
    })
    .to_string()
}

fn top20() -> Query {
    Query::on([KeySpec::primary(PRIMARY)])
        .filter(field("region").eq("eu").and(field("players").lt(32)))
        .sort_by("players")
        .limit(20)
}

/// Runs the scenario over `targets` (holders spread over all; queries from the first; the
/// live watcher on the last).
pub async fn query(targets: &[Target], opts: &QueryOptions) -> Result<QueryReport, BenchError> {
    let (Some(first), Some(last)) = (targets.first(), targets.last()) else {
        return Err(BenchError::Mesh("no node to load".into()));
    };
    let holders_n = opts.holders.max(1);
    let mut holders = Vec::new();
    for i in 0..holders_n {
        let t = &targets[i % targets.len()];
        holders.push(Client::connect(t.addr, t.client.clone()).await?);
    }
    // Load: each holder posts its share, IN_FLIGHT at a time.
    let load_start = Instant::now();
    let mut loads = Vec::new();
    for (h, client) in holders.iter().enumerate() {
        let client = client.clone();
        let mine: Vec<u32> = (0..opts.rows)
            .filter(|i| *i as usize % holders_n == h)
            .collect();
        loads.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(h as u64);
            let mut errors = 0u64;
            for chunk in mine.chunks(IN_FLIGHT) {
                let posts = chunk
                    .iter()
                    .map(|&i| client.post(Key::new(PRIMARY, i), server_json(&mut rng, i)));
                errors += join_all(posts).await.iter().filter(|r| r.is_err()).count() as u64;
            }
            errors
        }));
    }
    let mut load_errors = 0;
    for l in loads {
        load_errors += l.await.unwrap_or(1);
    }
    if load_errors > 0 {
        return Err(BenchError::Mesh(format!(
            "{load_errors} posts failed while loading"
        )));
    }
    let load_seconds = load_start.elapsed().as_secs_f64();

    let querier = Client::connect(first.addr, first.client.clone()).await?;
    // Every row visible from the querier (holders tell their nodes' peers what they hold
    // asynchronously), and the number the top-20 filter matches.
    let all = Query::on([KeySpec::primary(PRIMARY)])
        .build()
        .map_err(crate::client::ClientError::from)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = querier.query_all(all.clone()).await?.rows.len();
        if n as u64 >= u64::from(opts.rows) {
            break;
        }
        if Instant::now() > deadline {
            return Err(BenchError::Mesh(format!(
                "only {n} of {} rows visible",
                opts.rows
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let top_all = top20()
        .limit(0)
        .build()
        .map_err(crate::client::ClientError::from)?;
    let top20_matching = querier.query_all(top_all).await?.rows.len() as u64;

    let mut incomplete = 0u64;
    let top = top20();
    let mut lat = Vec::with_capacity(opts.queries as usize);
    let mut errors = 0u64;
    let start = Instant::now();
    for _ in 0..opts.queries {
        let t = Instant::now();
        match querier.query(&top).await {
            Ok(p) if p.incomplete.is_empty() && p.rows.len() as u64 == top20_matching.min(20) => {
                lat.push(micros(t.elapsed()))
            }
            Ok(p) => {
                if !p.incomplete.is_empty() {
                    incomplete += 1;
                }
                errors += 1;
            }
            Err(_) => errors += 1,
        }
    }
    let top20_report = Report::from_latencies(&mut lat, errors, start.elapsed());

    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let mut lat = Vec::with_capacity(opts.queries as usize);
    let (mut errors, mut near_rows) = (0u64, 0u64);
    let start = Instant::now();
    for _ in 0..opts.queries {
        let center = Point {
            x: rng.gen_range(0.0..WORLD),
            y: rng.gen_range(0.0..WORLD),
            z: None,
        };
        let q = Query::on([KeySpec::primary(PRIMARY)]).filter(near(center, 50.0));
        let t = Instant::now();
        match querier.query(&q).await {
            Ok(p) if p.incomplete.is_empty() && p.next.is_none() => {
                lat.push(micros(t.elapsed()));
                near_rows += p.rows.len() as u64;
            }
            Ok(p) => {
                if !p.incomplete.is_empty() {
                    incomplete += 1;
                }
                errors += 1;
            }
            Err(_) => errors += 1,
        }
    }
    let near_report = Report::from_latencies(&mut lat, errors, start.elapsed());
    let near_rows_avg = near_rows as f64 / f64::from(opts.queries.max(1));

    let (live, live_posted, live_missing) = if opts.live_rate > 0 {
        let (r, p, m) = live(first, last, opts).await?;
        (Some(r), p, m)
    } else {
        (None, 0, 0)
    };
    querier.close().await;
    for h in holders {
        h.close().await;
    }
    Ok(QueryReport {
        rows: u64::from(opts.rows),
        load_seconds,
        top20: top20_report,
        top20_matching,
        near: near_report,
        near_rows_avg,
        incomplete,
        live,
        live_posted,
        live_missing,
    })
}

/// A monotonic microsecond clock shared by the poster and the watcher (same process).
fn clock(origin: Instant) -> u64 {
    u64::try_from(origin.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// The live part: a watcher on `watch_at` holds the top-20 query live while a poster on
/// `post_at` changes rows of its own at `live_rate`, each change matching the query (so
/// each must show as an event) and carrying its send time.
async fn live(
    post_at: &Target,
    watch_at: &Target,
    opts: &QueryOptions,
) -> Result<(Report, u64, u64), BenchError> {
    let origin = Instant::now();
    let watcher = Client::connect(watch_at.addr, watch_at.client.clone()).await?;
    let (_, mut stream) = watcher.watch_query(&top20()).await?;
    let poster = Client::connect(post_at.addr, post_at.client.clone()).await?;
    let (count_tx, mut count_rx) = tokio::sync::watch::channel(0u64);
    let receiver = tokio::spawn(async move {
        let mut lat: Vec<u32> = Vec::with_capacity(1 << 20);
        while let Some(event) = stream.next().await {
            let (QueryEvent::Entered(row) | QueryEvent::Updated(row)) = event else {
                continue;
            };
            let sent = serde_json::from_slice::<serde_json::Value>(&row.data)
                .ok()
                .and_then(|v| v["sent_us"].as_u64());
            if let Some(sent) = sent {
                let us = clock(origin).saturating_sub(sent);
                lat.push(u32::try_from(us).unwrap_or(u32::MAX));
                let _ = count_tx.send(lat.len() as u64);
            }
        }
        lat
    });
    let keys = 1000u32;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(
        1.0 / f64::from(opts.live_rate.max(1)),
    ));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let start = Instant::now();
    let (mut posted, mut errors) = (0u64, 0u64);
    let mut pending = Vec::new();
    let mut i = 0u32;
    while start.elapsed() < opts.live_duration {
        tick.tick().await;
        // Always in the result's region and under its bound: every change is an event.
        let data = serde_json::json!({
            "region": "eu",
            "players": 0,
            "name": format!("live-{}", i % keys),
            "sent_us": clock(origin),
        })
        .to_string();
        let key = Key::new("bench.query", 1_000_000 + (i % keys));
        i = i.wrapping_add(1);
        let p = poster.clone();
        pending.push(tokio::spawn(async move { p.post(key, data).await.is_ok() }));
        if pending.len() >= IN_FLIGHT {
            for r in join_all(pending.drain(..)).await {
                match r {
                    Ok(true) => posted += 1,
                    _ => errors += 1,
                }
            }
        }
    }
    for r in join_all(pending).await {
        match r {
            Ok(true) => posted += 1,
            _ => errors += 1,
        }
    }
    let elapsed = start.elapsed();
    let _ = tokio::time::timeout(DRAIN_WAIT, count_rx.wait_for(|n| *n >= posted)).await;
    poster.close().await;
    watcher.clone().close().await;
    let mut lat = receiver.await.unwrap_or_default();
    let received = lat.len() as u64;
    Ok((
        Report::from_latencies(&mut lat, errors, elapsed),
        posted,
        posted.saturating_sub(received),
    ))
}
