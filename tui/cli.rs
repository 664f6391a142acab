//! `cloudctl`'s command line. Each verb is a variant of [`Command`] with its own args
//! struct; options shared by the mesh-client verbs live in [`ConnectArgs`]; the operator
//! verbs talk to a node's admin socket (global `--socket`).

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
        Operator verbs (status, nodes, clients, keys, drain, undrain, migrate, rebalance, \
        place) ask a cloudd over its local admin socket (--socket); any node answers for the \
        whole mesh. post, get, watch and bench speak to a node over QUIC, like a game client.\n\n\
        Exit codes:\n  \
        0  success\n  \
        1  the operation failed (node unreachable or refused, a drain or migration that \
        failed, connection closed)\n  \
        2  usage error, or a request the daemon rejected as malformed or of another \
        protocol version\n  \
        3  no daemon answers on the admin socket (or permission denied on it)\n  \
        4  not found: no node or client of that name in the mesh\n  \
        130  Ctrl-C while `drain --wait` waits (the drain goes on)"
)]
pub struct Cli {
    /// Machine-readable output (see each command's help for the shape); errors still go to
    /// stderr as text
    #[arg(long, global = true)]
    pub json: bool,

    /// The admin socket of the cloudd to ask (operator verbs, and bench scenarios run
    /// against --server) [default:
    /// $XDG_RUNTIME_DIR/cloudd/admin.sock, else /run/cloudd/admin.sock]
    #[arg(
        long,
        global = true,
        env = "CLOUDCTL_SOCKET",
        value_name = "PATH",
        default_value_os_t = cloudmesh::admin::default_socket_path(),
        hide_default_value = true
    )]
    pub socket: PathBuf,

    /// Longest wait for each answer from the admin socket (e.g. 30s, 2m); 0 waits as long as
    /// it takes. A daemon that accepts but does not answer then fails the command (exit 1)
    /// instead of hanging a script
    #[arg(
        long,
        global = true,
        env = "CLOUDCTL_TIMEOUT",
        value_name = "DURATION",
        default_value = "30s"
    )]
    pub timeout: Option<humantime::Duration>,

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
        Nodes that did not answer are listed on stderr (their rows are missing).\n\n\
        Queries: --where, --sort and --near select rows by the fields of their data (rows \
        whose data is a JSON object), evaluated on the nodes that hold them. --where takes \
        comparisons `field = value` (= != < <= > >=), `field in (v1, v2)`, \
        `field prefix \"text\"`, `exists field`, `within(x0, y0, x1, y1)`, \
        `near(x, y, radius)`, joined with and/or and parentheses; values are \"strings\", \
        numbers, true, false, null; a dotted field reaches into nested objects. --sort \
        takes `field [asc|desc], ...` (`-field` is desc); rows equal on every sort field go \
        in key order. --near X,Y,R (or X,Y,Z,R) keeps rows whose x, y (z) fields lie within \
        R. Example: --where 'region = \"eu\" and players < 64' --sort players --limit 20.")]
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
        \"node_lost\". A deletion carries the last data and the deletion's version.\n\n\
        Queries: --where, --sort and --near select rows by the fields of their data (rows \
        whose data is a JSON object), evaluated on the nodes that hold them. --where takes \
        comparisons `field = value` (= != < <= > >=), `field in (v1, v2)`, \
        `field prefix \"text\"`, `exists field`, `within(x0, y0, x1, y1)`, \
        `near(x, y, radius)`, joined with and/or and parentheses; values are \"strings\", \
        numbers, true, false, null; a dotted field reaches into nested objects. --sort \
        takes `field [asc|desc], ...` (`-field` is desc); rows equal on every sort field go \
        in key order. --near X,Y,R (or X,Y,Z,R) keeps rows whose x, y (z) fields lie within \
        R. Example: --where 'region = \"eu\" and players < 64' --sort players --limit 20.\n\n\
        A watch with a query prints the rows matching at start (the first --limit of them \
        in --sort order), then \"entered\" (a row starts to match), \"updated\" (a \
        matching row changed) and \"left\" (with reason \"no_longer_matches\" or the \
        deletion's) as they happen."
    )]
    Watch(WatchArgs),
    /// Measure throughput, latency, stalls and memory (budgets in BENCHMARKS.md).
    #[command(
        subcommand,
        long_about = "Measure throughput, latency, stalls and memory (budgets in BENCHMARKS.md).\n\n\
        Each scenario runs against the nodes given with --server, or, with no --server, \
        against a local mesh of real cloudd processes on 127.0.0.1 that it starts for the \
        run and stops after it (cloudd is looked for beside cloudctl, else on PATH; \
        --cloudd overrides). Scenarios that operate the mesh (migration, drain, idle's \
        memory reading) use the admin socket (--socket) with --server. Results go to \
        stdout as a table, or as one JSON object with --json; progress goes to stderr. \
        scripts/bench-compare.sh runs them beside Redis and NATS; BENCHMARKS.md has the \
        latest figures."
    )]
    Bench(BenchCommand),
    /// This node and the mesh in brief.
    #[command(long_about = "This node and the mesh in brief.\n\n\
        Prints one `label  value` line per fact: the answering node's name (★ host when it \
        is the mesh host), id, state, version, uptime, listen address, advertised addresses, \
        certificate fingerprint (what clients --pin), members and live links, the host, \
        clients/capacity, rows and their data size, subscriptions, CPU, memory and \
        requests/s.\n\n\
        With --json, one object: {\"type\":\"status\",\"node\":{<a node as in `nodes \
        --json`>},\"version\":..,\"uptime_secs\":..,\"listen\":..,\"fingerprint\":..,\
        \"host\":..,\"members\":..,\"linked\":..,\"subscriptions\":..,\"data_bytes\":..}.\n\n\
        Exits 3 when no daemon answers on --socket.")]
    Status,
    /// Every member of the mesh with its state and load.
    #[command(
        long_about = "Every member of the mesh with its state and load, oldest first.\n\n\
        Prints a table NAME, STATE, HOST, CLIENTS, ROWS, CPU%, MEMORY, MSGS/S, ADDRESSES. \
        The node answering has `*` after its name; the host has ★ under HOST; a member the \
        answering node has no live link to shows `(unlinked)` after its state (its figures \
        are from its last load report). CLIENTS is connected/capacity.\n\n\
        With --json, one object: {\"type\":\"nodes\",\"nodes\":[{\"name\":..,\"id\":..,\
        \"addresses\":[..],\"state\":\"Active\",\"host\":bool,\"local\":bool,\
        \"linked\":bool,\"clients\":..,\"capacity\":..,\"rows\":..,\"cpu_percent\":..,\
        \"memory_bytes\":..,\"msgs_per_sec\":..}, ...]}."
    )]
    Nodes,
    /// Connected clients, of one node or of the whole mesh.
    #[command(
        long_about = "Connected clients, of one node (--node) or of the whole mesh.\n\n\
        Prints a table ID (what `migrate` takes), NODE, ADDRESS, RTT(ms), ZONE (the zone \
        cell x,y of its last position, or -), ROWS, CONNECTED (time since it connected to \
        that node). With no clients, prints `no clients` to stderr and exits 0. Nodes that \
        did not answer in time are named on stderr (their clients are missing).\n\n\
        With --json, one object: {\"type\":\"clients\",\"clients\":[{\"id\":..,\"node\":..,\
        \"address\":..,\"rtt_ms\":..,\"zone\":[x,y]|null,\"position\":[x,y]|null,\
        \"rows\":..,\"connected_at_ms\":..}, ...],\"incomplete\":[node names]}.\n\n\
        Exits 4 when --node names no member (the error lists the known names)."
    )]
    Clients(ClientsArgs),
    /// Primary keys with their row counts, or the rows under one key.
    #[command(
        long_about = "Primary keys with their row counts, or the rows under one key.\n\n\
        Without KEY: a table PRIMARY, ROWS (mesh-wide), NODES (holding them). With PRIMARY \
        or PRIMARY/SECONDARY: a table KEY, OWNER, NODE, VERSION, SIZE, DATA; data is text \
        when printable UTF-8, else 0x-prefixed hex, cut to fit (use --json for all of it). \
        KEY is split at its last `/` when what follows is a number, so `a/b/3` is primary \
        `a/b`, secondary 3, and `a/b` is the primary `a/b`. At most 10000 rows are listed; \
        beyond that stderr says the list is truncated. Nodes that did not answer in time are \
        named on stderr.\n\n\
        With --json, one object: without KEY {\"type\":\"primaries\",\"primaries\":\
        [{\"primary\":..,\"rows\":..,\"nodes\":[..]}, ...],\"incomplete\":[..]}; with KEY \
        {\"type\":\"rows\",\"rows\":[{\"primary\":..,\"secondary\":..,\"owner\":..,\
        \"node\":..,\"version\":..,\"updated_at_ms\":..,\"data\":..,\
        \"encoding\":\"utf8\"|\"hex\",\"size\":..}, ...],\"truncated\":bool,\
        \"incomplete\":[..]}.\n\n\
        Queries: with a KEY, --where, --sort, --near and --limit take what `get` takes (see \
        `cloudctl get --help` for the syntax) and list only the matching rows, in the \
        query's order, evaluated mesh-wide by the nodes that hold them; the output is the \
        same. --limit without a query keeps the first N rows. A malformed query is named \
        (`invalid query (where): ...`) and exits 2. Example: keys servers --where \
        'region = \"eu\" and players < 64' --sort players --limit 20."
    )]
    Keys(KeysArgs),
    /// Drain a node: it takes no new clients and moves its clients to other nodes.
    #[command(
        long_about = "Drain a node: it takes no new clients and moves its clients to \
        the other nodes, make-before-break, then is Drained. Any node's socket can drain any \
        node; `undrain` returns it to service.\n\n\
        Without --wait: prints `draining NODE: N clients to move` once the drain began.\n\n\
        With --wait: follows the drain to its end. On a terminal, stderr shows a progress \
        bar redrawn in place (`draining node-3 [########------------] 412/1000 moved, 588 \
        left`); otherwise one such line per report. Then prints `NODE drained: N clients \
        moved`. Ctrl-C stops waiting, NOT the drain: the node keeps draining (see `cloudctl \
        nodes`; `undrain` cancels it), and cloudctl exits 130.\n\n\
        With --json: without --wait one object {\"type\":\"drain_started\",\"node\":..,\
        \"clients\":..}; with --wait one object per line as the node reports, \
        {\"type\":\"progress\",\"node\":..,\"moved\":..,\"remaining\":..} (the first with \
        moved 0), then {\"type\":\"drained\",\"node\":..,\"moved\":..}.\n\n\
        Exits 1 when the drain failed, 4 when no node has that name."
    )]
    Drain(DrainNodeArgs),
    /// Return a draining or drained node to service.
    #[command(
        long_about = "Return a draining or drained node to service: it is Active \
        again and placement and rebalancing consider it. Clients already moved stay where \
        they are (rebalancing may bring some back).\n\n\
        Prints `NODE is active again`; with --json {\"type\":\"undrained\",\"node\":..}.\n\n\
        Exits 4 when no node has that name."
    )]
    Undrain(UndrainArgs),
    /// Move one client to another node, make-before-break.
    #[command(
        long_about = "Move one client to another node, make-before-break: its rows and \
        subscriptions move with it and its calls in flight complete.\n\n\
        Prints `moved client ID from NODE to NODE`; with --json \
        {\"type\":\"migrated\",\"client\":..,\"from\":..,\"to\":..}.\n\n\
        Exits 4 when no node serves the client or --to names no node, 1 when the move \
        failed (nothing changed then)."
    )]
    Migrate(MigrateArgs),
    /// Run one rebalance round now.
    #[command(
        long_about = "Run one rebalance round now: the host compares the busiest and \
        the idlest Active node and, when they differ by more than the rebalance threshold, \
        asks the busiest to move some clients to the idlest.\n\n\
        Prints `asked NODE to move N clients to NODE`, or `the mesh is within the rebalance \
        threshold; nothing to move`. With --json {\"type\":\"rebalanced\",\"moved\":\
        {\"from\":..,\"to\":..,\"count\":..}|null}."
    )]
    Rebalance,
    /// Where a new client would be placed, and why.
    #[command(
        long_about = "Where a new client connecting to the answering node would be \
        placed, with every candidate's weighted score terms (load, cpu, rtt, zone; lower is \
        better) and why an ineligible node is passed over.\n\n\
        Prints the node's explanation table, starting with `choice: NODE`. --explain is the \
        only mode for now (and the default). --position X,Y places a client at that world \
        position (the zone term); negative values are fine (--position -5,3).\n\n\
        With --json, one object {\"type\":\"placement\",\"choice\":NAME|null,\
        \"candidates\":[{\"name\":..,\"eligible\":bool,\"reason\":..|null,\"load\":..,\
        \"cpu\":..,\"rtt\":..,\"zone\":..,\"total\":..|null}, ...],\"explain\":\"<the table>\"}."
    )]
    Place(PlaceArgs),
    /// The live console: nodes, clients, keys, zones and events, with drain and migrate.
    #[command(
        long_about = "The live console: a full-screen view of the mesh through the \
        admin socket (--socket), live through its watch.\n\n\
        Tabs (1-4, Tab): the overview (nodes with state, host ★, clients, rows, CPU, memory \
        and a msgs/s history; the selected node's clients; the newest events), the key \
        browser (primary keys, then the rows under one, live), the zone map, the event \
        log. Keys: ↑/↓ select, Enter opens, Esc goes back, d drains and u undrains the \
        selected node (y confirms), m migrates the selected client, r rebalances, / \
        filters, ? lists every key, q quits.\n\n\
        In the key browser's rows, / opens the query bar instead: `FILTER [sort FIELDS] \
        [limit N]` in the syntax of `get --where` and `--sort` (e.g. `players < 10 sort \
        -players limit 20`); Enter shows only the matching rows, in the query's order, \
        asked again when a row under the key changes (at most twice a second) and every \
        2 s; a malformed query is named in the bar; Esc clears it.\n\n\
        If the daemon goes away the console says so and reconnects. Logs go to \
        $XDG_STATE_HOME/cloudmesh/cloudctl-tui.log (level from CLOUDCTL_LOG). Needs a \
        terminal of at least 80×24. Exits 3 when no daemon answers on --socket at start."
    )]
    Tui,
    /// Print a shell completion script.
    #[command(
        long_about = "Print a completion script for SHELL to stdout. Needs no daemon.\n\n\
        bash:  cloudctl completions bash > ~/.local/share/bash-completion/completions/cloudctl\n\
        zsh:   cloudctl completions zsh > ~/.zfunc/_cloudctl  (with ~/.zfunc in $fpath)\n\
        fish:  cloudctl completions fish > ~/.config/fish/completions/cloudctl.fish"
    )]
    Completions(CompletionsArgs),
    /// Start a local mesh with simulated players, to look at and to operate.
    #[command(
        long_about = "Start a local mesh with simulated players, to look at and to \
        operate.\n\n\
        Starts --nodes real `cloudd` processes on 127.0.0.1 (the `cloudd` beside this \
        cloudctl, else the one on PATH, else --cloudd), named node-1, node-2, ..., with a \
        generated mesh secret and zones on, in a fresh temporary directory; waits until \
        they form one mesh; then connects --players simulated players (real SDK clients) \
        that post their row players/N, watch the zone cell they stand in (cell.X.Y) and \
        walk across the zone grid, so the mesh hands them over between nodes. Then it \
        opens the live console (`cloudctl tui`) on node-1's admin socket (with \
        --no-console it waits for Ctrl-C instead). When the console quits (q, Ctrl-C, \
        SIGTERM, or the terminal closing) it stops everything it \
        started: the players leave, every cloudd gets SIGTERM (SIGKILL after 5 s), and the \
        directory is removed (kept with --keep).\n\n\
        Each node's admin socket is printed, so another terminal can operate the mesh, \
        e.g. `cloudctl --socket DIR/node-1/admin.sock drain node-2`. Node logs go to \
        DIR/node-N/logs, the players' to DIR/players.log; nothing else is written.\n\n\
        Output (stdout), one line each, in this order:\n  \
        demo: dir DIR\n  \
        demo: node NAME pid PID listen ADDR socket PATH   (one per node, node-1 first)\n  \
        demo: mesh of N nodes linked\n  \
        demo: players C/P connected (NODE COUNT, ...); log DIR/players.log\n  \
        demo: mesh up: N nodes, P players\n\
        then hints (indented), and on the way out `demo: stopping` and `demo: stopped`."
    )]
    Demo(DemoArgs),
}

