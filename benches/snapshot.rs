//! What a snapshot costs: with 100,000 live tracked instances of one class, and with 1,000
//! classes that allocated on each of two threads (no tracked instance).
//!
//! ```text
//! cargo bench --bench snapshot
//! ```
//!
//! Every iteration is one `create_snapshot`, kept by the tracker as usual: the instances' size
//! histories fill up and are downsampled, and old snapshots are summarized, as in a long run.

use std::alloc::System;
use std::hint::black_box;
use std::sync::mpsc;

use classtrack::{ClassTracker, TrackOptions, TrackingAlloc};
use criterion::{criterion_group, criterion_main, Criterion};

#[global_allocator]
static ALLOC: TrackingAlloc<System> = TrackingAlloc::new(System);

/// A tracked instance that owns one small heap block.
struct Item(#[allow(dead_code)] Box<u64>);

const INSTANCES: u64 = 100_000;
const CLASSES: usize = 1_000;

fn instances(c: &mut Criterion) {
    let tracker = ClassTracker::new();
    tracker.track_class::<Item>(TrackOptions::new());
    let items: Vec<_> = (0..INSTANCES)
        .map(|i| tracker.construct(|| Item(Box::new(i))))
        .collect();
    let mut g = c.benchmark_group("snapshot");
    g.sample_size(20);
    g.bench_function("instances_100k", |b| {
        b.iter(|| black_box(tracker.create_snapshot("bench")))
    });
    g.finish();
    let snap = tracker.create_snapshot("check");
    assert_eq!(snap.tracked_class::<Item>().unwrap().active, INSTANCES);
    drop(items);
}

fn classes(c: &mut Criterion) {
    let names: Vec<String> = (0..CLASSES)
        .map(|i| format!("bench::class{i:04}"))
        .collect();
    // Two threads, each with a live block in every class, kept running so that their counter
    // shards are their own.
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let done_rx = std::sync::Arc::new(std::sync::Mutex::new(done_rx));
    let (ready_tx, ready_rx) = mpsc::channel();
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let names = names.clone();
            let ready = ready_tx.clone();
            let done = done_rx.clone();
            std::thread::spawn(move || {
                let blocks: Vec<Box<[u8]>> = names
                    .iter()
                    .map(|n| classtrack::scope_named(n, || vec![0u8; 64].into_boxed_slice()))
                    .collect();
                ready.send(()).unwrap();
                let _ = done.lock().unwrap().recv();
                drop(blocks);
            })
        })
        .collect();
    for _ in 0..2 {
        ready_rx.recv().unwrap();
    }
    let tracker = ClassTracker::new();
    let mut g = c.benchmark_group("snapshot");
    g.bench_function("classes_1000_threads_2", |b| {
        b.iter(|| black_box(tracker.create_snapshot("bench")))
    });
    g.finish();
    drop(done_tx);
    for t in threads {
        t.join().unwrap();
    }
}

criterion_group!(benches, instances, classes);
criterion_main!(benches);
