//! The SDK's typed builder: the same queries as the text syntax, built in code, compiled to
//! the same wire form.
//!
//! ```
//! use cloudmesh::query::{field, Query};
//! let q = Query::on(["servers".parse().unwrap()])
//!     .filter(field("region").eq("eu").and(field("players").lt(64)))
//!     .sort_by("players")
//!     .limit(20)
//!     .build()
//!     .unwrap();
//! assert_eq!(q.limit, 20);
//! ```

use super::{parse_filter, parse_sort, Compiled, Filter, QueryError};
use crate::proto::{CmpOp, KeySpec, Point, QueryCursor, RowQuery, SortKey, Value};

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

impl From<f64> for Value {
    fn from(n: f64) -> Self {
        Value::Num(n)
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Self {
        Value::Num(n as f64)
    }
}

impl From<i32> for Value {
    fn from(n: i32) -> Self {
        Value::Num(f64::from(n))
    }
}

impl From<u32> for Value {
    fn from(n: u32) -> Self {
        Value::Num(f64::from(n))
    }
}

/// A field of a row's JSON object, to build a predicate on (a dotted path reaches into
/// nested objects).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field(String);

/// The field `name`.
pub fn field(name: impl Into<String>) -> Field {
    Field(name.into())
}

impl Field {
    fn cmp(self, op: CmpOp, v: impl Into<Value>) -> Filter {
        Filter::Cmp(self.0, op, v.into())
    }

    /// `field = v`
    pub fn eq(self, v: impl Into<Value>) -> Filter {
        self.cmp(CmpOp::Eq, v)
    }

    /// `field != v` (the field present, with another value).
    pub fn ne(self, v: impl Into<Value>) -> Filter {
        self.cmp(CmpOp::Ne, v)
    }

    /// `field < v`
    pub fn lt(self, v: impl Into<Value>) -> Filter {
        self.cmp(CmpOp::Lt, v)
    }

    /// `field <= v`
    pub fn le(self, v: impl Into<Value>) -> Filter {
        self.cmp(CmpOp::Le, v)
    }

    /// `field > v`
    pub fn gt(self, v: impl Into<Value>) -> Filter {
        self.cmp(CmpOp::Gt, v)
    }

    /// `field >= v`
    pub fn ge(self, v: impl Into<Value>) -> Filter {
        self.cmp(CmpOp::Ge, v)
    }

    /// `field in (v, ...)`
    pub fn is_in<V: Into<Value>>(self, values: impl IntoIterator<Item = V>) -> Filter {
        Filter::In(self.0, values.into_iter().map(Into::into).collect())
    }

    /// `field prefix "p"`
    pub fn prefix(self, p: impl Into<String>) -> Filter {
        Filter::Prefix(self.0, p.into())
    }

    /// `exists field`
    pub fn exists(self) -> Filter {
        Filter::Exists(self.0)
    }
}

/// Rows whose `x`, `y` (and `z`, when the corners have one) lie in the box `min..=max`.
pub fn within(min: Point, max: Point) -> Filter {
    Filter::Within(min, max)
}

/// Rows whose position lies at most `radius` from `center`.
pub fn near(center: Point, radius: f64) -> Filter {
    Filter::Near(center, radius)
}

/// A query under construction.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    keys: Vec<KeySpec>,
    filter: Filter,
    sort: Vec<SortKey>,
    limit: u32,
    start: Option<QueryCursor>,
}

impl Query {
    /// A query over the rows under `keys` (each one key or a whole primary), matching
    /// every row whose data is a JSON object until filtered.
    pub fn on(keys: impl IntoIterator<Item = KeySpec>) -> Query {
        Query {
            keys: keys.into_iter().collect(),
            filter: Filter::All,
            sort: Vec::new(),
            limit: 0,
            start: None,
        }
    }

    /// Adds a filter (and-ed with any before it).
    pub fn filter(mut self, f: Filter) -> Query {
        self.filter = std::mem::replace(&mut self.filter, Filter::All).and(f);
        self
    }

    /// Adds a filter in the text syntax (and-ed with any before it).
    pub fn where_text(self, text: &str) -> Result<Query, QueryError> {
        Ok(self.filter(parse_filter(text)?))
    }

    /// Then by `field`, lowest first.
    pub fn sort_by(mut self, field: impl Into<String>) -> Query {
        self.sort.push(SortKey {
            field: field.into(),
            descending: false,
        });
        self
    }

    /// Then by `field`, highest first.
    pub fn sort_by_desc(mut self, field: impl Into<String>) -> Query {
        self.sort.push(SortKey {
            field: field.into(),
            descending: true,
        });
        self
    }

    /// Then by a sort list in the text syntax (`players, name desc`).
    pub fn sort_text(mut self, text: &str) -> Result<Query, QueryError> {
        self.sort.extend(parse_sort(text)?);
        Ok(self)
    }

    /// At most `n` rows per page (0: the node's page limits).
    pub fn limit(mut self, n: u32) -> Query {
        self.limit = n;
        self
    }

    /// Continue after this cursor.
    pub fn start(mut self, cursor: Option<QueryCursor>) -> Query {
        self.start = cursor;
        self
    }

    /// The filter so far.
    pub fn filter_tree(&self) -> &Filter {
        &self.filter
    }

    /// The wire form, checked against every bound a node checks.
    pub fn build(&self) -> Result<RowQuery, QueryError> {
        let q = RowQuery {
            keys: self.keys.clone(),
            filter: self.filter.to_terms(),
            sort: self.sort.clone(),
            limit: self.limit,
            start: self.start.clone(),
        };
        Compiled::new(&q)?;
        Ok(q)
    }
}
