//! A thread that builds and drops tracked instances is never held up by a snapshot of many
//! live instances: the snapshot goes through them a batch at a time, each batch in one hold of
//! the tracker's lock, and a birth or death is posted to the tracker without waiting for that
//! lock (the lock's holder applies it). An allocating thread takes no lock at all.
//!
//! The first two tests check this without timing anything: between two batches, and while the
//! snapshot holds the lock in the middle of its pass, another thread builds, changes and drops
//! instances (it would never finish if it needed a lock the snapshot holds), and the snapshots
//! count exactly the instances they should. The third, ignored, measures how often and how
//! long a thread building and dropping instances waits during snapshots (see `wait/mod.rs`;
//! `snapshot_wait_mimalloc.rs` measures the same over mimalloc):
//!
//! ```text
//! cargo test --release --test snapshot_wait -- --ignored --nocapture
//! ```

use std::alloc::System;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use classtrack::{ClassTracker, TrackOptions, Tracked, TrackingAlloc};

mod wait;

#[global_allocator]
static ALLOC: TrackingAlloc<System> = TrackingAlloc::new(System);

/// A tracked instance that owns one heap block of 8 bytes.
#[derive(Debug)]
struct Item(#[allow(dead_code)] Box<u64>);

/// The tests here install a process-wide hook or measure waits: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn build(tracker: &ClassTracker, n: usize) -> Vec<Tracked<Item>> {
    (0..n as u64)
        .map(|i| tracker.construct(|| Item(Box::new(i))))
        .collect()
}

/// Where the snapshot thread is, for the hook: 0 before the first batch ends, 1 paused in the
/// hook, 2 told to go on.
static STAGE: AtomicU32 = AtomicU32::new(0);

/// The hook between batches: the first time, waits (up to a minute) for the main thread to
/// build and drop instances.
fn pause_once() {
    // SeqCst: a handshake between two threads through one variable; no hurry here.
    if STAGE
        .compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        return;
    }
    let start = Instant::now();
    while STAGE.load(Ordering::SeqCst) != 2 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the other thread could not build and drop instances in a minute: a lock it \
             needs is held between batches"
        );
        std::thread::yield_now();
    }
}

#[test]
fn instances_are_built_and_dropped_between_batches_and_counted_exactly() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    const N: usize = 10_000;
    const DROPPED_EARLY: usize = 100;
    let tracker = Arc::new(ClassTracker::new());
    tracker.track_class::<Item>(TrackOptions::new());
    let mut items = build(&tracker, N);
    STAGE.store(0, Ordering::SeqCst);
    classtrack::__set_snapshot_batch_hook(Some(pause_once));
    let snapshot = {
        let tracker = tracker.clone();
        std::thread::spawn(move || tracker.create_snapshot("between batches"))
    };
    // SeqCst: see `pause_once`.
    while STAGE.load(Ordering::SeqCst) != 1 {
        assert!(!snapshot.is_finished(), "the snapshot had a single batch");
        std::thread::yield_now();
    }
    // The snapshot has gone through its first batch: the newest instances (a pass goes from
    // the newest to the oldest). The newest is dropped now, after it was measured; the oldest
    // ones, not yet measured, are dropped too; new instances are built.
    let newest = items.pop();
    drop(newest);
    let oldest: Vec<_> = items.drain(..DROPPED_EARLY).collect();
    drop(oldest);
    let born = build(&tracker, 50);
    STAGE.store(2, Ordering::SeqCst);
    let snap = snapshot.join().unwrap();
    classtrack::__set_snapshot_batch_hook(None);

    // Counted: every instance alive through the snapshot, and the newest (measured before it
    // died); not the oldest (dead before their batch) nor the ones born during the snapshot.
    let class = snap.tracked_class::<Item>().unwrap();
    let counted = (N - DROPPED_EARLY) as u64;
    assert_eq!(class.active, counted);
    assert_eq!(class.total_bytes, 8 * counted);
    assert_eq!((class.min_bytes, class.max_bytes), (8, 8));

    // The next snapshot sees the survivors and the newborn, each once.
    let snap = tracker.create_snapshot("after");
    let class = snap.tracked_class::<Item>().unwrap();
    let alive = (items.len() + born.len()) as u64;
    assert_eq!(alive, (N - 1 - DROPPED_EARLY + 50) as u64);
    assert_eq!((class.active, class.total_bytes), (alive, 8 * alive));

    // Every instance alive at a snapshot has one size point per snapshot it was measured at;
    // the newest has its one point, the oldest ones none.
    let stats = tracker.stats();
    for i in &stats.instances {
        let expected = match i.death {
            None if i.id < N as u64 => 2,
            None => 1,
            Some(_) if i.id == (N - 1) as u64 => 1,
            Some(_) => 0,
        };
        assert_eq!(i.sizes.len(), expected, "instance {}", i.id);
        assert!(
            i.sizes.iter().all(|&(_, size)| size == 8),
            "instance {}",
            i.id
        );
    }
}

