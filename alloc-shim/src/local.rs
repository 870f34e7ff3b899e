//! The thread's current tag and its counter shard.
//!
//! Both live in one `const`-initialised thread-local without a destructor, so reading them
//! never registers anything, never allocates and works at every point of a thread's life,
//! including while its other thread-locals are being destroyed. Retiring the shard at thread
//! exit needs a destructor; it lives in a second thread-local ([`RETIRE`]) that is touched
//! once, on the thread's first allocation, from the cold path.

use std::cell::Cell;
use std::marker::PhantomData;
use std::ptr;

use crate::shard::{self, page_key, Event, Page, Shard, Sink};
use crate::{ClassId, Tag, TRACE_ALL_BIT};

/// The thread has not allocated yet: no shard.
const FRESH: u8 = 0;
/// The thread owns a shard.
const ACTIVE: u8 = 1;
/// The thread is claiming its shard; nested allocations use the shared shard.
const BUSY: u8 = 2;
/// The thread's shard has been retired (the thread is exiting): use the shared shard.
const EXITED: u8 = 3;
/// A `page_key` no class has: the page cache is empty.
const NO_PAGE: u32 = u32::MAX;

pub(crate) struct Local {
    /// The current tag, packed with [`Tag::to_bits`].
    tag: Cell<u64>,
    /// The page of the last class counted, in this thread's own shard: its key and address.
    /// The hot path counts through it without walking the shard's directory.
    page_key: Cell<u32>,
    page: Cell<*const Page>,
    /// The shard this thread owns, or null.
    shard: Cell<*const Shard>,
    /// One of [`FRESH`], [`ACTIVE`], [`BUSY`], [`EXITED`].
    state: Cell<u8>,
    /// Bytes left until the next sample point (see `sampling`).
    sample_left: Cell<i64>,
    /// The sampler's random generator state (0: not seeded yet).
    rng: Cell<u64>,
    /// The mean the current countdown was drawn with.
    gap_mean: Cell<u64>,
    /// Set while this thread is in the sampler: nested allocations are not sampled.
    in_sampler: Cell<bool>,
}

/// The sampler's per-thread state, as handed to [`with_sampler`].
pub(crate) struct SamplerState {
    pub(crate) left: i64,
    pub(crate) rng: u64,
    pub(crate) gap_mean: u64,
}

/// Never samples this thread's allocations again.
///
/// For the thread that drains the sample channel: its allocations may happen while it holds
/// the channel's waker lock (registering to wait), and a sample taken there would try to take
/// that lock again to wake it.
pub fn exclude_thread_from_sampling() {
    let local = local_ptr();
    if !local.is_null() {
        // SAFETY: as in `count_alloc`.
        unsafe { &*local }.in_sampler.set(true);
    }
}

/// Runs `f` with this thread's sampler state, unless the thread is in the sampler already
/// (then `None`: a nested allocation is never sampled).
pub(crate) fn with_sampler<R>(f: impl FnOnce(&mut SamplerState) -> R) -> Option<R> {
    let local = local_ptr();
    if local.is_null() {
        return None;
    }
    // SAFETY: as in `count_current`.
    let local = unsafe { &*local };
    if local.in_sampler.replace(true) {
        return None;
    }
    let mut state = SamplerState {
        left: local.sample_left.get(),
        rng: local.rng.get(),
        gap_mean: local.gap_mean.get(),
    };
    let r = f(&mut state);
    local.sample_left.set(state.left);
    local.rng.set(state.rng);
    local.gap_mean.set(state.gap_mean);
    local.in_sampler.set(false);
    Some(r)
}

thread_local! {
    static LOCAL: Local = const {
        Local {
            tag: Cell::new(0),
            page_key: Cell::new(NO_PAGE),
            page: Cell::new(ptr::null()),
            shard: Cell::new(ptr::null()),
            state: Cell::new(FRESH),
            sample_left: Cell::new(0),
            rng: Cell::new(0),
            gap_mean: Cell::new(0),
            in_sampler: Cell::new(false),
        }
    };
    /// Its destructor hands the thread's shard back for the next new thread.
    static RETIRE: Retire = const { Retire };
}

struct Retire;

impl Drop for Retire {
    fn drop(&mut self) {
        // `LOCAL` has no destructor, so it is still readable here.
        let _ = LOCAL.try_with(|local| {
            let shard = local.shard.replace(ptr::null());
            local.page_key.set(NO_PAGE);
            local.state.set(EXITED);
            if !shard.is_null() {
                // SAFETY: shards are never freed (they live in a push-only list), so the
                // pointer stays valid; this thread owns it until the store below.
                unsafe { (*shard).release() };
            }
        });
    }
}

/// The address of this thread's [`Local`], or null if it cannot be reached (never, in
/// practice: it has no destructor).
///
/// The closure is trivial so that `try_with` is inlined in every caller, whatever the
/// inliner's budget; the work is done on the returned address.
#[inline(always)]
fn local_ptr() -> *const Local {
    LOCAL
        .try_with(|local| local as *const Local)
        .unwrap_or(ptr::null())
}

