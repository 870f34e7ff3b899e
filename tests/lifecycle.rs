//! Lifecycle and misuse: ids across `clear`, settings that survive it, and public verbs given
//! extreme arguments, which either work or return a typed error; the periodic thread never
//! fails silently.

use std::alloc::System;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use classtrack::{ClassTracker, Error, Retention, TrackOptions, TrackingAlloc};

#[global_allocator]
static A: TrackingAlloc<System> = TrackingAlloc::new(System);

struct Widget {
    _bytes: Vec<u8>,
}

#[test]
fn an_old_handle_dropped_after_clear_is_not_a_new_instance() {
    let tracker = ClassTracker::new();
    tracker.track_class::<Widget>(TrackOptions::new());
    let old = tracker.construct(|| Widget {
        _bytes: vec![1; 100],
    });
    tracker.clear();
    tracker.track_class::<Widget>(TrackOptions::new());
    let new = tracker.construct(|| Widget {
        _bytes: vec![2; 100],
    });
    assert_ne!(old.id(), new.id(), "instance ids are never reused");
    assert_eq!(
        tracker
            .create_snapshot("one")
            .tracked_class::<Widget>()
            .unwrap()
            .active,
        1
    );
    drop(old);
    let snap = tracker.create_snapshot("old dropped");
    let widgets = snap.tracked_class::<Widget>().unwrap();
    assert_eq!(
        widgets.active, 1,
        "the old handle's death is not the new one's"
    );
    assert_eq!(widgets.total_bytes, 100);
    let stats = tracker.stats();
    assert_eq!(stats.instances.len(), 1);
    assert_eq!(stats.instances[0].id, new.id().unwrap());
    assert!(stats.instances[0].death.is_none());
    drop(new);
    assert_eq!(
        tracker
            .create_snapshot("none")
            .tracked_class::<Widget>()
            .unwrap()
            .active,
        0
    );
}

#[test]
fn settings_survive_clear() {
    let tracker = ClassTracker::new();
    tracker.set_dead_instance_limit(3);
    let retention = Retention::new()
        .recent_snapshots(2)
        .snapshot_history(10)
        .instance_sizes(5)
        .class_history(6)
        .dead_instances(3);
    tracker.set_retention(retention).unwrap();
    tracker.create_snapshot("before");
    tracker.clear();
    assert_eq!(tracker.retention(), retention);
    tracker.track_class::<Widget>(TrackOptions::new());
    for _ in 0..10 {
        drop(tracker.construct(|| Widget { _bytes: vec![0; 8] }));
    }
    let stats = tracker.stats();
    assert_eq!(stats.instances.len(), 3, "the dead-instance limit survived");
    assert_eq!(stats.compaction.instances_evicted, 7);
    for _ in 0..5 {
        tracker.create_snapshot("after");
    }
    assert_eq!(tracker.snapshots().len(), 2);
}

#[test]
fn retention_limits_are_checked_and_extreme_ones_work() {
    let tracker = ClassTracker::new();
    for bad in [
        Retention::new().snapshot_history(0),
        Retention::new().instance_sizes(1),
        Retention::new().class_history(3),
    ] {
        let err = tracker.set_retention(bad).unwrap_err();
        assert!(matches!(err, Error::InvalidRetention { .. }), "{err:?}");
        assert!(err.to_string().contains("give at least 4"), "{err}");
    }
    assert_eq!(tracker.retention(), Retention::default());
    let huge = Retention::new()
        .recent_snapshots(usize::MAX)
        .snapshot_history(usize::MAX)
        .instance_sizes(usize::MAX)
        .class_history(usize::MAX)
        .dead_instances(usize::MAX);
    tracker.set_retention(huge).unwrap();
    tracker.track_class::<Widget>(TrackOptions::new().resolution_level(u32::MAX));
    let w = tracker.construct(|| Widget { _bytes: vec![0; 8] });
    for _ in 0..10 {
        tracker.create_snapshot("huge limits");
    }
    drop(w);
    tracker.set_dead_instance_limit(usize::MAX);
    tracker.set_dead_instance_limit(0);
    assert_eq!(tracker.stats().instances.len(), 0);
    assert_eq!(tracker.snapshots().len(), 10);
}

