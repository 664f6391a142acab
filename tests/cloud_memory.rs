//! Cloud memory semantics over real QUIC on 127.0.0.1.

mod common;

use std::collections::HashMap;

use bytes::Bytes;
use cloudmesh::client::{ClientError, Event};
use cloudmesh::proto::{DeleteReason, GetQuery, Key, KeySpec, WireError};
use common::*;

fn spec(s: &str) -> KeySpec {
    s.parse().expect("key spec")
}

#[tokio::test]
async fn two_clients_see_each_others_rows() {
    let n = node().await;
    let a = n.client().await;
    let b = n.client().await;
    let va = a
        .post(Key::new("players", 1), "alice")
        .await
        .expect("post a");
    let vb = b.post(Key::new("players", 2), "bob").await.expect("post b");
    assert!(vb > va);
    let rows = b.get(vec![spec("players")]).await.expect("get");
    assert_eq!(rows.len(), 2);
    assert_eq!((rows[0].owner, &rows[0].data[..]), (a.id(), &b"alice"[..]));
    assert_eq!((rows[1].owner, &rows[1].data[..]), (b.id(), &b"bob"[..]));
    assert_eq!(rows[0].node, n.node.id());
    let rows = a.get(vec![spec("players/2")]).await.expect("get one key");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].owner, b.id());
}

#[tokio::test]
async fn disconnect_deletes_rows_and_notifies_subscribers() {
    let n = node().await;
    let watcher = n.client().await;
    let leaver = n.client().await;
    leaver
        .post(Key::new("presence", 7), "here")
        .await
        .expect("post");
    let (snapshot, mut sub) = watcher
        .subscribe(vec![spec("presence")], None)
        .await
        .expect("subscribe");
    assert_eq!(snapshot.len(), 1);
    let leaver_id = leaver.id();
    leaver.close().await;
    match next_event(&mut sub).await {
        Event::Deleted { row, reason } => {
            assert_eq!(reason, DeleteReason::Disconnected);
            assert_eq!(row.owner, leaver_id);
            assert!(row.version > snapshot[0].version);
        }
        other => panic!("expected Deleted(Disconnected), got {other:?}"),
    }
    assert!(watcher
        .get(vec![spec("presence")])
        .await
        .expect("get")
        .is_empty());
}

#[tokio::test]
async fn release_update_and_unsubscribe() {
    let n = node().await;
    let a = n.client().await;
    let w = n.client().await;
    let (_, mut sub) = w
        .subscribe(vec![spec("k/1")], None)
        .await
        .expect("subscribe");
    a.post(Key::new("k", 1), "v1").await.expect("post");
    a.post(Key::new("k", 2), "other key").await.expect("post");
    a.post(Key::new("k", 1), "v2").await.expect("post");
    assert!(matches!(next_event(&mut sub).await, Event::Updated(r) if r.data == "v1"));
    assert!(matches!(next_event(&mut sub).await, Event::Updated(r) if r.data == "v2"));
    assert_eq!(
        a.release(vec![Key::new("k", 1), Key::new("nothing", 0)])
            .await
            .expect("release"),
        1
    );
    assert!(matches!(
        next_event(&mut sub).await,
        Event::Deleted {
            reason: DeleteReason::Released,
            ..
        }
    ));
    assert_eq!(
        w.unsubscribe(vec![spec("k/1")], None)
            .await
            .expect("unsubscribe"),
        1
    );
    a.post(Key::new("k", 1), "v3").await.expect("post");
    // The ping's answer comes after anything the post could have caused on the same stream.
    w.ping().await.expect("ping");
    assert_eq!(sub.try_next(), None, "no event after unsubscribe");
}

#[tokio::test]
async fn owners_filter_start_and_limit() {
    let n = node().await;
    let a = n.client().await;
    let b = n.client().await;
    for i in 0..10 {
        a.post(Key::new("grid", i), "a").await.expect("post");
        b.post(Key::new("grid", i), "b").await.expect("post");
    }
    let only_b = a
        .get_all(GetQuery {
            keys: vec![spec("grid")],
            owners: Some(vec![b.id()]),
            ..GetQuery::default()
        })
        .await
        .expect("get");
    assert_eq!(only_b.rows.len(), 10);
    assert!(only_b.rows.iter().all(|r| r.owner == b.id()));

    let page = a
        .get_page(GetQuery {
            keys: vec![spec("grid")],
            limit: 3,
            ..GetQuery::default()
        })
        .await
        .expect("page");
    assert_eq!(page.rows.len(), 3);
    let cursor = page.next.expect("more rows");
    let rest = a
        .get_all(GetQuery {
            keys: vec![spec("grid")],
            start: Some(cursor),
            ..GetQuery::default()
        })
        .await
        .expect("rest");
    assert_eq!(rest.rows.len(), 17);
    assert!(rest.rows[0].key > page.rows[2].key || rest.rows[0].owner > page.rows[2].owner);
}

