//! Sends a node's metrics to Graphite in carbon's plaintext protocol over TCP
//! (`prefix.name value timestamp\n`).
//!
//! Two tasks beside the node, sharing a bounded buffer of lines. The *sampler* takes a
//! sample every `interval` whatever carbon does and appends its lines; past `max_buffered`
//! lines the oldest are dropped and counted (`exporter.dropped`). The *writer* connects,
//! writes whatever is buffered with a timeout, and on any failure drops the connection,
//! puts the unsent lines back and retries after an exponential backoff (1 s doubling to
//! `max_backoff`). So a slow or dead carbon costs the node a bounded buffer and nothing
//! else: no request path waits for it. A lost connection is logged once and its return
//! once, not every retry.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use super::{plaintext_line, sanitize_prefix, MetricSource, Sample};

/// Default export interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// Default bound on one connect or one write.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default number of lines kept while carbon is slow or gone (about 30 samples' worth).
pub const DEFAULT_MAX_BUFFERED: usize = 10_000;
/// First retry delay; doubled after each failure up to `max_backoff`.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Default longest retry delay.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Where and how to send metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphiteConfig {
    /// Carbon's plaintext listener, `HOST:PORT` (a name is resolved at each connect).
    pub server: String,
    /// Dotted path every metric goes under, already sanitized (see [`GraphiteConfig::new`]).
    pub prefix: String,
    /// How often a sample is taken and sent.
    pub interval: Duration,
    /// Bound on one connect and on one write.
    pub timeout: Duration,
    /// Lines kept while carbon cannot take them; the oldest go first.
    pub max_buffered: usize,
    /// Longest wait between reconnection attempts.
    pub max_backoff: Duration,
}

/// A Graphite configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphiteConfigError {
    /// The server is not `HOST:PORT`.
    #[error("graphite server {0:?} is not HOST:PORT (e.g. 127.0.0.1:2003 or graphite.lan:2003)")]
    BadServer(String),
    /// Nothing is left of the prefix once sanitized.
    #[error("graphite prefix {0:?} has no usable path segment (e.g. cloudmesh.node1)")]
    BadPrefix(String),
    /// A duration or size that must be positive is zero.
    #[error("graphite {0} must be greater than zero")]
    Zero(&'static str),
}

impl GraphiteConfig {
    /// Defaults for sending to `server` under `prefix` (sanitized: characters Graphite
    /// paths cannot hold become `_`, empty segments go).
    pub fn new(server: &str, prefix: &str) -> Result<GraphiteConfig, GraphiteConfigError> {
        let cfg = GraphiteConfig {
            server: server.trim().to_owned(),
            prefix: sanitize_prefix(prefix)
                .ok_or_else(|| GraphiteConfigError::BadPrefix(prefix.to_owned()))?,
            interval: DEFAULT_INTERVAL,
            timeout: DEFAULT_TIMEOUT,
            max_buffered: DEFAULT_MAX_BUFFERED,
            max_backoff: DEFAULT_MAX_BACKOFF,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks what `new` cannot (fields set afterwards).
    pub fn validate(&self) -> Result<(), GraphiteConfigError> {
        let bad = || GraphiteConfigError::BadServer(self.server.clone());
        let (host, port) = self.server.rsplit_once(':').ok_or_else(bad)?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if host.is_empty() || host.contains(char::is_whitespace) || port.parse::<u16>().is_err() {
            return Err(bad());
        }
        if sanitize_prefix(&self.prefix).as_deref() != Some(self.prefix.as_str()) {
            return Err(GraphiteConfigError::BadPrefix(self.prefix.clone()));
        }
        if self.interval.is_zero() {
            return Err(GraphiteConfigError::Zero("interval"));
        }
        if self.timeout.is_zero() {
            return Err(GraphiteConfigError::Zero("timeout"));
        }
        if self.max_buffered == 0 {
            return Err(GraphiteConfigError::Zero("max_buffered"));
        }
        if self.max_backoff.is_zero() {
            return Err(GraphiteConfigError::Zero("max_backoff"));
        }
        Ok(())
    }
}

/// Exponential backoff: `first`, doubled at each `next()`, never above `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// The first delay (and the one after `reset`).
    first: Duration,
    /// The cap.
    max: Duration,
    /// What `next()` returns next.
    current: Duration,
}

impl Backoff {
    /// Starts at `first` (capped at `max`).
    pub fn new(first: Duration, max: Duration) -> Backoff {
        let first = first.min(max);
        Backoff {
            first,
            max,
            current: first,
        }
    }

