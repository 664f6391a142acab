//! `cloudd`'s settings: command-line flags (each also from a `CLOUDD_*` variable), an
//! optional TOML file, and built-in defaults, merged in that order of precedence.
//!
//! Every flag is an `Option` without a clap default, so "not given" can be told apart from
//! "given the default value" and the file can fill in what the command line left out.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::net::{Ipv6Addr, SocketAddr};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use cloudmesh::config::{default_name, ClassConfig};
use cloudmesh::dyndns::{AddressFilter, DnsConfig, Name, Publish, TsigKey};
use cloudmesh::mesh::MeshSecret;
use cloudmesh::metrics::graphite::GraphiteConfig;
use cloudmesh::store::{FilterRule, StoreLimits};
use cloudmesh::NodeConfig;
use serde::{Deserialize, Deserializer};

/// The `cloudd` command line.
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
    /// UDP address to serve QUIC on [default: 0.0.0.0:7946]
    #[arg(long, env = "CLOUDD_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,

    /// Name of this node in logs and in the mesh [default: the host name]
    #[arg(long, env = "CLOUDD_NAME", value_name = "NAME")]
    pub name: Option<String>,

    /// Where the node keeps its TLS key and certificate
    /// [default: $XDG_DATA_HOME/cloudd, else $HOME/.local/share/cloudd, else /var/lib/cloudd]
    #[arg(long, env = "CLOUDD_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// The admin socket `cloudctl` talks to (mode 0600; a lock file beside it keeps a second
    /// daemon off the same path)
    /// [default: $XDG_RUNTIME_DIR/cloudd/admin.sock, else /run/cloudd/admin.sock]
    #[arg(long, env = "CLOUDD_ADMIN_SOCKET", value_name = "PATH")]
    pub admin_socket: Option<PathBuf>,

    /// Also write logs to daily-rotated files in this directory
    #[arg(long, env = "CLOUDD_LOG_DIR", value_name = "DIR")]
    pub log_dir: Option<PathBuf>,

    /// Log line format [default: human]
    #[arg(long, env = "CLOUDD_LOG_FORMAT", value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,

    /// Log filter, RUST_LOG syntax (e.g. `info`, `cloudmesh=debug`); RUST_LOG is used when
    /// neither this nor CLOUDD_LOG is set [default: info]
    #[arg(long, env = "CLOUDD_LOG", value_name = "FILTER")]
    pub log: Option<String>,

    /// TOML configuration file; flags and environment override it
    #[arg(long, env = "CLOUDD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Largest frame payload accepted or sent, in bytes [default: 1048576]
    #[arg(long, env = "CLOUDD_MAX_FRAME", value_name = "BYTES")]
    pub max_frame: Option<usize>,

    /// Most clients served at once [default: 50000]
    #[arg(long, env = "CLOUDD_MAX_CLIENTS", value_name = "N")]
    pub max_clients: Option<u32>,

    /// Requests per second allowed per client; 0 = unlimited [default: 100000]
    #[arg(long, env = "CLOUDD_RATE_LIMIT", value_name = "PER_SEC")]
    pub rate_limit: Option<u32>,

    /// Bytes queued to one client before it is disconnected as a slow consumer
    /// [default: 16777216]
    #[arg(long, env = "CLOUDD_MAX_OUTBOUND_BYTES", value_name = "BYTES")]
    pub max_outbound_bytes: Option<usize>,

    /// Silence after which a connection counts as lost [default: 5s]
    #[arg(long, env = "CLOUDD_IDLE_TIMEOUT", value_name = "DURATION")]
    pub idle_timeout: Option<humantime::Duration>,

    /// Keep-alive interval; must be shorter than the idle timeout [default: 1s]
    #[arg(long, env = "CLOUDD_KEEP_ALIVE", value_name = "DURATION")]
    pub keep_alive: Option<humantime::Duration>,

    /// Join the mesh through this node: NAME[:PORT] or IP[:PORT], port 7946 by default; a
    /// name is resolved to all its A/AAAA records. Repeatable; CLOUDD_JOIN takes a
    /// comma-separated list. When nothing answers, this node starts the mesh
    /// [default: none, a single node]
    #[arg(long, env = "CLOUDD_JOIN", value_name = "NAME[:PORT]", value_delimiter = ',',
        value_parser = parse_join)]
    pub join: Vec<String>,

    /// File holding the mesh secret all nodes share (at least 16 bytes; one trailing
    /// newline is ignored). Instead, env CLOUDD_SECRET may hold the secret itself; there is
    /// no flag for that, because flags show in `ps`
    #[arg(long, env = "CLOUDD_SECRET_FILE", value_name = "FILE")]
    pub secret_file: Option<PathBuf>,

    /// Address peers should use to reach this node, internal first (e.g. behind NAT).
    /// Repeatable; CLOUDD_ADVERTISE takes a comma-separated list [default: the bound address]
    #[arg(long, env = "CLOUDD_ADVERTISE", value_name = "ADDR", value_delimiter = ',',
        value_parser = parse_addr)]
    pub advertise: Vec<SocketAddr>,

    /// Dynamic DNS: the zone's primary DNS server, IP[:PORT] (port 53 by default). With
    /// --dns-zone, --dns-name and --dns-tsig-key-file, the mesh host keeps --dns-name
    /// pointing at its advertised addresses by RFC 2136 updates signed with TSIG
    /// [default: none, dynamic DNS off]
    #[arg(long, env = "CLOUDD_DNS_SERVER", value_name = "IP[:PORT]", value_parser = parse_dns_server)]
    pub dns_server: Option<SocketAddr>,

    /// Dynamic DNS: the zone the record is in, e.g. example.com
    #[arg(long, env = "CLOUDD_DNS_ZONE", value_name = "ZONE")]
    pub dns_zone: Option<String>,

    /// Dynamic DNS: the record the host keeps current, usually the join name, e.g.
    /// mesh.example.com (in --dns-zone)
    #[arg(long, env = "CLOUDD_DNS_NAME", value_name = "NAME")]
    pub dns_name: Option<String>,

    /// Dynamic DNS: file holding the TSIG key the server allows to update the name, as
    /// `tsig-keygen -a hmac-sha256 NAME` writes it (or one line ALGORITHM:NAME:BASE64).
    /// There is no flag for the key itself, because flags show in `ps`
    #[arg(long, env = "CLOUDD_DNS_TSIG_KEY_FILE", value_name = "FILE")]
    pub dns_tsig_key_file: Option<PathBuf>,

    /// Dynamic DNS: publish the host's addresses only, or every Active node's
    /// [default: host]
    #[arg(long, env = "CLOUDD_DNS_PUBLISH", value_enum, value_name = "WHOSE")]
    pub dns_publish: Option<DnsPublish>,

    /// Graphite: send metrics in carbon's plaintext protocol to this listener, HOST:PORT
    /// (carbon's is usually port 2003) [default: none, no export]
    #[arg(long, env = "CLOUDD_GRAPHITE", value_name = "HOST:PORT")]
    pub graphite: Option<String>,

    /// Graphite: path prefix of every metric; characters Graphite paths cannot hold become
    /// `_` [default: cloudmesh.<node name>]
    #[arg(long, env = "CLOUDD_GRAPHITE_PREFIX", value_name = "PREFIX")]
    pub graphite_prefix: Option<String>,

    /// Graphite: how often metrics are sampled and sent [default: 10s]
    #[arg(long, env = "CLOUDD_GRAPHITE_INTERVAL", value_name = "DURATION")]
    pub graphite_interval: Option<humantime::Duration>,

    /// Validate the configuration, print the effective settings and exit
    #[arg(long)]
    pub check_config: bool,
}

