//! Signed client tokens end to end: tokens minted with PyJWT, as a game backend mints them,
//! against real nodes — HS256 and EdDSA, rights templates, key rotation and `kid`, expiry
//! closing a connected client, refusals at connect, anonymous clients, a migrating client
//! keeping its grant, and `cloudctl post --token` against a real `cloudd`.
//!
//! Needs python3 with PyJWT and cryptography (`pip install pyjwt cryptography`; `.ci/run`
//! installs them when missing).

mod common;
mod procs;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cloudmesh::access::{Anonymous, TokenKey, Tokens};
use cloudmesh::client::{Client, ClientError, Event};
use cloudmesh::config::ClassConfig;
use cloudmesh::mesh::MeshSecret;
use cloudmesh::proto::{CloseCode, DeleteReason, Key, KeySpec, WireError};
use cloudmesh::NodeConfig;
use common::*;
use serde_json::{json, Value};

const OLD_SECRET: &str = "old-secret-0123456789abcdef0123456789";
const NEW_SECRET: &str = "new-secret-0123456789abcdef0123456789";

/// PyJWT, as a game backend calls it: one token per spec `{alg, key, claims, kid}`.
const MINT: &str = r#"
import json, sys, jwt
out = []
for spec in json.load(sys.stdin):
    headers = {"kid": spec["kid"]} if spec.get("kid") else None
    out.append(jwt.encode(spec["claims"], spec["key"], algorithm=spec["alg"], headers=headers))
json.dump(out, sys.stdout)
"#;

/// An Ed25519 key pair from `cryptography`: the private key in PKCS#8 PEM (the backend's),
/// the public key in SubjectPublicKeyInfo PEM (the nodes').
const KEYPAIR: &str = r#"
import json, sys
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives import serialization as s
k = ed25519.Ed25519PrivateKey.generate()
json.dump({
    "private": k.private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption()).decode(),
    "public": k.public_key().public_bytes(s.Encoding.PEM, s.PublicFormat.SubjectPublicKeyInfo).decode(),
}, sys.stdout)
"#;

/// Runs `script` with `input` on stdin and returns its stdout as JSON.
fn python(script: &str, input: &Value) -> Value {
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs (tests/tokens.rs mints tokens with it)");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input.to_string().as_bytes())
        .expect("write to python3");
    let out = child.wait_with_output().expect("python3 finishes");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "python3 failed (PyJWT and cryptography are needed: pip install pyjwt cryptography; \
         .ci/run installs them):\n{err}"
    );
    serde_json::from_slice(&out.stdout).expect("python3 printed JSON")
}

/// One token to mint.
struct Mint<'a> {
    alg: &'a str,
    key: &'a str,
    kid: Option<&'a str>,
    claims: Value,
}

fn hs<'a>(key: &'a str, kid: Option<&'a str>, claims: Value) -> Mint<'a> {
    Mint {
        alg: "HS256",
        key,
        kid,
        claims,
    }
}

fn ed<'a>(private: &'a str, kid: Option<&'a str>, claims: Value) -> Mint<'a> {
    Mint {
        alg: "EdDSA",
        key: private,
        kid,
        claims,
    }
}

