//! Queries over row contents on real meshes over QUIC: results equal brute force, bad
//! queries get typed errors, and the get limits hold.

mod common;

use std::time::Duration;

use cloudmesh::client::{Client, ClientError};
use cloudmesh::mesh::MeshSecret;
use cloudmesh::proto::{ClientId, Key, KeySpec, Row, RowQuery, SortKey, Term, WireError};
use cloudmesh::query::{field, parse_object, Compiled, Query};
use cloudmesh::NodeConfig;
use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn mesh_config(c: &mut NodeConfig, name: &str) {
    init_test_log();
    c.name = name.into();
    c.secret = Some(MeshSecret::new(vec![9; 32]).expect("secret"));
    c.load_interval = Duration::from_millis(100);
    c.rebalance_interval = Duration::ZERO;
}

fn servers() -> KeySpec {
    "servers".parse().expect("spec")
}

/// A random server row: mostly JSON objects, some that are not objects at all.
fn server_row(rng: &mut StdRng, i: u32) -> String {
    match rng.gen_range(0..12) {
        0 => "not json".to_owned(),
        1 => "[1, 2, 3]".to_owned(),
        _ => {
            let region = ["eu", "us", "asia"][rng.gen_range(0..3)];
            let mode = ["ctf", "dm", "race"][rng.gen_range(0..3)];
            let mut v = serde_json::json!({
                "region": region,
                "mode": mode,
                "players": rng.gen_range(0..20),
                "name": format!("s{}", i % 17),
                "x": rng.gen_range(0.0..100.0),
                "y": rng.gen_range(0.0..100.0),
            });
            if rng.gen_bool(0.3) {
                v["password"] = serde_json::json!(true);
            }
            if rng.gen_bool(0.2) {
                // Ties and missing sort values must order too.
                v.as_object_mut().expect("object").remove("players");
            }
            v.to_string()
        }
    }
}

const FILTERS: &[&str] = &[
    "",
    r#"region = "eu""#,
    "players < 8",
    "players >= 12 and players <= 18",
    r#"region in ("eu", "us") and mode != "ctf""#,
    r#"name prefix "s1""#,
    "exists password or players = 3",
    r#"(region = "asia" or mode = "dm") and players > 4"#,
    "near(50, 50, 30)",
    "within(0, 0, 40, 60) and players < 15",
    "players < 0",
];

const SORTS: &[&str] = &[
    "",
    "players",
    "-players",
    "region, players desc",
    "name, -x",
];

/// The brute-force answer: every row the plain get returns, filtered and ordered by the
/// documented rules, as `(key, owner)`.
fn brute_force(rows: &[Row], query: &RowQuery) -> Vec<(Key, ClientId)> {
    let q = Compiled::new(query).expect("valid query");
    let objs: Vec<_> = rows.iter().map(|r| parse_object(&r.data)).collect();
    let mut idx: Vec<usize> = (0..rows.len())
        .filter(|&i| q.matches(objs[i].as_ref()))
        .collect();
    idx.sort_by(|&a, &b| {
        let (ra, rb) = (&rows[a], &rows[b]);
        q.place(
            objs[a].as_ref(),
            &ra.key.primary,
            ra.key.secondary,
            ra.owner,
        )
        .cmp(
            &q.place(
                objs[b].as_ref(),
                &rb.key.primary,
                rb.key.secondary,
                rb.owner,
            ),
            &query.sort,
        )
    });
    idx.into_iter()
        .map(|i| (rows[i].key.clone(), rows[i].owner))
        .collect()
}

