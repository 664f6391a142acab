//! A node's runtime configuration: plain data that `cloudd` builds from its settings (see
//! [`super::Settings`]) and that in-process tests build directly.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::access::{AdmitError, Admitted, ClassRule, Tokens, DEFAULT_CLASS};
use crate::mesh::MeshSecret;
use crate::proto::{DEFAULT_MAX_FRAME, DEFAULT_PORT};
use crate::store::{FilterRule, StoreLimits};
use crate::transport::Timing;

/// A client class the operator declared, for filter rules.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassConfig {
    /// When set, a client claiming this class must present this token in its hello.
    pub token: Option<String>,
}

/// Everything a node needs to start.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// UDP address to serve QUIC on.
    pub listen: SocketAddr,
    /// Human name of the node (logs, `cloud.nodes`, certificate names).
    pub name: String,
    /// Where the TLS key and certificate live.
    pub data_dir: PathBuf,
    /// Largest frame payload accepted or sent.
    pub max_frame: usize,
    /// Most clients served at once (clients only: peer links and admin observers are not
    /// counted); more are refused with `ServerFull`.
    pub max_clients: u32,
    /// Most peer nodes linked at once; a link past it is refused (and logged) rather than
    /// taking memory a mesh of that size was not planned for.
    pub max_peers: u32,
    /// Requests per second per client (token bucket, burst of one second); 0 = unlimited.
    pub rate_limit: u32,
    /// Bytes queued to one client before it counts as a slow consumer and is disconnected.
    pub max_outbound_bytes: usize,
    /// How long a new connection may take to say hello.
    pub handshake_timeout: Duration,
    /// QUIC idle timeout and keep-alive.
    pub timing: Timing,
    /// Store limits: what clients may store and read.
    pub limits: StoreLimits,
    /// Operator filter rules, in order; the first that matches decides.
    pub filters: Vec<FilterRule>,
    /// Declared client classes; an undeclared class other than `default` is refused.
    pub classes: BTreeMap<String, ClassConfig>,
    /// Signed client tokens: the keys that verify them, the issuer and audience they must
    /// name, and what clients without one get.
    pub tokens: Tokens,
    /// Mesh members to join, `NAME[:PORT]` or `IP[:PORT]` (port 7946 when left out); a
    /// name is resolved to all its A/AAAA records. Empty: this node starts a mesh alone.
    pub join: Vec<String>,
    /// The secret every node of the mesh shares; without it the node refuses peers.
    pub secret: Option<MeshSecret>,
    /// Addresses peers should use to reach this node, internal first; empty means the
    /// bound address.
    pub advertise: Vec<SocketAddr>,
    /// Addresses clients should use to reach this node (redirects, migrations and the
    /// `cloud.nodes` row name these); empty means the advertised addresses that are public,
    /// or all of them when none is (a mesh and its clients on one network).
    pub advertise_client: Vec<SocketAddr>,
    /// Whether clients reading `cloud.nodes`/`cloud.load` also see node ids, internal
    /// addresses and resource figures (CPU, memory, rows). Off: clients see what they need
    /// to pick and reach a node, not the mesh's insides; peers and the admin socket always
    /// see everything.
    pub expose_internals: bool,
    /// Client classes that get the per-node score table with a `Place` answer; others get
    /// the decision alone.
    pub explain_classes: Vec<String>,
    /// Whether stopping the node (SIGTERM, `Node::shutdown`) first drains it: its clients
    /// move to other nodes make-before-break instead of being disconnected.
    pub drain_on_stop: bool,
    /// The longest a stop waits for that drain; clients still here then are disconnected
    /// (their rows deleted as `NodeLeft`).
    pub stop_timeout: Duration,
    /// How long a get waits for other nodes before answering without them (`incomplete`).
    pub remote_timeout: Duration,
    /// How often `cloud.load/0` is refreshed (and load is told to peers).
    pub load_interval: Duration,
    /// Placement weights and hysteresis.
    pub placement: crate::placement::Weights,
    /// How long a prepared migration waits for its client to reach the target before it
    /// is rolled back (the client then stays where it was).
    pub migration_timeout: Duration,
    /// How long a client's session (rows, subscriptions, session blob, missed
    /// notifications up to a bound) outlives a lost connection, waiting for the client to
    /// resume it; zero deletes a disconnected client's rows at once.
    pub resume_grace: Duration,
    /// Most migrations a drain has in flight at once (bounded, so a drain cannot flood the
    /// mesh; a new one starts as each ends).
    pub drain_batch: usize,
    /// How often the host looks at the mesh's balance; zero turns rebalancing off.
    pub rebalance_interval: Duration,
    /// Hysteresis: the host acts only when the busiest and the idlest Active node differ by
    /// more than this fraction of capacity.
    pub rebalance_threshold: f64,
    /// Most clients one rebalance round moves (a bounded rate).
    pub rebalance_max_moves: u32,
    /// The world grid for zone placement and handover; `None` turns zones off.
    pub zones: Option<crate::placement::ZoneConfig>,
}

