//! Many classes across snapshots: the recent snapshots but the latest keep their largest and
//! changed classes (`Retention::snapshot_classes`), idle classes are left out
//! (`Retention::idle_after`), and every total stays exact in the sums of what was left out.

use std::alloc::System;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use classtrack::{ClassTracker, Retention, Snapshot, TrackingAlloc};

#[global_allocator]
static ALLOC: TrackingAlloc<System> = TrackingAlloc::new(System);

/// Tests here read process-wide counters: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The live bytes of the user classes `snap` kept, plus those it left out.
fn user_bytes(snap: &Snapshot) -> u64 {
    snap.user_classes().map(|c| c.live_bytes).sum::<u64>() + snap.omitted.live_bytes
}

#[test]
fn recent_snapshots_keep_the_largest_and_the_changed_classes_and_exact_sums() {
    let _s = serial();
    const CLASSES: usize = 3000;
    const KEEP: usize = 100;
    let tracker = ClassTracker::new();
    tracker
        .set_retention(Retention::new().snapshot_classes(KEEP))
        .unwrap();
    let names: Vec<String> = (0..CLASSES).map(|i| format!("keep::class{i:05}")).collect();
    // Class i holds 10 + i bytes: the largest are the last ones.
    let mut kept: Vec<Vec<u8>> = names
        .iter()
        .enumerate()
        .map(|(i, n)| classtrack::scope_named(n, || vec![0u8; 10 + i]))
        .collect();
    let a = tracker.create_snapshot("a");
    // Ten small classes grow between a and b, five others between b and c.
    for n in &names[0..10] {
        classtrack::scope_named(n, || kept.push(vec![1u8; 7]));
    }
    let b = tracker.create_snapshot("b");
    for n in &names[20..25] {
        classtrack::scope_named(n, || kept.push(vec![2u8; 3]));
    }
    let c = tracker.create_snapshot("c");
    assert!(
        a.is_full() && b.is_full() && c.is_full(),
        "the snapshots returned are whole"
    );

    let recent = tracker.snapshots();
    assert_eq!(recent.len(), 3);
    let (ta, tb, tc) = (&recent[0], &recent[1], &recent[2]);
    assert!(Arc::ptr_eq(tc, &c), "the latest is kept whole");
    for (trimmed, whole) in [(ta, &a), (tb, &b)] {
        assert!(!trimmed.is_full(), "{}", trimmed.description);
        // Exact: what was kept and what was left out add up to the whole snapshot.
        assert_eq!(user_bytes(trimmed), user_bytes(whole));
        assert_eq!(
            trimmed.classes.len() as u64 + trimmed.omitted.classes,
            whole.classes.len() as u64
        );
        // Every sum of the classes left out, against the whole snapshot's classes.
        let mut left_out = (0, 0, 0, 0, 0, 0);
        for c in whole.user_classes() {
            if trimmed.class_named(&c.name).is_none() {
                left_out.0 += c.live_bytes;
                left_out.1 += c.live_blocks;
                left_out.2 += c.allocated_bytes;
                left_out.3 += c.allocations;
                left_out.4 += c.freed_bytes;
                left_out.5 += c.frees;
            }
        }
        let o = &trimmed.omitted;
        assert_eq!(
            (
                o.live_bytes,
                o.live_blocks,
                o.allocated_bytes,
                o.allocations,
                o.freed_bytes,
                o.frees
            ),
            left_out,
            "{}",
            trimmed.description
        );
        assert_eq!(trimmed.allocator, whole.allocator);
        // The largest classes are kept, with their figures.
        for n in &names[CLASSES - KEEP..] {
            assert_eq!(trimmed.class_named(n), whole.class_named(n), "{n}");
        }
        assert!(trimmed.untracked().id == whole.untracked().id);
        assert!(trimmed.tracker_class().id == whole.tracker_class().id);
    }
    // a keeps the classes that changed into b; b those that changed from a and into c.
    for n in &names[0..10] {
        assert!(ta.class_named(n).is_some(), "a lost {n}");
        assert!(tb.class_named(n).is_some(), "b lost {n}");
    }
    for n in &names[20..25] {
        assert!(tb.class_named(n).is_some(), "b lost {n}");
    }
    // Unchanged small classes are left out.
    assert!(ta.class_named(&names[15]).is_none());
    assert!(tb.class_named(&names[15]).is_none());
    assert!(
        ta.classes.len() <= 2 + KEEP + 10 + 10,
        "{}",
        ta.classes.len()
    );

    // A diff between neighbours has every class that changed, with its exact change; the
    // unchanged ones the earlier one left out are counted as not compared.
    let d = tb.diff(ta);
    for n in &names[0..10] {
        let c = d
            .class_named(n)
            .unwrap_or_else(|| panic!("{n} not in the diff"));
        assert_eq!(
            (c.live_bytes_change, c.allocations, c.new),
            (7, 1, false),
            "{n}"
        );
    }
    let user_changes = d
        .classes
        .iter()
        .filter(|c| c.name.starts_with("keep::") && c.live_bytes_change != 0);
    assert_eq!(user_changes.count(), 10);
    assert!(d.unknown > 0);
    let mut table = Vec::new();
    d.write_table(&mut table).unwrap();
    let table = String::from_utf8(table).unwrap();
    assert!(table.contains("classes not compared"), "{table}");

    // A class that grows in every interval is a leak suspect with its exact growth, though
    // the trimmed snapshots keep it only because it changed.
    let grower = "keep::grower";
    let mut grown = Vec::with_capacity(6);
    for i in 0..6 {
        classtrack::scope_named(grower, || grown.push(vec![0u8; 100]));
        // Another small class changes each time, to be kept too.
        classtrack::scope_named(&names[100 + i], || kept.push(vec![0u8; 1]));
        tracker.create_snapshot("tick");
    }
    let suspects = tracker.leak_suspects(5, 0);
    let s = suspects
        .iter()
        .find(|s| &*s.name == grower)
        .expect("the grower is a suspect");
    assert_eq!((s.grew_in, s.growth_bytes), (5, 500));
    // No unchanged class is taken for growth from zero.
    assert!(
        suspects.iter().all(|s| !s.name.starts_with("keep::class")),
        "{suspects:?}"
    );
    // Summaries of trimmed snapshots stay exact too.
    tracker
        .set_retention(Retention::new().snapshot_classes(KEEP).recent_snapshots(1))
        .unwrap();
    let stats = tracker.stats();
    for s in &stats.snapshots {
        let kept: u64 = s.user_classes().map(|c| c.live_bytes).sum();
        assert_eq!(
            kept + s.omitted.live_bytes + s.classes[0].live_bytes + s.classes[1].live_bytes,
            s.allocator.live_bytes,
            "{}",
            s.description
        );
    }
    drop((kept, grown));
}

