//! How long a thread that builds and drops tracked instances waits while another thread takes
//! snapshots of many live instances: shared by `snapshot_wait.rs` (over `System`) and
//! `snapshot_wait_mimalloc.rs` (over mimalloc), each with its own global allocator.
//!
//! Two measures per snapshot, of the building thread:
//! - its voluntary context switches (from `/proc/thread-self/status`): each one is a time it
//!   went to sleep, on a lock or anything else; exact;
//! - its longest time asleep in one construct + drop: wall time less its time on a CPU and
//!   waiting for one (`/proc/thread-self/schedstat`, whose CPU time the kernel brings up to
//!   date at scheduler ticks, so a few milliseconds of it can be a tick's lag, not sleep).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use classtrack::{ClassTracker, TrackOptions};

/// A tracked instance that owns one heap block of 8 bytes.
#[derive(Debug)]
struct Held(#[allow(dead_code)] Box<u64>);

fn median<T: Ord + Copy>(mut v: Vec<T>) -> T {
    v.sort();
    v[v.len() / 2]
}

/// This thread's time on a CPU and waiting for one, from `/proc/thread-self/schedstat`.
fn sched() -> (Duration, Duration) {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let mut f = text
        .split_whitespace()
        .map(|n| Duration::from_nanos(n.parse().unwrap_or(0)));
    (f.next().unwrap_or_default(), f.next().unwrap_or_default())
}

/// This thread's voluntary context switches so far.
fn voluntary_switches() -> u64 {
    let text = std::fs::read_to_string("/proc/thread-self/status").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("no voluntary_ctxt_switches in /proc/thread-self/status")
}

/// Runs the measurement and prints it, naming the inner allocator `inner`.
pub fn measure(inner: &str) {
    const INSTANCES: usize = 100_000;
    const SNAPSHOTS: usize = 21;
    let tracker = Arc::new(ClassTracker::new());
    tracker.track_class::<Held>(TrackOptions::new());
    let items: Vec<_> = (0..INSTANCES as u64)
        .map(|i| tracker.construct(|| Held(Box::new(i))))
        .collect();

    // The worker's longest time asleep in one construct + drop, its voluntary context switches
    // and its pairs, since the main thread last reset them.
    let asleep = Arc::new(AtomicU64::new(0));
    let switches = Arc::new(AtomicU64::new(0));
    let pairs = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let worker = {
        let (tracker, asleep, switches, pairs, stop) = (
            tracker.clone(),
            asleep.clone(),
            switches.clone(),
            pairs.clone(),
            stop.clone(),
        );
        std::thread::spawn(move || {
            let mut i = 0u64;
            // Relaxed: a flag polled in a loop; nothing is published with it.
            while !stop.load(Ordering::Relaxed) {
                let (t0, (cpu0, queued0), v0) = (Instant::now(), sched(), voluntary_switches());
                let item = tracker.construct(|| Held(Box::new(i)));
                drop(item);
                let (wall, (cpu1, queued1), v1) = (t0.elapsed(), sched(), voluntary_switches());
                let slept = wall.saturating_sub((cpu1 - cpu0) + (queued1 - queued0));
                // Relaxed: statistics, read after the snapshot that they cover.
                asleep.fetch_max(slept.as_nanos() as u64, Ordering::Relaxed);
                switches.fetch_add(v1 - v0, Ordering::Relaxed);
                pairs.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        })
    };

    let (mut took, mut slept, mut switched, mut built) = (vec![], vec![], vec![], vec![]);
    for _ in 0..SNAPSHOTS {
        asleep.store(0, Ordering::Relaxed);
        switches.store(0, Ordering::Relaxed);
        pairs.store(0, Ordering::Relaxed);
        let t0 = Instant::now();
        let snap = tracker.create_snapshot("wait");
        took.push(t0.elapsed());
        slept.push(Duration::from_nanos(asleep.load(Ordering::Relaxed)));
        switched.push(switches.load(Ordering::Relaxed));
        built.push(pairs.load(Ordering::Relaxed));
        let active = snap.tracked_class::<Held>().unwrap().active as usize;
        assert!((INSTANCES..=INSTANCES + 1).contains(&active), "{active}");
    }
    stop.store(true, Ordering::Relaxed);
    worker.join().unwrap();
    drop(items);
    println!(
        "over {inner}: {SNAPSHOTS} snapshots of {INSTANCES} instances, median {:?}, while \
         another thread builds and drops instances ({} pairs per snapshot, median). That \
         thread's voluntary context switches per snapshot: median {}, max {}, total {}; its \
         longest time asleep in one pair, per snapshot: median {:?}, max {:?}",
        median(took),
        median(built),
        median(switched.clone()),
        switched.iter().max().unwrap(),
        switched.iter().sum::<u64>(),
        median(slept.clone()),
        slept.iter().max().unwrap(),
    );
}
