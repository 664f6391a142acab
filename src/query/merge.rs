//! Merging several nodes' answers to one query into one page in the query's global order,
//! so that following cursors visits every matching row exactly once.

use std::cmp::Ordering;
use std::collections::HashMap;

use super::eval::parse_object;
use super::{cursor_at, Compiled, Object, Place};
use crate::proto::{ClientId, GetPage, Key, NodeId, QueryPage, Row};

/// Approximate wire size of a row, as the store counts it for the download limit.
fn row_size(row: &Row) -> usize {
    row.key.primary.len() + row.data.len() + 48
}

/// Merges the answers to one query. `answers` holds each node's page, or `None` when the
/// node did not answer in time (it is listed in `incomplete`).
///
/// Each node returned its first matches after the same cursor, in the query's order, cut
/// by the same limits, with `next` naming the last row it returned (or, with no sort, the
/// last row it looked at). A node that has more bounds the merged page: no row past its
/// `next` may be included, or that node's unreturned rows before it would be skipped.
pub fn merge(
    query: &Compiled,
    answers: Vec<(NodeId, Option<GetPage>)>,
    max_rows: usize,
    max_bytes: usize,
) -> QueryPage {
    let mut out = QueryPage::default();
    // The same row from two nodes (possible while a client moves): keep the newest.
    let mut newest: HashMap<(Key, ClientId), Row> = HashMap::new();
    // Each bounding node's `next`, and the sort values of its row when the node returned
    // it (a sorted query's `next` is always its last returned row).
    let mut bounds: Vec<(Key, ClientId, Option<Object>)> = Vec::new();
    for (node, answer) in answers {
        let Some(page) = answer else {
            out.incomplete.push(node);
            continue;
        };
        out.incomplete.extend(page.incomplete);
        if let Some(next) = &page.next {
            let row = page
                .rows
                .iter()
                .find(|r| r.key == next.key && r.owner == next.owner);
            if !query.sort.is_empty() && row.is_none() {
                // A sorted answer whose stop is not one of its rows cannot be placed in
                // the order: leave its rows out and say so rather than risk a gap.
                out.incomplete.push(node);
                continue;
            }
            let obj = row.and_then(|r| parse_object(&r.data));
            bounds.push((next.key.clone(), next.owner, obj));
        }
        for row in page.rows {
            match newest.get(&(row.key.clone(), row.owner)) {
                Some(kept) if kept.version >= row.version => {}
                _ => {
                    newest.insert((row.key.clone(), row.owner), row);
                }
            }
        }
    }
    let bound: Option<Place<'_>> = bounds
        .iter()
        .map(|(key, owner, obj)| query.place(obj.as_ref(), &key.primary, key.secondary, *owner))
        .min_by(|a, b| a.cmp(b, &query.sort));

    let rows: Vec<Row> = newest.into_values().collect();
    let objs: Vec<Option<Object>> = if query.sort.is_empty() {
        vec![None; rows.len()]
    } else {
        rows.iter().map(|r| parse_object(&r.data)).collect()
    };
    let mut order: Vec<(Place<'_>, usize)> = rows
        .iter()
        .zip(&objs)
        .enumerate()
        .map(|(i, (r, o))| {
            (
                query.place(o.as_ref(), &r.key.primary, r.key.secondary, r.owner),
                i,
            )
        })
        .collect();
    order.sort_by(|a, b| a.0.cmp(&b.0, &query.sort));

    let mut bytes = 0;
    let mut cut = false;
    let mut last: Option<Place<'_>> = None;
    for (place, i) in order {
        let row = &rows[i];
        let beyond = bound
            .as_ref()
            .is_some_and(|b| place.cmp(b, &query.sort) == Ordering::Greater);
        let full = out.rows.len() >= max_rows
            || (!out.rows.is_empty() && bytes + row_size(row) > max_bytes);
        if beyond || full {
            cut = true;
            break;
        }
        bytes += row_size(row);
        out.rows.push(row.clone());
        last = Some(place);
    }
    if cut || bound.is_some() {
        // With no row merged, continue after the bound: some node has more past it.
        out.next = last.as_ref().or(bound.as_ref()).map(cursor_at);
    }
    out.incomplete.sort();
    out.incomplete.dedup();
    out
}
