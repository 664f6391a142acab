//! What every fuzz target shares: a global allocator that counts, so that besides the
//! decoder contracts of `cloudmesh::fuzzing` each target checks that one input never costs
//! more memory than a bounded multiple of its own size. A length prefix or element count
//! claiming more than arrived must cost nothing until the bytes are there.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// The system allocator, counting live bytes and their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let live = LIVE.fetch_add(by, Relaxed) + by;
    PEAK.fetch_max(live, Relaxed);
}

// SAFETY: every call is passed to `System` unchanged; the counters only observe.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's guarantees for `layout` are `System::alloc`'s.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout` (every allocation goes there).
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`, and the caller's guarantees for `new_size`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes one input may have allocated at once, beyond a multiple of its size: what serde
/// pre-allocates for a claimed element count (at most 1 MiB per collection, collections
/// nested a few deep) and the readers' first buffers.
const FIXED: usize = 4 << 20;

/// Bytes of memory one input may cost per byte of input: decoded structs are bigger than
/// their encoding (a 7-byte row is a 100-byte struct), and the checks keep a few copies.
const PER_BYTE: usize = 64;

/// Runs one contract check on `data`, then checks what it cost in memory at its peak.
pub fn run(data: &[u8], check: fn(&[u8])) {
    let base = LIVE.load(Relaxed);
    PEAK.store(base, Relaxed);
    check(data);
    let peak = PEAK.load(Relaxed).saturating_sub(base);
    let bound = PER_BYTE * data.len() + FIXED;
    assert!(
        peak <= bound,
        "a {}-byte input had {peak} bytes allocated at once (bound {bound})",
        data.len()
    );
}
