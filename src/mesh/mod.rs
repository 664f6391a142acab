//! The mesh: authenticated peer links, membership, host election, and cloud
//! memory spread across nodes. This module holds the parts that are pure logic or
//! self-contained protocol steps; the node wires them to connections. `swim` is
//! membership and failure detection (SWIM, through foca) as a state machine with no IO;
//! `membership` is the member view it maintains and the host rule over it.

mod auth;
mod events;
mod membership;
mod merge;
pub mod swim;
mod ticket;

pub use auth::{authenticate, AuthError, AuthLimiter, MeshError, MeshSecret, Role, MIN_SECRET_LEN};
pub use events::MeshEvent;
pub use membership::{Membership, UNJOINED};
pub use merge::merge_pages;
pub use swim::{Swim, SwimConfig, SwimError};
pub use ticket::{
    check_resume, issue as issue_ticket, issue_resume, ResumeClaim, TicketBook, TicketError,
};
