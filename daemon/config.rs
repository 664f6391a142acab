//! `cloudd`'s settings: command-line flags (each also from a `CLOUDD_*` variable), an
//! optional TOML file, and built-in defaults, merged in that order of precedence.
//!
//! Every flag is an `Option` without a clap default, so "not given" can be told apart from
//! "given the default value" and the file can fill in what the command line left out.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use cloudmesh::config::{default_name, ClassConfig};
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

    /// Validate the configuration, print the effective settings and exit
    #[arg(long)]
    pub check_config: bool,
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
        Ok(toml::from_str(text)?)
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
    /// The file read, if any.
    pub file: Option<PathBuf>,
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
    let rust_log = std::env::var("RUST_LOG")
        .ok()
        .filter(|s| !s.trim().is_empty());
    merge(cli, file, rust_log)
}

fn merge(cli: Cli, file: FileConfig, rust_log: Option<String>) -> anyhow::Result<Settings> {
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
    if let Some(limits) = file.limits {
        node.limits = limits;
    }
    node.filters = file.filters;
    node.classes = file.classes;
    if node.handshake_timeout.is_zero() {
        bail!("handshake_timeout must be longer than zero");
    }
    node.validate()?;

    let (filter, filter_source) = match (cli.log, rust_log, file.log) {
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
        file: cli.config,
    })
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
        line("limits.max_row_bytes", l.max_row_bytes.to_string());
        line("limits.max_client_bytes", l.max_client_bytes.to_string());
        line("limits.max_get_bytes", l.max_get_bytes.to_string());
        line("limits.max_get_rows", l.max_get_rows.to_string());
        line(
            "limits.max_keys_per_query",
            l.max_keys_per_query.to_string(),
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
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../assets/cloudd.example.toml");

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("cloudd").chain(args.iter().copied()))
            .expect("test arguments parse")
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
        let file = FileConfig::parse(&text).expect("every example setting parses");
        assert!(file.listen.is_some() && file.limits.is_some() && file.keep_alive.is_some());
        assert!(!file.filters.is_empty() && !file.classes.is_empty());
        let s = merge(cli(&[]), file, None).expect("example settings are valid");
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
        assert_eq!(s.log.format, LogFormat::Human);
        assert_eq!(s.log.filter, "info");
    }

    #[test]
    fn flags_beat_file_beat_defaults() {
        let file = FileConfig::parse(
            "name = \"from-file\"\nlisten = \"127.0.0.1:9000\"\nlog = \"debug\"\nkeep_alive = \"2s\"\n",
        )
        .expect("parses");
        let s = merge(cli(&["--name", "from-flag"]), file, None).expect("valid");
        assert_eq!(s.node.name, "from-flag");
        assert_eq!(s.node.listen.to_string(), "127.0.0.1:9000");
        assert_eq!(s.node.timing.keep_alive, Duration::from_secs(2));
        assert_eq!(s.log.filter, "debug");
        // RUST_LOG is environment, so it beats the file but not --log.
        let s = merge(
            cli(&[]),
            FileConfig::parse("log = \"debug\"").expect("parses"),
            Some("warn".into()),
        )
        .expect("valid");
        assert_eq!(s.log.filter, "warn");
        let s = merge(
            cli(&["--log", "error"]),
            FileConfig::default(),
            Some("warn".into()),
        )
        .expect("valid");
        assert_eq!(s.log.filter, "error");
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
        let e = merge(cli(&[]), file, None).expect_err("keep-alive not below idle timeout");
        assert!(format!("{e:#}").contains("keep_alive"), "{e:#}");
        let e = merge(cli(&["--log", "=nonsense=="]), FileConfig::default(), None)
            .expect_err("bad filter");
        assert!(format!("{e:#}").contains("log filter"), "{e:#}");
    }
}
