//! Bad input never hurts the node: every attack below gets a typed error or
//! a closed connection, and a bystander client on the same node keeps working throughout.

mod common;

use bytes::Bytes;
use cloudmesh::client::ClientError;
use cloudmesh::config::ClassConfig;
use cloudmesh::proto::{
    ClientFrame, CloseCode, FrameReader, Hello, Key, Request, ServerFrame, WireError,
    PROTOCOL_VERSION,
};
use cloudmesh::store::{FilterAction, FilterOp, FilterRule};
use common::*;
use rand::{Rng, SeedableRng};

#[tokio::test]
async fn random_bytes_close_only_that_connection() {
    let n = node().await;
    let bystander = n.client().await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xC10D);
    for round in 0..24u32 {
        let mut raw = raw_connect(n.addr()).await;
        let len = rng.gen_range(1..64 * 1024);
        let mut junk = vec![0u8; len];
        rng.fill(&mut junk[..]);
        if round % 2 == 1 {
            // Also exercise the decoder rather than the length check: a small, plausible prefix.
            let body = (len.min(200) as u32).to_be_bytes();
            junk[..4].copy_from_slice(&body);
        }
        raw.write(&junk).await;
        let _ = raw.send.finish();
        let (code, reason) = raw.close_code().await;
        assert!(
            matches!(code, Some(CloseCode::Protocol | CloseCode::FrameTooLarge)),
            "round {round}: got {code:?} {reason}"
        );
        bystander_works(&bystander, round).await;
    }
    assert_eq!(n.node.client_count(), 1, "only the bystander remains");
}

#[tokio::test]
async fn four_gib_length_prefix_is_refused_without_allocating() {
    let n = node().await;
    let bystander = n.client().await;
    let mut raw = raw_connect(n.addr()).await;
    raw.frame(&ClientFrame::Hello(Hello::current())).await;
    raw.write(&[0xff, 0xff, 0xff, 0xff, 0, 1, 2, 3]).await;
    let (code, reason) = raw.close_code().await;
    assert_eq!(code, Some(CloseCode::FrameTooLarge), "{reason}");
    assert!(
        reason.contains("4294967295"),
        "the reason names the claimed length: {reason}"
    );
    bystander_works(&bystander, 1).await;
}

#[tokio::test]
async fn truncated_frame_closes_with_protocol_error() {
    let n = node().await;
    let bystander = n.client().await;
    let mut raw = raw_connect(n.addr()).await;
    raw.frame(&ClientFrame::Hello(Hello::current())).await;
    let whole = cloudmesh::proto::encode_to_bytes(
        &ClientFrame::Request {
            id: 1,
            op: Request::Post {
                key: Key::new("k", 1),
                data: Bytes::from(vec![7; 100]),
            },
        },
        1 << 20,
    )
    .expect("encode");
    raw.write(&whole[..whole.len() / 2]).await;
    raw.send.finish().expect("finish");
    let (code, reason) = raw.close_code().await;
    assert_eq!(code, Some(CloseCode::Protocol), "{reason}");
    assert!(reason.contains("inside a frame"), "{reason}");
    bystander_works(&bystander, 2).await;
}

#[tokio::test]
async fn request_before_hello_and_second_hello_are_protocol_errors() {
    let n = node().await;
    let bystander = n.client().await;
    let mut raw = raw_connect(n.addr()).await;
    raw.frame(&ClientFrame::Request {
        id: 1,
        op: Request::Ping,
    })
    .await;
    assert_eq!(raw.close_code().await.0, Some(CloseCode::Protocol));

    let mut raw = raw_connect(n.addr()).await;
    raw.frame(&ClientFrame::Hello(Hello::current())).await;
    raw.frame(&ClientFrame::Hello(Hello::current())).await;
    let (code, reason) = raw.close_code().await;
    assert_eq!(code, Some(CloseCode::Protocol));
    assert!(reason.contains("Hello sent twice"), "{reason}");
    bystander_works(&bystander, 3).await;
}

