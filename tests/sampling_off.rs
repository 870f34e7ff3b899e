//! With `set_sample_mean(0)` before anything samples, classtrack does no unwinder work, pins no
//! module, makes no sample channel and starts no aggregator thread, and snapshots do not wait
//! for one; turning sampling on later starts all of it.
//!
//! Runs without the test harness (`harness = false`) so that nothing allocates before `main`
//! turns sampling off but the runtime's start-up.

use std::alloc::System;
use std::time::{Duration, Instant};

use classtrack::{ClassTracker, TrackingAlloc};

#[global_allocator]
static ALLOC: TrackingAlloc<System> = TrackingAlloc::new(System);

mod common;
use common::*;

/// Whether this process pinned a module with `dlopen`: the cached unwinder's index, which
/// holds every module it indexed, is only built when sampling starts.
fn unwinder_indexed() -> bool {
    classtrack::cached_dwarf_enabled().is_some() || classtrack::frame_pointers_detected().is_some()
}

#[inline(never)]
fn allocate_a_lot(name: &str) -> Vec<Vec<u8>> {
    classtrack::scope_named(name, || {
        (0..2000)
            .map(|i| vec![1u8; 64 + (i * 4099) % 65_536])
            .collect()
    })
}

fn off() {
    let kept = allocate_a_lot("off::before");
    drop(allocate_a_lot("off::freed"));
    let tracker = ClassTracker::new();
    let started = Instant::now();
    let snaps: Vec<_> = (0..5)
        .map(|i| tracker.create_snapshot(&format!("off {i}")))
        .collect();
    let took = started.elapsed();
    for snap in &snaps {
        assert!(snap.sites.is_empty(), "sites with sampling off");
        assert_eq!(snap.sampling.mean_bytes, 0);
        assert_eq!(snap.sampling.sent, 0);
    }
    assert!(
        snaps[0].class_named("off::before").unwrap().live_bytes > 60_000_000,
        "exact figures are kept with sampling off"
    );
    assert!(
        !sampler_thread_exists(),
        "an aggregator thread with sampling off"
    );
    assert!(
        !unwinder_indexed(),
        "the unwinder was set up with sampling off"
    );
    assert!(
        !classtrack_shim::sampling_started(),
        "a sample channel with sampling off"
    );
    // Five snapshots, none waiting 100 ms for a thread that is not there.
    assert!(took < Duration::from_millis(400), "snapshots took {took:?}");
    drop(kept);
}

fn turned_on_later() {
    classtrack::set_sample_mean(64 * 1024);
    assert!(
        sampler_thread_exists(),
        "no aggregator thread once sampling is on"
    );
    assert!(classtrack_shim::sampling_started());
    assert!(
        unwinder_indexed(),
        "the unwinder was not set up once sampling is on"
    );
    let tracker = ClassTracker::new();
    let kept = allocate_a_lot("off::after");
    let snap = tracker.create_snapshot("on");
    let exact = snap.class_named("off::after").unwrap().live_bytes as f64;
    let estimate = snap.sampled_live_bytes("off::after");
    assert!(
        (estimate - exact).abs() < 0.25 * exact,
        "estimate {estimate:.0} vs exact {exact:.0}"
    );
    assert!(snap.top_sites("off::after", 1)[0]
        .frames()
        .iter()
        .any(|f| f.function.contains("allocate_a_lot")));
    drop(kept);
}

fn main() {
    classtrack::set_sample_mean(0);
    // A watchdog: a hang fails the test rather than blocks it.
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(120));
        eprintln!("sampling_off: timed out");
        std::process::exit(2);
    });
    off();
    println!("test sampling_off::off ... ok");
    turned_on_later();
    println!("test sampling_off::turned_on_later ... ok");
    println!("2 passed, 0 failed");
}
