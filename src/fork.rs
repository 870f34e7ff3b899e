//! `fork()`: a child process keeps tracking, exactly, and never hangs. (Unix only: on Windows,
//! which has no `fork`, no handler is registered.)
//!
//! In the child of `fork()` only the forking thread exists. Every lock another thread held at
//! that moment would stay held for ever, and classtrack's background threads (the sample
//! aggregator, periodic snapshots) are gone. So, with `pthread_atfork` (registered when the
//! first tracker is made):
//! - before the fork, the forking thread takes every lock of classtrack's, in the one order
//!   all other code takes them in (so this cannot deadlock): the list of trackers; for each
//!   tracker its periodic-thread slot, its snapshot lock, its state, its subscribers and its
//!   metrics publisher;
//!   the class registry; the object-id tables; classtrack's calls into the `backtrace` crate;
//!   the sampler's aggregator and symbol cache, and the allocator's sampler waits until no
//!   thread is in the middle of sending a sample. No other thread can be inside any of them
//!   when the process is copied;
//! - after the fork, in the parent and in the child, it releases them (they are `std` mutexes:
//!   see `sync.rs` for why that is safe in the child);
//! - in the child it also bumps the process generation: a periodic thread started in an
//!   earlier generation does not exist, so `periodic_snapshots_running` is false and a new one
//!   can be started; the sampler forgets its aggregator thread and the next snapshot starts a
//!   new one; the allocator's sampler state held by vanished threads is reset.
//!
//! The allocator's counters need nothing: each thread's shard is written by its owner only,
//! so the child inherits exact figures; the shards of threads that do not exist in the child
//! keep their counts (their blocks are still in the child's heap and may be freed there).

use std::any::Any;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Once, Weak};

use crate::sync::Lock;
use crate::tracker::Inner;

/// Bumped in every child of `fork()`.
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// The process generation: 0 in the process that started, bumped in each child of `fork()`.
/// Threads started in an earlier generation do not exist in this process.
pub(crate) fn generation() -> u64 {
    // Relaxed: written only by the fork handler, on the only thread the child has, before any
    // other thread can exist in it.
    GENERATION.load(Ordering::Relaxed)
}

/// Every tracker alive (weakly), so the fork handlers can take their locks.
static TRACKERS: Lock<Vec<Weak<Inner>>> = Lock::new(Vec::new());
static INSTALL: Once = Once::new();

/// Installs the fork handlers (once per process): when the first tracker is made, or sampling
/// starts.
pub(crate) fn install() {
    INSTALL.call_once(install_handlers);
}

/// Makes `inner`'s locks part of what the fork handlers take; installs the handlers once.
pub(crate) fn register(inner: &Arc<Inner>) {
    install();
    let mut trackers = TRACKERS.lock();
    trackers.retain(|t| t.strong_count() > 0);
    trackers.push(Arc::downgrade(inner));
}

#[cfg(unix)]
fn install_handlers() {
    // SAFETY: the three handlers are `extern "C"` functions that never unwind (each catches
    // nothing that can panic: they take and release locks and bump counters); registering
    // them has no other precondition.
    let rc = unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
    debug_assert_eq!(rc, 0, "classtrack: pthread_atfork failed");
}

/// Without `fork` (Windows) there is nothing to register. The handlers are still compiled, so
/// that they and the locks they take keep building and type-checking on every platform; naming
/// them here is what keeps them from being dead code there.
#[cfg(not(unix))]
fn install_handlers() {
    let _never_registered: [extern "C" fn(); 3] = [prepare, parent, child];
}

/// The locks held from `prepare` to `parent`/`child`, on the forking thread.
struct Held {
    /// Guards of locks, type-erased. Declared before `trackers`, so dropped (released) before
    /// the trackers they point into.
    guards: Vec<Box<dyn Any>>,
    /// The trackers whose locks are held, kept alive while they are.
    trackers: Vec<Arc<Inner>>,
}

