//! `Snapshot::diff` and `ClassTracker::leak_suspects`: per-class changes between snapshots,
//! and the classes that keep growing.

use std::alloc::System;
use std::hint::black_box;

use classtrack::{ClassTracker, TrackingAlloc};

#[global_allocator]
static ALLOC: TrackingAlloc<System> = TrackingAlloc::new(System);

#[test]
fn diff_counts_changes_per_class_largest_growth_first() {
    let tracker = ClassTracker::new();
    let shrinking = classtrack::scope_named("diff::shrinking", || black_box(vec![0u8; 3000]));
    let before = tracker.create_snapshot("before");
    let grown = classtrack::scope_named("diff::grown", || {
        (0..4)
            .map(|_| black_box(vec![0u8; 1000]))
            .collect::<Vec<_>>()
    });
    let churn = classtrack::scope_named("diff::churn", || {
        for _ in 0..10 {
            black_box(vec![0u8; 100]);
        }
        black_box(vec![0u8; 50])
    });
    drop(shrinking);
    let after = tracker.create_snapshot("after");
    let diff = after.diff(&before);

    assert_eq!(diff.from_description, "before");
    assert_eq!(diff.to_description, "after");
    assert!(diff.seconds() >= 0.0);

    // Four 1000-byte vectors and the outer vector of four 24-byte `Vec`s.
    let g = diff.class_named("diff::grown").unwrap();
    assert_eq!(
        (g.live_bytes_change, g.live_blocks_change, g.live_bytes),
        (4096, 5, 4096)
    );
    assert_eq!(
        (g.allocated_bytes, g.allocations, g.freed_bytes, g.frees),
        (4096, 5, 0, 0)
    );

    let c = diff.class_named("diff::churn").unwrap();
    assert_eq!((c.live_bytes_change, c.live_blocks_change), (50, 1));
    assert_eq!(
        (c.allocated_bytes, c.allocations, c.freed_bytes, c.frees),
        (1050, 11, 1000, 10)
    );

    let s = diff.class_named("diff::shrinking").unwrap();
    assert_eq!(
        (s.live_bytes_change, s.live_blocks_change, s.live_bytes),
        (-3000, -1, 0)
    );
    assert_eq!((s.allocations, s.frees, s.freed_bytes), (0, 1, 3000));

    // Sorted by growth of live bytes, largest first.
    let pos = |name: &str| diff.classes.iter().position(|c| &*c.name == name).unwrap();
    assert!(pos("diff::grown") < pos("diff::churn"));
    assert!(pos("diff::churn") < pos("diff::shrinking"));
    assert!(diff
        .classes
        .windows(2)
        .all(|w| w[0].live_bytes_change >= w[1].live_bytes_change));
    assert_eq!(
        diff.live_bytes_change,
        after.allocator.live_bytes as i64 - before.allocator.live_bytes as i64
    );

    // A class new since the earlier snapshot counts from zero.
    let mut out = Vec::new();
    diff.write_table(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("from \"before\" at "), "{text}");
    let header: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "class",
            "live",
            "bytes",
            "live",
            "blocks",
            "live",
            "now",
            "allocated",
            "allocations",
            "freed",
            "frees"
        ]
    );
    let row = |name: &str| -> Vec<&str> {
        lines
            .iter()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
            .split_whitespace()
            .collect()
    };
    // `diff::grown` had not allocated before: new.
    assert_eq!(
        row("diff::grown")[1..],
        ["(new)", "+4.0", "KiB", "+5", "4.0", "KiB", "4.0", "KiB", "5", "0", "B", "0"]
    );
    assert_eq!(
        row("diff::shrinking")[1..],
        ["-2.9", "KiB", "-1", "0", "B", "0", "B", "0", "2.9", "KiB", "1"]
    );
    assert!(lines.last().unwrap().starts_with("allocator: "), "{text}");
    drop((grown, churn));
}

