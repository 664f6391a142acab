//! Dynamic DNS for the host : the mesh host keeps the
//! join name pointing at its own addresses (or at every Active node's) with RFC 2136
//! updates signed with TSIG (RFC 8945).
//!
//! [`DynDns::start`] runs one task beside a node, seeing the node only through
//! [`MeshView`] (its public API). It re-checks on mesh events (host changes, state changes,
//! peers up and lost) and every `recheck` interval, so a record someone else changed is
//! put back. A check asks the server for the name's A and AAAA records first and writes
//! only when they differ from what they should be; the write replaces both RRsets in one
//! atomic update, so a new host simply overwrites what an old (maybe dead) host left.
//! Nodes that are not the host, or are still joining, never write. Failures are retried
//! with exponential backoff, and each distinct error is logged once, not at every retry.
//!
//! `wire` encodes and decodes the few messages needed; `tsig` signs and verifies;
//! `client` does one exchange over UDP (TCP when truncated).

pub mod client;
pub mod tsig;
pub mod wire;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::mesh::MeshEvent;
use crate::proto::{MemberInfo, NodeId, NodeState};

pub use tsig::{Algorithm, KeyError, TsigError, TsigKey};
pub use wire::{BadName, Name};

/// How long after a mesh event the record is checked, so a burst of events (a peer lost
/// and the host changed) makes one check.
const SETTLE: Duration = Duration::from_millis(250);
/// How often a joining node looks again (it writes nothing until it has joined).
const JOINING_POLL: Duration = Duration::from_millis(500);
/// First retry delay after a failure; doubled at each failure up to `max_backoff`.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// Whose addresses the record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Publish {
    /// The host's only (seed 000: the name leads to the host, which knows everyone).
    #[default]
    Host,
    /// Every Active node's: clients and joining nodes spread over the mesh by DNS; draining
    /// and drained nodes leave the record.
    Active,
}

impl Publish {
    /// `host` or `active`.
    pub fn as_str(self) -> &'static str {
        match self {
            Publish::Host => "host",
            Publish::Active => "active",
        }
    }
}

/// Which of a node's advertised addresses go into the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AddressFilter {
    /// The IP of every advertised address (A for IPv4, AAAA for IPv6), de-duplicated.
    #[default]
    All,
    /// Only globally reachable IPs: no private (RFC 1918, fc00::/7), shared (100.64/10),
    /// loopback or link-local ones. For a public name over nodes that advertise an
    /// internal address first and an external one after.
    Public,
}

impl AddressFilter {
    /// `all` or `public`.
    pub fn as_str(self) -> &'static str {
        match self {
            AddressFilter::All => "all",
            AddressFilter::Public => "public",
        }
    }

    fn admits(self, ip: IpAddr) -> bool {
        if ip.is_unspecified() || ip.is_multicast() {
            // 0.0.0.0 is what a node bound to every interface advertises; nobody can dial it.
            return false;
        }
        match self {
            AddressFilter::All => true,
            AddressFilter::Public => crate::transport::is_public(ip),
        }
    }
}

/// Everything the updater needs.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// The zone's primary server, which takes updates (port 53 usually).
    pub server: SocketAddr,
    /// The zone the record is in, e.g. `example.com.`.
    pub zone: Name,
    /// The record: the join name, e.g. `mesh.example.com.`.
    pub name: Name,
    /// The TSIG key the server allows to update the name.
    pub key: TsigKey,
    /// The host's addresses, or every Active node's.
    pub publish: Publish,
    /// Which advertised addresses count.
    pub addresses: AddressFilter,
    /// TTL of the records written, in seconds: how long resolvers may keep an old host.
    pub ttl: u32,
    /// How often the host re-checks the record even without a mesh event.
    pub recheck: Duration,
    /// How long one exchange with the server may take.
    pub timeout: Duration,
    /// Longest wait between retries after failures.
    pub max_backoff: Duration,
}

/// A DNS configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsConfigError {
    /// The record is not inside the zone.
    #[error("dns name {name} is not in dns zone {zone}; the name must be the zone or below it")]
    NotInZone {
        /// The record name.
        name: String,
        /// The zone.
        zone: String,
    },
    /// A value out of range.
    #[error("dns {0}")]
    Range(&'static str),
}

