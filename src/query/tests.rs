use proptest::prelude::*;

use super::*;
use crate::proto::{CmpOp, Cursor, GetPage, Key, NodeId, Point, Row, Term, Value};
use bytes::Bytes;

fn obj(json: &str) -> Object {
    parse_object(json.as_bytes()).expect("an object")
}

#[test]
fn parses_the_documented_examples() {
    let f = parse_filter(r#"region = "eu" and players < 64"#).expect("parses");
    assert_eq!(
        f,
        Filter::And(vec![
            Filter::Cmp("region".into(), CmpOp::Eq, Value::Str("eu".into())),
            Filter::Cmp("players".into(), CmpOp::Lt, Value::Num(64.0)),
        ])
    );
    let f = parse_filter(
        r#"(mode in ("ctf", "dm") or name prefix "EU-") and exists password and stats.kills >= -1.5e2"#,
    )
    .expect("parses");
    assert!(
        matches!(f, Filter::And(ref parts) if parts.len() == 3),
        "{f:?}"
    );
    assert_eq!(
        parse_filter("near(1, 2, 10)").expect("near"),
        Filter::Near(
            Point {
                x: 1.0,
                y: 2.0,
                z: None
            },
            10.0
        )
    );
    assert!(matches!(
        parse_filter("within(0, 0, 0, 10, 10, 10)").expect("3-D box"),
        Filter::Within(min, _) if min.z == Some(0.0)
    ));
    assert_eq!(parse_filter("").expect("empty"), Filter::All);
    assert_eq!(parse_filter(" ALL ").expect("all"), Filter::All);
    assert_eq!(
        parse_filter("`and` = true").expect("quoted field"),
        Filter::Cmp("and".into(), CmpOp::Eq, Value::Bool(true))
    );
    let sort = parse_sort("players, -ping, name desc").expect("sort");
    let dirs: Vec<(&str, bool)> = sort
        .iter()
        .map(|k| (k.field.as_str(), k.descending))
        .collect();
    assert_eq!(
        dirs,
        vec![("players", false), ("ping", true), ("name", true)]
    );
}

#[test]
fn malformed_text_gets_an_error_naming_the_problem() {
    let cases: &[(&str, &str)] = &[
        ("players <", "expected a value"),
        ("players 64", "expected an operator"),
        (r#"region = "eu"#, "closing double quote"),
        ("region = eu", "expected a value"),
        ("and = 1", "keyword \"and\""),
        ("a = 1 b = 2", "expected and, or"),
        ("a in ()", "expected a value"),
        ("near(1, 2)", "near(x, y, radius)"),
        ("near(1, 2, -3)", "radius"),
        ("within(10, 0, 0, 10)", "lowest"),
        ("a = 1e999", "not finite"),
        ("a..b = 1", "path segment is empty"),
        ("a = \"\\q\"", "an escape"),
        ("a = 1 #", "found \"#\""),
    ];
    for (text, needle) in cases {
        let err = parse_filter(text).expect_err(text).to_string();
        assert!(
            err.contains(needle),
            "{text:?}: {err:?} should say {needle:?}"
        );
    }
    let deep = format!("{}a = 1{}", "(".repeat(40), ")".repeat(40));
    assert!(matches!(
        parse_filter(&deep),
        Err(QueryError::TooDeep { .. })
    ));
    let wide = vec!["a = 1"; 200].join(" or ");
    assert!(matches!(
        parse_filter(&wide),
        Err(QueryError::TooManyTerms { .. })
    ));
    let values = vec!["1"; 200].join(", ");
    let costly = vec![format!("a in ({values})"); 3].join(" or ");
    assert!(matches!(
        parse_filter(&costly),
        Err(QueryError::TooCostly { cost: 601, .. })
    ));
    let long = format!("a = \"{}\"", "x".repeat(5000));
    assert!(matches!(
        parse_filter(&long),
        Err(QueryError::TooLong { .. })
    ));
    assert!(matches!(
        parse_filter(&"a".repeat(100_000)),
        Err(QueryError::TooLong { .. })
    ));
    assert!(matches!(
        parse_sort("a, b, c, d, e"),
        Err(QueryError::TooLong { .. })
    ));
}

#[test]
fn the_flat_wire_form_is_checked() {
    let bad: Vec<(Vec<Term>, &str)> = vec![
        (
            vec![
                Term::And(2),
                Term::Or(1),
                Term::Exists { field: "a".into() },
            ],
            "fewer parts",
        ),
        (vec![Term::Or(0)], "no parts"),
        (
            vec![
                Term::Exists { field: "a".into() },
                Term::Exists { field: "b".into() },
            ],
            "left over",
        ),
        (
            vec![Term::And(u32::MAX), Term::Exists { field: "a".into() }],
            "only 1 terms follow",
        ),
        (vec![Term::Exists { field: "".into() }], "empty"),
        (
            vec![Term::Cmp {
                field: "a".into(),
                op: CmpOp::Lt,
                value: Value::Num(f64::NAN),
            }],
            "not finite",
        ),
        (
            vec![Term::In {
                field: "a".into(),
                values: vec![],
            }],
            "empty",
        ),
    ];
    for (terms, needle) in bad {
        let err = Filter::from_terms(&terms).expect_err(needle).to_string();
        assert!(err.contains(needle), "{terms:?}: {err}");
    }
    // Nesting deeper than the bound is refused without recursing through all of it.
    let mut deep: Vec<Term> = vec![Term::And(1); 100_000];
    deep.truncate(MAX_TERMS_FOR_TEST);
    deep.push(Term::Exists { field: "a".into() });
    assert!(Filter::from_terms(&deep).is_err());
}

const MAX_TERMS_FOR_TEST: usize = filter::MAX_TERMS - 1;

#[test]
fn evaluation_semantics() {
    let o = obj(
        r#"{"region":"eu","players":12,"open":true,"name":"EU-1","stats":{"kills":3},"x":1,"y":1,"tags":[1]}"#,
    );
    let yes = [
        r#"region = "eu""#,
        "players = 12.0",
        "players != 13",
        r#"region != "us""#,
        "players <= 12 and players >= 12",
        r#"name prefix "EU""#,
        "exists tags",
        "stats.kills > 2",
        r#"region in ("us", "eu")"#,
        "open = true",
        "near(0, 0, 1.5)",
        "within(0, 0, 1, 1)",
        r#"region < "fr""#,
    ];
    let no = [
        r#"region = "EU""#,
        "missing != 1",
        r#"players < "z""#,
        "tags = 1",
        "near(0, 0, 1.4)",
        "near(0, 0, 0, 5)",
        r#"stats prefix "a""#,
        "exists stats.deaths",
        "open = 1",
    ];
    for t in yes {
        assert!(matches(&parse_filter(t).expect(t), &o), "{t} should match");
    }
    for t in no {
        assert!(
            !matches(&parse_filter(t).expect(t), &o),
            "{t} should not match"
        );
    }
}

// ---- property tests ----

fn field_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a".to_owned()),
        Just("b".to_owned()),
        Just("n.m".to_owned()),
        Just("in".to_owned()),
        Just("x".to_owned()),
    ]
}