/// Counts the allocation of `bytes` for the current tag's class; returns the tag, and whether
/// the sampler must look at the block (its countdown ran out, or its class is traced
/// entirely: then the third value is true).
#[inline(always)]
pub(crate) fn count_alloc(bytes: usize) -> (Tag, bool, bool) {
    let local = local_ptr();
    if local.is_null() {
        shared_sink(ClassId::UNTRACKED).apply(Event::Alloc(bytes));
        return (Tag::UNTRACKED, false, false);
    }
    // SAFETY: `LOCAL` is `const`-initialised and has no destructor, so its storage is valid
    // for the whole life of this thread; it is used here, on its own thread, only.
    let local = unsafe { &*local };
    let bits = local.tag.get();
    let tag = Tag::from_bits(bits);
    count_in(local, tag.class, Event::Alloc(bytes));
    let trace_all = bits & TRACE_ALL_BIT != 0;
    let left = local.sample_left.get().wrapping_sub(bytes as i64);
    local.sample_left.set(left);
    (tag, left <= 0 || trace_all, trace_all)
}

/// Advances this thread's sample countdown by `bytes` (a realloc's growth); true if it ran
/// out.
#[inline(always)]
pub(crate) fn countdown(bytes: usize) -> bool {
    let local = local_ptr();
    if local.is_null() {
        return false;
    }
    // SAFETY: as in `count_alloc`.
    let local = unsafe { &*local };
    let left = local.sample_left.get().wrapping_sub(bytes as i64);
    local.sample_left.set(left);
    left <= 0
}

/// Counts `event` on this thread's cached counter page if `class` is on it, and says so;
/// otherwise counts nothing and returns false (the caller then takes [`count`]'s path).
#[inline(always)]
pub(crate) fn count_on_cached_page(class: ClassId, event: Event) -> bool {
    let local = local_ptr();
    if local.is_null() {
        return false;
    }
    // SAFETY: as in `count_alloc`.
    let local = unsafe { &*local };
    if local.page_key.get() != page_key(class) {
        return false;
    }
    // SAFETY: as in `count_in`.
    let counters = unsafe { &*local.page.get() }.counters(class);
    Sink::Owned(counters).apply(event);
    true
}

/// Counts `event` (a free or resize of a block of `class`) on this thread.
#[inline(always)]
pub(crate) fn count(class: ClassId, event: Event) {
    let local = local_ptr();
    if local.is_null() {
        return shared_sink(class).apply(event);
    }
    // SAFETY: as in `count_alloc`.
    count_in(unsafe { &*local }, class, event)
}

#[inline(always)]
fn count_in(local: &Local, class: ClassId, event: Event) {
    if local.page_key.get() == page_key(class) {
        // SAFETY: the cached page was set by `sink_slow` from the shard this thread owns (it is
        // cleared before that shard is released), holds `class` (same key), and pages are
        // never freed.
        let counters = unsafe { &*local.page.get() }.counters(class);
        Sink::Owned(counters).apply(event)
    } else {
        sink_slow(local, class).apply(event)
    }
}

/// A class on another page than the last one, or a thread without its own shard.
#[cold]
#[inline(never)]
fn sink_slow(local: &Local, class: ClassId) -> Sink {
    let shard = local.shard.get();
    let shard = if shard.is_null() {
        shard_slow(local)
    } else {
        // SAFETY: a non-null `shard` was claimed by this thread in `shard_slow` and is only
        // cleared (by `Retire::drop`) before the shard is released; shards are never freed.
        Some(unsafe { &*shard })
    };
    let Some(shard) = shard else {
        return shared_sink(class);
    };
    match shard.page(class) {
        Some(page) => {
            local.page_key.set(page_key(class));
            local.page.set(page);
            Sink::Owned(page.counters(class))
        }
        None => Sink::Lost,
    }
}

#[cold]
fn shared_sink(class: ClassId) -> Sink {
    match shard::shared().page(class) {
        Some(page) => Sink::Shared(page.counters(class)),
        None => Sink::Lost,
    }
}

/// The first allocation of a thread: claim a shard. `None` when the thread is claiming its
/// shard already (a nested allocation) or has retired it (it is exiting): use the shared shard.
#[cold]
#[inline(never)]
fn shard_slow(local: &Local) -> Option<&'static Shard> {
    if local.state.get() != FRESH {
        return None;
    }
    local.state.set(BUSY);
    let Some(shard) = shard::claim() else {
        // The system allocator had no memory for a shard: count through the shared shard
        // and try again on the next allocation.
        local.state.set(FRESH);
        return None;
    };
    local.shard.set(shard);
    // Registering `RETIRE`'s destructor may allocate (the standard library keeps a list of
    // destructors). Those nested allocations find the shard set above and are classtrack's
    // own, so they are charged to the overhead class.
    let prev = local.tag.replace(Tag::OVERHEAD.to_bits());
    let registered = RETIRE.try_with(|_| ()).is_ok();
    local.tag.set(prev);
    if registered {
        local.state.set(ACTIVE);
        Some(shard)
    } else {
        // The thread is already running its thread-local destructors: nothing would retire
        // the shard, so give it back now and count the rest of this thread's life through
        // the shared shard.
        local.shard.set(ptr::null());
        local.page_key.set(NO_PAGE);
        local.state.set(EXITED);
        shard.release();
        None
    }
}

