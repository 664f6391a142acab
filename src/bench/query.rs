//! The query scenario (budgets: a filtered, sorted top-20 over 100,000 rows on a 3-node mesh
//! p99 < 5 ms; a live query's delivery p99 < 5 ms with nothing missing): holders spread over
//! the nodes post server rows, then one client runs queries one after another and measures
//! each; then a watcher runs a live query while a poster changes matching rows at a fixed
//! rate, measuring each event's delay (post sent → event received, one process clock).
//! Last, the area of interest: players spread over the nodes move at a steady total rate
//! while a watcher holds `near(x, y, r)` live over where they roam; every move that enters,
//! changes in or leaves the area (decided by brute force from the posted positions) must
//! reach the watcher as that event, and its final result must equal the final positions'.

use std::collections::{HashMap, HashSet};
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
/// Primary key of the area-of-interest players' rows (apart from the server rows, so the
/// watcher's subscription sees only players).
const AOI_PRIMARY: &str = "bench.aoi";
/// Side of the square the players roam: small beside the area's radius, so about a fifth
/// of them are inside at any time and they keep crossing its edge.
const AOI_SIDE: f64 = 200.0;
/// The watched area's radius, around the square's centre.
const AOI_RADIUS: f64 = 50.0;
/// Largest step of one move along each axis.
const AOI_STEP: f64 = 10.0;
/// How long the watcher's node may take to see every player's first row.
const VISIBLE_WAIT: Duration = Duration::from_secs(30);

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
    /// Moving players in the area-of-interest part (0 skips it).
    pub players: u32,
    /// Moves per second of all players together.
    pub move_rate: u32,
    /// How long the players move.
    pub aoi_duration: Duration,
}