/// The hook inside a batch, with the tracker's lock held: the first time, waits (up to a
/// minute) for the main thread to build, change and drop instances.
fn hold_the_lock_once() {
    pause_once();
}

#[test]
fn instances_are_built_changed_and_dropped_while_a_snapshot_holds_the_lock() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    const N: usize = 1_000;
    let tracker = Arc::new(ClassTracker::new());
    tracker.track_class::<Item>(TrackOptions::new());
    tracker.track_class::<Vec<u64>>(TrackOptions::new());
    let mut items = build(&tracker, N);
    let mut grown = tracker.construct_debug(|| vec![1u64]);
    STAGE.store(0, Ordering::SeqCst);
    classtrack::__set_snapshot_locked_hook(Some(hold_the_lock_once));
    let snapshot = {
        let tracker = tracker.clone();
        std::thread::spawn(move || tracker.create_snapshot("lock held"))
    };
    // SeqCst: see `pause_once`.
    while STAGE.load(Ordering::SeqCst) != 1 {
        assert!(!snapshot.is_finished(), "the snapshot never ran its hook");
        std::thread::yield_now();
    }
    // The snapshot holds the tracker's lock now, and keeps it until this thread is done: every
    // call below would hang here (and the hook fail after a minute) if it waited for it.
    assert!(!snapshot.is_finished());
    let born = build(&tracker, 50);
    let dead: Vec<_> = items.drain(..100).collect();
    drop(dead);
    // A representation refreshed after the snapshot began, and growth in the instance's scope.
    assert_eq!(grown.len(), 1);
    grown.scope(|v| v.extend([2, 3, 4]));
    let short_lived = tracker.construct_debug(|| vec![7u64; 8]);
    drop(short_lived);
    assert!(!snapshot.is_finished(), "the snapshot let go of the lock");
    STAGE.store(2, Ordering::SeqCst);
    snapshot.join().unwrap();
    classtrack::__set_snapshot_locked_hook(None);

    // What was posted while the lock was held has been applied since: the next snapshot sees
    // the survivors and the newborn, each once, and the instance's growth and new
    // representation.
    let snap = tracker.create_snapshot("after");
    let class = snap.tracked_class::<Item>().unwrap();
    let alive = (items.len() + born.len()) as u64;
    assert_eq!(alive, (N - 100 + 50) as u64);
    assert_eq!((class.active, class.total_bytes), (alive, 8 * alive));
    let vecs = snap.tracked_class::<Vec<u64>>().unwrap();
    assert_eq!(vecs.active, 1);
    assert!(vecs.total_bytes >= 32, "{}", vecs.total_bytes);
    let stats = tracker.stats();
    let reprs: Vec<_> = stats
        .instances
        .iter()
        .filter(|i| i.class.contains("Vec<u64>"))
        .map(|i| (i.repr.as_str(), i.death.is_some()))
        .collect();
    assert_eq!(
        reprs,
        [("[1, 2, 3, 4]", false), ("[7, 7, 7, 7, 7, 7, 7, 7]", true)]
    );
    // Every birth and death is in the class's counts.
    let items_stats = stats
        .classes
        .iter()
        .find(|c| c.name.contains("Item"))
        .unwrap();
    assert_eq!(items_stats.created, (N + 50) as u64);
    assert_eq!(items_stats.history.last().map(|p| p.1), Some(alive));
    // In time order, though births and deaths were applied after the lock was released.
    assert!(items_stats.history.windows(2).all(|w| w[0].0 <= w[1].0));
    drop((items, born, grown));
}

#[test]
#[ignore = "a measurement: run it alone, in release, with --nocapture"]
fn measure_the_waits_of_a_thread_building_and_dropping_instances() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    wait::measure("System");
}