impl DnsConfig {
    /// A configuration with the defaults: publish the host's addresses (all of them), TTL
    /// 30 s, re-check every 30 s, 3 s per exchange, retries up to 60 s apart.
    pub fn new(
        server: SocketAddr,
        zone: Name,
        name: Name,
        key: TsigKey,
    ) -> Result<DnsConfig, DnsConfigError> {
        let c = DnsConfig {
            server,
            zone,
            name,
            key,
            publish: Publish::default(),
            addresses: AddressFilter::default(),
            ttl: 30,
            recheck: Duration::from_secs(30),
            timeout: Duration::from_secs(3),
            max_backoff: Duration::from_secs(60),
        };
        c.validate()?;
        Ok(c)
    }

    /// Checks values that cannot work together.
    pub fn validate(&self) -> Result<(), DnsConfigError> {
        if !self.name.is_within(&self.zone) {
            return Err(DnsConfigError::NotInZone {
                name: self.name.to_string(),
                zone: self.zone.to_string(),
            });
        }
        if self.server.port() == 0 {
            return Err(DnsConfigError::Range("server needs a port other than 0"));
        }
        if self.ttl == 0 || self.ttl > i32::MAX as u32 {
            return Err(DnsConfigError::Range(
                "ttl must be between 1 and 2147483647 seconds",
            ));
        }
        if self.recheck < Duration::from_secs(1) {
            return Err(DnsConfigError::Range("recheck must be at least 1s"));
        }
        if self.timeout.is_zero() {
            return Err(DnsConfigError::Range("timeout must be longer than zero"));
        }
        if self.max_backoff < FIRST_BACKOFF {
            return Err(DnsConfigError::Range("max_backoff must be at least 1s"));
        }
        Ok(())
    }
}

/// Why a check failed. The text is what the operator reads in the log.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// No socket, or the network said no.
    #[error("cannot reach DNS server {server}: {source}")]
    Io {
        /// The server.
        server: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Nothing came back in time.
    #[error("no answer from DNS server {server} within {}", humantime::format_duration(*.timeout))]
    Timeout {
        /// The server.
        server: SocketAddr,
        /// How long it was given.
        timeout: Duration,
    },
    /// An answer that does not decode.
    #[error("DNS server {server} sent a malformed answer: {reason}")]
    Malformed {
        /// The server.
        server: SocketAddr,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The server answered with an error.
    #[error("DNS {action} refused by {server}: {reason}")]
    Refused {
        /// `query` or `update`.
        action: &'static str,
        /// The server.
        server: SocketAddr,
        /// The error, named and explained.
        reason: String,
    },
    /// A success answer whose TSIG does not verify (forged, or another key): ignored.
    #[error("DNS update answer from {server} failed TSIG verification ({reason}); ignored")]
    Unverified {
        /// The server.
        server: SocketAddr,
        /// What did not verify.
        reason: TsigError,
    },
}

/// The node as the updater sees it: its public API, so the updater needs no hook inside.
pub trait MeshView: Send + Sync + 'static {
    /// This node's id.
    fn id(&self) -> NodeId;
    /// The host, as this node sees it.
    fn host(&self) -> NodeId;
    /// Every member, this node included.
    fn members(&self) -> Vec<MemberInfo>;
    /// Mesh events from now on.
    fn events(&self) -> broadcast::Receiver<MeshEvent>;
}

/// Why this node leaves the record alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idle {
    /// Still joining: it may not know the host yet.
    Joining,
    /// Another node is host.
    NotHost(NodeId),
    /// Nothing admissible to publish (e.g. only 0.0.0.0 advertised): the record is left as
    /// it is rather than emptied.
    NothingToPublish,
}

/// What the record should be, as seen from one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Leave it alone.
    Idle(Idle),
    /// This node is host: the record should hold exactly these addresses.
    Publish(BTreeSet<IpAddr>),
}

