//! One request, one answer: over UDP, and again over TCP when the answer was truncated.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::wire::{self, Message};
use super::DnsError;

/// Largest request sent over UDP: the DNS flag day 2020 size, safe from fragmentation.
const MAX_UDP: usize = 1232;

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
        // An update naming many nodes could be fragmented or dropped over UDP.
        if request.len() > MAX_UDP {
            return tcp(server, request, id).await;
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dyndns::wire::{query, Name, TYPE_A};

    /// A fake server: over UDP it answers truncated, over TCP with one A record.
    #[tokio::test]
    async fn truncated_udp_answers_are_asked_again_over_tcp() {
        let (udp, tcp) = loop {
            let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind udp");
            let port = udp.local_addr().expect("addr").port();
            if let Ok(tcp) = tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
                break (udp, tcp);
            }
        };
        let server = udp.local_addr().expect("addr");
        let name = Name::parse("m.t").expect("name");
        let request = query(0x0a0b, &name, TYPE_A);
        let answer = |tc: bool| {
            let mut a = request.clone();
            a[2] = 0x84 | if tc { 0x02 } else { 0 };
            if !tc {
                a[7] = 1;
                a.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 127, 0, 0, 9]);
            }
            a
        };
        let (udp_answer, tcp_answer) = (answer(true), answer(false));
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            if let Ok((_, from)) = udp.recv_from(&mut buf).await {
                // A stray datagram with another id first: ignored by the client.
                let mut stray = udp_answer.clone();
                stray[0] ^= 0xff;
                let _ = udp.send_to(&stray, from).await;
                let _ = udp.send_to(&udp_answer, from).await;
            }
        });
        tokio::spawn(async move {
            if let Ok((mut s, _)) = tcp.accept().await {
                let n = s.read_u16().await.unwrap_or(0);
                let mut req = vec![0u8; usize::from(n)];
                let _ = s.read_exact(&mut req).await;
                let mut out = (tcp_answer.len() as u16).to_be_bytes().to_vec();
                out.extend_from_slice(&tcp_answer);
                let _ = s.write_all(&out).await;
            }
        });
        let (_, msg) = exchange(server, &request, 0x0a0b, Duration::from_secs(5))
            .await
            .expect("answered over TCP");
        assert!(!msg.header.truncated());
        assert_eq!(
            msg.answers[0].data,
            crate::dyndns::wire::RData::A("127.0.0.9".parse().expect("ip"))
        );
        // Nobody there: a timeout, named as such.
        let silent = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let e = exchange(
            silent.local_addr().expect("addr"),
            &request,
            1,
            Duration::from_millis(200),
        )
        .await
        .expect_err("no answer");
        assert!(
            e.to_string().starts_with("no answer from DNS server"),
            "{e}"
        );
    }
}
