//! A tracker left on with frequent snapshots and churning instances keeps its own memory under
//! the bound its `Retention` sets, however many snapshots it takes.
//!
//! One test per process figure: this file has its own global allocator, and its tests run one
//! at a time (they read the process-wide overhead class).

use std::alloc::System;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use classtrack::{ClassTracker, Retention, TrackOptions, Tracked, TrackingAlloc};

#[global_allocator]
static A: TrackingAlloc<System> = TrackingAlloc::new(System);

/// The tests here read the process-wide overhead class: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

#[derive(Debug)]
struct Job {
    // Read through `Debug`: instances carry a representation.
    #[allow(dead_code)]
    payload: Vec<u8>,
}

const LIVE: usize = 1000;

fn build(tracker: &ClassTracker, n: usize) -> Tracked<Job> {
    tracker.construct_debug(|| Job {
        payload: vec![n as u8; 64 + n % 64],
    })
}

/// Replaces `per_round` of the live instances (so as many die as are born).
fn churn(tracker: &ClassTracker, live: &mut [Tracked<Job>], round: usize, per_round: usize) {
    for k in 0..per_round {
        let n = round * per_round + k;
        live[n % LIVE] = build(tracker, n);
    }
}

fn tracker_bytes(tracker: &ClassTracker) -> u64 {
    tracker.create_snapshot("measure").overhead.tracker_bytes
}

/// The bound the `Retention` docs give, for `classes` classes, `tracked` tracked classes and
/// `live` live instances (names and descriptions here are short).
fn bound(r: &Retention, classes: u64, tracked: u64, live: u64) -> u64 {
    r.recent_snapshots as u64 * (classes * 100 + tracked * 90 + 300)
        + r.snapshot_history as u64
            * (tracked * 90 + (2 + classes.min(r.summary_classes as u64)) * 110 + 200)
        + (live + r.dead_instances as u64) * (1536 + r.instance_sizes as u64 * 16)
        + tracked * r.class_history as u64 * 16
}

#[test]
fn snapshots_and_churn_stay_within_the_retention_bound() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tracker = ClassTracker::new();
    // classtrack's memory before this tracker keeps anything (the sampler's channels, the
    // class registry): not the tracker's.
    let base = tracker_bytes(&tracker);
    let retention = Retention::new()
        .recent_snapshots(8)
        .snapshot_history(64)
        .instance_sizes(8)
        .class_history(64)
        .dead_instances(200);
    tracker.set_retention(retention).unwrap();
    tracker.track_class::<Job>(TrackOptions::new());
    let mut live: Vec<Tracked<Job>> = (0..LIVE).map(|n| build(&tracker, n)).collect();
    // Warm up: fill every series and ring once.
    for round in 0..300 {
        churn(&tracker, &mut live, round, 20);
        tracker.create_snapshot("churn");
    }
    let early = tracker_bytes(&tracker);
    for round in 300..3000 {
        churn(&tracker, &mut live, round, 20);
        tracker.create_snapshot("churn");
    }
    let late = tracker_bytes(&tracker);
    let stats = tracker.stats();
    let c = tracker.compaction();
    println!("tracker bytes: {base} before, {early} after 300 snapshots, {late} after 3000; {c:?}");

    // Nothing grows with the number of snapshots or of instances built.
    assert!(
        late <= early + 64 * 1024,
        "tracker memory grew from {early} to {late} bytes"
    );
    let classes = classtrack::class_count() as u64;
    let limit = base + bound(&retention, classes, 1, LIVE as u64);
    println!(
        "small limits: the tracker holds {} bytes, bound {}",
        late - base,
        limit - base
    );
    assert!(late <= limit, "{late} bytes, bound {limit}");

    // What was kept, and what was compacted, counted.
    assert_eq!(tracker.snapshots().len(), 8);
    assert!(stats.snapshots.len() <= 8 + 64);
    // 3,000 in the loop, and three to measure.
    assert_eq!(c.snapshots_summarized, 3003 - 8);
    assert!(c.snapshot_points_dropped >= 3003 - 8 - 64);
    assert_eq!(c.instances_evicted, 300 * 20 + 2700 * 20 - 200);
    assert!(c.history_points_dropped > 0 && c.size_points_dropped > 0);
    let class = &stats.classes[0];
    assert!(class.history.len() <= 64);
    assert_eq!(class.history[0], stats.classes[0].history[0]);
    assert_eq!(class.created, (LIVE + 3000 * 20) as u64);
    assert_eq!(stats.instances.len(), LIVE + 200);
    for i in &stats.instances {
        assert!(i.sizes.len() <= 8, "{} size points", i.sizes.len());
        if i.death.is_none() {
            // The first and last points stay; the largest size is kept.
            let (first, last) = (i.sizes[0], *i.sizes.last().unwrap());
            assert!(first.0 >= i.birth && first.0 <= last.0);
            assert_eq!(i.max_size, i.sizes.iter().map(|s| s.1).max().unwrap());
        }
    }
    // The snapshot series covers the whole run: the first snapshot's summary is still there.
    assert!(stats.snapshots[0].time <= stats.snapshots[1].time);
    assert!(stats.snapshots.windows(2).all(|w| w[0].time <= w[1].time));
    drop(live);
}

#[test]
fn periodic_snapshots_at_one_millisecond_stay_bounded_with_the_defaults() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tracker = ClassTracker::new();
    let base = tracker_bytes(&tracker);
    tracker.track_class::<Job>(TrackOptions::new());
    let retention = tracker.retention();
    assert_eq!(retention, Retention::default());
    let mut live: Vec<Tracked<Job>> = (0..LIVE).map(|n| build(&tracker, n)).collect();
    tracker
        .start_periodic_snapshots(Duration::from_millis(1))
        .unwrap();
    let taken = |t: &ClassTracker| t.compaction().snapshots_summarized + t.snapshots().len() as u64;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut round = 0;
    let mut early = None;
    while taken(&tracker) < 3000 {
        assert!(
            Instant::now() < deadline,
            "3000 periodic snapshots in 2 minutes"
        );
        churn(&tracker, &mut live, round, 5);
        round += 1;
        if early.is_none() && taken(&tracker) >= 1500 {
            early = Some(tracker_bytes(&tracker));
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    tracker.stop_periodic_snapshots().unwrap();
    let late = tracker_bytes(&tracker);
    let early = early.unwrap();
    println!(
        "defaults: tracker bytes at 1500 snapshots {early}, at 3000 {late}; {:?}",
        tracker.compaction()
    );
    let classes = classtrack::class_count() as u64;
    // Dead instances so far: fewer than the default limit, so count those that exist.
    let dead = (round * 5).min(retention.dead_instances) as u64;
    let limit = base
        + bound(
            &retention.dead_instances(dead as usize),
            classes,
            1,
            LIVE as u64,
        );
    println!(
        "defaults: the tracker holds {} bytes ({} at 1,500 snapshots), bound {}",
        late - base,
        early - base,
        limit - base
    );
    assert!(late <= limit, "{late} bytes, bound {limit}");
    // Between the two measures only dead instances were added (up to the limit).
    let died = (round as u64 * 5).min(retention.dead_instances as u64);
    assert!(
        late <= early + died * (1536 + 32 * 16) + 256 * 1024,
        "grew from {early} to {late}"
    );
    drop(live);
}