async fn post_rows(clients: &[Client], per_client: u32, seed: u64) -> usize {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut n = 0;
    for (ci, c) in clients.iter().enumerate() {
        for j in 0..per_client {
            let sec = ci as u32 * 1000 + j;
            // Some keys shared by several owners, most not.
            let sec = if j == 0 { 7 } else { sec };
            c.post(Key::new("servers", sec), server_row(&mut rng, sec))
                .await
                .expect("post");
            n += 1;
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_results_equal_brute_force_across_a_mesh() {
    let nodes = mesh_of(&["a", "b", "c"], mesh_config).await;
    let mut clients = Vec::new();
    for n in &nodes {
        for _ in 0..3 {
            clients.push(n.client().await);
        }
    }
    let total = post_rows(&clients, 6, 18).await;
    let asker = &clients[0];
    wait_until_rows(asker, total).await;
    let everything = asker.get(vec![servers()]).await.expect("get all");
    assert_eq!(everything.len(), total);

    let mut rng = StdRng::seed_from_u64(7);
    for round in 0..60 {
        let filter = FILTERS[rng.gen_range(0..FILTERS.len())];
        let sort = SORTS[rng.gen_range(0..SORTS.len())];
        let page = [0u32, 1, 2, 3, 5, 8][rng.gen_range(0..6)];
        let query = Query::on([servers()])
            .where_text(filter)
            .and_then(|q| q.sort_text(sort))
            .expect("query text")
            .limit(page)
            .build()
            .expect("builds");
        let expected = brute_force(&everything, &query);
        // Asked of a random node, followed page by page.
        let c = &clients[rng.gen_range(0..clients.len())];
        let mut got = Vec::new();
        let mut q = query.clone();
        for _ in 0..200 {
            let p = within("a query page", c.query_page(q.clone()))
                .await
                .expect("query");
            assert!(p.incomplete.is_empty(), "every node answers: {p:?}");
            if page > 0 {
                assert!(p.rows.len() <= page as usize, "a page holds its limit");
            }
            got.extend(p.rows.iter().map(|r| (r.key.clone(), r.owner)));
            match p.next {
                Some(cursor) => q.start = Some(cursor),
                None => break,
            }
        }
        assert_eq!(
            got, expected,
            "round {round}: where {filter:?} sort {sort:?} limit {page}"
        );
    }

    // The typed builder and the text compile to the same wire form.
    let built = Query::on([servers()])
        .filter(field("region").eq("eu").and(field("players").lt(8)))
        .sort_by_desc("players")
        .limit(20)
        .build()
        .expect("builds");
    let text = Query::on([servers()])
        .where_text(r#"region = "eu" and players < 8"#)
        .and_then(|q| q.sort_text("-players"))
        .expect("parses")
        .limit(20)
        .build()
        .expect("builds");
    assert_eq!(built, text);
    let top = asker
        .query(
            &Query::on([servers()])
                .where_text(r#"region = "eu" and players < 8"#)
                .expect("parses")
                .sort_by_desc("players")
                .limit(20),
        )
        .await
        .expect("query");
    let expect: Vec<_> = brute_force(&everything, &built)
        .into_iter()
        .take(20)
        .collect();
    let got: Vec<_> = top.rows.iter().map(|r| (r.key.clone(), r.owner)).collect();
    assert_eq!(got, expect);
}

async fn wait_until_rows(c: &Client, total: usize) {
    within("every row visible mesh-wide", async {
        loop {
            let rows = c.get(vec![servers()]).await.expect("get");
            if rows.len() == total {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

fn raw(filter: Vec<Term>) -> RowQuery {
    RowQuery {
        keys: vec![servers()],
        filter,
        sort: vec![],
        limit: 0,
        start: None,
    }
}

fn invalid_reason(r: Result<cloudmesh::proto::QueryPage, ClientError>) -> String {
    match r {
        Err(ClientError::Server(WireError::InvalidQuery { reason })) => reason,
        other => panic!("expected InvalidQuery, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_queries_get_a_typed_error_naming_the_problem() {
    let nodes = mesh_of(&["a", "b"], mesh_config).await;
    let c = nodes[0].client().await;
    let other = nodes[1].client().await;
    other
        .post(Key::new("servers", 1), r#"{"players": 3}"#)
        .await
        .expect("post");

    // Refused by the SDK before anything is sent.
    match Query::on([servers()]).where_text("players <") {
        Err(e) => assert!(e.to_string().contains("expected a value"), "{e}"),
        Ok(q) => panic!("parsed {q:?}"),
    }
    let sdk = c
        .query(&Query::on([servers()]).filter(field("").eq(1)))
        .await;
    assert!(
        matches!(&sdk, Err(ClientError::Query(e)) if e.to_string().contains("empty")),
        "{sdk:?}"
    );

    // Sent raw, refused by the node with the reason.
    let deep: Vec<Term> = std::iter::repeat_n(Term::And(1), 100)
        .chain([Term::Exists {
            field: "players".into(),
        }])
        .collect();
    let r = invalid_reason(c.query_page(raw(deep)).await);
    assert!(r.contains("nests"), "{r}");
    let r = invalid_reason(c.query_page(raw(vec![Term::Or(3)])).await);
    assert!(r.contains("parts"), "{r}");
    let r = invalid_reason(
        c.query_page(raw(vec![Term::Near {
            center: cloudmesh::proto::Point {
                x: 0.0,
                y: f64::INFINITY,
                z: None,
            },
            radius: 1.0,
        }]))
        .await,
    );
    assert!(r.contains("finite"), "{r}");
    let huge = vec![
        Term::Exists {
            field: "players".into()
        };
        5000
    ];
    let r = invalid_reason(c.query_page(raw(huge)).await);
    assert!(r.contains("terms"), "{r}");
    let mut no_keys = raw(vec![]);
    no_keys.keys.clear();
    let r = invalid_reason(c.query_page(no_keys).await);
    assert!(r.contains("no keys"), "{r}");
    let mut bad_cursor = raw(vec![]);
    bad_cursor.sort = vec![SortKey {
        field: "players".into(),
        descending: false,
    }];
    bad_cursor.start = Some(cloudmesh::proto::QueryCursor {
        sort: vec![],
        key: Key::new("servers", 0),
        owner: ClientId(0),
    });
    let r = invalid_reason(c.query_page(bad_cursor).await);
    assert!(r.contains("cursor"), "{r}");
    let mut bad_sort = raw(vec![]);
    bad_sort.sort = vec![
        SortKey {
            field: "a".into(),
            descending: false
        };
        9
    ];
    let r = invalid_reason(c.query_page(bad_sort).await);
    assert!(r.contains("sort list"), "{r}");

    // The node keeps serving everyone, the asker included.
    bystander_works(&c, 1).await;
    let page = c
        .query(
            &Query::on([servers()])
                .where_text("players = 3")
                .expect("parses"),
        )
        .await
        .expect("a good query after bad ones");
    assert_eq!(page.rows.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_cannot_exceed_the_get_limits() {
    fn limited(c: &mut NodeConfig, name: &str) {
        mesh_config(c, name);
        c.limits.max_get_rows = 6;
        c.limits.max_get_bytes = 700;
        c.limits.max_row_bytes = 128;
        c.limits.max_scan_rows = 10;
    }
    let nodes = mesh_of(&["a", "b"], limited).await;
    let (a, b) = (nodes[0].client().await, nodes[1].client().await);
    // 12 rows on each node, 110 bytes of data each: four fit a page's bytes.
    for (c, base) in [(&a, 0u32), (&b, 100)] {
        for i in 0..12 {
            let pad = "p".repeat(88);
            let data = format!(r#"{{"n": {}, "pad": "{pad}"}}"#, base + i);
            c.post(Key::new("servers", base + i), data)
                .await
                .expect("post");
        }
    }
    within("every row visible mesh-wide", async {
        loop {
            let page = a
                .get_all(cloudmesh::proto::GetQuery {
                    keys: vec![servers()],
                    ..Default::default()
                })
                .await
                .expect("get");
            if page.rows.len() == 24 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;

    // Unsorted: pages hold at most max_get_rows rows and max_get_bytes bytes, each node
    // looks at no more than max_scan_rows rows per page, and cursors reach every match.
    let q = Query::on([servers()])
        .where_text("n >= 0")
        .expect("parses")
        .build()
        .expect("builds");
    let mut seen = Vec::new();
    let mut query = q.clone();
    let mut pages = 0;
    loop {
        let p = a.query_page(query.clone()).await.expect("page");
        pages += 1;
        assert!(p.rows.len() <= 6, "at most max_get_rows: {}", p.rows.len());
        let bytes: usize = p
            .rows
            .iter()
            .map(|r| r.key.primary.len() + r.data.len() + 48)
            .sum();
        assert!(bytes <= 700, "at most max_get_bytes: {bytes}");
        seen.extend(p.rows.iter().map(|r| r.key.secondary));
        match p.next {
            Some(c) => query.start = Some(c),
            None => break,
        }
        assert!(pages < 100, "paging ends");
    }
    let mut expect: Vec<u32> = (0..12).chain(100..112).collect();
    expect.sort();
    assert_eq!(seen, expect, "every match once, in key order");

    // A query's own limit is honoured under the node's.
    let p = a
        .query_page(Query::on([servers()]).limit(3).build().expect("builds"))
        .await
        .expect("page");
    assert_eq!(p.rows.len(), 3);
    assert!(p.next.is_some());

    // Sorted over the whole primary: the index fills the page after a few rows.
    let sorted = Query::on([servers()])
        .sort_by("n")
        .limit(3)
        .build()
        .expect("builds");
    let p = a
        .query_page(sorted)
        .await
        .expect("an index walk that fills early");
    let ns: Vec<u32> = p.rows.iter().map(|r| r.key.secondary).collect();
    assert_eq!(ns, vec![0, 1, 2]);
    // A node that would have to look at more than max_scan_rows rows to fill the page
    // refuses with a typed error instead of answering wrongly or working without bound.
    let sorted = Query::on([servers()])
        .where_text("n > 9")
        .expect("parses")
        .sort_by("n")
        .limit(3)
        .build()
        .expect("builds");
    match a.query_page(sorted).await {
        Err(ClientError::Server(WireError::TooLarge { size, max, .. })) => {
            assert_eq!((size, max), (12, 10));
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    // Within the bound (one key per node, two nodes) a sorted query is answered.
    let small = Query::on([
        "servers/3".parse().expect("spec"),
        "servers/103".parse().expect("spec"),
    ])
    .sort_by_desc("n")
    .build()
    .expect("builds");
    let p = a.query_page(small).await.expect("small sorted query");
    let ns: Vec<u32> = p.rows.iter().map(|r| r.key.secondary).collect();
    assert_eq!(ns, vec![103, 3]);
    bystander_works(&b, 2).await;
}

/// Every page of `query` from `c`, to the end: each within `max_rows` rows and
/// `max_bytes` bytes (a row counted as the node counts it: primary + data + 48), no node
/// incomplete. Returns the secondaries in the order the pages gave them, and the number
/// of pages.
async fn pages_within(
    c: &Client,
    query: RowQuery,
    max_rows: usize,
    max_bytes: usize,
) -> (Vec<u32>, usize) {
    let mut seen = Vec::new();
    let mut query = query;
    for pages in 1..=100 {
        let p = c.query_page(query.clone()).await.expect("page");
        assert!(p.incomplete.is_empty(), "every node answers: {p:?}");
        assert!(
            p.rows.len() <= max_rows,
            "at most {max_rows} rows: {}",
            p.rows.len()
        );
        let bytes: usize = p
            .rows
            .iter()
            .map(|r| r.key.primary.len() + r.data.len() + 48)
            .sum();
        assert!(bytes <= max_bytes, "at most {max_bytes} bytes: {bytes}");
        seen.extend(p.rows.iter().map(|r| r.key.secondary));
        match p.next {
            Some(c) => query.start = Some(c),
            None => return (seen, pages),
        }
    }
    panic!("paging did not end within 100 pages");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sorted_and_area_query_pages_never_exceed_the_rows_and_bytes_per_page() {
    const MAX_ROWS: u32 = 5;
    const MAX_BYTES: u32 = 720;
    fn limited(c: &mut NodeConfig, name: &str) {
        mesh_config(c, name);
        c.limits.max_get_rows = MAX_ROWS;
        c.limits.max_get_bytes = MAX_BYTES;
        // The node requires rows to fit a page with room to spare (512 bytes).
        c.limits.max_row_bytes = 200;
        // Above the rows per node, so sorted queries are answered; the page bounds bind.
        c.limits.max_scan_rows = 40;
    }
    let nodes = mesh_of(&["a", "b"], limited).await;
    let (a, b) = (nodes[0].client().await, nodes[1].client().await);
    // 16 rows on each node on a 10 x 10 grid of positions, with data of 60 to 180 bytes so
    // the byte bound cuts some pages before the row bound does.
    let mut rows = Vec::new();
    for (c, base) in [(&a, 0u32), (&b, 100)] {
        for i in 0..16u32 {
            let n = base + i;
            let (x, y) = (f64::from(n % 10) * 10.0, f64::from((n / 10) % 10) * 10.0);
            let pad = "p".repeat(20 + (i as usize * 37) % 120);
            let data = format!(r#"{{"n": {n}, "x": {x}, "y": {y}, "pad": "{pad}"}}"#);
            c.post(Key::new("servers", n), data).await.expect("post");
            rows.push((n, x, y));
        }
    }
    within("every row visible mesh-wide", async {
        loop {
            let page = a
                .get_all(cloudmesh::proto::GetQuery {
                    keys: vec![servers()],
                    ..Default::default()
                })
                .await
                .expect("get");
            if page.rows.len() == 32 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let (max_rows, max_bytes) = (MAX_ROWS as usize, MAX_BYTES as usize);
    let inside = |x: f64, y: f64| (x - 40.0).powi(2) + (y - 10.0).powi(2) <= 35.0 * 35.0;
    let area = || {
        cloudmesh::query::near(
            cloudmesh::proto::Point {
                x: 40.0,
                y: 10.0,
                z: None,
            },
            35.0,
        )
    };
    let mut in_area: Vec<u32> = rows
        .iter()
        .filter(|(_, x, y)| inside(*x, *y))
        .map(|(n, _, _)| *n)
        .collect();
    in_area.sort();
    assert!(
        in_area.len() > max_rows,
        "the area needs several pages: {in_area:?}"
    );

    // Area, unsorted (the spatial grid): key order, every match once.
    let q = Query::on([servers()])
        .filter(area())
        .build()
        .expect("builds");
    assert_eq!(pages_within(&a, q, max_rows, max_bytes).await.0, in_area);

    // Sorted over every row (the sort index), descending: the whole order, page by page.
    let q = Query::on([servers()])
        .sort_by_desc("n")
        .build()
        .expect("builds");
    let mut all: Vec<u32> = rows.iter().map(|(n, _, _)| *n).collect();
    all.sort_by(|x, y| y.cmp(x));
    let (seen, pages) = pages_within(&b, q, max_rows, max_bytes).await;
    assert_eq!(seen, all);
    // 32 rows at 5 a page would be 7 pages: the byte bound cut some of them short.
    assert!(pages > 7, "the byte bound binds: {pages} pages");

    // Area and sort together, with a query limit above the node's: the node's bound wins.
    let q = Query::on([servers()])
        .filter(area())
        .sort_by("n")
        .limit(50)
        .build()
        .expect("builds");
    assert_eq!(pages_within(&a, q, max_rows, max_bytes).await.0, in_area);
    bystander_works(&b, 3).await;
}

/// Applies a live query's event to a replayed copy of its result, checking each event
/// fits what came before (entered rows were absent, updated and left rows present, and
/// versions rise per row).
fn replay(
    state: &mut std::collections::HashMap<(Key, ClientId), Row>,
    last_version: &mut std::collections::HashMap<(Key, ClientId), u64>,
    event: cloudmesh::client::QueryEvent,
) {
    use cloudmesh::client::QueryEvent;
    let row = event.row().clone();
    let id = (row.key.clone(), row.owner);
    if let Some(v) = last_version.get(&id) {
        assert!(row.version > *v, "per-row order: {row:?} after version {v}");
    }
    last_version.insert(id.clone(), row.version);
    match event {
        QueryEvent::Entered(row) => {
            assert!(state.insert(id, row).is_none(), "entered twice");
        }
        QueryEvent::Updated(row) => {
            assert!(
                state.insert(id, row).is_some(),
                "updated a row not in the result"
            );
        }
        QueryEvent::Left { .. } => {
            assert!(state.remove(&id).is_some(), "left a row not in the result");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_query_events_replayed_equal_the_final_result_across_a_migration_and_a_drain() {
    fn config(c: &mut NodeConfig, name: &str) {
        mesh_config(c, name);
        c.migration_timeout = Duration::from_secs(5);
    }
    let nodes = mesh_of(&["a", "b", "c"], config).await;
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let posters = [a.client().await, a.client().await, b.client().await];
    let watcher = c.client().await;
    let query = Query::on([servers()])
        .where_text(r#"region = "eu" and players < 10"#)
        .expect("parses")
        .sort_by("players");
    let mut rng = StdRng::seed_from_u64(3);
    // Some rows before the watch starts.
    for (i, p) in posters.iter().enumerate() {
        for s in 0..3u32 {
            p.post(Key::new("servers", s), server_row(&mut rng, i as u32))
                .await
                .expect("post");
        }
    }
    let (initial, mut live) = watcher.watch_query(&query).await.expect("watch");
    let mut state: std::collections::HashMap<(Key, ClientId), Row> = initial
        .into_iter()
        .map(|r| ((r.key.clone(), r.owner), r))
        .collect();
    let mut versions = std::collections::HashMap::new();

    let churn = |rng: &mut StdRng, round: u32| {
        let p = rng.gen_range(0..posters.len());
        let s = rng.gen_range(0..5u32);
        let release = rng.gen_bool(0.2);
        let region = ["eu", "us"][rng.gen_range(0..2)];
        let data =
            serde_json::json!({"region": region, "players": rng.gen_range(0..15), "round": round})
                .to_string();
        (p, s, release, data)
    };
    let mut round = 0;
    let mut apply = async |rng: &mut StdRng, n: u32| {
        for _ in 0..n {
            round += 1;
            let (p, s, release, data) = churn(rng, round);
            if release {
                posters[p]
                    .release(vec![Key::new("servers", s)])
                    .await
                    .expect("release");
            } else {
                posters[p]
                    .post(Key::new("servers", s), data)
                    .await
                    .expect("post");
            }
        }
    };
    apply(&mut rng, 40).await;
    // A poster moves from a to b, and the watcher from c to b, with changes going on.
    within(
        "poster migration",
        a.node.migrate(posters[0].id(), b.node.id()),
    )
    .await
    .expect("poster migrated");
    apply(&mut rng, 30).await;
    within(
        "watcher migration",
        c.node.migrate(watcher.id(), b.node.id()),
    )
    .await
    .expect("watcher migrated");
    apply(&mut rng, 30).await;
    // Node a drains: its last poster moves away.
    within("drain", a.node.drain()).await.expect("drained");
    apply(&mut rng, 30).await;

    let checker = c.client().await;
    within("the replayed result equals a fresh query", async {
        loop {
            while let Some(e) = live.try_next() {
                replay(&mut state, &mut versions, e);
            }
            let fresh = checker
                .query_page(query.build().expect("builds"))
                .await
                .expect("fresh query");
            let mut want: Vec<(Key, ClientId, u64)> = fresh
                .rows
                .iter()
                .map(|r| (r.key.clone(), r.owner, r.version))
                .collect();
            let mut have: Vec<(Key, ClientId, u64)> = state
                .values()
                .map(|r| (r.key.clone(), r.owner, r.version))
                .collect();
            want.sort();
            have.sort();
            if fresh.next.is_none() && want == have {
                let order: Vec<_> = live
                    .current()
                    .iter()
                    .map(|r| (r.key.clone(), r.owner))
                    .collect();
                let fresh_order: Vec<_> = fresh
                    .rows
                    .iter()
                    .map(|r| (r.key.clone(), r.owner))
                    .collect();
                assert_eq!(
                    order, fresh_order,
                    "the live result is in the query's order"
                );
                return;
            }
            match tokio::time::timeout(Duration::from_millis(200), live.next()).await {
                Ok(Some(e)) => replay(&mut state, &mut versions, e),
                Ok(None) => panic!("live query ended"),
                Err(_) => {}
            }
        }
    })
    .await;
    assert!(!state.is_empty(), "the query matched something");
}
