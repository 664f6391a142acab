//! Finding the mesh again: announcing to the seeds (the resolved join names) and to the
//! members held down, so that split meshes merge whatever the split's duration.

use std::net::SocketAddr;
use std::time::Instant;

use super::identity::Lifecycle;
use super::runtime::{Destination, Wake};
use super::{wire, Swim, SwimError};

impl Swim {
    /// The seed timer: announce, then wake again soon while alone, at leisure otherwise.
    pub(super) fn on_seed_timer(&mut self, now: Instant) -> Result<(), SwimError> {
        let connected = self.foca.num_members() > 0;
        let next = if connected {
            self.config.seed_period
        } else {
            self.config.seed_retry
        };
        self.out.schedule(next, Wake::Seeds);
        if !connected {
            self.announce_to_down(now)?;
        }
        self.announce_to_seeds(now, connected)
    }

    /// While this node has no live peer, foca stops its own announcing to members it holds
    /// down, so a node alone on its side of a split (with no seed but itself, say the
    /// founder) would never look for the others again. This does it for foca: a few of them
    /// each time, in turn, at their addresses (see [`Swim::widen_announces`]).
    fn announce_to_down(&mut self, now: Instant) -> Result<(), SwimError> {
        let me = self.foca.identity().id;
        let own = &self.view.me().addrs;
        let down: Vec<SocketAddr> = self
            .foca
            .iter_membership_state()
            .filter(|m| m.state() == foca::State::Down)
            .map(|m| m.id())
            .filter(|id| id.id != me && id.state != Lifecycle::Left)
            .filter_map(|id| id.addrs.first().copied())
            .filter(|a| !own.contains(a))
            .collect();
        if down.is_empty() {
            return Ok(());
        }
        for k in 0..down.len().min(3) {
            if let Some(addr) = down.get((self.down_cursor + k) % down.len()) {
                self.announce(now, *addr)?;
            }
        }
        self.down_cursor = self.down_cursor.wrapping_add(3);
        Ok(())
    }

    /// Turns the announces foca just queued (its periodic ones, to a random live member and
    /// to members held down) into announces to whoever listens at the member's address. The
    /// same run of the member answers them as it would have; but if the member restarted
    /// there (a new id, so a new member the mesh may not know yet), the new run answers too,
    /// with its own view, instead of dropping an announce meant for its predecessor, which
    /// joins a split mesh back through a restarted node.
    pub(super) fn widen_announces(&mut self, queued_before: usize) {
        for t in self.out.transmits.iter_mut().skip(queued_before) {
            let Destination::Member { addrs, .. } = &t.to else {
                continue;
            };
            let Some(addr) = addrs.first().copied() else {
                continue;
            };
            if let Some(wildcard) = wire::as_wildcard_announce(&t.payload) {
                t.to = Destination::Addr(addr);
                t.payload = wildcard;
            }
        }
    }

    /// Announces to the seeds, except this node's own addresses and, when `skip_live`, the
    /// addresses of live members (a seed held by a member this node already talks to can
    /// only lead back into the same mesh).
    pub(super) fn announce_to_seeds(
        &mut self,
        now: Instant,
        skip_live: bool,
    ) -> Result<(), SwimError> {
        let targets: Vec<SocketAddr> = self
            .seeds
            .iter()
            .copied()
            .filter(|a| !self.view.me().addrs.contains(a))
            .filter(|a| !skip_live || !self.view.others().any(|m| m.addrs.contains(a)))
            .collect();
        for addr in targets {
            self.announce(now, addr)?;
        }
        Ok(())
    }
}