/// Whose addresses the dynamic DNS record holds (flag form of [`Publish`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DnsPublish {
    /// The host's addresses only.
    Host,
    /// Every Active node's addresses (draining and drained nodes are left out).
    Active,
}

impl From<DnsPublish> for Publish {
    fn from(p: DnsPublish) -> Publish {
        match p {
            DnsPublish::Host => Publish::Host,
            DnsPublish::Active => Publish::Active,
        }
    }
}

/// The `[dns]` table of the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsFile {
    #[serde(default, deserialize_with = "dns_server")]
    server: Option<SocketAddr>,
    zone: Option<String>,
    name: Option<String>,
    tsig_key_file: Option<PathBuf>,
    publish: Option<Publish>,
    addresses: Option<AddressFilter>,
    ttl: Option<u32>,
    #[serde(default, deserialize_with = "duration")]
    recheck: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    max_backoff: Option<Duration>,
}

/// The `[graphite]` table of the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphiteFile {
    server: Option<String>,
    prefix: Option<String>,
    #[serde(default, deserialize_with = "duration")]
    interval: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    timeout: Option<Duration>,
    max_buffered: Option<usize>,
    #[serde(default, deserialize_with = "duration")]
    max_backoff: Option<Duration>,
}

/// Reads `IP` or `IP:PORT` (`[V6]:PORT`), port 53 when left out. Not a host name: the
/// daemon would need DNS to find its DNS server.
fn parse_dns_server(text: &str) -> Result<SocketAddr, String> {
    let t = text.trim();
    if let Ok(a) = t.parse::<SocketAddr>() {
        return Ok(a);
    }
    let bare = t
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(t);
    bare.parse::<std::net::IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| {
            format!(
                "{t:?} is not IP[:PORT] (e.g. 192.0.2.53, 192.0.2.53:5353, [2001:db8::53]:53); \
                 give the DNS server by address, not by name"
            )
        })
}

fn dns_server<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(d)?;
    parse_dns_server(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One readable line per event.
    Human,
    /// One JSON object per event, for log collectors.
    Json,
}

impl LogFormat {
    fn as_str(self) -> &'static str {
        match self {
            LogFormat::Human => "human",
            LogFormat::Json => "json",
        }
    }
}

/// The TOML file. Every field is optional; unknown keys are errors so typos are caught.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    listen: Option<SocketAddr>,
    name: Option<String>,
    data_dir: Option<PathBuf>,
    admin_socket: Option<PathBuf>,
    log_dir: Option<PathBuf>,
    log_format: Option<LogFormat>,
    log: Option<String>,
    max_frame: Option<usize>,
    max_clients: Option<u32>,
    rate_limit: Option<u32>,
    max_outbound_bytes: Option<usize>,
    #[serde(default, deserialize_with = "duration")]
    handshake_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    idle_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    keep_alive: Option<Duration>,
    limits: Option<StoreLimits>,
    #[serde(default)]
    filters: Vec<FilterRule>,
    #[serde(default)]
    classes: BTreeMap<String, ClassConfig>,
    #[serde(default)]
    join: Vec<String>,
    secret_file: Option<PathBuf>,
    #[serde(default)]
    advertise: Vec<SocketAddr>,
    placement: Option<cloudmesh::placement::Weights>,
    zones: Option<cloudmesh::placement::ZoneConfig>,
    #[serde(default, deserialize_with = "duration")]
    migration_timeout: Option<Duration>,
    drain_batch: Option<usize>,
    #[serde(default, deserialize_with = "duration")]
    rebalance_interval: Option<Duration>,
    rebalance_threshold: Option<f64>,
    rebalance_max_moves: Option<u32>,
    dns: Option<DnsFile>,
    graphite: Option<GraphiteFile>,
}

