//! One request, one answer: over UDP, and again over TCP when the answer was truncated.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::wire::{self, Message};
use super::DnsError;

/// Sends `request` (whose id is `id`) to `server` and returns the answer's bytes and their
/// decoding. Datagrams that are not an answer to it (other ids, not responses) are ignored;
/// the connected socket already drops anything not from `server`.
pub async fn exchange(
    server: SocketAddr,
    request: &[u8],
    id: u16,
    timeout: Duration,
) -> Result<(Vec<u8>, Message), DnsError> {
    let io = |source| DnsError::Io { server, source };
    let attempt = async {
        let local: SocketAddr = if server.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            ([0u16; 8], 0).into()
        };
        let sock = UdpSocket::bind(local).await.map_err(io)?;
        sock.connect(server).await.map_err(io)?;
        sock.send(request).await.map_err(io)?;
        let mut buf = vec![0u8; 65_535];
        loop {
            let n = sock.recv(&mut buf).await.map_err(io)?;
            let raw = buf.get(..n).unwrap_or_default();
            // Too short to hold an id: not an answer to anything.
            let Some(head) = raw.get(..4) else { continue };
            if u16::from_be_bytes([head[0], head[1]]) != id || head[2] & 0x80 == 0 {
                continue;
            }
            let msg = wire::decode(raw).map_err(|e| DnsError::Malformed {
                server,
                reason: e.0,
            })?;
            if msg.header.truncated() {
                return tcp(server, request, id).await;
            }
            return Ok((raw.to_vec(), msg));
        }
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| DnsError::Timeout { server, timeout })?
}

/// The same exchange over TCP (two-byte length before each message).
async fn tcp(server: SocketAddr, request: &[u8], id: u16) -> Result<(Vec<u8>, Message), DnsError> {
    let io = |source| DnsError::Io { server, source };
    let mut stream = TcpStream::connect(server).await.map_err(io)?;
    let len = u16::try_from(request.len()).map_err(|_| DnsError::Malformed {
        server,
        reason: "request too long for TCP",
    })?;
    let mut out = Vec::with_capacity(request.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(request);
    stream.write_all(&out).await.map_err(io)?;
    let n = usize::from(stream.read_u16().await.map_err(io)?);
    // At most 64 KiB, by the length's width.
    let mut raw = vec![0u8; n];
    stream.read_exact(&mut raw).await.map_err(io)?;
    let msg = wire::decode(&raw).map_err(|e| DnsError::Malformed {
        server,
        reason: e.0,
    })?;
    if msg.header.id != id || !msg.header.is_response() {
        return Err(DnsError::Malformed {
            server,
            reason: "the TCP answer is not for our request",
        });
    }
    Ok((raw, msg))
}