#[test]
fn a_tracker_keeps_one_whole_snapshot_however_many_it_takes() {
    let _s = serial();
    const CLASSES: usize = 20_000;
    const KEEP: usize = 100;
    let tracker = ClassTracker::new();
    tracker
        .set_retention(Retention::new().snapshot_classes(KEEP))
        .unwrap();
    let names: Vec<String> = (0..CLASSES).map(|i| format!("many::snap{i:05}")).collect();
    let kept: Vec<Vec<u8>> = names
        .iter()
        .map(|n| classtrack::scope_named(n, || vec![0u8; 16]))
        .collect();
    let overhead = || {
        let s = tracker.create_snapshot("reading");
        s.tracker_class().live_bytes
    };
    // Two snapshots: one whole (the latest) and one trimmed.
    let _ = overhead();
    let two = overhead();
    for _ in 0..40 {
        drop(tracker.create_snapshot("more"));
    }
    let many = overhead();
    let grown = many.saturating_sub(two);
    // 40 more snapshots, each trimmed to the reserved and the largest classes (nothing
    // changed): a few kilobytes each, where whole they would be 20,000 classes × 80 bytes.
    let bound = 40 * ((KEEP as u64 + 2) * 128 + 4096);
    assert!(
        grown <= bound,
        "{grown} bytes more after 40 snapshots of {CLASSES} classes (bound {bound})"
    );
    drop(kept);
}

