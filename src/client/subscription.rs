//! Subscriptions: local routing of notifications, snapshot merge and de-duplication.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::Weak;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::{lock, Inner};
use crate::proto::{
    encode_to_bytes, ClientFrame, ClientId, DeleteReason, Key, KeySpec, Notification, Request, Row,
};

/// How long a subscription remembers a deleted row's version (longer than any migration).
const TOMBSTONE_TTL: Duration = Duration::from_secs(60);

/// A change seen by a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A row was created or replaced.
    Updated(Row),
    /// A row was deleted (its version is the deletion's).
    Deleted {
        /// The row as it was.
        row: Row,
        /// Why it went.
        reason: DeleteReason,
    },
}

impl Event {
    /// The row concerned.
    pub fn row(&self) -> &Row {
        match self {
            Event::Updated(row) | Event::Deleted { row, .. } => row,
        }
    }
}

/// The SDK's side of one subscription.
#[derive(Debug)]
pub(crate) struct SubEntry {
    /// Key specs subscribed.
    pub(crate) specs: Vec<KeySpec>,
    /// Owners filter.
    owners: Option<HashSet<ClientId>>,
    /// Where events go.
    tx: mpsc::UnboundedSender<Event>,
    /// Highest version delivered (or in the snapshot) per row, to drop anything not newer.
    /// A deletion's version stays as a tombstone (with when it came), so a copy of an older
    /// change arriving later — during a migration both nodes deliver for a moment — is
    /// still recognised; tombstones are forgotten after [`TOMBSTONE_TTL`].
    seen: HashMap<(Key, ClientId), (u64, Option<Instant>)>,
    /// Events since tombstones were last pruned.
    since_prune: u32,
    /// Until the snapshot is in, notifications wait here.
    buffered: Option<Vec<Notification>>,
}

impl SubEntry {
    pub(crate) fn new(
        specs: Vec<KeySpec>,
        owners: Option<Vec<ClientId>>,
    ) -> (Self, mpsc::UnboundedReceiver<Event>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            SubEntry {
                specs,
                owners: owners.map(|o| o.into_iter().collect()),
                tx,
                seen: HashMap::new(),
                since_prune: 0,
                buffered: Some(Vec::new()),
            },
            rx,
        )
    }

    fn wants(&self, row: &Row) -> bool {
        self.specs.iter().any(|s| s.matches(&row.key))
            && self.owners.as_ref().is_none_or(|o| o.contains(&row.owner))
    }

    /// Takes a notification from the node.
    pub(crate) fn offer(&mut self, n: &Notification) {
        if !self.wants(n.row()) {
            return;
        }
        match &mut self.buffered {
            Some(buf) => buf.push(n.clone()),
            None => self.forward(n),
        }
    }

    fn forward(&mut self, n: &Notification) {
        let row = n.row();
        let id = (row.key.clone(), row.owner);
        let known = self.seen.get_mut(&id);
        if known.as_ref().is_some_and(|(v, _)| *v >= row.version) {
            return;
        }
        let event = match n {
            Notification::Updated(row) => {
                // One lookup for the check and the update of a row seen before (the
                // usual case): changed in place.
                match known {
                    Some(seen) => *seen = (row.version, None),
                    None => {
                        self.seen.insert(id, (row.version, None));
                    }
                }
                Event::Updated(row.clone())
            }
            Notification::Deleted { row, reason } => {
                if matches!(reason, DeleteReason::NodeLost | DeleteReason::NodeLeft) {
                    // Not the owner's act: the node answering stopped seeing the row's node
                    // and gave the deletion the next version itself. The row comes back
                    // with its own version when that node is reachable again (a healed
                    // partition) or from the node its client moved to, and must then be
                    // shown again, not taken for an older copy.
                    self.seen.remove(&id);
                } else {
                    self.seen.insert(id, (row.version, Some(Instant::now())));
                }
                Event::Deleted {
                    row: row.clone(),
                    reason: *reason,
                }
            }
        };
        self.since_prune += 1;
        if self.since_prune >= 1024 {
            self.since_prune = 0;
            self.seen
                .retain(|_, (_, dead)| dead.is_none_or(|t| t.elapsed() < TOMBSTONE_TTL));
        }
        let _ = self.tx.send(event);
    }

    /// The owners filter as a query takes it.
    pub(crate) fn owner_list(&self) -> Option<Vec<ClientId>> {
        self.owners.as_ref().map(|o| {
            let mut v: Vec<ClientId> = o.iter().copied().collect();
            v.sort();
            v
        })
    }

    /// Rows this subscription holds as live now, with their versions.
    pub(crate) fn live_versions(&self) -> HashMap<(Key, ClientId), u64> {
        self.seen
            .iter()
            .filter(|(_, (_, dead))| dead.is_none())
            .map(|(id, (v, _))| (id.clone(), *v))
            .collect()
    }

    /// A fresh snapshot after a lost connection: newer rows are delivered as updates
    /// (older ones are dropped by version, as always); a row live in `before` (taken when
    /// the snapshot was asked for), absent from the snapshot and unchanged since was
    /// deleted while its deletion could not reach us: it is reported deleted with
    /// `reason`, the version after the last one seen, and no data.
    pub(crate) fn resync(
        &mut self,
        snapshot: &[Row],
        before: &HashMap<(Key, ClientId), u64>,
        lost_node: Option<crate::proto::NodeId>,
        reason: DeleteReason,
    ) {
        if self.buffered.is_some() {
            // Not activated yet: its own snapshot is still coming.
            return;
        }
        let present: HashSet<(Key, ClientId)> =
            snapshot.iter().map(|r| (r.key.clone(), r.owner)).collect();
        for row in snapshot {
            self.forward(&Notification::Updated(row.clone()));
        }
        for (id, v) in before {
            if present.contains(id) || !self.wants_key(&id.0, id.1) {
                continue;
            }
            if self.seen.get(id) != Some(&(*v, None)) {
                continue;
            }
            let row = Row {
                key: id.0.clone(),
                owner: id.1,
                node: lost_node.unwrap_or(crate::proto::NodeId(0)),
                data: bytes::Bytes::new(),
                version: v + 1,
                updated_at_ms: 0,
            };
            self.forward(&Notification::Deleted { row, reason });
        }
    }

    fn wants_key(&self, key: &Key, owner: ClientId) -> bool {
        self.specs.iter().any(|s| s.matches(key))
            && self.owners.as_ref().is_none_or(|o| o.contains(&owner))
    }

    /// The snapshot is in: drop buffered changes it already contains, deliver the rest.
    pub(crate) fn activate(&mut self, snapshot: &[Row]) {
        for row in snapshot {
            let id = (row.key.clone(), row.owner);
            let v = self.seen.entry(id).or_insert((0, None));
            if row.version > v.0 {
                *v = (row.version, None);
            }
        }
        for n in self.buffered.take().unwrap_or_default() {
            self.forward(&n);
        }
    }
}

