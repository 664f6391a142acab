//! The filter as a tree (what the parser and the builder produce and the evaluator walks),
//! its flat wire form, and the bounds every filter is checked against before use.

use std::fmt;

use super::QueryError;
use crate::proto::{CmpOp, Point, Term, Value};

/// Deepest nesting of `and`/`or`.
pub const MAX_DEPTH: usize = 16;
/// Most terms (predicates plus `and`/`or` nodes) in one filter.
pub const MAX_TERMS: usize = 128;
/// Longest field name (path), bytes.
pub const MAX_FIELD: usize = 128;
/// Most segments of a dotted field path.
pub const MAX_PATH_SEGMENTS: usize = 8;
/// Longest string value or prefix, bytes.
pub const MAX_STRING: usize = 1024;
/// Most values in one `in` list.
pub const MAX_IN: usize = 256;
/// Most comparisons one row may cost: every term counts one, an `in` list one per value.
/// Bounds the work a query does per row under the node's lock, whatever its shape (128
/// terms of 256-value lists would otherwise be 32,768 comparisons per row).
pub const MAX_COST: usize = 512;
/// Most sort fields.
pub const MAX_SORT: usize = 4;
/// Longest query text, bytes.
pub const MAX_TEXT: usize = 16 * 1024;

/// Which rows match, as a tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// Every row whose data is a JSON object.
    All,
    /// Every part matches.
    And(Vec<Filter>),
    /// At least one part matches.
    Or(Vec<Filter>),
    /// The field compares so with the value.
    Cmp(String, CmpOp, Value),
    /// The field equals one of the values.
    In(String, Vec<Value>),
    /// The field is a string starting with the prefix.
    Prefix(String, String),
    /// The field is present.
    Exists(String),
    /// The position (`x`, `y`[, `z`]) lies in the box `min..=max`.
    Within(Point, Point),
    /// The position lies at most `radius` from the centre.
    Near(Point, f64),
}

impl Filter {
    /// Both must match (flattens nested `and`s).
    pub fn and(self, other: Filter) -> Filter {
        match (self, other) {
            (Filter::All, f) | (f, Filter::All) => f,
            (Filter::And(mut a), Filter::And(b)) => {
                a.extend(b);
                Filter::And(a)
            }
            (Filter::And(mut a), f) => {
                a.push(f);
                Filter::And(a)
            }
            (f, Filter::And(mut b)) => {
                b.insert(0, f);
                Filter::And(b)
            }
            (a, b) => Filter::And(vec![a, b]),
        }
    }

    /// Either may match (flattens nested `or`s).
    pub fn or(self, other: Filter) -> Filter {
        match (self, other) {
            (Filter::All, _) | (_, Filter::All) => Filter::All,
            (Filter::Or(mut a), Filter::Or(b)) => {
                a.extend(b);
                Filter::Or(a)
            }
            (Filter::Or(mut a), f) => {
                a.push(f);
                Filter::Or(a)
            }
            (f, Filter::Or(mut b)) => {
                b.insert(0, f);
                Filter::Or(b)
            }
            (a, b) => Filter::Or(vec![a, b]),
        }
    }

    /// The flat wire form (prefix order). `All` is the empty list.
    pub fn to_terms(&self) -> Vec<Term> {
        let mut out = Vec::new();
        if *self != Filter::All {
            self.push_terms(&mut out);
        }
        out
    }

    fn push_terms(&self, out: &mut Vec<Term>) {
        match self {
            // `All` inside a tree: an `and` of nothing. Only the builder can make one and
            // it never does; kept total so the conversion cannot panic.
            Filter::All => out.push(Term::And(0)),
            Filter::And(parts) | Filter::Or(parts) => {
                let n = u32::try_from(parts.len()).unwrap_or(u32::MAX);
                out.push(if matches!(self, Filter::And(_)) {
                    Term::And(n)
                } else {
                    Term::Or(n)
                });
                for p in parts {
                    p.push_terms(out);
                }
            }
            Filter::Cmp(field, op, value) => out.push(Term::Cmp {
                field: field.clone(),
                op: *op,
                value: value.clone(),
            }),
            Filter::In(field, values) => out.push(Term::In {
                field: field.clone(),
                values: values.clone(),
            }),
            Filter::Prefix(field, prefix) => out.push(Term::Prefix {
                field: field.clone(),
                prefix: prefix.clone(),
            }),
            Filter::Exists(field) => out.push(Term::Exists {
                field: field.clone(),
            }),
            Filter::Within(min, max) => out.push(Term::Within {
                min: *min,
                max: *max,
            }),
            Filter::Near(center, radius) => out.push(Term::Near {
                center: *center,
                radius: *radius,
            }),
        }
    }

