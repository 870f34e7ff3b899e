//! The thread's current tag and its counter shard.
//!
//! Both live in one `const`-initialised thread-local without a destructor, so reading them
//! never registers anything, never allocates and works at every point of a thread's life,
//! including while its other thread-locals are being destroyed. Retiring the shard at thread
//! exit needs a destructor; it lives in a second thread-local ([`RETIRE`]) that is touched
//! once, on the thread's first allocation, from the cold path.
//!
//! # The fast path
//!
//! The common allocation needs one test before it calls the inner allocator: is the block
//! smaller than the bytes left in the *fast countdown* (`fast_left`)? Every rare case makes
//! that test fail, by setting `fast_left` to 0 (*disarming*) while it lasts: a tag with an
//! object or with the trace-everything bit, a class whose counter page is not at hand, a
//! thread without a shard of its own, a thread inside the sampler, and of course a sample
//! point that is due. While armed, `counters` are the current class's counters in the
//! thread's own shard and `fast_bits` the trailer word of a block of the current tag, so the
//! allocation counts with two stores and writes its trailer without a test. A free whose
//! trailer word equals `fast_bits` counts through `counters` the same way; any other free
//! takes `count`'s path.
//!
//! The sample countdown is split in two: `fast_left + sample_left` bytes are left until the
//! next sample point. The fast path takes only from `fast_left`, which is at most
//! [`FAST_LEFT_MAX`]; the slow path moves everything into `sample_left` (disarms), counts down
//! there as the sampler always did, and moves what is left back (re-arms) when it is done.

use std::cell::Cell;
use std::marker::PhantomData;
use std::ptr;

use crate::peak::PEAK_GRANULARITY;
use crate::shard::{self, page_key, Counters, Event, Page, Shard, Sink};
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
/// A `fast_bits` that no trailer word equals (a trailer word's object, its high 32 bits, is
/// below `OBJECT_LIMIT`).
const NO_FAST: u64 = u64::MAX;

/// The most bytes the fast countdown holds at once.
///
/// A block the fast path takes is smaller than this, so its size plus the trailer, rounded up
/// to any alignment a non-empty `Layout` can have (at most 2^62), stays within `isize::MAX`:
/// the fast path needs no overflow check of its own.
pub(crate) const FAST_LEFT_MAX: u64 = 1 << 48;
const _: () = assert!(
    FAST_LEFT_MAX as u128 + crate::tracking::TRAILER as u128 + (1u128 << 62) <= isize::MAX as u128
);

/// Bytes a thread excluded from sampling allocates between two looks at its countdown.
const EXCLUDED_RECHECK: i64 = 64 << 20;

#[repr(C)]
pub(crate) struct Local {
    // The fast path's fields first, in one cache line.
    /// The counters of the current tag's class in this thread's own shard; meaningful only
    /// while `fast_bits` is not [`NO_FAST`].
    counters: Cell<*const Counters>,
    /// The trailer word of a block of the current tag, when its class is counted through
    /// `counters` and it has no object; otherwise [`NO_FAST`].
    fast_bits: Cell<u64>,
    /// The current tag, packed with [`Tag::to_bits`], with [`TRACE_ALL_BIT`] when its class is
    /// traced entirely.
    tag: Cell<u64>,
    /// The page of the last class counted on the slow path, in this thread's own shard: its
    /// key and address.
    page_key: Cell<u32>,
    page: Cell<*const Page>,
    /// The page of the last class counted in the shared shard because this thread's shard has
    /// all its pages ([`Shard::full`]): its key and address. Emptied with `page_key`.
    shared_key: Cell<u32>,
    shared_page: Cell<*const Page>,
    /// The shard this thread owns, or null.
    shard: Cell<*const Shard>,
    /// One of [`FRESH`], [`ACTIVE`], [`BUSY`], [`EXITED`].
    state: Cell<u8>,
    /// Set while this thread is in the sampler: nested allocations are not sampled.
    in_sampler: Cell<bool>,
    /// Set for good by [`exclude_thread_from_sampling`].
    excluded: Cell<bool>,
    /// Bytes left until the next sample point, beyond `fast_left` (see `sampling`).
    sample_left: Cell<i64>,
    /// The sampler's random generator state (0: not seeded yet).
    rng: Cell<u64>,
    /// The mean the current countdown was drawn with.
    gap_mean: Cell<u64>,
    // The live user heap's watch (see `crate::peak`).
    /// What `rearm` last put in `fast_left`: `armed - fast_left` is what the fast path took
    /// since.
    armed: Cell<u64>,
    /// Bytes to allocate until the next check, beyond what the fast path took since `armed`.
    peak_left: Cell<i64>,
    /// This thread's net user bytes (allocated minus freed, user classes), as of the last
    /// `settle`.
    net: Cell<i64>,
    /// The counters whose changes since `base_alloc`/`base_freed` are not in `net` yet: the
    /// current user class's counters the fast path counts through, or null.
    base: Cell<*const Counters>,
    base_alloc: Cell<u64>,
    base_freed: Cell<u64>,
    /// The class of `base`.
    base_class: Cell<u32>,
    /// User classes that grew on this thread since its last check, besides the current one
    /// (the last [`GROWN`] of them; `grown_len` counts up to it).
    grown: Cell<[u32; GROWN]>,
    grown_len: Cell<u8>,
    /// Where the next class goes in `grown`.
    grown_next: Cell<u8>,
    /// The measurement this thread works for (see `crate::measure`), or 0: while it is not 0,
    /// every allocation takes the slow path.
    measure: Cell<u8>,
}

