//! Replays shared by `tests/inner_mimalloc.rs` and `tests/inner_jemalloc.rs`: known sequences
//! of allocations, reallocs and frees through the global allocator (`TrackingAlloc` over the
//! inner allocator that each file installs), each compared with its own ground truth, class by
//! class, counter by counter.
//!
//! Every replay uses classes of its own (`{prefix}::…`), so the tests of one file can run at
//! once; none reads a process-wide figure.
#![allow(dead_code)]

use std::alloc::{alloc, alloc_zeroed, dealloc, realloc, Layout};
use std::sync::mpsc;

use classtrack::{ClassTracker, Snapshot};

const MIB: usize = 1 << 20;

/// What a class's counters must read, kept by the replay itself. Only sums, so that the
/// counts of several threads add up (a block may be allocated on one and freed on another).
#[derive(Default, Clone, Copy, Debug, PartialEq)]
pub struct Truth {
    pub allocated_bytes: u64,
    pub allocations: u64,
    pub freed_bytes: u64,
    pub frees: u64,
}

impl Truth {
    fn alloc(&mut self, size: usize) {
        self.allocated_bytes += size as u64;
        self.allocations += 1;
    }

    fn free(&mut self, size: usize) {
        self.freed_bytes += size as u64;
        self.frees += 1;
    }

    /// A realloc from `old` to `new` bytes: growth counts as allocated, shrinkage as freed,
    /// and the block stays one live block of its owner.
    fn resize(&mut self, old: usize, new: usize) {
        if new > old {
            self.allocated_bytes += (new - old) as u64;
        } else {
            self.freed_bytes += (old - new) as u64;
        }
    }

    fn add(&mut self, o: &Truth) {
        self.allocated_bytes += o.allocated_bytes;
        self.allocations += o.allocations;
        self.freed_bytes += o.freed_bytes;
        self.frees += o.frees;
    }

    pub fn live_bytes(&self) -> u64 {
        self.allocated_bytes - self.freed_bytes
    }

    pub fn live_blocks(&self) -> u64 {
        self.allocations - self.frees
    }
}

/// Asserts that class `name` in `snap` reads exactly `want`: its four counters and the live
/// bytes and blocks they give. A class that never allocated must read all zeros.
#[track_caller]
pub fn assert_class(snap: &Snapshot, name: &str, want: &Truth, when: &str) {
    let got = snap.class_named(name).map_or([0; 6], |c| {
        [
            c.allocated_bytes,
            c.allocations,
            c.freed_bytes,
            c.frees,
            c.live_bytes,
            c.live_blocks,
        ]
    });
    let want = [
        want.allocated_bytes,
        want.allocations,
        want.freed_bytes,
        want.frees,
        want.live_bytes(),
        want.live_blocks(),
    ];
    assert_eq!(
        got, want,
        "class {name} {when}: [allocated bytes, allocations, freed bytes, frees, live bytes, \
         live blocks]"
    );
}

/// A block handed between threads: its address, size, alignment and fill byte.
#[derive(Debug)]
pub struct Block {
    ptr: usize,
    size: usize,
    align: usize,
    fill: u8,
}

// SAFETY (for every use below): a `Block` is a live block of `size` bytes at `align` from the
// global allocator, owned by whoever holds the `Block`; it is freed once, with that layout.
impl Block {
    fn layout(&self) -> Layout {
        Layout::from_size_align(self.size, self.align).expect("a valid layout")
    }

    /// Allocates a block of `size` bytes at `align` in the current scope, filled with `fill`.
    fn new(size: usize, align: usize, fill: u8, zeroed: bool) -> Block {
        let layout = Layout::from_size_align(size, align).expect("a valid layout");
        // SAFETY: non-zero size.
        let p = unsafe {
            if zeroed {
                alloc_zeroed(layout)
            } else {
                alloc(layout)
            }
        };
        assert!(!p.is_null(), "out of memory for {layout:?}");
        assert_eq!(p as usize % align, 0, "{layout:?} misaligned at {p:p}");
        if zeroed {
            // SAFETY: `size` fresh bytes at `p`.
            let bytes = unsafe { std::slice::from_raw_parts(p, size) };
            assert!(bytes.iter().all(|&b| b == 0), "alloc_zeroed {layout:?}");
        }
        // SAFETY: `size` fresh bytes at `p`.
        unsafe { p.write_bytes(fill, size) };
        Block {
            ptr: p as usize,
            size,
            align,
            fill,
        }
    }

