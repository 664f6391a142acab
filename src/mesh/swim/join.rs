//! The join order: when a node takes its join sequence, and which one.

use std::time::Instant;

use super::identity::Lifecycle;
use super::runtime::Wake;
use super::{Event, Swim, SwimError, UNJOINED};

impl Swim {
    /// Wall-clock milliseconds at `now`, from the reading given at start.
    pub(super) fn unix_ms(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.start).as_millis();
        self.unix_ms_at_start
            .saturating_add(u64::try_from(elapsed).unwrap_or(u64::MAX))
    }

    /// No member with a join sequence answered in time. Of the unjoined nodes that know
    /// each other, the lowest id founds and the others join behind it, so that nodes
    /// started together make one join order rather than one founder each; a lower one that
    /// never founds (it died meanwhile) is waited for up to three deadlines.
    pub(super) fn on_join_deadline(&mut self, now: Instant) -> Result<(), SwimError> {
        if self.left || self.is_joined() || self.try_join(now)? {
            return Ok(());
        }
        let me = self.view.me().id;
        let lowest = self.view.others().all(|m| m.id > me);
        let waited = now.saturating_duration_since(self.start) >= self.config.join_timeout * 3;
        if lowest || waited {
            self.found(now)
        } else {
            self.out
                .schedule(self.config.probe_period, Wake::JoinDeadline);
            Ok(())
        }
    }

    /// Takes a join sequence if this node is unjoined and knows a joined member: one past
    /// the newest it knows. Returns whether it did.
    pub(super) fn try_join(&mut self, now: Instant) -> Result<bool, SwimError> {
        if self.left || self.view.me().join_seq != UNJOINED {
            return Ok(false);
        }
        let newest = self
            .view
            .others()
            .map(|m| m.join_seq)
            .filter(|s| *s != UNJOINED)
            .max();
        let Some(newest) = newest else {
            return Ok(false);
        };
        self.take_place(now, newest.saturating_add(1).min(UNJOINED - 1), false)?;
        Ok(true)
    }

    /// Takes join sequence `seq` (and becomes Active if it was Joining).
    pub(super) fn take_place(
        &mut self,
        now: Instant,
        seq: u64,
        founded: bool,
    ) -> Result<(), SwimError> {
        self.switch_identity(now, |i| {
            i.join_seq = seq;
            if i.state == Lifecycle::Joining {
                i.state = Lifecycle::Active;
            }
        })?;
        self.events.push_back(Event::Joined {
            join_seq: seq,
            founded,
        });
        Ok(())
    }
}
