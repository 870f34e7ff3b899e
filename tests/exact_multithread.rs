//! Exact per-class accounting under a randomized multi-thread replay.
//!
//! Four threads allocate, grow, shrink and free blocks in four classes, pass blocks to each
//! other (so frees and reallocs happen on threads other than the allocating one), while a fifth
//! thread takes snapshots. The test keeps its own ground truth and compares every counter.

use std::alloc::{alloc, dealloc, realloc, Layout, System};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use classtrack::{ClassTracker, TrackingAlloc};
use crossbeam_channel::{unbounded, Receiver, Sender};

#[global_allocator]
static ALLOC: TrackingAlloc<System> = TrackingAlloc::new(System);

const CLASSES: [&str; 4] = ["mt::alpha", "mt::beta", "mt::gamma", "mt::delta"];
const THREADS: usize = 4;
const OPS: usize = 40_000;

struct Block {
    ptr: usize,
    size: usize,
    align: usize,
    class: usize,
    fill: u8,
}

#[derive(Default, Clone, Copy, Debug, PartialEq)]
struct Truth {
    allocated_bytes: [u64; 4],
    allocations: [u64; 4],
    freed_bytes: [u64; 4],
    frees: [u64; 4],
}

impl Truth {
    fn add(&mut self, o: &Truth) {
        for k in 0..4 {
            self.allocated_bytes[k] += o.allocated_bytes[k];
            self.allocations[k] += o.allocations[k];
            self.freed_bytes[k] += o.freed_bytes[k];
            self.frees[k] += o.frees[k];
        }
    }
}

fn random_size(rng: &mut fastrand::Rng) -> usize {
    match rng.u32(0..100) {
        0..=59 => rng.usize(1..=64),
        60..=94 => rng.usize(65..=4096),
        _ => rng.usize(4097..=200_000),
    }
}

fn check_fill(b: &Block) {
    // SAFETY: `b.ptr` is a live block of `b.size` bytes that we filled with `b.fill`.
    unsafe {
        let p = b.ptr as *const u8;
        assert_eq!(*p, b.fill);
        assert_eq!(*p.add(b.size - 1), b.fill);
    }
}

fn free_block(b: Block, t: &mut Truth) {
    check_fill(&b);
    // SAFETY: allocated with exactly this layout, freed once.
    unsafe {
        dealloc(
            b.ptr as *mut u8,
            Layout::from_size_align(b.size, b.align).unwrap(),
        )
    };
    t.freed_bytes[b.class] += b.size as u64;
    t.frees[b.class] += 1;
}

fn worker(seed: u64, to_next: Sender<Block>, inbox: Receiver<Block>) -> (Vec<Block>, Truth) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut t = Truth::default();
    let mut mine: Vec<Block> = Vec::new();
    for _ in 0..OPS {
        match rng.u32(0..100) {
            0..=39 => {
                let class = rng.usize(0..4);
                let size = random_size(&mut rng);
                let align = 1 << rng.usize(0..13);
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: non-zero size.
                let p = classtrack::scope_named(CLASSES[class], || unsafe { alloc(layout) });
                assert!(!p.is_null());
                assert_eq!(p as usize % align, 0);
                let fill = rng.u8(..);
                // SAFETY: fresh block of `size` bytes.
                unsafe { p.write_bytes(fill, size) };
                t.allocated_bytes[class] += size as u64;
                t.allocations[class] += 1;
                mine.push(Block {
                    ptr: p as usize,
                    size,
                    align,
                    class,
                    fill,
                });
            }
            40..=59 if !mine.is_empty() => {
                let i = rng.usize(0..mine.len());
                let b = &mut mine[i];
                check_fill(b);
                let new_size = random_size(&mut rng);
                let layout = Layout::from_size_align(b.size, b.align).unwrap();
                // Resize under another scope (or none): the block must keep its owner.
                let p = match rng.u32(0..3) {
                    0 => classtrack::scope_named("mt::elsewhere", || unsafe {
                        // SAFETY: live block with this layout; non-zero new size.
                        realloc(b.ptr as *mut u8, layout, new_size)
                    }),
                    // SAFETY: as above.
                    _ => unsafe { realloc(b.ptr as *mut u8, layout, new_size) },
                };
                assert!(!p.is_null());
                assert_eq!(p as usize % b.align, 0);
                if new_size > b.size {
                    t.allocated_bytes[b.class] += (new_size - b.size) as u64;
                    // SAFETY: the block now has `new_size` bytes.
                    unsafe { p.add(b.size).write_bytes(b.fill, new_size - b.size) };
                } else {
                    t.freed_bytes[b.class] += (b.size - new_size) as u64;
                }
                b.ptr = p as usize;
                b.size = new_size;
            }
            60..=79 if !mine.is_empty() => {
                let i = rng.usize(0..mine.len());
                free_block(mine.swap_remove(i), &mut t);
            }
            80..=89 if !mine.is_empty() => {
                let i = rng.usize(0..mine.len());
                to_next.send(mine.swap_remove(i)).unwrap();
            }
            _ => mine.extend(inbox.try_iter()),
        }
    }
    (mine, t)
}