fn value_strategy() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-5i32..5).prop_map(|n| Value::Num(f64::from(n))),
        (-1000.0f64..1000.0).prop_map(Value::Num),
        "[a-c\"\\\\é\n]{0,3}".prop_map(Value::Str),
    ]
}

fn point_strategy(z: bool) -> impl Strategy<Value = Point> {
    (-10.0f64..10.0, -10.0f64..10.0, -10.0f64..10.0).prop_map(move |(x, y, zz)| Point {
        x,
        y,
        z: z.then_some(zz),
    })
}

fn leaf_strategy() -> impl Strategy<Value = Filter> {
    let cmp = prop_oneof![
        Just(CmpOp::Eq),
        Just(CmpOp::Ne),
        Just(CmpOp::Lt),
        Just(CmpOp::Le),
        Just(CmpOp::Gt),
        Just(CmpOp::Ge)
    ];
    prop_oneof![
        (field_strategy(), cmp, value_strategy()).prop_map(|(f, o, v)| Filter::Cmp(f, o, v)),
        (
            field_strategy(),
            prop::collection::vec(value_strategy(), 1..4)
        )
            .prop_map(|(f, v)| Filter::In(f, v)),
        (field_strategy(), "[a-c]{0,2}").prop_map(|(f, p)| Filter::Prefix(f, p)),
        field_strategy().prop_map(Filter::Exists),
        (
            any::<bool>(),
            point_strategy(false),
            point_strategy(false),
            0.0f64..5.0
        )
            .prop_map(|(rect, a, b, r)| if rect {
                let lo = Point {
                    x: a.x.min(b.x),
                    y: a.y.min(b.y),
                    z: None,
                };
                let hi = Point {
                    x: a.x.max(b.x),
                    y: a.y.max(b.y),
                    z: None,
                };
                Filter::Within(lo, hi)
            } else {
                Filter::Near(a, r)
            }),
        (point_strategy(true), 0.0f64..8.0).prop_map(|(c, r)| Filter::Near(c, r)),
    ]
}