/// The current thread's tag: the class scope and object that new allocations are charged to.
#[inline]
pub fn current_tag() -> Tag {
    LOCAL
        .try_with(|l| Tag::from_bits(l.tag.get()))
        .unwrap_or(Tag::UNTRACKED)
}

/// Sets or clears the trace-everything bit of this thread's tag word to match its class's
/// setting now ([`set_trace_all`](crate::set_trace_all)).
///
/// Off the common path: called where the setting changes (on the thread that changes it) and
/// on the sampler's slow path, which every thread takes at its first allocation and each time
/// its countdown runs out. So a class traced while a thread is inside its scope (notably
/// `<untracked>`, the scope a thread starts in and never enters) is traced on that thread from
/// the next sample point on, without entering a scope.
#[cold]
pub(crate) fn refresh_trace_bit() {
    let _ = LOCAL.try_with(|l| {
        let bits = l.tag.get();
        let want = crate::sampling::traces_all(Tag::from_bits(bits).class);
        l.tag.set(if want {
            bits | TRACE_ALL_BIT
        } else {
            bits & !TRACE_ALL_BIT
        });
    });
}

/// Makes `tag` the current thread's tag and returns the previous one.
///
/// This is the primitive under classtrack's scopes: the caller restores the returned tag when
/// its scope ends. A class id at or above [`ClassId::LIMIT`] is replaced by
/// [`ClassId::UNTRACKED`]. Whether the class is traced entirely
/// ([`set_trace_all`](crate::set_trace_all)) is read here, once per scope.
#[inline]
pub fn replace_tag(tag: Tag) -> Tag {
    let tag = if tag.class.0 < ClassId::LIMIT {
        tag
    } else {
        Tag {
            class: ClassId::UNTRACKED,
            ..tag
        }
    };
    let mut bits = tag.to_bits();
    if crate::sampling::traces_all(tag.class) {
        bits |= TRACE_ALL_BIT;
    }
    LOCAL
        .try_with(|l| Tag::from_bits(l.tag.replace(bits)))
        .unwrap_or(Tag::UNTRACKED)
}

/// Charges the current thread's allocations to classtrack's overhead class until dropped.
///
/// **WARNING**: all classtrack code that may allocate (registries, names, snapshots, reports)
/// runs under this guard, so that no tracker memory is ever charged to a user's class. The
/// guard restores the previous tag when dropped, also during a panic unwind. It is `!Send`:
/// it must be dropped on the thread that made it.
#[must_use = "the overhead scope ends when the guard is dropped"]
pub struct OverheadGuard {
    prev: Tag,
    _not_send: PhantomData<*const ()>,
}

impl OverheadGuard {
    /// Enters the overhead class on this thread.
    #[inline]
    #[allow(clippy::new_without_default)]
    pub fn new() -> OverheadGuard {
        OverheadGuard {
            prev: replace_tag(Tag::OVERHEAD),
            _not_send: PhantomData,
        }
    }
}

impl Drop for OverheadGuard {
    #[inline]
    fn drop(&mut self) {
        replace_tag(self.prev);
    }
}

/// Whether the current thread counts into a counter shard of its own.
///
/// `false` before the thread's first tracked allocation, and once the thread has retired its
/// shard while exiting (its last allocations, made from thread-local destructors, are then
/// counted through a shared shard, exactly as before).
pub fn thread_owns_shard() -> bool {
    LOCAL
        .try_with(|l| !l.shard.get().is_null())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_tag_round_trips_and_clamps() {
        let t = Tag {
            class: ClassId(77),
            object: 5,
        };
        let prev = replace_tag(t);
        assert_eq!(current_tag(), t);
        replace_tag(Tag::class(ClassId(ClassId::LIMIT + 3)));
        assert_eq!(current_tag(), Tag::UNTRACKED);
        replace_tag(prev);
        assert_eq!(current_tag(), prev);
    }

    #[test]
    fn overhead_guard_restores() {
        let prev = replace_tag(Tag::class(ClassId(9)));
        {
            let _g = OverheadGuard::new();
            assert_eq!(current_tag(), Tag::OVERHEAD);
        }
        assert_eq!(current_tag(), Tag::class(ClassId(9)));
        replace_tag(prev);
    }

    #[test]
    fn shard_is_claimed_and_retired() {
        std::thread::spawn(|| {
            let before = crate::shim_stats().shards_in_use;
            let a = crate::TrackingAlloc::new(std::alloc::System);
            let layout = std::alloc::Layout::new::<u64>();
            // SAFETY: the layout is non-zero; the block is freed with the same layout.
            unsafe {
                let p = std::alloc::GlobalAlloc::alloc(&a, layout);
                assert!(!p.is_null());
                std::alloc::GlobalAlloc::dealloc(&a, p, layout);
            }
            assert!(thread_owns_shard());
            assert!(crate::shim_stats().shards_in_use >= before.min(1));
        })
        .join()
        .unwrap();
    }
}
