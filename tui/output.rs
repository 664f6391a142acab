//! How rows and events look on stdout: aligned tables for people, one JSON object per line
//! for scripts. Every line is flushed at once, because stdout is often a pipe to a script
//! that acts on each line as it comes.

use std::io::{self, Write};

use cloudmesh::client::{Event, LeftReason, QueryEvent};
use cloudmesh::proto::{DeleteReason, Row};
use serde::Serialize;

/// Longest data shown in a table cell, in characters; `--json` shows all of it.
const MAX_CELL: usize = 64;

/// Writes one line to stdout and flushes it.
pub fn line(text: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.write_all(b"\n")?;
    out.flush()
}

/// Writes one value as a line of JSON.
pub fn json_line(value: &impl Serialize) -> io::Result<()> {
    line(&serde_json::to_string(value).map_err(io::Error::other)?)
}

/// A row (or an event about one) as the JSON object documented in `cloudctl get --help`;
/// a struct rather than a map so the fields come out in this order.
#[derive(Debug, Serialize)]
pub struct RowJson<'a> {
    /// `snapshot`, `updated` or `deleted`; only for watch.
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<&'a str>,
    key: String,
    primary: &'a str,
    secondary: u32,
    owner: String,
    node: String,
    version: u64,
    updated_at_ms: u64,
    /// The data when it is UTF-8, else null.
    data: Option<&'a str>,
    data_hex: String,
    /// Why a row was deleted; only for deletions.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
}

/// A row for `get --json`.
pub fn row_json(row: &Row) -> RowJson<'_> {
    RowJson {
        event: None,
        key: row.key.to_string(),
        primary: &row.key.primary,
        secondary: row.key.secondary,
        owner: row.owner.to_string(),
        node: row.node.to_string(),
        version: row.version,
        updated_at_ms: row.updated_at_ms,
        data: std::str::from_utf8(&row.data).ok(),
        data_hex: hex::encode(&row.data),
        reason: None,
    }
}

/// What `post --json` prints.
#[derive(Debug, Serialize)]
pub struct PostedJson<'a> {
    /// The row's key, `PRIMARY/SECONDARY`.
    pub key: String,
    /// The row's version after the post.
    pub version: u64,
    /// This client's id, 16 hex digits (what `--owner` takes).
    pub client: String,
    /// The node's name.
    pub node: &'a str,
}

/// What `post` and `watch` print when the connection is lost and healed (`event` is
/// `suspended`, `resumed` or `restored`).
#[derive(Debug, Serialize)]
pub struct SessionJson {
    /// `suspended`, `resumed` or `restored`.
    pub event: &'static str,
    /// The client id the session has now (a restore gives a new one).
    pub client: String,
    /// The node the session is on now (`suspended`: the node it lost).
    pub node: String,
    /// Why the connection was lost (`suspended`), or the client id before (`restored`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The JSON line and the human line for a session event.
pub fn session_event(
    e: &cloudmesh::client::SessionEvent,
    client: cloudmesh::proto::ClientId,
) -> (SessionJson, String) {
    use cloudmesh::client::SessionEvent as S;
    match e {
        S::Suspended { node, reason } => (
            SessionJson {
                event: "suspended",
                client: client.to_string(),
                node: node.to_string(),
                detail: Some(reason.clone()),
            },
            format!("connection lost ({reason}); resuming the session"),
        ),
        S::Resumed { to, .. } => (
            SessionJson {
                event: "resumed",
                client: client.to_string(),
                node: to.to_string(),
                detail: None,
            },
            format!("session resumed as client {client} on node {to}"),
        ),
        S::Restored {
            old_client,
            new_client,
            to,
            rows,
        } => (
            SessionJson {
                event: "restored",
                client: new_client.to_string(),
                node: to.to_string(),
                detail: Some(old_client.to_string()),
            },
            format!(
                "session could not be resumed; restored as client {new_client} on node {to} \
                 ({rows} row(s) posted again)"
            ),
        ),
    }
}

/// The wire name of a deletion reason.
pub fn reason_name(reason: DeleteReason) -> &'static str {
    match reason {
        DeleteReason::Released => "released",
        DeleteReason::Disconnected => "disconnected",
        DeleteReason::NodeLost => "node_lost",
        DeleteReason::NodeLeft => "node_left",
        DeleteReason::Expired => "expired",
    }
}

/// A snapshot row or a change for `watch --json`: `event` first, then the row's fields,
/// then `reason` for deletions.
pub fn event_json<'a>(kind: &'a str, row: &'a Row, reason: Option<DeleteReason>) -> RowJson<'a> {
    RowJson {
        event: Some(kind),
        reason: reason.map(reason_name),
        ..row_json(row)
    }
}

/// A live query's change for `watch --where --json`: `entered`, `updated` or `left`, and
/// for `left` why (`no_longer_matches`, or the deletion's reason).
pub fn query_event_json<'a>(
    kind: &'a str,
    row: &'a Row,
    reason: Option<&'static str>,
) -> RowJson<'a> {
    RowJson {
        event: Some(kind),
        reason,
        ..row_json(row)
    }
}

