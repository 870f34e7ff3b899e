//! The lock that classtrack's own state sits behind.
//!
//! A `std::sync::Mutex` (a futex on Linux), not a `parking_lot` one, for two reasons:
//! - **fork**: the fork handlers (`fork.rs`) take every such lock before `fork()` and release
//!   it in the parent and in the child. Releasing a std mutex touches only its own word (and,
//!   if another thread was waiting, makes a futex wake system call, which in the child wakes
//!   nobody). Releasing a `parking_lot` mutex that a thread was waiting for goes through
//!   `parking_lot_core`'s global table of waiters, whose bucket locks a thread that does not
//!   exist in the child may hold: the child would hang.
//! - it never allocates, so taking it from code that runs under the allocator is safe.
//!
//! Poisoning is ignored: no user code runs under these locks (user `Debug` and `Drop` run
//! outside them), so a panic while one is held is one of classtrack's own bugs, and what it
//! protects is still the best record there is.
//!
//! A std mutex is not fair: a thread that releases it and takes it again at once nearly always
//! gets it back before a waiter it woke has run. A long job that works in batches (a snapshot
//! of many instances) would so keep a waiting thread out until the end. [`Lock`] counts the
//! threads that had to wait, and [`Lock::let_waiters_in`], called between batches with the
//! lock released, returns once those threads have had it. Taking the lock uncontended costs
//! what a bare mutex costs: the counts are touched only by a thread that has to wait.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::{Duration, Instant};

/// The longest [`Lock::let_waiters_in`] waits. A counted waiter always takes the lock in the
/// end (it waits for a lock that is free), so this bounds only what cannot happen, such as a
/// count left by a thread that does not exist (the fork handlers clear those in a child). On a
/// busy machine a woken waiter may need a while to get a CPU: the bound is generous, so that
/// it is let in rather than overtaken again.
const LET_IN_LIMIT: Duration = Duration::from_millis(20);

/// A mutex whose `lock` never fails. See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct Lock<T> {
    mutex: Mutex<T>,
    /// Threads blocked in [`lock`](Self::lock) now.
    waiting: AtomicU64,
    /// Times a thread took the lock after having had to wait for it.
    served: AtomicU64,
}

impl<T> Lock<T> {
    /// A new, unlocked lock.
    pub(crate) const fn new(value: T) -> Lock<T> {
        Lock {
            mutex: Mutex::new(value),
            waiting: AtomicU64::new(0),
            served: AtomicU64::new(0),
        }
    }

    /// Waits for the lock and takes it.
    #[inline]
    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        match self.mutex.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => self.lock_contended(),
        }
    }

    #[cold]
    #[inline(never)]
    fn lock_contended(&self) -> MutexGuard<'_, T> {
        // SeqCst on the counts: `let_waiters_in` reads `served`, then `waiting`, and relies on
        // every waiter it counts incrementing `served` after its read; one total order over
        // both counters gives that. Only threads that wait pay for it.
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let guard = self.mutex.lock().unwrap_or_else(PoisonError::into_inner);
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        self.served.fetch_add(1, Ordering::SeqCst);
        guard
    }

    /// Called with the lock released (by this thread, between batches of a long job): returns
    /// once every thread that was waiting for the lock has taken it (they may still hold it),
    /// or after [`LET_IN_LIMIT`] at most. Returns at once if nobody was waiting.
    pub(crate) fn let_waiters_in(&self) {
        // SeqCst: see `lock_contended`. `served` is read first: a waiter counted in `waiting`
        // increments `served` only after this read, so `served` reaches `target`.
        let served = self.served.load(Ordering::SeqCst);
        let waiting = self.waiting.load(Ordering::SeqCst);
        if waiting == 0 {
            return;
        }
        let target = served + waiting;
        let start = Instant::now();
        // SeqCst: see above.
        while self.served.load(Ordering::SeqCst) < target && start.elapsed() < LET_IN_LIMIT {
            std::thread::yield_now();
        }
    }

    /// In the child of `fork()`, with the lock held by the forking thread: forgets the
    /// waiters, which were other threads and do not exist here.
    pub(crate) fn forget_waiters(&self) {
        // SeqCst: see `lock_contended`; no other thread exists yet in the child.
        self.waiting.store(0, Ordering::SeqCst);
    }
}
