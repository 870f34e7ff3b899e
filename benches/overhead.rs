//! What tracking costs: `System` against `TrackingAlloc<System>`, outside and inside a class
//! scope, on the same workloads side by side in one run; and the cost of entering a scope.
//!
//! Both allocators are called through the same adapter (an `allocator_api2::Allocator` over a
//! `GlobalAlloc`), so the only difference between the cases is the allocator itself.
//!
//! ```text
//! cargo bench --bench overhead
//! python3 benches/ratios.py      # medians and ratios from target/criterion
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

/// A `GlobalAlloc` seen as an `Allocator`, so collections can be built in either allocator.
#[derive(Clone, Copy)]
struct Via(&'static dyn GlobalAlloc);

// SAFETY: blocks come from and go back to the same `GlobalAlloc` with their layouts; zero-size
// requests get a dangling, well-aligned pointer and are never passed to the allocator.
unsafe impl Allocator for Via {
    #[inline]
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

    #[inline]
    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if layout.size() != 0 {
            // SAFETY: allocated by `allocate` with this layout.
            unsafe { self.0.dealloc(ptr.as_ptr(), layout) }
        }
    }

    #[inline]
    unsafe fn grow(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        if old.size() == 0 || old.align() != new.align() {
            let fresh = self.allocate(new)?;
            // SAFETY: both blocks hold at least `old.size()` bytes and do not overlap.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr.as_ptr(), fresh.cast().as_ptr(), old.size());
                self.deallocate(ptr, old);
            }
            return Ok(fresh);
        }
        // SAFETY: live block with layout `old`; `new.size()` is non-zero.
        let p = unsafe { self.0.realloc(ptr.as_ptr(), old, new.size()) };
        NonNull::new(p)
            .map(|p| NonNull::slice_from_raw_parts(p, new.size()))
            .ok_or(AllocError)
    }
}

/// Which allocator and scope a case runs under.
#[derive(Clone, Copy)]
enum Setup {
    System,
    Tracked,
    TrackedInScope,
    TrackedUnsampled,
}

impl Setup {
    const ALL: [Setup; 4] = [
        Setup::System,
        Setup::Tracked,
        Setup::TrackedInScope,
        Setup::TrackedUnsampled,
    ];

    fn name(self) -> &'static str {
        match self {
            Setup::System => "system",
            Setup::Tracked => "tracked",
            Setup::TrackedInScope => "tracked_in_scope",
            Setup::TrackedUnsampled => "tracked_unsampled",
        }
    }

    fn alloc(self) -> Via {
        match self {
            Setup::System => Via(&System),
            Setup::Tracked | Setup::TrackedInScope | Setup::TrackedUnsampled => Via(&TRACKED),
        }
    }

    fn run<R>(self, f: impl FnOnce() -> R) -> R {
        match self {
            Setup::TrackedInScope => classtrack::scope_named("bench::scope", f),
            _ => f(),
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

/// 16 vectors grown one element at a time to 4,096 `u32`s (growth by realloc).
fn vec_growth(a: Via) -> usize {
    let mut total = 0;
    for _ in 0..16 {
        let mut v: AVec<u32, Via> = AVec::new_in(a);
        for i in 0..4096 {
            v.push(i);
        }
        total += v.len();
    }
    total
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

/// A workload: builds and drops its data in the given allocator.
type Workload = fn(Via) -> usize;

fn workloads(c: &mut Criterion) {
    let cases: [(&str, Workload); 3] = [
        ("small_alloc_free", small_pairs),
        ("vec_growth", vec_growth),
        ("hashmap_build", hashmap_build),
    ];
    for (name, work) in cases {
        let mut g = c.benchmark_group(name);
        for setup in Setup::ALL {
            // Sampling is on by default (one stack per 512 KiB allocated, on average); the
            // last setup turns it off to show what the sampling itself costs.
            let mean = classtrack::sample_mean();
            if let Setup::TrackedUnsampled = setup {
                classtrack::set_sample_mean(0);
            }
            g.bench_function(BenchmarkId::from_parameter(setup.name()), |b| {
                let a = setup.alloc();
                b.iter(|| setup.run(|| black_box(work(black_box(a)))))
            });
            classtrack::set_sample_mean(mean);
        }
        g.finish();
    }
}

struct BenchType;

fn scopes(c: &mut Criterion) {
    let mut g = c.benchmark_group("scope_enter_exit");
    // Warm the thread's class cache: a known class takes no lock.
    drop(classtrack::enter::<BenchType>());
    drop(classtrack::enter_named("bench::named"));
    g.bench_function("enter_type", |b| {
        b.iter(|| drop(black_box(classtrack::enter::<BenchType>())))
    });
    g.bench_function("enter_named", |b| {
        b.iter(|| {
            drop(black_box(classtrack::enter_named(black_box(
                "bench::named",
            ))))
        })
    });
    g.bench_function("scope_closure", |b| {
        b.iter(|| classtrack::scope::<BenchType, _>(|| black_box(1)))
    });
    g.finish();
}

criterion_group!(benches, workloads, scopes);
criterion_main!(benches);
