//! Dynamic DNS against a real BIND (issue 8, acceptance 2): `named` on 127.0.0.1 at a free
//! port with a zone `mesh.test` that a TSIG key (hmac-sha256) may update, and real `cloudd`
//! processes told to keep `cloud.mesh.test` current. Each node listens on its own loopback
//! IP (127.0.0.11, 127.0.0.12, ...), which it advertises, so the record tells them apart.
//! The record is read with `dig`, independently of the code under test. Every wait is a
//! poll with a deadline; every process (named included) is killed when its guard drops.

mod procs;

use std::collections::BTreeSet;
use std::io::Write as _;
use std::net::{TcpListener, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use procs::{command, wait_until, Daemon, Proc, CLOUDD, DEADLINE};

const ZONE: &str = "mesh.test";
const NAME: &str = "cloud.mesh.test";
/// The key named knows (fixed: made once with `tsig-keygen -a hmac-sha256 cloudd-test`).
const KEY: &str = "key \"cloudd-test\" {\n\talgorithm hmac-sha256;\n\tsecret \
    \"r+E3Y8W5EX9ahKzIvSrLWFXRh4rY5hDzbgvUf4eFTeo=\";\n};\n";
/// The same key name with another secret (named answers BADSIG).
const WRONG_SECRET: &str = "hmac-sha256:cloudd-test:d3JvbmctcGFzc3dvcmQtd3Jvbmc=\n";
/// A key named does not know (named answers BADKEY).
const UNKNOWN_KEY: &str = "hmac-sha256:nobody:d3JvbmctcGFzc3dvcmQtd3Jvbmc=\n";

fn utf8(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

/// Writes a 0600 file, as the README tells operators to keep secrets.
fn private_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write file");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
    path
}

/// A port free for both UDP and TCP on 127.0.0.1 (named serves both) at the moment asked.
fn free_port() -> u16 {
    loop {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("bind a TCP port");
        let port = tcp.local_addr().expect("local addr").port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A `named` of the test's own: config, zone, key, pid file and journal in `dir`.
struct Named {
    /// The process (killed on drop).
    _proc: Proc,
    /// Where it listens, on 127.0.0.1.
    port: u16,
    /// The key file it accepts, in BIND's format (also what the nodes read).
    key: PathBuf,
}

/// Starts named and waits until it answers for the zone. Another process may take the
/// port between choosing and binding it; then named logs so, and a new port is tried.
fn start_named(dir: &Path) -> Named {
    let named = ["/usr/sbin/named", "named"]
        .into_iter()
        .find(|p| Command::new(p).arg("-v").output().is_ok())
        .expect("named runs (CI installs bind9; locally: apt-get install bind9 bind9-dnsutils)");
    let key = private_file(dir, "key.conf", KEY);
    std::fs::write(
        dir.join("zone.db"),
        "$TTL 60\n@ IN SOA ns.mesh.test. admin.mesh.test. 1 60 60 3600 60\n\
         @ IN NS ns.mesh.test.\nns IN A 127.0.0.1\n",
    )
    .expect("write zone");
    let mut last = String::new();
    for _attempt in 0..5 {
        let port = free_port();
        let d = utf8(dir);
        let conf = dir.join("named.conf");
        std::fs::write(
            &conf,
            format!(
                "options {{\n  directory \"{d}\";\n  pid-file \"{d}/named.pid\";\n  \
                 listen-on port {port} {{ 127.0.0.1; }};\n  listen-on-v6 {{ none; }};\n  \
                 recursion no;\n  dnssec-validation no;\n  notify no;\n  \
                 session-keyfile \"{d}/session.key\";\n  managed-keys-directory \"{d}\";\n}};\n\
                 controls {{ }};\ninclude \"{d}/key.conf\";\n\
                 zone \"{ZONE}\" {{\n  type primary;\n  file \"{d}/zone.db\";\n  \
                 allow-update {{ key cloudd-test; }};\n}};\n"
            ),
        )
        .expect("write named.conf");
        // -g: foreground, logs on stderr; -n 1: one worker thread is plenty.
        let mut proc = Proc::spawn(named, &["-g", "-n", "1", "-c", utf8(&conf)]);
        let line = proc.stderr_line("saying it runs or failed", |l| {
            // "running" alone ends the start; "running on Linux" and "running as" do not.
            l.ends_with(" running") || l.contains("exiting") || l.contains("address in use")
        });
        if !line.ends_with("running") {
            last = proc.stderr_text();
            continue;
        }
        let n = Named {
            _proc: proc,
            port,
            key,
        };
        wait_until("named to answer for the zone", DEADLINE, || {
            dig(n.port, ZONE, "SOA").and_then(|soa| {
                if soa.is_empty() {
                    Err("no SOA yet".into())
                } else {
                    Ok(())
                }
            })
        });
        return n;
    }
    panic!("named did not start on a free port in 5 attempts; it said:\n{last}");
}

/// `dig +short` for one name and type, asked of our named only.
fn dig(port: u16, name: &str, rtype: &str) -> Result<BTreeSet<String>, String> {
    let out = Command::new("dig")
        .args([
            "@127.0.0.1",
            "-p",
            &port.to_string(),
            "+short",
            "+norecurse",
            "+time=2",
            "+tries=1",
            name,
            rtype,
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run dig (apt-get install bind9-dnsutils): {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || text.contains(";;") {
        return Err(format!(
            "dig failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(text.lines().map(str::to_owned).collect())
}

impl Named {
    /// The record's A and AAAA addresses.
    fn record(&self) -> Result<BTreeSet<String>, String> {
        let mut all = dig(self.port, NAME, "A")?;
        all.extend(dig(self.port, NAME, "AAAA")?);
        Ok(all)
    }

    /// Waits until the record holds exactly `ips`.
    fn wait_record(&self, what: &str, ips: &[&str]) {
        let want: BTreeSet<String> = ips.iter().map(|s| (*s).to_owned()).collect();
        wait_until(what, DEADLINE, || {
            let got = self.record()?;
            if got == want {
                Ok(())
            } else {
                Err(format!("record holds {got:?}, want {want:?}"))
            }
        });
    }

    /// Sets the record with `nsupdate`, as an operator (or someone else) would.
    fn nsupdate(&self, ip: &str) {
        let mut child = Command::new("nsupdate")
            .args(["-k", utf8(&self.key)])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nsupdate runs");
        let script = format!(
            "server 127.0.0.1 {}\nzone {ZONE}\nupdate delete {NAME} A\nupdate delete {NAME} AAAA\n\
             update add {NAME} 30 A {ip}\nsend\n",
            self.port
        );
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(script.as_bytes())
            .expect("write to nsupdate");
        let out = child.wait_with_output().expect("nsupdate ends");
        assert!(
            out.status.success(),
            "nsupdate: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The `--dns-*` flags for a node using `key`.
    fn flags<'a>(&self, port: &'a str, key: &'a Path) -> Vec<&'a str> {
        vec![
            "--dns-server",
            port,
            "--dns-zone",
            ZONE,
            "--dns-name",
            NAME,
            "--dns-tsig-key-file",
            utf8(key),
        ]
    }

    fn server(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// Starts `cloudd` on `ip` port 0 (so it advertises `ip` and the port it got), with debug
/// logs of the updater, and waits for its start line.
fn start_node(name: &str, ip: &str, dir: &Path, extra: &[&str]) -> Daemon {
    std::fs::create_dir_all(dir).expect("node dir");
    let listen = format!("{ip}:0");
    let admin = dir.join("admin.sock");
    let mut args = vec![
        "--listen",
        &listen,
        "--data-dir",
        utf8(dir),
        "--name",
        name,
        "--admin-socket",
        utf8(&admin),
        "--log",
        "info,cloudmesh::dyndns=debug",
    ];
    args.extend_from_slice(extra);
    let mut proc = Proc::spawn_cmd(command(CLOUDD, &args));
    let line = proc.stderr_line("announcing the address and fingerprint", |l| {
        l.contains("listening on ") && l.contains("fingerprint sha256:")
    });
    let field = |after: &str, until: char| {
        line.split(after)
            .nth(1)
            .and_then(|r| r.split(until).next())
            .unwrap_or_else(|| panic!("{after} in {line}"))
            .to_owned()
    };
    let addr = field("listening on ", ';');
    assert!(addr.starts_with(&format!("{ip}:")), "{line}");
    Daemon {
        proc,
        name: name.to_owned(),
        fingerprint: field("fingerprint sha256:", ' '),
        addr,
        admin,
    }
}

/// Waits until `d` counts `n` members in `cloud.nodes`.
fn wait_members(d: &Daemon, n: usize) {
    wait_until(&format!("{} to see {n} nodes", d.name), DEADLINE, || {
        let (status, out, err) = d.ctl(&["get", "cloud.nodes", "--json"]).finish();
        let rows = out.lines().count();
        if status.success() && rows == n {
            Ok(())
        } else {
            Err(format!("{rows} rows; {err}"))
        }
    });
}

/// Mesh flags: the shared secret, and a short idle timeout so a killed node is noticed in
/// seconds (still long for a loaded machine).
fn mesh_flags(secret: &Path) -> Vec<&str> {
    vec![
        "--secret-file",
        utf8(secret),
        "--idle-timeout",
        "2s",
        "--keep-alive",
        "500ms",
    ]
}

#[test]
fn the_host_keeps_the_record_and_a_new_host_takes_it_over_after_kill_9() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let named = start_named(tmp.path());
    let secret = private_file(tmp.path(), "mesh.secret", &"s3cret-".repeat(6));
    // A short recheck, to see a record changed by someone else put back.
    let config = tmp.path().join("cloudd.toml");
    std::fs::write(&config, "[dns]\nrecheck = \"1s\"\n").expect("write config");
    let server = named.server();
    let mut base = mesh_flags(&secret);
    base.extend(named.flags(&server, &named.key));
    base.extend(["--config", utf8(&config)]);

    let a = start_node("node-a", "127.0.0.11", &tmp.path().join("a"), &base);
    named.wait_record("the first node (host) to publish itself", &["127.0.0.11"]);

    let join = a.addr.clone();
    let mut joiner = base.clone();
    joiner.extend(["--join", &join]);
    let mut b = start_node("node-b", "127.0.0.12", &tmp.path().join("b"), &joiner);
    wait_members(&a, 2);
    wait_members(&b, 2);
    // B is not the host: it leaves the record alone, and says so (debug).
    b.proc.stderr_line("node-b saying it is not the host", |l| {
        l.contains("not the host")
    });
    assert_eq!(
        named.record(),
        Ok(BTreeSet::from(["127.0.0.11".to_owned()]))
    );

    a.proc.signal("-KILL");
    named.wait_record("the new host to take the record over", &["127.0.0.12"]);
    b.proc.stderr_line("node-b reporting the update", |l| {
        l.contains("DNS record cloud.mesh.test. updated: 127.0.0.12 (was 127.0.0.11)")
    });

    // Someone else changes the record; the host's periodic check puts it back.
    named.nsupdate("127.0.0.99");
    named.wait_record("the host to correct a changed record", &["127.0.0.12"]);
    let text = b.proc.stderr_text();
    assert!(!text.contains("ERROR"), "no errors on the way: {text}");
}

#[test]
fn a_wrong_tsig_key_is_reported_clearly_and_changes_nothing() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let named = start_named(tmp.path());
    named.nsupdate("127.0.0.50");
    let server = named.server();
    for (name, ip, key_text, says) in [
        (
            "wrong-secret",
            "127.0.0.13",
            WRONG_SECRET,
            "TSIG signature rejected (BADSIG)",
        ),
        (
            "unknown-key",
            "127.0.0.14",
            UNKNOWN_KEY,
            "TSIG key rejected (BADKEY)",
        ),
    ] {
        let key = private_file(tmp.path(), &format!("{name}.key"), key_text);
        // A single node: it is its own host, so it tries to write.
        let mut node = start_node(
            name,
            ip,
            &tmp.path().join(name),
            &named.flags(&server, &key),
        );
        let want = format!("DNS update refused by {server}: {says}");
        let first = node.proc.stderr_line("the refusal", |l| l.contains(&want));
        assert!(first.contains("ERROR"), "{first}");
        // Retries go on (at debug level, with backoff); the error is logged once.
        node.proc.stderr_line("a second retry", |l| {
            l.contains("still not updated") && l.contains("retrying in 2s")
        });
        let text = node.proc.stderr_text();
        assert_eq!(
            text.lines()
                .filter(|l| l.contains(&want) && l.contains("ERROR"))
                .count(),
            1,
            "one error line however many retries: {text}"
        );
        assert_eq!(
            named.record(),
            Ok(BTreeSet::from(["127.0.0.50".to_owned()])),
            "{name} changed nothing"
        );
    }
}

#[test]
fn all_active_mode_publishes_every_active_node_and_removes_drained_ones() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let named = start_named(tmp.path());
    let secret = private_file(tmp.path(), "mesh.secret", &"s3cret-".repeat(6));
    let server = named.server();
    let mut base = mesh_flags(&secret);
    base.extend(named.flags(&server, &named.key));
    base.extend(["--dns-publish", "active"]);

    let a = start_node("node-a", "127.0.0.11", &tmp.path().join("a"), &base);
    named.wait_record("the first node to publish itself", &["127.0.0.11"]);
    let join = a.addr.clone();
    let mut joiner = base.clone();
    joiner.extend(["--join", &join]);
    let b = start_node("node-b", "127.0.0.12", &tmp.path().join("b"), &joiner);
    named.wait_record("both Active nodes", &["127.0.0.11", "127.0.0.12"]);

    let ctl = |args: &[&str]| {
        let (status, out, err) = a.admin_ctl(args).finish();
        assert!(status.success(), "cloudctl {args:?}: {err}{out}");
    };
    ctl(&["drain", "node-b", "--wait"]);
    named.wait_record("the drained node to be removed", &["127.0.0.11"]);
    ctl(&["undrain", "node-b"]);
    named.wait_record(
        "the node back in service to return",
        &["127.0.0.11", "127.0.0.12"],
    );
    // The host itself drains: the host role passes to node-b, which removes node-a.
    ctl(&["drain", "node-a", "--wait"]);
    named.wait_record(
        "the drained host to be removed by the new host",
        &["127.0.0.12"],
    );
    drop(b);
}
