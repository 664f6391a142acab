//! The protocol's timing, derived from the peer links' own: a member that dies must be
//! declared down within `idle_timeout + 1 s`, the time a QUIC link takes to notice the same
//! death, plus a second to spread the verdict.

use std::num::{NonZeroU8, NonZeroUsize};
use std::time::Duration;

/// Largest datagram the protocol writes or reads. A QUIC datagram frame always fits 1,100
/// bytes: QUIC's smallest path MTU is 1,200 bytes of UDP payload, of which a short header,
/// the AEAD tag and the frame header take at most about 60.
pub const MAX_DATAGRAM: usize = 1100;

/// Membership protocol settings.
#[derive(Debug, Clone)]
pub struct SwimConfig {
    /// How often each member probes one other (round-robin over a shuffled list).
    pub probe_period: Duration,
    /// How long a direct probe waits for its ack before asking others to probe indirectly.
    pub probe_rtt: Duration,
    /// Members asked to probe indirectly; also the fan-out of gossip rounds.
    pub indirect_probes: usize,
    /// How long a suspected member may refute the suspicion before it is declared down.
    pub suspect_to_down: Duration,
    /// How often pending membership updates are pushed to `indirect_probes` random members,
    /// besides riding on probes.
    pub gossip_period: Duration,
    /// How many times each update is sent before it is dropped from the backlog.
    pub max_transmissions: u8,
    /// How often to ask a random member for its member list (fills a joiner's view beyond
    /// what the first answer held).
    pub member_announce_period: Duration,
    /// How often to announce to random members that are down (heals a split mesh while both
    /// sides still remember each other).
    pub down_announce_period: Duration,
    /// How long a member that is down is remembered (and announced to).
    pub forget_down_after: Duration,
    /// How often to announce to the seed addresses (the resolved join names) that no live
    /// member holds, once this node has peers; heals a split whatever its duration.
    pub seed_period: Duration,
    /// How often to announce to every seed while this node has no live peer.
    pub seed_retry: Duration,
    /// How long a node waits for a member with a join sequence before founding a mesh of
    /// its own (its join sequence taken from the clock).
    pub join_timeout: Duration,
    /// Largest datagram written or read.
    pub max_datagram: usize,
}

impl SwimConfig {
    /// Settings for links with this idle timeout and keep-alive (5 s and 1 s by default),
    /// sized for about `expected_members` nodes.
    ///
    /// The detection budget is `B = idle_timeout + 1 s`: a dead member must be declared down
    /// within a second of the time its QUIC link notices the same death. In the worst case a
    /// death waits about three probe periods `P` before someone probes the dead member (each
    /// member probes the others round-robin in a shuffled order, so a small mesh can leave a
    /// member unprobed for a few periods), one more for that probe to fail, then the suspicion
    /// `S`, then about one period for the verdict to spread (gossip rounds every `P / 5` to 3
    /// members reach 64 members in 4 rounds). So `5P + S = B` with `P = B / 12`, never above
    /// the keep-alive (probes keep a link as busy as its keep-alives do): for the defaults
    /// `P = 0.5 s` and `S = 3.5 s`, ample time to refute a false suspicion.
    pub fn for_links(idle_timeout: Duration, keep_alive: Duration, expected_members: u32) -> Self {
        let budget = idle_timeout + Duration::from_secs(1);
        let probe_period = keep_alive.min(budget / 12).max(Duration::from_millis(100));
        let suspect_to_down = budget.saturating_sub(probe_period * 5).max(probe_period);
        SwimConfig {
            probe_period,
            // The direct ack waits 2/5 of the period, leaving 3/5 for the indirect cycle's
            // four hops.
            probe_rtt: probe_period * 2 / 5,
            indirect_probes: 3,
            suspect_to_down,
            gossip_period: probe_period / 5,
            max_transmissions: max_transmissions(expected_members),
            // A feed holds about eight members; one every 10 s completes a joiner's view of a
            // settled mesh in a minute or so at the cost of two datagrams per 10 s.
            member_announce_period: Duration::from_secs(10),
            down_announce_period: Duration::from_secs(5),
            forget_down_after: Duration::from_secs(24 * 60 * 60),
            seed_period: Duration::from_secs(5),
            seed_retry: Duration::from_secs(1),
            join_timeout: Duration::from_secs(3),
            max_datagram: MAX_DATAGRAM,
        }
    }

