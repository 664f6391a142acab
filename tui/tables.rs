//! How the operator verbs (`status`, `nodes`, `clients`, `keys`, `drain --wait`) look for
//! people: aligned tables with numbers right-aligned, sizes and ages in short human units.
//! Pure functions of the admin protocol's DTOs, so they are tested without a daemon.

use cloudmesh::admin::{ClientInfo, NodeInfo, PrimaryInfo, RowInfo, StatusInfo};

/// Longest data shown in a `keys` cell, in characters; `--json` shows all of it.
const MAX_DATA_CELL: usize = 48;

/// Width of the `drain --wait` progress bar, in characters.
const BAR_WIDTH: usize = 20;

/// How a column's cells line up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Text: padded on the right.
    Left,
    /// Numbers: padded on the left, so digits line up.
    Right,
}

/// A table built row by row, then rendered with every column as wide as its widest cell.
#[derive(Debug)]
pub struct Table {
    columns: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(columns: &[(&'static str, Align)]) -> Table {
        Table {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells are blank and extra cells are dropped.
    pub fn push(&mut self, mut cells: Vec<String>) {
        cells.resize(self.columns.len(), String::new());
        self.rows.push(cells);
    }

    /// The header line, then one line per row. Columns are two spaces apart; no line ends in
    /// spaces.
    pub fn render(&self) -> Vec<String> {
        let header: Vec<String> = self.columns.iter().map(|(h, _)| (*h).to_owned()).collect();
        let mut widths: Vec<usize> = header.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(width(cell));
            }
        }
        std::iter::once(&header)
            .chain(&self.rows)
            .map(|row| {
                let mut line = String::new();
                for (i, cell) in row.iter().enumerate() {
                    if i > 0 {
                        line.push_str("  ");
                    }
                    let pad = " ".repeat(widths[i] - width(cell));
                    match self.columns[i].1 {
                        Align::Left => {
                            line.push_str(cell);
                            line.push_str(&pad);
                        }
                        Align::Right => {
                            line.push_str(&pad);
                            line.push_str(cell);
                        }
                    }
                }
                line.trim_end().to_owned()
            })
            .collect()
    }
}

/// Display width of a cell: characters, which is right for everything these tables hold
/// (ASCII, `★`, `…`).
fn width(s: &str) -> usize {
    s.chars().count()
}

/// Bytes in binary units with one decimal: `512 B`, `1.5 KiB`, `34.2 MiB`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    // f64 is exact enough for one decimal at any size a node can hold.
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A duration in milliseconds as its two largest units: `45s`, `3m12s`, `2h05m`, `3d04h`.
pub fn format_age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// `cloudctl status`: one `label  value` line per fact.
pub fn status_lines(s: &StatusInfo) -> Vec<String> {
    let n = &s.node;
    let host = if n.host { " ★ host" } else { "" };
    let facts = [
        ("node", format!("{}{host}", n.name)),
        ("id", n.id.clone()),
        ("state", n.state.clone()),
        ("version", s.version.clone()),
        ("uptime", format_age(s.uptime_secs.saturating_mul(1000))),
        ("listen", s.listen.clone()),
        ("addresses", n.addresses.join(", ")),
        ("fingerprint", s.fingerprint.clone()),
        (
            "mesh",
            format!(
                "{} members, {} linked, host {}",
                s.members, s.linked, s.host
            ),
        ),
        ("clients", format!("{}/{}", n.clients, n.capacity)),
        (
            "rows",
            format!("{} ({})", n.rows, format_bytes(s.data_bytes)),
        ),
        ("subscriptions", s.subscriptions.to_string()),
        ("cpu", format!("{:.1}%", n.cpu_percent)),
        ("memory", format_bytes(n.memory_bytes)),
        ("msgs/s", format!("{:.1}", n.msgs_per_sec)),
    ];
    let w = facts.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    facts
        .iter()
        .map(|(k, v)| format!("{k:<w$}  {v}").trim_end().to_owned())
        .collect()
}

/// `cloudctl nodes`: the answering node has `*` after its name, the host a `★`, and a node
/// the answering node has no live link to says so in STATE.
pub fn nodes_table(nodes: &[NodeInfo]) -> Vec<String> {
    use Align::*;
    let mut t = Table::new(&[
        ("NAME", Left),
        ("STATE", Left),
        ("HOST", Left),
        ("CLIENTS", Right),
        ("ROWS", Right),
        ("CPU%", Right),
        ("MEMORY", Right),
        ("MSGS/S", Right),
        ("ADDRESSES", Left),
    ]);
    for n in nodes {
        let name = if n.local {
            format!("{}*", n.name)
        } else {
            n.name.clone()
        };
        let state = if n.linked {
            n.state.clone()
        } else {
            format!("{} (unlinked)", n.state)
        };
        t.push(vec![
            name,
            state,
            if n.host { "★" } else { "" }.to_owned(),
            format!("{}/{}", n.clients, n.capacity),
            n.rows.to_string(),
            format!("{:.1}", n.cpu_percent),
            format_bytes(n.memory_bytes),
            format!("{:.1}", n.msgs_per_sec),
            n.addresses.join(","),
        ]);
    }
    t.render()
}

/// `cloudctl clients`; CONNECTED is the time since `connected_at_ms`, as of `now_ms`.
pub fn clients_table(clients: &[ClientInfo], now_ms: u64) -> Vec<String> {
    use Align::*;
    let mut t = Table::new(&[
        ("ID", Left),
        ("NODE", Left),
        ("ADDRESS", Left),
        ("RTT(ms)", Right),
        ("ZONE", Left),
        ("ROWS", Right),
        ("CONNECTED", Right),
    ]);
    for c in clients {
        t.push(vec![
            c.id.clone(),
            c.node.clone(),
            match c.suspended_until_ms {
                // Lost its connection; its session is kept until then.
                Some(until) => format!(
                    "suspended ({} left)",
                    format_age(until.saturating_sub(now_ms))
                ),
                None => c.address.clone(),
            },
            format!("{:.1}", c.rtt_ms),
            c.zone
                .map_or_else(|| "-".to_owned(), |(x, y)| format!("{x},{y}")),
            c.rows.to_string(),
            // A node's clock a little ahead of ours reads as "just now", not a panic.
            format_age(now_ms.saturating_sub(c.connected_at_ms)),
        ]);
    }
    t.render()
}

/// `cloudctl keys` without a key.
pub fn primaries_table(primaries: &[PrimaryInfo]) -> Vec<String> {
    use Align::*;
    let mut t = Table::new(&[("PRIMARY", Left), ("ROWS", Right), ("NODES", Left)]);
    for p in primaries {
        t.push(vec![
            p.primary.clone(),
            p.rows.to_string(),
            p.nodes.join(","),
        ]);
    }
    t.render()
}

/// `cloudctl keys PRIMARY[/SECONDARY]`.
pub fn rows_table(rows: &[RowInfo]) -> Vec<String> {
    use Align::*;
    let mut t = Table::new(&[
        ("KEY", Left),
        ("OWNER", Left),
        ("NODE", Left),
        ("VERSION", Right),
        ("SIZE", Right),
        ("DATA", Left),
    ]);
    for r in rows {
        t.push(vec![
            format!("{}/{}", r.primary, r.secondary),
            r.owner.clone(),
            r.node.clone(),
            r.version.to_string(),
            format_bytes(r.size as u64),
            data_cell(r),
        ]);
    }
    t.render()
}

/// A row's data for one table cell: hex marked `0x`, line breaks and tabs escaped so the
/// row stays one line, cut to [`MAX_DATA_CELL`] with `…`.
fn data_cell(r: &RowInfo) -> String {
    let text = if r.encoding == "hex" {
        format!("0x{}", r.data)
    } else {
        r.data.replace('\n', "\\n").replace('\t', "\\t")
    };
    cut(&text, MAX_DATA_CELL)
}

/// Cuts `text` to at most `max` characters, marking the cut.
fn cut(text: &str, max: usize) -> String {
    if width(text) <= max {
        return text.to_owned();
    }
    let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
    s.push('…');
    s
}

/// One `drain --wait` progress report. With `bar`, a bar for a terminal
/// (`draining node-3 [#########-----------] 412/1000 moved, 588 left`), else a plain line
/// for a log (`draining node-3: 412/1000 moved, 588 left`).
pub fn progress_line(node: &str, moved: usize, remaining: usize, bar: bool) -> String {
    let total = moved.saturating_add(remaining);
    let counts = format!("{moved}/{total} moved, {remaining} left");
    if !bar {
        return format!("draining {node}: {counts}");
    }
    let filled = if total == 0 {
        BAR_WIDTH
    } else {
        // u128: no overflow for any count; the ratio is at most 1.
        (moved as u128 * BAR_WIDTH as u128 / total as u128) as usize
    };
    format!(
        "draining {node} [{}{}] {counts}",
        "#".repeat(filled),
        "-".repeat(BAR_WIDTH - filled)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, local: bool, host: bool, linked: bool, clients: u32) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            id: "00".repeat(16),
            addresses: vec!["127.0.0.1:7946".into()],
            state: "Active".into(),
            host,
            local,
            linked,
            clients,
            capacity: 10_000,
            rows: u64::from(clients) * 3,
            cpu_percent: 12.345,
            memory_bytes: 35_861_299,
            msgs_per_sec: 1500.0,
        }
    }