#[test]
fn randomized_multithread_replay_is_exact() {
    let tracker = Arc::new(ClassTracker::new());
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (tracker, done) = (tracker.clone(), done.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !done.load(Ordering::Acquire) {
                let snap = tracker.create_snapshot("during");
                for c in snap.classes.iter() {
                    assert!(c.freed_bytes <= c.allocated_bytes, "{c:?}");
                    assert!(c.frees <= c.allocations, "{c:?}");
                    assert!(c.live_bytes < 1 << 40, "{c:?}");
                }
                n += 1;
            }
            n
        })
    };

    let chans: Vec<(Sender<Block>, Receiver<Block>)> = (0..THREADS).map(|_| unbounded()).collect();
    let handles: Vec<_> = (0..THREADS)
        .map(|i| {
            let to_next = chans[(i + 1) % THREADS].0.clone();
            let inbox = chans[i].1.clone();
            std::thread::spawn(move || worker(0xC1A55 + i as u64, to_next, inbox))
        })
        .collect();
    let mut live: Vec<Block> = Vec::new();
    let mut truth = Truth::default();
    for h in handles {
        let (blocks, t) = h.join().unwrap();
        live.extend(blocks);
        truth.add(&t);
    }
    for (_, rx) in &chans {
        live.extend(rx.try_iter());
    }
    done.store(true, Ordering::Release);
    let snapshots_during = watcher.join().unwrap();
    assert!(snapshots_during > 0);

    let snap = tracker.create_snapshot("after");
    for (k, name) in CLASSES.iter().enumerate() {
        let c = snap.class_named(name).expect("class allocated");
        let blocks = live.iter().filter(|b| b.class == k);
        let live_bytes: u64 = blocks.clone().map(|b| b.size as u64).sum();
        assert_eq!(c.live_bytes, live_bytes, "{name}");
        assert_eq!(c.live_blocks, blocks.count() as u64, "{name}");
        assert_eq!(c.allocated_bytes, truth.allocated_bytes[k], "{name}");
        assert_eq!(c.allocations, truth.allocations[k], "{name}");
        assert_eq!(c.freed_bytes, truth.freed_bytes[k], "{name}");
        assert_eq!(c.frees, truth.frees[k], "{name}");
    }
    // Reallocs under another scope charged nothing to it.
    assert!(snap.class_named("mt::elsewhere").is_none());

    let mut t = Truth::default();
    for b in live.drain(..) {
        free_block(b, &mut t);
    }
    let end = tracker.create_snapshot("freed");
    for name in CLASSES {
        let c = end.class_named(name).unwrap();
        assert_eq!((c.live_bytes, c.live_blocks), (0, 0), "{name}");
    }
}