    /// The detection time these settings were derived for (the budget above).
    pub fn detection_bound(&self) -> Duration {
        self.probe_period * 5 + self.suspect_to_down
    }

    /// foca's settings.
    pub(super) fn foca(&self) -> Result<foca::Config, &'static str> {
        if self.probe_rtt.is_zero() || self.probe_rtt >= self.probe_period {
            return Err("probe_rtt must be above zero and below probe_period");
        }
        if self.suspect_to_down.is_zero() || self.gossip_period.is_zero() {
            return Err("suspect_to_down and gossip_period must be above zero");
        }
        let periodic = |frequency: Duration, n: usize| {
            Some(foca::PeriodicParams {
                frequency,
                num_members: NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN),
            })
        };
        Ok(foca::Config {
            probe_period: self.probe_period,
            probe_rtt: self.probe_rtt,
            num_indirect_probes: NonZeroUsize::new(self.indirect_probes)
                .ok_or("indirect_probes must be at least 1")?,
            max_transmissions: NonZeroU8::new(self.max_transmissions)
                .ok_or("max_transmissions must be at least 1")?,
            suspect_to_down_after: self.suspect_to_down,
            remove_down_after: Some(self.forget_down_after),
            max_packet_size: NonZeroUsize::new(self.max_datagram)
                .ok_or("max_datagram must be above zero")?,
            // A member that the mesh declared down learns it from the next message it sends,
            // and renews instead of talking into the void.
            notify_down_members: true,
            periodic_announce: periodic(self.member_announce_period, 1),
            periodic_announce_to_down_members: periodic(self.down_announce_period, 2),
            periodic_gossip: periodic(self.gossip_period, self.indirect_probes),
        })
    }
}

impl Default for SwimConfig {
    /// The node's default link timing: idle timeout 5 s, keep-alive 1 s, 64 members.
    fn default() -> Self {
        SwimConfig::for_links(Duration::from_secs(5), Duration::from_secs(1), 64)
    }
}

/// `4 × log10(n + 1)`, rounded up: enough sends per update to reach every member of an
/// infection-style spread with high probability (the rule foca's own presets use).
fn max_transmissions(expected_members: u32) -> u8 {
    let n = f64::from(expected_members.saturating_add(1));
    let tx = (4.0 * n.log10()).ceil();
    // Casting a finite value already clamped to 1..=255 cannot truncate.
    tx.clamp(1.0, 255.0) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fit_the_detection_budget() {
        let c = SwimConfig::default();
        assert_eq!(c.probe_period, Duration::from_millis(500));
        assert_eq!(c.probe_rtt, Duration::from_millis(200));
        assert_eq!(c.suspect_to_down, Duration::from_millis(3500));
        assert_eq!(c.detection_bound(), Duration::from_secs(6));
        assert_eq!(c.max_transmissions, 8);
        assert!(c.foca().is_ok());
    }

    #[test]
    fn a_short_idle_timeout_shortens_the_probe_period() {
        let c = SwimConfig::for_links(Duration::from_secs(2), Duration::from_secs(1), 16);
        assert_eq!(c.probe_period, Duration::from_millis(250));
        assert_eq!(c.suspect_to_down, Duration::from_millis(1750));
        assert_eq!(c.detection_bound(), Duration::from_secs(3));
        let c = SwimConfig::for_links(Duration::from_secs(5), Duration::from_millis(200), 16);
        assert_eq!(
            c.probe_period,
            Duration::from_millis(200),
            "never above the keep-alive"
        );
    }

    #[test]
    fn inconsistent_settings_are_refused() {
        let mut c = SwimConfig::default();
        c.probe_rtt = c.probe_period;
        assert!(c.foca().is_err());
    }
}
