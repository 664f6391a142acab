//! Placement as pure decisions: which node should serve a client, whether a client
//! should move, and which node owns which cells of the world grid.
//!
//! Nothing here does IO, reads a clock or needs tokio: callers pass the candidates, loads,
//! RTTs, positions and the previous zone map in, and act on what comes back. That keeps every
//! rule testable without a network, and lets any node (every node routes) and the host (which
//! assigns zones) run the same code and reach the same answer from the same inputs.
//!
//! - [`score`] ranks candidate nodes for one client; [`Decision::explain`] shows why;
//!   [`verdict`] adds hysteresis so a client is not moved for a tiny gain.
//! - [`assign`] divides the grid among nodes in proportion to spare capacity, keeping cells
//!   where they were; [`ZoneMap::handover`] decides, with a margin, when a moving client
//!   leaves its node's territory.

mod score;
mod zones;

pub use score::{score, verdict, Candidate, CandidateScore, Decision, Verdict, Weights};
pub use zones::{assign, Cell, ZoneConfig, ZoneMap, MAX_CELLS};