fn filter_strategy() -> impl Strategy<Value = Filter> {
    leaf_strategy().prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 2..4)
                .prop_map(|v| v.into_iter().reduce(Filter::and).unwrap_or(Filter::All)),
            prop::collection::vec(inner, 2..4)
                .prop_map(|v| v.into_iter().reduce(Filter::or).unwrap_or(Filter::All)),
        ]
    })
}

/// An independent reading of the documented semantics, written for clarity, not speed.
fn reference(f: &Filter, o: &serde_json::Value) -> bool {
    let get = |field: &str| -> Option<&serde_json::Value> {
        field
            .split('.')
            .try_fold(o, |cur, seg| cur.as_object().and_then(|m| m.get(seg)))
    };
    let same = |j: &serde_json::Value, v: &Value| match v {
        Value::Null => j.is_null(),
        Value::Bool(b) => j.as_bool() == Some(*b),
        Value::Num(n) => j.is_number() && j.as_f64() == Some(*n),
        Value::Str(s) => j.as_str() == Some(s.as_str()),
    };
    let num = |k: &str| o.get(k).and_then(serde_json::Value::as_f64);
    match f {
        Filter::All => true,
        Filter::And(p) => p.iter().all(|x| reference(x, o)),
        Filter::Or(p) => p.iter().any(|x| reference(x, o)),
        Filter::Cmp(field, op, v) => match get(field) {
            None => false,
            Some(j) => {
                let ord = match (j, v) {
                    (serde_json::Value::Number(a), Value::Num(b)) => {
                        a.as_f64().and_then(|a| a.partial_cmp(b))
                    }
                    (serde_json::Value::String(a), Value::Str(b)) => Some(a.as_str().cmp(b)),
                    _ => None,
                };
                use std::cmp::Ordering::*;
                match op {
                    CmpOp::Eq => same(j, v),
                    CmpOp::Ne => !same(j, v),
                    CmpOp::Lt => ord == Some(Less),
                    CmpOp::Le => ord == Some(Less) || ord == Some(Equal),
                    CmpOp::Gt => ord == Some(Greater),
                    CmpOp::Ge => ord == Some(Greater) || ord == Some(Equal),
                }
            }
        },
        Filter::In(field, vs) => get(field).is_some_and(|j| vs.iter().any(|v| same(j, v))),
        Filter::Prefix(field, p) => get(field)
            .and_then(serde_json::Value::as_str)
            .is_some_and(|s| s.starts_with(p.as_str())),
        Filter::Exists(field) => get(field).is_some(),
        Filter::Within(lo, hi) => match (num("x"), num("y")) {
            (Some(x), Some(y)) => {
                lo.x <= x
                    && x <= hi.x
                    && lo.y <= y
                    && y <= hi.y
                    && match (lo.z, hi.z) {
                        (Some(a), Some(b)) => num("z").is_some_and(|z| a <= z && z <= b),
                        _ => true,
                    }
            }
            _ => false,
        },
        Filter::Near(c, r) => match (num("x"), num("y")) {
            (Some(x), Some(y)) => {
                let dz = match c.z {
                    Some(cz) => match num("z") {
                        Some(z) => z - cz,
                        None => return false,
                    },
                    None => 0.0,
                };
                (x - c.x).powi(2) + (y - c.y).powi(2) + dz * dz <= r * r
            }
            _ => false,
        },
    }
}

