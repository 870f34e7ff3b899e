//! What `inner.rs` (wall time) and `inner_instructions.rs` (instructions) compare: six
//! allocators, System, mimalloc and jemalloc each alone and wrapped by `TrackingAlloc`, and
//! three workloads. mimalloc and jemalloc are benchmarked on Linux (the manifest builds their C
//! code there only); elsewhere the cases are System's alone.

use std::alloc::{GlobalAlloc, System};

use allocator_api2::vec::Vec as AVec;
use classtrack::TrackingAlloc;
#[cfg(target_os = "linux")]
use mimalloc::MiMalloc;
#[cfg(target_os = "linux")]
use tikv_jemallocator::Jemalloc;

use crate::common::{hashmap_build, small_pairs, Via, Workload};

static TRACKED_SYSTEM: TrackingAlloc<System> = TrackingAlloc::new(System);
#[cfg(target_os = "linux")]
static TRACKED_MIMALLOC: TrackingAlloc<MiMalloc> = TrackingAlloc::new(MiMalloc);
#[cfg(target_os = "linux")]
static TRACKED_JEMALLOC: TrackingAlloc<Jemalloc> = TrackingAlloc::new(Jemalloc);

/// The allocators, by the name their cases and modes carry.
#[cfg(target_os = "linux")]
pub const SETUPS: [(&str, &'static (dyn GlobalAlloc + Sync)); 6] = [
    ("system", &System),
    ("tracked_system", &TRACKED_SYSTEM),
    ("mimalloc", &MiMalloc),
    ("tracked_mimalloc", &TRACKED_MIMALLOC),
    ("jemalloc", &Jemalloc),
    ("tracked_jemalloc", &TRACKED_JEMALLOC),
];

/// The allocators, by the name their cases and modes carry.
#[cfg(not(target_os = "linux"))]
pub const SETUPS: [(&str, &'static (dyn GlobalAlloc + Sync)); 2] =
    [("system", &System), ("tracked_system", &TRACKED_SYSTEM)];

/// 16 vectors grown one element at a time to 4,096 `u32`s (growth by realloc), as in
/// `overhead.rs`.
pub fn vec_growth(a: Via) -> usize {
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

/// The workloads, by the name their groups carry.
pub const WORKLOADS: [(&str, Workload); 3] = [
    ("small_alloc_free", small_pairs),
    ("vec_growth", vec_growth),
    ("hashmap_build", hashmap_build),
];
