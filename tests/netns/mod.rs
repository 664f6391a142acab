//! Hosts in network namespaces for fault tests: a test makes a small network of its own —
//! one namespace per host, each with an `eth0` on a bridge that lives in a namespace of its
//! own (nothing is created in the namespace the test runs in) — runs real `cloudd` and
//! `cloudctl` processes on those hosts with `ip netns exec`, and cuts links between hosts
//! with nftables drop rules inside their namespaces, one way or both ways.
//!
//! Names are `cm<pid>-<n>...`, unique per test process and per network, so tests in one
//! binary run in parallel. Dropping the [`Net`] kills every process still inside its
//! namespaces and deletes them (with them the bridge and the veth pairs), on panic too;
//! namespaces a killed test run left behind (its pid gone) are removed by the next run.
//! Making namespaces needs root: without it the test fails and says so, it never skips.
//!
//! A test binary using it declares both `mod netns;` and `mod procs;` (processes are
//! `procs::Proc`s: lines on channels, killed on drop).
#![allow(dead_code)]

use serde_json::Value;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once};

use super::procs::{command, Proc, CLOUDCTL, CLOUDD};

/// The port every node listens on (each host has its own address).
pub const PORT: u16 = 7946;

/// Networks made by this process, for unique names and subnets.
static NETS: AtomicUsize = AtomicUsize::new(0);

/// Runs `ip ARGS` (or another tool) and returns its stdout, panicking with its stderr.
fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e} (is iproute2 installed?)"));
    if !out.status.success() {
        panic!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Kills every process inside namespace `ns` (all started by tests) and deletes it.
fn remove_namespace(ns: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if pid.parse::<u32>().is_ok() {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
        }
    }
    let _ = Command::new("ip").args(["netns", "del", ns]).status();
}

/// Removes namespaces named `cm<pid>-...` whose test process is gone (a run that was
/// killed before its guards could clean up). Those of live processes are left alone.
fn remove_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(pid) = name
            .strip_prefix("cm")
            .and_then(|r| r.split_once('-'))
            .and_then(|(p, _)| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            remove_namespace(name);
        }
    }
}

/// A network of hosts on one bridge, removed when dropped.
pub struct Net {
    /// `cm<pid>-<n>`: the prefix of every namespace this network made.
    pub prefix: String,
    /// The namespace holding the bridge `br0` and the hosts' veth ends.
    switch: String,
    /// One namespace per host, in host order.
    hosts: Vec<String>,
    /// The third octet of the hosts' addresses, 10.77.SUBNET.(i+1)/24.
    subnet: u8,
    /// Hosts with drop rules (their `cmfault` table exists), for [`Net::heal`].
    cut: Mutex<Vec<usize>>,
}

impl Net {
    /// Makes `n` hosts, host `i` at 10.77.X.(i+1)/24, all on one bridge.
    pub fn new(n: usize) -> Net {
        static CLEAN: Once = Once::new();
        CLEAN.call_once(remove_stale);
        assert!((1..=250).contains(&n), "1 to 250 hosts per network");
        let k = NETS.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("cm{}-{k}", std::process::id());
        let switch = format!("{prefix}sw");
        let probe = Command::new("ip").args(["netns", "add", &switch]).output();
        match probe {
            Ok(out) if out.status.success() => {}
            Ok(out) => panic!(
                "fault tests make network namespaces and must run as root (CI does): \
                 `ip netns add {switch}` failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) => panic!(
                "fault tests need iproute2's `ip` (and root) to make network namespaces: {e}"
            ),
        }
        // From here on the guard owns what exists, so a failure below cleans up.
        let mut net = Net {
            prefix,
            switch,
            hosts: Vec::new(),
            subnet: u8::try_from(k % 250 + 1).expect("below 256"),
            cut: Mutex::new(Vec::new()),
        };
        let sw = net.switch.clone();
        run("ip", &["-n", &sw, "link", "add", "br0", "type", "bridge"]);
        run("ip", &["-n", &sw, "link", "set", "br0", "up"]);
        run("ip", &["-n", &sw, "link", "set", "lo", "up"]);
        for i in 0..n {
            let ns = format!("{}h{i}", net.prefix);
            run("ip", &["netns", "add", &ns]);
            net.hosts.push(ns.clone());
            let veth = format!("v{i}");
            run(
                "ip",
                &[
                    "-n", &sw, "link", "add", &veth, "type", "veth", "peer", "name", "eth0",
                    "netns", &ns,
                ],
            );
            run(
                "ip",
                &["-n", &sw, "link", "set", &veth, "master", "br0", "up"],
            );
            let cidr = format!("{}/24", net.ip(i));
            run("ip", &["-n", &ns, "addr", "add", &cidr, "dev", "eth0"]);
            run("ip", &["-n", &ns, "link", "set", "eth0", "up"]);
            run("ip", &["-n", &ns, "link", "set", "lo", "up"]);
        }
        net
    }

    /// Number of hosts.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// Host `i`'s namespace.
    pub fn ns(&self, i: usize) -> &str {
        &self.hosts[i]
    }

