//! Threads that exit keep their counts; their shards are reused; allocations made from
//! thread-local destructors after the thread retired its shard are still counted exactly.

use std::alloc::System;
#[cfg(unix)]
use std::sync::atomic::{AtomicBool, Ordering};

use classtrack::{ClassTracker, TrackingAlloc};

#[global_allocator]
static ALLOC: TrackingAlloc<System> = TrackingAlloc::new(System);

/// Whether the thread had retired its shard when the pthread-key destructor ran.
#[cfg(unix)]
static RETIRED_BEFORE_DTOR: AtomicBool = AtomicBool::new(false);
/// Whether the destructor ran at all.
#[cfg(unix)]
static DTOR_RAN: AtomicBool = AtomicBool::new(false);

/// A pthread-key destructor: glibc runs these after all Rust thread-local destructors, so
/// after the thread retired its counter shard. It allocates, keeps one block and frees one,
/// as a C library's thread cleanup calling back into Rust would.
#[cfg(unix)]
extern "C" fn allocates_on_exit(_: *mut libc::c_void) {
    // No panic may cross this boundary: results go to atomics, checked by the test.
    let retired = !classtrack_shim::thread_owns_shard();
    let kept = classtrack::scope_named("exit::dtor", || {
        let gone = std::hint::black_box(vec![1u8; 300]);
        drop(gone);
        vec![2u8; 700]
    });
    std::mem::forget(std::hint::black_box(kept));
    RETIRED_BEFORE_DTOR.store(retired, Ordering::SeqCst);
    DTOR_RAN.store(true, Ordering::SeqCst);
}

#[test]
fn exited_threads_keep_counts_and_shards_are_reused() {
    let tracker = ClassTracker::new();

    // One thread allocates 10 blocks and exits without freeing them.
    let leaked = std::thread::spawn(|| {
        classtrack::scope_named("exit::kept", || {
            (0..10)
                .map(|i| Box::leak(vec![0u8; 100 + i].into_boxed_slice()).as_ptr() as usize)
                .collect::<Vec<_>>()
        })
    })
    .join()
    .unwrap();
    assert_eq!(leaked.len(), 10);
    let snap = tracker.create_snapshot("after exit");
    let c = snap.class_named("exit::kept").unwrap();
    // The ten leaked slices plus the vector of their addresses, built in the same scope.
    assert_eq!(c.live_blocks, 11);
    assert_eq!(c.live_bytes, (0..10).map(|i| 100 + i).sum::<u64>() + 10 * 8);

    // Many short-lived threads, one after another: shards are handed on, not piled up.
    let shard_bytes_before = snap.overhead.shard_bytes;
    for i in 0..200 {
        std::thread::spawn(move || {
            let v =
                classtrack::scope_named("exit::churn", || std::hint::black_box(vec![i as u8; 64]));
            assert_eq!(v.len(), 64);
        })
        .join()
        .unwrap();
    }
    let snap = tracker.create_snapshot("after churn");
    let churn = snap.class_named("exit::churn").unwrap();
    assert_eq!(
        (churn.allocations, churn.frees, churn.live_bytes),
        (200, 200, 0)
    );
    let per_shard = 10 * 1024;
    assert!(
        snap.overhead.shard_bytes - shard_bytes_before < 20 * per_shard,
        "{} bytes of new shards for 200 sequential threads",
        snap.overhead.shard_bytes - shard_bytes_before
    );
}

#[cfg(unix)]
#[test]
fn allocations_in_pthread_key_destructors_after_exit_are_counted() {
    let tracker = ClassTracker::new();
    std::thread::spawn(|| {
        let mut key: libc::pthread_key_t = 0;
        // SAFETY: `key` is a valid out-pointer; the destructor is an `extern "C"` fn that never
        // unwinds; the value is a non-null dummy so that the destructor runs.
        unsafe {
            assert_eq!(
                libc::pthread_key_create(&mut key, Some(allocates_on_exit)),
                0
            );
            assert_eq!(
                libc::pthread_setspecific(key, std::ptr::dangling::<libc::c_void>()),
                0
            );
        }
        let v = classtrack::scope_named("exit::body", || vec![0u8; 10]);
        assert!(classtrack_shim::thread_owns_shard());
        drop(v);
    })
    .join()
    .unwrap();
    assert!(DTOR_RAN.load(Ordering::SeqCst));
    assert!(
        RETIRED_BEFORE_DTOR.load(Ordering::SeqCst),
        "the destructor ran before the shard was retired: the test did not exercise exit"
    );
    let snap = tracker.create_snapshot("after");
    let c = snap.class_named("exit::dtor").unwrap();
    assert_eq!((c.allocations, c.frees), (2, 1));
    assert_eq!((c.live_bytes, c.live_blocks), (700, 1));
    assert_eq!(c.allocated_bytes, 1000);
}
