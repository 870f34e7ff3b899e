//! Allocation sites per class: the shim's samples, aggregated off the hot path.
//!
//! A background thread (`classtrack-sampler`) drains the shim's sample channel and keeps, per
//! (class, stack), estimated bytes and blocks allocated and live. A sample of `Z` bytes taken
//! with mean `R` stands for `1 / (1 - e^(-Z/R))` blocks and `Z` times that in bytes (the
//! inverse of its chance of being sampled), so the estimates are unbiased; a block of a class
//! traced entirely stands for itself. A block made by `realloc` is sampled as a new block of
//! its new size (so live estimates stay unbiased), but adds only its weighted growth to the
//! bytes allocated, the quantity the class's exact `allocated_bytes` counts (so a site that
//! grows blocks can show more live than allocated). Stacks are raw return addresses until
//! shown.
//!
//! How stacks are symbolized and trimmed: see [`Site`].
//!
//! The thread runs only while sampling is on: it is started by the first tracker, snapshot or
//! [`set_sample_mean`] that finds sampling on, and started again if it ever died (counted in
//! [`SamplingStats::aggregator_restarts`](crate::SamplingStats)) or after a `fork()`.
//!
//! Its two locks (the aggregate and the symbol cache) are `std::sync::Mutex`, not
//! parking_lot's: `fork_prepare` holds them across `fork()`, and the child unlocks them; a
//! futex-based unlock touches only the lock's own word (and makes a wake-up system call),
//! where parking_lot's unlock of a lock with parked waiters goes through parking_lot_core's
//! global table, whose bucket locks a vanished thread may hold. Neither lock is ever held
//! while another is taken.

use std::cell::UnsafeCell;
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use classtrack_shim::{
    sample_receivers, ClassId, OverheadGuard, SampleEvent, SampleRecord, StackRecord,
};
use crossbeam_channel::Receiver;
use hashbrown::hash_map::Entry;
use hashbrown::HashMap;
use serde::{Deserialize, Serialize};

/// One frame of an allocation stack, symbolized.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Frame {
    /// The function's demangled name (or its address when it has no symbol).
    pub function: String,
    /// The source file, when debug info has it.
    pub file: Option<String>,
    /// The line, when debug info has it.
    pub line: Option<u32>,
    /// Whether this frame was inlined into the next one.
    pub inlined: bool,
}

/// A sampled allocation site of a live [`Snapshot`](crate::Snapshot): one class, one raw
/// stack (return addresses, symbolized by [`frames`](Site::frames)), and its [`Estimate`].
///
/// [`SiteStats`](crate::SiteStats) is a site as kept in [`Stats`](crate::Stats) and dumps (its
/// class by name, its stack symbolized and shared); [`SiteSummary`](crate::SiteSummary) is a
/// leak suspect's site (its frames inline). All three carry the same [`Estimate`]; a class's
/// exact totals are [`ClassTotals`](crate::ClassTotals).
///
/// # Frames
///
/// A stack is symbolized when shown (a stats gather, a profile, a flamegraph), then trimmed: the
/// frames of classtrack, of its allocator shim, of the global allocator's entry points
/// (`__rust_alloc` ...) and of the standard library's allocation glue (`alloc::alloc`,
/// `alloc::raw_vec` growth) are cut from the top, so that a site starts at the program's own
/// function (or the standard library function it called, such as `Vec::push`). Those frames are
/// told by address: the program's symbol table (read once, at the first symbolization) gives
/// the address ranges of the machinery's functions, which works in every build that is not
/// stripped, whatever its debug info (`debug = "line-tables-only"` names functions without
/// their paths). Frames inlined into them are told by their source file, so that the program's
/// code inlined into classtrack's (a closure passed to [`scope`](fn@crate::scope)) is kept. In a
/// stripped program (no symbol table) frames are told by name and file alone, and without
/// debug info its functions have no names: sites are then addresses.
///
/// Symbolizing is done in batches (a [`ClassTracker::stats`](crate::ClassTracker::stats)
/// call, a profile, a flamegraph): what it reads of the debug info and the cache of
/// symbolized addresses live while a batch runs, counted in classtrack's overhead, and are
/// freed when it ends. On Linux the executable's debug info is read one compilation unit at a
/// time (the units' address ranges, and those of the functions of the units read last, are
/// kept while the batch runs: about 1 MiB at most for a test binary of 600 units), and shared objects without debug info of their own (the C
/// library) are named from their symbol tables, never from the system's separate debug files,
/// which would be decompressed into memory. Elsewhere, and for debug info compressed or split
/// into other files, the backtrace crate symbolizes, indexing the whole debug info (about 20
/// KiB a compilation unit). What a [`Site::frames`] call leaves is kept for a second for the
/// next call, then freed.
///
/// Several raw stacks can read the same once symbolized and trimmed (they differ in
/// classtrack's frames, or in addresses within one line): [`Stats`](crate::Stats), profiles
/// and flamegraphs show them as one site, their estimates added (bytes, blocks and samples, so
/// the relative error follows from the samples together).
///
/// # Live and allocated
///
/// A block grown by `realloc` (a `Vec` or `String` that grew) is live in full at the site that
/// grew it, while that site's allocated figures count only the growth (the block's first bytes
/// count where it was first allocated, as the class's exact `allocated_bytes` counts them): so
/// a site that grows blocks can show more live than allocated.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Site {
    /// The class of the blocks allocated here.
    pub class: ClassId,
    /// Return addresses, innermost first (raw: see [`Site::frames`]).
    pub stack: Arc<[usize]>,
    /// What was allocated here, estimated from the samples.
    pub estimate: Estimate,
}

