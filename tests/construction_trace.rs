//! A traced instance's construction trace starts at the program's construction line, in debug
//! and release builds alike (`cargo test --release --test construction_trace`): classtrack's
//! own frames, closure glue and frames the optimizer inlined are not shown.

use std::alloc::System;
use std::sync::Arc;

use classtrack::{ClassTracker, Stats, TrackOptions, TrackingAlloc};

#[global_allocator]
static ALLOC: TrackingAlloc<System> = TrackingAlloc::new(System);

#[derive(Debug)]
struct Order {
    #[allow(dead_code)]
    lines: Vec<u64>,
}

/// The trace of the only instance of `class` in `stats`.
fn trace_of<'a>(stats: &'a Stats, class: &str) -> &'a [String] {
    let instance = stats
        .instances
        .iter()
        .find(|i| i.class.ends_with(class))
        .expect("the instance is kept");
    &instance.trace
}

/// Checks that the first frame of `trace` is `function`, at this file's `line`.
fn assert_starts_at(trace: &[String], function: &str, line: u32) {
    let first = trace.first().map(String::as_str).unwrap_or_default();
    let (name, at) = first.split_once(" at ").unwrap_or((first, ""));
    // Qualified from the symbol table (unoptimized builds), or as line tables name a function
    // that the optimizer inlined into its caller (release builds).
    assert!(
        name == format!("construction_trace::{function}") || name == function,
        "the first frame names the constructing function {function}:\n{}",
        trace.join("\n")
    );
    assert!(
        at.ends_with(&format!("construction_trace.rs:{line}")),
        "the first frame is at the construction line {line}:\n{}",
        trace.join("\n")
    );
}

#[test]
fn construct_trace_starts_at_the_construction_line() {
    let tracker = ClassTracker::new();
    tracker.track_class::<Order>(TrackOptions::new().trace(true));
    #[rustfmt::skip]
    let (order, line) = (tracker.construct(|| Order { lines: vec![1, 2, 3] }), line!());
    let stats = tracker.stats();
    assert_starts_at(
        trace_of(&stats, "Order"),
        "construct_trace_starts_at_the_construction_line",
        line,
    );
    drop(order);
}

#[test]
fn construct_debug_trace_starts_at_the_construction_line() {
    let tracker = ClassTracker::new();
    tracker.track_class::<Order>(TrackOptions::new().trace(true));
    #[rustfmt::skip]
    let (order, line) = (tracker.construct_debug(|| Order { lines: vec![4] }), line!());
    let stats = tracker.stats();
    assert_starts_at(
        trace_of(&stats, "Order"),
        "construct_debug_trace_starts_at_the_construction_line",
        line,
    );
    drop(order);
}

#[test]
fn track_object_trace_starts_at_the_tracking_line() {
    let tracker = ClassTracker::new();
    let shared = Arc::new(Order { lines: vec![5] });
    #[rustfmt::skip]
    let (id, line) = (tracker.track_object(&shared, TrackOptions::new().trace(true)), line!());
    id.unwrap();
    let stats = tracker.stats();
    assert_starts_at(
        trace_of(&stats, "Order"),
        "track_object_trace_starts_at_the_tracking_line",
        line,
    );
}
