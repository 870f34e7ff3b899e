//! The tracker's own allocations never land in a user's class, and the classes (reserved ones
//! included) sum exactly to what the inner allocator holds, less the 8-byte tag per block.
//!
//! Runs without the test harness (`harness = false`) so that no other thread allocates while
//! the sums are compared.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use classtrack::{ClassTracker, TrackingAlloc, METADATA_BYTES_PER_BLOCK};

/// `System`, counting the live bytes and blocks it hands out.
struct Counting;

static BYTES: AtomicU64 = AtomicU64::new(0);
static BLOCKS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to `System`; the counters are statistics only.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded caller contract.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            BYTES.fetch_add(layout.size() as u64, Ordering::SeqCst);
            BLOCKS.fetch_add(1, Ordering::SeqCst);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded caller contract.
        unsafe { System.dealloc(ptr, layout) };
        BYTES.fetch_sub(layout.size() as u64, Ordering::SeqCst);
        BLOCKS.fetch_sub(1, Ordering::SeqCst);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded caller contract.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            BYTES.fetch_add(new_size as u64, Ordering::SeqCst);
            BYTES.fetch_sub(layout.size() as u64, Ordering::SeqCst);
        }
        p
    }
}

#[global_allocator]
static ALLOC: TrackingAlloc<Counting> = TrackingAlloc::new(Counting);

struct Widget;

fn tracker_work_inside_user_scope_is_overhead() {
    let tracker = ClassTracker::new();
    let mut report = Vec::with_capacity(1 << 16);
    let kept = classtrack::scope_named("iso::user", || {
        let mine = std::hint::black_box(vec![1u8; 1234]);
        // Everything classtrack does here allocates: new classes (registry and thread-local
        // cache), snapshots (names, totals, index), the kept snapshot list, tables.
        for i in 0..2000 {
            let _g = classtrack::enter_named(&format!("iso::class{i}"));
        }
        let _w = classtrack::enter::<Widget>();
        drop(_w);
        for i in 0..50 {
            let snap = tracker.create_snapshot(&format!("snapshot {i}"));
            snap.write_table(&mut report).unwrap();
            let _ = tracker.snapshots();
        }
        mine
    });
    let snap = tracker.create_snapshot("check");
    let user = snap.class_named("iso::user").unwrap();
    // The test's own `format!` strings were allocated in the user scope and freed: only the
    // kept vector is live. Everything else the tracker did is overhead.
    assert_eq!((user.live_bytes, user.live_blocks), (1234, 1), "{user:?}");
    assert!(snap.tracker_class().live_bytes > 50 * 100);
    assert!(snap.class_named("iso::class7").is_none());
    drop(kept);
}

fn classes_sum_to_inner_allocator() {
    let _keep = std::hint::black_box(classtrack::scope_named("iso::sum", || {
        vec![vec![0u8; 77]; 100]
    }));
    let classes = classtrack::class_count();
    // classtrack's background threads (the sampler's aggregator, the peak watcher) may
    // allocate or free while the counters are read: a reading counts only when the inner
    // allocator's figures moved by nothing but the totals vector (one block, allocated and
    // counted before the counters were read) between just before and just after it.
    let vector = (classes * std::mem::size_of::<classtrack_shim::ClassCounters>()) as u64
        + METADATA_BYTES_PER_BLOCK as u64;
    for attempt in 0.. {
        let (bytes_before, blocks_before) =
            (BYTES.load(Ordering::SeqCst), BLOCKS.load(Ordering::SeqCst));
        let totals = classtrack_shim::read_totals(classes);
        let inner_bytes = BYTES.load(Ordering::SeqCst);
        let inner_blocks = BLOCKS.load(Ordering::SeqCst);
        let quiet = inner_blocks == blocks_before + 1 && inner_bytes == bytes_before + vector;
        if !quiet && attempt < 100 {
            continue;
        }
        assert!(
            quiet,
            "another thread allocated during each of 100 readings"
        );
        let bytes: u64 = totals.iter().map(|c| c.live_bytes()).sum();
        let blocks: u64 = totals.iter().map(|c| c.live_blocks()).sum();
        assert_eq!(blocks, inner_blocks);
        assert_eq!(
            bytes + blocks * METADATA_BYTES_PER_BLOCK as u64,
            inner_bytes
        );
        return;
    }
}

fn main() {
    let tests: [(&str, fn()); 2] = [
        (
            "tracker_work_inside_user_scope_is_overhead",
            tracker_work_inside_user_scope_is_overhead,
        ),
        (
            "classes_sum_to_inner_allocator",
            classes_sum_to_inner_allocator,
        ),
    ];
    for (name, test) in tests {
        test();
        println!("test {name} ... ok");
    }
    println!("test result: ok. {} passed; 0 failed", tests.len());
}