impl Default for QueryOptions {
    fn default() -> Self {
        QueryOptions {
            rows: 100_000,
            holders: 30,
            queries: 2000,
            live_rate: 10_000,
            live_duration: Duration::from_secs(5),
            players: 200,
            move_rate: 2000,
            aoi_duration: Duration::from_secs(5),
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
    /// The area-of-interest part; absent when skipped.
    pub aoi: Option<AoiReport>,
}

/// What the area-of-interest part measured.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AoiReport {
    /// Delay from a move's post to its event at the watcher (`ops` = events that arrived as
    /// expected, `errors` = moves whose post failed, `seconds` = how long players moved).
    #[serde(flatten)]
    pub delay: Report,
    /// Players moving.
    pub players: u32,
    /// The watched area: `near(x, y, radius)`.
    pub x: f64,
    /// See `x`.
    pub y: f64,
    /// See `x`.
    pub radius: f64,
    /// Moves acknowledged.
    pub moves: u64,
    /// Moves the watcher must see as an event (the rest stayed outside the area).
    pub expected: u64,
    /// Of those, how many enter the area.
    pub entered: u64,
    /// Of those, how many move inside it.
    pub updated: u64,
    /// Of those, how many leave it.
    pub left: u64,
    /// Expected events that never arrived (or arrived as another kind).
    pub missing: u64,
    /// Events that arrived but were not expected (or as another kind).
    pub unexpected: u64,
    /// Rows in the watcher's final result.
    pub final_rows: u64,
    /// Whether that result is exactly the players (at their last positions) that a brute
    /// force evaluation of the final positions puts in the area.
    pub final_equal: bool,
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
    let aoi = if opts.players > 0 && opts.move_rate > 0 {
        Some(aoi(targets, last, opts).await?)
    } else {
        None
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
        aoi,
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

/// A change a live query reports for one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Change {
    Entered,
    Updated,
    Left,
}

/// The event a move from a position inside (`was`) or not to one inside (`now`) or not
/// must cause; none when it stays outside.
fn change(was: bool, now: bool) -> Option<Change> {
    match (was, now) {
        (false, false) => None,
        (false, true) => Some(Change::Entered),
        (true, true) => Some(Change::Updated),
        (true, false) => Some(Change::Left),
    }
}

/// Brute force: whether a position lies in the watched area (at most the radius from its
/// centre, as `near` defines it).
fn inside(x: f64, y: f64, center: (f64, f64), radius: f64) -> bool {
    let (dx, dy) = (x - center.0, y - center.1);
    dx * dx + dy * dy <= radius * radius
}

/// One player's row: its position, which player and move it is, and when it was sent.
fn player_json(p: u32, seq: u32, x: f64, y: f64, sent_us: u64) -> String {
    serde_json::json!({ "x": x, "y": y, "p": p, "seq": seq, "sent_us": sent_us }).to_string()
}

/// A coordinate moved by at most one step, kept in the square (reflected at its edges) and
/// rounded to hundredths so the posted JSON and the brute force use the same number.
fn step(rng: &mut impl Rng, v: f64) -> f64 {
    let mut v = v + rng.gen_range(-AOI_STEP..=AOI_STEP);
    if v < 0.0 {
        v = -v;
    }
    if v > AOI_SIDE {
        v = 2.0 * AOI_SIDE - v;
    }
    (v.clamp(0.0, AOI_SIDE) * 100.0).round() / 100.0
}

/// What one player did: where it started, its acknowledged moves (`seq`, x, y) in order,
/// and how many posts failed (after a failure it stops, its position being unknown).
struct Moved {
    start: (f64, f64),
    moves: Vec<(u32, f64, f64)>,
    errors: u64,
}

/// An event the watcher received: player, move, kind, delay in microseconds.
type Seen = (u32, u32, Change, u32);

/// The area-of-interest part: `players` clients spread over `targets` each post a row under
/// [`AOI_PRIMARY`], then move it at `move_rate / players` moves per second each (starts
/// staggered, so the total rate is steady) while a watcher on `watch_at` holds
/// `near(centre, AOI_RADIUS)` live.
async fn aoi(
    targets: &[Target],
    watch_at: &Target,
    opts: &QueryOptions,
) -> Result<AoiReport, BenchError> {
    let origin = Instant::now();
    let n = opts.players;
    let center = (AOI_SIDE / 2.0, AOI_SIDE / 2.0);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut players = Vec::with_capacity(n as usize);
    for i in 0..n as usize {
        let t = &targets[i % targets.len()];
        let client = Client::connect(t.addr, t.client.clone()).await?;
        // Anywhere in the square: a fifth or so start inside.
        let start = (
            (rng.gen_range(0.0..AOI_SIDE) * 100.0_f64).round() / 100.0,
            (rng.gen_range(0.0..AOI_SIDE) * 100.0_f64).round() / 100.0,
        );
        players.push((client, start));
    }
    let posts = players.iter().enumerate().map(|(p, (client, (x, y)))| {
        let data = player_json(p as u32, 0, *x, *y, clock(origin));
        client.post(Key::new(AOI_PRIMARY, p as u32), data)
    });
    let failed = join_all(posts).await.iter().filter(|r| r.is_err()).count();
    if failed > 0 {
        return Err(BenchError::Mesh(format!(
            "{failed} players could not post their first position"
        )));
    }

    // The watcher's node learns of rows held elsewhere asynchronously; the live query
    // starts once it sees every player, so its first result is the whole truth.
    let watcher = Client::connect(watch_at.addr, watch_at.client.clone()).await?;
    let every = Query::on([KeySpec::primary(AOI_PRIMARY)])
        .build()
        .map_err(crate::client::ClientError::from)?;
    let deadline = Instant::now() + VISIBLE_WAIT;
    loop {
        let seen = watcher.query_all(every.clone()).await?.rows.len();
        if seen >= n as usize {
            break;
        }
        if Instant::now() > deadline {
            return Err(BenchError::Mesh(format!(
                "the watcher's node sees only {seen} of {n} players"
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let area = Query::on([KeySpec::primary(AOI_PRIMARY)]).filter(near(
        Point {
            x: center.0,
            y: center.1,
            z: None,
        },
        AOI_RADIUS,
    ));
    let (_, mut live) = watcher.watch_query(&area).await?;
    let (count_tx, mut count_rx) = tokio::sync::watch::channel(0usize);
    let receiver = tokio::spawn(async move {
        let mut seen: Vec<Seen> = Vec::with_capacity(1 << 16);
        while let Some(event) = live.next().await {
            let now = clock(origin);
            let kind = match &event {
                QueryEvent::Entered(_) => Change::Entered,
                QueryEvent::Updated(_) => Change::Updated,
                QueryEvent::Left { .. } => Change::Left,
            };
            let v = serde_json::from_slice::<serde_json::Value>(&event.row().data).ok();
            let field = |name: &str| v.as_ref().and_then(|v| v[name].as_u64());
            if let (Some(p), Some(seq), Some(sent)) = (field("p"), field("seq"), field("sent_us")) {
                let us = u32::try_from(now.saturating_sub(sent)).unwrap_or(u32::MAX);
                let p = u32::try_from(p).unwrap_or(u32::MAX);
                let seq = u32::try_from(seq).unwrap_or(u32::MAX);
                seen.push((p, seq, kind, us));
                let _ = count_tx.send(seen.len());
            }
        }
        (seen, live)
    });

    // Each player moves every `period`, its first move offset by its share of one period.
    let period = Duration::from_secs_f64(f64::from(n) / f64::from(opts.move_rate.max(1)));
    let begin = tokio::time::Instant::now();
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(n as usize);
    for (p, (client, first)) in players.iter().enumerate() {
        let client = client.clone();
        let first = *first;
        let offset = period.mul_f64(p as f64 / f64::from(n));
        let duration = opts.aoi_duration;
        tasks.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(1000 + p as u64);
            let mut tick = tokio::time::interval_at(begin + offset, period);
            // A late move is sent late, not in a burst: the rate stays steady.
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut moved = Moved {
                start: first,
                moves: Vec::new(),
                errors: 0,
            };
            let (mut x, mut y) = first;
            let mut seq = 0u32;
            while start.elapsed() < duration {
                tick.tick().await;
                seq += 1;
                let (nx, ny) = (step(&mut rng, x), step(&mut rng, y));
                let data = player_json(p as u32, seq, nx, ny, clock(origin));
                // One move at a time per player: the row's versions follow the moves.
                if client
                    .post(Key::new(AOI_PRIMARY, p as u32), data)
                    .await
                    .is_err()
                {
                    moved.errors += 1;
                    break;
                }
                (x, y) = (nx, ny);
                moved.moves.push((seq, x, y));
            }
            moved
        }));
    }
    let mut all = Vec::with_capacity(n as usize);
    for t in tasks {
        all.push(
            t.await
                .map_err(|e| BenchError::Mesh(format!("a player failed: {e}")))?,
        );
    }
    let elapsed = start.elapsed();

    // Brute force: the event each move must cause, and who is inside at the end.
    let mut expected: HashMap<(u32, u32), Change> = HashMap::new();
    let mut final_inside: HashSet<(u32, u32)> = HashSet::new();
    let (mut moves, mut errors) = (0u64, 0u64);
    for (p, moved) in all.iter().enumerate() {
        let p = p as u32;
        errors += moved.errors;
        moves += moved.moves.len() as u64;
        let mut was = inside(moved.start.0, moved.start.1, center, AOI_RADIUS);
        let mut last = 0;
        for &(seq, x, y) in &moved.moves {
            let now = inside(x, y, center, AOI_RADIUS);
            if let Some(c) = change(was, now) {
                expected.insert((p, seq), c);
            }
            (was, last) = (now, seq);
        }
        if was {
            final_inside.insert((p, last));
        }
    }
    let count = |c: Change| expected.values().filter(|e| **e == c).count() as u64;
    let (entered, updated, left) = (
        count(Change::Entered),
        count(Change::Updated),
        count(Change::Left),
    );

    let want = expected.len();
    let _ = tokio::time::timeout(DRAIN_WAIT, count_rx.wait_for(|got| *got >= want)).await;
    watcher.clone().close().await;
    let (seen, live) = receiver
        .await
        .map_err(|e| BenchError::Mesh(format!("the watcher failed: {e}")))?;
    for (client, _) in players {
        client.close().await;
    }

    let mut lat = Vec::with_capacity(seen.len());
    let mut unexpected = 0u64;
    let mut arrived = HashSet::new();
    for (p, seq, kind, us) in seen {
        if expected.get(&(p, seq)) == Some(&kind) && arrived.insert((p, seq)) {
            lat.push(us);
        } else {
            unexpected += 1;
        }
    }
    let missing = (want - arrived.len()) as u64;
    let result: Vec<Option<(u32, u32)>> = live
        .all()
        .iter()
        .map(|row| {
            let v = serde_json::from_slice::<serde_json::Value>(&row.data).ok()?;
            let seq = u32::try_from(v["seq"].as_u64()?).ok()?;
            Some((row.key.secondary, seq))
        })
        .collect();
    let final_rows = result.len() as u64;
    let final_set: HashSet<(u32, u32)> = result.iter().flatten().copied().collect();
    let final_equal = result.iter().all(Option::is_some)
        && final_set.len() == result.len()
        && final_set == final_inside;
    Ok(AoiReport {
        delay: Report::from_latencies(&mut lat, errors, elapsed),
        players: n,
        x: center.0,
        y: center.1,
        radius: AOI_RADIUS,
        moves,
        expected: want as u64,
        entered,
        updated,
        left,
        missing,
        unexpected,
        final_rows,
        final_equal,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_move_causes_the_event_its_two_positions_decide() {
        assert_eq!(change(false, false), None);
        assert_eq!(change(false, true), Some(Change::Entered));
        assert_eq!(change(true, true), Some(Change::Updated));
        assert_eq!(change(true, false), Some(Change::Left));
        // The edge is inside, as `near` has it.
        assert!(inside(150.0, 100.0, (100.0, 100.0), 50.0));
        assert!(!inside(150.01, 100.0, (100.0, 100.0), 50.0));
    }

    #[test]
    fn steps_stay_in_the_square() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut v = 0.0;
        for _ in 0..10_000 {
            let next = step(&mut rng, v);
            assert!((0.0..=AOI_SIDE).contains(&next), "{next}");
            assert!((next - v).abs() <= AOI_STEP + 0.01, "{v} -> {next}");
            v = next;
        }
    }
}
