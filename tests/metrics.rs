//! Feature `metrics`: names, labels and exact values through metrics-util's debugging
//! recorder, the bound on label cardinality, and publication on every snapshot.
#![cfg(feature = "metrics")]

use std::alloc::System;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use classtrack::metrics::{publish, MetricsOptions, OTHER_CLASS};
use classtrack::{ClassTracker, Snapshot, TrackingAlloc};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use metrics_util::MetricKind;

#[global_allocator]
static ALLOC: TrackingAlloc<System> = TrackingAlloc::new(System);

/// A series: kind, name, class label (if any).
type Series = (MetricKind, String, Option<String>);

/// Every series the recorder holds, with its value as f64.
fn series(snapshotter: &Snapshotter) -> BTreeMap<Series, f64> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _unit, _desc, value)| {
            let class = key
                .key()
                .labels()
                .find(|l| l.key() == "class")
                .map(|l| l.value().to_owned());
            let labels = key.key().labels().count();
            assert!(labels <= 1, "{} has {labels} labels", key.key().name());
            let value = match value {
                DebugValue::Counter(v) => v as f64,
                DebugValue::Gauge(v) => v.into_inner(),
                DebugValue::Histogram(_) => panic!("no histogram expected"),
            };
            ((key.kind(), key.key().name().to_owned(), class), value)
        })
        .collect()
}

fn get(s: &BTreeMap<Series, f64>, kind: MetricKind, name: &str, class: Option<&str>) -> f64 {
    *s.get(&(kind, name.to_owned(), class.map(str::to_owned)))
        .unwrap_or_else(|| panic!("no series {name}{{class={class:?}}} in {:?}", s.keys()))
}

#[test]
fn names_labels_and_values_are_exact_for_a_class() {
    let tracker = ClassTracker::new();
    let (kept, boxed) = classtrack::scope_named("metrics-test-exact", || {
        let freed = vec![7u8; 100];
        drop(freed);
        (vec![1u8; 12_345], Box::new([0u64; 8]))
    });
    let snap = tracker.create_snapshot("exact");
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // Every class: the other tests in this file keep larger ones, which would push this one
    // out of the default top 50.
    let options = MetricsOptions::new().top_classes(usize::MAX);
    let published = metrics::with_local_recorder(&recorder, || publish(&snap, &options));
    assert!(published.iter().any(|c| c == "metrics-test-exact"));
    let s = series(&snapshotter);
    let class = Some("metrics-test-exact");
    use MetricKind::{Counter, Gauge};
    assert_eq!(
        get(&s, Gauge, "classtrack_live_bytes", class),
        12_345.0 + 64.0
    );
    assert_eq!(get(&s, Gauge, "classtrack_live_blocks", class), 2.0);
    assert_eq!(
        get(&s, Counter, "classtrack_allocated_bytes_total", class),
        12_345.0 + 64.0 + 100.0
    );
    assert_eq!(get(&s, Counter, "classtrack_allocations_total", class), 3.0);
    assert_eq!(
        get(&s, Counter, "classtrack_freed_bytes_total", class),
        100.0
    );
    assert_eq!(get(&s, Counter, "classtrack_frees_total", class), 1.0);
    // The reserved classes always have their own series.
    for reserved in [classtrack::UNTRACKED_CLASS, classtrack::OVERHEAD_CLASS] {
        get(&s, Gauge, "classtrack_live_bytes", Some(reserved));
    }
    get(&s, Gauge, "classtrack_live_bytes", Some(OTHER_CLASS));
    // Process-wide series, unlabelled.
    let resident = get(&s, Gauge, "classtrack_resident_bytes", None);
    assert_eq!(resident, snap.process.unwrap().resident_bytes as f64);
    assert!(resident > 0.0);
    assert_eq!(
        get(&s, Gauge, "classtrack_overhead_bytes", None),
        snap.overhead.total_bytes() as f64
    );
    assert_eq!(
        get(&s, Counter, "classtrack_samples_dropped_total", None),
        snap.sampling.dropped as f64
    );
    assert_eq!(
        get(&s, Counter, "classtrack_samples_total", None),
        snap.sampling.sent as f64
    );
    assert_eq!(
        get(&s, Gauge, "classtrack_classes", None),
        snap.classes.len() as f64
    );
    // Counters end in _total; nothing else does.
    for (kind, name, _) in s.keys() {
        assert_eq!(*kind == Counter, name.ends_with("_total"), "{name}");
        assert!(name.starts_with("classtrack_"), "{name}");
    }
    drop((kept, boxed));
}

/// The classes `publish` should give series of their own, by the rule it documents.
fn expected_top(snap: &Snapshot, n: usize) -> Vec<String> {
    let mut users: Vec<_> = snap.user_classes().collect();
    users.sort_by(|a, b| b.live_bytes.cmp(&a.live_bytes).then(a.name.cmp(&b.name)));
    users.iter().take(n).map(|c| c.name.to_string()).collect()
}

