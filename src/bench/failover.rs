//! The failover scenario (budget: after kill -9 of the host, a new host and `NodeLost`
//! deletions everywhere within idle timeout + 1 s): clients on every node hold rows, a
//! subscriber on each surviving node watches them all, the host is killed, and the clock
//! runs until the survivors agree on a new host and every subscriber has seen each of the
//! dead node's rows deleted with reason `NodeLost`, then until each has seen every one of
//! those rows back (budget: idle timeout + 2 s): the dead node's clients heal by
//! themselves, establishing their sessions again on the survivors from what they posted.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;

use super::{admin_call, micros, BenchError, Report, Target};
use crate::admin::{AdminClient, Command, Response};
use crate::client::{Client, Event};
use crate::proto::{ClientId, DeleteReason, Key, KeySpec, NodeId};

/// The primary every row of this scenario lives under.
const PRIMARY: &str = "bench.failover";

/// A surviving node: how clients reach it and its admin socket.
#[derive(Debug, Clone)]
pub struct Survivor {
    /// Its client address and trust.
    pub target: Target,
    /// Its admin socket, to ask who it thinks the host is.
    pub socket: PathBuf,
}

/// What the failover scenario measured.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FailoverReport {
    /// Per surviving subscriber (`ops`): time from the kill until it had seen every row of
    /// the dead node deleted with reason `NodeLost`.
    #[serde(flatten)]
    pub deletions: Report,
    /// Time from the kill until every survivor named the same new host.
    pub new_host_ms: f64,
    /// The new host.
    pub new_host: String,
    /// Rows the dead node's clients held.
    pub rows_lost: u64,
    /// `NodeLost` deletions the subscribers should have seen but had not when giving up.
    pub missing: u64,
    /// The budget this run is held to (BENCHMARKS.md): the nodes' idle timeout + 1 s.
    pub budget_ms: f64,
    /// Time from the kill until every subscriber had seen every row of the dead node's
    /// clients back (posted again by their SDK on a survivor), ms.
    pub restored_ms: f64,
    /// Rows not seen back at some subscriber when giving up (summed over subscribers).
    pub not_restored: u64,
    /// The budget of the restore (BENCHMARKS.md): the nodes' idle timeout + 2 s.
    pub restore_budget_ms: f64,
}

