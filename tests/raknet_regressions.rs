//! Regression tests for the RakNet CloudServer flaws that apply to one node.

mod common;

use std::collections::HashSet;

use bytes::Bytes;
use cloudmesh::client::{ClientError, Event};
use cloudmesh::proto::{GetQuery, Key, KeySpec, WireError};
use common::*;

fn spec(s: &str) -> KeySpec {
    s.parse().expect("key spec")
}

/// RakNet indexed rows with a 16-bit counter and looped forever past 65,535 rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_over_65535_rows_completes_with_paging() {
    const ROWS: u32 = 70_000;
    let n = node().await;
    let writer = n.client().await;
    within("posting 70,000 rows", async {
        let mut tasks = Vec::new();
        for t in 0..8u32 {
            let w = writer.clone();
            tasks.push(tokio::spawn(async move {
                for i in (t..ROWS).step_by(8) {
                    w.post(Key::new("many", i), Bytes::new())
                        .await
                        .expect("post");
                }
            }));
        }
        for t in tasks {
            t.await.expect("poster");
        }
    })
    .await;
    assert_eq!(
        n.node.stats().rows as u32,
        ROWS + 2,
        "70,000 rows plus the node's cloud.nodes/0 and cloud.load/0"
    );

    let reader = n.client().await;
    let mut query = GetQuery {
        keys: vec![spec("many")],
        ..GetQuery::default()
    };
    let mut seen = HashSet::new();
    let mut last: Option<(Key, cloudmesh::proto::ClientId)> = None;
    let mut pages = 0;
    within("paging through 70,000 rows", async {
        loop {
            pages += 1;
            assert!(pages < 1000, "paging must terminate");
            let page = reader.get_page(query.clone()).await.expect("page");
            for row in &page.rows {
                let id = (row.key.clone(), row.owner);
                assert!(
                    last.as_ref().is_none_or(|l| *l < id),
                    "stable ascending order across pages"
                );
                last = Some(id.clone());
                assert!(seen.insert(id), "no row twice");
            }
            match page.next {
                Some(c) => query.start = Some(c),
                None => break,
            }
        }
    })
    .await;
    assert_eq!(seen.len() as u32, ROWS);
    assert!(
        pages >= 7,
        "the default page limit (10,000 rows) forces paging; took {pages} pages"
    );
    // The SDK's get_all follows the cursors itself.
    let all = within("get_all", reader.get(vec![spec("many")]))
        .await
        .expect("get_all");
    assert_eq!(all.len() as u32, ROWS);
}

/// RakNet's SetMaxBytesPerDownload was never enforced.
#[tokio::test]
async fn download_limit_is_enforced_with_a_cursor() {
    let n = node_with(|c| {
        c.limits.max_get_bytes = 8 * 1024;
        c.limits.max_row_bytes = 4 * 1024;
    })
    .await;
    let a = n.client().await;
    for i in 0..50 {
        a.post(Key::new("blobs", i), vec![i as u8; 1024])
            .await
            .expect("post");
    }
    let page = a
        .get_page(GetQuery {
            keys: vec![spec("blobs")],
            ..GetQuery::default()
        })
        .await
        .expect("page");
    let bytes: usize = page.rows.iter().map(|r| r.data.len()).sum();
    assert!(
        bytes <= 8 * 1024,
        "page carries {bytes} bytes of data, over the 8 KiB limit"
    );
    assert!(page.rows.len() < 50 && !page.rows.is_empty());
    let cursor = page.next.clone().expect("a continuation cursor");
    assert_eq!(cursor.key, page.rows.last().expect("rows").key);
    let all = a.get(vec![spec("blobs")]).await.expect("get_all");
    assert_eq!(all.len(), 50);
    // A single row at the row limit still fits a page, so paging always progresses.
    a.post(Key::new("big", 0), vec![1u8; 4 * 1024])
        .await
        .expect("post max row");
    assert_eq!(a.get(vec![spec("big")]).await.expect("get").len(), 1);
}

