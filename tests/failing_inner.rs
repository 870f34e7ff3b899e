//! An inner allocator that returns null changes no counter, and the caller's block survives a
//! failed `realloc`.

use std::alloc::{alloc, dealloc, realloc, GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;

use classtrack::{ClassTracker, TrackingAlloc};

/// `System`, except that it returns null while this thread's `FAIL` is set.
struct Flaky;

thread_local! {
    static FAIL: Cell<bool> = const { Cell::new(false) };
}

fn failing() -> bool {
    FAIL.try_with(Cell::get).unwrap_or(false)
}

// SAFETY: forwards to `System`, or returns null (always allowed).
unsafe impl GlobalAlloc for Flaky {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if failing() {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded caller contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if failing() {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded caller contract.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded caller contract.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if failing() {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded caller contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: TrackingAlloc<Flaky> = TrackingAlloc::new(Flaky);

#[test]
fn null_from_inner_allocator_changes_no_counter() {
    let tracker = ClassTracker::new();
    let layout = Layout::from_size_align(100, 32).unwrap();
    // SAFETY: non-zero size; freed below.
    // `black_box` keeps the optimizer from eliding or folding the allocations under test.
    let p = classtrack::scope_named("flaky::class", || black_box(unsafe { alloc(layout) }));
    assert!(!p.is_null());
    // SAFETY: fresh 100-byte block.
    unsafe { p.write_bytes(0x5A, 100) };
    let before = tracker
        .create_snapshot("before")
        .class_named("flaky::class")
        .cloned()
        .unwrap();

    // The failing calls go to the allocator directly, not through `std::alloc`: the compiler
    // may move `std::alloc` calls across the flag's stores (it assumes they touch no memory
    // of the program's).
    FAIL.with(|f| f.set(true));
    let (a, z, r) = classtrack::scope_named("flaky::class", || {
        // SAFETY: non-zero sizes; `p` is live with `layout`.
        unsafe {
            (
                ALLOC.alloc(layout),
                ALLOC.alloc_zeroed(layout),
                ALLOC.realloc(p, layout, 5000),
            )
        }
    });
    FAIL.with(|f| f.set(false));
    assert!(a.is_null() && z.is_null() && r.is_null());

    let after = tracker
        .create_snapshot("after")
        .class_named("flaky::class")
        .cloned()
        .unwrap();
    assert_eq!(before, after);
    // The original block is intact, its owner too: growing it now charges flaky::class.
    // SAFETY: `p` is still live with `layout`.
    let q = black_box(unsafe { realloc(black_box(p), layout, 5000) });
    assert!(!q.is_null());
    // SAFETY: the first 100 bytes were carried over.
    assert!(unsafe { std::slice::from_raw_parts(q, 100) }
        .iter()
        .all(|&b| b == 0x5A));
    let grown = tracker
        .create_snapshot("grown")
        .class_named("flaky::class")
        .cloned()
        .unwrap();
    assert_eq!(grown.live_bytes, 5000);
    assert_eq!(grown.allocated_bytes, 5000);
    // SAFETY: live block of 5000 bytes at align 32.
    unsafe { dealloc(q, Layout::from_size_align(5000, 32).unwrap()) };
}

#[test]
fn oversized_requests_fail_cleanly() {
    let tracker = ClassTracker::new();
    let huge = Layout::from_size_align(isize::MAX as usize - 3, 1).unwrap();
    // SAFETY: non-zero size; null is expected.
    let p = classtrack::scope_named("flaky::huge", || {
        black_box(unsafe { alloc(black_box(huge)) })
    });
    assert!(p.is_null());
    assert!(tracker
        .create_snapshot("s")
        .class_named("flaky::huge")
        .is_none());
    // A Vec that cannot grow reports an error instead of aborting.
    let mut v: Vec<u8> = Vec::new();
    assert!(v.try_reserve(isize::MAX as usize - 2).is_err());
}