#[tokio::test]
async fn unknown_version_gets_a_typed_refusal() {
    let n = node().await;
    let bystander = n.client().await;
    let mut raw = raw_connect(n.addr()).await;
    raw.frame(&ClientFrame::Hello(Hello {
        min_version: 900,
        max_version: 999,
        ..Hello::current()
    }))
    .await;
    let mut reader = FrameReader::new(&mut raw.recv, 1 << 20);
    let frame = within("refusal", reader.next::<ServerFrame>())
        .await
        .expect("decodes")
        .expect("a frame");
    assert_eq!(
        frame,
        ServerFrame::Refused(WireError::UnsupportedVersion {
            client_min: 900,
            client_max: 999,
            node_min: 1,
            node_max: PROTOCOL_VERSION,
        })
    );
    assert_eq!(
        raw.close_code().await.0,
        Some(CloseCode::UnsupportedVersion)
    );
    bystander_works(&bystander, 4).await;
}

#[tokio::test]
async fn request_flood_is_rate_limited_then_disconnected() {
    let n = node_with(|c| c.rate_limit = 1000).await;
    let bystander = n.client().await;

    // Through the SDK: going over the rate gives the typed error.
    let eager = n.client().await;
    let calls: Vec<_> = (0..1500)
        .map(|_| {
            let c = eager.clone();
            tokio::spawn(async move { c.ping().await })
        })
        .collect();
    let mut results = Vec::new();
    for call in calls {
        results.push(within("pings", call).await.expect("ping task"));
    }
    let limited = results
        .iter()
        .filter(|r| {
            matches!(
                r,
                Err(ClientError::Server(WireError::RateLimited {
                    per_sec: 1000
                }))
            )
        })
        .count();
    assert!(limited > 0, "some of 1,500 instant pings exceed 1,000/s");
    assert!(
        results.iter().any(|r| r.is_ok()),
        "requests within the rate still succeed"
    );

    // A raw flood far past the rate is disconnected with the Flood code.
    let mut raw = raw_connect(n.addr()).await;
    raw.frame(&ClientFrame::Hello(Hello::current())).await;
    let mut reader_stream = raw.recv;
    let drain = tokio::spawn(async move {
        let mut reader = FrameReader::new(&mut reader_stream, 1 << 20);
        let mut limited = 0u32;
        while let Ok(Some(frame)) = reader.next::<ServerFrame>().await {
            if let ServerFrame::Response {
                result: Err(WireError::RateLimited { .. }),
                ..
            } = frame
            {
                limited += 1;
            }
        }
        limited
    });
    let mut batch = bytes::BytesMut::new();
    for id in 0..20_000u64 {
        cloudmesh::proto::encode_frame(
            &ClientFrame::Request {
                id,
                op: Request::Ping,
            },
            1 << 20,
            &mut batch,
        )
        .expect("encode");
    }
    let _ = raw.send.write_all(&batch).await;
    let closed = within("flood close", raw.conn.closed()).await;
    match closed {
        quinn::ConnectionError::ApplicationClosed(c) => {
            assert_eq!(
                c.error_code.into_inner(),
                u64::from(CloseCode::Flood.to_u32()),
                "{c:?}"
            )
        }
        other => panic!("expected Flood close, got {other}"),
    }
    assert!(
        within("drain", drain).await.expect("drain task") > 0,
        "rate-limited responses came first"
    );
    bystander_works(&bystander, 5).await;
}

#[tokio::test]
async fn slow_consumer_is_disconnected_and_writers_are_not_stalled() {
    let n = node_with(|c| c.max_outbound_bytes = 256 * 1024).await;
    let bystander = n.client().await;
    let writer = n.client().await;
    // A subscriber that never reads its stream.
    let mut raw = raw_connect(n.addr()).await;
    raw.frame(&ClientFrame::Hello(Hello::current())).await;
    raw.frame(&ClientFrame::Request {
        id: 1,
        op: Request::Get(cloudmesh::proto::GetQuery {
            keys: vec!["flood".parse().expect("spec")],
            subscribe: true,
            ..Default::default()
        }),
    })
    .await;
    // Wait until the subscription is registered before flooding.
    wait_until("subscription registered", || {
        n.node.stats().subscriptions == 1
    })
    .await;
    let data = Bytes::from(vec![0x5a; 4096]);
    within("writer posts while a subscriber is stuck", async {
        for i in 0..2_000u32 {
            writer
                .post(Key::new("flood", i % 50), data.clone())
                .await
                .expect("writer never stalls");
        }
    })
    .await;
    let (code, reason) = raw.close_code().await;
    assert_eq!(code, Some(CloseCode::SlowConsumer), "{reason}");
    bystander_works(&bystander, 6).await;
}

