//! The node's TLS identity, kept in its data directory.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::{fingerprint_of, TransportError};

/// File names inside the data directory.
const CERT_FILE: &str = "cert.pem";
const KEY_FILE: &str = "key.pem";

/// A certificate chain and its private key.
#[derive(Debug)]
pub struct Identity {
    /// Leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's key.
    pub key: PrivateKeyDer<'static>,
    /// Where the certificate lives, for messages.
    pub cert_path: PathBuf,
    /// Whether this start generated it.
    pub generated: bool,
}

impl Identity {
    /// Loads `cert.pem` and `key.pem` from `dir`, generating a self-signed pair for `names`
    /// on first start. A CA-signed pair placed there by the operator is used as it is.
    pub fn load_or_generate(dir: &Path, names: &[String]) -> Result<Identity, TransportError> {
        let cert_path = dir.join(CERT_FILE);
        let key_path = dir.join(KEY_FILE);
        if cert_path.exists() || key_path.exists() {
            return Self::load(&cert_path, &key_path);
        }
        fs::create_dir_all(dir).map_err(|source| TransportError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(names.to_vec())?;
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        let cert = params.self_signed(&key)?;
        write_private(&key_path, key.serialize_pem().as_bytes())?;
        fs::write(&cert_path, cert.pem()).map_err(|source| TransportError::Io {
            path: cert_path.clone(),
            source,
        })?;
        let mut id = Self::load(&cert_path, &key_path)?;
        id.generated = true;
        Ok(id)
    }

    /// Loads a PEM certificate chain and key.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Identity, TransportError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| TransportError::Io { path, source }
        };
        let cert_pem = fs::read(cert_path).map_err(io(cert_path))?;
        let chain = rustls_pemfile::certs(&mut &cert_pem[..])
            .collect::<Result<Vec<_>, _>>()
            .map_err(io(cert_path))?;
        if chain.is_empty() {
            return Err(TransportError::BadPem {
                path: cert_path.to_owned(),
                what: "no CERTIFICATE block".into(),
            });
        }
        let key_pem = fs::read(key_path).map_err(io(key_path))?;
        let key = rustls_pemfile::private_key(&mut &key_pem[..])
            .map_err(io(key_path))?
            .ok_or_else(|| TransportError::BadPem {
                path: key_path.to_owned(),
                what: "no PRIVATE KEY block".into(),
            })?;
        Ok(Identity {
            chain,
            key,
            cert_path: cert_path.to_owned(),
            generated: false,
        })
    }

    /// Fingerprint of the leaf certificate (what clients pin).
    pub fn fingerprint(&self) -> String {
        self.chain.first().map(fingerprint_of).unwrap_or_default()
    }
}

/// Writes a secret readable only by its owner.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TransportError> {
    let err = |source| TransportError::Io {
        path: path.to_owned(),
        source,
    };
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_then_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = Identity::load_or_generate(dir.path(), &["localhost".into()]).expect("generate");
        assert!(a.generated);
        let b = Identity::load_or_generate(dir.path(), &["localhost".into()]).expect("load");
        assert!(!b.generated);
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint().len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(KEY_FILE))
                .expect("key")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn garbage_pem_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join(CERT_FILE), "hello").expect("write");
        fs::write(dir.path().join(KEY_FILE), "hello").expect("write");
        let err = Identity::load_or_generate(dir.path(), &[]).expect_err("must be refused");
        assert!(err.to_string().contains("no CERTIFICATE"), "{err}");
    }
}
