//! The blip scenario (budget: the next successful call within 1 s of the path coming back,
//! no deletion seen by anyone): clients reach their node through a UDP relay this scenario
//! runs, hold a row each, and a watcher connected directly subscribes to those rows. The
//! relay then drops every datagram for longer than the idle timeout (the node suspends the
//! sessions, the clients notice), and lets them through again; each client pings, and the
//! clock runs from the path's return to each ping's answer. Also reads the node's memory
//! with the clients connected and with their sessions suspended, for the cost of a
//! suspended session.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use tokio::net::UdpSocket;

use super::{micros, BenchError, Report, Target};
use crate::client::{Client, Event};
use crate::proto::{Key, KeySpec};

/// The primary every row of this scenario lives under.
const PRIMARY: &str = "bench.blip";

/// A UDP relay in front of one node that can drop everything, both ways, as a dead radio
/// link would. Clients reach the node only through it when the node advertises the
/// relay's address as its client address.
#[derive(Debug)]
pub struct Relay {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    target: Arc<Mutex<Option<SocketAddr>>>,
}

type Backs = Arc<Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>>;

impl Relay {
    /// Binds on 127.0.0.1; forwards nothing until [`Relay::forward_to`].
    pub async fn bind() -> std::io::Result<Relay> {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
        let addr = front.local_addr()?;
        let cut = Arc::new(AtomicBool::new(false));
        let target: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        let backs: Backs = Arc::default();
        let (c, t) = (cut.clone(), target.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            loop {
                let Ok((n, from)) = front.recv_from(&mut buf).await else {
                    return;
                };
                let node = *t.lock().unwrap_or_else(PoisonError::into_inner);
                let Some(node) = node else { continue };
                if c.load(Ordering::SeqCst) {
                    continue;
                }
                let Some(back) = back_for(&backs, &front, &c, from, node).await else {
                    continue;
                };
                let _ = back.send(buf.get(..n).unwrap_or_default()).await;
            }
        });
        Ok(Relay { addr, cut, target })
    }

    /// The address clients use.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Starts forwarding to `node`.
    pub fn forward_to(&self, node: SocketAddr) {
        *self.target.lock().unwrap_or_else(PoisonError::into_inner) = Some(node);
    }

    /// Drops every datagram (`true`) or lets them through again.
    pub fn cut(&self, on: bool) {
        self.cut.store(on, Ordering::SeqCst);
    }
}

/// The socket that carries one client's datagrams to the node (made on its first one,
/// with a task relaying the node's answers back).
async fn back_for(
    backs: &Backs,
    front: &Arc<UdpSocket>,
    cut: &Arc<AtomicBool>,
    from: SocketAddr,
    node: SocketAddr,
) -> Option<Arc<UdpSocket>> {
    let existing = backs
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&from)
        .cloned();
    if let Some(b) = existing {
        return Some(b);
    }
    let b = Arc::new(UdpSocket::bind("127.0.0.1:0").await.ok()?);
    b.connect(node).await.ok()?;
    backs
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(from, b.clone());
    let (f, c, b2) = (front.clone(), cut.clone(), b.clone());
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while let Ok(n) = b2.recv(&mut buf).await {
            if !c.load(Ordering::SeqCst) {
                let _ = f.send_to(buf.get(..n).unwrap_or_default(), from).await;
            }
        }
    });
    Some(b)
}

/// What the blip scenario measured.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BlipReport {
    /// Per client (`ops`): time from the path's return to its next successful call.
    #[serde(flatten)]
    pub resumed: Report,
    /// How long the path was down, ms.
    pub outage_ms: f64,
    /// Deletions of the clients' rows the watcher saw (the budget is none).
    pub deletions: u64,
    /// Clients that came back under another client id (the budget is none).
    pub new_sessions: u64,
    /// The budget per client (BENCHMARKS.md): 1 s after the path is back.
    pub budget_ms: f64,
}

/// Runs the scenario: `clients` clients reach the node through `relay` (its trust in
/// `node`), a watcher reaches it at `node.addr`; the path is cut for `outage`. `during`
/// runs while the sessions are suspended (the caller reads the node's memory there).
pub async fn blip(
    node: &Target,
    relay: &Relay,
    clients: usize,
    outage: Duration,
    idle_timeout: Duration,
    during: impl AsyncFnOnce(),
) -> Result<BlipReport, BenchError> {
    let mut opts = node.client.clone();
    opts.timing = crate::transport::Timing {
        idle_timeout,
        keep_alive: idle_timeout / 5,
    };
    let watcher = Client::connect(node.addr, node.client.clone()).await?;
    let (_, mut sub) = watcher
        .subscribe(vec![KeySpec::primary(PRIMARY)], None)
        .await?;
    let mut all = Vec::with_capacity(clients);
    for i in 0..clients.max(1) {
        let c = Client::connect(relay.addr(), opts.clone()).await?;
        let key = Key::new(PRIMARY, u32::try_from(i).unwrap_or(u32::MAX));
        c.post(key, Bytes::from_static(b"here")).await?;
        all.push(c);
    }
    let ids: Vec<_> = all.iter().map(Client::id).collect();
    let mut events: Vec<_> = all.iter().map(Client::session_events).collect();

    relay.cut(true);
    let cut_at = Instant::now();
    // Every client notices (its idle timeout), as the node does.
    for e in &mut events {
        let left = (cut_at + outage + idle_timeout * 4).saturating_duration_since(Instant::now());
        let _ = tokio::time::timeout(left, e.recv()).await;
    }
    during().await;
    tokio::time::sleep(outage.saturating_sub(cut_at.elapsed())).await;
    let outage_ms = cut_at.elapsed().as_secs_f64() * 1000.0;
    relay.cut(false);
    let back_at = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for c in &all {
        let c = c.clone();
        tasks.spawn(async move {
            let limit = Duration::from_secs(30);
            loop {
                match tokio::time::timeout(limit, c.ping()).await {
                    Ok(Ok(_)) => return Some(back_at.elapsed()),
                    Ok(Err(e)) if e.is_retryable() => continue,
                    _ => return None,
                }
            }
        });
    }
    let mut times = Vec::new();
    let mut failed = 0u64;
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Some(took)) => times.push(micros(took)),
            _ => failed += 1,
        }
    }
    let elapsed = back_at.elapsed();
    let new_sessions = all
        .iter()
        .zip(&ids)
        .filter(|(c, id)| c.id() != **id)
        .count() as u64;
    // Whatever the watcher saw meanwhile (its own connection never went down).
    let mut deletions = 0u64;
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(300), sub.next()).await {
        if matches!(e, Event::Deleted { .. }) {
            deletions += 1;
        }
    }
    super::close_all(all.into_iter().chain(std::iter::once(watcher))).await;
    Ok(BlipReport {
        resumed: Report::from_latencies(&mut times, failed, elapsed),
        outage_ms,
        deletions,
        new_sessions,
        budget_ms: 1000.0,
    })
}