    /// Checks that the block's first and last `n` bytes still hold its fill.
    fn check(&self, n: usize) {
        let n = n.min(self.size);
        // SAFETY: a live block of `size` bytes; `n <= size`.
        let (head, tail) = unsafe {
            let p = self.ptr as *const u8;
            (
                std::slice::from_raw_parts(p, n),
                std::slice::from_raw_parts(p.add(self.size - n), n),
            )
        };
        assert!(
            head.iter().chain(tail).all(|&b| b == self.fill),
            "block of {} bytes at align {} lost its contents",
            self.size,
            self.align
        );
    }

    /// Resizes the block to `new` bytes with `realloc`, checking that its contents moved.
    fn resize(&mut self, new: usize) {
        self.check(64);
        // SAFETY: a live block with this layout; `new` is non-zero.
        let p = unsafe { realloc(self.ptr as *mut u8, self.layout(), new) };
        assert!(!p.is_null(), "out of memory resizing to {new}");
        assert_eq!(
            p as usize % self.align,
            0,
            "realloc lost align {}",
            self.align
        );
        let old = self.size;
        self.ptr = p as usize;
        self.size = new;
        if new > old {
            // SAFETY: the block now has `new` bytes.
            unsafe { p.add(old).write_bytes(self.fill, new - old) };
        }
        self.check(64.min(old));
    }

    fn free(self) {
        self.check(64);
        // SAFETY: a live block with this layout, freed once (`self` is consumed).
        unsafe { dealloc(self.ptr as *mut u8, self.layout()) };
    }
}

/// Sizes that cross the size classes, page sizes and large-block thresholds of glibc, mimalloc
/// and jemalloc.
pub const SIZES: [usize; 16] = [
    1,
    7,
    8,
    16,
    24,
    100,
    512,
    1000,
    4095,
    4096,
    16_384,
    40_000,
    300_000,
    600_000,
    2 * MIB,
    5 * MIB,
];

/// Two producer threads allocate blocks in their own classes and hand them to two consumer
/// threads, which free every other block as it arrives (in another class's scope) while the
/// producers go on, and pass the rest to this thread, which frees them after every other thread
/// has exited. Every free credits the allocating class.
pub fn cross_thread_frees(prefix: &str) {
    let tracker = ClassTracker::new();
    let elsewhere = format!("{prefix}::xthread_elsewhere");
    let classes: Vec<String> = (0..2).map(|i| format!("{prefix}::xthread_{i}")).collect();
    let (kept_tx, kept_rx) = mpsc::channel::<(usize, Block)>();
    let mut truth = [Truth::default(); 2];
    let mut consumers = Vec::new();
    let mut producers = Vec::new();
    for (i, class) in classes.iter().enumerate() {
        let (tx, rx) = mpsc::channel::<Block>();
        let (kept_tx, elsewhere) = (kept_tx.clone(), elsewhere.clone());
        consumers.push(std::thread::spawn(move || {
            let mut freed = Truth::default();
            for (n, b) in rx.into_iter().enumerate() {
                if n % 2 == 0 {
                    freed.free(b.size);
                    classtrack::scope_named(&elsewhere, || b.free());
                } else {
                    kept_tx.send((i, b)).expect("the main thread receives");
                }
            }
            freed
        }));
        let class = class.clone();
        producers.push(std::thread::spawn(move || {
            let mut made = Truth::default();
            for n in 0..1000usize {
                // Up to 600 KB, and one block in a hundred of 2 or 5 MiB.
                let size = if n % 100 == 99 {
                    SIZES[14 + n / 100 % 2]
                } else {
                    SIZES[(n * 7 + i) % 14]
                };
                let align = 8 << (n % 4);
                let b = classtrack::scope_named(&class, || Block::new(size, align, n as u8, false));
                made.alloc(size);
                tx.send(b).expect("the consumer receives");
            }
            made
        }));
    }
    drop(kept_tx);
    for (i, h) in producers.into_iter().enumerate() {
        let made = h.join().expect("producer");
        truth[i].add(&made);
    }
    for (i, h) in consumers.into_iter().enumerate() {
        let freed = h.join().expect("consumer");
        truth[i].add(&freed);
    }
    let kept: Vec<(usize, Block)> = kept_rx.into_iter().collect();
    assert_eq!(kept.len(), 1000);
    let snap = tracker.create_snapshot("after the consumers");
    for (i, class) in classes.iter().enumerate() {
        assert_class(&snap, class, &truth[i], "after frees on other threads");
    }
    assert_class(&snap, &elsewhere, &Truth::default(), "(frees only)");

    // The rest, freed on this thread, whose scope is a third class.
    classtrack::scope_named(&elsewhere, || {
        for (i, b) in kept {
            truth[i].free(b.size);
            b.free();
        }
    });
    let snap = tracker.create_snapshot("all freed");
    for (i, class) in classes.iter().enumerate() {
        assert_class(&snap, class, &truth[i], "after every free");
        assert_eq!(truth[i].live_blocks(), 0);
    }
    assert_class(&snap, &elsewhere, &Truth::default(), "(frees only)");
}