impl Site {
    /// The stack symbolized, innermost first, without classtrack's and the allocator's own
    /// frames at the top (see [Frames](Site#frames) on how they are told, and what memory
    /// symbolizing takes).
    pub fn frames(&self) -> Vec<Frame> {
        frames_of(&self.stack)
    }
}

/// The figures of one allocation site, estimated from the samples taken there: the one type
/// that [`Site`], [`SiteStats`](crate::SiteStats) and [`SiteSummary`](crate::SiteSummary)
/// share (a class's exact totals are [`ClassTotals`](crate::ClassTotals)).
///
/// A sample of `Z` bytes taken with sampling mean `R` stands for `1 / (1 - e^(-Z/R))` blocks,
/// so each figure is an unbiased estimate; how far off it may be is
/// [`relative_error`](Self::relative_error). A site of a class traced entirely
/// ([`trace_every_allocation`]) counts every block: its figures are [`exact`](Self::exact).
///
/// Estimates of sites whose stacks read the same add up ([`add`](Self::add)): bytes, blocks
/// and samples add, so the relative error follows from the samples together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Estimate {
    /// Estimated bytes live now (at the snapshot).
    pub live_bytes: f64,
    /// Estimated blocks live now.
    pub live_blocks: f64,
    /// Estimated bytes ever allocated here.
    pub allocated_bytes: f64,
    /// Estimated blocks ever allocated here.
    pub allocations: f64,
    /// Samples taken here.
    pub samples: u64,
    /// Sampled blocks from here still live: what the live estimates rest on.
    pub live_samples: u64,
    /// Whether every block counted here was of a class traced entirely
    /// ([`trace_every_allocation`]): each stands for itself, so the figures are exact counts.
    /// False in dumps written before it was kept.
    #[serde(default)]
    pub exact: bool,
}

/// The live bytes with what they rest on: `650.0 KiB ±50% (4 samples)`, or
/// `2.0 KiB (exact)` (see [`report::format_estimate`](crate::report::format_estimate)).
///
/// ```
/// # let tracker = classtrack::ClassTracker::new();
/// # let snap = tracker.create_snapshot("s");
/// for site in snap.sites.iter() {
///     println!("{} live", site.estimate);
/// }
/// ```
impl std::fmt::Display for Estimate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::report::format_site_estimate(
            self.live_bytes,
            self.live_samples,
            self.exact,
        ))
    }
}

impl Estimate {
    /// The relative standard error of the live estimates: about `1/√live_samples` (each
    /// sampled block stands for about the sampling mean in bytes, and how many are sampled
    /// varies as a Poisson count); 1.0 (100%) with no live sample; 0 for a site whose blocks
    /// were all traced entirely ([`exact`](Self::exact)).
    ///
    /// ```
    /// # let tracker = classtrack::ClassTracker::new();
    /// # let snap = tracker.create_snapshot("s");
    /// for site in snap.sites.iter() {
    ///     let e = site.estimate.relative_error();
    ///     assert!((0.0..=1.0).contains(&e));
    /// }
    /// ```
    pub fn relative_error(&self) -> f64 {
        if self.exact {
            0.0
        } else {
            relative_error(self.live_samples)
        }
    }

    /// Largest first: more live bytes, then more bytes allocated (the order sites are listed
    /// in).
    pub(crate) fn largest_first(a: &Estimate, b: &Estimate) -> std::cmp::Ordering {
        b.live_bytes
            .total_cmp(&a.live_bytes)
            .then(b.allocated_bytes.total_cmp(&a.allocated_bytes))
    }

    /// Adds `other`'s figures to these: the estimate of two sites taken as one (their stacks
    /// read the same once symbolized). Exact only if both are.
    ///
    /// ```
    /// # let tracker = classtrack::ClassTracker::new();
    /// # let snap = tracker.create_snapshot("s");
    /// let mut all = classtrack::Estimate::default();
    /// for site in snap.sites.iter() {
    ///     all.add(&site.estimate);
    /// }
    /// assert!(all.live_bytes >= 0.0);
    /// ```
    pub fn add(&mut self, other: &Estimate) {
        let exact = if self.samples == 0 {
            other.exact
        } else {
            self.exact && (other.exact || other.samples == 0)
        };
        self.live_bytes += other.live_bytes;
        self.live_blocks += other.live_blocks;
        self.allocated_bytes += other.allocated_bytes;
        self.allocations += other.allocations;
        self.samples += other.samples;
        self.live_samples += other.live_samples;
        self.exact = exact;
    }
}

/// The relative standard error of an estimate resting on `samples` samples.
pub(crate) fn relative_error(samples: u64) -> f64 {
    if samples == 0 {
        1.0
    } else {
        1.0 / (samples as f64).sqrt()
    }
}

#[derive(Clone, Copy)]
struct Live {
    class: ClassId,
    stack: u32,
    size: usize,
    weight: f64,
}

#[derive(Default, Clone, Copy)]
struct Totals {
    live_bytes: f64,
    live_blocks: f64,
    /// Sampled blocks live: when it falls to 0 the live estimates are exactly 0 (not a
    /// rounding residue of adding and taking away the same weights in another order).
    live_samples: u64,
    allocated_bytes: f64,
    allocations: f64,
    samples: u64,
    /// Samples taken with a sampling mean (not of a class traced entirely).
    weighted: u64,
}

