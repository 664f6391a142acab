//! Mutual authentication of nodes (§4): both sides prove knowledge of the mesh secret,
//! bound to this TLS session, with fresh nonces from the OS RNG. A relay cannot forward a
//! proof (the TLS exporter differs per session) and nothing but the exchange itself is sent
//! before both proofs check out.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::proto::{encode_to_bytes, AuthFrame, CodecError, FrameReader};

/// TLS exporter label for the proofs.
const EXPORTER_LABEL: &[u8] = b"EXPORTER-cloudmesh-peer-auth";

/// Shortest accepted secret.
pub const MIN_SECRET_LEN: usize = 16;

/// Why a secret could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    /// The secret file could not be read.
    #[error("cannot read the mesh secret file {path}: {source}")]
    ReadSecret {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The secret is too short to resist guessing.
    #[error("the mesh secret{at} is {len} bytes; it must be at least {MIN_SECRET_LEN} (make one with: head -c 32 /dev/urandom | base64)")]
    ShortSecret {
        /// " in FILE" or empty.
        at: String,
        /// Its length.
        len: usize,
    },
}

/// The shared mesh secret. Its Debug output never shows it.
#[derive(Clone)]
pub struct MeshSecret(Vec<u8>);

impl std::fmt::Debug for MeshSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MeshSecret(<redacted>)")
    }
}

impl MeshSecret {
    /// A secret from bytes (at least [`MIN_SECRET_LEN`]).
    pub fn new(bytes: Vec<u8>) -> Result<Self, MeshError> {
        if bytes.len() < MIN_SECRET_LEN {
            return Err(MeshError::ShortSecret {
                at: String::new(),
                len: bytes.len(),
            });
        }
        Ok(MeshSecret(bytes))
    }

    /// The secret's bytes, for MACs within the mesh module.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// Reads a secret file; one trailing newline is not part of the secret.
    pub fn from_file(path: &Path) -> Result<Self, MeshError> {
        let mut bytes = std::fs::read(path).map_err(|source| MeshError::ReadSecret {
            path: path.to_owned(),
            source,
        })?;
        if bytes.last() == Some(&b'\n') {
            bytes.pop();
            if bytes.last() == Some(&b'\r') {
                bytes.pop();
            }
        }
        Self::new(bytes).map_err(|e| match e {
            MeshError::ShortSecret { len, .. } => MeshError::ShortSecret {
                at: format!(" in {}", path.display()),
                len,
            },
            other => other,
        })
    }
}

/// Which end of the connection we are; part of the proof, so a proof cannot be reflected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Opened the connection.
    Dialer,
    /// Accepted it.
    Acceptor,
}

/// Why authentication failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The peer's proof is wrong: it does not hold our secret.
    #[error("mesh authentication failed: the peer does not know the mesh secret")]
    BadProof,
    /// The peer sent something other than the expected frame.
    #[error("mesh authentication failed: {0}")]
    Protocol(String),
    /// The exchange did not finish in time.
    #[error("mesh authentication timed out")]
    Timeout,
    /// The stream failed.
    #[error("mesh authentication failed: {0}")]
    Io(String),
}

impl From<CodecError> for AuthError {
    fn from(e: CodecError) -> Self {
        match e {
            CodecError::Io(io) => AuthError::Io(io.to_string()),
            other => AuthError::Protocol(other.to_string()),
        }
    }
}

fn proof(
    secret: &MeshSecret,
    exporter: &[u8; 32],
    dialer: &[u8; 32],
    acceptor: &[u8; 32],
    role: Role,
) -> [u8; 32] {
    // HMAC accepts keys of any length; this cannot fail.
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(&secret.0).unwrap_or_else(|_| unreachable!());
    mac.update(exporter);
    mac.update(dialer);
    mac.update(acceptor);
    mac.update(match role {
        Role::Dialer => b"dialer",
        Role::Acceptor => b"accept",
    });
    mac.finalize().into_bytes().into()
}

async fn send<W: AsyncWrite + Unpin>(out: &mut W, frame: &AuthFrame) -> Result<(), AuthError> {
    let bytes = encode_to_bytes(frame, 1024).map_err(|e| AuthError::Protocol(e.to_string()))?;
    out.write_all(&bytes)
        .await
        .map_err(|e| AuthError::Io(e.to_string()))
}

async fn recv<R: AsyncRead + Unpin>(reader: &mut FrameReader<R>) -> Result<AuthFrame, AuthError> {
    reader
        .next::<AuthFrame>()
        .await?
        .ok_or_else(|| AuthError::Io("stream ended during authentication".into()))
}