/// `cloudctl demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How many cloudd nodes to start
    #[arg(long, default_value_t = 3, value_name = "N",
        value_parser = clap::value_parser!(u16).range(1..=32))]
    pub nodes: u16,

    /// How many simulated players to connect
    #[arg(long, default_value_t = 200, value_name = "N",
        value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub players: u32,

    /// UDP port of node-1; node-N listens on PORT+N-1 [default: 0, any free port]
    #[arg(long, default_value_t = 0, value_name = "PORT")]
    pub base_port: u16,

    /// Keep the temporary directory (node data, logs) when the demo ends
    #[arg(long)]
    pub keep: bool,

    /// Do not open the console: print the mesh's sockets and wait for Ctrl-C
    #[arg(long)]
    pub no_console: bool,

    /// The cloudd executable to run [default: beside cloudctl, else on PATH]
    #[arg(long, value_name = "PATH")]
    pub cloudd: Option<PathBuf>,

    /// Log filter for the nodes' log files (RUST_LOG syntax)
    #[arg(long, default_value = "info", value_name = "FILTER")]
    pub node_log: String,
}

/// `cloudctl clients`.
#[derive(Debug, Args)]
pub struct ClientsArgs {
    /// Only the clients of this node [default: every node]
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// Also show each client's session blob (text, or hex when not printable); it may hold
    /// what a game keeps private, so it is shown only when asked for
    #[arg(long)]
    pub session: bool,
}