#[derive(Default)]
struct Aggregator {
    /// Stacks by the shim's id (the hash of their frames).
    stack_ids: HashMap<u64, u32>,
    stacks: Vec<Arc<[usize]>>,
    sites: HashMap<(ClassId, u32), Totals>,
    live: HashMap<usize, Live>,
    /// Per address, frees still to come of blocks no longer in `live`: an allocation at the
    /// address was received while its former block's free waited in the overflow list.
    pending_frees: HashMap<usize, u32>,
    /// Frees taken off the shim's overflow list, applied once the sample channel has been
    /// found empty after they were taken (so after their blocks' allocations).
    held: Vec<SampleRecord>,
    /// Bumped by every change, so an unchanged table is shared between snapshots.
    generation: u64,
    table: Option<(u64, Arc<[Site]>)>,
}

fn weight(size: usize, mean: u64) -> f64 {
    if mean == 0 {
        1.0
    } else {
        1.0 / -(-(size as f64) / mean as f64).exp_m1()
    }
}

impl Aggregator {
    fn learn(&mut self, s: &StackRecord) {
        if let Entry::Vacant(e) = self.stack_ids.entry(s.id) {
            e.insert(self.stacks.len() as u32);
            self.stacks.push(Arc::from(s.frames()));
        }
    }

    /// The stack a sample names: announced on the stack channel before the sample was sent, so
    /// found there if not known yet (`None` only if its record was lost).
    fn stack_of(&mut self, id: u64, stacks: &Receiver<StackRecord>) -> Option<u32> {
        if let Some(&s) = self.stack_ids.get(&id) {
            return Some(s);
        }
        while let Ok(s) = stacks.try_recv() {
            self.learn(&s);
            if s.id == id {
                break;
            }
        }
        self.stack_ids.get(&id).copied()
    }

    /// Applies a record; `late` for a free taken off the overflow list.
    fn apply(&mut self, r: &SampleRecord, stacks: &Receiver<StackRecord>, late: bool) {
        self.generation += 1;
        match r.event {
            SampleEvent::Alloc | SampleEvent::Realloc => {
                let Some(stack) = self.stack_of(r.stack, stacks) else {
                    return;
                };
                let w = weight(r.size, r.mean);
                // The block was sampled with the chance its whole size gives it, so it stands
                // for `w` blocks of its size; of a realloc's block only the growth counts as
                // allocated (as in the exact counters): E[growth * w * sampled] = growth.
                let counted = match r.event {
                    SampleEvent::Realloc => r.size.saturating_sub(r.old_size),
                    _ => r.size,
                };
                let t = self.sites.entry((r.class, stack)).or_default();
                t.allocated_bytes += counted as f64 * w;
                if r.event == SampleEvent::Alloc {
                    t.allocations += w;
                }
                t.live_bytes += r.size as f64 * w;
                t.live_blocks += w;
                t.live_samples += 1;
                t.samples += 1;
                t.weighted += u64::from(r.mean != 0);
                let live = Live {
                    class: r.class,
                    stack,
                    size: r.size,
                    weight: w,
                };
                if let Some(old) = self.live.insert(r.address, live) {
                    // The free of the block that had this address waits in the overflow list
                    // (frees are never lost): it is gone, and its free is still to come.
                    self.unlive(old);
                    *self.pending_frees.entry(r.address).or_default() += 1;
                }
            }
            SampleEvent::Free => {
                // A free that came through the channel is of the block in `live`: a former
                // block's free still to come is in the overflow list (else it would have
                // come before that block's allocation). One from the overflow list is of the
                // oldest block at the address whose free is still to come.
                if late && self.take_pending(r.address) {
                    return;
                }
                if let Some(old) = self.live.remove(&r.address) {
                    self.unlive(old);
                } else {
                    self.take_pending(r.address);
                }
            }
        }
    }

    /// Counts a free still to come at `address` as come; false if none was.
    fn take_pending(&mut self, address: usize) -> bool {
        match self.pending_frees.entry(address) {
            Entry::Occupied(mut e) => {
                *e.get_mut() -= 1;
                if *e.get() == 0 {
                    e.remove();
                }
                true
            }
            Entry::Vacant(_) => false,
        }
    }

    fn unlive(&mut self, l: Live) {
        if let Some(t) = self.sites.get_mut(&(l.class, l.stack)) {
            t.live_samples = t.live_samples.saturating_sub(1);
            if t.live_samples == 0 {
                t.live_bytes = 0.0;
                t.live_blocks = 0.0;
            } else {
                t.live_bytes = (t.live_bytes - l.size as f64 * l.weight).max(0.0);
                t.live_blocks = (t.live_blocks - l.weight).max(0.0);
            }
        }
    }

    fn table(&mut self) -> Arc<[Site]> {
        if let Some((generation, table)) = &self.table {
            if *generation == self.generation {
                return table.clone();
            }
        }
        let table: Arc<[Site]> = self
            .sites
            .iter()
            .map(|(&(class, stack), t)| Site {
                class,
                stack: self.stacks[stack as usize].clone(),
                estimate: Estimate {
                    live_bytes: t.live_bytes,
                    live_blocks: t.live_blocks,
                    allocated_bytes: t.allocated_bytes,
                    allocations: t.allocations,
                    samples: t.samples,
                    live_samples: t.live_samples,
                    exact: t.samples > 0 && t.weighted == 0,
                },
            })
            .collect();
        self.table = Some((self.generation, table.clone()));
        table
    }
}

/// Locks `m`, whatever a thread that panicked holding it left (the aggregate stays usable).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

