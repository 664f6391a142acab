//! From layers to [`Settings`]: the defaults, then the file, then the environment's
//! `RUST_LOG`, then flags and `CLOUDD_*` variables, each over the one before; then what
//! needs every layer at once (the secret, dynamic DNS, Graphite, client token keys) and the
//! checks.

use std::ffi::OsString;
use std::fmt;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use clap::Parser;

use crate::dyndns::DnsConfig;
use crate::mesh::MeshSecret;
use crate::metrics::graphite::GraphiteConfig;

use super::secret::{load_secret, open_file_warning};
use super::{
    DnsLayer, GraphiteLayer, Layer, LoadError, LogFormat, NodeConfig, SecretSource, TokensLayer,
    Warning,
};

/// The `cloudd` command line: every setting's flag (each also read from its `CLOUDD_*`
/// variable), and `--check-config`.
#[derive(Debug, Parser)]
#[command(
    name = "cloudd",
    version,
    about = "cloudmesh node: serves cloud memory to clients over QUIC",
    long_about = "cloudmesh node: serves cloud memory to clients over QUIC.\n\n\
        Runs with no arguments. Settings come from flags, then CLOUDD_* environment \
        variables, then the TOML file given with --config, then built-in defaults (see \
        assets/cloudd.example.toml for every setting). At start the node prints its \
        certificate fingerprint, which clients pin with `cloudctl --pin`."
)]
pub struct Cli {
    /// The settings given on the command line or in the environment.
    #[command(flatten)]
    pub settings: Layer,

    /// Validate the configuration, print the effective settings and exit
    #[arg(long)]
    pub check_config: bool,
}

/// What the environment says outside clap's `CLOUDD_*` flags, read once so that resolving
/// settings stays a pure function (and testable).
#[derive(Default)]
pub struct Env {
    /// `RUST_LOG`, when set and not blank: the log filter when neither `--log` nor
    /// `CLOUDD_LOG` gives one.
    pub rust_log: Option<String>,
    /// `CLOUDD_SECRET`, when set and not empty: the mesh secret itself. Bytes, not a
    /// String: a secret need not be UTF-8.
    pub secret: Option<Vec<u8>>,
}

impl Env {
    /// Reads the process environment.
    pub fn read() -> Env {
        Env {
            rust_log: std::env::var("RUST_LOG")
                .ok()
                .filter(|s| !s.trim().is_empty()),
            secret: std::env::var_os("CLOUDD_SECRET")
                .map(OsString::into_vec)
                .filter(|v| !v.is_empty()),
        }
    }
}

impl fmt::Debug for Env {
    // Never the secret: a Debug print can end up in a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Env")
            .field("rust_log", &self.rust_log)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Which layer a value came from, for messages that name where a bad value was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Origin {
    /// Built in.
    Default,
    /// The TOML file.
    File,
    /// `RUST_LOG`.
    Env,
    /// A flag or its `CLOUDD_*` variable (clap does not say which, nor need we).
    Flags,
}

/// Logging settings, which the binary turns into a subscriber.
#[derive(Debug, Clone)]
pub struct LogSettings {
    /// RUST_LOG-style filter.
    pub filter: String,
    /// Where the filter came from, for the message when it does not parse.
    pub filter_source: &'static str,
    /// Line format.
    pub format: LogFormat,
    /// Directory for daily-rotated files, if any.
    pub dir: Option<PathBuf>,
}

impl LogSettings {
    /// Takes `filter` from the layer `from`.
    pub(super) fn set_filter(&mut self, filter: String, from: Origin) {
        self.filter = filter;
        self.filter_source = match from {
            Origin::Default => "the default",
            Origin::File => "the config file's `log`",
            Origin::Env => "RUST_LOG",
            Origin::Flags => "--log / CLOUDD_LOG",
        };
    }
}

/// Everything `cloudd` runs with.
#[derive(Debug)]
pub struct Settings {
    /// The node's configuration.
    pub node: NodeConfig,
    /// Logging.
    pub log: LogSettings,
    /// Where the admin socket is served.
    pub admin_socket: PathBuf,
    /// The file read, if any (for `--check-config`).
    pub file: Option<PathBuf>,
    /// Where the mesh secret came from (for `--check-config`, which never shows it).
    pub secret_source: SecretSource,
    /// Dynamic DNS, when configured.
    pub dns: Option<DnsConfig>,
    /// The TSIG key file dynamic DNS uses, for `--check-config`.
    pub dns_key_file: Option<PathBuf>,
    /// Metrics export to Graphite, when configured.
    pub graphite: Option<GraphiteConfig>,
    /// Problems worth logging that do not stop the node.
    pub warnings: Vec<Warning>,
}

/// The settings while layers are applied, before what needs every layer is built.
#[derive(Debug)]
pub(super) struct Draft {
    /// The layer being applied.
    pub(super) from: Origin,
    /// The node's configuration, complete but for the secret.
    pub(super) node: NodeConfig,
    /// Logging.
    pub(super) log: LogSettings,
    /// Where the admin socket is served.
    pub(super) admin_socket: PathBuf,
    /// The mesh secret's file, read once every layer has had its say (`CLOUDD_SECRET` may
    /// contradict it).
    pub(super) secret_file: Option<PathBuf>,
    /// Other mesh secrets accepted from peers while the secret is rotated.
    pub(super) accept_secret_files: Vec<PathBuf>,
    /// Dynamic DNS settings merged so far; `None` while no layer has mentioned any.
    pub(super) dns: Option<DnsLayer>,
    /// Graphite settings merged so far; `None` while no layer has mentioned any.
    pub(super) graphite: Option<GraphiteLayer>,
    /// Client token settings merged so far; `None` while no layer has mentioned any.
    pub(super) tokens: Option<TokensLayer>,
}

impl Draft {
    /// The built-in defaults.
    fn defaults() -> Draft {
        Draft {
            from: Origin::Default,
            // Its name is the host name.
            node: NodeConfig::new(default_data_dir()),
            log: LogSettings {
                filter: "info".to_owned(),
                filter_source: "the default",
                format: LogFormat::Human,
                dir: None,
            },
            admin_socket: crate::admin::default_socket_path(),
            secret_file: None,
            accept_secret_files: Vec::new(),
            dns: None,
            graphite: None,
            tokens: None,
        }
    }
}

/// The default data directory: `$XDG_DATA_HOME/cloudd`, `$HOME/.local/share/cloudd`, or
/// `/var/lib/cloudd` (for a service without a home).
pub fn default_data_dir() -> PathBuf {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(xdg) = var("XDG_DATA_HOME") {
        PathBuf::from(xdg).join("cloudd")
    } else if let Some(home) = var("HOME") {
        PathBuf::from(home).join(".local/share/cloudd")
    } else {
        PathBuf::from("/var/lib/cloudd")
    }
}

impl Settings {
    /// Reads the file `flags` name with `--config` (or `CLOUDD_CONFIG`), if any, and
    /// resolves the settings (see [`Settings::resolve`]).
    pub fn load(flags: Layer, env: Env) -> Result<Settings, LoadError> {
        let file = flags.config.as_deref().map(Layer::read).transpose()?;
        Settings::resolve(flags, file, env)
    }