/// `cloudctl keys`.
#[derive(Debug, Args)]
pub struct KeysArgs {
    /// PRIMARY for every row under it, PRIMARY/SECONDARY for one key [default: list the
    /// primary keys]
    #[arg(value_name = "PRIMARY[/SECONDARY]")]
    pub key: Option<KeySpec>,

    /// Only rows whose data matches this filter (the syntax of `get --where`)
    #[arg(long = "where", value_name = "FILTER", requires = "key")]
    pub filter: Option<String>,

    /// Order by these fields: `field [asc|desc], ...` (`-field` is desc)
    #[arg(
        long,
        value_name = "FIELDS",
        requires = "key",
        allow_hyphen_values = true
    )]
    pub sort: Option<String>,

    /// Only rows whose x, y (and z) fields lie within R of this point: X,Y,R or X,Y,Z,R
    #[arg(
        long,
        value_name = "X,Y[,Z],R",
        requires = "key",
        allow_hyphen_values = true
    )]
    pub near: Option<String>,

    /// At most this many rows (with --where, --sort or --near; at most 10000)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..), requires = "key")]
    pub limit: Option<u32>,
}

/// `cloudctl drain`.
#[derive(Debug, Args)]
pub struct DrainNodeArgs {
    /// The node to drain, by name (as `cloudctl nodes` lists it)
    #[arg(value_name = "NODE")]
    pub node: String,

