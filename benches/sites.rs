//! What recording allocation sites costs: classtrack's trace-every-allocation mode against
//! dhat-rs's heap profiler (which records every allocation too), on the same workloads, on one
//! thread and on two, side by side in one run. Default sampling against `System` is in
//! `benches/overhead.rs`.
//!
//! ```text
//! cargo bench --bench sites
//! python3 benches/ratios.py sites
//! # the frame-pointer walker where it applies (criterion's results still go to
//! # target/criterion):
//! RUSTFLAGS="-C force-frame-pointers=yes" cargo bench --bench sites --target-dir target/fp
//! python3 benches/ratios.py sites
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::ptr::NonNull;

use allocator_api2::alloc::{AllocError, Allocator};
use allocator_api2::vec::Vec as AVec;
use classtrack::TrackingAlloc;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use hashbrown::{DefaultHashBuilder, HashMap};

static TRACKED: TrackingAlloc<System> = TrackingAlloc::new(System);
static DHAT: dhat::Alloc = dhat::Alloc;

/// A `GlobalAlloc` seen as an `Allocator` (as in `benches/overhead.rs`).
#[derive(Clone, Copy)]
struct Via(&'static (dyn GlobalAlloc + Sync));

// SAFETY: blocks come from and go back to the same `GlobalAlloc` with their layouts; zero-size
// requests get a dangling, well-aligned pointer and are never passed to the allocator.
unsafe impl Allocator for Via {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            let p = NonNull::new(layout.align() as *mut u8).ok_or(AllocError)?;
            return Ok(NonNull::slice_from_raw_parts(p, 0));
        }
        // SAFETY: non-zero size.
        let p = unsafe { self.0.alloc(layout) };
        NonNull::new(p)
            .map(|p| NonNull::slice_from_raw_parts(p, layout.size()))
            .ok_or(AllocError)
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if layout.size() != 0 {
            // SAFETY: allocated by `allocate` with this layout.
            unsafe { self.0.dealloc(ptr.as_ptr(), layout) }
        }
    }
}

/// 1,000 alloc/free pairs of 16 to 256 bytes.
fn small_pairs(a: Via) -> usize {
    let mut sum = 0;
    for i in 0..1000usize {
        let layout = Layout::from_size_align(16 << (i % 5), 8).unwrap();
        let p = a.allocate(layout).unwrap();
        // SAFETY: just allocated with `layout`.
        unsafe {
            p.cast::<u8>().as_ptr().write(i as u8);
            sum += *p.cast::<u8>().as_ptr() as usize;
            a.deallocate(p.cast(), layout);
        }
    }
    sum
}

/// A map of 1,000 string keys to small vectors, built and dropped.
fn hashmap_build(a: Via) -> usize {
    let mut map: HashMap<AVec<u8, Via>, AVec<u32, Via>, DefaultHashBuilder, Via> =
        HashMap::with_hasher_in(DefaultHashBuilder::default(), a);
    for i in 0..1000u32 {
        let mut key = AVec::new_in(a);
        key.extend_from_slice(b"key-");
        key.extend_from_slice(i.to_string().as_bytes());
        let mut value = AVec::new_in(a);
        for k in 0..(i % 8) {
            value.push(k);
        }
        map.insert(key, value);
    }
    map.len()
}

struct Traced;

/// Runs `work` on `threads` threads at once, in the traced class scope for classtrack.
fn run(threads: usize, traced: bool, a: Via, work: fn(Via) -> usize) -> usize {
    let one = move || {
        if traced {
            classtrack::scope::<Traced, _>(|| work(a))
        } else {
            work(a)
        }
    };
    if threads == 1 {
        return one();
    }
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads).map(|_| s.spawn(one)).collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    })
}

type Workload = fn(Via) -> usize;

fn every_allocation(c: &mut Criterion) {
    let _tracker = classtrack::ClassTracker::new(); // starts the sample aggregator
    classtrack::trace_every_allocation::<Traced>(true);
    let cases: [(&str, Workload); 2] = [
        ("small_alloc_free", small_pairs),
        ("hashmap_build", hashmap_build),
    ];
    for (name, work) in cases {
        for threads in [1usize, 2] {
            let mut g = c.benchmark_group(format!("{name}_{threads}t"));
            g.bench_function(BenchmarkId::from_parameter("system"), |b| {
                b.iter(|| black_box(run(threads, false, Via(&System), work)))
            });
            g.bench_function(BenchmarkId::from_parameter("classtrack_trace_all"), |b| {
                b.iter(|| black_box(run(threads, true, Via(&TRACKED), work)))
            });
            // The frame-pointer walker: right in a build with frame pointers
            // (RUSTFLAGS="-C force-frame-pointers=yes"); elsewhere it falls back to DWARF.
            classtrack::set_unwinder(classtrack::Unwinder::FramePointers);
            g.bench_function(
                BenchmarkId::from_parameter("classtrack_trace_all_fp"),
                |b| b.iter(|| black_box(run(threads, true, Via(&TRACKED), work))),
            );
            classtrack::set_unwinder(classtrack::Unwinder::Dwarf);
            g.bench_function(BenchmarkId::from_parameter("dhat"), |b| {
                let _profiler = dhat::Profiler::builder().testing().build();
                b.iter(|| black_box(run(threads, false, Via(&DHAT), work)))
            });
            g.finish();
        }
    }
    let (sent, dropped) = classtrack_shim::sample_counts();
    eprintln!("classtrack samples: {sent} sent, {dropped} dropped (channel full)");
}

criterion_group!(benches, every_allocation);
criterion_main!(benches);