/// How many classes that grew since a thread's last check the check looks at, besides the
/// current one.
const GROWN: usize = 4;

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
        // SAFETY: as in `local_ref`.
        unsafe { &*local }.excluded.set(true);
    }
}

/// Runs `f` with this thread's sampler state, unless the thread is in the sampler already or
/// excluded from sampling (then `None`: a nested allocation is never sampled).
pub(crate) fn with_sampler<R>(f: impl FnOnce(&mut SamplerState) -> R) -> Option<R> {
    let local = local_ptr();
    if local.is_null() {
        return None;
    }
    // SAFETY: as in `local_ref`.
    let local = unsafe { &*local };
    if local.excluded.get() || local.in_sampler.replace(true) {
        return None;
    }
    // The whole countdown in `sample_left`, and allocations made inside `f` off the fast
    // path (re-arming waits for `in_sampler` to be clear).
    disarm(local);
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
            counters: Cell::new(ptr::null()),
            fast_bits: Cell::new(NO_FAST),
            tag: Cell::new(0),
            page_key: Cell::new(NO_PAGE),
            page: Cell::new(ptr::null()),
            shared_key: Cell::new(NO_PAGE),
            shared_page: Cell::new(ptr::null()),
            shard: Cell::new(ptr::null()),
            state: Cell::new(FRESH),
            in_sampler: Cell::new(false),
            excluded: Cell::new(false),
            sample_left: Cell::new(0),
            rng: Cell::new(0),
            gap_mean: Cell::new(0),
            armed: Cell::new(0),
            peak_left: Cell::new(PEAK_GRANULARITY as i64),
            net: Cell::new(0),
            base: Cell::new(ptr::null()),
            base_alloc: Cell::new(0),
            base_freed: Cell::new(0),
            base_class: Cell::new(0),
            grown: Cell::new([0; GROWN]),
            grown_len: Cell::new(0),
            grown_next: Cell::new(0),
            measure: Cell::new(0),
        }
    };
    /// Bytes the fast path may still allocate before it must take the slow path; 0: disarmed.
    /// A thread-local of its own: the allocation's fast path reads it before the inner
    /// allocator's call and `LOCAL` after it, so no thread-local address is kept across the
    /// call (which would cost a saved register).
    static FAST_LEFT: Cell<u64> = const { Cell::new(0) };
    /// Its destructor hands the thread's shard back for the next new thread.
    static RETIRE: Retire = const { Retire };
}

struct Retire;

