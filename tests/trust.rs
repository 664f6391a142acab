//! How clients decide to trust a node: pinned fingerprint, CA file, explicit insecure mode.

mod common;

use cloudmesh::client::{Client, ClientError, ClientOptions};
use cloudmesh::transport::Trust;
use cloudmesh::{Node, NodeConfig};
use common::*;

#[tokio::test]
async fn wrong_pin_is_refused_with_a_clear_message() {
    let n = node().await;
    let err = Client::connect(n.addr(), ClientOptions::new(Trust::Pin([0u8; 32])))
        .await
        .expect_err("must be refused");
    match err {
        ClientError::Connect { reason, .. } => assert!(reason.contains("fingerprint"), "{reason}"),
        other => panic!("expected a connect error, got {other}"),
    }
    assert_eq!(n.node.client_count(), 0);
}

#[tokio::test]
async fn insecure_mode_connects() {
    let n = node().await;
    let c = Client::connect(n.addr(), ClientOptions::new(Trust::InsecureDevOnly))
        .await
        .expect("connects");
    c.ping().await.expect("ping");
}

#[tokio::test]
async fn ca_signed_certificate_is_verified_by_name() {
    // An operator's CA signs the node certificate, placed in the data dir before first start.
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "test CA");
    let ca = ca_params.self_signed(&ca_key).expect("ca cert");
    let leaf_key = rcgen::KeyPair::generate().expect("leaf key");
    let leaf = rcgen::CertificateParams::new(vec!["node1.mesh.test".to_string()])
        .expect("leaf params")
        .signed_by(&leaf_key, &ca, &ca_key)
        .expect("leaf cert");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("cert.pem"), leaf.pem()).expect("write cert");
    std::fs::write(dir.path().join("key.pem"), leaf_key.serialize_pem()).expect("write key");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).expect("write ca");

    let mut cfg: NodeConfig = config(dir.path());
    cfg.name = "node1".into();
    let node = Node::start(cfg)
        .await
        .expect("node starts with the operator's certificate");
    assert!(!node.cert_generated());

    let mut opts = ClientOptions::new(Trust::CaFile(ca_file.clone()));
    opts.server_name = "node1.mesh.test".into();
    let c = Client::connect(node.local_addr(), opts)
        .await
        .expect("CA-verified connect");
    c.ping().await.expect("ping");

    let mut wrong_name = ClientOptions::new(Trust::CaFile(ca_file));
    wrong_name.server_name = "other.mesh.test".into();
    assert!(matches!(
        Client::connect(node.local_addr(), wrong_name).await,
        Err(ClientError::Connect { .. })
    ));

    // The node's self-signed default is not trusted through an unrelated CA.
    let other = node_with(|_| {}).await;
    let mut opts = ClientOptions::new(Trust::CaFile(dir.path().join("ca.pem")));
    opts.server_name = "localhost".into();
    assert!(Client::connect(other.addr(), opts).await.is_err());
}

#[tokio::test]
async fn missing_ca_file_is_a_config_error() {
    let n = node().await;
    let err = Client::connect(
        n.addr(),
        ClientOptions::new(Trust::CaFile("/nonexistent/ca.pem".into())),
    )
    .await
    .expect_err("must be refused");
    assert!(
        matches!(err, ClientError::Config(ref m) if m.contains("/nonexistent/ca.pem")),
        "{err}"
    );
}

#[tokio::test]
async fn node_shutdown_reaches_clients_with_its_reason() {
    let n = node().await;
    // A healing client would wait for the node to come back; this one closes.
    let c = n
        .client_with(|o| o.heal = false)
        .await
        .expect("client connects");
    let (_, mut sub) = c
        .subscribe(vec!["k".parse().expect("spec")], None)
        .await
        .expect("subscribe");
    n.node.shutdown("node shutting down for maintenance").await;
    match within("close", c.closed()).await {
        ClientError::Closed { code, reason } => {
            assert_eq!(code, Some(cloudmesh::proto::CloseCode::Shutdown));
            assert!(reason.contains("maintenance"), "{reason}");
        }
        other => panic!("expected Closed, got {other}"),
    }
    assert_eq!(
        within("stream end", sub.next()).await,
        None,
        "subscriptions end"
    );
    let err = c.ping().await.expect_err("must be refused");
    assert!(matches!(err, ClientError::Closed { .. }), "{err}");
}