    /// Where a column's header word ends, in characters: right-aligned cells end there too.
    fn col_end(header: &str, name: &str) -> usize {
        header.find(name).expect("column in header") + name.len()
    }

    #[test]
    fn nodes_table_is_aligned() {
        let t = nodes_table(&[
            node("node-1", true, true, true, 12),
            node("node-22", false, false, false, 9_999),
        ]);
        assert_eq!(t.len(), 3);
        let h = &t[0];
        assert_eq!(
            t,
            vec![
                "NAME     STATE              HOST     CLIENTS   ROWS  CPU%    MEMORY  MSGS/S  ADDRESSES",
                "node-1*  Active             ★       12/10000     36  12.3  34.2 MiB  1500.0  127.0.0.1:7946",
                "node-22  Active (unlinked)        9999/10000  29997  12.3  34.2 MiB  1500.0  127.0.0.1:7946",
            ]
        );
        // Right-aligned numbers end where their header ends.
        let end = col_end(h, "MEMORY");
        for line in &t[1..] {
            let chars: Vec<char> = line.chars().collect();
            let cell: String = chars[end - 8..end].iter().collect();
            assert_eq!(cell, "34.2 MiB", "{line}");
        }
        let end = col_end(h, "CPU%");
        for line in &t[1..] {
            let chars: Vec<char> = line.chars().collect();
            let cell: String = chars[end - 4..end].iter().collect();
            assert_eq!(cell, "12.3", "{line}");
        }
        assert!(t.iter().all(|l| !l.ends_with(' ')));
        assert!(t[1].ends_with("1500.0  127.0.0.1:7946"), "{}", t[1]);
    }

