//! The text syntax (what `cloudctl --where` and `--sort` take):
//!
//! ```text
//! filter    := "all" | or
//! or        := and ("or" and)*
//! and       := unary ("and" unary)*
//! unary     := "(" or ")" | predicate
//! predicate := field op value                     op: = != < <= > >=
//!            | field "in" "(" value ("," value)* ")"
//!            | field "prefix" string
//!            | "exists" field
//!            | "within" "(" x0 "," y0 ["," z0] "," x1 "," y1 ["," z1] ")"
//!            | "near" "(" x "," y ["," z] "," radius ")"
//! field     := name ("." name)* | "`" any text but a backtick "`"
//! value     := string | number | "true" | "false" | "null"
//! sort      := field ["asc" | "desc"] ("," field ["asc" | "desc"])*   ("-field" = desc)
//! ```
//!
//! Keywords are case-insensitive; a field named like one goes in backticks. Strings are in
//! double quotes with `\"`, `\\`, `\n`, `\t`, `\r` and `\u{hex}` escapes. Every input is
//! bounded ([`MAX_TEXT`], nesting, terms, sizes) before any of it is kept.

use super::filter::{check_field, Filter, MAX_DEPTH, MAX_SORT, MAX_TEXT};
use super::QueryError;
use crate::proto::{CmpOp, Point, SortKey, Value};

const KEYWORDS: &[&str] = &[
    "and", "or", "in", "prefix", "exists", "within", "near", "true", "false", "null", "all", "not",
];

/// Whether `word` is reserved (a field named so must be written in backticks).
pub(crate) fn is_keyword(word: &str) -> bool {
    KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(word))
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Quoted(String),
    Str(String),
    Num(f64),
    Op(CmpOp),
    Open,
    Close,
    Comma,
    Minus,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Word(w) => format!("{w:?}"),
            Tok::Quoted(w) => format!("`{w}`"),
            Tok::Str(_) => "a string".into(),
            Tok::Num(n) => format!("number {n}"),
            Tok::Op(op) => format!("{:?}", op.as_str()),
            Tok::Open => "\"(\"".into(),
            Tok::Close => "\")\"".into(),
            Tok::Comma => "\",\"".into(),
            Tok::Minus => "\"-\"".into(),
        }
    }
}

fn syntax(at: usize, expected: &str, found: &str) -> QueryError {
    QueryError::Syntax {
        at,
        expected: expected.into(),
        found: found.into(),
    }
}