/// Decides what the record should hold, from one node's view of the mesh.
pub fn plan(
    me: NodeId,
    host: NodeId,
    members: &[MemberInfo],
    publish: Publish,
    filter: AddressFilter,
) -> Plan {
    let mine = members.iter().find(|m| m.id == me);
    if mine.is_none_or(|m| m.state == NodeState::Joining) {
        return Plan::Idle(Idle::Joining);
    }
    if host != me {
        return Plan::Idle(Idle::NotHost(host));
    }
    let ips: BTreeSet<IpAddr> = members
        .iter()
        .filter(|m| match publish {
            Publish::Host => m.id == host,
            Publish::Active => m.state == NodeState::Active,
        })
        .flat_map(|m| m.addrs.iter().map(SocketAddr::ip))
        .filter(|ip| filter.admits(*ip))
        .collect();
    if ips.is_empty() {
        Plan::Idle(Idle::NothingToPublish)
    } else {
        Plan::Publish(ips)
    }
}

/// What one check did.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// Nothing to do here.
    Idle(Idle),
    /// The record already was right.
    InSync(BTreeSet<IpAddr>),
    /// The record was rewritten.
    Updated {
        /// What it held.
        was: BTreeSet<IpAddr>,
        /// What it holds now.
        now: BTreeSet<IpAddr>,
    },
    /// The mesh changed while checking; look again soon.
    Moved,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The name's A and AAAA records as the server has them, and whether every TTL is `ttl`.
async fn current(cfg: &DnsConfig) -> Result<(BTreeSet<IpAddr>, bool), DnsError> {
    let mut ips = BTreeSet::new();
    let mut ttl_ok = true;
    for rtype in [wire::TYPE_A, wire::TYPE_AAAA] {
        let id = rand::random::<u16>();
        let q = wire::query(id, &cfg.name, rtype);
        let (_, msg) = client::exchange(cfg.server, &q, id, cfg.timeout).await?;
        // NXDOMAIN: no record yet, which an update fixes.
        match msg.header.rcode() {
            0 | 3 => {}
            code => {
                return Err(DnsError::Refused {
                    action: "query",
                    server: cfg.server,
                    reason: explain(cfg, code.into(), None),
                })
            }
        }
        for rec in msg.answers.iter().filter(|r| r.name == cfg.name) {
            let ip = match rec.data {
                wire::RData::A(a) => IpAddr::V4(a),
                wire::RData::Aaaa(a) => IpAddr::V6(a),
                _ => continue,
            };
            ips.insert(ip);
            ttl_ok &= rec.ttl == cfg.ttl;
        }
    }
    Ok((ips, ttl_ok))
}

/// Writes the record (both RRsets replaced), signed, and checks the signed answer.
async fn write(cfg: &DnsConfig, ips: &BTreeSet<IpAddr>) -> Result<(), DnsError> {
    let id = rand::random::<u16>();
    let addrs: Vec<IpAddr> = ips.iter().copied().collect();
    let mut msg = wire::update(id, &cfg.zone, &cfg.name, cfg.ttl, &addrs);
    let mac = cfg.key.sign(&mut msg, now_secs());
    let (raw, answer) = client::exchange(cfg.server, &msg, id, cfg.timeout).await?;
    let refused = |reason| DnsError::Refused {
        action: "update",
        server: cfg.server,
        reason,
    };
    // A TSIG error explains a NOTAUTH better than the code does.
    if let Some(t) = answer.tsig.as_ref().filter(|t| t.error != 0) {
        return Err(refused(explain(
            cfg,
            answer.header.rcode().into(),
            Some(t.error),
        )));
    }
    if answer.header.rcode() != 0 {
        return Err(refused(explain(cfg, answer.header.rcode().into(), None)));
    }
    if answer.header.opcode() != wire::OPCODE_UPDATE {
        return Err(DnsError::Malformed {
            server: cfg.server,
            reason: "the answer to an update is not an update",
        });
    }
    cfg.key
        .verify(&raw, &answer, &mac, now_secs())
        .map_err(|reason| DnsError::Unverified {
            server: cfg.server,
            reason,
        })
}