/// Tokens minted by PyJWT, in the order given.
fn mint(specs: &[Mint<'_>]) -> Vec<String> {
    let input: Vec<Value> = specs
        .iter()
        .map(|m| json!({"alg": m.alg, "key": m.key, "kid": m.kid, "claims": m.claims}))
        .collect();
    match python(MINT, &Value::Array(input)) {
        Value::Array(tokens) => tokens
            .into_iter()
            .map(|t| t.as_str().expect("a token is a string").to_owned())
            .collect(),
        other => panic!("expected a list of tokens, got {other}"),
    }
}

/// An Ed25519 key pair: (private PEM, public PEM).
fn ed25519() -> (String, String) {
    let pair = python(KEYPAIR, &Value::Null);
    let pem = |k: &str| pair[k].as_str().expect("PEM text").to_owned();
    (pem("private"), pem("public"))
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs()
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_millis()
}

/// Player `sub`'s claims: post its own row, read the players and its match, follow its
/// match; valid for `secs`.
fn player(sub: &str, match_id: u64, secs: u64) -> Value {
    json!({
        "sub": sub,
        "exp": now_s() + secs,
        "match": match_id,
        "rights": {
            "post": ["players/{sub}"],
            "get": ["match.{match}/*", "players"],
            "subscribe": ["match.{match}/*"],
        },
    })
}

fn hs_key(id: Option<&str>, secret: &str) -> TokenKey {
    TokenKey::hs256(id.map(str::to_owned), secret.as_bytes()).expect("a long enough secret")
}

fn tokens(keys: Vec<TokenKey>) -> Tokens {
    Tokens::new(keys).expect("unique key ids")
}

async fn connect(node: &TestNode, token: Option<&str>) -> Result<Client, ClientError> {
    let token = token.map(str::to_owned);
    within("connect", node.client_with(|o| o.token = token)).await
}

/// The reason of a `Forbidden` refusal at connect.
fn refused(r: Result<Client, ClientError>) -> String {
    match r {
        Err(ClientError::Refused(WireError::Forbidden { reason })) => reason,
        Err(other) => panic!("expected a Forbidden refusal, got {other}"),
        Ok(_) => panic!("expected a Forbidden refusal, got a connection"),
    }
}

/// The reason of a `Forbidden` answer to a request.
fn forbidden<T: std::fmt::Debug>(r: Result<T, ClientError>) -> String {
    match r {
        Err(ClientError::Server(WireError::Forbidden { reason })) => reason,
        other => panic!("expected Forbidden, got {other:?}"),
    }
}

fn spec(s: &str) -> KeySpec {
    s.parse().expect("key spec")
}

/// Waits (with the deadline) for the node to close `client` and returns when that was
/// seen, with the code and reason.
async fn wait_closed(client: &Client) -> (u128, Option<CloseCode>, String) {
    match within("the node to close the connection", client.closed()).await {
        ClientError::Closed { code, reason } => (now_ms(), code, reason),
        other => panic!("expected a close by the node, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hs256_and_eddsa_tokens_admit_clients_bounded_by_their_rights() {
    init_test_log();
    let (ed_private, ed_public) = ed25519();
    let keys = tokens(vec![
        hs_key(Some("hs"), NEW_SECRET),
        TokenKey::eddsa_pem(Some("ed".into()), ed_public.as_bytes()).expect("PyJWT's PEM"),
    ]);
    let node = node_with(move |c| c.tokens = keys).await;
    let minted = mint(&[
        hs(NEW_SECRET, Some("hs"), player("42", 7, 600)),
        ed(&ed_private, None, player("43", 8, 600)),
        hs(
            NEW_SECRET,
            None,
            json!({"sub": "tool", "exp": now_s() + 600}),
        ),
    ]);

    // Player 42 (HS256): its own row, its match, the players; nothing else.
    let p42 = connect(&node, Some(&minted[0]))
        .await
        .expect("HS256 token admits");
    p42.post(Key::new("players", 42), "me")
        .await
        .expect("its own row");
    let reason = forbidden(p42.post(Key::new("players", 43), "not me").await);
    assert_eq!(
        reason,
        "the token of \"42\" grants no post right covering players/43"
    );
    let (_, mut sub) = p42
        .subscribe(vec![spec("match.7")], None)
        .await
        .expect("its match");
    p42.get(vec![spec("players")])
        .await
        .expect("players readable");
    let reason = forbidden(p42.get(vec![spec("match.8")]).await);
    assert!(reason.contains("no get right covering match.8"), "{reason}");
    let reason = forbidden(p42.subscribe(vec![spec("match.8/1")], None).await);
    assert!(reason.contains("match.8/1"), "{reason}");
    let reason = forbidden(p42.subscribe(vec![spec("players")], None).await);
    assert!(reason.contains("no subscribe right"), "{reason}");
    // The SDK reads the mesh's own keys to find nodes.
    p42.get(vec![spec("cloud.nodes")])
        .await
        .expect("cloud. keys stay readable");

    // Player 43 (EdDSA, no kid: every EdDSA key is tried) posts in match 8, not 7.
    let p43 = connect(&node, Some(&minted[1]))
        .await
        .expect("EdDSA token admits");
    p43.post(Key::new("players", 43), "me")
        .await
        .expect("its own row");
    assert!(forbidden(p43.post(Key::new("players", 42), "x").await).contains("\"43\""));
    forbidden(p43.get(vec![spec("match.7")]).await);

    // A token without rights: the class's filters alone decide, as before tokens.
    let tool = connect(&node, Some(&minted[2])).await.expect("admits");
    tool.post(Key::new("match.7", 1), "event")
        .await
        .expect("no rights claim");
    match next_event(&mut sub).await {
        Event::Updated(row) => assert_eq!(row.key, Key::new("match.7", 1)),
        other => panic!("expected the match event, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_accepts_old_and_new_keys_and_kid_picks_the_key() {
    init_test_log();
    let both = node_with(|c| {
        c.tokens = tokens(vec![
            hs_key(Some("old"), OLD_SECRET),
            hs_key(Some("new"), NEW_SECRET),
        ])
    })
    .await;
    let only_new = node_with(|c| c.tokens = tokens(vec![hs_key(Some("new"), NEW_SECRET)])).await;
    let claims = || player("42", 7, 600);
    let t = mint(&[
        hs(OLD_SECRET, Some("old"), claims()),
        hs(NEW_SECRET, Some("new"), claims()),
        hs(OLD_SECRET, None, claims()),
        hs(NEW_SECRET, None, claims()),
        // Signed with the new secret, but naming the old key.
        hs(NEW_SECRET, Some("old"), claims()),
        hs(NEW_SECRET, Some("nobody"), claims()),
    ]);
    // During a rotation a node with both keys takes tokens of either.
    for token in &t[..4] {
        connect(&both, Some(token)).await.expect("old or new key");
    }
    // After it, the old key is gone: its tokens are refused, saying why.
    for token in [&t[1], &t[3]] {
        connect(&only_new, Some(token)).await.expect("new key");
    }
    let reason = refused(connect(&only_new, Some(&t[0])).await);
    assert_eq!(
        reason,
        "token refused: unknown key id (kid) \"old\": no key of this node has it"
    );
    let reason = refused(connect(&only_new, Some(&t[2])).await);
    assert_eq!(
        reason,
        "token refused: bad signature: it matches no HS256 key of this node"
    );
    // The kid picks the key: no other key is tried.
    let reason = refused(connect(&both, Some(&t[4])).await);
    assert!(reason.contains("(kid \"old\")"), "{reason}");
    let reason = refused(connect(&both, Some(&t[5])).await);
    assert!(
        reason.contains("unknown key id (kid) \"nobody\""),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_tokens_are_refused_at_connect_with_a_reason() {
    init_test_log();
    let node = node_with(|c| {
        let mut t = tokens(vec![hs_key(None, NEW_SECRET)]);
        t.issuer = Some("game-backend".into());
        t.audience = Some("cloudmesh".into());
        c.tokens = t;
        c.classes.insert("player".into(), ClassConfig::default());
    })
    .await;
    let good = |extra: Value| {
        let mut c = json!({"sub": "42", "exp": now_s() + 600, "iss": "game-backend",
                           "aud": "cloudmesh"});
        if let (Value::Object(c), Value::Object(extra)) = (&mut c, extra) {
            c.extend(extra);
        }
        c
    };
    let t = mint(&[
        hs(NEW_SECRET, None, good(json!({}))),
        hs(NEW_SECRET, None, good(json!({"exp": now_s() - 10}))),
        hs(
            "someone-elses-secret-0123456789abcdef",
            None,
            good(json!({})),
        ),
        hs(NEW_SECRET, None, good(json!({"aud": "another-service"}))),
        hs(NEW_SECRET, None, good(json!({"iss": "someone"}))),
        hs(
            NEW_SECRET,
            None,
            good(json!({"sub": "*", "rights": {"post": ["players.{sub}"]}})),
        ),
        hs(NEW_SECRET, None, good(json!({"class": "ghost"}))),
        hs(NEW_SECRET, None, good(json!({"class": "player"}))),
        hs(
            NEW_SECRET,
            None,
            good(json!({"rights": {"publish": ["x"]}})),
        ),
    ]);
    connect(&node, Some(&t[0]))
        .await
        .expect("the good one admits");
    for (token, want) in [
        (&t[1], "token refused: expired: exp "),
        (&t[2], "token refused: bad signature"),
        (&t[3], "token refused: wrong or missing audience (aud)"),
        (&t[4], "token refused: wrong or missing issuer (iss)"),
        (&t[5], "which would widen the right"),
        (&t[6], "its class \"ghost\" is not declared on this node"),
        (&t[8], "unknown operation \"publish\""),
    ] {
        let reason = refused(connect(&node, Some(token)).await);
        assert!(reason.contains(want), "{want}: {reason}");
    }
    let mut tampered = t[0].clone();
    tampered.insert(tampered.len() / 2, 'A');
    refused(connect(&node, Some(&tampered)).await);
    let reason = refused(connect(&node, Some("not-a-token")).await);
    assert!(
        reason.contains("not a JWT"),
        "present but invalid is refused: {reason}"
    );

    // The token's class is the client's; a hello asking for another is refused.
    let as_player = within(
        "connect",
        node.client_with(|o| {
            o.token = Some(t[7].clone());
            o.class = Some("player".into());
        }),
    )
    .await;
    as_player.expect("same class as the token");
    let mismatch = within(
        "connect",
        node.client_with(|o| {
            o.token = Some(t[0].clone());
            o.class = Some("player".into());
        }),
    )
    .await;
    assert!(refused(mismatch).contains("the token grants class \"default\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_clients_get_what_the_config_gives_them() {
    init_test_log();
    let class_token = |c: &mut NodeConfig| {
        c.classes.insert(
            "server".into(),
            ClassConfig {
                token: Some("class-secret".into()),
            },
        );
    };
    // Default: as before tokens, class `default` with the filters.
    let open = node_with(|c| {
        c.tokens = tokens(vec![hs_key(None, NEW_SECRET)]);
        class_token(c);
    })
    .await;
    let anon = connect(&open, None)
        .await
        .expect("anonymous allowed by default");
    anon.post(Key::new("anything", 1), "x")
        .await
        .expect("filters only");

    let closed = node_with(|c| {
        let mut t = tokens(vec![hs_key(None, NEW_SECRET)]);
        t.anonymous = Anonymous::Refuse;
        c.tokens = t;
        class_token(c);
    })
    .await;
    let reason = refused(connect(&closed, None).await);
    assert!(reason.contains("anonymous clients are refused"), "{reason}");
    let t = mint(&[hs(NEW_SECRET, None, player("42", 7, 600))]);
    connect(&closed, Some(&t[0]))
        .await
        .expect("a signed token admits");
    // A class token keeps working beside signed tokens.
    within(
        "connect",
        closed.client_with(|o| {
            o.class = Some("server".into());
            o.token = Some("class-secret".into());
        }),
    )
    .await
    .expect("class token");
    let wrong = within(
        "connect",
        closed.client_with(|o| {
            o.class = Some("server".into());
            o.token = Some("wrong".into());
        }),
    )
    .await;
    assert_eq!(
        refused(wrong),
        "wrong or missing token for class \"server\""
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_closes_a_connected_client_at_exp() {
    init_test_log();
    let node = node_with(|c| c.tokens = tokens(vec![hs_key(None, NEW_SECRET)])).await;
    let watcher = connect(&node, None).await.expect("anonymous watcher");
    let (_, mut rows) = watcher
        .subscribe(vec![spec("players")], None)
        .await
        .expect("watch players");
    // Minted just before use: a few seconds, to connect and post within.
    let claims = player("42", 7, 5);
    let exp_ms = u128::from(claims["exp"].as_u64().expect("exp")) * 1000;
    let t = mint(&[hs(NEW_SECRET, None, claims)]);
    let p = connect(&node, Some(&t[0]))
        .await
        .expect("admitted before exp");
    p.post(Key::new("players", 42), "me").await.expect("post");
    assert!(matches!(next_event(&mut rows).await, Event::Updated(_)));

    // The client sends nothing more: the node closes it at exp, with its own code.
    let (at, code, reason) = wait_closed(&p).await;
    assert_eq!(code, Some(CloseCode::TokenExpired), "{reason}");
    assert!(reason.contains("token expired"), "{reason}");
    assert!(at >= exp_ms, "closed at {at} ms, before exp {exp_ms} ms");
    // Seen, not asserted: how soon after exp the close arrived.
    eprintln!("closed {} ms after exp", at - exp_ms);
    match next_event(&mut rows).await {
        Event::Deleted { row, reason } => {
            assert_eq!(row.key, Key::new("players", 42));
            assert_eq!(reason, DeleteReason::Disconnected);
        }
        other => panic!("expected the row's deletion, got {other:?}"),
    }
    // The same token cannot come back.
    let reason = refused(connect(&node, Some(&t[0])).await);
    assert!(reason.contains("expired"), "{reason}");
}

fn mesh_config(c: &mut NodeConfig, name: &str) {
    init_test_log();
    c.name = name.into();
    c.secret = Some(MeshSecret::new(vec![6; 32]).expect("secret"));
    c.migration_timeout = Duration::from_secs(5);
    c.load_interval = Duration::from_millis(100);
    c.rebalance_interval = Duration::ZERO;
    // Only `a` verifies tokens: `b` learns the grant from the moved session alone.
    if name == "a" {
        c.tokens = tokens(vec![hs_key(None, NEW_SECRET)]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migrated_client_keeps_its_rights_and_its_expiry() {
    let nodes = mesh_of(&["a", "b"], mesh_config).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    // Long enough for the move and the checks below on a loaded machine.
    let claims = player("42", 7, 12);
    let exp_ms = u128::from(claims["exp"].as_u64().expect("exp")) * 1000;
    let t = mint(&[hs(NEW_SECRET, None, claims)]);
    let p = connect(a, Some(&t[0])).await.expect("admitted on a");
    p.post(Key::new("players", 42), "me")
        .await
        .expect("post on a");
    forbidden(p.post(Key::new("players", 43), "x").await);

    within("migration", a.node.migrate(p.id(), b.node.id()))
        .await
        .expect("migrated");
    wait_until("the client switched to b", || p.node_id() == b.node.id()).await;

    // Served by b now, still bounded by the token's rights.
    let rows = p
        .get(vec![spec("players")])
        .await
        .expect("players readable");
    assert!(rows
        .iter()
        .any(|r| r.key == Key::new("players", 42) && r.node == b.node.id()));
    p.post(Key::new("players", 42), "moved")
        .await
        .expect("its own row on b");
    let reason = forbidden(p.post(Key::new("players", 43), "x").await);
    assert_eq!(
        reason,
        "the token of \"42\" grants no post right covering players/43"
    );
    forbidden(p.get(vec![spec("match.8")]).await);
    p.subscribe(vec![spec("match.7")], None)
        .await
        .expect("its match on b");

    // And b ends the session at the token's exp, though b has no token keys at all.
    let (at, code, reason) = wait_closed(&p).await;
    assert_eq!(code, Some(CloseCode::TokenExpired), "{reason}");
    assert!(at >= exp_ms, "closed at {at} ms, before exp {exp_ms} ms");
    assert_eq!(p.node_id(), b.node.id(), "closed by b");
    wait_until("b dropped the client", || b.node.client_count() == 0).await;
}

/// `cloudctl post --token` against a real `cloudd` whose config names key files.
#[test]
fn cloudctl_posts_with_a_token_against_cloudd_configured_with_key_files() {
    let (ed_private, ed_public) = ed25519();
    let dir = tempfile::tempdir().expect("temp dir");
    let secret_file = dir.path().join("tokens.secret");
    std::fs::write(&secret_file, format!("{NEW_SECRET}\n")).expect("write secret");
    std::fs::set_permissions(
        &secret_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .expect("chmod");
    let pem_file = dir.path().join("tokens.pub.pem");
    std::fs::write(&pem_file, &ed_public).expect("write public key");
    let config = dir.path().join("cloudd.toml");
    std::fs::write(
        &config,
        format!(
            "[tokens]\nissuer = \"game-backend\"\n\
             [[tokens.keys]]\nid = \"hs\"\nalgorithm = \"HS256\"\nfile = \"{}\"\n\
             [[tokens.keys]]\nid = \"ed\"\nalgorithm = \"EdDSA\"\nfile = \"{}\"\n",
            secret_file.display(),
            pem_file.display()
        ),
    )
    .expect("write config");
    let config = config.to_str().expect("UTF-8 path");

    let (status, out, err) =
        procs::Proc::spawn(procs::CLOUDD, &["--config", config, "--check-config"]).finish();
    assert!(status.success(), "{err}");
    assert!(
        out.contains("2 key(s): 1 HS256, 1 EdDSA (ids hs, ed); iss \"game-backend\""),
        "{out}"
    );
    assert!(!out.contains(NEW_SECRET), "never the secret: {out}");

    let data = dir.path().join("data");
    let d = procs::start_cloudd("token-node", &data, &["--config", config]);
    let iss = |mut c: Value| {
        c["iss"] = json!("game-backend");
        c
    };
    let t = mint(&[
        hs(NEW_SECRET, Some("hs"), iss(player("42", 7, 600))),
        ed(&ed_private, Some("ed"), iss(player("43", 7, 600))),
        hs(
            "someone-elses-secret-0123456789abcdef",
            Some("hs"),
            iss(player("42", 7, 600)),
        ),
    ]);

    let mut post = d.ctl(&[
        "post",
        "players/42",
        "me",
        "--hold",
        "60s",
        "--token",
        &t[0],
    ]);
    let line = post.stdout_line("posted ...");
    assert!(line.starts_with("posted players/42 version "), "{line}");
    let mut ed_post = d.ctl(&[
        "post",
        "players/43",
        "me",
        "--hold",
        "60s",
        "--token",
        &t[1],
    ]);
    let line = ed_post.stdout_line("posted ...");
    assert!(line.starts_with("posted players/43 version "), "{line}");

    let (status, _, err) = d
        .ctl(&["post", "players/43", "not me", "--token", &t[0]])
        .finish();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("the token of \"42\" grants no post right covering players/43"),
        "{err}"
    );
    let (status, _, err) = d
        .ctl(&["post", "players/42", "x", "--token", &t[2]])
        .finish();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("token refused: bad signature"), "{err}");

    // Without --hold, post keeps the row until the node closes the connection: at exp.
    // Minted just before use, so its few seconds are not spent before it connects.
    let brief = mint(&[hs(NEW_SECRET, Some("hs"), iss(player("44", 7, 5)))]);
    let (status, out, err) = d
        .ctl(&["post", "players/44", "brief", "--token", &brief[0]])
        .finish();
    assert!(out.starts_with("posted players/44 version "), "{out}");
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("token expired"), "{err}");

    post.signal("-TERM");
    assert!(post.wait().success());
    ed_post.signal("-TERM");
    assert!(ed_post.wait().success());
}
