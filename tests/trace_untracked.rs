//! `trace_every_allocation_named(UNTRACKED_CLASS, true)` traces every `<untracked>` allocation,
//! on the thread that asks and on new threads, without entering any scope first.

use std::alloc::System;
use std::hint::black_box;

use classtrack::{ClassTracker, TrackingAlloc, UNTRACKED_CLASS};

#[global_allocator]
static ALLOC: TrackingAlloc<System> = TrackingAlloc::new(System);

const BLOCKS: usize = 10_000;

/// Sample records sent or dropped so far.
fn samples(tracker: &ClassTracker) -> u64 {
    let s = tracker.create_snapshot("count").sampling;
    s.sent + s.dropped
}

/// `n` separate blocks, kept (boxed on purpose: one allocation each).
#[inline(never)]
#[allow(clippy::vec_box)]
fn untracked_blocks(n: usize) -> Vec<Box<[u8; 24]>> {
    (0..n).map(|i| black_box(Box::new([i as u8; 24]))).collect()
}

#[test]
fn every_untracked_allocation_is_traced_on_every_thread() {
    let tracker = ClassTracker::new();
    // Sampling off: only the trace-everything setting samples.
    classtrack::set_sample_mean(0);
    assert_eq!(classtrack::current_class(), classtrack::ClassId::UNTRACKED);
    classtrack::trace_every_allocation_named(UNTRACKED_CLASS, true);

    let before = samples(&tracker);
    let kept = untracked_blocks(BLOCKS);
    let on_main = samples(&tracker) - before;
    assert!(
        on_main >= BLOCKS as u64,
        "{on_main} samples for {BLOCKS} allocations on the main thread"
    );

    let before = samples(&tracker);
    let other = std::thread::spawn(|| untracked_blocks(BLOCKS))
        .join()
        .unwrap();
    let on_thread = samples(&tracker) - before;
    assert!(
        on_thread >= BLOCKS as u64,
        "{on_thread} samples for {BLOCKS} allocations on a new thread"
    );

    classtrack::trace_every_allocation_named(UNTRACKED_CLASS, false);
    let before = samples(&tracker);
    let after_off = untracked_blocks(BLOCKS);
    let off = samples(&tracker) - before;
    assert!(off < 100, "{off} samples with tracing off and sampling off");
    drop((kept, other, after_off));
}
