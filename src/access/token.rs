//! Signed client tokens (JWT, HS256 or EdDSA) verified against the configured keys, and the
//! admission decision for a hello: a token's grant, a class token, or an anonymous client.

use std::fmt;
use std::str::FromStr;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::{Map, Value};
use subtle::ConstantTimeEq;

use super::{Grant, Rights, RightsError, DEFAULT_CLASS};
use crate::proto::MAX_PRIMARY_LEN;

/// Shortest HS256 secret taken: the length of the hash, so the key is no weaker than it.
pub const MIN_HMAC_SECRET: usize = 32;

/// A signature algorithm client tokens may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// HMAC-SHA256 with a secret the game backend shares with the nodes.
    Hs256,
    /// Ed25519: the backend signs with its private key, nodes hold the public key.
    EdDsa,
}

impl Algorithm {
    /// Both, in the order `--check-config` lists them.
    pub const ALL: [Algorithm; 2] = [Algorithm::Hs256, Algorithm::EdDsa];

    /// Its name as a JWT header and the config write it.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Hs256 => "HS256",
            Algorithm::EdDsa => "EdDSA",
        }
    }

    fn jwt(self) -> jsonwebtoken::Algorithm {
        match self {
            Algorithm::Hs256 => jsonwebtoken::Algorithm::HS256,
            Algorithm::EdDsa => jsonwebtoken::Algorithm::EdDSA,
        }
    }

    fn of_jwt(alg: jsonwebtoken::Algorithm) -> Option<Algorithm> {
        match alg {
            jsonwebtoken::Algorithm::HS256 => Some(Algorithm::Hs256),
            jsonwebtoken::Algorithm::EdDSA => Some(Algorithm::EdDsa),
            _ => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Algorithm {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| KeyError::UnknownAlgorithm {
                given: s.to_owned(),
            })
    }
}

/// Why a configured key cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not HS256 or EdDSA.
    #[error("unknown algorithm {given:?}: client tokens use \"HS256\" or \"EdDSA\"")]
    UnknownAlgorithm {
        /// What the config says.
        given: String,
    },
    /// An HS256 secret shorter than [`MIN_HMAC_SECRET`].
    #[error(
        "the HS256 secret is {len} bytes, at least {MIN_HMAC_SECRET} are needed \
         (make one with: openssl rand -hex 32)"
    )]
    ShortSecret {
        /// Its length.
        len: usize,
    },
    /// Not an Ed25519 public key in PEM.
    #[error(
        "not an Ed25519 public key in PEM (a \"-----BEGIN PUBLIC KEY-----\" block; nodes \
         need the public key, never the private one): {reason}"
    )]
    BadPem {
        /// What the PEM reader said.
        reason: String,
    },
    /// Two keys with one id.
    #[error("two keys have the id {0:?}: a token's kid picks one key, so ids must be unique")]
    DuplicateId(String),
}

