//! The shipped systemd unit, `assets/cloudd.service` (issue 8): systemd itself accepts it
//! without a warning, it runs cloudd hardened as its own user and restarts it only when a
//! restart can help, and the settings it hands cloudd (environment, credentials, config
//! path) are ones cloudd understands. Starting it under a real systemd needs a booted
//! system, which tests do not have; `systemd-analyze verify` is systemd's own parser.

mod procs;

use std::path::Path;
use std::process::Command;

use procs::CLOUDD;

const UNIT: &str = include_str!("../assets/cloudd.service");

/// `Key=value` lines of one `[section]`, in order (a key may repeat).
fn section(name: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in UNIT.lines().map(str::trim) {
        if line.starts_with('[') {
            inside = line == format!("[{name}]");
        } else if inside && !line.starts_with('#') {
            if let Some((k, v)) = line.split_once('=') {
                out.push((k.to_owned(), v.to_owned()));
            }
        }
    }
    out
}

fn values<'a>(service: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    service
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

fn one<'a>(service: &'a [(String, String)], key: &str) -> &'a str {
    match values(service, key).as_slice() {
        [v] => v,
        other => panic!("{key}= should be set once, found {other:?}"),
    }
}

#[test]
fn systemd_accepts_the_unit_without_a_warning() {
    let dir = tempfile::tempdir().expect("temp dir");
    // verify checks that ExecStart's program exists: point it at the cloudd just built.
    let unit = UNIT.replace(
        "ExecStart=/usr/local/bin/cloudd ",
        &format!("ExecStart={CLOUDD} "),
    );
    assert_ne!(unit, UNIT, "ExecStart runs /usr/local/bin/cloudd");
    let path = dir.path().join("cloudd.service");
    std::fs::write(&path, unit).expect("write the unit");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze runs (CI installs systemd; locally: apt-get install systemd)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Other units on the machine may draw warnings of their own; ours must draw none.
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("cloudd.service"))
        .collect();
    assert!(out.status.success(), "verify failed:\n{stderr}");
    assert!(
        ours.is_empty(),
        "systemd warns about the unit:\n{}",
        ours.join("\n")
    );
}

#[test]
fn the_unit_runs_cloudd_hardened_as_its_own_user_and_restarts_it_sensibly() {
    let s = section("Service");
    assert_eq!(one(&s, "User"), "cloudd");
    assert_eq!(one(&s, "Group"), "cloudd");
    assert_eq!(
        one(&s, "RuntimeDirectory"),
        "cloudd",
        "the admin socket's directory"
    );
    assert_eq!(one(&s, "RuntimeDirectoryMode"), "0700");
    assert_eq!(
        one(&s, "StateDirectory"),
        "cloudd",
        "the TLS identity survives restarts"
    );
    assert_eq!(one(&s, "Restart"), "on-failure");
    assert_eq!(
        one(&s, "RestartPreventExitStatus"),
        "2",
        "cloudd exits 2 on a configuration error, which a restart cannot fix"
    );
    assert_eq!(one(&s, "KillSignal"), "SIGTERM", "cloudd's clean shutdown");
    for (key, want) in [
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", ""),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("MemoryDenyWriteExecute", "yes"),
        ("UMask", "0077"),
    ] {
        assert_eq!(one(&s, key), want, "{key}=");
    }
    assert!(
        values(&s, "SystemCallFilter").contains(&"@system-service"),
        "system calls limited to a service's"
    );
    assert_eq!(
        section("Install"),
        [("WantedBy".to_owned(), "multi-user.target".to_owned())]
    );
}

#[test]
fn cloudd_understands_what_the_unit_hands_it() {
    let s = section("Service");
    // The credentials directory (%d) holds the secret systemd copies from /etc/cloudd.
    let creds = tempfile::tempdir().expect("temp dir");
    let (name, source) = one(&s, "LoadCredential")
        .split_once(':')
        .expect("LoadCredential=NAME:PATH");
    assert_eq!(source, "/etc/cloudd/mesh.secret");
    let secret = creds.path().join(name);
    std::fs::write(&secret, format!("{}\n", "ab".repeat(32))).expect("write the secret");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o400)).expect("chmod");

    let mut cmd = procs::command(CLOUDD, &[]);
    for env in values(&s, "Environment") {
        let (k, v) = env.split_once('=').expect("Environment=KEY=VALUE");
        assert!(k.starts_with("CLOUDD_"), "{k} is not a cloudd setting");
        cmd.env(k, v.replace("%d", &creds.path().display().to_string()));
    }
    let exec = one(&s, "ExecStart");
    let args: Vec<&str> = exec.split_whitespace().skip(1).collect();
    assert_eq!(args, ["--config", "/etc/cloudd/cloudd.toml"]);
    // The shipped example stands in for /etc/cloudd/cloudd.toml (the install copies it).
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/cloudd.example.toml");
    let out = cmd
        .arg("--config")
        .arg(&example)
        .arg("--check-config")
        .output()
        .expect("cloudd runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let setting = |name: &str| -> String {
        stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_owned()))
            .unwrap_or_else(|| panic!("no {name} in:\n{stdout}"))
    };
    assert_eq!(setting("data_dir"), "/var/lib/cloudd");
    assert_eq!(setting("admin_socket"), "/run/cloudd/admin.sock");
    assert_eq!(
        setting("secret"),
        format!("set (from {})", secret.display()),
        "{stdout}"
    );
    assert!(
        !stderr.contains("readable"),
        "no permission warning: {stderr}"
    );
}
