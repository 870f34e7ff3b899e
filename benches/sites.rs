//! What recording allocation sites costs: classtrack's trace-every-allocation mode against
//! dhat-rs's heap profiler (which records every allocation too), on the same workloads, on one
//! thread and on two, side by side in one run. Default sampling against `System` is in
//! `benches/overhead.rs`.
//!
//! ```text
//! cargo bench --bench sites
//! python3 benches/ratios.py sites
//! # the frame-pointer walker where it applies (criterion's results still go to
//! # target/criterion):
//! RUSTFLAGS="-C force-frame-pointers=yes" cargo bench --bench sites --target-dir target/fp
//! python3 benches/ratios.py sites
//! ```

mod common;

use std::alloc::System;
use std::hint::black_box;

use classtrack::TrackingAlloc;
use common::{hashmap_build, small_pairs, Via, Workload};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

static TRACKED: TrackingAlloc<System> = TrackingAlloc::new(System);
static DHAT: dhat::Alloc = dhat::Alloc;

struct Traced;

/// Runs `work` on `threads` threads at once, in the traced class scope for classtrack.
fn run(threads: usize, traced: bool, a: Via, work: fn(Via) -> usize) -> usize {
    let one = move || {
        if traced {
            classtrack::scope::<Traced, _>(|| work(a))
        } else {
            work(a)
        }
    };
    if threads == 1 {
        return one();
    }
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads).map(|_| s.spawn(one)).collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    })
}

/// classtrack's traced cases: the unwinder each forces, and the frames kept.
const TRACED: [(&str, classtrack::Unwinder, usize); 4] = [
    // The platform's DWARF unwinder, parsing the unwind tables for every stack.
    (
        "classtrack_trace_all_uncached",
        classtrack::Unwinder::DwarfUncached,
        classtrack_shim::MAX_STACK_DEPTH,
    ),
    // The cached DWARF unwinder (the default for a build without frame pointers).
    (
        "classtrack_trace_all",
        classtrack::Unwinder::Dwarf,
        classtrack_shim::MAX_STACK_DEPTH,
    ),
    // Trimmed: the cached DWARF unwinder keeping 16 frames (dhat-rs keeps 10 by default,
    // below its own frames), to show what a shorter stack buys.
    (
        "classtrack_trace_all_depth16",
        classtrack::Unwinder::Dwarf,
        16,
    ),
    // The frame-pointer walker: right in a build with frame pointers
    // (RUSTFLAGS="-C force-frame-pointers=yes"); elsewhere it falls back to DWARF.
    (
        "classtrack_trace_all_fp",
        classtrack::Unwinder::FramePointers,
        classtrack_shim::MAX_STACK_DEPTH,
    ),
];

fn every_allocation(c: &mut Criterion) {
    let _tracker = classtrack::ClassTracker::new(); // starts the sample aggregator
    classtrack::trace_every_allocation::<Traced>(true);
    let cases: [(&str, Workload); 2] = [
        ("small_alloc_free", small_pairs),
        ("hashmap_build", hashmap_build),
    ];
    for (name, work) in cases {
        for threads in [1usize, 2] {
            let mut g = c.benchmark_group(format!("{name}_{threads}t"));
            g.bench_function(BenchmarkId::from_parameter("system"), |b| {
                b.iter(|| black_box(run(threads, false, Via(&System), work)))
            });
            for (id, unwinder, depth) in TRACED {
                classtrack::set_unwinder(unwinder);
                classtrack::set_stack_depth(depth);
                g.bench_function(BenchmarkId::from_parameter(id), |b| {
                    b.iter(|| black_box(run(threads, true, Via(&TRACKED), work)))
                });
            }
            classtrack::set_stack_depth(classtrack_shim::MAX_STACK_DEPTH);
            classtrack::set_unwinder(classtrack::Unwinder::Auto);
            g.bench_function(BenchmarkId::from_parameter("dhat"), |b| {
                let _profiler = dhat::Profiler::builder().testing().build();
                b.iter(|| black_box(run(threads, false, Via(&DHAT), work)))
            });
            g.finish();
        }
    }
    let (sent, dropped) = classtrack_shim::sample_counts();
    eprintln!("classtrack samples: {sent} sent, {dropped} dropped (channel full)");
    eprintln!(
        "cached DWARF unwinder: {:?}; {} stacks fell back to the platform's",
        classtrack_shim::cached_dwarf_enabled(),
        classtrack_shim::cached_dwarf_fallbacks()
    );
}

criterion_group!(benches, every_allocation);
criterion_main!(benches);
