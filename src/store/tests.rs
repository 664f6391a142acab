use super::*;

const NODE: NodeId = NodeId(7);

fn store() -> Store {
    Store::new(NODE, StoreLimits::default(), Filters::default())
}

fn client(s: &mut Store, n: u64) -> ClientId {
    let id = ClientId(n);
    s.add_client(id, "default", Bytes::new()).expect("added");
    id
}

fn q(keys: &[&str]) -> GetQuery {
    GetQuery {
        keys: keys.iter().map(|k| k.parse().expect("spec")).collect(),
        ..GetQuery::default()
    }
}

#[test]
fn post_get_release_round_trip() {
    let mut s = store();
    let a = client(&mut s, 1);
    let b = client(&mut s, 2);
    let (v1, _) = s
        .post(a, Key::new("players", 3), Bytes::from_static(b"alice"), 10)
        .expect("post");
    let (v2, _) = s
        .post(b, Key::new("players", 3), Bytes::from_static(b"bob"), 11)
        .expect("post");
    assert!(v2 > v1);
    let page = s.get(a, &q(&["players"])).expect("get");
    assert_eq!(page.rows.len(), 2, "one row per (key, owner)");
    assert_eq!(page.rows[0].owner, a);
    assert_eq!(page.rows[1].data, Bytes::from_static(b"bob"));
    let fan = s
        .release(a, &[Key::new("players", 3)], 12)
        .expect("release");
    assert_eq!(fan.len(), 1);
    assert_eq!(s.get(a, &q(&["players/3"])).expect("get").rows.len(), 1);
    assert_eq!(s.stats().rows, 1);
}

#[test]
fn versions_increase_across_delete_and_recreate() {
    let mut s = store();
    let a = client(&mut s, 1);
    let k = Key::new("k", 1);
    let (v1, _) = s.post(a, k.clone(), Bytes::new(), 0).expect("post");
    let del = s.release(a, std::slice::from_ref(&k), 0).expect("release");
    let dv = del[0].notification.row().version;
    let (v2, _) = s.post(a, k, Bytes::new(), 0).expect("post");
    assert!(v1 < dv && dv < v2);
}

#[test]
fn subscribers_hear_changes_once_even_with_overlapping_subscriptions() {
    let mut s = store();
    let a = client(&mut s, 1);
    let sub = client(&mut s, 2);
    let mut query = q(&["players", "players/3"]);
    query.subscribe = true;
    s.get(sub, &query).expect("subscribe");
    let (_, fan) = s
        .post(a, Key::new("players", 3), Bytes::new(), 0)
        .expect("post");
    assert_eq!(fan.recipients, vec![sub]);
    let (_, fan) = s
        .post(a, Key::new("players", 4), Bytes::new(), 0)
        .expect("post");
    assert_eq!(fan.recipients, vec![sub]);
    let (_, fan) = s
        .post(a, Key::new("other", 4), Bytes::new(), 0)
        .expect("post");
    assert!(fan.recipients.is_empty());
}

#[test]
fn owner_filter_and_unsubscribe() {
    let mut s = store();
    let a = client(&mut s, 1);
    let b = client(&mut s, 2);
    let sub = client(&mut s, 3);
    let mut query = q(&["k"]);
    query.subscribe = true;
    query.owners = Some(vec![a]);
    s.get(sub, &query).expect("subscribe");
    assert_eq!(
        s.post(a, Key::new("k", 0), Bytes::new(), 0)
            .expect("post")
            .1
            .recipients,
        vec![sub]
    );
    assert!(s
        .post(b, Key::new("k", 0), Bytes::new(), 0)
        .expect("post")
        .1
        .recipients
        .is_empty());
    assert_eq!(
        s.unsubscribe(sub, &["k".parse().expect("spec")], Some(&[a]))
            .expect("unsub"),
        1
    );
    assert!(s
        .post(a, Key::new("k", 0), Bytes::new(), 0)
        .expect("post")
        .1
        .recipients
        .is_empty());
    assert_eq!(s.stats().subscriptions, 0);
}

