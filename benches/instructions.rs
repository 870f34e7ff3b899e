//! Instructions per alloc/free pair, counted by valgrind's callgrind (deterministic, unlike
//! wall time on a shared machine). Run it through `python3 benches/instructions.py`, which
//! builds this binary, runs it under callgrind for each allocator with 0 and N pairs, and
//! prints the difference per pair.
//!
//! `instructions MODE PAIRS`, MODE one of `system`, `tracked-off` (TrackingAlloc<System>,
//! sampling off), `tracked` (TrackingAlloc<System>, default sampling) and `tracked-peak`
//! (the same inside a class scope, with a `ClassTracker` alive, so that the allocator watches
//! the live user heap for its peak) and `measured` (the same inside
//! `classtrack::testing::measure`); or, for two threads
//! allocating batches of typical small blocks, `system-2t`, `plus8-2t` (System asked for 8
//! more bytes a block) and `tracked-2t`. Every mode calls its
//! allocator through the same `&dyn GlobalAlloc`, so the loop and the call cost the same in
//! each; blocks of 16 to 256 bytes, each freed at once. What happens once per process (the
//! thread's counter shard, the sampler's set-up at its first sample) happens before the
//! counted pairs, in both runs.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;

use classtrack::TrackingAlloc;

static TRACKED: TrackingAlloc<System> = TrackingAlloc::new(System);

/// `System` asked for 8 bytes more than each block needs: the size classes the tag moves
/// blocks to, without tracking.
struct Plus8;

// SAFETY: forwards to `System` with the size grown by 8 at the same alignment, the same way
// for a block's alloc and dealloc.
unsafe impl GlobalAlloc for Plus8 {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: `grown` is valid for the bench's small sizes; a non-zero layout.
        unsafe { System.alloc(grown(layout)) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: allocated by `alloc` above with the grown layout.
        unsafe { System.dealloc(ptr, grown(layout)) }
    }
}

/// `layout` with 8 bytes more, unchecked (as `TrackingAlloc` on its fast path), so that only
/// the size classes differ from `System`'s; only for the bench's small sizes.
#[inline(always)]
fn grown(layout: Layout) -> Layout {
    // SAFETY: the bench's sizes are small: size + 8 rounded up to the alignment is far below
    // isize::MAX.
    unsafe { Layout::from_size_align_unchecked(layout.size() + 8, layout.align()) }
}

/// Sizes of typical small Rust blocks; half of them 8 more than a multiple of 16, which the
/// 8-byte tag moves to glibc's next size class.
const TYPICAL_SIZES: [usize; 8] = [24, 40, 56, 24, 32, 48, 64, 80];

/// `pairs` alloc/free pairs over two threads, each allocating 64 blocks of
/// [`TYPICAL_SIZES`] and then freeing them, as many rounds as it takes.
fn two_thread_batches(alloc: &'static (dyn GlobalAlloc + Sync), pairs: usize) {
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(move || {
                let mut blocks = [(std::ptr::null_mut::<u8>(), Layout::new::<u8>()); 64];
                for _ in 0..pairs / 2 / blocks.len() {
                    for (i, slot) in blocks.iter_mut().enumerate() {
                        let size = TYPICAL_SIZES[i % TYPICAL_SIZES.len()];
                        let layout = Layout::from_size_align(size, 8).expect("a valid layout");
                        // SAFETY: a non-zero layout, freed below with the same layout.
                        *slot = (black_box(unsafe { alloc.alloc(layout) }), layout);
                    }
                    for &(p, layout) in &blocks {
                        if !p.is_null() {
                            // SAFETY: allocated above with `layout`, freed once.
                            unsafe { alloc.dealloc(p, layout) };
                        }
                    }
                }
            });
        }
    });
}

fn main() {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().is_some_and(|a| a == "--bench") {
        // `cargo bench` with no bench named runs every bench binary this way.
        println!("instructions: run by `python3 benches/instructions.py`, under callgrind");
        return;
    }
    let usage =
        "usage: instructions system|tracked-off|tracked|tracked-peak|measured|system-2t|plus8-2t|tracked-2t PAIRS";
    let mode = args.next().expect(usage);
    let pairs: usize = args.next().and_then(|n| n.parse().ok()).expect(usage);
    // Two threads allocating batches of typical small blocks (the thread start-up, the same
    // in both runs, cancels out).
    let two_threads: Option<&'static (dyn GlobalAlloc + Sync)> = match mode.as_str() {
        "system-2t" => Some(&System),
        "plus8-2t" => Some(&Plus8),
        "tracked-2t" => Some(&TRACKED),
        _ => None,
    };
    if let Some(alloc) = two_threads {
        return two_thread_batches(alloc, pairs);
    }
    let alloc: &dyn GlobalAlloc = match mode.as_str() {
        "system" => &System,
        "tracked-off" => {
            classtrack::set_sample_mean(0);
            &TRACKED
        }
        "tracked" | "tracked-peak" | "measured" => &TRACKED,
        other => panic!("unknown mode {other:?}; {usage}"),
    };
    // A tracker alive (its peak watcher thread waits) and a class scope around the pairs:
    // each thread's checks of the live user heap, every `PEAK_GRANULARITY` bytes, are counted.
    let watched = mode == "tracked-peak" || mode == "measured";
    let _tracker = watched.then(classtrack::ClassTracker::new);
    let _scope = watched.then(|| classtrack::enter_named("bench"));
    const SIZES: [usize; 8] = [16, 24, 32, 48, 64, 96, 128, 256];
    // One pair before counting starts in both runs (0 and N pairs): the thread's first
    // allocation claims its counter shard.
    let first = Layout::from_size_align(16, 8).expect("a valid layout");
    // SAFETY: a non-zero layout, freed with the same layout.
    unsafe { alloc.dealloc(black_box(alloc.alloc(first)), first) };
    // With sampling on, blocks of 1 MiB (each sampled with a chance of 1 - e^-2) until one
    // is, in both runs too: the first sample sets the sampler up once for the process (its
    // channels and the unwinder's index of the loaded modules, about half a million
    // instructions), which is no part of a pair's cost.
    if mode.starts_with("tracked") && mode != "tracked-off" {
        let big = Layout::from_size_align(1 << 20, 8).expect("a valid layout");
        while !classtrack_shim::sampling_started() {
            // SAFETY: as above.
            unsafe { alloc.dealloc(black_box(alloc.alloc(big)), big) };
        }
    }
    let run = || {
        for i in 0..pairs {
            let layout =
                Layout::from_size_align(SIZES[i % SIZES.len()], 8).expect("a valid layout");
            // SAFETY: as above; a null block (out of memory) is not freed.
            unsafe {
                let p = black_box(alloc.alloc(layout));
                if !p.is_null() {
                    alloc.dealloc(p, layout);
                }
            }
        }
    };
    if mode == "measured" {
        // The pairs go through `TRACKED` by hand, not the global allocator: they are the
        // thread's allocations all the same, and the measurement counts them.
        let ((), m) = classtrack::testing::measure(run);
        assert_eq!(m.allocations as usize, pairs);
    } else {
        run();
    }
}
