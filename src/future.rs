//! Class scopes for futures and streams: the scope is entered around each poll.
//!
//! A task's allocations are charged to its class across `.await`s, on any runtime and on
//! whichever worker thread polls it: the scope is current only while the task runs, and the
//! thread's previous scope is back before `poll` returns. Dropping the wrapped future (a
//! cancelled task's state) happens inside the scope too.

use std::future::Future;
use std::mem::ManuallyDrop;
use std::pin::Pin;
use std::task::{Context, Poll};

use classtrack_shim::ClassId;
use futures_core::Stream;
use pin_project_lite::pin_project;

use crate::scope::{RawScope, Scope};

/// Charges a future's (or a stream's) allocations to a class, poll by poll.
///
/// An extension trait: `use classtrack::InClass;` brings its methods to every value (it is
/// implemented for every type), and the wrapper they return is a [`Future`] when the wrapped
/// value is one and a [`Stream`] when it is one.
///
/// ```
/// use classtrack::InClass;
///
/// struct Ingest;
///
/// async fn handle(n: usize) -> Vec<u8> {
///     vec![0u8; n] // charged to Ingest when polled below
/// }
///
/// # async fn run() {
/// let buf = handle(4096).in_class::<Ingest>().await;
/// let rows = async { vec![1u64, 2, 3] }.in_class_named("db rows").await;
/// # drop((buf, rows));
/// # }
/// // e.g. tokio::spawn(handle(4096).in_class::<Ingest>());
/// ```
///
/// Do not hold a [`ScopeGuard`](crate::ScopeGuard) across an `.await` instead: while the task
/// is suspended, the thread runs other tasks, and they would be charged to its class.
///
/// What the runtime allocates to spawn and schedule the task happens outside the scope, but
/// what it allocates *during* a poll is charged to the task's class like anything else made
/// then (a runtime buffer that grows while the task registers a waker, say).
pub trait InClass: Sized {
    /// Wraps `self` so that each poll runs in the scope of type `T`'s class.
    fn in_class<T: ?Sized + 'static>(self) -> Scoped<Self> {
        self.in_scope(Scope::of::<T>())
    }

    /// Wraps `self` so that each poll runs in the scope of the class named `name`.
    fn in_class_named(self, name: &str) -> Scoped<Self> {
        self.in_scope(Scope::named(name))
    }

    /// Wraps `self` so that each poll runs in `scope`, for example the scope current where a
    /// task is spawned: `tokio::spawn(work.in_scope(classtrack::current_scope()))`.
    fn in_scope(self, scope: Scope) -> Scoped<Self> {
        Scoped {
            inner: ManuallyDrop::new(self),
            class: scope.class_id(),
            measure: scope.measurement(),
        }
    }
}

// Hidden from the docs: otherwise every type's page, classtrack's own included, would list
// this blanket implementation; the trait's own page says it is implemented for every type.
#[doc(hidden)]
impl<T> InClass for T {}

pin_project! {
    /// A future or stream whose every poll (and whose drop) runs in a class scope; made by
    /// [`InClass`].
    #[derive(Debug, Clone)]
    #[must_use = "futures and streams do nothing unless polled"]
    pub struct Scoped<T> {
        // Dropped by hand, inside the scope (see `PinnedDrop`).
        #[pin]
        inner: ManuallyDrop<T>,
        class: ClassId,
        // The measurement the scope carries (see `testing::measure`), or 0.
        measure: u8,
    }

    impl<T> PinnedDrop for Scoped<T> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            let _measured = crate::testing::work_for(*this.measure);
            let raw = RawScope::enter_class(*this.class);
            // Leaves the scope even if the inner value's drop panics.
            let _exit = Exit(raw);
            // SAFETY:
            // - `get_unchecked_mut`: the pinned value is dropped in place and never moved,
            //   which is what pinning requires of it (the same as setting an
            //   `Option<T>` field to `None` through `Pin::set`).
            // - `ManuallyDrop::drop`: `PinnedDrop::drop` runs once, and `inner` is not used
            //   after it.
            unsafe { ManuallyDrop::drop(this.inner.get_unchecked_mut()) }
        }
    }
}

