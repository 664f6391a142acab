//! Metrics (issue 8 acceptance 1 and 3): the Graphite exporter against a real
//! carbon-cache (Debian's graphite-carbon, read back with whisper-fetch), its behaviour
//! when carbon is gone, and the Grafana dashboard checked against the exporter's list.

mod common;
mod procs;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cloudmesh::client::{Client, ClientOptions};
use cloudmesh::mesh::MeshSecret;
use cloudmesh::metrics::graphite::{Exporter, GraphiteConfig};
use cloudmesh::metrics::{self, MetricSource, Sample, METRICS};
use cloudmesh::proto::{Key, KeySpec};
use cloudmesh::transport::{parse_fingerprint, Trust};
use cloudmesh::Node;
use serde_json::Value;

use common::{within, DEADLINE};

/// A free TCP port on loopback (bound and released; carbon binds it right after).
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

/// A carbon-cache in the foreground with its own config, storage and logs in a temp dir,
/// listening on loopback only; killed on drop.
struct Carbon {
    dir: PathBuf,
    line_port: u16,
    pickle_port: u16,
    query_port: u16,
    child: Option<Child>,
}

impl Carbon {
    fn new(dir: &Path) -> Carbon {
        let conf = dir.join("conf");
        std::fs::create_dir_all(&conf).expect("carbon conf dir");
        std::fs::write(
            conf.join("storage-schemas.conf"),
            "[all]\npattern = .*\nretentions = 1s:1h\n",
        )
        .expect("storage-schemas.conf");
        Carbon {
            dir: dir.to_owned(),
            line_port: free_port(),
            pickle_port: free_port(),
            query_port: free_port(),
            child: None,
        }
    }

    fn whisper_dir(&self) -> PathBuf {
        self.dir.join("storage/whisper")
    }

    /// Starts (or restarts, on the same ports and storage) and waits until the line
    /// receiver accepts connections.
    fn start(&mut self) {
        let d = self.dir.display();
        let conf = format!(
            "[cache]\n\
             STORAGE_DIR = {d}/storage\n\
             LOCAL_DATA_DIR = {d}/storage/whisper\n\
             WHITELISTS_DIR = {d}/storage/lists\n\
             CONF_DIR = {d}/conf\n\
             LOG_DIR = {d}/log\n\
             PID_DIR = {d}/pid\n\
             ENABLE_LOGROTATION = False\n\
             USER =\n\
             MAX_CACHE_SIZE = inf\n\
             MAX_UPDATES_PER_SECOND = 10000\n\
             MAX_CREATES_PER_MINUTE = inf\n\
             LINE_RECEIVER_INTERFACE = 127.0.0.1\n\
             LINE_RECEIVER_PORT = {}\n\
             ENABLE_UDP_LISTENER = False\n\
             PICKLE_RECEIVER_INTERFACE = 127.0.0.1\n\
             PICKLE_RECEIVER_PORT = {}\n\
             CACHE_QUERY_INTERFACE = 127.0.0.1\n\
             CACHE_QUERY_PORT = {}\n",
            self.line_port, self.pickle_port, self.query_port
        );
        let conf_file = self.dir.join("conf/carbon.conf");
        std::fs::write(&conf_file, conf).expect("carbon.conf");
        // A pid file left by a killed carbon would make the next start refuse.
        let _ = std::fs::remove_dir_all(self.dir.join("pid"));
        let log = std::fs::File::create(self.dir.join("carbon.out")).expect("carbon log");
        let child = Command::new("carbon-cache")
            .arg(format!("--config={}", conf_file.display()))
            .args(["--nodaemon", "start"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("carbon-cache starts (apt-get install graphite-carbon)");
        self.child = Some(child);
        let deadline = Instant::now() + DEADLINE;
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", self.line_port)).is_ok() {
                return;
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!("carbon-cache exited ({status}): {}", self.output());
                }
            }
            assert!(
                Instant::now() < deadline,
                "carbon-cache did not listen on {} in time: {}",
                self.line_port,
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(self.dir.join("carbon.out")).unwrap_or_default()
    }

    /// SIGKILL, as a crash would.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The stored points of `metric` (a path below the whisper root, dots as in Graphite)
    /// since `from`, as (timestamp, value), skipping empty slots. Empty if the file is not
    /// there yet.
    fn fetch(&self, metric: &str, from: u64) -> Vec<(u64, f64)> {
        let file = self
            .whisper_dir()
            .join(format!("{}.wsp", metric.replace('.', "/")));
        if !file.exists() {
            return Vec::new();
        }
        let out = Command::new("whisper-fetch")
            .arg(format!("--from={from}"))
            .arg(&file)
            .output()
            .expect("whisper-fetch runs (apt-get install python3-whisper)");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                let ts = it.next()?.parse().ok()?;
                let v = it.next()?.parse().ok()?;
                Some((ts, v))
            })
            .collect()
    }
}