fn lex(text: &str) -> Result<Vec<(usize, Tok)>, QueryError> {
    if text.len() > MAX_TEXT {
        return Err(QueryError::TooLong {
            what: "the query text".into(),
            len: text.len(),
            max: MAX_TEXT,
        });
    }
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        let tok = match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'(' | b'[' => {
                i += 1;
                Tok::Open
            }
            b')' | b']' => {
                i += 1;
                Tok::Close
            }
            b',' => {
                i += 1;
                Tok::Comma
            }
            b'=' => {
                i += if bytes.get(i + 1) == Some(&b'=') {
                    2
                } else {
                    1
                };
                Tok::Op(CmpOp::Eq)
            }
            b'!' if bytes.get(i + 1) == Some(&b'=') => {
                i += 2;
                Tok::Op(CmpOp::Ne)
            }
            b'<' | b'>' => {
                let eq = bytes.get(i + 1) == Some(&b'=');
                i += if eq { 2 } else { 1 };
                Tok::Op(match (c, eq) {
                    (b'<', false) => CmpOp::Lt,
                    (b'<', true) => CmpOp::Le,
                    (_, false) => CmpOp::Gt,
                    (_, true) => CmpOp::Ge,
                })
            }
            b'-' if !bytes
                .get(i + 1)
                .is_some_and(|b| b.is_ascii_digit() || *b == b'.') =>
            {
                i += 1;
                Tok::Minus
            }
            b'-' | b'.' | b'0'..=b'9' => {
                let mut j = i + 1;
                while j < bytes.len()
                    && (bytes[j].is_ascii_alphanumeric()
                        || bytes[j] == b'.'
                        || ((bytes[j] == b'-' || bytes[j] == b'+')
                            && matches!(bytes[j - 1], b'e' | b'E')))
                {
                    j += 1;
                }
                let s = &text[i..j];
                let n: f64 = s
                    .parse()
                    .map_err(|_| syntax(i, "a number", &format!("{s:?}")))?;
                if !n.is_finite() {
                    return Err(QueryError::InvalidNumber {
                        context: format!("byte {i}"),
                        reason: format!("{s} is not finite"),
                    });
                }
                i = j;
                Tok::Num(n)
            }
            b'"' => {
                let (s, end) = lex_string(text, i)?;
                i = end;
                Tok::Str(s)
            }
            b'`' => {
                let rest = &text[i + 1..];
                let Some(len) = rest.find('`') else {
                    return Err(syntax(i, "a closing backtick", "end of input"));
                };
                let name = rest[..len].to_owned();
                i += len + 2;
                Tok::Quoted(name)
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let mut j = i + 1;
                while j < bytes.len()
                    && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_' || bytes[j] == b'.')
                {
                    j += 1;
                }
                let w = text[i..j].to_owned();
                i = j;
                Tok::Word(w)
            }
            _ => {
                let found: String = text[i..].chars().take(1).collect();
                return Err(syntax(
                    i,
                    "a field, value, operator or parenthesis",
                    &format!("{found:?}"),
                ));
            }
        };
        out.push((start, tok));
    }
    Ok(out)
}

