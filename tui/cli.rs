//! `cloudctl`'s command line. Each verb is a variant of [`Command`] with its own args
//! struct; options shared by the mesh-client verbs live in [`ConnectArgs`].

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use cloudmesh::proto::{ClientId, Key, KeySpec};

/// The `cloudctl` command line.
#[derive(Debug, Parser)]
#[command(
    name = "cloudctl",
    version,
    about = "Operate and use a cloudmesh",
    long_about = "Operate and use a cloudmesh.\n\n\
        Exit codes: 0 success, 1 operational error (node unreachable or refused, connection \
        closed), 2 usage error."
)]
pub struct Cli {
    /// Machine-readable output: one JSON object per line
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Post a row and hold it while connected (a row lives only while its client is).
    #[command(long_about = "Post a row and hold it while connected.\n\n\
        A row lives only while its client is connected, so `post` stays connected until \
        Ctrl-C (or SIGTERM), until --hold expires, or until the node closes the connection \
        (then it says why and exits 1).\n\n\
        Output: `posted KEY version V as client ID on node NAME`; with --json one line \
        {\"key\":\"players/3\",\"version\":17,\"client\":\"<16 hex>\",\"node\":\"<name>\"}.")]
    Post(PostArgs),
    /// Read rows from the mesh.
    #[command(long_about = "Read rows from the mesh.\n\n\
        Prints a table KEY, OWNER, NODE (first 8 hex digits of the node id), VERSION, DATA. \
        Data is shown as text when it is printable UTF-8, else as 0x-prefixed hex; long data \
        is cut in the table (use --json for all of it). With no matching rows, prints \
        `no rows` to stderr and exits 0.\n\n\
        With --json, one object per row per line:\n  \
        {\"key\":\"players/3\",\"primary\":\"players\",\"secondary\":3,\
        \"owner\":\"<16 hex>\",\"node\":\"<32 hex>\",\"version\":17,\
        \"updated_at_ms\":<ms since Unix epoch, node clock>,\
        \"data\":\"<the data as a string, or null when not UTF-8>\",\
        \"data_hex\":\"<the data in hex>\"}\n\
        Nodes that did not answer are listed on stderr (their rows are missing).")]
    Get(GetArgs),
    /// Print rows, then every change to them, as they happen.
    #[command(
        long_about = "Print rows, then every change to them, as they happen.\n\n\
        The snapshot and the subscription are taken atomically: no change is missed or \
        shown twice. Runs until Ctrl-C, or until --count changes after the snapshot. When \
        the snapshot is printed, `watching ...` goes to stderr. If the node closes the \
        connection, says why and exits 1.\n\n\
        With --json, one object per line: the row fields of `cloudctl get --json` plus \
        \"event\": \"snapshot\" (a row present at start), \"updated\" (created or replaced) \
        or \"deleted\", and for deletions \"reason\": \"released\", \"disconnected\" or \
        \"node_lost\". A deletion carries the last data and the deletion's version."
    )]
    Watch(WatchArgs),
    /// Measure throughput and latency against a node (DESIGN §9 budgets).
    #[command(subcommand)]
    Bench(BenchCommand),
}

