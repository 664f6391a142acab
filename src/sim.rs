//! Simulated players: real SDK clients that behave like the players of a small game, for
//! `cloudctl demo` and for trying a mesh out.
//!
//! Each player enters the mesh through a random node (pinning that node's certificate) and
//! reports its position when it connects, so placement puts it on the owner of its zone.
//! It holds its row `players/<n>` (name, position, hp) and re-posts it at every step. It
//! stands in one zone cell at a time: it holds a presence row `cell.X.Y/<n>` there and is
//! subscribed to `cell.X.Y`, so it sees its neighbours come and go. That is interest
//! management as games do it: traffic grows with the players per cell, not with the square
//! of the crowd, as it would if everyone watched `players`. It walks across the zone grid,
//! reporting its position, so the mesh hands it over between nodes as it crosses zones.
//!
//! Players never print: problems go to `tracing` (warn), for the binary to send to a file.
//! A player whose connection is lost for good (its node stopped) connects again.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::client::{Client, ClientError, ClientOptions, Subscription};
use crate::placement::ZoneConfig;
use crate::proto::{Key, KeySpec, Position};
use crate::transport::Trust;

/// The primary key of the players' rows.
pub const PLAYERS: &str = "players";

/// A step (its requests together) that takes longer than this counts as failed, so a
/// player never hangs on a node that stopped answering.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest wait between two attempts to connect.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A node players may enter the mesh through.
#[derive(Debug, Clone)]
pub struct Seed {
    /// Its QUIC address.
    pub addr: SocketAddr,
    /// The SHA-256 of its certificate, as it announced it.
    pub fingerprint: [u8; 32],
}

/// How a crowd behaves.
#[derive(Debug, Clone)]
pub struct CrowdConfig {
    /// Nodes to enter the mesh through (one at random, the others if it does not answer).
    pub seeds: Vec<Seed>,
    /// The world the players walk in: the mesh's zone grid.
    pub world: ZoneConfig,
    /// Shortest and longest pause between two steps; each pause is drawn in between.
    pub step_every: (Duration, Duration),
    /// Distance walked per step, world units.
    pub speed: f32,
    /// Players connecting at once while the crowd comes up.
    pub batch: usize,
    /// Limit on one connection attempt (connect, handshake, following a redirect).
    pub connect_timeout: Duration,
}