    /// Follow the drain until the node is Drained, with progress on stderr
    #[arg(long)]
    pub wait: bool,
}

/// `cloudctl undrain`.
#[derive(Debug, Args)]
pub struct UndrainArgs {
    /// The node to return to service, by name
    #[arg(value_name = "NODE")]
    pub node: String,
}

/// `cloudctl migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The client's id, 16 hex digits (as `cloudctl clients` lists it)
    #[arg(value_name = "CLIENT")]
    pub client: ClientId,

    /// The node to move it to, by name
    #[arg(long, value_name = "NODE")]
    pub to: String,
}

/// `cloudctl place`.
#[derive(Debug, Args)]
pub struct PlaceArgs {
    /// Show every candidate's score (the only mode for now, so the default)
    #[arg(long)]
    pub explain: bool,

    /// The client's world position, X,Y (e.g. 10,20)
    #[arg(long, value_name = "X,Y", value_parser = parse_position, allow_hyphen_values = true)]
    pub position: Option<(f32, f32)>,
}

/// `cloudctl completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to write the script for
    #[arg(value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

/// `cloudctl bench` scenarios.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Post/get/subscribe throughput: N clients, each with D requests in flight.
    #[command(
        long_about = "Post/get/subscribe throughput (budget: at least Redis's \
        figure with 50 clients at the same pipelining depth).\n\n\
        Connects --clients real QUIC clients (to one local node started for the run, or \
        spread over the --server nodes); each keeps --pipeline requests in flight, cycling \
        through --keys keys of its own and running the --mix of operations (post: a row of \
        --value-size bytes; get: an exact-key read; subscribe: a get+subscribe held until \
        the worker's next one), for --duration, at --rate operations/s in total or flat \
        out. Prints ops/s and latency percentiles; with --json one object: \
        {\"scenario\":\"throughput\",\"clients\":N,\"pipeline\":D,\"ops\":..,\"errors\":..,\
        \"seconds\":..,\"ops_per_sec\":..,\"p50_ms\":..,\"p99_ms\":..,\"p999_ms\":..,\
        \"max_ms\":..,\"posts\":..,\"gets\":..,\"subscribes\":..,\"notifications\":..}. \
        Compare with `redis-benchmark -c N -P D -d 32 -t set,get` \
        (scripts/bench-compare.sh runs both). A node allows 100,000 requests/s per client \
        by default (its rate_limit)."
    )]
    Throughput(ThroughputArgs),
    /// Cross-node notification latency: posts on one node, a subscriber on another.
    #[command(long_about = "Cross-node notification latency (budget: p99 < 5 ms at \
        10k posts/s in a 3-node mesh).\n\n\
        --posters connections post at --rate posts/s in total for --duration; a subscriber \
        measures, per notification, the time from sending the post to receiving the change \
        (both in this process, one clock). Without --server, starts a local mesh of three \
        nodes: posts go to node-1, the subscriber is on node-3. With --server, posts go \
        there and the subscriber connects to --subscriber-server. Prints latency \
        percentiles, posts acknowledged and notifications missing; with --json one object \
        with the fields of `bench throughput` (ops = notifications) plus \"posted\" and \
        \"missing\". Trust for the subscriber's node: --subscriber-pin, else the same \
        option as for --server (e.g. --insecure or --ca).")]
    Fanout(FanoutArgs),
    /// Client-visible stall while clients migrate between nodes.
    #[command(
        long_about = "Client-visible stall during migration (budget: p99 < 20 ms, \
        0 lost and 0 duplicated notifications).\n\n\
        Connects --clients clients to one node (node-1 of a local 3-node mesh, or --server, \
        operated through the admin socket --socket); each posts numbered rows continuously \
        and is subscribed to another client's key. Then --migrations of them are moved, one \
        after another, to other Active nodes. For each move, the stall is the longest gap \
        between that client's successful posts around it. Prints stall percentiles (with \
        --json as p50_ms … max_ms, ops = migrations), migrations done and failed, errors \
        clients saw, notifications lost and duplicated (all must be 0) and the baseline \
        p99 gap of clients that did not move."
    )]
    Migration(MigrationArgs),
    /// Time to drain a node's clients to the other nodes.
    #[command(
        long_about = "Time to drain a node (budget: 1,000 clients in < 3 s).\n\n\
        Connects --clients clients (each holding one row) to one node (node-1 of a local \
        3-node mesh, or --server, operated through the admin socket --socket), drains that \
        node (or --node) and prints how long the drain took, how many clients it moved, and \
        per client the time until it was moved (p50 … max). Against --server the node is \
        undrained afterwards. With --json: the fields of `bench throughput` (ops = clients \
        moved, seconds = the whole drain) plus \"node\", \"clients\" and \"moved\"."
    )]
    Drain(DrainArgs),
    /// Memory of a node holding N idle clients.
    #[command(
        long_about = "Memory of a node holding idle clients (budget: 10,000 idle \
        clients on one node in < 1 GiB RSS).\n\n\
        Connects --clients clients (--concurrency handshakes at a time) to one node (a local \
        node started for the run, or --server), each posting --rows rows, waits --settle \
        and reads the node's resident memory: of the local node's process from /proc, or of \
        --server's node from the admin socket --socket (as its last load report gives it). \
        Prints RSS before and after, the difference per client, and the connect latency \
        percentiles; with --json the fields of `bench throughput` (ops = clients connected) \
        plus \"clients\", \"rss_before_bytes\", \"rss_bytes\" and \"bytes_per_client\"."
    )]
    Idle(IdleArgs),
    /// Time to a new host and NodeLost deletions after kill -9 of the host.
    #[command(long_about = "Failover after the host dies (budget: a new host and \
        NodeLost deletions everywhere within idle timeout + 1 s; every row of the dead \
        node's clients back within idle timeout + 2 s).\n\n\
        Starts a local mesh of --nodes cloudd processes (it kills one, so it never runs \
        against --server) with the nodes' idle timeout set to --idle-timeout; \
        --clients-per-node clients on every node each post one row; a subscriber on every \
        other node watches all rows. Then the host gets SIGKILL. Prints the time until the \
        survivors agree on a new host, and per subscriber the time until it had seen every \
        row of the dead node deleted with reason NodeLost (p50 … max), against the budget, \
        and the time until every subscriber saw each of those rows back (the dead node's \
        clients heal by themselves: their SDK establishes the session again on a survivor \
        from what it posted). With --json: the fields of `bench throughput` (ops = \
        subscribers done) plus \"new_host_ms\", \"new_host\", \"rows_lost\", \"missing\", \
        \"budget_ms\", \"restored_ms\", \"not_restored\" and \"restore_budget_ms\".")]
    Failover(FailoverArgs),
    /// Time to the next successful call after a network outage within the resume grace.
    #[command(
        long_about = "A network blip within the resume grace (budget: every client's \
        next successful call within 1 s of the path coming back, and no deletion seen by \
        anyone).\n\n\
        Starts a local node (it cuts the network in front of it, so it never runs against \
        --server) with its idle timeout set to --idle-timeout, behind a UDP relay run by \
        this command that the node advertises as its client address; --clients clients \
        reach it through the relay and post a row each, and a watcher connected directly \
        subscribes to them. The relay then drops every datagram for --outage (longer than \
        the idle timeout: the node suspends the sessions, the clients notice) and lets \
        them through again. Prints per client the time from the path's return to its \
        next successful call (p50 … max), the deletions the watcher saw, the clients that \
        came back under a new id, and the node's resident memory before the clients came \
        and with their sessions suspended (the difference per session is what the grace \
        costs, rows included). With --json: the fields of `bench throughput` (ops = clients \
        back) plus \"outage_ms\", \"deletions\", \"new_sessions\", \"budget_ms\", \
        \"rss_before_bytes\", \"rss_suspended_bytes\" and \
        \"bytes_per_suspended_session\"."
    )]
    Blip(BlipArgs),
    /// Nodes started together: time to one mesh, idle CPU and memory, failover.
    #[command(
        long_about = "A fleet started at once (budget: 64 nodes form one mesh in \
        under 30 s; an idle node uses under 1% of a core; after kill -9 of the host the \
        survivors agree on a new one within idle timeout + 1 s).\n\n\
        Starts a local mesh of --nodes cloudd processes at the same moment, as after a \
        power cut (it kills one, so it never runs against --server): node-1 on a reserved \
        port, every other node joining it, and times until every node lists every node \
        as linked and Active and all name the same host. After --settle it reads each \
        node's CPU time over --window and its resident memory (from /proc), then kills the \
        host with SIGKILL and times until the survivors agree on a new host. With --json \
        one object: {\"scenario\":\"mesh\",\"nodes\":N,\"formed_ms\":..,\"host\":..,\
        \"idle_cpu_pct_mean\":..,\"idle_cpu_pct_max\":..,\"rss_mib_mean\":..,\
        \"rss_mib_max\":..,\"new_host_ms\":..,\"new_host\":..,\"failover_budget_ms\":..}."
    )]
    Mesh(MeshArgs),
    /// Queries over row contents: top-20 and area-of-interest latency, live-query delivery,
    /// a live area of interest under moving players.
    #[command(
        long_about = "Queries over row contents (budget: a filtered, sorted top-20 \
        over 100,000 rows on a 3-node mesh p99 < 5 ms; a live query under 10,000 changes/s \
        delivered p99 < 5 ms with 0 missing; the live area of interest under moving players \
        with 0 missing and a final result equal to the players' final positions).\n\n\
        --holders connections spread over the nodes (a local 3-node mesh without --server) \
        post --rows server rows (JSON: name, region, map, players, max, x, y). Then one \
        client on the first node runs --queries queries one after another: \
        `region = \"eu\" and players < 32` sorted by players, limit 20; then as many \
        `near(x, y, 50)` at random centres (all matches). Then a watcher on the last node \
        holds the top-20 query live while a poster on the first changes matching rows at \
        --live-rate changes/s for --live-duration; each event's delay is the time from \
        sending the post to receiving the event (one clock). Then the area of interest: \
        --players clients spread over the nodes each post a row {\"x\",\"y\"} in a 200 x 200 \
        square and move it (steps of at most 10 along each axis, one move at a time) at \
        --move-rate moves/s in all for --aoi-duration, while a watcher on the last node holds \
        `near(100, 100, 50)` live, so players keep entering and leaving its area. Each move \
        that enters, moves inside or leaves the area (decided by brute force from the posted \
        positions) must reach the watcher as that event: its delay is post sent to event \
        received, and one that never arrives is missing; at the end the watcher's result \
        must be exactly the players inside at their final positions. Prints each part's \
        percentiles; with --json one object: the fields of `bench throughput` for the \
        top-20 queries (ops = queries), \"rows\", \"load_seconds\", \"top20_matching\", \
        \"near\" and \"live\" (reports of the same fields, live null when skipped), \
        \"near_rows_avg\", \"incomplete\", \"live_posted\", \"live_missing\", and \"aoi\" \
        (null when skipped): the same fields for the move events (ops = events that arrived \
        as expected, errors = failed moves) plus \"players\", \"x\", \"y\", \"radius\", \
        \"moves\", \"expected\", \"entered\", \"updated\", \"left\", \"missing\", \
        \"unexpected\", \"final_rows\", \"final_equal\"."
    )]
    Query(QueryBenchArgs),
}

