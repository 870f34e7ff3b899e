//! pympler's remaining ClassTracker verbs: sorting afresh, `tsize`, `track_change`, `close`,
//! snapshot labels, and `track_object` with a resolution level.

use std::alloc::System;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use classtrack::{Breakdown, ClassTracker, Error, SortKey, TrackOptions, TrackingAlloc};

#[global_allocator]
static ALLOC: TrackingAlloc<System> = TrackingAlloc::new(System);

/// A value whose bytes are exactly the capacities of its vectors.
struct Blob {
    #[allow(dead_code)]
    data: Vec<u8>,
    extra: Vec<u8>,
}

fn blob(n: usize) -> Blob {
    Blob {
        data: vec![0; n],
        extra: Vec::new(),
    }
}

#[test]
fn sort_stats_after_reverse_order_sorts_afresh() {
    let tracker = ClassTracker::new();
    tracker.track_class::<Blob>(TrackOptions::new());
    let blobs: Vec<_> = [300, 100, 200]
        .into_iter()
        .map(|n| tracker.construct(|| blob(n)))
        .collect();
    tracker.create_snapshot("three");
    let mut stats = tracker.stats();
    let sizes = |stats: &classtrack::Stats| -> Vec<u64> {
        stats
            .sorted_instances()
            .iter()
            .map(|i| i.max_size)
            .collect()
    };
    stats.sort_stats(&[SortKey::MaxSize]).reverse_order();
    assert!(stats.reversed);
    assert_eq!(sizes(&stats), [100, 200, 300]);
    // A new sort is not reversed, whatever came before (as pympler's `sort_stats`).
    stats.sort_stats(&[SortKey::MaxSize]);
    assert!(!stats.reversed);
    assert_eq!(sizes(&stats), [300, 200, 100]);
    stats.sort_stats(&[SortKey::Birth]);
    assert_eq!(sizes(&stats), [300, 100, 200]);
    // Reversing after the sort still works.
    stats.sort_stats(&[SortKey::Birth]).reverse_order();
    assert_eq!(sizes(&stats), [200, 100, 300]);
    drop(blobs);
}

#[test]
fn total_size_at_peak_sorts_by_the_size_in_the_peak_snapshot() {
    let tracker = ClassTracker::new();
    tracker.track_class::<Blob>(TrackOptions::new());
    let mut a = tracker.construct(|| blob(400));
    let b = tracker.construct(|| blob(800));
    // The peak: 1200 bytes of tracked instances.
    tracker.create_snapshot("peak");
    drop(b);
    a.scope(|a| a.extra = vec![0; 600]);
    // Born after the peak: 0 there.
    let c = tracker.construct(|| blob(100));
    // 1100 bytes: less than the peak.
    tracker.create_snapshot("after");
    let mut stats = tracker.stats();
    let order = |stats: &classtrack::Stats| -> Vec<u64> {
        stats
            .sorted_instances()
            .iter()
            .map(|i| i.sizes[0].1)
            .collect()
    };
    // First sizes: a 400, b 800, c 100.
    stats.sort_stats(&[SortKey::TotalSizeAtPeak]);
    assert_eq!(order(&stats), [800, 400, 100]);
    // Unlike the largest size seen (a grew to 1000 after the peak).
    stats.sort_stats(&[SortKey::MaxSize]);
    assert_eq!(order(&stats), [400, 800, 100]);
    assert_eq!(stats.sorted_instances()[0].max_size, 1000);
    // Ties at the peak (0 for c alone here) fall back to instance id; reversed as any key.
    stats
        .sort_stats(&[SortKey::TotalSizeAtPeak])
        .reverse_order();
    assert_eq!(order(&stats), [100, 400, 800]);
    drop((a, c));
}

#[test]
fn total_size_at_peak_without_snapshots_keeps_id_order() {
    let tracker = ClassTracker::new();
    tracker.track_class::<Blob>(TrackOptions::new());
    let blobs: Vec<_> = [10, 30, 20]
        .into_iter()
        .map(|n| tracker.construct(|| blob(n)))
        .collect();
    let mut stats = tracker.stats();
    stats.sort_stats(&[SortKey::TotalSizeAtPeak]);
    let ids: Vec<u64> = stats.sorted_instances().iter().map(|i| i.id).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted);
    drop(blobs);
}

/// A scope nested in a `Cart`'s: its bytes are a node of the cart's breakdown.
struct Item;

struct Cart {
    items: Vec<Vec<u8>>,
}

