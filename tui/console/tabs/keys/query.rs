//! The key browser's query bar: the text typed after `/`, how it splits into the admin
//! protocol's query (the node parses the filter and the sort, so the console, `cloudctl keys`
//! and scripts get one syntax and the same errors), and the state of the query in force.

use cloudmesh::admin::KeysQuery;

use super::RowEntry;
use crate::console::requests::PollClock;

/// How often the query in force is asked again with nothing changed under the key, ms:
/// this catches what the browsed key's watch may not carry (its rows are not the query's
/// answer; a resnapshot after falling behind, say).
pub const QUERY_EVERY_MS: u64 = 2_000;

/// After a change the watch reports under the browsed key, the query is asked again as
/// soon as this long has passed since it was last asked, ms: under a key that changes all
/// the time the console asks a few times a second, not back to back.
pub const QUERY_MIN_GAP_MS: u64 = 500;

/// The query bar's state.
#[derive(Debug, Default)]
pub struct QueryBar {
    /// The text in the bar: being typed, or of the query in force.
    pub text: String,
    /// The query in force, as the bar's text split it; `None` shows every row.
    pub active: Option<KeysQuery>,
    /// The rows matching it, in its order; `None` until the first answer.
    pub rows: Option<Vec<RowEntry>>,
    /// More rows matched than one answer lists.
    pub truncated: bool,
    /// Why the query failed, or why its rows may be stale or incomplete (shown in the bar).
    pub note: Option<String>,
    /// Whether `note` is an error (drawn red).
    pub error: bool,
    /// A row under the key changed since the query was last asked.
    pub(super) changed: bool,
    /// The row under the cursor when the query was run, to find again in its answer.
    pub(super) keep: Option<(u32, String)>,
    pub(super) poll: PollClock,
}

impl QueryBar {
    /// Whether the bar is worth a line on screen (a query in force, or one that failed).
    pub fn shown(&self) -> bool {
        self.active.is_some() || self.note.is_some()
    }

    /// Clears it: no query, every row.
    pub fn clear(&mut self) {
        *self = QueryBar::default();
    }
}

/// Splits the bar's text, `FILTER [sort FIELDS] [limit N]`, into the admin protocol's query.
/// `sort` and `limit` are words of their own outside strings and backticks (any case), so a
/// field called `sort` goes in backticks, as any field named like a keyword does. The filter
/// and the sort are checked by the node; only the limit, which the protocol carries as a
/// number, is checked here.
pub fn split(text: &str) -> Result<KeysQuery, String> {
    let mut cuts: Vec<(usize, &'static str)> = Vec::new();
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let mut prev: Option<char> = None;
    for (i, c) in text.char_indices() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' && q == '"' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None if c == '"' || c == '`' => quote = Some(c),
            None if prev.is_none_or(char::is_whitespace) => {
                for word in ["sort", "limit"] {
                    let rest = &text[i..];
                    let ends = rest.get(word.len()..).is_some_and(|after| {
                        after.is_empty() || after.starts_with(char::is_whitespace)
                    });
                    if ends && rest[..word.len()].eq_ignore_ascii_case(word) {
                        if cuts.iter().any(|(_, w)| *w == word) {
                            return Err(format!("`{word}` appears twice"));
                        }
                        cuts.push((i, word));
                    }
                }
            }
            None => {}
        }
        prev = Some(c);
    }
    let filter = text[..cuts.first().map_or(text.len(), |(at, _)| *at)].trim();
    let mut query = KeysQuery {
        filter: (!filter.is_empty()).then(|| filter.to_owned()),
        ..KeysQuery::default()
    };
    for (k, (at, word)) in cuts.iter().enumerate() {
        let end = cuts.get(k + 1).map_or(text.len(), |(next, _)| *next);
        let body = text[at + word.len()..end].trim();
        match *word {
            "sort" if body.is_empty() => return Err("`sort` needs fields".into()),
            "sort" => query.sort = Some(body.to_owned()),
            _ => match body.parse::<u32>() {
                Ok(n) if n > 0 => query.limit = Some(n),
                _ => return Err(format!("`limit` takes a number from 1, not {body:?}")),
            },
        }
    }
    Ok(query)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_splits_into_filter_sort_and_limit() {
        let q = split(r#"region = "eu" and players < 64 sort -players, name limit 20"#)
            .expect("splits");
        assert_eq!(
            q.filter.as_deref(),
            Some(r#"region = "eu" and players < 64"#)
        );
        assert_eq!(q.sort.as_deref(), Some("-players, name"));
        assert_eq!((q.limit, q.near), (Some(20), None));

        let q = split("LIMIT 5 Sort players").expect("any order, any case");
        assert_eq!(
            (q.filter, q.sort.as_deref(), q.limit),
            (None, Some("players"), Some(5))
        );
        // Keywords inside strings and backticks, or inside a word, are not clauses.
        let q = split(r#"name = "sort limit 3" and `sort` = 1 and sorted > 2"#).expect("splits");
        assert_eq!(
            q.filter.as_deref(),
            Some(r#"name = "sort limit 3" and `sort` = 1 and sorted > 2"#)
        );
        assert_eq!((q.sort, q.limit), (None, None));
        let q = split(r#"name = "a \" sort" sort x"#).expect("an escaped quote stays in");
        assert_eq!(q.filter.as_deref(), Some(r#"name = "a \" sort""#));
        assert_eq!(q.sort.as_deref(), Some("x"));
        assert_eq!(split("").expect("empty"), KeysQuery::default());

        assert!(split("players > 1 limit x").is_err());
        assert!(split("limit 0").is_err());
        assert!(split("sort").is_err());
        assert!(split("sort a sort b").is_err());
    }
}