impl Drop for Carbon {
    fn drop(&mut self) {
        self.kill();
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn client_of(node: &Node) -> Client {
    let trust = Trust::Pin(parse_fingerprint(node.fingerprint()).expect("fingerprint"));
    Client::connect(node.local_addr(), ClientOptions::new(trust))
        .await
        .expect("client connects")
}

/// Polls whisper (off the runtime's worker) until `metric` has a point since `from` with
/// `want`'s value, or the deadline passes.
async fn wait_for_point(carbon: &Carbon, metric: &str, from: u64, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let points = carbon.fetch(metric, from);
        if points.iter().any(|&(_, v)| v == want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{metric} never reached {want} in whisper since {from}; points: {points:?}; carbon \
             log: {}",
            carbon.output()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Acceptance 1: a node's client count reaches a real carbon-cache and is read back with
/// whisper-fetch; carbon killed mid-run does not disturb the node, and points flow again
/// once it is back on the same port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carbon_stores_the_client_count_and_its_loss_does_not_disturb_the_node() {
    common::init_test_log();
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut carbon = Carbon::new(tmp.path());
    carbon.start();

    let node_dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = common::config(node_dir.path());
    cfg.name = "metrics.node 1".into();
    let node = Arc::new(Node::start(cfg).await.expect("node starts"));
    let prefix = metrics::default_prefix(node.name());
    assert_eq!(prefix, "cloudmesh.metrics_node_1");
    let mut gcfg = GraphiteConfig::new(&format!("127.0.0.1:{}", carbon.line_port), &prefix)
        .expect("graphite config");
    gcfg.interval = Duration::from_millis(200);
    gcfg.timeout = Duration::from_secs(2);
    gcfg.max_backoff = Duration::from_secs(2);
    let exporter = Exporter::start(node.clone() as Arc<dyn MetricSource>, gcfg);

    let start = unix_now().saturating_sub(1);
    let mut clients = Vec::new();
    for i in 0..3u32 {
        let c = client_of(&node).await;
        c.post(Key::new("players", i), "here").await.expect("post");
        clients.push(c);
    }
    wait_for_point(&carbon, &format!("{prefix}.clients"), start, 3.0).await;
    let posts = carbon.fetch(&format!("{prefix}.ops.post"), start);
    assert!(
        posts.iter().any(|&(_, v)| v >= 3.0),
        "ops.post total: {posts:?}"
    );
    assert!(exporter.stats().connected);

    // Carbon dies. The node serves as before: a round trip is prompt, and a new client
    // connects; the exporter notices, keeps sampling, and keeps its buffer bounded.
    carbon.kill();
    let t = Instant::now();
    common::bystander_works(&clients[0], 1).await;
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "round trip took {:?} with carbon gone",
        t.elapsed()
    );
    clients.push(client_of(&node).await);
    let samples_before = exporter.stats().samples;
    common::wait_until("the exporter to notice carbon is gone", || {
        let s = exporter.stats();
        !s.connected && s.failures >= 1 && s.samples >= samples_before + 3
    })
    .await;
    assert!(exporter.stats().buffered <= exporter.config().max_buffered);

    // Carbon returns on the same port: the exporter reconnects and new points arrive.
    let restarted = unix_now();
    carbon.start();
    wait_for_point(&carbon, &format!("{prefix}.clients"), restarted, 4.0).await;
    let s = exporter.stats();
    assert!(s.connects >= 2, "reconnected: {s:?}");
    common::bystander_works(&clients[1], 2).await;

    exporter.stop().await;
    for c in clients {
        c.close().await;
    }
    if let Ok(node) = Arc::try_unwrap(node) {
        node.shutdown("test over").await;
    }
}

/// The same with a real `cloudd` process: `--graphite` from the command line, the rest from
/// its `[graphite]` table; losing carbon and getting it back is logged once each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudd_with_graphite_flag_reaches_carbon_and_logs_loss_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut carbon = Carbon::new(tmp.path());
    carbon.start();
    let data = tempfile::tempdir().expect("tempdir");
    let conf = data.path().join("cloudd.toml");
    std::fs::write(
        &conf,
        "[graphite]\nprefix = \"cm.proc\"\ninterval = \"200ms\"\nmax_backoff = \"1s\"\n",
    )
    .expect("config file");
    let server = format!("127.0.0.1:{}", carbon.line_port);
    let conf_arg = conf.display().to_string();
    let daemon = procs::start_cloudd(
        "proc-node",
        data.path(),
        &["--graphite", &server, "--config", &conf_arg],
    );
    let trust = Trust::Pin(parse_fingerprint(&daemon.fingerprint).expect("fingerprint"));
    let addr = daemon.addr.parse().expect("address");
    let connect = || Client::connect(addr, ClientOptions::new(trust.clone()));
    let a = within("client a", connect()).await.expect("connects");
    let b = within("client b", connect()).await.expect("connects");
    let start = unix_now().saturating_sub(1);
    wait_for_point(&carbon, "cm.proc.clients", start, 2.0).await;

    carbon.kill();
    common::bystander_works(&a, 1).await;
    drop(b);
    // Several retries go by (1 s apart at most) before carbon returns.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let restarted = unix_now();
    carbon.start();
    wait_for_point(&carbon, "cm.proc.clients", restarted, 1.0).await;
    common::bystander_works(&a, 2).await;

    daemon.proc.signal("-TERM");
    let (status, _, stderr) = daemon.proc.finish_within(DEADLINE);
    assert!(status.success(), "cloudd stopped cleanly: {stderr}");
    let count = |what: &str| stderr.lines().filter(|l| l.contains(what)).count();
    assert_eq!(count("connected to graphite"), 1, "{stderr}");
    assert_eq!(count("graphite connection lost"), 1, "{stderr}");
    assert_eq!(count("graphite connection restored"), 1, "{stderr}");
}

/// A source with a fixed set of samples.
struct Fixed;

impl MetricSource for Fixed {
    fn sample(&self) -> Vec<Sample> {
        (0..5)
            .map(|i| Sample::new("clients", f64::from(i)))
            .collect()
    }
}

/// With carbon gone for a long time the buffer stays at its bound (oldest dropped and
/// counted) and the retry delay doubles up to the cap. Virtual time: a minute passes at once.
#[tokio::test(start_paused = true)]
async fn exporter_buffer_stays_bounded_and_backoff_grows_while_carbon_is_gone() {
    // Nothing listens here: connects are refused.
    let port = free_port();
    let mut cfg = GraphiteConfig::new(&format!("127.0.0.1:{port}"), "test.node").expect("config");
    cfg.interval = Duration::from_millis(100);
    cfg.max_buffered = 20;
    cfg.max_backoff = Duration::from_secs(8);
    let exporter = Exporter::start(Arc::new(Fixed), cfg);
    let mut backoffs = Vec::new();
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let s = exporter.stats();
        assert!(s.buffered <= 20, "buffer over its bound: {s:?}");
        if backoffs.last() != Some(&s.last_backoff) {
            backoffs.push(s.last_backoff);
        }
    }
    let s = exporter.stats();
    let secs: Vec<u64> = backoffs.iter().map(|d| d.as_secs()).collect();
    assert_eq!(secs, [1, 2, 4, 8], "retry delays seen: {backoffs:?}");
    assert!(s.samples >= 500, "sampling went on: {s:?}");
    assert!(s.dropped >= 5 * 500 - 20, "{s:?}");
    assert_eq!(s.buffered, 20);
    assert_eq!((s.connects, s.sent, s.connected), (0, 0, false));
    // 1+2+4 s, then every 8 s over the rest of the minute.
    assert!((8..=12).contains(&s.failures), "{s:?}");
    exporter.stop().await;
}

