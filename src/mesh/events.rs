//! What happened to the mesh, as a node tells whoever listens (the admin layer, the DNS
//! updater, metrics, tests). Plain data.

use crate::proto::{ClientId, LoadInfo, NodeId, NodeState};

/// Something that happened to the mesh, for the admin layer, metrics and tests.
#[derive(Debug, Clone, PartialEq)]
pub enum MeshEvent {
    /// An authenticated link to a node came up.
    PeerUp {
        /// The node.
        node: NodeId,
        /// Its name.
        name: String,
    },
    /// A link was lost; its rows were deleted for local subscribers (`NodeLost`).
    PeerLost {
        /// The node.
        node: NodeId,
        /// Rows of it that local subscribers had seen.
        rows: usize,
    },
    /// A node left the mesh on purpose; its rows were deleted for local subscribers
    /// (`NodeLeft`).
    PeerLeft {
        /// The node.
        node: NodeId,
        /// Rows of it that local subscribers had seen.
        rows: usize,
    },
    /// A node's lifecycle state changed (Draining, Drained, Active again).
    StateChanged {
        /// The node.
        node: NodeId,
        /// Its new state.
        state: NodeState,
    },
    /// Progress of a node's drain (this node's, or a peer's as it reported it).
    DrainProgress {
        /// The draining node.
        node: NodeId,
        /// Clients moved so far.
        moved: usize,
        /// Clients still here.
        remaining: usize,
    },
    /// The host changed.
    HostChanged {
        /// The previous host.
        old: NodeId,
        /// The new host.
        new: NodeId,
    },
    /// A node's periodic load report arrived (this node's own included).
    Load {
        /// The node.
        node: NodeId,
        /// Its load.
        info: LoadInfo,
    },
    /// A client of this node moved to another node.
    Migrated {
        /// The client.
        client: ClientId,
        /// Where it went.
        to: NodeId,
    },
    /// A newer zone map was adopted.
    ZonesChanged,
}
