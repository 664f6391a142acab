//! An instance directory over the mesh, with free-slot accounting: hosts create instances
//! (rows `instances/ID`: region, map, slots, used, free, players), players search for one
//! with free slots in their region (a mesh-wide query, emptiest first), join it by posting
//! a seat (`seats/ID`), play, leave (release the seat); the host accepts seats in arrival
//! order up to its slots, publishes the count, and at the end destroys its instances.
//!
//! Against `cloudctl demo`'s mesh (any node's address and certificate fingerprint; `cloudctl
//! --socket DIR/node-1/admin.sock status` shows both):
//!
//! ```text
//! cargo run --example instance_directory -- --server 127.0.0.1:PORT --pin HEX \
//!     [--hosts 3] [--instances 2] [--players 20] [--slots 4]
//! ```
//!
//! Exits 1 if an instance ever accepted more players than its slots, or if a player who
//! was accepted was not in the instance's published list.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use cloudmesh::client::{Client, ClientOptions, Event};
use cloudmesh::proto::{Key, KeySpec, Row};
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
    /// How many hosts
    #[arg(long, default_value_t = 3)]
    hosts: u32,
    /// Instances per host
    #[arg(long, default_value_t = 2)]
    instances: u32,
    /// How many players
    #[arg(long, default_value_t = 20)]
    players: u32,
    /// Slots per instance
    #[arg(long, default_value_t = 4)]
    slots: u32,
}

const REGIONS: &[&str] = &["eu", "us"];

/// Counts what went wrong, for the exit status, and who plays where (as the players
/// themselves see it: each counts itself in once the host lists it, out before it leaves).
#[derive(Debug, Default)]
struct Faults {
    overbooked: AtomicU64,
    lost_seats: AtomicU64,
    seated: std::sync::Mutex<HashMap<u32, u32>>,
}