/// A double-quoted string starting at `at`; returns it and the byte after its closing quote.
fn lex_string(text: &str, at: usize) -> Result<(String, usize), QueryError> {
    let mut out = String::new();
    let mut chars = text[at + 1..].char_indices();
    while let Some((off, c)) = chars.next() {
        let pos = at + 1 + off;
        match c {
            '"' => return Ok((out, pos + 1)),
            '\\' => {
                let Some((_, e)) = chars.next() else {
                    break;
                };
                match e {
                    '"' => out.push('"'),
                    '\\' => out.push('\\'),
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    'u' => {
                        let rest = &text[pos + 2..];
                        let bad = || syntax(pos, "an escape \\u{hex}", "a malformed \\u escape");
                        if !rest.starts_with('{') {
                            return Err(bad());
                        }
                        let close = rest.find('}').filter(|&c| c <= 7).ok_or_else(bad)?;
                        let code = u32::from_str_radix(&rest[1..close], 16).map_err(|_| bad())?;
                        out.push(char::from_u32(code).ok_or_else(bad)?);
                        // Skip the braces and digits just read.
                        for _ in 0..=close {
                            chars.next();
                        }
                    }
                    other => {
                        return Err(syntax(
                            pos,
                            "an escape (\\\" \\\\ \\n \\t \\r \\u{hex})",
                            &format!("\\{other}"),
                        ))
                    }
                }
            }
            c => out.push(c),
        }
    }
    Err(syntax(at, "a closing double quote", "end of input"))
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(_, t)| t)
    }

    fn at(&self) -> usize {
        self.toks.get(self.pos).map_or(self.end, |(a, _)| *a)
    }

    fn found(&self) -> String {
        self.peek()
            .map_or_else(|| "end of input".into(), Tok::describe)
    }

    fn fail<T>(&self, expected: &str) -> Result<T, QueryError> {
        Err(syntax(self.at(), expected, &self.found()))
    }

    fn is_word(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw))
    }

    fn expect(&mut self, tok: &Tok, what: &str) -> Result<(), QueryError> {
        if self.peek() == Some(tok) {
            self.pos += 1;
            Ok(())
        } else {
            self.fail(what)
        }
    }

    fn or(&mut self, depth: usize) -> Result<Filter, QueryError> {
        let mut f = self.and(depth)?;
        while self.is_word("or") {
            self.pos += 1;
            f = f.or(self.and(depth)?);
        }
        Ok(f)
    }

    fn and(&mut self, depth: usize) -> Result<Filter, QueryError> {
        let mut f = self.unary(depth)?;
        while self.is_word("and") {
            self.pos += 1;
            f = f.and(self.unary(depth)?);
        }
        Ok(f)
    }

    fn unary(&mut self, depth: usize) -> Result<Filter, QueryError> {
        if self.peek() == Some(&Tok::Open) {
            if depth >= MAX_DEPTH {
                return Err(QueryError::TooDeep {
                    depth: depth + 1,
                    max: MAX_DEPTH,
                });
            }
            self.pos += 1;
            let f = self.or(depth + 1)?;
            self.expect(&Tok::Close, "\")\"")?;
            return Ok(f);
        }
        if self.is_word("exists") {
            self.pos += 1;
            return Ok(Filter::Exists(self.field()?));
        }
        if self.is_word("within") || self.is_word("near") {
            return self.area();
        }
        let field = self.field()?;
        match self.peek() {
            Some(Tok::Op(op)) => {
                let op = *op;
                self.pos += 1;
                Ok(Filter::Cmp(field, op, self.value()?))
            }
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("in") => {
                self.pos += 1;
                self.expect(&Tok::Open, "\"(\" after in")?;
                let mut values = vec![self.value()?];
                while self.peek() == Some(&Tok::Comma) {
                    self.pos += 1;
                    values.push(self.value()?);
                }
                self.expect(&Tok::Close, "\",\" or \")\"")?;
                Ok(Filter::In(field, values))
            }
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("prefix") => {
                self.pos += 1;
                match self.peek() {
                    Some(Tok::Str(s)) => {
                        let s = s.clone();
                        self.pos += 1;
                        Ok(Filter::Prefix(field, s))
                    }
                    _ => self.fail("a string after prefix"),
                }
            }
            _ => self.fail("an operator (= != < <= > >=), in or prefix"),
        }
    }

    fn area(&mut self) -> Result<Filter, QueryError> {
        let within = self.is_word("within");
        let at = self.at();
        self.pos += 1;
        self.expect(&Tok::Open, "\"(\"")?;
        let mut nums = vec![self.number()?];
        while self.peek() == Some(&Tok::Comma) && nums.len() < 8 {
            self.pos += 1;
            nums.push(self.number()?);
        }
        self.expect(&Tok::Close, "\",\" or \")\"")?;
        let p2 = |x: f64, y: f64| Point { x, y, z: None };
        let p3 = |x: f64, y: f64, z: f64| Point { x, y, z: Some(z) };
        match (within, nums.as_slice()) {
            (true, [x0, y0, x1, y1]) => Ok(Filter::Within(p2(*x0, *y0), p2(*x1, *y1))),
            (true, [x0, y0, z0, x1, y1, z1]) => {
                Ok(Filter::Within(p3(*x0, *y0, *z0), p3(*x1, *y1, *z1)))
            }
            (false, [x, y, r]) => Ok(Filter::Near(p2(*x, *y), *r)),
            (false, [x, y, z, r]) => Ok(Filter::Near(p3(*x, *y, *z), *r)),
            (true, _) => Err(syntax(
                at,
                "within(x0, y0, x1, y1) or within(x0, y0, z0, x1, y1, z1)",
                &format!("{} numbers", nums.len()),
            )),
            (false, _) => Err(syntax(
                at,
                "near(x, y, radius) or near(x, y, z, radius)",
                &format!("{} numbers", nums.len()),
            )),
        }
    }

    fn number(&mut self) -> Result<f64, QueryError> {
        match self.peek() {
            Some(Tok::Num(n)) => {
                let n = *n;
                self.pos += 1;
                Ok(n)
            }
            _ => self.fail("a number"),
        }
    }

    fn field(&mut self) -> Result<String, QueryError> {
        let at = self.at();
        let name = match self.peek() {
            Some(Tok::Word(w)) if !is_keyword(w) => w.clone(),
            Some(Tok::Quoted(w)) => w.clone(),
            Some(Tok::Word(w)) => {
                return Err(syntax(
                    at,
                    "a field (write a field named like a keyword in backticks)",
                    &format!("keyword {w:?}"),
                ))
            }
            _ => return self.fail("a field"),
        };
        self.pos += 1;
        check_field(&name)?;
        Ok(name)
    }

    fn value(&mut self) -> Result<Value, QueryError> {
        let v = match self.peek() {
            Some(Tok::Str(s)) => Value::Str(s.clone()),
            Some(Tok::Num(n)) => Value::Num(*n),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("true") => Value::Bool(true),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("false") => Value::Bool(false),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("null") => Value::Null,
            _ => return self.fail("a value (string, number, true, false or null)"),
        };
        self.pos += 1;
        Ok(v)
    }
}

