//! Micro-benchmarks of the cloud memory (`cloudmesh::store`): the work the node
//! does under its hub lock for each request, without any network.
//!
//! Run: `cargo bench --bench store` (add `-- --quick` for a short run).

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use cloudmesh::proto::{
    encode_to_bytes, outbox, ClientId, DeleteReason, GetQuery, Key, KeySpec, NodeId, Outbox,
    OutboxWriter, ServerFrame, DEFAULT_MAX_FRAME,
};
use cloudmesh::store::{Fanout, Filters, Store, StoreLimits};

const NOW_MS: u64 = 1_760_000_000_000;

/// Rows of other clients under other primaries, so lookups do not run in an empty map.
const BACKGROUND_CLIENTS: u64 = 100;
const BACKGROUND_ROWS_EACH: u32 = 10;

fn value() -> Bytes {
    Bytes::from(vec![0x42; 32])
}

fn add(s: &mut Store, id: u64) -> ClientId {
    let id = ClientId(id);
    if let Err(e) = s.add_client(id, "default", Bytes::new()) {
        panic!("benchmark client not added: {e}");
    }
    id
}

fn post(s: &mut Store, owner: ClientId, key: Key) -> Fanout {
    match s.post(owner, key, value(), NOW_MS) {
        Ok((_, fan)) => fan,
        Err(e) => panic!("benchmark post refused: {e}"),
    }
}

/// A store holding background rows: 100 clients × 10 rows under `bg.N`.
fn store() -> Store {
    let mut s = Store::new(NodeId(7), StoreLimits::default(), Filters::default());
    for c in 0..BACKGROUND_CLIENTS {
        let id = add(&mut s, 1_000_000 + c);
        for k in 0..BACKGROUND_ROWS_EACH {
            post(&mut s, id, Key::new(format!("bg.{c}"), k));
        }
    }
    s
}

fn subscribe(s: &mut Store, id: ClientId, spec: KeySpec) {
    let q = GetQuery {
        keys: vec![spec],
        subscribe: true,
        ..GetQuery::default()
    };
    if let Err(e) = s.get(id, &q) {
        panic!("benchmark subscription refused: {e}");
    }
}

/// The node's delivery of one fan-out (node::Hub::deliver): encode the notification once,
/// queue the same bytes on each recipient's outbox.
fn deliver(fan: Fanout, links: &HashMap<ClientId, Outbox>) -> usize {
    if fan.recipients.is_empty() {
        return 0;
    }
    let Ok(frame) = encode_to_bytes(&ServerFrame::Notify(fan.notification), DEFAULT_MAX_FRAME)
    else {
        return 0;
    };
    let mut queued = 0;
    for id in &fan.recipients {
        if let Some(out) = links.get(id) {
            if out.push_notification(frame.clone()).is_ok() {
                queued += 1;
            }
        }
    }
    queued
}

fn post_overwrite(c: &mut Criterion) {
    let mut g = c.benchmark_group("post");
    g.throughput(Throughput::Elements(1));
    let mut s = store();
    let owner = add(&mut s, 1);
    let key = Key::new("players", 3);
    post(&mut s, owner, key.clone());
    g.bench_function("overwrite_32B", |b| {
        b.iter(|| black_box(s.post(owner, key.clone(), value(), NOW_MS).is_ok()))
    });
    g.finish();
}