#[tokio::test]
async fn session_blob_and_ping() {
    let n = node_with(|c| c.limits.max_session_bytes = 64).await;
    let a = n
        .client_with(|o| o.session = Some(Bytes::from_static(b"lobby=3")))
        .await
        .expect("connect with session");
    a.set_session(vec![1u8; 64]).await.expect("fits");
    let err = a
        .set_session(vec![1u8; 65])
        .await
        .expect_err("must be refused");
    assert!(
        matches!(
            err,
            ClientError::Server(WireError::TooLarge { max: 64, .. })
        ),
        "{err}"
    );
    a.ping().await.expect("ping");
    let big = n
        .client_with(|o| o.session = Some(Bytes::from(vec![0u8; 100])))
        .await
        .expect_err("must be refused");
    assert!(
        matches!(big, ClientError::Refused(WireError::TooLarge { .. })),
        "{big}"
    );
}

/// A subscriber racing 1,000 concurrent posts ends with exactly the node's final state, and
/// sees strictly increasing versions per row (get+subscribe atomicity).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriber_racing_concurrent_posts_converges_exactly() {
    let n = node().await;
    let writers: Vec<_> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(n.client().await);
        }
        v
    };
    let subscriber = n.client().await;
    // Each writer posts half its share, waits for the go, then races the subscribe with the
    // other half; so the snapshot is never empty and changes certainly follow it.
    let (go_tx, go_rx) = tokio::sync::watch::channel(false);
    let mut halfway = Vec::new();
    let mut tasks = Vec::new();
    for (w, client) in writers.iter().enumerate() {
        let client = client.clone();
        let mut go = go_rx.clone();
        let (half_tx, half_rx) = tokio::sync::oneshot::channel();
        halfway.push(half_rx);
        tasks.push(tokio::spawn(async move {
            let mut half_tx = Some(half_tx);
            for i in 0..250u32 {
                if i == 125 {
                    if let Some(tx) = half_tx.take() {
                        let _ = tx.send(());
                    }
                    go.wait_for(|g| *g).await.expect("go signal");
                }
                let key = Key::new("race", i % 25);
                client
                    .post(key.clone(), format!("w{w}-{i}"))
                    .await
                    .expect("post");
                if i % 10 == 9 {
                    client.release(vec![key]).await.expect("release");
                }
            }
        }));
    }
    for h in halfway {
        within("writers halfway", h).await.expect("halfway");
    }
    go_tx.send(true).expect("go");
    let (snapshot, mut sub) = subscriber
        .subscribe(vec![spec("race")], None)
        .await
        .expect("subscribe");
    assert!(!snapshot.is_empty());
    for t in tasks {
        t.await.expect("writer");
    }
    let mut view: HashMap<(Key, cloudmesh::proto::ClientId), (u64, Bytes)> = HashMap::new();
    let mut last_version: HashMap<(Key, cloudmesh::proto::ClientId), u64> = HashMap::new();
    for row in snapshot {
        last_version.insert((row.key.clone(), row.owner), row.version);
        view.insert((row.key.clone(), row.owner), (row.version, row.data));
    }
    // Everything the writers caused is queued before the ping's answer.
    subscriber.ping().await.expect("ping");
    let mut events = 0;
    while let Some(event) = sub.try_next() {
        events += 1;
        let row = event.row().clone();
        let id = (row.key.clone(), row.owner);
        if let Some(prev) = last_version.get(&id) {
            assert!(
                row.version > *prev,
                "versions strictly increase per row: {} after {}",
                row.version,
                prev
            );
        }
        last_version.insert(id.clone(), row.version);
        match event {
            Event::Updated(row) => {
                view.insert(id, (row.version, row.data));
            }
            Event::Deleted { .. } => {
                view.remove(&id);
            }
        }
    }
    let truth = subscriber.get(vec![spec("race")]).await.expect("final get");
    let truth: HashMap<_, _> = truth
        .into_iter()
        .map(|r| ((r.key, r.owner), (r.version, r.data)))
        .collect();
    assert_eq!(
        view, truth,
        "the subscriber's view equals the node's final state"
    );
    assert!(!truth.is_empty());
    assert!(events > 0, "changes after the snapshot arrived as events");
}