/// The name, row and reason (for `left`) of a live query's change.
pub fn query_event_parts(event: &QueryEvent) -> (&'static str, &Row, Option<&'static str>) {
    match event {
        QueryEvent::Entered(row) => ("entered", row, None),
        QueryEvent::Updated(row) => ("updated", row, None),
        QueryEvent::Left { row, reason } => (
            "left",
            row,
            Some(match reason {
                LeftReason::NoLongerMatches => "no_longer_matches",
                LeftReason::Deleted(r) => reason_name(*r),
            }),
        ),
    }
}

/// The name and row of an event.
pub fn event_parts(event: &Event) -> (&'static str, &Row, Option<DeleteReason>) {
    match event {
        Event::Updated(row) => ("updated", row, None),
        Event::Deleted { row, reason } => ("deleted", row, Some(*reason)),
    }
}

/// Data as people read it: the text when it is printable UTF-8, else `0x` and hex.
pub fn data_text(data: &[u8]) -> String {
    match std::str::from_utf8(data) {
        Ok(s) if !s.chars().any(char::is_control) => s.to_owned(),
        _ => format!("0x{}", hex::encode(data)),
    }
}

/// Cuts `text` to at most `max` characters, marking the cut.
fn cut(text: String, max: usize) -> String {
    if text.chars().count() <= max {
        return text;
    }
    let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
    s.push('…');
    s
}

/// Enough of a node id to tell nodes apart.
pub fn short_node(row: &Row) -> String {
    row.node.to_string().chars().take(8).collect()
}

/// One line describing an event for people.
pub fn event_human(kind: &str, row: &Row, reason: Option<DeleteReason>) -> String {
    let mut s = format!(
        "{kind:<8} {key}  v{version}  owner {owner}  node {node}  {data}",
        key = row.key,
        version = row.version,
        owner = row.owner,
        node = short_node(row),
        data = cut(data_text(&row.data), MAX_CELL),
    );
    if let Some(r) = reason {
        s.push_str(&format!("  ({})", reason_name(r)));
    }
    s
}

/// Rows as an aligned table with a header.
pub fn table(rows: &[Row]) -> Vec<String> {
    let header = ["KEY", "OWNER", "NODE", "VERSION", "DATA"].map(str::to_owned);
    let mut cells: Vec<[String; 5]> = vec![header];
    for row in rows {
        cells.push([
            row.key.to_string(),
            row.owner.to_string(),
            short_node(row),
            row.version.to_string(),
            cut(data_text(&row.data), MAX_CELL),
        ]);
    }
    let mut widths = [0usize; 5];
    for r in &cells {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    cells
        .iter()
        .map(|r| {
            let mut s = String::new();
            for (i, (c, w)) in r.iter().zip(widths).enumerate() {
                if i + 1 == r.len() {
                    s.push_str(c); // no trailing padding on the last column
                } else {
                    s.push_str(c);
                    s.push_str(&" ".repeat(w - c.chars().count() + 2));
                }
            }
            s
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use cloudmesh::proto::{ClientId, Key, NodeId};

    fn row(data: &'static [u8]) -> Row {
        Row {
            key: Key::new("players", 3),
            owner: ClientId(0x0123_4567_89ab_cdef),
            node: NodeId(0xfeed << 112),
            data: Bytes::from_static(data),
            version: 17,
            updated_at_ms: 1000,
        }
    }

    fn value(v: impl Serialize) -> serde_json::Value {
        serde_json::to_value(v).expect("serializes")
    }

    #[test]
    fn json_schema() {
        let r = row(b"hello");
        let text =
            serde_json::to_string(&event_json("deleted", &r, Some(DeleteReason::Disconnected)))
                .expect("serializes");
        assert!(
            text.starts_with(r#"{"event":"deleted","key":"players/3","primary""#),
            "{text}"
        );
        let v = value(event_json("deleted", &r, Some(DeleteReason::Disconnected)));
        assert_eq!(v["key"], "players/3");
        assert_eq!(v["primary"], "players");
        assert_eq!(v["secondary"], 3);
        assert_eq!(v["owner"], "0123456789abcdef");
        assert_eq!(v["node"], "feed0000000000000000000000000000");
        assert_eq!(v["version"], 17);
        assert_eq!(v["data"], "hello");
        assert_eq!(v["data_hex"], "68656c6c6f");
        assert_eq!(v["event"], "deleted");
        assert_eq!(v["reason"], "disconnected");
        let bin = row(b"\xff");
        let v = value(row_json(&bin));
        assert_eq!(v["data"], serde_json::Value::Null);
        assert!(v.get("event").is_none() && v.get("reason").is_none());
    }

    #[test]
    fn data_and_tables_read_well() {
        assert_eq!(data_text(b"hello"), "hello");
        assert_eq!(data_text(b"a\x01"), "0x6101");
        assert_eq!(data_text(b"\xff"), "0xff");
        let t = table(&[row(b"hello"), row(b"\xff")]);
        assert_eq!(t.len(), 3);
        assert!(t[0].starts_with("KEY        OWNER"));
        assert!(t[1].ends_with("  17       hello"), "{:?}", t[1]);
        assert!(t[2].ends_with("0xff"));
        assert_eq!(cut("x".repeat(100), 10).chars().count(), 10);
    }
}
