//! Membership and failure detection: SWIM with suspicion and infection-style
//! dissemination (the `foca` crate), as a state machine with no networking and no clock of
//! its own.
//!
//! The node feeds it what arrives ([`Swim::handle_data`]), the passing of time
//! ([`Swim::handle_timeout`] when [`Swim::poll_timeout`] is due) and its own decisions
//! ([`Swim::set_seeds`], [`Swim::found`], [`Swim::set_state`], [`Swim::leave`]); after each
//! call it drains datagrams to send ([`Swim::poll_transmit`]) and what changed
//! ([`Swim::poll_event`]). The member view ([`Swim::members`]) and the host
//! ([`Swim::host`]) follow foca's verdicts.
//!
//! Joining: a node starts unjoined and announces to its seeds (the resolved join names).
//! The first members it hears of give it its join sequence, one past the newest it sees,
//! so a node never outranks a member that was already there. A node that hears of no
//! joined member within `join_timeout` founds a mesh: its sequence is the wall-clock time
//! in milliseconds, so of two meshes that meet, the members of the older one keep their
//! rank, and a node that restarts alone does not become host of the mesh it finds later.
//! Ties (nodes joining through the same members at once) are broken by id.

mod config;
mod error;
mod identity;
mod join;
mod reach;
mod rng;
mod runtime;
mod suspicion;
mod view;
mod wire;

#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use foca::{NoCustomBroadcast, PostcardCodec};

use super::{Membership, UNJOINED};
use crate::proto::{MemberInfo, NodeId, NodeState};
use rng::SwimRng;
use runtime::{Capture, Outputs, Wake};

pub use config::{SwimConfig, MAX_DATAGRAM};
pub use error::SwimError;
pub use identity::{Identity, Lifecycle};
pub use runtime::{Destination, SwimStats, Transmit};

type Foca = foca::Foca<Identity, PostcardCodec, SwimRng, NoCustomBroadcast>;

/// What changed, for the node to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// This node took its place in the join order. `founded`: no joined member was known,
    /// so it started a mesh and its sequence came from the clock.
    Joined {
        /// Its join sequence.
        join_seq: u64,
        /// Whether it founded a mesh.
        founded: bool,
    },
    /// A member appeared, or came back after it was declared down.
    MemberUp(MemberInfo),
    /// A member's state or details changed (same id).
    MemberChanged {
        /// As it was.
        before: MemberInfo,
        /// As it is.
        after: MemberInfo,
    },
    /// A member stopped answering and was declared down; it is gone from the view.
    MemberDown(MemberInfo),
    /// A member left on purpose; it is gone from the view. Not a failure.
    MemberLeft(MemberInfo),
    /// The host changed.
    HostChanged {
        /// The previous host.
        from: NodeId,
        /// The host now.
        to: NodeId,
    },
    /// The mesh wrongly declared this node down; it came back under the next generation of
    /// its identity, keeping its id and join sequence.
    Renewed {
        /// The generation now.
        generation: u32,
    },
    /// Every member this node knew is gone; it keeps announcing to its seeds.
    Isolated,
    /// The mesh declared this node down and it cannot come back (identity exhausted);
    /// restart the node.
    Defunct,
}

/// One node's membership state machine.
pub struct Swim {
    foca: Foca,
    out: Outputs,
    view: Membership,
    config: SwimConfig,
    seeds: Vec<SocketAddr>,
    start: Instant,
    unix_ms_at_start: u64,
    host: NodeId,
    events: VecDeque<Event>,
    left: bool,
    /// Where `announce_to_down` goes on in its round of down members.
    down_cursor: usize,
}

impl std::fmt::Debug for Swim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // foca itself has no Debug; who this is and what it sees is what logs need.
        f.debug_struct("Swim")
            .field("identity", self.foca.identity())
            .field("members", &self.view.all().len())
            .field("host", &self.host)
            .field("left", &self.left)
            .finish_non_exhaustive()
    }
}

