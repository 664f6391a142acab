//! Decoder contracts, checked on arbitrary bytes.
//!
//! Every decoder that reads input from outside the process has one check here: it feeds
//! the decoder arbitrary bytes and asserts what the decoder promises, not merely that it
//! returns. A decoded value encodes and decodes back to the same value; errors are the typed
//! ones callers match on, each for its own reason; a frame reader buffers at most one frame
//! plus one read, whatever length a prefix claims, and the same bytes give the same frames
//! however the network splits them. A broken promise panics, which a fuzzer reports as a
//! crash.
//!
//! The coverage-guided fuzz targets in `fuzz/` are thin wrappers around [`TARGETS`], and
//! `tests/fuzz_corpus.rs` replays their checked-in corpus (`fuzz/corpus/<target>/`) through
//! the same checks under `cargo test`, so an input that once broke a promise stays fixed.
//!
//! Inputs that drive a stream start with parameter bytes (which limit to decode with, how to
//! split the stream into reads); each check's documentation gives its layout.

use std::cell::Cell;
use std::fmt::Debug;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use base64::Engine as _;
use bytes::BytesMut;
use hmac::{Hmac, Mac};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::Sha256;
use tokio::io::{AsyncRead, ReadBuf};

use crate::admin::frame::{self, FrameError};
use crate::admin::{AdminRequest, Command, Response, MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES};
use crate::dyndns::tsig::{Algorithm, TsigKey};
use crate::dyndns::wire::{self, Message, Name, RData, Record, TsigRecord, TYPE_A};
use crate::mesh::{issue_ticket, MeshSecret, Role, TicketBook, TicketError};
use crate::placement::{Cell as ZoneCell, ZoneMap};
use crate::proto::{
    encode_to_bytes, AuthFrame, ClientFrame, ClientId, CodecError, FrameDecoder, FrameReader,
    NodeId, PeerFrame, ServerFrame, DEFAULT_MAX_FRAME,
};

/// A contract check: panics if the decoder breaks a promise on this input.
pub type Check = fn(&[u8]);

/// Every check, by the name its fuzz target and its corpus directory have.
pub const TARGETS: &[(&str, Check)] = &[
    ("client_frames", client_frames),
    ("server_frames", server_frames),
    ("peer_frames", peer_frames),
    ("auth_exchange", auth_exchange),
    ("admin_frames", admin_frames),
    ("dns_message", dns_message),
    ("tsig_key", tsig_key),
    ("zone_map", zone_map),
    ("redirect_ticket", redirect_ticket),
    ("config_file", config_file),
];

/// Bytes of a frame's length prefix (both framings).
const PREFIX: usize = 4;

/// What one read may add to a frame reader's buffer beyond the frame it is reading.
const ONE_READ: usize = 16 * 1024;

/// Largest frame of the authentication exchange (an `AuthFrame` is 33 bytes); the same limit
/// the exchange encodes its own frames with.
const AUTH_FRAME_MAX: usize = 1024;

/// Frame size limits a stream check picks from (its first byte): the default, and small ones
/// so that inputs a fuzzer can afford reach the limit and the memory bounds.
const MAXES: [usize; 4] = [DEFAULT_MAX_FRAME, 1000, 40, 0];

/// Read sizes a stream is split into, picked per read from the pattern byte.
const PIECES: [usize; 12] = [1, 2, 3, 4, 5, 7, 16, 100, 1000, 5000, 20_000, usize::MAX];

/// Client frames, as a node reads them: `[max, split, stream...]`, where `max` picks the
/// frame limit (low bits) and whether the stream stays open after its bytes (bit 7), and
/// `split` how the stream arrives. See [`frames`] for what is asserted.
pub fn client_frames(data: &[u8]) {
    frames::<ClientFrame>(data, &|_| {});
}

/// Server frames, as the SDK reads them: `[max, split, stream...]`. See [`frames`].
pub fn server_frames(data: &[u8]) {
    frames::<ServerFrame>(data, &|_| {});
}

/// Peer frames after authentication: `[max, split, stream...]`. See [`frames`]; the JSON a
/// peer frame carries (a zone map, an admin command or answer) is checked as the node
/// parses it.
pub fn peer_frames(data: &[u8]) {
    frames::<PeerFrame>(data, &|frame| match frame {
        PeerFrame::Zones { json } => zone_map(json),
        PeerFrame::Admin { command, .. } => json_round_trip::<Command>(command),
        PeerFrame::AdminReply {
            body: Some(body), ..
        } => json_round_trip::<Response>(body),
        _ => {}
    });
}

/// How a stream of length-prefixed postcard frames ended.
#[derive(Debug, PartialEq)]
enum End {
    /// Between frames.
    Clean,
    /// Waiting for more bytes of a stream that stays open.
    Waiting,
    /// A prefix over the limit, with the length it claimed.
    TooLarge(u64),
    /// A whole frame that is not a message.
    Malformed,
    /// Inside a frame, with this many bytes of it received.
    Truncated(usize),
}