static AGGREGATOR: LazyLock<Mutex<Aggregator>> = LazyLock::new(Default::default);
/// Whether the drain thread runs: set when it is spawned (under the aggregator's lock), cleared
/// when it ends (a panic) and in a forked child (where it is gone).
static DRAIN_ALIVE: AtomicBool = AtomicBool::new(false);
/// Whether a drain thread was ever spawned in this process (or its parent).
static DRAIN_SPAWNED: AtomicBool = AtomicBool::new(false);
/// Set in a forked child: the next spawn replaces a thread lost to the fork, not to a panic.
static DRAIN_FORKED: AtomicBool = AtomicBool::new(false);
/// Drain threads spawned again because the previous one died.
static RESTARTS: AtomicU64 = AtomicU64::new(0);
/// The drain thread, to wake it when a snapshot wants the records now: a leaked box (never
/// freed: a snapshot may be reading the old one when a new thread registers).
static DRAIN_THREAD: AtomicPtr<std::thread::Thread> = AtomicPtr::new(std::ptr::null_mut());
/// Makes the drain thread panic at its next round (see [`__stop_aggregator`]).
static STOP_FOR_TEST: AtomicBool = AtomicBool::new(false);

/// Clears [`DRAIN_ALIVE`] when the drain thread ends, by a panic included.
struct Alive;

impl Drop for Alive {
    fn drop(&mut self) {
        // Release: what the thread did is visible to whoever sees it dead.
        DRAIN_ALIVE.store(false, Ordering::Release);
    }
}

/// Drain threads started again because the previous one died.
pub(crate) fn aggregator_restarts() -> u64 {
    // Relaxed: a statistic.
    RESTARTS.load(Ordering::Relaxed)
}

/// Makes the aggregator thread panic at its next round, to test that it is restarted.
#[doc(hidden)]
pub fn __stop_aggregator() {
    // Relaxed: a test hook.
    STOP_FOR_TEST.store(true, Ordering::Relaxed);
    wake_drain();
}

fn wake_drain() {
    // Acquire: pairs with the release that published the box.
    let t = DRAIN_THREAD.load(Ordering::Acquire);
    if !t.is_null() {
        // SAFETY: a non-null `DRAIN_THREAD` is a leaked box, complete when published, never
        // freed.
        unsafe { &*t }.unpark();
    }
}

