//! The bare-QUIC baseline of BENCHMARKS.md: N connections, one long-lived bidirectional stream
//! each, 32-byte messages echoed by the server, D messages in flight per connection.
//!
//! Endpoints are built with cloudmesh's own `transport` (same TLS 1.3 provider, same
//! `Timing`, same transport config), so the figure is what the transport alone costs and
//! `cloudctl bench throughput` can be held against it (the goal: ≥ 90% of this).
//!
//! ```text
//! cargo run --release --example quic_pingpong -- server [--listen 127.0.0.1:0]
//!   -> prints: listening 127.0.0.1:PORT fingerprint HEX
//! cargo run --release --example quic_pingpong -- client --server 127.0.0.1:PORT --pin HEX \
//!       --clients 50 --pipeline 16 --duration 10s [--json]
//! ```

use std::collections::VecDeque;
use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use cloudmesh::bench::Report;
use cloudmesh::transport::{self, Identity, Timing, Trust};

/// ALPN of this baseline (the settings are cloudmesh's; the protocol is not).
const ALPN: &[u8] = b"quic-pingpong/1";
/// Bytes per message, as in the comparison of BENCHMARKS.md.
const MSG: usize = 32;
/// No read may wait longer than this during a run.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Connecting all clients may take at most this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Parser)]
#[command(about = "Bare QUIC ping-pong baseline with cloudmesh's transport settings")]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Echo every 32-byte message on every bidirectional stream.
    Server {
        /// UDP address to listen on (loopback by default; port 0 picks a free one)
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// Exit on its own after this long (a safety net for scripts)
        #[arg(long, default_value = "1h", value_parser = parse_duration)]
        exit_after: Duration,
    },
    /// Drive N connections with D messages in flight each; report round trips/s.
    Client {
        /// The server, HOST:PORT
        #[arg(long)]
        server: SocketAddr,
        /// The server's certificate fingerprint (as printed by `server`)
        #[arg(long, value_parser = parse_pin, conflicts_with = "insecure", required_unless_present = "insecure")]
        pin: Option<[u8; 32]>,
        /// Accept any certificate (loopback testing only)
        #[arg(long)]
        insecure: bool,
        /// Connections, each with one long-lived stream
        #[arg(long, default_value_t = 50)]
        clients: usize,
        /// Messages in flight per connection
        #[arg(long, default_value_t = 1)]
        pipeline: usize,
        /// How long to measure (e.g. 10s)
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        duration: Duration,
        /// One JSON line instead of a table
        #[arg(long)]
        json: bool,
    },
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{e} (write e.g. 10s, 500ms)"))
}

fn parse_pin(text: &str) -> Result<[u8; 32], String> {
    transport::parse_fingerprint(text).map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    transport::install_crypto_provider();
    let outcome = match Cli::parse().mode {
        Mode::Server { listen, exit_after } => server(listen, exit_after).await,
        Mode::Client {
            server,
            pin,
            insecure: _,
            clients,
            pipeline,
            duration,
            json,
        } => {
            let trust = match pin {
                Some(p) => Trust::Pin(p),
                None => Trust::InsecureDevOnly,
            };
            client(
                server,
                trust,
                clients.max(1),
                pipeline.max(1),
                duration,
                json,
            )
            .await
        }
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quic_pingpong: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn server(listen: SocketAddr, exit_after: Duration) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("creating a temporary directory for the identity")?;
    let identity = Identity::load_or_generate(dir.path(), &["localhost".to_owned()])
        .context("generating the server identity")?;
    let cfg = transport::server_config(&identity, &[ALPN], Timing::default())
        .context("building the QUIC server config")?;
    let endpoint = quinn::Endpoint::server(cfg, listen)
        .with_context(|| format!("cannot listen on UDP {listen}"))?;
    let addr = endpoint.local_addr().context("reading the bound address")?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "listening {addr} fingerprint {}",
            identity.fingerprint()
        )?;
        out.flush()?;
    }
    let accept = async {
        while let Some(incoming) = endpoint.accept().await {
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                // Every bidirectional stream the client opens is echoed.
                while let Ok((send, recv)) = conn.accept_bi().await {
                    tokio::spawn(echo(send, recv));
                }
            });
        }
    };
    tokio::select! {
        () = accept => {}
        _ = tokio::signal::ctrl_c() => {}
        () = tokio::time::sleep(exit_after) => eprintln!("quic_pingpong: server exits after {exit_after:?}"),
    }
    endpoint.close(0u32.into(), b"bye");
    // Give the close a moment to reach the clients; bounded.
    let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
    Ok(())
}

/// Echoes whole 32-byte messages as they arrive: everything complete in one read goes back
/// in one write, as any echo server would (no per-message write).
async fn echo(mut send: quinn::SendStream, mut recv: quinn::RecvStream) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut have = 0usize;
    loop {
        match recv.read(&mut buf[have..]).await {
            Ok(Some(n)) => have += n,
            Ok(None) | Err(_) => break,
        }
        let whole = have / MSG * MSG;
        if whole > 0 {
            if send.write_all(&buf[..whole]).await.is_err() {
                break;
            }
            buf.copy_within(whole..have, 0);
            have -= whole;
        }
    }
    let _ = send.finish();
}