/// `cloudctl bench blip`.
#[derive(Debug, Args)]
pub struct BlipArgs {
    /// Clients behind the relay, each posting one row
    #[arg(long, default_value_t = 100)]
    pub clients: usize,

    /// How long the relay drops everything (longer than --idle-timeout)
    #[arg(long, default_value = "4s", value_parser = parse_duration)]
    pub outage: Duration,

    /// The node's and the clients' idle timeout (their keep-alive is a fifth of it)
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// The cloudd executable for the local node [default: beside cloudctl, else on PATH]
    #[arg(long, value_name = "PATH")]
    pub cloudd: Option<PathBuf>,

    /// Keep the local node's directory (data and logs) after the run
    #[arg(long)]
    pub keep: bool,
}

/// `cloudctl bench mesh`.
#[derive(Debug, Args)]
pub struct MeshArgs {
    /// Nodes to start at once
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(2..=128))]
    pub nodes: u16,

    /// How long the nodes get to form one mesh before the run fails
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    pub form_limit: Duration,

    /// Wait this long after the mesh formed before measuring idle CPU
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub settle: Duration,

    /// How long to measure idle CPU over
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub window: Duration,

    /// The nodes' idle timeout (their keep-alive is a fifth of it) [default: cloudd's]
    #[arg(long, value_parser = parse_duration)]
    pub idle_timeout: Option<Duration>,

    /// The cloudd executable for the local mesh [default: beside cloudctl, else on PATH]
    #[arg(long, value_name = "PATH")]
    pub cloudd: Option<PathBuf>,

    /// Keep the local mesh's directory (node data and logs) after the run
    #[arg(long)]
    pub keep: bool,
}

