//! Token verification and admission, with tokens minted here by the same library a Rust
//! backend would use (tests/tokens.rs mints them with PyJWT against real nodes).

use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};

use super::*;

/// Test keys only, made for these tests.
const ED_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIJ/N3hM39vhi7MXFvhhBbPMreY66f3Gf7uV0Kl3TXH5k
-----END PRIVATE KEY-----
";
const ED_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAhrFpLjRZP2ERRueAM6rH5FG6hV1fbqJGZj1eUrsGSW8=
-----END PUBLIC KEY-----
";
const ED_OTHER_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEICJ+p7byi1fML9BC7DCwljqwh2O3b2l3t2HwymM9FTZ8
-----END PRIVATE KEY-----
";

const OLD: &[u8] = b"old-secret-old-secret-old-secret-0";
const NEW: &[u8] = b"new-secret-new-secret-new-secret-1";

/// Now, as the node's clock would say: 2023-11-14, in milliseconds.
const NOW_MS: u64 = 1_700_000_000_000;
const NOW: u64 = NOW_MS / 1000;

fn hs(secret: &[u8], kid: Option<&str>, claims: &Value) -> String {
    let mut h = Header::new(jsonwebtoken::Algorithm::HS256);
    h.kid = kid.map(str::to_owned);
    encode(&h, claims, &EncodingKey::from_secret(secret)).expect("encodes")
}

fn ed(private: &str, kid: Option<&str>, claims: &Value) -> String {
    let mut h = Header::new(jsonwebtoken::Algorithm::EdDSA);
    h.kid = kid.map(str::to_owned);
    let key = EncodingKey::from_ed_pem(private.as_bytes()).expect("test key");
    encode(&h, claims, &key).expect("encodes")
}

fn key(id: Option<&str>, secret: &[u8]) -> TokenKey {
    TokenKey::hs256(id.map(str::to_owned), secret).expect("long enough")
}

fn tokens(keys: Vec<TokenKey>) -> Tokens {
    Tokens::new(keys).expect("unique ids")
}

fn player(exp: u64) -> Value {
    json!({"sub": "42", "exp": exp, "match": 7,
           "rights": {"post": ["players/{sub}"], "get": ["match.{match}/*", "players"],
                      "subscribe": ["match.{match}/*"]}})
}

#[test]
fn hs256_and_eddsa_tokens_verify_into_a_grant() {
    let t = tokens(vec![
        key(None, NEW),
        TokenKey::eddsa_pem(Some("ed".into()), ED_PUBLIC.as_bytes()).expect("pem"),
    ]);
    let g = t
        .verify(&hs(NEW, None, &player(NOW + 60)), NOW_MS)
        .expect("valid");
    assert_eq!(
        (g.subject.as_str(), g.class.as_str(), g.expires_at_ms),
        ("42", "default", (NOW + 60) * 1000)
    );
    let rights = g.rights.as_ref().expect("rights");
    assert!(rights.allows_key(Op::Post, "players", Some(42)));
    assert!(!rights.allows_key(Op::Post, "players", Some(43)));

    let g = t
        .verify(&ed(ED_PRIVATE, Some("ed"), &player(NOW + 60)), NOW_MS)
        .expect("EdDSA");
    assert_eq!(g.subject, "42");
    // Without kid, every EdDSA key is tried.
    t.verify(&ed(ED_PRIVATE, None, &player(NOW + 60)), NOW_MS)
        .expect("EdDSA without kid");
    let e = t
        .verify(&ed(ED_OTHER_PRIVATE, None, &player(NOW + 60)), NOW_MS)
        .expect_err("another key signed it");
    assert!(matches!(e, TokenError::BadSignature { .. }), "{e}");
}

