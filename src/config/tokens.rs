//! Client token keys as the `[tokens]` table names them: each `[[tokens.keys]]` entry's
//! file is read and checked at load, so a missing file, a bad PEM, a short secret or an
//! unknown algorithm stops the node with the entry named, before any client connects.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::access::{Algorithm, TokenKey};

use super::LoadError;

/// One `[[tokens.keys]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenKeyFile {
    /// The key's id: a token whose `kid` header names it is checked with this key only.
    /// Without one the key is tried for tokens that carry no `kid`.
    #[serde(default)]
    pub id: Option<String>,
    /// `HS256` (a shared secret) or `EdDSA` (an Ed25519 public key).
    pub algorithm: String,
    /// The file holding the key: for HS256 the secret's bytes, at least 32 (one trailing
    /// newline ignored); for EdDSA the public key in PEM.
    pub file: PathBuf,
}

impl TokenKeyFile {
    /// How errors name the entry: its place in the list, its id and its file.
    fn which(&self, index: usize) -> String {
        let id = self
            .id
            .as_ref()
            .map(|i| format!("id {i:?}, "))
            .unwrap_or_default();
        format!("entry {} ({id}file {})", index + 1, self.file.display())
    }
}

/// Reads and checks every entry's key; also returns the files of shared secrets, which
/// must not be readable by others (the caller warns).
pub(super) fn load_keys(
    entries: &[TokenKeyFile],
) -> Result<(Vec<TokenKey>, Vec<PathBuf>), LoadError> {
    let mut keys = Vec::with_capacity(entries.len());
    let mut secrets = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let which = || entry.which(i);
        if let Some(id) = &entry.id {
            if entries[..i].iter().any(|e| e.id.as_ref() == Some(id)) {
                return Err(LoadError::TokenKey {
                    which: which(),
                    source: crate::access::KeyError::DuplicateId(id.clone()),
                });
            }
        }
        // The algorithm first: an unknown one is the entry's fault, not its file's.
        let algorithm: Algorithm =
            entry
                .algorithm
                .parse()
                .map_err(|source| LoadError::TokenKey {
                    which: which(),
                    source,
                })?;
        let bytes = std::fs::read(&entry.file).map_err(|source| LoadError::TokenKeyFile {
            which: which(),
            source,
        })?;
        let key = TokenKey::from_file_bytes(entry.id.clone(), algorithm.name(), &bytes).map_err(
            |source| LoadError::TokenKey {
                which: which(),
                source,
            },
        )?;
        if algorithm == Algorithm::Hs256 {
            secrets.push(entry.file.clone());
        }
        keys.push(key);
    }
    Ok((keys, secrets))
}