/// The sample channels' receivers, made by this thread if nobody made them yet. If another
/// thread is making them (the first sample anywhere in the process makes them, and warms the
/// unwinder up, which can take some milliseconds), waits until it is done, up to 2 s:
/// otherwise what the caller does next (trace a class, take a snapshot) would run before the
/// channels exist, and its samples would be dropped. Called from the user's calls only, never
/// from the allocator.
fn receivers_when_made() -> Option<(Receiver<SampleRecord>, Receiver<StackRecord>)> {
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        if let Some(receivers) = sample_receivers() {
            return Some(receivers);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Starts the thread that drains the shim's samples, if sampling is on and it is not running
/// (never started, died, or lost to a `fork()`). Returns whether it runs.
pub(crate) fn start() -> bool {
    // Acquire: pairs with `Alive`'s release.
    if DRAIN_ALIVE.load(Ordering::Acquire) {
        return true;
    }
    if !classtrack_shim::sampling_enabled() {
        return false;
    }
    let _g = OverheadGuard::new();
    crate::fork::install();
    let Some((rx, stacks)) = receivers_when_made() else {
        return false;
    };
    // Spawned under the aggregator's lock: one spawn at a time, and none across a `fork()`
    // (the prepare handler holds the lock).
    let _agg = lock(&AGGREGATOR);
    // Acquire: as above.
    if DRAIN_ALIVE.load(Ordering::Acquire) {
        return true;
    }
    let spawned = std::thread::Builder::new()
        .name("classtrack-sampler".into())
        .spawn(move || drain(rx, stacks));
    let Ok(handle) = spawned else {
        return false;
    };
    // Relaxed, here and below: statistics and flags read under the same lock or for show.
    let forked = DRAIN_FORKED.swap(false, Ordering::Relaxed);
    if DRAIN_SPAWNED.swap(true, Ordering::Relaxed) && !forked {
        RESTARTS.fetch_add(1, Ordering::Relaxed);
    }
    // Registered as the channels' consumer now, not only once it runs: until then a thread of a
    // class traced entirely that finds a channel full would see no consumer to wait for, and
    // drop the record.
    classtrack_shim::set_sample_consumer(handle.thread().clone());
    let thread = Box::into_raw(Box::new(handle.thread().clone()));
    // Release: the box is complete before `wake_drain` reads it. The old one is leaked.
    DRAIN_THREAD.swap(thread, Ordering::AcqRel);
    // Release: pairs with the acquire loads above.
    DRAIN_ALIVE.store(true, Ordering::Release);
    true
}

/// What one [`drain_round`] did.
struct Round {
    /// Records taken off the channel and applied.
    received: u64,
    /// Overflowed frees applied.
    applied: u64,
    /// Overflowed frees taken but not applied yet (the channel was not found empty).
    waiting: bool,
}

impl Round {
    fn idle(&self) -> bool {
        self.received + self.applied == 0 && !self.waiting
    }
}

/// Takes what the channels and the overflow list hold (up to 65,536 records) and applies it,
/// then counts it as received. Called with the aggregator's lock held (`agg`), by the drain
/// thread and by snapshots: records are received and applied under the lock, so they are
/// applied in the order sent whoever takes them, a snapshot that takes the lock sees every
/// record counted as received, and a fork never finds a receive halfway.
fn drain_round(
    agg: &mut Aggregator,
    rx: &Receiver<SampleRecord>,
    stacks: &Receiver<StackRecord>,
) -> Round {
    // Frees that found the channel full: taken before the channel is drained, applied once it
    // has been found empty (their blocks' allocations were sent before them).
    let mut held = std::mem::take(&mut agg.held);
    let taken = classtrack_shim::take_overflowed_frees(&mut held);
    // Stacks first (each was sent before any sample naming it), so that stacks re-sent by
    // threads that forgot them never fill the channel.
    for s in stacks.try_iter().take(1 << 16) {
        agg.learn(&s);
    }
    let mut received = 0;
    let mut dry = false;
    for _ in 0..1 << 16 {
        match rx.try_recv() {
            Ok(r) => {
                agg.apply(&r, stacks, false);
                received += 1;
            }
            Err(_) => {
                dry = true;
                break;
            }
        }
    }
    let mut applied = 0;
    if dry {
        for r in &held {
            agg.apply(r, stacks, true);
        }
        applied = held.len() as u64;
        held.clear();
    }
    agg.held = held;
    classtrack_shim::note_received(received);
    classtrack_shim::note_overflow_applied(applied);
    Round {
        received,
        applied,
        waiting: taken > 0 && !dry,
    }
}

/// The drain thread's body.
fn drain(rx: Receiver<SampleRecord>, stacks: Receiver<StackRecord>) {
    let _alive = Alive;
    // Everything this thread allocates is classtrack's, and never sampled.
    let _g = OverheadGuard::new();
    classtrack_shim::exclude_thread_from_sampling();
    // The only consumer of the channel, so records are applied in the order sent: a block's
    // free is never applied before its allocation. It parks rather than blocks on the
    // channel, so that a sending thread never has a sleeping receiver to wake on every sample;
    // senders unpark it when a backlog builds, and `drain_now` when a snapshot wants the
    // records.
    classtrack_shim::set_sample_consumer(std::thread::current());
    let mut idle = Duration::from_micros(100);
    loop {
        // Relaxed: a test hook.
        if STOP_FOR_TEST.swap(false, Ordering::Relaxed) {
            panic!("classtrack: the aggregator thread was stopped (a test)");
        }
        let round = drain_round(&mut lock(&AGGREGATOR), &rx, &stacks);
        empty_left_caches();
        if round.idle() {
            classtrack_shim::wait_for_samples(idle);
            idle = (idle * 2).min(Duration::from_millis(20));
        } else {
            idle = Duration::from_micros(100);
        }
    }
}

/// Applies every record sent so far, so that a snapshot sees them: on the calling thread,
/// under the aggregator's lock (the drain thread does the same in the background), so a
/// snapshot never waits for the drain thread, nor for one that is not there (after a `fork()`,
/// or while it is started again). Does nothing while sampling has never been on.
pub(crate) fn drain_now() {
    if !start() && !classtrack_shim::sampling_started() {
        return;
    }
    let Some((rx, stacks)) = sample_receivers() else {
        return;
    };
    let mut agg = lock(&AGGREGATOR);
    // Bounded: records keep coming while other threads allocate; what is sent after the
    // snapshot started may or may not be in it, as for the counters.
    for _ in 0..64 {
        if drain_round(&mut agg, &rx, &stacks).idle() {
            break;
        }
    }
}

/// The sites now (shared with the previous call when nothing changed).
pub(crate) fn table() -> Arc<[Site]> {
    let _g = OverheadGuard::new();
    drain_now();
    lock(&AGGREGATOR).table()
}

/// Sets the mean distance between samples in allocated bytes; 0 turns sampling off. Threads
/// pick the new setting up at their next sample point (or within 64 MiB while it was off).
///
/// Turning sampling on (from off, or for the first time) starts the aggregator thread and
/// indexes the unwind tables of the modules loaded at that moment (libraries loaded later are
/// unwound by the platform's unwinder). With `set_sample_mean(0)` before the first sample, no
/// unwinder work is done, no module is pinned and no thread is started.
pub fn set_sample_mean(bytes: u64) {
    classtrack_shim::set_sample_mean(bytes);
    if bytes != 0 {
        start();
    }
}

/// The two locks of this module, held across `fork()` by [`fork_prepare`] until
/// [`fork_parent`] or [`fork_child`] drops them.
struct Held(UnsafeCell<Option<HeldGuards>>);

type HeldGuards = (
    MutexGuard<'static, Aggregator>,
    MutexGuard<'static, HashMap<usize, Symbolized>>,
);

// SAFETY: the cell is written only by the thread that holds both locks (in `fork_prepare`,
// after taking them), and emptied by that same thread (in `fork_parent` or `fork_child`, which
// run on the forking thread), before it gives them up: the locks serialise every access.
unsafe impl Sync for Held {}

static HELD: Held = Held(UnsafeCell::new(None));

/// The `pthread_atfork` prepare handler's part for sampling: takes the aggregate's and the
/// symbol cache's locks (so no other thread holds them, nor is receiving from the sample
/// channel, at the fork), then lets the shim keep senders off the channels
/// ([`classtrack_shim::before_fork`]). These locks are leaves (nothing else is locked while
/// one is held), so this may run before or after the tracker's locks are taken; run it last.
pub(crate) fn fork_prepare() {
    let guards = (lock(&AGGREGATOR), lock(&SYMBOLS));
    classtrack_shim::before_fork();
    // SAFETY: this thread holds both locks (see `Held`).
    unsafe { *HELD.0.get() = Some(guards) };
}

/// The parent handler's part: senders use the channels again; the locks are released.
pub(crate) fn fork_parent() {
    classtrack_shim::after_fork_in_parent();
    // SAFETY: this thread took the locks in `fork_prepare` (see `Held`).
    drop(unsafe { (*HELD.0.get()).take() });
}

/// The child handler's part: resets the shim's sampler ([`classtrack_shim::after_fork_in_child`],
/// idempotent), marks the drain thread gone (the next snapshot, tracker or `set_sample_mean`
/// starts one, which registers as the consumer), and releases the locks. Allocates nothing;
/// the unlocks are a store each and at most a futex wake-up.
pub(crate) fn fork_child() {
    classtrack_shim::after_fork_in_child();
    // Relaxed: the child has one thread.
    DRAIN_ALIVE.store(false, Ordering::Relaxed);
    DRAIN_THREAD.store(std::ptr::null_mut(), Ordering::Relaxed);
    if DRAIN_SPAWNED.load(Ordering::Relaxed) {
        DRAIN_FORKED.store(true, Ordering::Relaxed);
    }
    // SAFETY: this thread took the locks in `fork_prepare`, before the fork (see `Held`).
    drop(unsafe { (*HELD.0.get()).take() });
}

/// Samples every allocation of `T`'s class from now on (scopes entered afterwards), or stops.
/// For small suspect classes: each allocation then costs a stack capture.
///
/// No record of such a class is lost: a thread that finds the sample channel full waits for
/// the aggregator to make room (default sampling never waits, and drops what does not fit),
/// so a class traced entirely runs at the aggregator's pace. (A wait that lasts a second, an
/// aggregator that stopped draining, gives up and drops, counted in
/// [`SamplingStats::dropped`](crate::SamplingStats).) classtrack's own class cannot be traced
/// entirely: the aggregator's allocations are in it.
pub fn trace_every_allocation<T: ?Sized + 'static>(on: bool) {
    // The shim's table of settings (64 KiB, taken at the first call) is classtrack's own.
    let _g = OverheadGuard::new();
    classtrack_shim::set_trace_all(crate::class_id_of::<T>(), on);
    if on {
        start();
    }
}

/// As [`trace_every_allocation`], for a class by name.
pub fn trace_every_allocation_named(name: &str, on: bool) {
    let _g = OverheadGuard::new();
    classtrack_shim::set_trace_all(crate::class_id_named(name), on);
    if on {
        start();
    }
}

/// Frames that belong to classtrack or to the allocator machinery, by name (see
/// [`machinery`](crate::machinery) for the addresses that tell them in every build).
pub(crate) fn is_machinery(function: &str) -> bool {
    crate::machinery::is_machinery_name(function)
}

/// The frames at one return address: those inlined there, innermost first, then the function
/// it is in; and whether that function is the machinery's by address (`None`: no symbol table
/// to tell).
#[derive(Clone)]
pub(crate) struct Symbolized {
    pub(crate) frames: Arc<[Frame]>,
    machinery: Option<bool>,
}

/// Symbolized frames by return address, for the batch under way (see [`Batch`]). A
/// `std::sync::Mutex` (see the module's docs).
static SYMBOLS: LazyLock<Mutex<HashMap<usize, Symbolized>>> = LazyLock::new(Default::default);

/// Symbolizations under way: the caches are emptied when the last one ends.
static BATCHES: AtomicUsize = AtomicUsize::new(0);
/// Whether the caches hold what a lone symbolization ([`Batch::lone`]) left, and when it
/// ended (milliseconds since [`EPOCH`]).
static LEFT: AtomicBool = AtomicBool::new(false);
static LEFT_AT: AtomicU64 = AtomicU64::new(0);
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);
/// How long the caches a lone symbolization left are kept for the next one.
const KEEP_LEFT: Duration = Duration::from_secs(1);