impl Drop for Retire {
    fn drop(&mut self) {
        // `LOCAL` has no destructor, so it is still readable here.
        let _ = LOCAL.try_with(|local| {
            // The thread's part of the live user heap stays with its shard (counts included)
            // for the next owner.
            settle(local);
            local.base.set(ptr::null());
            if let Some(shard) = shard_ref(local) {
                shard.publish_net(local.net.get());
            }
            local.net.set(0);
            let shard = local.shard.replace(ptr::null());
            local.page_key.set(NO_PAGE);
            local.shared_key.set(NO_PAGE);
            local.state.set(EXITED);
            // No page at hand: off the fast path for the rest of the thread's life.
            retarget(local);
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

/// This thread's fast countdown, or `None` if it cannot be reached (never, in practice: it
/// has no destructor).
#[inline(always)]
fn fast_left() -> Option<&'static Cell<u64>> {
    let p = FAST_LEFT
        .try_with(|c| c as *const Cell<u64>)
        .unwrap_or(ptr::null());
    // SAFETY: as in `local_ref`: `const`-initialised, no destructor, used on this thread.
    unsafe { p.as_ref() }
}

/// This thread's [`Local`], or `None` if it cannot be reached (never, in practice).
#[inline(always)]
fn local_ref() -> Option<&'static Local> {
    // SAFETY: `LOCAL` is `const`-initialised and has no destructor, so its storage is valid
    // for the whole life of this thread; the reference is used on this thread only (it is
    // not `Send`: `Local` holds `Cell`s) and never outlives the call that took it.
    unsafe { local_ptr().as_ref() }
}

/// The fast path's test, before an allocation of `bytes` calls the inner allocator: takes
/// `bytes` from the fast countdown and returns true if they fit, so the allocation may be
/// counted with [`fast_alloc`]. Returns false if they do not (the countdown runs out: a
/// sample point, or the thread is disarmed); the caller must then call [`fast_untake`] before
/// anything else.
#[inline(always)]
pub(crate) fn fast_take(bytes: usize) -> bool {
    let Some(fast) = fast_left() else {
        return false;
    };
    let left = fast.get();
    // Taken whatever the outcome (one subtraction in memory whose flags decide); the slow
    // path gives the bytes back with `fast_untake` before anything else.
    fast.set(left.wrapping_sub(bytes as u64));
    // Strictly smaller: the countdown reaching 0 is a sample point.
    (bytes as u64) < left
}

/// Undoes a [`fast_take`] that returned false, first thing on the slow path (no allocation
/// can come between them).
#[inline(always)]
pub(crate) fn fast_untake(bytes: usize) {
    if let Some(fast) = fast_left() {
        fast.set(fast.get().wrapping_add(bytes as u64));
    }
}

/// Gives back `bytes` taken by [`fast_take`] for an allocation that failed.
#[cold]
pub(crate) fn fast_give_back(bytes: usize) {
    if let Some(local) = local_ref() {
        // The countdown is the sum of both parts, so the bytes may go to either.
        local
            .sample_left
            .set(local.sample_left.get().wrapping_add(bytes as i64));
    }
}

/// Counts a new block of `bytes` of the current class, after [`fast_take`] allowed it, and
/// returns the block's trailer word.
#[inline(always)]
pub(crate) fn fast_alloc(bytes: usize) -> u64 {
    let Some(local) = local_ref() else {
        // Unreachable: `fast_take` returned true.
        return Tag::UNTRACKED.to_bits();
    };
    debug_assert_ne!(local.fast_bits.get(), NO_FAST);
    // SAFETY: the thread was armed at `fast_take`, so `fast_bits` was the trailer word of the
    // current tag and `counters` its class's counters, set by `retarget` from a page of the
    // shard this thread owns. The tag is the same now (a scope entered by nested code, such
    // as classtrack's overhead scope in the sampler, is left before it returns) and so are
    // they (see `retarget`); pages are never freed.
    let counters = unsafe { &*local.counters.get() };
    Sink::Owned(counters).apply(Event::Alloc(bytes));
    local.fast_bits.get()
}

/// Counts the free of a block of `bytes` whose trailer word is `bits` if it is a block of the
/// current tag that the fast path counts, and says so; otherwise counts nothing and returns
/// false (the caller then takes [`count`]'s path).
#[inline(always)]
pub(crate) fn fast_free(bits: u64, bytes: usize) -> bool {
    let Some(local) = local_ref() else {
        return false;
    };
    if local.fast_bits.get() != bits {
        return false;
    }
    // SAFETY: `fast_bits` is not `NO_FAST` (no trailer word is), so `counters` were set by
    // `retarget` from a page of the shard this thread owns (both are reset before the shard
    // is released); pages are never freed.
    let counters = unsafe { &*local.counters.get() };
    Sink::Owned(counters).apply(Event::Free(bytes));
    true
}

/// Moves the whole countdown into `sample_left`: every allocation takes the slow path until
/// [`rearm`].
#[inline]
fn disarm(local: &Local) {
    let fast = fast_left().map_or(0, |f| f.replace(0));
    local
        .sample_left
        .set(local.sample_left.get().wrapping_add(fast as i64));
    // What the fast path took since it was armed counts towards the next check.
    let taken = local.armed.replace(0).wrapping_sub(fast);
    local
        .peak_left
        .set(local.peak_left.get().wrapping_sub(taken as i64));
}

/// The shard this thread owns, if any.
#[inline]
fn shard_ref(local: &Local) -> Option<&'static Shard> {
    // SAFETY: a non-null `shard` was claimed by this thread in `shard_slow` and is only
    // cleared (by `Retire::drop`) before the shard is released; shards are never freed.
    unsafe { local.shard.get().as_ref() }
}

/// Brings `net` up to date with what the fast path counted through `base` since it was set,
/// and makes the counters' values now the new base.
#[inline]
fn settle(local: &Local) {
    let base = local.base.get();
    // SAFETY: a non-null `base` was set by `retarget` from a page of the shard this thread
    // owns, and is cleared before that shard is released; pages are never freed.
    if let Some(counters) = unsafe { base.as_ref() } {
        let (alloc, freed) = counters.owned_bytes();
        let grown = alloc.wrapping_sub(local.base_alloc.replace(alloc));
        let shrunk = freed.wrapping_sub(local.base_freed.replace(freed));
        let delta = grown.wrapping_sub(shrunk) as i64;
        local.net.set(local.net.get().wrapping_add(delta));
        if delta > 0 {
            note_grown(local, local.base_class.get());
        }
    }
}

/// Remembers that user class `class` grew on this thread since its last check.
#[inline]
fn note_grown(local: &Local, class: u32) {
    let mut grown = local.grown.get();
    let len = local.grown_len.get() as usize;
    if grown[..len].contains(&class) {
        return;
    }
    // Past `GROWN` classes, the oldest is replaced.
    let next = local.grown_next.get() as usize;
    grown[next] = class;
    local.grown.set(grown);
    local.grown_next.set(((next + 1) % GROWN) as u8);
    local.grown_len.set((len + 1).min(GROWN) as u8);
}

/// Adds `event` of `class` to `net`, when it was counted elsewhere than through `base`.
#[inline(always)]
fn note_net(local: &Local, class: ClassId, counters: *const Counters, event: Event) {
    if class >= ClassId::FIRST_USER && counters != local.base.get() {
        let delta = event.net();
        local.net.set(local.net.get().wrapping_add(delta));
        if delta > 0 {
            note_grown(local, class.0);
        }
    }
}

/// A check of the live user heap, when the thread has allocated [`PEAK_GRANULARITY`] bytes
/// since the last one (see `crate::peak`).
#[cold]
#[inline(never)]
fn peak_check(local: &Local) {
    local.peak_left.set(PEAK_GRANULARITY as i64);
    settle(local);
    if let Some(shard) = shard_ref(local) {
        shard.publish_net(local.net.get());
    }
    let grown = local.grown.get();
    let len = local.grown_len.replace(0) as usize;
    local.grown_next.set(0);
    let mut classes = [ClassId(0); GROWN];
    for (c, g) in classes.iter_mut().zip(&grown[..len]) {
        *c = ClassId(*g);
    }
    crate::peak::check(&classes[..len]);
}

/// Brings `counters` and `fast_bits` in line with the thread's tag after it (or the thread's
/// shard) changed, and disarms if the fast path cannot serve the tag. Never arms (see
/// [`rearm`]): an armed thread stays armed, with the new tag's counters.
///
/// A class whose page exists in the thread's shard is always found (through the page cache
/// or the shard's directory), so a thread armed for a tag keeps `fast_bits` equal to that
/// tag's trailer word for as long as the tag is current, whatever nested allocations (from an
/// inner allocator that allocates) do to the page cache meanwhile: an allocation between its
/// [`fast_take`] and its [`fast_alloc`] always finds the counters and trailer word of its tag.
#[inline]
fn retarget(local: &Local) {
    let bits = local.tag.get();
    let tag = Tag::from_bits(bits);
    let counters = if tag.object == 0 {
        counters_of(local, tag.class)
    } else {
        None
    };
    settle(local);
    local.base.set(ptr::null());
    // A measured thread counts every allocation on the slow path.
    let counters = counters.filter(|_| local.measure.get() == 0);
    match counters {
        Some(counters) => {
            local.counters.set(counters);
            local.fast_bits.set(tag.to_bits());
            if tag.class >= ClassId::FIRST_USER {
                let (alloc, freed) = counters.owned_bytes();
                local.base.set(counters);
                local.base_class.set(tag.class.0);
                local.base_alloc.set(alloc);
                local.base_freed.set(freed);
            }
            if bits & TRACE_ALL_BIT == 0 {
                return;
            }
        }
        None => local.fast_bits.set(NO_FAST),
    }
    disarm(local);
}

/// The counters of `class` in the shard this thread owns, if their page exists: from the
/// page cache, else from the shard's directory (without creating anything).
#[inline]
fn counters_of(local: &Local, class: ClassId) -> Option<&'static Counters> {
    // The page cache only ever holds a page of the shard this thread owns, and is emptied
    // before the shard is released.
    if local.page_key.get() == page_key(class) {
        // SAFETY: the cached page was set by `sink_slow` from this thread's own shard and
        // holds `class` (same key); pages are never freed.
        return Some(unsafe { &*local.page.get() }.counters(class));
    }
    counters_in_directory(local, class)
}

