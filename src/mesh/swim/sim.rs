//! A deterministic simulated network of [`Swim`] cores: a virtual clock (nothing sleeps),
//! per-link delay, jitter and loss from one seeded generator, and directed cuts, so that
//! symmetric and asymmetric partitions are one call each. Every run with the same seed
//! replays the same schedule, datagram for datagram.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use foca::{Codec, Message, PostcardCodec, State};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{wire, Destination, Event, Identity, Swim, SwimConfig};
use crate::proto::{MemberInfo, NodeId, NodeState};

/// Wall-clock milliseconds at the simulation's start (a founder's join sequence).
const UNIX_MS_AT_START: u64 = 1_700_000_000_000;

/// How the network treats datagrams.
#[derive(Debug, Clone)]
pub(super) struct NetConfig {
    /// One-way delay of every link.
    pub delay: Duration,
    /// Added uniformly at random on top of `delay`.
    pub jitter: Duration,
    /// Probability that a datagram is lost.
    pub loss: f64,
}

impl Default for NetConfig {
    /// A LAN: 1 ms one way, up to 1 ms of jitter, no loss.
    fn default() -> Self {
        NetConfig {
            delay: Duration::from_millis(1),
            jitter: Duration::from_millis(1),
            loss: 0.0,
        }
    }
}

/// One node of the simulation.
#[derive(Debug)]
pub(super) struct SimNode {
    pub swim: Swim,
    pub alive: bool,
    /// Events with the virtual time they were drained at.
    pub events: Vec<(Duration, Event)>,
    /// Errors the core returned, by message, for diagnosis.
    pub errors: BTreeMap<String, u64>,
}

impl SimNode {
    pub fn id(&self) -> NodeId {
        self.swim.me().id
    }
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct InFlight {
    at: Duration,
    seq: u64,
    from: usize,
    to: usize,
    payload: Bytes,
}

/// Datagrams delivered, counted by what they said (to check that a suspicion really
/// happened, or a leave really went out).
#[derive(Debug, Default, Clone)]
pub(super) struct Tap {
    /// Updates that declared a member suspect, by member.
    pub suspicions: BTreeMap<NodeId, u64>,
    /// Datagrams delivered, by foca message kind (wildcard announces as `AnnounceAny`).
    pub kinds: BTreeMap<&'static str, u64>,
}

/// The simulated mesh.
#[derive(Debug)]
pub(super) struct Sim {
    base: Instant,
    pub now: Duration,
    pub nodes: Vec<SimNode>,
    pub net: NetConfig,
    pub swim_config: SwimConfig,
    /// Directed cuts: datagrams from `.0` to `.1` are lost.
    cuts: BTreeSet<(usize, usize)>,
    by_addr: BTreeMap<SocketAddr, usize>,
    inflight: BinaryHeap<Reverse<InFlight>>,
    rng: StdRng,
    seq: u64,
    pub tap: Tap,
    /// Datagrams dropped by cuts, loss, dead nodes or a restarted node at the address.
    pub dropped: u64,
}

impl Sim {
    pub fn new(seed: u64, net: NetConfig, swim_config: SwimConfig) -> Self {
        Sim {
            base: Instant::now(),
            now: Duration::ZERO,
            nodes: Vec::new(),
            net,
            swim_config,
            cuts: BTreeSet::new(),
            by_addr: BTreeMap::new(),
            inflight: BinaryHeap::new(),
            rng: StdRng::seed_from_u64(seed),
            seq: 0,
            tap: Tap::default(),
            dropped: 0,
        }
    }

    fn instant(&self) -> Instant {
        self.base + self.now
    }

    /// The address of node number `n` (never used for a socket: a name in the simulation).
    pub fn addr_of(n: usize) -> SocketAddr {
        let n = u32::try_from(n).expect("small simulation");
        SocketAddr::from((Ipv4Addr::from(0x7f01_0000 + n), 7946))
    }

