//! QUIC endpoints and TLS: the node's identity on disk, server and client configs,
//! and how a client decides to trust a node (pinned fingerprint, CA file, or an explicitly
//! named insecure mode for local development), and which addresses are public.

mod addr;
#[cfg(feature = "server")]
mod identity;
mod trust;

use std::sync::Arc;
use std::time::Duration;

pub use addr::is_public;
#[cfg(feature = "server")]
pub use identity::Identity;
pub use trust::{parse_fingerprint, Trust};

/// Why a TLS or QUIC configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A PEM file holds nothing usable.
    #[error("{path}: {what}")]
    BadPem {
        /// The file.
        path: std::path::PathBuf,
        /// What is missing or wrong.
        what: String,
    },
    /// Certificate generation failed.
    #[cfg(feature = "server")]
    #[error("generating the node certificate failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// quinn refused the TLS configuration.
    #[error("QUIC configuration: {0}")]
    Quic(String),
    /// A pinned fingerprint is not 64 hexadecimal digits.
    #[error("fingerprint {0:?} is not a SHA-256 hex digest (64 hex digits, colons allowed)")]
    BadFingerprint(String),
}

/// Installs ring as the process's rustls crypto provider. Idempotent; call once at start.
pub fn install_crypto_provider() {
    // An error only means a provider is already installed, which is what we want.
    let _ = crypto_provider().install_default();
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(crypto_provider())
}

/// ring's provider with TLS 1.3's AES-128-GCM/SHA-256 suite preferred. ring lists
/// AES-256-GCM/SHA-384 first; its SHA-384 has no hardware path on x86 (SHA-256 does, with
/// the SHA extensions), and every handshake's key schedule and every packet's AEAD pay for
/// it: a connection costs less CPU to open and to use with the 128-bit suite, which is
/// TLS 1.3's mandatory one and what QUIC's initial packets use anyway. The other suites
/// stay offered, in ring's order, for peers that prefer them.
fn crypto_provider() -> rustls::crypto::CryptoProvider {
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites
        .sort_by_key(|s| s.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    p
}

/// Timing of a QUIC connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Silence after which the connection is considered lost.
    pub idle_timeout: Duration,
    /// How often to send keep-alives; must be shorter than `idle_timeout`.
    pub keep_alive: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            idle_timeout: Duration::from_secs(5),
            keep_alive: Duration::from_secs(1),
        }
    }
}

/// Which end of a connection keeps it alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeepAlive {
    /// The dialing end (an SDK client, a node dialing a peer) sends a PING each keep-alive
    /// interval in which it heard nothing.
    Send,
    /// The accepting end (a node) sends one only after half the idle timeout without a
    /// packet. quinn restarts a keep-alive timer on every packet received, so while the
    /// dialer's PINGs (and this end's ACKs) come more often, this end sends none, and a
    /// link with a slow dialer (a peer link dialed with keep-alives a third of the idle
    /// timeout) costs one PING and one ACK per dialer interval, not two PINGs. It still
    /// keeps a connection alive whose dialer pings too rarely for this node's idle timeout
    /// (an SDK's 1 s default against a node set to a 1 s idle timeout: the connection's
    /// idle timeout is the smaller of the two ends'). (Only a node accepts: an SDK-only
    /// build never uses it.)
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    Backstop,
}

fn transport_config(
    timing: Timing,
    max_bi_streams: u32,
    keep_alive: KeepAlive,
) -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    // The conversion only fails for timeouts beyond 2^62 µs; fall back to quinn's default.
    if let Ok(idle) = quinn::IdleTimeout::try_from(timing.idle_timeout) {
        t.max_idle_timeout(Some(idle));
    }
    t.keep_alive_interval(Some(match keep_alive {
        KeepAlive::Send => timing.keep_alive,
        KeepAlive::Backstop => timing.idle_timeout / 2,
    }));
    t.max_concurrent_bidi_streams(max_bi_streams.into());
    t.max_concurrent_uni_streams(0u32.into());
    t
}

/// SHA-256 of a certificate's DER bytes, as 64 lowercase hex digits: what clients pin.
pub fn fingerprint_of(cert: &rustls::pki_types::CertificateDer<'_>) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(cert.as_ref()))
}

/// Socket buffer size a node asks the kernel for (it grants at most `net.core.rmem_max` /
/// `wmem_max`). The default (~208 KiB) holds only ~150 full packets: a burst of handshakes
/// or thousands of clients' keep-alives overflow it, and every dropped handshake packet
/// costs that client a retransmission timeout (a second or more).
#[cfg(feature = "server")]
pub const NODE_SOCKET_BUFFER: usize = 4 * 1024 * 1024;

#[cfg(feature = "server")]
/// Binds a node's QUIC endpoint on `addr` with [`NODE_SOCKET_BUFFER`]-sized socket buffers
/// (best effort: a smaller grant is logged, not an error).
pub fn server_endpoint(
    server: quinn::ServerConfig,
    addr: std::net::SocketAddr,
) -> std::io::Result<quinn::Endpoint> {
    let socket = std::net::UdpSocket::bind(addr)?;
    let sock = socket2::SockRef::from(&socket);
    let _ = sock.set_recv_buffer_size(NODE_SOCKET_BUFFER);
    let _ = sock.set_send_buffer_size(NODE_SOCKET_BUFFER);
    let granted = sock.recv_buffer_size().unwrap_or(0);
    // Linux reports twice the size granted (bookkeeping overhead included).
    if granted < NODE_SOCKET_BUFFER {
        tracing::info!(
            asked = NODE_SOCKET_BUFFER,
            granted,
            "UDP receive buffer smaller than asked (raise net.core.rmem_max for bursts of \
             handshakes)"
        );
    }
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(server),
        socket,
        Arc::new(quinn::TokioRuntime),
    )
}

#[cfg(feature = "server")]
/// A QUIC server config presenting `identity` for the given ALPN ids, TLS 1.3 only.
pub fn server_config(
    identity: &Identity,
    alpn: &[&[u8]],
    timing: Timing,
) -> Result<quinn::ServerConfig, TransportError> {
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())?;
    tls.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    tls.max_early_data_size = 0;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| TransportError::Quic(e.to_string()))?;
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    cfg.transport_config(Arc::new(transport_config(timing, 4, KeepAlive::Backstop)));
    Ok(cfg)
}

/// A QUIC client config that trusts servers as `trust` says, for one ALPN id.
pub fn client_config(
    trust: &Trust,
    alpn: &[u8],
    timing: Timing,
) -> Result<quinn::ClientConfig, TransportError> {
    let mut tls = trust.rustls_config(provider())?;
    tls.alpn_protocols = vec![alpn.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| TransportError::Quic(e.to_string()))?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(crypto));
    cfg.transport_config(Arc::new(transport_config(timing, 0, KeepAlive::Send)));
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_128_bit_suite_is_preferred_and_the_others_stay_offered() {
        let suites: Vec<_> = crypto_provider()
            .cipher_suites
            .iter()
            .map(|s| s.suite())
            .collect();
        assert_eq!(
            suites.first(),
            Some(&rustls::CipherSuite::TLS13_AES_128_GCM_SHA256)
        );
        let all = rustls::crypto::ring::default_provider().cipher_suites.len();
        assert_eq!(suites.len(), all, "no suite is dropped: {suites:?}");
    }
}
