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

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;

use allocator_api2::vec::Vec as AVec;
use classtrack::TrackingAlloc;
use common::{hashmap_build, small_pairs, Via, Workload};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

static TRACKED: TrackingAlloc<System> = TrackingAlloc::new(System);

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

/// `System` asked for 8 bytes more than each block needs, and nothing else: what the 8-byte
/// tag alone costs the inner allocator (some sizes move to its next size class), apart from
/// what tracking does.
pub struct Plus8;

// SAFETY: forwards to `System` with the size grown by 8 at the same alignment, with the same
// grown layout on every call for a block.
unsafe impl GlobalAlloc for Plus8 {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: a valid layout grown by 8 bytes (bench sizes are small).
        unsafe { System.alloc(grown(layout)) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: allocated by `alloc` above with the grown layout.
        unsafe { System.dealloc(ptr, grown(layout)) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above; the new size grown the same way.
        unsafe { System.realloc(ptr, grown(layout), new_size + 8) }
    }
}

/// `layout` with 8 bytes more, unchecked (as `TrackingAlloc` on its fast path), so that only
/// the size classes differ from `System`'s; only for the bench's small sizes.
#[inline(always)]
fn grown(layout: Layout) -> Layout {
    // SAFETY: the bench's sizes are small: size + 8 rounded up to the alignment is far below
    // isize::MAX.
    unsafe { Layout::from_size_align_unchecked(layout.size() + 8, layout.align()) }
}

/// Sizes of typical small Rust blocks (boxed structs, `String`s and `Vec`s of a few
/// elements, map nodes): half of them 8 more than a multiple of 16, which the 8-byte tag
/// moves to glibc's next size class.
pub const TYPICAL_SIZES: [usize; 8] = [24, 40, 56, 24, 32, 48, 64, 80];

/// Two threads, each allocating 64 blocks of [`TYPICAL_SIZES`] and then freeing them, 50
/// times over (more blocks of a size than glibc's per-thread cache keeps, so its arenas and
/// their locks are used too).
pub fn two_thread_batches(a: Via) -> usize {
    std::thread::scope(|s| {
        let workers: [_; 2] = std::array::from_fn(|_| s.spawn(move || batches(a, 50)));
        workers
            .map(|w| w.join().expect("a bench worker panicked"))
            .iter()
            .sum()
    })
}

/// `rounds` times: 64 blocks of [`TYPICAL_SIZES`] allocated, then freed.
pub fn batches(a: Via, rounds: usize) -> usize {
    let mut blocks = [(std::ptr::null_mut::<u8>(), Layout::new::<u8>()); 64];
    let mut sum = 0;
    for _ in 0..rounds {
        for (i, slot) in blocks.iter_mut().enumerate() {
            let layout = Layout::from_size_align(TYPICAL_SIZES[i % TYPICAL_SIZES.len()], 8)
                .expect("a valid layout");
            // SAFETY: a non-zero layout; freed below with the same layout.
            let p = unsafe { a.0.alloc(layout) };
            assert!(!p.is_null(), "out of memory");
            // SAFETY: `p` holds at least one byte.
            unsafe { p.write(i as u8) };
            *slot = (p, layout);
        }
        for &(p, layout) in &blocks {
            // SAFETY: allocated above with `layout`, freed once.
            unsafe {
                sum += *p as usize;
                a.0.dealloc(p, layout);
            }
        }
    }
    sum
}

static PLUS8: Plus8 = Plus8;

/// Two threads allocating and freeing batches of typical small blocks: System, System asked
/// for 8 more bytes a block (the size classes the tag moves blocks to, without tracking), and
/// tracked, side by side.
fn two_threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("two_thread_small");
    let setups: [(&str, Via); 3] = [
        ("system", Via(&System)),
        ("system_plus8", Via(&PLUS8)),
        ("tracked", Via(&TRACKED)),
    ];
    for (name, a) in setups {
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| black_box(two_thread_batches(black_box(a))))
        });
    }
    g.finish();
}

struct BenchType;

/// A constructor under `#[classtrack::class]`: its body runs in `BenchType`'s scope.
#[classtrack::class]
impl BenchType {
    #[inline(never)]
    fn made() -> Self {
        black_box(BenchType)
    }
}

/// The same body without the attribute.
#[inline(never)]
fn made_plain() -> BenchType {
    black_box(BenchType)
}

/// A function under `#[classtrack::scope]`.
#[classtrack::scope("bench::named")]
#[inline(never)]
fn in_named_scope() -> u32 {
    black_box(1)
}

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
    // The attributes: what they add to a call is what the scope costs.
    g.bench_function("plain_constructor", |b| b.iter(made_plain));
    g.bench_function("class_attribute_constructor", |b| b.iter(BenchType::made));
    g.bench_function("scope_attribute_function", |b| b.iter(in_named_scope));
    g.finish();
}

criterion_group!(benches, workloads, two_threads, scopes);
criterion_main!(benches);