/// RakNet silently dropped a post over quota and wiped other clients' rows doing so.
#[tokio::test]
async fn quota_rejection_is_typed_and_leaves_every_row_intact() {
    let n = node_with(|c| c.limits.max_client_bytes = 4096).await;
    let a = n.client().await;
    let b = n.client().await;
    let watcher = n.client().await;
    b.post(Key::new("shared", 1), vec![2u8; 1000])
        .await
        .expect("b posts");
    a.post(Key::new("shared", 1), vec![1u8; 1000])
        .await
        .expect("a posts");
    a.post(Key::new("shared", 2), vec![1u8; 1000])
        .await
        .expect("a posts again");
    let (before, mut sub) = watcher
        .subscribe(vec![spec("shared")], None)
        .await
        .expect("subscribe");
    assert_eq!(before.len(), 3);

    let err = a
        .post(Key::new("shared", 3), vec![1u8; 3000])
        .await
        .expect_err("must be refused");
    assert!(
        matches!(
            err,
            ClientError::Server(WireError::QuotaExceeded { limit: 4096, .. })
        ),
        "{err}"
    );
    // Replacing an existing row with one that does not fit is refused the same way, and the
    // old row stays as it was.
    let err = a
        .post(Key::new("shared", 1), vec![1u8; 4000])
        .await
        .expect_err("must be refused");
    assert!(
        matches!(err, ClientError::Server(WireError::QuotaExceeded { .. })),
        "{err}"
    );

    let after = watcher.get(vec![spec("shared")]).await.expect("get");
    assert_eq!(after, before, "no row changed, neither a's nor b's");
    watcher.ping().await.expect("ping");
    assert_eq!(
        sub.try_next(),
        None,
        "subscribers saw no change and no deletion"
    );
    // And the client can still post within its quota.
    a.post(Key::new("shared", 3), vec![1u8; 100])
        .await
        .expect("fits");
    assert!(
        matches!(next_event(&mut sub).await, Event::Updated(r) if r.key == Key::new("shared", 3))
    );
}

/// RakNet dropped filtered requests silently; here every rejection is a typed error.
#[tokio::test]
async fn rejections_are_never_silent() {
    let n = node_with(|c| c.limits.max_keys_per_query = 2).await;
    let a = n.client().await;
    let err = a
        .get(vec![spec("a"), spec("b"), spec("c")])
        .await
        .expect_err("must be refused");
    assert!(
        matches!(
            err,
            ClientError::Server(WireError::TooManyKeys { count: 3, max: 2 })
        ),
        "{err}"
    );
    let err = a
        .post(Key::new("cloud.load", 0), "x")
        .await
        .expect_err("must be refused");
    assert!(
        matches!(err, ClientError::Server(WireError::Forbidden { .. })),
        "{err}"
    );
}

/// RakNet's re-post inflated a per-key counter so a released key was never un-indexed.
#[tokio::test]
async fn reposting_then_releasing_unindexes_the_key() {
    let n = node().await;
    let a = n.client().await;
    let b = n.client().await;
    for i in 0..500 {
        a.post(Key::new("again", 1), format!("v{i}"))
            .await
            .expect("repost");
    }
    b.post(Key::new("again", 1), "b").await.expect("b");
    // Two clients' rows plus the node's own cloud.nodes/0 and cloud.load/0.
    assert_eq!(n.node.stats().rows, 4);
    assert_eq!(n.node.holders_of("again"), vec![n.node.id()]);
    a.release(vec![Key::new("again", 1)])
        .await
        .expect("release");
    let rows = b.get(vec![spec("again")]).await.expect("get");
    assert_eq!(rows.len(), 1, "only b's row remains");
    b.release(vec![Key::new("again", 1)])
        .await
        .expect("release");
    assert!(b.get(vec![spec("again")]).await.expect("get").is_empty());
    assert_eq!(
        n.node.stats().rows,
        2,
        "only the node's own reserved rows remain"
    );
    assert!(
        n.node.holders_of("again").is_empty(),
        "the key is no longer indexed as held"
    );
}
