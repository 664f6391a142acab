//! Zones: the world is a grid of cells, each owned by one node. The host computes the
//! map with [`assign`] and publishes it under `cloud.zones/0`; every node reads it to place
//! clients near their cell's owner and to hand over clients that walk into another node's
//! territory ([`ZoneMap::handover`]).
//!
//! Cell `(x, y)` covers world positions `[x·size, (x+1)·size) × [y·size, (y+1)·size)`; the
//! grid starts at the world origin. Cells are stored row-major (`index = y·width + x`).

use std::cmp::Reverse;

use serde::{Deserialize, Serialize};

use crate::proto::NodeId;

/// Most cells a grid may have. The map is one row (`cloud.zones/0`, 64 KiB by default) and
/// the host recomputes it on every join and loss; at 4096 cells the JSON is about 9 KiB with
/// ten nodes, and [`assign`] takes ~12 ms (release build) when a node joins a 10-node mesh.
pub const MAX_CELLS: u32 = 4096;

/// The zone grid as configured by the operator: how the world is cut into cells, and how far
/// past a border a client must walk before it is handed over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ZoneConfig {
    /// Side of one square cell, world units.
    pub cell_size: f32,
    /// Cells along x.
    pub width: u32,
    /// Cells along y.
    pub height: u32,
    /// Hysteresis distance, world units: a client is handed over only once it is farther
    /// than this from every cell of its current node, so border walkers stay put.
    pub margin: f32,
}

impl Default for ZoneConfig {
    fn default() -> Self {
        ZoneConfig {
            cell_size: 100.0,
            width: 8,
            height: 8,
            margin: 10.0,
        }
    }
}

impl ZoneConfig {
    /// Refuses grids the zone code cannot use (no cells, too many cells, a cell size that is
    /// not a positive number) and margins that defeat handover, so a config typo fails at
    /// start. The message names the field.
    pub fn validate(&self) -> Result<(), String> {
        check_grid(self.cell_size, self.width, self.height)?;
        if !(self.margin.is_finite() && self.margin >= 0.0) {
            return Err(format!(
                "zones margin must be a number >= 0, got {}",
                self.margin
            ));
        }
        // A margin of a whole cell would let a client cross a one-cell-wide zone unnoticed.
        if self.margin >= self.cell_size {
            return Err(format!(
                "zones margin ({}) must be smaller than cell_size ({})",
                self.margin, self.cell_size
            ));
        }
        Ok(())
    }
}

/// The grid rules shared by [`ZoneConfig::validate`] and [`ZoneMap::validate`].
fn check_grid(cell_size: f32, width: u32, height: u32) -> Result<(), String> {
    if !(cell_size.is_finite() && cell_size > 0.0) {
        return Err(format!(
            "zones cell_size must be a number > 0, got {cell_size}"
        ));
    }
    if width == 0 || height == 0 {
        return Err(format!(
            "zones width and height must be at least 1, got {width}x{height}"
        ));
    }
    if u64::from(width) * u64::from(height) > u64::from(MAX_CELLS) {
        return Err(format!(
            "zones grid {width}x{height} has more than {MAX_CELLS} cells"
        ));
    }
    Ok(())
}

/// One cell of the grid, by column `x` and row `y`. Used as the unit of ownership.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Cell {
    /// Column, 0 at the world origin.
    pub x: u32,
    /// Row, 0 at the world origin.
    pub y: u32,
}

/// Who owns which cell, as published by the host under `cloud.zones/0`.
///
/// Invariant (checked by [`ZoneMap::validate`], which deserialization runs, and kept by
/// [`assign`]): a valid grid and exactly `width × height` owners.
///
/// The JSON form is meant for any client to read: node ids are hex strings as in
/// `cloud.nodes`, listed once, and each cell names its owner by index into that list:
///
/// ```json
/// {"epoch":3,"cell_size":100.0,"width":2,"height":1,
///  "nodes":["00000000000000000000000000000001","00000000000000000000000000000002"],
///  "owners":[0,1]}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "ZoneMapJson", try_from = "ZoneMapJson")]
pub struct ZoneMap {
    /// Side of one cell, world units.
    pub cell_size: f32,
    /// Cells along x.
    pub width: u32,
    /// Cells along y.
    pub height: u32,
    /// Owner of each cell, row-major; `width × height` entries.
    pub owners: Vec<NodeId>,
    /// Grows by one with every assignment, so readers can tell a newer map from an older one
    /// arriving late.
    pub epoch: u64,
}

/// The published JSON form of [`ZoneMap`]: ids as hex (JavaScript cannot hold 128-bit
/// numbers) and each id once, so the row stays small.
#[derive(Debug, Serialize, Deserialize)]
struct ZoneMapJson {
    epoch: u64,
    cell_size: f32,
    width: u32,
    height: u32,
    /// Distinct owners, sorted, as 32 hex digits.
    nodes: Vec<String>,
    /// Row-major, an index into `nodes` per cell.
    owners: Vec<u32>,
}

