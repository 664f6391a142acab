//! Live queries: a query's current result, then the rows that enter it, change in it and
//! leave it. Built on a key subscription (atomic with its snapshot, exactly once, in
//! per-row version order, across migrations of the watcher and of the rows' owners); the
//! SDK evaluates the query on each change, so every change under the query's keys reaches
//! the watcher, matching or not.

use std::collections::HashMap;

use super::{Event, Subscription};
use crate::proto::{ClientId, DeleteReason, Key, Row};
use crate::query::{parse_object, Compiled, Object};

/// Why a row left a live query's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeftReason {
    /// It changed and no longer matches.
    NoLongerMatches,
    /// It was deleted.
    Deleted(DeleteReason),
}

/// A change to a live query's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryEvent {
    /// A row started to match (created, or changed to match).
    Entered(Row),
    /// A matching row changed and still matches.
    Updated(Row),
    /// A row stopped matching; the row as it is now (a deletion's version and last data).
    Left {
        /// The row.
        row: Row,
        /// Why.
        reason: LeftReason,
    },
}

impl QueryEvent {
    /// The row concerned.
    pub fn row(&self) -> &Row {
        match self {
            QueryEvent::Entered(row) | QueryEvent::Updated(row) | QueryEvent::Left { row, .. } => {
                row
            }
        }
    }
}

/// A query kept up to date; dropping it unsubscribes.
#[derive(Debug)]
pub struct LiveQuery {
    sub: Subscription,
    query: Compiled,
    limit: u32,
    /// Rows matching now.
    matching: HashMap<(Key, ClientId), Row>,
}

impl LiveQuery {
    pub(crate) fn new(sub: Subscription, query: Compiled, limit: u32, snapshot: Vec<Row>) -> Self {
        let mut live = LiveQuery {
            sub,
            query,
            limit,
            matching: HashMap::new(),
        };
        for row in snapshot {
            if live.matches(&row) {
                live.matching.insert((row.key.clone(), row.owner), row);
            }
        }
        live
    }

    fn matches(&self, row: &Row) -> bool {
        self.query.matches(parse_object(&row.data).as_ref())
    }

    /// The next change to the result; `None` once the connection is closed. Changes to
    /// rows that neither match nor matched are passed over.
    pub async fn next(&mut self) -> Option<QueryEvent> {
        loop {
            let event = self.sub.next().await?;
            if let Some(e) = self.apply(event) {
                return Some(e);
            }
        }
    }

    /// A change if one is waiting, without waiting.
    pub fn try_next(&mut self) -> Option<QueryEvent> {
        while let Some(event) = self.sub.try_next() {
            if let Some(e) = self.apply(event) {
                return Some(e);
            }
        }
        None
    }

    fn apply(&mut self, event: Event) -> Option<QueryEvent> {
        match event {
            Event::Updated(row) => {
                let id = (row.key.clone(), row.owner);
                let now = self.matches(&row);
                let was = self.matching.contains_key(&id);
                match (was, now) {
                    (false, false) => None,
                    (false, true) => {
                        self.matching.insert(id, row.clone());
                        Some(QueryEvent::Entered(row))
                    }
                    (true, true) => {
                        self.matching.insert(id, row.clone());
                        Some(QueryEvent::Updated(row))
                    }
                    (true, false) => {
                        self.matching.remove(&id);
                        Some(QueryEvent::Left {
                            row,
                            reason: LeftReason::NoLongerMatches,
                        })
                    }
                }
            }
            Event::Deleted { row, reason } => self
                .matching
                .remove(&(row.key.clone(), row.owner))
                .map(|_| QueryEvent::Left {
                    row,
                    reason: LeftReason::Deleted(reason),
                }),
        }
    }

    /// Every row matching now, in the query's order.
    pub fn all(&self) -> Vec<Row> {
        let mut rows: Vec<(&Row, Option<Object>)> = self
            .matching
            .values()
            .map(|r| (r, parse_object(&r.data)))
            .collect();
        rows.sort_by(|(a, oa), (b, ob)| {
            self.query
                .place(oa.as_ref(), &a.key.primary, a.key.secondary, a.owner)
                .cmp(
                    &self
                        .query
                        .place(ob.as_ref(), &b.key.primary, b.key.secondary, b.owner),
                    &self.query.sort,
                )
        });
        rows.into_iter().map(|(r, _)| r.clone()).collect()
    }

    /// The result as the query asks for it: the first `limit` rows in its order (all of
    /// them with limit 0).
    pub fn current(&self) -> Vec<Row> {
        let mut rows = self.all();
        if self.limit > 0 {
            rows.truncate(self.limit as usize);
        }
        rows
    }

    /// How many rows match now.
    pub fn len(&self) -> usize {
        self.matching.len()
    }

    /// Whether no row matches now.
    pub fn is_empty(&self) -> bool {
        self.matching.is_empty()
    }
}