/// One block per alignment grown by `realloc` through every size class up to 24 MiB and shrunk
/// back to 1 byte, resized under another class's scope; a snapshot after every step. Then a
/// `Vec` made in the class and grown outside it.
pub fn realloc_growth_and_shrink(prefix: &str) {
    let tracker = ClassTracker::new();
    let class = format!("{prefix}::realloc");
    let resizer = format!("{prefix}::realloc_resizer");
    let steps: Vec<usize> = [
        1usize, 2, 7, 8, 9, 15, 16, 17, 100, 1000, 4096, 4097, 32_768,
    ]
    .into_iter()
    .chain([
        65_536,
        262_144,
        MIB,
        4 * MIB,
        24 * MIB,
        8 * MIB,
        MIB,
        100_000,
    ])
    .chain([5000, 4097, 4096, 300, 24, 3, 1])
    .collect();
    let mut truth = Truth::default();
    for align in [1usize, 8, 16, 64, 4096, 65_536] {
        let mut b = classtrack::scope_named(&class, || Block::new(steps[0], align, 0x5A, false));
        truth.alloc(steps[0]);
        for &new in &steps[1..] {
            let old = b.size;
            classtrack::scope_named(&resizer, || b.resize(new));
            truth.resize(old, new);
            let snap = tracker.create_snapshot("resized");
            assert_class(
                &snap,
                &class,
                &truth,
                &format!("{old} -> {new} at align {align}"),
            );
            assert!(
                snap.class_named(&resizer).is_none(),
                "a resize charged its scope"
            );
        }
        truth.free(b.size);
        b.free();
    }
    let snap = tracker.create_snapshot("blocks freed");
    assert_class(&snap, &class, &truth, "after the resized blocks were freed");

    // A vector made in the class grows by realloc outside it: its buffer stays the class's.
    let vec_class = format!("{prefix}::realloc_vec");
    let mut v: Vec<u64> = classtrack::scope_named(&vec_class, || Vec::with_capacity(1));
    for i in 0..(3 * MIB as u64) {
        v.push(i);
    }
    let snap = tracker.create_snapshot("grown");
    let c = snap.class_named(&vec_class).expect("the vector allocated");
    assert_eq!(c.live_bytes, (v.capacity() * 8) as u64);
    assert_eq!((c.live_blocks, c.allocations, c.frees), (1, 1, 0));
    assert_eq!(
        c.allocated_bytes, c.live_bytes,
        "growth counts only the bytes added"
    );
    v.truncate(1000);
    v.shrink_to_fit();
    let snap = tracker.create_snapshot("shrunk");
    let c = snap.class_named(&vec_class).expect("the vector allocated");
    assert_eq!((c.live_bytes, c.live_blocks), (8000, 1));
    assert_eq!(c.freed_bytes, c.allocated_bytes - 8000);
    assert_eq!(v.iter().copied().sum::<u64>(), 999 * 1000 / 2);
    drop(v);
    let snap = tracker.create_snapshot("dropped");
    let c = snap.class_named(&vec_class).expect("the vector allocated");
    assert_eq!((c.live_bytes, c.live_blocks, c.frees), (0, 0, 1));
}

