//! Secrets the settings point at: the mesh secret (a file, or `CLOUDD_SECRET` itself, never
//! both) and the check that a file holding a secret is not readable by others.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::mesh::MeshSecret;

use super::{LoadError, Warning};

/// Where the mesh secret came from, for `--check-config` (which never prints the secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// No secret: a single node that refuses peers.
    None,
    /// `--secret-file`, `CLOUDD_SECRET_FILE` or `secret_file`.
    File(PathBuf),
    /// `CLOUDD_SECRET`.
    Env,
}

/// The mesh secret from the one place it was given: `file` (any layer's `secret_file`) or
/// `env` (`CLOUDD_SECRET`'s bytes). A warning comes back when the file is open to others.
pub(super) fn load_secret(
    file: Option<PathBuf>,
    env: Option<Vec<u8>>,
) -> Result<(Option<MeshSecret>, SecretSource, Option<Warning>), LoadError> {
    match (file, env) {
        (None, None) => Ok((None, SecretSource::None, None)),
        (Some(path), Some(_)) => Err(LoadError::SecretTwice { path }),
        (None, Some(bytes)) => {
            let secret = MeshSecret::new(bytes).map_err(LoadError::SecretEnv)?;
            Ok((Some(secret), SecretSource::Env, None))
        }
        (Some(path), None) => {
            // The library's error names the path.
            let secret = MeshSecret::from_file(&path).map_err(LoadError::SecretFile)?;
            // Readable by others means anyone on the machine could join the mesh.
            let warning = open_file_warning("mesh secret file", &path);
            Ok((Some(secret), SecretSource::File(path), warning))
        }
    }
}

/// A warning when `path` (holding `what`) can be read or written by group or others. A file
/// whose mode cannot be read is left to the code that reads it, which reports that better.
pub(super) fn open_file_warning(what: &'static str, path: &Path) -> Option<Warning> {
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then(|| Warning::OpenFile {
        what,
        path: path.to_owned(),
        mode,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::{file_with_mode, secret_file};

    #[test]
    fn a_secret_comes_from_one_place_or_none() {
        let (none, source, warning) = load_secret(None, None).expect("no secret is fine");
        assert!(none.is_none() && source == SecretSource::None && warning.is_none());

        let (secret, source, _) =
            load_secret(None, Some(b"sixteen-bytes-or-more".to_vec())).expect("from env");
        assert!(secret.is_some());
        assert_eq!(source, SecretSource::Env);

        let (_dir, path) = secret_file(0o600);
        let (secret, source, warning) = load_secret(Some(path.clone()), None).expect("from a file");
        assert!(secret.is_some());
        assert_eq!(source, SecretSource::File(path.clone()));
        assert_eq!(warning, None, "0600 is private");

        let e = load_secret(Some(path.clone()), Some(b"sixteen-bytes-or-more".to_vec()))
            .expect_err("two secrets");
        let msg = e.to_string();
        assert!(
            msg.contains("given twice") && msg.contains(&path.display().to_string()),
            "{msg}"
        );
    }

    #[test]
    fn short_or_missing_secrets_are_refused_naming_where_they_came_from() {
        let e = load_secret(None, Some(b"short".to_vec())).expect_err("short");
        assert!(matches!(e, LoadError::SecretEnv(_)), "{e:?}");
        assert_eq!(e.to_string(), "CLOUDD_SECRET");
        let (_dir, path) = file_with_mode("short", "too short\n", 0o600);
        let e = load_secret(Some(path.clone()), None).expect_err("short");
        assert!(
            e.to_string().contains(&path.display().to_string()),
            "names the file: {e}"
        );
        let e = load_secret(Some(PathBuf::from("/nonexistent/mesh.secret")), None)
            .expect_err("missing");
        assert!(e.to_string().contains("/nonexistent/mesh.secret"), "{e}");
        assert!(
            std::error::Error::source(&e).is_none(),
            "the cause is in the message, so it is not printed twice"
        );
    }

    #[test]
    fn a_secret_file_open_to_others_is_a_warning() {
        for mode in [0o644, 0o640, 0o604, 0o660] {
            let (_dir, path) = secret_file(mode);
            let (secret, _, warning) = load_secret(Some(path.clone()), None).expect("works");
            assert!(secret.is_some());
            let w = warning.expect("warns").to_string();
            assert!(
                w.starts_with("mesh secret file ")
                    && w.contains(&format!("(mode {mode:03o})"))
                    && w.contains(&format!("`chmod 600 {}`", path.display())),
                "{w}"
            );
        }
        let (_dir, path) = secret_file(0o400);
        assert_eq!(
            open_file_warning("x", &path),
            None,
            "read-only by the owner"
        );
        assert_eq!(
            open_file_warning("x", std::path::Path::new("/nonexistent")),
            None
        );
    }
}
