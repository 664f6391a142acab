//! The idle scenario (budget: 10,000 idle clients on one node in < 1 GiB RSS): connects N
//! clients that each hold a few rows and then do nothing. Measuring the node's memory is
//! the caller's part (it knows the process, or asks the admin socket).

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{micros, BenchError, Report, Target};
use crate::client::Client;
use crate::proto::Key;

/// Clients connected by [`idle`]; they stay connected until [`IdleClients::close`].
#[derive(Debug)]
pub struct IdleClients {
    /// The connected clients.
    clients: Vec<Client>,
    /// Per client (`ops`): connect plus posting its rows.
    pub report: Report,
}

impl IdleClients {
    /// How many are connected.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// Disconnects every client, `concurrency` at a time.
    pub async fn close(self, concurrency: usize) {
        let mut set = tokio::task::JoinSet::new();
        for c in self.clients {
            while set.len() >= concurrency.max(1) {
                let _ = set.join_next().await;
            }
            set.spawn(c.close());
        }
        while set.join_next().await.is_some() {}
    }
}

/// Connects `clients` clients to `target`, `concurrency` handshakes at a time; each posts
/// `rows` rows of `value_size` bytes, then idles (keep-alives only). Fails on the first
/// client that cannot connect: a partial count would misstate memory per client.
pub async fn idle(
    target: &Target,
    clients: usize,
    rows: u32,
    value_size: usize,
    concurrency: usize,
) -> Result<IdleClients, BenchError> {
    let value = Bytes::from(vec![0x42; value_size]);
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    let mut connected = Vec::with_capacity(clients);
    let mut latencies = Vec::with_capacity(clients);
    let mut launched = 0usize;
    while connected.len() < clients {
        while launched < clients && set.len() < concurrency.max(1) {
            let (t, value, i) = (target.clone(), value.clone(), launched);
            set.spawn(async move {
                let began = Instant::now();
                let c = Client::connect(t.addr, t.client).await?;
                for r in 0..rows {
                    c.post(Key::new(format!("bench.idle.{i}"), r), value.clone())
                        .await?;
                }
                Ok::<_, BenchError>((c, micros(began.elapsed())))
            });
            launched += 1;
        }
        match set.join_next().await {
            Some(Ok(Ok((c, us)))) => {
                connected.push(c);
                latencies.push(us);
            }
            Some(Ok(Err(e))) => {
                set.abort_all();
                IdleClients {
                    clients: connected,
                    report: Report::from_latencies(&mut [], 0, Duration::ZERO),
                }
                .close(concurrency)
                .await;
                return Err(e);
            }
            Some(Err(e)) => return Err(BenchError::Mesh(format!("a client task failed: {e}"))),
            None => break,
        }
    }
    Ok(IdleClients {
        clients: connected,
        report: Report::from_latencies(&mut latencies, 0, start.elapsed()),
    })
}