/// `cloudctl bench` scenarios.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Post+get throughput on one node: N clients, each with D requests in flight.
    #[command(long_about = "Post+get throughput on one node.\n\n\
        Connects --clients real QUIC clients; each keeps --pipeline requests in flight, \
        alternating a post of one of --keys keys (--value-size bytes) and a get of it, for \
        --duration. Prints ops/s and latency percentiles; with --json one object: \
        {\"scenario\":\"throughput\",\"clients\":N,\"pipeline\":D,\"ops\":..,\"errors\":..,\
        \"seconds\":..,\"ops_per_sec\":..,\"p50_ms\":..,\"p99_ms\":..,\"p999_ms\":..,\"max_ms\":..}. \
        Compare with `redis-benchmark -c N -P D -t set,get`. Mind the node's rate_limit \
        (default 100,000 requests/s per client).")]
    Throughput(ThroughputArgs),
    /// Cross-node notification latency: post on one node, a subscriber on another.
    #[command(long_about = "Cross-node notification latency.\n\n\
        --posters connections to --server post at --rate posts/s in total for --duration; a \
        subscriber connected to --subscriber-server measures, per notification, the time from \
        sending the post to receiving the change (both in this process, one clock). Prints \
        latency percentiles, posts acknowledged and notifications missing; with --json one \
        object with the fields of `bench throughput` (ops = notifications) plus \"posted\" and \
        \"missing\". Trust for the subscriber's node: --subscriber-pin, else the same option \
        as for --server (e.g. --insecure or --ca).")]
    Fanout(FanoutArgs),
    /// Client-visible stall while clients migrate between nodes (starts its own local mesh).
    #[command(long_about = "Client-visible stall during migration.\n\n\
        Starts a local mesh of three in-process nodes on 127.0.0.1, connects --clients \
        clients to the first (each posting continuously), then moves --migrations of them \
        to other nodes one after another. For each move, the stall is the longest gap \
        between that client's successful posts around it. Prints stall p50/p99/max, the \
        baseline p99 gap of clients that did not move, migrations done or failed, and \
        errors clients saw (must be 0).")]
    Migration(MigrationArgs),
    /// Time to drain a node's clients (starts its own local mesh).
    #[command(long_about = "Time to drain a node.\n\n\
        Starts a local mesh of three in-process nodes on 127.0.0.1, connects --clients \
        clients to the first (each holding one row), drains it and prints how long the \
        drain took and how many clients it moved.")]
    Drain(DrainArgs),
}

/// `cloudctl bench migration`.
#[derive(Debug, Args)]
pub struct MigrationArgs {
    /// Clients posting continuously
    #[arg(long, default_value_t = 200)]
    pub clients: usize,

    /// Migrations to make, one after another
    #[arg(long, default_value_t = 100)]
    pub migrations: usize,
}

/// `cloudctl bench drain`.
#[derive(Debug, Args)]
pub struct DrainArgs {
    /// Clients on the node to drain
    #[arg(long, default_value_t = 1000)]
    pub clients: usize,
}

/// `cloudctl bench fanout`.
#[derive(Debug, Args)]
pub struct FanoutArgs {
    /// Node the subscriber connects to, HOST:PORT
    #[arg(long, value_name = "HOST:PORT")]
    pub subscriber_server: String,

    /// Fingerprint of the subscriber's node, when trusting by pin
    #[arg(long, value_name = "FINGERPRINT", value_parser = parse_pin)]
    pub subscriber_pin: Option<[u8; 32]>,

    /// Posts per second, in total
    #[arg(long, default_value_t = 10_000)]
    pub rate: u32,

    /// How long to post (e.g. 10s)
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,

    /// Posting connections
    #[arg(long, default_value_t = 4)]
    pub posters: usize,

    /// Distinct keys posted to
    #[arg(long, default_value_t = 1000)]
    pub keys: u32,

    #[command(flatten)]
    pub conn: ConnectArgs,
}

/// `cloudctl bench throughput`.
#[derive(Debug, Args)]
pub struct ThroughputArgs {
    /// Concurrent client connections
    #[arg(long, default_value_t = 50)]
    pub clients: usize,

    /// Requests in flight per client
    #[arg(long, default_value_t = 1)]
    pub pipeline: usize,

    /// How long to measure (e.g. 10s)
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,

    /// Bytes of data per post
    #[arg(long, default_value_t = 32)]
    pub value_size: usize,

    /// Distinct keys per client
    #[arg(long, default_value_t = 100)]
    pub keys: u32,

    #[command(flatten)]
    pub conn: ConnectArgs,
}

