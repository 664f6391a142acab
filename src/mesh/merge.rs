//! Merging get pages from several nodes into one page in the global `(key, owner)` order,
//! so that following cursors visits every row exactly once.

use crate::proto::{Cursor, GetPage, NodeId, Row};

/// Approximate wire size of a row, as the store counts it for the download limit.
fn row_size(row: &Row) -> usize {
    row.key.primary.len() + row.data.len() + 48
}

/// Merges the answers to one query. `answers` holds each node's page, or `None` when the
/// node did not answer in time (it is listed in `incomplete`).
///
/// Each node returned the rows after the same cursor, in order, cut by the same limits. A
/// node that has more rows than it returned bounds the merged page: no row past its last
/// returned row may be included, or that node's unreturned rows before it would be skipped.
pub fn merge_pages(
    answers: Vec<(NodeId, Option<GetPage>)>,
    max_rows: usize,
    max_bytes: usize,
) -> GetPage {
    let mut out = GetPage::default();
    let mut rows: Vec<Row> = Vec::new();
    let mut bound: Option<(crate::proto::Key, crate::proto::ClientId)> = None;
    for (node, answer) in answers {
        let Some(page) = answer else {
            out.incomplete.push(node);
            continue;
        };
        out.incomplete.extend(page.incomplete);
        // The node's cursor is where its answer stopped: the last row it returned, or the
        // last it looked at when its work bound cut a page short of rows.
        if let Some(next) = &page.next {
            let id = (next.key.clone(), next.owner);
            if bound.as_ref().is_none_or(|b| id < *b) {
                bound = Some(id);
            }
        }
        rows.extend(page.rows);
    }
    rows.sort_by(|a, b| (&a.key, a.owner, b.version).cmp(&(&b.key, b.owner, a.version)));
    // The same row from two nodes (possible while a client moves): keep the newest.
    rows.dedup_by(|later, kept| later.key == kept.key && later.owner == kept.owner);

    let mut bytes = 0;
    let mut cut = false;
    for row in rows {
        let beyond_bound = bound
            .as_ref()
            .is_some_and(|b| (&row.key, row.owner) > (&b.0, b.1));
        let full = out.rows.len() >= max_rows
            || (!out.rows.is_empty() && bytes + row_size(&row) > max_bytes);
        if beyond_bound || full {
            cut = true;
            break;
        }
        bytes += row_size(&row);
        out.rows.push(row);
    }
    if cut || bound.is_some() {
        // With no row merged, continue after the bound: some node has more past it.
        out.next = match out.rows.last() {
            Some(r) => Some(Cursor {
                key: r.key.clone(),
                owner: r.owner,
            }),
            None => bound.map(|(key, owner)| Cursor { key, owner }),
        };
    }
    out.incomplete.sort();
    out.incomplete.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{ClientId, Key};
    use bytes::Bytes;

    fn row(sec: u32, owner: u64, version: u64) -> Row {
        Row {
            key: Key::new("k", sec),
            owner: ClientId(owner),
            node: NodeId(0),
            data: Bytes::new(),
            version,
            updated_at_ms: 0,
        }
    }

    fn page(rows: Vec<Row>, more: bool) -> GetPage {
        let next = if more {
            rows.last().map(|r| Cursor {
                key: r.key.clone(),
                owner: r.owner,
            })
        } else {
            None
        };
        GetPage {
            rows,
            next,
            incomplete: vec![],
        }
    }

    #[test]
    fn a_node_with_more_rows_bounds_the_page() {
        // Node 1 stopped early (byte limit) after row 2 but has row 3; node 2 has 4 and 5.
        let merged = merge_pages(
            vec![
                (
                    NodeId(1),
                    Some(page(vec![row(1, 1, 1), row(2, 1, 1)], true)),
                ),
                (
                    NodeId(2),
                    Some(page(vec![row(4, 2, 1), row(5, 2, 1)], false)),
                ),
            ],
            100,
            1 << 20,
        );
        let secs: Vec<u32> = merged.rows.iter().map(|r| r.key.secondary).collect();
        assert_eq!(
            secs,
            vec![1, 2],
            "row 4 must wait until node 1's row 3 is read"
        );
        assert_eq!(merged.next.expect("more").key, Key::new("k", 2));
    }

    #[test]
    fn row_limit_cuts_and_duplicates_keep_the_newest() {
        let merged = merge_pages(
            vec![
                (
                    NodeId(1),
                    Some(page(vec![row(1, 1, 5), row(3, 1, 1)], false)),
                ),
                (
                    NodeId(2),
                    Some(page(vec![row(1, 1, 7), row(2, 2, 1)], false)),
                ),
                (NodeId(3), None),
            ],
            2,
            1 << 20,
        );
        assert_eq!(merged.rows.len(), 2);
        assert_eq!(merged.rows[0].version, 7);
        assert_eq!(merged.rows[1].key.secondary, 2);
        assert_eq!(merged.next.expect("cut").key, Key::new("k", 2));
        assert_eq!(merged.incomplete, vec![NodeId(3)]);
    }

    #[test]
    fn everything_fits_means_no_cursor() {
        let merged = merge_pages(
            vec![
                (NodeId(1), Some(page(vec![row(1, 1, 1)], false))),
                (NodeId(2), Some(page(vec![], false))),
            ],
            10,
            1 << 20,
        );
        assert_eq!(merged.rows.len(), 1);
        assert!(merged.next.is_none());
    }

    #[test]
    fn a_page_cut_by_work_with_no_row_still_bounds_and_continues() {
        // Node 1 looked at rows up to secondary 7 without a match and stopped (work bound);
        // node 2 has rows 9 and 10. Nothing may be returned past 7 yet, and paging goes on.
        let cut = GetPage {
            rows: vec![],
            next: Some(Cursor {
                key: Key::new("k", 7),
                owner: ClientId(1),
            }),
            incomplete: vec![],
        };
        let merged = merge_pages(
            vec![
                (NodeId(1), Some(cut)),
                (
                    NodeId(2),
                    Some(page(vec![row(9, 2, 1), row(10, 2, 1)], false)),
                ),
            ],
            100,
            1 << 20,
        );
        assert!(merged.rows.is_empty());
        let next = merged.next.expect("paging continues");
        assert_eq!((next.key, next.owner), (Key::new("k", 7), ClientId(1)));
    }
}
