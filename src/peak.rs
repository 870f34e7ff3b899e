//! The heap at its peak ([`ClassTracker::peak`](crate::ClassTracker::peak)).
//!
//! The allocator notices growth (see `classtrack_shim`'s peak watch): every thread checks the
//! live user heap each [`PEAK_GRANULARITY`] bytes it allocates, from its cold path, and when
//! the figure reaches the level set here it unparks one thread per process,
//! `classtrack-peak`, which reads every class's counters and the sampled sites (a snapshot
//! without the instances' pass) and keeps it in each tracker whose recorded peak it beats.
//! Then it sets the next level: the lowest recorded peak among the trackers, plus a step of
//! 1% of it (at least [`PEAK_GRANULARITY`]).
//!
//! # The guarantee
//!
//! The recorded peak is a reading of the counters, so it is never above the true peak. It is
//! below it by at most the step plus threads × [`PEAK_GRANULARITY`] (one step: the level is
//! one step above the recorded peak; threads × granularity: what the threads allocated since
//! their last check), provided the heap stays near its peak for as long as the watcher takes
//! to wake and read the counters (a fraction of a millisecond with a few thousand classes:
//! `tests/peak.rs` measures it). A spike shorter than that can be missed or recorded lower.

use std::sync::{Arc, Weak};
use std::time::Duration;

use classtrack_shim::{ClassId, OverheadGuard, PEAK_GRANULARITY};

use crate::error::{Error, Result};
use crate::history::History;
use crate::snapshot::Snapshot;
use crate::sync::Lock;

/// The description of a peak snapshot.
pub(crate) const DESCRIPTION: &str = "peak";

/// The watcher: its thread (by the process generation that started it) and the trackers
/// (their histories, weakly).
struct Watcher {
    generation: Option<u64>,
    histories: Vec<Weak<History>>,
}

static WATCHER: Lock<Watcher> = Lock::new(Watcher {
    generation: None,
    histories: Vec::new(),
});

/// The live bytes of the user's classes in `snap` (every class but the two reserved ones).
pub(crate) fn user_class_bytes(snap: &Snapshot) -> u64 {
    let kept: u64 = snap
        .classes
        .iter()
        .filter(|c| c.id >= ClassId::FIRST_USER)
        .map(|c| c.live_bytes)
        .sum();
    // The classes left out are user classes: the reserved ones are always kept.
    kept + snap.omitted.live_bytes
}

/// The step above a recorded peak of `bytes` at which the watcher is woken again.
fn step(bytes: u64) -> u64 {
    (bytes / 100).max(PEAK_GRANULARITY)
}

/// Registers a new tracker's history with the watcher and starts the watcher if it is not
/// running in this process.
pub(crate) fn register(history: &Arc<History>) -> Result<()> {
    let _g = OverheadGuard::new();
    let mut w = WATCHER.lock();
    w.histories.retain(|h| h.strong_count() > 0);
    w.histories.push(Arc::downgrade(history));
    // The new tracker has seen no class at its peak: every class's first check wakes the
    // watcher again, which sets its level from this tracker's peaks too.
    for class in ClassId::FIRST_USER.0..crate::registry::class_count() as u32 {
        classtrack_shim::set_class_level(ClassId(class), 0);
    }
    ensure_running(&mut w)?;
    drop(w);
    rewatch();
    Ok(())
}

/// Starts the watcher thread if this process has none (a forked child does not have its
/// parent's).
fn ensure_running(w: &mut Watcher) -> Result<()> {
    let generation = crate::fork::generation();
    if w.generation == Some(generation) {
        return Ok(());
    }
    let thread = std::thread::Builder::new()
        .name("classtrack-peak".into())
        .spawn(watch)
        .map_err(|source| Error::Spawn {
            thread: "classtrack-peak",
            source,
        })?;
    classtrack_shim::set_peak_waker(thread.thread().clone());
    w.generation = Some(generation);
    Ok(())
}

/// The histories of the trackers alive.
fn histories() -> Vec<Arc<History>> {
    let mut w = WATCHER.lock();
    w.histories.retain(|h| h.strong_count() > 0);
    w.histories.iter().filter_map(Weak::upgrade).collect()
}

/// Makes `snap` (a snapshot the tracker took) its peak if the user's classes sum to more there
/// than at the recorded peak. Returns whether it did; the caller then calls [`rewatch`], with
/// the tracker's lock released.
pub(crate) fn offer_snapshot(st: &mut crate::history::State, snap: &Arc<Snapshot>) -> bool {
    let bytes = user_class_bytes(snap);
    if st
        .peak
        .as_ref()
        .is_some_and(|p| user_class_bytes(p) >= bytes)
    {
        return false;
    }
    st.peak = Some(snap.clone());
    true
}

/// The lowest peak the trackers recorded (0 for one with none); `None` without a tracker.
/// Takes each tracker's lock in turn (see [`rewatch`]).
fn lowest_peak(histories: &[Arc<History>]) -> Option<u64> {
    histories
        .iter()
        .map(|h| h.lock().peak.as_ref().map_or(0, |p| user_class_bytes(p)))
        .min()
}

