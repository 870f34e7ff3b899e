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

use std::alloc::System;
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
