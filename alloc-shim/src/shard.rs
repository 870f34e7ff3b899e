//! Per-thread counter shards.
//!
//! A shard holds four monotonic counters per class (bytes and blocks allocated, bytes and
//! blocks freed) in pages of [`PAGE`] classes, found through a two-level directory, so a class
//! id is an index and any number of classes up to [`ClassId::LIMIT`] fits. Pages are taken
//! from [`System`] (never through tracking) the first time a class is used on a shard.
//!
//! A shard is written by the one thread that owns it, with a relaxed load and a store (no
//! read-modify-write); the reader sums all shards. Shards live in a push-only list and are
//! never freed: when a thread exits its shard is released and the next new thread claims it,
//! counts included. One static *shared* shard, written with `fetch_add`, takes the counts of
//! threads that have no shard of their own (while exiting, or while claiming one).

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicPtr, AtomicU64, AtomicUsize, Ordering};

use crate::ClassId;

/// Classes per page.
pub(crate) const PAGE: usize = 128;
/// The most pages of counters a thread's shard takes (1 MiB: 32,768 classes). A thread's
/// counts of classes on other pages go to the shared shard, with `fetch_add` (each class's
/// counters there are written by every thread that counts it): with many classes, memory
/// stays at this much per thread plus one page per 128 classes for the process.
pub const SHARD_PAGE_LIMIT: usize = 256;
/// Pages per mid-level table.
const MID: usize = 512;
/// Mid-level tables per shard.
const ROOT: usize = ClassId::LIMIT as usize / (PAGE * MID);

/// The counters of one class in one shard.
#[derive(Default)]
pub(crate) struct Counters {
    alloc_bytes: AtomicU64,
    allocs: AtomicU64,
    freed_bytes: AtomicU64,
    frees: AtomicU64,
}

pub(crate) struct Page {
    counters: [Counters; PAGE],
}

struct Mid {
    pages: [AtomicPtr<Page>; MID],
}

pub(crate) struct Shard {
    root: [AtomicPtr<Mid>; ROOT],
    /// Whether a thread owns the shard. The shared shard is always owned.
    owned: AtomicBool,
    /// The next shard in the list; written once, before the shard is published.
    next: AtomicPtr<Shard>,
    /// The net bytes of user classes (allocated minus freed) counted in this shard, as its
    /// owner last published them (see `crate::peak`); for the shared shard, kept exact with
    /// `fetch_add`. Lags the counters by what the owner allocated since its last check.
    net: AtomicI64,
    /// Pages installed in a per-thread shard (written by its owner only; the shared shard's
    /// are not counted).
    pages: AtomicUsize,
}

/// The head of the push-only list of per-thread shards.
static SHARDS: AtomicPtr<Shard> = AtomicPtr::new(ptr::null_mut());
/// Counts of threads without a shard of their own.
static SHARED: Shard = Shard::empty();
/// Bytes taken from `System` for shards and pages.
static SHARD_BYTES: AtomicU64 = AtomicU64::new(0);
/// Shards ever created.
static SHARD_COUNT: AtomicU64 = AtomicU64::new(0);
/// Counter updates dropped because `System` had no memory for a page.
static LOST: AtomicU64 = AtomicU64::new(0);

#[inline]
pub(crate) fn shared() -> &'static Shard {
    &SHARED
}

/// Allocates zeroed memory for a `T` whose all-zero bit pattern is valid, from `System`.
fn zeroed_from_system<T>() -> *mut T {
    let layout = Layout::new::<T>();
    // SAFETY: `T` is a shard, mid table or page: non-zero size.
    let p = unsafe { System.alloc_zeroed(layout) }.cast::<T>();
    if !p.is_null() {
        // Relaxed: a statistic, read without any ordering requirement.
        SHARD_BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
    }
    p
}

