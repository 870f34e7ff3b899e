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
        ["class", "live", "blocks", "live", "bytes", "average", "share"]
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
    assert!(pos("<untracked>") < pos("<classtrack overhead>"));
    assert!(pos("<classtrack overhead>") < pos("total"));
    assert_eq!(row("total").last().unwrap(), "100.0%");

    // Shares are of the allocator's live total.
    let share: f64 = row("table::small")
        .last()
        .unwrap()
        .trim_end_matches('%')
        .parse()
        .unwrap();
    let expected = 100.0 * 100.0 / snap.allocator.live_bytes as f64;
    assert!((share - expected).abs() < 0.051, "{share} vs {expected}");

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