/// Names an error code and says what usually causes it.
fn explain(cfg: &DnsConfig, rcode: u16, tsig_error: Option<u16>) -> String {
    let (key, alg) = (cfg.key.name(), cfg.key.algorithm());
    if let Some(e) = tsig_error {
        return match e {
            tsig::BADKEY => format!(
                "TSIG key rejected (BADKEY): the server does not know key {key} with \
                 algorithm {alg}; check the key file against the server's `key` statement"
            ),
            tsig::BADSIG => format!(
                "TSIG signature rejected (BADSIG): the secret of key {key} differs from the \
                 server's; check the key file"
            ),
            tsig::BADTIME => "TSIG time rejected (BADTIME): this machine's clock and the \
                 server's differ by more than 5 minutes"
                .to_owned(),
            other => format!("TSIG error {}", wire::rcode_name(other)),
        };
    }
    let (name, zone) = (&cfg.name, &cfg.zone);
    let code = wire::rcode_name(rcode);
    match rcode {
        5 => format!(
            "{code}: key {key} may not change {name} (check the zone's allow-update or \
             update-policy)"
        ),
        9 => format!("{code}: the server is not the primary for zone {zone}"),
        10 => format!("{code}: {name} is not in zone {zone}"),
        4 => format!("{code}: the server does not take dynamic updates"),
        2 => format!("{code}: the server failed to apply it"),
        _ => code,
    }
}

/// One check: what should the record be, what is it, and a write when they differ.
async fn check(view: &dyn MeshView, cfg: &DnsConfig) -> Result<Outcome, DnsError> {
    let look = || {
        plan(
            view.id(),
            view.host(),
            &view.members(),
            cfg.publish,
            cfg.addresses,
        )
    };
    let want = match look() {
        Plan::Idle(i) => return Ok(Outcome::Idle(i)),
        Plan::Publish(ips) => ips,
    };
    let (was, ttl_ok) = current(cfg).await?;
    if was == want && ttl_ok {
        return Ok(Outcome::InSync(want));
    }
    // The query took a round trip; write only what is still true.
    if look() != Plan::Publish(want.clone()) {
        return Ok(Outcome::Moved);
    }
    write(cfg, &want).await?;
    Ok(Outcome::Updated { was, now: want })
}

fn show(ips: &BTreeSet<IpAddr>) -> String {
    if ips.is_empty() {
        return "(nothing)".to_owned();
    }
    ips.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The running updater. Stop it with [`DynDns::stop`]; dropping it stops it too.
#[derive(Debug)]
pub struct DynDns {
    /// Tells the task to end.
    stop: watch::Sender<bool>,
    /// The task.
    task: JoinHandle<()>,
}

impl DynDns {
    /// Starts the updater beside `view` (within a tokio runtime).
    pub fn start<V: MeshView>(view: Arc<V>, cfg: DnsConfig) -> DynDns {
        let (stop, stopped) = watch::channel(false);
        tracing::info!(
            server = %cfg.server, name = %cfg.name, publish = cfg.publish.as_str(),
            "dynamic DNS on: the host keeps {} pointing at {} via {}",
            cfg.name,
            match cfg.publish {
                Publish::Host => "its own addresses",
                Publish::Active => "every Active node",
            },
            cfg.server
        );
        let task = tokio::spawn(run(view, cfg, stopped));
        DynDns { stop, task }
    }

    /// Stops the updater, abandoning an exchange in flight.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Log state that makes each distinct error (and each idle reason) show once.
#[derive(Debug, Default)]
struct Reported {
    /// The last error logged, as text.
    error: Option<String>,
    /// The last idle reason logged.
    idle: Option<Idle>,
    /// The addresses last reported as published.
    published: Option<BTreeSet<IpAddr>>,
}

async fn run<V: MeshView>(view: Arc<V>, cfg: DnsConfig, mut stop: watch::Receiver<bool>) {
    let mut events = view.events();
    let mut next = Instant::now();
    let mut backoff = Duration::ZERO;
    let mut seen = Reported::default();
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            ev = events.recv() => match ev {
                Ok(MeshEvent::HostChanged { .. } | MeshEvent::StateChanged { .. }
                    | MeshEvent::PeerUp { .. } | MeshEvent::PeerLost { .. })
                | Err(broadcast::error::RecvError::Lagged(_)) => {
                    next = next.min(Instant::now() + SETTLE);
                }
                Ok(_) => {}
                // The node is gone; so is anything to publish.
                Err(broadcast::error::RecvError::Closed) => return,
            },
            () = tokio::time::sleep_until(next) => {
                let result = tokio::select! {
                    r = check(&*view, &cfg) => r,
                    _ = stop.changed() => return,
                };
                let wait = match result {
                    Ok(outcome) => {
                        backoff = Duration::ZERO;
                        report_ok(&cfg, &mut seen, outcome)
                    }
                    Err(e) => {
                        backoff = if backoff.is_zero() {
                            FIRST_BACKOFF
                        } else {
                            (backoff * 2).min(cfg.max_backoff)
                        };
                        report_err(&cfg, &mut seen, &e, backoff);
                        backoff
                    }
                };
                next = Instant::now() + wait;
            }
        }
    }
}