    #[test]
    fn clients_table_is_aligned() {
        let c = |id: &str, zone, rows, at| ClientInfo {
            id: id.into(),
            node: "node-1".into(),
            address: "127.0.0.1:50000".into(),
            rtt_ms: 1.26,
            zone,
            position: None,
            rows,
            connected_at_ms: at,
            suspended_until_ms: None,
            session_bytes: 0,
            session: None,
            session_encoding: None,
        };
        let now = 1_000_000;
        let t = clients_table(
            &[
                c("0123456789abcdef", Some((3, 4)), 2, now - 192_000),
                c("fedcba9876543210", None, 120, now + 5),
            ],
            now,
        );
        assert_eq!(
            t,
            vec![
                "ID                NODE    ADDRESS          RTT(ms)  ZONE  ROWS  CONNECTED",
                "0123456789abcdef  node-1  127.0.0.1:50000      1.3  3,4      2      3m12s",
                "fedcba9876543210  node-1  127.0.0.1:50000      1.3  -      120         0s",
            ]
        );
    }

    #[test]
    fn rows_and_primaries_tables_are_aligned() {
        let row = |secondary, data: &[u8]| {
            let (data_text, encoding) = RowInfo::encode_data(data);
            RowInfo {
                primary: "players".into(),
                secondary,
                owner: "0123456789abcdef".into(),
                node: "node-1".into(),
                version: 17,
                updated_at_ms: 0,
                data: data_text,
                encoding,
                size: data.len(),
            }
        };
        let long = "x".repeat(2000);
        let t = rows_table(&[
            row(3, b"alice"),
            row(12, &[0, 0xff]),
            row(4, long.as_bytes()),
            row(5, b"a\nb"),
        ]);
        assert_eq!(
            t[0],
            "KEY         OWNER             NODE    VERSION     SIZE  DATA"
        );
        assert_eq!(
            t[1],
            "players/3   0123456789abcdef  node-1       17      5 B  alice"
        );
        assert_eq!(
            t[2],
            "players/12  0123456789abcdef  node-1       17      2 B  0x00ff"
        );
        assert!(t[3].contains("  2.0 KiB  xxx"), "{}", t[3]);
        assert!(t[3].ends_with('…'));
        assert_eq!(
            t[3].chars().count(),
            t[1].chars().count() - 5 + MAX_DATA_CELL
        );
        assert!(t[4].ends_with("a\\nb"), "{}", t[4]);

        let p = primaries_table(&[
            PrimaryInfo {
                primary: "players".into(),
                rows: 1200,
                nodes: vec!["node-1".into(), "node-2".into()],
            },
            PrimaryInfo {
                primary: "cloud.nodes".into(),
                rows: 3,
                nodes: vec!["node-1".into()],
            },
        ]);
        assert_eq!(
            p,
            vec![
                "PRIMARY      ROWS  NODES",
                "players      1200  node-1,node-2",
                "cloud.nodes     3  node-1",
            ]
        );
    }