    /// Rebuilds and checks a filter from its wire form: one whole filter, within every
    /// bound of this module. Never recurses deeper than [`MAX_DEPTH`].
    pub fn from_terms(terms: &[Term]) -> Result<Filter, QueryError> {
        if terms.is_empty() {
            return Ok(Filter::All);
        }
        if terms.len() > MAX_TERMS {
            return Err(QueryError::TooManyTerms {
                count: terms.len(),
                max: MAX_TERMS,
            });
        }
        let cost: usize = terms
            .iter()
            .map(|t| match t {
                Term::In { values, .. } => values.len().max(1),
                _ => 1,
            })
            .sum();
        if cost > MAX_COST {
            return Err(QueryError::TooCostly {
                cost,
                max: MAX_COST,
            });
        }
        let mut pos = 0;
        let filter = build(terms, &mut pos, 1)?;
        if pos != terms.len() {
            return Err(QueryError::Malformed {
                reason: format!(
                    "{} terms left over after one whole filter",
                    terms.len() - pos
                ),
            });
        }
        Ok(filter)
    }

    /// Checks a tree against the bounds (what [`Filter::from_terms`] enforces), for
    /// filters built in code.
    pub fn check(&self) -> Result<(), QueryError> {
        Filter::from_terms(&self.to_terms()).map(|_| ())
    }
}

fn build(terms: &[Term], pos: &mut usize, depth: usize) -> Result<Filter, QueryError> {
    let Some(term) = terms.get(*pos) else {
        return Err(QueryError::Malformed {
            reason: "an and/or has fewer parts than it says".into(),
        });
    };
    *pos += 1;
    Ok(match term {
        Term::And(n) | Term::Or(n) => {
            if depth > MAX_DEPTH {
                return Err(QueryError::TooDeep {
                    depth,
                    max: MAX_DEPTH,
                });
            }
            let n = *n as usize;
            if n == 0 {
                return Err(QueryError::Malformed {
                    reason: "an and/or of no parts".into(),
                });
            }
            // Each part is at least one term: a count past what is left cannot be whole.
            if n > terms.len() - *pos {
                return Err(QueryError::Malformed {
                    reason: format!(
                        "an and/or says {n} parts, only {} terms follow",
                        terms.len() - *pos
                    ),
                });
            }
            let mut parts = Vec::with_capacity(n);
            for _ in 0..n {
                parts.push(build(terms, pos, depth + 1)?);
            }
            if matches!(term, Term::And(_)) {
                Filter::And(parts)
            } else {
                Filter::Or(parts)
            }
        }
        Term::Cmp { field, op, value } => {
            check_field(field)?;
            check_value(value, "a comparison")?;
            Filter::Cmp(field.clone(), *op, value.clone())
        }
        Term::In { field, values } => {
            check_field(field)?;
            if values.len() > MAX_IN {
                return Err(QueryError::TooLong {
                    what: format!("the in list of {field:?}"),
                    len: values.len(),
                    max: MAX_IN,
                });
            }
            if values.is_empty() {
                return Err(QueryError::Malformed {
                    reason: format!("the in list of {field:?} is empty"),
                });
            }
            for v in values {
                check_value(v, "an in list")?;
            }
            Filter::In(field.clone(), values.clone())
        }
        Term::Prefix { field, prefix } => {
            check_field(field)?;
            check_string(prefix, "a prefix")?;
            Filter::Prefix(field.clone(), prefix.clone())
        }
        Term::Exists { field } => {
            check_field(field)?;
            Filter::Exists(field.clone())
        }
        Term::Within { min, max } => {
            check_point(min, "within")?;
            check_point(max, "within")?;
            if min.z.is_some() != max.z.is_some() {
                return Err(QueryError::InvalidArea {
                    reason: "one corner has z, the other not".into(),
                });
            }
            let lower =
                min.x <= max.x && min.y <= max.y && min.z.zip(max.z).is_none_or(|(a, b)| a <= b);
            if !lower {
                return Err(QueryError::InvalidArea {
                    reason: "the first corner must be the lowest on every axis".into(),
                });
            }
            Filter::Within(*min, *max)
        }
        Term::Near { center, radius } => {
            check_point(center, "near")?;
            if !radius.is_finite() || *radius < 0.0 {
                return Err(QueryError::InvalidNumber {
                    context: "near".into(),
                    reason: format!("the radius must be finite and not negative, got {radius}"),
                });
            }
            Filter::Near(*center, *radius)
        }
    })
}