/// Checks the shape of a `--join` target; resolving it is the library's job. Spaces around
/// items are dropped, since `CLOUDD_JOIN="a, b"` is an easy thing to write.
fn parse_join(text: &str) -> Result<String, String> {
    let t = text.trim();
    let bad = |hint: &str| {
        Err(format!(
            "{t:?} is not NAME[:PORT] or IP[:PORT] (e.g. mesh.example.com, 10.0.0.5:7946, \
             [fd00::5]:7946){hint}"
        ))
    };
    if t.is_empty() {
        return bad("");
    }
    if t.chars().any(char::is_whitespace) {
        return bad(": no spaces inside");
    }
    if t.parse::<SocketAddr>().is_ok() {
        return Ok(t.to_owned());
    }
    // Without brackets, the last group of an IPv6 address would be read as a port.
    if t.parse::<Ipv6Addr>().is_ok() {
        return bad(": write an IPv6 address in brackets, [ADDR] or [ADDR]:PORT");
    }
    if let Some(inner) = t.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return match inner.parse::<Ipv6Addr>() {
            Ok(_) => Ok(t.to_owned()),
            Err(_) => bad(""),
        };
    }
    match t.rsplit_once(':') {
        Some((host, _)) if host.is_empty() || host.contains([':', '[', ']']) => bad(""),
        Some((_, port)) if port.parse::<u16>().is_err() => {
            bad(": the port is a number up to 65535")
        }
        _ => Ok(t.to_owned()),
    }
}

/// A socket address, with spaces around it dropped (for comma-separated lists).
fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    text.trim()
        .parse()
        .map_err(|e| format!("{text:?} is not IP:PORT: {e}"))
}

/// Reads a humantime string ("5s", "500ms", "1m 30s").
fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text).map(Some).map_err(|e| {
        serde::de::Error::custom(format!(
            "invalid duration {text:?}: {e} (write e.g. \"5s\" or \"500ms\")"
        ))
    })
}

impl FileConfig {
    /// Reads and parses `path`; errors name the file and, for syntax, the line.
    pub fn read(path: &Path) -> anyhow::Result<FileConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("config file {}", path.display()))
    }

    fn parse(text: &str) -> anyhow::Result<FileConfig> {
        let file: FileConfig = toml::from_str(text)?;
        for target in &file.join {
            if let Err(e) = parse_join(target) {
                bail!("join: {e}");
            }
        }
        Ok(file)
    }
}

/// Settings that come only from the environment, read once so `merge` stays testable.
#[derive(Debug, Default)]
pub struct Env {
    /// `RUST_LOG`, when set and not blank.
    pub rust_log: Option<String>,
    /// `CLOUDD_SECRET`, when set and not empty: the mesh secret itself.
    pub secret: Option<Vec<u8>>,
}

impl Env {
    fn read() -> Env {
        Env {
            rust_log: std::env::var("RUST_LOG")
                .ok()
                .filter(|s| !s.trim().is_empty()),
            // Bytes, not a String: a secret need not be UTF-8.
            secret: std::env::var_os("CLOUDD_SECRET")
                .map(OsString::into_vec)
                .filter(|v| !v.is_empty()),
        }
    }
}

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

/// Loads the mesh secret from the one place it was given, with warnings to log.
fn load_secret(
    file: Option<PathBuf>,
    env: Option<Vec<u8>>,
) -> anyhow::Result<(Option<MeshSecret>, SecretSource, Vec<String>)> {
    match (file, env) {
        (None, None) => Ok((None, SecretSource::None, Vec::new())),
        (Some(path), Some(_)) => bail!(
            "the mesh secret is given twice, as file {} (--secret-file, CLOUDD_SECRET_FILE or \
             secret_file) and in CLOUDD_SECRET; give only one",
            path.display()
        ),
        (None, Some(bytes)) => {
            let secret = MeshSecret::new(bytes).context("CLOUDD_SECRET")?;
            Ok((Some(secret), SecretSource::Env, Vec::new()))
        }
        (Some(path), None) => {
            // The library's error names the path.
            let secret = MeshSecret::from_file(&path)?;
            let mut warnings = Vec::new();
            // Readable by others means anyone on the machine could join the mesh.
            if let Ok(meta) = std::fs::metadata(&path) {
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    warnings.push(format!(
                        "mesh secret file {} is open to group or others (mode {mode:03o}); \
                         restrict it with `chmod 600 {}`",
                        path.display(),
                        path.display()
                    ));
                }
            }
            Ok((Some(secret), SecretSource::File(path), warnings))
        }
    }
}