impl CrowdConfig {
    /// Players that step every 200–500 ms, a tenth of a cell per step (a cell in about
    /// four seconds), connecting 25 at a time.
    pub fn new(seeds: Vec<Seed>, world: ZoneConfig) -> Self {
        let speed = world.cell_size * 0.1;
        CrowdConfig {
            seeds,
            world,
            step_every: (Duration::from_millis(200), Duration::from_millis(500)),
            speed,
            batch: 25,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// What the crowd has done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrowdCounts {
    /// Players in the crowd.
    pub players: usize,
    /// Players connected now.
    pub connected: usize,
    /// Steps taken (position reported and row posted).
    pub steps: u64,
    /// Changes seen by the players' subscriptions.
    pub events: u64,
    /// Moves to another node (zone handovers, drains, rebalancing).
    pub migrations: u64,
    /// Connections lost and made again.
    pub reconnects: u64,
    /// Failed requests and connection attempts.
    pub errors: u64,
    /// Connected players per serving node name.
    pub by_node: BTreeMap<String, usize>,
}

/// Counters the players update.
#[derive(Debug, Default)]
struct Stats {
    connected: AtomicUsize,
    steps: AtomicU64,
    events: AtomicU64,
    migrations: AtomicU64,
    reconnects: AtomicU64,
    errors: AtomicU64,
    /// Serving node per connected player.
    node_of: Mutex<HashMap<u32, String>>,
}

impl Stats {
    fn set_node(&self, n: u32, node: Option<String>) {
        let mut map = self.node_of.lock().unwrap_or_else(PoisonError::into_inner);
        match node {
            Some(name) => map.insert(n, name),
            None => map.remove(&n),
        };
    }
}

/// A running crowd of simulated players. Dropping it aborts them (their connections
/// close); [`Crowd::stop`] lets them leave properly.
#[derive(Debug)]
pub struct Crowd {
    players: usize,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    stats: Arc<Stats>,
}

impl Crowd {
    /// Brings up `players` players, `config.batch` at a time, and returns once each has
    /// made its first attempt to connect (each within `config.connect_timeout`). Players
    /// whose attempt failed keep trying in the background; [`Crowd::counts`] tells how
    /// many are connected.
    pub async fn start(config: CrowdConfig, players: u32) -> Crowd {
        let config = Arc::new(config);
        let (stop, _) = watch::channel(false);
        let mut crowd = Crowd {
            players: players as usize,
            stop,
            tasks: JoinSet::new(),
            stats: Arc::new(Stats::default()),
        };
        let batch = config.batch.max(1);
        let mut n = 0;
        while n < players {
            let mut first_tries = Vec::new();
            for _ in 0..batch {
                if n >= players {
                    break;
                }
                let (tx, rx) = oneshot::channel();
                first_tries.push(rx);
                crowd.tasks.spawn(player(
                    n,
                    config.clone(),
                    crowd.stats.clone(),
                    crowd.stop.subscribe(),
                    tx,
                ));
                n += 1;
            }
            for rx in first_tries {
                // An error only means that player's task ended early; nothing to wait for.
                let _ = rx.await;
            }
        }
        crowd
    }

    /// What the crowd has done so far.
    pub fn counts(&self) -> CrowdCounts {
        let s = &self.stats;
        let mut by_node = BTreeMap::new();
        for node in s
            .node_of
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
        {
            *by_node.entry(node.clone()).or_insert(0) += 1;
        }
        CrowdCounts {
            players: self.players,
            connected: s.connected.load(Ordering::Relaxed),
            steps: s.steps.load(Ordering::Relaxed),
            events: s.events.load(Ordering::Relaxed),
            migrations: s.migrations.load(Ordering::Relaxed),
            reconnects: s.reconnects.load(Ordering::Relaxed),
            errors: s.errors.load(Ordering::Relaxed),
            by_node,
        }
    }

    /// Tells every player to leave (each closes its connection, so its rows go at once)
    /// and waits up to `within` for them; players still there then are aborted.
    pub async fn stop(mut self, within: Duration) {
        let _ = self.stop.send(true);
        let deadline = Instant::now() + within;
        while let Ok(Some(_)) = tokio::time::timeout_at(deadline, self.tasks.join_next()).await {}
        self.tasks.shutdown().await;
    }
}

/// Resolves once the crowd is told to stop (or is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Why a player's session ended.
enum SessionEnd {
    /// The crowd is stopping.
    Stop,
    /// The connection is gone for good.
    Lost(ClientError),
}

/// One player's life: connect, play until the connection is lost, connect again; until
/// the crowd stops.
async fn player(
    n: u32,
    config: Arc<CrowdConfig>,
    stats: Arc<Stats>,
    mut stop: watch::Receiver<bool>,
    first_try: oneshot::Sender<()>,
) {
    let mut rng = StdRng::from_entropy();
    let mut walker = Walker::new(&config.world, config.speed, &mut rng);
    let mut first_try = Some(first_try);
    let mut backoff = Duration::from_millis(200);
    loop {
        let attempt = tokio::select! {
            r = connect(&config, walker.position(), &mut rng) => r,
            () = stopped(&mut stop) => return,
        };
        let client = match attempt {
            Ok(c) => c,
            Err(e) => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(player = n, error = %e, "cannot connect; trying again");
                if let Some(tx) = first_try.take() {
                    let _ = tx.send(());
                }
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = stopped(&mut stop) => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        backoff = Duration::from_millis(200);
        stats.connected.fetch_add(1, Ordering::Relaxed);
        stats.set_node(n, Some(client.node_name()));
        // Counted before the crowd hears of it, so its first count includes this player.
        if let Some(tx) = first_try.take() {
            let _ = tx.send(());
        }
        let end = play(
            n,
            &client,
            &mut walker,
            &config,
            &stats,
            &mut stop,
            &mut rng,
        )
        .await;
        stats.connected.fetch_sub(1, Ordering::Relaxed);
        stats.set_node(n, None);
        match end {
            SessionEnd::Stop => {
                client.close().await;
                return;
            }
            SessionEnd::Lost(e) => {
                stats.reconnects.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(player = n, error = %e, "connection lost; connecting again");
                drop(client);
            }
        }
    }
}

/// Enters the mesh through the seeds, a random one first, placed by `position`.
async fn connect(
    config: &CrowdConfig,
    position: Position,
    rng: &mut StdRng,
) -> Result<Client, ClientError> {
    if config.seeds.is_empty() {
        return Err(ClientError::Config("no seed nodes given".into()));
    }
    let first = rng.gen_range(0..config.seeds.len());
    let mut last = None;
    for i in 0..config.seeds.len() {
        let seed = &config.seeds[(first + i) % config.seeds.len()];
        let mut opts = ClientOptions::new(Trust::Pin(seed.fingerprint));
        opts.position = Some(position);
        opts.connect_timeout = config.connect_timeout;
        // Bounds the redirect as well as the first connection.
        let attempt = tokio::time::timeout(
            config.connect_timeout,
            Client::connect_mesh(&[seed.addr], opts),
        )
        .await;
        match attempt {
            Ok(Ok(client)) => return Ok(client),
            Ok(Err(e)) => last = Some(e),
            Err(_) => {
                last = Some(ClientError::Connect {
                    addr: seed.addr,
                    reason: format!("no answer within {:?}", config.connect_timeout),
                })
            }
        }
    }
    Err(last.unwrap_or(ClientError::Config("no seed nodes given".into())))
}

/// The primary key of a cell's presence rows.
fn cell_primary((x, y): (u32, u32)) -> String {
    format!("cell.{x}.{y}")
}

/// A player's row: small JSON a person can read in `cloudctl keys players`.
fn player_row(n: u32, p: Position, hp: u32) -> Vec<u8> {
    let round = |v: f32| (f64::from(v) * 10.0).round() / 10.0;
    serde_json::json!({
        "name": format!("player-{n}"),
        "x": round(p.x),
        "y": round(p.y),
        "hp": hp,
    })
    .to_string()
    .into_bytes()
}

fn presence_row(n: u32) -> Vec<u8> {
    serde_json::json!({ "name": format!("player-{n}") })
        .to_string()
        .into_bytes()
}

/// One connected session: take a place in the world, then walk until told to stop or the
/// connection is lost.
async fn play(
    n: u32,
    client: &Client,
    walker: &mut Walker,
    config: &CrowdConfig,
    stats: &Stats,
    stop: &mut watch::Receiver<bool>,
    rng: &mut StdRng,
) -> SessionEnd {
    let mut migrations = client.migrations();
    let mut hp: u32 = rng.gen_range(50..=100);
    let enter = async {
        let cell = walker.cell();
        let p = walker.position();
        client
            .post(Key::new(PLAYERS, n), player_row(n, p, hp))
            .await?;
        client
            .post(Key::new(cell_primary(cell), n), presence_row(n))
            .await?;
        let (_, sub) = client
            .subscribe(vec![KeySpec::primary(cell_primary(cell))], None)
            .await?;
        Ok::<_, ClientError>((cell, sub))
    };
    let entered = tokio::select! {
        r = tokio::time::timeout(STEP_TIMEOUT, enter) => r,
        () = stopped(stop) => return SessionEnd::Stop,
    };
    let (mut cell, mut sub) = match entered {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => return SessionEnd::Lost(e),
        Err(_) => return SessionEnd::Lost(timed_out("entering the world")),
    };
    let mut next_step = Instant::now() + pause(config, rng);
    loop {
        tokio::select! {
            () = stopped(stop) => return SessionEnd::Stop,
            event = sub.next() => match event {
                Some(_) => {
                    stats.events.fetch_add(1, Ordering::Relaxed);
                }
                // The SDK ends subscriptions when the connection is closed for good.
                None => return SessionEnd::Lost(client.closed().await),
            },
            moved = migrations.recv() => {
                if moved.is_ok() {
                    stats.migrations.fetch_add(1, Ordering::Relaxed);
                    stats.set_node(n, Some(client.node_name()));
                }
            }
            () = tokio::time::sleep_until(next_step) => {
                next_step = Instant::now() + pause(config, rng);
                walker.step(rng);
                if rng.gen_bool(0.05) {
                    hp = hp.saturating_add_signed(rng.gen_range(-10..=10)).clamp(1, 100);
                }
                let step = step(n, client, walker, hp, &mut cell, &mut sub);
                let outcome = tokio::select! {
                    r = tokio::time::timeout(STEP_TIMEOUT, step) => r,
                    () = stopped(stop) => return SessionEnd::Stop,
                };
                match outcome {
                    Ok(Ok(())) => {
                        stats.steps.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Err(e @ ClientError::Closed { .. })) => return SessionEnd::Lost(e),
                    Ok(Err(e)) => {
                        stats.errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(player = n, error = %e, "step failed");
                    }
                    Err(_) => return SessionEnd::Lost(timed_out("a step")),
                }
            }
        }
    }
}

fn timed_out(what: &str) -> ClientError {
    ClientError::Closed {
        code: None,
        reason: format!("{what} took longer than {STEP_TIMEOUT:?}"),
    }
}

fn pause(config: &CrowdConfig, rng: &mut StdRng) -> Duration {
    let (lo, hi) = config.step_every;
    if hi > lo {
        rng.gen_range(lo..=hi)
    } else {
        lo
    }
}

/// One step: report the position (the mesh may hand the player over), re-post the row,
/// and on entering another cell move the presence row and the subscription there.
async fn step(
    n: u32,
    client: &Client,
    walker: &Walker,
    hp: u32,
    cell: &mut (u32, u32),
    sub: &mut Subscription,
) -> Result<(), ClientError> {
    let p = walker.position();
    // Pipelined on the one stream, answered in order.
    tokio::try_join!(
        client.set_position(p.x, p.y),
        client.post(Key::new(PLAYERS, n), player_row(n, p, hp)),
    )?;
    let now = walker.cell();
    if now != *cell {
        // Watch the new cell before leaving the old one, so no neighbour is missed.
        let (_, new_sub) = client
            .subscribe(vec![KeySpec::primary(cell_primary(now))], None)
            .await?;
        *sub = new_sub; // dropping the old subscription unsubscribes it
                        // Likewise shown in the new cell before gone from the old one.
        client
            .post(Key::new(cell_primary(now), n), presence_row(n))
            .await?;
        client
            .release(vec![Key::new(cell_primary(*cell), n)])
            .await?;
        *cell = now;
    }
    Ok(())
}

/// A random walk with momentum inside the grid: the heading drifts a little each step,
/// and the walker bounces off the edges.
#[derive(Debug, Clone)]
struct Walker {
    x: f32,
    y: f32,
    heading: f32,
    speed: f32,
    cell_size: f32,
    width: u32,
    height: u32,
}

impl Walker {
    fn new(world: &ZoneConfig, speed: f32, rng: &mut StdRng) -> Walker {
        let (max_x, max_y) = Self::bounds(world.cell_size, world.width, world.height);
        Walker {
            x: rng.gen_range(0.0..max_x),
            y: rng.gen_range(0.0..max_y),
            heading: rng.gen_range(0.0..std::f32::consts::TAU),
            speed,
            cell_size: world.cell_size,
            width: world.width,
            height: world.height,
        }
    }

    /// The far edges, just inside the grid.
    fn bounds(cell_size: f32, width: u32, height: u32) -> (f32, f32) {
        let edge = |cells: u32| (cell_size * cells.max(1) as f32 - 0.01).max(0.01);
        (edge(width), edge(height))
    }

    fn position(&self) -> Position {
        Position {
            x: self.x,
            y: self.y,
        }
    }

    /// The cell the walker stands in.
    fn cell(&self) -> (u32, u32) {
        let index = |v: f32, cells: u32| {
            let i = (v / self.cell_size).floor();
            if i.is_finite() && i > 0.0 {
                (i as u32).min(cells.max(1) - 1)
            } else {
                0
            }
        };
        (index(self.x, self.width), index(self.y, self.height))
    }

    fn step(&mut self, rng: &mut StdRng) {
        use std::f32::consts::PI;
        self.heading += rng.gen_range(-0.5..=0.5);
        let (max_x, max_y) = Self::bounds(self.cell_size, self.width, self.height);
        self.x += self.speed * self.heading.cos();
        self.y += self.speed * self.heading.sin();
        if self.x < 0.0 || self.x > max_x {
            self.x = self.x.clamp(0.0, max_x);
            self.heading = PI - self.heading;
        }
        if self.y < 0.0 || self.y > max_y {
            self.y = self.y.clamp(0.0, max_y);
            self.heading = -self.heading;
        }
        self.heading = self.heading.rem_euclid(std::f32::consts::TAU);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world() -> ZoneConfig {
        ZoneConfig {
            cell_size: 100.0,
            width: 4,
            height: 2,
            margin: 10.0,
        }
    }

    #[test]
    fn walkers_stay_in_the_grid_and_cross_cells() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut w = Walker::new(&world(), 10.0, &mut rng);
        let mut cells = std::collections::HashSet::new();
        for _ in 0..5000 {
            w.step(&mut rng);
            assert!((0.0..400.0).contains(&w.x), "x {}", w.x);
            assert!((0.0..200.0).contains(&w.y), "y {}", w.y);
            let (cx, cy) = w.cell();
            assert!(cx < 4 && cy < 2, "cell {cx},{cy}");
            cells.insert((cx, cy));
        }
        assert_eq!(cells.len(), 8, "a long walk visits every cell");
    }

    #[test]
    fn cells_are_clamped_into_the_grid() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut w = Walker::new(&world(), 10.0, &mut rng);
        (w.x, w.y) = (399.99, 0.0);
        assert_eq!(w.cell(), (3, 0));
        (w.x, w.y) = (150.0, 100.0);
        assert_eq!(w.cell(), (1, 1));
        (w.x, w.y) = (f32::NAN, 1e9);
        assert_eq!(w.cell(), (0, 1));
    }

    #[test]
    fn rows_are_small_readable_json() {
        let row = player_row(7, Position { x: 12.345, y: 0.0 }, 90);
        let v: serde_json::Value = serde_json::from_slice(&row).expect("JSON");
        assert_eq!(v["name"], "player-7");
        assert_eq!(v["x"], 12.3);
        assert_eq!(v["hp"], 90);
        assert_eq!(cell_primary((2, 5)), "cell.2.5");
    }
}
