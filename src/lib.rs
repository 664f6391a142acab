//! cloudmesh: shared cloud memory, placement and live migration for game and app backends.
//!
//! The library is the product; `cloudd` and `cloudctl` are thin shells around it. See
//! ARCHITECTURE.md for the module map and the invariants each module keeps.

pub mod admin;
pub mod bench;
pub mod client;
pub mod config;
pub mod dyndns;
pub mod mesh;
pub mod metrics;
pub mod node;
pub mod placement;
pub mod proto;
pub mod sim;
pub mod store;
pub mod transport;

pub use config::NodeConfig;
pub use node::{DrainError, MeshEvent, MigrateError, Node, NodeError};

/// Compiles the README's Rust example as a doctest, so the documented API cannot drift.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
