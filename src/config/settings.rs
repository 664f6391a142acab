//! Every setting of `cloudd`, declared once.
//!
//! One entry per setting: its doc comment (the `--help` text for a flag), its clap attribute
//! (flag and `CLOUDD_*` variable, or `skip` for a setting only the file has), its TOML key
//! (the field's name, in the table the struct stands for), its value type, where its value
//! goes (`set`) and how `--check-config` shows it (`show` for one line named after the key,
//! `lines` for anything else; neither when it is not shown). The `settings!` macro turns
//! the entries into a struct that clap and serde both fill (a *layer*: every field optional,
//! so "not given" differs from "given the default"), the code that applies a layer, and the
//! summary. Entries are in the order `--help` and the file's list of keys show them.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::access::{Anonymous, Tokens};
use crate::dyndns::{AddressFilter, DnsConfig};
use crate::metrics::graphite::GraphiteConfig;
use crate::placement::{Weights, ZoneConfig};
use crate::store::{FilterRule, StoreLimits};

use super::load::Draft;
use super::tokens::{load_keys, TokenKeyFile};
use super::values::{parse_addr, DnsPublish, DnsServer, HumanDuration, JoinTarget, LogFormat};
use super::{ClassConfig, LoadError, SecretSource, Settings};

/// Declares a layer of settings. `pub struct L into T { entries }` is the top level: its
/// values are applied to `T` and shown in the summary. `pub table L into T { entries }` is a
/// nested TOML table (with its flags flattened into the command line): layers of it merge
/// with [`over`](DnsLayer::over) before the table is built into `T`, and entries with a
/// `set` are applied to the built `T`; entries without one are read by the code that builds
/// it.
macro_rules! settings {
    (@struct $(#[$meta:meta])* $layer:ident { $( $(#[$attr:meta])* $key:ident: $ty:ty, )* }) => {
        $(#[$meta])*
        #[derive(Debug, Default, clap::Args, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $layer {
            $( $(#[$attr])* pub $key: Option<$ty>, )*
        }

        impl $layer {
            /// Every key this layer declares, in order.
            pub const KEYS: &'static [&'static str] = &[$(stringify!($key)),*];
        }
    };
    (
        $(#[$meta:meta])*
        pub struct $layer:ident into $target:ty {
            $(
                $(#[$attr:meta])*
                $key:ident: $ty:ty {
                    $(set: $set:expr,)?
                    $(show: $show:expr,)?
                    $(lines: $lines:expr,)?
                }
            )*
        }
    ) => {
        settings!(@struct $(#[$meta])* $layer { $( $(#[$attr])* $key: $ty, )* });

        impl $layer {
            /// Writes every value this layer has over what `target` holds.
            pub(super) fn apply_to(self, target: &mut $target) {
                $( $( set(target, self.$key, $set); )? )*
            }

            /// Adds the lines of every shown setting to `out`.
            fn show(settings: &Settings, out: &mut Summary) {
                $(
                    $( out.line(stringify!($key), shown(settings, $show)); )?
                    $( lines(settings, out, $lines); )?
                )*
            }
        }
    };
    (
        $(#[$meta:meta])*
        pub table $layer:ident into $target:ty {
            $(
                $(#[$attr:meta])*
                $key:ident: $ty:ty {
                    $(set: $set:expr,)?
                }
            )*
        }
    ) => {
        settings!(@struct $(#[$meta])* $layer { $( $(#[$attr])* $key: $ty, )* });

        impl $layer {
            /// This layer's values, with `lower`'s where this one has none.
            pub fn over(self, lower: Option<Self>) -> Self {
                let Some(lower) = lower else { return self };
                Self { $( $key: self.$key.or(lower.$key), )* }
            }

            /// Writes the values this layer has for settings with a `set` over `target`'s.
            fn apply_to(self, target: &mut $target) {
                $( $( set(target, self.$key, $set); )? )*
            }
        }
    };
}

/// Writes `value`, when the layer has one, with the setting's `set`.
fn set<T, V>(target: &mut T, value: Option<V>, set: impl FnOnce(&mut T, V)) {
    if let Some(v) = value {
        set(target, v);
    }
}

/// A setting's `show`, with the types spelled out so the closure need not spell them.
fn shown<'a, T: fmt::Display>(settings: &'a Settings, show: impl FnOnce(&'a Settings) -> T) -> T {
    show(settings)
}

/// A setting's `lines`, likewise.
fn lines(settings: &Settings, out: &mut Summary, lines: impl FnOnce(&Settings, &mut Summary)) {
    lines(settings, out);
}

settings! {
    /// One layer of `cloudd`'s settings: the command line with the environment (clap), or
    /// the TOML file (serde). A field is `None` where the layer says nothing.
    // Field docs of flags are their --help text, written for a terminal, not for rustdoc.
    #[allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)]
    pub struct Layer into Draft {
        /// UDP address to serve QUIC on [default: 0.0.0.0:7946]
        #[arg(long, env = "CLOUDD_LISTEN", value_name = "ADDR")]
        listen: SocketAddr {
            set: |d, v| d.node.listen = v,
            show: |s| s.node.listen,
        }

        /// Name of this node in logs and in the mesh [default: the host name]
        #[arg(long, env = "CLOUDD_NAME", value_name = "NAME")]
        name: String {
            set: |d, v| d.node.name = v,
            show: |s| &s.node.name,
        }

        /// Where the node keeps its TLS key and certificate
        /// [default: $XDG_DATA_HOME/cloudd, else $HOME/.local/share/cloudd, else /var/lib/cloudd]
        #[arg(long, env = "CLOUDD_DATA_DIR", value_name = "DIR")]
        data_dir: PathBuf {
            set: |d, v| d.node.data_dir = v,
            show: |s| s.node.data_dir.display(),
        }

        /// The admin socket `cloudctl` talks to (mode 0600; a lock file beside it keeps a second
        /// daemon off the same path)
        /// [default: $XDG_RUNTIME_DIR/cloudd/admin.sock, else /run/cloudd/admin.sock]
        #[arg(long, env = "CLOUDD_ADMIN_SOCKET", value_name = "PATH")]
        admin_socket: PathBuf {
            set: |d, v| d.admin_socket = v,
            show: |s| s.admin_socket.display(),
        }

        /// Also write logs to daily-rotated files in this directory
        #[arg(long, env = "CLOUDD_LOG_DIR", value_name = "DIR")]
        log_dir: PathBuf {
            set: |d, v| d.log.dir = Some(v),
            show: |s| match &s.log.dir {
                Some(dir) => dir.display().to_string(),
                None => "(stderr only)".to_owned(),
            },
        }

        /// Log line format [default: human]
        #[arg(long, env = "CLOUDD_LOG_FORMAT", value_enum, value_name = "FORMAT")]
        log_format: LogFormat {
            set: |d, v| d.log.format = v,
        }

        /// Log filter, RUST_LOG syntax (e.g. `info`, `cloudmesh=debug`); RUST_LOG is used when
        /// neither this nor CLOUDD_LOG is set [default: info]
        #[arg(long, env = "CLOUDD_LOG", value_name = "FILTER")]
        log: String {
            set: |d, v| d.log.set_filter(v, d.from),
            show: |s| format!("{} ({})", s.log.filter, s.log.format),
        }

        /// TOML configuration file; flags and environment override it
        #[arg(long, env = "CLOUDD_CONFIG", value_name = "FILE")]
        // Not a key of the file: a file cannot name another. Read before the other settings.
        #[serde(skip)]
        config: PathBuf {}

        /// Largest frame payload accepted or sent, in bytes [default: 1048576]
        #[arg(long, env = "CLOUDD_MAX_FRAME", value_name = "BYTES")]
        max_frame: usize {
            set: |d, v| d.node.max_frame = v,
            show: |s| s.node.max_frame,
        }

        /// Most clients served at once [default: 50000]
        #[arg(long, env = "CLOUDD_MAX_CLIENTS", value_name = "N")]
        max_clients: u32 {
            set: |d, v| d.node.max_clients = v,
            show: |s| s.node.max_clients,
        }

        /// Most peer nodes linked at once; a link past it is refused and logged [default: 256]
        #[arg(long, env = "CLOUDD_MAX_PEERS", value_name = "N")]
        max_peers: u32 {
            set: |d, v| d.node.max_peers = v,
            show: |s| s.node.max_peers,
        }

        /// Requests per second allowed per client; 0 = unlimited [default: 100000]
        #[arg(long, env = "CLOUDD_RATE_LIMIT", value_name = "PER_SEC")]
        rate_limit: u32 {
            set: |d, v| d.node.rate_limit = v,
            show: |s| s.node.rate_limit,
        }

        /// Bytes queued to one client before it is disconnected as a slow consumer
        /// [default: 16777216]
        #[arg(long, env = "CLOUDD_MAX_OUTBOUND_BYTES", value_name = "BYTES")]
        max_outbound_bytes: usize {
            set: |d, v| d.node.max_outbound_bytes = v,
            show: |s| s.node.max_outbound_bytes,
        }

        /// How long a new connection may take to say hello. File only: a value to tune, not
        /// to set per run.
        #[arg(skip)]
        handshake_timeout: HumanDuration {
            set: |d, v| d.node.handshake_timeout = v.into(),
            show: |s| humantime::format_duration(s.node.handshake_timeout),
        }

        /// Silence after which a connection counts as lost [default: 5s]
        #[arg(long, env = "CLOUDD_IDLE_TIMEOUT", value_name = "DURATION")]
        idle_timeout: HumanDuration {
            set: |d, v| d.node.timing.idle_timeout = v.into(),
            show: |s| humantime::format_duration(s.node.timing.idle_timeout),
        }

        /// Keep-alive interval; must be shorter than the idle timeout [default: 1s]
        #[arg(long, env = "CLOUDD_KEEP_ALIVE", value_name = "DURATION")]
        keep_alive: HumanDuration {
            set: |d, v| d.node.timing.keep_alive = v.into(),
            show: |s| humantime::format_duration(s.node.timing.keep_alive),
        }

        /// How long a client's session outlives a lost connection, waiting for it to resume
        /// (its rows stay and nothing is announced meanwhile); 0 deletes its rows at once.
        /// The default covers the common outages (a Wi-Fi hand-over, a tunnel, a router or
        /// game client restart) at the cost of keeping a crashed client's rows that long
        /// [default: 30s]
        #[arg(long, env = "CLOUDD_RESUME_GRACE", value_name = "DURATION")]
        resume_grace: HumanDuration {
            set: |d, v| d.node.resume_grace = v.into(),
            show: |s| humantime::format_duration(s.node.resume_grace),
        }

        /// The `[limits]` table: what clients may store and read. File only, like every table
        /// of many values.
        #[arg(skip)]
        limits: StoreLimits {
            set: |d, v| d.node.limits = v,
            lines: |s, out| {
                let l = &s.node.limits;
                out.line("limits.max_row_bytes", l.max_row_bytes);
                out.line("limits.max_client_bytes", l.max_client_bytes);
                out.line("limits.max_get_bytes", l.max_get_bytes);
                out.line("limits.max_get_rows", l.max_get_rows);
                out.line("limits.max_scan_rows", l.max_scan_rows);
                out.line("limits.max_keys_per_query", l.max_keys_per_query);
                out.line("limits.max_owners_per_query", l.max_owners_per_query);
                out.line("limits.max_subscriptions", l.max_subscriptions);
                out.line("limits.max_subscription_owners", l.max_subscription_owners);
                out.line("limits.max_session_bytes", l.max_session_bytes);
            },
        }

        /// The `[[filters]]` rules, in order: which operations each client class may do on
        /// which keys.
        #[arg(skip)]
        filters: Vec<FilterRule> {
            set: |d, v| d.node.filters = v,
            show: |s| format!("{} rule(s)", s.node.filters.len()),
        }

        /// The `[classes.NAME]` tables: client classes filter rules can name, each with an
        /// optional token.
        #[arg(skip)]
        classes: BTreeMap<String, ClassConfig> {
            set: |d, v| d.node.classes = v,
            show: |s| {
                if s.node.classes.is_empty() {
                    return "(only `default`)".to_owned();
                }
                let token = |c: &ClassConfig| if c.token.is_some() { " (token)" } else { "" };
                let names: Vec<String> =
                    s.node.classes.iter().map(|(n, c)| format!("{n}{}", token(c))).collect();
                names.join(", ")
            },
        }

        /// The `[tokens]` table: the keys that verify signed client tokens (JWT), the issuer
        /// and audience they must name, and what clients without a token get. File only:
        /// keys live in files.
        #[arg(skip)]
        tokens: TokensLayer {
            set: |d, v| d.tokens = Some(v.over(d.tokens.take())),
            // How many keys of which algorithm and their ids, never their bytes.
            lines: |s, out| {
                let t = &s.node.tokens;
                if t.keys().is_empty() {
                    out.line("tokens", "off (no keys: a token can only be a class token)");
                } else {
                    let ids: Vec<&str> = t.keys().iter().filter_map(|k| k.id()).collect();
                    let mut text = format!("{} key(s): {}", t.keys().len(), t.key_counts());
                    if !ids.is_empty() {
                        text.push_str(&format!(" (ids {})", ids.join(", ")));
                    }
                    if let Some(iss) = &t.issuer {
                        text.push_str(&format!("; iss {iss:?}"));
                    }
                    if let Some(aud) = &t.audience {
                        text.push_str(&format!("; aud {aud:?}"));
                    }
                    out.line("tokens", text);
                }
                out.line("tokens.anonymous", t.anonymous.name());
            },
        }

        /// Join the mesh through this node: NAME[:PORT] or IP[:PORT], port 7946 by default; a
        /// name is resolved to all its A/AAAA records. Repeatable; CLOUDD_JOIN takes a
        /// comma-separated list. When nothing answers, this node starts the mesh
        /// [default: none, a single node]
        #[arg(long, env = "CLOUDD_JOIN", value_name = "NAME[:PORT]", value_delimiter = ',')]
        // A list from a higher layer replaces a lower one's as a whole.
        join: Vec<JoinTarget> {
            set: |d, v| d.node.join = v.into_iter().map(String::from).collect(),
            show: |s| {
                if s.node.join.is_empty() {
                    return "(none: a single node, or the first of a mesh)".to_owned();
                }
                s.node.join.join(", ")
            },
        }

        /// File holding the mesh secret all nodes share (at least 16 bytes; one trailing
        /// newline is ignored). Instead, env CLOUDD_SECRET may hold the secret itself; there is
        /// no flag for that, because flags show in `ps`
        #[arg(long, env = "CLOUDD_SECRET_FILE", value_name = "FILE")]
        secret_file: PathBuf {
            set: |d, v| d.secret_file = Some(v),
            // Never the secret itself: this output ends up in tickets and chat.
            lines: |s, out| match &s.secret_source {
                SecretSource::None => out.line("secret", "not set"),
                SecretSource::File(p) => out.line("secret", format!("set (from {})", p.display())),
                SecretSource::Env => out.line("secret", "set (from CLOUDD_SECRET)"),
            },
        }

        /// Another mesh secret this node accepts from peers, besides its own (it proves with
        /// --secret-file's): the old or the new one while the mesh's secret is rotated node by
        /// node. Repeatable; CLOUDD_ACCEPT_SECRET_FILE takes a comma-separated list
        #[arg(long, env = "CLOUDD_ACCEPT_SECRET_FILE", value_name = "FILE", value_delimiter = ',')]
        accept_secret_file: Vec<PathBuf> {
            set: |d, v| d.accept_secret_files = v,
            show: |s| match &s.node.secret {
                Some(secret) if secret.accepted_others() > 0 => {
                    format!("{} more secret(s) accepted from peers", secret.accepted_others())
                }
                _ => "(none)".to_owned(),
            },
        }

        /// Address peers should use to reach this node, internal first (e.g. behind NAT).
        /// Repeatable; CLOUDD_ADVERTISE takes a comma-separated list [default: the bound address]
        #[arg(long, env = "CLOUDD_ADVERTISE", value_name = "ADDR", value_delimiter = ',',
            value_parser = parse_addr)]
        advertise: Vec<SocketAddr> {
            set: |d, v| d.node.advertise = v,
            show: |s| {
                if s.node.advertise.is_empty() {
                    return "(the bound address)".to_owned();
                }
                list(&s.node.advertise)
            },
        }

        /// Address clients should use to reach this node, e.g. its public address; clients
        /// never see the internal ones. Repeatable; CLOUDD_ADVERTISE_CLIENT takes a
        /// comma-separated list [default: the advertised addresses that are public, or all of
        /// them when none is]
        #[arg(long, env = "CLOUDD_ADVERTISE_CLIENT", value_name = "ADDR", value_delimiter = ',',
            value_parser = parse_addr)]
        advertise_client: Vec<SocketAddr> {
            set: |d, v| d.node.advertise_client = v,
            show: |s| {
                if s.node.advertise_client.is_empty() {
                    return "(the public advertised addresses, else all)".to_owned();
                }
                list(&s.node.advertise_client)
            },
        }

        /// Whether clients reading `cloud.nodes`/`cloud.load` also see node ids, internal
        /// addresses, CPU, memory and row counts. File only.
        #[arg(skip)]
        expose_internals: bool {
            set: |d, v| d.node.expose_internals = v,
            show: |s| s.node.expose_internals,
        }

        /// Client classes whose `Place` answers carry every node's score. File only.
        #[arg(skip)]
        explain_classes: Vec<String> {
            set: |d, v| d.node.explain_classes = v,
            show: |s| {
                if s.node.explain_classes.is_empty() {
                    return "(none)".to_owned();
                }
                s.node.explain_classes.join(", ")
            },
        }

        /// The longest a stop (SIGTERM) waits for the node's clients to move to other nodes
        /// before disconnecting the rest [default: 30s]
        #[arg(long, env = "CLOUDD_STOP_TIMEOUT", value_name = "DURATION")]
        stop_timeout: HumanDuration {
            set: |d, v| d.node.stop_timeout = v.into(),
            show: |s| humantime::format_duration(s.node.stop_timeout),
        }

        /// Stop without draining: clients are disconnected at once (their rows deleted as
        /// node_left) instead of moving to other nodes
        #[arg(long, env = "CLOUDD_NO_DRAIN_ON_STOP", num_args = 0..=1, default_missing_value = "true",
            value_name = "BOOL")]
        no_drain_on_stop: bool {
            set: |d, v| d.node.drain_on_stop = !v,
            show: |s| !s.node.drain_on_stop,
        }

        /// The `[placement]` table: how much load, CPU, round trip and zones weigh when
        /// placing a client.
        #[arg(skip)]
        placement: Weights {
            set: |d, v| d.node.placement = v,
        }

        /// The `[zones]` table: the world grid; zones are off without it.
        #[arg(skip)]
        zones: ZoneConfig {
            set: |d, v| d.node.zones = Some(v),
        }

        /// How long a prepared migration waits for its client before it is rolled back.
        #[arg(skip)]
        migration_timeout: HumanDuration {
            set: |d, v| d.node.migration_timeout = v.into(),
        }

        /// Most migrations a drain has in flight at once.
        #[arg(skip)]
        drain_batch: usize {
            set: |d, v| d.node.drain_batch = v,
        }

        /// How often the host looks at the mesh's balance; zero turns rebalancing off.
        #[arg(skip)]
        rebalance_interval: HumanDuration {
            set: |d, v| d.node.rebalance_interval = v.into(),
        }

        /// Hysteresis of rebalancing, as a fraction of capacity.
        #[arg(skip)]
        rebalance_threshold: f64 {
            set: |d, v| d.node.rebalance_threshold = v,
        }

        /// Most clients one rebalance round moves.
        #[arg(skip)]
        rebalance_max_moves: u32 {
            set: |d, v| d.node.rebalance_max_moves = v,
        }

        /// The `[dns]` table and its `--dns-*` flags: dynamic DNS, off when neither says
        /// anything.
        #[command(flatten)]
        dns: DnsLayer {
            set: |d, v| d.dns = Some(v.over(d.dns.take())),
            lines: |s, out| {
                let (Some(d), Some(key_file)) = (&s.dns, &s.dns_key_file) else {
                    return out.line("dns", "off");
                };
                out.line("dns", format!("{} in zone {} via {}", d.name, d.zone, d.server));
                // The key's name and file, never its secret.
                let (name, algorithm) = (d.key.name(), d.key.algorithm());
                let key = format!("{name} ({algorithm}, from {})", key_file.display());
                out.line("dns.tsig_key", key);
                let (publish, addresses) = (d.publish.as_str(), d.addresses.as_str());
                out.line("dns.publish", format!("{publish} (addresses {addresses})"));
                let recheck = humantime::format_duration(d.recheck);
                out.line("dns.ttl / recheck", format!("{} s / {recheck}", d.ttl));
            },
        }

        /// The `[graphite]` table and its `--graphite*` flags: metrics export, off without a
        /// server.
        #[command(flatten)]
        graphite: GraphiteLayer {
            set: |d, v| d.graphite = Some(v.over(d.graphite.take())),
            show: |s| match &s.graphite {
                None => "off".to_owned(),
                Some(g) => format!(
                    "{} as {}.* every {}",
                    g.server, g.prefix, humantime::format_duration(g.interval)
                ),
            },
        }
    }
}

settings! {
    /// Dynamic DNS settings (`[dns]`, `--dns-*`). With any of them given, server, zone, name
    /// and TSIG key file are all required; the others have [`DnsConfig::new`]'s defaults.
    // Field docs of flags are their --help text, written for a terminal, not for rustdoc.
    #[allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)]
    pub table DnsLayer into DnsConfig {
        /// Dynamic DNS: the zone's primary DNS server, IP[:PORT] (port 53 by default). With
        /// --dns-zone, --dns-name and --dns-tsig-key-file, the mesh host keeps --dns-name
        /// pointing at its advertised addresses by RFC 2136 updates signed with TSIG
        /// [default: none, dynamic DNS off]
        #[arg(id = "dns_server", long = "dns-server", env = "CLOUDD_DNS_SERVER",
            value_name = "IP[:PORT]")]
        server: DnsServer {}

        /// Dynamic DNS: the zone the record is in, e.g. example.com
        #[arg(id = "dns_zone", long = "dns-zone", env = "CLOUDD_DNS_ZONE", value_name = "ZONE")]
        zone: String {}

        /// Dynamic DNS: the record the host keeps current, usually the join name, e.g.
        /// mesh.example.com (in --dns-zone)
        #[arg(id = "dns_name", long = "dns-name", env = "CLOUDD_DNS_NAME", value_name = "NAME")]
        name: String {}

        /// Dynamic DNS: file holding the TSIG key the server allows to update the name, as
        /// `tsig-keygen -a hmac-sha256 NAME` writes it (or one line ALGORITHM:NAME:BASE64).
        /// There is no flag for the key itself, because flags show in `ps`
        #[arg(id = "dns_tsig_key_file", long = "dns-tsig-key-file",
            env = "CLOUDD_DNS_TSIG_KEY_FILE", value_name = "FILE")]
        tsig_key_file: PathBuf {}

        /// Dynamic DNS: publish the host's addresses only, or every Active node's
        /// [default: host]
        #[arg(id = "dns_publish", long = "dns-publish", env = "CLOUDD_DNS_PUBLISH", value_enum,
            value_name = "WHOSE")]
        publish: DnsPublish {
            set: |d, v| d.publish = v.into(),
        }

        /// Which advertised addresses go into the record: all, or only public ones.
        #[arg(skip)]
        addresses: AddressFilter {
            set: |d, v| d.addresses = v,
        }

        /// TTL of the records written, in seconds.
        #[arg(skip)]
        ttl: u32 {
            set: |d, v| d.ttl = v,
        }

        /// How often the host re-checks the record without a mesh event.
        #[arg(skip)]
        recheck: HumanDuration {
            set: |d, v| d.recheck = v.into(),
        }

        /// How long one exchange with the server may take.
        #[arg(skip)]
        timeout: HumanDuration {
            set: |d, v| d.timeout = v.into(),
        }

        /// Longest wait between retries after failures.
        #[arg(skip)]
        max_backoff: HumanDuration {
            set: |d, v| d.max_backoff = v.into(),
        }
    }
}