    /// The delay to wait now; the following one is twice as long (up to the cap).
    pub fn next_delay(&mut self) -> Duration {
        let d = self.current;
        self.current = self.current.saturating_mul(2).min(self.max);
        d
    }

    /// Back to the first delay (after a success).
    pub fn reset(&mut self) {
        self.current = self.first;
    }
}

/// What the exporter has done so far (for tests and `status`-like displays).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExporterStats {
    /// Samples taken.
    pub samples: u64,
    /// Lines written to carbon.
    pub sent: u64,
    /// Lines dropped because the buffer was full.
    pub dropped: u64,
    /// Lines waiting now.
    pub buffered: usize,
    /// Whether a connection to carbon is open.
    pub connected: bool,
    /// Connections made.
    pub connects: u64,
    /// Failed connects and writes.
    pub failures: u64,
    /// The last retry delay waited (zero before any failure).
    pub last_backoff: Duration,
}

/// State both tasks share.
#[derive(Debug)]
struct Shared {
    /// Lines not yet written, oldest first.
    buffer: Mutex<VecDeque<String>>,
    /// Wakes the writer when lines are added.
    added: Notify,
    /// `ExporterStats::samples`.
    samples: AtomicU64,
    /// `ExporterStats::sent`.
    sent: AtomicU64,
    /// `ExporterStats::dropped`.
    dropped: AtomicU64,
    /// `ExporterStats::connected`.
    connected: AtomicBool,
    /// `ExporterStats::connects`.
    connects: AtomicU64,
    /// `ExporterStats::failures`.
    failures: AtomicU64,
    /// `ExporterStats::last_backoff`, in ms.
    last_backoff_ms: AtomicU64,
}

impl Shared {
    /// Empty: nothing buffered, nothing counted, not connected.
    fn new() -> Shared {
        Shared {
            buffer: Mutex::new(VecDeque::new()),
            added: Notify::new(),
            samples: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            connects: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            last_backoff_ms: AtomicU64::new(0),
        }
    }

    fn buffer(&self) -> MutexGuard<'_, VecDeque<String>> {
        // Only this module touches the buffer and it never panics while holding it.
        self.buffer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends lines, dropping the oldest beyond `cap` (counted).
    fn push_back(&self, lines: Vec<String>, cap: usize) {
        let mut buf = self.buffer();
        buf.extend(lines);
        self.trim(&mut buf, cap);
    }

    /// Puts unsent lines back in front of newer ones, within the same bound.
    fn push_front(&self, lines: Vec<String>, cap: usize) {
        let mut buf = self.buffer();
        for line in lines.into_iter().rev() {
            buf.push_front(line);
        }
        self.trim(&mut buf, cap);
    }

    fn trim(&self, buf: &mut VecDeque<String>, cap: usize) {
        let over = buf.len().saturating_sub(cap);
        if over > 0 {
            buf.drain(..over);
            self.dropped.fetch_add(over as u64, Ordering::Relaxed);
        }
    }
}

/// A running exporter. Dropping it stops both tasks at their next wake-up;
/// [`Exporter::stop`] stops them at once and waits for them.
#[derive(Debug)]
pub struct Exporter {
    /// Shared with the tasks.
    shared: Arc<Shared>,
    /// Flipped to stop both tasks.
    stop: watch::Sender<bool>,
    /// The sampler and the writer.
    tasks: Vec<JoinHandle<()>>,
    /// The configuration it runs with.
    config: GraphiteConfig,
}