/// `cloudctl bench query`.
#[derive(Debug, Args)]
pub struct QueryBenchArgs {
    /// Rows to load
    #[arg(long, default_value_t = 100_000)]
    pub rows: u32,

    /// Connections holding them, spread over the nodes
    #[arg(long, default_value_t = 30)]
    pub holders: usize,

    /// Queries measured of each kind
    #[arg(long, default_value_t = 2000)]
    pub queries: u32,

    /// Changes per second during the live part (0 skips it)
    #[arg(long, default_value_t = 10_000)]
    pub live_rate: u32,

    /// How long the live part posts (e.g. 5s)
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub live_duration: Duration,

    /// Moving players in the area-of-interest part (0 skips it)
    #[arg(long, default_value_t = 200)]
    pub players: u32,

    /// Moves per second of all players together in the area-of-interest part
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..))]
    pub move_rate: u32,

    /// How long the players move (e.g. 5s)
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub aoi_duration: Duration,

    #[command(flatten)]
    pub target: BenchTarget,
}

/// `cloudctl bench failover`.
#[derive(Debug, Args)]
pub struct FailoverArgs {
    /// Nodes in the local mesh (the host is killed, the others must take over)
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(2..=32))]
    pub nodes: u16,

    /// Clients on each node, each posting one row
    #[arg(long, default_value_t = 10)]
    pub clients_per_node: usize,

    /// The nodes' idle timeout (their keep-alive is a fifth of it)
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// The cloudd executable for the local mesh [default: beside cloudctl, else on PATH]
    #[arg(long, value_name = "PATH")]
    pub cloudd: Option<PathBuf>,

    /// Keep the local mesh's directory (node data and logs) after the run
    #[arg(long)]
    pub keep: bool,
}

