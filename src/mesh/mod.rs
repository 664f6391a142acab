//! The mesh (§3.5, §4): authenticated peer links, membership, host election, and cloud
//! memory spread across nodes. This module holds the parts that are pure logic or
//! self-contained protocol steps; `node::peer` wires them to connections.

mod auth;
mod membership;
mod merge;
mod ticket;

pub use auth::{authenticate, AuthError, AuthLimiter, MeshError, MeshSecret, Role, MIN_SECRET_LEN};
pub use membership::{Membership, UNJOINED};
pub use merge::merge_pages;
pub use ticket::{issue as issue_ticket, TicketBook, TicketError};
