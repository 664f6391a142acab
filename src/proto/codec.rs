//! Length-prefixed postcard framing: `u32` big-endian payload length, then the payload.
//!
//! Decoding is check-then-parse: the length is checked against the maximum before anything
//! is buffered for it, and the buffer only ever grows by what actually arrived, so a length
//! prefix of 4 GiB costs four bytes, not four gigabytes.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::future::Future;
use std::task::Poll;

use tokio::io::{AsyncRead, AsyncReadExt};

/// Bytes of the length prefix.
const PREFIX: usize = 4;

/// Why a frame could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// A length prefix (or an outgoing message) is over the maximum.
    #[error("frame of {len} bytes is over the maximum of {max}")]
    TooLarge {
        /// The claimed or encoded length.
        len: u64,
        /// The maximum.
        max: usize,
    },
    /// The payload is not a valid message.
    #[error("malformed frame: {0}")]
    Malformed(#[from] postcard::Error),
    /// The stream ended in the middle of a frame.
    #[error("stream ended inside a frame ({buffered} bytes buffered)")]
    Truncated {
        /// Bytes of the incomplete frame that did arrive.
        buffered: usize,
    },
    /// Reading from the stream failed.
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
}

/// A postcard output that appends to a `BytesMut` slice by slice (postcard's `to_extend`
/// goes byte by byte through `Extend<u8>`, which is several times slower).
struct BytesMutFlavor<'a>(&'a mut BytesMut);

impl postcard::ser_flavors::Flavor for BytesMutFlavor<'_> {
    type Output = ();

    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    #[inline]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.put_u8(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Appends one frame holding `msg` to `out`. On error `out` is left as it was.
pub fn encode_frame<T: Serialize>(
    msg: &T,
    max: usize,
    out: &mut BytesMut,
) -> Result<(), CodecError> {
    let start = out.len();
    out.put_u32(0);
    if let Err(e) = postcard::serialize_with_flavor(msg, BytesMutFlavor(out)) {
        out.truncate(start);
        return Err(e.into());
    }
    let len = out.len() - start - PREFIX;
    if len > max {
        out.truncate(start);
        return Err(CodecError::TooLarge {
            len: len as u64,
            max,
        });
    }
    // The payload length always fits: it is at most `max`, and `max` is a usize we chose.
    out[start..start + PREFIX].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(())
}

/// One frame holding `msg`, ready to write (encode once, send to many subscribers).
pub fn encode_to_bytes<T: Serialize>(msg: &T, max: usize) -> Result<Bytes, CodecError> {
    let mut out = BytesMut::with_capacity(64);
    encode_frame(msg, max, &mut out)?;
    Ok(out.freeze())
}

/// Splits frames off a buffer of received bytes.
#[derive(Debug, Clone, Copy)]
pub struct FrameDecoder {
    /// Largest accepted payload; a longer length prefix is an error.
    pub max: usize,
}

impl FrameDecoder {
    /// A decoder that accepts payloads up to `max` bytes.
    pub fn new(max: usize) -> Self {
        FrameDecoder { max }
    }

    /// Takes one whole frame off the front of `buf`, if one is there.
    ///
    /// `Ok(None)` means "need more bytes". On error the buffer's content is unspecified and
    /// the stream must be abandoned: framing is lost.
    pub fn decode<T: DeserializeOwned>(&self, buf: &mut BytesMut) -> Result<Option<T>, CodecError> {
        // Parse in place: no split (and no reference counting) per frame.
        let Some((msg, used)) = self.decode_slice(buf)? else {
            return Ok(None);
        };
        buf.advance(used);
        Ok(Some(msg))
    }

    /// The first whole frame of `bytes` and how many bytes it took, if one is there; the
    /// same checks as [`FrameDecoder::decode`] (the length before the payload).
    pub fn decode_slice<T: DeserializeOwned>(
        &self,
        bytes: &[u8],
    ) -> Result<Option<(T, usize)>, CodecError> {
        if bytes.len() < PREFIX {
            return Ok(None);
        }
        let len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        if len > self.max {
            return Err(CodecError::TooLarge {
                len: len as u64,
                max: self.max,
            });
        }
        if bytes.len() < PREFIX + len {
            return Ok(None);
        }
        let msg = postcard::from_bytes(&bytes[PREFIX..PREFIX + len])?;
        Ok(Some((msg, PREFIX + len)))
    }
}

