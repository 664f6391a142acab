//! The mesh's members as the console keeps them: each node's last report, its msgs/s history
//! for the sparkline, and what the watch said about it since (lost, draining). Shared by the
//! header, the overview, the zone map's legend and the migration picker; the watch is what
//! changes it (`app/watch.rs`).

use std::collections::VecDeque;

use cloudmesh::admin::NodeInfo;

/// How many msgs/s samples each node keeps for its sparkline (about two minutes at one load
/// report every two seconds).
pub const HISTORY: usize = 64;

/// A node and what the console keeps about it.
#[derive(Debug, Clone)]
pub struct NodeRow {
    /// As last reported.
    pub info: NodeInfo,
    /// msgs/s at its last load reports, oldest first.
    pub history: VecDeque<f32>,
    /// The node was lost: shown, marked, until the next member list forgets it.
    pub lost: bool,
    /// The drain's last progress report: (moved, remaining).
    pub drain: Option<(usize, usize)>,
}

impl NodeRow {
    /// A node seen for the first time.
    pub fn new(info: NodeInfo) -> NodeRow {
        let mut history = VecDeque::with_capacity(HISTORY);
        history.push_back(info.msgs_per_sec);
        NodeRow {
            info,
            history,
            lost: false,
            drain: None,
        }
    }

    /// A node known by name only (its link came up before its member record).
    pub fn placeholder(name: &str) -> NodeRow {
        NodeRow::new(NodeInfo {
            name: name.to_owned(),
            id: String::new(),
            addresses: Vec::new(),
            state: "Joining".to_owned(),
            host: false,
            local: false,
            linked: true,
            clients: 0,
            capacity: 0,
            rows: 0,
            cpu_percent: 0.0,
            memory_bytes: 0,
            msgs_per_sec: 0.0,
        })
    }

    /// Adds a msgs/s sample, forgetting the oldest past [`HISTORY`].
    pub fn push_sample(&mut self, v: f32) {
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(v);
    }

    /// Whether the node passes a filter (`f` in lower case): its name, state or addresses.
    pub fn matches(&self, f: &str) -> bool {
        self.info.name.to_lowercase().contains(f)
            || self.info.state.to_lowercase().contains(f)
            || self.info.addresses.iter().any(|a| a.contains(f))
    }
}

/// A fresh member list in place of `old`: each node that was there keeps its history (and
/// its drain progress while it still drains); nodes not in `fresh` go.
pub fn merged(mut old: Vec<NodeRow>, fresh: Vec<NodeInfo>) -> Vec<NodeRow> {
    fresh
        .into_iter()
        .map(
            |info| match old.iter().position(|n| n.info.name == info.name) {
                Some(i) => {
                    let mut row = old.swap_remove(i);
                    row.lost = false;
                    if info.state != "Draining" {
                        row.drain = None;
                    }
                    row.info = info;
                    row
                }
                None => NodeRow::new(info),
            },
        )
        .collect()
}

/// The node named `name`.
pub fn find_mut<'a>(nodes: &'a mut [NodeRow], name: &str) -> Option<&'a mut NodeRow> {
    nodes.iter_mut().find(|n| n.info.name == name)
}
