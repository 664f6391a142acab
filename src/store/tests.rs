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
fn owner_lists_are_bounded_per_query_and_per_client() {
    let limits = StoreLimits {
        max_owners_per_query: 4,
        max_subscription_owners: 6,
        ..StoreLimits::default()
    };
    let mut s = Store::new(NODE, limits, Filters::default());
    let sub = client(&mut s, 1);
    let owners = |from: u64, n: u64| Some((from..from + n).map(ClientId).collect::<Vec<_>>());

    // One list over the per-query bound: refused whole, nothing registered.
    let mut query = q(&["a", "b"]);
    query.subscribe = true;
    query.owners = owners(100, 5);
    assert_eq!(
        s.get(sub, &query),
        Err(WireError::TooManyOwners { count: 5, max: 4 })
    );
    query.subscribe = false;
    assert_eq!(
        s.get(sub, &query),
        Err(WireError::TooManyOwners { count: 5, max: 4 }),
        "a plain get is bounded the same way"
    );
    assert_eq!(s.stats().subscriptions, 0);

    // Two specs × 3 owners = 6: at the per-client bound, accepted.
    query.subscribe = true;
    query.owners = owners(100, 3);
    s.get(sub, &query).expect("within both bounds");
    // The same owners again add nothing; the same spec named twice is one subscription.
    query.keys.push("a".parse().expect("spec"));
    s.get(sub, &query)
        .expect("re-subscribing the same owners adds nothing");
    assert_eq!(s.stats().subscriptions, 2);
    // One new owner merged into "a" would make 7: refused, and nothing changed.
    let mut more = q(&["a"]);
    more.subscribe = true;
    more.owners = owners(103, 1);
    assert_eq!(
        s.get(sub, &more),
        Err(WireError::TooManyOwners { count: 7, max: 6 })
    );
    let owner = client(&mut s, 103);
    let (_, fan) = s
        .post(owner, Key::new("a", 0), Bytes::new(), 0)
        .expect("post");
    assert!(
        fan.recipients.is_empty(),
        "the refused merge registered nothing"
    );

    // Unsubscribing owners frees room; an over-long unsubscribe list is refused too.
    assert_eq!(
        s.unsubscribe(
            sub,
            &["a".parse().expect("spec")],
            owners(100, 5).as_deref()
        ),
        Err(WireError::TooManyOwners { count: 5, max: 4 })
    );
    s.unsubscribe(
        sub,
        &["a".parse().expect("spec")],
        owners(100, 2).as_deref(),
    )
    .expect("unsubscribe two owners");
    s.get(sub, &more).expect("room again: 1 + 3 + 1 = 5 owners");
}

#[test]
fn a_peer_stand_in_widens_instead_of_growing_without_bound() {
    let limits = StoreLimits {
        max_owners_per_query: 4,
        max_subscription_owners: 6,
        ..StoreLimits::default()
    };
    let mut s = Store::new(NODE, limits, Filters::default());
    let peer = ClientId(1);
    s.add_system_client(peer);
    let mut query = q(&["a"]);
    query.subscribe = true;
    for round in 0..4u64 {
        query.owners = Some((round * 4..round * 4 + 4).map(ClientId).collect());
        s.get(peer, &query)
            .expect("a peer's interest is never refused");
    }
    // 16 owners merged > 6: widened to any owner, so it hears every owner's change.
    let stranger = client(&mut s, 999);
    let (_, fan) = s
        .post(stranger, Key::new("a", 0), Bytes::new(), 0)
        .expect("post");
    assert_eq!(fan.recipients, vec![peer]);
}

#[test]
fn a_moving_session_keeps_merged_owner_filters_past_the_per_query_bound() {
    let limits = StoreLimits {
        max_owners_per_query: 2,
        max_subscription_owners: 8,
        ..StoreLimits::default()
    };
    let mut source = Store::new(NODE, limits.clone(), Filters::default());
    let c = client(&mut source, 1);
    let mut query = q(&["a"]);
    query.subscribe = true;
    for pair in [[10, 11], [12, 13]] {
        query.owners = Some(pair.into_iter().map(ClientId).collect());
        source.get(c, &query).expect("subscribe");
    }
    let state = source.export_client(c).expect("export");
    let mut target = Store::new(NodeId(8), limits, Filters::default());
    target.import_client(&state, 0);
    let owner = client(&mut target, 13);
    let (_, fan) = target
        .post(owner, Key::new("a", 0), Bytes::new(), 0)
        .expect("post");
    assert_eq!(fan.recipients, vec![c], "all four owners came along");
}