/// Logging settings.
#[derive(Debug, Clone)]
pub struct LogSettings {
    /// RUST_LOG-style filter.
    pub filter: String,
    /// Where the filter came from, for error messages.
    pub filter_source: &'static str,
    /// Line format.
    pub format: LogFormat,
    /// Directory for rotated files, if any.
    pub dir: Option<PathBuf>,
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
    /// The file read, if any.
    pub file: Option<PathBuf>,
    /// Where the mesh secret came from.
    pub secret_source: SecretSource,
    /// Dynamic DNS, when configured.
    pub dns: Option<DnsConfig>,
    /// The TSIG key file dynamic DNS uses, for `--check-config`.
    pub dns_key_file: Option<PathBuf>,
    /// Metrics export to Graphite, when configured.
    pub graphite: Option<GraphiteConfig>,
    /// Problems worth logging that do not stop the node.
    pub warnings: Vec<String>,
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

/// Merges flags/environment over the file over defaults, and checks the result.
pub fn load(cli: Cli) -> anyhow::Result<Settings> {
    let file = match &cli.config {
        Some(path) => FileConfig::read(path)?,
        None => FileConfig::default(),
    };
    merge(cli, file, Env::read())
}

fn merge(cli: Cli, file: FileConfig, env: Env) -> anyhow::Result<Settings> {
    let data_dir = cli
        .data_dir
        .or(file.data_dir)
        .unwrap_or_else(default_data_dir);
    let mut node = NodeConfig::new(data_dir);
    if let Some(listen) = cli.listen.or(file.listen) {
        node.listen = listen;
    }
    node.name = cli.name.or(file.name).unwrap_or_else(default_name);
    if let Some(v) = cli.max_frame.or(file.max_frame) {
        node.max_frame = v;
    }
    if let Some(v) = cli.max_clients.or(file.max_clients) {
        node.max_clients = v;
    }
    if let Some(v) = cli.rate_limit.or(file.rate_limit) {
        node.rate_limit = v;
    }
    if let Some(v) = cli.max_outbound_bytes.or(file.max_outbound_bytes) {
        node.max_outbound_bytes = v;
    }
    if let Some(v) = file.handshake_timeout {
        node.handshake_timeout = v;
    }
    if let Some(v) = cli.idle_timeout.map(Into::into).or(file.idle_timeout) {
        node.timing.idle_timeout = v;
    }
    if let Some(v) = cli.keep_alive.map(Into::into).or(file.keep_alive) {
        node.timing.keep_alive = v;
    }
    if let Some(v) = file.placement {
        node.placement = v;
    }
    if file.zones.is_some() {
        node.zones = file.zones;
    }
    if let Some(v) = file.migration_timeout {
        node.migration_timeout = v;
    }
    if let Some(v) = file.drain_batch {
        node.drain_batch = v;
    }
    if let Some(v) = file.rebalance_interval {
        node.rebalance_interval = v;
    }
    if let Some(v) = file.rebalance_threshold {
        node.rebalance_threshold = v;
    }
    if let Some(v) = file.rebalance_max_moves {
        node.rebalance_max_moves = v;
    }
    if let Some(limits) = file.limits {
        node.limits = limits;
    }
    node.filters = file.filters;
    node.classes = file.classes;
    // Lists replace rather than extend: flags or environment override the file as a whole.
    node.join = if cli.join.is_empty() {
        file.join
    } else {
        cli.join
    };
    node.advertise = if cli.advertise.is_empty() {
        file.advertise
    } else {
        cli.advertise
    };
    let (secret, secret_source, mut warnings) =
        load_secret(cli.secret_file.or(file.secret_file), env.secret)?;
    node.secret = secret;
    // With no --advertise a node bound to every interface is reached at the IP its peers
    // see its links come from; right on a flat network, wrong behind NAT or with several
    // interfaces, so remind the operator.
    let meshed = node.secret.is_some() || !node.join.is_empty();
    if meshed && node.advertise.is_empty() && node.listen.ip().is_unspecified() {
        warnings.push(format!(
            "listening on {} (every interface) without --advertise: peers will reach this \
             node at the address they see its connections come from; give --advertise with \
             this machine's address (internal first) if that is not reachable (NAT, several \
             interfaces)",
            node.listen
        ));
    }
    if node.handshake_timeout.is_zero() {
        bail!("handshake_timeout must be longer than zero");
    }
    node.validate()?;
    let dns_flags = DnsFlags {
        server: cli.dns_server,
        zone: cli.dns_zone,
        name: cli.dns_name,
        key_file: cli.dns_tsig_key_file,
        publish: cli.dns_publish,
    };
    let (dns, dns_key_file) = load_dns(dns_flags, file.dns, &mut warnings)?;
    let graphite = load_graphite(
        cli.graphite,
        cli.graphite_prefix,
        cli.graphite_interval.map(Into::into),
        file.graphite,
        &node.name,
    )?;

    let (filter, filter_source) = match (cli.log, env.rust_log, file.log) {
        (Some(f), _, _) => (f, "--log / CLOUDD_LOG"),
        (None, Some(f), _) => (f, "RUST_LOG"),
        (None, None, Some(f)) => (f, "the config file's `log`"),
        (None, None, None) => ("info".to_owned(), "the default"),
    };
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&filter) {
        bail!("invalid log filter {filter:?} (from {filter_source}): {e}");
    }
    let log = LogSettings {
        filter,
        filter_source,
        format: cli
            .log_format
            .or(file.log_format)
            .unwrap_or(LogFormat::Human),
        dir: cli.log_dir.or(file.log_dir),
    };
    Ok(Settings {
        node,
        log,
        admin_socket: cli
            .admin_socket
            .or(file.admin_socket)
            .unwrap_or_else(cloudmesh::admin::default_socket_path),
        file: cli.config,
        secret_source,
        dns,
        dns_key_file,
        graphite,
        warnings,
    })
}

/// Graphite export: off when no server is given (flag, env or `[graphite] server`); other
/// graphite settings without a server are refused rather than silently ignored.
fn load_graphite(
    server: Option<String>,
    prefix: Option<String>,
    interval: Option<Duration>,
    file: Option<GraphiteFile>,
    node_name: &str,
) -> anyhow::Result<Option<GraphiteConfig>> {
    let given = prefix.is_some() || interval.is_some() || file.is_some();
    let file = file.unwrap_or_default();
    let Some(server) = server.or(file.server) else {
        if given {
            bail!(
                "graphite settings without a server: give --graphite HOST:PORT (or [graphite] \
                 server), or drop the other graphite settings"
            );
        }
        return Ok(None);
    };
    let prefix = prefix
        .or(file.prefix)
        .unwrap_or_else(|| cloudmesh::metrics::default_prefix(node_name));
    let mut cfg = GraphiteConfig::new(&server, &prefix)?;
    if let Some(v) = interval.or(file.interval) {
        cfg.interval = v;
    }
    if let Some(v) = file.timeout {
        cfg.timeout = v;
    }
    if let Some(v) = file.max_buffered {
        cfg.max_buffered = v;
    }
    if let Some(v) = file.max_backoff {
        cfg.max_backoff = v;
    }
    cfg.validate()?;
    Ok(Some(cfg))
}