/// Many long lines per sample, to fill socket buffers quickly.
struct Heavy;

impl MetricSource for Heavy {
    fn sample(&self) -> Vec<Sample> {
        (0..2000)
            .map(|i| Sample::new(format!("peer.{i:0>80}.rtt_ms"), 1.0))
            .collect()
    }
}

/// A carbon that accepts but never reads: writes time out instead of blocking, the buffer
/// stays bounded, and sampling goes on at its pace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_carbon_that_stops_reading_costs_a_bounded_buffer_only() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    // Accepts and holds every connection, reading nothing.
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    let mut cfg = GraphiteConfig::new(&format!("127.0.0.1:{port}"), "slow").expect("config");
    cfg.interval = Duration::from_millis(50);
    cfg.timeout = Duration::from_millis(500);
    cfg.max_buffered = 50_000;
    cfg.max_backoff = Duration::from_secs(1);
    let exporter = Exporter::start(Arc::new(Heavy), cfg);
    common::wait_until("a write to time out", || exporter.stats().failures >= 1).await;
    let before = exporter.stats();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = exporter.stats();
    assert!(
        after.samples >= before.samples + 5,
        "sampling went on: {before:?} → {after:?}"
    );
    assert!(after.buffered <= 50_000, "{after:?}");
    assert!(
        after.sent > 0,
        "some lines went out before the buffers filled: {after:?}"
    );
    exporter.stop().await;
    holder.abort();
}

