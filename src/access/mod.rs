//! Who a client is and what it may do: signed client tokens (JWT) verified against the
//! configured keys without a call back to the game backend, turned into a [`Grant`]
//! (subject, class, expiry, rights). Pure: no IO and no clock (callers pass `now_ms`);
//! the store enforces rights, the node's client dispatcher admits and ends sessions at
//! expiry, and config reads the key files.
//!
//! # Claims
//!
//! - `sub` (required): the subject, e.g. a player id; a string.
//! - `exp` (required): expiry, seconds since the Unix epoch. The session ends at `exp`.
//! - `nbf` (optional): not before, seconds since the Unix epoch.
//! - `class` (optional, default `default`): the client class for filter rules; it must be
//!   declared on the node (or be `default`).
//! - `iss`, `aud`: checked when the node is configured with an issuer or an audience.
//! - `rights` (optional): `{"post": [...], "get": [...], "subscribe": [...]}`, lists of
//!   pattern templates. Without it the class's filter rules alone decide. With it, an
//!   operation is allowed only when a pattern of its list covers the key (operations left
//!   out allow nothing), the filter rules still apply on top, and reading and subscribing
//!   the mesh's own `cloud.` keys stays allowed. `post` covers post and release; a get that
//!   subscribes needs both `get` and `subscribe`.
//!
//! # Patterns
//!
//! A template's `{name}` is replaced by the token's claim `name` (a string, or a number
//! written as JSON writes it). After that a pattern is:
//!
//! ```text
//! pattern   = primary [ "/" secondary ]
//! primary   = a primary key, e.g. players or match.7; ending in "*", every primary
//!             starting with the rest (match.* covers match.7 and match.12; "*" alone covers
//!             every primary)
//! secondary = "*"        every secondary key (the same as leaving it out)
//!           | a number   that key only
//! ```
//!
//! So `players/42` is one key, `players` and `players/*` are every key under `players`
//! (and a get of the whole primary `players`), `match.7*` is every primary starting with
//! `match.7`. A get of a whole primary needs a pattern covering every secondary of it; one
//! key is not enough. The secondary part is the text after the last `/` when it is `*`, a
//! number or a placeholder (primaries may hold `/`, as in `a/b/3`); a placeholder there must
//! be filled with a number. `*` is allowed only at the end of the primary part or as the
//! whole secondary part.
//!
//! A claim cannot widen a right: a filled-in value that is empty or holds `/`, `*`, `{` or
//! `}` makes the token invalid (refused at connect), as does a missing claim, a malformed
//! template, an unknown operation, or more than [`MAX_PATTERNS`] patterns in one list.

mod rights;
mod token;

pub use rights::{Op, Pattern, Rights, RightsError, TemplateError, MAX_PATTERNS};
pub use token::{
    looks_like_jwt, AdmitError, Admitted, Algorithm, Anonymous, ClassRule, KeyError, TokenError,
    TokenKey, Tokens, MIN_HMAC_SECRET,
};

use crate::proto::{SessionGrant, RESERVED_PREFIX};

/// The class of a client that names none.
pub const DEFAULT_CLASS: &str = "default";

/// What a verified token grants its client for the whole session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The token's subject (`sub`).
    pub subject: String,
    /// The client class (`class`, default `default`).
    pub class: String,
    /// When the session ends (`exp`), milliseconds since the Unix epoch.
    pub expires_at_ms: u64,
    /// What it may do; `None` when the token has no `rights` claim (filters alone decide).
    pub rights: Option<Rights>,
}

impl Grant {
    /// `Err(reason)`, naming the right missing, when the token's rights do not cover `op`
    /// on `primary` (one `secondary`, or all with `None`). Reading and subscribing the
    /// mesh's own `cloud.` keys is always allowed: clients read `cloud.nodes` to find nodes.
    pub fn check(&self, op: Op, primary: &str, secondary: Option<u32>) -> Result<(), String> {
        let Some(rights) = &self.rights else {
            return Ok(());
        };
        let reserved = primary
            .get(..RESERVED_PREFIX.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(RESERVED_PREFIX));
        if (reserved && op != Op::Post) || rights.allows_key(op, primary, secondary) {
            return Ok(());
        }
        let what = match secondary {
            Some(s) => format!("{primary}/{s}"),
            None => format!("{primary} (every key under it)"),
        };
        Err(format!(
            "the token of {:?} grants no {op} right covering {what}",
            self.subject
        ))
    }

    /// Whether the session is over at `now_ms`.
    pub fn expired(&self, now_ms: u64) -> bool {
        now_ms >= self.expires_at_ms
    }

    /// The form that moves with a migrating session.
    pub fn to_session(&self) -> SessionGrant {
        SessionGrant {
            subject: self.subject.clone(),
            expires_at_ms: self.expires_at_ms,
            rights: self.rights.as_ref().map(Rights::to_wire),
        }
    }

    /// The grant of a session that moved here, with the class it carries.
    pub fn from_session(class: &str, s: &SessionGrant) -> Grant {
        Grant {
            subject: s.subject.clone(),
            class: class.to_owned(),
            expires_at_ms: s.expires_at_ms,
            rights: s.rights.as_ref().map(Rights::from_wire),
        }
    }
}

#[cfg(test)]
mod tests;
