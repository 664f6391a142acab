//! Queries over this node's own rows: the matches after a cursor, in the query's order,
//! cut by the same limits as a get (rows, bytes, rows looked at). The asking node merges
//! such pages from every node that holds rows (`query::merge`).

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use super::{normalize_specs, row_wire_size, Entry, FilterOp, Store};
use crate::proto::{ClientId, Cursor, GetPage, Key, KeySpec, Row, RowQuery, Value, WireError};
use crate::query::{eval, parse_object, Compiled, Object, Place, SortVal};

/// Most sort indexes one node keeps; past it, the least recently used is dropped.
const MAX_INDEXES: usize = 16;

/// A number ordered by `f64::total_cmp` (as the query's order has it).
#[derive(Debug, Clone, Copy)]
struct Num(f64);

impl PartialEq for Num {
    fn eq(&self, other: &Self) -> bool {
        self.0.total_cmp(&other.0) == Ordering::Equal
    }
}
impl Eq for Num {}
impl PartialOrd for Num {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Num {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// A sort value as an index keeps it, in the query's ascending order: null < booleans <
/// numbers < strings < missing (variant order).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum IndexVal {
    Null,
    Bool(bool),
    Num(Num),
    Str(String),
    Missing,
}

impl IndexVal {
    fn of(v: Option<SortVal<'_>>) -> IndexVal {
        match v {
            None => IndexVal::Missing,
            Some(SortVal::Null) => IndexVal::Null,
            Some(SortVal::Bool(b)) => IndexVal::Bool(b),
            Some(SortVal::Num(n)) => IndexVal::Num(Num(n)),
            Some(SortVal::Str(s)) => IndexVal::Str(s.to_owned()),
        }
    }

    fn of_cursor(v: Option<&Value>) -> IndexVal {
        IndexVal::of(v.map(SortVal::of_value))
    }

    fn of_entry(field: &str, entry: &Entry) -> IndexVal {
        IndexVal::of(
            object(entry)
                .and_then(|o| eval::lookup(o, field))
                .and_then(SortVal::of_json),
        )
    }
}

/// The rows under one primary key in the order of one field.
#[derive(Debug, Default)]
struct SortIndex {
    order: BTreeSet<(IndexVal, u32, ClientId)>,
    of: HashMap<(u32, ClientId), IndexVal>,
    /// When a query last used it (the store's query count), for eviction.
    used: u64,
}

impl SortIndex {
    fn put(&mut self, secondary: u32, owner: ClientId, val: IndexVal) {
        if let Some(old) = self.of.insert((secondary, owner), val.clone()) {
            self.order.remove(&(old, secondary, owner));
        }
        self.order.insert((val, secondary, owner));
    }

    fn remove(&mut self, secondary: u32, owner: ClientId) {
        if let Some(old) = self.of.remove(&(secondary, owner)) {
            self.order.remove(&(old, secondary, owner));
        }
    }
}

/// World units per side of a grid cell.
const CELL: f64 = 64.0;
/// Most cells an area query visits through a grid; a larger area is scanned.
const MAX_CELLS: i64 = 4096;

/// The cell of a row's position, when it has one (numbers `x` and `y`).
fn cell_of(entry: &Entry) -> Option<(i64, i64)> {
    let obj = object(entry)?;
    let (x, y) = (obj.get("x")?.as_f64()?, obj.get("y")?.as_f64()?);
    // `as` saturates: far-away positions share the edge cells, still found there.
    Some(((x / CELL).floor() as i64, (y / CELL).floor() as i64))
}

/// The rows under one primary key by grid cell of their `x`, `y` fields (area of interest).
#[derive(Debug, Default)]
struct Grid {
    cells: HashMap<(i64, i64), BTreeSet<(u32, ClientId)>>,
    of: HashMap<(u32, ClientId), (i64, i64)>,
    /// When a query last used it, for eviction.
    used: u64,
}

impl Grid {
    fn put(&mut self, secondary: u32, owner: ClientId, cell: Option<(i64, i64)>) {
        self.remove(secondary, owner);
        if let Some(cell) = cell {
            self.cells
                .entry(cell)
                .or_default()
                .insert((secondary, owner));
            self.of.insert((secondary, owner), cell);
        }
    }