    #[test]
    fn status_reads_as_a_list() {
        let s = StatusInfo {
            node: node("node-1", true, true, true, 12),
            version: "0.1.0".into(),
            uptime_secs: 3 * 3600 + 125,
            listen: "127.0.0.1:7946".into(),
            fingerprint: "sha256:ab".into(),
            host: "node-1".into(),
            members: 3,
            linked: 2,
            subscriptions: 4,
            data_bytes: 2048,
        };
        let l = status_lines(&s);
        assert_eq!(l[0], "node           node-1 ★ host");
        assert!(l.contains(&"uptime         3h02m".to_owned()), "{l:?}");
        assert!(l.contains(&"clients        12/10000".to_owned()), "{l:?}");
        assert!(
            l.contains(&"rows           36 (2.0 KiB)".to_owned()),
            "{l:?}"
        );
        assert!(l.contains(&"mesh           3 members, 2 linked, host node-1".to_owned()));
    }

    #[test]
    fn sizes_and_ages_read_well() {
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(1023), "1023 B");
        assert_eq!(format_bytes(1024), "1.0 KiB");
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(35_861_299), "34.2 MiB");
        assert_eq!(format_bytes(5 << 30), "5.0 GiB");
        assert_eq!(format_bytes(u64::MAX), "16384.0 PiB");
        assert_eq!(format_age(0), "0s");
        assert_eq!(format_age(59_999), "59s");
        assert_eq!(format_age(60_000), "1m00s");
        assert_eq!(format_age(192_000), "3m12s");
        assert_eq!(format_age(3_600_000 + 5 * 60_000), "1h05m");
        assert_eq!(format_age(3 * 86_400_000 + 4 * 3_600_000 + 1), "3d04h");
        assert!(format_age(u64::MAX).ends_with('h'));
    }

    #[test]
    fn progress_has_a_bar_on_terminals_only() {
        assert_eq!(
            progress_line("node-3", 412, 588, true),
            "draining node-3 [########------------] 412/1000 moved, 588 left"
        );
        assert_eq!(
            progress_line("node-3", 0, 0, true),
            "draining node-3 [####################] 0/0 moved, 0 left"
        );
        assert_eq!(
            progress_line("node-3", 412, 588, false),
            "draining node-3: 412/1000 moved, 588 left"
        );
        // Absurd counts neither overflow nor overfill the bar.
        assert!(progress_line("n", usize::MAX, usize::MAX, true)
            .starts_with("draining n [####################] "));
    }
}
