//! The membership datagram: one kind byte, then a foca packet.
//!
//! foca addresses every message to a member identity, but a seed is only an address: who
//! listens there is unknown until it answers. A wildcard announce is a foca announce
//! addressed to a placeholder; the receiver readdresses it to itself before foca reads it,
//! which is exactly the announce foca would have accepted had the sender known its identity.
//! The kind byte also leaves room for later versions: an unknown kind is refused, not
//! misread.

use bytes::{BufMut, Bytes, BytesMut};
use foca::{Codec, Header, Member, Message, PostcardCodec, State};

use super::error::SwimError;
use super::identity::Identity;

/// A foca packet addressed to a known member.
pub(super) const KIND_FOCA: u8 = 0x01;
/// A foca announce addressed to whoever listens at an address.
pub(super) const KIND_ANNOUNCE_ANY: u8 = 0x02;

/// `kind` followed by `packet`.
pub(super) fn frame(kind: u8, packet: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(1 + packet.len());
    buf.put_u8(kind);
    buf.put_slice(packet);
    buf.freeze()
}

/// The kind byte and the foca packet after it.
pub(super) fn split(datagram: &[u8]) -> Result<(u8, &[u8]), SwimError> {
    match datagram.split_first() {
        Some((kind, packet)) => Ok((*kind, packet)),
        None => Err(SwimError::Empty),
    }
}

/// A foca packet's header, and the rest of the packet after it.
pub(super) fn decode(packet: &[u8]) -> Result<(Header<Identity>, &[u8]), SwimError> {
    let mut rest = packet;
    let header = PostcardCodec
        .decode_header(&mut rest)
        .map_err(|e| SwimError::Malformed(e.to_string()))?;
    Ok((header, rest))
}

/// A foca packet from a header and what followed it.
pub(super) fn encode(header: &Header<Identity>, rest: &[u8]) -> Result<Vec<u8>, SwimError> {
    let mut out = Vec::with_capacity(256 + rest.len());
    PostcardCodec
        .encode_header(header, &mut out)
        .map_err(|e| SwimError::Malformed(e.to_string()))?;
    out.extend_from_slice(rest);
    Ok(out)
}

/// Checks that a wildcard datagram holds an announce and nothing else.
pub(super) fn check_announce(header: &Header<Identity>, rest: &[u8]) -> Result<(), SwimError> {
    if header.message != Message::Announce || !rest.is_empty() {
        return Err(SwimError::Malformed(
            "a wildcard datagram must hold an announce and nothing else".into(),
        ));
    }
    Ok(())
}

/// The same announce as a wildcard one, if the datagram is a foca announce.
pub(super) fn as_wildcard_announce(datagram: &[u8]) -> Option<Bytes> {
    match split(datagram) {
        Ok((KIND_FOCA, packet))
            if decode(packet)
                .is_ok_and(|(h, rest)| h.message == Message::Announce && rest.is_empty()) =>
        {
            Some(frame(KIND_ANNOUNCE_ANY, packet))
        }
        _ => None,
    }
}

/// Whether a datagram is foca's "you are down" message.
pub(super) fn is_turn_undead(datagram: &[u8]) -> bool {
    matches!(split(datagram), Ok((KIND_FOCA, packet))
        if decode(packet).is_ok_and(|(h, _)| h.message == Message::TurnUndead))
}

/// A gossip packet from `me` to `to` with no update: reading it, `to` learns `me` (foca
/// takes every sender as alive). `me`'s incarnation is not known outside foca, so it claims
/// 0, which a receiver that knows a higher one ignores.
pub(super) fn introduction(me: &Identity, to: &Identity) -> Result<Vec<u8>, SwimError> {
    let header = Header {
        src: me.clone(),
        src_incarnation: 0,
        dst: to.clone(),
        message: Message::Gossip,
    };
    let mut out = encode(&header, &[])?;
    out.put_u16(0);
    Ok(out)
}

/// A gossip packet from `me` to `suspect` carrying one update: `suspect` is suspected at
/// `incarnation`. foca spreads a suspicion a bounded number of times, all within a second or
/// so; a member cut off for that second never hears it and cannot refute it. This packet
/// tells it directly (foca refutes on reading it). `me`'s incarnation is not known outside
/// foca, so it claims 0, which a receiver that knows a higher one ignores.
pub(super) fn suspicion_notice(
    me: &Identity,
    suspect: &Identity,
    incarnation: u16,
) -> Result<Vec<u8>, SwimError> {
    let header = Header {
        src: me.clone(),
        src_incarnation: 0,
        dst: suspect.clone(),
        message: Message::Gossip,
    };
    let mut out = encode(&header, &[])?;
    out.put_u16(1);
    PostcardCodec
        .encode_member(
            &Member::new(suspect.clone(), incarnation, State::Suspect),
            &mut out,
        )
        .map_err(|e| SwimError::Malformed(e.to_string()))?;
    Ok(out)
}
