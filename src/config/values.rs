//! Value types of settings that are written as text: each parses the same from a flag, a
//! `CLOUDD_*` variable (clap, through [`FromStr`]) and the TOML file (serde, through
//! [`Deserialize`]), so a value that works in one place works in the others.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::dyndns::Publish;

/// A duration written for humans: `"5s"`, `"500ms"`, `"1m 30s"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl FromStr for HumanDuration {
    // humantime's own error, so a bad flag reads as it always has ("expected number at 0").
    type Err = humantime::DurationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        humantime::parse_duration(text).map(HumanDuration)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        // A file has no flag name to show, so the message says what a duration looks like.
        text.parse().map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration {text:?}: {e} (write e.g. \"5s\" or \"500ms\")"
            ))
        })
    }
}

impl From<HumanDuration> for Duration {
    fn from(d: HumanDuration) -> Duration {
        d.0
    }
}

/// A mesh member to join: `NAME[:PORT]` or `IP[:PORT]`, checked for shape only (resolving
/// it is the node's job, at join time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinTarget(String);

impl FromStr for JoinTarget {
    type Err = String;

    /// Spaces around the target are dropped, since `CLOUDD_JOIN="a, b"` is an easy thing to
    /// write.
    fn from_str(text: &str) -> Result<Self, String> {
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
            return Ok(JoinTarget(t.to_owned()));
        }
        // Without brackets, the last group of an IPv6 address would be read as a port.
        if t.parse::<Ipv6Addr>().is_ok() {
            return bad(": write an IPv6 address in brackets, [ADDR] or [ADDR]:PORT");
        }
        if let Some(inner) = t.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            return match inner.parse::<Ipv6Addr>() {
                Ok(_) => Ok(JoinTarget(t.to_owned())),
                Err(_) => bad(""),
            };
        }
        match t.rsplit_once(':') {
            Some((host, _)) if host.is_empty() || host.contains([':', '[', ']']) => bad(""),
            Some((_, port)) if port.parse::<u16>().is_err() => {
                bad(": the port is a number up to 65535")
            }
            _ => Ok(JoinTarget(t.to_owned())),
        }
    }
}

impl<'de> Deserialize<'de> for JoinTarget {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_text(d)
    }
}

impl From<JoinTarget> for String {
    fn from(t: JoinTarget) -> String {
        t.0
    }
}

/// The DNS server dynamic updates go to: `IP` or `IP:PORT` (`[V6]:PORT`), port 53 when left
/// out. Not a host name: the daemon would need DNS to find its DNS server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DnsServer(pub SocketAddr);

impl FromStr for DnsServer {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let t = text.trim();
        if let Ok(a) = t.parse::<SocketAddr>() {
            return Ok(DnsServer(a));
        }
        let bare = t
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .unwrap_or(t);
        bare.parse::<IpAddr>()
            .map(|ip| DnsServer(SocketAddr::new(ip, 53)))
            .map_err(|_| {
                format!(
                    "{t:?} is not IP[:PORT] (e.g. 192.0.2.53, 192.0.2.53:5353, [2001:db8::53]:53); \
                     give the DNS server by address, not by name"
                )
            })
    }
}

impl<'de> Deserialize<'de> for DnsServer {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_text(d)
    }
}

/// A socket address with spaces around it dropped, for comma-separated lists in flags and
/// variables (`CLOUDD_ADVERTISE="a, b"`).
pub fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    text.trim()
        .parse()
        .map_err(|e| format!("{text:?} is not IP:PORT: {e}"))
}

/// Reads a TOML string and parses it as a flag would be, so both report the same problem.
fn from_text<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr<Err = String>,
{
    String::deserialize(d)?
        .parse()
        .map_err(serde::de::Error::custom)
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One readable line per event.
    Human,
    /// One JSON object per event, for log collectors.
    Json,
}

impl LogFormat {
    /// `human` or `json`, as written in the file and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Human => "human",
            LogFormat::Json => "json",
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whose addresses the dynamic DNS record holds: the setting's form of [`Publish`], which
/// lives with the updater and knows nothing of flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_targets_are_names_or_addresses_with_optional_ports() {
        for good in [
            "mesh.example.com",
            "mesh.example.com:7000",
            "10.1.1.1",
            " 10.0.0.5:7946 ",
            "[::1]:7946",
            "[fd00::5]",
        ] {
            let t: JoinTarget = good.parse().unwrap_or_else(|e| panic!("{good:?}: {e}"));
            assert_eq!(String::from(t), good.trim());
        }
        for (bad, hint) in [
            ("", ""),
            ("host:port", "the port is a number"),
            ("a b", "no spaces inside"),
            (":7946", ""),
            ("host:99999", "the port is a number"),
            ("fd00::5", "in brackets"),
            ("[x]:1", ""),
        ] {
            let e = bad.parse::<JoinTarget>().expect_err(bad);
            assert!(
                e.contains("is not NAME[:PORT]") && e.contains(hint),
                "{bad:?}: {e}"
            );
        }
    }

    #[test]
    fn dns_servers_are_addresses_with_port_53_by_default() {
        let s = |t: &str| t.parse::<DnsServer>().map(|s| s.0.to_string());
        assert_eq!(s("192.0.2.53").as_deref(), Ok("192.0.2.53:53"));
        assert_eq!(s("192.0.2.53:5353").as_deref(), Ok("192.0.2.53:5353"));
        assert_eq!(s("[2001:db8::53]").as_deref(), Ok("[2001:db8::53]:53"));
        assert_eq!(s("2001:db8::53").as_deref(), Ok("[2001:db8::53]:53"));
        let e = s("ns.example.com").expect_err("a name");
        assert!(e.contains("by address, not by name"), "{e}");
    }

    #[test]
    fn durations_read_the_same_from_flags_and_files() {
        assert_eq!(
            "1m 30s".parse::<HumanDuration>().map(Duration::from),
            Ok(Duration::from_secs(90))
        );
        let e = "five".parse::<HumanDuration>().expect_err("not a duration");
        assert_eq!(e.to_string(), "expected number at 0");
        let e = toml::from_str::<std::collections::BTreeMap<String, HumanDuration>>("d = \"five\"")
            .expect_err("not a duration");
        assert!(
            e.to_string()
                .contains("invalid duration \"five\": expected number at 0 (write e.g."),
            "{e}"
        );
    }

    #[test]
    fn listed_addresses_may_have_spaces_around_them() {
        assert_eq!(
            parse_addr(" 10.0.0.1:7946").map(|a| a.to_string()),
            Ok("10.0.0.1:7946".to_owned())
        );
        let e = parse_addr("nope").expect_err("not an address");
        assert!(e.starts_with("\"nope\" is not IP:PORT"), "{e}");
    }
}