/// Logs a successful check when it says something new; returns when to check next.
fn report_ok(cfg: &DnsConfig, seen: &mut Reported, outcome: Outcome) -> Duration {
    let recovered = seen.error.take().is_some();
    if recovered {
        tracing::info!(server = %cfg.server, name = %cfg.name, "DNS server reachable again");
    }
    match outcome {
        Outcome::Idle(idle) => {
            seen.published = None;
            if seen.idle != Some(idle) {
                match idle {
                    Idle::Joining => tracing::debug!("joining: DNS record left alone"),
                    Idle::NotHost(h) => tracing::debug!(host = %h,
                        "not the host: the host keeps DNS record {} current", cfg.name),
                    Idle::NothingToPublish => tracing::warn!(name = %cfg.name,
                        "no address to publish in DNS record {} (advertised addresses are \
                         unspecified or filtered out by dns addresses = \"{}\"); the record \
                         is left as it is; set --advertise",
                        cfg.name, cfg.addresses.as_str()),
                }
            }
            seen.idle = Some(idle);
            if idle == Idle::Joining {
                JOINING_POLL
            } else {
                cfg.recheck
            }
        }
        Outcome::InSync(ips) => {
            seen.idle = None;
            if seen.published.as_ref() != Some(&ips) {
                tracing::info!(name = %cfg.name, server = %cfg.server,
                    "DNS record {} already points at {}", cfg.name, show(&ips));
            }
            seen.published = Some(ips);
            cfg.recheck
        }
        Outcome::Updated { was, now } => {
            seen.idle = None;
            tracing::info!(name = %cfg.name, server = %cfg.server,
                "DNS record {} updated: {} (was {})", cfg.name, show(&now), show(&was));
            seen.published = Some(now);
            cfg.recheck
        }
        Outcome::Moved => SETTLE,
    }
}