/// Every alignment from 1 to 2 MiB, at sizes below and above it, by `alloc` and `alloc_zeroed`
/// (zeroed even over a dirtied block of the same layout), grown and shrunk: alignment, contents
/// and counts exact. Then an over-aligned type through `Box`.
pub fn over_aligned_layouts(prefix: &str) {
    let tracker = ClassTracker::new();
    let class = format!("{prefix}::aligned");
    let mut truth = Truth::default();
    let mut align = 1usize;
    while align <= 2 * MIB {
        let mut live = Vec::new();
        for (i, &size) in [1usize, 24, 4095, 4096, 65_537, 300_000].iter().enumerate() {
            let zeroed = i % 2 == 1;
            if zeroed {
                // Dirty a block of the same layout first, so that a reused block would show.
                let d = Block::new(size, align, 0xEE, false);
                d.free();
            }
            let mut b =
                classtrack::scope_named(&class, || Block::new(size, align, i as u8 + 1, zeroed));
            truth.alloc(size);
            let grown = size * 3 + 5;
            b.resize(grown);
            truth.resize(size, grown);
            let small = size.div_ceil(2);
            b.resize(small);
            truth.resize(grown, small);
            live.push(b);
        }
        let snap = tracker.create_snapshot("aligned");
        assert_class(&snap, &class, &truth, &format!("at align {align}"));
        for b in live {
            truth.free(b.size);
            b.free();
        }
        align <<= 1;
    }
    let snap = tracker.create_snapshot("aligned, freed");
    assert_class(&snap, &class, &truth, "after every aligned block was freed");
    assert_eq!(truth.live_blocks(), 0);

    #[repr(align(4096))]
    struct Page([u8; 4096]);
    let pages = classtrack::scope::<Page, _>(|| {
        (0..10)
            .map(|i| Box::new(Page([i; 4096])))
            .collect::<Vec<_>>()
    });
    for (i, p) in pages.iter().enumerate() {
        assert_eq!(&**p as *const Page as usize % 4096, 0);
        assert_eq!(p.0[4095], i as u8);
    }
    let snap = tracker.create_snapshot("pages");
    let c = snap.class_of::<Page>().expect("pages allocated");
    // Ten pages plus the vector holding ten pointers.
    assert_eq!(
        c.live_bytes,
        10 * 4096 + 10 * std::mem::size_of::<usize>() as u64
    );
    assert_eq!(c.live_blocks, 11);
    drop(pages);
}

/// Whether the thread-exit replay's key destructor ran, and whether the thread had given up
/// its counter shard by then.
static DTOR: std::sync::Mutex<Option<bool>> = std::sync::Mutex::new(None);
/// The class the key destructor allocates in.
static DTOR_CLASS: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

/// A pthread-key destructor, run by glibc after every Rust thread-local destructor and after
/// the inner allocator's own thread clean-up (its key is older): it allocates 300 and 700
/// bytes and frees the 300, as a C library's clean-up calling back into Rust would.
extern "C" fn allocates_at_exit(_: *mut libc::c_void) {
    // No panic may cross this boundary: what it saw goes to statics, checked by the test.
    let retired = !classtrack_shim::thread_owns_shard();
    let class = DTOR_CLASS.lock().map(|c| c.clone()).unwrap_or_default();
    let kept = classtrack::scope_named(&class, || {
        drop(std::hint::black_box(vec![1u8; 300]));
        vec![2u8; 700]
    });
    std::mem::forget(std::hint::black_box(kept));
    if let Ok(mut d) = DTOR.lock() {
        *d = Some(retired);
    }
}

