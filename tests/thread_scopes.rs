//! Carrying a scope to other threads: `current_scope()` entered in `std::thread::scope`
//! threads and rayon jobs, and entering a class by id.

use std::alloc::System;
use std::hint::black_box;

use classtrack::{ClassId, ClassTracker, TrackingAlloc};
use rayon::prelude::*;

#[global_allocator]
static ALLOC: TrackingAlloc<System> = TrackingAlloc::new(System);

fn allocated(tracker: &ClassTracker, name: &str) -> (u64, u64) {
    tracker
        .create_snapshot(name)
        .class_named(name)
        .map_or((0, 0), |c| (c.allocated_bytes, c.allocations))
}

#[test]
fn current_scope_travels_to_scoped_threads() {
    let tracker = ClassTracker::new();
    let before = allocated(&tracker, "threads::indexer");
    // Taken inside the scope, entered on each thread (the spawning itself is not charged).
    let s = classtrack::scope_named("threads::indexer", classtrack::current_scope);
    let parts: Vec<Vec<u8>> = std::thread::scope(|t| {
        let handles: Vec<_> = (1..=4)
            .map(|i| t.spawn(move || s.enter(|| black_box(vec![0u8; 1000 * i]))))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let after = allocated(&tracker, "threads::indexer");
    assert_eq!(
        (after.0 - before.0, after.1 - before.1),
        ((1..=4).map(|i| 1000 * i).sum::<u64>(), 4)
    );
    drop(parts);
}

#[test]
fn current_scope_travels_to_rayon_jobs() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    let tracker = ClassTracker::new();
    let before = allocated(&tracker, "threads::rayon");
    let input: Vec<usize> = (1..=200).collect();
    let s = classtrack::scope_named("threads::rayon", classtrack::current_scope);
    let out: Vec<Vec<u8>> = pool.install(|| {
        input
            .par_iter()
            .map(|&n| s.enter(|| black_box(vec![1u8; n])))
            .collect()
    });
    let after = allocated(&tracker, "threads::rayon");
    assert_eq!(
        (after.0 - before.0, after.1 - before.1),
        ((1..=200).sum::<u64>(), 200)
    );
    assert_eq!(classtrack::current_class(), ClassId::UNTRACKED);
    drop(out);
}

#[test]
fn scope_id_and_enter_id_charge_the_class() {
    let tracker = ClassTracker::new();
    let id = classtrack::class_id_named("threads::by_id");
    let before = allocated(&tracker, "threads::by_id");
    let a = classtrack::scope_id(id, || black_box(vec![0u8; 40]));
    let b = {
        let _g = classtrack::enter_id(id);
        black_box(vec![0u8; 2])
    };
    let after = allocated(&tracker, "threads::by_id");
    assert_eq!((after.0 - before.0, after.1 - before.1), (42, 2));
    drop((a, b));
}
