//! A small multi-threaded workload with `TrackingAlloc` as the global allocator: threads
//! allocate, grow and shrink blocks, and free them on other threads; the per-class counters
//! are exact. Small enough to run under Miri (`.ci/miri`), which checks the allocator's
//! unsafe code (trailers, shards, thread-locals, the retiring of exiting threads' shards) for
//! undefined behaviour and data races.

use std::alloc::System;
use std::sync::mpsc;

use classtrack_shim::{read_totals, replace_tag, ClassId, Tag, TrackingAlloc};

#[global_allocator]
static ALLOC: TrackingAlloc<System> = TrackingAlloc::new(System);

const THREADS: u32 = if cfg!(miri) { 3 } else { 8 };
const BLOCKS: usize = if cfg!(miri) { 40 } else { 20_000 };
/// Classes of this test, away from any other's.
const FIRST: u32 = 1000;

/// Block sizes: small, odd, and one past a page.
fn size_of_block(i: usize) -> usize {
    [1, 7, 24, 100, 4097][i % 5]
}

#[test]
fn threads_allocating_resizing_and_freeing_across_threads_count_exactly() {
    let (to_freer, freer_rx) = mpsc::channel::<Vec<Box<[u8]>>>();
    // Frees what the other threads send it, under no class of the test: a free credits the
    // block's class, whatever thread frees it.
    let freer = std::thread::spawn(move || {
        let mut n = 0;
        for batch in freer_rx {
            n += batch.len();
            drop(batch);
        }
        n
    });
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let to_freer = to_freer.clone();
            std::thread::spawn(move || {
                let prev = replace_tag(Tag::class(ClassId(FIRST + t)));
                let mut kept: Vec<Box<[u8]>> = Vec::new();
                let mut sent = Vec::new();
                let mut grown = Vec::new();
                for i in 0..BLOCKS {
                    let block = vec![t as u8; size_of_block(i)].into_boxed_slice();
                    if i % 3 == 0 {
                        sent.push(block);
                    } else {
                        kept.push(block);
                    }
                    // Grown by realloc, then shrunk to fit.
                    let mut v: Vec<u8> = Vec::with_capacity(1);
                    v.extend_from_slice(&[1u8; 9][..1 + i % 9]);
                    v.shrink_to_fit();
                    grown.push(v);
                }
                // Moved to the freeing thread: the vector holding them too.
                to_freer.send(sent).unwrap();
                // What stays live in the class: the kept blocks and the grown vectors, and the
                // vectors holding them.
                let live = kept.iter().map(|b| b.len()).sum::<usize>()
                    + grown.iter().map(|v| v.capacity()).sum::<usize>()
                    + kept.capacity() * size_of::<Box<[u8]>>()
                    + grown.capacity() * size_of::<Vec<u8>>();
                let blocks = kept.len() + grown.len() + 2;
                replace_tag(prev);
                (kept, grown, live as u64, blocks as u64)
            })
        })
        .collect();
    drop(to_freer);
    let mut keep = Vec::new();
    let mut expected = Vec::new();
    for w in workers {
        let (kept, grown, live, blocks) = w.join().unwrap();
        expected.push((live, blocks));
        keep.push((kept, grown));
    }
    let freed = freer.join().unwrap();
    assert_eq!(freed, THREADS as usize * BLOCKS.div_ceil(3));
    let totals = read_totals((FIRST + THREADS) as usize);
    for t in 0..THREADS {
        let c = &totals[(FIRST + t) as usize];
        assert_eq!(
            (c.live_bytes(), c.live_blocks()),
            expected[t as usize],
            "class {t}"
        );
    }
    drop(keep);
    let totals = read_totals((FIRST + THREADS) as usize);
    for t in 0..THREADS {
        let c = &totals[(FIRST + t) as usize];
        assert_eq!((c.live_bytes(), c.live_blocks()), (0, 0), "class {t}");
        assert!(c.allocations > BLOCKS as u64);
    }
}

/// A measurement: two threads work for it, blocks are freed on a third that does not; the
/// figures are exact, and the slot comes back once its last block is freed.
#[test]
fn a_measurement_counts_its_threads_blocks_wherever_they_are_freed() {
    use classtrack_shim::{begin_measurement, end_measurement, set_measurement};
    let id = begin_measurement().expect("a free slot");
    let class = Tag::class(ClassId(FIRST + 100));
    let made: Vec<Vec<u8>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|t| {
                s.spawn(move || {
                    let prev = set_measurement(id);
                    let prev_tag = replace_tag(class);
                    let mut v: Vec<u8> = Vec::with_capacity(8);
                    v.extend_from_slice(&[t; 40]); // grown by realloc within the measurement
                    let dropped = vec![0u8; 100];
                    drop(dropped);
                    replace_tag(prev_tag);
                    set_measurement(prev);
                    v
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let caps: u64 = made.iter().map(|v| v.capacity() as u64).sum();
    // Freed on a thread that is not measured: counted in the measurement all the same.
    let freer = std::thread::spawn(move || drop(made));
    freer.join().unwrap();
    let totals = end_measurement(id);
    assert_eq!(totals.total.allocations, 4);
    assert_eq!(totals.total.frees, 4);
    assert_eq!(totals.total.allocated_bytes, caps + 200);
    assert_eq!(totals.total.freed_bytes, caps + 200);
    assert!(totals.peak_bytes >= 100 && totals.peak_bytes <= caps + 200);
    assert_eq!(totals.classes.len(), 1);
    assert_eq!(totals.classes[0].0, ClassId(FIRST + 100));
    // Every block is freed: the slot is free again (the first free one: no other test here
    // measures).
    let again = begin_measurement().expect("a free slot");
    assert_eq!(again, id);
    let _ = end_measurement(again);
}
