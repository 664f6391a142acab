//! A NATS measurement client for the comparison in BENCHMARKS.md, speaking the NATS text protocol
//! (INFO, CONNECT, PING/PONG, SUB, PUB, MSG) over plain TCP, with no NATS crate.
//!
//! `latency`: publishers on `--pub` publish at a fixed total rate, each message carrying its
//! send time; a subscriber on `--sub` measures publish → delivery (one process clock). The
//! JSON line has the fields of `cloudctl bench fanout --json`.
//!
//! `throughput`: publishers send 32-byte messages as fast as TCP takes them (flushed in
//! batches); one subscriber counts deliveries per second.
//!
//! ```text
//! cargo run --release --example nats_bench -- latency --pub 127.0.0.1:4222 \
//!       --sub 127.0.0.1:4224 --rate 10000 --duration 10s [--json]
//! cargo run --release --example nats_bench -- throughput --pub 127.0.0.1:4222 \
//!       --sub 127.0.0.1:4224 --duration 10s [--json]
//! ```

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use bytes::{Buf, Bytes, BytesMut};
use clap::{Parser, Subcommand};
use cloudmesh::bench::{FanoutReport, Report};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{watch, Mutex};

/// Longest control line accepted (INFO is the longest the server sends).
const MAX_LINE: usize = 64 * 1024;
/// Largest message payload accepted.
const MAX_PAYLOAD: usize = 1 << 20;
/// Connecting and the CONNECT/PING handshake may take at most this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed for the subscription to reach the publishers' server through the cluster.
const PROPAGATION_TIMEOUT: Duration = Duration::from_secs(5);
/// After publishing stops, wait at most this long for the last deliveries.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// First 8 bytes of every measured payload; anything else (probes) is not measured.
const MAGIC: &[u8; 8] = b"cmbench1";

#[derive(Debug, Parser)]
#[command(about = "NATS publish/subscribe measurements (for comparing with cloudmesh)")]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Publish → delivery latency at a fixed rate (like `cloudctl bench fanout`).
    Latency {
        #[command(flatten)]
        common: Common,
        /// Messages per second, across all publishers
        #[arg(long, default_value_t = 10_000)]
        rate: u32,
        /// Publishing connections
        #[arg(long, default_value_t = 4)]
        publishers: usize,
    },
    /// Delivered messages per second with publishers sending as fast as they can.
    Throughput {
        #[command(flatten)]
        common: Common,
        /// Publishing connections
        #[arg(long, default_value_t = 1)]
        publishers: usize,
        /// Messages written per flush
        #[arg(long, default_value_t = 256)]
        batch: usize,
        /// Payload bytes per message (at least 16)
        #[arg(long, default_value_t = 32)]
        size: usize,
    },
}

#[derive(Debug, clap::Args)]
struct Common {
    /// NATS server the publishers connect to, HOST:PORT
    #[arg(long = "pub", value_name = "HOST:PORT")]
    pub_addr: SocketAddr,
    /// NATS server the subscriber connects to, HOST:PORT
    #[arg(long = "sub", value_name = "HOST:PORT")]
    sub_addr: SocketAddr,
    /// How long to publish (e.g. 10s)
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Subject to use
    #[arg(long, default_value = "cloudmesh.bench")]
    subject: String,
    /// One JSON line instead of a table
    #[arg(long)]
    json: bool,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{e} (write e.g. 10s, 500ms)"))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let outcome = match Cli::parse().mode {
        Mode::Latency {
            common,
            rate,
            publishers,
        } => latency(&common, rate.max(1), publishers.max(1)).await,
        Mode::Throughput {
            common,
            publishers,
            batch,
            size,
        } => throughput(&common, publishers.max(1), batch.max(1), size.max(16)).await,
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nats_bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------
// The protocol

/// What the server sent.
#[derive(Debug)]
enum Op {
    Info,
    Ping,
    Pong,
    Ok,
    Err(String),
    Msg(Bytes),
}

/// Splits server operations off a TCP stream. Cancel-safe: state lives in the buffer.
struct Reader {
    rd: OwnedReadHalf,
    buf: BytesMut,
    peer: SocketAddr,
}

impl Reader {
    async fn next(&mut self) -> anyhow::Result<Op> {
        loop {
            if let Some(op) = self.parse()? {
                return Ok(op);
            }
            if self.buf.capacity() - self.buf.len() < 16 * 1024 {
                self.buf.reserve(64 * 1024);
            }
            let n = self
                .rd
                .read_buf(&mut self.buf)
                .await
                .with_context(|| format!("reading from NATS server {}", self.peer))?;
            if n == 0 {
                bail!("NATS server {} closed the connection", self.peer);
            }
        }
    }

