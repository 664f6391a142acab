//! One node's query evaluation against brute force, under random changes: sorted queries
//! over a whole primary walk a sort index that every post and release keeps up to date, and
//! must page exactly like a scan would (every match once, in the query's order).

use bytes::Bytes;
use cloudmesh::proto::{ClientId, GetQuery, Key, KeySpec, NodeId, Row, RowQuery, SortKey};
use cloudmesh::query::{parse_filter, parse_object, Compiled};
use cloudmesh::store::{Filters, Store, StoreLimits};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Post {
        client: u64,
        sec: u32,
        data: String,
    },
    Release {
        client: u64,
        sec: u32,
    },
    Query {
        filter: usize,
        sort: Vec<(usize, bool)>,
        page: u32,
        exact: bool,
    },
}

const FIELDS: &[&str] = &["a", "b", "s"];
const FILTERS: &[&str] = &[
    "",
    "a < 3",
    "b = true or s prefix \"x\"",
    "exists a",
    "a >= 0 and a <= 5",
    "near(0, 0, 100)",
    "within(-70, -10, 130, 200) and a < 5",
    "near(-150, 20, 60.5) or a = 1",
    "within(-1e300, -1e300, 1e300, 1e300)",
];

fn data_strategy() -> impl Strategy<Value = String> {
    let val = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        (-3i32..8).prop_map(|n| serde_json::json!(n)),
        "[xy]{0,2}".prop_map(serde_json::Value::String),
    ];
    let pos = prop::option::of((-200.0f64..200.0, -200.0f64..200.0));
    prop_oneof![
        8 => (prop::collection::btree_map(prop_oneof![Just("a"), Just("b"), Just("s")], val, 0..3), pos)
            .prop_map(|(m, p)| {
                let mut v = serde_json::json!(m);
                if let Some((x, y)) = p {
                    v["x"] = serde_json::json!(x);
                    v["y"] = serde_json::json!(y);
                }
                v.to_string()
            }),
        1 => Just("not json".to_owned()),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0u64..4, 0u32..12, data_strategy()).prop_map(|(client, sec, data)| Op::Post { client, sec, data }),
        1 => (0u64..4, 0u32..12).prop_map(|(client, sec)| Op::Release { client, sec }),
        2 => (
            0..FILTERS.len(),
            prop::collection::vec((0..FIELDS.len(), any::<bool>()), 0..3),
            1u32..5,
            any::<bool>(),
        )
            .prop_map(|(filter, sort, page, exact)| Op::Query { filter, sort, page, exact }),
    ]
}

fn brute_force(rows: &[Row], query: &RowQuery) -> Vec<(Key, ClientId)> {
    let q = Compiled::new(query).expect("valid");
    let objs: Vec<_> = rows.iter().map(|r| parse_object(&r.data)).collect();
    let mut idx: Vec<usize> = (0..rows.len())
        .filter(|&i| q.matches(objs[i].as_ref()))
        .filter(|&i| {
            query.keys.iter().any(|k| {
                k.primary == rows[i].key.primary
                    && k.secondary.is_none_or(|s| s == rows[i].key.secondary)
            })
        })
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn sorted_and_unsorted_pages_equal_brute_force_under_changes(ops in prop::collection::vec(op_strategy(), 1..80)) {
        let mut store = Store::new(NodeId(1), StoreLimits::default(), Filters::default());
        for c in 0..4 {
            store.add_client(ClientId(c), "default", Bytes::new()).expect("client");
        }
        let reader = ClientId(0);
        for op in ops {
            match op {
                Op::Post { client, sec, data } => {
                    store.post(ClientId(client), Key::new("k", sec), Bytes::from(data), 0).expect("post");
                }
                Op::Release { client, sec } => {
                    store.release(ClientId(client), &[Key::new("k", sec)], 0).expect("release");
                }
                Op::Query { filter, sort, page, exact } => {
                    let rows = store
                        .get(reader, &GetQuery { keys: vec![KeySpec::primary("k")], ..GetQuery::default() })
                        .expect("get")
                        .rows;
                    let keys = if exact {
                        // Exact keys take the scan path; the whole primary the index.
                        vec![KeySpec::exact(&Key::new("k", 1)), KeySpec::exact(&Key::new("k", 2))]
                    } else {
                        vec![KeySpec::primary("k")]
                    };
                    let mut query = RowQuery {
                        keys,
                        filter: parse_filter(FILTERS[filter]).expect("filter").to_terms(),
                        sort: sort
                            .iter()
                            .map(|&(f, d)| SortKey { field: FIELDS[f].into(), descending: d })
                            .collect(),
                        limit: page,
                        start: None,
                    };
                    let expected = brute_force(&rows, &query);
                    let mut got = Vec::new();
                    for _ in 0..100 {
                        let p = store.query(reader, &query).expect("query");
                        prop_assert!(p.rows.len() <= page as usize);
                        let compiled = Compiled::new(&query).expect("valid");
                        got.extend(p.rows.iter().map(|r| (r.key.clone(), r.owner)));
                        let Some(next) = p.next else { break };
                        // The node's cursor names its last row; the merged cursor carries
                        // its sort values, as the asking node builds it.
                        let last = p.rows.last().expect("a cursor names a returned row");
                        prop_assert_eq!((&last.key, last.owner), (&next.key, next.owner));
                        let obj = parse_object(&last.data);
                        let place = compiled.place(obj.as_ref(), &last.key.primary, last.key.secondary, last.owner);
                        query.start = Some(cloudmesh::query::cursor_at(&place));
                    }
                    prop_assert_eq!(got, expected);
                }
            }
        }
    }
}
