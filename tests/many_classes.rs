//! 100,000 distinct classes, each counted exactly, on two threads; each thread's counter shard
//! takes at most `SHARD_PAGE_LIMIT` pages, the rest of its classes counted in the shared shard.

use std::alloc::System;

use classtrack::{ClassTracker, TrackingAlloc};

#[global_allocator]
static ALLOC: TrackingAlloc<System> = TrackingAlloc::new(System);

const CLASSES: usize = 100_000;

fn size_of_class(i: usize) -> usize {
    1 + i % 97
}

#[test]
fn one_hundred_thousand_named_classes() {
    let tracker = ClassTracker::new();
    let names: Vec<String> = (0..CLASSES).map(|i| format!("many::class{i:06}")).collect();
    // Each class gets one block on this thread and one on another thread.
    let here: Vec<Box<[u8]>> = names
        .iter()
        .enumerate()
        .map(|(i, n)| classtrack::scope_named(n, || vec![0u8; size_of_class(i)].into_boxed_slice()))
        .collect();
    let names2 = names.clone();
    let there: Vec<Box<[u8]>> = std::thread::spawn(move || {
        names2
            .iter()
            .enumerate()
            .map(|(i, n)| {
                classtrack::scope_named(n, || vec![1u8; 2 * size_of_class(i)].into_boxed_slice())
            })
            .collect()
    })
    .join()
    .unwrap();
    assert!(classtrack::class_count() >= CLASSES + 2);
    // Eight more threads at once, each counting a block in every class: each shard takes at
    // most 256 pages of 4 KiB (and the tables that find them), the shared shard one page per
    // 128 classes. A page per 128 classes and per thread would be 3.2 MB a thread, 32 MB.
    let barrier = std::sync::Barrier::new(8);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                barrier.wait();
                for n in &names {
                    classtrack::scope_named(n, || drop(std::hint::black_box(vec![0u8; 8])));
                }
                barrier.wait();
            });
        }
    });
    let per_thread = 4096 * classtrack_shim::SHARD_PAGE_LIMIT as u64 + (128 << 10);
    let shared = 4096 * (CLASSES as u64 / 128 + 1) + (128 << 10);
    let shards = classtrack_shim::shim_stats().shard_bytes;
    assert!(
        shards <= 12 * per_thread + shared,
        "{shards} bytes of counter shards"
    );

    let snap = tracker.create_snapshot("many");
    for (i, n) in names.iter().enumerate() {
        let c = snap.class_named(n).unwrap_or_else(|| panic!("{n} missing"));
        assert_eq!(c.live_bytes, 3 * size_of_class(i) as u64, "{n}");
        assert_eq!(c.live_blocks, 2, "{n}");
    }
    // The counters read a window at a time (as a snapshot reads them), windows of any length
    // and start, are the counters read at once.
    let first = classtrack::class_id_named(&names[0]).0 as usize;
    let all = classtrack_shim::read_totals(first + CLASSES);
    for window in [1, 7, 127, 128, 129, 4096, 40_000] {
        let mut from = first;
        let mut buf = vec![classtrack_shim::ClassCounters::default(); window];
        while from < first + CLASSES {
            let n = window.min(first + CLASSES - from);
            classtrack_shim::read_totals_from(from, &mut buf[..n]);
            assert_eq!(&buf[..n], &all[from..from + n], "window {window} at {from}");
            from += n;
        }
    }
    // Frees on the main thread of blocks allocated on the other one credit the same classes.
    drop(there);
    drop(here);
    let snap = tracker.create_snapshot("freed");
    for n in &names {
        let c = snap.class_named(n).unwrap();
        assert_eq!((c.live_bytes, c.live_blocks, c.frees), (0, 0, 10), "{n}");
    }
}