fn json_strategy() -> impl Strategy<Value = serde_json::Value> {
    let scalar = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        (-5i32..5).prop_map(|n| serde_json::json!(n)),
        (-10.0f64..10.0).prop_map(|n| serde_json::json!(n)),
        "[a-c]{0,3}".prop_map(serde_json::Value::String),
    ];
    let fields = prop::collection::btree_map(
        prop_oneof![
            Just("a"),
            Just("b"),
            Just("in"),
            Just("x"),
            Just("y"),
            Just("z"),
            Just("n")
        ],
        prop_oneof![
            4 => scalar.clone(),
            1 => prop::collection::btree_map(prop_oneof![Just("m"), Just("k")], scalar, 0..2)
                .prop_map(|m| serde_json::json!(m)),
        ],
        0..6,
    );
    fields.prop_map(|m| serde_json::json!(m))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Fuzz-style: any text at all gives a filter or a typed error, never a panic, and a
    /// filter it gives is within the bounds.
    #[test]
    fn any_text_parses_or_errs(text in "[ -~é]{0,80}") {
        if let Ok(f) = parse_filter(&text) {
            prop_assert!(f.check().is_ok());
        }
        let _ = parse_sort(&text);
    }

    /// Text built from the grammar's own pieces reaches deeper into the parser.
    #[test]
    fn token_soup_parses_or_errs(parts in prop::collection::vec(prop_oneof![
        Just("a"), Just("="), Just("<="), Just("!="), Just("("), Just(")"), Just("and"),
        Just("or"), Just("in"), Just(","), Just("\"s\""), Just("1"), Just("-2.5"),
        Just("prefix"), Just("exists"), Just("near"), Just("within"), Just("true"),
        Just("null"), Just("`f g`"), Just("x.y"),
    ], 0..30)) {
        let text = parts.join(" ");
        if let Ok(f) = parse_filter(&text) {
            prop_assert!(f.check().is_ok());
            let again = parse_filter(&f.to_string());
            prop_assert_eq!(again, Ok(f));
        }
    }

    /// Any flat term list from the wire is rebuilt or refused, never a panic.
    #[test]
    fn any_terms_rebuild_or_err(terms in prop::collection::vec(prop_oneof![
        (0u32..4).prop_map(Term::And),
        (0u32..4).prop_map(Term::Or),
        field_strategy().prop_map(|field| Term::Exists { field }),
    ], 0..40)) {
        if let Ok(f) = Filter::from_terms(&terms) {
            prop_assert_eq!(f.to_terms(), terms);
        }
    }

    /// The text form and the wire form both give the same filter back.
    #[test]
    fn text_and_wire_round_trip(f in filter_strategy()) {
        prop_assert_eq!(parse_filter(&f.to_string()), Ok(f.clone()));
        prop_assert_eq!(Filter::from_terms(&f.to_terms()), Ok(f));
    }

    /// Evaluation agrees with an independent reading of the semantics.
    #[test]
    fn evaluation_equals_the_reference(f in filter_strategy(), rows in prop::collection::vec(json_strategy(), 1..20)) {
        for row in rows {
            let o = row.as_object().expect("object").clone();
            prop_assert_eq!(matches(&f, &o), reference(&f, &row), "{} over {}", f, row);
        }
    }

    /// Pages from several nodes, merged and followed by cursor, give exactly the brute-force
    /// answer: every match once, in the query's order.
    #[test]
    fn merged_pages_equal_brute_force(
        f in filter_strategy(),
        rows in prop::collection::vec((json_strategy(), 0u32..4, 0u64..3, 0u64..3), 0..40),
        sort in prop::collection::vec((prop_oneof![Just("a"), Just("b"), Just("x")], any::<bool>()), 0..3),
        page in 1usize..6,
    ) {
        let sort: Vec<crate::proto::SortKey> = sort
            .into_iter()
            .map(|(f, d)| crate::proto::SortKey { field: f.into(), descending: d })
            .collect();
        // One row per (key, owner); its node decides where it lives.
        let mut table: std::collections::BTreeMap<(u32, u64), (serde_json::Value, u64)> = Default::default();
        for (data, sec, owner, node) in rows {
            table.insert((sec, owner), (data, node));
        }
        let all: Vec<(Row, u64)> = table
            .into_iter()
            .map(|((sec, owner), (data, node))| {
                (Row {
                    key: Key::new("k", sec),
                    owner: crate::proto::ClientId(owner),
                    node: NodeId(u128::from(node)),
                    data: Bytes::from(data.to_string()),
                    version: 1,
                    updated_at_ms: 0,
                }, node)
            })
            .collect();
        let base = crate::proto::RowQuery {
            keys: vec!["k".parse().expect("spec")],
            filter: f.to_terms(),
            sort: sort.clone(),
            limit: page as u32,
            start: None,
        };
        // Brute force: every matching row, ordered by the documented order.
        let expect_q = Compiled::new(&base).expect("valid");
        let objs: Vec<Option<Object>> = all.iter().map(|(r, _)| parse_object(&r.data)).collect();
        let mut expected: Vec<usize> = (0..all.len()).filter(|&i| expect_q.matches(objs[i].as_ref())).collect();
        expected.sort_by(|&i, &j| {
            let (a, b) = (&all[i].0, &all[j].0);
            expect_q.place(objs[i].as_ref(), &a.key.primary, a.key.secondary, a.owner)
                .cmp(&expect_q.place(objs[j].as_ref(), &b.key.primary, b.key.secondary, b.owner), &sort)
        });
        let expected: Vec<(Key, crate::proto::ClientId)> =
            expected.into_iter().map(|i| (all[i].0.key.clone(), all[i].0.owner)).collect();

        // Each node answers its first `page` matches after the cursor, as a store does.
        let mut got = Vec::new();
        let mut query = base.clone();
        for _ in 0..100 {
            let q = Compiled::new(&query).expect("valid");
            let answers: Vec<(NodeId, Option<GetPage>)> = (0..3u64).map(|node| {
                let mut mine: Vec<(Place<'_>, &Row)> = all.iter().zip(&objs)
                    .filter(|((_, n), o)| *n == node && q.matches(o.as_ref()))
                    .map(|((r, _), o)| (q.place(o.as_ref(), &r.key.primary, r.key.secondary, r.owner), r))
                    .filter(|(p, _)| q.after_start(p))
                    .collect();
                mine.sort_by(|a, b| a.0.cmp(&b.0, &q.sort));
                let more = mine.len() > page;
                mine.truncate(page);
                let rows: Vec<Row> = mine.iter().map(|(_, r)| (*r).clone()).collect();
                let next = more.then(|| rows.last().map(|r| Cursor { key: r.key.clone(), owner: r.owner })).flatten();
                (NodeId(u128::from(node)), Some(GetPage { rows, next, incomplete: vec![] }))
            }).collect();
            let merged = merge(&q, answers, page, 1 << 20);
            prop_assert!(merged.rows.len() <= page);
            got.extend(merged.rows.iter().map(|r| (r.key.clone(), r.owner)));
            match merged.next {
                Some(c) => query.start = Some(c),
                None => break,
            }
        }
        prop_assert_eq!(got, expected);
    }
}
