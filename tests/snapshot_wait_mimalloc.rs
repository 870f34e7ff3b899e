//! The measurement of `snapshot_wait.rs` over mimalloc, whose threads allocate from heaps of
//! their own (glibc's malloc puts threads in shared arenas, each behind a lock that a snapshot
//! thread allocating takes too):
//!
//! ```text
//! cargo test --release --test snapshot_wait_mimalloc -- --ignored --nocapture
//! ```

// mimalloc is a dev-dependency on Linux only (it builds C code).
#![cfg(target_os = "linux")]

use classtrack::TrackingAlloc;

mod wait;

#[global_allocator]
static ALLOC: TrackingAlloc<mimalloc::MiMalloc> = TrackingAlloc::new(mimalloc::MiMalloc);

#[test]
#[ignore = "a measurement: run it alone, in release, with --nocapture"]
fn measure_the_waits_of_a_thread_building_and_dropping_instances() {
    wait::measure("mimalloc");
}