/// The framing contract of `proto::codec`, for messages of type `T`:
///
/// - `FrameReader` yields exactly the frames (and the end) that the framing rules give for
///   the bytes, however the stream is split into reads: a prefix over the limit is
///   `TooLarge` with the claimed length as soon as the prefix is there (without waiting for
///   what it claims), a whole frame that does not decode is `Malformed`, a stream that stops
///   inside a frame (prefix included) is `Truncated` with the bytes it had, or, if it stays
///   open, the reader waits; and never `Io`;
/// - it never buffers more than one frame plus one read, and its buffer's capacity follows
///   the bytes that arrived, never a claimed length;
/// - every decoded frame re-encodes within the limit, no longer than it came, and decodes
///   back to the same value (compared as bytes, so NaNs compare equal).
///
/// `each` is called on every decoded frame, for checks of what it carries.
fn frames<T>(data: &[u8], each: &dyn Fn(&T))
where
    T: Serialize + DeserializeOwned + Debug,
{
    let [params, split, stream @ ..] = data else {
        return;
    };
    let max = MAXES[usize::from(params & 0x7f) % MAXES.len()];
    let open = params & 0x80 != 0;
    let expected = frames_by_the_rules::<T>(stream, max, open, each);
    let read = frames_from_reader::<T>(stream, max, *split, open);
    assert_eq!(
        read, expected,
        "FrameReader disagrees with the framing rules (max {max}, split {split})"
    );
}

/// What the framing rules say `stream` holds: prefix, limit, then a postcard payload.
fn frames_by_the_rules<T>(
    stream: &[u8],
    max: usize,
    open: bool,
    each: &dyn Fn(&T),
) -> (Vec<Vec<u8>>, End)
where
    T: Serialize + DeserializeOwned + Debug,
{
    let mut frames = Vec::new();
    let mut rest = stream;
    let short = |rest: &[u8]| {
        if open {
            End::Waiting
        } else if rest.is_empty() {
            End::Clean
        } else {
            End::Truncated(rest.len())
        }
    };
    loop {
        let Some(len) = prefix(rest) else {
            return (frames, short(rest));
        };
        if len > max as u64 {
            return (frames, End::TooLarge(len));
        }
        let Some(payload) = rest.get(PREFIX..PREFIX + len as usize) else {
            return (frames, short(rest));
        };
        let Ok(value) = postcard::from_bytes::<T>(payload) else {
            return (frames, End::Malformed);
        };
        let again = postcard_round_trip(&value, max);
        assert!(
            again.len() - PREFIX <= payload.len(),
            "{value:?} re-encodes to {} bytes, longer than the {} it was decoded from",
            again.len() - PREFIX,
            payload.len()
        );
        each(&value);
        frames.push(again);
        rest = &rest[PREFIX + payload.len()..];
    }
}

/// What `FrameReader` makes of `stream` arriving in reads of the sizes `split` picks.
fn frames_from_reader<T>(stream: &[u8], max: usize, split: u8, open: bool) -> (Vec<Vec<u8>>, End)
where
    T: Serialize + DeserializeOwned + Debug,
{
    let delivered = Cell::new(0);
    let mut reader = FrameReader::new(Pieces::new(stream, split, open, &delivered), max);
    let mut frames = Vec::new();
    loop {
        let next = poll_once(reader.next::<T>());
        check_reader_memory(&reader, max, delivered.get());
        let Some(next) = next else {
            return (frames, End::Waiting);
        };
        match next {
            Ok(Some(value)) => frames.push(postcard_round_trip(&value, max)),
            Ok(None) => return (frames, End::Clean),
            Err(CodecError::TooLarge { len, max: limit }) => {
                assert_eq!(limit, max, "TooLarge names another limit");
                return (frames, End::TooLarge(len));
            }
            Err(CodecError::Malformed(_)) => return (frames, End::Malformed),
            Err(CodecError::Truncated { buffered }) => return (frames, End::Truncated(buffered)),
            Err(CodecError::Io(e)) => panic!("an in-memory stream cannot fail, yet: {e}"),
        }
    }
}

/// A frame reader holds at most the frame it is reading plus one read, and has room for at
/// most twice what arrived (up to that much) plus one read: a length prefix alone costs
/// nothing.
fn check_reader_memory<R>(reader: &FrameReader<R>, max: usize, delivered: usize) {
    let (held, room) = (reader.buffered(), reader.capacity());
    assert!(
        held <= PREFIX + max + ONE_READ,
        "the reader holds {held} bytes, more than a {max}-byte frame plus one read"
    );
    assert!(
        room <= 2 * delivered.min(PREFIX + max + ONE_READ) + ONE_READ,
        "the reader has room for {room} bytes after {delivered} arrived (limit {max})"
    );
}