settings! {
    /// Metrics export settings (`[graphite]`, `--graphite*`). Without a server export is
    /// off, and the other settings are refused rather than ignored.
    // Field docs of flags are their --help text, written for a terminal, not for rustdoc.
    #[allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)]
    pub table GraphiteLayer into GraphiteConfig {
        /// Graphite: send metrics in carbon's plaintext protocol to this listener, HOST:PORT
        /// (carbon's is usually port 2003) [default: none, no export]
        #[arg(id = "graphite_server", long = "graphite", env = "CLOUDD_GRAPHITE",
            value_name = "HOST:PORT")]
        server: String {}

        /// Graphite: path prefix of every metric; characters Graphite paths cannot hold become
        /// `_` [default: cloudmesh.<node name>]
        #[arg(id = "graphite_prefix", long = "graphite-prefix", env = "CLOUDD_GRAPHITE_PREFIX",
            value_name = "PREFIX")]
        prefix: String {}

        /// Graphite: how often metrics are sampled and sent [default: 10s]
        #[arg(id = "graphite_interval", long = "graphite-interval",
            env = "CLOUDD_GRAPHITE_INTERVAL", value_name = "DURATION")]
        interval: HumanDuration {
            set: |g, v| g.interval = v.into(),
        }

        /// Bound on one connect and on one write to carbon.
        #[arg(skip)]
        timeout: HumanDuration {
            set: |g, v| g.timeout = v.into(),
        }

        /// Lines kept while carbon cannot take them.
        #[arg(skip)]
        max_buffered: usize {
            set: |g, v| g.max_buffered = v,
        }

        /// Longest wait between reconnection attempts.
        #[arg(skip)]
        max_backoff: HumanDuration {
            set: |g, v| g.max_backoff = v.into(),
        }
    }
}