    fn remove(&mut self, secondary: u32, owner: ClientId) {
        if let Some(cell) = self.of.remove(&(secondary, owner)) {
            if let Some(set) = self.cells.get_mut(&cell) {
                set.remove(&(secondary, owner));
                if set.is_empty() {
                    self.cells.remove(&cell);
                }
            }
        }
    }
}

/// The box a filter confines every match to, when its top level requires an area.
fn area_of(filter: &crate::query::Filter) -> Option<(f64, f64, f64, f64)> {
    use crate::query::Filter;
    match filter {
        Filter::Near(c, r) => Some((c.x - r, c.y - r, c.x + r, c.y + r)),
        Filter::Within(min, max) => Some((min.x, min.y, max.x, max.y)),
        Filter::And(parts) => parts.iter().find_map(area_of),
        _ => None,
    }
}

/// A node's sort indexes, by `(primary, field)`. Built the first time a sorted query over
/// a whole primary asks for one, then kept up to date on every change of a row under that
/// primary (which parses its data once: the cost falls on rows someone sorts, only).
#[derive(Debug, Default)]
pub(super) struct Indexes {
    by: HashMap<(String, String), SortIndex>,
    /// Grids built by area queries, by primary.
    grids: HashMap<String, Grid>,
    /// Queries that used an index so far (the eviction clock).
    clock: u64,
}

impl Indexes {
    /// A row under `primary` is gone.
    pub(super) fn remove(&mut self, primary: &str, secondary: u32, owner: ClientId) {
        for ((p, _), idx) in self.by.iter_mut() {
            if p == primary {
                idx.remove(secondary, owner);
            }
        }
        if let Some(grid) = self.grids.get_mut(primary) {
            grid.remove(secondary, owner);
        }
    }

    fn has_primary(&self, primary: &str) -> bool {
        self.grids.contains_key(primary) || self.by.keys().any(|(p, _)| p == primary)
    }
}

fn invalid(e: crate::query::QueryError) -> WireError {
    WireError::InvalidQuery {
        reason: e.to_string(),
    }
}

/// The data of `entry` as an object, parsed once per version of the row.
fn object(entry: &Entry) -> Option<&Object> {
    entry
        .parsed
        .get_or_init(|| parse_object(&entry.data).map(Arc::new))
        .as_deref()
}

/// A sorted query that would look at more than `max` rows on this node (it has `rows` under
/// the query's keys).
fn scan_refused(rows: usize, max: u32) -> WireError {
    WireError::TooLarge {
        what: "the rows one node must look at for a sorted query \
               (narrow its keys or its filter, or sort nothing to page in key order)"
            .into(),
        size: rows as u64,
        max: u64::from(max),
    }
}

/// Matches with their place in the query's order.
type Found<'a> = Vec<(Place<'a>, &'a Entry)>;

/// Orders one group of equal first sort values by the rest of the order and appends it.
fn flush_group<'a>(group: &mut Found<'a>, found: &mut Found<'a>, sort: &[crate::proto::SortKey]) {
    group.sort_by(|a, b| a.0.cmp(&b.0, sort));
    found.append(group);
}

fn row_of(primary: &str, secondary: u32, owner: ClientId, entry: &Entry) -> Row {
    Row {
        key: Key::new(primary, secondary),
        owner,
        node: entry.node,
        data: entry.data.clone(),
        version: entry.version,
        updated_at_ms: entry.updated_at_ms,
    }
}

impl Store {
    /// The row under `key` of `owner` was created or replaced: indexes of its primary
    /// place it anew.
    pub(super) fn reindex(&mut self, key: &Key, owner: ClientId) {
        if !self.indexes.has_primary(&key.primary) {
            return;
        }
        let Some(entry) = self
            .rows
            .get(key.primary.as_str())
            .and_then(|m| m.get(&key.secondary))
            .and_then(|m| m.get(&owner))
        else {
            return;
        };
        for ((p, field), idx) in self.indexes.by.iter_mut() {
            if *p == key.primary {
                idx.put(key.secondary, owner, IndexVal::of_entry(field, entry));
            }
        }
        if let Some(grid) = self.indexes.grids.get_mut(key.primary.as_str()) {
            grid.put(key.secondary, owner, cell_of(entry));
        }
    }