impl Faults {
    fn seat(&self, id: u32, slots: u32) {
        let mut seated = self.seated.lock().unwrap_or_else(|e| e.into_inner());
        let n = seated.entry(id).or_default();
        *n += 1;
        if *n > slots {
            self.overbooked.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn unseat(&self, id: u32) {
        let mut seated = self.seated.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = seated.get_mut(&id) {
            *n = n.saturating_sub(1);
        }
    }
}

fn instance_row(region: &str, slots: u32, players: &[String], open: bool) -> String {
    let used = players.len() as u32;
    serde_json::json!({
        "region": region,
        "map": "forest",
        "slots": slots,
        "used": used,
        "free": if open { slots - used } else { 0 },
        "players": players,
        "state": if open { "open" } else { "closing" },
    })
    .to_string()
}

/// One host: creates its instances, accepts seats in arrival order up to the slots, runs
/// until `stop`, then destroys them.
async fn host(
    client: Client,
    ids: Vec<u32>,
    slots: u32,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let region = |id: u32| REGIONS[id as usize % REGIONS.len()];
    let specs: Vec<KeySpec> = ids
        .iter()
        .map(|id| KeySpec::exact(&Key::new("seats", *id)))
        .collect();
    let (snapshot, mut sub) = client.subscribe(specs, None).await?;
    // Seats per instance in the order this host saw them arrive (versions come from the
    // clock of each seat owner's node, so they do not order seats of different nodes).
    let mut seats: HashMap<u32, Vec<Row>> = HashMap::new();
    let sit = |seats: &mut HashMap<u32, Vec<Row>>, row: Row| {
        let list = seats.entry(row.key.secondary).or_default();
        match list.iter_mut().find(|r| r.owner == row.owner) {
            Some(kept) => *kept = row,
            None => list.push(row),
        }
    };
    for row in snapshot {
        sit(&mut seats, row);
    }
    let publish = |seats: &HashMap<u32, Vec<Row>>, id: u32, open: bool| {
        let accepted: Vec<String> = seats
            .get(&id)
            .map(|list| list.as_slice())
            .unwrap_or_default()
            .iter()
            .take(slots as usize)
            .map(|r| String::from_utf8_lossy(&r.data).into_owned())
            .collect();
        instance_row(region(id), slots, &accepted, open)
    };
    for id in &ids {
        client
            .post(Key::new("instances", *id), publish(&seats, *id, true))
            .await?;
        println!(
            "host: created instance {id} ({}, {slots} slots)",
            region(*id)
        );
    }
    loop {
        tokio::select! {
            event = sub.next() => {
                let Some(event) = event else { bail!("host connection closed") };
                let id = event.row().key.secondary;
                match event {
                    Event::Updated(row) => sit(&mut seats, row),
                    Event::Deleted { row, .. } => {
                        if let Some(list) = seats.get_mut(&id) {
                            list.retain(|r| r.owner != row.owner);
                        }
                    }
                }
                client.post(Key::new("instances", id), publish(&seats, id, true)).await?;
            }
            _ = stop.changed() => break,
        }
    }
    let keys: Vec<Key> = ids.iter().map(|id| Key::new("instances", *id)).collect();
    client.release(keys).await?;
    println!("host: destroyed instances {ids:?}");
    client.close().await;
    Ok(())
}

/// One player: finds an instance with a free slot in its region, takes a seat, checks the
/// host accepted it (else tries another), plays a while, leaves.
async fn player(client: Client, n: u32, slots: u32, faults: Arc<Faults>) -> anyhow::Result<()> {
    let name = format!("player-{n}");
    let region = REGIONS[n as usize % REGIONS.len()];
    let search = Query::on(["instances".parse()?])
        .filter(field("region").eq(region).and(field("free").gt(0)))
        .sort_by_desc("free")
        .limit(3);
    for attempt in 0..20 {
        let page = client.query(&search).await?;
        let Some(pick) = page
            .rows
            .get(rand::thread_rng().gen_range(0..page.rows.len().max(1)))
        else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let id = pick.key.secondary;
        let seat = Key::new("seats", id);
        // Watch the instance, then sit down: the host's answer is a change of its row.
        let (_, mut sub) = client
            .subscribe(vec![KeySpec::exact(&Key::new("instances", id))], None)
            .await?;
        client.post(seat.clone(), name.clone()).await?;
        let accepted = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(Event::Updated(row)) = sub.next().await {
                let v: serde_json::Value = serde_json::from_slice(&row.data).unwrap_or_default();
                let listed = v["players"]
                    .as_array()
                    .is_some_and(|p| p.iter().any(|x| x.as_str() == Some(&name)));
                let full = v["used"].as_u64() >= v["slots"].as_u64();
                if listed {
                    return true;
                }
                if full {
                    return false;
                }
            }
            false
        })
        .await
        .unwrap_or(false);
        drop(sub);
        if !accepted {
            client.release(vec![seat]).await?;
            println!("{name}: instance {id} was full, searching again (attempt {attempt})");
            continue;
        }
        faults.seat(id, slots);
        println!("{name}: joined instance {id} ({region})");
        let play = rand::thread_rng().gen_range(300..1500);
        tokio::time::sleep(Duration::from_millis(play)).await;
        // Still listed while playing?
        let rows = client
            .get(vec![KeySpec::exact(&Key::new("instances", id))])
            .await?;
        let listed = rows.iter().any(|r| {
            serde_json::from_slice::<serde_json::Value>(&r.data)
                .ok()
                .and_then(|v| v["players"].as_array().cloned())
                .is_some_and(|p| p.iter().any(|x| x.as_str() == Some(&name)))
        });
        if !listed {
            faults.lost_seats.fetch_add(1, Ordering::Relaxed);
        }
        faults.unseat(id);
        client.release(vec![seat]).await?;
        println!("{name}: left instance {id}");
        client.close().await;
        return Ok(());
    }
    println!("{name}: found no free slot, giving up");
    client.close().await;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let trust = Trust::Pin(parse_fingerprint(&args.pin).context("--pin")?);
    let opts = ClientOptions::new(trust);
    let faults = Arc::new(Faults::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut hosts = Vec::new();
    let mut next_id = 1;
    for _ in 0..args.hosts {
        let ids: Vec<u32> = (next_id..next_id + args.instances).collect();
        next_id += args.instances;
        let client = Client::connect_mesh(&[args.server], opts.clone()).await?;
        hosts.push(tokio::spawn(host(client, ids, args.slots, stop_rx.clone())));
    }
    // Let the hosts create their instances.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let directory = Client::connect(args.server, opts.clone()).await?;
    let all = directory
        .query_all(
            Query::on(["instances".parse()?])
                .sort_by("region")
                .build()?,
        )
        .await?;
    println!("directory: {} instances", all.rows.len());

    let mut players = Vec::new();
    for n in 0..args.players {
        let client = Client::connect_mesh(&[args.server], opts.clone()).await?;
        players.push(tokio::spawn(player(client, n, args.slots, faults.clone())));
    }
    for p in players {
        p.await??;
    }
    // Every player left: every instance is empty again once its host saw the last seats go.
    let busy_query = Query::on(["instances".parse()?])
        .filter(field("used").gt(0))
        .build()?;
    let mut busy = directory.query_page(busy_query.clone()).await?;
    for _ in 0..50 {
        if busy.rows.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        busy = directory.query_page(busy_query.clone()).await?;
    }
    let _ = stop_tx.send(true);
    for h in hosts {
        h.await??;
    }
    let left = directory.get(vec!["instances".parse()?]).await?;
    directory.close().await;
    let (over, lost) = (
        faults.overbooked.load(Ordering::Relaxed),
        faults.lost_seats.load(Ordering::Relaxed),
    );
    println!(
        "done: {} instance(s) still busy after everyone left, {} left after destroy, \
         {over} overbooked, {lost} lost seat(s)",
        busy.rows.len(),
        left.len()
    );
    if over > 0 || lost > 0 || !left.is_empty() || !busy.rows.is_empty() {
        bail!("free-slot accounting failed");
    }
    Ok(())
}