#[test]
fn kid_picks_the_key_and_rotation_keeps_both_working() {
    let both = tokens(vec![key(Some("old"), OLD), key(Some("new"), NEW)]);
    let only_new = tokens(vec![key(Some("new"), NEW)]);
    let claims = player(NOW + 60);
    for (secret, kid) in [
        (OLD, Some("old")),
        (NEW, Some("new")),
        (OLD, None),
        (NEW, None),
    ] {
        both.verify(&hs(secret, kid, &claims), NOW_MS)
            .unwrap_or_else(|e| panic!("{kid:?}: {e}"));
    }
    let e = only_new
        .verify(&hs(OLD, Some("old"), &claims), NOW_MS)
        .expect_err("old key gone");
    assert_eq!(
        e.to_string(),
        "unknown key id (kid) \"old\": no key of this node has it"
    );
    let e = only_new
        .verify(&hs(OLD, None, &claims), NOW_MS)
        .expect_err("old key gone");
    assert!(e.to_string().starts_with("bad signature"), "{e}");
    // The kid picks: signed with the new secret but naming the old key fails.
    let e = both
        .verify(&hs(NEW, Some("old"), &claims), NOW_MS)
        .expect_err("kid names the other key");
    assert_eq!(
        e.to_string(),
        "bad signature: it matches no HS256 key of this node (kid \"old\")"
    );
    let e = both
        .verify(&ed(ED_PRIVATE, Some("new"), &claims), NOW_MS)
        .expect_err("kid of another algorithm");
    assert!(matches!(e, TokenError::KeyAlgorithm { .. }), "{e}");
    let e = both
        .verify(&ed(ED_PRIVATE, None, &claims), NOW_MS)
        .expect_err("no EdDSA key");
    assert_eq!(
        e,
        TokenError::NoKey {
            algorithm: Algorithm::EdDsa
        }
    );
}

#[test]
fn time_claims_are_checked_against_the_callers_clock_without_leeway() {
    let t = tokens(vec![key(None, NEW)]);
    let e = t
        .verify(&hs(NEW, None, &player(NOW)), NOW_MS)
        .expect_err("exp is now");
    assert!(matches!(e, TokenError::Expired { .. }), "{e}");
    t.verify(&hs(NEW, None, &player(NOW)), NOW_MS - 1)
        .expect("a millisecond before exp");
    let early = json!({"sub": "a", "exp": NOW + 60, "nbf": NOW + 10});
    let e = t
        .verify(&hs(NEW, None, &early), NOW_MS)
        .expect_err("nbf ahead");
    assert!(matches!(e, TokenError::NotYetValid { .. }), "{e}");
    t.verify(&hs(NEW, None, &early), (NOW + 10) * 1000)
        .expect("at nbf");
    let g = t
        .verify(
            &hs(NEW, None, &json!({"sub": "a", "exp": 1_700_000_000.5})),
            NOW_MS,
        )
        .expect("fractional exp");
    assert_eq!(g.expires_at_ms, NOW_MS + 500);
    assert!(!g.expired(NOW_MS + 499) && g.expired(NOW_MS + 500));
}

#[test]
fn claims_issuer_and_audience_are_checked() {
    let mut t = tokens(vec![key(None, NEW)]);
    let refused = |t: &Tokens, claims: Value| -> String {
        t.verify(&hs(NEW, None, &claims), NOW_MS)
            .expect_err("refused")
            .to_string()
    };
    let exp = NOW + 60;
    assert!(refused(&t, json!({"exp": exp})).starts_with("claim sub: required"));
    assert!(refused(&t, json!({"sub": 42, "exp": exp})).starts_with("claim sub: must be"));
    assert!(refused(&t, json!({"sub": "a"})).starts_with("claim exp: required"));
    assert!(refused(&t, json!({"sub": "a", "exp": "soon"})).starts_with("claim exp: must be"));
    assert!(refused(&t, json!({"sub": "a", "exp": exp, "class": 3})).starts_with("claim class"));
    assert!(refused(&t, json!({"sub": "a", "exp": exp, "rights": null})).starts_with("rights: "));
    assert!(refused(
        &t,
        json!({"sub": "a", "exp": exp, "rights": {"post": ["p/{x}"]}})
    )
    .contains("no claim \"x\""));
    // A claim value cannot widen a right.
    let widening = json!({"sub": "*", "exp": exp, "rights": {"post": ["players.{sub}"]}});
    assert!(refused(&t, widening).contains("which would widen the right"));
    // Without an audience configured, `aud` is not checked.
    t.verify(
        &hs(NEW, None, &json!({"sub": "a", "exp": exp, "aud": "x"})),
        NOW_MS,
    )
    .expect("aud not checked");

    t.issuer = Some("game-backend".into());
    t.audience = Some("cloudmesh".into());
    let good = json!({"sub": "a", "exp": exp, "iss": "game-backend", "aud": ["x", "cloudmesh"]});
    t.verify(&hs(NEW, None, &good), NOW_MS)
        .expect("iss and aud match");
    for (claims, want) in [
        (
            json!({"sub": "a", "exp": exp, "aud": "cloudmesh"}),
            "issuer",
        ),
        (
            json!({"sub": "a", "exp": exp, "iss": "other", "aud": "cloudmesh"}),
            "issuer",
        ),
        (
            json!({"sub": "a", "exp": exp, "iss": "game-backend"}),
            "audience",
        ),
        (
            json!({"sub": "a", "exp": exp, "iss": "game-backend", "aud": "other"}),
            "audience",
        ),
    ] {
        let e = refused(&t, claims.clone());
        assert!(e.contains(want), "{claims}: {e}");
    }
}

