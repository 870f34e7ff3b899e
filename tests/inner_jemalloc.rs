//! `TrackingAlloc` over jemalloc: exact per-class accounting through frees on other threads,
//! realloc growth and shrinkage, alignments up to 2 MiB and thread exit (jemalloc caches blocks
//! per thread and returns other threads' blocks to their arenas; its thread clean-up runs from
//! a pthread-key destructor, before the test's own, and an allocation after it brings the
//! thread's state back).

// jemalloc is a dev-dependency on Linux only (it builds C code; none for MSVC).
#![cfg(target_os = "linux")]

use classtrack::TrackingAlloc;
use tikv_jemallocator::Jemalloc;

#[global_allocator]
static A: TrackingAlloc<Jemalloc> = TrackingAlloc::new(Jemalloc);

mod inner;

#[test]
fn blocks_come_from_jemalloc_with_room_for_the_tag() {
    for size in [1usize, 24, 4096, 300_000, 5 << 20] {
        let v = std::hint::black_box(vec![7u8; size]);
        // SAFETY: `v`'s buffer was allocated by the global allocator, which is jemalloc under
        // the tracking wrapper: the pointer is a jemalloc block.
        let usable = unsafe { tikv_jemallocator::usable_size(v.as_ptr()) };
        assert!(
            usable >= size + 8,
            "{usable} usable bytes for {size} and the tag"
        );
    }
}

#[test]
fn cross_thread_frees_credit_the_allocating_class() {
    inner::cross_thread_frees("jemalloc");
}

#[test]
fn realloc_growth_and_shrink_keep_the_owner_exactly() {
    inner::realloc_growth_and_shrink("jemalloc");
}

#[test]
fn over_aligned_layouts_are_honoured_and_counted() {
    inner::over_aligned_layouts("jemalloc");
}

#[test]
fn exited_threads_keep_their_counts() {
    inner::thread_exit("jemalloc");
}

#[test]
fn randomized_multithread_replay_is_exact() {
    inner::randomized_replay("jemalloc");
}