/// Why a configuration cannot work.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

impl NodeConfig {
    /// Defaults suitable for one node on this machine: port 7946 on all interfaces, the host
    /// name as node name, data under `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        NodeConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT)),
            name: default_name(),
            data_dir: data_dir.into(),
            max_frame: DEFAULT_MAX_FRAME,
            max_clients: 50_000,
            max_peers: 256,
            rate_limit: 100_000,
            max_outbound_bytes: 16 * 1024 * 1024,
            handshake_timeout: Duration::from_secs(10),
            timing: Timing::default(),
            limits: StoreLimits::default(),
            filters: Vec::new(),
            classes: BTreeMap::new(),
            tokens: Tokens::default(),
            join: Vec::new(),
            secret: None,
            advertise: Vec::new(),
            advertise_client: Vec::new(),
            expose_internals: false,
            explain_classes: Vec::new(),
            drain_on_stop: true,
            stop_timeout: Duration::from_secs(30),
            remote_timeout: Duration::from_secs(2),
            load_interval: Duration::from_secs(2),
            placement: crate::placement::Weights::default(),
            migration_timeout: Duration::from_secs(15),
            resume_grace: Duration::from_secs(30),
            drain_batch: 64,
            rebalance_interval: Duration::from_secs(5),
            rebalance_threshold: 0.1,
            rebalance_max_moves: 50,
            zones: None,
        }
    }

    /// Admits a client's hello naming `class` with `token` at `now_ms` (milliseconds since
    /// the Unix epoch): by its signed token, by its class token, or as anonymous, as the
    /// classes and `tokens` say.
    pub fn admit(
        &self,
        class: Option<&str>,
        token: Option<&str>,
        now_ms: u64,
    ) -> Result<Admitted, AdmitError> {
        let rule = |c: &str| match self.classes.get(c) {
            None if c == DEFAULT_CLASS => ClassRule::Open,
            None => ClassRule::Undeclared,
            Some(declared) => declared
                .token
                .as_deref()
                .map_or(ClassRule::Open, ClassRule::Token),
        };
        self.tokens.admit(class, token, rule, now_ms)
    }

    /// Checks that the limits fit together, so no rule can be impossible to satisfy.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        let fail = |m: String| Err(ConfigError(m));
        if self.max_frame < 1024 {
            return fail(format!("max_frame {} is below 1024 bytes", self.max_frame));
        }
        // A page must fit one frame, and always fit one full-size row (so paging progresses).
        if l.max_get_bytes as usize + 4096 > self.max_frame {
            return fail(format!(
                "limits.max_get_bytes ({}) must be at least 4096 below max_frame ({})",
                l.max_get_bytes, self.max_frame
            ));
        }
        if l.max_row_bytes as usize + 512 > l.max_get_bytes as usize {
            return fail(format!(
                "limits.max_row_bytes ({}) must be at least 512 below limits.max_get_bytes ({})",
                l.max_row_bytes, l.max_get_bytes
            ));
        }
        if l.max_session_bytes as usize + 1024 > self.max_frame {
            return fail("limits.max_session_bytes must fit in one frame".into());
        }
        if l.max_get_rows == 0 {
            return fail("limits.max_get_rows must be at least 1".into());
        }
        if self.timing.keep_alive >= self.timing.idle_timeout {
            return fail(format!(
                "keep_alive ({:?}) must be shorter than idle_timeout ({:?})",
                self.timing.keep_alive, self.timing.idle_timeout
            ));
        }
        if !self.join.is_empty() && self.secret.is_none() {
            return fail(
                "joining a mesh needs the mesh secret that every node shares: give --secret-file FILE \
                 or the CLOUDD_SECRET environment variable (make one with: head -c 32 /dev/urandom | base64)"
                    .into(),
            );
        }
        self.placement
            .validate()
            .map_err(|e| ConfigError(format!("placement: {e}")))?;
        if let Some(z) = &self.zones {
            z.validate()
                .map_err(|e| ConfigError(format!("zones: {e}")))?;
        }
        if !(self.rebalance_threshold.is_finite() && self.rebalance_threshold >= 0.0) {
            return fail("rebalance_threshold must be a fraction of capacity, 0 or more".into());
        }
        if self.name.is_empty() {
            return fail("name must not be empty".into());
        }
        Ok(())
    }
}