/// Bytes a reader with nothing buffered reads into a buffer of its future's own, so that a
/// connection waiting for its next request holds no heap buffer (thousands of idle clients
/// would otherwise hold a read buffer each). A request that fits is parsed from there with
/// no allocation at all; a longer arrival goes on into the heap buffer.
const FIRST_READ: usize = 512;

/// Room the heap buffer is grown by when a read has less than [`MIN_READ_ROOM`] left.
const READ_GROWTH: usize = 8 * 1024;

/// Least room a heap-buffer read is given.
const MIN_READ_ROOM: usize = 4096;

/// Reads frames from any async byte stream (QUIC stream, Unix socket).
#[derive(Debug)]
pub struct FrameReader<R> {
    /// The stream.
    inner: R,
    /// Received bytes not yet decoded.
    buf: BytesMut,
    /// Frame rules.
    decoder: FrameDecoder,
}

impl<R> FrameReader<R> {
    /// Bytes received and not yet handed out as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Bytes the read buffer has room for: what this reader costs in memory.
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Wraps `inner`, accepting payloads up to `max` bytes.
    pub fn new(inner: R, max: usize) -> Self {
        FrameReader {
            inner,
            buf: BytesMut::new(),
            decoder: FrameDecoder::new(max),
        }
    }

    /// The next frame, or `None` at a clean end of stream (between frames).
    pub async fn next<T: DeserializeOwned>(&mut self) -> Result<Option<T>, CodecError> {
        self.next_within(self.decoder.max).await
    }