/// One key that verifies client tokens.
#[derive(Clone)]
pub struct TokenKey {
    id: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

impl fmt::Debug for TokenKey {
    // Never the key: a Debug print can end up in a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenKey")
            .field("id", &self.id)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl TokenKey {
    /// An HS256 key: the secret's bytes as the backend signs with them.
    pub fn hs256(id: Option<String>, secret: &[u8]) -> Result<TokenKey, KeyError> {
        if secret.len() < MIN_HMAC_SECRET {
            return Err(KeyError::ShortSecret { len: secret.len() });
        }
        Ok(TokenKey {
            id,
            algorithm: Algorithm::Hs256,
            key: DecodingKey::from_secret(secret),
        })
    }

    /// An EdDSA key: an Ed25519 public key in PEM.
    pub fn eddsa_pem(id: Option<String>, pem: &[u8]) -> Result<TokenKey, KeyError> {
        let key = DecodingKey::from_ed_pem(pem).map_err(|e| KeyError::BadPem {
            reason: e.to_string(),
        })?;
        Ok(TokenKey {
            id,
            algorithm: Algorithm::EdDsa,
            key,
        })
    }

    /// A key of the algorithm named `algorithm` from a key file's bytes: an HS256 secret
    /// (one trailing newline ignored, as editors add one) or an Ed25519 public key in PEM.
    pub fn from_file_bytes(
        id: Option<String>,
        algorithm: &str,
        bytes: &[u8],
    ) -> Result<TokenKey, KeyError> {
        match algorithm.parse()? {
            Algorithm::Hs256 => {
                let secret = bytes
                    .strip_suffix(b"\r\n")
                    .or_else(|| bytes.strip_suffix(b"\n"))
                    .unwrap_or(bytes);
                TokenKey::hs256(id, secret)
            }
            Algorithm::EdDsa => TokenKey::eddsa_pem(id, bytes),
        }
    }

    /// Its id, which a token's `kid` header names.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// Its algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

/// What a node gives clients that present no token (nor a class token).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Anonymous {
    /// The class they name (`default` when none) with its filter rules, as before tokens.
    #[default]
    Allow,
    /// Refused at connect: every client needs a valid token or a class token.
    Refuse,
}

impl Anonymous {
    /// Its name in the config.
    pub fn name(self) -> &'static str {
        match self {
            Anonymous::Allow => "allow",
            Anonymous::Refuse => "refuse",
        }
    }
}

/// Why a token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not three base64url parts.
    #[error("not a JWT (three base64url parts separated by dots)")]
    NotAJwt,
    /// The header does not decode (an unknown `alg` such as `none` lands here too).
    #[error("unreadable JWT header: {0}")]
    Header(String),
    /// An algorithm nodes do not take.
    #[error("algorithm {given} is not accepted: client tokens use HS256 or EdDSA")]
    Algorithm {
        /// The header's `alg`.
        given: String,
    },
    /// The `kid` names no configured key.
    #[error("unknown key id (kid) {kid:?}: no key of this node has it")]
    UnknownKeyId {
        /// The header's `kid`.
        kid: String,
    },
    /// The `kid` names a key of another algorithm.
    #[error("key {kid:?} is an {key} key but the token says {token}")]
    KeyAlgorithm {
        /// The header's `kid`.
        kid: String,
        /// The key's algorithm.
        key: Algorithm,
        /// The header's `alg`.
        token: Algorithm,
    },
    /// No key of the token's algorithm.
    #[error("no {algorithm} key is configured on this node")]
    NoKey {
        /// The header's `alg`.
        algorithm: Algorithm,
    },
    /// The signature matches no key it was checked with.
    #[error("bad signature: it matches no {algorithm} key of this node{}",
        kid.as_ref().map(|k| format!(" (kid {k:?})")).unwrap_or_default())]
    BadSignature {
        /// The token's algorithm.
        algorithm: Algorithm,
        /// The key the `kid` picked, if it did.
        kid: Option<String>,
    },
    /// The payload is not a JSON object of claims.
    #[error("unreadable claims: {0}")]
    Malformed(String),
    /// `iss` missing or not the one configured.
    #[error("wrong or missing issuer (iss): this node takes tokens issued by {expected:?}")]
    Issuer {
        /// The configured issuer.
        expected: String,
    },
    /// `aud` missing or not the one configured.
    #[error("wrong or missing audience (aud): this node takes tokens for {expected:?}")]
    Audience {
        /// The configured audience.
        expected: String,
    },
    /// A claim is missing or of the wrong form.
    #[error("claim {claim}: {reason}")]
    Claim {
        /// Which claim.
        claim: &'static str,
        /// What it must be.
        reason: &'static str,
    },
    /// `exp` has passed.
    #[error("expired: exp {exp} is not after now ({now_s} s since the Unix epoch)")]
    Expired {
        /// The claim, seconds.
        exp: String,
        /// The node's clock, seconds.
        now_s: u64,
    },
    /// `nbf` is still ahead.
    #[error("not valid yet: nbf {nbf} is after now ({now_s} s since the Unix epoch)")]
    NotYetValid {
        /// The claim, seconds.
        nbf: String,
        /// The node's clock, seconds.
        now_s: u64,
    },
    /// The `rights` claim cannot be used.
    #[error("rights: {0}")]
    Rights(#[from] RightsError),
}

