//! Per-client request rate limit: a token bucket holding at most one second of requests.

use std::time::Instant;

/// Token bucket; `rate == 0` means unlimited.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket for `rate` requests per second.
    pub fn new(rate: u32) -> Self {
        TokenBucket {
            rate: rate.into(),
            tokens: rate.into(),
            last: Instant::now(),
        }
    }

    /// Takes one token at `now`; `false` when the client is over its rate.
    pub fn allow(&mut self, now: Instant) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bursts_one_second_then_refills() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10);
        assert_eq!((0..20).filter(|_| b.allow(t0)).count(), 10);
        assert!(b.allow(t0 + Duration::from_millis(150)));
        assert!(!b.allow(t0 + Duration::from_millis(150)));
        let mut free = TokenBucket::new(0);
        assert!((0..1000).all(|_| free.allow(t0)));
    }
}