/// Which nodes a scenario loads: given ones, or a local mesh it starts itself.
#[derive(Debug, Clone, Args)]
pub struct BenchTarget {
    /// Nodes to load: HOST:PORT, or a name whose every address is a node; repeatable or
    /// comma-separated, clients spread over them in turn [default: a local mesh of cloudd
    /// processes started for the run and stopped after it]
    #[arg(long = "server", value_name = "HOST:PORT", value_delimiter = ',')]
    pub servers: Vec<String>,

    #[command(flatten)]
    pub auth: AuthArgs,

    /// The cloudd executable for the local mesh [default: beside cloudctl, else on PATH]
    #[arg(long, value_name = "PATH")]
    pub cloudd: Option<PathBuf>,

    /// Keep the local mesh's directory (node data and logs) after the run
    #[arg(long)]
    pub keep: bool,
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

    #[command(flatten)]
    pub target: BenchTarget,
}

/// `cloudctl bench drain`.
#[derive(Debug, Args)]
pub struct DrainArgs {
    /// Clients on the node to drain
    #[arg(long, default_value_t = 1000)]
    pub clients: usize,

    /// The node to drain [default: the node the clients were placed on]
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,

    #[command(flatten)]
    pub target: BenchTarget,
}

/// `cloudctl bench idle`.
#[derive(Debug, Args)]
pub struct IdleArgs {
    /// Idle clients to connect
    #[arg(long, default_value_t = 10_000)]
    pub clients: usize,

    /// Rows each client posts before idling
    #[arg(long, default_value_t = 1)]
    pub rows: u32,

    /// Bytes of data per row
    #[arg(long, default_value_t = 32)]
    pub value_size: usize,

    /// Handshakes in flight at once
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,

    /// Wait this long after connecting before reading the node's memory
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub settle: Duration,

    #[command(flatten)]
    pub target: BenchTarget,
}

/// `cloudctl bench fanout`.
#[derive(Debug, Args)]
pub struct FanoutArgs {
    /// Node the subscriber connects to, HOST:PORT (with --server)
    #[arg(long, value_name = "HOST:PORT", requires = "servers")]
    pub subscriber_server: Option<String>,

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

    /// Bytes of data per post (at least 8)
    #[arg(long, default_value_t = 32)]
    pub value_size: usize,

    /// Posts in flight per posting connection. 1: each post waits for the previous one's
    /// acknowledgement. More, with a --rate too high to reach, measures how many deliveries
    /// per second the notification path carries (the fair match for a publisher that sends
    /// batches without waiting, such as NATS's)
    #[arg(long, default_value_t = 1)]
    pub pipeline: usize,

    #[command(flatten)]
    pub target: BenchTarget,
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

    /// Operation weights, OP=WEIGHT,… with OP post, get or subscribe
    #[arg(long, default_value = "post=50,get=50", value_name = "MIX")]
    pub mix: cloudmesh::bench::Mix,

    /// Operations per second in total [default: as fast as they complete]
    #[arg(long, value_name = "PER_SEC")]
    pub rate: Option<u32>,

    #[command(flatten)]
    pub target: BenchTarget,
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

    #[command(flatten)]
    pub auth: AuthArgs,
}

/// How to trust nodes and what to tell them about this client.
#[derive(Debug, Clone, Args)]
pub struct AuthArgs {
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

    /// A client token: a signed token (JWT) the game backend issued, which carries the
    /// client's class and rights, or the token of --class when the node requires one
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

    /// Keep the session's resume token in this file (rewritten after every welcome), and
    /// take the session back from it when started again: a killed and restarted `post`
    /// keeps its client id and row if it comes back within the node's resume grace
    #[arg(long, value_name = "PATH")]
    pub resume_file: Option<PathBuf>,

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

    /// Only rows whose data matches this filter (see the long help for the syntax)
    #[arg(long = "where", value_name = "FILTER", conflicts_with = "owners")]
    pub filter: Option<String>,

    /// Order by these fields: `field [asc|desc], ...` (`-field` is desc)
    #[arg(
        long,
        value_name = "FIELDS",
        conflicts_with = "owners",
        allow_hyphen_values = true
    )]
    pub sort: Option<String>,

    /// Only rows whose x, y (and z) fields lie within R of this point: X,Y,R or X,Y,Z,R
    #[arg(
        long,
        value_name = "X,Y[,Z],R",
        conflicts_with = "owners",
        allow_hyphen_values = true
    )]
    pub near: Option<String>,

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

    /// With a query: show the first N matching rows at start
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..), conflicts_with = "owners")]
    pub limit: Option<u32>,

    /// Only rows whose data matches this filter (see the long help for the syntax)
    #[arg(long = "where", value_name = "FILTER", conflicts_with = "owners")]
    pub filter: Option<String>,

    /// Order by these fields: `field [asc|desc], ...` (`-field` is desc)
    #[arg(
        long,
        value_name = "FIELDS",
        conflicts_with = "owners",
        allow_hyphen_values = true
    )]
    pub sort: Option<String>,

    /// Only rows whose x, y (and z) fields lie within R of this point: X,Y,R or X,Y,Z,R
    #[arg(
        long,
        value_name = "X,Y[,Z],R",
        conflicts_with = "owners",
        allow_hyphen_values = true
    )]
    pub near: Option<String>,

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