impl Swim {
    /// A node that has not joined yet. `me`'s join sequence and state are ignored (the core
    /// owns them from now on); `unix_ms` is the wall-clock time at `now` (the only use of
    /// the wall clock: a founder's join sequence); `seed` seeds the protocol's random
    /// choices.
    pub fn new(
        me: MemberInfo,
        config: SwimConfig,
        now: Instant,
        unix_ms: u64,
        seed: u64,
    ) -> Result<Self, SwimError> {
        let foca_config = config.foca().map_err(SwimError::Config)?;
        let identity = Identity::joining(&me);
        check_size(&identity, config.max_datagram)?;
        let view_me = MemberInfo {
            join_seq: UNJOINED,
            state: NodeState::Joining,
            ..me
        };
        let host = view_me.id;
        let foca = Foca::new(identity, foca_config, SwimRng::seeded(seed), PostcardCodec);
        let mut out = Outputs::new(view_me.id, now);
        out.schedule(config.join_timeout, Wake::JoinDeadline);
        out.schedule(config.seed_retry, Wake::Seeds);
        Ok(Swim {
            foca,
            out,
            view: Membership::new(view_me),
            config,
            seeds: Vec::new(),
            start: now,
            unix_ms_at_start: unix_ms,
            host,
            events: VecDeque::new(),
            left: false,
            down_cursor: 0,
        })
    }

    /// The addresses the join names resolve to now. Announced to at once while this node
    /// has no live peer, then every `seed_period` those that no live member holds (a
    /// healthy mesh sends nothing for them). Re-resolve the names and call again as often
    /// as they may change.
    pub fn set_seeds(&mut self, now: Instant, seeds: Vec<SocketAddr>) -> Result<(), SwimError> {
        self.seeds = seeds;
        if self.foca.num_members() == 0 && !self.left {
            self.announce_to_seeds(now, false)?;
        }
        Ok(())
    }

    /// Announces to whoever listens at `addr`: it answers with members it knows, and learns
    /// this node.
    pub fn announce(&mut self, now: Instant, addr: SocketAddr) -> Result<(), SwimError> {
        if self.left {
            return Err(SwimError::Left);
        }
        self.out.now = now;
        let mut capture = Capture::default();
        self.foca.announce(Identity::wildcard(), &mut capture)?;
        if let Some(packet) = capture.0 {
            self.out.send(
                Destination::Addr(addr),
                wire::frame(wire::KIND_ANNOUNCE_ANY, &packet),
            );
        }
        Ok(())
    }

    /// Starts a mesh if this node knows no joined member (its join sequence is the clock's
    /// milliseconds); otherwise joins behind the newest member it knows. For a node with no
    /// join names; one with join names founds by itself after `join_timeout`.
    pub fn found(&mut self, now: Instant) -> Result<(), SwimError> {
        if self.left {
            return Err(SwimError::Left);
        }
        if self.view.me().join_seq != UNJOINED {
            return Ok(());
        }
        if !self.try_join(now)? {
            let seq = self.unix_ms(now).min(UNJOINED - 1);
            self.take_place(now, seq, true)?;
        }
        self.settle(now)
    }

    /// Sets this node's lifecycle state mesh-wide (Active, Draining, Drained).
    pub fn set_state(&mut self, now: Instant, state: NodeState) -> Result<(), SwimError> {
        if self.left {
            return Err(SwimError::Left);
        }
        if self.view.me().state == state {
            return Ok(());
        }
        self.switch_identity(now, |i| i.state = state.into())?;
        self.settle(now)
    }