    /// The grid of `primary`, built now if there is none.
    fn grid_for(&mut self, primary: &str) {
        let idx = &mut self.indexes;
        idx.clock += 1;
        if !idx.grids.contains_key(primary) {
            if idx.grids.len() >= MAX_INDEXES {
                let oldest = idx
                    .grids
                    .iter()
                    .min_by_key(|(_, g)| g.used)
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    idx.grids.remove(&k);
                }
            }
            let mut built = Grid::default();
            if let Some(by_secondary) = self.rows.get(primary) {
                for (secondary, by_owner) in by_secondary {
                    for (owner, entry) in by_owner {
                        built.put(*secondary, *owner, cell_of(entry));
                    }
                }
            }
            idx.grids.insert(primary.to_owned(), built);
        }
        let clock = idx.clock;
        if let Some(g) = idx.grids.get_mut(primary) {
            g.used = clock;
        }
    }

    /// An area query over one whole primary, in key order: only the rows in the grid cells
    /// the area touches are looked at (then the whole filter decides), with the same
    /// limits and paging as [`Store::query_in_key_order`].
    fn query_area(
        &mut self,
        q: &Compiled,
        primary: &str,
        cells: (i64, i64, i64, i64),
        max_rows: usize,
    ) -> GetPage {
        self.grid_for(primary);
        let (Some(grid), Some(by_secondary)) =
            (self.indexes.grids.get(primary), self.rows.get(primary))
        else {
            return GetPage::default();
        };
        let (x0, y0, x1, y1) = cells;
        let mut candidates: Vec<(u32, ClientId)> = Vec::new();
        for cx in x0..=x1 {
            for cy in y0..=y1 {
                if let Some(set) = grid.cells.get(&(cx, cy)) {
                    candidates.extend(set.iter().copied());
                }
            }
        }
        candidates.sort_unstable();
        let limits = &self.limits;
        let max_scan = (limits.max_scan_rows as usize).max(1);
        let start = q.start.as_ref();
        let mut page = GetPage::default();
        let (mut bytes, mut scanned) = (0usize, 0usize);
        let mut last_seen: Option<(u32, ClientId)> = None;
        for (secondary, owner) in candidates {
            if start.is_some_and(|c| {
                (primary, secondary, owner) <= (c.key.primary.as_str(), c.key.secondary, c.owner)
            }) {
                continue;
            }
            let Some(entry) = by_secondary.get(&secondary).and_then(|m| m.get(&owner)) else {
                continue;
            };
            if scanned >= max_scan {
                page.next = last_seen.map(|(s, o)| Cursor {
                    key: Key::new(primary, s),
                    owner: o,
                });
                return page;
            }
            scanned += 1;
            last_seen = Some((secondary, owner));
            if !q.matches(object(entry)) {
                continue;
            }
            let size = row_wire_size(primary, &entry.data);
            if page.rows.len() >= max_rows
                || (!page.rows.is_empty() && bytes + size > limits.max_get_bytes as usize)
            {
                page.next = page.rows.last().map(|r| Cursor {
                    key: r.key.clone(),
                    owner: r.owner,
                });
                return page;
            }
            bytes += size;
            page.rows.push(row_of(primary, secondary, owner, entry));
        }
        page
    }

    /// The index of `primary` by `field`, built now if there is none.
    fn index_for(&mut self, primary: &str, field: &str) -> &SortIndex {
        let idx = &mut self.indexes;
        idx.clock += 1;
        let id = (primary.to_owned(), field.to_owned());
        if !idx.by.contains_key(&id) {
            if idx.by.len() >= MAX_INDEXES {
                let oldest = idx
                    .by
                    .iter()
                    .min_by_key(|(_, i)| i.used)
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    idx.by.remove(&k);
                }
            }
            let mut built = SortIndex::default();
            if let Some(by_secondary) = self.rows.get(primary) {
                for (secondary, by_owner) in by_secondary {
                    for (owner, entry) in by_owner {
                        built.put(*secondary, *owner, IndexVal::of_entry(field, entry));
                    }
                }
            }
            idx.by.insert(id.clone(), built);
        }
        let clock = idx.clock;
        let index = idx.by.entry(id).or_default();
        index.used = clock;
        index
    }

    /// This node's rows matching `query`, after its cursor, in its order. The page's `next`
    /// is set when more may match here: it names the last row returned, or (with no sort)
    /// the last row looked at when the scan bound cut the page.
    ///
    /// A sorted query must look at every row under its keys to know the first ones: when
    /// those are more than `max_scan_rows` it is refused with `TooLarge` rather than
    /// answered wrongly.
    pub fn query(&mut self, caller: ClientId, query: &RowQuery) -> Result<GetPage, WireError> {
        let limits = &self.limits;
        if query.keys.len() > limits.max_keys_per_query as usize {
            return Err(WireError::TooManyKeys {
                count: query.keys.len().try_into().unwrap_or(u32::MAX),
                max: limits.max_keys_per_query,
            });
        }
        if query.keys.is_empty() {
            return Err(WireError::InvalidQuery {
                reason: "it names no keys (name a primary key, or primary/secondary)".into(),
            });
        }
        let client = self.clients.get(&caller).ok_or(WireError::NotFound)?;
        for spec in &query.keys {
            spec.validate().map_err(|e| WireError::InvalidKey {
                reason: e.to_string(),
            })?;
            Self::check_access(
                client,
                &self.filters,
                FilterOp::Get,
                &spec.primary,
                spec.secondary,
            )?;
        }
        let compiled = Compiled::new(query).map_err(invalid)?;
        let max_rows = match query.limit {
            0 => limits.max_get_rows,
            n => n.min(limits.max_get_rows),
        }
        .max(1) as usize;
        if compiled.sort.is_empty() {
            let specs = normalize_specs(&query.keys);
            // One whole primary and an area every match must lie in: through the grid,
            // unless the area spans too many cells to pay.
            if let ([spec], Some((ax0, ay0, ax1, ay1))) =
                (specs.as_slice(), area_of(&compiled.filter))
            {
                let cell = |v: f64| (v / CELL).floor() as i64;
                let cells = (cell(ax0), cell(ay0), cell(ax1), cell(ay1));
                let span = |lo: i64, hi: i64| hi.saturating_sub(lo).saturating_add(1);
                let count = span(cells.0, cells.2).saturating_mul(span(cells.1, cells.3));
                if spec.secondary.is_none() && (1..=MAX_CELLS).contains(&count) {
                    let primary = spec.primary.clone();
                    return Ok(self.query_area(&compiled, &primary, cells, max_rows));
                }
            }
            return Ok(self.query_in_key_order(&compiled, &specs, max_rows));
        }
        let specs = normalize_specs(&query.keys);
        // One whole primary (the common case: `servers`): walk its index in the sort order
        // and stop once the page is full, instead of looking at every row.
        if let [spec] = specs.as_slice() {
            if spec.secondary.is_none() {
                let primary = spec.primary.clone();
                return self.query_indexed(&compiled, &primary, max_rows);
            }
        }
        self.check_sorted_scan(&specs)?;
        let specs = normalize_specs(&query.keys);
        Ok(self.query_sorted(&compiled, &specs, max_rows))
    }

    /// The rows under `spec`, in `(secondary, owner)` order, from `lo` on.
    fn rows_in<'a>(
        &'a self,
        spec: &'a KeySpec,
        lo: u32,
    ) -> impl Iterator<Item = (u32, ClientId, &'a Entry)> + 'a {
        let hi = spec.secondary.unwrap_or(u32::MAX);
        self.rows
            .get(spec.primary.as_str())
            .into_iter()
            .flat_map(move |by_secondary| {
                by_secondary
                    .range(lo.min(hi)..=hi)
                    .flat_map(|(s, by_owner)| by_owner.iter().map(move |(o, e)| (*s, *o, e)))
            })
    }

    /// No sort: `(key, owner)` order, so a page can stop anywhere and the next continue
    /// there, exactly as a get pages.
    fn query_in_key_order(&self, q: &Compiled, specs: &[&KeySpec], max_rows: usize) -> GetPage {
        let limits = &self.limits;
        let max_scan = (limits.max_scan_rows as usize).max(1);
        let start = q.start.as_ref();
        let mut page = GetPage::default();
        let mut bytes = 0usize;
        let mut scanned = 0usize;
        let mut last_seen: Option<(&str, u32, ClientId)> = None;
        for spec in specs {
            let primary = spec.primary.as_str();
            let mut lo = spec.secondary.unwrap_or(0);
            if let Some(c) = start {
                match c.key.primary.as_str().cmp(primary) {
                    std::cmp::Ordering::Greater => continue,
                    std::cmp::Ordering::Equal => lo = lo.max(c.key.secondary),
                    std::cmp::Ordering::Less => {}
                }
                if c.key.primary == primary && spec.secondary.is_some_and(|s| c.key.secondary > s) {
                    continue;
                }
            }
            for (secondary, owner, entry) in self.rows_in(spec, lo) {
                if start.is_some_and(|c| {
                    (primary, secondary, owner)
                        <= (c.key.primary.as_str(), c.key.secondary, c.owner)
                }) {
                    continue;
                }
                if scanned >= max_scan {
                    page.next = last_seen.map(|(p, s, o)| Cursor {
                        key: Key::new(p, s),
                        owner: o,
                    });
                    return page;
                }
                scanned += 1;
                last_seen = Some((primary, secondary, owner));
                if !q.matches(object(entry)) {
                    continue;
                }
                let size = row_wire_size(primary, &entry.data);
                let full = page.rows.len() >= max_rows
                    || (!page.rows.is_empty() && bytes + size > limits.max_get_bytes as usize);
                if full {
                    page.next = page.rows.last().map(|r| Cursor {
                        key: r.key.clone(),
                        owner: r.owner,
                    });
                    return page;
                }
                bytes += size;
                page.rows.push(row_of(primary, secondary, owner, entry));
            }
        }
        page
    }

    /// Sorted: every row under the keys is looked at (bounded by `max_scan_rows`), the
    /// first `max_rows` matches after the cursor kept.
    fn query_sorted(&self, q: &Compiled, specs: &[&KeySpec], max_rows: usize) -> GetPage {
        let start = q.start_place();
        let mut found: Vec<(Place<'_>, &Entry)> = Vec::new();
        for spec in specs {
            let primary = spec.primary.as_str();
            for (secondary, owner, entry) in self.rows_in(spec, spec.secondary.unwrap_or(0)) {
                let obj = object(entry);
                if !q.matches(obj) {
                    continue;
                }
                let place = q.place(obj, primary, secondary, owner);
                if start
                    .as_ref()
                    .is_some_and(|s| place.cmp(s, &q.sort) != Ordering::Greater)
                {
                    continue;
                }
                found.push((place, entry));
            }
        }
        let mut more = false;
        if found.len() > max_rows {
            found.select_nth_unstable_by(max_rows, |a, b| a.0.cmp(&b.0, &q.sort));
            found.truncate(max_rows);
            more = true;
        }
        found.sort_by(|a, b| a.0.cmp(&b.0, &q.sort));
        self.page_of(found, more)
    }

    /// A sorted query's page from its first matches (in order), `more` when others follow.
    fn page_of(&self, found: Vec<(Place<'_>, &Entry)>, mut more: bool) -> GetPage {
        let mut page = GetPage::default();
        let mut bytes = 0usize;
        for (place, entry) in &found {
            let size = row_wire_size(place.primary, &entry.data);
            if !page.rows.is_empty() && bytes + size > self.limits.max_get_bytes as usize {
                more = true;
                break;
            }
            bytes += size;
            page.rows
                .push(row_of(place.primary, place.secondary, place.owner, entry));
        }
        if more {
            page.next = page.rows.last().map(|r| Cursor {
                key: r.key.clone(),
                owner: r.owner,
            });
        }
        page
    }

    /// The walk through one primary's index by the first sort field: rows come in groups
    /// of equal first values, in the query's order of those values; each group's matches
    /// are ordered by the rest of the order, and the walk stops once the page is full.
    ///
    /// The walk looks at no more than `max_scan_rows` rows: a page it cannot fill by then
    /// is refused with `TooLarge` (as a scan of that many rows would be), never cut short.
    fn query_indexed(
        &mut self,
        q: &Compiled,
        primary: &str,
        max_rows: usize,
    ) -> Result<GetPage, WireError> {
        let first = &q.sort[0];
        let desc = first.descending;
        let from = q
            .start
            .as_ref()
            .map(|c| IndexVal::of_cursor(c.sort.first().and_then(Option::as_ref)));
        // Built (or refreshed in the eviction clock) with `&mut self`, then read.
        self.index_for(primary, &first.field);
        let Some(index) = self
            .indexes
            .by
            .get(&(primary.to_owned(), first.field.clone()))
        else {
            return Ok(GetPage::default());
        };
        let Some(by_secondary) = self.rows.get(primary) else {
            return Ok(GetPage::default());
        };
        let max_scan = self.limits.max_scan_rows as usize;
        let mut walked = 0usize;
        let lo = (IndexVal::Null, 0u32, ClientId(0));
        let missing = (IndexVal::Missing, 0u32, ClientId(0));
        let hi_of = |v: IndexVal| (v, u32::MAX, ClientId(u64::MAX));
        // The groups in the query's order, from the cursor's group on: missing values come
        // last in both directions.
        let walk: Box<dyn Iterator<Item = &(IndexVal, u32, ClientId)>> = match (desc, from) {
            (false, None) => Box::new(index.order.iter()),
            (false, Some(v)) => Box::new(index.order.range((v, 0, ClientId(0))..)),
            (true, None) => Box::new(
                index
                    .order
                    .range(lo.clone()..missing.clone())
                    .rev()
                    .chain(index.order.range(missing.clone()..)),
            ),
            (true, Some(IndexVal::Missing)) => Box::new(index.order.range(missing.clone()..)),
            (true, Some(v)) => Box::new(
                index
                    .order
                    .range(lo..=hi_of(v))
                    .rev()
                    .chain(index.order.range(missing..)),
            ),
        };
        let start = q.start_place();
        let mut found: Vec<(Place<'_>, &Entry)> = Vec::new();
        let mut group: Vec<(Place<'_>, &Entry)> = Vec::new();
        let mut group_val: Option<&IndexVal> = None;
        for (val, secondary, owner) in walk {
            if group_val != Some(val) {
                flush_group(&mut group, &mut found, &q.sort);
                if found.len() > max_rows {
                    break;
                }
                group_val = Some(val);
            }
            walked += 1;
            if walked > max_scan {
                return Err(scan_refused(index.of.len(), self.limits.max_scan_rows));
            }
            let Some(entry) = by_secondary.get(secondary).and_then(|m| m.get(owner)) else {
                continue;
            };
            let obj = object(entry);
            if !q.matches(obj) {
                continue;
            }
            let place = q.place(obj, primary, *secondary, *owner);
            if start
                .as_ref()
                .is_some_and(|s| place.cmp(s, &q.sort) != Ordering::Greater)
            {
                continue;
            }
            group.push((place, entry));
        }
        flush_group(&mut group, &mut found, &q.sort);
        let more = found.len() > max_rows;
        found.truncate(max_rows);
        Ok(self.page_of(found, more))
    }

    /// A sorted query must look at every row under its keys (the index only saves work when
    /// the page fills early): past `max_scan_rows` on this node it is refused.
    fn check_sorted_scan(&self, specs: &[&KeySpec]) -> Result<(), WireError> {
        let limits = &self.limits;
        let total: usize = specs
            .iter()
            .map(|spec| {
                let lo = spec.secondary.unwrap_or(0);
                let hi = spec.secondary.unwrap_or(u32::MAX);
                self.rows
                    .get(spec.primary.as_str())
                    .map_or(0, |m| m.range(lo..=hi).map(|(_, o)| o.len()).sum())
            })
            .sum();
        if total > limits.max_scan_rows as usize {
            return Err(scan_refused(total, limits.max_scan_rows));
        }
        Ok(())
    }
}
