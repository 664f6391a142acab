//! Request layer: where the answer to a client request goes (the client's own connection,
//! or the node that forwarded the request during a move) and how it is queued.

use super::shared::Shared;
use crate::proto::{ClientId, CodecError, Outbox, PeerFrame, Reply, ServerFrame, WireError};

/// Where the answer to a request goes.
#[derive(Debug, Clone)]
pub(super) enum Sink {
    /// Straight to the client's connection.
    Client(Outbox),
    /// Back to the node that forwarded the request: the client's old node during a move.
    Forward {
        /// That node's link.
        peer: Outbox,
        /// The moved client.
        client: ClientId,
    },
}

/// Queues the answer to request `id`. An answer too large for a frame becomes a typed
/// `TooLarge` error for the same id, so the caller always hears back.
pub(super) fn respond(shared: &Shared, sink: &Sink, id: u64, result: Result<Reply, WireError>) {
    let max = shared.config.max_frame;
    let outbox = match sink {
        Sink::Client(outbox) => outbox,
        Sink::Forward { peer, client } => {
            let frame = PeerFrame::Forwarded {
                client: *client,
                id,
                result,
            };
            if let Err(e) = peer.push_encoded(&frame, max) {
                tracing::error!(error = %e, "forwarded answer does not fit a frame");
            }
            return;
        }
    };
    let Err(e) = outbox.push_encoded(&ServerFrame::Response { id, result }, max) else {
        return;
    };
    let err = WireError::TooLarge {
        what: "response".into(),
        size: match e {
            CodecError::TooLarge { len, .. } => len,
            _ => 0,
        },
        max: max as u64,
    };
    let answer = ServerFrame::Response {
        id,
        result: Err(err),
    };
    if let Err(e) = outbox.push_encoded(&answer, max) {
        tracing::error!(error = %e, "could not encode a response");
    }
}
