//! Who is in the mesh and who is host. Pure state: every node computes the host from
//! its own view, so election needs no messages of its own.

use std::collections::HashMap;

use crate::proto::{MemberInfo, NodeId, NodeState};

/// `join_seq` of a node that has not joined yet; never host while it has this.
pub const UNJOINED: u64 = u64::MAX;

/// This node and the members it knows.
#[derive(Debug, Clone)]
pub struct Membership {
    me: MemberInfo,
    others: HashMap<NodeId, MemberInfo>,
}

impl Membership {
    /// A view holding only this node.
    pub fn new(me: MemberInfo) -> Self {
        Membership {
            me,
            others: HashMap::new(),
        }
    }

    /// This node.
    pub fn me(&self) -> &MemberInfo {
        &self.me
    }

    /// This node, to change its state or sequence.
    pub fn me_mut(&mut self) -> &mut MemberInfo {
        &mut self.me
    }

    /// Adds or updates a member; returns whether it was new. Ignores this node's own id.
    pub fn upsert(&mut self, info: MemberInfo) -> bool {
        if info.id == self.me.id {
            return false;
        }
        self.others.insert(info.id, info).is_none()
    }

    /// Forgets a member.
    pub fn remove(&mut self, id: NodeId) -> Option<MemberInfo> {
        self.others.remove(&id)
    }

    /// A member by id (this node included).
    pub fn get(&self, id: NodeId) -> Option<&MemberInfo> {
        if id == self.me.id {
            Some(&self.me)
        } else {
            self.others.get(&id)
        }
    }

    /// Every member, this node included, oldest first.
    pub fn all(&self) -> Vec<MemberInfo> {
        let mut v: Vec<MemberInfo> = self.others.values().cloned().collect();
        v.push(self.me.clone());
        v.sort_by_key(|m| (m.join_seq, m.id));
        v
    }

    /// Members other than this node.
    pub fn others(&self) -> impl Iterator<Item = &MemberInfo> {
        self.others.values()
    }

    /// The host: the oldest member by (join sequence, id) that is not draining; if every
    /// member drains, the oldest of all (someone must hold host duties).
    pub fn host(&self) -> NodeId {
        let rank = |m: &&MemberInfo| (m.join_seq, m.id);
        let all: Vec<&MemberInfo> = self
            .others
            .values()
            .chain(std::iter::once(&self.me))
            .collect();
        all.iter()
            .copied()
            .filter(|m| {
                matches!(m.state, NodeState::Joining | NodeState::Active) && m.join_seq != UNJOINED
            })
            .min_by_key(rank)
            .or_else(|| all.iter().copied().min_by_key(rank))
            .map_or(self.me.id, |m| m.id)
    }

    /// The sequence a node joining now takes: one past the newest it knows of.
    pub fn next_join_seq(&self) -> u64 {
        self.others
            .values()
            .chain(std::iter::once(&self.me))
            .map(|m| m.join_seq)
            .filter(|s| *s != UNJOINED)
            .max()
            .map_or(0, |s| s + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: u128, seq: u64, state: NodeState) -> MemberInfo {
        MemberInfo {
            id: NodeId(id),
            name: format!("n{id}"),
            addrs: vec![],
            join_seq: seq,
            state,
            fingerprint: [0; 32],
            client_addrs: Vec::new(),
        }
    }

    #[test]
    fn oldest_non_draining_member_is_host_with_id_tie_break() {
        let mut v = Membership::new(m(5, 2, NodeState::Active));
        assert_eq!(v.host(), NodeId(5), "alone, a node is its own host");
        v.upsert(m(9, 1, NodeState::Active));
        v.upsert(m(3, 1, NodeState::Active));
        assert_eq!(v.host(), NodeId(3), "same sequence: lower id wins");
        v.upsert(m(3, 1, NodeState::Draining));
        assert_eq!(v.host(), NodeId(9), "draining members are passed over");
        v.remove(NodeId(9));
        assert_eq!(v.host(), NodeId(5));
        assert_eq!(v.next_join_seq(), 3);
        v.me_mut().state = NodeState::Drained;
        assert_eq!(
            v.host(),
            NodeId(3),
            "everyone draining: the oldest still holds host duties"
        );
    }

    #[test]
    fn unjoined_nodes_are_never_host_and_never_listed_twice() {
        let mut v = Membership::new(m(1, UNJOINED, NodeState::Joining));
        v.upsert(m(2, 0, NodeState::Active));
        assert_eq!(v.host(), NodeId(2));
        assert_eq!(v.next_join_seq(), 1);
        assert!(
            !v.upsert(m(1, 0, NodeState::Active)),
            "own id is not a member twice"
        );
        assert_eq!(v.all().len(), 2);
    }
}
