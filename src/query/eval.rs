//! Evaluation of a filter over a row's JSON object, and the query's total order.

use std::cmp::Ordering;

use super::Filter;
use crate::proto::{ClientId, CmpOp, Point, SortKey, Value};

/// A row's data as the evaluator sees it.
pub type Object = serde_json::Map<String, serde_json::Value>;

/// A row's data as an object, or `None` when it is not a JSON object (such a row matches
/// no query).
pub fn parse_object(data: &[u8]) -> Option<Object> {
    match serde_json::from_slice::<serde_json::Value>(data) {
        Ok(serde_json::Value::Object(map)) => Some(map),
        _ => None,
    }
}

/// The value at a dotted path.
pub fn lookup<'a>(obj: &'a Object, field: &str) -> Option<&'a serde_json::Value> {
    let mut parts = field.split('.');
    let mut cur = obj.get(parts.next()?)?;
    for part in parts {
        cur = cur.as_object()?.get(part)?;
    }
    Some(cur)
}

fn equals(j: &serde_json::Value, v: &Value) -> bool {
    match (j, v) {
        (serde_json::Value::Null, Value::Null) => true,
        (serde_json::Value::Bool(a), Value::Bool(b)) => a == b,
        (serde_json::Value::Number(a), Value::Num(b)) => a.as_f64() == Some(*b),
        (serde_json::Value::String(a), Value::Str(b)) => a == b,
        _ => false,
    }
}

/// Order of two values of the same comparable type (numbers, strings); `None` otherwise.
fn order(j: &serde_json::Value, v: &Value) -> Option<Ordering> {
    match (j, v) {
        (serde_json::Value::Number(a), Value::Num(b)) => a.as_f64()?.partial_cmp(b),
        (serde_json::Value::String(a), Value::Str(b)) => Some(a.as_str().cmp(b.as_str())),
        _ => None,
    }
}

fn number(obj: &Object, field: &str) -> Option<f64> {
    obj.get(field)?.as_f64()
}

/// The row's position, with `z` when `with_z`.
fn position(obj: &Object, with_z: bool) -> Option<(f64, f64, f64)> {
    let z = if with_z { number(obj, "z")? } else { 0.0 };
    Some((number(obj, "x")?, number(obj, "y")?, z))
}

fn within(obj: &Object, min: &Point, max: &Point) -> bool {
    let Some((x, y, z)) = position(obj, min.z.is_some()) else {
        return false;
    };
    let zin = match (min.z, max.z) {
        (Some(lo), Some(hi)) => lo <= z && z <= hi,
        _ => true,
    };
    min.x <= x && x <= max.x && min.y <= y && y <= max.y && zin
}

fn near(obj: &Object, c: &Point, radius: f64) -> bool {
    let Some((x, y, z)) = position(obj, c.z.is_some()) else {
        return false;
    };
    let dz = c.z.map_or(0.0, |cz| z - cz);
    let (dx, dy) = (x - c.x, y - c.y);
    dx * dx + dy * dy + dz * dz <= radius * radius
}

/// Whether the object matches. `!=` matches a present field with another value (a missing
/// field matches no comparison, `in` or prefix); ordering operators compare numbers with
/// numbers and strings with strings (by bytes) only.
pub fn matches(filter: &Filter, obj: &Object) -> bool {
    match filter {
        Filter::All => true,
        Filter::And(parts) => parts.iter().all(|p| matches(p, obj)),
        Filter::Or(parts) => parts.iter().any(|p| matches(p, obj)),
        Filter::Cmp(field, op, value) => {
            let Some(j) = lookup(obj, field) else {
                return false;
            };
            match op {
                CmpOp::Eq => equals(j, value),
                CmpOp::Ne => !equals(j, value),
                CmpOp::Lt => order(j, value) == Some(Ordering::Less),
                CmpOp::Le => matches!(order(j, value), Some(Ordering::Less | Ordering::Equal)),
                CmpOp::Gt => order(j, value) == Some(Ordering::Greater),
                CmpOp::Ge => matches!(order(j, value), Some(Ordering::Greater | Ordering::Equal)),
            }
        }
        Filter::In(field, values) => {
            lookup(obj, field).is_some_and(|j| values.iter().any(|v| equals(j, v)))
        }
        Filter::Prefix(field, prefix) => lookup(obj, field)
            .and_then(serde_json::Value::as_str)
            .is_some_and(|s| s.starts_with(prefix.as_str())),
        Filter::Exists(field) => lookup(obj, field).is_some(),
        Filter::Within(min, max) => within(obj, min, max),
        Filter::Near(center, radius) => near(obj, center, *radius),
    }
}

