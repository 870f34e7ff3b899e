//! Every verb of pympler's ClassTracker, with exact figures from the allocator.

use std::alloc::System;
use std::sync::Arc;
use std::time::{Duration, Instant};

use classtrack::{ClassTracker, Error, SortKey, Stats, TrackOptions, TrackingAlloc};

#[global_allocator]
static ALLOC: TrackingAlloc<System> = TrackingAlloc::new(System);

#[derive(Debug)]
struct Widget {
    payload: Vec<u8>,
}

fn widget(n: usize) -> Widget {
    Widget {
        payload: vec![7u8; n],
    }
}

#[test]
fn instance_counts_and_sizes_are_exact_across_threads() {
    struct Part {
        bytes: Vec<u8>,
    }
    let tracker = Arc::new(ClassTracker::new());
    // Room for every birth and death (1,500): the history is exact below its capacity.
    tracker
        .set_retention(classtrack::Retention::new().class_history(2000))
        .unwrap();
    tracker.track_class::<Part>(TrackOptions::new());
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let tracker = tracker.clone();
            std::thread::spawn(move || {
                (0..250)
                    .map(|k| {
                        tracker.construct(|| Part {
                            bytes: vec![0u8; 100 + t * 1000 + k],
                        })
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut parts: Vec<_> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let expected: u64 = (0..4u64)
        .flat_map(|t| (0..250u64).map(move |k| 100 + t * 1000 + k))
        .sum();
    let snap = tracker.create_snapshot("all built");
    let t = snap.tracked_class::<Part>().unwrap();
    assert_eq!(t.active, 1000);
    assert_eq!(t.total_bytes, expected);
    assert_eq!(t.min_bytes, 100);
    assert_eq!(t.max_bytes, 100 + 3000 + 249);
    assert_eq!(parts[0].bytes.len() + parts[999].bytes.len(), 100 + 3349);

    // Drop half, on another thread.
    let second_half = parts.split_off(500);
    std::thread::spawn(move || drop(second_half))
        .join()
        .unwrap();
    let snap = tracker.create_snapshot("half dropped");
    let t = snap.tracked_class::<Part>().unwrap();
    assert_eq!(t.active, 500);
    let kept: u64 = parts.iter().map(|p| p.bytes.len() as u64).sum();
    assert_eq!(t.total_bytes, kept);

    let stats = tracker.stats();
    let class = stats
        .classes
        .iter()
        .find(|c| c.name.ends_with("Part"))
        .unwrap();
    assert_eq!(class.created, 1000);
    assert_eq!(class.history.len(), 1500);
    assert_eq!(class.history.last().unwrap().1, 500);
    assert!(class.history.windows(2).all(|w| w[0].0 <= w[1].0));
    assert_eq!(
        stats.instances.iter().filter(|i| i.death.is_some()).count(),
        500
    );
    for i in &stats.instances {
        if let Some(d) = i.death {
            assert!(i.birth <= d);
        }
    }
}

#[test]
fn growth_inside_the_instance_scope_is_charged_to_it() {
    struct Basket {
        items: Vec<String>,
    }
    let tracker = ClassTracker::new();
    tracker.track_class::<Basket>(TrackOptions::new());
    let mut basket = tracker.construct(|| Basket {
        items: Vec::with_capacity(4),
    });
    let size = |t: &ClassTracker| {
        t.create_snapshot("s")
            .tracked_class::<Basket>()
            .unwrap()
            .total_bytes
    };
    assert_eq!(size(&tracker), 4 * 24);
    basket.scope(|b| b.items.push("x".repeat(1000)));
    assert_eq!(size(&tracker), 4 * 24 + 1000);
    // Outside its scope, a new string is not the instance's ...
    let outside = classtrack::scope_named("parity::outside", || "y".repeat(500));
    basket.items.push(outside);
    assert_eq!(size(&tracker), 4 * 24 + 1000);
    // ... but the growth of its own vector is: realloc keeps the block's owner.
    let more = classtrack::scope_named("parity::outside", || {
        (0..10).map(|i| i.to_string()).collect::<Vec<_>>()
    });
    basket.items.extend(more);
    let cap = basket.items.capacity() as u64;
    assert_eq!(size(&tracker), cap * 24 + 1000);
}

#[test]
fn detach_then_construct_registers_nothing() {
    struct Temp;
    struct NeverTracked;
    let tracker = ClassTracker::new();
    assert!(matches!(
        tracker.detach_class::<NeverTracked>(),
        Err(Error::NotTracked { .. })
    ));
    tracker.track_class::<Temp>(TrackOptions::new());
    let a = tracker.construct(|| Temp);
    assert!(a.id().is_some());
    tracker.detach_class::<Temp>().unwrap();
    assert!(!tracker.is_tracked::<Temp>());
    let b = tracker.construct(|| Temp);
    assert_eq!(b.id(), None);
    let err = tracker.detach_class::<Temp>().unwrap_err();
    assert!(err.to_string().contains("not tracked"), "{err}");
    // The instance tracked before detaching stays tracked.
    let snap = tracker.create_snapshot("after detach");
    assert_eq!(snap.tracked_class::<Temp>().unwrap().active, 1);
    // Tracking again re-attaches, with new options.
    tracker.track_class::<Temp>(TrackOptions::new().name("temporary"));
    let c = tracker.construct(|| Temp);
    assert!(c.id().is_some());
    let snap = tracker.create_snapshot("renamed");
    assert_eq!(snap.tracked_class_named("temporary").unwrap().active, 2);
    drop((a, b, c));
}

#[test]
fn detach_all_and_clear() {
    struct A;
    let tracker = ClassTracker::new();
    tracker.track_class::<A>(TrackOptions::new());
    let shared = Arc::new(widget(10));
    tracker
        .track_object(&shared, TrackOptions::new().keep(true))
        .unwrap();
    assert_eq!(Arc::strong_count(&shared), 2);
    let a = tracker.construct(|| A);
    tracker.detach_all();
    assert_eq!(
        Arc::strong_count(&shared),
        1,
        "detach_all releases kept objects"
    );
    assert!(!tracker.is_tracked::<A>());
    let snap = tracker.create_snapshot("detached");
    assert_eq!(snap.tracked_class::<A>().unwrap().active, 0);
    tracker.clear();
    assert!(tracker.snapshots().is_empty());
    assert!(tracker.stats().instances.is_empty());
    drop(a);
}

#[test]
fn track_object_birth_death_keep_and_twice() {
    let tracker = ClassTracker::new();
    let obj = Arc::new(widget(64));
    assert_eq!(obj.payload.len(), 64);
    let id = tracker
        .track_object_debug(&obj, TrackOptions::new().name("the widget"))
        .unwrap();
    match tracker.track_object(&obj, TrackOptions::new()) {
        Err(Error::AlreadyTracked { id: first, .. }) => assert_eq!(first, id),
        other => panic!("{other:?}"),
    }
    let snap = tracker.create_snapshot("alive");
    let t = snap.tracked_class::<Widget>().unwrap();
    assert_eq!(t.active, 1);
    assert_eq!(t.total_bytes, std::mem::size_of::<Widget>() as u64);
    let clone = obj.clone();
    drop(obj);
    tracker.poll();
    assert!(
        tracker.stats().instances[0].death.is_none(),
        "a clone is alive"
    );
    drop(clone);
    tracker.poll();
    let stats = tracker.stats();
    let i = &stats.instances[0];
    assert!(i.death.is_some());
    assert!(i.shared);
    assert_eq!(i.name, "the widget");
    assert!(i.repr.starts_with("Widget { payload: [7, 7"), "{}", i.repr);
    assert_eq!(i.repr.chars().count(), classtrack::REPR_LIMIT + 1);
    // Once it is dead, the same address may be tracked again.
    let again = Arc::new(widget(1));
    tracker.track_object(&again, TrackOptions::new()).unwrap();
}

#[test]
fn several_trackers_coexist() {
    struct Shared;
    let t1 = ClassTracker::new();
    let t2 = ClassTracker::new();
    t1.track_class::<Shared>(TrackOptions::new());
    let a = t1.construct(|| Shared);
    let b = t2.construct(|| Shared);
    assert!(a.id().is_some());
    assert!(b.id().is_none());
    assert_eq!(
        t1.create_snapshot("1")
            .tracked_class::<Shared>()
            .unwrap()
            .active,
        1
    );
    assert!(t2.create_snapshot("2").tracked_class::<Shared>().is_none());
    assert_eq!(t2.snapshots().len(), 1);
    drop((a, b));
}

#[test]
fn snapshot_with_nothing_tracked_records_process_memory() {
    let tracker = ClassTracker::new();
    let snap = tracker.create_snapshot("empty");
    assert!(snap.tracked.is_empty());
    assert!(snap.process.unwrap().resident_bytes > 0);
    assert!(snap.allocator.live_bytes > 0);
}

#[test]
fn periodic_snapshots_arrive_and_stop_promptly() {
    let tracker = ClassTracker::new();
    assert!(matches!(
        tracker.start_periodic_snapshots(Duration::ZERO),
        Err(Error::InvalidInterval { .. })
    ));
    let sub = tracker.subscribe(1000).unwrap();
    tracker
        .start_periodic_snapshots(Duration::from_millis(20))
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // A long interval now: stopping must not wait for it.
    tracker
        .start_periodic_snapshots(Duration::from_secs(3600))
        .unwrap();
    let start = Instant::now();
    tracker.stop_periodic_snapshots().unwrap();
    assert!(
        start.elapsed() < Duration::from_millis(200),
        "{:?}",
        start.elapsed()
    );
    assert!(!tracker.periodic_snapshots_running());
    let n = tracker.snapshots().len();
    assert!((5..=20).contains(&n), "{n} snapshots in 300 ms at 20 ms");
    let times: Vec<f64> = tracker.snapshots().iter().map(|s| s.time).collect();
    let gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
    assert!((0.015..0.060).contains(&mean), "mean gap {mean}");
    assert_eq!(sub.receiver().try_iter().count(), n);
    std::thread::sleep(Duration::from_millis(60));
    assert_eq!(tracker.snapshots().len(), n, "no snapshot after stop");
    assert!(tracker
        .snapshots()
        .iter()
        .all(|s| s.description == "periodic"));
}

#[test]
fn a_subscriber_that_never_reads_stalls_nothing() {
    let tracker = ClassTracker::new();
    let sub = tracker.subscribe(2).unwrap();
    tracker
        .start_periodic_snapshots(Duration::from_millis(1))
        .unwrap();
    let start = Instant::now();
    let worker = std::thread::spawn(|| {
        let mut total = 0usize;
        for i in 0..200_000 {
            let v = classtrack::scope_named("parity::busy", || vec![i as u8; 64]);
            total += v.len();
        }
        total
    });
    assert_eq!(worker.join().unwrap(), 200_000 * 64);
    std::thread::sleep(Duration::from_millis(50));
    tracker.stop_periodic_snapshots().unwrap();
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(sub.dropped() > 0);
    assert_eq!(tracker.dropped_snapshots(), sub.dropped());
    assert_eq!(sub.receiver().len(), 2);
}

#[test]
fn dropping_the_tracker_stops_its_thread() {
    let tracker = ClassTracker::new();
    let sub = tracker.subscribe(10_000).unwrap();
    tracker
        .start_periodic_snapshots(Duration::from_millis(2))
        .unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let start = Instant::now();
    drop(tracker);
    assert!(start.elapsed() < Duration::from_millis(200));
    // The sending side is gone: the stream ends after what was sent.
    let rx = sub.receiver();
    while rx.try_recv().is_ok() {}
    assert!(matches!(
        rx.recv_timeout(Duration::from_millis(100)),
        Err(crossbeam_channel::RecvTimeoutError::Disconnected)
    ));
}

fn summary_of(stats: &Stats) -> String {
    let mut out = Vec::new();
    stats.print_summary(&mut out).unwrap();
    String::from_utf8(out).unwrap()
}

fn instances_of(stats: &Stats) -> String {
    let mut out = Vec::new();
    stats.print_stats(&mut out, None, None).unwrap();
    String::from_utf8(out).unwrap()
}

struct Doc {
    text: String,
}

#[test]
fn print_summary_line_by_line() {
    let tracker = ClassTracker::new();
    tracker.track_class::<Doc>(TrackOptions::new().name("doc"));
    let docs: Vec<_> = (0..4)
        .map(|i| {
            tracker.construct(|| Doc {
                text: "d".repeat(1024 * (i + 1)),
            })
        })
        .collect();
    tracker.create_snapshot("four docs");
    let stats = tracker.stats();
    let text = summary_of(&stats);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert!(lines[0].starts_with("---- SUMMARY ----"));
    assert!(lines[1].starts_with("\"four docs\" at "), "{}", lines[1]);
    assert!(
        lines[1].contains(" live in the program's heap, "),
        "{}",
        lines[1]
    );
    assert!(lines[1].ends_with(" resident"), "{}", lines[1]);
    let header: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(header, ["class", "active", "total", "average", "share"]);
    let row: Vec<&str> = lines[3].split_whitespace().collect();
    assert_eq!(row[..6], ["doc", "4", "10.0", "KiB", "2.5", "KiB"]);
    let share: f64 = row[6].trim_end_matches('%').parse().unwrap();
    // Shares are of the program's heap: the allocator's live bytes without classtrack's own.
    let s0 = &stats.snapshots[0];
    assert!(s0.overhead.tracker_bytes > 0);
    let expected = 10240.0 * 100.0 / (s0.allocator.live_bytes - s0.overhead.tracker_bytes) as f64;
    assert!((share - expected).abs() < 0.051, "{share} {expected}");
    assert_eq!(lines[4], "-".repeat(79));
    assert_eq!(docs.iter().map(|d| d.text.len()).sum::<usize>(), 10240);
}

#[test]
fn print_stats_sorted_filtered_and_limited() {
    #[derive(Debug)]
    struct Row(#[allow(dead_code)] Vec<u32>);
    let tracker = ClassTracker::new();
    tracker.track_class::<Row>(TrackOptions::new().trace(true));
    let rows: Vec<_> = [3usize, 1, 2]
        .iter()
        .map(|&n| tracker.construct_debug(|| Row(vec![0; n * 100])))
        .collect();
    tracker.create_snapshot("rows");
    let mut stats = tracker.stats();
    stats.sort_stats(&[SortKey::MaxSize]);
    let sizes: Vec<u64> = stats
        .sorted_instances()
        .iter()
        .map(|i| i.max_size)
        .collect();
    assert_eq!(sizes, [1200, 800, 400]);
    stats.reverse_order();
    let sizes: Vec<u64> = stats
        .sorted_instances()
        .iter()
        .map(|i| i.max_size)
        .collect();
    assert_eq!(sizes, [400, 800, 1200]);
    let mut out = Vec::new();
    stats.print_stats(&mut out, Some("Row"), Some(2)).unwrap();
    let text = String::from_utf8(out).unwrap();
    let heads: Vec<&str> = text.lines().filter(|l| l.contains("::Row #")).collect();
    assert_eq!(heads.len(), 2, "{text}");
    // The representation is clipped to 128 characters.
    let repr = heads[0].split_once(" Row(").unwrap().1;
    assert_eq!(
        repr.chars().count() + 4,
        classtrack::REPR_LIMIT + 1,
        "{}",
        heads[0]
    );
    assert!(
        repr.starts_with("[0, 0, 0") && repr.ends_with('…'),
        "{}",
        heads[0]
    );
    assert!(text.contains("  born "), "{text}");
    assert!(text.contains("  max 400 B"), "{text}");
    assert!(text.contains("constructed at:"), "{text}");
    assert!(
        text.contains("print_stats_sorted_filtered_and_limited"),
        "the trace names the constructing function:\n{text}"
    );
    let mut none = Vec::new();
    stats
        .print_stats(&mut none, Some("NoSuchClass"), None)
        .unwrap();
    assert_eq!(String::from_utf8(none).unwrap().lines().count(), 2);
    drop(rows);
}

#[test]
fn dump_load_round_trip_is_lossless_and_prints_the_same() {
    let tracker = ClassTracker::new();
    tracker.track_class::<Doc>(TrackOptions::new().trace(true));
    let mut docs: Vec<_> = (0..5)
        .map(|i| {
            tracker.construct(|| Doc {
                text: "z".repeat(i * 333 + 1),
            })
        })
        .collect();
    tracker.create_snapshot("five");
    docs.truncate(2);
    tracker.create_snapshot("two");
    let mut stats = tracker.stats();
    stats
        .sort_stats(&[SortKey::Death, SortKey::Birth])
        .reverse_order();
    let dir = std::env::temp_dir().join(format!("classtrack-dump-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("stats.json");
    stats.dump(&path).unwrap();
    let loaded = Stats::load(&path).unwrap();
    assert_eq!(loaded, stats);
    assert_eq!(summary_of(&loaded), summary_of(&stats));
    assert_eq!(instances_of(&loaded), instances_of(&stats));
    assert_eq!(loaded.classes[0].history.len(), 8);
    // No temporary file is left behind.
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["stats.json"]);

    // Truncated: a typed error that says so.
    let full = std::fs::read(&path).unwrap();
    let cut = dir.join("cut.json");
    std::fs::write(&cut, &full[..full.len() / 2]).unwrap();
    let err = Stats::load(&cut).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("truncated"), "{err}");
    // Missing.
    let err = Stats::load(dir.join("missing.json")).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    // Newer.
    let mut newer: serde_json::Value = serde_json::from_slice(&full).unwrap();
    newer["version"] = serde_json::json!(classtrack::STATS_VERSION + 1);
    let newer_path = dir.join("newer.json");
    std::fs::write(&newer_path, serde_json::to_vec(&newer).unwrap()).unwrap();
    let err = Stats::load(&newer_path).unwrap_err();
    assert!(matches!(err, Error::UnsupportedVersion { .. }), "{err:?}");
    assert!(err.to_string().contains("newer classtrack"), "{err}");
    // Not stats at all.
    let other = dir.join("other.json");
    std::fs::write(&other, b"{\"version\": 1, \"hello\": 2}").unwrap();
    assert!(matches!(Stats::load(&other), Err(Error::Corrupt { .. })));
    // A path with no file name.
    assert!(matches!(stats.dump("/"), Err(Error::Io { .. })));
    std::fs::remove_dir_all(&dir).unwrap();
    drop(docs);
}

#[test]
fn resolution_level_breaks_an_instance_down_by_nested_scopes() {
    struct Index {
        docs: Vec<String>,
        postings: Vec<Vec<u32>>,
        child: classtrack::Tracked<Leaf>,
    }
    struct Leaf {
        data: Vec<u8>,
    }
    let tracker = ClassTracker::new();
    tracker.track_class::<Index>(TrackOptions::new().resolution_level(2));
    tracker.track_class::<Leaf>(TrackOptions::new());
    let build = |tracker: &ClassTracker| {
        tracker.construct(|| {
            let docs = classtrack::scope_named("docs", || vec!["a".repeat(1000)]);
            let postings = classtrack::scope_named("postings", || {
                let list = classtrack::scope_named("lists", || vec![0u32; 100]);
                vec![list]
            });
            // A tracked instance built inside is charged to itself, not to its parent.
            let child = tracker.construct(|| Leaf {
                data: vec![1; 5000],
            });
            Index {
                docs,
                postings,
                child,
            }
        })
    };
    let index = build(&tracker);
    let snap = tracker.create_snapshot("built");
    let t = snap.tracked_class::<Index>().unwrap();
    // docs: a vector of one String (24) + 1000 bytes; postings: one Vec (24) + lists 400.
    assert_eq!(t.total_bytes, 1024 + 424);
    assert_eq!(snap.tracked_class::<Leaf>().unwrap().total_bytes, 5000);
    let stats = tracker.stats();
    let rec = stats
        .instances
        .iter()
        .find(|i| i.class.ends_with("Index"))
        .unwrap();
    let names: Vec<(&str, u64)> = rec
        .referents
        .iter()
        .map(|r| (r.name.as_str(), r.bytes))
        .collect();
    assert_eq!(names, [("docs", 1024), ("postings", 424)]);
    let lists = &rec.referents[1].children;
    assert_eq!(lists.len(), 1);
    assert_eq!((lists[0].name.as_str(), lists[0].bytes), ("lists", 400));
    let mut out = Vec::new();
    stats.print_stats(&mut out, Some("Index"), None).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("referents at the last snapshot:"), "{text}");
    assert!(text.contains("    400 B  lists"), "{text}");
    assert_eq!(
        index.docs.len() + index.postings.len() + index.child.data.len(),
        5002
    );

    // Level 1: the scopes nested in "postings" are not broken down further.
    tracker.track_class::<Index>(TrackOptions::new().resolution_level(1));
    let shallow = build(&tracker);
    tracker.create_snapshot("shallow");
    let stats = tracker.stats();
    let rec = stats
        .instances
        .iter()
        .filter(|i| i.class.ends_with("Index"))
        .nth(1)
        .unwrap();
    assert_eq!(rec.referents[1].bytes, 424);
    assert!(rec.referents[1].children.is_empty());
    assert_eq!(rec.sizes.last().unwrap().1, 1448);

    // Dropping releases the whole tree: sizes go to zero and ids are reused.
    drop((index, shallow));
    let snap = tracker.create_snapshot("gone");
    assert_eq!(snap.tracked_class::<Index>().unwrap().active, 0);
}

#[test]
fn debug_repr_is_refreshed_at_the_first_access_after_a_snapshot() {
    #[derive(Debug)]
    struct Counter {
        n: u32,
    }
    let tracker = ClassTracker::new();
    tracker.track_class::<Counter>(TrackOptions::new());
    let mut c = tracker.construct_debug(|| Counter { n: 0 });
    let repr = |t: &ClassTracker| t.stats().instances[0].repr.clone();
    assert_eq!(repr(&tracker), "Counter { n: 0 }");
    c.n = 5;
    // No snapshot since the last refresh: nothing read yet.
    assert_eq!(repr(&tracker), "Counter { n: 0 }");
    tracker.create_snapshot("after five");
    // The first access after the snapshot records the value as the snapshot saw it.
    c.n += 1;
    assert_eq!(repr(&tracker), "Counter { n: 5 }");
    c.scope(|c| c.n = 9);
    assert_eq!(repr(&tracker), "Counter { n: 9 }");
    drop(c);
    assert_eq!(repr(&tracker), "Counter { n: 9 }");
}