/// Whether `token` has a JWT's shape: three dot-separated parts of base64url, the first two
/// not empty. A class token with that shape is still compared as a class token first.
pub fn looks_like_jwt(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    let b64 = |p: &str| {
        p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    parts.len() == 3 && !parts[0].is_empty() && !parts[1].is_empty() && parts.iter().all(|p| b64(p))
}

/// How the operator declared a client class, as admission needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassRule<'a> {
    /// Not declared (and not `default`): refused.
    Undeclared,
    /// Declared without a token, or `default` undeclared.
    Open,
    /// Declared with this token, which a client claiming it must present.
    Token(&'a str),
}

/// Who a client is once admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    /// Its class, for filter rules.
    pub class: String,
    /// What its token grants; `None` without a signed token.
    pub grant: Option<Grant>,
}

/// Why a hello is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmitError {
    /// The signed token is invalid.
    #[error("token refused: {0}")]
    Token(#[from] TokenError),
    /// The token names a class this node does not declare.
    #[error("token refused: its class {0:?} is not declared on this node")]
    TokenClass(String),
    /// The hello names another class than the token grants.
    #[error("the hello asks for class {asked:?} but the token grants class {granted:?}")]
    ClassMismatch {
        /// In the hello.
        asked: String,
        /// In the token.
        granted: String,
    },
    /// The hello names an undeclared class.
    #[error("unknown client class {0:?}")]
    UnknownClass(String),
    /// The class needs its token, and this is not it.
    #[error("wrong or missing token for class {0:?}")]
    ClassToken(String),
    /// No token, and anonymous clients are refused.
    #[error(
        "this node admits only clients with a token (a signed client token, or a class \
         token); anonymous clients are refused"
    )]
    Anonymous,
}

/// The client token settings: keys (several at once, for rotation), the issuer and
/// audience required, and what anonymous clients get.
#[derive(Clone, Default)]
pub struct Tokens {
    keys: Vec<TokenKey>,
    /// When set, a token's `iss` must be this.
    pub issuer: Option<String>,
    /// When set, a token's `aud` must be (or list) this; when not, `aud` is not checked.
    pub audience: Option<String>,
    /// What clients without a token get.
    pub anonymous: Anonymous,
}

impl fmt::Debug for Tokens {
    // Never the keys: a Debug print can end up in a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens")
            .field("keys", &self.keys)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("anonymous", &self.anonymous)
            .finish()
    }
}

impl Tokens {
    /// Settings with these keys (ids unique), no issuer or audience, anonymous allowed.
    pub fn new(keys: Vec<TokenKey>) -> Result<Tokens, KeyError> {
        for (i, k) in keys.iter().enumerate() {
            if let Some(id) = k.id() {
                if keys[..i].iter().any(|o| o.id() == Some(id)) {
                    return Err(KeyError::DuplicateId(id.to_owned()));
                }
            }
        }
        Ok(Tokens {
            keys,
            ..Tokens::default()
        })
    }

    /// The keys.
    pub fn keys(&self) -> &[TokenKey] {
        &self.keys
    }

    /// How many keys of each algorithm, for `--check-config`: e.g. `2 HS256, 1 EdDSA`.
    pub fn key_counts(&self) -> String {
        let counts: Vec<String> = Algorithm::ALL
            .into_iter()
            .map(|a| (a, self.keys.iter().filter(|k| k.algorithm == a).count()))
            .filter(|(_, n)| *n > 0)
            .map(|(a, n)| format!("{n} {a}"))
            .collect();
        counts.join(", ")
    }

