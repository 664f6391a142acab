//! Identifiers and keys.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::MAX_PRIMARY_LEN;

/// Names a client session mesh-wide. Random, so two nodes never hand out the same id, and it
/// names the session rather than the link, so it survives migration.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ClientId(pub u64);

impl ClientId {
    /// A fresh random id from the OS-seeded thread RNG.
    pub fn random() -> Self {
        ClientId(rand::random())
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientId({self})")
    }
}

impl FromStr for ClientId {
    type Err = ParseKeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        u64::from_str_radix(s, 16)
            .map(ClientId)
            .map_err(|_| ParseKeyError::BadClientId(s.to_owned()))
    }
}

/// Names one run of a node: random 128 bits per start.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeId(pub u128);

impl NodeId {
    /// A fresh random id.
    pub fn random() -> Self {
        NodeId(rand::random())
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Eight hex digits are enough to tell nodes apart in logs.
        write!(f, "NodeId({:08x}…)", (self.0 >> 96) as u32)
    }
}

/// Why a key or id given as text was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseKeyError {
    /// The text has no `/SECONDARY` part where one is required.
    #[error("key {0:?} must be written PRIMARY/SECONDARY (e.g. players/3)")]
    MissingSecondary(String),
    /// The secondary part is not an unsigned 32-bit number.
    #[error("secondary key {0:?} is not a number from 0 to 4294967295")]
    BadSecondary(String),
    /// The primary key is empty or longer than 255 bytes.
    #[error("primary key must be 1 to {MAX_PRIMARY_LEN} bytes, got {0}")]
    BadPrimaryLength(usize),
    /// A client id is not 16 hexadecimal digits.
    #[error("client id {0:?} is not hexadecimal (as printed by cloudctl)")]
    BadClientId(String),
}

/// A row's key: `(primary, secondary)`, ordered by primary then secondary.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Key {
    /// 1..=255 bytes of UTF-8, e.g. `players`.
    pub primary: String,
    /// A number under the primary, e.g. a region or a player id.
    pub secondary: u32,
}

impl Key {
    /// Builds a key (not validated; [`Key::validate`] is checked by the node).
    pub fn new(primary: impl Into<String>, secondary: u32) -> Self {
        Key {
            primary: primary.into(),
            secondary,
        }
    }

    /// Checks the length rule.
    pub fn validate(&self) -> Result<(), ParseKeyError> {
        validate_primary(&self.primary)
    }
}

pub(crate) fn validate_primary(primary: &str) -> Result<(), ParseKeyError> {
    if primary.is_empty() || primary.len() > MAX_PRIMARY_LEN {
        return Err(ParseKeyError::BadPrimaryLength(primary.len()));
    }
    Ok(())
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.primary, self.secondary)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({self})")
    }
}

impl FromStr for Key {
    type Err = ParseKeyError;
    /// Parses `PRIMARY/SECONDARY`; the split is at the last `/`, so primaries may hold `/`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (primary, secondary) = s
            .rsplit_once('/')
            .ok_or_else(|| ParseKeyError::MissingSecondary(s.to_owned()))?;
        let secondary = secondary
            .parse::<u32>()
            .map_err(|_| ParseKeyError::BadSecondary(secondary.to_owned()))?;
        validate_primary(primary)?;
        Ok(Key::new(primary, secondary))
    }
}

/// What a query or subscription names: one key, or every secondary under a primary.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct KeySpec {
    /// The primary key.
    pub primary: String,
    /// `Some(n)` names one key; `None` names every secondary under `primary`.
    pub secondary: Option<u32>,
}

impl KeySpec {
    /// Every secondary key under `primary`.
    pub fn primary(primary: impl Into<String>) -> Self {
        KeySpec {
            primary: primary.into(),
            secondary: None,
        }
    }

    /// Exactly one key.
    pub fn exact(key: &Key) -> Self {
        KeySpec {
            primary: key.primary.clone(),
            secondary: Some(key.secondary),
        }
    }

    /// Whether `key` falls under this spec.
    pub fn matches(&self, key: &Key) -> bool {
        self.primary == key.primary && self.secondary.is_none_or(|s| s == key.secondary)
    }

    /// Checks the length rule.
    pub fn validate(&self) -> Result<(), ParseKeyError> {
        validate_primary(&self.primary)
    }
}

impl From<Key> for KeySpec {
    fn from(k: Key) -> Self {
        KeySpec {
            primary: k.primary,
            secondary: Some(k.secondary),
        }
    }
}

impl fmt::Display for KeySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.secondary {
            Some(s) => write!(f, "{}/{}", self.primary, s),
            None => f.write_str(&self.primary),
        }
    }
}

impl fmt::Debug for KeySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeySpec({self})")
    }
}

impl FromStr for KeySpec {
    type Err = ParseKeyError;
    /// `players/3` names one key; `players` names all of `players`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(key) = s.parse::<Key>() {
            return Ok(key.into());
        }
        validate_primary(s)?;
        Ok(KeySpec::primary(s))
    }
}

/// Where the next page of a get starts: just after this `(key, owner)` (continuation).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
pub struct Cursor {
    /// Key of the last row returned.
    pub key: Key,
    /// Owner of the last row returned.
    pub owner: ClientId,
}