/// A two-node mesh: every name a node reports is in the exporter's list, and the link to
/// the peer has an RTT under the peer's name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sampled_name_is_listed_and_peer_rtt_is_reported() {
    let nodes = common::mesh_of(&["m-a", "m-b"], |c, name| {
        c.name = name.to_owned();
        c.secret = Some(MeshSecret::new(vec![9; 32]).expect("secret"));
    })
    .await;
    let c = within("a client", client_of(&nodes[0].node)).await;
    // Kept: dropping the subscription would unsubscribe.
    let (_rows, _sub) = c
        .subscribe(vec![KeySpec::exact(&Key::new("k", 1))], None)
        .await
        .expect("subscribe");
    c.post(Key::new("k", 1), "v").await.expect("post");
    common::wait_until("the notification to be counted", || {
        nodes[0]
            .node
            .metrics()
            .iter()
            .any(|s| s.name == "notifications" && s.value >= 1.0)
    })
    .await;
    let samples = nodes[0].node.metrics();
    for s in &samples {
        assert!(
            metrics::lookup(&s.name).is_some(),
            "{} is not listed",
            s.name
        );
    }
    let get = |name: &str| {
        samples
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.value)
            .unwrap_or_else(|| panic!("{name} missing from {samples:?}"))
    };
    assert_eq!(get("clients"), 1.0);
    assert_eq!(get("peers"), 1.0);
    assert_eq!(get("members"), 2.0);
    assert_eq!(get("ops.post"), 1.0);
    assert_eq!(get("ops.subscribe"), 1.0);
    assert!(get("subscriptions") >= 1.0);
    let rtt = get("peer.m-b.rtt_ms");
    assert!(rtt > 0.0 && rtt < 1000.0, "rtt {rtt}");
    // Every listed name but the exporter's own and the per-peer pattern is sampled.
    for d in METRICS {
        if d.name.starts_with("exporter.") || d.name.contains(metrics::PEER_PLACEHOLDER) {
            continue;
        }
        get(d.name);
    }

    // A migration counts as started and finished at the source, arrived at the target.
    within(
        "migration",
        nodes[0].node.migrate(c.id(), nodes[1].node.id()),
    )
    .await
    .expect("migrates");
    let value = |n: &Node, name: &str| {
        n.metrics()
            .iter()
            .find(|s| s.name == name)
            .map_or(-1.0, |s| s.value)
    };
    assert_eq!(value(&nodes[0].node, "migrations.started"), 1.0);
    assert_eq!(value(&nodes[0].node, "migrations.finished"), 1.0);
    assert_eq!(value(&nodes[0].node, "migrations.failed"), 0.0);
    // The source is done at the handover; the target finishes installing just after.
    common::wait_until("the arrival to count at the target", || {
        value(&nodes[1].node, "migrations.arrived") == 1.0
            && value(&nodes[1].node, "clients") == 1.0
    })
    .await;
    c.close().await;
}