/// A run of symbolizations that share the caches (this module's, by address, and the
/// backtrace crate's parsed debug info, megabytes for a program with debug info): when
/// the last batch under way ends, both are emptied, so that symbolizing costs memory only
/// while it runs.
pub(crate) struct Batch {
    lone: bool,
}

impl Batch {
    /// A batch: the caches are emptied when it ends, unless another is under way.
    pub(crate) fn new() -> Batch {
        // Relaxed: a count; the caches are protected by their locks.
        BATCHES.fetch_add(1, Ordering::Relaxed);
        Batch { lone: false }
    }

    /// One symbolization on its own ([`Site::frames`]), often one of many in a row: the
    /// caches are kept for [`KEEP_LEFT`] after it, for the next, and then emptied by the
    /// aggregator thread ([`empty_left_caches`]) or by the end of the next batch.
    fn lone() -> Batch {
        // Relaxed: as in `new`.
        BATCHES.fetch_add(1, Ordering::Relaxed);
        Batch { lone: true }
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        // Relaxed: as in `new`.
        if BATCHES.fetch_sub(1, Ordering::Relaxed) != 1 {
            return;
        }
        if self.lone {
            // Relaxed: a hint to the aggregator thread; a late or early look only moves the
            // emptying by a round.
            LEFT_AT.store(EPOCH.elapsed().as_millis() as u64, Ordering::Relaxed);
            LEFT.store(true, Ordering::Relaxed);
        } else {
            empty_caches();
        }
    }
}

fn empty_caches() {
    let _g = OverheadGuard::new();
    // Relaxed: see `Batch::drop`.
    LEFT.store(false, Ordering::Relaxed);
    let old = std::mem::take(&mut *lock(&SYMBOLS));
    drop(old);
    crate::fork::with_backtrace(|| {
        backtrace::clear_symbol_cache();
        #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
        crate::symtab::empty();
        #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
        crate::dwarf::empty();
    });
}