#[inline(never)]
fn counters_in_directory(local: &Local, class: ClassId) -> Option<&'static Counters> {
    let shard = local.shard.get();
    // SAFETY: a non-null `shard` was claimed by this thread in `shard_slow` and is only
    // cleared (by `Retire::drop`) before the shard is released; shards are never freed.
    let shard: &'static Shard = unsafe { shard.as_ref() }?;
    let page = shard.existing_page(class)?;
    Some(page.counters(class))
}

/// At the end of a slow path: points the fast path at the current tag and, when nothing rare
/// is in force, moves up to [`FAST_LEFT_MAX`] bytes of the countdown back into `fast_left`.
#[inline(never)]
pub(crate) fn rearm() {
    let Some(local) = local_ref() else {
        return;
    };
    retarget(local);
    if local.peak_left.get() <= 0 && !local.in_sampler.get() {
        peak_check(local);
    }
    if local.fast_bits.get() == NO_FAST
        || local.tag.get() & TRACE_ALL_BIT != 0
        || local.in_sampler.get()
    {
        return;
    }
    let Some(fast_left) = fast_left() else {
        return;
    };
    let mut total = local.sample_left.get().wrapping_add(fast_left.get() as i64);
    if total <= 0 {
        if !local.excluded.get() {
            // A sample point the sampler did not handle yet: the next allocation takes the
            // slow path to it.
            fast_left.set(0);
            local.sample_left.set(total);
            return;
        }
        // A thread excluded from sampling: no sample points, only a look now and then.
        total = EXCLUDED_RECHECK;
    }
    let fast = (total as u64)
        .min(FAST_LEFT_MAX)
        .min(local.peak_left.get().max(1) as u64);
    fast_left.set(fast);
    local.armed.set(fast);
    local.sample_left.set(total - fast as i64);
}

