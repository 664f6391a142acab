//! A connection's outgoing queue, bounded by bytes, drained by a writer task that writes
//! everything queued so far in one write (fewer packets and wake-ups on the hot path).
//!
//! Frames are appended to one shared buffer (encoded straight into it where the caller
//! can), so queuing a frame costs no allocation and no channel node; the writer swaps that
//! buffer for its own empty one and writes it. A reader answering a batch of requests can
//! [`hold`](Outbox::hold) the writer's wake-up until the whole batch is queued.

use std::future::poll_fn;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};

use bytes::{Bytes, BytesMut};
use serde::Serialize;
use tokio::io::AsyncWrite;
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;

use super::codec::{encode_frame, CodecError};

/// A writer's buffer that grew past this is dropped after use rather than kept.
const KEEP_CAPACITY: usize = 256 * 1024;

/// Capacity of a fresh buffer.
const INITIAL_CAPACITY: usize = 4 * 1024;

/// What the senders and the writer share.
#[derive(Debug)]
struct Inner {
    state: Mutex<State>,
    /// Bytes queued and not yet written; the bound that makes the queue bounded.
    queued: AtomicUsize,
    /// Signalled by the writer after each write (and when it ends), for the reader's
    /// back-pressure wait.
    drained: Notify,
    /// Over this many queued bytes, a notification marks the client as a slow consumer.
    limit: usize,
}

#[derive(Debug)]
struct State {
    /// Frames waiting for the writer, back to back.
    buf: BytesMut,
    /// The writer's emptied buffer, kept here while the writer waits: the next frames
    /// reuse it (no allocation per write under load), and [`Outbox::trim`] can give it
    /// back while the connection is idle.
    spare: BytesMut,
    /// The writer, parked until something is queued.
    waker: Option<Waker>,
    /// Holds in force: while any, queuing does not wake the writer.
    holds: usize,
    /// Every [`Outbox`] is gone: the writer finishes what is queued and ends.
    senders_gone: bool,
    /// The writer is gone: nothing queued will be written.
    writer_gone: bool,
}

/// Ends the queue when the last [`Outbox`] clone is dropped.
#[derive(Debug)]
struct Senders(Arc<Inner>);

