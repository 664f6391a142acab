//! What the membership protocol gossips as a member: everything a peer needs to reach a
//! node, rank it for host election and show it, in one value.
//!
//! Lifecycle state and join sequence travel inside the identity rather than as custom
//! broadcasts. A broadcast is sent a bounded number of times and then forgotten, so a node
//! that joins later would never learn the state of members that changed before it came;
//! an identity is part of every header, every `Feed` and every membership update, so
//! whoever knows a member knows its state. A change of state is an identity change
//! (`generation` + 1), which foca spreads as a rename that the newer identity wins.

use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::proto::{MemberInfo, NodeId, NodeState};

use super::super::UNJOINED;

/// The sentinel a wildcard announce is addressed to (see `wire`): no node draws it from 128
/// random bits in practice, and a datagram naming it is rewritten before foca reads it.
pub(super) const WILDCARD: NodeId = NodeId(0);

/// A node's lifecycle as the mesh sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Lifecycle {
    /// Connected to at least one member, or trying to; no join sequence yet.
    Joining,
    /// Serving and taking placements.
    Active,
    /// Moving its clients away; takes no new placements, never host while others are not.
    Draining,
    /// Drained: no clients left.
    Drained,
    /// Left the mesh on purpose: peers drop it at once and do not report it as lost.
    Left,
}

impl Lifecycle {
    /// The state as the rest of the crate names it; `None` for [`Lifecycle::Left`], which is
    /// never in a member view.
    pub fn node_state(self) -> Option<NodeState> {
        match self {
            Lifecycle::Joining => Some(NodeState::Joining),
            Lifecycle::Active => Some(NodeState::Active),
            Lifecycle::Draining => Some(NodeState::Draining),
            Lifecycle::Drained => Some(NodeState::Drained),
            Lifecycle::Left => None,
        }
    }
}

impl From<NodeState> for Lifecycle {
    fn from(s: NodeState) -> Self {
        match s {
            NodeState::Joining => Lifecycle::Joining,
            NodeState::Active => Lifecycle::Active,
            NodeState::Draining => Lifecycle::Draining,
            NodeState::Drained => Lifecycle::Drained,
        }
    }
}

/// One run of a node as the membership protocol knows it.
///
/// foca keys members by [`NodeId`] (`foca::Identity::Addr`): two identities with the same id
/// are the same run of a node, and the higher `generation` replaces the other. A restarted
/// process draws a new id, so it is a new member and its previous run is detected as down
/// (or has left).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// This run's id (random per start).
    pub id: NodeId,
    /// Bumped by every change of this identity: state, join sequence, and renewal after a
    /// wrong verdict of down. The highest wins, so the newest always replaces older ones.
    pub generation: u32,
    /// Order of joining: the oldest Active member (lowest `(join_seq, id)`) is host.
    /// [`UNJOINED`] until the node has taken its place.
    pub join_seq: u64,
    /// Lifecycle state.
    pub state: Lifecycle,
    /// Human name.
    pub name: String,
    /// Addresses peers should try, internal first.
    pub addrs: Vec<SocketAddr>,
    /// SHA-256 of its certificate.
    pub fingerprint: [u8; 32],
    /// Addresses clients should use (empty: the peer addresses).
    pub client_addrs: Vec<SocketAddr>,
}

impl Identity {
    /// The identity of a node that has not joined yet.
    pub fn joining(info: &MemberInfo) -> Self {
        Identity {
            id: info.id,
            generation: 0,
            join_seq: UNJOINED,
            state: Lifecycle::Joining,
            name: info.name.clone(),
            addrs: info.addrs.clone(),
            fingerprint: info.fingerprint,
            client_addrs: info.client_addrs.clone(),
        }
    }

    /// The placeholder a wildcard announce is addressed to.
    pub(super) fn wildcard() -> Self {
        Identity {
            id: WILDCARD,
            generation: 0,
            join_seq: UNJOINED,
            state: Lifecycle::Joining,
            name: String::new(),
            addrs: Vec::new(),
            fingerprint: [0; 32],
            client_addrs: Vec::new(),
        }
    }

    /// The member as the rest of the crate sees it; `None` once it has left.
    pub fn info(&self) -> Option<MemberInfo> {
        Some(MemberInfo {
            id: self.id,
            name: self.name.clone(),
            addrs: self.addrs.clone(),
            join_seq: self.join_seq,
            state: self.state.node_state()?,
            fingerprint: self.fingerprint,
            client_addrs: self.client_addrs.clone(),
        })
    }

    /// A total order over identities of one node, newest last. The generation decides in
    /// practice; the rest only breaks ties between two identities that should not exist (the
    /// same id and generation with different content), so that every node keeps the same one.
    fn recency(&self) -> impl Ord + '_ {
        (
            self.generation,
            self.state,
            self.join_seq,
            &self.name,
            &self.addrs,
            &self.fingerprint,
            &self.client_addrs,
        )
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Logs need who and which version, not the certificate fingerprint.
        write!(
            f,
            "{}({:?} g{} seq {} {:?})",
            self.name, self.id, self.generation, self.join_seq, self.state
        )
    }
}

impl foca::Identity for Identity {
    type Addr = NodeId;

    /// A live node wrongly declared down comes back as the same run (same id, same join
    /// sequence, so it keeps its rank for host election) with the next generation, which wins
    /// over the identity the mesh declared down.
    fn renew(&self) -> Option<Self> {
        if self.state == Lifecycle::Left {
            // It left on purpose: a verdict of down is the truth.
            return None;
        }
        Some(Identity {
            generation: self.generation.checked_add(1)?,
            ..self.clone()
        })
    }

    fn addr(&self) -> NodeId {
        self.id
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.recency() > adversary.recency()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::Identity as _;

    fn ident(generation: u32, state: Lifecycle) -> Identity {
        Identity {
            id: NodeId(7),
            generation,
            join_seq: 3,
            state,
            name: "n".into(),
            addrs: vec![],
            fingerprint: [1; 32],
            client_addrs: vec![],
        }
    }

    #[test]
    fn the_newer_generation_wins_whatever_its_state() {
        let old = ident(4, Lifecycle::Active);
        let new = ident(5, Lifecycle::Joining);
        assert!(new.win_addr_conflict(&old));
        assert!(!old.win_addr_conflict(&new));
        let renewed = old.renew().unwrap();
        assert_eq!((renewed.id, renewed.join_seq), (old.id, old.join_seq));
        assert!(renewed.win_addr_conflict(&old));
    }

    #[test]
    fn ties_are_broken_the_same_way_on_every_node() {
        let a = ident(2, Lifecycle::Active);
        let b = ident(2, Lifecycle::Draining);
        assert_ne!(a.win_addr_conflict(&b), b.win_addr_conflict(&a));
    }

    #[test]
    fn a_node_that_left_does_not_renew_and_has_no_member_info() {
        let left = ident(1, Lifecycle::Left);
        assert!(left.renew().is_none());
        assert!(left.info().is_none());
        assert!(ident(u32::MAX, Lifecycle::Active).renew().is_none());
    }
}