impl From<ZoneMap> for ZoneMapJson {
    fn from(map: ZoneMap) -> Self {
        let mut nodes = map.owners.clone();
        nodes.sort();
        nodes.dedup();
        let owners = map
            .owners
            .iter()
            // Always found (nodes holds every owner); fewer than MAX_CELLS, so it fits a u32.
            .map(|o| nodes.binary_search(o).map_or(0, |i| i as u32))
            .collect();
        ZoneMapJson {
            epoch: map.epoch,
            cell_size: map.cell_size,
            width: map.width,
            height: map.height,
            nodes: nodes.iter().map(|id| format!("{:032x}", id.0)).collect(),
            owners,
        }
    }
}

impl TryFrom<ZoneMapJson> for ZoneMap {
    type Error = String;

    fn try_from(json: ZoneMapJson) -> Result<Self, String> {
        let nodes = json
            .nodes
            .iter()
            .map(|hex| parse_node_id(hex))
            .collect::<Result<Vec<_>, _>>()?;
        let owners = json
            .owners
            .iter()
            .map(|&i| {
                nodes.get(i as usize).copied().ok_or_else(|| {
                    format!(
                        "zone owner index {i} is past the {} nodes listed",
                        nodes.len()
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let map = ZoneMap {
            cell_size: json.cell_size,
            width: json.width,
            height: json.height,
            owners,
            epoch: json.epoch,
        };
        map.validate()?;
        Ok(map)
    }
}

/// A NodeId written as up to 32 hex digits (the form `cloud.nodes` uses).
fn parse_node_id(hex: &str) -> Result<NodeId, String> {
    // from_str_radix alone would accept a leading '+'.
    if hex.is_empty() || hex.len() > 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("zone node id {hex:?} is not 1 to 32 hex digits"));
    }
    u128::from_str_radix(hex, 16)
        .map(NodeId)
        .map_err(|e| format!("zone node id {hex:?}: {e}"))
}

/// Index of the cell along one axis holding world coordinate `v`, clamped into `0..n`.
fn axis_index(v: f64, cell_size: f32, n: u32) -> u32 {
    let f = (v / f64::from(cell_size)).floor();
    let last = n.saturating_sub(1);
    if f.is_nan() || f <= 0.0 {
        0
    } else if f >= f64::from(last) {
        last
    } else {
        // In 1..last, so the conversion is exact.
        f as u32
    }
}

impl ZoneMap {
    /// Checks the invariant the lookups rely on. Deserialization runs it, so a map read from
    /// `cloud.zones` can be used without further checks.
    pub fn validate(&self) -> Result<(), String> {
        check_grid(self.cell_size, self.width, self.height)?;
        let cells = self.width as usize * self.height as usize;
        if self.owners.len() != cells {
            return Err(format!(
                "zone map {}x{} needs {cells} owners, has {}",
                self.width,
                self.height,
                self.owners.len()
            ));
        }
        Ok(())
    }

    /// Row-major index of `cell`, clamped into the grid.
    fn index(&self, cell: Cell) -> usize {
        let x = cell.x.min(self.width.saturating_sub(1)) as usize;
        let y = cell.y.min(self.height.saturating_sub(1)) as usize;
        y * self.width as usize + x
    }

    /// The cell holding world position `(x, y)`. Positions outside the grid map to the
    /// nearest edge cell, so a client that wanders off the map still has an owner; NaN (a
    /// broken position report) maps to cell (0, 0).
    pub fn cell_of(&self, x: f32, y: f32) -> Cell {
        if x.is_nan() || y.is_nan() {
            return Cell { x: 0, y: 0 };
        }
        Cell {
            x: axis_index(f64::from(x), self.cell_size, self.width),
            y: axis_index(f64::from(y), self.cell_size, self.height),
        }
    }

    /// The node owning `cell` (clamped into the grid, like [`ZoneMap::cell_of`]).
    ///
    /// # Panics
    /// If the map breaks its invariant (`owners.len() != width × height`), which maps from
    /// [`assign`] or from JSON never do.
    pub fn owner(&self, cell: Cell) -> NodeId {
        self.owners[self.index(cell)]
    }

    /// The node owning the cell that holds world position `(x, y)`: the zone term of
    /// placement for a client reporting that position.
    pub fn owner_at(&self, x: f32, y: f32) -> NodeId {
        self.owner(self.cell_of(x, y))
    }

    /// The cells `node` owns, row-major (empty if none): for drawing zones and for tests.
    pub fn cells_of(&self, node: NodeId) -> Vec<Cell> {
        let width = self.width.max(1) as usize;
        self.owners
            .iter()
            .enumerate()
            .filter(|(_, owner)| **owner == node)
            .map(|(i, _)| Cell {
                x: (i % width) as u32,
                y: (i / width) as u32,
            })
            .collect()
    }

    /// `(x, y)` moved into the grid's rectangle (NaN to the origin), so distances from
    /// positions outside the map behave like those on its edge.
    fn clamp_point(&self, x: f32, y: f32) -> (f64, f64) {
        if x.is_nan() || y.is_nan() {
            return (0.0, 0.0);
        }
        let size = f64::from(self.cell_size);
        (
            f64::from(x).clamp(0.0, size * f64::from(self.width)),
            f64::from(y).clamp(0.0, size * f64::from(self.height)),
        )
    }

    /// Whether a client served by `current` at world position `(x, y)` should be handed
    /// over, and to whom.
    ///
    /// `Some(owner)` only if the position's cell belongs to another node *and* the position
    /// is farther than `margin` from every cell `current` owns. Between the border and
    /// `margin` beyond it the client stays where it is, on either side: a client walking
    /// along a border is never handed back and forth, and one that crosses is handed over
    /// once. Positions outside the grid count as the nearest point on its edge. A negative
    /// or NaN margin counts as 0.
    pub fn handover(&self, current: NodeId, x: f32, y: f32, margin: f32) -> Option<NodeId> {
        let owner = self.owner_at(x, y);
        if owner == current {
            return None;
        }
        let (px, py) = self.clamp_point(x, y);
        let margin = if margin.is_nan() {
            0.0
        } else {
            f64::from(margin).max(0.0)
        };
        let size = f64::from(self.cell_size);
        // Only cells overlapping the square of side 2·margin around the point can be within
        // margin of it, so look at those instead of the whole grid.
        // One more cell on the low side: a cell ending exactly at `px - margin` is within
        // margin, but `floor` puts that coordinate in the next cell.
        let (x0, x1) = (
            axis_index(px - margin, self.cell_size, self.width).saturating_sub(1),
            axis_index(px + margin, self.cell_size, self.width),
        );
        let (y0, y1) = (
            axis_index(py - margin, self.cell_size, self.height).saturating_sub(1),
            axis_index(py + margin, self.cell_size, self.height),
        );
        for cy in y0..=y1 {
            for cx in x0..=x1 {
                let cell = Cell { x: cx, y: cy };
                if self.owner(cell) != current {
                    continue;
                }
                // Distance from the point to the cell's rectangle (0 inside it).
                let (left, top) = (f64::from(cx) * size, f64::from(cy) * size);
                let dx = (left - px).max(px - (left + size)).max(0.0);
                let dy = (top - py).max(py - (top + size)).max(0.0);
                if dx.hypot(dy) <= margin {
                    return None;
                }
            }
        }
        Some(owner)
    }
}

/// Divides the grid of `config` among `nodes`, balancing load and keeping cells where they
/// were. The host runs it after a join, a loss or a load change and publishes the result.
///
/// `nodes` are the eligible nodes, each with a load weight (e.g. `1.0 + clients/capacity`;
/// NaN or non-positive weights count as 1.0). Each node's share of cells is proportional to
/// `1 / load`, rounded by largest remainder, and at least one cell each when there are at
/// least as many cells as nodes.
///
/// Stability: with a `previous` map of the same dimensions, a cell keeps its owner if that
/// owner is still in `nodes` and not above its share; only surplus cells and cells of
/// departed nodes move, to nodes short of their share, preferring cells next to the
/// receiver's own (so zones stay contiguous where possible). Without a usable previous map
/// (none, other dimensions, or no owner left) the cells are dealt out in contiguous runs
/// along a snake (boustrophedon) path, so every zone is connected.
///
/// The epoch is `previous.epoch + 1`, or 1. Deterministic: the same inputs give the same
/// map in any order of `nodes` (duplicated ids: the first one counts). `None` when `nodes`
/// is empty or the grid is unusable (see [`ZoneConfig::validate`]).
pub fn assign(
    config: &ZoneConfig,
    nodes: &[(NodeId, f64)],
    previous: Option<&ZoneMap>,
) -> Option<ZoneMap> {
    check_grid(config.cell_size, config.width, config.height).ok()?;
    let mut list = nodes.to_vec();
    // Stable sort, so of two entries for one id the first given is kept.
    list.sort_by_key(|entry| entry.0);
    list.dedup_by_key(|entry| entry.0);
    if list.is_empty() {
        return None;
    }
    let ids: Vec<NodeId> = list.iter().map(|entry| entry.0).collect();
    let loads: Vec<f64> = list
        .iter()
        .map(|&(_, load)| {
            if load.is_nan() || load <= 0.0 {
                1.0
            } else {
                load.clamp(1e-6, 1e12)
            }
        })
        .collect();

    let (width, height) = (config.width, config.height);
    let cells = width as usize * height as usize;
    // Previous owners as indices into `ids`; cells of departed nodes (or of a map of another
    // shape, which says nothing about this grid) start unowned.
    let kept: Vec<Option<usize>> = match previous {
        Some(p) if p.width == width && p.height == height && p.owners.len() == cells => p
            .owners
            .iter()
            .map(|owner| ids.binary_search(owner).ok())
            .collect(),
        _ => vec![None; cells],
    };
    let mut held = vec![0usize; ids.len()];
    for &i in kept.iter().flatten() {
        held[i] += 1;
    }
    let quota = quotas(cells, &loads, &held);
    let owners = if kept.iter().all(Option::is_none) {
        snake(width as usize, height as usize, &quota)
    } else {
        rebalance(width as usize, height as usize, kept, &quota)
    };
    Some(ZoneMap {
        cell_size: config.cell_size,
        width,
        height,
        owners: owners.into_iter().map(|i| ids[i]).collect(),
        epoch: previous.map_or(1, |p| p.epoch.saturating_add(1)),
    })
}

/// Cells per node: proportional to `1 / load`, rounded by largest remainder (ties to the
/// node holding more cells now, so rounding does not move cells, then to the lower id), then
/// topped up to one cell per node where the grid allows. Sums to `cells`.
fn quotas(cells: usize, loads: &[f64], held: &[usize]) -> Vec<usize> {
    let n = loads.len();
    if n == 0 {
        return Vec::new();
    }
    let inverse: Vec<f64> = loads.iter().map(|load| 1.0 / load).collect();
    let sum: f64 = inverse.iter().sum();
    let ideal: Vec<f64> = inverse.iter().map(|w| cells as f64 * w / sum).collect();
    let mut quota: Vec<usize> = ideal.iter().map(|x| x.floor() as usize).collect();
    // Rounding error could push the floors past the total; take back from the most generous.
    while quota.iter().sum::<usize>() > cells {
        let Some(j) = (0..n)
            .filter(|&j| quota[j] > 0)
            .max_by(|&a, &b| (quota[a] as f64 - ideal[a]).total_cmp(&(quota[b] as f64 - ideal[b])))
        else {
            break;
        };
        quota[j] -= 1;
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| {
        let (fa, fb) = (ideal[a] - ideal[a].floor(), ideal[b] - ideal[b].floor());
        fb.total_cmp(&fa)
            .then(held[b].cmp(&held[a]))
            .then(a.cmp(&b))
    });
    let mut left = cells.saturating_sub(quota.iter().sum());
    for &i in order.iter().cycle() {
        if left == 0 {
            break;
        }
        quota[i] += 1;
        left -= 1;
    }
    // Every node serves a zone if it can: an eligible node without cells would get no
    // zone-affine clients at all.
    if cells >= n {
        while let Some(empty) = quota.iter().position(|&q| q == 0) {
            let donor = (0..n).filter(|&j| quota[j] > 1).max_by(|&a, &b| {
                (quota[a] as f64 - ideal[a])
                    .total_cmp(&(quota[b] as f64 - ideal[b]))
                    .then(b.cmp(&a))
            });
            let Some(donor) = donor else { break };
            quota[donor] -= 1;
            quota[empty] += 1;
        }
    }
    quota
}

/// A fresh map: node `i` gets the next `quota[i]` cells of a snake path (left to right on
/// even rows, right to left on odd ones). Consecutive cells of the path are neighbours, so
/// each run, and therefore each zone, is connected.
fn snake(width: usize, height: usize, quota: &[usize]) -> Vec<usize> {
    let last = quota.len().saturating_sub(1);
    let mut runs = quota
        .iter()
        .enumerate()
        .flat_map(|(i, &q)| std::iter::repeat_n(i, q));
    let mut owners = vec![last; width * height];
    for y in 0..height {
        for k in 0..width {
            let x = if y % 2 == 0 { k } else { width - 1 - k };
            // The quotas sum to the cell count, so the runs never end early.
            owners[y * width + x] = runs.next().unwrap_or(last);
        }
    }
    owners
}

/// The 4-neighbours of cell index `c` in a `width × height` grid.
fn neighbours(width: usize, height: usize, c: usize) -> impl Iterator<Item = usize> {
    let (x, y) = (c % width, c / width);
    [
        (x > 0).then(|| c - 1),
        (x + 1 < width).then(|| c + 1),
        (y > 0).then(|| c - width),
        (y + 1 < height).then(|| c + width),
    ]
    .into_iter()
    .flatten()
}

/// Moves cells one at a time to nodes short of their quota, taking only unowned cells and
/// cells of nodes above their quota, until every node has exactly its quota.
///
/// Each step lowers the total shortfall by one, so it ends; and while some node is short,
/// the quotas summing to the cell count guarantee an unowned or surplus cell exists.
fn rebalance(
    width: usize,
    height: usize,
    mut owner: Vec<Option<usize>>,
    quota: &[usize],
) -> Vec<usize> {
    let mut count = vec![0usize; quota.len()];
    for &i in owner.iter().flatten() {
        count[i] += 1;
    }
    while count.iter().zip(quota).any(|(c, q)| c < q) {
        let step = adjacent_transfer(width, height, &owner, &count, quota)
            .or_else(|| seed_transfer(width, height, &owner, &count, quota));
        let Some((cell, to)) = step else { break };
        if let Some(from) = owner[cell] {
            count[from] -= 1;
        }
        owner[cell] = Some(to);
        count[to] += 1;
    }
    // Every cell is owned by now (see above); the fallback is never taken.
    owner.into_iter().map(|o| o.unwrap_or(0)).collect()
}

/// The best move of a movable cell to a short node it borders: unowned cells first (they
/// must go somewhere), then the node furthest short, then the cell touching most of the
/// receiver (compact zones), then the cell touching least of its giver (keeps the giver
/// connected), then the lowest index (determinism). `None` if no short node borders a
/// movable cell.
fn adjacent_transfer(
    width: usize,
    height: usize,
    owner: &[Option<usize>],
    count: &[usize],
    quota: &[usize],
) -> Option<(usize, usize)> {
    type Key = (u8, Reverse<usize>, usize, Reverse<usize>, usize, usize);
    let mut best: Option<(Key, (usize, usize))> = None;
    for (c, &from) in owner.iter().enumerate() {
        let rank = match from {
            None => 0,
            Some(s) if count[s] > quota[s] => 1,
            Some(_) => continue,
        };
        let touching = |node: Option<usize>| {
            neighbours(width, height, c)
                .filter(|&m| owner[m] == node)
                .count()
        };
        let giver_touch = if from.is_some() { touching(from) } else { 0 };
        for m in neighbours(width, height, c) {
            let Some(to) = owner[m] else { continue };
            if count[to] >= quota[to] {
                continue;
            }
            let key = (
                rank,
                Reverse(quota[to] - count[to]),
                to,
                Reverse(touching(Some(to))),
                giver_touch,
                c,
            );
            if best.as_ref().is_none_or(|(k, _)| key < *k) {
                best = Some((key, (c, to)));
            }
        }
    }
    best.map(|(_, step)| step)
}

/// A first cell for the short node furthest short when no short node borders a movable
/// cell (e.g. a node that just joined): the first unowned cell if any; else a cell of a node
/// over its quota that borders as many other such nodes as possible (so the newcomer can
/// grow into several givers' surplus without splitting its zone), with the most surplus
/// around it, then the least connected to its own owner (keeps the giver whole).
fn seed_transfer(
    width: usize,
    height: usize,
    owner: &[Option<usize>],
    count: &[usize],
    quota: &[usize],
) -> Option<(usize, usize)> {
    let to = (0..quota.len())
        .filter(|&i| count[i] < quota[i])
        .min_by_key(|&i| (Reverse(quota[i] - count[i]), i))?;
    if let Some(c) = owner.iter().position(Option::is_none) {
        return Some((c, to));
    }
    let surplus = |node: usize| count[node].saturating_sub(quota[node]);
    let cell = (0..owner.len())
        .filter_map(|c| {
            let from = owner[c].filter(|&s| surplus(s) > 0)?;
            let mut givers = vec![from];
            let mut same = 0;
            for m in neighbours(width, height, c) {
                match owner[m] {
                    Some(o) if o == from => same += 1,
                    Some(o) if surplus(o) > 0 && !givers.contains(&o) => givers.push(o),
                    _ => {}
                }
            }
            let around: usize = givers.iter().map(|&g| surplus(g)).sum();
            Some(((Reverse(givers.len()), Reverse(around), same, c), c))
        })
        .min()
        .map(|(_, c)| c)?;
    Some((cell, to))
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;

    use super::*;

    fn id(n: u8) -> NodeId {
        NodeId(u128::from(n) * 0x0101_0101_0101_0101_0101_0101_0101_0101)
    }

    fn equal(ns: &[u8]) -> Vec<(NodeId, f64)> {
        ns.iter().map(|&n| (id(n), 1.0)).collect()
    }

    fn counts(map: &ZoneMap) -> BTreeMap<NodeId, usize> {
        let mut out = BTreeMap::new();
        for o in &map.owners {
            *out.entry(*o).or_insert(0) += 1;
        }
        out
    }

    fn moved(before: &ZoneMap, after: &ZoneMap) -> usize {
        before
            .owners
            .iter()
            .zip(&after.owners)
            .filter(|(a, b)| a != b)
            .count()
    }

    /// How many 4-connected pieces the zone of `node` has (0 if it owns no cell).
    fn pieces(map: &ZoneMap, node: NodeId) -> usize {
        let mut left: BTreeSet<Cell> = map.cells_of(node).into_iter().collect();
        let mut pieces = 0;
        while let Some(start) = left.pop_first() {
            pieces += 1;
            let mut stack = vec![start];
            while let Some(c) = stack.pop() {
                let around = [
                    (c.x.wrapping_sub(1), c.y),
                    (c.x + 1, c.y),
                    (c.x, c.y.wrapping_sub(1)),
                    (c.x, c.y + 1),
                ];
                for (x, y) in around {
                    if left.remove(&Cell { x, y }) {
                        stack.push(Cell { x, y });
                    }
                }
            }
        }
        pieces
    }

    fn connected(map: &ZoneMap, node: NodeId) -> bool {
        pieces(map, node) <= 1
    }

    /// Left half (x < 4) owned by node 1, right half by node 2.
    fn halves() -> ZoneMap {
        let owners = (0..64)
            .map(|i| if i % 8 < 4 { id(1) } else { id(2) })
            .collect();
        ZoneMap {
            cell_size: 100.0,
            width: 8,
            height: 8,
            owners,
            epoch: 1,
        }
    }

    /// Follows a client along `path`, applying handovers; returns where it went.
    fn walk(map: &ZoneMap, start: NodeId, path: &[(f32, f32)]) -> Vec<NodeId> {
        let mut current = start;
        let mut handed = Vec::new();
        for &(x, y) in path {
            if let Some(next) = map.handover(current, x, y, 10.0) {
                current = next;
                handed.push(next);
            }
        }
        handed
    }

    #[test]
    fn every_cell_owned_and_equal_shares_within_one() {
        let map = assign(&ZoneConfig::default(), &equal(&[1, 2, 3]), None).expect("map");
        assert_eq!(map.owners.len(), 64);
        assert_eq!(map.validate(), Ok(()));
        let mut shares: Vec<usize> = counts(&map).into_values().collect();
        shares.sort();
        assert_eq!(shares, vec![21, 21, 22]);
        assert_eq!(map.epoch, 1);
    }

    #[test]
    fn heavily_loaded_node_gets_fewer_cells() {
        let nodes = [(id(1), 1.0), (id(2), 1.0), (id(3), 4.0)];
        let map = assign(&ZoneConfig::default(), &nodes, None).expect("map");
        let c = counts(&map);
        assert!(c[&id(3)] < c[&id(1)] / 2, "{c:?}");
        // 1/4 of the others' weight: ideal 7.1 of 64.
        assert_eq!(c[&id(3)], 7);
    }

    #[test]
    fn adding_a_node_moves_only_its_share() {
        let config = ZoneConfig::default();
        let three = assign(&config, &equal(&[1, 2, 3]), None).expect("map");
        let four = assign(&config, &equal(&[1, 2, 3, 4]), Some(&three)).expect("map");
        assert_eq!(four.epoch, 2);
        let c = counts(&four);
        assert!(c.values().all(|&n| n == 16), "{c:?}");
        // Ideal share 16; allow one cell of rounding slack.
        assert!(moved(&three, &four) <= 17, "moved {}", moved(&three, &four));
        // Every moved cell went to the newcomer.
        for (a, b) in three.owners.iter().zip(&four.owners) {
            assert!(a == b || *b == id(4));
        }
    }

    #[test]
    fn removing_a_node_gives_away_only_its_cells() {
        let config = ZoneConfig::default();
        let four = assign(&config, &equal(&[1, 2, 3, 4]), None).expect("map");
        let three = assign(&config, &equal(&[1, 2, 4]), Some(&four)).expect("map");
        for (a, b) in four.owners.iter().zip(&three.owners) {
            if *a != id(3) {
                assert_eq!(a, b, "a surviving node's cell moved");
            }
        }
        let mut shares: Vec<usize> = counts(&three).into_values().collect();
        shares.sort();
        assert_eq!(shares, vec![21, 21, 22]);
    }

    #[test]
    fn reassigning_the_same_nodes_moves_nothing() {
        let config = ZoneConfig::default();
        let nodes = [(id(1), 1.2), (id(2), 1.7), (id(3), 1.0)];
        let first = assign(&config, &nodes, None).expect("map");
        let again = assign(&config, &nodes, Some(&first)).expect("map");
        assert_eq!(first.owners, again.owners);
        assert_eq!(again.epoch, first.epoch + 1);
    }

    #[test]
    fn zones_are_contiguous_on_a_fresh_assignment() {
        for (width, height) in [(8, 8), (5, 3), (1, 9), (9, 1), (7, 7)] {
            let config = ZoneConfig {
                width,
                height,
                ..ZoneConfig::default()
            };
            for n in 1..=6u8 {
                let nodes: Vec<(NodeId, f64)> =
                    (1..=n).map(|i| (id(i), 1.0 + f64::from(i) / 4.0)).collect();
                let map = assign(&config, &nodes, None).expect("map");
                for &(node, _) in &nodes {
                    assert!(connected(&map, node), "{width}x{height}, {n} nodes");
                }
            }
        }
    }

    #[test]
    fn a_joining_node_gets_a_compact_zone() {
        // Fresh 3-node map: three horizontal bands. The newcomer takes 6 surplus cells from
        // band 1 and 5 each from bands 2 and 3. Band 3 borders only band 2, and cells of a
        // node at its share never move (stability), so one piece is impossible here; the
        // seed on the 1|2 border keeps it to two.
        let config = ZoneConfig::default();
        let three = assign(&config, &equal(&[1, 2, 3]), None).expect("map");
        let four = assign(&config, &equal(&[1, 2, 3, 4]), Some(&three)).expect("map");
        assert!(pieces(&four, id(4)) <= 2, "{four:?}");
        for n in [1, 2, 3] {
            assert!(connected(&four, id(n)), "giver {n} split: {four:?}");
        }
    }

    #[test]
    fn assign_is_deterministic_and_ignores_order_and_duplicates() {
        let config = ZoneConfig::default();
        let a = [(id(1), 1.0), (id(2), 2.0), (id(3), 1.5)];
        let b = [(id(3), 1.5), (id(1), 1.0), (id(2), 2.0), (id(1), 9.0)];
        assert_eq!(assign(&config, &a, None), assign(&config, &b, None));
    }

    #[test]
    fn assign_edge_cases() {
        let config = ZoneConfig::default();
        assert_eq!(assign(&config, &[], None), None);
        let bad = ZoneConfig {
            width: 0,
            ..ZoneConfig::default()
        };
        assert_eq!(assign(&bad, &equal(&[1]), None), None);
        // Fewer cells than nodes: each cell has an owner, some nodes get none.
        let tiny = ZoneConfig {
            width: 2,
            height: 1,
            ..ZoneConfig::default()
        };
        let map = assign(&tiny, &equal(&[1, 2, 3]), None).expect("map");
        assert_eq!(counts(&map).len(), 2);
        // A previous map of another shape says nothing about this grid: fresh assignment.
        let other = assign(&tiny, &equal(&[1]), None).expect("map");
        let map = assign(&config, &equal(&[1, 2]), Some(&other)).expect("map");
        assert_eq!(
            map,
            ZoneMap {
                epoch: 2,
                ..assign(&config, &equal(&[1, 2]), None).expect("map")
            }
        );
        // Nonsense loads count as 1.0.
        let odd = [(id(1), f64::NAN), (id(2), -3.0), (id(3), 1.0)];
        let mut shares: Vec<usize> = counts(&assign(&config, &odd, None).expect("map"))
            .into_values()
            .collect();
        shares.sort();
        assert_eq!(shares, vec![21, 21, 22]);
    }

    #[test]
    fn cell_of_clamps_into_the_grid() {
        let map = halves();
        assert_eq!(map.cell_of(0.0, 0.0), Cell { x: 0, y: 0 });
        assert_eq!(map.cell_of(99.9, 100.0), Cell { x: 0, y: 1 });
        assert_eq!(map.cell_of(-50.0, 350.0), Cell { x: 0, y: 3 });
        assert_eq!(map.cell_of(800.0, 9e9), Cell { x: 7, y: 7 });
        assert_eq!(
            map.cell_of(f32::INFINITY, f32::NEG_INFINITY),
            Cell { x: 7, y: 0 }
        );
        assert_eq!(map.cell_of(f32::NAN, 500.0), Cell { x: 0, y: 0 });
        assert_eq!(map.owner_at(450.0, 10.0), id(2));
        assert_eq!(map.owner(Cell { x: 99, y: 0 }), id(2));
        assert_eq!(map.cells_of(id(1)).len(), 32);
        assert!(map.cells_of(id(9)).is_empty());
    }

    #[test]
    fn handover_when_crossing_deep_into_another_cell() {
        let map = halves();
        assert_eq!(map.handover(id(1), 450.0, 250.0, 10.0), Some(id(2)));
        // Diagonal: 8 and 8 off the corner is 11.3 away, beyond the margin.
        let corner = ZoneMap {
            owners: (0..64)
                .map(|i| if i == 0 { id(1) } else { id(2) })
                .collect(),
            ..halves()
        };
        assert_eq!(corner.handover(id(1), 108.0, 108.0, 10.0), Some(id(2)));
        assert_eq!(corner.handover(id(1), 105.0, 105.0, 10.0), None);
        // A node with no cells left hands its clients to the owner at once.
        assert_eq!(map.handover(id(7), 10.0, 10.0, 10.0), Some(id(1)));
    }

    #[test]
    fn no_handover_within_margin_of_own_territory() {
        let map = halves();
        assert_eq!(map.handover(id(1), 405.0, 250.0, 10.0), None);
        assert_eq!(map.handover(id(1), 410.0, 250.0, 10.0), None);
        assert_eq!(map.handover(id(1), 250.0, 250.0, 10.0), None);
        assert_eq!(map.handover(id(2), 395.0, 250.0, 10.0), None);
    }

    #[test]
    fn crossing_a_border_hands_over_once_each_way() {
        let map = halves();
        let there: Vec<(f32, f32)> = (300..=550).map(|x| (x as f32, 250.0)).collect();
        assert_eq!(walk(&map, id(1), &there), vec![id(2)]);
        let back: Vec<(f32, f32)> = there.iter().rev().copied().collect();
        assert_eq!(walk(&map, id(2), &back), vec![id(1)]);
    }

    #[test]
    fn walking_along_a_border_never_hands_over() {
        let map = halves();
        // Zig-zag ±margin/2 around the vertical border at x = 400, for either owner.
        let along: Vec<(f32, f32)> = (0..800)
            .map(|y| (if y % 2 == 0 { 395.0 } else { 405.0 }, y as f32))
            .collect();
        assert!(walk(&map, id(1), &along).is_empty());
        assert!(walk(&map, id(2), &along).is_empty());
        // Also along the horizontal border of a top/bottom split.
        let rows = ZoneMap {
            owners: (0..64)
                .map(|i| if i / 8 < 4 { id(1) } else { id(2) })
                .collect(),
            ..halves()
        };
        let across: Vec<(f32, f32)> = (0..800)
            .map(|x| (x as f32, if x % 2 == 0 { 395.0 } else { 405.0 }))
            .collect();
        assert!(walk(&rows, id(1), &across).is_empty());
        // And off the map, where positions clamp to the edge.
        let outside: Vec<(f32, f32)> = (0..100)
            .map(|i| (if i % 2 == 0 { 395.0 } else { 405.0 }, -1000.0))
            .collect();
        assert!(walk(&map, id(1), &outside).is_empty());
        assert!(walk(&map, id(2), &outside).is_empty());
    }

    #[test]
    fn zone_map_round_trips_through_json() {
        let map = assign(&ZoneConfig::default(), &equal(&[1, 2, 3]), None).expect("map");
        let json = serde_json::to_string(&map).expect("serializes");
        // Ids are hex strings, as in cloud.nodes, and each is listed once.
        assert!(json.contains(&format!("\"{:032x}\"", id(2).0)), "{json}");
        assert_eq!(json.matches(&format!("{:032x}", id(2).0)).count(), 1);
        let back: ZoneMap = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, map);
        let value: serde_json::Value = serde_json::from_str(&json).expect("json");
        assert_eq!(value["owners"].as_array().map(Vec::len), Some(64));
    }

    #[test]
    fn zone_map_json_refuses_inconsistent_maps() {
        let node = format!("{:032x}", id(1).0);
        let parse = |s: String| serde_json::from_str::<ZoneMap>(&s);
        let ok = format!(
            r#"{{"epoch":1,"cell_size":10.0,"width":2,"height":1,"nodes":["{node}"],"owners":[0,0]}}"#
        );
        assert!(parse(ok).is_ok());
        for bad in [
            // Too few owners for the grid.
            format!(
                r#"{{"epoch":1,"cell_size":10.0,"width":2,"height":1,"nodes":["{node}"],"owners":[0]}}"#
            ),
            // An index past the node list.
            format!(
                r#"{{"epoch":1,"cell_size":10.0,"width":2,"height":1,"nodes":["{node}"],"owners":[0,1]}}"#
            ),
            // Not hex.
            r#"{"epoch":1,"cell_size":10.0,"width":1,"height":1,"nodes":["+1"],"owners":[0]}"#
                .to_owned(),
            // No cells.
            r#"{"epoch":1,"cell_size":10.0,"width":0,"height":1,"nodes":[],"owners":[]}"#
                .to_owned(),
            // Bad cell size.
            format!(
                r#"{{"epoch":1,"cell_size":0.0,"width":1,"height":1,"nodes":["{node}"],"owners":[0]}}"#
            ),
        ] {
            assert!(parse(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn zone_config_defaults_and_validation() {
        let c: ZoneConfig = serde_json::from_str(r#"{"width": 16}"#).expect("parses");
        assert_eq!(
            c,
            ZoneConfig {
                width: 16,
                ..ZoneConfig::default()
            }
        );
        assert!(serde_json::from_str::<ZoneConfig>(r#"{"size": 1.0}"#).is_err());
        assert_eq!(ZoneConfig::default().validate(), Ok(()));
        for bad in [
            ZoneConfig {
                cell_size: 0.0,
                ..ZoneConfig::default()
            },
            ZoneConfig {
                height: 0,
                ..ZoneConfig::default()
            },
            ZoneConfig {
                width: 100,
                height: 100,
                ..ZoneConfig::default()
            },
            ZoneConfig {
                margin: -1.0,
                ..ZoneConfig::default()
            },
            ZoneConfig {
                margin: 100.0,
                ..ZoneConfig::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    fn previous_map() -> impl Strategy<Value = Option<ZoneMap>> {
        // Owners drawn from ids 1..=12, so some belong to current nodes and some do not.
        proptest::option::of(
            (1u32..=6, 1u32..=6, 0u64..5).prop_flat_map(|(w, h, epoch)| {
                proptest::collection::vec(1u8..=12, (w * h) as usize).prop_map(move |owners| {
                    ZoneMap {
                        cell_size: 100.0,
                        width: w,
                        height: h,
                        owners: owners.into_iter().map(id).collect(),
                        epoch,
                    }
                })
            }),
        )
    }

    proptest! {
        #[test]
        fn assign_owns_every_cell_and_serves_every_node(
            width in 1u32..=6,
            height in 1u32..=6,
            loads in proptest::collection::vec(0.5f64..5.0, 1..10),
            previous in previous_map(),
            // Often reuse the grid of the previous map, so stability is exercised.
            same_shape in any::<bool>(),
        ) {
            let (width, height) = match (&previous, same_shape) {
                (Some(p), true) => (p.width, p.height),
                _ => (width, height),
            };
            let config = ZoneConfig { width, height, ..ZoneConfig::default() };
            let nodes: Vec<(NodeId, f64)> = loads
                .iter()
                .enumerate()
                .map(|(i, &load)| (id(i as u8 + 1), load))
                .collect();
            let map = assign(&config, &nodes, previous.as_ref()).expect("map");
            prop_assert_eq!(map.validate(), Ok(()));
            let ids: BTreeSet<NodeId> = nodes.iter().map(|n| n.0).collect();
            prop_assert!(map.owners.iter().all(|o| ids.contains(o)));
            let c = counts(&map);
            let cells = (width * height) as usize;
            if cells >= nodes.len() {
                prop_assert_eq!(c.len(), nodes.len(), "a node has no cell: {:?}", c);
            }
            prop_assert_eq!(map.epoch, previous.as_ref().map_or(1, |p| p.epoch + 1));
            match previous.as_ref().filter(|p| p.width == width && p.height == height) {
                // Stability: a surviving node loses exactly its surplus, and a cell moves
                // away from a survivor only to a node short of its share.
                Some(p) if p.owners.iter().any(|o| ids.contains(o)) => {
                    let before = counts(p);
                    for &node in &ids {
                        let had = before.get(&node).copied().unwrap_or(0);
                        let has = c.get(&node).copied().unwrap_or(0);
                        let lost = p.owners.iter().zip(&map.owners)
                            .filter(|(a, b)| **a == node && **b != node)
                            .count();
                        prop_assert_eq!(lost, had.saturating_sub(has), "node {:?}", node);
                    }
                }
                // Fresh: every zone is connected.
                _ => {
                    for &node in &ids {
                        prop_assert!(connected(&map, node), "{:?}", map);
                    }
                }
            }
        }
    }
}