/// Leaves a scope when dropped, so that a panicking poll or drop leaves it too.
struct Exit(RawScope);

impl Drop for Exit {
    #[inline]
    fn drop(&mut self) {
        self.0.exit();
    }
}

impl<T> Scoped<T> {
    /// The class the wrapped value's polls are charged to.
    pub fn class_id(&self) -> ClassId {
        self.class
    }

    /// The wrapped future or stream.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// The wrapped future or stream, mutably.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.inner
    }

    /// The wrapped future or stream, pinned.
    pub fn get_pin_mut(self: Pin<&mut Self>) -> Pin<&mut T> {
        // SAFETY: `inner` is structurally pinned (`#[pin]`), and `ManuallyDrop<T>` is
        // `#[repr(transparent)]` over `T`: a pinned `ManuallyDrop<T>` is a pinned `T`, never
        // moved out.
        unsafe { self.project().inner.map_unchecked_mut(|v| &mut **v) }
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let class = self.class;
        let _measured = crate::testing::work_for(self.measure);
        let _exit = Exit(RawScope::enter_class(class));
        self.get_pin_mut().poll(cx)
    }
}

impl<S: Stream> Stream for Scoped<S> {
    type Item = S::Item;

    #[inline]
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let class = self.class;
        let _measured = crate::testing::work_for(self.measure);
        let _exit = Exit(RawScope::enter_class(class));
        self.get_pin_mut().poll_next(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scope::{class_id_named, current_class};
    use std::cell::Cell;
    use std::rc::Rc;

    /// Pending on its first poll (noting the class), ready on the second; notes the class it
    /// is dropped in.
    struct Probe {
        polls: u32,
        seen: Seen,
        dropped_in: Seen,
        _pinned: std::marker::PhantomPinned,
    }

    impl Future for Probe {
        type Output = u32;
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u32> {
            // SAFETY: `polls` and `seen` are not structurally pinned; nothing is moved.
            let this = unsafe { self.get_unchecked_mut() };
            this.seen.set(Some(current_class()));
            this.polls += 1;
            if this.polls == 1 {
                cx.waker().wake_by_ref();
                Poll::Pending
            } else {
                Poll::Ready(this.polls)
            }
        }
    }

    impl Drop for Probe {
        fn drop(&mut self) {
            self.dropped_in.set(Some(current_class()));
        }
    }

    type Seen = Rc<Cell<Option<ClassId>>>;

    fn probe() -> (Probe, Seen, Seen) {
        let seen = Rc::new(Cell::new(None));
        let dropped_in = Rc::new(Cell::new(None));
        let p = Probe {
            polls: 0,
            seen: seen.clone(),
            dropped_in: dropped_in.clone(),
            _pinned: std::marker::PhantomPinned,
        };
        (p, seen, dropped_in)
    }

    #[test]
    fn polls_and_drop_run_in_the_scope_and_leave_it() {
        let class = class_id_named("future::probe");
        let (p, seen, dropped_in) = probe();
        let mut fut = Box::pin(p.in_class_named("future::probe"));
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert_eq!(fut.as_mut().poll(&mut cx), Poll::Pending);
        assert_eq!(seen.get(), Some(class));
        assert_eq!(current_class(), ClassId::UNTRACKED);
        assert_eq!(fut.as_mut().poll(&mut cx), Poll::Ready(2));
        assert_eq!(current_class(), ClassId::UNTRACKED);
        drop(fut);
        assert_eq!(dropped_in.get(), Some(class));
        assert_eq!(current_class(), ClassId::UNTRACKED);
    }

    #[test]
    fn a_pending_future_dropped_unpolled_drops_in_the_scope() {
        let (p, seen, dropped_in) = probe();
        let fut = p.in_scope(crate::Scope::named("future::unpolled"));
        assert_eq!(fut.class_id(), class_id_named("future::unpolled"));
        drop(fut);
        assert_eq!(seen.get(), None);
        assert_eq!(dropped_in.get(), Some(class_id_named("future::unpolled")));
        assert_eq!(current_class(), ClassId::UNTRACKED);
    }
}