/// Encodes `value` as a frame, decodes it again and checks that it encodes the same; returns
/// the frame.
fn postcard_round_trip<T>(value: &T, max: usize) -> Vec<u8>
where
    T: Serialize + DeserializeOwned + Debug,
{
    let once = encode_to_bytes(value, max)
        .unwrap_or_else(|e| panic!("decoded {value:?} does not encode again: {e}"));
    let mut buf = BytesMut::from(&once[..]);
    let back: T = FrameDecoder::new(max)
        .decode(&mut buf)
        .unwrap_or_else(|e| panic!("the encoding of {value:?} does not decode: {e}"))
        .unwrap_or_else(|| panic!("the encoding of {value:?} is not a whole frame"));
    assert!(buf.is_empty(), "decoding {value:?} left bytes over");
    let twice = encode_to_bytes(&back, max)
        .unwrap_or_else(|e| panic!("decoded {back:?} does not encode again: {e}"));
    assert_eq!(
        once, twice,
        "{value:?} comes back from its encoding as {back:?}"
    );
    once.to_vec()
}

/// The length a frame's prefix claims, if the prefix is all there.
fn prefix(bytes: &[u8]) -> Option<u64> {
    let p: [u8; PREFIX] = bytes.get(..PREFIX)?.try_into().ok()?;
    Some(u64::from(u32::from_be_bytes(p)))
}

/// The mesh authentication exchange against arbitrary peer bytes:
/// `[flags, split, peer stream...]`; flag bit 0 picks the role (dialer, acceptor); bit 1
/// makes the peer honest after its first frame: if that frame is a challenge, the proof that
/// peer would send is appended to the stream, so the success path is reachable; bit 2 keeps
/// the stream open after its bytes (a peer that sends them and then waits).
///
/// Asserted: the outcome is what the exchange's rules give for the peer's frames (no
/// challenge: `Io` at the end of the stream, `Protocol` for anything else; then a proof that
/// is right: success, wrong: `BadProof`, anything else: `Protocol`; waiting only while a
/// frame is incomplete and the stream open); a frame over 1 KiB is refused from its prefix,
/// without waiting for what it claims, whatever limit the reader has for the peer frames
/// that follow; this side sends its challenge, then its proof only when its role allows (the
/// dialer once it has a challenge, the acceptor only once the peer's proof checked out); and
/// the reader buffers at most one small frame plus one read.
pub fn auth_exchange(data: &[u8]) {
    let [flags, split, peer @ ..] = data else {
        return;
    };
    let role = if flags & 1 == 0 {
        Role::Dialer
    } else {
        Role::Acceptor
    };
    let open = flags & 4 != 0;
    let secret_bytes = [0x5e; 32];
    let secret = MeshSecret::new(secret_bytes.to_vec()).expect("32 bytes is long enough");
    let exporter = [0xe7; 32];
    let mine = [0x11; 32];
    let mac = |theirs: &[u8; 32], by: Role| {
        let (dialer, acceptor) = match role {
            Role::Dialer => (&mine, theirs),
            Role::Acceptor => (theirs, &mine),
        };
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&secret_bytes)
            .expect("HMAC takes keys of any length");
        m.update(&exporter);
        m.update(dialer);
        m.update(acceptor);
        m.update(match by {
            Role::Dialer => b"dialer",
            Role::Acceptor => b"accept",
        });
        <[u8; 32]>::from(m.finalize().into_bytes())
    };

    let mut stream = peer.to_vec();
    let first = auth_step(&stream, open);
    if flags & 2 != 0 {
        if let AuthStep::Frame(AuthFrame::Challenge { nonce }, _) = first {
            let honest = AuthFrame::Proof {
                mac: mac(&nonce, role.other()),
            };
            stream.extend_from_slice(&encode_to_bytes(&honest, AUTH_FRAME_MAX).expect("fits"));
        }
    }
    let first = auth_step(&stream, open);

    // What the rules say: `None` while waiting, else success or the error's kind.
    let theirs = match first {
        AuthStep::Frame(AuthFrame::Challenge { nonce }, at) => Some((nonce, at)),
        _ => None,
    };
    let expected: Option<Result<(), &str>> = match (first, theirs) {
        (AuthStep::Wait, _) => None,
        (AuthStep::End, _) => Some(Err("Io")),
        (_, None) => Some(Err("Protocol")),
        (_, Some((nonce, at))) => match auth_step(&stream[at..], open) {
            AuthStep::Wait => None,
            AuthStep::End => Some(Err("Io")),
            AuthStep::Frame(AuthFrame::Proof { mac: got }, _)
                if got == mac(&nonce, role.other()) =>
            {
                Some(Ok(()))
            }
            AuthStep::Frame(AuthFrame::Proof { .. }, _) => Some(Err("BadProof")),
            _ => Some(Err("Protocol")),
        },
    };

    let delivered = Cell::new(0);
    // The node reads the exchange with the reader it then reads peer frames with.
    let pieces = Pieces::new(&stream, *split, open, &delivered);
    let mut reader = FrameReader::new(pieces, DEFAULT_MAX_FRAME);
    let mut out = Vec::new();
    let result = poll_once(role.exchange(&mut out, &mut reader, &secret, &exporter, mine));
    let kind = result.as_ref().map(|r| {
        r.as_ref().map(|_| ()).map_err(|e| match e {
            crate::mesh::AuthError::BadProof => "BadProof",
            crate::mesh::AuthError::Protocol(_) => "Protocol",
            crate::mesh::AuthError::Timeout => "Timeout",
            crate::mesh::AuthError::Io(_) => "Io",
        })
    });
    assert_eq!(
        kind, expected,
        "the exchange as {role:?} ended in {result:?} (None: still waiting)"
    );
    check_reader_memory(&reader, AUTH_FRAME_MAX, delivered.get());

    let mut sent = Vec::new();
    let mut rest = &out[..];
    while let AuthStep::Frame(frame, at) = auth_step(rest, false) {
        sent.push(frame);
        rest = &rest[at..];
    }
    assert!(rest.is_empty(), "this side sent bytes that are not frames");
    let mut should_send = vec![AuthFrame::Challenge { nonce: mine }];
    if let Some((nonce, _)) = theirs {
        if role == Role::Dialer || matches!(result, Some(Ok(()))) {
            should_send.push(AuthFrame::Proof {
                mac: mac(&nonce, role),
            });
        }
    }
    assert_eq!(sent, should_send, "what this side sent as {role:?}");
}