/// Sets the level at which the allocator wakes the watcher: one step above the lowest peak
/// recorded by a tracker alive (nobody watches when there is no tracker).
///
/// It takes each tracker's lock in turn: call it with no lock of classtrack's held (a tracker's
/// lock held meanwhile would invert the order the fork handlers take them in).
pub(crate) fn rewatch() {
    match lowest_peak(&histories()) {
        Some(bytes) => classtrack_shim::watch_peak(bytes.saturating_add(step(bytes)), step(bytes)),
        None => classtrack_shim::watch_peak(u64::MAX, 0),
    }
}

/// Offers a reading of the counters to each tracker: it becomes the tracker's peak if its
/// user heap is larger than the recorded one. Every class's live bytes also go to the
/// tracker's per-class peaks, and each user class's level is set one step above its lowest
/// peak among the trackers. Returns whether some tracker took the reading as its peak.
fn offer(snap: &Snapshot, histories: &[Arc<History>]) -> bool {
    let bytes = user_class_bytes(snap);
    let mut taken = false;
    let mut levels: Vec<u64> = vec![u64::MAX; snap.classes.len()];
    for history in histories {
        let time = history.now();
        let keep = {
            let mut st = history.lock();
            st.peaks.cover(snap.unseen_from as usize);
            for (c, level) in snap.classes.iter().zip(&mut levels) {
                let peak = st.peaks.raise(c.id, c.live_bytes);
                *level = (*level).min(peak);
            }
            if beaten(&st, bytes) {
                continue;
            }
            st.retention.snapshot_classes
        };
        // The tracker keeps its peak as it keeps a recent snapshot other than the latest:
        // the largest classes, the others summed (`Retention::snapshot_classes`). Trimmed
        // outside its lock.
        let mut mine = snap.trimmed(keep, &[]);
        mine.time = time;
        let mut st = history.lock();
        if beaten(&st, bytes) {
            continue;
        }
        st.record_peaks(&mut mine);
        let old = st.peak.replace(Arc::new(mine));
        drop(st);
        drop(old);
        taken = true;
    }
    for (c, peak) in snap.classes.iter().zip(levels) {
        if c.id >= ClassId::FIRST_USER && peak != u64::MAX {
            classtrack_shim::set_class_level(c.id, peak.saturating_add(step(peak)));
        }
    }
    taken
}

/// Whether the tracker's recorded peak is at least `bytes` of user classes.
fn beaten(st: &crate::history::State, bytes: u64) -> bool {
    st.peak
        .as_ref()
        .is_some_and(|p| user_class_bytes(p) >= bytes)
}

/// The longest the watcher sleeps between two looks at the published figure.
const TIMEOUT: Duration = Duration::from_secs(1);

/// The watcher thread: waits to be unparked by the allocator, reads the counters, offers the
/// reading to the trackers and sets the next level.
fn watch() {
    let _g = OverheadGuard::new();
    loop {
        // Unparked by a check that saw a new high; the timeout only keeps the thread from
        // sleeping for ever should a wake be lost to a race (a check may see an old level).
        let parked = std::time::Instant::now();
        std::thread::park_timeout(TIMEOUT);
        let woken = parked.elapsed() < TIMEOUT;
        let histories = histories();
        if histories.is_empty() {
            continue;
        }
        if !woken {
            // A timeout: a reading only if the figure the checks publish says it is worth one.
            let estimate = classtrack_shim::user_heap_estimate();
            let lowest = lowest_peak(&histories).unwrap_or(0);
            if estimate < lowest.saturating_add(step(lowest)) {
                continue;
            }
        }
        let snap = Snapshot::take(0.0, DESCRIPTION);
        offer(&snap, &histories);
        drop(histories);
        rewatch();
    }
}

/// [`ClassTracker::peak`](crate::ClassTracker::peak): the recorded peak, or the heap now if
/// it is larger (reading the counters now).
pub(crate) fn peak(history: &Arc<History>) -> Option<Arc<Snapshot>> {
    let _g = OverheadGuard::new();
    // A forked child has no watcher until it asks (its parent's thread is not in it).
    let _ = ensure_running(&mut WATCHER.lock());
    let now = Snapshot::take(0.0, DESCRIPTION);
    if !now.allocator_installed {
        return None;
    }
    if offer(&now, std::slice::from_ref(history)) {
        rewatch();
    }
    history.lock().peak.clone()
}

/// [`ClassTracker::reset_peak`](crate::ClassTracker::reset_peak): the heap now becomes the
/// peak.
pub(crate) fn reset(history: &Arc<History>) {
    let _g = OverheadGuard::new();
    let _ = ensure_running(&mut WATCHER.lock());
    let now = Snapshot::take(history.now(), DESCRIPTION);
    let keep = history.lock().retention.snapshot_classes;
    let mut now = now.trimmed(keep, &[]);
    let mut st = history.lock();
    st.record_peaks(&mut now);
    let old = st.peak.replace(Arc::new(now));
    drop(st);
    drop(old);
    rewatch();
}

/// The watcher's lock, for the fork handlers.
pub(crate) fn fork_lock() -> Box<dyn std::any::Any> {
    Box::new(WATCHER.lock())
}