/// One connection's result.
struct ConnResult {
    latencies_us: Vec<u32>,
    errors: u64,
}

async fn client(
    server: SocketAddr,
    trust: Trust,
    clients: usize,
    pipeline: usize,
    duration: Duration,
    json: bool,
) -> anyhow::Result<()> {
    if !json {
        eprintln!(
            "quic_pingpong: {clients} connections x {pipeline} in flight, {duration:?}, against {server}"
        );
    }
    let cfg = transport::client_config(&trust, ALPN, Timing::default())
        .context("building the QUIC client config")?;
    // Like the SDK: one endpoint (UDP socket) per client connection.
    let connect_all = async {
        let mut streams = Vec::with_capacity(clients);
        for i in 0..clients {
            let bind = SocketAddr::from(([127, 0, 0, 1], 0));
            let endpoint = quinn::Endpoint::client(bind).context("binding a client socket")?;
            let conn = endpoint
                .connect_with(cfg.clone(), server, "localhost")
                .context("starting a connection")?
                .await
                .with_context(|| format!("connection {i} to {server} failed"))?;
            let (send, recv) = conn.open_bi().await.context("opening the stream")?;
            streams.push((endpoint, conn, send, recv));
        }
        anyhow::Ok(streams)
    };
    let streams = tokio::time::timeout(CONNECT_TIMEOUT, connect_all)
        .await
        .with_context(|| format!("connecting {clients} clients took over {CONNECT_TIMEOUT:?}"))??;

    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::with_capacity(clients);
    let mut keep = Vec::with_capacity(clients);
    for (endpoint, conn, send, recv) in streams {
        keep.push((endpoint, conn));
        tasks.push(tokio::spawn(drive(send, recv, pipeline, deadline)));
    }
    let mut all = Vec::new();
    let mut errors = 0u64;
    for t in tasks {
        match t.await {
            Ok(r) => {
                all.extend(r.latencies_us);
                errors += r.errors;
            }
            Err(_) => errors += 1,
        }
    }
    let elapsed = start.elapsed();
    for (endpoint, conn) in keep {
        conn.close(0u32.into(), b"done");
        endpoint.close(0u32.into(), b"done");
    }
    let report = Report::from_latencies(&mut all, errors, elapsed);
    if json {
        let extra = [
            ("scenario", "quic_pingpong".into()),
            ("clients", clients.into()),
            ("pipeline", pipeline.into()),
        ];
        println!("{}", cloudmesh::bench::json_with(&report, &extra)?);
    } else {
        println!("{}", report.table("rtt/s"));
    }
    if report.ops == 0 {
        bail!("no round trip completed");
    }
    Ok(())
}

/// Keeps `pipeline` messages in flight on one stream until `deadline`: writes D, then one
/// more for each echo; after the deadline waits (bounded) for the ones still in flight.
async fn drive(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    pipeline: usize,
    deadline: Instant,
) -> ConnResult {
    let mut lat = Vec::with_capacity(1 << 16);
    let mut sent_at: VecDeque<Instant> = VecDeque::with_capacity(pipeline);
    let mut out = Vec::with_capacity(pipeline * MSG);
    let mut seq = 0u64;
    let msg = |seq: &mut u64, out: &mut Vec<u8>| {
        let mut m = [0u8; MSG];
        m[..8].copy_from_slice(&seq.to_le_bytes());
        *seq += 1;
        out.extend_from_slice(&m);
    };
    let now = Instant::now();
    for _ in 0..pipeline {
        msg(&mut seq, &mut out);
        sent_at.push_back(now);
    }
    if send.write_all(&out).await.is_err() {
        return ConnResult {
            latencies_us: lat,
            errors: 1,
        };
    }
    let mut buf = vec![0u8; 64 * 1024];
    let mut have = 0usize;
    let mut errors = 0u64;
    while !sent_at.is_empty() {
        let read = tokio::time::timeout(READ_TIMEOUT, recv.read(&mut buf[have..])).await;
        match read {
            Ok(Ok(Some(n))) => have += n,
            // Timeout, end of stream or a connection error: what is in flight is lost.
            _ => {
                errors += sent_at.len() as u64;
                break;
            }
        }
        let whole = have / MSG;
        let now = Instant::now();
        out.clear();
        for _ in 0..whole {
            if let Some(t) = sent_at.pop_front() {
                lat.push(u32::try_from(now.duration_since(t).as_micros()).unwrap_or(u32::MAX));
            }
            if now < deadline {
                msg(&mut seq, &mut out);
                sent_at.push_back(now);
            }
        }
        buf.copy_within(whole * MSG..have, 0);
        have -= whole * MSG;
        if !out.is_empty() && send.write_all(&out).await.is_err() {
            errors += sent_at.len() as u64;
            break;
        }
    }
    let _ = send.finish();
    ConnResult {
        latencies_us: lat,
        errors,
    }
}