/// Claims a released shard or creates one. Cold: once per thread.
pub(crate) fn claim() -> Option<&'static Shard> {
    // Acquire: the shards we walk were published with release; see their `next` and `owned`.
    let mut p = SHARDS.load(Ordering::Acquire);
    while !p.is_null() {
        // SAFETY: shards in the list are never freed.
        let shard = unsafe { &*p };
        // Acquire on success: pairs with the release in `release`, so the counts the previous
        // owner stored are visible before this thread continues them with load + store.
        if shard
            .owned
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return Some(shard);
        }
        p = shard.next.load(Ordering::Relaxed);
    }
    let p = zeroed_from_system::<Shard>();
    if p.is_null() {
        return None;
    }
    // SAFETY: `p` is a fresh, zeroed, exclusively owned allocation; all-zero is a valid
    // `Shard` (null pointers, false, zero). Not yet published, so plain access is fine.
    let shard = unsafe { &*p };
    shard.owned.store(true, Ordering::Relaxed);
    let mut head = SHARDS.load(Ordering::Relaxed);
    loop {
        shard.next.store(head, Ordering::Relaxed);
        // Release: publishes the shard's initialised fields to readers that acquire the head.
        match SHARDS.compare_exchange_weak(head, p, Ordering::Release, Ordering::Relaxed) {
            Ok(_) => break,
            Err(h) => head = h,
        }
    }
    // Relaxed: a statistic.
    SHARD_COUNT.fetch_add(1, Ordering::Relaxed);
    Some(shard)
}

impl Shard {
    /// A shard with no pages, always owned: for statics written with `fetch_add`.
    pub(crate) const fn empty() -> Shard {
        Shard {
            root: [const { AtomicPtr::new(ptr::null_mut()) }; ROOT],
            owned: AtomicBool::new(true),
            next: AtomicPtr::new(ptr::null_mut()),
            net: AtomicI64::new(0),
            pages: AtomicUsize::new(0),
        }
    }

    /// The net user bytes last published for this shard.
    #[inline]
    pub(crate) fn net(&self) -> i64 {
        // Relaxed: an estimate, read without ordering (see `crate::peak`).
        self.net.load(Ordering::Relaxed)
    }

    /// Publishes the owner's net user bytes (owner only: a store, no read-modify-write).
    #[inline]
    pub(crate) fn publish_net(&self, net: i64) {
        // Relaxed: readers sum the shards for an estimate; nothing else is read through it.
        // The next owner of a released shard sees the last value through `release`/`claim`.
        self.net.store(net, Ordering::Relaxed);
    }

    /// Adds to the shared shard's net user bytes (any thread may write it: `fetch_add`).
    #[cold]
    pub(crate) fn add_shared_net(&self, delta: i64) {
        // Relaxed: as `publish_net`.
        self.net.fetch_add(delta, Ordering::Relaxed);
    }

    /// The page holding `index`'s counters if it exists, without creating it.
    pub(crate) fn existing_page(&self, index: ClassId) -> Option<&Page> {
        let i = index.index();
        // Acquire: see the zeroed contents of tables installed by other threads.
        let mid = self.root[(i / (PAGE * MID)) % ROOT].load(Ordering::Acquire);
        // SAFETY: installed tables are never freed.
        let mid = unsafe { mid.as_ref() }?;
        let page = mid.pages[(i / PAGE) % MID].load(Ordering::Acquire);
        // SAFETY: installed pages are never freed.
        unsafe { page.as_ref() }
    }

    /// Hands the shard to the next new thread.
    pub(crate) fn release(&self) {
        // Release: everything this thread stored in the shard happens-before the next owner's
        // acquire in `claim`.
        self.owned.store(false, Ordering::Release);
    }