    /// Verifies a signed token at `now_ms` (milliseconds since the Unix epoch) and returns
    /// what it grants.
    ///
    /// The `kid` header picks the key when given; otherwise every key of the token's
    /// algorithm is tried. `exp` and `sub` are required; `nbf`, `class` and `rights` are
    /// optional; `iss` and `aud` must match when configured.
    pub fn verify(&self, token: &str, now_ms: u64) -> Result<Grant, TokenError> {
        if !looks_like_jwt(token) {
            return Err(TokenError::NotAJwt);
        }
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| TokenError::Header(e.to_string()))?;
        let algorithm = Algorithm::of_jwt(header.alg).ok_or_else(|| TokenError::Algorithm {
            given: format!("{:?}", header.alg),
        })?;
        let candidates: Vec<&TokenKey> = match &header.kid {
            Some(kid) => {
                let key = self
                    .keys
                    .iter()
                    .find(|k| k.id() == Some(kid.as_str()))
                    .ok_or_else(|| TokenError::UnknownKeyId { kid: kid.clone() })?;
                if key.algorithm != algorithm {
                    return Err(TokenError::KeyAlgorithm {
                        kid: kid.clone(),
                        key: key.algorithm,
                        token: algorithm,
                    });
                }
                vec![key]
            }
            None => self
                .keys
                .iter()
                .filter(|k| k.algorithm == algorithm)
                .collect(),
        };
        if candidates.is_empty() {
            return Err(TokenError::NoKey { algorithm });
        }
        let validation = self.validation(algorithm);
        for key in candidates {
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation) {
                Ok(data) => return grant(&data.claims, now_ms),
                // Another key may have signed it.
                Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => {}
                Err(e) => return Err(self.jwt_error(&e)),
            }
        }
        Err(TokenError::BadSignature {
            algorithm,
            kid: header.kid,
        })
    }

    /// The library's checks: signature, and `iss`/`aud` when configured. Time claims are
    /// checked by [`grant`] against the caller's clock, with no leeway: the session ends
    /// at `exp`, so a token is not taken past it either.
    fn validation(&self, algorithm: Algorithm) -> Validation {
        let mut v = Validation::new(algorithm.jwt());
        let mut required: Vec<&str> = Vec::new();
        v.validate_exp = false;
        v.validate_nbf = false;
        v.leeway = 0;
        if let Some(iss) = &self.issuer {
            v.set_issuer(&[iss]);
            required.push("iss");
        }
        match &self.audience {
            Some(aud) => {
                v.set_audience(&[aud]);
                required.push("aud");
            }
            // Not configured: the node does not care whom the backend meant it for.
            None => v.validate_aud = false,
        }
        v.set_required_spec_claims(&required);
        v
    }

    fn jwt_error(&self, e: &jsonwebtoken::errors::Error) -> TokenError {
        let expected = |o: &Option<String>| o.clone().unwrap_or_default();
        match e.kind() {
            ErrorKind::InvalidIssuer => TokenError::Issuer {
                expected: expected(&self.issuer),
            },
            ErrorKind::InvalidAudience => TokenError::Audience {
                expected: expected(&self.audience),
            },
            ErrorKind::MissingRequiredClaim(c) if c == "iss" => TokenError::Issuer {
                expected: expected(&self.issuer),
            },
            ErrorKind::MissingRequiredClaim(c) if c == "aud" => TokenError::Audience {
                expected: expected(&self.audience),
            },
            _ => TokenError::Malformed(e.to_string()),
        }
    }

    /// Admits a hello naming `class` (`None`: `default`) with `token`, at `now_ms`.
    /// `rule` says how the operator declared a class.
    ///
    /// A token equal to the class's own token admits by class. Otherwise, with keys
    /// configured, a present token must be a valid signed token (never a silent step down
    /// to anonymous); without keys, tokens are class tokens only, as before signed tokens.
    /// A client that proves nothing is anonymous: allowed into an open class, or refused.
    pub fn admit<'a>(
        &self,
        class: Option<&str>,
        token: Option<&str>,
        rule: impl Fn(&str) -> ClassRule<'a>,
        now_ms: u64,
    ) -> Result<Admitted, AdmitError> {
        let asked = class.unwrap_or(DEFAULT_CLASS);
        let token = token.filter(|t| !t.is_empty());
        let class_rule = rule(asked);
        let by_class = || Admitted {
            class: asked.to_owned(),
            grant: None,
        };
        if let (Some(given), ClassRule::Token(expected)) = (token, class_rule) {
            if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
                return Ok(by_class());
            }
        }
        if let Some(given) = token.filter(|_| !self.keys.is_empty()) {
            if looks_like_jwt(given) || !matches!(class_rule, ClassRule::Token(_)) {
                let grant = self.verify(given, now_ms)?;
                if class.is_some_and(|c| c != grant.class) {
                    return Err(AdmitError::ClassMismatch {
                        asked: asked.to_owned(),
                        granted: grant.class,
                    });
                }
                if rule(&grant.class) == ClassRule::Undeclared {
                    return Err(AdmitError::TokenClass(grant.class));
                }
                return Ok(Admitted {
                    class: grant.class.clone(),
                    grant: Some(grant),
                });
            }
        }
        match class_rule {
            ClassRule::Undeclared => Err(AdmitError::UnknownClass(asked.to_owned())),
            ClassRule::Token(_) => Err(AdmitError::ClassToken(asked.to_owned())),
            ClassRule::Open if self.anonymous == Anonymous::Refuse => Err(AdmitError::Anonymous),
            ClassRule::Open => Ok(by_class()),
        }
    }
}

