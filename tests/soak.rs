//! Twenty seconds of two threads allocating with sampling on, while periodic snapshots run
//! every millisecond: no deadlock, and every count exact afterwards.

use std::alloc::System;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use classtrack::{ClassTracker, TrackingAlloc};

#[global_allocator]
static ALLOC: TrackingAlloc<System> = TrackingAlloc::new(System);

const RUN: Duration = Duration::from_secs(20);

#[derive(Default)]
struct Tally {
    allocated_bytes: u64,
    allocations: u64,
    frees: u64,
}

#[inline(never)]
fn churn(class: &'static str, seed: u64, stop: &AtomicBool) -> (Vec<Vec<u8>>, Tally) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut live: Vec<Vec<u8>> = Vec::new();
    let mut t = Tally::default();
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..1000 {
            // Between 1,000 and 2,000 blocks live (megabytes), freeing at random above 1,000:
            // without that floor the count is a random walk that can end near zero, leaving too
            // few live bytes for the sampling check below to be sure of a sample.
            if live.len() > 2000 || (rng.bool() && live.len() > 1000) {
                let i = rng.usize(0..live.len());
                let v = live.swap_remove(i);
                t.frees += 1;
                drop(v);
            } else {
                let size = rng.usize(1..8192);
                // Exact capacity, so that the ground truth is the size asked for.
                let v = classtrack::scope_named(class, || {
                    let mut v = Vec::with_capacity(size);
                    v.resize(size, 1u8);
                    v
                });
                t.allocated_bytes += size as u64;
                t.allocations += 1;
                live.push(v);
            }
        }
    }
    (live, t)
}

#[test]
fn two_threads_with_sampling_and_1ms_snapshots_for_20_seconds() {
    let tracker = ClassTracker::new();
    // Sample often, so that the sampler, its channel and the aggregator are busy too.
    classtrack::set_sample_mean(16 * 1024);
    let sub = tracker.subscribe(16).unwrap();
    tracker
        .start_periodic_snapshots(Duration::from_millis(1))
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = ["soak::a", "soak::b"]
        .into_iter()
        .enumerate()
        .map(|(i, class)| {
            let stop = stop.clone();
            std::thread::spawn(move || churn(class, i as u64 + 1, &stop))
        })
        .collect();
    let start = Instant::now();
    while start.elapsed() < RUN {
        // Drain the stream a little, as a dashboard would.
        while sub.receiver().try_recv().is_ok() {}
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    // A deadlock shows as a worker that never returns: fail instead of hanging.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut results = Vec::new();
    for w in workers {
        while !w.is_finished() {
            assert!(Instant::now() < deadline, "a worker is stuck");
            std::thread::sleep(Duration::from_millis(10));
        }
        results.push(w.join().unwrap());
    }
    let stopping = Instant::now();
    tracker.stop_periodic_snapshots().unwrap();
    assert!(stopping.elapsed() < Duration::from_millis(500));
    classtrack::set_sample_mean(classtrack::DEFAULT_SAMPLE_MEAN);
    // Taken: those kept in full and those summarized since (the tracker keeps the most recent
    // ones in full).
    let periodic = tracker.snapshots().len() as u64 + tracker.compaction().snapshots_summarized;
    assert!(periodic > 1000, "only {periodic} snapshots in 20 s at 1 ms");

    let snap = tracker.create_snapshot("after");
    for ((live, t), class) in results.iter().zip(["soak::a", "soak::b"]) {
        let c = snap.class_named(class).unwrap();
        assert_eq!(c.allocations, t.allocations, "{class}");
        assert_eq!(c.allocated_bytes, t.allocated_bytes, "{class}");
        assert_eq!(c.frees, t.frees, "{class}");
        assert_eq!(c.live_blocks, live.len() as u64, "{class}");
        let live_bytes: u64 = live.iter().map(|v| v.len() as u64).sum();
        assert_eq!(c.live_bytes, live_bytes, "{class}");
        // Megabytes live, sampled every 16 KiB: hundreds of live samples. (Looked at again for
        // up to 2 s, each look applying what the sampler still holds, before failing with
        // what the sampler says.)
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut look = snap.clone();
        while look.sampled_live_bytes(class) <= 0.0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            look = tracker.create_snapshot("sites again");
        }
        assert!(
            look.sampled_live_bytes(class) > 0.0,
            "{class}: no sampled live bytes for {live_bytes} live bytes; sampling {:?}; {} sites",
            look.sampling,
            look.sites.iter().filter(|s| s.class == c.id).count()
        );
    }
    let (sent, _) = classtrack_shim::sample_counts();
    assert!(sent > 1000, "{sent} samples");
}
