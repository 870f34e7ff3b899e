//! `TrackingAlloc` over mimalloc: exact per-class accounting through frees on other threads,
//! realloc growth and shrinkage, alignments up to 2 MiB and thread exit (mimalloc keeps its
//! heaps per thread and frees other threads' blocks through deferred lists; its thread clean-up
//! runs from a pthread-key destructor, before the test's own).

// mimalloc is a dev-dependency on Linux only (it builds C code).
#![cfg(target_os = "linux")]

use classtrack::TrackingAlloc;
use mimalloc::MiMalloc;

#[global_allocator]
static A: TrackingAlloc<MiMalloc> = TrackingAlloc::new(MiMalloc);

mod inner;

#[test]
fn blocks_come_from_mimalloc_with_room_for_the_tag() {
    for size in [1usize, 24, 4096, 300_000, 5 << 20] {
        let v = std::hint::black_box(vec![7u8; size]);
        // SAFETY: `v`'s buffer was allocated by the global allocator, which is mimalloc under
        // the tracking wrapper: the pointer is a mimalloc block.
        let usable = unsafe { A.inner().usable_size(v.as_ptr()) };
        assert!(
            usable >= size + 8,
            "{usable} usable bytes for {size} and the tag"
        );
    }
    assert!(A.inner().version() > 0);
}

#[test]
fn cross_thread_frees_credit_the_allocating_class() {
    inner::cross_thread_frees("mimalloc");
}

#[test]
fn realloc_growth_and_shrink_keep_the_owner_exactly() {
    inner::realloc_growth_and_shrink("mimalloc");
}

#[test]
fn over_aligned_layouts_are_honoured_and_counted() {
    inner::over_aligned_layouts("mimalloc");
}

#[test]
fn exited_threads_keep_their_counts() {
    inner::thread_exit("mimalloc");
}

#[test]
fn randomized_multithread_replay_is_exact() {
    inner::randomized_replay("mimalloc");
}
