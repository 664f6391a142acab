//! How a client decides whether to trust a node's certificate.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::TransportError;

/// A client's trust decision for node certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// Accept exactly the certificate whose SHA-256 is this (logged by `cloudd` at start).
    Pin([u8; 32]),
    /// Accept certificates chaining to a CA in this PEM file, for the given server name.
    CaFile(PathBuf),
    /// Accept any certificate. For local development only: anyone on the path can
    /// impersonate the node. Named loudly so it is never chosen by accident.
    InsecureDevOnly,
}

/// Parses a fingerprint as printed by `cloudd` (hex, colons and a `sha256:` prefix allowed).
pub fn parse_fingerprint(text: &str) -> Result<[u8; 32], TransportError> {
    let cleaned: String = text
        .trim()
        .trim_start_matches("sha256:")
        .chars()
        .filter(|c| *c != ':')
        .collect();
    let bytes =
        hex::decode(&cleaned).map_err(|_| TransportError::BadFingerprint(text.to_owned()))?;
    bytes
        .try_into()
        .map_err(|_| TransportError::BadFingerprint(text.to_owned()))
}

impl Trust {
    pub(super) fn rustls_config(
        &self,
        provider: Arc<CryptoProvider>,
    ) -> Result<rustls::ClientConfig, TransportError> {
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?;
        let cfg = match self {
            Trust::CaFile(path) => {
                let pem = std::fs::read(path).map_err(|source| TransportError::Io {
                    path: path.clone(),
                    source,
                })?;
                let mut roots = rustls::RootCertStore::empty();
                for cert in rustls_pemfile::certs(&mut &pem[..]) {
                    let cert = cert.map_err(|source| TransportError::Io {
                        path: path.clone(),
                        source,
                    })?;
                    roots.add(cert)?;
                }
                if roots.is_empty() {
                    return Err(TransportError::BadPem {
                        path: path.clone(),
                        what: "no CERTIFICATE block".into(),
                    });
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            Trust::Pin(pin) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PinVerifier {
                    pin: Some(*pin),
                    provider,
                }))
                .with_no_client_auth(),
            Trust::InsecureDevOnly => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PinVerifier {
                    pin: None,
                    provider,
                }))
                .with_no_client_auth(),
        };
        Ok(cfg)
    }
}

/// Checks the leaf certificate's SHA-256 against a pin (or, with no pin, accepts any), and
/// always checks the handshake signature, so the peer must hold the certificate's key.
#[derive(Debug)]
struct PinVerifier {
    pin: Option<[u8; 32]>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(pin) = self.pin else {
            return Ok(ServerCertVerified::assertion());
        };
        let got: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        if bool::from(got.ct_eq(&pin)) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "node certificate fingerprint {} does not match the pinned {}",
                hex::encode(got),
                hex::encode(pin)
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_in_common_spellings() {
        let hex64 = "ab".repeat(32);
        let colons = hex64
            .as_bytes()
            .chunks(2)
            .map(|c| std::str::from_utf8(c).unwrap_or(""))
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(parse_fingerprint(&hex64).expect("plain"), [0xab; 32]);
        assert_eq!(
            parse_fingerprint(&format!("sha256:{colons}")).expect("colons"),
            [0xab; 32]
        );
        assert!(parse_fingerprint("abc").is_err());
        assert!(parse_fingerprint(&"zz".repeat(32)).is_err());
    }
}