#[tokio::test]
async fn oversize_posts_are_typed_errors() {
    let n = node_with(|c| c.limits.max_row_bytes = 1024).await;
    let a = n.client().await;
    let err = a
        .post(Key::new("big", 1), vec![0u8; 1025])
        .await
        .expect_err("must be refused");
    assert!(
        matches!(
            err,
            ClientError::Server(WireError::TooLarge {
                size: 1025,
                max: 1024,
                ..
            })
        ),
        "{err}"
    );
    // Larger than a frame: refused before it leaves the client.
    let err = a
        .post(Key::new("big", 1), vec![0u8; 2 << 20])
        .await
        .expect_err("must be refused");
    assert!(
        matches!(err, ClientError::Server(WireError::TooLarge { .. })),
        "{err}"
    );
    let err = a
        .post(Key::new("x".repeat(256), 1), "k")
        .await
        .expect_err("must be refused");
    assert!(
        matches!(err, ClientError::Server(WireError::InvalidKey { .. })),
        "{err}"
    );
    bystander_works(&a, 7).await;
}

#[tokio::test]
async fn full_node_refuses_with_server_full() {
    let n = node_with(|c| c.max_clients = 2).await;
    let a = n.client().await;
    let _b = n.client().await;
    let err = n.client_with(|_| {}).await.expect_err("must be refused");
    assert_eq!(err, ClientError::Refused(WireError::ServerFull { max: 2 }));
    bystander_works(&a, 8).await;
}

#[tokio::test]
async fn class_tokens_reserved_keys_and_filter_rules() {
    let n = node_with(|c| {
        c.classes.insert(
            "server".into(),
            ClassConfig {
                token: Some("s3cret".into()),
            },
        );
        c.filters.push(FilterRule {
            action: FilterAction::Allow,
            ops: vec![FilterOp::Post],
            prefix: "servers".into(),
            classes: vec!["server".into()],
        });
        c.filters.push(FilterRule {
            action: FilterAction::Deny,
            ops: vec![FilterOp::Post],
            prefix: "servers".into(),
            classes: vec![],
        });
    })
    .await;
    let wrong = n
        .client_with(|o| {
            o.class = Some("server".into());
            o.token = Some("guess".into());
        })
        .await
        .expect_err("must be refused");
    assert!(
        matches!(wrong, ClientError::Refused(WireError::Forbidden { .. })),
        "{wrong}"
    );
    let unknown = n
        .client_with(|o| o.class = Some("admin".into()))
        .await
        .expect_err("must be refused");
    assert!(
        matches!(unknown, ClientError::Refused(WireError::Forbidden { .. })),
        "{unknown}"
    );

    let server = n
        .client_with(|o| {
            o.class = Some("server".into());
            o.token = Some("s3cret".into());
        })
        .await
        .expect("right token");
    let player = n.client().await;
    server
        .post(Key::new("servers", 1), "eu-1")
        .await
        .expect("servers may list themselves");
    let denied = player
        .post(Key::new("servers", 2), "fake")
        .await
        .expect_err("must be refused");
    assert!(
        matches!(denied, ClientError::Server(WireError::Forbidden { .. })),
        "{denied}"
    );
    let reserved = server
        .post(Key::new("cloud.nodes", 0), "x")
        .await
        .expect_err("must be refused");
    assert!(
        matches!(reserved, ClientError::Server(WireError::Forbidden { .. })),
        "{reserved}"
    );
    // Clients may read the node's own reserved rows.
    let nodes = player
        .get(vec!["cloud.nodes".parse().expect("spec")])
        .await
        .expect("get");
    assert_eq!(nodes.len(), 1);
    let record: serde_json::Value =
        serde_json::from_slice(&nodes[0].data).expect("cloud.nodes is JSON");
    assert_eq!(record["name"], "test-node");
}