    /// One whole operation off the front of the buffer, if there is one.
    fn parse(&mut self) -> anyhow::Result<Option<Op>> {
        let Some(eol) = self.buf.windows(2).position(|w| w == b"\r\n") else {
            if self.buf.len() > MAX_LINE {
                bail!(
                    "NATS server {} sent a line over {MAX_LINE} bytes",
                    self.peer
                );
            }
            return Ok(None);
        };
        let line = std::str::from_utf8(&self.buf[..eol])
            .map_err(|_| anyhow!("NATS server {} sent a line that is not UTF-8", self.peer))?;
        let mut words = line.split_ascii_whitespace();
        let verb = words.next().unwrap_or("").to_ascii_uppercase();
        let op = match verb.as_str() {
            "MSG" => {
                // MSG <subject> <sid> [reply-to] <#bytes>
                let args: Vec<&str> = words.collect();
                if !(3..=4).contains(&args.len()) {
                    bail!(
                        "NATS server {} sent a malformed MSG line: {line:?}",
                        self.peer
                    );
                }
                let len: usize = args[args.len() - 1]
                    .parse()
                    .map_err(|_| anyhow!("bad MSG length in {line:?}"))?;
                if len > MAX_PAYLOAD {
                    bail!("NATS server {} sent a {len}-byte message", self.peer);
                }
                let total = eol + 2 + len + 2;
                if self.buf.len() < total {
                    return Ok(None);
                }
                if &self.buf[total - 2..total] != b"\r\n" {
                    bail!("NATS server {} sent a message without its CRLF", self.peer);
                }
                self.buf.advance(eol + 2);
                let payload = self.buf.split_to(len).freeze();
                self.buf.advance(2);
                return Ok(Some(Op::Msg(payload)));
            }
            "INFO" => Op::Info,
            "PING" => Op::Ping,
            "PONG" => Op::Pong,
            "+OK" => Op::Ok,
            "-ERR" => Op::Err(line.get(4..).unwrap_or("").trim().to_owned()),
            "HMSG" => bail!(
                "NATS server {} sent HMSG; headers were not asked for",
                self.peer
            ),
            _ => bail!(
                "NATS server {} sent an unknown operation: {line:?}",
                self.peer
            ),
        };
        self.buf.advance(eol + 2);
        Ok(Some(op))
    }
}

/// Connects, reads INFO, sends CONNECT and waits for the PONG that confirms it.
async fn connect(addr: SocketAddr, name: &str) -> anyhow::Result<(Reader, OwnedWriteHalf)> {
    let handshake = async {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot connect to NATS at {addr}"))?;
        stream.set_nodelay(true)?;
        let (rd, mut wr) = stream.into_split();
        let mut reader = Reader {
            rd,
            buf: BytesMut::with_capacity(64 * 1024),
            peer: addr,
        };
        match reader.next().await? {
            Op::Info => {}
            other => bail!("NATS server {addr} did not start with INFO (got {other:?})"),
        }
        let connect = format!(
            "CONNECT {{\"verbose\":false,\"pedantic\":false,\"tls_required\":false,\
             \"name\":\"{name}\",\"lang\":\"rust\",\"version\":\"0.1.0\",\"protocol\":1,\
             \"echo\":false}}\r\nPING\r\n"
        );
        wr.write_all(connect.as_bytes()).await?;
        // Bounded: the whole handshake is under CONNECT_TIMEOUT.
        loop {
            match reader.next().await? {
                Op::Pong => break,
                Op::Ok | Op::Info => {}
                Op::Ping => wr.write_all(b"PONG\r\n").await?,
                Op::Err(e) => bail!("NATS server {addr} refused CONNECT: {e}"),
                Op::Msg(_) => bail!("NATS server {addr} sent MSG before any SUB"),
            }
        }
        anyhow::Ok((reader, wr))
    };
    tokio::time::timeout(CONNECT_TIMEOUT, handshake)
        .await
        .map_err(|_| {
            anyhow!(
                "NATS handshake with {addr} took over {CONNECT_TIMEOUT:?} (is a NATS server \
                 listening there?)"
            )
        })?
}

/// One `PUB subject len\r\npayload\r\n`.
fn put_pub(out: &mut Vec<u8>, subject: &str, payload: &[u8]) {
    out.extend_from_slice(b"PUB ");
    out.extend_from_slice(subject.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
}

// ---------------------------------------------------------------------------------------
// Shared pieces of both scenarios

/// Microseconds since `base` (the process clock both ends of a measurement use).
fn micros_since(base: Instant) -> u64 {
    u64::try_from(base.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// Fills `p` with a payload: MAGIC, send time, padding to `size` (at least 16 bytes).
fn fill_payload(p: &mut Vec<u8>, base: Instant, size: usize) {
    p.clear();
    p.extend_from_slice(MAGIC);
    p.extend_from_slice(&micros_since(base).to_le_bytes());
    p.resize(size.max(16), 0x42);
}

/// What the subscriber saw.
#[derive(Default)]
struct SubState {
    latencies_us: Vec<u32>,
    last_delivery: Option<Instant>,
    errors: Vec<String>,
}

/// Counters the subscriber updates while it runs.
#[derive(Default)]
struct SubCounters {
    probes: AtomicU64,
    measured: AtomicU64,
}

/// Subscribes on `addr` and confirms the subscription with a PING round trip, then runs a
/// task that measures every delivery until `stop` turns true (or the connection fails).
async fn start_subscriber(
    addr: SocketAddr,
    subject: &str,
    base: Instant,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<(Arc<SubCounters>, tokio::task::JoinHandle<SubState>)> {
    let (mut reader, mut wr) = connect(addr, "nats_bench-sub").await?;
    wr.write_all(format!("SUB {subject} 1\r\nPING\r\n").as_bytes())
        .await?;
    tokio::time::timeout(CONNECT_TIMEOUT, async {
        loop {
            match reader.next().await? {
                Op::Pong => return anyhow::Ok(()),
                Op::Ping => wr.write_all(b"PONG\r\n").await?,
                Op::Err(e) => bail!("NATS server {addr} refused SUB: {e}"),
                Op::Ok | Op::Info | Op::Msg(_) => {}
            }
        }
    })
    .await
    .map_err(|_| anyhow!("NATS server {addr} did not confirm SUB within {CONNECT_TIMEOUT:?}"))??;

    let counters = Arc::new(SubCounters::default());
    let c = counters.clone();
    let mut stop = stop;
    let task = tokio::spawn(async move {
        let mut st = SubState {
            latencies_us: Vec::with_capacity(1 << 20),
            ..SubState::default()
        };
        loop {
            let op = tokio::select! {
                op = reader.next() => op,
                _ = stop.wait_for(|s| *s) => break,
            };
            match op {
                Ok(Op::Msg(p)) => {
                    if p.len() >= 16 && &p[..8] == MAGIC {
                        let mut sent = [0u8; 8];
                        sent.copy_from_slice(&p[8..16]);
                        let us = micros_since(base).saturating_sub(u64::from_le_bytes(sent));
                        st.latencies_us.push(u32::try_from(us).unwrap_or(u32::MAX));
                        st.last_delivery = Some(Instant::now());
                        c.measured.fetch_add(1, Ordering::Relaxed);
                    } else {
                        c.probes.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(Op::Ping) => {
                    if let Err(e) = wr.write_all(b"PONG\r\n").await {
                        st.errors.push(format!("subscriber: {e}"));
                        break;
                    }
                }
                Ok(Op::Err(e)) => st.errors.push(format!("subscriber's server: {e}")),
                Ok(Op::Pong | Op::Ok | Op::Info) => {}
                Err(e) => {
                    st.errors.push(format!("subscriber: {e:#}"));
                    break;
                }
            }
        }
        st
    });
    Ok((counters, task))
}

/// A publishing connection: the write half (shared with its reader task, which answers the
/// server's PINGs) and the errors that reader saw.
struct Publisher {
    wr: Arc<Mutex<OwnedWriteHalf>>,
    errors: Arc<StdMutex<Vec<String>>>,
    reader: tokio::task::JoinHandle<()>,
}

async fn start_publisher(addr: SocketAddr, i: usize) -> anyhow::Result<Publisher> {
    let (mut reader, wr) = connect(addr, &format!("nats_bench-pub-{i}")).await?;
    let wr = Arc::new(Mutex::new(wr));
    let errors = Arc::new(StdMutex::new(Vec::new()));
    let (w, e) = (wr.clone(), errors.clone());
    let reader = tokio::spawn(async move {
        // Ends when the connection closes (the publisher is dropped) or fails.
        loop {
            match reader.next().await {
                Ok(Op::Ping) => {
                    if w.lock().await.write_all(b"PONG\r\n").await.is_err() {
                        break;
                    }
                }
                Ok(Op::Err(msg)) => {
                    if let Ok(mut v) = e.lock() {
                        v.push(format!("publisher {i}'s server: {msg}"));
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    Ok(Publisher { wr, errors, reader })
}

/// Publishes probes until the subscriber sees one: the subscription has then reached the
/// publishers' server through the cluster's routes, and nothing measured is lost to that.
async fn await_propagation(
    publisher: &Publisher,
    subject: &str,
    counters: &SubCounters,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + PROPAGATION_TIMEOUT;
    let mut probe = Vec::new();
    put_pub(&mut probe, subject, b"probe");
    while counters.probes.load(Ordering::Relaxed) == 0 {
        if Instant::now() > deadline {
            bail!(
                "the subscription did not reach the publishers' server within \
                 {PROPAGATION_TIMEOUT:?} (are the NATS servers routed to each other?)"
            );
        }
        publisher
            .wr
            .lock()
            .await
            .write_all(&probe)
            .await
            .context("publishing a probe")?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Waits (bounded) until the subscriber measured `expected` deliveries.
/// One measurement's subscriber and publishers, from setup to teardown.
struct Run {
    /// The clock every timestamp in a payload counts from.
    base: Instant,
    /// Tells the subscriber to stop.
    stop: watch::Sender<bool>,
    /// What the subscriber has seen so far.
    counters: Arc<SubCounters>,
    /// The subscriber's task.
    sub: tokio::task::JoinHandle<SubState>,
    /// Publisher connections.
    pubs: Vec<Publisher>,
}

impl Run {
    /// Subscribes on `c.sub_addr`, connects `publishers` to `c.pub_addr`, and waits until the
    /// subscription has reached the publishers' server.
    async fn start(c: &Common, publishers: usize) -> anyhow::Result<Run> {
        let base = Instant::now();
        let (stop, stop_rx) = watch::channel(false);
        let (counters, sub) = start_subscriber(c.sub_addr, &c.subject, base, stop_rx).await?;
        let mut pubs = Vec::with_capacity(publishers);
        for i in 0..publishers {
            pubs.push(start_publisher(c.pub_addr, i).await?);
        }
        if let Some(first) = pubs.first() {
            await_propagation(first, &c.subject, &counters).await?;
        }
        Ok(Run {
            base,
            stop,
            counters,
            sub,
            pubs,
        })
    }

    /// Waits (bounded) until `sent` messages were measured, stops everything, reports what
    /// went wrong on stderr, and hands back what the subscriber saw.
    async fn end(self, sent: u64) -> SubState {
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while self.counters.measured.load(Ordering::Relaxed) < sent && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let _ = self.stop.send(true);
        let mut st = match tokio::time::timeout(Duration::from_secs(5), self.sub).await {
            Ok(Ok(st)) => st,
            _ => SubState {
                errors: vec!["the subscriber task did not finish".into()],
                ..SubState::default()
            },
        };
        let mut problems = std::mem::take(&mut st.errors);
        for p in self.pubs {
            let _ = p.wr.lock().await.shutdown().await;
            p.reader.abort();
            if let Ok(v) = p.errors.lock() {
                problems.extend(v.iter().cloned());
            }
        }
        for p in &problems {
            eprintln!("nats_bench: {p}");
        }
        st
    }
}

fn print_json(
    value: &impl serde::Serialize,
    extra: &[(&str, serde_json::Value)],
) -> anyhow::Result<()> {
    println!("{}", cloudmesh::bench::json_with(value, extra)?);
    Ok(())
}

fn print_table(r: &Report) {
    println!("{}", r.table("msgs/s"));
}

// ---------------------------------------------------------------------------------------
// Scenarios

async fn latency(c: &Common, rate: u32, publishers: usize) -> anyhow::Result<()> {
    if !c.json {
        eprintln!(
            "nats_bench: latency: {rate} msgs/s on {} for {:?}, subscriber on {}",
            c.pub_addr, c.duration, c.sub_addr
        );
    }
    let run = Run::start(c, publishers).await?;
    let base = run.base;

    let n = run.pubs.len() as f64;
    let per_publisher = (f64::from(rate) / n).max(1.0);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(run.pubs.len());
    for p in &run.pubs {
        let wr = p.wr.clone();
        let subject = c.subject.clone();
        let duration = c.duration;
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / per_publisher));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let (mut posted, mut errors) = (0u64, 0u64);
            let (mut msg, mut p) = (Vec::with_capacity(64), Vec::with_capacity(16));
            while start.elapsed() < duration {
                tick.tick().await;
                msg.clear();
                fill_payload(&mut p, base, 16);
                put_pub(&mut msg, &subject, &p);
                // One write per message, as a client posting each change would.
                match wr.lock().await.write_all(&msg).await {
                    Ok(()) => posted += 1,
                    Err(_) => {
                        errors += 1;
                        break;
                    }
                }
            }
            (posted, errors)
        }));
    }
    let (posted, errors) = sum_counts(tasks).await;
    let elapsed = start.elapsed();
    let mut st = run.end(posted).await;
    let received = st.latencies_us.len() as u64;
    let report = FanoutReport {
        latency: Report::from_latencies(&mut st.latencies_us, errors, elapsed),
        posted,
        missing: posted.saturating_sub(received),
    };
    if c.json {
        print_json(
            &report,
            &[
                ("scenario", "nats_latency".into()),
                ("rate", rate.into()),
                ("publishers", publishers.into()),
            ],
        )?;
    } else {
        print_table(&report.latency);
        println!("published {posted}, deliveries missing {}", report.missing);
    }
    if received == 0 {
        bail!("no message was delivered");
    }
    Ok(())
}

/// What the throughput scenario measured.
#[derive(serde::Serialize)]
struct ThroughputReport {
    /// Deliveries at the subscriber (`ops`), per second of the run, and their latency.
    #[serde(flatten)]
    delivered: Report,
    /// Messages the publishers wrote.
    published: u64,
    /// `published` per second of publishing.
    published_per_sec: f64,
    /// Published messages that never reached the subscriber (e.g. slow-consumer drops).
    missing: u64,
}

async fn throughput(
    c: &Common,
    publishers: usize,
    batch: usize,
    size: usize,
) -> anyhow::Result<()> {
    if !c.json {
        eprintln!(
            "nats_bench: throughput: {publishers} publishers on {} ({size}-byte messages, \
             {batch} per flush) for {:?}, subscriber on {}",
            c.pub_addr, c.duration, c.sub_addr
        );
    }
    let run = Run::start(c, publishers).await?;
    let base = run.base;

    let start = Instant::now();
    let mut tasks = Vec::with_capacity(run.pubs.len());
    for p in &run.pubs {
        let wr = p.wr.clone();
        let subject = c.subject.clone();
        let duration = c.duration;
        tasks.push(tokio::spawn(async move {
            let (mut published, mut errors) = (0u64, 0u64);
            let mut buf = Vec::with_capacity(batch * (size + subject.len() + 16));
            let mut p = Vec::with_capacity(size);
            while start.elapsed() < duration {
                buf.clear();
                for _ in 0..batch {
                    fill_payload(&mut p, base, size);
                    put_pub(&mut buf, &subject, &p);
                }
                // A write that cannot finish within the run plus a margin is an error.
                let write = async { wr.lock().await.write_all(&buf).await };
                match tokio::time::timeout(duration + Duration::from_secs(5), write).await {
                    Ok(Ok(())) => published += batch as u64,
                    _ => {
                        errors += 1;
                        break;
                    }
                }
            }
            (published, errors)
        }));
    }
    let (published, errors) = sum_counts(tasks).await;
    let publishing = start.elapsed();
    let mut st = run.end(published).await;
    let delivered = st.latencies_us.len() as u64;
    // Deliveries per second from the start to the last delivery.
    let window = st
        .last_delivery
        .map_or(publishing, |t| t.saturating_duration_since(start))
        .max(Duration::from_millis(1));
    let report = ThroughputReport {
        delivered: Report::from_latencies(&mut st.latencies_us, errors, window),
        published,
        published_per_sec: published as f64 / publishing.as_secs_f64().max(1e-9),
        missing: published.saturating_sub(delivered),
    };
    if c.json {
        print_json(
            &report,
            &[
                ("scenario", "nats_throughput".into()),
                ("publishers", publishers.into()),
                ("size", size.into()),
            ],
        )?;
    } else {
        print_table(&report.delivered);
        println!(
            "published {published} ({:.0}/s), deliveries missing {}",
            report.published_per_sec, report.missing
        );
    }
    if delivered == 0 {
        bail!("no message was delivered");
    }
    Ok(())
}

/// Waits for publisher tasks and adds up their (sent, errors); a task that died counts as
/// one error.
async fn sum_counts(tasks: Vec<tokio::task::JoinHandle<(u64, u64)>>) -> (u64, u64) {
    let (mut sent, mut errors) = (0u64, 0u64);
    for t in tasks {
        match t.await {
            Ok((s, e)) => {
                sent += s;
                errors += e;
            }
            Err(_) => errors += 1,
        }
    }
    (sent, errors)
}