#[test]
fn disconnect_deletes_rows_and_subscriptions() {
    let mut s = store();
    let a = client(&mut s, 1);
    let sub = client(&mut s, 2);
    let mut query = q(&["k"]);
    query.subscribe = true;
    s.get(sub, &query).expect("subscribe");
    s.get(a, &query).expect("subscribe");
    s.post(a, Key::new("k", 1), Bytes::new(), 0).expect("post");
    s.post(a, Key::new("k", 2), Bytes::new(), 0).expect("post");
    let fan = s.remove_client(a, DeleteReason::Disconnected, 0);
    assert_eq!(fan.len(), 2);
    for f in &fan {
        assert!(matches!(
            f.notification,
            Notification::Deleted {
                reason: DeleteReason::Disconnected,
                ..
            }
        ));
        assert_eq!(
            f.recipients,
            vec![sub],
            "the leaver is not told of its own deletions"
        );
    }
    assert_eq!(
        s.stats(),
        StoreStats {
            clients: 1,
            rows: 0,
            data_bytes: 0,
            subscriptions: 1
        }
    );
}

#[test]
fn quota_rejection_changes_nothing() {
    let limits = StoreLimits {
        max_client_bytes: 200,
        ..StoreLimits::default()
    };
    let mut s = Store::new(NODE, limits, Filters::default());
    let a = client(&mut s, 1);
    let b = client(&mut s, 2);
    s.post(b, Key::new("k", 1), Bytes::from(vec![1; 100]), 0)
        .expect("b fits");
    s.post(a, Key::new("k", 1), Bytes::from(vec![2; 100]), 0)
        .expect("a fits");
    let err = s
        .post(a, Key::new("k", 2), Bytes::from(vec![3; 100]), 0)
        .expect_err("must be refused");
    assert!(
        matches!(err, WireError::QuotaExceeded { limit: 200, .. }),
        "{err}"
    );
    let rows = s.get(a, &q(&["k"])).expect("get").rows;
    assert_eq!(rows.len(), 2, "both earlier rows intact");
    assert_eq!(s.client_bytes(a), Some(100 + 1 + ROW_OVERHEAD));
    // Replacing a row charges only the difference.
    s.post(a, Key::new("k", 1), Bytes::from(vec![2; 150]), 0)
        .expect("replace fits");
}

#[test]
fn paging_by_rows_and_bytes_visits_every_row_once() {
    let limits = StoreLimits {
        max_get_bytes: 1000,
        ..StoreLimits::default()
    };
    let mut s = Store::new(NODE, limits, Filters::default());
    let ids: Vec<ClientId> = (1..=3).map(|n| client(&mut s, n)).collect();
    for sec in 0..100 {
        for id in &ids {
            s.post(*id, Key::new("p", sec), Bytes::from(vec![0; 20]), 0)
                .expect("post");
        }
    }
    let mut query = q(&["p"]);
    query.limit = 7;
    let mut seen = Vec::new();
    for _ in 0..1000 {
        let page = s.get(ids[0], &query).expect("get");
        assert!(page.rows.len() <= 7);
        seen.extend(page.rows.iter().map(|r| (r.key.clone(), r.owner)));
        match page.next {
            Some(c) => query.start = Some(c),
            None => break,
        }
    }
    assert_eq!(seen.len(), 300);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, seen, "stable order, no duplicates");

    query.limit = 0;
    query.start = None;
    let page = s.get(ids[0], &query).expect("get");
    assert!(page.next.is_some(), "byte limit cuts the page");
    assert!(page.rows.len() < 300);
}

#[test]
fn limits_are_typed_errors() {
    let limits = StoreLimits {
        max_row_bytes: 10,
        max_keys_per_query: 2,
        max_subscriptions: 1,
        max_session_bytes: 4,
        ..StoreLimits::default()
    };
    let mut s = Store::new(NODE, limits, Filters::default());
    let a = client(&mut s, 1);
    assert!(matches!(
        s.post(a, Key::new("k", 0), Bytes::from(vec![0; 11]), 0),
        Err(WireError::TooLarge { .. })
    ));
    assert!(matches!(
        s.get(a, &q(&["a", "b", "c"])),
        Err(WireError::TooManyKeys { count: 3, max: 2 })
    ));
    let mut sub = q(&["a", "b"]);
    sub.subscribe = true;
    assert!(matches!(
        s.get(a, &sub),
        Err(WireError::TooManySubscriptions { max: 1 })
    ));
    assert_eq!(
        s.stats().subscriptions,
        0,
        "a refused subscribe registers nothing"
    );
    assert!(matches!(
        s.set_session(a, Bytes::from_static(b"12345")),
        Err(WireError::TooLarge { .. })
    ));
    assert!(matches!(
        s.post(a, Key::new("", 0), Bytes::new(), 0),
        Err(WireError::InvalidKey { .. })
    ));
}