/// Parses a filter (`region = "eu" and players < 64`); empty text or `all` matches every
/// row whose data is a JSON object. The result is within every bound.
pub fn parse_filter(text: &str) -> Result<Filter, QueryError> {
    let toks = lex(text)?;
    let mut p = Parser {
        toks,
        pos: 0,
        end: text.len(),
    };
    if p.peek().is_none() {
        return Ok(Filter::All);
    }
    if p.is_word("all") && p.toks.len() == 1 {
        return Ok(Filter::All);
    }
    let f = p.or(0)?;
    if p.peek().is_some() {
        return p.fail("and, or, or the end of the filter");
    }
    f.check()?;
    Ok(f)
}

/// Parses an area of interest given as `X,Y,R` or `X,Y,Z,R` (what `cloudctl --near` and
/// the admin protocol's `near` take): rows whose position lies within `R` of the point.
/// The radius and coordinates are checked when the query is built.
pub fn parse_near(text: &str) -> Result<Filter, QueryError> {
    let bad = || QueryError::Syntax {
        at: 0,
        expected: "X,Y,R or X,Y,Z,R (numbers)".into(),
        found: format!("{:?}", text.chars().take(40).collect::<String>()),
    };
    if text.len() > MAX_TEXT {
        return Err(QueryError::TooLong {
            what: "the area".into(),
            len: text.len(),
            max: MAX_TEXT,
        });
    }
    let nums: Vec<f64> = text
        .split(',')
        .map(|s| s.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    match nums.as_slice() {
        [x, y, r] => Ok(Filter::Near(
            Point {
                x: *x,
                y: *y,
                z: None,
            },
            *r,
        )),
        [x, y, z, r] => Ok(Filter::Near(
            Point {
                x: *x,
                y: *y,
                z: Some(*z),
            },
            *r,
        )),
        _ => Err(bad()),
    }
}

/// Parses a sort list (`players, name desc`, or `-players` for highest first).
pub fn parse_sort(text: &str) -> Result<Vec<SortKey>, QueryError> {
    let toks = lex(text)?;
    let mut p = Parser {
        toks,
        pos: 0,
        end: text.len(),
    };
    let mut out = Vec::new();
    while p.peek().is_some() {
        let mut descending = false;
        if p.peek() == Some(&Tok::Minus) {
            p.pos += 1;
            descending = true;
        }
        let field = p.field()?;
        if p.is_word("desc") {
            p.pos += 1;
            descending = true;
        } else if p.is_word("asc") && !descending {
            p.pos += 1;
        }
        out.push(SortKey { field, descending });
        if out.len() > MAX_SORT {
            return Err(QueryError::TooLong {
                what: "the sort list".into(),
                len: out.len(),
                max: MAX_SORT,
            });
        }
        match p.peek() {
            None => break,
            Some(Tok::Comma) => p.pos += 1,
            Some(_) => return p.fail("\",\", asc, desc or the end of the sort list"),
        }
    }
    Ok(out)
}
