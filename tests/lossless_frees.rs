//! Frees of sampled blocks are never lost: after a burst of frees far larger than the sample
//! channel holds, the site estimates of the class return to exactly zero, as its exact
//! figures do (on the freeing thread, on another thread that exits right after, and with a
//! small sampling mean instead of tracing every allocation).

use std::alloc::System;
use std::time::{Duration, Instant};

use classtrack::{ClassTracker, TrackingAlloc};

#[global_allocator]
static ALLOC: TrackingAlloc<System> = TrackingAlloc::new(System);

mod common;
use common::*;

/// The sampling settings and the channel are process-wide: the tests take turns.
static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

/// Blocks of 1 to 127 bytes (64 on average), `n` of them, in class `name`.
#[inline(never)]
fn burst(name: &str, n: usize) -> Vec<Box<[u8]>> {
    let mut kept = Vec::with_capacity(n);
    classtrack::scope_named(name, || {
        for i in 0..n {
            kept.push(vec![1u8; 1 + (i * 37) % 127].into_boxed_slice());
        }
    });
    kept
}

/// Takes snapshots until the site estimate of `name` is exactly zero (up to 30 s), and checks
/// the exact figures are zero too.
fn settles_to_zero(tracker: &ClassTracker, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let snap = tracker.create_snapshot("after the burst of frees");
        let exact = snap.class_named(name).expect("class seen");
        assert_eq!((exact.live_bytes, exact.live_blocks), (0, 0));
        let estimate = site_live(&snap, name);
        if estimate == (0.0, 0.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: the site estimate stays at {estimate:?} with nothing live (sent, dropped: \
             {:?})",
            classtrack_shim::sample_counts()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Every record dealt with, the frees that went to the overflow list included: a snapshot
    // waits for none (it would wait up to 100 ms for records it thought were still coming).
    let started = Instant::now();
    for _ in 0..5 {
        tracker.create_snapshot("settled");
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(400),
        "5 snapshots took {took:?}"
    );
}

/// Checks that the burst was sampled (its estimate was not zero before the frees).
fn sampled_something(tracker: &ClassTracker, name: &str) {
    let snap = tracker.create_snapshot("after the burst of allocations");
    let (bytes, blocks) = site_live(&snap, name);
    assert!(bytes > 0.0 && blocks > 0.0, "{name}: nothing sampled");
}

#[test]
fn a_burst_of_100k_frees_of_traced_blocks_leaves_no_live_estimate() {
    let _turn = turn();
    within(120, || {
        const NAME: &str = "lossless::traced";
        let tracker = ClassTracker::new();
        classtrack::trace_every_allocation_named(NAME, true);
        let kept = burst(NAME, 100_000);
        sampled_something(&tracker, NAME);
        drop(kept);
        settles_to_zero(&tracker, NAME);
        classtrack::trace_every_allocation_named(NAME, false);
    });
}

#[test]
fn a_burst_of_frees_with_a_64_byte_mean_leaves_no_live_estimate() {
    let _turn = turn();
    within(120, || {
        const NAME: &str = "lossless::mean64";
        let tracker = ClassTracker::new();
        let before = classtrack::sample_mean();
        classtrack::set_sample_mean(64);
        // The thread picks the new mean up at its next sample point.
        for _ in 0..8 {
            std::hint::black_box(vec![0u8; 1 << 20]);
        }
        let kept = burst(NAME, 100_000);
        classtrack::set_sample_mean(before);
        sampled_something(&tracker, NAME);
        drop(kept);
        settles_to_zero(&tracker, NAME);
    });
}

#[test]
fn frees_on_a_thread_that_exits_right_after_are_not_lost() {
    let _turn = turn();
    within(120, || {
        const NAME: &str = "lossless::other_thread";
        let tracker = ClassTracker::new();
        classtrack::trace_every_allocation_named(NAME, true);
        let kept = burst(NAME, 100_000);
        sampled_something(&tracker, NAME);
        std::thread::spawn(move || drop(kept)).join().unwrap();
        settles_to_zero(&tracker, NAME);
        classtrack::trace_every_allocation_named(NAME, false);
    });
}