/// Runs the scenario. `victim` is the host (named `victim_name`), `kill` kills it at once
/// (SIGKILL), `clients_per_node` clients on every node each post one row; `idle_timeout`
/// is the nodes' setting (the budget is it + 1 s; the run waits up to three budgets).
pub async fn failover(
    victim: &Target,
    victim_name: &str,
    survivors: &[Survivor],
    clients_per_node: usize,
    idle_timeout: Duration,
    kill: impl FnOnce() -> Result<(), String>,
) -> Result<FailoverReport, BenchError> {
    let budget = idle_timeout + Duration::from_secs(1);
    let mut all = Vec::new();
    let mut doomed: HashSet<ClientId> = HashSet::new();
    let mut doomed_keys: HashSet<Key> = HashSet::new();
    let key_of = |i: usize| Key::new(PRIMARY, u32::try_from(i).unwrap_or(u32::MAX));
    let mut victim_id: Option<NodeId> = None;
    for (n, target) in std::iter::once(victim)
        .chain(survivors.iter().map(|s| &s.target))
        .enumerate()
    {
        for i in 0..clients_per_node.max(1) {
            let mut opts = target.client.clone();
            // The clients notice a silent node as the nodes do.
            opts.timing = crate::transport::Timing {
                idle_timeout,
                keep_alive: idle_timeout / 5,
            };
            let c = Client::connect(target.addr, opts).await?;
            let key = key_of(n * clients_per_node.max(1) + i);
            c.post(key, Bytes::from_static(b"alive")).await?;
            if n == 0 {
                doomed.insert(c.id());
                doomed_keys.insert(key_of(n * clients_per_node.max(1) + i));
                victim_id = Some(c.node_id());
            }
            all.push(c);
        }
    }
    let victim_id = victim_id.ok_or_else(|| BenchError::Mesh("no client on the host".into()))?;

    // One subscriber per survivor; each must see all of the host's rows before the kill.
    let mut watchers = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    for s in survivors {
        // Subscribers keep their links alive on the nodes' timing as well.
        let mut opts = s.target.client.clone();
        opts.timing = crate::transport::Timing {
            idle_timeout,
            keep_alive: idle_timeout / 5,
        };
        let c = Client::connect(s.target.addr, opts).await?;
        let (rows, mut sub) = c.subscribe(vec![KeySpec::primary(PRIMARY)], None).await?;
        let mut present: HashSet<ClientId> = rows
            .iter()
            .filter(|r| r.node == victim_id)
            .map(|r| r.owner)
            .collect();
        while present.len() < doomed.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, sub.next()).await {
                Ok(Some(Event::Updated(row))) if row.node == victim_id => {
                    present.insert(row.owner);
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => {
                    return Err(BenchError::Mesh(format!(
                        "a survivor's subscriber saw {} of the host's {} rows within 10 s",
                        present.len(),
                        doomed.len()
                    )))
                }
            }
        }
        watchers.push((c, sub));
    }

    let mut admins = Vec::new();
    for s in survivors {
        admins.push(AdminClient::connect(&s.socket).await?);
    }
    let killed_at = Instant::now();
    kill().map_err(BenchError::Mesh)?;
    let give_up = killed_at + 3 * budget;
    let restore_budget = idle_timeout + Duration::from_secs(2);
    let give_up_restore = killed_at + 3 * restore_budget;

    // Deletions, per subscriber, concurrently with the host election poll below.
    let mut tasks = Vec::new();
    let mut subscribers = Vec::new();
    for (c, mut sub) in watchers {
        // The client must outlive its subscription's task.
        subscribers.push(c);
        let mut waiting = doomed.clone();
        let mut coming_back = doomed_keys.clone();
        let doomed = doomed.clone();
        tasks.push(tokio::spawn(async move {
            let mut deleted_after = None;
            while !waiting.is_empty() || !coming_back.is_empty() {
                let until = if waiting.is_empty() {
                    give_up_restore
                } else {
                    give_up.max(give_up_restore)
                };
                let left = until.saturating_duration_since(Instant::now());
                match tokio::time::timeout(left, sub.next()).await {
                    Ok(Some(Event::Deleted {
                        row,
                        reason: DeleteReason::NodeLost,
                    })) => {
                        waiting.remove(&row.owner);
                        if waiting.is_empty() {
                            deleted_after = Some(killed_at.elapsed());
                        }
                    }
                    // A row of the dead node's clients, back under a new session.
                    Ok(Some(Event::Updated(row))) if !doomed.contains(&row.owner) => {
                        coming_back.remove(&row.key);
                    }
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break,
                }
            }
            (
                waiting.len(),
                deleted_after.unwrap_or_else(|| killed_at.elapsed()),
                coming_back.len(),
                killed_at.elapsed(),
            )
        }));
    }
    let (mut new_host, mut new_host_ms) = (String::new(), f64::NAN);
    while Instant::now() < give_up {
        let mut named = Vec::new();
        for admin in &mut admins {
            if let Ok(Response::Status(s)) = admin_call(admin, Command::Status).await {
                named.push(s.host);
            }
        }
        let agreed =
            named.len() == admins.len() && named.iter().all(|h| h == &named[0] && h != victim_name);
        if agreed {
            new_host = named.swap_remove(0);
            new_host_ms = killed_at.elapsed().as_secs_f64() * 1000.0;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut times = Vec::new();
    let mut missing = 0u64;
    let mut not_restored = 0u64;
    let mut restored = Duration::ZERO;
    for t in tasks {
        match t.await {
            Ok((left, took, unrestored, back)) => {
                if left == 0 {
                    times.push(micros(took));
                } else {
                    missing += left as u64;
                }
                not_restored += unrestored as u64;
                restored = restored.max(back);
            }
            Err(_) => {
                missing += doomed.len() as u64;
                not_restored += doomed.len() as u64;
            }
        }
    }
    // The host's clients lost their node with it; the others leave cleanly.
    super::close_all(all.into_iter().skip(doomed.len()).chain(subscribers)).await;
    let rows_lost = doomed.len() as u64;
    let incomplete = survivors.len() as u64 - times.len() as u64;
    Ok(FailoverReport {
        deletions: Report::from_latencies(&mut times, incomplete, killed_at.elapsed()),
        new_host_ms,
        new_host,
        rows_lost,
        missing,
        budget_ms: budget.as_secs_f64() * 1000.0,
        restored_ms: if not_restored == 0 {
            restored.as_secs_f64() * 1000.0
        } else {
            f64::NAN
        },
        not_restored,
        restore_budget_ms: restore_budget.as_secs_f64() * 1000.0,
    })
}