/// The dynamic DNS flags (each also from its `CLOUDD_DNS_*` variable).
struct DnsFlags {
    server: Option<SocketAddr>,
    zone: Option<String>,
    name: Option<String>,
    key_file: Option<PathBuf>,
    publish: Option<DnsPublish>,
}

/// Dynamic DNS settings: off when neither flags nor a `[dns]` table say anything; with
/// any of them, server, zone, name and key file are all required.
fn load_dns(
    flags: DnsFlags,
    file: Option<DnsFile>,
    warnings: &mut Vec<String>,
) -> anyhow::Result<(Option<DnsConfig>, Option<PathBuf>)> {
    let any_flag = flags.server.is_some()
        || flags.zone.is_some()
        || flags.name.is_some()
        || flags.key_file.is_some()
        || flags.publish.is_some();
    if !any_flag && file.is_none() {
        return Ok((None, None));
    }
    let file = file.unwrap_or_default();
    let server = flags.server.or(file.server);
    let zone = flags.zone.or(file.zone);
    let name = flags.name.or(file.name);
    let key_file = flags.key_file.or(file.tsig_key_file);
    let mut missing = Vec::new();
    if server.is_none() {
        missing.push("the server (--dns-server or [dns] server)");
    }
    if zone.is_none() {
        missing.push("the zone (--dns-zone or [dns] zone)");
    }
    if name.is_none() {
        missing.push("the record name (--dns-name or [dns] name)");
    }
    if key_file.is_none() {
        missing.push("the TSIG key file (--dns-tsig-key-file or [dns] tsig_key_file)");
    }
    let (Some(server), Some(zone), Some(name), Some(key_file)) = (server, zone, name, key_file)
    else {
        bail!(
            "dynamic DNS is half configured: missing {}; give all four, or none to turn it off",
            missing.join(", ")
        );
    };
    let zone = Name::parse(&zone).context("dns zone")?;
    let name = Name::parse(&name).context("dns name")?;
    // The library's error names the file and the expected format.
    let key = TsigKey::from_file(&key_file)?;
    // Readable by others means anyone on the machine could rewrite the zone's records.
    if let Ok(meta) = std::fs::metadata(&key_file) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            warnings.push(format!(
                "DNS TSIG key file {} is open to group or others (mode {mode:03o}); \
                 restrict it with `chmod 600 {}`",
                key_file.display(),
                key_file.display()
            ));
        }
    }
    let mut dns = DnsConfig::new(server, zone, name, key)?;
    if let Some(p) = flags.publish.map(Publish::from).or(file.publish) {
        dns.publish = p;
    }
    if let Some(a) = file.addresses {
        dns.addresses = a;
    }
    if let Some(v) = file.ttl {
        dns.ttl = v;
    }
    if let Some(v) = file.recheck {
        dns.recheck = v;
    }
    if let Some(v) = file.timeout {
        dns.timeout = v;
    }
    if let Some(v) = file.max_backoff {
        dns.max_backoff = v;
    }
    dns.validate()?;
    Ok((Some(dns), Some(key_file)))
}

impl Settings {
    /// The effective settings, for `--check-config`.
    pub fn summary(&self) -> String {
        let n = &self.node;
        let l = &n.limits;
        let mut s = String::new();
        // Writing to a String cannot fail.
        let _ = writeln!(
            s,
            "configuration OK ({})",
            match &self.file {
                Some(p) => format!("file {}", p.display()),
                None => "no config file".to_owned(),
            }
        );
        let mut line = |k: &str, v: String| {
            let _ = writeln!(s, "  {k:<26} {v}");
        };
        line("listen", n.listen.to_string());
        line("name", n.name.clone());
        line("data_dir", n.data_dir.display().to_string());
        line("admin_socket", self.admin_socket.display().to_string());
        line(
            "log",
            format!("{} ({})", self.log.filter, self.log.format.as_str()),
        );
        line(
            "log_dir",
            self.log
                .dir
                .as_ref()
                .map_or("(stderr only)".to_owned(), |d| d.display().to_string()),
        );
        line("max_frame", n.max_frame.to_string());
        line("max_clients", n.max_clients.to_string());
        line("rate_limit", n.rate_limit.to_string());
        line("max_outbound_bytes", n.max_outbound_bytes.to_string());
        line(
            "handshake_timeout",
            humantime::format_duration(n.handshake_timeout).to_string(),
        );
        line(
            "idle_timeout",
            humantime::format_duration(n.timing.idle_timeout).to_string(),
        );
        line(
            "keep_alive",
            humantime::format_duration(n.timing.keep_alive).to_string(),
        );
        line(
            "join",
            if n.join.is_empty() {
                "(none: a single node, or the first of a mesh)".to_owned()
            } else {
                n.join.join(", ")
            },
        );
        line(
            "advertise",
            if n.advertise.is_empty() {
                "(the bound address)".to_owned()
            } else {
                list(&n.advertise)
            },
        );
        // Never the secret itself: this output ends up in tickets and chat.
        line(
            "secret",
            match &self.secret_source {
                SecretSource::None => "not set".to_owned(),
                SecretSource::File(p) => format!("set (from {})", p.display()),
                SecretSource::Env => "set (from CLOUDD_SECRET)".to_owned(),
            },
        );
        match (&self.dns, &self.dns_key_file) {
            (Some(d), Some(key_file)) => {
                line(
                    "dns",
                    format!("{} in zone {} via {}", d.name, d.zone, d.server),
                );
                // The key's name and file, never its secret.
                line(
                    "dns.tsig_key",
                    format!(
                        "{} ({}, from {})",
                        d.key.name(),
                        d.key.algorithm(),
                        key_file.display()
                    ),
                );
                line(
                    "dns.publish",
                    format!(
                        "{} (addresses {})",
                        d.publish.as_str(),
                        d.addresses.as_str()
                    ),
                );
                line(
                    "dns.ttl / recheck",
                    format!("{} s / {}", d.ttl, humantime::format_duration(d.recheck)),
                );
            }
            _ => line("dns", "off".to_owned()),
        }
        line(
            "graphite",
            self.graphite.as_ref().map_or("off".to_owned(), |g| {
                format!(
                    "{} as {}.* every {}",
                    g.server,
                    g.prefix,
                    humantime::format_duration(g.interval)
                )
            }),
        );
        line("limits.max_row_bytes", l.max_row_bytes.to_string());
        line("limits.max_client_bytes", l.max_client_bytes.to_string());
        line("limits.max_get_bytes", l.max_get_bytes.to_string());
        line("limits.max_get_rows", l.max_get_rows.to_string());
        line(
            "limits.max_keys_per_query",
            l.max_keys_per_query.to_string(),
        );
        line(
            "limits.max_owners_per_query",
            l.max_owners_per_query.to_string(),
        );
        line(
            "limits.max_subscription_owners",
            l.max_subscription_owners.to_string(),
        );
        line("limits.max_subscriptions", l.max_subscriptions.to_string());
        line("limits.max_session_bytes", l.max_session_bytes.to_string());
        line("filters", format!("{} rule(s)", n.filters.len()));
        line(
            "classes",
            if n.classes.is_empty() {
                "(only `default`)".to_owned()
            } else {
                n.classes
                    .iter()
                    .map(|(name, c)| {
                        let token = if c.token.is_some() { " (token)" } else { "" };
                        format!("{name}{token}")
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        );
        for w in &self.warnings {
            let _ = writeln!(s, "warning: {w}");
        }
        s
    }
}

fn list(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../assets/cloudd.example.toml");

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("cloudd").chain(args.iter().copied()))
            .expect("test arguments parse")
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

    /// A secret file with `mode` in a fresh directory (kept alive by the returned guard).
    fn secret_file(mode: u32) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("mesh.secret");
        std::fs::write(&path, "0123456789abcdef0123456789abcdef\n").expect("write secret");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        (dir, path)
    }

    /// A TSIG key file with `mode` in a fresh directory (kept alive by the returned guard).
    fn key_file(mode: u32) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("dns.key");
        std::fs::write(
            &path,
            "key \"cloudd\" {\n\talgorithm hmac-sha256;\n\tsecret \"c2VjcmV0LXNlY3JldA==\";\n};\n",
        )
        .expect("write key");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        (dir, path)
    }

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

