//! The scenarios that operate the mesh through an admin socket while clients load it:
//! [`migration`] (budget: client-visible stall p99 < 20 ms, 0 lost, 0 duplicated
//! notifications) and [`drain`] (budget: 1,000 clients in < 3 s).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;

use super::{active_nodes, admin_call, micros, BenchError, Report, Target};
use crate::admin::{AdminClient, Command, Response};
use crate::client::{Client, Event};
use crate::proto::{Key, KeySpec, NodeId};

/// Knobs of the migration scenario.
#[derive(Debug, Clone)]
pub struct MigrationOptions {
    /// Clients posting continuously, each subscribed to another's key.
    pub clients: usize,
    /// Migrations to make, one after another.
    pub migrations: usize,
    /// Pause between a client's posts.
    pub post_interval: Duration,
}

impl Default for MigrationOptions {
    fn default() -> Self {
        MigrationOptions {
            clients: 200,
            migrations: 100,
            post_interval: Duration::from_millis(1),
        }
    }
}

/// What the migration scenario measured.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MigrationReport {
    /// Per migration (`ops`): the longest gap between the moved client's successful posts
    /// around its move, i.e. the stall it saw; `errors` are failed migrations.
    #[serde(flatten)]
    pub stall: Report,
    /// Migrations completed.
    pub migrations: u64,
    /// Migrations that did not complete (rolled back or raced).
    pub failed: u64,
    /// Errors any client saw on its posts (must be 0).
    pub client_errors: u64,
    /// Notifications that never arrived: gaps in the sequence numbers a subscriber saw
    /// (must be 0).
    pub lost: u64,
    /// Notifications that arrived twice or out of order (must be 0).
    pub duplicated: u64,
    /// Notifications that a watched row's owner moved (its `node` changed, data the same):
    /// one per migration of a client whose row is watched.
    pub moves_seen: u64,
    /// 99th percentile gap between successful posts of clients that were not moving (the
    /// baseline the stalls compare with).
    pub baseline_p99_ms: f64,
}

/// What one client's poster saw: when each post succeeded, errors, and the last number
/// it posted successfully.
struct PosterTally {
    times: Vec<Instant>,
    errors: u64,
    last: Option<u32>,
}

/// What one client's subscription saw of the key it watches.
#[derive(Debug, Default)]
struct Watch {
    /// The last number seen, and on which node the row was then.
    last: Option<(u32, NodeId)>,
    lost: u64,
    duplicated: u64,
    /// The row's owner moved: the same number on a new node (subscribers see
    /// the rows' `node` change, never a deletion).
    moved: u64,
}

impl Watch {
    fn saw(&mut self, n: u32, node: NodeId) {
        match self.last {
            Some((prev, at)) if n == prev && node != at => {
                self.moved += 1;
                self.last = Some((n, node));
            }
            Some((prev, _)) if n <= prev => self.duplicated += 1,
            Some((prev, _)) => {
                self.lost += u64::from(n - prev - 1);
                self.last = Some((n, node));
            }
            None => self.last = Some((n, node)),
        }
    }

    fn number(&self) -> Option<u32> {
        self.last.map(|(n, _)| n)
    }
}