/// A sort field's value in a row: scalars only (a missing field, an array or an object is
/// `None`, and sorts after every value in either direction).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SortVal<'a> {
    /// `null`.
    Null,
    /// A boolean.
    Bool(bool),
    /// A number.
    Num(f64),
    /// A string.
    Str(&'a str),
}

impl<'a> SortVal<'a> {
    /// The sort value of a JSON value.
    pub fn of_json(j: &'a serde_json::Value) -> Option<Self> {
        match j {
            serde_json::Value::Null => Some(SortVal::Null),
            serde_json::Value::Bool(b) => Some(SortVal::Bool(*b)),
            serde_json::Value::Number(n) => n.as_f64().map(SortVal::Num),
            serde_json::Value::String(s) => Some(SortVal::Str(s)),
            _ => None,
        }
    }

    /// The sort value a cursor carries.
    pub fn of_value(v: &'a Value) -> Self {
        match v {
            Value::Null => SortVal::Null,
            Value::Bool(b) => SortVal::Bool(*b),
            Value::Num(n) => SortVal::Num(*n),
            Value::Str(s) => SortVal::Str(s),
        }
    }

    /// As a cursor value.
    pub fn to_value(self) -> Value {
        match self {
            SortVal::Null => Value::Null,
            SortVal::Bool(b) => Value::Bool(b),
            SortVal::Num(n) => Value::Num(n),
            SortVal::Str(s) => Value::Str(s.to_owned()),
        }
    }

    fn rank(&self) -> u8 {
        match self {
            SortVal::Null => 0,
            SortVal::Bool(_) => 1,
            SortVal::Num(_) => 2,
            SortVal::Str(_) => 3,
        }
    }

    /// Total order: null < booleans < numbers < strings; within a type, the natural one.
    pub fn total_cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (SortVal::Bool(a), SortVal::Bool(b)) => a.cmp(b),
            (SortVal::Num(a), SortVal::Num(b)) => a.total_cmp(b),
            (SortVal::Str(a), SortVal::Str(b)) => a.cmp(b),
            (a, b) => a.rank().cmp(&b.rank()),
        }
    }
}

/// A row's values of the sort fields (all `None` when its data is not an object).
pub fn sort_values<'a>(sort: &[SortKey], obj: Option<&'a Object>) -> Vec<Option<SortVal<'a>>> {
    sort.iter()
        .map(|k| {
            obj.and_then(|o| lookup(o, &k.field))
                .and_then(SortVal::of_json)
        })
        .collect()
}

/// Compares two rows' sort values under `sort` (missing values last in both directions).
pub fn cmp_values(
    sort: &[SortKey],
    a: &[Option<SortVal<'_>>],
    b: &[Option<SortVal<'_>>],
) -> Ordering {
    for (i, key) in sort.iter().enumerate() {
        let (x, y) = (a.get(i).copied().flatten(), b.get(i).copied().flatten());
        let o = match (x, y) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (Some(x), Some(y)) => {
                let o = x.total_cmp(&y);
                if key.descending {
                    o.reverse()
                } else {
                    o
                }
            }
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

/// A row's place in the query's total order: sort values, then key, then owner.
#[derive(Debug, Clone)]
pub struct Place<'a> {
    /// Values of the sort fields.
    pub values: Vec<Option<SortVal<'a>>>,
    /// Primary key.
    pub primary: &'a str,
    /// Secondary key.
    pub secondary: u32,
    /// Owner.
    pub owner: ClientId,
}

impl Place<'_> {
    /// The total order of the query with `sort`.
    pub fn cmp(&self, other: &Place<'_>, sort: &[SortKey]) -> Ordering {
        cmp_values(sort, &self.values, &other.values)
            .then_with(|| self.primary.cmp(other.primary))
            .then_with(|| self.secondary.cmp(&other.secondary))
            .then_with(|| self.owner.cmp(&other.owner))
    }
}
