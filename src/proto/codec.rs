//! Length-prefixed postcard framing: `u32` big-endian payload length, then the payload.
//!
//! Decoding is check-then-parse: the length is checked against the maximum before anything
//! is buffered for it, and the buffer only ever grows by what actually arrived, so a length
//! prefix of 4 GiB costs four bytes, not four gigabytes.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::de::DeserializeOwned;
use serde::Serialize;
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
        if buf.len() < PREFIX {
            return Ok(None);
        }
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len > self.max {
            return Err(CodecError::TooLarge {
                len: len as u64,
                max: self.max,
            });
        }
        if buf.len() < PREFIX + len {
            return Ok(None);
        }
        // Parse in place: no split (and no reference counting) per frame.
        let msg = postcard::from_bytes(&buf[PREFIX..PREFIX + len]);
        buf.advance(PREFIX + len);
        Ok(Some(msg?))
    }
}

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
            buf: BytesMut::with_capacity(8 * 1024),
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
            // Read at most what is there; never reserve the claimed frame length.
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(8 * 1024);
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
}