#[test]
fn label_cardinality_is_bounded_with_thousands_of_classes() {
    const CLASSES: usize = 5_000;
    const TOP: usize = 10;
    let tracker = ClassTracker::new();
    let blocks: Vec<Vec<u8>> = (0..CLASSES)
        .map(|i| {
            let name = format!("metrics-many-{i:05}");
            classtrack::scope_named(&name, || vec![0u8; 64 + 16 * i])
        })
        .collect();
    let snap = tracker.create_snapshot("many");
    assert!(snap.user_classes().count() >= CLASSES);
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        publish(&snap, &MetricsOptions::new().top_classes(TOP))
    });
    let s = series(&snapshotter);
    let top = expected_top(&snap, TOP);
    assert!(top.contains(&format!("metrics-many-{:05}", CLASSES - 1)));
    let mut want: BTreeSet<String> = top.iter().cloned().collect();
    want.insert(classtrack::UNTRACKED_CLASS.to_owned());
    want.insert(classtrack::OVERHEAD_CLASS.to_owned());
    want.insert(OTHER_CLASS.to_owned());
    for name in [
        "classtrack_live_bytes",
        "classtrack_live_blocks",
        "classtrack_allocated_bytes_total",
        "classtrack_allocations_total",
    ] {
        let classes: BTreeSet<String> = s
            .keys()
            .filter(|(_, n, _)| n == name)
            .filter_map(|(_, _, c)| c.clone())
            .collect();
        assert_eq!(classes, want, "{name}");
    }
    // <other> is the sum of every user class not in the top N.
    let other: u64 = snap
        .user_classes()
        .filter(|c| !top.iter().any(|t| **t == *c.name))
        .map(|c| c.live_bytes)
        .sum();
    assert_eq!(
        get(
            &s,
            MetricKind::Gauge,
            "classtrack_live_bytes",
            Some(OTHER_CLASS)
        ),
        other as f64
    );
    drop(blocks);
}

#[test]
fn every_snapshot_is_published_and_classes_that_leave_the_top_read_zero() {
    // Each step publishes to a recorder of its own (the debugging recorder's snapshot resets
    // values), so a series that a step shows is one that step set.
    let tracker = ClassTracker::new();
    tracker.publish_metrics(MetricsOptions::new().top_classes(1));
    let step = |f: &mut dyn FnMut()| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, f);
        series(&snapshotter)
    };
    let gauge = |s: &BTreeMap<Series, f64>, class| {
        s.get(&(
            MetricKind::Gauge,
            "classtrack_live_bytes".to_owned(),
            Some(String::from(class)),
        ))
        .copied()
    };
    // Far larger than anything else the tests in this file keep.
    let big = classtrack::scope_named("metrics-hook-big", || vec![0u8; 64 << 20]);
    let s = step(&mut || drop(tracker.create_snapshot("big")));
    assert_eq!(gauge(&s, "metrics-hook-big"), Some((64 << 20) as f64));
    let bigger = classtrack::scope_named("metrics-hook-bigger", || vec![0u8; 96 << 20]);
    let s = step(&mut || drop(tracker.create_snapshot("bigger")));
    assert_eq!(gauge(&s, "metrics-hook-bigger"), Some((96 << 20) as f64));
    // Left the top 1: set to 0, its bytes now counted in <other>.
    assert_eq!(gauge(&s, "metrics-hook-big"), Some(0.0));
    assert!(gauge(&s, OTHER_CLASS).unwrap() >= (64 << 20) as f64);
    // Set to 0 once only: the next snapshot leaves it alone.
    let s = step(&mut || drop(tracker.create_snapshot("again")));
    assert_eq!(gauge(&s, "metrics-hook-big"), None);
    assert_eq!(gauge(&s, "metrics-hook-bigger"), Some((96 << 20) as f64));
    tracker.stop_publishing_metrics();
    let s = step(&mut || drop(tracker.create_snapshot("not published")));
    assert!(s.is_empty(), "published after stop: {:?}", s.keys());
    drop((big, bigger));
}

#[test]
fn periodic_snapshots_publish_to_the_global_recorder() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("only this test installs a global recorder");
    let tracker = ClassTracker::new();
    tracker.publish_metrics(MetricsOptions::new());
    let kept = classtrack::scope_named("metrics-periodic", || vec![0u8; 4 << 20]);
    tracker
        .start_periodic_snapshots(Duration::from_millis(20))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let live = loop {
        let s = series(&snapshotter);
        let key = (
            MetricKind::Gauge,
            "classtrack_live_bytes".to_owned(),
            Some("metrics-periodic".to_owned()),
        );
        // The debugging recorder's snapshot resets values: wait for a publication after it.
        if let Some(&v) = s.get(&key).filter(|&&v| v > 0.0) {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "no periodic snapshot was published within 10 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(live, (4 << 20) as f64);
    tracker.stop_periodic_snapshots().unwrap();
    drop(kept);
}