    /// Starts a node at address number `slot` (a new one, or a restart in a dead node's
    /// place) with these seeds; `found` for a node started with no join names.
    pub fn start(&mut self, slot: usize, seeds: Vec<SocketAddr>, found: bool) -> usize {
        let id = NodeId(self.rng.gen::<u128>() | 1);
        let addr = Self::addr_of(slot);
        let me = MemberInfo {
            id,
            name: format!("node-{slot}"),
            addrs: vec![addr],
            join_seq: super::UNJOINED,
            state: NodeState::Joining,
            fingerprint: [slot as u8; 32],
            client_addrs: Vec::new(),
        };
        let now = self.instant();
        let unix = UNIX_MS_AT_START + self.now.as_millis() as u64;
        let seed = self.rng.gen();
        let mut swim = Swim::new(me, self.swim_config.clone(), now, unix, seed).expect("config");
        swim.set_seeds(now, seeds).expect("seeds");
        if found {
            swim.found(now).expect("found");
        }
        let index = self.nodes.len();
        self.nodes.push(SimNode {
            swim,
            alive: true,
            events: Vec::new(),
            errors: BTreeMap::new(),
        });
        self.by_addr.insert(addr, index);
        self.flush(index);
        index
    }

    /// Stops a node abruptly (a crash: nothing more is sent or received).
    pub fn kill(&mut self, n: usize) {
        self.nodes[n].alive = false;
    }

    /// Cuts both directions between every node of `a` and every node of `b`.
    pub fn cut(&mut self, a: &[usize], b: &[usize]) {
        for &x in a {
            for &y in b {
                self.cuts.insert((x, y));
                self.cuts.insert((y, x));
            }
        }
    }

    /// Cuts one direction only.
    pub fn cut_one_way(&mut self, from: usize, to: usize) {
        self.cuts.insert((from, to));
    }

    /// Removes every cut.
    pub fn heal(&mut self) {
        self.cuts.clear();
    }

    /// Runs a call on node `n` at the current time, then sends what it produced.
    pub fn with<R>(&mut self, n: usize, f: impl FnOnce(&mut Swim, Instant) -> R) -> R {
        let now = self.instant();
        let r = f(&mut self.nodes[n].swim, now);
        self.flush(n);
        r
    }

    /// Runs the simulation until `until` (virtual time since start).
    pub fn run_until(&mut self, until: Duration) {
        loop {
            let next_msg = self.inflight.peek().map(|Reverse(m)| m.at);
            let next_timer = self
                .nodes
                .iter()
                .enumerate()
                .filter(|(_, n)| n.alive)
                .filter_map(|(i, n)| {
                    let at = n.swim.poll_timeout()?;
                    Some((at.saturating_duration_since(self.base), i))
                })
                .min();
            let msg_first = match (next_msg, next_timer) {
                (None, None) => break,
                (Some(m), Some((t, _))) => m <= t,
                (Some(_), None) => true,
                (None, Some(_)) => false,
            };
            if msg_first {
                let Some(Reverse(m)) = self.inflight.pop() else {
                    break;
                };
                if m.at > until {
                    self.inflight.push(Reverse(m));
                    break;
                }
                self.now = self.now.max(m.at);
                self.deliver(m);
            } else if let Some((at, i)) = next_timer {
                if at > until {
                    break;
                }
                self.now = self.now.max(at);
                let now = self.instant();
                if let Err(e) = self.nodes[i].swim.handle_timeout(now) {
                    *self.nodes[i].errors.entry(e.to_string()).or_default() += 1;
                }
                self.flush(i);
            }
        }
        self.now = until;
    }

    /// Runs until `done` holds (checked every 10 ms of virtual time) or `limit` passes;
    /// returns the time it first held.
    pub fn run_until_true(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&Sim) -> bool,
    ) -> Option<Duration> {
        let step = Duration::from_millis(10);
        while self.now < limit {
            if done(self) {
                return Some(self.now);
            }
            let next = self.now + step;
            self.run_until(next);
        }
        done(self).then_some(self.now)
    }

    fn deliver(&mut self, m: InFlight) {
        // A datagram already on the wire arrives even if its sender died since.
        if !self.nodes[m.to].alive {
            self.dropped += 1;
            return;
        }
        self.observe(&m.payload);
        let now = self.instant();
        let from = self.nodes[m.from].id();
        if let Err(e) = self.nodes[m.to]
            .swim
            .handle_data(now, Some(from), &m.payload)
        {
            *self.nodes[m.to].errors.entry(e.to_string()).or_default() += 1;
        }
        self.flush(m.to);
    }

