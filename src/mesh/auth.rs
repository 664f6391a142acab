//! Mutual authentication of nodes: both sides prove knowledge of the mesh secret, bound to
//! this TLS session, with fresh nonces from the OS RNG. A relay cannot forward a proof (the
//! TLS exporter differs per session) and nothing but the exchange itself is sent before
//! both proofs check out.
//!
//! A node may accept more than one secret while the operator rotates it: it proves with
//! its own (the first) and accepts a peer that proves any of them, answering with the one
//! the peer used, so nodes on the old and on the new secret keep linking throughout.

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

/// The shared mesh secret: the one this node proves with, and others it also accepts from
/// peers (the previous secret, while the mesh is being moved to a new one). Its Debug
/// output never shows them.
#[derive(Clone)]
pub struct MeshSecret(Vec<u8>, Vec<Vec<u8>>);

impl std::fmt::Debug for MeshSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.1.is_empty() {
            f.write_str("MeshSecret(<redacted>)")
        } else {
            write!(
                f,
                "MeshSecret(<redacted>, and {} more accepted)",
                self.1.len()
            )
        }
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
        Ok(MeshSecret(bytes, Vec::new()))
    }

    /// This secret, also accepting `other` from peers (and what `other` accepts).
    pub fn accepting(mut self, other: MeshSecret) -> Self {
        for s in std::iter::once(other.0).chain(other.1) {
            if s != self.0 && !self.1.contains(&s) {
                self.1.push(s);
            }
        }
        self
    }

    /// How many secrets are accepted besides the one this node proves with.
    pub fn accepted_others(&self) -> usize {
        self.1.len()
    }

    /// Every secret accepted, the one this node proves with first.
    pub(crate) fn candidates(&self) -> impl Iterator<Item = &[u8]> {
        std::iter::once(self.0.as_slice()).chain(self.1.iter().map(Vec::as_slice))
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

impl Role {
    /// The other end's role.
    pub fn other(self) -> Role {
        match self {
            Role::Dialer => Role::Acceptor,
            Role::Acceptor => Role::Dialer,
        }
    }

    /// The exchange itself, as this end, given this TLS session's exporter and this end's
    /// fresh nonce. Apart from [`authenticate`] so that it can be driven over any stream
    /// (the fuzz targets feed it arbitrary peer bytes); it has no timeout of its own.
    #[doc(hidden)]
    pub async fn exchange<R, W>(
        self,
        out: &mut W,
        reader: &mut FrameReader<R>,
        secret: &MeshSecret,
        exporter: &[u8; 32],
        mine: [u8; 32],
    ) -> Result<(), AuthError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        send(out, &AuthFrame::Challenge { nonce: mine }).await?;
        let theirs = match recv(reader).await? {
            AuthFrame::Challenge { nonce } => nonce,
            AuthFrame::Proof { .. } => {
                return Err(AuthError::Protocol("proof before challenge".into()))
            }
        };
        let (dialer, acceptor) = match self {
            Role::Dialer => (mine, theirs),
            Role::Acceptor => (theirs, mine),
        };
        // Which accepted secret the peer's proof was made with, if any; every candidate is
        // compared in constant time and all are tried, so timing tells nothing.
        let matched = |frame: AuthFrame| -> Result<&[u8], AuthError> {
            let AuthFrame::Proof { mac } = frame else {
                return Err(AuthError::Protocol("second challenge".into()));
            };
            let mut found = None;
            for candidate in secret.candidates() {
                let expected = proof(candidate, exporter, &dialer, &acceptor, self.other());
                if bool::from(mac.ct_eq(&expected)) && found.is_none() {
                    found = Some(candidate);
                }
            }
            found.ok_or(AuthError::BadProof)
        };
        match self {
            // The dialer proves first, with its own secret; the acceptor answers with the
            // secret the dialer proved (which the dialer therefore holds).
            Role::Dialer => {
                let mine = proof(&secret.0, exporter, &dialer, &acceptor, self);
                send(out, &AuthFrame::Proof { mac: mine }).await?;
                matched(recv(reader).await?).map(|_| ())
            }
            // The acceptor reveals nothing until it has checked.
            Role::Acceptor => {
                let used = matched(recv(reader).await?)?;
                let mine = proof(used, exporter, &dialer, &acceptor, self);
                send(out, &AuthFrame::Proof { mac: mine }).await
            }
        }
    }
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
    secret: &[u8],
    exporter: &[u8; 32],
    dialer: &[u8; 32],
    acceptor: &[u8; 32],
    role: Role,
) -> [u8; 32] {
    // HMAC accepts keys of any length; this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    mac.update(exporter);
    mac.update(dialer);
    mac.update(acceptor);
    mac.update(match role {
        Role::Dialer => b"dialer",
        Role::Acceptor => b"accept",
    });
    mac.finalize().into_bytes().into()
}