settings! {
    /// Client token settings (`[tokens]`, file only): keys in `[[tokens.keys]]` entries,
    /// read and checked at load.
    // Field docs are rustdoc here: no field has a flag.
    pub table TokensLayer into Tokens {
        /// The keys that verify client tokens, several at once for rotation.
        #[arg(skip)]
        keys: Vec<TokenKeyFile> {}

        /// When set, a token's `iss` claim must be this.
        #[arg(skip)]
        issuer: String {
            set: |t, v| t.issuer = Some(v),
        }

        /// When set, a token's `aud` claim must be (or list) this.
        #[arg(skip)]
        audience: String {
            set: |t, v| t.audience = Some(v),
        }

        /// What clients without a token get: `allow` (the class they name, with its
        /// filters) or `refuse`.
        #[arg(skip)]
        anonymous: Anonymous {
            set: |t, v| t.anonymous = v,
        }
    }
}

impl Layer {
    /// Parses a TOML file's text. Unknown keys are errors, so a typo is reported rather than
    /// ignored.
    pub fn from_toml(text: &str) -> Result<Layer, toml::de::Error> {
        toml::from_str(text)
    }

    /// Reads and parses the file at `path`; errors name the file and, for syntax, the line.
    pub fn read(path: &Path) -> Result<Layer, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        Layer::from_toml(&text).map_err(|source| LoadError::Parse {
            path: path.to_owned(),
            source,
        })
    }
}

