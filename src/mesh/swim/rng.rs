//! The random source foca draws from (probe order, gossip targets), seeded by the caller so
//! that a simulation replays exactly. foca 2 names rand_core 0.10's traits; the crate's
//! generator is rand 0.8's, so this adapts one to the other.

use std::convert::Infallible;

use rand::{RngCore, SeedableRng};

/// A seeded ChaCha generator behind rand_core 0.10's interface.
#[derive(Debug)]
pub(super) struct SwimRng(rand::rngs::StdRng);

impl SwimRng {
    pub(super) fn seeded(seed: u64) -> Self {
        SwimRng(rand::rngs::StdRng::seed_from_u64(seed))
    }
}

impl rand_core::TryRng for SwimRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok(self.0.next_u32())
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(self.0.next_u64())
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.0.fill_bytes(dst);
        Ok(())
    }
}
