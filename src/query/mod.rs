//! Queries over row contents: the text syntax, the SDK's builder, the checks every query
//! passes before use, evaluation over a row's JSON object, the query's total order, and the
//! merge of several nodes' answers into one page. Pure: no IO, no clock, no lock.
//!
//! A query names key specs (like a get), a filter over the fields of rows whose data is a
//! JSON object, an order (sort fields, then `(key, owner)`, so the order is total), a page
//! size, and a cursor. Every node evaluates it over its own rows and returns its first
//! matches after the cursor; the asking node merges them in the global order.
//!
//! Cost is bounded before any row is looked at: nesting depth, term count, string, list
//! and text sizes ([`filter`]'s constants), and the node's own scan and page limits.

mod builder;
mod error;
pub mod eval;
pub mod filter;
mod merge;
mod parse;

pub use builder::{field, near, within, Field, Query};
pub use error::QueryError;
pub use eval::{matches, parse_object, Object, Place, SortVal};
pub use filter::Filter;
pub use merge::merge;
pub use parse::{parse_filter, parse_near, parse_sort};

use crate::proto::{ClientId, QueryCursor, RowQuery, SortKey};

/// A query checked and ready to evaluate.
#[derive(Debug, Clone, PartialEq)]
pub struct Compiled {
    /// The filter as a tree.
    pub filter: Filter,
    /// The sort fields.
    pub sort: Vec<SortKey>,
    /// Where the previous page ended.
    pub start: Option<QueryCursor>,
}

impl Compiled {
    /// Checks a query from the wire (or the builder): the filter, the sort list and the
    /// cursor's shape. Key specs are the store's to check.
    pub fn new(query: &RowQuery) -> Result<Compiled, QueryError> {
        let filter = Filter::from_terms(&query.filter)?;
        if query.sort.len() > filter::MAX_SORT {
            return Err(QueryError::TooLong {
                what: "the sort list".into(),
                len: query.sort.len(),
                max: filter::MAX_SORT,
            });
        }
        for key in &query.sort {
            filter::check_field(&key.field)?;
        }
        if let Some(c) = &query.start {
            if c.sort.len() != query.sort.len() {
                return Err(QueryError::BadCursor {
                    reason: format!(
                        "it has {} sort values, the query sorts by {} fields",
                        c.sort.len(),
                        query.sort.len()
                    ),
                });
            }
            for v in c.sort.iter().flatten() {
                filter::check_value(v, "the cursor")?;
            }
        }
        Ok(Compiled {
            filter,
            sort: query.sort.clone(),
            start: query.start.clone(),
        })
    }

    /// Whether a row with this data matches (data that is not a JSON object never does).
    pub fn matches(&self, obj: Option<&Object>) -> bool {
        obj.is_some_and(|o| matches(&self.filter, o))
    }

    /// The row's place in this query's order.
    pub fn place<'a>(
        &self,
        obj: Option<&'a Object>,
        primary: &'a str,
        secondary: u32,
        owner: ClientId,
    ) -> Place<'a> {
        Place {
            values: eval::sort_values(&self.sort, obj),
            primary,
            secondary,
            owner,
        }
    }

    /// The cursor's place, when the query has one.
    pub fn start_place(&self) -> Option<Place<'_>> {
        self.start.as_ref().map(|c| Place {
            values: c
                .sort
                .iter()
                .map(|v| v.as_ref().map(SortVal::of_value))
                .collect(),
            primary: &c.key.primary,
            secondary: c.key.secondary,
            owner: c.owner,
        })
    }

    /// Whether a row at `place` comes after the cursor (always, without one).
    pub fn after_start(&self, place: &Place<'_>) -> bool {
        self.start_place()
            .is_none_or(|s| place.cmp(&s, &self.sort) == std::cmp::Ordering::Greater)
    }
}

/// The cursor that continues after a row at `place`.
pub fn cursor_at(place: &Place<'_>) -> QueryCursor {
    QueryCursor {
        sort: place
            .values
            .iter()
            .map(|v| v.map(SortVal::to_value))
            .collect(),
        key: crate::proto::Key::new(place.primary, place.secondary),
        owner: place.owner,
    }
}

#[cfg(test)]
mod tests;