impl DnsLayer {
    /// Dynamic DNS from the merged layers (some layer said something about it), with the
    /// TSIG key file it read.
    pub(super) fn build(self) -> Result<(DnsConfig, PathBuf), LoadError> {
        use crate::dyndns::{Name, TsigKey};
        let mut missing = Vec::new();
        if self.server.is_none() {
            missing.push("the server (--dns-server or [dns] server)");
        }
        if self.zone.is_none() {
            missing.push("the zone (--dns-zone or [dns] zone)");
        }
        if self.name.is_none() {
            missing.push("the record name (--dns-name or [dns] name)");
        }
        if self.tsig_key_file.is_none() {
            missing.push("the TSIG key file (--dns-tsig-key-file or [dns] tsig_key_file)");
        }
        let (Some(server), Some(zone), Some(name), Some(key_file)) = (
            self.server,
            self.zone.as_deref(),
            self.name.as_deref(),
            self.tsig_key_file.clone(),
        ) else {
            return Err(LoadError::DnsIncomplete {
                missing: missing.join(", "),
            });
        };
        let zone = Name::parse(zone).map_err(|source| LoadError::DnsName {
            which: "zone",
            source,
        })?;
        let name = Name::parse(name).map_err(|source| LoadError::DnsName {
            which: "name",
            source,
        })?;
        // The library's error names the file and the expected format.
        let key = TsigKey::from_file(&key_file).map_err(LoadError::TsigKey)?;
        let mut dns = DnsConfig::new(server.0, zone, name, key)?;
        self.apply_to(&mut dns);
        dns.validate()?;
        Ok((dns, key_file))
    }
}