    /// Leaves the mesh: every live member is told at once (they drop this node as left, not
    /// as lost). Send the datagrams [`Swim::poll_transmit`] yields before closing the
    /// endpoint; the core takes no input afterwards.
    pub fn leave(&mut self, now: Instant) -> Result<(), SwimError> {
        if self.left {
            return Ok(());
        }
        // The new identity says Left in the header of every message it sends, so any member
        // that hears from it knows at once, even if the down verdict reaches it later.
        self.switch_identity(now, |i| i.state = Lifecycle::Left)?;
        // foca tells a few members and lets dissemination do the rest; a leave should not
        // wait for that, so for this last round it tells every live member.
        let everyone = self.foca.num_members().max(1);
        let mut last = self.config.foca().map_err(SwimError::Config)?;
        last.num_indirect_probes =
            std::num::NonZeroUsize::new(everyone).unwrap_or(last.num_indirect_probes);
        last.max_transmissions = u8::try_from(everyone)
            .ok()
            .and_then(std::num::NonZeroU8::new)
            .map_or(std::num::NonZeroU8::MAX, |n| n.max(last.max_transmissions));
        self.foca.set_config(last)?;
        self.foca.leave_cluster(&mut self.out)?;
        self.left = true;
        self.out.notes.clear();
        self.out.timers.clear();
        Ok(())
    }

    /// A datagram from the link to `from` (the node the link authenticated, when it knows;
    /// a datagram naming another sender is then refused).
    pub fn handle_data(
        &mut self,
        now: Instant,
        from: Option<NodeId>,
        datagram: &[u8],
    ) -> Result<(), SwimError> {
        if self.left {
            return Err(SwimError::Left);
        }
        self.out.stats.received += 1;
        self.out.stats.received_bytes += datagram.len() as u64;
        self.out.now = now;
        let (kind, packet) = wire::split(datagram)?;
        if kind != wire::KIND_FOCA && kind != wire::KIND_ANNOUNCE_ANY {
            return Err(SwimError::UnknownKind(kind));
        }
        let (mut header, rest) = wire::decode(packet)?;
        if let Some(link) = from.filter(|link| *link != header.src.id) {
            return Err(SwimError::SenderMismatch {
                claimed: header.src.id,
                link,
            });
        }
        let me = self.foca.identity();
        let readdress = if kind == wire::KIND_ANNOUNCE_ANY {
            wire::check_announce(&header, rest)?;
            if header.src.id == me.id {
                return Err(SwimError::OwnAnnounce);
            }
            true
        } else if header.dst.id == me.id && header.dst.generation < me.generation {
            // Addressed to an earlier generation of this very run: the sender has not heard
            // of the change yet. foca would drop it as meant for another node, and when
            // several nodes change at once (all joining together) every one of them would
            // drop every message for a while. It is for this node all the same; only a
            // verdict of down is moot, the newer generation having superseded it.
            if header.message == foca::Message::TurnUndead {
                return Ok(());
            }
            true
        } else {
            false
        };
        let result = if readdress {
            header.dst = me.clone();
            let packet = wire::encode(&header, rest)?;
            self.foca.handle_data(&packet, &mut self.out)
        } else {
            self.foca.handle_data(packet, &mut self.out)
        };
        // foca may have applied part of a packet before failing on the rest: settle either way.
        self.settle(now)?;
        result.map_err(SwimError::from)
    }