#[test]
fn reserved_keys_and_filters() {
    let filters = Filters::new(vec![FilterRule {
        action: FilterAction::Deny,
        ops: vec![FilterOp::Subscribe],
        prefix: "secret".into(),
        classes: vec![],
    }]);
    let mut s = Store::new(NODE, StoreLimits::default(), filters);
    let a = client(&mut s, 1);
    let sys = ClientId(99);
    s.add_system_client(sys);
    assert!(matches!(
        s.post(a, Key::new("cloud.nodes", 0), Bytes::new(), 0),
        Err(WireError::Forbidden { .. })
    ));
    assert!(matches!(
        s.release(a, &[Key::new("cloud.nodes", 0)], 0),
        Err(WireError::Forbidden { .. })
    ));
    s.post(sys, Key::new("cloud.nodes", 0), Bytes::new(), 0)
        .expect("node may write");
    assert_eq!(
        s.get(a, &q(&["cloud.nodes"]))
            .expect("clients may read")
            .rows
            .len(),
        1
    );
    assert_eq!(s.client_count(), 1, "system identity is not a client");
    let mut sub = q(&["secret.x"]);
    assert!(s.get(a, &sub).is_ok());
    sub.subscribe = true;
    assert!(matches!(s.get(a, &sub), Err(WireError::Forbidden { .. })));
}

#[test]
fn held_primaries_follow_first_and_last_row() {
    let mut s = store();
    let a = client(&mut s, 1);
    let b = client(&mut s, 2);
    for _ in 0..100 {
        s.post(a, Key::new("p", 1), Bytes::new(), 0)
            .expect("repost");
    }
    s.post(b, Key::new("p", 2), Bytes::new(), 0).expect("post");
    assert_eq!(
        s.take_hold_changes(),
        vec![("p".to_string(), true)],
        "re-posts change nothing"
    );
    s.release(a, &[Key::new("p", 1)], 0).expect("release");
    assert!(
        s.take_hold_changes().is_empty(),
        "b still holds a row under p"
    );
    s.remove_client(b, DeleteReason::Disconnected, 0);
    assert_eq!(s.take_hold_changes(), vec![("p".to_string(), false)]);
    assert!(s.held_primaries().is_empty());
}

#[test]
fn system_identities_are_not_capped_in_subscriptions() {
    let limits = StoreLimits {
        max_subscriptions: 1,
        ..StoreLimits::default()
    };
    let mut s = Store::new(NODE, limits, Filters::default());
    let peer = ClientId(50);
    s.add_system_client(peer);
    let mut query = q(&["a", "b", "c"]);
    query.subscribe = true;
    s.get(peer, &query)
        .expect("a peer's interest aggregates many clients' subscriptions");
    assert_eq!(s.stats().subscriptions, 3);
}

#[test]
fn interest_is_dropped_when_the_last_subscriber_leaves() {
    let mut s = store();
    let a = client(&mut s, 1);
    let b = client(&mut s, 2);
    let mut query = q(&["k", "j"]);
    query.subscribe = true;
    s.get(a, &query).expect("subscribe");
    s.get(a, &query).expect("again: no double count");
    s.get(b, &q(&["k"])).expect("plain get");
    let mut kb = q(&["k"]);
    kb.subscribe = true;
    s.get(b, &kb).expect("b subscribes k");
    assert_eq!(s.client_subscription_specs().len(), 2);
    s.unsubscribe(a, &["k".parse().expect("spec")], None)
        .expect("unsub");
    assert!(s.take_interest_dropped().is_empty(), "b still wants k");
    s.remove_client(a, DeleteReason::Disconnected, 0);
    assert_eq!(
        s.take_interest_dropped(),
        vec!["j".parse::<KeySpec>().expect("spec")]
    );
    s.remove_client(b, DeleteReason::Disconnected, 0);
    assert_eq!(
        s.take_interest_dropped(),
        vec!["k".parse::<KeySpec>().expect("spec")]
    );
    assert!(s.client_subscription_specs().is_empty());
}

