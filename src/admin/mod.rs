//! Operator control of a live mesh (§7): the admin protocol, the Unix socket every `cloudd`
//! serves it on, and the client `cloudctl` and the console use.
//!
//! `protocol` and `frame` depend on nothing else in the crate; `server` executes commands
//! through [`crate::node::AdminHandle`], which forwards those aimed at other nodes over the
//! authenticated mesh.

pub mod client;
pub mod frame;
pub mod protocol;
pub mod server;

use std::path::PathBuf;

pub use client::{AdminClient, AdminClientError};
pub use protocol::*;
pub use server::{AdminSocket, AdminSocketError};

/// Where `cloudd` serves and `cloudctl` looks by default: `$XDG_RUNTIME_DIR/cloudd/admin.sock`
/// when that variable is set (a per-user, private directory), else `/run/cloudd/admin.sock`
/// (the system service's runtime directory).
pub fn default_socket_path() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("cloudd").join("admin.sock"),
        None => PathBuf::from("/run/cloudd/admin.sock"),
    }
}