thread_local! {
    static HELD: RefCell<Option<Held>> = const { RefCell::new(None) };
}

/// Extends a guard's lifetime to `'static`, to keep it in [`Held`].
///
/// # Safety
/// The guard must be dropped before what it borrows: here, before the `Arc<Inner>` (or the
/// static) it points into, which [`Held`]'s field order ensures.
unsafe fn erase<'a, T: 'static>(guard: std::sync::MutexGuard<'a, T>) -> Box<dyn Any> {
    // SAFETY: only the lifetime changes (same type, same layout); the caller keeps the lock's
    // owner alive for as long as the guard lives.
    let guard: std::sync::MutexGuard<'static, T> = unsafe { std::mem::transmute(guard) };
    Box::new(guard)
}

fn take_locks() -> Held {
    let _g = classtrack_shim::OverheadGuard::new();
    let mut guards: Vec<Box<dyn Any>> = Vec::new();
    let list = TRACKERS.lock();
    let trackers: Vec<Arc<Inner>> = list.iter().filter_map(Weak::upgrade).collect();
    // SAFETY: `TRACKERS` is a static.
    guards.push(unsafe { erase(list) });
    for t in &trackers {
        // SAFETY: each guard borrows from `t`, which `Held::trackers` keeps alive until the
        // guards are dropped.
        unsafe {
            guards.push(erase(t.periodic.lock()));
            guards.push(erase(t.dumps.lock()));
            guards.push(erase(t.snapshotting.lock()));
            guards.push(erase(t.history.raw_lock().lock()));
            guards.push(erase(t.history.attached_lock().lock()));
            guards.push(erase(t.subscribers_lock()));
            #[cfg(feature = "metrics")]
            guards.push(erase(t.metrics.lock()));
        }
    }
    guards.push(crate::peak::fork_lock());
    guards.push(crate::budget::fork_lock());
    guards.extend(crate::registry::fork_locks());
    guards.extend(crate::objects::fork_locks());
    guards.push(Box::new(BACKTRACE.lock()));
    // Last: the aggregator's and the symbol cache's locks, then the allocator's sampler is
    // kept off its channels (see `sampling::fork_prepare`).
    crate::sampling::fork_prepare();
    Held { guards, trackers }
}

extern "C" fn prepare() {
    let held = take_locks();
    let _ = HELD.try_with(|h| *h.borrow_mut() = Some(held));
}

/// Releases the locks in the reverse order of taking them.
fn release_locks() {
    let _g = classtrack_shim::OverheadGuard::new();
    if let Ok(Some(mut held)) = HELD.try_with(|h| h.borrow_mut().take()) {
        while let Some(guard) = held.guards.pop() {
            drop(guard);
        }
        drop(held);
    }
}

extern "C" fn parent() {
    crate::sampling::fork_parent();
    release_locks();
}

extern "C" fn child() {
    // Relaxed: see `generation`.
    GENERATION.fetch_add(1, Ordering::Relaxed);
    crate::sampling::fork_child();
    // Threads that were waiting for a lock that snapshots let waiters into do not exist here.
    let _ = HELD.try_with(|h| {
        if let Some(held) = &*h.borrow() {
            for t in &held.trackers {
                t.history.raw_lock().forget_waiters();
            }
        }
    });
    crate::objects::forget_waiters();
    release_locks();
}

/// Serializes classtrack's own calls into the `backtrace` crate (capturing and symbolizing),
/// so that the fork handlers can hold it: the crate's global lock, held by a thread that does
/// not exist in the child, would hang every later symbolization there. Nothing else is taken
/// while it is held.
static BACKTRACE: Lock<()> = Lock::new(());

/// Runs `f` (a call into the `backtrace` crate) under [`BACKTRACE`].
pub(crate) fn with_backtrace<R>(f: impl FnOnce() -> R) -> R {
    let _b = BACKTRACE.lock();
    f()
}