/// Largest frame of the exchange, either way (an `AuthFrame` is 33 bytes). Frames are read
/// with this limit, not the reader's, so a peer that has proved nothing cannot make this node
/// wait for and buffer a frame as big as an authenticated peer may send.
const AUTH_FRAME_MAX: usize = 1024;

async fn send<W: AsyncWrite + Unpin>(out: &mut W, frame: &AuthFrame) -> Result<(), AuthError> {
    let bytes =
        encode_to_bytes(frame, AUTH_FRAME_MAX).map_err(|e| AuthError::Protocol(e.to_string()))?;
    out.write_all(&bytes)
        .await
        .map_err(|e| AuthError::Io(e.to_string()))
}

async fn recv<R: AsyncRead + Unpin>(reader: &mut FrameReader<R>) -> Result<AuthFrame, AuthError> {
    reader
        .next_within::<AuthFrame>(AUTH_FRAME_MAX)
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
    let run = async {
        let mut exporter = [0u8; 32];
        conn.export_keying_material(&mut exporter, EXPORTER_LABEL, b"")
            .map_err(|_| AuthError::Protocol("TLS exporter unavailable".into()))?;
        let mut mine = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut mine);
        role.exchange(out, reader, secret, &exporter, mine).await
    };
    tokio::time::timeout(timeout, run)
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

    /// A peer from `ip` proved the secret: whatever failed before from there (another
    /// process on the same machine, a node started before its secret was in place) stops
    /// counting against it.
    pub fn succeeded(&self, ip: IpAddr) {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&ip);
    }

    /// Records a failed proof (only a wrong proof: a timeout or a dropped connection says
    /// nothing about the secret, and at a fleet's start there are many); returns whether it
    /// is the first in its window (so worth a log line).
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
        let (s, other) = (&s.0, &other.0);
        let base = proof(s, &e, &a, &b, Role::Dialer);
        assert_ne!(base, proof(other, &e, &a, &b, Role::Dialer));
        assert_ne!(base, proof(s, &[9; 32], &a, &b, Role::Dialer));
        assert_ne!(base, proof(s, &e, &b, &a, Role::Dialer));
        assert_ne!(
            base,
            proof(s, &e, &a, &b, Role::Acceptor),
            "a proof cannot be reflected"
        );
        assert_eq!(base, proof(s, &e, &a, &b, Role::Dialer));
    }

    #[tokio::test]
    async fn a_big_frame_before_authentication_is_refused_from_its_prefix() {
        // The peer announces 2 KiB (fine for a peer frame, not for the exchange) and waits.
        let (mut peer, stream) = tokio::io::duplex(64);
        peer.write_all(&2048u32.to_be_bytes()).await.expect("write");
        let mut reader = FrameReader::new(stream, crate::proto::DEFAULT_MAX_FRAME);
        let secret = MeshSecret::new(vec![1; 32]).expect("secret");
        let mut out = Vec::new();
        let exchange = Role::Acceptor.exchange(&mut out, &mut reader, &secret, &[0; 32], [2; 32]);
        let result = tokio::time::timeout(Duration::from_secs(5), exchange)
            .await
            .expect("refused at once, not waiting for the 2 KiB");
        assert!(matches!(result, Err(AuthError::Protocol(_))), "{result:?}");
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
        l.succeeded(ip);
        assert!(l.allow(ip, t), "a proof that checks out clears the address");
    }

    #[test]
    fn a_ring_proves_with_its_own_and_accepts_the_others() {
        let old = MeshSecret::new(vec![1; 32]).expect("secret");
        let new = MeshSecret::new(vec![2; 32]).expect("secret");
        let rotating = new.clone().accepting(old.clone());
        let firsts: Vec<&[u8]> = rotating.candidates().collect();
        assert_eq!(firsts, vec![&[2u8; 32][..], &[1u8; 32][..]]);
        assert_eq!(rotating.accepted_others(), 1);
        assert_eq!(
            format!("{rotating:?}"),
            "MeshSecret(<redacted>, and 1 more accepted)"
        );
        // Accepting itself adds nothing.
        assert_eq!(new.clone().accepting(new).accepted_others(), 0);
    }
}