impl Drop for Senders {
    fn drop(&mut self) {
        let waker = {
            let mut st = self.0.lock();
            st.senders_gone = true;
            st.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding this lock; if something did, the buffer is still
        // a sequence of whole frames (appends are truncated back on error).
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The sending half, shared by the connection's reader and by other clients' notifications.
#[derive(Debug, Clone)]
pub struct Outbox {
    inner: Arc<Inner>,
    _senders: Arc<Senders>,
}

/// The writer's half.
#[derive(Debug)]
pub struct OutboxWriter {
    inner: Arc<Inner>,
}

impl Drop for OutboxWriter {
    fn drop(&mut self) {
        {
            let mut st = self.inner.lock();
            st.writer_gone = true;
            st.buf = BytesMut::new();
        }
        self.inner.drained.notify_waiters();
    }
}

/// Makes a queue that counts a client as slow past `limit` queued bytes.
pub fn outbox(limit: usize) -> (Outbox, OutboxWriter) {
    let inner = Arc::new(Inner {
        state: Mutex::new(State {
            buf: BytesMut::new(),
            spare: BytesMut::new(),
            waker: None,
            holds: 0,
            senders_gone: false,
            writer_gone: false,
        }),
        queued: AtomicUsize::new(0),
        drained: Notify::new(),
        limit,
    });
    (
        Outbox {
            _senders: Arc::new(Senders(inner.clone())),
            inner: inner.clone(),
        },
        OutboxWriter { inner },
    )
}

/// The client stopped reading: its queue is over the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lagged;

/// Keeps the writer asleep while a batch of frames is queued; wakes it when dropped.
#[derive(Debug)]
pub struct Hold<'a> {
    outbox: &'a Outbox,
}

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        let waker = {
            let mut st = self.outbox.inner.lock();
            st.holds -= 1;
            if st.holds == 0 && !st.buf.is_empty() {
                st.waker.take()
            } else {
                None
            }
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl Outbox {
    /// Appends with `append` under the lock, counts what it added, wakes the writer.
    fn append<R>(&self, append: impl FnOnce(&mut BytesMut) -> R) -> R {
        let (result, waker) = {
            let mut st = self.inner.lock();
            if st.writer_gone {
                // The connection is closing anyway: encode into a scratch buffer so the
                // caller still learns whether the frame was valid.
                return append(&mut BytesMut::new());
            }
            if st.buf.capacity() == 0 {
                if st.spare.capacity() > 0 {
                    st.buf = std::mem::take(&mut st.spare);
                } else {
                    st.buf.reserve(INITIAL_CAPACITY);
                }
            }
            let before = st.buf.len();
            let result = append(&mut st.buf);
            let added = st.buf.len() - before;
            if added == 0 {
                return result;
            }
            self.inner.queued.fetch_add(added, Ordering::Relaxed);
            let waker = if st.holds == 0 { st.waker.take() } else { None };
            (result, waker)
        };
        if let Some(w) = waker {
            w.wake();
        }
        result
    }

    /// Queues a frame the client asked for (a response). Always accepted: the reader stops
    /// taking requests while the queue is long, which bounds these.
    pub fn push_response(&self, frame: Bytes) {
        self.append(|buf| buf.extend_from_slice(&frame));
    }

    /// Encodes `msg` as one frame straight into the queue (no allocation of its own).
    /// On error nothing is queued.
    pub fn push_encoded<T: Serialize>(&self, msg: &T, max: usize) -> Result<(), CodecError> {
        self.append(|buf| encode_frame(msg, max, buf))
    }

    /// Queues a notification, unless the client is already too far behind.
    pub fn push_notification(&self, frame: Bytes) -> Result<(), Lagged> {
        if self.queued() + frame.len() > self.inner.limit {
            return Err(Lagged);
        }
        self.push_response(frame);
        Ok(())
    }

    /// Bytes queued and not yet written.
    pub fn queued(&self) -> usize {
        self.inner.queued.load(Ordering::Relaxed)
    }

    /// Holds the writer's wake-up until the returned guard is dropped, so that a batch of
    /// answers goes out in one write. Frames are queued (and ordered) as usual meanwhile;
    /// keep the hold short and never across an `.await`.
    pub fn hold(&self) -> Hold<'_> {
        self.inner.lock().holds += 1;
        Hold { outbox: self }
    }

    /// Gives back the queue's buffers if nothing is queued (the writer has written
    /// everything): what an idle connection holds then is no buffer at all. The next frame
    /// allocates a fresh one. Returns the bytes of capacity given back.
    pub fn trim(&self) -> usize {
        let mut st = self.inner.lock();
        if !st.buf.is_empty() {
            return 0;
        }
        let freed = st.buf.capacity() + st.spare.capacity();
        st.buf = BytesMut::new();
        st.spare = BytesMut::new();
        freed
    }

    /// Waits until at most `mark` bytes are queued (the reader's back-pressure).
    pub async fn wait_below(&self, mark: usize) {
        loop {
            let notified = self.inner.drained.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.queued() <= mark || self.inner.lock().writer_gone {
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
        let taken = std::mem::take(&mut self.inner.lock().buf);
        if taken.is_empty() {
            return Vec::new();
        }
        self.inner.queued.fetch_sub(taken.len(), Ordering::Relaxed);
        vec![taken.freeze()]
    }

    /// Waits for queued bytes and swaps them for `spare` (empty); `false` once every
    /// [`Outbox`] is dropped and nothing is left.
    async fn take(&mut self, spare: &mut BytesMut) -> bool {
        poll_fn(|cx| {
            let mut st = self.inner.lock();
            if !st.buf.is_empty() {
                if spare.capacity() == 0 {
                    *spare = std::mem::take(&mut st.spare);
                }
                std::mem::swap(&mut st.buf, spare);
                return Poll::Ready(true);
            }
            if st.senders_gone {
                return Poll::Ready(false);
            }
            match &st.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => st.waker = Some(cx.waker().clone()),
            }
            // Nothing to write: the emptied buffer waits in the shared state, where the
            // next frames reuse it and a trim can reach it.
            if spare.capacity() > st.spare.capacity() {
                st.spare = std::mem::take(spare);
            }
            Poll::Pending
        })
        .await
    }

    /// The next queued bytes (one or more whole frames), for a consumer inside the node
    /// (the admin key browser) rather than a connection; `None` once every [`Outbox`] is
    /// dropped.
    pub async fn recv(&mut self) -> Option<Bytes> {
        let mut out = BytesMut::new();
        if !self.take(&mut out).await {
            return None;
        }
        self.inner.queued.fetch_sub(out.len(), Ordering::Relaxed);
        self.inner.drained.notify_waiters();
        Some(out.freeze())
    }

    /// Writes queued frames to `out` until every [`Outbox`] is dropped or a write fails.
    pub async fn run<W: AsyncWrite + Unpin>(mut self, out: &mut W) -> std::io::Result<()> {
        self.write_to(out).await
    }

    /// Like [`OutboxWriter::run`], but keeps the writer: after a failed write the frames
    /// queued behind the one being written are still here, whole, for another connection
    /// (a node keeps them for a client that resumes its session).
    pub async fn write_to<W: AsyncWrite + Unpin>(&mut self, out: &mut W) -> std::io::Result<()> {
        // Empty: `take` swaps it for the queued frames, and the queue reuses it.
        let mut buf = BytesMut::new();
        while self.take(&mut buf).await {
            out.write_all(&buf).await?;
            self.inner.queued.fetch_sub(buf.len(), Ordering::Relaxed);
            self.inner.drained.notify_waiters();
            buf.clear();
            if buf.capacity() > KEEP_CAPACITY {
                buf = BytesMut::with_capacity(INITIAL_CAPACITY);
            }
        }
        out.flush().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_keep_their_order_and_the_writer_ends_with_the_senders() {
        let (outbox, writer) = outbox(1024);
        let other = outbox.clone();
        outbox.push_response(Bytes::from_static(b"ab"));
        {
            let _hold = outbox.hold();
            other.push_response(Bytes::from_static(b"cd"));
            outbox
                .push_encoded(&7u8, 16)
                .expect("a small frame encodes");
        }
        assert!(other
            .push_notification(Bytes::from(vec![0u8; 2000]))
            .is_err());
        assert_eq!(outbox.queued(), 2 + 2 + 5);
        drop(outbox);
        drop(other);
        let mut out = Vec::new();
        writer.run(&mut out).await.expect("writes");
        assert_eq!(out, b"abcd\x00\x00\x00\x01\x07");
    }

    #[tokio::test]
    async fn a_failed_encode_queues_nothing() {
        let (outbox, mut writer) = outbox(1024);
        assert!(outbox.push_encoded(&vec![1u8; 100], 10).is_err());
        assert_eq!(outbox.queued(), 0);
        outbox.push_response(Bytes::from_static(b"x"));
        assert_eq!(writer.take_queued(), vec![Bytes::from_static(b"x")]);
        assert_eq!(outbox.queued(), 0);
    }

    /// Under load the writer and the queue pass one buffer back and forth (no allocation
    /// per write); once everything is written a trim gives every buffer back, and the
    /// queue goes on working after it.
    #[tokio::test]
    async fn buffers_are_reused_under_load_and_trimmed_when_idle() {
        let (outbox, writer) = outbox(1 << 20);
        let (mut client, mut server) = tokio::io::duplex(1 << 16);
        let task = tokio::spawn(async move { writer.run(&mut server).await });
        for round in 0..3u8 {
            outbox.push_response(Bytes::from(vec![round; 10_000]));
            let mut got = vec![0u8; 10_000];
            tokio::io::AsyncReadExt::read_exact(&mut client, &mut got)
                .await
                .expect("written");
            assert_eq!(got, vec![round; 10_000]);
            // The writer parks after the write; give it the moment it needs (bounded).
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
            while outbox.inner.lock().spare.capacity() == 0 {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "writer never parked"
                );
                tokio::task::yield_now().await;
            }
            {
                let st = outbox.inner.lock();
                assert!(st.buf.is_empty());
                assert!(
                    st.spare.capacity() >= 10_000,
                    "the written buffer is kept for reuse"
                );
            }
            assert!(outbox.trim() >= 10_000);
            let st = outbox.inner.lock();
            assert_eq!(st.buf.capacity() + st.spare.capacity(), 0, "trimmed");
        }
        drop(outbox);
        task.await.expect("joins").expect("ends cleanly");
    }
}