/// What the exchange's framing rules make of the bytes at the start of a stream.
#[derive(Debug, Clone)]
enum AuthStep {
    /// A whole, valid frame, and where the next one starts.
    Frame(AuthFrame, usize),
    /// The stream ended cleanly here.
    End,
    /// An incomplete frame (or nothing) on a stream that stays open.
    Wait,
    /// Anything else: a prefix over the limit, a frame cut short, a frame that is no message.
    Bad,
}

fn auth_step(bytes: &[u8], open: bool) -> AuthStep {
    let cut = if open { AuthStep::Wait } else { AuthStep::Bad };
    if bytes.is_empty() {
        return if open { AuthStep::Wait } else { AuthStep::End };
    }
    let Some(len) = prefix(bytes) else {
        return cut;
    };
    if len > AUTH_FRAME_MAX as u64 {
        return AuthStep::Bad;
    }
    let Some(payload) = bytes.get(PREFIX..PREFIX + len as usize) else {
        return cut;
    };
    match postcard::from_bytes(payload) {
        Ok(frame) => AuthStep::Frame(frame, PREFIX + payload.len()),
        Err(_) => AuthStep::Bad,
    }
}

/// Admin frames (4-byte length, JSON): `[side, split, stream...]`; bit 0 of `side` picks
/// requests as the node reads them (limit 64 KiB) or answers as `cloudctl` reads them
/// (16 MiB), bit 1 keeps the stream open after its bytes.
///
/// Asserted: `read_raw` hands out exactly the frames the framing rules give, however the
/// stream is split, ending cleanly only between frames, with `TooLarge` (the claimed size)
/// for a prefix over the limit as soon as the prefix is there, `Truncated` for a stream that
/// stops inside a frame, its prefix included, and waiting only while a frame is incomplete
/// and the stream open; `read` gives the same frames parsed, `Malformed` exactly when the
/// JSON is not a message; and every parsed message encodes as a frame that reads back the
/// same.
pub fn admin_frames(data: &[u8]) {
    let [side, split, stream @ ..] = data else {
        return;
    };
    let open = side & 2 != 0;
    if side & 1 == 0 {
        admin_stream::<AdminRequest>(stream, MAX_REQUEST_BYTES, *split, open);
    } else {
        admin_stream::<Response>(stream, MAX_RESPONSE_BYTES, *split, open);
    }
}