/// Runs the scenario: `clients` connect to `target` and post numbered rows continuously,
/// each subscribed to the next client's key; `migrations` of them are moved one after
/// another (round robin over the clients, to the next Active node) through `admin`.
pub async fn migration(
    target: &Target,
    admin: &Path,
    opts: &MigrationOptions,
) -> Result<MigrationReport, BenchError> {
    let mut admin = AdminClient::connect(admin).await?;
    let nodes = active_nodes(&mut admin).await?;
    if nodes.len() < 2 {
        return Err(BenchError::Mesh(format!(
            "migration needs at least 2 Active nodes; the mesh has {}",
            nodes.len()
        )));
    }
    let n = opts.clients.max(2);
    let mut cs = Vec::with_capacity(n);
    for _ in 0..n {
        cs.push(Client::connect(target.addr, target.client.clone()).await?);
    }
    let key = |i: usize| Key::new("bench.migration", i as u32);
    // Rows exist before anyone subscribes, so every subscription starts from a number.
    for (i, c) in cs.iter().enumerate() {
        c.post(key(i), Bytes::copy_from_slice(&0u32.to_le_bytes()))
            .await?;
    }
    let mut watchers = Vec::with_capacity(n);
    for (i, c) in cs.iter().enumerate() {
        let (rows, mut sub) = c
            .subscribe(vec![KeySpec::exact(&key((i + 1) % n))], None)
            .await?;
        let mut watch = Watch::default();
        for row in rows {
            if let Some(v) = number(&row.data) {
                watch.saw(v, row.node);
            }
        }
        let (tx, rx) = tokio::sync::watch::channel(0u32);
        watchers.push((
            tokio::spawn(async move {
                while let Some(event) = sub.next().await {
                    if let Event::Updated(row) = event {
                        if let Some(v) = number(&row.data) {
                            watch.saw(v, row.node);
                            let _ = tx.send(v);
                        }
                    }
                }
                watch
            }),
            rx,
        ));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let mut posters = Vec::with_capacity(n);
    for (i, c) in cs.iter().enumerate() {
        let (c, stop, k, pause) = (c.clone(), stop.clone(), key(i), opts.post_interval);
        posters.push(tokio::spawn(async move {
            let mut tally = PosterTally {
                times: Vec::with_capacity(4096),
                errors: 0,
                last: Some(0),
            };
            let mut next = 1u32;
            while !stop.load(Ordering::Relaxed) {
                match c
                    .post(k.clone(), Bytes::copy_from_slice(&next.to_le_bytes()))
                    .await
                {
                    Ok(_) => {
                        tally.times.push(Instant::now());
                        tally.last = Some(next);
                        next = next.wrapping_add(1);
                    }
                    Err(_) => tally.errors += 1,
                }
                tokio::time::sleep(pause).await;
            }
            tally
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut windows = Vec::new();
    let (mut done, mut failed) = (0u64, 0u64);
    for k in 0..opts.migrations {
        let idx = k % n;
        let client = &cs[idx];
        let from = client.node_name();
        let Some(to) = nodes
            .iter()
            .cycle()
            .skip(k % nodes.len())
            .take(nodes.len())
            .find(|name| **name != from)
            .cloned()
        else {
            failed += 1;
            continue;
        };
        let start = Instant::now();
        let command = Command::Migrate {
            client: client.id().to_string(),
            to: to.clone(),
        };
        match admin_call(&mut admin, command).await {
            Ok(Response::Migrated { .. }) => done += 1,
            _ => failed += 1,
        }
        // The client finishes switching shortly after the handover: include that.
        let deadline = Instant::now() + Duration::from_secs(2);
        while client.node_name() != to && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        windows.push((idx, start, Instant::now() + Duration::from_millis(50)));
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    let began = windows.first().map_or_else(Instant::now, |w| w.1);
    let elapsed = began.elapsed();
    stop.store(true, Ordering::Relaxed);

    let mut tallies = Vec::with_capacity(n);
    for p in posters {
        tallies.push(p.await.unwrap_or(PosterTally {
            times: Vec::new(),
            errors: 1,
            last: None,
        }));
    }
    // Every subscriber must see its key's last number; wait (bounded) until it has.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    for (i, (_, rx)) in watchers.iter_mut().enumerate() {
        let Some(last) = tallies[(i + 1) % n].last else {
            continue;
        };
        let _ = tokio::time::timeout_at(deadline, rx.wait_for(|v| *v >= last)).await;
    }
    super::close_all(cs.iter().cloned()).await;
    let (mut lost, mut duplicated, mut moves_seen) = (0, 0, 0);
    for (i, (task, _)) in watchers.into_iter().enumerate() {
        if let Ok(w) = task.await {
            lost += w.lost;
            duplicated += w.duplicated;
            moves_seen += w.moved;
            // Changes after the last one seen never arrived at all.
            if let (Some(seen), Some(last)) = (w.number(), tallies[(i + 1) % n].last) {
                lost += u64::from(last.saturating_sub(seen));
            }
        }
    }

    let mut stalls: Vec<u32> = windows
        .iter()
        .map(|(i, a, b)| max_gap(&tallies[*i].times, *a, *b))
        .collect();
    let moved: std::collections::HashSet<usize> = windows.iter().map(|w| w.0).collect();
    let mut baseline: Vec<u32> = tallies
        .iter()
        .enumerate()
        .filter(|(i, _)| !moved.contains(i))
        .flat_map(|(_, t)| t.times.windows(2).map(|w| micros(w[1] - w[0])))
        .collect();
    let b = Report::from_latencies(&mut baseline, 0, Duration::from_secs(1));
    Ok(MigrationReport {
        stall: Report::from_latencies(&mut stalls, failed, elapsed),
        migrations: done,
        failed,
        client_errors: tallies.iter().map(|t| t.errors).sum(),
        lost,
        duplicated,
        moves_seen,
        baseline_p99_ms: b.p99_ms,
    })
}

/// The number a row of this scenario carries.
fn number(data: &Bytes) -> Option<u32> {
    Some(u32::from_le_bytes(data.get(..4)?.try_into().ok()?))
}

/// The longest gap between successes in `[from, to]` (counting the window's edges).
fn max_gap(times: &[Instant], from: Instant, to: Instant) -> u32 {
    let mut points = vec![from];
    points.extend(times.iter().copied().filter(|t| *t >= from && *t <= to));
    points.push(to.min(*times.last().unwrap_or(&to)).max(from));
    points
        .windows(2)
        .map(|w| micros(w[1].saturating_duration_since(w[0])))
        .max()
        .unwrap_or(0)
}

/// What the drain scenario measured.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DrainReport {
    /// Per client moved (`ops`): time from the drain's start until the client was told it
    /// moved; `seconds` is the whole drain.
    #[serde(flatten)]
    pub moves: Report,
    /// The drained node.
    pub node: String,
    /// Clients on the drained node at the start.
    pub clients: usize,
    /// Clients the drain moved (as the node counted them).
    pub moved: usize,
}

/// Runs the scenario: `clients` connect to `target` (each holding one row), then the node
/// they are on (or `node`) is drained through `admin` and timed; with `undrain`, it is made
/// Active again afterwards (for a mesh that must go on serving).
pub async fn drain(
    target: &Target,
    admin: &Path,
    node: Option<String>,
    clients: usize,
    undrain: bool,
) -> Result<DrainReport, BenchError> {
    let mut admin = AdminClient::connect(admin).await?;
    let mut cs = Vec::with_capacity(clients);
    for i in 0..clients.max(1) {
        let c = Client::connect(target.addr, target.client.clone()).await?;
        c.post(Key::new("bench.drain", i as u32), Bytes::from_static(b"x"))
            .await?;
        cs.push(c);
    }
    let node = node.unwrap_or_else(|| cs[0].node_name());
    let on_node = cs.iter().filter(|c| c.node_name() == node).count();
    let mut moves = Vec::with_capacity(cs.len());
    for c in &cs {
        moves.push(c.migrations());
    }
    let start = Instant::now();
    let watchers: Vec<_> = moves
        .into_iter()
        .map(|mut rx| tokio::spawn(async move { rx.recv().await.ok().map(|_| start.elapsed()) }))
        .collect();
    admin
        .send(Command::Drain {
            node: node.clone(),
            wait: true,
        })
        .await?;
    let outcome = loop {
        match admin.next().await? {
            Response::Progress { .. } => {}
            Response::Drained { moved, .. } => break Ok(moved),
            Response::Error(e) => break Err(BenchError::Mesh(e.to_string())),
            other => {
                break Err(BenchError::Mesh(format!(
                    "unexpected answer to `drain`: {other:?}"
                )))
            }
        }
    };
    let elapsed = start.elapsed();
    // Bounded: clients switch right after their handover. All waited for at once, so a
    // client that never reports a move (one the drain disconnected and that healed
    // elsewhere instead) costs the 5 s once, not 5 s each.
    let waits = watchers.into_iter().map(|w| async move {
        match tokio::time::timeout(Duration::from_secs(5), w).await {
            Ok(Ok(Some(t))) => Some(micros(t)),
            _ => None,
        }
    });
    let mut times: Vec<_> = futures_util::future::join_all(waits)
        .await
        .into_iter()
        .flatten()
        .collect();
    if undrain {
        admin_call(&mut admin, Command::Undrain { node: node.clone() }).await?;
    }
    super::close_all(cs).await;
    let moved = outcome?;
    Ok(DrainReport {
        moves: Report::from_latencies(&mut times, 0, elapsed),
        node,
        clients: on_node,
        moved,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watch_counts_gaps_as_lost_repeats_as_duplicated_and_new_nodes_as_moves() {
        let (a, b) = (NodeId::random(), NodeId::random());
        let mut w = Watch::default();
        for (n, node) in [
            (0, a),
            (1, a),
            (2, a),
            (5, a),
            (5, a),
            (4, a),
            (6, a),
            (6, b),
            (7, b),
        ] {
            w.saw(n, node);
        }
        assert_eq!(
            (w.number(), w.lost, w.duplicated, w.moved),
            (Some(7), 2, 2, 1)
        );
    }

    #[test]
    fn the_stall_is_the_longest_gap_in_the_window() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let times = [at(1), at(2), at(12), at(13), at(40)];
        assert_eq!(max_gap(&times, at(0), at(20)), 10_000);
        // Nothing after the window's start until its end: the whole window.
        assert_eq!(max_gap(&times, at(14), at(30)), 16_000);
    }
}