impl Exporter {
    /// Starts sampling `source` every `config.interval` and sending to `config.server`.
    /// Needs a tokio runtime; returns at once (the first connect happens in the background).
    pub fn start(source: Arc<dyn MetricSource>, config: GraphiteConfig) -> Exporter {
        let shared = Arc::new(Shared::new());
        let (stop, stopped) = watch::channel(false);
        tracing::info!(server = %config.server, prefix = %config.prefix,
            interval = ?config.interval, "exporting metrics to graphite");
        let tasks = vec![
            tokio::spawn(sampler(
                source,
                shared.clone(),
                config.clone(),
                stopped.clone(),
            )),
            tokio::spawn(writer(shared.clone(), config.clone(), stopped)),
        ];
        Exporter {
            shared,
            stop,
            tasks,
            config,
        }
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &GraphiteConfig {
        &self.config
    }

    /// What it has done so far.
    pub fn stats(&self) -> ExporterStats {
        let s = &self.shared;
        ExporterStats {
            samples: s.samples.load(Ordering::Relaxed),
            sent: s.sent.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
            buffered: s.buffer().len(),
            connected: s.connected.load(Ordering::Relaxed),
            connects: s.connects.load(Ordering::Relaxed),
            failures: s.failures.load(Ordering::Relaxed),
            last_backoff: Duration::from_millis(s.last_backoff_ms.load(Ordering::Relaxed)),
        }
    }

    /// Stops both tasks now (lines still buffered are not sent). Aborted rather than
    /// waited for, so a connect or write to a black-holed carbon cannot hold up a shutdown;
    /// they own nothing that needs cleaning up.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            t.abort();
            let _ = t.await;
        }
    }
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Takes a sample every interval and buffers its lines.
async fn sampler(
    source: Arc<dyn MetricSource>,
    shared: Arc<Shared>,
    cfg: GraphiteConfig,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(cfg.interval);
    // A stalled runtime catches up with one sample, not a burst.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => {}
        }
        let mut samples = source.sample();
        samples.push(Sample::new(
            "exporter.dropped",
            shared.dropped.load(Ordering::Relaxed) as f64,
        ));
        samples.push(Sample::new(
            "exporter.reconnects",
            shared.connects.load(Ordering::Relaxed) as f64,
        ));
        let now = unix_secs();
        let lines: Vec<String> = samples
            .iter()
            .filter_map(|s| plaintext_line(&cfg.prefix, s, now))
            .collect();
        shared.samples.fetch_add(1, Ordering::Relaxed);
        shared.push_back(lines, cfg.max_buffered);
        shared.added.notify_one();
    }
}

/// How the connection to carbon was last seen, so each change is logged once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    /// Nothing tried yet.
    Unknown,
    /// Connected and writing.
    Up,
    /// Failing; retrying with backoff.
    Down,
}

