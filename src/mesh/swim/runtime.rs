//! foca's `Runtime`: what foca asks for during one call, collected into queues the node
//! drains afterwards (datagrams to send, wake-ups, membership notifications).

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use foca::{Notification, OwnedNotification, Timer};

use super::identity::{Identity, Lifecycle};
use super::wire;
use crate::proto::NodeId;

/// Where a datagram goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// A member: over the authenticated link to `id`, dialing `addrs` in order if there is
    /// none. If the link that answers at those addresses authenticates another node (the
    /// member restarted), the datagram is for nobody there and is dropped.
    Member {
        /// The member.
        id: NodeId,
        /// Where it listens, internal first.
        addrs: Vec<SocketAddr>,
    },
    /// Whoever listens at this address (a seed): over any authenticated link to it.
    Addr(SocketAddr),
}

/// One datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Its destination.
    pub to: Destination,
    /// The bytes, to hand to the receiver's `Swim::handle_data` as they are.
    pub payload: Bytes,
}

/// Something the core must be woken for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Wake {
    /// One of foca's own timers.
    Foca(Timer<Identity>),
    /// Announce to the seeds.
    Seeds,
    /// Found a mesh if still unjoined.
    JoinDeadline,
    /// Tell a member this node suspects that it is suspected, until `until`.
    Nudge {
        /// The member as suspected.
        member: Identity,
        /// Its incarnation when suspected.
        incarnation: u16,
        /// When the suspicion turns into a verdict.
        until: Instant,
    },
}

impl Wake {
    /// Order among wake-ups due at the same instant. foca needs an indirect probe handled
    /// before the next probe starts (else it reports an incomplete probe cycle); the others
    /// tolerate any order. The numbers follow foca's own ordering of its timers.
    fn rank(&self) -> u8 {
        match self {
            Wake::Foca(Timer::SendIndirectProbe { .. }) => 0,
            Wake::Foca(Timer::ProbeRandomMember(_)) => 1,
            Wake::Foca(Timer::ChangeSuspectToDown { .. }) => 2,
            Wake::Foca(Timer::PeriodicAnnounce(_)) => 3,
            Wake::Foca(Timer::PeriodicGossip(_)) => 4,
            Wake::Foca(Timer::RemoveDown(_)) => 5,
            Wake::Foca(Timer::PeriodicAnnounceDown(_)) => 6,
            Wake::Seeds => 7,
            Wake::JoinDeadline => 8,
            Wake::Nudge { .. } => 9,
        }
    }
}

#[derive(Debug)]
struct Entry {
    at: Instant,
    rank: u8,
    seq: u64,
    wake: Wake,
}

impl Entry {
    fn key(&self) -> (Instant, u8, u64) {
        (self.at, self.rank, self.seq)
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}

/// Wake-ups by due time; ties in the order foca wants, then in the order scheduled.
#[derive(Debug, Default)]
pub(super) struct TimerQueue {
    heap: BinaryHeap<Reverse<Entry>>,
    seq: u64,
}

impl TimerQueue {
    pub(super) fn push(&mut self, at: Instant, wake: Wake) {
        self.seq += 1;
        self.heap.push(Reverse(Entry {
            at,
            rank: wake.rank(),
            seq: self.seq,
            wake,
        }));
    }

    /// When the earliest wake-up is due.
    pub(super) fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(e)| e.at)
    }

    /// The earliest wake-up if it is due at `now`.
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<Wake> {
        if self.next()? > now {
            return None;
        }
        self.heap.pop().map(|Reverse(e)| e.wake)
    }

    pub(super) fn len(&self) -> usize {
        self.heap.len()
    }

    pub(super) fn clear(&mut self) {
        self.heap.clear();
    }
}

/// Datagram counts, for metrics (and the simulation's load figures).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SwimStats {
    /// Datagrams handed to the node to send.
    pub sent: u64,
    /// Their bytes.
    pub sent_bytes: u64,
    /// Datagrams received (accepted or not).
    pub received: u64,
    /// Their bytes.
    pub received_bytes: u64,
    /// Datagrams foca addressed to members known to have left, not sent.
    pub not_sent_to_left: u64,
}

/// The queues one foca call fills.
#[derive(Debug)]
pub(super) struct Outputs {
    /// This node: foca remembers its own earlier identities as down members, and would
    /// announce to them to heal a partition.
    pub(super) me: NodeId,
    /// The time of the call, to turn foca's delays into due times.
    pub(super) now: Instant,
    pub(super) transmits: VecDeque<Transmit>,
    pub(super) timers: TimerQueue,
    pub(super) notes: VecDeque<OwnedNotification<Identity>>,
    /// Suspicions this node raised (its own probe failed) during the call.
    pub(super) raised: Vec<(Identity, u16)>,
    pub(super) stats: SwimStats,
}

impl Outputs {
    pub(super) fn new(me: NodeId, now: Instant) -> Self {
        Outputs {
            me,
            now,
            transmits: VecDeque::new(),
            timers: TimerQueue::default(),
            notes: VecDeque::new(),
            raised: Vec::new(),
            stats: SwimStats::default(),
        }
    }

    pub(super) fn send(&mut self, to: Destination, payload: Bytes) {
        self.stats.sent += 1;
        self.stats.sent_bytes += payload.len() as u64;
        self.transmits.push_back(Transmit { to, payload });
    }

    /// Takes back the datagrams queued at `from` or later that match.
    pub(super) fn retract_from(&mut self, from: usize, matches: impl Fn(&Transmit) -> bool) {
        let mut i = from;
        while i < self.transmits.len() {
            if self.transmits.get(i).is_some_and(&matches) {
                if let Some(t) = self.transmits.remove(i) {
                    self.stats.sent -= 1;
                    self.stats.sent_bytes -= t.payload.len() as u64;
                }
            } else {
                i += 1;
            }
        }
    }

    pub(super) fn schedule(&mut self, after: Duration, wake: Wake) {
        self.timers.push(self.now + after, wake);
    }
}

impl foca::Runtime<Identity> for Outputs {
    fn notify(&mut self, notification: Notification<'_, Identity>) {
        self.notes.push_back(notification.to_owned());
    }

    fn send_to(&mut self, to: Identity, data: &[u8]) {
        // foca keeps announcing to members that are down, to heal partitions; one that left
        // will not answer, so there is no point dialing it.
        if to.state == Lifecycle::Left {
            self.stats.not_sent_to_left += 1;
            return;
        }
        if to.id == self.me {
            return;
        }
        self.send(
            Destination::Member {
                id: to.id,
                addrs: to.addrs,
            },
            wire::frame(wire::KIND_FOCA, data),
        );
    }

    fn submit_after(&mut self, event: Timer<Identity>, after: Duration) {
        // foca schedules this only where this node's own probe failed and it raised the
        // suspicion.
        if let Timer::ChangeSuspectToDown {
            member_id,
            incarnation,
            ..
        } = &event
        {
            self.raised.push((member_id.clone(), *incarnation));
        }
        self.schedule(after, Wake::Foca(event));
    }
}

/// A runtime that only keeps the one packet foca writes (a wildcard announce's).
#[derive(Debug, Default)]
pub(super) struct Capture(pub(super) Option<Vec<u8>>);

impl foca::Runtime<Identity> for Capture {
    fn notify(&mut self, _: Notification<'_, Identity>) {}

    fn send_to(&mut self, _: Identity, data: &[u8]) {
        self.0 = Some(data.to_vec());
    }

    fn submit_after(&mut self, _: Timer<Identity>, _: Duration) {}
}
