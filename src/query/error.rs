//! Typed errors for queries: each names the problem (and, for text, where it is).

/// Why a query was refused. The node sends the text of one of these back as
/// [`crate::proto::WireError::InvalidQuery`]; the SDK returns it before anything is sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// The text does not parse.
    #[error("syntax error at byte {at}: expected {expected}, found {found}")]
    Syntax {
        /// Byte offset into the text.
        at: usize,
        /// What the parser wanted there.
        expected: String,
        /// What it found (a short excerpt, or "end of input").
        found: String,
    },
    /// `and`/`or` nested deeper than allowed.
    #[error("query nests {depth} levels deep, the limit is {max}")]
    TooDeep {
        /// How deep it got (where counting stopped).
        depth: usize,
        /// The limit.
        max: usize,
    },
    /// More predicates (comparisons, `in`, `prefix`, `exists`, areas, `and`, `or`) than
    /// allowed.
    #[error("query has {count} terms, the limit is {max}")]
    TooManyTerms {
        /// Terms counted (where counting stopped).
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The filter would cost more comparisons per row than allowed (each term one, each
    /// value of an `in` list one).
    #[error("query costs {cost} comparisons per row, the limit is {max}")]
    TooCostly {
        /// Its cost.
        cost: usize,
        /// The limit.
        max: usize,
    },
    /// Something is longer than its bound.
    #[error("{what} is {len} long, the limit is {max}")]
    TooLong {
        /// What (query text, field name, string value, `in` list, sort list).
        what: String,
        /// Its length (bytes, or items for lists).
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A field name is not usable.
    #[error("invalid field {field:?}: {reason}")]
    InvalidField {
        /// The field as given.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// A number is not usable (not finite, or a negative radius).
    #[error("invalid number in {context}: {reason}")]
    InvalidNumber {
        /// Where.
        context: String,
        /// What is wrong.
        reason: String,
    },
    /// The flat filter form is not one whole filter (an `and`/`or` without enough parts,
    /// or terms left over).
    #[error("malformed filter: {reason}")]
    Malformed {
        /// What is wrong.
        reason: String,
    },
    /// A rectangle's corners are inconsistent (one has `z`, the other not, or `min > max`).
    #[error("invalid area: {reason}")]
    InvalidArea {
        /// What is wrong.
        reason: String,
    },
    /// The cursor does not belong to this query (its sort values do not match the sort).
    #[error("cursor does not fit the query: {reason}")]
    BadCursor {
        /// What is wrong.
        reason: String,
    },
}