    /// Counts suspicions among the updates a datagram carries, decoded as foca lays them
    /// out: header, then a u16 count and that many members.
    fn observe(&mut self, payload: &[u8]) {
        let Ok((kind, mut packet)) = wire::split(payload) else {
            return;
        };
        if kind == wire::KIND_ANNOUNCE_ANY {
            *self.tap.kinds.entry("AnnounceAny").or_default() += 1;
            return;
        }
        let Ok(header) = Codec::<Identity>::decode_header(&mut PostcardCodec, &mut packet) else {
            return;
        };
        let name = match header.message {
            Message::Ping(_) => "Ping",
            Message::Ack(_) => "Ack",
            Message::PingReq { .. } => "PingReq",
            Message::IndirectPing { .. } => "IndirectPing",
            Message::IndirectAck { .. } => "IndirectAck",
            Message::ForwardedAck { .. } => "ForwardedAck",
            Message::Announce => "Announce",
            Message::Feed => "Feed",
            Message::Gossip => "Gossip",
            Message::Broadcast => "Broadcast",
            Message::TurnUndead => "TurnUndead",
        };
        *self.tap.kinds.entry(name).or_default() += 1;
        if matches!(
            header.message,
            Message::Announce | Message::TurnUndead | Message::Broadcast
        ) || packet.remaining() < 2
        {
            return;
        }
        let count = packet.get_u16();
        for _ in 0..count {
            let Ok(member) = Codec::<Identity>::decode_member(&mut PostcardCodec, &mut packet)
            else {
                return;
            };
            if member.state() == State::Suspect {
                *self.tap.suspicions.entry(member.id().id).or_default() += 1;
            }
        }
    }

    /// Sends node `n`'s datagrams into the network and records its events.
    fn flush(&mut self, n: usize) {
        while let Some(t) = self.nodes[n].swim.poll_transmit() {
            if !self.nodes[n].alive {
                continue;
            }
            let to = match &t.to {
                Destination::Addr(a) => self.by_addr.get(a).copied(),
                // The link dialed at the member's address authenticates whoever runs there
                // now: a restarted node is another member, and the datagram is not for it.
                Destination::Member { id, addrs } => addrs
                    .first()
                    .and_then(|a| self.by_addr.get(a).copied())
                    .filter(|&i| self.nodes[i].id() == *id),
            };
            let Some(to) = to else {
                self.dropped += 1;
                continue;
            };
            if self.cuts.contains(&(n, to)) || self.rng.gen_bool(self.net.loss) {
                self.dropped += 1;
                continue;
            }
            let jitter = self.net.jitter.as_nanos() as u64;
            let extra = if jitter == 0 {
                0
            } else {
                self.rng.gen_range(0..jitter)
            };
            let at = self.now + self.net.delay + Duration::from_nanos(extra);
            self.seq += 1;
            self.inflight.push(Reverse(InFlight {
                at,
                seq: self.seq,
                from: n,
                to,
                payload: t.payload,
            }));
        }
        let now = self.now;
        while let Some(e) = self.nodes[n].swim.poll_event() {
            self.nodes[n].events.push((now, e));
        }
    }

    /// The live nodes.
    pub fn alive(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].alive)
            .collect()
    }

    /// Whether every node of `group` is joined, sees exactly the members of `group`, and
    /// agrees with the others on one host among them.
    pub fn agree(&self, group: &[usize]) -> bool {
        let want: BTreeSet<NodeId> = group.iter().map(|&i| self.nodes[i].id()).collect();
        let Some(&first) = group.first() else {
            return true;
        };
        let host = self.nodes[first].swim.host();
        want.contains(&host)
            && group.iter().all(|&i| {
                let s = &self.nodes[i].swim;
                let seen: BTreeSet<NodeId> = s.members().all().iter().map(|m| m.id).collect();
                s.is_joined() && s.host() == host && seen == want
            })
    }

    /// Whether every live node agrees (see [`Sim::agree`]).
    pub fn converged(&self) -> bool {
        self.agree(&self.alive())
    }

    /// Datagrams sent by the live nodes so far, in total.
    pub fn sent(&self) -> (u64, u64) {
        self.alive().iter().fold((0, 0), |(n, b), &i| {
            let s = self.nodes[i].swim.stats();
            (n + s.sent, b + s.sent_bytes)
        })
    }

    /// Every event any node drained, with the node.
    pub fn all_events(&self) -> impl Iterator<Item = (usize, Duration, &Event)> {
        self.nodes
            .iter()
            .enumerate()
            .flat_map(|(i, n)| n.events.iter().map(move |(t, e)| (i, *t, e)))
    }
}
