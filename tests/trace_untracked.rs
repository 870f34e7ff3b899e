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
    // Counted before the setting: a snapshot enters and leaves classtrack's own scope, which
    // would bring this thread's tag up to date anyway.
    let before = samples(&tracker);
    classtrack::trace_every_allocation_named(UNTRACKED_CLASS, true);
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
    // Those frees (20,000 traced blocks) fill the sample channel; a snapshot applies them, so
    // that the allocations below find room (an allocation's sample is dropped when the channel
    // is full).
    tracker.create_snapshot("frees applied");

    // Sites whose blocks are all freed are left out of `top_sites`; live estimates count the
    // samples they rest on.
    classtrack::trace_every_allocation_named("trace::freed", true);
    classtrack::trace_every_allocation_named("trace::kept", true);
    let freed = classtrack::scope_named("trace::freed", || black_box(vec![0u8; 512]));
    let kept = classtrack::scope_named("trace::kept", || untracked_blocks(4));
    drop(freed);
    let snap = tracker.create_snapshot("sites");
    classtrack::trace_every_allocation_named("trace::freed", false);
    classtrack::trace_every_allocation_named("trace::kept", false);
    let freed_id = snap.class_named("trace::freed").unwrap().id;
    assert!(
        snap.sites.iter().any(|s| s.class == freed_id
            && s.estimate.live_bytes == 0.0
            && s.estimate.samples == 1),
        "the freed block's site is in the table"
    );
    assert!(snap.top_sites("trace::freed", 10).is_empty());
    let sites = snap.top_sites("trace::kept", 10);
    assert!(sites.iter().all(|s| s.estimate.live_bytes > 0.0));
    let live_samples: u64 = sites.iter().map(|s| s.estimate.live_samples).sum();
    assert_eq!(live_samples, 5, "four boxes and their list");
    assert_eq!(snap.sampled_live_samples("trace::kept"), 5);
    assert_eq!(
        snap.sampled_live_bytes("trace::kept"),
        (4 * 24 + 4 * 8) as f64
    );
    drop(kept);
}