    /// When [`Swim::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.out.timers.next()
    }

    /// Runs every wake-up due at `now`. Returns the first error met; the others still run.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), SwimError> {
        let mut first_error = None;
        self.out.now = now;
        while let Some(wake) = self.out.timers.pop_due(now) {
            if self.left {
                continue;
            }
            let result = match wake {
                Wake::Foca(timer) => {
                    let suspect = match &timer {
                        foca::Timer::ChangeSuspectToDown { member_id, .. } => Some(member_id.id),
                        _ => None,
                    };
                    let announces = matches!(
                        timer,
                        foca::Timer::PeriodicAnnounce(_) | foca::Timer::PeriodicAnnounceDown(_)
                    );
                    let sent_before = self.out.transmits.len();
                    let result = self.foca.handle_timer(timer, &mut self.out);
                    if let Some(id) = suspect {
                        self.retract_moot_verdict(id, sent_before);
                    }
                    if announces {
                        self.widen_announces(sent_before);
                    }
                    result.map_err(SwimError::from)
                }
                Wake::Seeds => self.on_seed_timer(now),
                Wake::JoinDeadline => self.on_join_deadline(now),
                Wake::Nudge {
                    member,
                    incarnation,
                    until,
                } => self.nudge(now, member, incarnation, until),
            };
            let settled = self.settle(now);
            if let Err(e) = result.and(settled) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.transmits.pop_front()
    }

    /// The next change to act on.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The member view: this node and the live members it knows, with their states.
    pub fn members(&self) -> &Membership {
        &self.view
    }

    /// This node as the mesh sees it.
    pub fn me(&self) -> &MemberInfo {
        self.view.me()
    }

    /// This node's current identity (with its generation).
    pub fn identity(&self) -> &Identity {
        self.foca.identity()
    }

    /// The host: the oldest Active member by `(join_seq, id)`, draining members passed over.
    pub fn host(&self) -> NodeId {
        self.host
    }

    /// Whether this node has taken its place in the join order.
    pub fn is_joined(&self) -> bool {
        self.view.me().join_seq != UNJOINED
    }

    /// Whether this node has left.
    pub fn has_left(&self) -> bool {
        self.left
    }

    /// Datagram counts since start.
    pub fn stats(&self) -> SwimStats {
        self.out.stats
    }

    /// Membership updates still to be spread (each is sent `max_transmissions` times).
    pub fn updates_backlog(&self) -> usize {
        self.foca.updates_backlog()
    }

    /// Wake-ups pending (a bounded number: a few per member at most).
    pub fn pending_timers(&self) -> usize {
        self.out.timers.len()
    }

    /// Replaces this node's identity with a changed one of the next generation.
    fn switch_identity(
        &mut self,
        now: Instant,
        change: impl FnOnce(&mut Identity),
    ) -> Result<(), SwimError> {
        let mut next = self.foca.identity().clone();
        change(&mut next);
        next.generation = next
            .generation
            .checked_add(1)
            .ok_or(SwimError::GenerationExhausted)?;
        self.out.now = now;
        self.foca.change_identity(next.clone(), &mut self.out)?;
        self.reconnect()?;
        if let Some(info) = next.info() {
            *self.view.me_mut() = info;
        }
        Ok(())
    }

    /// After an identity change foca waits for a message addressed to the new identity
    /// before it probes again; applying no update re-checks its live members and restarts
    /// the probe cycle at once.
    fn reconnect(&mut self) -> Result<(), SwimError> {
        self.foca
            .apply_many(std::iter::empty(), false, &mut self.out)
            .map_err(SwimError::from)
    }

    /// Brings the view, the join sequence and the host up to date with what foca said.
    fn settle(&mut self, now: Instant) -> Result<(), SwimError> {
        // A member cut off when this node suspected it is told again until it can refute;
        // the first notice waits a period, as the probe that failed just now did not reach it.
        for (member, incarnation) in std::mem::take(&mut self.out.raised) {
            let until = now + self.config.suspect_to_down;
            self.out.schedule(
                self.config.probe_period,
                Wake::Nudge {
                    member,
                    incarnation,
                    until,
                },
            );
        }
        loop {
            while let Some(note) = self.out.notes.pop_front() {
                self.on_notification(note)?;
            }
            if !self.try_join(now)? {
                break;
            }
        }
        let host = self.view.host();
        if host != self.host {
            self.events.push_back(Event::HostChanged {
                from: self.host,
                to: host,
            });
            self.host = host;
        }
        Ok(())
    }
}

/// Refuses an identity so large that a datagram could not carry the two in a header plus
/// a useful number of member updates.
fn check_size(identity: &Identity, max_datagram: usize) -> Result<(), SwimError> {
    let size = postcard::to_stdvec(identity)
        .map_err(|e| SwimError::Malformed(e.to_string()))?
        .len();
    let max = max_datagram / 5;
    if size > max {
        return Err(SwimError::IdentityTooLarge { size, max });
    }
    Ok(())
}
