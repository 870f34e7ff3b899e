//! Noticing a new peak of the live user heap from the allocation path, without a poll.
//!
//! The live user heap is the sum over user classes (ids from [`ClassId::FIRST_USER`]) of
//! bytes allocated minus bytes freed. Each thread keeps its own part of it, exact, in a plain
//! thread-local (`net`): the allocations and frees it counts through its fast path are read
//! back from its current class's counters when the class changes or at a check (see
//! `local::settle`), the others are added as they are counted. Nothing of this is on the fast
//! path: the fast path only counts down, as it does for sampling.
//!
//! A thread *checks* every [`PEAK_GRANULARITY`] bytes it allocates (its countdown to the next
//! check shares the fast countdown with the sampler's): it publishes its net in its shard
//! (a store: only it writes there), sums the published nets of all shards (one load per
//! shard) and, when the sum reaches the level the watcher set ([`watch_peak`]) and has grown
//! by a step since its lowest point after the last wake, unparks the watcher thread
//! ([`set_peak_waker`]), which takes the snapshot. A check is on the cold path: it may do
//! a `fetch_min` on [`LOW`] and the unpark.
//!
//! # What the sum tells
//!
//! Every thread has allocated less than [`PEAK_GRANULARITY`] bytes since its last check, and
//! its frees since then only lower the true figure: so at any moment the published sum is
//! at least the live user heap minus threads × [`PEAK_GRANULARITY`]. It can be above it: a
//! thread's frees since its last check are published at its next one.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::thread::Thread;

use crate::shard;
use crate::ClassId;

/// Bytes a thread allocates between two checks of the live user heap.
pub const PEAK_GRANULARITY: u64 = 256 << 10;

/// The published sum at which a check wakes the watcher; `u64::MAX`: nobody watches.
static LEVEL: AtomicU64 = AtomicU64::new(u64::MAX);
/// How much the sum must have grown since its lowest point after the last wake.
static STEP: AtomicU64 = AtomicU64::new(0);
/// The lowest sum a check saw since the last wake (0 until the first).
static LOW: AtomicU64 = AtomicU64::new(0);
/// The watcher thread: a leaked box, never freed (an allocating thread may be unparking it
/// while it is replaced).
static WAKER: AtomicPtr<Thread> = AtomicPtr::new(std::ptr::null_mut());
/// Checks made, and wakes sent (statistics).
static CHECKS: AtomicU64 = AtomicU64::new(0);
static WAKES: AtomicU64 = AtomicU64::new(0);

/// Asks checks to wake the watcher when the published sum reaches `level` bytes, and then
/// again each time it has grown by `step` bytes from its lowest point since the last wake.
/// `level` `u64::MAX` stops the wakes.
///
/// A sum above the true heap (frees not published yet) cannot wake the watcher again and
/// again: it must fall and rise by `step` first.
pub fn watch_peak(level: u64, step: u64) {
    // Relaxed: checks read these for a decision that may lag a little; the wake that
    // follows does not depend on seeing them in order.
    STEP.store(step, Ordering::Relaxed);
    LEVEL.store(level, Ordering::Relaxed);
}

/// Makes `thread` the one a check unparks. The previous handle is leaked, not freed.
pub fn set_peak_waker(thread: Thread) {
    let new = Box::into_raw(Box::new(thread));
    // Release: a check that loads the pointer (acquire) sees the handle's contents.
    WAKER.swap(new, Ordering::Release);
    // The previous box is never freed: a check may be using it.
    LOW.store(0, Ordering::Relaxed);
}

/// The live user heap as the threads last published it: at least the true figure minus
/// threads × [`PEAK_GRANULARITY`]; above it by frees not published yet.
pub fn user_heap_estimate() -> u64 {
    shard::sum_nets().max(0) as u64
}

/// Checks made and watcher wakes sent since the process started.
pub fn peak_checks() -> (u64, u64) {
    // Relaxed: statistics.
    (
        CHECKS.load(Ordering::Relaxed),
        WAKES.load(Ordering::Relaxed),
    )
}

/// Classes per page of [`CLASS_LEVELS`].
const LEVEL_PAGE: usize = 1024;