#[test]
fn track_change_breaks_down_one_live_instance() {
    let tracker = ClassTracker::new();
    tracker.track_class::<Cart>(TrackOptions::new());
    let mut deep = tracker.construct(|| Cart { items: Vec::new() });
    let mut flat = tracker.construct(|| Cart { items: Vec::new() });
    tracker.track_change(&deep, 1).unwrap();
    for cart in [&mut deep, &mut flat] {
        cart.items.reserve_exact(4);
        cart.scope(|c| classtrack::scope::<Item, _>(|| c.items.push(vec![0; 256])));
    }
    tracker.create_snapshot("carts");
    let stats = tracker.stats();
    let by_id = |id| stats.instances.iter().find(|i| Some(i.id) == id).unwrap();
    let (d, f) = (by_id(deep.id()), by_id(flat.id()));
    assert_eq!(d.referents.len(), 1, "{:?}", d.referents);
    assert!(d.referents[0].name.ends_with("Item"), "{:?}", d.referents);
    assert_eq!(d.referents[0].bytes, 256);
    assert!(f.referents.is_empty(), "{:?}", f.referents);
    // Both are charged the same bytes, broken down or not.
    assert_eq!(d.sizes.last().unwrap().1, f.sizes.last().unwrap().1);
    // The class's options are unchanged.
    assert_eq!(stats.classes[0].options.resolution_level, 0);

    // Back to 0: new nested scopes are charged to the instance itself; the node stays.
    tracker.track_change(&deep, 0).unwrap();
    deep.scope(|c| classtrack::scope::<Item, _>(|| c.items.push(vec![0; 128])));
    tracker.create_snapshot("more");
    let stats = tracker.stats();
    let d = stats
        .instances
        .iter()
        .find(|i| Some(i.id) == deep.id())
        .unwrap();
    assert_eq!(d.referents.len(), 1);
    assert_eq!(d.referents[0].bytes, 256);
    assert_eq!(d.sizes.last().unwrap().1, f.sizes.last().unwrap().1 + 128);
    drop((deep, flat));
}

#[test]
fn track_change_of_a_value_that_is_not_a_live_instance_is_an_error() {
    let tracker = ClassTracker::new();
    // Built before its class was tracked.
    let untracked = tracker.construct(|| Cart { items: Vec::new() });
    let err = tracker.track_change(&untracked, 1).unwrap_err();
    assert!(
        matches!(err, Error::InstanceNotTracked { id: None }),
        "{err:?}"
    );
    assert!(err
        .to_string()
        .contains("call track_class before construct"));

    tracker.track_class::<Cart>(TrackOptions::new());
    let cart = tracker.construct(|| Cart { items: Vec::new() });
    // Another tracker's instance.
    let other = ClassTracker::new();
    let err = other.track_change(&cart, 1).unwrap_err();
    assert!(
        matches!(err, Error::InstanceNotTracked { id } if id == cart.id()),
        "{err:?}"
    );
    // Forgotten by `detach_all`, and by `clear`.
    tracker.track_change(&cart, 2).unwrap();
    tracker.detach_all();
    assert!(matches!(
        tracker.track_change(&cart, 1),
        Err(Error::InstanceNotTracked { .. })
    ));
    tracker.track_class::<Cart>(TrackOptions::new());
    let again = tracker.construct(|| Cart { items: Vec::new() });
    tracker.clear();
    let err = tracker.track_change(&again, 1).unwrap_err();
    assert!(
        err.to_string().contains("not tracked by this tracker"),
        "{err}"
    );
    drop((untracked, cart, again));
}

#[test]
fn track_object_with_a_resolution_level_is_tracked_without_a_breakdown() {
    let tracker = ClassTracker::new();
    let shared = Arc::new(vec![0u8; 64]);
    // pympler's callers pass a level and expect the object tracked.
    let id = tracker
        .track_object(&shared, TrackOptions::new().resolution_level(2))
        .unwrap();
    let other = Arc::new(vec![0u8; 8]);
    let debug_id = tracker
        .track_object_debug(&other, TrackOptions::new().resolution_level(1))
        .unwrap();
    let plain = Arc::new(vec![0u8; 8]);
    let plain_id = tracker.track_object(&plain, TrackOptions::new()).unwrap();
    tracker.create_snapshot("one");
    let stats = tracker.stats();
    let find = |id| stats.instances.iter().find(|i| i.id == id).unwrap();
    let deep = find(id);
    assert!(deep.name.contains("Vec<u8>"), "{}", deep.name);
    assert_eq!(deep.breakdown, Breakdown::Unavailable { level: 2 });
    // Sized as at level 0: its own bytes, with no referents.
    assert_eq!(deep.sizes.last().unwrap().1, 24);
    assert!(deep.referents.is_empty());
    assert_eq!(
        find(debug_id).breakdown,
        Breakdown::Unavailable { level: 1 }
    );
    assert_eq!(find(plain_id).breakdown, Breakdown::OwnBytes);
    // print_stats says why there is no breakdown, and what to do.
    let mut out = Vec::new();
    stats.print_stats(&mut out, None, None).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("no breakdown (resolution level 2 asked)")
            && text.contains("track_object_footprint"),
        "{text}"
    );
    // The flag survives a dump.
    let loaded =
        classtrack::Stats::from_json(&serde_json::to_vec(&stats).unwrap(), "copy").unwrap();
    assert_eq!(loaded, stats);
}

