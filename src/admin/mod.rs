//! Operator control of a live mesh: the admin protocol, the Unix socket every `cloudd`
//! serves it on, and the client `cloudctl` and the console use.
//!
//! `protocol` and `frame` depend on nothing else in the crate; `server` executes commands
//! through a [`server::CommandRunner`] (the node's `AdminHandle`, which forwards those aimed
//! at other nodes over the authenticated mesh), so it names no layer above it.

pub mod client;
pub mod frame;
pub mod protocol;
pub mod server;

use std::path::PathBuf;

pub use client::{AdminClient, AdminClientError};
pub use protocol::*;
pub use server::{AdminSocket, AdminSocketError, CommandRunner};

/// Where `cloudd` serves and `cloudctl` looks by default: `$XDG_RUNTIME_DIR/cloudd/admin.sock`
/// when that variable is set (a per-user, private directory), else `/run/cloudd/admin.sock`
/// (the system service's runtime directory).
pub fn default_socket_path() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("cloudd").join("admin.sock"),
        None => PathBuf::from("/run/cloudd/admin.sock"),
    }
}