/// Per class, the live bytes at which a check wakes the watcher, in pages of [`LEVEL_PAGE`]
/// classes taken from [`System`] when the watcher first sets a level in them. A class whose
/// page does not exist has level 0: its first check wakes the watcher, which sets it.
static CLASS_LEVELS: [AtomicPtr<[AtomicU64; LEVEL_PAGE]>; ClassId::LIMIT as usize / LEVEL_PAGE] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; ClassId::LIMIT as usize / LEVEL_PAGE];

/// The level of `class` (see [`CLASS_LEVELS`]).
fn class_level(class: ClassId) -> u64 {
    // Acquire: see the zeroed page installed by the watcher.
    let page =
        CLASS_LEVELS[class.index() / LEVEL_PAGE % CLASS_LEVELS.len()].load(Ordering::Acquire);
    // SAFETY: installed pages are never freed.
    match unsafe { page.as_ref() } {
        // Relaxed: a decision that may lag a little (see `watch_peak`).
        Some(page) => page[class.index() % LEVEL_PAGE].load(Ordering::Relaxed),
        None => 0,
    }
}

/// Makes checks wake the watcher when `class`'s live bytes reach `level`. For the watcher, off
/// the allocation path: it may take a page from the system allocator (8 KiB for 1,024
/// classes); when the system has none, the class keeps waking the watcher at each check.
pub fn set_class_level(class: ClassId, level: u64) {
    if class.0 >= ClassId::LIMIT {
        return;
    }
    let slot = &CLASS_LEVELS[class.index() / LEVEL_PAGE];
    // Acquire: as in `class_level`.
    let mut page = slot.load(Ordering::Acquire);
    if page.is_null() {
        let layout = Layout::new::<[AtomicU64; LEVEL_PAGE]>();
        // SAFETY: a non-zero size; all-zero is a valid array of atomics.
        let fresh = unsafe { System.alloc_zeroed(layout) }.cast::<[AtomicU64; LEVEL_PAGE]>();
        if fresh.is_null() {
            return;
        }
        // AcqRel: publishes the zeroed page; on failure, see the one another thread installed.
        page = match slot.compare_exchange(
            std::ptr::null_mut(),
            fresh,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => fresh,
            Err(installed) => {
                // SAFETY: `fresh` was allocated above with `layout` and never published.
                unsafe { System.dealloc(fresh.cast(), layout) };
                installed
            }
        };
    }
    // SAFETY: installed pages are never freed.
    let page = unsafe { &*page };
    // Relaxed: see `watch_peak`.
    page[class.index() % LEVEL_PAGE].store(level, Ordering::Relaxed);
}

/// Whether a class that grew since the thread's last check is at or above its level.
#[cold]
pub(crate) fn class_at_level(class: ClassId) -> bool {
    // Relaxed: see `watch_peak`.
    if LEVEL.load(Ordering::Relaxed) == u64::MAX {
        return false;
    }
    shard::class_live(class) >= class_level(class)
}

/// Wakes the watcher.
#[cold]
pub(crate) fn wake() {
    // Acquire: pairs with `set_peak_waker`'s release.
    let waker = WAKER.load(Ordering::Acquire);
    // SAFETY: a non-null `WAKER` is a leaked box, never freed.
    if let Some(thread) = unsafe { waker.as_ref() } {
        // Relaxed: a statistic.
        WAKES.fetch_add(1, Ordering::Relaxed);
        // `unpark` allocates nothing and takes no lock a thread inside the allocator may hold
        // (a futex or the platform's equivalent).
        thread.unpark();
    }
}

/// A thread's check, after it published its net: wakes the watcher if the sum is a new high,
/// or one of `classes` (those the thread allocated into since its last check) is at its level.
#[cold]
pub(crate) fn check(classes: &[ClassId]) {
    // Relaxed: statistics.
    CHECKS.fetch_add(1, Ordering::Relaxed);
    // Relaxed: see `watch_peak`.
    let level = LEVEL.load(Ordering::Relaxed);
    if level == u64::MAX {
        return;
    }
    let sum = user_heap_estimate();
    // Relaxed: a lower bound kept for this decision only; a race between two checks can at
    // worst cost one wake more or one later.
    let low = LOW.fetch_min(sum, Ordering::Relaxed).min(sum);
    if sum >= level && sum - low >= STEP.load(Ordering::Relaxed) {
        LOW.store(sum, Ordering::Relaxed);
        return wake();
    }
    if classes.iter().any(|&c| class_at_level(c)) {
        wake();
    }
}
