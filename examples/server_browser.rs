//! A server browser over the mesh: game servers post their load and details as rows
//! `servers/N` (JSON objects), players come and go on them, and a browser lists the
//! emptiest open servers of a region live, with a query evaluated where the rows live.
//!
//! Against `cloudctl demo`'s mesh (any node's address and certificate fingerprint; `cloudctl
//! --socket DIR/node-1/admin.sock status` shows both):
//!
//! ```text
//! cargo run --example server_browser -- --server 127.0.0.1:PORT --pin HEX \
//!     [--servers 30] [--region eu] [--top 10] [--duration 10s]
//! ```
//!
//! The game servers report a position in the game world, so the demo's zone placement
//! spreads them over its nodes. The browser prints the first page of a one-shot query,
//! then the live top list each time it changes; at the end it checks the live list against
//! a fresh query and exits 1 if they differ.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use cloudmesh::client::{Client, ClientOptions, QueryEvent};
use cloudmesh::proto::{Key, Position, Row};
use cloudmesh::query::{field, Query};
use cloudmesh::transport::{parse_fingerprint, Trust};
use rand::Rng;

#[derive(Debug, Parser)]
struct Args {
    /// A node of the mesh, HOST:PORT
    #[arg(long)]
    server: SocketAddr,
    /// That node's certificate fingerprint (hex)
    #[arg(long)]
    pin: String,
    /// How many game servers to run
    #[arg(long, default_value_t = 30)]
    servers: u32,
    /// The region the browser lists
    #[arg(long, default_value = "eu")]
    region: String,
    /// How many servers the browser shows
    #[arg(long, default_value_t = 10)]
    top: u32,
    /// How long to run, e.g. 10s
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
}

const REGIONS: &[&str] = &["eu", "us", "asia"];
const MAPS: &[&str] = &["dust", "harbor", "forest"];

fn server_row(n: u32, players: u32, max: u32) -> String {
    serde_json::json!({
        "name": format!("server-{n}"),
        "region": REGIONS[n as usize % REGIONS.len()],
        "map": MAPS[n as usize % MAPS.len()],
        "players": players,
        "max": max,
        "open": players < max,
    })
    .to_string()
}

/// A game server: posts its row, then players join and leave it until the deadline.
/// Returns its connection, still open (its row lives as long as it does).
async fn game_server(
    n: u32,
    opts: ClientOptions,
    seed: SocketAddr,
    until: Instant,
) -> anyhow::Result<Client> {
    let client = Client::connect_mesh(&[seed], opts)
        .await
        .with_context(|| format!("server-{n} cannot connect"))?;
    let key = Key::new("servers", n);
    let max = 16;
    let mut players = rand::thread_rng().gen_range(0..=max);
    client
        .post(key.clone(), server_row(n, players, max))
        .await?;
    while Instant::now() < until {
        let wait = rand::thread_rng().gen_range(100..600);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        let delta: i32 = rand::thread_rng().gen_range(-2..=2);
        players = players.saturating_add_signed(delta).min(max);
        client
            .post(key.clone(), server_row(n, players, max))
            .await?;
    }
    Ok(client)
}

fn show(rows: &[Row]) -> String {
    rows.iter()
        .filter_map(|r| {
            let v: serde_json::Value = serde_json::from_slice(&r.data).ok()?;
            Some(format!(
                "{}({}/{})",
                v["name"].as_str()?,
                v["players"],
                v["max"]
            ))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let trust = Trust::Pin(parse_fingerprint(&args.pin).context("--pin")?);
    let until = Instant::now() + args.duration;
    let mut servers = Vec::new();
    for n in 0..args.servers {
        let mut opts = ClientOptions::new(trust.clone());
        let mut rng = rand::thread_rng();
        opts.position = Some(Position {
            x: rng.gen_range(0.0..500.0),
            y: rng.gen_range(0.0..500.0),
        });
        servers.push(tokio::spawn(game_server(n, opts, args.server, until)));
    }

    let browser = Client::connect(args.server, ClientOptions::new(trust)).await?;
    let query = Query::on(["servers".parse()?])
        .filter(
            field("region")
                .eq(args.region.as_str())
                .and(field("open").eq(true)),
        )
        .sort_by("players")
        .sort_by("name")
        .limit(args.top);
    // Give the servers a moment to post, then one mesh-wide query.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let page = browser.query(&query).await?;
    println!(
        "query: {} emptiest open {} servers: {}{}",
        page.rows.len(),
        args.region,
        show(&page.rows),
        if page.incomplete.is_empty() {
            String::new()
        } else {
            format!(" (incomplete: {:?})", page.incomplete)
        }
    );

    let (initial, mut live) = browser.watch_query(&query).await?;
    println!("live:  {}", show(&initial));
    let mut shown = initial;
    let (mut entered, mut updated, mut left) = (0u64, 0u64, 0u64);
    loop {
        let left_time = until.saturating_duration_since(Instant::now());
        let event = match tokio::time::timeout(left_time, live.next()).await {
            Ok(Some(e)) => e,
            Ok(None) => bail!("the browser's connection closed"),
            Err(_) => break,
        };
        match event {
            QueryEvent::Entered(_) => entered += 1,
            QueryEvent::Updated(_) => updated += 1,
            QueryEvent::Left { .. } => left += 1,
        }
        let now = live.current();
        if now != shown {
            println!("live:  {}", show(&now));
            shown = now;
        }
    }
    let mut connections = Vec::new();
    for s in servers {
        connections.push(s.await??);
    }
    // Drain what is still in flight, then compare with a fresh query.
    let mut fresh = browser.query(&query).await?;
    for _ in 0..50 {
        while live.try_next().is_some() {}
        if live.current() == fresh.rows {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        fresh = browser.query(&query).await?;
    }
    println!("events: {entered} entered, {updated} updated, {left} left");
    if live.current() != fresh.rows {
        bail!(
            "the live list differs from a fresh query:\n  live  {}\n  fresh {}",
            show(&live.current()),
            show(&fresh.rows)
        );
    }
    println!("the live list equals a fresh query: {}", show(&fresh.rows));
    for c in connections {
        c.close().await;
    }
    browser.close().await;
    Ok(())
}