#[test]
fn leak_suspects_are_classes_that_grow_in_most_intervals() {
    let tracker = ClassTracker::new();
    let mut leak = Vec::new();
    let mut spike = Vec::new();
    let mut steady = Vec::new();
    steady.push(classtrack::scope_named("suspect::steady", || {
        black_box(vec![0u8; 10_000])
    }));
    for i in 0..8 {
        // Grows in 7 of 8 intervals.
        if i != 3 {
            leak.push(classtrack::scope_named("suspect::leak", || {
                black_box(vec![0u8; 2000])
            }));
        }
        // Grows once, a lot, then stays.
        if i == 5 {
            spike.push(classtrack::scope_named("suspect::spike", || {
                black_box(vec![0u8; 1 << 20])
            }));
        }
        tracker.create_snapshot("tick");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    leak.push(classtrack::scope_named("suspect::leak", || {
        black_box(vec![0u8; 2000])
    }));
    tracker.create_snapshot("last");

    let suspects = tracker.leak_suspects(8, 3);
    let names: Vec<&str> = suspects.iter().map(|s| &*s.name).collect();
    assert!(names.contains(&"suspect::leak"), "{names:?}");
    assert!(!names.contains(&"suspect::spike"), "{names:?}");
    assert!(!names.contains(&"suspect::steady"), "{names:?}");
    assert!(!names.contains(&classtrack::OVERHEAD_CLASS), "{names:?}");
    let s = suspects
        .iter()
        .find(|s| &*s.name == "suspect::leak")
        .unwrap();
    assert_eq!((s.grew_in, s.intervals), (7, 8));
    // Eight intervals back from the last snapshot: the first snapshot held one vector (the
    // list that holds them is `<untracked>`'s).
    assert_eq!(s.growth_bytes, 7 * 2000);
    assert!(s.bytes_per_second > 0.0);
    assert_eq!(s.live_bytes, 8 * 2000);
    assert!(s.top_sites.len() <= 3);
    // Ranked by growth per second.
    assert!(suspects
        .windows(2)
        .all(|w| w[0].bytes_per_second >= w[1].bytes_per_second));

    // Fewer snapshots than intervals asked: all that are kept are looked at.
    assert_eq!(tracker.leak_suspects(1000, 0)[0].intervals, 8);
    assert!(ClassTracker::new().leak_suspects(5, 3).is_empty());
    drop((leak, spike, steady));
}

#[test]
fn a_class_absent_before_is_new_in_the_diff_and_the_summary() {
    let tracker = ClassTracker::new();
    tracker
        .set_retention(
            classtrack::Retention::new()
                .recent_snapshots(1)
                .summary_classes(1),
        )
        .unwrap();
    // Two classes before the first snapshot; the summary it becomes keeps the larger only.
    let big = classtrack::scope_named("new::big", || black_box(vec![0u8; 50_000]));
    let small = classtrack::scope_named("new::small", || black_box(vec![0u8; 100]));
    let before = tracker.create_snapshot("before");
    let fresh = classtrack::scope_named("new::fresh", || black_box(vec![0u8; 700]));
    let more = classtrack::scope_named("new::small", || black_box(vec![0u8; 10]));
    let after = tracker.create_snapshot("after");

    let diff = after.diff(&before);
    let f = diff.class_named("new::fresh").unwrap();
    assert!(f.new, "{f:?}");
    assert_eq!(f.live_bytes_change, 700);
    assert!(!diff.class_named("new::small").unwrap().new);
    let mut table = Vec::new();
    diff.write_table(&mut table).unwrap();
    let table = String::from_utf8(table).unwrap();
    assert!(table.contains("new::fresh (new)"), "{table}");
    assert!(!table.contains("new::small (new)"), "{table}");

    // In the stats, "before" is a summary that kept `new::big` only: `new::fresh`, which had
    // not allocated then, is new; `new::small`, which it left out, is unknown.
    let stats = tracker.stats();
    let summary = &stats.snapshots[0];
    assert!(!summary.full);
    assert!(summary.class_named("new::small").is_none());
    let mut text = Vec::new();
    stats.print_heap_summary(&mut text, 10).unwrap();
    let text = String::from_utf8(text).unwrap();
    let row = |name: &str| {
        text.lines()
            .rfind(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("no row for {name}: {text}"))
            .to_owned()
    };
    assert!(row("new::fresh").trim_end().ends_with("new"), "{text}");
    assert!(row("new::small").trim_end().ends_with('?'), "{text}");
    assert!(text.contains("left the class out"), "{text}");
    // The same summary from a dump.
    let file = std::env::temp_dir().join(format!("classtrack-new-{}.json", std::process::id()));
    stats.dump(&file).unwrap();
    let loaded = classtrack::Stats::load(&file).unwrap();
    std::fs::remove_file(&file).unwrap();
    assert!(summary.unseen_from.is_some());
    assert_eq!(loaded.snapshots[0].unseen_from, summary.unseen_from);
    drop((big, small, fresh, more));
}

#[test]
fn stats_without_tracked_classes_and_leaks_without_intervals_say_what_to_do() {
    let tracker = ClassTracker::new();
    let kept = classtrack::scope_named("hint::bytes", || black_box(vec![0u8; 64]));
    tracker.create_snapshot("one");
    tracker.create_snapshot("two");
    let stats = tracker.stats();
    let mut text = Vec::new();
    stats.print_stats(&mut text, None, None).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(text.contains("no tracked instance"), "{text}");
    assert!(text.contains("track_class::<T>"), "{text}");
    let mut text = Vec::new();
    stats.print_leak_suspects(&mut text, 0, 3).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.starts_with("no leak suspect: 0 intervals asked for; ask for 1 or more"),
        "{text}"
    );
    drop(kept);
}