#[test]
fn a_filtered_scan_is_cut_by_work_and_paging_still_visits_every_match_once() {
    let limits = StoreLimits {
        max_scan_rows: 50,
        ..StoreLimits::default()
    };
    let mut s = Store::new(NODE, limits, Filters::default());
    let ids: Vec<ClientId> = (1..=10).map(|n| client(&mut s, n)).collect();
    for sec in 0..100 {
        for id in &ids {
            s.post(*id, Key::new("p", sec), Bytes::new(), 0)
                .expect("post");
        }
    }
    // One owner of ten: a page of 1,000 rows' work holds only 100 matches, and no page may
    // look at more than 50 rows.
    let mut query = q(&["p"]);
    query.owners = Some(vec![ids[3]]);
    let mut seen = Vec::new();
    let mut pages = 0;
    for _ in 0..1000 {
        let page = s.get(ids[0], &query).expect("get");
        pages += 1;
        assert!(
            page.rows.len() <= 5,
            "50 rows looked at hold at most 5 matches"
        );
        seen.extend(page.rows.iter().map(|r| (r.key.secondary, r.owner)));
        match page.next {
            Some(c) => query.start = Some(c),
            None => break,
        }
    }
    assert_eq!(seen.len(), 100, "every match once");
    assert!(seen.iter().all(|(_, o)| *o == ids[3]));
    // 1,000 rows at 50 a page, plus the rows of the cursor's own key looked at again on
    // the way to the cursor.
    assert!((20..=25).contains(&pages), "{pages} pages");
}

#[test]
fn reserved_keys_cannot_be_dodged_by_case_and_releases_are_bounded() {
    let limits = StoreLimits {
        max_keys_per_query: 2,
        ..StoreLimits::default()
    };
    let mut s = Store::new(NODE, limits, Filters::default());
    let a = client(&mut s, 1);
    for primary in ["cloud.nodes", "Cloud.nodes", "CLOUD.load", "cLoUd.x"] {
        assert!(
            matches!(
                s.post(a, Key::new(primary, 0), Bytes::new(), 0),
                Err(WireError::Forbidden { .. })
            ),
            "{primary}"
        );
    }
    s.post(a, Key::new("cloudy", 0), Bytes::new(), 0)
        .expect("only the prefix with its dot is reserved");
    let keys: Vec<Key> = (0..3).map(|n| Key::new("k", n)).collect();
    assert_eq!(
        s.release(a, &keys, 0),
        Err(WireError::TooManyKeys { count: 3, max: 2 })
    );
}

/// A player's grant, as a verified token gives it: post its own row, read and follow its
/// match, read the players.
fn player_grant() -> Grant {
    let p = |t: &str| crate::access::Pattern::parse(t).expect("pattern");
    Grant {
        subject: "42".into(),
        class: "player".into(),
        expires_at_ms: 9_000,
        rights: Some(crate::access::Rights::new(
            vec![p("players/42")],
            vec![p("match.7/*"), p("players")],
            vec![p("match.7/*")],
        )),
    }
}

fn forbidden_reason(r: Result<impl std::fmt::Debug, WireError>) -> String {
    match r {
        Err(WireError::Forbidden { reason }) => reason,
        other => panic!("expected Forbidden, got {other:?}"),
    }
}