/// A field is a dotted path of non-empty segments, within the length bounds.
pub(crate) fn check_field(field: &str) -> Result<(), QueryError> {
    let bad = |reason: &str| QueryError::InvalidField {
        field: field.chars().take(40).collect(),
        reason: reason.into(),
    };
    if field.len() > MAX_FIELD {
        return Err(QueryError::TooLong {
            what: "a field name".into(),
            len: field.len(),
            max: MAX_FIELD,
        });
    }
    if field.is_empty() {
        return Err(bad("empty"));
    }
    if field.split('.').any(str::is_empty) {
        return Err(bad("a path segment is empty"));
    }
    if field.split('.').count() > MAX_PATH_SEGMENTS {
        return Err(bad(&format!("more than {MAX_PATH_SEGMENTS} path segments")));
    }
    if field.contains('`') || field.chars().any(char::is_control) {
        return Err(bad("backticks and control characters are not allowed"));
    }
    Ok(())
}

fn check_string(s: &str, what: &str) -> Result<(), QueryError> {
    if s.len() > MAX_STRING {
        return Err(QueryError::TooLong {
            what: what.into(),
            len: s.len(),
            max: MAX_STRING,
        });
    }
    Ok(())
}

pub(crate) fn check_value(v: &Value, context: &str) -> Result<(), QueryError> {
    match v {
        Value::Num(n) if !n.is_finite() => Err(QueryError::InvalidNumber {
            context: context.into(),
            reason: format!("{n} is not finite"),
        }),
        Value::Str(s) => check_string(s, &format!("a string in {context}")),
        _ => Ok(()),
    }
}

fn check_point(p: &Point, context: &str) -> Result<(), QueryError> {
    let all = [Some(p.x), Some(p.y), p.z];
    if all.iter().flatten().all(|n| n.is_finite()) {
        Ok(())
    } else {
        Err(QueryError::InvalidNumber {
            context: context.into(),
            reason: "coordinates must be finite".into(),
        })
    }
}

/// A field as the text syntax writes it: bare when it is a plain dotted identifier that
/// is no keyword, else in backticks.
pub(crate) fn fmt_field(field: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let plain = field.split('.').all(|seg| {
        let mut chars = seg.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !super::parse::is_keyword(seg)
    });
    if plain {
        f.write_str(field)
    } else {
        write!(f, "`{field}`")
    }
}

/// A number as the text syntax reads it back exactly.
fn fmt_num(n: f64, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    // `{:?}` prints the shortest text that parses back to the same f64.
    write!(f, "{n:?}")
}

pub(crate) fn fmt_str(s: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    f.write_str("\"")?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\t' => f.write_str("\\t")?,
            '\r' => f.write_str("\\r")?,
            c if c.is_control() => write!(f, "\\u{{{:x}}}", c as u32)?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("\"")
}

/// Writes a value in the text syntax.
#[derive(Debug)]
pub struct ValueText<'a>(pub &'a Value);

impl fmt::Display for ValueText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Value::Null => f.write_str("null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Num(n) => fmt_num(*n, f),
            Value::Str(s) => fmt_str(s, f),
        }
    }
}

fn fmt_point_args(p: &Point, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    fmt_num(p.x, f)?;
    f.write_str(", ")?;
    fmt_num(p.y, f)?;
    if let Some(z) = p.z {
        f.write_str(", ")?;
        fmt_num(z, f)?;
    }
    Ok(())
}

/// The text syntax; parsing it gives the same filter back.
impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Filter::All => f.write_str("all"),
            Filter::And(parts) | Filter::Or(parts) => {
                let sep = if matches!(self, Filter::And(_)) {
                    " and "
                } else {
                    " or "
                };
                f.write_str("(")?;
                for (i, p) in parts.iter().enumerate() {
                    if i > 0 {
                        f.write_str(sep)?;
                    }
                    write!(f, "{p}")?;
                }
                f.write_str(")")
            }
            Filter::Cmp(field, op, value) => {
                fmt_field(field, f)?;
                write!(f, " {} {}", op.as_str(), ValueText(value))
            }
            Filter::In(field, values) => {
                fmt_field(field, f)?;
                f.write_str(" in (")?;
                for (i, v) in values.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{}", ValueText(v))?;
                }
                f.write_str(")")
            }
            Filter::Prefix(field, prefix) => {
                fmt_field(field, f)?;
                f.write_str(" prefix ")?;
                fmt_str(prefix, f)
            }
            Filter::Exists(field) => {
                f.write_str("exists ")?;
                fmt_field(field, f)
            }
            Filter::Within(min, max) => {
                f.write_str("within(")?;
                fmt_point_args(min, f)?;
                f.write_str(", ")?;
                fmt_point_args(max, f)?;
                f.write_str(")")
            }
            Filter::Near(center, radius) => {
                f.write_str("near(")?;
                fmt_point_args(center, f)?;
                f.write_str(", ")?;
                fmt_num(*radius, f)?;
                f.write_str(")")
            }
        }
    }
}