    /// Like [`FrameReader::next`], with a lower limit for this one frame: for a step of a
    /// protocol whose frames are small (the mesh authentication reads its 33-byte frames with
    /// the reader it then reads peer frames with), so that a peer cannot make the reader wait
    /// for, and buffer, a frame as big as later steps allow.
    pub async fn next_within<T: DeserializeOwned>(
        &mut self,
        max: usize,
    ) -> Result<Option<T>, CodecError> {
        let decoder = FrameDecoder::new(max.min(self.decoder.max));
        loop {
            if let Some(frame) = decoder.decode(&mut self.buf)? {
                return Ok(Some(frame));
            }
            if self.buf.is_empty() {
                // Under load the next requests are usually there already: take them into
                // the buffer in use (an empty one is reclaimed whole), without waiting.
                if self.buf.capacity() > 0 {
                    if self.buf.capacity() < MIN_READ_ROOM {
                        self.buf.reserve(READ_GROWTH);
                    }
                    let read = self.inner.read_buf(&mut self.buf);
                    tokio::pin!(read);
                    // Dropping the read unfinished loses nothing (tokio's `read_buf` is
                    // cancel-safe): no byte has been taken from the stream then.
                    let ready = std::future::poll_fn(|cx| match read.as_mut().poll(cx) {
                        Poll::Ready(r) => Poll::Ready(Some(r)),
                        Poll::Pending => Poll::Ready(None),
                    })
                    .await;
                    match ready {
                        Some(Ok(0)) => return Ok(None),
                        Some(Ok(_)) => continue,
                        Some(Err(e)) => return Err(e.into()),
                        None => {}
                    }
                }
                // Waiting between requests: give the heap buffer back and wait with a
                // small one of this future's own.
                self.buf = BytesMut::new();
                let mut first = [0u8; FIRST_READ];
                let n = self.inner.read(&mut first).await?;
                if n == 0 {
                    return Ok(None);
                }
                let arrived = &first[..n];
                let (frame, used) = match decoder.decode_slice(arrived)? {
                    Some((frame, used)) => (Some(frame), used),
                    None => (None, 0),
                };
                // Only what is left over (further frames, a partial one) is copied.
                self.buf.extend_from_slice(&arrived[used..]);
                if frame.is_some() {
                    return Ok(frame);
                }
                continue;
            }
            // Read at most what is there; never reserve the claimed frame length.
            if self.buf.capacity() - self.buf.len() < MIN_READ_ROOM {
                self.buf.reserve(READ_GROWTH);
            }
            let n = self.inner.read_buf(&mut self.buf).await?;
            if n == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(CodecError::Truncated {
                        buffered: self.buf.len(),
                    })
                };
            }
        }
    }

    /// The next frame if a whole one is already buffered, without reading from the stream
    /// (so a caller can handle everything that arrived together in one go).
    pub fn next_buffered<T: DeserializeOwned>(&mut self) -> Result<Option<T>, CodecError> {
        self.decoder.decode(&mut self.buf)
    }

    /// Whether a whole frame is already buffered (so `next` will not wait).
    pub fn has_buffered_frame(&self) -> bool {
        if self.buf.len() < PREFIX {
            return false;
        }
        let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
        len > self.decoder.max || self.buf.len() >= PREFIX + len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{ClientFrame, GetQuery, Hello, Key, KeySpec, Request, ServerFrame};
    use proptest::prelude::*;

    fn arb_request() -> impl Strategy<Value = Request> {
        let key = ("[a-z.]{1,20}", any::<u32>()).prop_map(|(p, s)| Key::new(p, s));
        let data = proptest::collection::vec(any::<u8>(), 0..200).prop_map(Bytes::from);
        prop_oneof![
            (key.clone(), data.clone()).prop_map(|(key, data)| Request::Post { key, data }),
            proptest::collection::vec(key.clone(), 0..5).prop_map(|keys| Request::Release { keys }),
            (
                proptest::collection::vec(key.clone(), 0..5),
                any::<bool>(),
                any::<u32>()
            )
                .prop_map(|(keys, subscribe, limit)| Request::Get(GetQuery {
                    keys: keys.into_iter().map(KeySpec::from).collect(),
                    owners: None,
                    start: None,
                    limit,
                    subscribe,
                })),
            data.prop_map(|data| Request::SetSession { data }),
            Just(Request::Ping),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(id in any::<u64>(), op in arb_request()) {
            let frame = ClientFrame::Request { id, op };
            let bytes = encode_to_bytes(&frame, 1 << 20).expect("encodes");
            let mut buf = BytesMut::from(&bytes[..]);
            let back: ClientFrame = FrameDecoder::new(1 << 20).decode(&mut buf).expect("decodes").expect("whole");
            prop_assert_eq!(back, frame);
            prop_assert!(buf.is_empty());
        }

        #[test]
        fn split_anywhere(op in arb_request(), cut in 0usize..300) {
            let frame = ClientFrame::Request { id: 7, op };
            let bytes = encode_to_bytes(&frame, 1 << 20).expect("encodes");
            let cut = cut.min(bytes.len());
            let dec = FrameDecoder::new(1 << 20);
            let mut buf = BytesMut::from(&bytes[..cut]);
            let first: Option<ClientFrame> = dec.decode(&mut buf).expect("no error on a prefix");
            if cut < bytes.len() {
                prop_assert!(first.is_none());
                buf.extend_from_slice(&bytes[cut..]);
                let back: ClientFrame = dec.decode(&mut buf).expect("decodes").expect("whole");
                prop_assert_eq!(back, frame);
            } else {
                prop_assert_eq!(first, Some(frame));
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let dec = FrameDecoder::new(1024);
            let mut buf = BytesMut::from(&bytes[..]);
            // Any outcome is fine except a panic; stop at the first error like a real reader.
            for _ in 0..64 {
                match dec.decode::<ClientFrame>(&mut buf) {
                    Ok(Some(_)) => continue,
                    Ok(None) | Err(_) => break,
                }
            }
            let mut buf = BytesMut::from(&bytes[..]);
            let _ = dec.decode::<ServerFrame>(&mut buf);
        }
    }

    #[test]
    fn huge_length_prefix_is_rejected_without_allocating() {
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3][..]);
        let err = FrameDecoder::new(1 << 20)
            .decode::<ClientFrame>(&mut buf)
            .expect_err("must be refused");
        assert!(
            matches!(
                err,
                CodecError::TooLarge {
                    len: 4_294_967_295,
                    ..
                }
            ),
            "{err}"
        );
        assert!(buf.capacity() < 1024);
    }

    #[test]
    fn oversize_message_is_not_encoded() {
        let frame = ClientFrame::Request {
            id: 1,
            op: Request::SetSession {
                data: Bytes::from(vec![0u8; 2000]),
            },
        };
        let mut out = BytesMut::new();
        out.extend_from_slice(b"keep");
        let err = encode_frame(&frame, 1000, &mut out).expect_err("must be refused");
        assert!(matches!(err, CodecError::TooLarge { .. }));
        assert_eq!(
            &out[..],
            b"keep",
            "a failed encode leaves earlier frames intact"
        );
    }

    #[tokio::test]
    async fn a_lower_limit_for_one_frame_refuses_a_big_prefix_without_waiting() {
        // A 2 KiB frame announced on a stream that stays open: within the reader's limit,
        // over the step's.
        let (mut peer, stream) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut peer, &2048u32.to_be_bytes())
            .await
            .expect("write");
        let mut reader = FrameReader::new(stream, 1 << 20);
        let err = reader
            .next_within::<ClientFrame>(1024)
            .await
            .expect_err("refused from the prefix");
        assert!(
            matches!(
                err,
                CodecError::TooLarge {
                    len: 2048,
                    max: 1024
                }
            ),
            "{err}"
        );
    }

    #[tokio::test]
    async fn reader_reports_truncation_and_clean_end() {
        let hello = encode_to_bytes(&ClientFrame::Hello(Hello::current()), 1024).expect("encodes");
        let mut whole = FrameReader::new(&hello[..], 1024);
        assert!(whole.next::<ClientFrame>().await.expect("ok").is_some());
        assert!(whole
            .next::<ClientFrame>()
            .await
            .expect("clean end")
            .is_none());

        let cut = &hello[..hello.len() - 1];
        let mut part = FrameReader::new(cut, 1024);
        let err = part
            .next::<ClientFrame>()
            .await
            .expect_err("must be refused");
        assert!(matches!(err, CodecError::Truncated { .. }), "{err}");
    }

    /// A connection waiting between requests holds no read buffer of its own; requests of
    /// every size, alone or several in one arrival, still come out whole and in order.
    #[tokio::test]
    async fn a_reader_waiting_between_requests_holds_no_buffer() {
        let small = Request::Post {
            key: Key::new("players", 1),
            data: Bytes::from_static(b"x"),
        };
        let big = Request::Post {
            key: Key::new("players", 2),
            data: Bytes::from(vec![7u8; 3 * FIRST_READ]),
        };
        let frame = |op: &Request, id| {
            encode_to_bytes(&ClientFrame::Request { id, op: op.clone() }, 1 << 20).expect("encodes")
        };
        let (mut peer, stream) = tokio::io::duplex(64 * 1024);
        let mut reader = FrameReader::new(stream, 1 << 20);
        assert_eq!(reader.capacity(), 0, "a new reader allocates nothing");

        // One small request: parsed from the reader's own small buffer.
        tokio::io::AsyncWriteExt::write_all(&mut peer, &frame(&small, 1))
            .await
            .expect("write");
        let got: ClientFrame = reader.next().await.expect("ok").expect("a frame");
        assert!(matches!(got, ClientFrame::Request { id: 1, op } if op == small));
        assert_eq!(reader.capacity(), 0, "nothing kept after a small request");

        // A big one, then two small ones in one arrival behind another big one.
        let mut burst = frame(&big, 2).to_vec();
        burst.extend_from_slice(&frame(&small, 3));
        burst.extend_from_slice(&frame(&small, 4));
        tokio::io::AsyncWriteExt::write_all(&mut peer, &burst)
            .await
            .expect("write");
        for want in 2..=4u64 {
            let got: ClientFrame = reader.next().await.expect("ok").expect("a frame");
            let ClientFrame::Request { id, op } = got else {
                panic!("not a request");
            };
            assert_eq!(id, want);
            assert_eq!(
                op,
                if want == 2 {
                    big.clone()
                } else {
                    small.clone()
                }
            );
        }
        // The buffer the burst needed is given back at the next wait.
        let waiting = tokio::time::timeout(
            std::time::Duration::from_millis(20),
            reader.next::<ClientFrame>(),
        )
        .await;
        assert!(waiting.is_err(), "nothing more was sent");
        assert_eq!(reader.capacity(), 0, "an idle reader holds no buffer");
        drop(peer);
        assert!(reader
            .next::<ClientFrame>()
            .await
            .expect("clean end")
            .is_none());
    }
}