/// A time claim in seconds, as milliseconds; fractions are kept (PyJWT writes integers, but
/// JWT time claims may be any number).
fn seconds_ms(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => match n.as_u64() {
            Some(s) => Some(s.saturating_mul(1000)),
            None => n
                .as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0)
                // Saturates at u64::MAX: a far-future exp is simply far.
                .map(|f| (f * 1000.0) as u64),
        },
        _ => None,
    }
}

/// The grant of verified `claims` at `now_ms`.
fn grant(claims: &Map<String, Value>, now_ms: u64) -> Result<Grant, TokenError> {
    let subject = match claims.get("sub") {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_PRIMARY_LEN => s.clone(),
        Some(_) => {
            return Err(TokenError::Claim {
                claim: "sub",
                reason: "must be a string of 1 to 255 bytes",
            })
        }
        None => {
            return Err(TokenError::Claim {
                claim: "sub",
                reason: "required (the client's subject, e.g. a player id)",
            })
        }
    };
    let expires_at_ms = match claims.get("exp") {
        None => {
            return Err(TokenError::Claim {
                claim: "exp",
                reason: "required (seconds since the Unix epoch)",
            })
        }
        Some(v) => seconds_ms(v).ok_or(TokenError::Claim {
            claim: "exp",
            reason: "must be a number of seconds since the Unix epoch",
        })?,
    };
    let now_s = now_ms / 1000;
    if expires_at_ms <= now_ms {
        return Err(TokenError::Expired {
            exp: claims.get("exp").map(Value::to_string).unwrap_or_default(),
            now_s,
        });
    }
    if let Some(v) = claims.get("nbf") {
        let nbf_ms = seconds_ms(v).ok_or(TokenError::Claim {
            claim: "nbf",
            reason: "must be a number of seconds since the Unix epoch",
        })?;
        if nbf_ms > now_ms {
            return Err(TokenError::NotYetValid {
                nbf: v.to_string(),
                now_s,
            });
        }
    }
    let class = match claims.get("class") {
        None => DEFAULT_CLASS.to_owned(),
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(_) => {
            return Err(TokenError::Claim {
                claim: "class",
                reason: "must be the name of a client class",
            })
        }
    };
    let rights = claims
        .get("rights")
        .map(|r| Rights::from_claim(r, claims))
        .transpose()?;
    Ok(Grant {
        subject,
        class,
        expires_at_ms,
        rights,
    })
}
