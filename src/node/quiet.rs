//! Ground layer: log lines one remote party can make the node repeat thousands of times a
//! second (connections that never speak, garbage, refused handshakes) are logged in full a
//! few times per window, then only counted; each window's count is logged once as a
//! summary. An attack then costs a handful of lines, and the operator still sees its size.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long one window lasts.
const WINDOW: Duration = Duration::from_secs(10);

/// Lines of one kind logged in full per window; the rest are counted.
const FULL_PER_WINDOW: u32 = 5;

/// One kind of line within its current window.
#[derive(Debug)]
struct Tally {
    /// When the window began.
    since: Instant,
    /// Lines logged in full in it.
    logged: u32,
    /// Lines counted instead.
    suppressed: u64,
}

/// Per-kind tallies; a kind is the line's fixed message text.
#[derive(Debug, Default)]
pub(super) struct Quiet {
    tallies: Mutex<HashMap<&'static str, Tally>>,
}

impl Quiet {
    /// Whether a `what` line happening now may be logged in full; when not, it is counted
    /// for the window's summary.
    pub(super) fn allow(&self, what: &'static str) -> bool {
        self.allow_at(what, Instant::now())
    }

    fn allow_at(&self, what: &'static str, now: Instant) -> bool {
        let mut tallies = self.tallies.lock().unwrap_or_else(PoisonError::into_inner);
        let tally = tallies.entry(what).or_insert(Tally {
            since: now,
            logged: 0,
            suppressed: 0,
        });
        if now.saturating_duration_since(tally.since) >= WINDOW {
            summarize(what, tally.suppressed);
            *tally = Tally {
                since: now,
                logged: 0,
                suppressed: 0,
            };
        }
        if tally.logged < FULL_PER_WINDOW {
            tally.logged += 1;
            true
        } else {
            tally.suppressed += 1;
            false
        }
    }

    /// Logs the summary of every window that has ended (called periodically, so a burst's
    /// count is reported even if nothing of its kind follows). Returns the lines counted.
    pub(super) fn flush(&self) -> u64 {
        self.flush_at(Instant::now())
    }

    fn flush_at(&self, now: Instant) -> u64 {
        let mut tallies = self.tallies.lock().unwrap_or_else(PoisonError::into_inner);
        let mut total = 0;
        tallies.retain(|what, tally| {
            if now.saturating_duration_since(tally.since) < WINDOW {
                return true;
            }
            total += tally.suppressed;
            summarize(what, tally.suppressed);
            false
        });
        total
    }
}

fn summarize(what: &str, suppressed: u64) {
    if suppressed > 0 {
        tracing::warn!(
            what,
            suppressed,
            "{suppressed} more \"{what}\" within {}s, not logged one by one",
            WINDOW.as_secs()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_logs_a_few_lines_then_one_count() {
        let quiet = Quiet::default();
        let t0 = Instant::now();
        let full = (0..8_000)
            .filter(|_| quiet.allow_at("no stream", t0))
            .count();
        assert_eq!(full, FULL_PER_WINDOW as usize);
        assert!(quiet.allow_at("other kind", t0), "kinds are counted apart");
        assert_eq!(quiet.flush_at(t0), 0, "the window has not ended");
        assert_eq!(
            quiet.flush_at(t0 + WINDOW),
            8_000 - u64::from(FULL_PER_WINDOW)
        );
        assert!(
            quiet.allow_at("no stream", t0 + WINDOW),
            "a new window logs again"
        );
    }
}
