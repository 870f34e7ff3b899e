//! Which inner allocator to wrap: System (glibc), mimalloc and jemalloc, each alone and
//! wrapped by `TrackingAlloc`, on the same workloads side by side in one run.
//!
//! All six are called through the same adapter (an `allocator_api2::Allocator` over a
//! `&dyn GlobalAlloc`, chosen at run time), so the only difference between the cases is the
//! allocator. Sampling is on, at its default rate, as a program that installs `TrackingAlloc`
//! has it.
//!
//! ```text
//! cargo bench --bench inner
//! python3 benches/inner.py      # medians and ratios to System, with instruction counts
//! ```

mod common;
mod setups;

use std::hint::black_box;

use common::Via;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use setups::{SETUPS, WORKLOADS};

fn workloads(c: &mut Criterion) {
    for (name, work) in WORKLOADS {
        let mut g = c.benchmark_group(format!("inner_{name}"));
        for (setup, alloc) in SETUPS {
            let a = Via(alloc);
            // One round first, so that each allocator's per-thread state exists before timing.
            black_box(work(a));
            g.bench_function(BenchmarkId::from_parameter(setup), |b| {
                b.iter(|| black_box(work(black_box(a))))
            });
        }
        g.finish();
    }
}

criterion_group!(benches, workloads);
criterion_main!(benches);