/// Threads allocate, free some of their blocks and exit, in waves of four at once; the blocks
/// they kept are freed later by this thread. Their counts outlive them. Then a thread whose
/// exit allocates in a pthread-key destructor, after its shard was retired.
pub fn thread_exit(prefix: &str) {
    let tracker = ClassTracker::new();
    let class = format!("{prefix}::exit");
    let mut truth = Truth::default();
    let mut kept: Vec<Block> = Vec::new();
    for wave in 0..8usize {
        let handles: Vec<_> = (0..4usize)
            .map(|t| {
                let class = class.clone();
                std::thread::spawn(move || {
                    let mut t_truth = Truth::default();
                    let mut mine = Vec::new();
                    for n in 0..300usize {
                        let size = SIZES[(n + t + wave) % 13];
                        let b = classtrack::scope_named(&class, || {
                            Block::new(size, 16, n as u8, n % 3 == 0)
                        });
                        t_truth.alloc(size);
                        mine.push(b);
                    }
                    // Free two of every three, keep the rest past the thread's exit.
                    let mut keep = Vec::new();
                    for (n, b) in mine.into_iter().enumerate() {
                        if n % 3 == 0 {
                            keep.push(b);
                        } else {
                            t_truth.free(b.size);
                            b.free();
                        }
                    }
                    (keep, t_truth)
                })
            })
            .collect();
        for h in handles {
            let (keep, t) = h.join().expect("worker");
            truth.add(&t);
            kept.extend(keep);
        }
        let snap = tracker.create_snapshot("wave");
        assert_class(&snap, &class, &truth, &format!("after wave {wave}"));
    }
    for b in kept.drain(..) {
        truth.free(b.size);
        b.free();
    }
    let snap = tracker.create_snapshot("freed");
    assert_class(&snap, &class, &truth, "after the kept blocks were freed");
    assert_eq!(truth.live_blocks(), 0);

    let dtor_class = format!("{prefix}::exit_dtor");
    *DTOR_CLASS.lock().expect("not poisoned") = dtor_class.clone();
    std::thread::spawn(|| {
        let mut key: libc::pthread_key_t = 0;
        // SAFETY: `key` is a valid out-pointer; the destructor is an `extern "C"` fn that never
        // unwinds; the value is a non-null dummy so that the destructor runs.
        unsafe {
            assert_eq!(
                libc::pthread_key_create(&mut key, Some(allocates_at_exit)),
                0
            );
            assert_eq!(libc::pthread_setspecific(key, std::ptr::dangling()), 0);
        }
        drop(std::hint::black_box(vec![0u8; 10]));
        assert!(classtrack_shim::thread_owns_shard());
    })
    .join()
    .expect("the exiting thread");
    let retired = DTOR
        .lock()
        .expect("not poisoned")
        .expect("the key destructor ran");
    assert!(
        retired,
        "the destructor ran before the shard was retired: the test did not exercise exit"
    );
    let snap = tracker.create_snapshot("after the destructor");
    let want = Truth {
        allocated_bytes: 1000,
        allocations: 2,
        freed_bytes: 300,
        frees: 1,
    };
    assert_class(
        &snap,
        &dtor_class,
        &want,
        "after an allocation at thread exit",
    );
}