impl GraphiteLayer {
    /// Metrics export from the merged layers; `node_name` makes the default prefix.
    pub(super) fn build(self, node_name: &str) -> Result<GraphiteConfig, LoadError> {
        let Some(server) = &self.server else {
            return Err(LoadError::GraphiteWithoutServer);
        };
        let prefix = match &self.prefix {
            Some(p) => p.clone(),
            None => crate::metrics::default_prefix(node_name),
        };
        let mut cfg = GraphiteConfig::new(server, &prefix)?;
        self.apply_to(&mut cfg);
        cfg.validate()?;
        Ok(cfg)
    }
}

impl TokensLayer {
    /// The client token settings, with every key file read and checked; also the files of
    /// shared secrets, for the caller to check their modes.
    pub(super) fn build(self) -> Result<(Tokens, Vec<PathBuf>), LoadError> {
        let (keys, secret_files) = load_keys(self.keys.as_deref().unwrap_or_default())?;
        if keys.is_empty() && (self.issuer.is_some() || self.audience.is_some()) {
            return Err(LoadError::TokensWithoutKeys);
        }
        // Ids were checked per entry above, so this names no new problem.
        let mut tokens = Tokens::new(keys).map_err(|source| LoadError::TokenKey {
            which: "list".to_owned(),
            source,
        })?;
        self.apply_to(&mut tokens);
        Ok((tokens, secret_files))
    }
}