fn admin_stream<T>(stream: &[u8], max: usize, split: u8, open: bool)
where
    T: Serialize + DeserializeOwned + Debug,
{
    let delivered = Cell::new(0);
    let mut raw = Pieces::new(stream, split, open, &delivered);
    let parsed_delivered = Cell::new(0);
    let mut parsed = Pieces::new(stream, split, open, &parsed_delivered);
    let mut rest = stream;
    loop {
        let body = poll_once(frame::read_raw(&mut raw, max));
        let value = poll_once(frame::read::<T, _>(&mut parsed, max));
        let (body, value) = match (body, value) {
            (Some(body), Some(value)) => (body, value),
            (body, value) => {
                let decided = match prefix(rest) {
                    None => false,
                    Some(len) => len > max as u64 || rest.len() as u64 >= PREFIX as u64 + len,
                };
                assert!(
                    open && !decided,
                    "read_raw and read wait on a stream that has what they need to decide"
                );
                assert!(
                    body.is_none() && value.is_none(),
                    "one of read_raw and read waits, the other not"
                );
                return;
            }
        };
        match body {
            Ok(None) => {
                assert!(rest.is_empty(), "a clean end inside a frame");
                assert!(matches!(value, Ok(None)), "read disagrees: {value:?}");
                return;
            }
            Ok(Some(body)) => {
                let len = prefix(rest).expect("a frame has a whole prefix") as usize;
                assert!(len <= max, "a frame over the limit was read");
                assert_eq!(
                    Some(&body[..]),
                    rest.get(PREFIX..PREFIX + len),
                    "read_raw returned other bytes than the frame's"
                );
                rest = &rest[PREFIX + len..];
                match (serde_json::from_slice::<T>(&body), value) {
                    (Ok(_), Ok(Some(value))) => admin_round_trip(&value, max),
                    (Err(_), Err(FrameError::Malformed(_))) => {}
                    (json, value) => {
                        panic!("read gives {value:?} for a frame whose JSON is {json:?}")
                    }
                }
            }
            Err(FrameError::TooLarge { size, max: limit }) => {
                assert_eq!(limit, max as u64, "TooLarge names another limit");
                assert_eq!(Some(size), prefix(rest), "TooLarge names another size");
                assert!(size > limit, "a frame within the limit was refused");
                assert!(
                    matches!(value, Err(FrameError::TooLarge { .. })),
                    "read disagrees: {value:?}"
                );
                return;
            }
            Err(FrameError::Truncated) => {
                let whole =
                    prefix(rest).is_some_and(|len| rest.len() as u64 >= PREFIX as u64 + len);
                assert!(!rest.is_empty() && !whole, "Truncated for a whole frame");
                assert!(
                    matches!(value, Err(FrameError::Truncated)),
                    "read disagrees: {value:?}"
                );
                return;
            }
            Err(e) => panic!("read_raw failed on an in-memory stream: {e}"),
        }
    }
}

/// A message encodes as one admin frame, which reads back as a message that encodes the same.
fn admin_round_trip<T>(value: &T, max: usize)
where
    T: Serialize + DeserializeOwned + Debug,
{
    let once = frame::encode(value, max)
        .unwrap_or_else(|e| panic!("parsed {value:?} does not encode again: {e}"));
    let back: T = poll_once(frame::read(&mut &once[..], max))
        .unwrap_or_else(|| panic!("reading the encoding of {value:?} waits"))
        .unwrap_or_else(|e| panic!("the encoding of {value:?} does not read back: {e}"))
        .unwrap_or_else(|| panic!("the encoding of {value:?} is empty"));
    let twice = frame::encode(&back, max)
        .unwrap_or_else(|e| panic!("read back {back:?} does not encode: {e}"));
    assert_eq!(once, twice, "{value:?} comes back from JSON as {back:?}");
}

/// JSON that parses as a `T` writes back as JSON that parses as the same `T`.
fn json_round_trip<T>(json: &[u8])
where
    T: Serialize + DeserializeOwned + Debug,
{
    let Ok(value) = serde_json::from_slice::<T>(json) else {
        return;
    };
    let once = serde_json::to_vec(&value)
        .unwrap_or_else(|e| panic!("parsed {value:?} does not serialize: {e}"));
    let back: T = serde_json::from_slice(&once).unwrap_or_else(|e| {
        panic!(
            "{value:?} written as {} does not parse: {e}",
            String::from_utf8_lossy(&once)
        )
    });
    let twice = serde_json::to_vec(&back).expect("a parsed value serializes");
    assert_eq!(once, twice, "{value:?} comes back from JSON as {back:?}");
}

/// A DNS message as the dynamic DNS client reads a server's answer.
///
/// Asserted, for a message that decodes: the sections hold what the header counts; every
/// name is at most 255 bytes of labels of 1 to 63 bytes, in lower case, and comes back the
/// same from an uncompressed encoding; the TSIG record, if any, is the last record and
/// everything before it decodes as the message it signs; a message the decoder keeps whole
/// (one question at most, records it interprets, no other additional records) encodes again
/// uncompressed and decodes to the same message; and verifying its TSIG never succeeds
/// without the key (it fails with a typed error, whatever the record says).
pub fn dns_message(data: &[u8]) {
    let Ok(m) = wire::decode(data) else {
        return;
    };
    let h = m.header;
    assert_eq!(m.question.is_some(), h.qdcount > 0, "question vs QDCOUNT");
    assert_eq!(
        m.answers.len(),
        usize::from(h.ancount),
        "answers vs ANCOUNT"
    );
    assert_eq!(
        m.authority.len(),
        usize::from(h.nscount),
        "authority vs NSCOUNT"
    );
    for name in message_names(&m) {
        check_dns_name(name);
    }
    match &m.tsig {
        None => assert_eq!(m.tsig_start, data.len(), "tsig_start without a TSIG record"),
        Some(rec) => {
            assert!(h.arcount > 0 && (12..data.len()).contains(&m.tsig_start));
            let mut signed = data[..m.tsig_start].to_vec();
            wire::set_arcount(&mut signed, h.arcount - 1);
            let unsigned = wire::decode(&signed)
                .unwrap_or_else(|e| panic!("the part a TSIG signs does not decode: {e}"));
            assert_eq!(
                (
                    &unsigned.question,
                    &unsigned.answers,
                    &unsigned.authority,
                    &unsigned.tsig
                ),
                (&m.question, &m.answers, &m.authority, &None),
                "the signed part reads differently"
            );
            // A key with the record's own name and algorithm gets as far as the MAC.
            if let Some(alg) = Algorithm::parse(&rec.algorithm.to_string()) {
                let key =
                    TsigKey::new(rec.key.clone(), alg, vec![0x42; 32]).expect("secret not empty");
                assert!(
                    key.verify(data, &m, &[0x17; 32], rec.time_signed).is_err(),
                    "a TSIG verified without the key"
                );
            }
        }
    }
    let whole = h.qdcount <= 1
        && h.arcount == u16::from(m.tsig.is_some())
        && m.answers
            .iter()
            .chain(&m.authority)
            .all(|r| !matches!(r.data, RData::Other));
    if whole {
        let (again, tsig_start) = encode_dns(&m);
        let back = wire::decode(&again)
            .unwrap_or_else(|e| panic!("{m:?} encoded again does not decode: {e}"));
        assert_eq!(
            back,
            Message { tsig_start, ..m },
            "a message comes back different from its uncompressed encoding"
        );
    }
}

