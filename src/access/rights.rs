//! What a token lets its client do: key patterns per operation, written as templates in the
//! token's `rights` claim and filled in from its other claims. The grammar is in the
//! module doc of [`super`].

use std::fmt;

use serde_json::{Map, Value};

use crate::proto::{GrantRights, KeyPattern, KeySpec, MAX_PRIMARY_LEN};

/// Most patterns one operation's list may hold: each request is checked against the list,
/// so its length is work per request.
pub const MAX_PATTERNS: usize = 256;

/// An operation a right covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// Post and release.
    Post,
    /// Get.
    Get,
    /// Subscribe (a get with `subscribe` needs both `get` and `subscribe`).
    Subscribe,
}

impl Op {
    /// Every operation, in the order the `rights` claim lists them.
    pub const ALL: [Op; 3] = [Op::Post, Op::Get, Op::Subscribe];

    /// Its name in the `rights` claim.
    pub fn name(self) -> &'static str {
        match self {
            Op::Post => "post",
            Op::Get => "get",
            Op::Subscribe => "subscribe",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One granted pattern, claims already filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    /// The primary key, or the prefix of primaries when `prefix`.
    primary: String,
    /// Whether `primary` is a prefix (the pattern's primary part ended in `*`).
    prefix: bool,
    /// One secondary key; `None` covers every secondary.
    secondary: Option<u32>,
}

impl Pattern {
    /// Whether this pattern covers `primary` with `secondary` (`None`: every secondary
    /// under it, as a get of a whole primary asks).
    pub fn covers(&self, primary: &str, secondary: Option<u32>) -> bool {
        let primary_ok = if self.prefix {
            primary.starts_with(self.primary.as_str())
        } else {
            primary == self.primary
        };
        primary_ok
            && match (self.secondary, secondary) {
                (None, _) => true,
                (Some(granted), Some(asked)) => granted == asked,
                // A whole primary is more than the one key granted.
                (Some(_), None) => false,
            }
    }

    /// Parses a pattern without placeholders (as written in tests and docs).
    pub fn parse(text: &str) -> Result<Pattern, TemplateError> {
        Pattern::from_template(text, &Map::new())
    }

    /// Fills `template`'s `{name}` placeholders from `claims` and parses the result. The
    /// template's own text decides its shape (where the secondary part is, where a `*`
    /// is): a claim value only fills in a name or a number, so it cannot widen the right.
    pub fn from_template(
        template: &str,
        claims: &Map<String, Value>,
    ) -> Result<Pattern, TemplateError> {
        // The secondary part is the text after the last `/` when it is `*`, a number or a
        // placeholder; otherwise the whole text is the primary (primaries may hold `/`).
        let (primary_t, secondary_t) = match template.rsplit_once('/') {
            Some((head, tail))
                if tail == "*"
                    || (!tail.is_empty() && tail.bytes().all(|b| b.is_ascii_digit()))
                    || tail.contains('{') =>
            {
                (head, Some(tail))
            }
            _ => (template, None),
        };
        let primary_text = fill(primary_t, claims)?;
        let (primary, prefix) = match primary_text.strip_suffix('*') {
            Some(p) => (p.to_owned(), true),
            None => (primary_text, false),
        };
        if primary.contains('*') {
            return Err(TemplateError::Star);
        }
        if !prefix && primary.is_empty() {
            return Err(TemplateError::EmptyPrimary);
        }
        if primary.len() > MAX_PRIMARY_LEN {
            return Err(TemplateError::PrimaryTooLong { len: primary.len() });
        }
        let secondary = match secondary_t {
            None => None,
            Some("*") => None,
            Some(t) => {
                let text = fill(t, claims)?;
                let n = text
                    .parse::<u32>()
                    .ok()
                    .filter(|_| text.bytes().all(|b| b.is_ascii_digit()))
                    .ok_or(TemplateError::Secondary { text })?;
                Some(n)
            }
        };
        Ok(Pattern {
            primary,
            prefix,
            secondary,
        })
    }

    fn to_wire(&self) -> KeyPattern {
        KeyPattern {
            primary: self.primary.clone(),
            prefix: self.prefix,
            secondary: self.secondary,
        }
    }

    fn from_wire(p: &KeyPattern) -> Pattern {
        Pattern {
            primary: p.primary.clone(),
            prefix: p.prefix,
            secondary: p.secondary,
        }
    }
}

impl fmt::Display for Pattern {
    /// The canonical text, which parses back to the same pattern: `P/*`, `P/N`, `P*/*`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.primary)?;
        if self.prefix {
            f.write_str("*")?;
        }
        match self.secondary {
            Some(n) => write!(f, "/{n}"),
            None => f.write_str("/*"),
        }
    }
}