#[test]
fn malformed_tokens_are_refused_with_a_reason() {
    let t = tokens(vec![key(None, NEW)]);
    for (token, want) in [
        ("change-me", "not a JWT"),
        ("a.b", "not a JWT"),
        ("a.b.c.d", "not a JWT"),
        ("a b.c.d", "not a JWT"),
        ("abc.def.ghi", "unreadable JWT header"),
        // {"alg":"none"}: unsigned tokens are not taken.
        (
            "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0.",
            "unreadable JWT header",
        ),
        // {"alg":"RS256","typ":"JWT"}
        (
            "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.e30.c2ln",
            "algorithm RS256 is not accepted",
        ),
    ] {
        let e = t.verify(token, NOW_MS).expect_err(token).to_string();
        assert!(e.contains(want), "{token}: {e}");
    }
    let mut forged = hs(NEW, None, &player(NOW + 60));
    forged.push('x');
    assert!(t.verify(&forged, NOW_MS).is_err());
    let forged = hs(
        b"someone-elses-secret-0123456789abcdef",
        None,
        &player(NOW + 60),
    );
    assert!(matches!(
        t.verify(&forged, NOW_MS),
        Err(TokenError::BadSignature { .. })
    ));
}

#[test]
fn keys_are_checked_when_configured() {
    assert_eq!(
        TokenKey::hs256(None, b"short").expect_err("short"),
        KeyError::ShortSecret { len: 5 }
    );
    let k = TokenKey::from_file_bytes(
        None,
        "HS256",
        &[b'x'; 32].iter().chain(b"\n").copied().collect::<Vec<_>>(),
    )
    .expect("a trailing newline is not part of the secret");
    assert_eq!(k.algorithm(), Algorithm::Hs256);
    assert_eq!(
        TokenKey::from_file_bytes(None, "HS256", &[b'x'; 31]).expect_err("31 bytes"),
        KeyError::ShortSecret { len: 31 }
    );
    assert!(matches!(
        TokenKey::from_file_bytes(None, "RS256", b"x"),
        Err(KeyError::UnknownAlgorithm { .. })
    ));
    for bad in ["not pem", ED_PRIVATE] {
        let e = TokenKey::from_file_bytes(None, "EdDSA", bad.as_bytes()).expect_err(bad);
        assert!(matches!(e, KeyError::BadPem { .. }), "{bad}: {e}");
    }
    assert_eq!(
        Tokens::new(vec![key(Some("a"), NEW), key(Some("a"), OLD)]).expect_err("dup"),
        KeyError::DuplicateId("a".into())
    );
    let t = tokens(vec![
        key(Some("a"), NEW),
        key(None, OLD),
        TokenKey::eddsa_pem(None, ED_PUBLIC.as_bytes()).expect("pem"),
    ]);
    assert_eq!(t.key_counts(), "2 HS256, 1 EdDSA");
    let debug = format!("{t:?}");
    assert!(
        !debug.contains("new-secret") && debug.contains("Hs256"),
        "{debug}"
    );
}

