//! The wire form of a query over row contents: which rows (key specs), which of them (a
//! filter over the fields of rows whose data is a JSON object), in which order, how many,
//! from where. The text syntax and the SDK's builder both compile to this; the node checks
//! it (bounds, well-formedness) before it looks at a row.

use serde::{Deserialize, Serialize};

use super::{ClientId, Key, KeySpec, NodeId, Row};

/// A scalar a field is compared with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    /// JSON `null`.
    Null,
    /// JSON `true`/`false`.
    Bool(bool),
    /// A JSON number (finite).
    Num(f64),
    /// A JSON string.
    Str(String),
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CmpOp {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl CmpOp {
    /// The operator as written in the text syntax.
    pub fn as_str(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
}

/// A point of the game world, for area-of-interest filters over a row's `x`, `y` (and
/// optionally `z`) fields.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// The row's `x`.
    pub x: f64,
    /// The row's `y`.
    pub y: f64,
    /// The row's `z`; `None` leaves `z` out (2-D).
    pub z: Option<f64>,
}

/// One term of a filter, in prefix order: `And(n)` and `Or(n)` combine the `n` whole
/// filters that follow them. The wire form is this flat list, not a tree, so decoding a
/// filter never recurses however deep an attacker nests it; the node rebuilds the tree
/// after checking the nesting depth. A field is a name, or a dotted path into nested
/// objects (`stats.kills`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Term {
    /// The next `n` filters all match.
    And(u32),
    /// At least one of the next `n` filters matches.
    Or(u32),
    /// The field compares so with `value` (values of different types are never equal, and
    /// only numbers with numbers and strings with strings are ordered).
    Cmp {
        /// The field.
        field: String,
        /// How.
        op: CmpOp,
        /// With what.
        value: Value,
    },
    /// The field equals one of `values`.
    In {
        /// The field.
        field: String,
        /// The candidates.
        values: Vec<Value>,
    },
    /// The field is a string starting with `prefix`.
    Prefix {
        /// The field.
        field: String,
        /// The prefix.
        prefix: String,
    },
    /// The field is present (with any value, `null` included).
    Exists {
        /// The field.
        field: String,
    },
    /// The row's position (numbers `x`, `y`, and `z` when the corners have one) lies in the
    /// box between `min` and `max`, bounds included.
    Within {
        /// Lowest corner.
        min: Point,
        /// Highest corner.
        max: Point,
    },
    /// The row's position lies at most `radius` from `center` (3-D when `center.z` is set).
    Near {
        /// The centre.
        center: Point,
        /// The distance, in world units.
        radius: f64,
    },
}

/// One sort field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SortKey {
    /// The field.
    pub field: String,
    /// Highest first.
    pub descending: bool,
}

/// Where a page of a query ended: the sort values and identity of its last row. Rows
/// missing a sort field (or with a non-scalar value there) carry `None` in its place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryCursor {
    /// The last row's values of the sort fields, in sort order.
    pub sort: Vec<Option<Value>>,
    /// Its key.
    pub key: Key,
    /// Its owner.
    pub owner: ClientId,
}

/// A query over the contents of rows, answered mesh-wide.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowQuery {
    /// The rows to look at, as for a get (one key or a whole primary each).
    pub keys: Vec<KeySpec>,
    /// Which of them match, in prefix order (see [`Term`]); empty matches every row whose
    /// data is a JSON object.
    pub filter: Vec<Term>,
    /// Order of the result; rows equal on every sort field (or with no sort) go in
    /// `(key, owner)` order, so the order is total and pages never repeat or skip a row.
    pub sort: Vec<SortKey>,
    /// At most this many rows per page; 0 means as many as the node's page limits allow.
    pub limit: u32,
    /// Continue after this row (from [`QueryPage::next`]).
    pub start: Option<QueryCursor>,
}

/// One page of a query's result.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct QueryPage {
    /// Matching rows in the query's order.
    pub rows: Vec<Row>,
    /// `Some` when more rows may match: pass it as [`RowQuery::start`] to continue.
    pub next: Option<QueryCursor>,
    /// Nodes that did not answer in time (or could not); their rows are missing.
    pub incomplete: Vec<NodeId>,
}