/// Post to a key with N subscribers. `store_only`: the store's work (including the list of
/// recipients); `with_delivery`: that plus encoding the notification once and queueing it
/// on every recipient's outbox, as the node does under its lock (the writer tasks' dequeue is
/// not timed; it only keeps the queues bounded).
fn post_subscribed(c: &mut Criterion) {
    let mut g = c.benchmark_group("post_subscribed");
    g.throughput(Throughput::Elements(1));
    for subs in [0u64, 10, 100] {
        let mut s = store();
        let owner = add(&mut s, 1);
        let key = Key::new("players", 3);
        let mut links = HashMap::new();
        let mut writers: Vec<OutboxWriter> = Vec::new();
        for i in 0..subs {
            let id = add(&mut s, 10 + i);
            // Half subscribe to the exact key, half to the whole primary.
            let spec = if i % 2 == 0 {
                KeySpec::exact(&key)
            } else {
                KeySpec::primary("players")
            };
            subscribe(&mut s, id, spec);
            let (tx, rx) = outbox(1 << 20);
            links.insert(id, tx);
            writers.push(rx);
        }
        post(&mut s, owner, key.clone());
        assert_eq!(s.subscribers(&key, owner).len() as u64, subs);

        g.bench_with_input(BenchmarkId::new("store_only", subs), &subs, |b, _| {
            b.iter(|| match s.post(owner, key.clone(), value(), NOW_MS) {
                Ok((_, fan)) => black_box(fan.recipients.len()),
                Err(_) => 0,
            })
        });
        g.bench_with_input(BenchmarkId::new("with_delivery", subs), &subs, |b, _| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters;
                // Batches of up to 64 posts are timed; the writers' dequeue after each batch
                // is not (it runs on the connections' writer tasks, outside the hub lock).
                while left > 0 {
                    let n = left.min(64);
                    let start = Instant::now();
                    for _ in 0..n {
                        let queued = match s.post(owner, key.clone(), value(), NOW_MS) {
                            Ok((_, fan)) => deliver(fan, &links),
                            Err(_) => 0,
                        };
                        black_box(queued);
                    }
                    total += start.elapsed();
                    for w in &mut writers {
                        black_box(w.take_queued());
                    }
                    left -= n;
                }
                total
            })
        });
        g.bench_with_input(
            BenchmarkId::new("subscribers_lookup", subs),
            &subs,
            |b, _| b.iter(|| black_box(s.subscribers(&key, owner).len())),
        );
    }
    g.finish();
}

fn get(c: &mut Criterion) {
    let mut g = c.benchmark_group("get");
    let mut s = store();
    let owner = add(&mut s, 1);
    let reader = add(&mut s, 2);
    for k in 0..100 {
        post(&mut s, owner, Key::new("players", k));
    }
    let exact = GetQuery {
        keys: vec![KeySpec::exact(&Key::new("players", 42))],
        ..GetQuery::default()
    };
    let primary = GetQuery {
        keys: vec![KeySpec::primary("players")],
        ..GetQuery::default()
    };
    let rows = |s: &mut Store, q: &GetQuery| s.get(reader, q).map_or(0, |p| p.rows.len());
    assert_eq!(rows(&mut s, &exact), 1);
    assert_eq!(rows(&mut s, &primary), 100);

    g.throughput(Throughput::Elements(1));
    g.bench_function("exact_key", |b| b.iter(|| black_box(rows(&mut s, &exact))));
    // Elements = rows returned, so the figure reads as rows/s.
    g.throughput(Throughput::Elements(100));
    g.bench_function("primary_100_rows", |b| {
        b.iter(|| black_box(rows(&mut s, &primary)))
    });
    g.finish();
}

/// A client holding 10 rows disconnects: its rows are deleted (with their fan-outs) and it
/// is unregistered. Setting the client up is not timed.
fn remove_client(c: &mut Criterion) {
    let mut g = c.benchmark_group("remove_client");
    g.throughput(Throughput::Elements(1));
    for subs in [0u64, 10] {
        let mut s = store();
        for i in 0..subs {
            let id = add(&mut s, 10 + i);
            subscribe(&mut s, id, KeySpec::primary("leaving"));
        }
        let mut next_id = 1_000_000_000u64;
        g.bench_with_input(BenchmarkId::new("rows_10_subs", subs), &subs, |b, _| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters;
                // Batches of up to 100 clients: set up untimed, then time their removal.
                while left > 0 {
                    let n = left.min(100);
                    let ids: Vec<ClientId> = (0..n)
                        .map(|_| {
                            next_id += 1;
                            let id = add(&mut s, next_id);
                            for k in 0..10 {
                                post(&mut s, id, Key::new("leaving", k));
                            }
                            id
                        })
                        .collect();
                    let start = Instant::now();
                    for id in ids {
                        black_box(s.remove_client(id, DeleteReason::Disconnected, NOW_MS));
                    }
                    total += start.elapsed();
                    left -= n;
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group!(benches, post_overwrite, post_subscribed, get, remove_client);
criterion_main!(benches);