    /// Resolves the settings: flags and `CLOUDD_*` variables over `RUST_LOG` over the file
    /// over the defaults; then loads the secret and checks everything, as the node would.
    pub fn resolve(flags: Layer, file: Option<Layer>, env: Env) -> Result<Settings, LoadError> {
        let mut d = Draft::defaults();
        if let Some(file) = file {
            d.from = Origin::File;
            file.apply_to(&mut d);
        }
        if let Some(filter) = env.rust_log {
            d.log.set_filter(filter, Origin::Env);
        }
        let config_file = flags.config.clone();
        d.from = Origin::Flags;
        flags.apply_to(&mut d);

        let mut node = d.node;
        let (secret, secret_source, warning) = load_secret(d.secret_file, env.secret)?;
        let mut warnings: Vec<Warning> = warning.into_iter().collect();
        node.secret = match secret {
            Some(mut own) => {
                for path in &d.accept_secret_files {
                    let other = MeshSecret::from_file(path).map_err(LoadError::SecretFile)?;
                    warnings.extend(open_file_warning("accepted mesh secret file", path));
                    own = own.accepting(other);
                }
                Some(own)
            }
            None if !d.accept_secret_files.is_empty() => {
                return Err(LoadError::AcceptedSecretWithoutOwn);
            }
            None => None,
        };
        // With no advertised address a node bound to every interface is reached at the IP
        // its peers see its links come from; right on a flat network, wrong behind NAT or
        // with several interfaces, so remind the operator.
        let meshed = node.secret.is_some() || !node.join.is_empty();
        if meshed && node.advertise.is_empty() && node.listen.ip().is_unspecified() {
            warnings.push(Warning::NoAdvertise {
                listen: node.listen,
            });
        }
        if node.handshake_timeout.is_zero() {
            return Err(LoadError::ZeroHandshakeTimeout);
        }
        node.validate()?;
        if let Some((tokens, secret_files)) = d.tokens.map(TokensLayer::build).transpose()? {
            // Readable by others means anyone on the machine could mint client tokens.
            for file in &secret_files {
                warnings.extend(open_file_warning("client token secret file", file));
            }
            node.tokens = tokens;
        }
        let (dns, dns_key_file) = match d.dns.map(DnsLayer::build).transpose()? {
            Some((dns, key_file)) => {
                // Readable by others means anyone on the machine could rewrite the zone.
                warnings.extend(open_file_warning("DNS TSIG key file", &key_file));
                (Some(dns), Some(key_file))
            }
            None => (None, None),
        };
        let graphite = d.graphite.map(|g| g.build(&node.name)).transpose()?;
        Ok(Settings {
            node,
            log: d.log,
            admin_socket: d.admin_socket,
            file: config_file,
            secret_source,
            dns,
            dns_key_file,
            graphite,
            warnings,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::CommandFactory;

    use super::*;
    use crate::config::testing::{chain, file, flags, key_file, secret_file, utf8};
    use crate::dyndns::{AddressFilter, Publish};

    fn resolve(flags: Layer, file: Option<Layer>, env: Env) -> Result<Settings, LoadError> {
        Settings::resolve(flags, file, env)
    }

    /// The message of a refused configuration, causes included.
    fn refused(flags: Layer, file: Option<Layer>, env: Env) -> String {
        chain(&resolve(flags, file, env).expect_err("refused"))
    }

    fn rust_log(filter: &str) -> Env {
        Env {
            rust_log: Some(filter.to_owned()),
            secret: None,
        }
    }

    fn secret_env(secret: &str) -> Env {
        Env {
            rust_log: None,
            secret: Some(secret.as_bytes().to_vec()),
        }
    }

    #[test]
    fn nothing_given_is_the_defaults() {
        let s = resolve(Layer::default(), None, Env::default()).expect("defaults are valid");
        let d = NodeConfig::new(default_data_dir());
        assert_eq!(s.node.data_dir, d.data_dir);
        assert_eq!(s.node.name, crate::config::default_name());
        assert_eq!(s.node.listen.to_string(), "0.0.0.0:7946");
        assert_eq!(
            (s.node.max_frame, s.node.max_clients, s.node.rate_limit),
            (d.max_frame, d.max_clients, d.rate_limit)
        );
        assert_eq!(s.node.timing, d.timing);
        assert_eq!(s.node.limits, d.limits);
        assert!(s.node.join.is_empty() && s.node.secret.is_none() && s.node.zones.is_none());
        assert_eq!(s.admin_socket, crate::admin::default_socket_path());
        assert_eq!(
            (s.log.filter.as_str(), s.log.filter_source, s.log.format),
            ("info", "the default", LogFormat::Human)
        );
        assert_eq!(s.log.dir, None);
        assert_eq!(s.secret_source, SecretSource::None);
        assert!(s.dns.is_none() && s.graphite.is_none() && s.warnings.is_empty());
        assert_eq!(s.file, None);
    }

    #[test]
    fn flags_beat_env_beat_file_beat_defaults() {
        let f = || {
            file(
                "name = \"from-file\"\nlisten = \"127.0.0.1:9000\"\nlog = \"debug\"\n\
                  keep_alive = \"2s\"\n",
            )
        };
        let s = resolve(flags(&["--name", "from-flag"]), f(), Env::default()).expect("valid");
        assert_eq!(s.node.name, "from-flag", "a flag beats the file");
        assert_eq!(
            s.node.listen.to_string(),
            "127.0.0.1:9000",
            "the file beats defaults"
        );
        assert_eq!(s.node.timing.keep_alive, Duration::from_secs(2));
        assert_eq!(
            s.node.timing.idle_timeout,
            Duration::from_secs(5),
            "a default"
        );
        assert_eq!(
            (s.log.filter.as_str(), s.log.filter_source),
            ("debug", "the config file's `log`")
        );
        // RUST_LOG is environment, so it beats the file but not --log (or CLOUDD_LOG).
        let s = resolve(flags(&[]), f(), rust_log("warn")).expect("valid");
        assert_eq!(
            (s.log.filter.as_str(), s.log.filter_source),
            ("warn", "RUST_LOG")
        );
        let s = resolve(flags(&["--log", "error"]), f(), rust_log("warn")).expect("valid");
        assert_eq!(
            (s.log.filter.as_str(), s.log.filter_source),
            ("error", "--log / CLOUDD_LOG")
        );
        // Lists replace rather than extend: a flag's list overrides the file's as a whole.
        let s = resolve(
            flags(&["--join", "b.example.com"]),
            file("join = [\"a.example.com\", \"c.example.com\"]"),
            secret_env("sixteen-bytes-or-more"),
        )
        .expect("valid");
        assert_eq!(s.node.join, ["b.example.com"]);
    }

    #[test]
    fn every_file_setting_reaches_the_node() {
        let (_key_dir, key) = key_file(0o600);
        let (_secret_dir, secret) = secret_file(0o600);
        let text = format!(
            "listen = \"127.0.0.1:7001\"\nname = \"n1\"\ndata_dir = \"/d\"\n\
             admin_socket = \"/a.sock\"\nlog_dir = \"/l\"\nlog_format = \"json\"\nlog = \"debug\"\n\
             max_frame = 2000000\nmax_clients = 7\nmax_peers = 9\nrate_limit = 0\nmax_outbound_bytes = 1000\n\
             handshake_timeout = \"3s\"\nidle_timeout = \"10s\"\nkeep_alive = \"2s\"\n\
             join = [\"10.0.0.5\"]\nsecret_file = \"{}\"\nadvertise = [\"10.0.0.9:7001\"]\n\
             migration_timeout = \"20s\"\ndrain_batch = 3\nrebalance_interval = \"0s\"\n\
             rebalance_threshold = 0.5\nrebalance_max_moves = 9\n\
             [limits]\nmax_get_rows = 5\n[[filters]]\naction = \"deny\"\n\
             [classes.server]\ntoken = \"t\"\n[placement]\ncpu = 0.25\n[zones]\nwidth = 4\n\
             [dns]\nserver = \"192.0.2.53\"\nzone = \"example.com\"\nname = \"m.example.com\"\n\
             tsig_key_file = \"{}\"\npublish = \"active\"\naddresses = \"public\"\nttl = 60\n\
             recheck = \"5s\"\ntimeout = \"2s\"\nmax_backoff = \"9s\"\n\
             [graphite]\nserver = \"g.lan:2003\"\nprefix = \"p\"\ninterval = \"4s\"\n\
             timeout = \"1s\"\nmax_buffered = 5\nmax_backoff = \"8s\"\n",
            secret.display(),
            key.display()
        );
        let s = resolve(Layer::default(), file(&text), Env::default()).expect("valid");
        let n = &s.node;
        let secs = Duration::from_secs;
        assert_eq!(n.listen.to_string(), "127.0.0.1:7001");
        assert_eq!((n.name.as_str(), n.data_dir.to_str()), ("n1", Some("/d")));
        assert_eq!(s.admin_socket.to_str(), Some("/a.sock"));
        assert_eq!(s.log.dir.as_deref().and_then(|d| d.to_str()), Some("/l"));
        assert_eq!(
            (s.log.format, s.log.filter.as_str()),
            (LogFormat::Json, "debug")
        );
        assert_eq!(
            (
                n.max_frame,
                n.max_clients,
                n.max_peers,
                n.rate_limit,
                n.max_outbound_bytes
            ),
            (2_000_000, 7, 9, 0, 1000)
        );
        assert_eq!(
            (
                n.handshake_timeout,
                n.timing.idle_timeout,
                n.timing.keep_alive
            ),
            (secs(3), secs(10), secs(2))
        );
        assert_eq!(n.join, ["10.0.0.5"]);
        assert!(n.secret.is_some());
        assert_eq!(s.secret_source, SecretSource::File(secret.clone()));
        assert_eq!(n.advertise.len(), 1);
        assert_eq!((n.migration_timeout, n.drain_batch), (secs(20), 3));
        assert_eq!(
            (
                n.rebalance_interval,
                n.rebalance_threshold,
                n.rebalance_max_moves
            ),
            (secs(0), 0.5, 9)
        );
        assert_eq!(n.limits.max_get_rows, 5);
        assert_eq!(n.filters.len(), 1);
        assert!(n.classes["server"].token.is_some());
        assert_eq!(n.placement.cpu, 0.25);
        assert_eq!(n.zones.as_ref().map(|z| z.width), Some(4));
        let d = s.dns.as_ref().expect("dns on");
        assert_eq!(d.server.to_string(), "192.0.2.53:53");
        assert_eq!(
            (d.publish, d.addresses, d.ttl),
            (Publish::Active, AddressFilter::Public, 60)
        );
        assert_eq!(
            (d.recheck, d.timeout, d.max_backoff),
            (secs(5), secs(2), secs(9))
        );
        assert_eq!(s.dns_key_file.as_ref(), Some(&key));
        let g = s.graphite.as_ref().expect("graphite on");
        assert_eq!((g.server.as_str(), g.prefix.as_str()), ("g.lan:2003", "p"));
        assert_eq!(
            (g.interval, g.timeout, g.max_buffered, g.max_backoff),
            (secs(4), secs(1), 5, secs(8))
        );
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    }

    #[test]
    fn every_flag_reaches_the_node() {
        let (_key_dir, key) = key_file(0o600);
        let (_secret_dir, secret) = secret_file(0o600);
        let s = resolve(
            flags(&[
                "--listen",
                "127.0.0.1:7001",
                "--name",
                "n1",
                "--data-dir",
                "/d",
                "--admin-socket",
                "/a.sock",
                "--log-dir",
                "/l",
                "--log-format",
                "json",
                "--log",
                "debug",
                "--max-frame",
                "2000000",
                "--max-clients",
                "7",
                "--max-peers",
                "9",
                "--rate-limit",
                "0",
                "--max-outbound-bytes",
                "1000",
                "--idle-timeout",
                "10s",
                "--keep-alive",
                "2s",
                "--join",
                "10.0.0.5",
                "--secret-file",
                utf8(&secret),
                "--advertise",
                "10.0.0.9:7001",
                "--advertise-client",
                "203.0.113.9:7001",
                "--dns-server",
                "192.0.2.53",
                "--dns-zone",
                "example.com",
                "--dns-name",
                "m.example.com",
                "--dns-tsig-key-file",
                utf8(&key),
                "--dns-publish",
                "active",
                "--graphite",
                "g.lan:2003",
                "--graphite-prefix",
                "p",
                "--graphite-interval",
                "4s",
            ]),
            None,
            Env::default(),
        )
        .expect("valid");
        let n = &s.node;
        let secs = Duration::from_secs;
        assert_eq!(n.listen.to_string(), "127.0.0.1:7001");
        assert_eq!((n.name.as_str(), n.data_dir.to_str()), ("n1", Some("/d")));
        assert_eq!(s.admin_socket.to_str(), Some("/a.sock"));
        assert_eq!(s.log.dir.as_deref().and_then(|d| d.to_str()), Some("/l"));
        assert_eq!(
            (s.log.format, s.log.filter.as_str()),
            (LogFormat::Json, "debug")
        );
        assert_eq!(
            (
                n.max_frame,
                n.max_clients,
                n.max_peers,
                n.rate_limit,
                n.max_outbound_bytes
            ),
            (2_000_000, 7, 9, 0, 1000)
        );
        assert_eq!(
            (n.timing.idle_timeout, n.timing.keep_alive),
            (secs(10), secs(2))
        );
        assert_eq!(n.join, ["10.0.0.5"]);
        assert_eq!(s.secret_source, SecretSource::File(secret.clone()));
        assert_eq!(n.advertise.len(), 1);
        assert_eq!(n.advertise_client.len(), 1);
        let d = s.dns.as_ref().expect("dns on");
        assert_eq!(
            (d.server.to_string(), d.publish),
            ("192.0.2.53:53".into(), Publish::Active)
        );
        let g = s.graphite.as_ref().expect("graphite on");
        assert_eq!(
            (g.server.as_str(), g.prefix.as_str(), g.interval),
            ("g.lan:2003", "p", secs(4))
        );
    }

    #[test]
    fn every_flag_has_its_variable_named_after_it() {
        let cmd = Cli::command();
        let mut flags = 0;
        for arg in cmd.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if ["help", "version", "check-config"].contains(&long) {
                assert!(arg.get_env().is_none(), "--{long} is not a setting");
                continue;
            }
            let want = format!("CLOUDD_{}", long.to_uppercase().replace('-', "_"));
            assert_eq!(
                arg.get_env().and_then(|e| e.to_str()),
                Some(want.as_str()),
                "--{long}"
            );
            flags += 1;
        }
        assert_eq!(flags, 31, "every flag was seen");
    }

    #[test]
    fn mesh_settings_merge_and_the_secret_is_never_shown() {
        let f = file(
            "join = [\"mesh.example.com\", \"10.0.0.5:7946\"]\nadvertise = [\"10.0.0.9:7946\"]\n",
        );
        let s = resolve(flags(&[]), f, secret_env("from-the-environment!")).expect("valid");
        assert_eq!(s.node.join, ["mesh.example.com", "10.0.0.5:7946"]);
        assert_eq!(s.node.advertise.len(), 1);
        assert!(s.node.secret.is_some());
        assert_eq!(s.secret_source, SecretSource::Env);
        let summary = s.summary();
        assert!(summary.contains("set (from CLOUDD_SECRET)"), "{summary}");
        assert!(!summary.contains("from-the-environment"), "{summary}");
        assert!(
            !format!("{:?}", s.node).contains("from-the-environment"),
            "Debug is redacted"
        );
        let env = secret_env("from-the-environment!");
        assert!(
            !format!("{env:?}").contains("from-the-environment"),
            "{env:?}"
        );

        // A comma list splits, and spaces around items go.
        let s = resolve(
            flags(&[
                "--join",
                "b.example.com:7000, 10.1.1.1",
                "--join",
                "[::1]:7946,[fd00::5]",
                "--advertise",
                "10.0.0.1:7946, 192.0.2.1:7946",
            ]),
            file("join = [\"a.example.com\"]"),
            secret_env("sixteen-bytes-or-more"),
        )
        .expect("valid");
        assert_eq!(
            s.node.join,
            ["b.example.com:7000", "10.1.1.1", "[::1]:7946", "[fd00::5]"]
        );
        assert!(
            s.summary()
                .contains("advertise                  10.0.0.1:7946, 192.0.2.1:7946"),
            "internal first, in the order given: {}",
            s.summary()
        );
        let s = resolve(flags(&[]), None, Env::default()).expect("valid");
        assert!(s.summary().contains("secret                     not set"));

        // Joining without a secret is the node's call; its message names the remedy.
        let e = refused(flags(&["--join", "10.0.0.5"]), None, Env::default());
        assert!(
            e.contains("--secret-file") && e.contains("CLOUDD_SECRET"),
            "{e}"
        );

        for bad in [
            "",
            "host:port",
            "a b",
            ":7946",
            "host:99999",
            "fd00::5",
            "[x]:1",
        ] {
            assert!(
                Cli::try_parse_from(["cloudd", "--join", bad]).is_err(),
                "{bad:?} is refused"
            );
        }
        let e = Layer::from_toml("join = [\"x:y\"]").expect_err("bad join in file");
        assert!(e.to_string().contains("\"x:y\" is not NAME[:PORT]"), "{e}");
        let e = Layer::from_toml("advertise = [\"nope\"]").expect_err("bad address in file");
        assert!(e.to_string().contains("invalid socket address"), "{e}");
    }

    #[test]
    fn secret_file_is_loaded_checked_and_exclusive() {
        let (_dir, path) = secret_file(0o600);
        let p = utf8(&path);
        let local = ["--secret-file", p, "--listen", "10.0.0.5:7946"];
        let s = resolve(flags(&local), None, Env::default()).expect("valid");
        assert!(s.node.secret.is_some());
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
        let summary = s.summary();
        assert!(summary.contains(&format!("set (from {p})")), "{summary}");
        assert!(!summary.contains("0123456789abcdef"), "{summary}");

        let e = refused(
            flags(&["--secret-file", p]),
            None,
            secret_env("another-secret-entirely"),
        );
        assert!(
            e.contains("CLOUDD_SECRET") && e.contains(p) && e.contains("only one"),
            "{e}"
        );
        // The file's `secret_file` counts as much as the flag.
        let e = refused(
            flags(&[]),
            file(&format!("secret_file = \"{p}\"")),
            secret_env("another-secret-entirely"),
        );
        assert!(e.contains("given twice"), "{e}");

        let (_dir, open) = secret_file(0o644);
        let loose = ["--secret-file", utf8(&open), "--advertise", "10.0.0.5:7946"];
        let s = resolve(flags(&loose), None, Env::default()).expect("a loose mode works");
        assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
        assert!(
            s.warnings[0].to_string().contains("chmod 600"),
            "{:?}",
            s.warnings
        );
        assert!(s.summary().contains("\nwarning: mesh secret file "));

        let e = refused(flags(&[]), None, secret_env("short"));
        assert!(
            e.starts_with("CLOUDD_SECRET: the mesh secret is 5 bytes"),
            "{e}"
        );
    }

    #[test]
    fn a_meshed_node_on_every_interface_is_told_to_advertise() {
        let (_dir, path) = secret_file(0o600);
        let p = utf8(&path);
        let s = resolve(flags(&["--secret-file", p]), None, Env::default()).expect("valid");
        assert_eq!(
            s.warnings,
            [Warning::NoAdvertise {
                listen: "0.0.0.0:7946".parse().expect("address")
            }]
        );
        assert!(s.warnings[0].to_string().contains("without --advertise"));
        for quiet in [
            vec!["--secret-file", p, "--advertise", "10.0.0.5:7946"],
            vec!["--secret-file", p, "--listen", "10.0.0.5:7946"],
            vec![],
        ] {
            let s = resolve(flags(&quiet), None, Env::default()).expect("valid");
            assert!(s.warnings.is_empty(), "{quiet:?}: {:?}", s.warnings);
        }
    }

    #[test]
    fn dns_is_off_whole_or_refused() {
        let s = resolve(flags(&[]), None, Env::default()).expect("valid");
        assert!(s.dns.is_none());
        assert!(s.summary().contains("dns                        off"));

        let (_dir, key) = key_file(0o600);
        let k = utf8(&key);
        let full = [
            "--dns-server",
            "127.0.0.1:5353",
            "--dns-zone",
            "example.com",
            "--dns-name",
            "Mesh.Example.com.",
            "--dns-tsig-key-file",
            k,
        ];
        let s = resolve(flags(&full), None, Env::default()).expect("valid");
        let d = s.dns.as_ref().expect("dns on");
        assert_eq!(d.name.to_string(), "mesh.example.com.");
        assert_eq!(d.publish, Publish::Host);
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
        let summary = s.summary();
        assert!(summary.contains("mesh.example.com. in zone example.com. via 127.0.0.1:5353"));
        assert!(summary.contains("cloudd. (hmac-sha256, from "), "{summary}");
        assert!(!summary.contains("c2VjcmV0"), "never the secret: {summary}");

        // The file fills in what flags leave out; flags win; port 53 by default.
        let f = file(&format!(
            "[dns]\nserver = \"192.0.2.53\"\nzone = \"example.com\"\nname = \"m.example.com\"\n\
             tsig_key_file = \"{k}\"\npublish = \"active\"\naddresses = \"public\"\nttl = 60\n\
             recheck = \"5s\"\n"
        ));
        let s = resolve(flags(&["--dns-publish", "host"]), f, Env::default()).expect("valid");
        let d = s.dns.as_ref().expect("dns on");
        assert_eq!(d.server.to_string(), "192.0.2.53:53");
        assert_eq!(
            (d.publish, d.addresses, d.ttl),
            (Publish::Host, AddressFilter::Public, 60)
        );
        assert_eq!(d.recheck, Duration::from_secs(5));

        let e = refused(
            flags(&["--dns-server", "127.0.0.1", "--dns-name", "m.example.com"]),
            None,
            Env::default(),
        );
        assert!(
            e.contains("--dns-zone") && e.contains("--dns-tsig-key-file"),
            "{e}"
        );
        assert!(!e.contains("--dns-name"), "{e}");
        // An empty [dns] table, or a lone setting, counts as asking for dynamic DNS.
        for (f, l) in [
            (file("[dns]"), flags(&[])),
            (None, flags(&["--dns-publish", "active"])),
        ] {
            let e = refused(l, f, Env::default());
            assert!(e.starts_with("dynamic DNS is half configured"), "{e}");
        }

        let mut outside = full;
        outside[5] = "mesh.example.org";
        let e = refused(flags(&outside), None, Env::default());
        assert!(e.contains("not in dns zone"), "{e}");

        let mut bad_zone = full;
        bad_zone[3] = "exa mple.com";
        let e = refused(flags(&bad_zone), None, Env::default());
        assert!(
            e.starts_with("dns zone: \"exa mple.com\" is not a DNS name"),
            "{e}"
        );

        let mut missing = full;
        missing[7] = "/nonexistent/dns.key";
        let e = refused(flags(&missing), None, Env::default());
        assert!(e.contains("/nonexistent/dns.key"), "{e}");
        assert_eq!(e.matches("No such file").count(), 1, "the cause once: {e}");

        let (_dir2, open) = key_file(0o644);
        let mut loose = full;
        loose[7] = utf8(&open);
        let s = resolve(flags(&loose), None, Env::default()).expect("valid");
        assert!(
            s.warnings
                .iter()
                .any(|w| w.to_string().starts_with("DNS TSIG key file ")),
            "{:?}",
            s.warnings
        );

        assert!(Cli::try_parse_from(["cloudd", "--dns-server", "ns.example.com"]).is_err());
        let e = Layer::from_toml("[dns]\nserver = \"ns1\"").expect_err("bad server");
        assert!(e.to_string().contains("by address"), "{e}");
        let e = Layer::from_toml("[dns]\nttl = \"30s\"").expect_err("ttl is seconds");
        assert!(e.to_string().contains("ttl"), "{e}");
        let e = refused(flags(&full), file("[dns]\nttl = 0"), Env::default());
        assert!(e.contains("ttl must be between"), "{e}");
    }

    #[test]
    fn client_token_keys_are_read_checked_and_never_shown() {
        use crate::access::Anonymous;
        use crate::config::testing::{token_pem_file, token_secret_file};

        let s = resolve(flags(&[]), None, Env::default()).expect("valid");
        assert!(s.node.tokens.keys().is_empty());
        assert!(s
            .summary()
            .contains("\n  tokens                     off (no keys"));
        assert!(s
            .summary()
            .contains("\n  tokens.anonymous           allow\n"));

        let (_sd, secret) = token_secret_file(0o600);
        let (_pd, pem) = token_pem_file();
        let (secret, pem) = (utf8(&secret), utf8(&pem));
        let keys = |extra: &str| {
            format!(
                "[tokens]\nissuer = \"game\"\naudience = \"cloudmesh\"\nanonymous = \"refuse\"\n\
                 [[tokens.keys]]\nid = \"a\"\nalgorithm = \"HS256\"\nfile = \"{secret}\"\n\
                 [[tokens.keys]]\nalgorithm = \"EdDSA\"\nfile = \"{pem}\"\n{extra}"
            )
        };
        let s = resolve(flags(&[]), file(&keys("")), Env::default()).expect("valid");
        let t = &s.node.tokens;
        assert_eq!(t.key_counts(), "1 HS256, 1 EdDSA");
        assert_eq!(
            (t.issuer.as_deref(), t.audience.as_deref(), t.anonymous),
            (Some("game"), Some("cloudmesh"), Anonymous::Refuse)
        );
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
        let summary = s.summary();
        assert!(
            summary.contains(
                "\n  tokens                     2 key(s): 1 HS256, 1 EdDSA (ids a); \
                 iss \"game\"; aud \"cloudmesh\"\n"
            ),
            "{summary}"
        );
        assert!(summary.contains("\n  tokens.anonymous           refuse\n"));
        assert!(
            !summary.contains("0123456789abcdef"),
            "never the secret: {summary}"
        );

        let (_od, open) = token_secret_file(0o644);
        let f = file(&format!(
            "[[tokens.keys]]\nalgorithm = \"HS256\"\nfile = \"{}\"\n",
            utf8(&open)
        ));
        let s = resolve(flags(&[]), f, Env::default()).expect("a loose mode works");
        assert!(
            s.warnings[0]
                .to_string()
                .starts_with("client token secret file "),
            "{:?}",
            s.warnings
        );

        let (_shd, short) = crate::config::testing::file_with_mode("short", "too-short\n", 0o600);
        for (extra, want) in [
            (
                "[[tokens.keys]]\nalgorithm = \"HS256\"\nfile = \"/nonexistent/t.secret\"\n",
                "cannot read the client token key file of [[tokens.keys]] entry 3 \
                 (file /nonexistent/t.secret): No such file",
            ),
            (
                &format!(
                    "[[tokens.keys]]\nid = \"b\"\nalgorithm = \"EdDSA\"\nfile = \"{secret}\"\n"
                ),
                "[[tokens.keys]] entry 3 (id \"b\", file ",
            ),
            (
                &format!("[[tokens.keys]]\nalgorithm = \"EdDSA\"\nfile = \"{secret}\"\n"),
                "not an Ed25519 public key in PEM",
            ),
            (
                &format!(
                    "[[tokens.keys]]\nalgorithm = \"HS256\"\nfile = \"{}\"\n",
                    utf8(&short)
                ),
                "the HS256 secret is 9 bytes, at least 32 are needed",
            ),
            (
                &format!("[[tokens.keys]]\nalgorithm = \"RS256\"\nfile = \"{secret}\"\n"),
                "unknown algorithm \"RS256\": client tokens use \"HS256\" or \"EdDSA\"",
            ),
            (
                &format!(
                    "[[tokens.keys]]\nid = \"a\"\nalgorithm = \"HS256\"\nfile = \"{secret}\"\n"
                ),
                "two keys have the id \"a\"",
            ),
        ] {
            let e = refused(flags(&[]), file(&keys(extra)), Env::default());
            assert!(e.contains(want), "{extra:?}: {e}");
        }
        let e = refused(
            flags(&[]),
            file("[tokens]\nissuer = \"game\"\n"),
            Env::default(),
        );
        assert!(
            e.starts_with("[tokens] names an issuer or audience but no"),
            "{e}"
        );
        // Refusing anonymous clients needs no key: class tokens still admit.
        let s = resolve(
            flags(&[]),
            file("[tokens]\nanonymous = \"refuse\"\n"),
            Env::default(),
        )
        .expect("valid");
        assert_eq!(s.node.tokens.anonymous, Anonymous::Refuse);
        for (text, want) in [
            (
                "[tokens]\nanonymus = \"refuse\"",
                "unknown field `anonymus`",
            ),
            ("[tokens]\nanonymous = \"maybe\"", "unknown variant `maybe`"),
            (
                "[[tokens.keys]]\nalgorithm = \"HS256\"\n",
                "missing field `file`",
            ),
            (
                "[[tokens.keys]]\nalgorithm = \"HS256\"\nfile = \"x\"\nkid = \"a\"",
                "unknown field `kid`",
            ),
        ] {
            let e = Layer::from_toml(text).expect_err(text);
            assert!(e.to_string().contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn graphite_is_off_or_complete() {
        let env = Env::default;
        let s = resolve(flags(&["--name", "eu.node 1"]), None, env()).expect("ok");
        assert!(s.graphite.is_none());
        assert!(s.summary().contains("graphite                   off"));

        let s = resolve(
            flags(&["--name", "eu.node 1", "--graphite", "127.0.0.1:2003"]),
            None,
            env(),
        )
        .expect("ok");
        let g = s.graphite.expect("on");
        assert_eq!(
            g.prefix, "cloudmesh.eu_node_1",
            "the default prefix is the node's"
        );
        assert_eq!(g.interval, Duration::from_secs(10));

        let f = file(
            "[graphite]\nserver = \"graphite.lan:2003\"\nprefix = \"games.eu\"\n\
             interval = \"5s\"\nmax_buffered = 100\n",
        );
        let s = resolve(flags(&["--graphite-interval", "1s"]), f, env()).expect("ok");
        let g = s.graphite.as_ref().expect("on");
        assert_eq!(
            (
                g.server.as_str(),
                g.prefix.as_str(),
                g.interval,
                g.max_buffered
            ),
            ("graphite.lan:2003", "games.eu", Duration::from_secs(1), 100)
        );
        assert!(s
            .summary()
            .contains("graphite                   graphite.lan:2003 as games.eu.* every 1s"));

        let e = refused(flags(&["--graphite-prefix", "x"]), None, env());
        assert!(e.contains("--graphite HOST:PORT"), "{e}");
        let e = refused(flags(&[]), file("[graphite]"), env());
        assert!(e.starts_with("graphite settings without a server"), "{e}");
        let e = refused(flags(&["--graphite", "nohost"]), None, env());
        assert!(e.contains("HOST:PORT"), "{e}");
        let e = refused(
            flags(&[]),
            file("[graphite]\nserver = \"h:1\"\nmax_buffered = 0\n"),
            env(),
        );
        assert!(e.contains("max_buffered"), "{e}");
    }

    #[test]
    fn bad_values_say_what_is_wrong() {
        for (text, want) in [
            ("lisen = \"0.0.0.0:1\"", "unknown field `lisen`"),
            ("config = \"other.toml\"", "unknown field `config`"),
            ("[limits]\nmax_rows = 3", "unknown field `max_rows`"),
            ("[dns]\nzonee = \"x\"", "unknown field `zonee`"),
            ("[graphite]\nserverr = \"x\"", "unknown field `serverr`"),
            ("[placement]\nspeed = 1.0", "unknown field `speed`"),
            ("[zones]\ndepth = 1", "unknown field `depth`"),
            ("[classes.x]\ntokn = \"t\"", "unknown field `tokn`"),
            ("[[filters]]\nactin = \"deny\"", "unknown field `actin`"),
            ("idle_timeout = \"five\"", "invalid duration \"five\""),
            ("idle_timeout = 5", "expected a string"),
            ("listen = \"nope\"", "invalid socket address"),
            ("max_clients = -5", "expected u32"),
            (
                "log_format = \"xml\"",
                "unknown variant `xml`, expected `human` or `json`",
            ),
            (
                "[dns]\npublish = \"all\"",
                "unknown variant `all`, expected `host` or `active`",
            ),
        ] {
            let e = Layer::from_toml(text).expect_err(text);
            assert!(e.to_string().contains(want), "{text:?}: {e}");
        }
        for (args, want) in [
            (&["--idle-timeout", "five"][..], "expected number at 0"),
            (&["--listen", "nope"], "invalid socket address"),
            (&["--log-format", "xml"], "[possible values: human, json]"),
            (&["--dns-publish", "all"], "[possible values: host, active]"),
            (&["--advertise", "nope"], "\"nope\" is not IP:PORT"),
        ] {
            let e = Cli::try_parse_from(std::iter::once("cloudd").chain(args.iter().copied()))
                .expect_err("refused");
            assert!(e.to_string().contains(want), "{args:?}: {e}");
        }
    }

    #[test]
    fn contradictions_are_refused_with_the_setting_named() {
        for (text, want) in [
            (
                "idle_timeout = \"1s\"",
                "keep_alive (1s) must be shorter than idle_timeout (1s)",
            ),
            (
                "handshake_timeout = \"0s\"",
                "handshake_timeout must be longer than zero",
            ),
            ("max_frame = 100", "max_frame 100 is below 1024 bytes"),
            ("name = \"\"", "name must not be empty"),
            (
                "rebalance_threshold = -1.0",
                "rebalance_threshold must be a fraction",
            ),
            (
                "[limits]\nmax_get_rows = 0",
                "limits.max_get_rows must be at least 1",
            ),
            ("[placement]\nload = -1.0", "placement: "),
            ("[zones]\nwidth = 0", "zones: "),
        ] {
            let e = refused(flags(&[]), file(text), Env::default());
            assert!(e.contains(want), "{text:?}: {e}");
        }
        let e = resolve(flags(&[]), file("max_frame = 100"), Env::default()).expect_err("bad");
        assert!(
            matches!(e, LoadError::Node(_)),
            "the node's own check: {e:?}"
        );
    }

    #[test]
    fn a_missing_or_broken_file_is_named() {
        let e = Settings::load(
            flags(&["--config", "/nonexistent/cloudd.toml"]),
            Env::default(),
        )
        .expect_err("no file");
        let e = chain(&e);
        assert!(
            e.starts_with("cannot read config file /nonexistent/cloudd.toml: "),
            "{e}"
        );
        let (_dir, path) =
            crate::config::testing::file_with_mode("c.toml", "max_clientz = 5", 0o600);
        let p = utf8(&path);
        let e = chain(&Settings::load(flags(&["--config", p]), Env::default()).expect_err("typo"));
        assert!(e.starts_with(&format!("config file {p}: ")), "{e}");
        assert!(e.contains("max_clientz"), "{e}");

        let (_dir, path) =
            crate::config::testing::file_with_mode("c.toml", "name = \"from-file\"", 0o600);
        let p = utf8(&path);
        let s = Settings::load(flags(&["--config", p]), Env::default()).expect("valid");
        assert_eq!(s.node.name, "from-file");
        assert!(s
            .summary()
            .starts_with(&format!("configuration OK (file {p})\n")));
    }
}