/// Runs the exchange on an open stream of `conn`. On error the caller closes the connection
/// with [`crate::proto::CloseCode::Forbidden`].
pub async fn authenticate<R, W>(
    conn: &quinn::Connection,
    out: &mut W,
    reader: &mut FrameReader<R>,
    secret: &MeshSecret,
    role: Role,
    timeout: Duration,
) -> Result<(), AuthError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let exchange = async {
        let mut mine = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut mine);
        send(out, &AuthFrame::Challenge { nonce: mine }).await?;
        let theirs = match recv(reader).await? {
            AuthFrame::Challenge { nonce } => nonce,
            AuthFrame::Proof { .. } => {
                return Err(AuthError::Protocol("proof before challenge".into()))
            }
        };
        let mut exporter = [0u8; 32];
        conn.export_keying_material(&mut exporter, EXPORTER_LABEL, b"")
            .map_err(|_| AuthError::Protocol("TLS exporter unavailable".into()))?;
        let (dialer, acceptor) = match role {
            Role::Dialer => (mine, theirs),
            Role::Acceptor => (theirs, mine),
        };
        let expect_from_peer = proof(
            secret,
            &exporter,
            &dialer,
            &acceptor,
            match role {
                Role::Dialer => Role::Acceptor,
                Role::Acceptor => Role::Dialer,
            },
        );
        let check = |frame: AuthFrame| match frame {
            AuthFrame::Proof { mac } if bool::from(mac.ct_eq(&expect_from_peer)) => Ok(()),
            AuthFrame::Proof { .. } => Err(AuthError::BadProof),
            AuthFrame::Challenge { .. } => Err(AuthError::Protocol("second challenge".into())),
        };
        let my_proof = AuthFrame::Proof {
            mac: proof(secret, &exporter, &dialer, &acceptor, role),
        };
        match role {
            // The dialer proves first; the acceptor reveals nothing until it has checked.
            Role::Dialer => {
                send(out, &my_proof).await?;
                check(recv(reader).await?)
            }
            Role::Acceptor => {
                check(recv(reader).await?)?;
                send(out, &my_proof).await
            }
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| AuthError::Timeout)?
}

/// Limits what repeated failures from one address cost: after `max` failures within
/// `window`, connections from that address are refused before any work, and only the first
/// failure per window is logged at warn level.
#[derive(Debug)]
pub struct AuthLimiter {
    max: u32,
    window: Duration,
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl AuthLimiter {
    /// `max` failures per `window` per address.
    pub fn new(max: u32, window: Duration) -> Self {
        AuthLimiter {
            max,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `ip` may try now.
    pub fn allow(&self, ip: IpAddr, now: Instant) -> bool {
        let map = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match map.get(&ip) {
            Some((since, count)) => now.duration_since(*since) > self.window || *count < self.max,
            None => true,
        }
    }

    /// Records a failure; returns whether it is the first in its window (so worth a log line).
    pub fn failed(&self, ip: IpAddr, now: Instant) -> bool {
        let mut map = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() > 10_000 {
            // Bounded memory under a spray of addresses: forget expired entries.
            let window = self.window;
            map.retain(|_, (since, _)| now.duration_since(*since) <= window);
        }
        let entry = map.entry(ip).or_insert((now, 0));
        if now.duration_since(entry.0) > self.window {
            *entry = (now, 0);
        }
        entry.1 += 1;
        entry.1 == 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_depend_on_every_input() {
        let s = MeshSecret::new(vec![1; 32]).expect("secret");
        let other = MeshSecret::new(vec![2; 32]).expect("secret");
        let (e, a, b) = ([3u8; 32], [4u8; 32], [5u8; 32]);
        let base = proof(&s, &e, &a, &b, Role::Dialer);
        assert_ne!(base, proof(&other, &e, &a, &b, Role::Dialer));
        assert_ne!(base, proof(&s, &[9; 32], &a, &b, Role::Dialer));
        assert_ne!(base, proof(&s, &e, &b, &a, Role::Dialer));
        assert_ne!(
            base,
            proof(&s, &e, &a, &b, Role::Acceptor),
            "a proof cannot be reflected"
        );
        assert_eq!(base, proof(&s, &e, &a, &b, Role::Dialer));
    }

    #[test]
    fn secrets_are_checked_and_redacted() {
        assert!(MeshSecret::new(b"short".to_vec()).is_err());
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s");
        std::fs::write(&path, "0123456789abcdef\n").expect("write");
        let s = MeshSecret::from_file(&path).expect("16 bytes plus newline");
        assert_eq!(s.0.len(), 16);
        assert_eq!(format!("{s:?}"), "MeshSecret(<redacted>)");
        std::fs::write(&path, "short\n").expect("write");
        let err = MeshSecret::from_file(&path).expect_err("too short");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn limiter_blocks_after_repeated_failures_then_forgives() {
        let l = AuthLimiter::new(3, Duration::from_secs(10));
        let ip: IpAddr = [127, 0, 0, 2].into();
        let t = Instant::now();
        assert!(l.failed(ip, t), "first failure is logged");
        assert!(!l.failed(ip, t));
        assert!(l.allow(ip, t));
        l.failed(ip, t);
        assert!(!l.allow(ip, t));
        assert!(l.allow(ip, t + Duration::from_secs(11)));
        assert!(l.allow([127, 0, 0, 3].into(), t));
    }
}
