//! Admin frames: a 4-byte big-endian length, then that many bytes of JSON. The length is
//! checked against the reader's limit before anything is allocated (check, then parse), and
//! the body's buffer grows only with the bytes that actually arrive.

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The announced length is over the limit; the connection cannot be resynchronised.
    #[error("frame of {size} bytes is over the {max} byte limit")]
    TooLarge {
        /// Announced size.
        size: u64,
        /// Limit.
        max: u64,
    },
    /// The bytes are not the JSON expected.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// The stream ended inside a frame.
    #[error("connection closed inside a frame")]
    Truncated,
    /// Reading or writing failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads one frame's bytes; `Ok(None)` at a clean end of stream (between frames).
pub async fn read_raw<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
) -> Result<Option<Vec<u8>>, FrameError> {
    // Read the prefix by hand: the end of the stream is clean only before its first byte,
    // and `read_exact` cannot tell that from an end after one to three bytes of it.
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < len.len() {
        match r.read(&mut len[got..]).await {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(FrameError::Truncated),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let size = u32::from_be_bytes(len) as usize;
    if size > max {
        return Err(FrameError::TooLarge {
            size: size as u64,
            max: max as u64,
        });
    }
    // The body grows with what arrives (doubling from 8 KiB), never to the claimed size up
    // front: a prefix alone must not cost what it claims, up to 16 MiB for an answer.
    let mut body = Vec::with_capacity(size.min(8 * 1024));
    let got = (&mut *r).take(size as u64).read_to_end(&mut body).await?;
    if got < size {
        return Err(FrameError::Truncated);
    }
    Ok(Some(body))
}

/// Reads and parses one frame; `Ok(None)` at a clean end of stream.
pub async fn read<T: DeserializeOwned, R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
) -> Result<Option<T>, FrameError> {
    match read_raw(r, max).await? {
        None => Ok(None),
        Some(body) => serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| FrameError::Malformed(e.to_string())),
    }
}

/// Encodes `value` as one frame, refusing one over `max`.
pub fn encode<T: Serialize>(value: &T, max: usize) -> Result<Vec<u8>, FrameError> {
    let body = serde_json::to_vec(value).map_err(|e| FrameError::Malformed(e.to_string()))?;
    if body.len() > max {
        return Err(FrameError::TooLarge {
            size: body.len() as u64,
            max: max as u64,
        });
    }
    let mut out = Vec::with_capacity(4 + body.len());
    // Fits: max is at most MAX_RESPONSE_BYTES, far below u32::MAX.
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Writes one frame.
pub async fn write<T: Serialize, W: AsyncWrite + Unpin>(
    w: &mut W,
    value: &T,
    max: usize,
) -> Result<(), FrameError> {
    let bytes = encode(value, max)?;
    w.write_all(&bytes).await?;
    w.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip_and_clean_end() {
        let bytes = encode(&vec![1u32, 2, 3], 100).expect("encode");
        let mut r = &bytes[..];
        let v: Option<Vec<u32>> = read(&mut r, 100).await.expect("read");
        assert_eq!(v, Some(vec![1, 2, 3]));
        let end: Option<Vec<u32>> = read(&mut r, 100).await.expect("end");
        assert_eq!(end, None);
    }

    #[tokio::test]
    async fn huge_length_is_refused_before_allocating() {
        let bytes = [0xffu8, 0xff, 0xff, 0xff];
        let mut r = &bytes[..];
        let e = read_raw(&mut r, 1024).await.expect_err("too large");
        assert!(
            matches!(
                e,
                FrameError::TooLarge {
                    size: 4294967295,
                    max: 1024
                }
            ),
            "{e}"
        );
    }

    #[tokio::test]
    async fn truncated_and_malformed_are_errors() {
        let mut r = &[0u8, 0, 0, 10, b'{'][..];
        assert!(matches!(
            read_raw(&mut r, 100).await,
            Err(FrameError::Truncated)
        ));
        // An end inside the length prefix is inside a frame too, not a clean end.
        for cut in 1..4 {
            let mut r = &[0u8, 0, 0, 2][..cut];
            assert!(
                matches!(read_raw(&mut r, 100).await, Err(FrameError::Truncated)),
                "{cut} bytes of prefix"
            );
        }
        let bytes = [0u8, 0, 0, 3, b'{', b'x', b'}'];
        let mut r = &bytes[..];
        let e = read::<serde_json::Value, _>(&mut r, 100)
            .await
            .expect_err("bad json");
        assert!(matches!(e, FrameError::Malformed(_)));
    }
}