/// `--check-config`'s text under construction: one aligned line per setting.
#[derive(Debug)]
pub(super) struct Summary(String);

impl Summary {
    /// Adds `key` and its value, aligned with the other lines.
    pub(super) fn line(&mut self, key: &str, value: impl fmt::Display) {
        // Writing to a String cannot fail.
        let _ = writeln!(self.0, "  {key:<26} {value}");
    }
}

impl Settings {
    /// The effective settings, as `cloudd --check-config` prints them: every shown setting
    /// in declaration order, then the warnings. Never a secret.
    pub fn summary(&self) -> String {
        let file = match &self.file {
            Some(p) => format!("file {}", p.display()),
            None => "no config file".to_owned(),
        };
        let mut out = Summary(format!("configuration OK ({file})\n"));
        Layer::show(self, &mut out);
        for w in &self.warnings {
            let _ = writeln!(out.0, "warning: {w}");
        }
        out.0
    }
}

/// Addresses as `a, b`.
fn list(addrs: &[SocketAddr]) -> String {
    let addrs: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    addrs.join(", ")
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;
    use serde::Serialize;

    use super::*;
    use crate::config::testing::{key_file, token_pem_file, token_secret_file};
    use crate::config::{Cli, Env};

    const EXAMPLE: &str = include_str!("../../assets/cloudd.example.toml");

    /// The example with its settings uncommented: lines written `#key = ...` or `#[table]`
    /// (no space after `#`) are settings; `# text` lines are prose.
    fn example_uncommented() -> String {
        EXAMPLE
            .lines()
            .map(|l| match l.strip_prefix('#') {
                Some(rest) if !rest.starts_with([' ', '#']) && !rest.is_empty() => rest,
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The keys of a value's serde form, e.g. every field of a table's defaults.
    fn fields(value: impl Serialize) -> Vec<String> {
        match serde_json::to_value(value).expect("serializes") {
            serde_json::Value::Object(map) => map.keys().cloned().collect(),
            other => panic!("not a table: {other}"),
        }
    }

    #[test]
    fn every_declared_setting_is_in_the_example() {
        let example: toml::Table = toml::from_str(&example_uncommented()).expect("TOML");
        let table = |name: &str| -> &toml::Table {
            example
                .get(name)
                .and_then(toml::Value::as_table)
                .unwrap_or_else(|| panic!("[{name}] is in the example"))
        };
        for key in Layer::KEYS.iter().filter(|k| **k != "config") {
            assert!(example.contains_key(*key), "{key} is in the example");
        }
        for (name, keys) in [
            ("dns", DnsLayer::KEYS),
            ("graphite", GraphiteLayer::KEYS),
            ("tokens", TokensLayer::KEYS),
        ] {
            for key in keys {
                assert!(
                    table(name).contains_key(*key),
                    "[{name}] {key} is in the example"
                );
            }
        }
        // Tables whose keys the store and placement declare: every field of their defaults.
        for (name, keys) in [
            ("limits", fields(StoreLimits::default())),
            ("placement", fields(Weights::default())),
            ("zones", fields(ZoneConfig::default())),
            ("classes", fields(ClassConfig::default())),
        ] {
            let t = if name == "classes" {
                table(name).get("server").and_then(toml::Value::as_table)
            } else {
                Some(table(name))
            };
            for key in keys {
                assert!(
                    t.is_some_and(|t| t.contains_key(&key)),
                    "[{name}] {key} is in the example"
                );
            }
        }
    }

    #[test]
    fn every_flag_and_variable_is_in_the_example() {
        for arg in Cli::command().get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if long != "help" && long != "version" {
                assert!(EXAMPLE.contains(&format!("--{long}")), "--{long}");
            }
            if let Some(env) = arg.get_env().and_then(|e| e.to_str()) {
                assert!(EXAMPLE.contains(env), "{env}");
            }
        }
        assert!(EXAMPLE.contains("CLOUDD_SECRET ") && EXAMPLE.contains("RUST_LOG"));
    }

    #[test]
    fn the_example_parses_commented_and_uncommented_and_shows_the_defaults() {
        Layer::from_toml(EXAMPLE).expect("example parses as shipped");
        let mut file = Layer::from_toml(&example_uncommented()).expect("every setting parses");
        // The example's secret file does not exist here (loading one is tested elsewhere),
        // but its `join` needs a secret; likewise its TSIG key file.
        assert!(file.secret_file.take().is_some());
        // And the other secret it accepts.
        let (_accepted_dir, accepted_path) = crate::config::testing::secret_file(0o600);
        assert!(file
            .accept_secret_file
            .replace(vec![accepted_path])
            .is_some());
        let (_key_dir, key_path) = key_file(0o600);
        let dns = file.dns.as_mut().expect("the example has a [dns] table");
        assert!(dns.tsig_key_file.replace(key_path).is_some());
        // Its token key files likewise, one of each algorithm.
        let (_secret_dir, secret_path) = token_secret_file(0o600);
        let (_pem_dir, pem_path) = token_pem_file();
        let tokens = file
            .tokens
            .as_mut()
            .expect("the example has a [tokens] table");
        let keys = tokens.keys.as_mut().expect("the example lists keys");
        for key in keys.iter_mut() {
            key.file = match key.algorithm.as_str() {
                "HS256" => secret_path.clone(),
                _ => pem_path.clone(),
            };
        }
        let env = Env {
            rust_log: None,
            secret: Some(b"sixteen-bytes-or-more".to_vec()),
        };
        let s = Settings::resolve(Layer::default(), Some(file), env).expect("valid");

        let dns = s.dns.as_ref().expect("dns on");
        let d = DnsConfig::new(
            dns.server,
            dns.zone.clone(),
            dns.name.clone(),
            dns.key.clone(),
        )
        .expect("valid");
        assert_eq!(
            (dns.publish, dns.addresses, dns.ttl),
            (d.publish, d.addresses, d.ttl),
            "the example shows the dns defaults"
        );
        assert_eq!(
            (dns.recheck, dns.timeout, dns.max_backoff),
            (d.recheck, d.timeout, d.max_backoff),
            "the example shows the dns defaults"
        );
        let g = s
            .graphite
            .as_ref()
            .expect("the example has a [graphite] table");
        let want = GraphiteConfig::new(&g.server, &g.prefix).expect("valid");
        assert_eq!(g, &want, "the example shows the graphite defaults");

        assert_eq!(s.node.zones, Some(ZoneConfig::default()));
        assert_eq!(
            s.node.tokens.anonymous,
            Anonymous::default(),
            "the example shows the default for anonymous clients"
        );
        assert_eq!(s.node.tokens.key_counts(), "1 HS256, 1 EdDSA");
    }

    #[test]
    fn every_example_value_is_the_default_unless_it_is_a_sample() {
        // Shown as examples, not defaults: their default is "none", "off", or the machine's.
        let samples = [
            "name",
            "data_dir",
            "admin_socket",
            "log_dir",
            "join",
            "secret_file",
            "advertise",
            "advertise_client",
            "explain_classes",
            "filters",
            "classes",
            "zones",
            "dns",
            "graphite",
            "tokens",
            "accept_secret_file",
        ];
        // What a setting can change, but for where a value came from.
        let effect = |s: &Settings| {
            format!(
                "{:?} {} {} {:?} {:?}",
                s.node, s.log.filter, s.log.format, s.log.dir, s.admin_socket
            )
        };
        let resolve = |file| Settings::resolve(Layer::default(), file, Env::default());
        let defaults = effect(&resolve(None).expect("defaults are valid"));
        let example: toml::Table = toml::from_str(&example_uncommented()).expect("TOML");
        let mut checked = 0;
        for (key, value) in example {
            if samples.contains(&key.as_str()) {
                continue;
            }
            let one = toml::Value::Table(toml::Table::from_iter([(key.clone(), value)]));
            let layer = <Layer as serde::Deserialize>::deserialize(one).expect("a setting");
            let s = resolve(Some(layer)).unwrap_or_else(|e| panic!("{key}: {e}"));
            assert_eq!(effect(&s), defaults, "the example's {key} is its default");
            checked += 1;
        }
        assert_eq!(
            checked,
            Layer::KEYS.len() - 1 - samples.len(),
            "all but `config`"
        );
    }

    #[test]
    fn the_summary_shows_every_shown_setting_once_in_declaration_order() {
        let s = Settings::resolve(Layer::default(), None, Env::default()).expect("valid");
        let summary = s.summary();
        let keys: Vec<&str> = summary
            .lines()
            .skip(1)
            .filter_map(|l| l.strip_prefix("  "))
            // Keys are padded to 26 columns; a longer one is followed by one space.
            .filter_map(|l| match l.get(26..27) {
                Some(" ") => l.get(..26).map(str::trim_end),
                _ => l.split(' ').next(),
            })
            .collect();
        assert_eq!(
            keys,
            [
                "listen",
                "name",
                "data_dir",
                "admin_socket",
                "log_dir",
                "log",
                "max_frame",
                "max_clients",
                "max_peers",
                "rate_limit",
                "max_outbound_bytes",
                "handshake_timeout",
                "idle_timeout",
                "keep_alive",
                "resume_grace",
                "limits.max_row_bytes",
                "limits.max_client_bytes",
                "limits.max_get_bytes",
                "limits.max_get_rows",
                "limits.max_scan_rows",
                "limits.max_keys_per_query",
                "limits.max_owners_per_query",
                "limits.max_subscriptions",
                "limits.max_subscription_owners",
                "limits.max_session_bytes",
                "filters",
                "classes",
                "tokens",
                "tokens.anonymous",
                "join",
                "secret",
                "accept_secret_file",
                "advertise",
                "advertise_client",
                "expose_internals",
                "explain_classes",
                "stop_timeout",
                "no_drain_on_stop",
                "dns",
                "graphite",
            ]
        );
        assert!(summary.starts_with("configuration OK (no config file)\n"));
        assert!(summary.contains("\n  log                        info (human)\n"));
        assert!(summary.contains("\n  idle_timeout               5s\n"));
        assert!(summary.contains("\n  limits.max_owners_per_query 1024\n"));
    }
}