/// Metric paths in a Graphite target: every run of path characters starting at
/// `cloudmesh.` (function names and arguments around them are skipped).
fn target_paths(target: &str) -> Vec<String> {
    let is_path = |c: char| c.is_ascii_alphanumeric() || "._-*$[]{}".contains(c);
    let mut out = Vec::new();
    let mut rest = target;
    while let Some(i) = rest.find("cloudmesh.") {
        // Only at a token start, not inside a longer word.
        let before = rest[..i].chars().last();
        let tail = &rest[i..];
        // A comma inside `{a,b}` is part of the path; outside, it separates arguments.
        let mut depth = 0u32;
        let end = tail
            .char_indices()
            .find(|&(_, c)| {
                match c {
                    '{' => depth += 1,
                    '}' => depth = depth.saturating_sub(1),
                    _ => {}
                }
                !(is_path(c) || (c == ',' && depth > 0))
            })
            .map_or(tail.len(), |(i, _)| i);
        if before.is_none_or(|c| !is_path(c)) {
            out.push(tail[..end].to_owned());
        }
        rest = &tail[end.max(1)..];
    }
    out
}

/// Whether a target path below `cloudmesh.<node>.` can only match listed metrics: each
/// segment equal to the listed one, or a wildcard/variable where the list has `{peer}`
/// (or the pattern segment is a plain `*` over a concrete one is refused: too broad).
fn path_is_listed(path: &str) -> Result<(), String> {
    // `a.{b,c}.d` means both `a.b.d` and `a.c.d`: each must be listed.
    if let (Some(open), Some(close)) = (path.find('{'), path.find('}')) {
        if open < close && !path[..open].ends_with("cloudmesh.") {
            for alt in path[open + 1..close].split(',') {
                let one = format!("{}{alt}{}", &path[..open], &path[close + 1..]);
                path_is_listed(&one).map_err(|e| format!("alternative {one:?} {e}"))?;
            }
            return Ok(());
        }
    }
    let mut segs = path.split('.');
    let root = segs.next();
    let node = segs.next();
    if root != Some("cloudmesh") || node.is_none() {
        return Err("does not start with cloudmesh.<node>".into());
    }
    let rest: Vec<&str> = segs.collect();
    let wild = |s: &str| s.contains(['*', '$', '[', '{']);
    let ok = METRICS.iter().any(|d| {
        let p: Vec<&str> = d.name.split('.').collect();
        p.len() == rest.len()
            && p.iter().zip(&rest).all(|(p, t)| {
                if *p == metrics::PEER_PLACEHOLDER {
                    true
                } else {
                    p == t
                }
            })
            && rest
                .iter()
                .zip(&p)
                .all(|(t, p)| !wild(t) || *p == metrics::PEER_PLACEHOLDER)
    });
    if ok {
        Ok(())
    } else {
        Err("names no metric in cloudmesh::metrics::METRICS".into())
    }
}

fn panels(dash: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    let mut stack: Vec<&Value> = dash["panels"].as_array().into_iter().flatten().collect();
    while let Some(p) = stack.pop() {
        // Rows may carry their own (collapsed) panels.
        stack.extend(p["panels"].as_array().into_iter().flatten());
        out.push(p);
    }
    out
}