/// A stream of changes; dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    id: u64,
    rx: mpsc::UnboundedReceiver<Event>,
    client: Weak<Inner>,
}

impl Subscription {
    pub(crate) fn new(id: u64, rx: mpsc::UnboundedReceiver<Event>, client: Weak<Inner>) -> Self {
        Subscription { id, rx, client }
    }

    /// The next change; `None` once the connection is closed.
    pub async fn next(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// A change if one is waiting, without waiting.
    pub fn try_next(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
    }
}

impl futures_core::Stream for Subscription {
    type Item = Event;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let Some(inner) = self.client.upgrade() else {
            return;
        };
        let mut st = lock(&inner.ctx.state);
        let unused: Vec<KeySpec> = {
            let Some(entry) = st.subs.remove(&self.id) else {
                return;
            };
            // Keep node-side subscriptions another local subscription still relies on.
            entry
                .specs
                .into_iter()
                .filter(|s| !st.subs.values().any(|e| e.specs.contains(s)))
                .collect()
        };
        if unused.is_empty() {
            return;
        }
        // Fire and forget: id 0 is never awaited, so its response is ignored.
        let op = Request::Unsubscribe {
            keys: unused,
            owners: None,
        };
        if let Ok(frame) = encode_to_bytes(&ClientFrame::Request { id: 0, op }, inner.max_frame) {
            super::link::push_frame(&mut st, frame);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::NodeId;
    use bytes::Bytes;

    fn row(version: u64) -> Row {
        Row {
            key: Key::new("players", 3),
            owner: ClientId(7),
            node: NodeId(1),
            data: Bytes::from_static(b"p3"),
            version,
            updated_at_ms: 0,
        }
    }

    fn entry() -> (SubEntry, mpsc::UnboundedReceiver<Event>) {
        let (mut e, rx) = SubEntry::new(vec![KeySpec::primary("players")], None);
        e.activate(&[row(3)]);
        (e, rx)
    }

    #[test]
    fn a_row_deleted_because_its_node_was_lost_comes_back_with_its_own_version() {
        for reason in [DeleteReason::NodeLost, DeleteReason::NodeLeft] {
            let (mut e, mut rx) = entry();
            e.offer(&Notification::Deleted {
                row: row(4),
                reason,
            });
            e.offer(&Notification::Updated(row(3)));
            assert!(matches!(rx.try_recv(), Ok(Event::Deleted { .. })));
            assert_eq!(
                rx.try_recv().ok(),
                Some(Event::Updated(row(3))),
                "{reason:?}"
            );
            e.offer(&Notification::Updated(row(3)));
            assert!(rx.try_recv().is_err(), "and only once");
        }
    }

    #[test]
    fn an_owners_deletion_still_hides_older_copies() {
        let (mut e, mut rx) = entry();
        e.offer(&Notification::Deleted {
            row: row(4),
            reason: DeleteReason::Released,
        });
        e.offer(&Notification::Updated(row(3)));
        assert!(matches!(rx.try_recv(), Ok(Event::Deleted { .. })));
        assert!(rx.try_recv().is_err(), "an older copy is not shown");
    }
}
