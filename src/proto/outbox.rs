//! A connection's outgoing queue, bounded by bytes, drained by a writer task that coalesces
//! many small frames into one write (fewer packets and wake-ups on the hot path).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::AsyncWrite;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, Notify};

/// At most this many bytes are gathered into one write.
const BATCH_BYTES: usize = 256 * 1024;

/// The sending half, shared by the connection's reader and by other clients' notifications.
#[derive(Debug, Clone)]
pub struct Outbox {
    /// Frames waiting for the writer.
    tx: mpsc::UnboundedSender<Bytes>,
    /// Bytes in `tx` not yet written; the bound that makes the queue bounded.
    queued: Arc<AtomicUsize>,
    /// Signalled by the writer after each batch, for the reader's back-pressure wait.
    drained: Arc<Notify>,
    /// Over this many queued bytes, a notification marks the client as a slow consumer.
    limit: usize,
}

/// The writer's half.
#[derive(Debug)]
pub struct OutboxWriter {
    rx: mpsc::UnboundedReceiver<Bytes>,
    queued: Arc<AtomicUsize>,
    drained: Arc<Notify>,
}

/// Makes a queue that counts a client as slow past `limit` queued bytes.
pub fn outbox(limit: usize) -> (Outbox, OutboxWriter) {
    let (tx, rx) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    let drained = Arc::new(Notify::new());
    (
        Outbox {
            tx,
            queued: queued.clone(),
            drained: drained.clone(),
            limit,
        },
        OutboxWriter {
            rx,
            queued,
            drained,
        },
    )
}

/// The client stopped reading: its queue is over the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lagged;

impl Outbox {
    /// Queues a frame the client asked for (a response). Always accepted: the reader stops
    /// taking requests while the queue is long, which bounds these.
    pub fn push_response(&self, frame: Bytes) {
        self.queued.fetch_add(frame.len(), Ordering::Relaxed);
        // A send error means the writer is gone: the connection is closing anyway.
        let _ = self.tx.send(frame);
    }

    /// Queues a notification, unless the client is already too far behind.
    pub fn push_notification(&self, frame: Bytes) -> Result<(), Lagged> {
        if self.queued.load(Ordering::Relaxed) + frame.len() > self.limit {
            return Err(Lagged);
        }
        self.push_response(frame);
        Ok(())
    }

    /// Waits until at most `mark` bytes are queued (the reader's back-pressure).
    pub async fn wait_below(&self, mark: usize) {
        loop {
            let notified = self.drained.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.queued.load(Ordering::Relaxed) <= mark || self.tx.is_closed() {
                return;
            }
            notified.await;
        }
    }
}

impl OutboxWriter {
    /// Takes every frame queued so far, before the writer runs (so something can be put
    /// ahead of them: a migrated client's welcome precedes changes queued for it earlier).
    pub fn take_queued(&mut self) -> Vec<Bytes> {
        let mut out = Vec::new();
        while let Ok(frame) = self.rx.try_recv() {
            self.queued.fetch_sub(frame.len(), Ordering::Relaxed);
            out.push(frame);
        }
        out
    }

    /// The next queued frame, for a consumer inside the node (the admin key browser) rather
    /// than a connection; `None` once every [`Outbox`] is dropped.
    pub async fn recv(&mut self) -> Option<Bytes> {
        let frame = self.rx.recv().await?;
        self.queued.fetch_sub(frame.len(), Ordering::Relaxed);
        self.drained.notify_waiters();
        Some(frame)
    }

    /// Writes queued frames to `out` until every [`Outbox`] is dropped or a write fails.
    pub async fn run<W: AsyncWrite + Unpin>(mut self, out: &mut W) -> std::io::Result<()> {
        let mut batch: Vec<Bytes> = Vec::with_capacity(64);
        let mut buf = Vec::with_capacity(BATCH_BYTES);
        while let Some(first) = self.rx.recv().await {
            let mut size = first.len();
            batch.push(first);
            while size < BATCH_BYTES {
                match self.rx.try_recv() {
                    Ok(frame) => {
                        size += frame.len();
                        batch.push(frame);
                    }
                    Err(_) => break,
                }
            }
            if batch.len() == 1 {
                out.write_all(&batch[0]).await?;
            } else {
                buf.clear();
                for frame in &batch {
                    buf.extend_from_slice(frame);
                }
                out.write_all(&buf).await?;
            }
            batch.clear();
            self.queued.fetch_sub(size, Ordering::Relaxed);
            self.drained.notify_waiters();
        }
        out.flush().await
    }
}