/// Acceptance 3: the dashboard is a valid Grafana dashboard and every Graphite target
/// names only metrics the exporter sends.
#[test]
fn grafana_dashboard_references_only_exported_metrics() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/grafana-dashboard.json");
    let text = std::fs::read_to_string(&path).expect("assets/grafana-dashboard.json");
    let dash: Value = serde_json::from_str(&text).expect("dashboard is JSON");
    assert!(dash["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(dash["schemaVersion"].as_u64().is_some_and(|v| v >= 30));
    assert!(dash["uid"]
        .as_str()
        .is_some_and(|u| !u.is_empty() && u.len() <= 40));
    let vars = dash["templating"]["list"]
        .as_array()
        .expect("templating.list");
    let var = |name: &str| vars.iter().find(|v| v["name"] == name);
    assert_eq!(
        var("datasource").map(|v| &v["type"]),
        Some(&Value::from("datasource"))
    );
    assert_eq!(
        var("datasource").map(|v| &v["query"]),
        Some(&Value::from("graphite"))
    );
    let node = var("node").expect("a node variable");
    assert_eq!(node["type"], "query");
    assert!(
        node["query"]
            .as_str()
            .unwrap_or_default()
            .contains("cloudmesh.*")
            || node["query"]["query"]
                .as_str()
                .unwrap_or_default()
                .contains("cloudmesh.*"),
        "node variable lists cloudmesh.*: {}",
        node["query"]
    );

    let panels = panels(&dash);
    let mut ids = std::collections::HashSet::new();
    let mut targets = 0;
    let mut used = std::collections::HashSet::new();
    for p in &panels {
        let title = p["title"].as_str().unwrap_or("?");
        assert!(p["type"].as_str().is_some(), "panel {title} has a type");
        let id = p["id"].as_u64().expect("panel id");
        assert!(ids.insert(id), "panel id {id} used twice");
        if p["type"] == "row" {
            continue;
        }
        let pos = &p["gridPos"];
        for k in ["x", "y", "w", "h"] {
            assert!(pos[k].as_u64().is_some(), "panel {title}: gridPos.{k}");
        }
        let ts = p["targets"].as_array().expect("panel targets");
        assert!(!ts.is_empty(), "panel {title} has no target");
        for t in ts {
            let target = t["target"].as_str().expect("a Graphite target string");
            let paths = target_paths(target);
            assert!(
                !paths.is_empty(),
                "panel {title:?}: target {target:?} names no cloudmesh.* path"
            );
            for path in paths {
                if let Err(e) = path_is_listed(&path) {
                    panic!("panel {title:?}: target {target:?}: path {path:?} {e}");
                }
                used.insert(path.split('.').skip(2).collect::<Vec<_>>().join("."));
            }
            targets += 1;
        }
    }
    assert!(targets >= 10, "only {targets} targets");
    // The panels the design asks for: their metrics are shown somewhere.
    for m in [
        "clients",
        "rows",
        "bytes",
        "ops.post",
        "ops.get",
        "notifications",
        "migrations.started",
        "host_changes",
        "cpu_percent",
        "memory_bytes",
        "peer.*.rtt_ms",
    ] {
        assert!(used.contains(m), "no panel shows {m}");
    }
}

#[test]
fn target_path_extraction_and_checking() {
    let t = "alias(perSecond(cloudmesh.$node.ops.post), 'post')";
    assert_eq!(target_paths(t), ["cloudmesh.$node.ops.post"]);
    let t = "aliasByNode(cloudmesh.$node.peer.*.rtt_ms, 1, 3)";
    assert_eq!(target_paths(t), ["cloudmesh.$node.peer.*.rtt_ms"]);
    assert!(path_is_listed("cloudmesh.$node.ops.post").is_ok());
    assert!(path_is_listed("cloudmesh.*.peer.*.rtt_ms").is_ok());
    assert!(path_is_listed("cloudmesh.$node.ops.posts").is_err());
    assert!(path_is_listed("cloudmesh.$node.ops.*").is_err());
    assert!(path_is_listed("graphite.$node.clients").is_err());
    let t = "sumSeries(cloudmesh.$node.ops.{post,get}, cloudmesh.$node.rows)";
    assert_eq!(
        target_paths(t),
        ["cloudmesh.$node.ops.{post,get}", "cloudmesh.$node.rows"]
    );
    assert!(path_is_listed("cloudmesh.$node.ops.{post,get}").is_ok());
    assert!(path_is_listed("cloudmesh.$node.ops.{post,gets}").is_err());
    assert!(path_is_listed("cloudmesh.{a,b}.clients").is_ok());
}
