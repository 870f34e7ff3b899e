//! Instructions per alloc/free pair, counted by valgrind's callgrind (deterministic, unlike
//! wall time on a shared machine). Run it through `python3 benches/instructions.py`, which
//! builds this binary, runs it under callgrind for each allocator with 0 and N pairs, and
//! prints the difference per pair.
//!
//! `instructions MODE PAIRS`, MODE one of `system`, `tracked-off` (TrackingAlloc<System>,
//! sampling off) and `tracked` (TrackingAlloc<System>, default sampling). Every mode calls its
//! allocator through the same `&dyn GlobalAlloc`, so the loop and the call cost the same in
//! each; blocks of 16 to 256 bytes, each freed at once. What happens once per process (the
//! thread's counter shard, the sampler's set-up at its first sample) happens before the
//! counted pairs, in both runs.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;

use classtrack::TrackingAlloc;

static TRACKED: TrackingAlloc<System> = TrackingAlloc::new(System);

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: instructions system|tracked-off|tracked PAIRS";
    let mode = args.next().expect(usage);
    let pairs: usize = args.next().and_then(|n| n.parse().ok()).expect(usage);
    let alloc: &dyn GlobalAlloc = match mode.as_str() {
        "system" => &System,
        "tracked-off" => {
            classtrack::set_sample_mean(0);
            &TRACKED
        }
        "tracked" => &TRACKED,
        other => panic!("unknown mode {other:?}; {usage}"),
    };
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
    if mode == "tracked" {
        let big = Layout::from_size_align(1 << 20, 8).expect("a valid layout");
        while !classtrack_shim::sampling_started() {
            // SAFETY: as above.
            unsafe { alloc.dealloc(black_box(alloc.alloc(big)), big) };
        }
    }
    for i in 0..pairs {
        let layout = Layout::from_size_align(SIZES[i % SIZES.len()], 8).expect("a valid layout");
        // SAFETY: as above; a null block (out of memory) is not freed.
        unsafe {
            let p = black_box(alloc.alloc(layout));
            if !p.is_null() {
                alloc.dealloc(p, layout);
            }
        }
    }
}