/// Every name in a decoded message.
fn message_names(m: &Message) -> Vec<&Name> {
    let mut names: Vec<&Name> = m.question.iter().map(|q| &q.0).collect();
    for r in m.answers.iter().chain(&m.authority) {
        names.push(&r.name);
        if let RData::Tsig(t) = &r.data {
            names.extend([&t.key, &t.algorithm]);
        }
    }
    if let Some(t) = &m.tsig {
        names.extend([&t.key, &t.algorithm]);
    }
    names
}

/// A decoded name is well formed and survives an uncompressed round trip.
fn check_dns_name(name: &Name) {
    let mut bytes = Vec::new();
    name.write(&mut bytes);
    assert_eq!(bytes.len(), name.wire_len());
    assert!(bytes.len() <= 255, "{name} is {} bytes", bytes.len());
    let mut rest = &bytes[..];
    while let [len, tail @ ..] = rest {
        let len = usize::from(*len);
        if len == 0 {
            assert!(tail.is_empty(), "{name} has an empty label");
            break;
        }
        assert!(len <= 63, "{name} has a label of {len} bytes");
        let label = &tail[..len];
        assert!(
            !label.iter().any(u8::is_ascii_uppercase),
            "{name} is not in lower case"
        );
        rest = &tail[len..];
    }
    let q = wire::query(7, name, TYPE_A);
    let back =
        wire::decode(&q).unwrap_or_else(|e| panic!("a query for {name} does not decode: {e}"));
    assert_eq!(back.question.map(|q| q.0).as_ref(), Some(name));
}

/// `m` encoded uncompressed, and where its TSIG record starts.
fn encode_dns(m: &Message) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let h = m.header;
    for v in [h.id, h.flags, h.qdcount, h.ancount, h.nscount, h.arcount] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    if let Some((name, rtype, class)) = &m.question {
        name.write(&mut out);
        out.extend_from_slice(&rtype.to_be_bytes());
        out.extend_from_slice(&class.to_be_bytes());
    }
    for r in m.answers.iter().chain(&m.authority) {
        encode_record(r, &mut out);
    }
    let tsig_start = out.len();
    if let Some(t) = &m.tsig {
        encode_record(
            &Record {
                name: t.key.clone(),
                rtype: wire::TYPE_TSIG,
                class: wire::CLASS_ANY,
                ttl: 0,
                data: RData::Tsig(t.clone()),
            },
            &mut out,
        );
    }
    (out, tsig_start)
}

fn encode_record(r: &Record, out: &mut Vec<u8>) {
    r.name.write(out);
    out.extend_from_slice(&r.rtype.to_be_bytes());
    out.extend_from_slice(&r.class.to_be_bytes());
    out.extend_from_slice(&r.ttl.to_be_bytes());
    let mut data = Vec::new();
    match &r.data {
        RData::A(a) => data.extend_from_slice(&a.octets()),
        RData::Aaaa(a) => data.extend_from_slice(&a.octets()),
        RData::Tsig(t) => encode_tsig(t, &mut data),
        RData::Other => {}
    }
    let len = u16::try_from(data.len()).expect("record data decoded from one message fits");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&data);
}

fn encode_tsig(t: &TsigRecord, out: &mut Vec<u8>) {
    let short = |n: usize| u16::try_from(n).expect("decoded from a u16 length");
    t.algorithm.write(out);
    out.extend_from_slice(&t.time_signed.to_be_bytes()[2..]);
    out.extend_from_slice(&t.fudge.to_be_bytes());
    out.extend_from_slice(&short(t.mac.len()).to_be_bytes());
    out.extend_from_slice(&t.mac);
    out.extend_from_slice(&t.original_id.to_be_bytes());
    out.extend_from_slice(&t.error.to_be_bytes());
    out.extend_from_slice(&short(t.other.len()).to_be_bytes());
    out.extend_from_slice(&t.other);
}