    #[test]
    fn example_parses_commented_and_uncommented() {
        FileConfig::parse(EXAMPLE).expect("example parses as shipped");
        let text = example_uncommented();
        let mut file = FileConfig::parse(&text).expect("every example setting parses");
        assert!(file.listen.is_some() && file.limits.is_some() && file.keep_alive.is_some());
        assert!(!file.filters.is_empty() && !file.classes.is_empty());
        assert!(!file.join.is_empty() && !file.advertise.is_empty());
        // The example's secret file does not exist here (loading one is tested below), but
        // its `join` needs a secret.
        assert!(file.secret_file.take().is_some());
        // Likewise the example's TSIG key file.
        let (_key_dir, key_path) = key_file(0o600);
        let dns = file.dns.as_mut().expect("the example has a [dns] table");
        assert!(dns.tsig_key_file.replace(key_path).is_some());
        let s = merge(cli(&[]), file, secret_env("sixteen-bytes-or-more"))
            .expect("example settings are valid");
        let dns = s.dns.as_ref().expect("dns on");
        let d = DnsConfig::new(
            dns.server,
            dns.zone.clone(),
            dns.name.clone(),
            dns.key.clone(),
        )
        .expect("valid");
        assert_eq!(
            (
                dns.publish,
                dns.addresses,
                dns.ttl,
                dns.recheck,
                dns.timeout,
                dns.max_backoff
            ),
            (
                d.publish,
                d.addresses,
                d.ttl,
                d.recheck,
                d.timeout,
                d.max_backoff
            ),
            "the example shows the dns defaults"
        );
        let g = s
            .graphite
            .as_ref()
            .expect("the example has a [graphite] table");
        let want = GraphiteConfig::new(&g.server, &g.prefix).expect("valid");
        assert_eq!(g, &want, "the example shows the graphite defaults");
        // The example shows the defaults; keep it honest.
        let d = NodeConfig::new("/x");
        assert_eq!(s.node.listen, d.listen);
        assert_eq!(s.node.max_frame, d.max_frame);
        assert_eq!(s.node.max_clients, d.max_clients);
        assert_eq!(s.node.rate_limit, d.rate_limit);
        assert_eq!(s.node.max_outbound_bytes, d.max_outbound_bytes);
        assert_eq!(s.node.handshake_timeout, d.handshake_timeout);
        assert_eq!(s.node.timing, d.timing);
        assert_eq!(s.node.limits, d.limits);
        assert_eq!(s.node.placement, d.placement);
        assert_eq!(
            s.node.zones,
            Some(cloudmesh::placement::ZoneConfig::default())
        );
        assert_eq!(s.node.migration_timeout, d.migration_timeout);
        assert_eq!(s.node.drain_batch, d.drain_batch);
        assert_eq!(s.node.rebalance_interval, d.rebalance_interval);
        assert_eq!(s.node.rebalance_threshold, d.rebalance_threshold);
        assert_eq!(s.node.rebalance_max_moves, d.rebalance_max_moves);
        assert_eq!(s.log.format, LogFormat::Human);
        assert_eq!(s.log.filter, "info");
    }

