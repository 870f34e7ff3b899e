//! classtrack's own memory in a small program, before any snapshot: at most 256 KiB with
//! sampling off (92 KiB measured: the class registry, the tracker, the scopes' names, and
//! 10 KiB of counter shard per thread: its directory and one page), and at most 1 MiB with it
//! on (843 KiB measured). The sampler's set-up is about 590 KiB of that: the sample channel
//! (4,096 records of 56 bytes, 224 KiB), the stack channel (256 stacks of 536 bytes,
//! 134 KiB) and the cached unwinder's four slots (a 32 KiB rule cache and a gimli unwind
//! context each).
//!
//! Runs without the test harness (`harness = false`), with its own global allocator, so that
//! nothing but the runtime's start-up allocates before `main` turns sampling off.

use std::alloc::System;
use std::time::{Duration, Instant};

use classtrack::{ClassTracker, TrackOptions, TrackingAlloc};

#[global_allocator]
static ALLOC: TrackingAlloc<System> = TrackingAlloc::new(System);

/// classtrack's memory now, without taking a snapshot: its own allocations (the overhead
/// class) and the counter shards it takes from the system allocator.
struct Footprint {
    tracker_bytes: u64,
    shard_bytes: u64,
}

impl Footprint {
    fn now() -> Footprint {
        let totals = classtrack_shim::read_totals(2);
        Footprint {
            tracker_bytes: totals[classtrack::ClassId::OVERHEAD.index()].live_bytes(),
            shard_bytes: classtrack_shim::shim_stats().shard_bytes,
        }
    }

    fn total(&self) -> u64 {
        self.tracker_bytes + self.shard_bytes
    }
}

impl std::fmt::Display for Footprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.1} KiB ({:.1} KiB of classtrack's allocations, {:.1} KiB of counter shards)",
            self.total() as f64 / 1024.0,
            self.tracker_bytes as f64 / 1024.0,
            self.shard_bytes as f64 / 1024.0
        )
    }
}

struct Order {
    _lines: Vec<String>,
}

/// A small program's work: a few classes, two threads, some tracked instances.
#[inline(never)]
fn work(tracker: &ClassTracker, round: usize) -> Vec<Vec<u8>> {
    let kept: Vec<Vec<u8>> = classtrack::scope_named("footprint::buffers", || {
        (0..2000)
            .map(|i| vec![1u8; 64 + (i * 4099) % 8192])
            .collect()
    });
    let orders: Vec<_> = (0..100)
        .map(|i| {
            tracker.construct(|| Order {
                _lines: (0..4).map(|k| format!("line {round} {i} {k}")).collect(),
            })
        })
        .collect();
    std::thread::scope(|s| {
        for t in 0..2 {
            s.spawn(move || {
                classtrack::scope_named("footprint::worker", || {
                    let v: Vec<Box<[u8; 40]>> =
                        (0..5000).map(|i| Box::new([(i + t) as u8; 40])).collect();
                    v.len()
                })
            });
        }
    });
    drop(orders);
    kept
}

fn main() {
    classtrack::set_sample_mean(0);
    // A watchdog: a hang fails the test rather than blocks it.
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(120));
        eprintln!("footprint: timed out");
        std::process::exit(2);
    });
    let tracker = ClassTracker::new();
    tracker.track_class::<Order>(TrackOptions::default());
    let kept = work(&tracker, 0);
    let off = Footprint::now();
    println!("sampling off: {off}");

    classtrack::set_sample_mean(classtrack::DEFAULT_SAMPLE_MEAN);
    println!("sampler set up: {}", Footprint::now());
    let mut all = vec![kept];
    for round in 1..4 {
        all.push(work(&tracker, round));
    }
    // Let the aggregator take what was sampled.
    let deadline = Instant::now() + Duration::from_secs(2);
    while classtrack_shim::samples_received() < classtrack_shim::sample_counts().0
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    let on = Footprint::now();
    println!(
        "sampling on: {on}; {} samples sent",
        classtrack_shim::sample_counts().0
    );
    drop(all);
    let mut failed = 0;
    if off.total() > 256 * 1024 {
        println!("FAILED: {off} with sampling off, over 256 KiB");
        failed += 1;
    }
    if on.total() > 1024 * 1024 {
        println!("FAILED: {on} with sampling on, over 1 MiB");
        failed += 1;
    }
    println!("{} passed, {failed} failed", 2 - failed);
    if failed > 0 {
        std::process::exit(1);
    }
}