/// The host name, or `cloudd` when it cannot be read.
pub fn default_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "cloudd".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A change to the defaults.
    type Change = fn(&mut NodeConfig);

    /// The message of `validate` for the defaults changed by `change`.
    fn refused(change: Change) -> String {
        let mut c = NodeConfig::new("/tmp/x");
        change(&mut c);
        c.validate().expect_err("refused").to_string()
    }

    #[test]
    fn defaults_are_valid() {
        NodeConfig::new("/tmp/x")
            .validate()
            .expect("defaults are consistent");
    }

    #[test]
    fn each_contradiction_is_caught_and_named() {
        let cases: [(&str, Change); 12] = [
            ("max_frame 512 is below 1024 bytes", |c| c.max_frame = 512),
            (
                "limits.max_get_bytes (524288) must be at least 4096 below max_frame",
                |c| c.max_frame = 524_288,
            ),
            (
                "limits.max_row_bytes (614400) must be at least 512 below",
                |c| c.limits.max_row_bytes = 600 * 1024,
            ),
            ("limits.max_session_bytes must fit in one frame", |c| {
                c.limits.max_session_bytes = c.max_frame as u32
            }),
            ("limits.max_get_rows must be at least 1", |c| {
                c.limits.max_get_rows = 0
            }),
            (
                "keep_alive (5s) must be shorter than idle_timeout (5s)",
                |c| c.timing.keep_alive = c.timing.idle_timeout,
            ),
            ("joining a mesh needs the mesh secret", |c| {
                c.join = vec!["10.0.0.5".into()]
            }),
            ("placement: ", |c| c.placement.load = -1.0),
            ("zones: ", |c| {
                c.zones = Some(crate::placement::ZoneConfig {
                    width: 0,
                    ..Default::default()
                })
            }),
            ("rebalance_threshold must be a fraction of capacity", |c| {
                c.rebalance_threshold = -0.1
            }),
            ("rebalance_threshold must be a fraction of capacity", |c| {
                c.rebalance_threshold = f64::NAN
            }),
            ("name must not be empty", |c| c.name.clear()),
        ];
        for (want, change) in cases {
            let e = refused(change);
            assert!(e.starts_with("invalid configuration: "), "{e}");
            assert!(e.contains(want), "{want:?} in {e:?}");
        }
        let mut c = NodeConfig::new("/tmp/x");
        c.join = vec!["10.0.0.5".into()];
        c.secret = Some(MeshSecret::new(b"sixteen-bytes-or-more".to_vec()).expect("long enough"));
        c.validate().expect("joining with a secret");
    }
}