/// A TSIG key file (BIND's `key {}` block or `[ALGORITHM:]NAME:BASE64`), as text.
///
/// Asserted: a refusal says why; a key that parses is written back in both forms, and each
/// parses to the same name, algorithm and secret; and it signs a message that decodes with
/// its TSIG record.
pub fn tsig_key(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let key = match TsigKey::parse(text) {
        Ok(key) => key,
        Err(why) => {
            assert!(!why.is_empty(), "a key file was refused without a reason");
            return;
        }
    };
    let (name, alg) = (key.name().to_string(), key.algorithm());
    let secret = base64::engine::general_purpose::STANDARD.encode(key.secret());
    for form in [
        format!("key \"{name}\" {{\n\talgorithm {alg};\n\tsecret \"{secret}\";\n}};\n"),
        format!("{alg}:{name}:{secret}"),
    ] {
        let back = TsigKey::parse(&form)
            .unwrap_or_else(|e| panic!("{form:?}, written from a parsed key, is refused: {e}"));
        assert_eq!(
            (back.name(), back.algorithm(), back.secret()),
            (key.name(), alg, key.secret()),
            "{form:?} reads as another key"
        );
    }
    let mut msg = wire::query(9, key.name(), TYPE_A);
    let mac = key.sign(&mut msg, 1_700_000_000);
    let signed =
        wire::decode(&msg).unwrap_or_else(|e| panic!("a signed query does not decode: {e}"));
    assert_eq!(signed.tsig.map(|t| t.mac), Some(mac));
}

/// The zone map JSON a host publishes under `cloud.zones/0` and in `Zones` peer frames.
///
/// Asserted: a map that parses is valid (deserialization validates), so every lookup works
/// on it as it is, for any position a client may report (off the grid, infinite, NaN) and
/// any margin; its cells' owners add up; and it writes back as JSON that parses to the same
/// map and writes the same.
pub fn zone_map(data: &[u8]) {
    let Ok(map) = serde_json::from_slice::<ZoneMap>(data) else {
        return;
    };
    map.validate()
        .unwrap_or_else(|e| panic!("an invalid zone map parsed: {e}"));
    json_round_trip::<ZoneMap>(data);
    let json = serde_json::to_vec(&map).expect("a zone map serializes");
    let back: ZoneMap = serde_json::from_slice(&json).expect("checked by json_round_trip");
    assert_eq!(back, map, "a zone map comes back from its JSON different");

    let owned: usize = {
        let mut nodes = map.owners.clone();
        nodes.sort();
        nodes.dedup();
        nodes.iter().map(|n| map.cells_of(*n).len()).sum()
    };
    assert_eq!(owned, map.owners.len(), "cells_of misses or repeats cells");
    let far = map.cell_size * map.width.max(map.height) as f32;
    let current = map.owner(ZoneCell { x: 0, y: 0 });
    for (x, y) in [
        (0.0, 0.0),
        (far / 2.0, far / 3.0),
        (-1.0, far * 2.0),
        (f32::MAX, f32::MIN),
        (f32::NAN, 1.0),
        (f32::INFINITY, f32::NEG_INFINITY),
    ] {
        let cell = map.cell_of(x, y);
        assert!(
            cell.x < map.width && cell.y < map.height,
            "({x}, {y}) maps off the grid"
        );
        assert_eq!(map.owner_at(x, y), map.owner(cell));
        for margin in [0.0, map.cell_size / 2.0, f32::NAN, f32::INFINITY] {
            if let Some(to) = map.handover(current, x, y, margin) {
                assert_ne!(to, current, "handed over to the node it is on");
            }
        }
    }
}