    /// The page holding `class`'s counters, creating it (and its table) if needed. `None`
    /// when `System` has no memory for a page, or when a per-thread shard has its
    /// [`SHARD_PAGE_LIMIT`] of pages ([`full`](Self::full)). Off the hot path: the caller caches
    /// the page. For a per-thread shard, called by its owner only.
    pub(crate) fn page(&'static self, class: ClassId) -> Option<&'static Page> {
        if let Some(page) = self.existing_page(class) {
            return Some(page);
        }
        if self.full() {
            return None;
        }
        let i = class.index();
        debug_assert!(i < ClassId::LIMIT as usize);
        // Indices are masked so that a bad id cannot go out of bounds.
        let mid = install(&self.root[(i / (PAGE * MID)) % ROOT])?;
        let page = install(&mid.pages[(i / PAGE) % MID])?;
        if !ptr::eq(self, &SHARED) {
            // Relaxed load + store: only the owner installs pages in its shard; the next owner
            // sees the count through `release`/`claim`.
            store_add_usize(&self.pages, 1);
        }
        Some(page)
    }

    /// Whether this is a per-thread shard with its [`SHARD_PAGE_LIMIT`] of pages: its owner
    /// counts classes on other pages in the shared shard.
    #[inline]
    pub(crate) fn full(&self) -> bool {
        // Relaxed: written by the owner only, which is the caller (or the shard is shared,
        // whose count stays 0).
        self.pages.load(Ordering::Relaxed) >= SHARD_PAGE_LIMIT
    }
}

impl Page {
    /// The counters of `class`, which must belong to this page.
    #[inline(always)]
    pub(crate) fn counters(&self, class: ClassId) -> &Counters {
        &self.counters[class.index() % PAGE]
    }
}

/// The page (a group of [`PAGE`] consecutive class ids) that holds `class`.
#[inline(always)]
pub(crate) const fn page_key(class: ClassId) -> u32 {
    class.0 / PAGE as u32
}

/// Where an allocator event is counted.
pub(crate) enum Sink {
    /// Counters in a shard that only this thread writes: load + store.
    Owned(&'static Counters),
    /// Counters in the shared shard: `fetch_add`.
    Shared(&'static Counters),
    /// No memory for a page: the event is counted in [`ShimStats::lost_updates`] only.
    Lost,
}

/// An allocator event to count.
#[derive(Clone, Copy)]
pub(crate) enum Event {
    /// A new block of this many bytes.
    Alloc(usize),
    /// A freed block of this many bytes.
    Free(usize),
    /// A block resized from the first size to the second.
    Resize(usize, usize),
}

impl Event {
    /// What the event adds to a class's live bytes.
    #[inline(always)]
    pub(crate) fn net(self) -> i64 {
        match self {
            Event::Alloc(bytes) => bytes as i64,
            Event::Free(bytes) => (bytes as i64).wrapping_neg(),
            Event::Resize(old, new) => (new as i64).wrapping_sub(old as i64),
        }
    }
}

impl Sink {
    /// Counts `event`.
    #[inline(always)]
    pub(crate) fn apply(&self, event: Event) {
        match event {
            Event::Alloc(bytes) => self.alloc(bytes),
            Event::Free(bytes) => self.free(bytes),
            Event::Resize(old, new) => self.resize(old, new),
        }
    }

    /// Counts a new block of `bytes`.
    #[inline(always)]
    fn alloc(&self, bytes: usize) {
        match self {
            Sink::Owned(c) => {
                // Relaxed load + store: only the owning thread writes this shard. Allocations
                // need no release: a reader that sees a free acquires everything that happened
                // before it, the allocation included.
                store_add(&c.alloc_bytes, bytes as u64, Ordering::Relaxed);
                store_add(&c.allocs, 1, Ordering::Relaxed);
            }
            Sink::Shared(c) => shared_add(&c.alloc_bytes, &c.allocs, bytes, Ordering::Relaxed),
            Sink::Lost => lost(),
        }
    }

    /// Counts the free of a block of `bytes`.
    #[inline(always)]
    fn free(&self, bytes: usize) {
        match self {
            Sink::Owned(c) => {
                // Release store: a reader that acquires this free also sees the allocation it
                // undoes (which happened before it), so live figures never go negative. A
                // plain store on x86.
                store_add(&c.freed_bytes, bytes as u64, Ordering::Release);
                store_add(&c.frees, 1, Ordering::Release);
            }
            Sink::Shared(c) => shared_add(&c.freed_bytes, &c.frees, bytes, Ordering::Release),
            Sink::Lost => lost(),
        }
    }

    /// Counts a block resized from `old` to `new` bytes: growth as allocated bytes, shrinkage
    /// as freed bytes (with the orderings of `alloc` and `free`).
    #[inline(always)]
    fn resize(&self, old: usize, new: usize) {
        let (counter, delta, order) = match (self, new >= old) {
            (Sink::Lost, _) => return lost(),
            (Sink::Owned(c) | Sink::Shared(c), true) => {
                (&c.alloc_bytes, (new - old) as u64, Ordering::Relaxed)
            }
            (Sink::Owned(c) | Sink::Shared(c), false) => {
                (&c.freed_bytes, (old - new) as u64, Ordering::Release)
            }
        };
        if matches!(self, Sink::Owned(_)) {
            store_add(counter, delta, order);
        } else {
            counter.fetch_add(delta, order);
        }
    }
}

/// Adds `n` to a count that only the current thread writes: a relaxed load and store.
#[inline]
fn store_add_usize(c: &AtomicUsize, n: usize) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

/// Adds to a counter that only the current thread writes: a relaxed load and a store with
/// `order`, no read-modify-write.
#[inline(always)]
fn store_add(counter: &AtomicU64, n: u64, order: Ordering) {
    counter.store(counter.load(Ordering::Relaxed).wrapping_add(n), order);
}

/// The shared shard's update: any thread may write, so read-modify-write. Cold in practice
/// (threads without a shard of their own: exiting, or claiming one).
#[cold]
fn shared_add(bytes_c: &AtomicU64, blocks_c: &AtomicU64, bytes: usize, order: Ordering) {
    bytes_c.fetch_add(bytes as u64, order);
    blocks_c.fetch_add(1, order);
}

impl Counters {
    /// Bytes allocated and bytes freed so far, for the thread that owns the shard (relaxed:
    /// it wrote them itself).
    #[inline]
    pub(crate) fn owned_bytes(&self) -> (u64, u64) {
        (
            self.alloc_bytes.load(Ordering::Relaxed),
            self.freed_bytes.load(Ordering::Relaxed),
        )
    }

    /// Sets every counter to zero: only for counters that no thread writes now (see
    /// [`reset_object`](crate::reset_object)).
    pub(crate) fn reset(&self) {
        // Relaxed: nobody writes these counters now; whoever writes or reads them next does so
        // after a hand-over (a lock, a queue) that orders it after these stores.
        for c in [
            &self.alloc_bytes,
            &self.allocs,
            &self.freed_bytes,
            &self.frees,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }

    /// Reads the counters, frees (acquire) before allocations, so that a free is never seen
    /// without its allocation.
    pub(crate) fn read(&self) -> ClassCounters {
        // Acquire: pairs with the release of frees; see `read_totals`.
        let frees = self.frees.load(Ordering::Acquire);
        let freed_bytes = self.freed_bytes.load(Ordering::Acquire);
        // Relaxed: allocations that happened before a free seen above are visible already.
        ClassCounters {
            allocated_bytes: self.alloc_bytes.load(Ordering::Relaxed),
            allocations: self.allocs.load(Ordering::Relaxed),
            freed_bytes,
            frees,
        }
    }
}

#[cold]
pub(crate) fn lost() {
    // Relaxed: a statistic.
    LOST.fetch_add(1, Ordering::Relaxed);
}

/// Returns the table behind `slot`, installing a zeroed one if there is none yet.
fn install<T>(slot: &AtomicPtr<T>) -> Option<&T> {
    // Acquire: see the zeroed contents of a table another thread installed.
    let cur = slot.load(Ordering::Acquire);
    if !cur.is_null() {
        // SAFETY: installed tables are never freed.
        return Some(unsafe { &*cur });
    }
    let new = zeroed_from_system::<T>();
    if new.is_null() {
        return None;
    }
    // Release on success: publishes the zeroed table; Acquire on failure: see the winner's.
    match slot.compare_exchange(ptr::null_mut(), new, Ordering::AcqRel, Ordering::Acquire) {
        // SAFETY: `new` is a valid zeroed `T` (all-zero is valid for pages and tables) that is
        // now installed for good.
        Ok(_) => Some(unsafe { &*new }),
        Err(winner) => {
            // SAFETY: `new` came from `System.alloc_zeroed` with this layout and was never
            // shared.
            unsafe { System.dealloc(new.cast(), Layout::new::<T>()) };
            // Relaxed: a statistic.
            SHARD_BYTES.fetch_sub(std::mem::size_of::<T>() as u64, Ordering::Relaxed);
            // SAFETY: installed tables are never freed.
            Some(unsafe { &*winner })
        }
    }
}

/// One class's totals over all threads, as read by [`read_totals`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClassCounters {
    /// Bytes ever allocated (new blocks plus realloc growth).
    pub allocated_bytes: u64,
    /// Blocks ever allocated.
    pub allocations: u64,
    /// Bytes ever freed (freed blocks plus realloc shrinkage).
    pub freed_bytes: u64,
    /// Blocks ever freed.
    pub frees: u64,
}

impl ClassCounters {
    /// Bytes live now: allocated minus freed.
    pub fn live_bytes(&self) -> u64 {
        debug_assert!(self.allocated_bytes >= self.freed_bytes);
        self.allocated_bytes.saturating_sub(self.freed_bytes)
    }

    /// Blocks live now: allocated minus freed.
    pub fn live_blocks(&self) -> u64 {
        debug_assert!(self.allocations >= self.frees);
        self.allocations.saturating_sub(self.frees)
    }
}

/// Calls `f` with every page of `shard` that exists and holds a class id in `from..to`, and
/// the first class id of the page.
fn for_each_page(shard: &Shard, from: usize, to: usize, mut f: impl FnMut(usize, &Page)) {
    let first_root = from / (PAGE * MID);
    for (r, slot) in shard.root.iter().enumerate().skip(first_root) {
        let base_r = r * PAGE * MID;
        if base_r >= to {
            break;
        }
        // Acquire: see the contents of tables installed by other threads.
        let mid = slot.load(Ordering::Acquire);
        if mid.is_null() {
            continue;
        }
        let first_mid = from.saturating_sub(base_r) / PAGE;
        // SAFETY: installed tables are never freed.
        for (m, slot) in unsafe { &*mid }.pages.iter().enumerate().skip(first_mid) {
            let base = base_r + m * PAGE;
            if base >= to {
                break;
            }
            let page = slot.load(Ordering::Acquire);
            if !page.is_null() {
                // SAFETY: installed pages are never freed.
                f(base, unsafe { &*page });
            }
        }
    }
}

/// Calls `f` with the shared shard and every per-thread shard. The list head is acquired, so
/// every shard published before the call is seen.
fn for_each_shard(mut f: impl FnMut(&Shard)) {
    f(&SHARED);
    let mut p = SHARDS.load(Ordering::Acquire);
    while !p.is_null() {
        // SAFETY: shards in the list are never freed.
        let shard = unsafe { &*p };
        f(shard);
        p = shard.next.load(Ordering::Relaxed);
    }
}

/// The sum of every shard's published net user bytes (see `crate::peak`): the live user heap,
/// less at most what each thread allocated since its last check.
pub(crate) fn sum_nets() -> i64 {
    let mut sum = 0i64;
    for_each_shard(|shard| sum = sum.wrapping_add(shard.net()));
    sum
}

/// The live bytes of `class` now, summed over every shard (frees read first, as in
/// [`read_totals`]). Allocates nothing: for the allocation path's cold path.
pub(crate) fn class_live(class: ClassId) -> u64 {
    let (mut alloc, mut freed) = (0u64, 0u64);
    for_each_shard(|shard| {
        if let Some(page) = shard.existing_page(class) {
            // Acquire: pairs with the release stores of frees.
            freed = freed.wrapping_add(page.counters(class).freed_bytes.load(Ordering::Acquire));
        }
    });
    for_each_shard(|shard| {
        if let Some(page) = shard.existing_page(class) {
            // Relaxed: as in `read_totals`.
            alloc = alloc.wrapping_add(page.counters(class).alloc_bytes.load(Ordering::Relaxed));
        }
    });
    alloc.saturating_sub(freed)
}

/// The live bytes of each class of `classes` now (into `live`, one per class, in order),
/// summed over every shard: all freed counters read first (acquire), then all allocated ones,
/// as in [`read_totals`], so no figure is ever below the truth at the moment the frees were
/// read. Allocates nothing. Costs two loads per class and per shard (a class absent from a
/// shard costs a pointer load there); put classes of one page together (sort `classes`) to
/// read each page's counters together.
///
/// # Panics
///
/// If `live` is shorter than `classes`.
pub fn read_live_bytes(classes: &[ClassId], live: &mut [u64]) {
    let live = &mut live[..classes.len()];
    let mut freed = [0u64; 64];
    for (classes, live) in classes.chunks(freed.len()).zip(live.chunks_mut(64)) {
        let freed = &mut freed[..classes.len()];
        freed.fill(0);
        live.fill(0);
        for_each_counters(classes, |k, c| {
            // Acquire: pairs with the release stores of frees (see `on_free`).
            freed[k] = freed[k].wrapping_add(c.freed_bytes.load(Ordering::Acquire));
        });
        for_each_counters(classes, |k, c| {
            // Relaxed: as in `read_totals`.
            live[k] = live[k].wrapping_add(c.alloc_bytes.load(Ordering::Relaxed));
        });
        for (l, f) in live.iter_mut().zip(freed.iter()) {
            *l = l.saturating_sub(*f);
        }
    }
}

/// Calls `f(k, counters)` for the counters of each class `classes[k]` in every shard that has
/// its page (consecutive classes of one page share one lookup of it).
fn for_each_counters(classes: &[ClassId], mut f: impl FnMut(usize, &Counters)) {
    for_each_shard(|shard| {
        let mut page: Option<(u32, Option<&Page>)> = None;
        for (k, &class) in classes.iter().enumerate() {
            if class.0 >= ClassId::LIMIT {
                continue;
            }
            let p = match page {
                Some((key, p)) if key == page_key(class) => p,
                _ => {
                    let p = shard.existing_page(class);
                    page = Some((page_key(class), p));
                    p
                }
            };
            if let Some(p) = p {
                f(k, p.counters(class));
            }
        }
    });
}

/// Sums every shard's counters for the class ids below `classes`.
///
/// Reads all *freed* counters (acquire) before all *allocated* counters, so a free is never
/// seen without the allocation it undoes: each class's live figures are never negative. This
/// allocates the returned vector; call it outside the hot path (classtrack calls it under its
/// [`OverheadGuard`](crate::OverheadGuard)).
pub fn read_totals(classes: usize) -> Vec<ClassCounters> {
    let classes = classes.min(ClassId::LIMIT as usize);
    let mut out = vec![ClassCounters::default(); classes];
    read_totals_from(0, &mut out);
    out
}

/// Sums every shard's counters for the classes `first..first + out.len()` into `out` (which
/// it overwrites), as [`read_totals`] does: freed counters before allocated ones, so each
/// class's live figures are never negative. Allocates nothing: a reader of many classes goes
/// through them a window at a time, without a buffer the size of every class.
pub fn read_totals_from(first: usize, out: &mut [ClassCounters]) {
    let first = first.min(ClassId::LIMIT as usize);
    let end = (first + out.len()).min(ClassId::LIMIT as usize);
    out.fill(ClassCounters::default());
    let out = &mut out[..end - first];
    // The classes of `page` (whose first class is `base`) within `first..end`: their counters
    // and where each goes in `out`.
    fn window(first: usize, base: usize, page: &Page) -> (impl Iterator<Item = &Counters>, usize) {
        let skip = first.saturating_sub(base);
        (page.counters.iter().skip(skip), base + skip - first)
    }
    for_each_shard(|shard| {
        for_each_page(shard, first, end, |base, page| {
            let (counters, at) = window(first, base, page);
            for (o, c) in out[at..].iter_mut().zip(counters) {
                // Acquire: pairs with the release stores of frees (see `on_free`).
                o.frees += c.frees.load(Ordering::Acquire);
                o.freed_bytes += c.freed_bytes.load(Ordering::Acquire);
            }
        })
    });
    // The list is walked again: a shard published after the first walk may hold the
    // allocation of a block whose free the first walk saw.
    for_each_shard(|shard| {
        for_each_page(shard, first, end, |base, page| {
            let (counters, at) = window(first, base, page);
            for (o, c) in out[at..].iter_mut().zip(counters) {
                // Relaxed: every allocation that happened before a free seen above is already
                // visible through that acquire; later ones may or may not be counted.
                o.allocations += c.allocs.load(Ordering::Relaxed);
                o.allocated_bytes += c.alloc_bytes.load(Ordering::Relaxed);
            }
        })
    });
}

/// Statistics about the shim itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShimStats {
    /// Bytes of counter shards and pages, taken from the system allocator.
    pub shard_bytes: u64,
    /// Shards ever created: at most the largest number of threads alive at once, plus those
    /// created while others were being retired.
    pub shards: u64,
    /// Shards owned by a live thread now.
    pub shards_in_use: u64,
    /// Counter updates dropped because the system allocator had no memory for a page (0 in
    /// any healthy process).
    pub lost_updates: u64,
}

/// Reads the shim's own statistics.
pub fn shim_stats() -> ShimStats {
    let mut in_use = 0;
    let mut p = SHARDS.load(Ordering::Acquire);
    while !p.is_null() {
        // SAFETY: shards in the list are never freed.
        let shard = unsafe { &*p };
        // Relaxed: a statistic.
        in_use += u64::from(shard.owned.load(Ordering::Relaxed));
        p = shard.next.load(Ordering::Relaxed);
    }
    // Relaxed: statistics.
    ShimStats {
        shard_bytes: SHARD_BYTES.load(Ordering::Relaxed),
        shards: SHARD_COUNT.load(Ordering::Relaxed),
        shards_in_use: in_use,
        lost_updates: LOST.load(Ordering::Relaxed),
    }
}