#[test]
fn a_tokens_rights_bound_its_client_and_filters_still_apply() {
    let filters = Filters::new(vec![FilterRule {
        action: FilterAction::Deny,
        ops: vec![FilterOp::Get],
        prefix: "players".into(),
        classes: vec!["player".into()],
    }]);
    let mut s = Store::new(NODE, StoreLimits::default(), filters);
    let p = ClientId(1);
    s.add_client_with(p, "player", Bytes::new(), Some(player_grant()))
        .expect("added");
    assert_eq!(s.grant(p).map(|g| g.subject.as_str()), Some("42"));
    let anyone = client(&mut s, 2);
    assert_eq!(s.grant(anyone), None);

    s.post(p, Key::new("players", 42), Bytes::new(), 0)
        .expect("its own row");
    let reason = forbidden_reason(s.post(p, Key::new("players", 43), Bytes::new(), 0));
    assert_eq!(
        reason,
        "the token of \"42\" grants no post right covering players/43"
    );
    assert!(forbidden_reason(s.release(p, &[Key::new("players", 43)], 0)).contains("post right"));
    s.release(p, &[Key::new("players", 42)], 0)
        .expect("post covers release");

    let mut sub = q(&["match.7"]);
    sub.subscribe = true;
    s.get(p, &sub).expect("its match, subscribed");
    let mut other = q(&["match.8"]);
    assert!(forbidden_reason(s.get(p, &other)).contains("no get right covering match.8"));
    other.subscribe = true;
    assert!(s.get(p, &other).is_err());
    // `players` may be read but not followed: subscribing needs both rights.
    let mut players = q(&["players"]);
    players.subscribe = true;
    assert!(
        forbidden_reason(s.get(p, &players)).contains("filter rule 1"),
        "the operator's rule is checked on top of the token"
    );
    let mut one_key = q(&["match.7/3"]);
    one_key.subscribe = true;
    s.get(p, &one_key).expect("one key of its match");
    // The mesh's own keys stay readable and followable.
    let mut mesh = q(&["cloud.nodes"]);
    mesh.subscribe = true;
    s.get(p, &mesh).expect("cloud. keys");
    // Clients without a grant keep the filters alone.
    s.post(anyone, Key::new("players", 43), Bytes::new(), 0)
        .expect("no token, no rights to bound it");
}

#[test]
fn a_moved_session_keeps_its_grant() {
    let mut src = store();
    let p = ClientId(1);
    src.add_client_with(p, "player", Bytes::new(), Some(player_grant()))
        .expect("added");
    src.post(p, Key::new("players", 42), Bytes::new(), 0)
        .expect("post");
    let state = src.export_client(p).expect("exported");
    assert_eq!(
        state.grant.as_ref().map(|g| g.expires_at_ms),
        Some(9_000),
        "the expiry travels"
    );

    let mut dst = Store::new(NodeId(8), StoreLimits::default(), Filters::default());
    dst.import_client(&state, 5);
    assert_eq!(dst.grant(p), Some(&player_grant()));
    assert_eq!(
        dst.client_row_count(p),
        Some(1),
        "its row moved with it (installed, not re-checked)"
    );
    assert!(
        forbidden_reason(dst.post(p, Key::new("players", 43), Bytes::new(), 6))
            .contains("post right")
    );
    dst.post(p, Key::new("players", 42), Bytes::new(), 6)
        .expect("still its own row");

    // A session without a token moves without a grant.
    let a = client(&mut src, 2);
    assert_eq!(src.export_client(a).and_then(|s| s.grant), None);
}

#[test]
fn subscriptions_are_charged_to_the_quota() {
    let limits = StoreLimits {
        max_client_bytes: 1_000,
        ..StoreLimits::default()
    };
    let mut s = Store::new(NODE, limits, Filters::default());
    let c = client(&mut s, 1);
    let mut query = q(&["presence"]);
    query.subscribe = true;
    s.get(c, &query).expect("one subscription fits");
    let one = s.client_bytes(c).expect("charged");
    assert_eq!(one, "presence".len() as u64 + SUB_OVERHEAD);
    // Owners cost too; a subscription that would pass the quota is refused, changing nothing.
    let mut many = q(&["lobby"]);
    many.subscribe = true;
    many.owners = Some((100..160).map(ClientId).collect());
    assert!(matches!(
        s.get(c, &many),
        Err(WireError::QuotaExceeded { limit: 1_000, .. })
    ));
    assert_eq!(s.client_bytes(c), Some(one));
    // Rows and subscriptions share the quota; unsubscribing gives the room back.
    assert!(matches!(
        s.post(c, Key::new("k", 0), Bytes::from(vec![0; 900]), 0),
        Err(WireError::QuotaExceeded { .. })
    ));
    s.unsubscribe(c, &[KeySpec::primary("presence")], None)
        .expect("unsubscribe");
    assert_eq!(s.client_bytes(c), Some(0));
    s.post(c, Key::new("k", 0), Bytes::from(vec![0; 900]), 0)
        .expect("room again");
}
