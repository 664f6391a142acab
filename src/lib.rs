//! cloudmesh: shared cloud memory, placement and live migration for game and app backends.
//!
//! The library is the product; `cloudd` and `cloudctl` are thin shells around it. See
//! ARCHITECTURE.md for the module map and the invariants each module keeps.

// The client SDK and what it stands on: always built.
pub mod client;
pub mod proto;
pub mod query;
pub mod transport;

// The node and everything beside it (feature `server`, on by default).
#[cfg(feature = "server")]
pub mod access;
#[cfg(feature = "server")]
pub mod admin;
#[cfg(feature = "server")]
pub mod bench;
#[cfg(feature = "server")]
pub mod config;
#[cfg(feature = "server")]
pub mod dyndns;
/// Checks the fuzz targets and the corpus replay run (`fuzz/`, `tests/fuzz_corpus.rs`).
#[cfg(feature = "server")]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(feature = "server")]
pub mod local_mesh;
#[cfg(feature = "server")]
pub mod mesh;
#[cfg(feature = "server")]
pub mod metrics;
#[cfg(feature = "server")]
pub mod node;
#[cfg(feature = "server")]
pub mod placement;
#[cfg(feature = "server")]
pub mod sim;
#[cfg(feature = "server")]
pub mod store;

#[cfg(feature = "server")]
pub use config::NodeConfig;
#[cfg(feature = "server")]
pub use node::{DrainError, MeshEvent, MigrateError, Node, NodeError};

/// Compiles the README's Rust example as a doctest, so the documented API cannot drift.
#[cfg(all(doctest, feature = "server"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
