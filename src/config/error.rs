//! What can go wrong loading settings, and what is worth a warning without stopping the node.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::access::KeyError as TokenKeyError;
use crate::dyndns::{BadName, DnsConfigError, KeyError};
use crate::mesh::MeshError;
use crate::metrics::graphite::GraphiteConfigError;

use super::ConfigError;

/// Why the settings cannot be used. `cloudd` exits with code 2 on any of these: only the
/// operator can fix them, so a supervisor restarting it would not help.
///
/// Causes are kept as [`std::error::Error::source`]s; print the chain (e.g. anyhow's
/// `{:#}`) to see the whole message.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file named by `--config` cannot be read.
    #[error("cannot read config file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML, has an unknown key, or a value of the wrong form; the
    /// source names the line and the key.
    #[error("config file {}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Where and what.
        source: toml::de::Error,
    },
    /// The mesh secret is given both as a file and in `CLOUDD_SECRET`; which one was meant
    /// is not ours to guess.
    #[error(
        "the mesh secret is given twice, as file {} (--secret-file, CLOUDD_SECRET_FILE or \
         secret_file) and in CLOUDD_SECRET; give only one",
        path.display()
    )]
    SecretTwice {
        /// The file given.
        path: PathBuf,
    },
    /// The mesh secret file cannot be read or is too short (the error names the file).
    // Not a `source`: the message already ends with the cause, which would print twice.
    #[error("{0}")]
    SecretFile(MeshError),
    /// Secrets to accept from peers were given, but no secret of this node's own to prove
    /// with.
    #[error(
        "--accept-secret-file needs the node's own mesh secret too (--secret-file or \
         CLOUDD_SECRET): a node proves with its own and accepts the others"
    )]
    AcceptedSecretWithoutOwn,
    /// `CLOUDD_SECRET` holds too short a secret.
    #[error("CLOUDD_SECRET")]
    SecretEnv(#[source] MeshError),
    /// A connection could never finish its hello.
    #[error("handshake_timeout must be longer than zero")]
    ZeroHandshakeTimeout,
    /// The node's own checks refuse the values (limits that contradict each other, ...).
    #[error(transparent)]
    Node(#[from] ConfigError),
    /// Some dynamic DNS settings are given but not all four it needs.
    #[error(
        "dynamic DNS is half configured: missing {missing}; give all four, or none to turn it off"
    )]
    DnsIncomplete {
        /// What is missing, with the flag and key that give each.
        missing: String,
    },
    /// The dns zone or record is not a DNS name.
    #[error("dns {which}")]
    DnsName {
        /// `zone` or `name`.
        which: &'static str,
        /// Why.
        source: BadName,
    },
    /// The TSIG key file cannot be read or parsed (the error names the file).
    // Not a `source`, like `SecretFile`.
    #[error("{0}")]
    TsigKey(KeyError),
    /// Dynamic DNS values that cannot work (a record outside its zone, ...).
    #[error(transparent)]
    Dns(#[from] DnsConfigError),
    /// Graphite settings without the server to send to: refused rather than ignored.
    #[error(
        "graphite settings without a server: give --graphite HOST:PORT (or [graphite] \
         server), or drop the other graphite settings"
    )]
    GraphiteWithoutServer,
    /// Graphite values that cannot work.
    #[error(transparent)]
    Graphite(#[from] GraphiteConfigError),
    /// A `[[tokens.keys]]` entry's file cannot be read.
    #[error("cannot read the client token key file of [[tokens.keys]] {which}")]
    TokenKeyFile {
        /// The entry: its place, id and file.
        which: String,
        /// Why.
        source: std::io::Error,
    },
    /// A `[[tokens.keys]]` entry's key cannot be used (unknown algorithm, bad PEM, short
    /// secret, an id given twice).
    #[error("[[tokens.keys]] {which}")]
    TokenKey {
        /// The entry: its place, id and file.
        which: String,
        /// Why.
        source: TokenKeyError,
    },
    /// An issuer or audience with no key to verify tokens: refused rather than ignored.
    #[error(
        "[tokens] names an issuer or audience but no [[tokens.keys]]: without a key no token \
         is verified; add the keys or drop the issuer and audience"
    )]
    TokensWithoutKeys,
}

/// A problem worth telling the operator that does not stop the node. `cloudd` logs each at
/// start, and `--check-config` prints them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    /// A file holding a secret can be read by group or others: anyone on the machine could
    /// use it.
    OpenFile {
        /// What the file holds, e.g. "mesh secret file".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A meshed node bound to every interface with nothing to advertise: peers reach it at
    /// the address its connections come from, which is wrong behind NAT or with several
    /// interfaces.
    NoAdvertise {
        /// The bound address.
        listen: SocketAddr,
    },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::OpenFile { what, path, mode } => write!(
                f,
                "{what} {} is open to group or others (mode {mode:03o}); restrict it with \
                 `chmod 600 {}`",
                path.display(),
                path.display()
            ),
            Warning::NoAdvertise { listen } => write!(
                f,
                "listening on {listen} (every interface) without --advertise: peers will reach \
                 this node at the address they see its connections come from; give --advertise \
                 with this machine's address (internal first) if that is not reachable (NAT, \
                 several interfaces)"
            ),
        }
    }
}