/// Empties the caches a lone symbolization left once they have been left alone for
/// [`KEEP_LEFT`] (called by the aggregator thread at each round).
fn empty_left_caches() {
    // Relaxed: see `Batch::drop`.
    if !LEFT.load(Ordering::Relaxed) || BATCHES.load(Ordering::Relaxed) != 0 {
        return;
    }
    let left_at = Duration::from_millis(LEFT_AT.load(Ordering::Relaxed));
    if EPOCH.elapsed().saturating_sub(left_at) >= KEEP_LEFT {
        empty_caches();
    }
}

/// The frames at return address `ip` (several when calls were inlined), cached for the batch.
pub(crate) fn symbolize(ip: usize) -> Symbolized {
    if let Some(f) = lock(&SYMBOLS).get(&ip) {
        return f.clone();
    }
    let mut frames = Vec::new();
    // A return address points after the call: look up the call itself.
    let at = ip.saturating_sub(1);
    let machinery = crate::fork::with_backtrace(|| {
        #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
        if let Some(name) = crate::symtab::name_of(at) {
            frames.push(Frame {
                function: name.unwrap_or_else(|| format!("{ip:#x}")),
                file: None,
                line: None,
                inlined: false,
            });
            return crate::machinery::contains(at);
        }
        #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
        if let Some(found) = crate::dwarf::frames_at(at) {
            frames = found;
            return crate::machinery::contains(at);
        }
        backtrace::resolve(at as *mut c_void, |sym| {
            frames.push(Frame {
                function: sym
                    .name()
                    .map_or_else(|| format!("{ip:#x}"), |n| format!("{n:#}")),
                file: sym.filename().map(|f| f.display().to_string()),
                line: sym.lineno(),
                inlined: true,
            });
        });
        crate::machinery::contains(at)
    });
    if frames.is_empty() {
        frames.push(Frame {
            function: format!("{ip:#x}"),
            file: None,
            line: None,
            inlined: false,
        });
    }
    if let Some(last) = frames.last_mut() {
        last.inlined = false;
    }
    let symbolized = Symbolized {
        frames: frames.into(),
        machinery,
    };
    match lock(&SYMBOLS).entry(ip) {
        Entry::Occupied(e) => e.get().clone(),
        Entry::Vacant(e) => e.insert(symbolized).clone(),
    }
}

/// Whether `f` is the standard library's: its source is in the toolchain's `/rustc/`
/// directory (as debug info names it), or its path starts in `core`, `std` or `alloc`.
pub(crate) fn is_std(f: &Frame) -> bool {
    f.file.as_deref().is_some_and(|p| p.starts_with("/rustc/"))
        || [
            "core::", "<core::", "std::", "<std::", "alloc::", "<alloc::",
        ]
        .iter()
        .any(|p| f.function.starts_with(p))
}

/// A stack symbolized, innermost first, without the machinery at the top.
pub(crate) fn frames_of(stack: &[usize]) -> Vec<Frame> {
    let _g = OverheadGuard::new();
    let _b = Batch::lone();
    let groups: Vec<Symbolized> = stack.iter().map(|&ip| symbolize(ip)).collect();
    trim(groups.iter().map(|g| (&g.frames[..], g.machinery)))
}

/// What a frame is, for trimming.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// classtrack's, its shim's, the global allocator's entry points, the allocation glue.
    Machinery,
    /// The standard library's other frames (`Vec::push`).
    Std,
    /// The program's.
    User,
}

/// What `f` is: a function (not inlined) by its address when there is a symbol table
/// (`machinery`), else (and frames inlined into it always) by its source file when debug info
/// has it, and by name.
fn kind(f: &Frame, machinery: Option<bool>) -> Kind {
    if !f.inlined && machinery == Some(true) {
        return Kind::Machinery;
    }
    if f.file
        .as_deref()
        .is_some_and(crate::machinery::is_machinery_file)
        || is_machinery(&f.function)
    {
        return Kind::Machinery;
    }
    if is_std(f) {
        Kind::Std
    } else {
        Kind::User
    }
}