/// Logs a failure the first time it is seen (a repeat only at debug level).
fn report_err(cfg: &DnsConfig, seen: &mut Reported, e: &DnsError, retry: Duration) {
    let text = e.to_string();
    let retry = humantime::format_duration(retry);
    if seen.error.as_deref() == Some(text.as_str()) {
        tracing::debug!(name = %cfg.name, "DNS record still not updated ({text}); retrying in {retry}");
        return;
    }
    match e {
        // Answers that say the configuration is wrong.
        DnsError::Refused { .. } | DnsError::Unverified { .. } => tracing::error!(
            name = %cfg.name, "{text}; nothing was changed; retrying with backoff (next in {retry})"),
        _ => tracing::warn!(
            name = %cfg.name, "{text}; retrying with backoff (next in {retry})"),
    }
    seen.error = Some(text);
    seen.idle = None;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(n: u8, state: NodeState, addrs: &[&str]) -> MemberInfo {
        MemberInfo {
            id: NodeId(u128::from(n)),
            name: format!("n{n}"),
            addrs: addrs.iter().map(|a| a.parse().expect("addr")).collect(),
            join_seq: u64::from(n),
            state,
            fingerprint: [0; 32],
            client_addrs: Vec::new(),
        }
    }

    fn ips(list: &[&str]) -> Plan {
        Plan::Publish(list.iter().map(|a| a.parse().expect("ip")).collect())
    }

    #[test]
    fn only_the_joined_host_publishes_and_what() {
        let a = member(1, NodeState::Active, &["10.0.0.1:7946", "203.0.113.1:7946"]);
        let b = member(
            2,
            NodeState::Active,
            &["10.0.0.2:7946", "[2001:db9::2]:7946"],
        );
        let c = member(3, NodeState::Draining, &["10.0.0.3:7946"]);
        let mesh = [a.clone(), b.clone(), c.clone()];
        let (h, all) = (Publish::Host, AddressFilter::All);
        assert_eq!(
            plan(a.id, a.id, &mesh, h, all),
            ips(&["10.0.0.1", "203.0.113.1"])
        );
        assert_eq!(
            plan(b.id, a.id, &mesh, h, all),
            Plan::Idle(Idle::NotHost(a.id))
        );
        assert_eq!(
            plan(a.id, a.id, &mesh, Publish::Active, all),
            ips(&["10.0.0.1", "203.0.113.1", "10.0.0.2", "2001:db9::2"]),
            "draining nodes are left out"
        );
        assert_eq!(
            plan(a.id, a.id, &mesh, Publish::Active, AddressFilter::Public),
            ips(&["203.0.113.1", "2001:db9::2"])
        );
        // A joining node may believe itself host; it still writes nothing.
        let j = member(4, NodeState::Joining, &["10.0.0.4:7946"]);
        assert_eq!(
            plan(j.id, j.id, std::slice::from_ref(&j), h, all),
            Plan::Idle(Idle::Joining)
        );
        // Same IP on two ports counts once; 0.0.0.0 never counts.
        let d = member(
            5,
            NodeState::Active,
            &["10.0.0.5:1", "10.0.0.5:2", "0.0.0.0:3"],
        );
        assert_eq!(
            plan(d.id, d.id, std::slice::from_ref(&d), h, all),
            ips(&["10.0.0.5"])
        );
        let z = member(6, NodeState::Active, &["0.0.0.0:7946"]);
        assert_eq!(
            plan(z.id, z.id, std::slice::from_ref(&z), h, all),
            Plan::Idle(Idle::NothingToPublish)
        );
    }

    #[test]
    fn public_filter_drops_internal_addresses() {
        let f = AddressFilter::Public;
        for ip in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.1.1",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
        ] {
            assert!(!f.admits(ip.parse().expect("ip")), "{ip}");
        }
        for ip in ["198.51.101.1", "8.8.8.8", "2a00:1450::1"] {
            assert!(f.admits(ip.parse().expect("ip")), "{ip}");
        }
        assert!(AddressFilter::All.admits("127.0.0.11".parse().expect("ip")));
    }

    #[test]
    fn configs_that_cannot_work_are_refused() {
        let key = TsigKey::parse("k:c2VjcmV0").expect("key");
        let n = |s| Name::parse(s).expect("name");
        let server: SocketAddr = "127.0.0.1:53".parse().expect("addr");
        let e = DnsConfig::new(server, n("example.com"), n("mesh.example.org"), key.clone())
            .expect_err("outside the zone");
        assert!(e.to_string().contains("not in dns zone"), "{e}");
        let mut c =
            DnsConfig::new(server, n("example.com"), n("mesh.example.com"), key).expect("valid");
        c.ttl = 0;
        assert!(c.validate().is_err());
        c.ttl = 30;
        c.recheck = Duration::from_millis(10);
        assert!(c.validate().is_err());
    }

    #[test]
    fn errors_read_well() {
        let key = TsigKey::parse("k:c2VjcmV0").expect("key");
        let n = |s| Name::parse(s).expect("name");
        let c = DnsConfig::new(
            "127.0.0.1:5353".parse().expect("addr"),
            n("t"),
            n("m.t"),
            key,
        )
        .expect("valid");
        let e = DnsError::Refused {
            action: "update",
            server: c.server,
            reason: explain(&c, 9, Some(tsig::BADKEY)),
        };
        assert!(
            e.to_string()
                .starts_with("DNS update refused by 127.0.0.1:5353: TSIG key rejected (BADKEY)"),
            "{e}"
        );
        assert!(explain(&c, 5, None).starts_with("REFUSED: key k."));
    }
}