#[test]
fn subscription_capacities_out_of_range_are_errors() {
    let tracker = ClassTracker::new();
    for capacity in [0, usize::MAX, classtrack::MAX_SUBSCRIPTION_CAPACITY + 1] {
        let err = tracker.subscribe(capacity).unwrap_err();
        assert!(
            matches!(err, Error::InvalidCapacity { capacity: c, .. } if c == capacity),
            "{err:?}"
        );
        assert!(err.to_string().contains("between 1 and"), "{err}");
    }
    let sub = tracker
        .subscribe(classtrack::MAX_SUBSCRIPTION_CAPACITY)
        .unwrap();
    tracker.create_snapshot("one");
    assert_eq!(sub.receiver().len(), 1);
}

#[test]
fn an_interval_too_long_to_count_down_waits_for_a_new_one() {
    let tracker = ClassTracker::new();
    tracker.start_periodic_snapshots(Duration::MAX).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert!(tracker.periodic_snapshots_running(), "the thread is alive");
    assert!(tracker.snapshots().is_empty());
    // A usable interval later: snapshots come.
    tracker
        .start_periodic_snapshots(Duration::from_millis(2))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while tracker.snapshots().len() < 3 {
        assert!(
            Instant::now() < deadline,
            "no periodic snapshot after Duration::MAX"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // And back to "never", then stopped promptly.
    tracker
        .start_periodic_snapshots(Duration::from_secs(u64::MAX))
        .unwrap();
    let start = Instant::now();
    tracker.stop_periodic_snapshots().unwrap();
    assert!(start.elapsed() < Duration::from_secs(1));
    assert!(!tracker.periodic_snapshots_running());
    // Stopping again is fine.
    tracker.stop_periodic_snapshots().unwrap();
    assert!(matches!(
        tracker.start_periodic_snapshots(Duration::ZERO),
        Err(Error::InvalidInterval { .. })
    ));
}

#[test]
fn a_failing_periodic_snapshot_is_reported_not_silent() {
    let tracker = ClassTracker::new();
    // A tracked object whose `Debug` starts panicking once tracked: each periodic snapshot
    // formats it, and fails.
    let flaky = Arc::new(Flaky::default());
    tracker
        .track_object_debug(&flaky, TrackOptions::new())
        .unwrap();
    flaky.fail.store(true, std::sync::atomic::Ordering::Relaxed);
    tracker
        .start_periodic_snapshots(Duration::from_millis(2))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while flaky.calls.load(std::sync::atomic::Ordering::Relaxed) < 3 {
        assert!(Instant::now() < deadline, "periodic snapshots never ran");
        std::thread::sleep(Duration::from_millis(2));
    }
    // The thread survives its failures.
    assert!(tracker.periodic_snapshots_running());
    let err = tracker.stop_periodic_snapshots().unwrap_err();
    match &err {
        Error::PeriodicSnapshots { failures, last } => {
            assert!(*failures >= 2, "{failures}");
            assert!(last.contains("flaky Debug"), "{last}");
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("start periodic snapshots again"));
    // Reported once: a new start and stop are clean.
    flaky
        .fail
        .store(false, std::sync::atomic::Ordering::Relaxed);
    tracker
        .start_periodic_snapshots(Duration::from_millis(2))
        .unwrap();
    std::thread::sleep(Duration::from_millis(20));
    tracker.stop_periodic_snapshots().unwrap();
}

/// A value whose `Debug` panics while `fail` is set.
#[derive(Default)]
struct Flaky {
    fail: std::sync::atomic::AtomicBool,
    calls: std::sync::atomic::AtomicU64,
}

impl fmt::Debug for Flaky {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.fail.load(std::sync::atomic::Ordering::Relaxed) {
            self.calls
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            panic!("flaky Debug failed");
        }
        f.write_str("Flaky")
    }
}

#[test]
fn sampler_settings_take_extreme_values() {
    classtrack::set_stack_depth(0);
    assert_eq!(classtrack::stack_depth(), 1);
    classtrack::set_stack_depth(usize::MAX);
    assert_eq!(classtrack::stack_depth(), 64);
    let before = classtrack::sample_mean();
    classtrack::set_sample_mean(u64::MAX);
    let v: Vec<Vec<u8>> = (0..1000).map(|i| vec![i as u8; 1000]).collect();
    drop(v);
    classtrack::set_sample_mean(1);
    let v: Vec<Vec<u8>> = (0..100).map(|i| vec![i as u8; 10]).collect();
    drop(v);
    classtrack::set_sample_mean(before);
    let tracker = ClassTracker::new();
    let snap = tracker.create_snapshot("after");
    assert!(snap.sites.iter().all(|s| s.estimate.live_bytes >= 0.0));
    assert!(snap.top_sites("<untracked>", usize::MAX).len() <= snap.sites.len());
}