/// Sets the thread's tag word and brings the fast path in line.
#[inline]
fn set_tag_bits(local: &Local, bits: u64) -> u64 {
    let prev = local.tag.replace(bits);
    retarget(local);
    prev
}

/// The slow path of an allocation of `bytes`: disarms, counts it for the current tag's
/// class and counts it down; returns the tag, and whether the sampler must look at the block
/// (its countdown ran out, or its class is traced entirely: then the third value is true).
/// The caller calls [`rearm`] when it is done.
#[inline(always)]
pub(crate) fn count_alloc(bytes: usize) -> (Tag, bool, bool) {
    let Some(local) = local_ref() else {
        shared_count(ClassId::UNTRACKED, Event::Alloc(bytes));
        return (Tag::UNTRACKED, false, false);
    };
    disarm(local);
    let bits = local.tag.get();
    let tag = Tag::from_bits(bits);
    count_in(local, tag.class, Event::Alloc(bytes));
    local
        .peak_left
        .set(local.peak_left.get().wrapping_sub(bytes as i64));
    let trace_all = bits & TRACE_ALL_BIT != 0;
    let left = local.sample_left.get().wrapping_sub(bytes as i64);
    local.sample_left.set(left);
    (tag, left <= 0 || trace_all, trace_all)
}

/// Advances this thread's sample countdown by `bytes` (a realloc's new size); true if it ran
/// out: the caller then calls the sampler and [`rearm`].
#[inline(always)]
pub(crate) fn countdown(bytes: usize) -> bool {
    let (Some(local), Some(fast)) = (local_ref(), fast_left()) else {
        return false;
    };
    let left = fast.get();
    if (bytes as u64) < left {
        fast.set(left - bytes as u64);
        return false;
    }
    countdown_slow(local, bytes)
}

#[cold]
#[inline(never)]
fn countdown_slow(local: &Local, bytes: usize) -> bool {
    disarm(local);
    local
        .peak_left
        .set(local.peak_left.get().wrapping_sub(bytes as i64));
    let left = local.sample_left.get().wrapping_sub(bytes as i64);
    local.sample_left.set(left);
    if left > 0 {
        rearm();
    }
    left <= 0
}

