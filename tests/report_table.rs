//! The per-class table: columns, order, reserved rows, totals and units.

use std::alloc::System;
use std::hint::black_box;

use classtrack::{ClassTracker, TrackingAlloc};

#[global_allocator]
static ALLOC: TrackingAlloc<System> = TrackingAlloc::new(System);

#[test]
fn table_lists_classes_largest_first_then_reserved_then_total() {
    let tracker = ClassTracker::new();
    let small = classtrack::scope_named("table::small", || black_box(vec![0u8; 100]));
    let big = classtrack::scope_named("table::big", || black_box(vec![vec![0u8; 5 * 1024]; 2]));
    let snap = tracker.create_snapshot("phase one");
    let mut out = Vec::new();
    snap.write_table(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();

    assert!(lines[0].starts_with("snapshot \"phase one\" at "), "{text}");
    let header: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "class",
            "live",
            "blocks",
            "live",
            "bytes",
            "average",
            "share",
            "peak",
            "seen",
            "allocated",
            "allocations"
        ]
    );

    let row = |name: &str| -> Vec<String> {
        let line = lines
            .iter()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no row for {name} in\n{text}"));
        line.split_whitespace().map(str::to_owned).collect()
    };
    let pos = |name: &str| lines.iter().position(|l| l.starts_with(name)).unwrap();

    // table::big: two 5 KiB vectors plus the outer vector of two `Vec` headers (48 bytes):
    // 10,288 bytes, 3,429 on average.
    assert_eq!(row("table::big")[1..5], ["3", "10.0", "KiB", "3.3"]);
    assert_eq!(row("table::small")[1..5], ["1", "100", "B", "100"]);
    assert!(
        pos("table::big") < pos("table::small"),
        "largest first:\n{text}"
    );
    assert!(pos("table::small") < pos("<untracked>"));
    assert!(pos("<untracked>") < pos("user heap"));
    assert!(pos("user heap") < pos("<classtrack overhead>"));
    assert!(pos("<classtrack overhead>") < pos("total"));
    // The program's heap is 100%; classtrack's own class and the allocator's total have no
    // share.
    assert_eq!(row("user")[1], "heap");
    assert_eq!(row("user")[7], "100.0%");
    assert_eq!(row("<classtrack")[7], "-");
    assert_eq!(row("total")[6], "-");

    // Shares are of the program's heap: the allocator's live total without classtrack's own.
    let share: f64 = row("table::small")[6]
        .trim_end_matches('%')
        .parse()
        .unwrap();
    let expected = 100.0 * 100.0 / snap.user_live_bytes() as f64;
    assert_eq!(
        snap.user_live_bytes(),
        snap.allocator.live_bytes - snap.tracker_class().live_bytes
    );
    assert!((share - expected).abs() < 0.051, "{share} vs {expected}");

    // Peak seen (one snapshot: the live bytes), then bytes and blocks ever allocated.
    assert_eq!(row("table::small")[7..], ["100", "B", "100", "B", "1"]);
    assert_eq!(row("table::big")[7..], ["10.0", "KiB", "10.0", "KiB", "3"]);

    assert!(lines.iter().any(|l| l.starts_with("process: resident ")));
    assert!(lines.iter().any(|l| l.starts_with("tracking overhead: ")));
    drop((small, big));
}

#[test]
fn snapshot_accounts_overhead_and_process_memory() {
    let tracker = ClassTracker::new();
    let keep = classtrack::scope_named("table::keep", || black_box(vec![1u64; 1000]));
    let snap = tracker.create_snapshot("o");
    let o = snap.overhead;
    assert!(o.tracker_bytes > 0);
    assert_eq!(
        o.metadata_bytes,
        snap.allocator.live_blocks * classtrack::METADATA_BYTES_PER_BLOCK as u64
    );
    assert!(o.shard_bytes > 0);
    assert_eq!(
        o.total_bytes(),
        o.tracker_bytes + o.metadata_bytes + o.shard_bytes
    );
    let p = snap.process.expect("Linux reports process memory");
    // Live bytes need not be resident (calloc'd pages are mapped lazily): only sanity here.
    assert!(p.resident_bytes > 0);
    assert!(p.virtual_bytes >= p.resident_bytes);
    let sum: u64 = snap.classes.iter().map(|c| c.live_bytes).sum();
    assert_eq!(sum, snap.allocator.live_bytes);
    drop(keep);
}

#[test]
fn peak_seen_is_kept_across_snapshots() {
    let tracker = ClassTracker::new();
    let big = classtrack::scope_named("table::peak", || black_box(vec![0u8; 64 * 1024]));
    let first = tracker.create_snapshot("big");
    drop(big);
    let small = classtrack::scope_named("table::peak", || black_box(vec![0u8; 1024]));
    let second = tracker.create_snapshot("small");
    let (a, b) = (
        first.class_named("table::peak").unwrap(),
        second.class_named("table::peak").unwrap(),
    );
    assert_eq!((a.live_bytes, a.peak_seen_bytes), (65536, 65536));
    assert_eq!((b.live_bytes, b.peak_seen_bytes), (1024, 65536));
    assert_eq!((b.allocated_bytes, b.allocations), (65536 + 1024, 2));
    // Another tracker keeps its own peaks: it has seen only the small vector.
    let other = ClassTracker::new().create_snapshot("other");
    assert_eq!(
        other.class_named("table::peak").unwrap().peak_seen_bytes,
        1024
    );
    let mut out = Vec::new();
    second.write_table(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let line = text.lines().find(|l| l.starts_with("table::peak")).unwrap();
    let cells: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cells[7..9], ["64.0", "KiB"], "{text}");
    assert!(!text.contains("no allocation was counted"), "{text}");
    assert!(second.allocator_installed);
    assert!(classtrack::allocator_installed());
    drop(small);
}
