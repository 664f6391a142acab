//! Micro-benchmarks of the wire codec: what every request, response and
//! notification costs to encode, and how fast a reader splits a buffer of frames.
//!
//! Run: `cargo bench --bench codec` (add `-- --quick` for a short run).

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

use cloudmesh::proto::{
    encode_frame, encode_to_bytes, ClientFrame, ClientId, Cursor, FrameDecoder, GetPage, Key,
    NodeId, Reply, Request, Row, ServerFrame, DEFAULT_MAX_FRAME,
};

/// Frames in the buffer the decode benchmarks split.
const FRAMES: usize = 1000;

fn post_request(id: u64) -> ClientFrame {
    ClientFrame::Request {
        id,
        op: Request::Post {
            key: Key::new("players", 4242),
            data: Bytes::from(vec![0x42; 32]),
        },
    }
}

fn posted_response(id: u64) -> ServerFrame {
    ServerFrame::Response {
        id,
        result: Ok(Reply::Posted { version: 1_234_567 }),
    }
}

fn rows_response(id: u64, rows: u32) -> ServerFrame {
    let rows: Vec<Row> = (0..rows)
        .map(|i| Row {
            key: Key::new("players", i),
            owner: ClientId(0x1234_5678_9abc_def0 + u64::from(i)),
            node: NodeId(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef),
            data: Bytes::from(vec![0x42; 32]),
            version: 1_000_000 + u64::from(i),
            updated_at_ms: 1_760_000_000_000,
        })
        .collect();
    let next = rows.last().map(|r| Cursor {
        key: r.key.clone(),
        owner: r.owner,
    });
    ServerFrame::Response {
        id,
        result: Ok(Reply::Rows(GetPage {
            rows,
            next,
            incomplete: Vec::new(),
        })),
    }
}

/// `n` frames back to back, as a reader would find them in its buffer.
fn buffer_of<T: serde::Serialize>(make: impl Fn(u64) -> T, n: usize) -> Bytes {
    let mut out = BytesMut::new();
    for i in 0..n as u64 {
        if let Err(e) = encode_frame(&make(i), DEFAULT_MAX_FRAME, &mut out) {
            panic!("benchmark frame does not encode: {e}");
        }
    }
    out.freeze()
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Elements(1));

    let post = post_request(7);
    let rows = rows_response(9, 10);
    let posted = posted_response(8);
    for (name, frame) in [
        ("client_post_32B", &post as &dyn ErasedFrame),
        ("server_posted", &posted),
        ("server_rows_10", &rows),
    ] {
        // The node's and the SDK's path: one frame, one fresh `Bytes` for the outbox.
        g.bench_function(format!("{name}/to_bytes"), |b| {
            b.iter(|| black_box(frame.to_bytes()))
        });
        // Appending into a reused buffer (what a batching writer could do).
        let mut buf = BytesMut::with_capacity(64 * 1024);
        g.bench_function(format!("{name}/into_buffer"), |b| {
            b.iter(|| {
                buf.clear();
                frame.append(&mut buf);
                black_box(buf.len())
            })
        });
    }
    g.finish();

    let size = |f: &dyn ErasedFrame| f.to_bytes().len();
    eprintln!(
        "encoded sizes: client_post_32B {} B, server_posted {} B, server_rows_10 {} B",
        size(&post),
        size(&posted),
        size(&rows)
    );
}

/// Lets one loop bench frames of different types.
trait ErasedFrame {
    fn to_bytes(&self) -> Bytes;
    fn append(&self, out: &mut BytesMut);
}

impl<T: serde::Serialize> ErasedFrame for T {
    fn to_bytes(&self) -> Bytes {
        encode_to_bytes(self, DEFAULT_MAX_FRAME).unwrap_or_default()
    }
    fn append(&self, out: &mut BytesMut) {
        let _ = encode_frame(self, DEFAULT_MAX_FRAME, out);
    }
}

/// Splits every frame off `wire`, decoding each as `T`; returns how many.
fn decode_all<T: serde::de::DeserializeOwned>(dec: &FrameDecoder, mut buf: BytesMut) -> usize {
    let mut n = 0;
    // Bounded: each iteration removes one frame or stops.
    for _ in 0..=FRAMES {
        match dec.decode::<T>(&mut buf) {
            Ok(Some(frame)) => {
                black_box(frame);
                n += 1;
            }
            Ok(None) | Err(_) => break,
        }
    }
    n
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(FRAMES as u64));
    let dec = FrameDecoder::new(DEFAULT_MAX_FRAME);

    // What the node reads from a pipelining client.
    let posts = buffer_of(post_request, FRAMES);
    assert_eq!(
        decode_all::<ClientFrame>(&dec, BytesMut::from(&posts[..])),
        FRAMES
    );
    g.bench_function(format!("client_post_32B/x{FRAMES}"), |b| {
        b.iter_batched(
            || BytesMut::from(&posts[..]),
            |buf| decode_all::<ClientFrame>(&dec, buf),
            BatchSize::SmallInput,
        )
    });

    // What the SDK reads back.
    let posted = buffer_of(posted_response, FRAMES);
    assert_eq!(
        decode_all::<ServerFrame>(&dec, BytesMut::from(&posted[..])),
        FRAMES
    );
    g.bench_function(format!("server_posted/x{FRAMES}"), |b| {
        b.iter_batched(
            || BytesMut::from(&posted[..]),
            |buf| decode_all::<ServerFrame>(&dec, buf),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, encode, decode);
criterion_main!(benches);
