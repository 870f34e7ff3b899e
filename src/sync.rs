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

use std::sync::{Mutex, MutexGuard, PoisonError};

/// A mutex whose `lock` never fails. See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct Lock<T>(Mutex<T>);

impl<T> Lock<T> {
    /// A new, unlocked lock.
    pub(crate) const fn new(value: T) -> Lock<T> {
        Lock(Mutex::new(value))
    }

    /// Waits for the lock and takes it.
    #[inline]
    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
