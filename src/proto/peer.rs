//! The peer protocol (ALPN `cloudmesh-peer/1`) spoken between nodes of one mesh.
//!
//! The dialing node opens one bidirectional stream. First the mutual authentication
//! ([`AuthFrame`]s, nothing else is read before it succeeds), then [`PeerFrame`]s in both
//! directions on that one ordered stream: a snapshot answer always precedes the changes
//! after it, which is what keeps a remote get+subscribe atomic.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::{
    ClientId, GetPage, GetQuery, KeySpec, NodeId, Notification, Reply, Request, RowQuery,
    SessionState, WireError,
};
use bytes::Bytes;

/// ALPN protocol id spoken between nodes.
pub const ALPN_PEER: &[u8] = b"cloudmesh-peer/1";

/// Highest peer protocol version this build speaks.
pub const PEER_PROTOCOL_VERSION: u16 = 2;

/// The authentication exchange: a fresh nonce from each side, then a proof from each side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthFrame {
    /// 32 bytes from the OS RNG, fresh for this connection.
    Challenge {
        /// The nonce.
        nonce: [u8; 32],
    },
    /// HMAC-SHA256(secret, TLS exporter ‖ dialer nonce ‖ acceptor nonce ‖ role).
    Proof {
        /// The MAC.
        mac: [u8; 32],
    },
}

/// Lifecycle of a node, visible mesh-wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NodeState {
    /// Connecting to the mesh.
    Joining,
    /// Serving and taking placements.
    Active,
    /// Moving its clients away; takes no new placements.
    Draining,
    /// Drained: no clients left.
    Drained,
}

impl NodeState {
    /// Lower-case name, as in `cloud.nodes` JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Joining => "Joining",
            NodeState::Active => "Active",
            NodeState::Draining => "Draining",
            NodeState::Drained => "Drained",
        }
    }
}

/// What nodes know of each other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// This run's id.
    pub id: NodeId,
    /// Human name.
    pub name: String,
    /// Addresses peers should try, internal first.
    pub addrs: Vec<SocketAddr>,
    /// Order of joining: the oldest member (lowest, then lowest id) is host.
    pub join_seq: u64,
    /// Lifecycle state.
    pub state: NodeState,
    /// SHA-256 of its certificate: a client redirected there by a node it trusts can pin it.
    pub fingerprint: [u8; 32],
    /// Addresses clients should use (redirects and migrations name these, and the node's
    /// `cloud.nodes` row lists them); `addrs` stay between nodes.
    pub client_addrs: Vec<SocketAddr>,
}

impl MemberInfo {
    /// Where clients are sent: the client addresses, or the peer addresses when the member
    /// gave none.
    pub fn addrs_for_clients(&self) -> &[SocketAddr] {
        if self.client_addrs.is_empty() {
            &self.addrs
        } else {
            &self.client_addrs
        }
    }
}

