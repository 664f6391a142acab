//! The member view: foca's notifications turned into the view, the node's events, and
//! introductions to new members.

use foca::OwnedNotification;

use super::identity::{Identity, Lifecycle};
use super::runtime::Destination;
use super::{wire, Event, Swim, SwimError};

impl Swim {
    /// Applies one of foca's notifications to the view.
    pub(super) fn on_notification(
        &mut self,
        note: OwnedNotification<Identity>,
    ) -> Result<(), SwimError> {
        match note {
            OwnedNotification::MemberUp(id) => self.member_up(&id),
            OwnedNotification::MemberDown(id) => self.member_gone(&id),
            OwnedNotification::Rename(_, new) => {
                // Both alive: the member changed (state, or a renewal). Old one down: a
                // MemberUp follows if the new one is alive; nothing to do before.
                if self.view.others().any(|m| m.id == new.id) {
                    self.member_up(&new);
                }
            }
            OwnedNotification::Active => {}
            OwnedNotification::Idle => self.events.push_back(Event::Isolated),
            OwnedNotification::Defunct => self.events.push_back(Event::Defunct),
            OwnedNotification::Rejoin(id) => {
                self.events.push_back(Event::Renewed {
                    generation: id.generation,
                });
                self.reconnect()?;
            }
        }
        Ok(())
    }

    fn member_up(&mut self, id: &Identity) {
        let Some(info) = id.info() else {
            // A member that left: its last messages still name it alive.
            self.member_gone(id);
            return;
        };
        match self.view.get(info.id).cloned() {
            None => {
                self.view.upsert(info.clone());
                self.events.push_back(Event::MemberUp(info));
                self.introduce(id);
            }
            Some(before) if before != info => {
                self.view.upsert(info.clone());
                self.events.push_back(Event::MemberChanged {
                    before,
                    after: info,
                });
            }
            Some(_) => {}
        }
    }

    /// Introduces this node to a member it just learned of. The news of a member spreads
    /// through the mesh in well under a second, but that member learns of the others only
    /// from feeds (about eight members each) and from their probes (each member probes each
    /// other once per round of the whole mesh): a joiner of a 64-member mesh would take most
    /// of a minute to see everyone. One datagram from each member that learns of it brings
    /// that down to the spread time.
    fn introduce(&mut self, to: &Identity) {
        let Ok(packet) = wire::introduction(self.foca.identity(), to) else {
            return;
        };
        self.out.send(
            Destination::Member {
                id: to.id,
                addrs: to.addrs.clone(),
            },
            wire::frame(wire::KIND_FOCA, &packet),
        );
    }

    fn member_gone(&mut self, id: &Identity) {
        if let Some(info) = self.view.remove(id.id) {
            self.events.push_back(if id.state == Lifecycle::Left {
                Event::MemberLeft(info)
            } else {
                Event::MemberDown(info)
            });
        }
    }
}
