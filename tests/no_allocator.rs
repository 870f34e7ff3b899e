//! Without `TrackingAlloc` as the global allocator every figure is zero: the reports say so.

use classtrack::ClassTracker;

#[test]
fn reports_say_no_allocation_was_counted() {
    assert!(!classtrack::allocator_installed());
    let tracker = ClassTracker::new();
    let kept = classtrack::scope_named("none::kept", || vec![0u8; 4096]);
    let snap = tracker.create_snapshot("no allocator");
    assert!(!snap.allocator_installed);
    assert_eq!(snap.allocator.live_bytes, 0);
    let mut out = Vec::new();
    snap.write_table(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let hint =
        "no allocation was counted: install classtrack::TrackingAlloc as the #[global_allocator]";
    assert_eq!(text.lines().nth(1), Some(hint), "{text}");
    assert_eq!(text.matches(hint).count(), 1, "{text}");
    let mut out = Vec::new();
    tracker.stats().print_summary(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.lines().nth(1), Some(hint), "{text}");
    drop(kept);
}