#[test]
fn close_detaches_stops_and_ends_subscriptions() {
    let tracker = ClassTracker::new();
    tracker.track_class::<Blob>(TrackOptions::new());
    let kept = Arc::new(blob(32));
    tracker
        .track_object(&kept, TrackOptions::new().keep(true))
        .unwrap();
    let live = tracker.construct(|| blob(64));
    let sub = tracker.subscribe(4).unwrap();
    tracker
        .start_periodic_snapshots(Duration::from_millis(1))
        .unwrap();
    tracker.create_snapshot("before close");
    tracker.close().unwrap();
    assert!(!tracker.periodic_snapshots_running());
    assert!(!tracker.is_tracked::<Blob>());
    // The kept object is released.
    assert_eq!(Arc::strong_count(&kept), 1);
    // The subscription delivers what it holds, then ends.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match sub.receiver().recv_timeout(Duration::from_secs(5)) {
            Ok(_) => assert!(Instant::now() < deadline, "the subscription never ended"),
            Err(e) => {
                assert!(e.is_disconnected(), "{e:?}");
                break;
            }
        }
    }
    // Verbs work after close: nothing is registered, snapshots and stats still are.
    let after = tracker.construct(|| blob(16));
    assert_eq!(after.id(), None);
    let snap = tracker.create_snapshot("after close");
    assert!(snap.tracked.iter().all(|t| t.active == 0));
    assert!(tracker.snapshot_labeled("before close").is_some());
    assert!(tracker
        .stats()
        .instances
        .iter()
        .any(|i| Some(i.id) == live.id()));
    // Closing again is fine; tracking can start again.
    tracker.close().unwrap();
    tracker.track_class::<Blob>(TrackOptions::new());
    assert!(tracker.construct(|| blob(8)).id().is_some());
    drop((live, after));
}

/// A value whose `Debug` panics while `fail` is set.
#[derive(Default)]
struct Flaky {
    fail: AtomicBool,
    calls: AtomicU64,
}

impl fmt::Debug for Flaky {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.fail.load(Ordering::Relaxed) {
            self.calls.fetch_add(1, Ordering::Relaxed);
            panic!("flaky Debug failed");
        }
        f.write_str("Flaky")
    }
}

#[test]
fn close_reports_the_periodic_threads_failure_and_still_closes() {
    let tracker = ClassTracker::new();
    tracker.track_class::<Blob>(TrackOptions::new());
    let flaky = Arc::new(Flaky::default());
    tracker
        .track_object_debug(&flaky, TrackOptions::new())
        .unwrap();
    flaky.fail.store(true, Ordering::Relaxed);
    tracker
        .start_periodic_snapshots(Duration::from_millis(2))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while flaky.calls.load(Ordering::Relaxed) < 2 {
        assert!(Instant::now() < deadline, "periodic snapshots never ran");
        std::thread::sleep(Duration::from_millis(2));
    }
    let err = tracker.close().unwrap_err();
    assert!(matches!(err, Error::PeriodicSnapshots { .. }), "{err:?}");
    assert!(!tracker.periodic_snapshots_running());
    assert!(!tracker.is_tracked::<Blob>());
    // Detached: the next snapshot no longer formats the object.
    let calls = flaky.calls.load(Ordering::Relaxed);
    tracker.create_snapshot("closed");
    assert_eq!(flaky.calls.load(Ordering::Relaxed), calls);
    tracker.close().unwrap();
}

#[test]
fn snapshots_are_found_by_label() {
    let tracker = ClassTracker::new();
    tracker.create_snapshot("start");
    let first = tracker.create_snapshot("tick");
    let second = tracker.create_snapshot("tick");
    // The latest of equal labels.
    let found = tracker.snapshot_labeled("tick").unwrap();
    assert!(Arc::ptr_eq(&found, &second) && !Arc::ptr_eq(&found, &first));
    assert_eq!(
        tracker.snapshot_labeled("start").unwrap().description,
        "start"
    );
    assert!(tracker.snapshot_labeled("").is_none());
    let stats = tracker.stats();
    assert_eq!(stats.snapshot("tick").unwrap().time, second.time);
    assert!(stats.snapshot("stop").is_none());
    // Older snapshots leave the tracker's full ones; their summaries keep the label.
    let recent = tracker.retention().recent_snapshots;
    for i in 0..recent {
        tracker.create_snapshot(&format!("filler {i}"));
    }
    assert!(tracker.snapshot_labeled("start").is_none());
    assert_eq!(
        tracker.stats().snapshot("start").unwrap().description,
        "start"
    );
}
