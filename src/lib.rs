//! cloudmesh: shared cloud memory, placement and live migration for game and app backends.
//!
//! The library is the product; `cloudd` and `cloudctl` are thin shells around it. See
//! ARCHITECTURE.md for the module map and the invariants each module keeps.

pub mod proto;
pub mod store;