    /// Host `i`'s address.
    pub fn ip(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(
            10,
            77,
            self.subnet,
            u8::try_from(i + 1).expect("at most 250 hosts"),
        )
    }

    /// Host `i`'s node address, `IP:7946`.
    pub fn addr(&self, i: usize) -> String {
        format!("{}:{PORT}", self.ip(i))
    }

    /// `ip netns exec NS BIN ARGS...` on host `i`, with no inherited cloudmesh settings.
    /// `ip` execs the program, so the child's pid is the program's.
    pub fn command(&self, i: usize, bin: &str, args: &[&str]) -> Command {
        let mut all = vec!["netns", "exec", self.ns(i), bin];
        all.extend_from_slice(args);
        command("ip", &all)
    }

    /// Starts `cloudd` on host `i` listening on `IP:7946`, with its data directory and
    /// admin socket under `dir`, without waiting for it (see [`Node::ready`]).
    pub fn spawn_cloudd(&self, i: usize, name: &str, dir: &Path, extra: &[&str]) -> Node {
        std::fs::create_dir_all(dir).expect("make the node's data directory");
        let admin = dir.join("admin.sock");
        let listen = self.addr(i);
        let mut args = vec![
            "--listen",
            &listen,
            "--name",
            name,
            "--data-dir",
            dir.to_str().expect("UTF-8 path"),
            "--admin-socket",
            admin.to_str().expect("UTF-8 path"),
        ];
        args.extend_from_slice(extra);
        Node {
            proc: Proc::spawn_cmd(self.command(i, CLOUDD, &args)),
            name: name.to_owned(),
            host: i,
            ns: self.ns(i).to_owned(),
            addr: listen,
            fingerprint: String::new(),
            admin,
        }
    }

    /// [`Net::spawn_cloudd`], then waits for it to listen.
    pub fn start_cloudd(&self, i: usize, name: &str, dir: &Path, extra: &[&str]) -> Node {
        let mut node = self.spawn_cloudd(i, name, dir, extra);
        node.ready();
        node
    }

    fn table(&self, host: usize) {
        let mut cut = self.cut.lock().unwrap_or_else(|e| e.into_inner());
        if cut.contains(&host) {
            return;
        }
        let ns = self.ns(host);
        run(
            "ip",
            &[
                "netns", "exec", ns, "nft", "add", "table", "inet", "cmfault",
            ],
        );
        run(
            "ip",
            &[
                "netns",
                "exec",
                ns,
                "nft",
                "add",
                "chain",
                "inet",
                "cmfault",
                "input",
                "{ type filter hook input priority 0; policy accept; }",
            ],
        );
        cut.push(host);
    }

    /// Drops every packet from host `from` to host `to` (at `to`'s input): one way.
    pub fn block(&self, from: usize, to: usize) {
        self.table(to);
        let src = self.ip(from).to_string();
        run(
            "ip",
            &[
                "netns",
                "exec",
                self.ns(to),
                "nft",
                "add",
                "rule",
                "inet",
                "cmfault",
                "input",
                "ip",
                "saddr",
                &src,
                "drop",
            ],
        );
    }

    /// Cuts `a` and `b` apart both ways.
    pub fn cut(&self, a: usize, b: usize) {
        self.block(a, b);
        self.block(b, a);
    }

    /// Cuts every host of `left` from every host of `right`, both ways.
    pub fn partition(&self, left: &[usize], right: &[usize]) {
        for &a in left {
            for &b in right {
                self.cut(a, b);
            }
        }
    }

    /// Removes every drop rule.
    pub fn heal(&self) {
        let mut cut = self.cut.lock().unwrap_or_else(|e| e.into_inner());
        for host in cut.drain(..) {
            run(
                "ip",
                &[
                    "netns",
                    "exec",
                    self.ns(host),
                    "nft",
                    "delete",
                    "table",
                    "inet",
                    "cmfault",
                ],
            );
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in self.hosts.iter().chain(std::iter::once(&self.switch)) {
            remove_namespace(ns);
        }
    }
}

/// A `cloudd` on one host of a [`Net`].
pub struct Node {
    pub proc: Proc,
    pub name: String,
    /// Its host's index in the net.
    pub host: usize,
    /// Its host's namespace.
    pub ns: String,
    /// `IP:7946`.
    pub addr: String,
    /// Its certificate fingerprint (hex), once [`Node::ready`].
    pub fingerprint: String,
    /// Its admin socket (a path, reachable from any network namespace).
    pub admin: PathBuf,
}

impl Node {
    /// Waits for `listening on ADDR; certificate fingerprint sha256:HEX`.
    pub fn ready(&mut self) {
        let line = self
            .proc
            .stderr_line("announcing the address and fingerprint", |l| {
                l.contains("listening on ") && l.contains("fingerprint sha256:")
            });
        assert!(line.contains(&self.addr), "{}: {line}", self.name);
        self.fingerprint = line
            .split("fingerprint sha256:")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .expect("hex after `fingerprint sha256:`")
            .to_owned();
        assert_eq!(self.fingerprint.len(), 64, "{line}");
    }