/// Replaces every `{name}` in `text` with the claim `name`.
fn fill(text: &str, claims: &Map<String, Value>) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find(['{', '}']) {
        if rest[open..].starts_with('}') {
            return Err(TemplateError::StrayBrace);
        }
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or(TemplateError::Unclosed)?;
        let name = &after[..close];
        if name.is_empty() || name.contains('{') {
            return Err(TemplateError::Placeholder {
                name: name.to_owned(),
            });
        }
        let value = match claims.get(name) {
            None => {
                return Err(TemplateError::MissingClaim {
                    name: name.to_owned(),
                })
            }
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(_) => {
                return Err(TemplateError::ClaimType {
                    name: name.to_owned(),
                })
            }
        };
        if value.is_empty() {
            // `{x}*` with x empty would grant every primary.
            return Err(TemplateError::EmptyValue {
                name: name.to_owned(),
            });
        }
        if let Some(c) = value.chars().find(|c| matches!(c, '/' | '*' | '{' | '}')) {
            return Err(TemplateError::Widening {
                name: name.to_owned(),
                value,
                c,
            });
        }
        out.push_str(&value);
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Why a pattern of the `rights` claim cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// `{` without its `}`.
    #[error("a `{{` is not closed")]
    Unclosed,
    /// `}` without its `{`.
    #[error("a `}}` has no `{{`")]
    StrayBrace,
    /// `{}` or a nested brace.
    #[error("placeholder {{{name}}} is not a claim name")]
    Placeholder {
        /// What was between the braces.
        name: String,
    },
    /// The token has no claim of that name.
    #[error("it uses {{{name}}} but the token has no claim {name:?}")]
    MissingClaim {
        /// The claim.
        name: String,
    },
    /// The claim is not a string or a number.
    #[error("claim {name:?} must be a string or a number to fill {{{name}}}")]
    ClaimType {
        /// The claim.
        name: String,
    },
    /// The claim is an empty string.
    #[error("claim {name:?} is empty")]
    EmptyValue {
        /// The claim.
        name: String,
    },
    /// The claim holds a character that would change the pattern's shape.
    #[error("claim {name:?} = {value:?} holds {c:?}, which would widen the right")]
    Widening {
        /// The claim.
        name: String,
        /// Its value.
        value: String,
        /// The first character not allowed.
        c: char,
    },
    /// A `*` anywhere but at the end of the primary part or as the whole secondary part.
    #[error("`*` may only end the primary part or be the whole secondary part")]
    Star,
    /// Nothing names a primary.
    #[error("the primary part is empty")]
    EmptyPrimary,
    /// The primary part is longer than any primary key.
    #[error("the primary part is {len} bytes, longer than any primary key ({MAX_PRIMARY_LEN})")]
    PrimaryTooLong {
        /// Its length.
        len: usize,
    },
    /// The secondary part is neither `*` nor a number.
    #[error("secondary part {text:?} is neither `*` nor a number")]
    Secondary {
        /// It, filled in.
        text: String,
    },
}

/// Why the `rights` claim cannot be used; the token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RightsError {
    /// Not an object.
    #[error("must be an object like {{\"post\": [...], \"get\": [...], \"subscribe\": [...]}}")]
    NotAnObject,
    /// An operation other than post, get and subscribe (a typo would otherwise grant less
    /// than meant, silently).
    #[error("unknown operation {0:?}: use post, get or subscribe")]
    UnknownOp(String),
    /// An operation's value is not a list of strings.
    #[error("{op} must be a list of pattern strings")]
    NotAList {
        /// Which.
        op: Op,
    },
    /// Too many patterns for one operation.
    #[error("{op} lists {count} patterns, at most {MAX_PATTERNS} are taken")]
    TooMany {
        /// Which.
        op: Op,
        /// How many.
        count: usize,
    },
    /// One pattern is wrong.
    #[error("{op} pattern {pattern:?}: {reason}")]
    Pattern {
        /// Which operation's list.
        op: Op,
        /// The template as written.
        pattern: String,
        /// What is wrong.
        reason: TemplateError,
    },
}

/// Granted patterns per operation. A request is allowed when a pattern of its operation
/// covers its key; a get that subscribes needs both `get` and `subscribe`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rights {
    post: Vec<Pattern>,
    get: Vec<Pattern>,
    subscribe: Vec<Pattern>,
}

