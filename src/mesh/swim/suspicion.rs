//! Suspicion, completed: a suspected member that was cut off when the suspicion spread is
//! told directly so it can refute, and foca's "you are down" after a refuted suspicion is
//! taken back.

use std::time::Instant;

use super::identity::Identity;
use super::runtime::{Destination, Wake};
use super::{wire, Swim, SwimError};
use crate::proto::NodeId;

impl Swim {
    /// Tells a member this node suspects that it is suspected, every probe period while the
    /// suspicion lasts (see `wire::suspicion_notice`).
    pub(super) fn nudge(
        &mut self,
        now: Instant,
        member: Identity,
        incarnation: u16,
        until: Instant,
    ) -> Result<(), SwimError> {
        let still = self.foca.iter_membership_state().any(|m| {
            m.id() == &member && m.incarnation() == incarnation && m.state() == foca::State::Suspect
        });
        if !still || now >= until {
            return Ok(());
        }
        let packet = wire::suspicion_notice(self.foca.identity(), &member, incarnation)?;
        self.out.send(
            Destination::Member {
                id: member.id,
                addrs: member.addrs.clone(),
            },
            wire::frame(wire::KIND_FOCA, &packet),
        );
        let period = self.config.probe_period;
        self.out.schedule(
            period,
            Wake::Nudge {
                member,
                incarnation,
                until,
            },
        );
        Ok(())
    }

    /// When a suspicion runs out, foca (2.0) tells the member it is down even if it refuted
    /// the suspicion meanwhile and was not declared down; the member would then believe the
    /// mesh dropped it and renew for nothing. Such a message, sent in the timer's call, is
    /// taken back unless the member really is down now.
    pub(super) fn retract_moot_verdict(&mut self, id: NodeId, sent_before: usize) {
        let down = self
            .foca
            .iter_membership_state()
            .any(|m| m.id().id == id && m.state() == foca::State::Down);
        if !down {
            self.out.retract_from(sent_before, |t| {
                matches!(&t.to, Destination::Member { id: to, .. } if *to == id)
                    && wire::is_turn_undead(&t.payload)
            });
        }
    }
}