/// Counts `event` (a free or resize of a block of `class`) on this thread.
#[inline(always)]
pub(crate) fn count(class: ClassId, event: Event) {
    let Some(local) = local_ref() else {
        return shared_count(class, event);
    };
    count_in(local, class, event)
}

#[inline(always)]
fn count_in(local: &Local, class: ClassId, event: Event) {
    if local.page_key.get() == page_key(class) {
        // SAFETY: the cached page was set by `sink_slow` from the shard this thread owns (it is
        // cleared before that shard is released), holds `class` (same key), and pages are
        // never freed.
        let counters = unsafe { &*local.page.get() }.counters(class);
        note_net(local, class, counters, event);
        Sink::Owned(counters).apply(event)
    } else if local.shared_key.get() == page_key(class) {
        // SAFETY: the cached page was set by `sink_slow` from the shared shard, for a thread
        // that owns a full shard (it is emptied when the shard is released), holds `class`
        // (same key), and pages are never freed.
        let counters = unsafe { &*local.shared_page.get() }.counters(class);
        note_net(local, class, counters, event);
        Sink::Shared(counters).apply(event)
    } else {
        match sink_slow(local, class) {
            Sink::Owned(counters) => {
                note_net(local, class, counters, event);
                Sink::Owned(counters).apply(event)
            }
            // A class beyond the thread's shard's pages (a thread with a shard of its own: the
            // net is the thread's, published with its shard's, not the shared shard's, which
            // every such thread would write).
            Sink::Shared(counters) if !local.shard.get().is_null() => {
                note_net(local, class, counters, event);
                Sink::Shared(counters).apply(event)
            }
            Sink::Shared(_) => shared_count(class, event),
            Sink::Lost => Sink::Lost.apply(event),
        }
    }
}

/// Counts `event` of `class` in the shared shard (a thread without a shard of its own).
#[cold]
fn shared_count(class: ClassId, event: Event) {
    shared_sink(class).apply(event);
    if class >= ClassId::FIRST_USER {
        shard::shared().add_shared_net(event.net());
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
        // The shard has all the pages it may take: this class is counted in the shared shard.
        None if shard.full() => match shard::shared().page(class) {
            Some(page) => {
                local.shared_key.set(page_key(class));
                local.shared_page.set(page);
                Sink::Shared(page.counters(class))
            }
            None => Sink::Lost,
        },
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
    // The shard's counts go on, and its part of the live user heap with them.
    local.net.set(shard.net());
    // Registering `RETIRE`'s destructor may allocate (the standard library keeps a list of
    // destructors). Those nested allocations find the shard set above and are classtrack's
    // own, so they are charged to the overhead class.
    let prev = set_tag_bits(local, Tag::OVERHEAD.to_bits());
    let registered = RETIRE.try_with(|_| ()).is_ok();
    set_tag_bits(local, prev);
    if registered {
        local.state.set(ACTIVE);
        Some(shard)
    } else {
        // The thread is already running its thread-local destructors: nothing would retire
        // the shard, so give it back now and count the rest of this thread's life through
        // the shared shard.
        local.shard.set(ptr::null());
        local.page_key.set(NO_PAGE);
        local.shared_key.set(NO_PAGE);
        local.state.set(EXITED);
        retarget(local);
        shard.release();
        None
    }
}

/// Makes this thread work for measurement `id` (0: none; see `crate::measure`) and returns the
/// previous one. While it is not 0 every allocation of the thread takes the slow path.
pub fn set_measurement(id: u8) -> u8 {
    let Some(local) = local_ref() else {
        return 0;
    };
    let prev = local.measure.replace(id);
    if prev != id {
        retarget(local);
        rearm();
    }
    prev
}

/// The measurement this thread works for, or 0.
#[inline]
pub fn current_measurement() -> u8 {
    LOCAL.try_with(|l| l.measure.get()).unwrap_or(0)
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
    if let Some(l) = local_ref() {
        let bits = l.tag.get();
        let want = crate::sampling::traces_all(Tag::from_bits(bits).class);
        set_tag_bits(
            l,
            if want {
                bits | TRACE_ALL_BIT
            } else {
                bits & !TRACE_ALL_BIT
            },
        );
    }
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
    match local_ref() {
        Some(l) => Tag::from_bits(set_tag_bits(l, bits)),
        None => Tag::UNTRACKED,
    }
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