/// Redirect tickets, as a node checks the ticket in a client's `Hello`.
///
/// Asserted: arbitrary bytes are accepted only if they are a ticket issued with this mesh's
/// secret for this node and not expired, and are refused with the error for the first rule
/// they break (`Invalid`, `WrongNode`, `Expired`); a ticket issued from fields taken from the
/// input is 64 bytes, admits its client once before expiry, and is refused with another
/// secret, at another node, with any one bit flipped, and a second time.
pub fn redirect_ticket(data: &[u8]) {
    let secret = MeshSecret::new(vec![0x7c; 32]).expect("32 bytes is long enough");
    let other = MeshSecret::new(vec![0x7d; 32]).expect("32 bytes is long enough");
    let me = NodeId(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
    let at = 1_700_000_000_000;

    // The input as a ticket: what is in it, and whether it was issued with our secret.
    let field = |r: std::ops::Range<usize>| {
        data.get(r)
            .map_or(0, |b| b.iter().fold(0u128, |n, &x| n << 8 | u128::from(x)))
    };
    let (client, target, expires) = (field(0..8) as u64, field(8..24), field(24..32) as u64);
    let genuine = data.len() == 64
        && issue_ticket(&secret, ClientId(client), NodeId(target), expires)[..] == *data;
    let expected = if !genuine {
        Err(TicketError::Invalid)
    } else if target != me.0 {
        Err(TicketError::WrongNode)
    } else if at > expires {
        Err(TicketError::Expired)
    } else {
        Ok(ClientId(client))
    };
    let mut book = TicketBook::default();
    assert_eq!(
        book.redeem(&secret, data, me, at),
        expected,
        "redeeming the input"
    );

    // A ticket issued from fields of the input.
    let mut f = [0u8; 25];
    let n = data.len().min(f.len());
    f[..n].copy_from_slice(&data[..n]);
    let word = |i: usize| u64::from_be_bytes(f[i..i + 8].try_into().expect("8 bytes"));
    let (client, expires, now_ms, flip) = (ClientId(word(0)), word(8), word(16), f[24]);
    let ticket = issue_ticket(&secret, client, me, expires);
    assert_eq!(ticket.len(), 64, "a ticket is 64 bytes");
    let mut book = TicketBook::default();
    assert_eq!(
        book.redeem(&other, &ticket, me, now_ms),
        Err(TicketError::Invalid)
    );
    let elsewhere = NodeId(me.0 ^ 1);
    assert_eq!(
        book.redeem(&secret, &ticket, elsewhere, now_ms),
        Err(TicketError::WrongNode)
    );
    let mut forged = ticket.to_vec();
    forged[usize::from(flip) % 64] ^= 1 << (flip % 8);
    assert_eq!(
        book.redeem(&secret, &forged, me, now_ms),
        Err(TicketError::Invalid)
    );
    if now_ms > expires {
        assert_eq!(
            book.redeem(&secret, &ticket, me, now_ms),
            Err(TicketError::Expired)
        );
    } else {
        assert_eq!(book.redeem(&secret, &ticket, me, now_ms), Ok(client));
        assert_eq!(
            book.redeem(&secret, &ticket, me, now_ms),
            Err(TicketError::Used)
        );
    }
}

/// An in-memory stream that hands its bytes out in reads of varying sizes, so a decoder sees
/// frames split anywhere, as a network delivers them. Never fails; once its bytes are out it
/// ends, or, if open, waits forever.
struct Pieces<'a> {
    /// What is left to hand out.
    rest: &'a [u8],
    /// Picks each read's size.
    pattern: u8,
    /// Reads so far.
    turn: usize,
    /// Once its bytes are out: waits (a peer that keeps the stream open) instead of ending.
    open: bool,
    /// Bytes handed out so far.
    delivered: &'a Cell<usize>,
}

impl<'a> Pieces<'a> {
    fn new(data: &'a [u8], pattern: u8, open: bool, delivered: &'a Cell<usize>) -> Self {
        Pieces {
            rest: data,
            pattern,
            turn: 0,
            open,
            delivered,
        }
    }
}

impl AsyncRead for Pieces<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.rest.is_empty() && self.open {
            // Nothing will wake the task: the checks poll once and see that it waits.
            return Poll::Pending;
        }
        // Pattern 0 hands everything out as it fits; others cycle through the sizes.
        let p = usize::from(self.pattern);
        let size = if p == 0 {
            usize::MAX
        } else {
            PIECES[(p + self.turn * (p | 1)) % PIECES.len()]
        };
        let n = size.min(self.rest.len()).min(buf.remaining());
        let (head, tail) = self.rest.split_at(n);
        buf.put_slice(head);
        self.rest = tail;
        self.turn += 1;
        self.delivered.set(self.delivered.get() + n);
        Poll::Ready(Ok(()))
    }
}

/// Polls a future over in-memory streams once: its output, or `None` if it waits. Such a
/// stream has everything there at once, so a future that waits waits for bytes that were
/// never sent (and on a stream that ends, would wait forever: a hang).
fn poll_once<F: Future>(fut: F) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => Some(out),
        Poll::Pending => None,
    }
}

/// The `cloudd` configuration file, as `cloudd --config` reads it.
///
/// Asserted: the TOML parses into the settings layer or is refused with a typed error
/// (never a panic); a layer that parses, with every file it names dropped (so the check reads
/// no file of this machine's), resolves into settings or is refused with a typed error
/// naming what is wrong; settings that resolve pass the node's own validation, and their
/// summary (`cloudd --check-config`) can be written.
pub fn config_file(data: &[u8]) {
    use crate::config::{Env, Layer, Settings};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(mut layer) = Layer::from_toml(text) else {
        return;
    };
    layer.secret_file = None;
    layer.accept_secret_file = None;
    layer.config = None;
    if let Some(dns) = layer.dns.as_mut() {
        dns.tsig_key_file = None;
    }
    if let Some(tokens) = layer.tokens.as_mut() {
        tokens.keys = None;
    }
    let env = Env {
        rust_log: None,
        secret: Some(b"a fuzzing secret, long enough".to_vec()),
    };
    let Ok(settings) = Settings::resolve(Layer::default(), Some(layer), env) else {
        return;
    };
    settings
        .node
        .validate()
        .unwrap_or_else(|e| panic!("settings that resolved fail the node's checks: {e}"));
    let summary = settings.summary();
    assert!(!summary.is_empty(), "an empty summary");
}