/// The frames of `groups` (each the frames at one return address: the frames inlined there,
/// then the function it is in, and whether that function is the machinery's by address),
/// without the machinery at the top nor the runtime below `main`.
///
/// Every leading frame that is the machinery's or the standard library's is cut, so that the
/// program's own frame that allocated comes first (`Vec::push` and `RawVec` growth above it
/// go, as does a standard library function the sampler calls, `core::bool::then`); nothing
/// below the first frame of the program's own is cut (the program's closure inlined into
/// `classtrack::scope` included). A stack with no frame of the program's keeps the standard
/// library's frames below the machinery.
fn trim<'a>(groups: impl IntoIterator<Item = (&'a [Frame], Option<bool>)>) -> Vec<Frame> {
    let mut frames: Vec<(&Frame, Kind)> = Vec::new();
    'groups: for (group, machinery) in groups {
        for f in group {
            // The runtime's frames below `main` (or a thread's closure) say nothing.
            if f.function.starts_with("std::rt::lang_start")
                || f.function
                    .starts_with("std::sys::backtrace::__rust_begin_short_backtrace")
            {
                break 'groups;
            }
            frames.push((f, kind(f, machinery)));
        }
    }
    let leading = frames.iter().take_while(|(_, k)| *k != Kind::User).count();
    let cut = if leading < frames.len() {
        // The program's first frame leads: the allocation glue above it (`Vec::push`,
        // `RawVec` growth, `String::from`) says how, not where.
        leading
    } else {
        // No frame of the program's (an allocation of the standard library's own, such as a
        // thread's start): the standard library's frames below the machinery stay.
        frames
            .iter()
            .rposition(|(_, k)| *k == Kind::Machinery)
            .map_or(0, |last| last + 1)
    };
    frames[cut..].iter().map(|&(f, _)| f.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(function: &str, inlined: bool) -> Frame {
        Frame {
            function: function.to_owned(),
            file: None,
            line: None,
            inlined,
        }
    }

    #[test]
    fn std_frames_inlined_into_the_machinery_are_trimmed_with_it() {
        let groups = [
            vec![
                frame("core::bool::<impl bool>::then", true),
                frame("classtrack_shim::sampling::on_countdown", false),
            ],
            vec![
                frame(
                    "<classtrack_shim::tracking::TrackingAlloc<A>>::realloc",
                    true,
                ),
                frame("__rustc::__rust_realloc", false),
            ],
            vec![
                frame("alloc::raw_vec::RawVecInner<A>::grow_amortized", true),
                frame("alloc::raw_vec::RawVec<T,A>::grow_one", false),
            ],
            vec![
                frame("alloc::vec::Vec<T,A>::push", true),
                frame("app::main", false),
            ],
            vec![
                frame("core::ops::function::FnOnce::call_once", true),
                frame("std::rt::lang_start::{{closure}}", false),
            ],
        ];
        let names: Vec<String> = trim(groups.iter().map(|g| (&g[..], None)))
            .into_iter()
            .map(|f| f.function)
            .collect();
        // `Vec::push` above the program's frame is glue too: the program's frame leads.
        assert_eq!(
            names,
            ["app::main", "core::ops::function::FnOnce::call_once"]
        );
    }

    #[test]
    fn a_standard_library_function_the_sampler_calls_is_trimmed_in_debug_builds() {
        let groups = [
            vec![frame(
                "classtrack_shim::sampling::on_countdown::{{closure}}",
                false,
            )],
            vec![frame("core::bool::<impl bool>::then", false)],
            vec![frame("classtrack_shim::sampling::on_countdown", false)],
            vec![frame("__rustc::__rust_alloc", false)],
            vec![frame("alloc::vec::from_elem", false)],
            vec![frame("app::build", false)],
        ];
        let names: Vec<String> = trim(groups.iter().map(|g| (&g[..], None)))
            .into_iter()
            .map(|f| f.function)
            .collect();
        assert_eq!(names, ["app::build"]);
    }

    fn at(function: &str, file: &str, inlined: bool) -> Frame {
        Frame {
            function: function.to_owned(),
            file: Some(file.to_owned()),
            line: Some(1),
            inlined,
        }
    }

    #[test]
    fn line_tables_only_names_are_trimmed_by_address_and_file() {
        // As `debug = "line-tables-only"` names them: without paths.
        let shim = concat!(env!("CARGO_MANIFEST_DIR"), "/alloc-shim/src/unwind.rs");
        let ours = concat!(env!("CARGO_MANIFEST_DIR"), "/src/scope.rs");
        let groups: Vec<(Vec<Frame>, Option<bool>)> = vec![
            (
                vec![at("unwind", shim, true), at("capture", shim, false)],
                Some(true),
            ),
            (vec![at("alloc_slow", "/elsewhere/x.rs", false)], Some(true)),
            (
                vec![
                    at("alloc", "/rustc/abc/library/alloc/src/alloc.rs", true),
                    at(
                        "grow_one",
                        "/rustc/abc/library/alloc/src/raw_vec/mod.rs",
                        false,
                    ),
                ],
                Some(true),
            ),
            (
                vec![
                    at("push", "/rustc/abc/library/alloc/src/vec/mod.rs", true),
                    at("{closure#0}", "/home/u/app/src/main.rs", true),
                    at("scope<app::Big, ...>", ours, false),
                ],
                Some(true),
            ),
            (
                vec![at("main", "/home/u/app/src/main.rs", false)],
                Some(false),
            ),
        ];
        let names: Vec<String> = trim(groups.iter().map(|(g, m)| (&g[..], *m)))
            .into_iter()
            .map(|f| f.function)
            .collect();
        assert_eq!(names, ["{closure#0}", "scope<app::Big, ...>", "main"]);
    }

    #[test]
    fn a_stack_without_the_programs_frames_keeps_the_standard_librarys() {
        let groups = [
            vec![frame("classtrack_shim::sampling::on_countdown", false)],
            vec![frame("__rustc::__rust_alloc", false)],
            vec![frame("alloc::raw_vec::RawVec<T,A>::grow_one", false)],
            vec![frame("std::thread::Builder::spawn_unchecked", false)],
        ];
        let names: Vec<String> = trim(groups.iter().map(|g| (&g[..], None)))
            .into_iter()
            .map(|f| f.function)
            .collect();
        assert_eq!(names, ["std::thread::Builder::spawn_unchecked"]);
    }

    #[test]
    fn user_code_inlined_into_classtrack_is_kept() {
        let groups = [
            vec![frame("__rustc::__rust_alloc", false)],
            vec![
                frame("app::build::{{closure}}", true),
                frame("classtrack::scope::scope", false),
            ],
        ];
        let names: Vec<String> = trim(groups.iter().map(|g| (&g[..], None)))
            .into_iter()
            .map(|f| f.function)
            .collect();
        assert_eq!(
            names,
            ["app::build::{{closure}}", "classtrack::scope::scope"]
        );
    }
}