/// Frames between authenticated nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PeerFrame {
    /// First frame each way after authentication: who I am. Membership itself travels as
    /// the membership protocol's datagrams, not as frames.
    Hello {
        /// Peer protocol version.
        version: u16,
        /// The sender.
        me: MemberInfo,
        /// Primary keys the sender holds rows under.
        holds: Vec<String>,
    },
    /// The sender now holds (or no longer holds) rows under `primary`.
    Holds {
        /// The primary key.
        primary: String,
        /// Whether it holds any row there now.
        held: bool,
    },
    /// `node` now holds rows under `primary` (sent by a migration's source before it says it
    /// no longer holds them itself, so a third node's index never passes through a moment
    /// where neither node is listed).
    HeldBy {
        /// The primary key.
        primary: String,
        /// The node that holds rows there now.
        node: NodeId,
    },
    /// Read the receiver's local rows (and with `subscribe`, register the sender's interest
    /// atomically with the snapshot).
    Get {
        /// Matches the answer.
        id: u64,
        /// The query, applied to the receiver's own rows only.
        query: GetQuery,
    },
    /// Answer to [`PeerFrame::Get`].
    GetResult {
        /// The request's id.
        id: u64,
        /// The page of local rows.
        result: Result<GetPage, WireError>,
    },
    /// The sender no longer needs changes under these keys.
    Unsubscribe {
        /// Specs as they were subscribed.
        keys: Vec<KeySpec>,
    },
    /// A change to a row the receiver subscribed to.
    Change(Notification),
    /// The sender's load, sent every load interval, so any node can place clients.
    Load(LoadInfo),
    /// Migration step 1 (source → target): take this session as pending; answer `Prepared`.
    Prepare {
        /// Names the move; the client presents it to the target.
        ticket: Bytes,
        /// The session as of now (used as it is if the source dies before the handover).
        state: SessionState,
    },
    /// The target is ready (its interest for the session's subscriptions is registered).
    Prepared {
        /// The move.
        ticket: Bytes,
        /// Or why not.
        result: Result<(), WireError>,
    },
    /// Migration step 4 (target → source): the client arrived; hand the session over now.
    Handover {
        /// The move.
        ticket: Bytes,
    },
    /// The source's answer to `Handover`: the session at the instant it stopped owning it.
    Transfer {
        /// The move.
        ticket: Bytes,
        /// The session, current; `None` if the source no longer has it.
        state: Option<SessionState>,
    },
    /// A request the client sent to the source after the handover, to apply at the target
    /// (in order, after the `Transfer` on the same stream).
    Forward {
        /// The moved client.
        client: ClientId,
        /// The client's request id.
        id: u64,
        /// The request.
        op: Request,
    },
    /// From the host: zone ownership, as the JSON it publishes under `cloud.zones/0`.
    Zones {
        /// The zone map's JSON.
        json: Bytes,
    },
    /// From the host: move this many of your clients to `to`.
    Rebalance {
        /// The least loaded node.
        to: NodeId,
        /// How many clients.
        count: u32,
    },
    /// An operator's command for the receiver to run on itself: the admin protocol's
    /// `Command` as JSON (kept opaque here so the wire layer does not depend on the admin
    /// layer). Answered by `AdminReply`s with the same id.
    Admin {
        /// Matches the replies.
        id: u64,
        /// The command, JSON.
        command: Bytes,
    },
    /// One response frame to an `Admin` command (JSON), or `None`: no more will come.
    AdminReply {
        /// The command's id.
        id: u64,
        /// The admin protocol's `Response` as JSON.
        body: Option<Bytes>,
    },
    /// The sender's drain progressed (for operators watching any node).
    DrainProgress {
        /// Clients moved so far.
        moved: u64,
        /// Clients still there.
        remaining: u64,
    },
    /// The source gave up a move before the handover (no `Prepared` in time, the client left,
    /// or it never reached the target): the target drops its pending copy now.
    Abort {
        /// The move.
        ticket: Bytes,
    },
    /// The target's answer to a `Forward`, for the source to relay to the client.
    Forwarded {
        /// The moved client.
        client: ClientId,
        /// The client's request id.
        id: u64,
        /// The outcome.
        result: Result<Reply, WireError>,
    },
    // New variants go last: postcard encodes the variant's index.
    /// Evaluate a query over the receiver's own rows; answered with a
    /// [`PeerFrame::GetResult`] of the same id holding the matches in the query's order
    /// (its `next` is where the receiver stopped: its last row, or with no sort the last row
    /// it looked at).
    Query {
        /// Matches the answer.
        id: u64,
        /// The query, applied to the receiver's own rows only.
        query: RowQuery,
    },
    /// Give me this suspended session: its client resumed here with this token.
    Reclaim {
        /// The session's client.
        client: ClientId,
        /// The token the client presented.
        token: Bytes,
    },
    /// The answer to `Reclaim`: the session (forgotten at the sender, silently) and the
    /// highest request id it had read from the lost connection, or why not.
    Reclaimed {
        /// The session's client.
        client: ClientId,
        /// The session and its last request id.
        result: Result<(SessionState, u64), WireError>,
    },
}

/// How busy a node is, as placement sees it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LoadInfo {
    /// Connected clients.
    pub clients: u32,
    /// Most clients it serves (`max_clients`).
    pub capacity: u32,
    /// Machine CPU use, percent of all cores.
    pub cpu_percent: f32,
    /// Rows stored there.
    pub rows: u64,
    /// Resident memory of the node process, bytes.
    pub memory_bytes: u64,
    /// Client requests handled per second over the last interval.
    pub msgs_per_sec: f32,
}

/// A change encoded as the frame that carries it, borrowed: [`ServerFrame::Notify`] to a
/// client or [`PeerFrame::Change`] to a peer, with the same bytes as those variants, without
/// cloning the notification (its key string and row) just to wrap it. A change delivered to
/// many links is encoded once per kind.
///
/// [`ServerFrame::Notify`]: super::ServerFrame::Notify
#[derive(Debug, Clone, Copy)]
pub enum NotificationFrame<'a> {
    /// As `ServerFrame::Notify`.
    Notify(&'a Notification),
    /// As `PeerFrame::Change`.
    Change(&'a Notification),
}

/// Variant indices in declaration order, as serde's derive numbers them (the test below
/// checks them against the real enums' encoding).
const SERVER_FRAME_NOTIFY: u32 = 3;
const PEER_FRAME_CHANGE: u32 = 6;

impl Serialize for NotificationFrame<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            NotificationFrame::Notify(n) => {
                s.serialize_newtype_variant("ServerFrame", SERVER_FRAME_NOTIFY, "Notify", n)
            }
            NotificationFrame::Change(n) => {
                s.serialize_newtype_variant("PeerFrame", PEER_FRAME_CHANGE, "Change", n)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{encode_to_bytes, DeleteReason, Key, Row, ServerFrame};
    use super::*;

    #[test]
    fn a_borrowed_notification_frame_encodes_as_the_owned_variants() {
        let row = Row {
            key: Key::new("match.7", 3),
            owner: ClientId(42),
            node: NodeId(9),
            data: Bytes::from_static(b"{\"x\":1}"),
            version: 77,
            updated_at_ms: 1_700_000_000_000,
        };
        for n in [
            Notification::Updated(row.clone()),
            Notification::Deleted {
                row,
                reason: DeleteReason::NodeLost,
            },
        ] {
            let max = 1 << 20;
            assert_eq!(
                encode_to_bytes(&NotificationFrame::Notify(&n), max).ok(),
                encode_to_bytes(&ServerFrame::Notify(n.clone()), max).ok()
            );
            assert_eq!(
                encode_to_bytes(&NotificationFrame::Change(&n), max).ok(),
                encode_to_bytes(&PeerFrame::Change(n.clone()), max).ok()
            );
        }
    }
}