    #[test]
    fn flags_beat_file_beat_defaults() {
        let file = FileConfig::parse(
            "name = \"from-file\"\nlisten = \"127.0.0.1:9000\"\nlog = \"debug\"\nkeep_alive = \"2s\"\n",
        )
        .expect("parses");
        let s = merge(cli(&["--name", "from-flag"]), file, Env::default()).expect("valid");
        assert_eq!(s.node.name, "from-flag");
        assert_eq!(s.node.listen.to_string(), "127.0.0.1:9000");
        assert_eq!(s.node.timing.keep_alive, Duration::from_secs(2));
        assert_eq!(s.log.filter, "debug");
        // RUST_LOG is environment, so it beats the file but not --log.
        let s = merge(
            cli(&[]),
            FileConfig::parse("log = \"debug\"").expect("parses"),
            rust_log("warn"),
        )
        .expect("valid");
        assert_eq!(s.log.filter, "warn");
        let s = merge(
            cli(&["--log", "error"]),
            FileConfig::default(),
            rust_log("warn"),
        )
        .expect("valid");
        assert_eq!(s.log.filter, "error");
    }

    #[test]
    fn mesh_settings_merge_and_the_secret_is_never_shown() {
        let file = FileConfig::parse(
            "join = [\"mesh.example.com\", \"10.0.0.5:7946\"]\nadvertise = [\"10.0.0.9:7946\"]\n",
        )
        .expect("parses");
        let s = merge(cli(&[]), file, secret_env("from-the-environment!")).expect("valid");
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

        // Flags replace the file's lists as a whole; a comma list splits.
        let file = FileConfig::parse("join = [\"a.example.com\"]").expect("parses");
        let s = merge(
            cli(&[
                "--join",
                "b.example.com:7000, 10.1.1.1",
                "--join",
                "[::1]:7946,[fd00::5]",
                "--advertise",
                "10.0.0.1:7946,192.0.2.1:7946",
            ]),
            file,
            secret_env("sixteen-bytes-or-more"),
        )
        .expect("valid");
        assert_eq!(
            s.node.join,
            ["b.example.com:7000", "10.1.1.1", "[::1]:7946", "[fd00::5]"]
        );
        assert_eq!(
            list(&s.node.advertise),
            "10.0.0.1:7946, 192.0.2.1:7946",
            "internal first, in the order given"
        );
        let s = merge(cli(&[]), FileConfig::default(), Env::default()).expect("valid");
        assert_eq!(s.secret_source, SecretSource::None);
        assert!(s.summary().contains("secret                     not set"));
        // Joining without a secret is the library's call; its message names the remedy.
        let e = merge(
            cli(&["--join", "10.0.0.5"]),
            FileConfig::default(),
            Env::default(),
        )
        .expect_err("join needs a secret");
        assert!(format!("{e:#}").contains("--secret-file"), "{e:#}");

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
        let e = FileConfig::parse("join = [\"x:y\"]").expect_err("bad join in file");
        assert!(format!("{e:#}").contains("x:y"), "{e:#}");
    }

    #[test]
    fn secret_file_is_loaded_checked_and_exclusive() {
        let (_dir, path) = secret_file(0o600);
        let p = path.to_str().expect("UTF-8 path");
        let local = ["--secret-file", p, "--listen", "10.0.0.5:7946"];
        let s = merge(cli(&local), FileConfig::default(), Env::default()).expect("valid");
        assert!(s.node.secret.is_some());
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
        let summary = s.summary();
        assert!(summary.contains(&format!("set (from {p})")), "{summary}");
        assert!(!summary.contains("0123456789abcdef"), "{summary}");

        let e = merge(
            cli(&["--secret-file", p]),
            FileConfig::default(),
            secret_env("another-secret-entirely"),
        )
        .expect_err("two secrets");
        let msg = format!("{e:#}");
        assert!(msg.contains("CLOUDD_SECRET") && msg.contains(p), "{msg}");

        let (_dir, open) = secret_file(0o644);
        let s = merge(
            cli(&[
                "--secret-file",
                open.to_str().expect("UTF-8 path"),
                "--advertise",
                "10.0.0.5:7946",
            ]),
            FileConfig::default(),
            Env::default(),
        )
        .expect("a loose mode warns but works");
        assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
        assert!(s.warnings[0].contains("chmod 600"), "{:?}", s.warnings);
        assert!(s.summary().contains("warning: "));

        // Bound to every interface with nothing to advertise, peers elsewhere are lost.
        let s = merge(
            cli(&["--secret-file", p]),
            FileConfig::default(),
            Env::default(),
        )
        .expect("valid");
        assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
        assert!(s.warnings[0].contains("--advertise"), "{:?}", s.warnings);
        let s = merge(cli(&[]), FileConfig::default(), Env::default()).expect("valid");
        assert!(
            s.warnings.is_empty(),
            "a single node needs no address: {:?}",
            s.warnings
        );

        let dir = tempfile::tempdir().expect("temp dir");
        let short = dir.path().join("short.secret");
        std::fs::write(&short, "too short\n").expect("write");
        let short = short.to_str().expect("UTF-8 path");
        let e = merge(
            cli(&["--secret-file", short]),
            FileConfig::default(),
            Env::default(),
        )
        .expect_err("short secret");
        assert!(format!("{e:#}").contains(short), "names the file: {e:#}");
        let e = merge(cli(&[]), FileConfig::default(), secret_env("short"))
            .expect_err("short secret in the environment");
        assert!(format!("{e:#}").contains("CLOUDD_SECRET"), "{e:#}");
    }