/// Connects, writes what is buffered, reconnects with backoff.
async fn writer(shared: Arc<Shared>, cfg: GraphiteConfig, mut stop: watch::Receiver<bool>) {
    let mut backoff = Backoff::new(FIRST_BACKOFF, cfg.max_backoff);
    let mut health = Health::Unknown;
    let mut conn: Option<TcpStream> = None;
    loop {
        if *stop.borrow() {
            return;
        }
        let failure = match conn.as_mut() {
            None => {
                match tokio::time::timeout(cfg.timeout, TcpStream::connect(&cfg.server)).await {
                    Ok(Ok(stream)) => {
                        // Metric lines are small and sent once per interval: no reason to wait.
                        let _ = stream.set_nodelay(true);
                        conn = Some(stream);
                        shared.connects.fetch_add(1, Ordering::Relaxed);
                        shared.connected.store(true, Ordering::Relaxed);
                        match health {
                            Health::Down => {
                                tracing::info!(server = %cfg.server, "graphite connection restored")
                            }
                            _ => tracing::info!(server = %cfg.server, "connected to graphite"),
                        }
                        health = Health::Up;
                        backoff.reset();
                        continue;
                    }
                    Ok(Err(e)) => format!("cannot connect: {e}"),
                    Err(_) => format!("no connection within {:?}", cfg.timeout),
                }
            }
            Some(stream) => {
                let batch: Vec<String> = shared.buffer().drain(..).collect();
                if batch.is_empty() {
                    tokio::select! {
                        _ = stop.changed() => return,
                        _ = shared.added.notified() => {}
                    }
                    continue;
                }
                match write_batch(stream, &batch, cfg.timeout).await {
                    Ok(()) => {
                        shared.sent.fetch_add(batch.len() as u64, Ordering::Relaxed);
                        continue;
                    }
                    Err(e) => {
                        // Carbon may have taken part of it; a point sent twice is stored once.
                        shared.push_front(batch, cfg.max_buffered);
                        e
                    }
                }
            }
        };
        conn = None;
        shared.connected.store(false, Ordering::Relaxed);
        shared.failures.fetch_add(1, Ordering::Relaxed);
        let delay = backoff.next_delay();
        shared
            .last_backoff_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
        match health {
            Health::Up => tracing::warn!(server = %cfg.server, error = %failure,
                "graphite connection lost; retrying with backoff, keeping at most {} lines",
                cfg.max_buffered),
            Health::Unknown => tracing::warn!(server = %cfg.server, error = %failure,
                "cannot reach graphite; retrying with backoff, keeping at most {} lines",
                cfg.max_buffered),
            Health::Down => {
                tracing::debug!(server = %cfg.server, error = %failure, ?delay, "graphite still unreachable")
            }
        }
        health = Health::Down;
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// Writes one batch, failing if carbon closed its end or the write does not finish in time.
async fn write_batch(
    stream: &mut TcpStream,
    batch: &[String],
    timeout: Duration,
) -> Result<(), String> {
    // Carbon never sends anything: readable means it closed (or reset) the connection.
    // Checking first keeps a batch from vanishing into a socket whose peer is gone.
    let mut probe = [0u8; 64];
    match stream.try_read(&mut probe) {
        Ok(0) => return Err("carbon closed the connection".into()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        Err(e) => return Err(format!("connection failed: {e}")),
    }
    let bytes = batch.concat();
    match tokio::time::timeout(timeout, stream.write_all(bytes.as_bytes())).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("write failed: {e}")),
        Err(_) => Err(format!("write not done within {timeout:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let seq: Vec<u64> = (0..8).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(seq, [1, 2, 4, 8, 16, 32, 60, 60]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_secs(1));
    }

    #[test]
    fn config_checks() {
        let c = GraphiteConfig::new("127.0.0.1:2003", "cloudmesh.node 1");
        assert_eq!(c.map(|c| c.prefix), Ok("cloudmesh.node_1".to_owned()));
        assert!(GraphiteConfig::new("graphite.lan:2003", "x").is_ok());
        assert!(GraphiteConfig::new("[::1]:2003", "x").is_ok());
        assert!(matches!(
            GraphiteConfig::new("graphite.lan", "x"),
            Err(GraphiteConfigError::BadServer(_))
        ));
        assert!(matches!(
            GraphiteConfig::new("h:99999", "x"),
            Err(GraphiteConfigError::BadServer(_))
        ));
        assert!(matches!(
            GraphiteConfig::new("h:1", ".."),
            Err(GraphiteConfigError::BadPrefix(_))
        ));
    }

    #[test]
    fn buffer_drops_oldest_past_the_bound() {
        let s = Shared::new();
        s.push_back((0..5).map(|i| i.to_string()).collect(), 3);
        assert_eq!(Vec::from(s.buffer().clone()), ["2", "3", "4"]);
        // Put back in front, it is the oldest: the first to go when the buffer is full.
        s.push_front(vec!["a".into()], 3);
        assert_eq!(Vec::from(s.buffer().clone()), ["2", "3", "4"]);
        s.buffer().pop_back();
        s.push_front(vec!["a".into()], 3);
        assert_eq!(Vec::from(s.buffer().clone()), ["a", "2", "3"]);
        assert_eq!(s.dropped.load(Ordering::Relaxed), 3);
    }
}