/// How to reach and trust a node, shared by the mesh-client verbs.
#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    /// Node to connect to, HOST:PORT
    #[arg(
        long,
        env = "CLOUDMESH_SERVER",
        default_value = "127.0.0.1:7946",
        value_name = "HOST:PORT"
    )]
    pub server: String,

    /// Trust the node whose certificate has this SHA-256 fingerprint (cloudd prints it at
    /// start: `certificate fingerprint sha256:HEX`)
    #[arg(long, env = "CLOUDMESH_PIN", value_name = "FINGERPRINT", value_parser = parse_pin,
        conflicts_with_all = ["ca", "insecure"])]
    pub pin: Option<[u8; 32]>,

    /// Trust node certificates issued by a CA in this PEM file
    #[arg(long, value_name = "FILE", conflicts_with = "insecure")]
    pub ca: Option<PathBuf>,

    /// Name the node's certificate must carry, with --ca [default: the host of --server]
    #[arg(long, value_name = "NAME")]
    pub server_name: Option<String>,

    /// Do not check the node's identity at all (local development only)
    #[arg(long)]
    pub insecure: bool,

    /// Client class, for the node's filter rules
    #[arg(long, env = "CLOUDMESH_CLASS", value_name = "CLASS")]
    pub class: Option<String>,

    /// Token proving membership of --class, when the node requires one
    #[arg(
        long,
        env = "CLOUDMESH_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,

    /// Give up connecting after this long
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
}

/// `cloudctl post`.
#[derive(Debug, Args)]
pub struct PostArgs {
    /// Key of the row, PRIMARY/SECONDARY (e.g. players/3)
    #[arg(value_name = "KEY")]
    pub key: Key,

    /// Data of the row; `-` reads it from standard input
    #[arg(
        value_name = "DATA",
        required_unless_present = "file",
        conflicts_with = "file"
    )]
    pub data: Option<String>,

    /// Read the data from this file
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,

    /// Hold the row this long, then close (e.g. 30s, 5m) [default: until Ctrl-C]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub hold: Option<Duration>,

    #[command(flatten)]
    pub conn: ConnectArgs,
}

/// `cloudctl get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// What to read: PRIMARY/SECONDARY for one key, PRIMARY for all keys under it
    #[arg(value_name = "KEYSPEC", required = true)]
    pub keys: Vec<KeySpec>,

    /// Only rows posted by this client (16 hex digits); repeatable
    #[arg(long = "owner", value_name = "CLIENTID")]
    pub owners: Vec<ClientId>,

    /// At most this many rows in total
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: Option<u32>,

    #[command(flatten)]
    pub conn: ConnectArgs,
}

/// `cloudctl watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// What to watch: PRIMARY/SECONDARY for one key, PRIMARY for all keys under it
    #[arg(value_name = "KEYSPEC", required = true)]
    pub keys: Vec<KeySpec>,

    /// Only rows posted by this client (16 hex digits); repeatable
    #[arg(long = "owner", value_name = "CLIENTID")]
    pub owners: Vec<ClientId>,

    /// Exit 0 after this many changes following the snapshot
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,

    #[command(flatten)]
    pub conn: ConnectArgs,
}

/// A mistake in the command line that clap cannot see; exits 2 like clap's own.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

fn parse_pin(text: &str) -> Result<[u8; 32], String> {
    cloudmesh::transport::parse_fingerprint(text).map_err(|e| e.to_string())
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{e} (write e.g. 30s, 5m, 500ms)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn keys_and_data_parse() {
        let cli = Cli::try_parse_from(["cloudctl", "post", "players/3", "hi", "--insecure"])
            .expect("parses");
        let Command::Post(p) = cli.command else {
            panic!("post expected")
        };
        assert_eq!(p.key, Key::new("players", 3));
        assert!(Cli::try_parse_from(["cloudctl", "post", "players", "hi"]).is_err());
        assert!(Cli::try_parse_from(["cloudctl", "post", "players/3"]).is_err());
        let cli =
            Cli::try_parse_from(["cloudctl", "get", "players", "a/1", "--json"]).expect("parses");
        let Command::Get(g) = cli.command else {
            panic!("get expected")
        };
        assert!(cli.json);
        assert_eq!(
            g.keys,
            vec![
                KeySpec::primary("players"),
                KeySpec::exact(&Key::new("a", 1))
            ]
        );
    }
}