    #[test]
    fn dns_is_off_whole_or_refused() {
        let s = merge(cli(&[]), FileConfig::default(), Env::default()).expect("valid");
        assert!(s.dns.is_none());
        assert!(s.summary().contains("dns                        off"));

        let (_dir, key) = key_file(0o600);
        let k = key.to_str().expect("UTF-8 path");
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
        let s = merge(cli(&full), FileConfig::default(), Env::default()).expect("valid");
        let d = s.dns.as_ref().expect("dns on");
        assert_eq!(d.name.to_string(), "mesh.example.com.");
        assert_eq!(d.publish, Publish::Host);
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
        let summary = s.summary();
        assert!(summary.contains("mesh.example.com. in zone example.com. via 127.0.0.1:5353"));
        assert!(summary.contains("cloudd. (hmac-sha256, from "), "{summary}");
        assert!(!summary.contains("c2VjcmV0"), "never the secret: {summary}");

        // The file fills in what flags leave out; flags win; port 53 by default.
        let file = FileConfig::parse(&format!(
            "[dns]\nserver = \"192.0.2.53\"\nzone = \"example.com\"\nname = \"m.example.com\"\n\
             tsig_key_file = \"{k}\"\npublish = \"active\"\naddresses = \"public\"\nttl = 60\n\
             recheck = \"5s\"\n"
        ))
        .expect("parses");
        let s = merge(cli(&["--dns-publish", "host"]), file, Env::default()).expect("valid");
        let d = s.dns.as_ref().expect("dns on");
        assert_eq!(d.server.to_string(), "192.0.2.53:53");
        assert_eq!(
            (d.publish, d.addresses, d.ttl),
            (Publish::Host, AddressFilter::Public, 60)
        );
        assert_eq!(d.recheck, Duration::from_secs(5));

        let e = merge(
            cli(&["--dns-server", "127.0.0.1", "--dns-name", "m.example.com"]),
            FileConfig::default(),
            Env::default(),
        )
        .expect_err("half configured");
        let msg = format!("{e:#}");
        assert!(
            msg.contains("--dns-zone") && msg.contains("--dns-tsig-key-file"),
            "{msg}"
        );
        assert!(!msg.contains("--dns-name"), "{msg}");

        let mut outside = full;
        outside[5] = "mesh.example.org";
        let e = merge(cli(&outside), FileConfig::default(), Env::default())
            .expect_err("name outside the zone");
        assert!(format!("{e:#}").contains("not in dns zone"), "{e:#}");

        let mut missing = full;
        missing[7] = "/nonexistent/dns.key";
        let e =
            merge(cli(&missing), FileConfig::default(), Env::default()).expect_err("no key file");
        assert!(format!("{e:#}").contains("/nonexistent/dns.key"), "{e:#}");

        let (_dir2, open) = key_file(0o644);
        let mut loose = full;
        loose[7] = open.to_str().expect("UTF-8 path");
        let s = merge(cli(&loose), FileConfig::default(), Env::default()).expect("valid");
        assert!(
            s.warnings.iter().any(|w| w.contains("chmod 600")),
            "{:?}",
            s.warnings
        );

        assert!(Cli::try_parse_from(["cloudd", "--dns-server", "ns.example.com"]).is_err());
        let e = FileConfig::parse("[dns]\nserver = \"ns1\"").expect_err("bad server");
        assert!(format!("{e:#}").contains("by address"), "{e:#}");
        let e = FileConfig::parse("[dns]\nttl = \"30s\"").expect_err("ttl is seconds");
        assert!(format!("{e:#}").contains("ttl"), "{e:#}");
    }

    #[test]
    fn graphite_is_off_or_complete() {
        let env = || Env::default();
        let s = merge(cli(&["--name", "eu.node 1"]), FileConfig::default(), env()).expect("ok");
        assert!(s.graphite.is_none());
        assert!(s.summary().contains("graphite                   off"));

        let s = merge(
            cli(&["--name", "eu.node 1", "--graphite", "127.0.0.1:2003"]),
            FileConfig::default(),
            env(),
        )
        .expect("ok");
        let g = s.graphite.expect("on");
        assert_eq!(g.prefix, "cloudmesh.eu_node_1");
        assert_eq!(g.interval, Duration::from_secs(10));

        let file = FileConfig::parse(
            "[graphite]\nserver = \"graphite.lan:2003\"\nprefix = \"games.eu\"\n\
             interval = \"5s\"\nmax_buffered = 100\n",
        )
        .expect("parses");
        let s = merge(cli(&["--graphite-interval", "1s"]), file, env()).expect("ok");
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
            .contains("graphite.lan:2003 as games.eu.* every 1s"));

        let e = merge(
            cli(&["--graphite-prefix", "x"]),
            FileConfig::default(),
            env(),
        )
        .expect_err("prefix without server");
        assert!(format!("{e:#}").contains("--graphite HOST:PORT"), "{e:#}");
        let e = merge(cli(&["--graphite", "nohost"]), FileConfig::default(), env())
            .expect_err("bad server");
        assert!(format!("{e:#}").contains("HOST:PORT"), "{e:#}");
        let file =
            FileConfig::parse("[graphite]\nserver = \"h:1\"\nmax_buffered = 0\n").expect("parses");
        let e = merge(cli(&[]), file, env()).expect_err("zero buffer");
        assert!(format!("{e:#}").contains("max_buffered"), "{e:#}");
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let e = FileConfig::parse("lisen = \"0.0.0.0:1\"").expect_err("typo");
        assert!(format!("{e:#}").contains("lisen"), "{e:#}");
        let e = FileConfig::parse("[limits]\nmax_rows = 3").expect_err("typo in table");
        assert!(format!("{e:#}").contains("max_rows"), "{e:#}");
        let e = FileConfig::parse("idle_timeout = \"five\"").expect_err("bad duration");
        assert!(format!("{e:#}").contains("invalid duration"), "{e:#}");
        let file = FileConfig::parse("idle_timeout = \"1s\"").expect("parses");
        let e =
            merge(cli(&[]), file, Env::default()).expect_err("keep-alive not below idle timeout");
        assert!(format!("{e:#}").contains("keep_alive"), "{e:#}");
        let e = merge(
            cli(&["--log", "=nonsense=="]),
            FileConfig::default(),
            Env::default(),
        )
        .expect_err("bad filter");
        assert!(format!("{e:#}").contains("log filter"), "{e:#}");
    }
}
