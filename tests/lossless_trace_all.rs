//! Tracing every allocation of a class loses no record: two threads allocating small blocks of
//! a traced class as fast as they can, far faster than one consumer drains, and the sites of
//! the class count exactly its allocations and its live blocks (the traced threads wait for
//! room on the channel; default sampling never waits, and drops what does not fit).

use std::alloc::System;
use std::hint::black_box;

use classtrack::{ClassTracker, TrackingAlloc};

#[global_allocator]
static ALLOC: TrackingAlloc<System> = TrackingAlloc::new(System);

mod common;
use common::within;

const NAME: &str = "lossless::traced";
/// Allocations per thread: each thread frees all but every 100th block at once.
const PER_THREAD: usize = 300_000;

#[inline(never)]
fn churn(name: &str, kept: &mut Vec<Box<[u8]>>) {
    classtrack::scope_named(name, || {
        for i in 0..PER_THREAD {
            let b = black_box(vec![3u8; 16 + i % 48].into_boxed_slice());
            if i % 100 == 0 {
                kept.push(b);
            }
        }
    });
}

#[test]
fn tracing_every_allocation_of_a_class_drops_no_record() {
    within(300, || {
        let tracker = ClassTracker::new();
        // Default sampling off while the class is traced: a sample of another class (a thread's
        // start, the runtime's own) meeting the channel the traced threads keep full may be
        // dropped, as designed, and would count in `dropped`. With it off, every record sent
        // is the traced class's, so `dropped` must not move.
        classtrack::set_sample_mean(0);
        classtrack::trace_every_allocation_named(NAME, true);
        // The vectors that keep every 100th block are allocated outside the class.
        let mut kept: Vec<Vec<Box<[u8]>>> = (0..2)
            .map(|_| Vec::with_capacity(PER_THREAD / 100 + 1))
            .collect();
        let before = tracker.create_snapshot("before").sampling;
        std::thread::scope(|s| {
            for k in kept.iter_mut() {
                s.spawn(move || churn(NAME, k));
            }
        });
        let snap = tracker.create_snapshot("after");
        classtrack::trace_every_allocation_named(NAME, false);
        let class = snap.class_named(NAME).unwrap();
        let sites: Vec<_> = snap.sites.iter().filter(|s| s.class == class.id).collect();
        let allocations: f64 = sites.iter().map(|s| s.estimate.allocations).sum();
        let live_samples: u64 = sites.iter().map(|s| s.estimate.live_samples).sum();
        let live_bytes: f64 = sites.iter().map(|s| s.estimate.live_bytes).sum();
        println!(
            "{} allocations traced of {}, {} samples dropped meanwhile",
            allocations,
            class.allocations,
            snap.sampling.dropped - before.dropped
        );
        assert_eq!(
            snap.sampling.dropped, before.dropped,
            "records were dropped"
        );
        assert_eq!(allocations, class.allocations as f64);
        assert_eq!(live_samples, class.live_blocks);
        assert_eq!(live_bytes, class.live_bytes as f64);
        assert_eq!(class.live_blocks, 2 * (PER_THREAD as u64 / 100));
        assert!(snap.sampling.traced_waits >= before.traced_waits);
        drop(kept);

        // Default sampling (here at a mean of one byte: every block sampled, far more than
        // the channel takes) never waits: what does not fit is dropped and counted.
        classtrack::set_sample_mean(1);
        let mut kept: Vec<Vec<Box<[u8]>>> = (0..2).map(|_| Vec::new()).collect();
        let before = tracker.create_snapshot("before sampled").sampling;
        std::thread::scope(|s| {
            for k in kept.iter_mut() {
                s.spawn(move || churn("lossless::sampled", k));
            }
        });
        let after = tracker.create_snapshot("after sampled").sampling;
        classtrack::set_sample_mean(classtrack::DEFAULT_SAMPLE_MEAN);
        println!(
            "sampled at a 1-byte mean: {} dropped, {} waits",
            after.dropped - before.dropped,
            after.traced_waits - before.traced_waits
        );
        assert_eq!(after.traced_waits, before.traced_waits);
        drop(kept);
    });
}