    /// `cloudctl ARGS... --server ADDR --pin FP`, run on the node's host (a client there).
    pub fn ctl(&self, args: &[&str]) -> Proc {
        let mut all = args.to_vec();
        all.extend(["--server", &self.addr, "--pin", &self.fingerprint]);
        let mut cmd = vec!["netns", "exec", &self.ns, CLOUDCTL];
        cmd.extend(all);
        Proc::spawn_cmd(command("ip", &cmd))
    }

    /// `cloudctl --socket ADMIN ARGS...` from the test's own namespace (the admin socket
    /// is a file).
    pub fn admin_ctl(&self, args: &[&str]) -> Proc {
        let mut all = vec!["--socket", self.admin.to_str().expect("UTF-8 path")];
        all.extend_from_slice(args);
        Proc::spawn(CLOUDCTL, &all)
    }

    /// The members this node lists (`cloudctl nodes --json`).
    pub fn members(&self) -> Result<Vec<Member>, String> {
        let (status, out, err) = self
            .admin_ctl(&["nodes", "--json", "--timeout", "5s"])
            .finish();
        if !status.success() {
            return Err(format!("{}: nodes failed: {}", self.name, err.trim()));
        }
        let v: Value = serde_json::from_str(out.trim())
            .map_err(|e| format!("{}: nodes --json {out:?}: {e}", self.name))?;
        let nodes = v["nodes"]
            .as_array()
            .ok_or_else(|| format!("{}: no nodes in {v}", self.name))?;
        nodes
            .iter()
            .map(|n| {
                let text = |k: &str| {
                    n[k].as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| format!("no {k} in {n}"))
                };
                let flag = |k: &str| n[k].as_bool().ok_or_else(|| format!("no {k} in {n}"));
                Ok(Member {
                    name: text("name")?,
                    id: text("id")?,
                    state: text("state")?,
                    host: flag("host")?,
                    local: flag("local")?,
                    linked: flag("linked")?,
                })
            })
            .collect()
    }

    /// `cloudctl get KEYSPEC --json` through this node: the rows, and the ids of the nodes
    /// named as incomplete.
    pub fn get(&self, keyspec: &str) -> Result<(Vec<Value>, Vec<String>), String> {
        let (status, out, err) = self.ctl(&["get", keyspec, "--json"]).finish();
        if !status.success() {
            return Err(format!(
                "{}: get {keyspec} failed: {}",
                self.name,
                err.trim()
            ));
        }
        let rows = out
            .lines()
            .map(|l| serde_json::from_str(l).map_err(|e| format!("{l:?} is not JSON: {e}")))
            .collect::<Result<Vec<Value>, String>>()?;
        let incomplete = err
            .lines()
            .filter(|l| l.contains("(incomplete)"))
            .filter_map(|l| l.split("node ").nth(1)?.split_whitespace().next())
            .map(str::to_owned)
            .collect();
        Ok((rows, incomplete))
    }
}

/// One member as a node lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub id: String,
    pub state: String,
    pub host: bool,
    /// The node answering.
    pub local: bool,
    /// The answering node has a live link to it.
    pub linked: bool,
}

/// What a node's view lacks to be one full mesh of exactly `names` (every member Active,
/// linked to the answering node, one host); `Ok` with the host's name when it is one.
pub fn full_mesh(node: &Node, names: &[&str]) -> Result<String, String> {
    let ms = node.members()?;
    let mut got: Vec<&str> = ms.iter().map(|m| m.name.as_str()).collect();
    got.sort_unstable();
    let mut want = names.to_vec();
    want.sort_unstable();
    let hosts: Vec<&str> = ms
        .iter()
        .filter(|m| m.host)
        .map(|m| m.name.as_str())
        .collect();
    let unlinked: Vec<&str> = ms
        .iter()
        .filter(|m| !m.local && !m.linked)
        .map(|m| m.name.as_str())
        .collect();
    let inactive: Vec<String> = ms
        .iter()
        .filter(|m| m.state != "Active")
        .map(|m| format!("{} {}", m.name, m.state))
        .collect();
    if got == want && hosts.len() == 1 && unlinked.is_empty() && inactive.is_empty() {
        Ok(hosts[0].to_owned())
    } else {
        Err(format!(
            "{} lists {got:?}, hosts {hosts:?}, unlinked {unlinked:?}, not active {inactive:?}",
            node.name
        ))
    }
}

/// Whether every node in `nodes` has a full mesh of `names` with the same host; `Ok` with
/// that host, `Err` with what each view lacks.
pub fn one_mesh(nodes: &[&Node], names: &[&str]) -> Result<String, String> {
    let views: Vec<Result<String, String>> = nodes.iter().map(|n| full_mesh(n, names)).collect();
    let hosts: Vec<&String> = views.iter().filter_map(|v| v.as_ref().ok()).collect();
    if hosts.len() == nodes.len() && hosts.windows(2).all(|w| w[0] == w[1]) {
        return Ok(hosts[0].clone());
    }
    Err(views
        .iter()
        .zip(nodes)
        .map(|(v, n)| match v {
            Ok(h) => format!("{}: full mesh, host {h}", n.name),
            Err(e) => e.clone(),
        })
        .collect::<Vec<_>>()
        .join("; "))
}