#[test]
fn a_session_moves_with_rows_subscriptions_and_continuing_versions() {
    let mut src = store();
    let a = client(&mut src, 1);
    let watcher = client(&mut src, 2);
    let mut sub = q(&["k"]);
    sub.subscribe = true;
    src.get(a, &sub).expect("a subscribes");
    let (v1, _) = src
        .post(a, Key::new("k", 1), Bytes::from_static(b"x"), 0)
        .expect("post");
    src.set_session(a, Bytes::from_static(b"lobby"))
        .expect("session");
    let state = src.export_client(a).expect("exported");
    assert_eq!(state.rows.len(), 1);
    assert_eq!(state.subs.len(), 1);

    // The source forgets it silently: nobody is told of a deletion.
    src.get(watcher, &sub).expect("watcher subscribes");
    assert!(src.remove_client_silently(a));
    assert_eq!(src.stats().rows, 0);
    assert!(src.held_primaries().is_empty());
    let _ = src.take_hold_changes();

    let mut dst = Store::new(NodeId(8), StoreLimits::default(), Filters::default());
    let other_sub = client(&mut dst, 3);
    dst.get(other_sub, &sub).expect("subscriber at the target");
    let fans = dst.import_client(&state, 5);
    assert_eq!(fans.len(), 1);
    match &fans[0].notification {
        Notification::Updated(row) => {
            assert!(row.version > v1, "versions continue across the move");
            assert_eq!(row.node, NodeId(8));
            assert_eq!(row.owner, a, "same client id");
        }
        other => panic!("expected an update, got {other:?}"),
    }
    assert_eq!(fans[0].recipients, vec![other_sub]);
    assert_eq!(dst.session(a), Some(&Bytes::from_static(b"lobby")));
    let (_, fan) = dst
        .post(other_sub, Key::new("k", 2), Bytes::new(), 6)
        .expect("post");
    assert!(
        fan.recipients.contains(&a),
        "the moved subscription is live at the target"
    );
}

#[test]
fn a_row_recreated_after_a_move_continues_above_the_source_clock() {
    let mut src = store();
    let a = client(&mut src, 1);
    for _ in 0..50 {
        src.post(a, Key::new("k", 1), Bytes::new(), 0)
            .expect("post");
    }
    let del = src.release(a, &[Key::new("k", 1)], 0).expect("release");
    let deleted_at = del[0].notification.row().version;
    let state = src.export_client(a).expect("exported");
    assert!(state.rows.is_empty());
    let mut dst = Store::new(NodeId(8), StoreLimits::default(), Filters::default());
    dst.import_client(&state, 0);
    let (v, _) = dst
        .post(a, Key::new("k", 1), Bytes::new(), 0)
        .expect("re-create");
    assert!(
        v > deleted_at,
        "{v} must be above the deletion's {deleted_at}"
    );
}

#[test]
fn owners_lists_are_bounded_per_query_and_per_client() {
    let limits = StoreLimits {
        max_owners_per_query: 3,
        max_subscription_owners: 5,
        ..StoreLimits::default()
    };
    let mut s = Store::new(NODE, limits, Filters::default());
    let a = client(&mut s, 1);
    let ids = |from: u8, n: u8| -> Vec<ClientId> {
        (from..from + n).map(|i| ClientId(u64::from(i))).collect()
    };
    let mut big = q(&["a"]);
    big.owners = Some(ids(10, 4));
    assert_eq!(
        s.get(a, &big),
        Err(WireError::TooManyOwners { count: 4, max: 3 }),
        "an owners list over the limit is refused before it is used"
    );
    // Re-subscribing the same spec with new owners merges them, within the client's total.
    let mut sub = q(&["a"]);
    sub.subscribe = true;
    sub.owners = Some(ids(10, 3));
    s.get(a, &sub).expect("3 owners");
    sub.owners = Some(ids(10, 3));
    s.get(a, &sub).expect("the same 3 again cost nothing");
    sub.owners = Some(ids(13, 2));
    s.get(a, &sub).expect("5 in all");
    sub.owners = Some(ids(15, 1));
    assert_eq!(
        s.get(a, &sub),
        Err(WireError::TooManyOwners { count: 6, max: 5 }),
        "merging past the client's total is refused"
    );
    let mut other = q(&["b"]);
    other.subscribe = true;
    other.owners = Some(ids(20, 1));
    assert!(matches!(
        s.get(a, &other),
        Err(WireError::TooManyOwners { count: 6, max: 5 })
    ));
    other.owners = None;
    s.get(a, &other)
        .expect("a subscription to any owner names no owner ids");
}