#[test]
fn admission_by_token_class_token_or_anonymously() {
    let rule = |c: &str| match c {
        "default" => ClassRule::Open,
        "server" => ClassRule::Token("class-secret"),
        "player" => ClassRule::Open,
        _ => ClassRule::Undeclared,
    };
    let mut t = tokens(vec![key(None, NEW)]);
    let admit =
        |t: &Tokens, class: Option<&str>, token: Option<&str>| t.admit(class, token, rule, NOW_MS);
    let jwt = hs(NEW, None, &player(NOW + 60));
    let a = admit(&t, None, Some(&jwt)).expect("token");
    assert_eq!(a.class, "default");
    assert_eq!(a.grant.as_ref().map(|g| g.subject.as_str()), Some("42"));
    let a = admit(&t, Some("server"), Some("class-secret")).expect("class token still works");
    assert_eq!((a.class.as_str(), a.grant), ("server", None));
    assert_eq!(
        admit(&t, Some("server"), Some("wrong")).expect_err("wrong class token"),
        AdmitError::ClassToken("server".into())
    );
    let a = admit(&t, None, None).expect("anonymous allowed by default");
    assert_eq!((a.class.as_str(), a.grant), ("default", None));

    // Present but invalid is refused, never taken as anonymous.
    let expired = hs(NEW, None, &player(NOW - 1));
    assert!(matches!(
        admit(&t, None, Some(&expired)),
        Err(AdmitError::Token(TokenError::Expired { .. }))
    ));
    assert_eq!(
        admit(&t, None, Some("garbage")).expect_err("garbage"),
        AdmitError::Token(TokenError::NotAJwt)
    );

    let player_token = hs(
        NEW,
        None,
        &json!({"sub": "p", "exp": NOW + 60, "class": "player"}),
    );
    assert_eq!(
        admit(&t, None, Some(&player_token))
            .expect("class from the token")
            .class,
        "player"
    );
    assert_eq!(
        admit(&t, Some("player"), Some(&player_token))
            .expect("same class")
            .class,
        "player"
    );
    assert!(matches!(
        admit(&t, Some("server"), Some(&player_token)),
        Err(AdmitError::ClassMismatch { .. })
    ));
    let ghost = hs(
        NEW,
        None,
        &json!({"sub": "p", "exp": NOW + 60, "class": "ghost"}),
    );
    assert_eq!(
        admit(&t, None, Some(&ghost)).expect_err("undeclared"),
        AdmitError::TokenClass("ghost".into())
    );
    assert_eq!(
        admit(&t, Some("ghost"), None).expect_err("undeclared"),
        AdmitError::UnknownClass("ghost".into())
    );

    t.anonymous = Anonymous::Refuse;
    assert_eq!(
        admit(&t, None, None).expect_err("anonymous"),
        AdmitError::Anonymous
    );
    assert_eq!(
        admit(&t, None, Some("")).expect_err("empty"),
        AdmitError::Anonymous
    );
    admit(&t, None, Some(&jwt)).expect("a token still admits");
    admit(&t, Some("server"), Some("class-secret")).expect("a class token still admits");

    // Without keys, tokens are class tokens only, as before.
    let none = Tokens::default();
    assert_eq!(
        admit(&none, None, Some(&jwt))
            .expect("ignored as before")
            .grant,
        None
    );
}

#[test]
fn grants_check_rights_and_keep_the_mesh_readable() {
    let t = tokens(vec![key(None, NEW)]);
    let g = t
        .verify(&hs(NEW, None, &player(NOW + 60)), NOW_MS)
        .expect("valid");
    g.check(Op::Post, "players", Some(42)).expect("own row");
    let e = g
        .check(Op::Post, "players", Some(43))
        .expect_err("other row");
    assert_eq!(
        e,
        "the token of \"42\" grants no post right covering players/43"
    );
    let e = g.check(Op::Get, "match.8", None).expect_err("other match");
    assert!(
        e.contains("get right covering match.8 (every key under it)"),
        "{e}"
    );
    g.check(Op::Get, "cloud.nodes", None)
        .expect("the mesh's own keys are readable");
    g.check(Op::Subscribe, "Cloud.load", None)
        .expect("in any case");
    assert!(g.check(Op::Post, "cloud.nodes", Some(0)).is_err());

    let back = Grant::from_session("default", &g.to_session());
    assert_eq!(back, g, "a grant survives the move");

    let open = t
        .verify(
            &hs(NEW, None, &json!({"sub": "a", "exp": NOW + 60})),
            NOW_MS,
        )
        .expect("valid");
    open.check(Op::Post, "anything", Some(1))
        .expect("no rights claim: filters decide");
}