/// `X,Y` as two finite numbers.
fn parse_position(text: &str) -> Result<(f32, f32), String> {
    let bad = || format!("{text:?} is not X,Y (write e.g. 10,20 or -5.5,3)");
    let (x, y) = text.split_once(',').ok_or_else(bad)?;
    let x: f32 = x.trim().parse().map_err(|_| bad())?;
    let y: f32 = y.trim().parse().map_err(|_| bad())?;
    if !(x.is_finite() && y.is_finite()) {
        return Err(bad());
    }
    Ok((x, y))
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

    /// `keys`' argument, as `cloudctl keys ARG` parses it.
    fn keys_arg(arg: &str) -> Result<Option<KeySpec>, clap::Error> {
        let cli = Cli::try_parse_from(["cloudctl", "keys", arg])?;
        let Command::Keys(k) = cli.command else {
            panic!("keys expected")
        };
        Ok(k.key)
    }

    #[test]
    fn keys_split_at_the_last_slash_before_a_number() {
        let spec = |p: &str, s: Option<u32>| {
            Some(KeySpec {
                primary: p.into(),
                secondary: s,
            })
        };
        let ok = |arg: &str| keys_arg(arg).expect("parses");
        assert_eq!(ok("players"), spec("players", None));
        assert_eq!(ok("players/3"), spec("players", Some(3)));
        assert_eq!(ok("a/b/3"), spec("a/b", Some(3)));
        assert_eq!(ok("a/b"), spec("a/b", None));
        assert_eq!(ok("players/x3"), spec("players/x3", None));
        assert_eq!(ok("players/4294967296"), spec("players/4294967296", None));
        assert_eq!(ok("players/4294967295"), spec("players", Some(u32::MAX)));
        assert!(keys_arg("").is_err());
        assert!(keys_arg(&"p".repeat(300)).is_err());
        let cli = Cli::try_parse_from(["cloudctl", "keys"]).expect("parses");
        assert!(matches!(
            cli.command,
            Command::Keys(KeysArgs {
                key: None,
                filter: None,
                ..
            })
        ));
        let cli = Cli::try_parse_from([
            "cloudctl",
            "keys",
            "servers",
            "--where",
            "players < 10",
            "--sort",
            "-players",
            "--limit",
            "3",
            "--near",
            "1,2,3",
        ])
        .expect("parses");
        let Command::Keys(k) = cli.command else {
            panic!("keys expected")
        };
        assert_eq!(k.filter.as_deref(), Some("players < 10"));
        assert_eq!(k.sort.as_deref(), Some("-players"));
        assert_eq!((k.limit, k.near.as_deref()), (Some(3), Some("1,2,3")));
        assert!(
            Cli::try_parse_from(["cloudctl", "keys", "--where", "a = 1"]).is_err(),
            "a query needs a key"
        );
    }

    #[test]
    fn operator_verbs_parse() {
        let cli = Cli::try_parse_from([
            "cloudctl",
            "place",
            "--explain",
            "--position",
            "10,20",
            "--socket",
            "/tmp/x.sock",
        ])
        .expect("parses");
        assert_eq!(cli.socket, PathBuf::from("/tmp/x.sock"));
        let Command::Place(p) = cli.command else {
            panic!("place expected")
        };
        assert!(p.explain);
        assert_eq!(p.position, Some((10.0, 20.0)));
        let cli = Cli::try_parse_from(["cloudctl", "place", "--position", "-5.5, 3"])
            .expect("negative positions parse");
        let Command::Place(p) = cli.command else {
            panic!("place expected")
        };
        assert_eq!(p.position, Some((-5.5, 3.0)));
        for bad in ["10", "a,b", "1,2,3", "inf,0", "NaN,1"] {
            assert!(
                Cli::try_parse_from(["cloudctl", "place", "--position", bad]).is_err(),
                "{bad}"
            );
        }

        let cli = Cli::try_parse_from(["cloudctl", "--json", "drain", "node-3", "--wait"])
            .expect("parses");
        assert!(cli.json);
        let Command::Drain(d) = cli.command else {
            panic!("drain expected")
        };
        assert_eq!((d.node.as_str(), d.wait), ("node-3", true));

        let cli =
            Cli::try_parse_from(["cloudctl", "migrate", "ABC", "--to", "node-2"]).expect("parses");
        let Command::Migrate(m) = cli.command else {
            panic!("migrate expected")
        };
        assert_eq!(m.client.to_string(), "0000000000000abc");
        assert_eq!(m.to, "node-2");
        assert!(Cli::try_parse_from(["cloudctl", "migrate", "xyz", "--to", "n"]).is_err());
        assert!(Cli::try_parse_from(["cloudctl", "migrate", "abc"]).is_err());

        let cli = Cli::try_parse_from(["cloudctl", "clients", "--node", "node-1"]).expect("parses");
        assert!(
            matches!(cli.command, Command::Clients(ClientsArgs { node: Some(n), session: false }) if n == "node-1")
        );
        assert!(Cli::try_parse_from(["cloudctl", "completions", "bash"]).is_ok());
        assert!(Cli::try_parse_from(["cloudctl", "completions", "tcsh"]).is_err());
        assert!(Cli::try_parse_from(["cloudctl", "undrain"]).is_err());
    }
}