/// Four threads replay seeded random sequences in four classes: allocations of 1 byte to
/// 200 KB at alignments up to 4 KiB (a fifth zeroed), reallocs under another scope, frees, and
/// blocks passed to the next thread (freed or resized there). Checked against the replay's own
/// counts at the end, and never freeing more than was allocated while it runs.
pub fn randomized_replay(prefix: &str) {
    const THREADS: usize = 4;
    let tracker = std::sync::Arc::new(ClassTracker::new());
    let classes: Vec<String> = (0..4).map(|k| format!("{prefix}::replay_{k}")).collect();
    let elsewhere = format!("{prefix}::replay_elsewhere");
    let chans: Vec<_> = (0..THREADS)
        .map(|_| mpsc::channel::<(usize, Block)>())
        .collect();
    let (senders, receivers): (Vec<_>, Vec<_>) = chans.into_iter().unzip();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (tracker, done, classes) = (tracker.clone(), done.clone(), classes.clone());
        std::thread::spawn(move || {
            let mut n = 0u32;
            while !done.load(std::sync::atomic::Ordering::Acquire) || n == 0 {
                let snap = tracker.create_snapshot("during");
                for name in &classes {
                    if let Some(c) = snap.class_named(name) {
                        assert!(c.freed_bytes <= c.allocated_bytes, "{c:?}");
                        assert!(c.frees <= c.allocations, "{c:?}");
                    }
                }
                n += 1;
            }
            n
        })
    };
    let handles: Vec<_> = receivers
        .into_iter()
        .enumerate()
        .map(|(i, inbox)| {
            let to_next = senders[(i + 1) % THREADS].clone();
            let (classes, elsewhere) = (classes.clone(), elsewhere.clone());
            std::thread::spawn(move || {
                let mut rng = fastrand::Rng::with_seed(0x1EE7 + i as u64);
                let mut truth = [Truth::default(); 4];
                let mut mine: Vec<(usize, Block)> = Vec::new();
                for _ in 0..20_000 {
                    match rng.u32(0..100) {
                        0..=39 => {
                            let k = rng.usize(0..4);
                            let size = match rng.u32(0..100) {
                                0..=59 => rng.usize(1..=64),
                                60..=94 => rng.usize(65..=4096),
                                _ => rng.usize(4097..=200_000),
                            };
                            let align = 1 << rng.usize(0..13);
                            let zeroed = rng.u32(0..5) == 0;
                            let b = classtrack::scope_named(&classes[k], || {
                                Block::new(size, align, rng.u8(..), zeroed)
                            });
                            truth[k].alloc(size);
                            mine.push((k, b));
                        }
                        40..=59 if !mine.is_empty() => {
                            let n = rng.usize(0..mine.len());
                            let (k, b) = &mut mine[n];
                            let new = rng.usize(1..=100_000);
                            truth[*k].resize(b.size, new);
                            if rng.bool() {
                                classtrack::scope_named(&elsewhere, || b.resize(new));
                            } else {
                                b.resize(new);
                            }
                        }
                        60..=79 if !mine.is_empty() => {
                            let (k, b) = mine.swap_remove(rng.usize(0..mine.len()));
                            truth[k].free(b.size);
                            b.free();
                        }
                        80..=89 if !mine.is_empty() => {
                            let (k, b) = mine.swap_remove(rng.usize(0..mine.len()));
                            // Passed on: counted as still live here, freed or kept there.
                            to_next.send((k, b)).expect("the next thread is alive");
                        }
                        _ => mine.extend(inbox.try_iter()),
                    }
                }
                (mine, truth, inbox)
            })
        })
        .collect();
    drop(senders);
    let mut live: Vec<(usize, Block)> = Vec::new();
    let mut truth = [Truth::default(); 4];
    let mut inboxes = Vec::new();
    for h in handles {
        let (mine, t, inbox) = h.join().expect("replay thread");
        live.extend(mine);
        inboxes.push(inbox);
        for k in 0..4 {
            truth[k].add(&t[k]);
        }
    }
    for inbox in &inboxes {
        live.extend(inbox.try_iter());
    }
    done.store(true, std::sync::atomic::Ordering::Release);
    assert!(watcher.join().expect("watcher") > 0);

    // A block passed on and freed by another thread was counted as freed there; the live
    // figures per class are what is still held.
    let snap = tracker.create_snapshot("after the replay");
    for (k, name) in classes.iter().enumerate() {
        let held = live.iter().filter(|(c, _)| *c == k);
        assert_eq!(
            (truth[k].live_bytes(), truth[k].live_blocks()),
            (
                held.clone().map(|(_, b)| b.size as u64).sum(),
                held.count() as u64
            ),
            "{name}: the replay's own counts disagree with the blocks it holds"
        );
        assert_class(&snap, name, &truth[k], "after the replay");
    }
    assert!(
        snap.class_named(&elsewhere).is_none(),
        "a resize charged its scope"
    );
    for (k, b) in live {
        truth[k].free(b.size);
        b.free();
    }
    let snap = tracker.create_snapshot("after the replay, freed");
    for (k, name) in classes.iter().enumerate() {
        assert_class(&snap, name, &truth[k], "after every block was freed");
        assert_eq!(truth[k].live_blocks(), 0);
    }
}
