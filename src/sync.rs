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

use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
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

    /// Takes the lock if it is free; never waits.
    #[inline]
    pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        match self.mutex.try_lock() {
            Ok(guard) => Some(guard),
            Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(TryLockError::WouldBlock) => None,
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

/// A multi-producer queue that never blocks a producer: a stack of boxed nodes behind one
/// atomic pointer (a Treiber stack), emptied all at once by its consumer, oldest first.
///
/// Producers only push (one compare-and-swap of the head after the node is fully written) and
/// the consumer only takes the whole stack (one swap), so there is no ABA problem (no node is
/// ever unlinked from the middle, or pushed twice). A `fork()` cannot leave it half changed:
/// a node is published by a single atomic store, so in the child each node is either in the
/// stack, whole, or not. Used where a thread must hand work to whoever holds a lock without
/// waiting for that lock (instance births and deaths during a snapshot, released object ids).
pub(crate) struct Mailbox<T> {
    head: AtomicPtr<Node<T>>,
}

struct Node<T> {
    value: T,
    /// The node pushed before this one.
    next: *mut Node<T>,
}

// SAFETY: the mailbox owns its nodes' values (moved in by `push`, moved out by `take_all`, on
// any thread): it is `Send` and `Sync` when `T` is `Send`, as a `Mutex<Vec<T>>` would be.
unsafe impl<T: Send> Send for Mailbox<T> {}
// SAFETY: see above; every access to shared nodes goes through the atomic head.
unsafe impl<T: Send> Sync for Mailbox<T> {}

impl<T> Mailbox<T> {
    /// An empty mailbox.
    pub(crate) const fn new() -> Mailbox<T> {
        Mailbox {
            head: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// Adds `value` (allocates its node). Never waits for another thread: a failed
    /// compare-and-swap means another push or a take succeeded.
    pub(crate) fn push(&self, value: T) {
        let node = Box::into_raw(Box::new(Node {
            value,
            next: ptr::null_mut(),
        }));
        // Relaxed: only a hint for the first attempt; the compare-and-swap checks it.
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            // SAFETY: `node` came from `Box::into_raw` above and is not published yet: this
            // thread is its only user.
            unsafe { (*node).next = head };
            // Release on success: the node's contents (and everything this thread did before
            // the push) are visible to the consumer that acquires the head. Relaxed on failure:
            // nothing is read through the value returned, it is only compared again.
            match self
                .head
                .compare_exchange_weak(head, node, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(now) => head = now,
            }
        }
    }

    /// Whether the mailbox looked empty (a hint: a push may land at any moment).
    pub(crate) fn is_empty(&self) -> bool {
        // Relaxed: a hint; callers that need it ordered put a fence before it.
        self.head.load(Ordering::Relaxed).is_null()
    }

    /// Takes everything pushed so far and passes it to `f`, oldest first (the order of the
    /// pushes; pushes on one thread stay in that thread's order).
    pub(crate) fn take_all(&self, mut f: impl FnMut(T)) {
        // Acquire: pairs with the pushes' release, so each node is seen whole.
        let mut p = self.head.swap(ptr::null_mut(), Ordering::Acquire);
        // Reverse the list in place (newest first, as pushed) to go oldest first.
        let mut oldest = ptr::null_mut::<Node<T>>();
        while !p.is_null() {
            // SAFETY: `p` is a node of the list this swap took: it was made by `push` with
            // `Box::into_raw`, published whole (release/acquire above), and no other thread
            // can reach it any more (it is no longer reachable from `head`).
            let next = unsafe { (*p).next };
            // SAFETY: as above.
            unsafe { (*p).next = oldest };
            oldest = p;
            p = next;
        }
        while !oldest.is_null() {
            // SAFETY: each node is owned by this call (see above) and turned back into its box
            // exactly once: the walk moves past it before the next one.
            let node = unsafe { Box::from_raw(oldest) };
            oldest = node.next;
            f(node.value);
        }
    }
}

impl<T> Drop for Mailbox<T> {
    fn drop(&mut self) {
        self.take_all(drop);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_mailbox_gives_everything_back_once_in_each_threads_order() {
        let mailbox = Arc::new(Mailbox::new());
        let threads = 4;
        let per_thread: u64 = if cfg!(miri) { 50 } else { 20_000 };
        let producers: Vec<_> = (0..threads)
            .map(|t| {
                let m = mailbox.clone();
                std::thread::spawn(move || {
                    for i in 0..per_thread {
                        m.push((t, i));
                    }
                })
            })
            .collect();
        let mut next = vec![0u64; threads];
        let mut seen = 0;
        let mut take = |next: &mut Vec<u64>| {
            mailbox.take_all(|(t, i)| {
                assert_eq!(i, next[t], "thread {t}'s values out of order");
                next[t] += 1;
                seen += 1;
            })
        };
        while producers.iter().any(|p| !p.is_finished()) {
            take(&mut next);
        }
        for p in producers {
            p.join().unwrap();
        }
        take(&mut next);
        assert_eq!(next, vec![per_thread; threads]);
        assert_eq!(seen, threads as u64 * per_thread);
        assert!(mailbox.is_empty());
    }

    #[test]
    fn dropping_a_mailbox_drops_what_it_holds() {
        let value = Arc::new(());
        let mailbox = Mailbox::new();
        for _ in 0..3 {
            mailbox.push(value.clone());
        }
        assert_eq!(Arc::strong_count(&value), 4);
        drop(mailbox);
        assert_eq!(Arc::strong_count(&value), 1);
    }
}