impl Rights {
    /// Rights from a token's `rights` claim, templates filled from `claims` (all of the
    /// token's claims). Operations left out are granted nothing.
    pub fn from_claim(rights: &Value, claims: &Map<String, Value>) -> Result<Rights, RightsError> {
        let Value::Object(map) = rights else {
            return Err(RightsError::NotAnObject);
        };
        let mut out = Rights::default();
        for (name, list) in map {
            let op = Op::ALL
                .into_iter()
                .find(|op| op.name() == name)
                .ok_or_else(|| RightsError::UnknownOp(name.clone()))?;
            let Value::Array(items) = list else {
                return Err(RightsError::NotAList { op });
            };
            if items.len() > MAX_PATTERNS {
                return Err(RightsError::TooMany {
                    op,
                    count: items.len(),
                });
            }
            let patterns = items
                .iter()
                .map(|item| {
                    let Value::String(template) = item else {
                        return Err(RightsError::NotAList { op });
                    };
                    Pattern::from_template(template, claims).map_err(|reason| {
                        RightsError::Pattern {
                            op,
                            pattern: template.clone(),
                            reason,
                        }
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            *out.list_mut(op) = patterns;
        }
        Ok(out)
    }

    /// Rights granting exactly these patterns.
    pub fn new(post: Vec<Pattern>, get: Vec<Pattern>, subscribe: Vec<Pattern>) -> Rights {
        Rights {
            post,
            get,
            subscribe,
        }
    }

    /// The patterns granted for `op`.
    pub fn patterns(&self, op: Op) -> &[Pattern] {
        match op {
            Op::Post => &self.post,
            Op::Get => &self.get,
            Op::Subscribe => &self.subscribe,
        }
    }

    fn list_mut(&mut self, op: Op) -> &mut Vec<Pattern> {
        match op {
            Op::Post => &mut self.post,
            Op::Get => &mut self.get,
            Op::Subscribe => &mut self.subscribe,
        }
    }

    /// Whether `op` on `spec` is granted.
    pub fn allows(&self, op: Op, spec: &KeySpec) -> bool {
        self.allows_key(op, &spec.primary, spec.secondary)
    }

    /// Whether `op` on `primary` (one `secondary`, or all of them with `None`) is granted;
    /// [`Rights::allows`] without building a spec.
    pub fn allows_key(&self, op: Op, primary: &str, secondary: Option<u32>) -> bool {
        self.patterns(op)
            .iter()
            .any(|p| p.covers(primary, secondary))
    }

    /// The form that travels with a migrating session.
    pub fn to_wire(&self) -> GrantRights {
        let wire = |v: &[Pattern]| v.iter().map(Pattern::to_wire).collect();
        GrantRights {
            post: wire(&self.post),
            get: wire(&self.get),
            subscribe: wire(&self.subscribe),
        }
    }

    /// Rights as they arrived with a migrating session.
    pub fn from_wire(w: &GrantRights) -> Rights {
        let local = |v: &[KeyPattern]| v.iter().map(Pattern::from_wire).collect();
        Rights {
            post: local(&w.post),
            get: local(&w.get),
            subscribe: local(&w.subscribe),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn claims(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            other => panic!("not an object: {other}"),
        }
    }

    fn pattern(text: &str) -> Pattern {
        Pattern::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    fn spec(text: &str) -> KeySpec {
        text.parse().unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    #[test]
    fn the_grammar_covers_what_it_says() {
        // PRIMARY and PRIMARY/*: every secondary under that primary, and the whole primary.
        for p in ["players", "players/*"] {
            let p = pattern(p);
            assert!(p.covers("players", Some(3)) && p.covers("players", None));
            assert!(!p.covers("players2", Some(3)) && !p.covers("player", None));
        }
        // PRIMARY/N: that key only, never the whole primary.
        let p = pattern("players/42");
        assert!(p.covers("players", Some(42)));
        assert!(!p.covers("players", Some(43)) && !p.covers("players", None));
        // A primary ending in `*`: every primary starting with the rest.
        let p = pattern("match.7*");
        assert!(p.covers("match.7", None) && p.covers("match.77", Some(1)));
        assert!(!p.covers("match.8", None));
        let p = pattern("match.*/5");
        assert!(p.covers("match.1", Some(5)) && !p.covers("match.1", Some(6)));
        // `*` alone is every primary.
        assert!(pattern("*").covers("anything", None));
        // Primaries may hold `/`: the secondary part is after the last one, when it is a
        // number or `*`.
        let p = pattern("a/b");
        assert!(p.covers("a/b", Some(1)) && !p.covers("a", Some(1)));
        let p = pattern("a/b/3");
        assert!(p.covers("a/b", Some(3)) && !p.covers("a/b", Some(4)));
        // The text form parses back to the same pattern.
        for text in [
            "players/*",
            "players/42",
            "match.*/*",
            "a/b/3",
            "a/b/*",
            "*/*",
        ] {
            assert_eq!(pattern(text).to_string(), text);
            assert_eq!(pattern(&pattern(text).to_string()), pattern(text));
        }
    }

    #[test]
    fn templates_fill_claims_and_cannot_widen() {
        let c = claims(json!({"sub": "42", "match": 7, "team": "red", "bad": "a/b",
                              "star": "x*", "brace": "{sub}", "empty": "", "flag": true,
                              "alice": "alice"}));
        let p = Pattern::from_template("players/{sub}", &c).expect("fills");
        assert_eq!(p.to_string(), "players/42");
        let p = Pattern::from_template("match.{match}/*", &c).expect("a number fills");
        assert_eq!(p.to_string(), "match.7/*");
        let p = Pattern::from_template("team.{team}.{sub}", &c).expect("two placeholders");
        assert_eq!(p.to_string(), "team.red.42/*");

        let err = |t: &str| Pattern::from_template(t, &c).expect_err(t);
        for (template, name) in [
            ("players/{bad}", "bad"),
            ("x.{bad}", "bad"),
            ("x.{star}", "star"),
            ("x.{brace}", "brace"),
        ] {
            assert!(
                matches!(err(template), TemplateError::Widening { name: n, .. } if n == name),
                "{template}"
            );
        }
        assert_eq!(
            err("{empty}*"),
            TemplateError::EmptyValue {
                name: "empty".into()
            }
        );
        assert!(matches!(err("x.{flag}"), TemplateError::ClaimType { .. }));
        assert!(matches!(
            err("x.{nope}"),
            TemplateError::MissingClaim { .. }
        ));
        // A placeholder after the last `/` is a secondary key: it must be a number, so a
        // name there cannot turn one key into a whole primary.
        assert!(matches!(
            err("players/{alice}"),
            TemplateError::Secondary { .. }
        ));
        assert!(matches!(err("x.{sub"), TemplateError::Unclosed));
        assert!(matches!(err("x.}"), TemplateError::StrayBrace));
        assert!(matches!(err("x.{}"), TemplateError::Placeholder { .. }));
        assert!(matches!(err("a*b"), TemplateError::Star));
        // A tail that is no number, `*` or placeholder is part of the primary.
        let p = Pattern::from_template("a/x*", &c).expect("a prefix holding `/`");
        assert!(p.covers("a/xy", Some(1)) && !p.covers("a/y", Some(1)));
        assert!(matches!(
            err("players/99999999999"),
            TemplateError::Secondary { .. }
        ));
        assert_eq!(err(""), TemplateError::EmptyPrimary);
        assert_eq!(err("/*"), TemplateError::EmptyPrimary);
        assert!(matches!(
            err(&"p".repeat(300)),
            TemplateError::PrimaryTooLong { len: 300 }
        ));
    }

    #[test]
    fn rights_come_from_the_claim_per_operation() {
        let c = claims(json!({"sub": "42", "match": "7"}));
        let r = Rights::from_claim(
            &json!({"post": ["players/{sub}"], "get": ["match.{match}/*", "players"],
                    "subscribe": ["match.{match}/*"]}),
            &c,
        )
        .expect("valid");
        assert!(r.allows(Op::Post, &spec("players/42")));
        assert!(!r.allows(Op::Post, &spec("players/43")));
        assert!(!r.allows(Op::Post, &spec("players")));
        assert!(r.allows(Op::Get, &spec("players")) && r.allows(Op::Get, &spec("match.7/3")));
        assert!(r.allows(Op::Subscribe, &spec("match.7")));
        assert!(!r.allows(Op::Get, &spec("match.8")) && !r.allows(Op::Subscribe, &spec("players")));
        assert_eq!(
            Rights::from_wire(&r.to_wire()),
            r,
            "the wire form is the same rights"
        );

        // Operations left out grant nothing.
        let r = Rights::from_claim(&json!({"get": ["a"]}), &c).expect("valid");
        assert!(!r.allows(Op::Post, &spec("a/1")) && r.allows(Op::Get, &spec("a/1")));

        for (bad, want) in [
            (json!(["a"]), "must be an object"),
            (json!({"publish": ["a"]}), "unknown operation \"publish\""),
            (json!({"get": "a"}), "get must be a list"),
            (json!({"get": [1]}), "get must be a list"),
            (
                json!({"post": ["players/{nope}"]}),
                "post pattern \"players/{nope}\": it uses {nope}",
            ),
        ] {
            let e = Rights::from_claim(&bad, &c)
                .expect_err("refused")
                .to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
        let many: Vec<String> = (0..=MAX_PATTERNS).map(|i| format!("k/{i}")).collect();
        assert!(matches!(
            Rights::from_claim(&json!({"get": many}), &c),
            Err(RightsError::TooMany { .. })
        ));
    }
}