#[test]
fn idle_classes_are_left_out_and_counted_and_come_back_when_used() {
    let _s = serial();
    let tracker = ClassTracker::new();
    let idle = Duration::from_millis(50);
    tracker
        .set_retention(Retention::new().idle_after(Some(idle)))
        .unwrap();
    // Forty connections come and go; two stay.
    let names: Vec<String> = (0..40).map(|i| format!("idle::conn{i:02}")).collect();
    for n in &names {
        classtrack::scope_named(n, || drop(black_box(vec![0u8; 64])));
    }
    let live: Vec<Vec<u8>> = ["idle::open-a", "idle::open-b"]
        .iter()
        .map(|n| classtrack::scope_named(n, || vec![0u8; 32]))
        .collect();
    let first = tracker.create_snapshot("first");
    assert!(first.class_named("idle::conn00").is_some(), "seen active");
    std::thread::sleep(idle + Duration::from_millis(20));
    let later = tracker.create_snapshot("later");
    for n in &names {
        assert!(later.class_named(n).is_none(), "{n} is idle");
    }
    assert!(
        later.class_named("idle::open-a").is_some(),
        "live classes are never idle"
    );
    assert!(later.omitted.idle >= 40, "{:?}", later.omitted);
    assert!(!later.is_full());
    // Their totals are in the sum: 40 blocks of 64 bytes, each allocated and freed.
    assert!(later.omitted.allocations >= 40);
    assert!(later.omitted.allocated_bytes >= 40 * 64);
    assert_eq!(later.omitted.live_bytes, 0);
    // The table says so.
    let mut table = Vec::new();
    later.write_table(&mut table).unwrap();
    let table = String::from_utf8(table).unwrap();
    assert!(table.contains("idle"), "{table}");
    // Used again, a class is listed again, with its totals.
    classtrack::scope_named(&names[7], || drop(black_box(vec![0u8; 10])));
    let again = tracker.create_snapshot("again");
    let c = again.class_named(&names[7]).expect("active again");
    assert_eq!((c.allocations, c.allocated_bytes), (2, 74));
    assert!(again.class_named(&names[8]).is_none());
    drop(live);
}

#[test]
fn the_table_of_a_snapshot_of_many_classes_shows_the_largest_and_one_row_for_the_rest() {
    let _s = serial();
    let tracker = ClassTracker::new();
    let kept: Vec<Vec<u8>> = (0..500)
        .map(|i| classtrack::scope_named(&format!("table::c{i:03}"), || vec![0u8; 1 + i]))
        .collect();
    let snap = tracker.create_snapshot("table");
    let mut out = Vec::new();
    snap.write_table(&mut out).unwrap();
    let out = String::from_utf8(out).unwrap();
    let rows = out.lines().filter(|l| l.starts_with("table::c")).count();
    assert_eq!(rows, 100, "{out}");
    assert!(out.contains("table::c499"), "{out}");
    assert!(!out.contains("table::c000 "), "{out}");
    let users = snap.user_classes().count();
    let more = out
        .lines()
        .find(|l| l.contains("more classes"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        more.starts_with(&format!("{} more classes", users - 100)),
        "{more}"
    );
    drop(kept);
}

#[test]
fn the_peak_keeps_the_largest_classes_and_sums_the_rest() {
    let _s = serial();
    let tracker = ClassTracker::new();
    tracker
        .set_retention(Retention::new().snapshot_classes(10))
        .unwrap();
    let kept: Vec<Vec<u8>> = (0..200)
        .map(|i| classtrack::scope_named(&format!("peak::c{i:03}"), || vec![0u8; 1000 + i]))
        .collect();
    let peak = tracker.peak().expect("installed");
    assert!(peak.classes.len() <= 12, "{}", peak.classes.len());
    assert!(peak.class_named("peak::c199").is_some());
    assert!(peak.omitted.classes >= 190 - 12);
    let all: u64 = (0..200).map(|i| 1000 + i).sum();
    assert!(user_bytes(&peak) >= all, "{} < {all}", user_bytes(&peak));
    drop(kept);
}
