//! What a tracker keeps over time, bounded: its recent snapshots (the latest whole, the others
//! trimmed to their largest and changed classes), a downsampled series
//! of older ones, its tracked classes with their instance-count histories, and its instances
//! with their size histories.
//!
//! Every series here has a fixed capacity ([`Retention`]). When a series is full, its oldest
//! three quarters are halved: of each pair of neighbouring points the one with the larger value
//! stays (so peaks survive), the very first point always stays, and the newest quarter is
//! untouched. Recent history is kept at full resolution and older history ever more coarsely,
//! as in a round-robin database; what was dropped is counted in [`Compaction`].
//!
//! [`Tracked<T>`](crate::Tracked) reports its death here (through a weak reference), not to
//! the tracker.

use std::collections::{BTreeMap, VecDeque};
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::sync::{Arc, MutexGuard};
use std::time::Instant;

use classtrack_shim::{ClassId, OverheadGuard};
use hashbrown::HashMap;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::instance::{Source, TrackOptions};
use crate::objects::Referent;
use crate::snapshot::{ClassTotals, Snapshot};
use crate::stats::Breakdown;
use crate::stats::SnapshotStats;
use crate::sync::{Lock, Mailbox};

/// How much history a tracker keeps: the bound on its own memory.
///
/// A tracker never keeps more than this, however long it runs and however often it takes
/// snapshots; what it drops to stay within it is counted in [`Compaction`]. Its memory is
/// about (figures measured on x86-64 Linux; names and descriptions add their length):
///
/// ```text
/// C × 96 B                                                the latest snapshot (80 B a class),
///                                                         and per class its peak and activity
/// + recent_snapshots × (S × 110 B + T × 90 B + 300 B)   the other recent snapshots, trimmed
/// + snapshot_history × (T × 90 B + K × 110 B + 200 B)   older snapshots, summarized
/// + (L + dead_instances) × (1.5 KiB + instance_sizes × 16 B [+ 512 B with `trace`])
/// + T × class_history × 16 B                              class histories
/// ```
///
/// for `C` classes that have allocated (idle ones left out of snapshots count 16 B:
/// [`idle_after`](Self::idle_after)), `S` classes kept per recent snapshot (all `C` up to
/// [`snapshot_classes`](Self::snapshot_classes), and at most twice that plus two beyond:
/// the largest, and those that changed), `T` tracked classes, `K` classes kept per summary
/// (the two reserved ones and up to [`summary_classes`](Self::summary_classes)) and `L` live
/// instances (the program's own objects: each live instance is always kept); the 1.5 KiB of
/// an instance hold its record, names and a representation of up to 128 ASCII characters.
/// With the defaults, a program with 1,000 classes, 10 tracked classes and 1,000 live
/// instances keeps at most about 3.2 MiB (recent snapshots) + 4.7 MiB (older snapshots) + 22 MiB
/// (instances, 10,000 of them dead) + 0.2 MiB (class histories) ≈ 30 MiB, however long it
/// runs; with `dead_instances(1000)`, about 12 MiB. With a million classes, the snapshots take
/// about 96 MB (the latest) + 7 MB (the 31 others, trimmed to about 2,000 classes at most) +
/// 4.7 MiB (older ones), however many snapshots it takes. Set smaller limits with
/// [`ClassTracker::set_retention`](crate::ClassTracker::set_retention); the
/// `bounded_memory` test checks the formula. (classtrack's process-wide memory, the same for
/// every tracker, is apart: the sampler's channels and unwinder caches, about 600 KiB, and the
/// class registry.)
///
/// ```
/// use classtrack::{ClassTracker, Retention};
///
/// let tracker = ClassTracker::new();
/// tracker
///     .set_retention(Retention::new().recent_snapshots(8).snapshot_history(256))
///     .unwrap();
/// assert_eq!(tracker.retention().recent_snapshots, 8);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Retention {
    /// Recent snapshots kept, with their sites ([`ClassTracker::snapshots`]; see
    /// [`snapshot_classes`](Self::snapshot_classes) for the classes each keeps); older ones
    /// are summarized into the snapshot history. Default 32; may be 0.
    ///
    /// [`ClassTracker::snapshots`]: crate::ClassTracker::snapshots
    pub recent_snapshots: usize,
    /// Summaries of older snapshots (time, description, allocator and process memory,
    /// overhead, tracked classes' totals), downsampled when full. Default 1,024; at least 4.
    pub snapshot_history: usize,
    /// (time, size) points per instance, downsampled when full (the first, the last and the
    /// largest size always stay). Default 32; at least 4.
    pub instance_sizes: usize,
    /// (time, instances alive) points per tracked class, one per birth and death, downsampled
    /// when full (the first point and the peaks stay). Default 1,024; at least 4.
    pub class_history: usize,
    /// Dead instances kept, the most recent deaths; live instances are always kept. Default
    /// 10,000; may be 0.
    pub dead_instances: usize,
    /// Classes whose totals a snapshot summary keeps: the largest by live bytes, besides the
    /// two reserved classes; the others are summed into the summary's
    /// [`omitted`](crate::SnapshotStats::omitted). Recent snapshots keep more (see
    /// [`snapshot_classes`](Self::snapshot_classes)). Default
    /// 32; may be 0.
    pub summary_classes: usize,
    /// Sampled allocation sites per class that [`ClassTracker::stats`] (and so a dump) keeps
    /// of each recent snapshot: the largest by live bytes, then by bytes allocated. Older
    /// summaries keep no site. Default 16; may be 0.
    ///
    /// [`ClassTracker::stats`]: crate::ClassTracker::stats
    pub sites_per_class: usize,
    /// Classes each recent snapshot but the latest keeps, besides the two reserved ones: the
    /// `snapshot_classes` largest by live bytes, and up to as many of those whose totals
    /// changed from the snapshot before or to the snapshot after (the largest changes of
    /// live bytes first). The others are summed into its
    /// [`omitted`](crate::Snapshot::omitted), so its totals stay exact. The latest snapshot
    /// keeps every class (but idle ones): with a million classes, a tracker keeps one
    /// snapshot of every class, not [`recent_snapshots`](Self::recent_snapshots) of them.
    /// Default 1,000; may be 0.
    #[serde(default = "default_snapshot_classes")]
    pub snapshot_classes: usize,
    /// A user class with nothing live, and no allocation or free for this long, is left out of
    /// the snapshots (summed into their [`omitted`](crate::Snapshot::omitted), as idle), so
    /// that a service that has seen ten million connections in its life does not list ten
    /// million classes. Its activity is looked at in the tracker's snapshots: a class is idle
    /// once its counts stayed the same over snapshots this far apart. Default `None`: every
    /// class is listed.
    #[serde(default)]
    pub idle_after: Option<std::time::Duration>,
}

fn default_snapshot_classes() -> usize {
    DEFAULT_SNAPSHOT_CLASSES
}

/// The default of [`Retention::snapshot_classes`].
const DEFAULT_SNAPSHOT_CLASSES: usize = 1000;

/// The smallest capacity of a downsampled series: room for its first point, a pair to merge
/// and its newest point.
const MIN_SERIES: usize = 4;

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            recent_snapshots: 32,
            snapshot_history: 1024,
            instance_sizes: 32,
            class_history: 1024,
            dead_instances: crate::tracker::DEFAULT_DEAD_INSTANCE_LIMIT,
            summary_classes: 32,
            sites_per_class: 16,
            snapshot_classes: DEFAULT_SNAPSHOT_CLASSES,
            idle_after: None,
        }
    }
}

impl Retention {
    /// The defaults.
    pub fn new() -> Retention {
        Retention::default()
    }

    /// Sets [`recent_snapshots`](Self::recent_snapshots).
    pub fn recent_snapshots(mut self, n: usize) -> Retention {
        self.recent_snapshots = n;
        self
    }

    /// Sets [`snapshot_history`](Self::snapshot_history).
    pub fn snapshot_history(mut self, n: usize) -> Retention {
        self.snapshot_history = n;
        self
    }

    /// Sets [`instance_sizes`](Self::instance_sizes).
    pub fn instance_sizes(mut self, n: usize) -> Retention {
        self.instance_sizes = n;
        self
    }

    /// Sets [`class_history`](Self::class_history).
    pub fn class_history(mut self, n: usize) -> Retention {
        self.class_history = n;
        self
    }

    /// Sets [`dead_instances`](Self::dead_instances).
    pub fn dead_instances(mut self, n: usize) -> Retention {
        self.dead_instances = n;
        self
    }

    /// Sets [`summary_classes`](Self::summary_classes).
    pub fn summary_classes(mut self, n: usize) -> Retention {
        self.summary_classes = n;
        self
    }

    /// Sets [`sites_per_class`](Self::sites_per_class).
    pub fn sites_per_class(mut self, n: usize) -> Retention {
        self.sites_per_class = n;
        self
    }

    /// Sets [`snapshot_classes`](Self::snapshot_classes).
    pub fn snapshot_classes(mut self, n: usize) -> Retention {
        self.snapshot_classes = n;
        self
    }

    /// Sets [`idle_after`](Self::idle_after): `Some(while)` leaves classes idle for that long
    /// out of snapshots, `None` lists every class.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let tracker = classtrack::ClassTracker::new();
    /// let retention = classtrack::Retention::new().idle_after(Some(Duration::from_secs(600)));
    /// tracker.set_retention(retention).unwrap();
    /// ```
    pub fn idle_after(mut self, idle: Option<std::time::Duration>) -> Retention {
        self.idle_after = idle;
        self
    }

    /// Checks the limits: each downsampled series needs room for at least 4 points.
    pub(crate) fn check(&self) -> Result<()> {
        for (setting, value) in [
            ("snapshot_history", self.snapshot_history),
            ("instance_sizes", self.instance_sizes),
            ("class_history", self.class_history),
        ] {
            if value < MIN_SERIES {
                return Err(Error::InvalidRetention {
                    setting,
                    value,
                    minimum: MIN_SERIES,
                });
            }
        }
        Ok(())
    }
}

/// What a tracker dropped to stay within its [`Retention`], since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Compaction {
    /// Full snapshots reduced to summaries (they left the recent snapshots).
    pub snapshots_summarized: u64,
    /// Snapshot summaries dropped by downsampling the snapshot history.
    pub snapshot_points_dropped: u64,
    /// (time, size) points dropped by downsampling instances' size histories.
    pub size_points_dropped: u64,
    /// (time, instances alive) points dropped by downsampling classes' histories.
    pub history_points_dropped: u64,
    /// Dead instances forgotten (beyond `dead_instances`).
    pub instances_evicted: u64,
}

/// A point of a downsampled series: its value decides which of two neighbours stays.
pub(crate) trait Point {
    /// The value compared when two neighbours are merged: the larger stays.
    fn value(&self) -> u64;
}

impl Point for (f64, u64) {
    fn value(&self) -> u64 {
        self.1
    }
}

impl Point for SnapshotStats {
    fn value(&self) -> u64 {
        self.allocator.live_bytes
    }
}

/// A series of at most `cap` points, downsampled when full (see the module documentation).
#[derive(Debug, Clone)]
pub(crate) struct Series<T> {
    points: Vec<T>,
    cap: usize,
}

impl<T: Point> Series<T> {
    pub(crate) fn new(cap: usize) -> Series<T> {
        Series {
            points: Vec::new(),
            cap: cap.max(MIN_SERIES),
        }
    }

    /// Appends `p`, first downsampling if full; returns how many points were dropped.
    #[inline]
    pub(crate) fn push(&mut self, p: T) -> u64 {
        let dropped = if self.points.len() >= self.cap {
            self.compact()
        } else {
            0
        };
        self.points.push(p);
        dropped
    }

    /// Changes the capacity, downsampling until the points fit; returns how many were dropped.
    pub(crate) fn set_cap(&mut self, cap: usize) -> u64 {
        self.cap = cap.max(MIN_SERIES);
        let mut dropped = 0;
        while self.points.len() > self.cap {
            dropped += self.compact();
        }
        self.points.shrink_to(self.cap);
        dropped
    }

    /// Halves the oldest three quarters: the first point stays, then of each pair the one with
    /// the larger value (the later on a tie). Drops at least one point when there are 4. In
    /// place: no allocation.
    #[cold]
    #[inline(never)]
    fn compact(&mut self) -> u64 {
        let len = self.points.len();
        if len < MIN_SERIES {
            return 0;
        }
        let end = len - len / 4;
        // The first point stays where it is. `w` is where the next kept point goes; it never
        // passes `i`, the next point to look at, so a swap moves a kept point down and puts
        // the point it displaces (already looked at) where nothing is looked at again.
        let mut w = 1;
        let mut i = 1;
        while i < len {
            let keep = if i + 1 < end {
                let later = self.points[i + 1].value() >= self.points[i].value();
                i += 2;
                if later {
                    i - 1
                } else {
                    i - 2
                }
            } else {
                i += 1;
                i - 1
            };
            self.points.swap(w, keep);
            w += 1;
        }
        self.points.truncate(w);
        (len - w) as u64
    }

    pub(crate) fn points(&self) -> &[T] {
        &self.points
    }

    #[cfg(test)]
    pub(crate) fn last(&self) -> Option<&T> {
        self.points.last()
    }
}

/// A class this tracker has tracked.
pub(crate) struct ClassRecord {
    pub(crate) name: String,
    pub(crate) options: TrackOptions,
    /// Whether new constructions register instances.
    pub(crate) attached: bool,
    /// Instances alive now.
    pub(crate) active: u64,
    /// Instances ever registered.
    pub(crate) created: u64,
    /// The most instances alive at once.
    pub(crate) peak: u64,
    /// (time, instances alive) at births and deaths, downsampled.
    pub(crate) history: Series<(f64, u64)>,
}

impl ClassRecord {
    pub(crate) fn new(name: String, options: TrackOptions, attached: bool, cap: usize) -> Self {
        ClassRecord {
            name,
            options,
            attached,
            active: 0,
            created: 0,
            peak: 0,
            history: Series::new(cap),
        }
    }
}

/// What a tracker keeps of one class between snapshots: 16 bytes.
#[derive(Clone, Copy, Default)]
pub(crate) struct Mark {
    /// The largest live bytes seen.
    peak: u64,
    /// The low 32 bits of its allocations and frees at the last snapshot that saw it: a
    /// change tells activity.
    counts: u32,
    /// When it was last seen active (seconds on the tracker's clock); `NaN` before it was
    /// seen.
    active_at: f32,
}

/// Per class, what the tracker keeps between snapshots ([`Mark`]), indexed by class id.
#[derive(Default)]
pub(crate) struct Marks(Vec<Mark>);

impl Marks {
    fn mark(&mut self, class: ClassId) -> &mut Mark {
        let i = class.index();
        if i >= self.0.len() {
            // One class at a time: grown by doubling (the snapshots cover every class at once,
            // exactly, before they go through them).
            self.0.resize(
                i + 1,
                Mark {
                    active_at: f32::NAN,
                    ..Mark::default()
                },
            );
        }
        &mut self.0[i]
    }

    /// Makes room for the classes below `classes`, exactly: a vector grown by doubling could
    /// hold twice the 16 bytes a class.
    pub(crate) fn cover(&mut self, classes: usize) {
        if classes > self.0.len() {
            self.0.reserve_exact(classes - self.0.len());
            self.0.resize(
                classes,
                Mark {
                    active_at: f32::NAN,
                    ..Mark::default()
                },
            );
        }
    }

    /// Raises `class`'s peak to `bytes` if higher; returns the peak.
    #[inline]
    pub(crate) fn raise(&mut self, class: ClassId, bytes: u64) -> u64 {
        let m = self.mark(class);
        m.peak = m.peak.max(bytes);
        m.peak
    }

    /// Records `c` as seen at `time`; returns whether it has been idle for `idle` seconds:
    /// nothing live, and its counts unchanged since a snapshot at least that long ago.
    fn seen(&mut self, c: &ClassTotals, time: f64, idle: Option<f64>) -> bool {
        let m = self.mark(c.id);
        let counts = (c.allocations.wrapping_add(c.frees)) as u32;
        if m.active_at.is_nan() || counts != m.counts || c.live_bytes > 0 {
            m.counts = counts;
            m.active_at = time as f32;
            return false;
        }
        idle.is_some_and(|idle| time - f64::from(m.active_at) >= idle)
    }
}

/// The tracker's record of one instance.
pub(crate) struct InstanceRecord {
    pub(crate) id: u64,
    pub(crate) class: ClassId,
    pub(crate) class_name: String,
    pub(crate) name: String,
    pub(crate) repr: String,
    pub(crate) birth: f64,
    pub(crate) death: Option<f64>,
    /// Whether the tracker still measures it (false after `detach_all`).
    pub(crate) attached: bool,
    pub(crate) source: Source,
    /// (snapshot time, live bytes) at the snapshots of its life, downsampled.
    pub(crate) sizes: Series<(f64, u64)>,
    pub(crate) max_size: u64,
    /// Return addresses of the construction stack, resolved only when shown.
    pub(crate) trace: Option<Box<[usize]>>,
    /// The breakdown at the last snapshot (by nested scopes, or by traversal).
    pub(crate) referents: Vec<Referent>,
    /// How its size and breakdown are found.
    pub(crate) breakdown: Breakdown,
    /// The last snapshot pass ([`State::begin_pass`]) that measured it.
    pub(crate) pass: u64,
}

impl InstanceRecord {
    /// Appends its size at a snapshot; returns how many older points were dropped.
    #[inline]
    pub(crate) fn record_size(&mut self, time: f64, size: u64) -> u64 {
        self.max_size = self.max_size.max(size);
        self.sizes.push((time, size))
    }

    /// Whether a snapshot's pass over the live instances measures it: alive, attached and
    /// built by `construct` (shared objects are measured apart).
    fn in_pass(&self) -> bool {
        self.death.is_none() && self.attached && matches!(self.source, Source::Constructed { .. })
    }
}

/// Records in pages of [`PAGE`]: growing never moves a record (so no push copies all of them,
/// under the lock), and the pages emptied by shrinking are freed.
struct Paged<T> {
    pages: Vec<Vec<T>>,
    len: usize,
}

/// Records per page of [`Paged`] (about 50 KiB of instance records).
const PAGE: usize = 256;

impl<T> Paged<T> {
    const fn new() -> Paged<T> {
        Paged {
            pages: Vec::new(),
            len: 0,
        }
    }

    fn push(&mut self, value: T) {
        if self.len % PAGE == 0 {
            self.pages.push(Vec::with_capacity(PAGE));
        }
        let page = self.pages.last_mut();
        debug_assert!(page.as_ref().is_some_and(|p| p.len() < PAGE));
        if let Some(page) = page {
            page.push(value);
        }
        self.len += 1;
    }

    /// Removes the value at `i`, putting the last one in its place (as `Vec::swap_remove`).
    fn swap_remove(&mut self, i: usize) -> T {
        assert!(i < self.len, "classtrack: record {i} of {}", self.len);
        let last = self.len - 1;
        if i != last {
            let (a, b) = (self.page_of(i), self.page_of(last));
            if a == b {
                self.pages[a].swap(i % PAGE, last % PAGE);
            } else {
                let (low, high) = self.pages.split_at_mut(b);
                std::mem::swap(&mut low[a][i % PAGE], &mut high[0][last % PAGE]);
            }
        }
        let value = match self.pages.last_mut().and_then(Vec::pop) {
            Some(v) => v,
            None => unreachable!("classtrack: the last page holds the last record"),
        };
        self.len -= 1;
        if self.len % PAGE == 0 {
            self.pages.pop();
        }
        value
    }

    fn page_of(&self, i: usize) -> usize {
        i / PAGE
    }

    fn get(&self, i: usize) -> &T {
        &self.pages[i / PAGE][i % PAGE]
    }

    fn get_mut(&mut self, i: usize) -> &mut T {
        &mut self.pages[i / PAGE][i % PAGE]
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.pages.iter_mut().flatten()
    }
}

/// A tracker's instance records, by id: the live ones a snapshot measures, packed together so
/// that its pass reads them in a row, and the others (dead, detached, shared) apart.
pub(crate) struct Instances {
    /// Records that [`InstanceRecord::in_pass`]; in no particular order.
    live: Paged<InstanceRecord>,
    /// Where each record of `live` is.
    index: BTreeMap<u64, u32>,
    /// The other records.
    rest: BTreeMap<u64, InstanceRecord>,
}

impl Instances {
    pub(crate) const fn new() -> Instances {
        Instances {
            live: Paged::new(),
            index: BTreeMap::new(),
            rest: BTreeMap::new(),
        }
    }

    /// Keeps `rec`, whose id must be new.
    pub(crate) fn insert(&mut self, rec: InstanceRecord) {
        debug_assert!(
            self.get(&rec.id).is_none(),
            "classtrack: instance id reused"
        );
        if rec.in_pass() {
            self.index.insert(rec.id, self.live.len as u32);
            self.live.push(rec);
        } else {
            self.rest.insert(rec.id, rec);
        }
    }

    pub(crate) fn get(&self, id: &u64) -> Option<&InstanceRecord> {
        match self.index.get(id) {
            Some(&i) => Some(self.live.get(i as usize)),
            None => self.rest.get(id),
        }
    }

    /// A record to change. A change that takes it out of snapshots' pass (a death, a detach)
    /// must be followed by [`settle`](Self::settle).
    pub(crate) fn get_mut(&mut self, id: &u64) -> Option<&mut InstanceRecord> {
        match self.index.get(id) {
            Some(&i) => Some(self.live.get_mut(i as usize)),
            None => self.rest.get_mut(id),
        }
    }

    /// Moves record `id` out of the live records if it no longer belongs there.
    pub(crate) fn settle(&mut self, id: u64) {
        if let Some(&i) = self.index.get(&id) {
            if !self.live.get(i as usize).in_pass() {
                let rec = self.take_live(id, i as usize);
                self.rest.insert(id, rec);
            }
        }
    }

    /// [`settle`](Self::settle) for every record (after a change made through
    /// [`values_mut`](Self::values_mut)).
    pub(crate) fn settle_all(&mut self) {
        let mut i = 0;
        while i < self.live.len {
            let rec = self.live.get(i);
            if rec.in_pass() {
                i += 1;
            } else {
                // The last record takes its place: look at `i` again.
                let id = rec.id;
                let rec = self.take_live(id, i);
                self.rest.insert(id, rec);
            }
        }
    }

    fn take_live(&mut self, id: u64, i: usize) -> InstanceRecord {
        self.index.remove(&id);
        let rec = self.live.swap_remove(i);
        if i < self.live.len {
            let moved = self.live.get(i).id;
            self.index.insert(moved, i as u32);
        }
        rec
    }

    pub(crate) fn remove(&mut self, id: &u64) -> Option<InstanceRecord> {
        match self.index.get(id) {
            Some(&i) => Some(self.take_live(*id, i as usize)),
            None => self.rest.remove(id),
        }
    }

    /// Every record, in id order.
    pub(crate) fn values(&self) -> impl Iterator<Item = &InstanceRecord> {
        let mut live = self
            .index
            .values()
            .map(|&i| self.live.get(i as usize))
            .peekable();
        let mut rest = self.rest.values().peekable();
        std::iter::from_fn(move || match (live.peek(), rest.peek()) {
            (Some(a), Some(b)) if a.id > b.id => rest.next(),
            (Some(_), _) => live.next(),
            (None, _) => rest.next(),
        })
    }

    /// Every record, in no particular order.
    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut InstanceRecord> {
        self.live.iter_mut().chain(self.rest.values_mut())
    }

    /// How many records a snapshot's pass goes through.
    pub(crate) fn live_len(&self) -> usize {
        self.live.len
    }

    /// The record at `i` (below [`live_len`](Self::live_len)) of a snapshot's pass; a change
    /// must keep it [`in_pass`](InstanceRecord::in_pass).
    pub(crate) fn live_mut(&mut self, i: usize) -> &mut InstanceRecord {
        self.live.get_mut(i)
    }
}

/// Everything a tracker keeps, behind its lock.
pub(crate) struct State {
    /// The most recent snapshots, oldest first.
    pub(crate) recent: VecDeque<Arc<Snapshot>>,
    /// Summaries of the snapshots older than `recent`, downsampled, oldest first.
    pub(crate) older: Series<SnapshotStats>,
    pub(crate) classes: HashMap<ClassId, ClassRecord>,
    /// Live instances, and the most recent dead ones, by id.
    pub(crate) instances: Instances,
    /// The latest time of a birth or death applied: later ones are applied no earlier, so
    /// each class's history stays in time order (they may reach the lock out of order).
    last_event: f64,
    /// Dead instances still kept, oldest death first.
    dead: VecDeque<u64>,
    pub(crate) retention: Retention,
    pub(crate) compaction: Compaction,
    /// Shared objects alive now, by address: to refuse tracking one twice.
    pub(crate) shared: HashMap<usize, u64>,
    /// Per class, the largest live bytes its snapshots have seen and when it was last active.
    pub(crate) peaks: Marks,
    /// The classes whose totals changed from the snapshot before the latest to the latest:
    /// the latest keeps them when it is trimmed (see [`Retention::snapshot_classes`]).
    pub(crate) changed_into_latest: Vec<ClassId>,
    /// The reading of the counters at the largest live user heap seen (see `crate::peak`).
    pub(crate) peak: Option<Arc<Snapshot>>,
    /// Snapshot passes over the instances begun so far.
    passes: u64,
}

impl State {
    fn new(retention: Retention) -> State {
        State {
            recent: VecDeque::new(),
            older: Series::new(retention.snapshot_history),
            classes: HashMap::new(),
            instances: Instances::new(),
            last_event: 0.0,
            dead: VecDeque::new(),
            retention,
            compaction: Compaction::default(),
            shared: HashMap::new(),
            peaks: Marks::default(),
            changed_into_latest: Vec::new(),
            peak: None,
            passes: 0,
        }
    }

    /// Forgets every snapshot, class, instance and count, keeping the settings (instance ids
    /// are counted by [`History`]); returns what was forgotten, to be dropped outside the lock.
    pub(crate) fn clear(&mut self) -> State {
        let mut fresh = State::new(self.retention);
        fresh.passes = self.passes;
        fresh.last_event = self.last_event;
        std::mem::replace(self, fresh)
    }

    /// A new snapshot pass over the instances: its number, never 0 (see
    /// [`InstanceRecord::pass`]).
    pub(crate) fn begin_pass(&mut self) -> u64 {
        self.passes += 1;
        self.passes
    }

    /// Keeps a new instance's record, with this tracker's capacity for its sizes.
    pub(crate) fn insert_instance(&mut self, mut rec: InstanceRecord) {
        rec.sizes = Series::new(self.retention.instance_sizes);
        self.instances.insert(rec);
    }

    /// A class record, made with this tracker's history capacity.
    pub(crate) fn class_entry(
        &mut self,
        class: ClassId,
        make: impl FnOnce() -> (String, TrackOptions, bool),
    ) -> &mut ClassRecord {
        let cap = self.retention.class_history;
        self.classes.entry(class).or_insert_with(|| {
            let (name, options, attached) = make();
            ClassRecord::new(name, options, attached, cap)
        })
    }

    /// An instance of `class` was born at `time`.
    pub(crate) fn record_birth(&mut self, class: ClassId, time: f64) {
        let time = event_time(&mut self.last_event, time);
        if let Some(c) = self.classes.get_mut(&class) {
            c.active += 1;
            c.created += 1;
            c.peak = c.peak.max(c.active);
            self.compaction.history_points_dropped += c.history.push((time, c.active));
        }
    }

    /// Records the death of instance `id` at `time`, in its class's history too, and forgets
    /// the oldest dead instances beyond the limit. Ids of instances no longer kept (or never
    /// registered) are ignored.
    pub(crate) fn record_death(&mut self, id: u64, time: f64) {
        let Some(rec) = self.instances.get_mut(&id) else {
            return;
        };
        if rec.death.is_some() {
            return;
        }
        let time = event_time(&mut self.last_event, time);
        rec.death = Some(time);
        if let Source::Shared(obj) = &rec.source {
            self.shared.remove(&obj.address());
        }
        if let Some(class) = self.classes.get_mut(&rec.class) {
            class.active = class.active.saturating_sub(1);
            self.compaction.history_points_dropped += class.history.push((time, class.active));
        }
        self.instances.settle(id);
        self.dead.push_back(id);
        self.evict();
    }

    /// Forgets the oldest dead instances beyond the limit.
    fn evict(&mut self) {
        while self.dead.len() > self.retention.dead_instances {
            if let Some(old) = self.dead.pop_front() {
                self.instances.remove(&old);
                self.compaction.instances_evicted += 1;
            }
        }
    }

    /// Sets each class's `peak_seen_bytes` in `snap` (not yet shared) from the peaks seen so
    /// far, and keeps the new peaks.
    pub(crate) fn record_peaks(&mut self, snap: &mut Snapshot) {
        for c in snap.classes_mut() {
            c.peak_seen_bytes = self.peaks.raise(c.id, c.live_bytes);
        }
    }

    /// As [`record_peaks`](Self::record_peaks) for a snapshot taken at `time`, and notes
    /// which classes were active: the user classes idle for
    /// [`Retention::idle_after`] are moved from `snap.classes` into its `omitted`.
    pub(crate) fn record_classes(&mut self, snap: &mut Snapshot, time: f64) {
        let idle = self.retention.idle_after.map(|d| d.as_secs_f64());
        self.peaks.cover(snap.unseen_from as usize);
        let peaks = &mut self.peaks;
        let omitted = &mut snap.omitted;
        snap.classes.retain_mut(|c| {
            c.peak_seen_bytes = peaks.raise(c.id, c.live_bytes);
            let idle = peaks.seen(c, time, idle) && !c.is_reserved();
            if idle {
                omitted.add(c);
                omitted.idle += 1;
            }
            !idle
        });
    }

    /// Keeps `snap` among the recent snapshots, summarizing the oldest one beyond the limit.
    pub(crate) fn record_snapshot(&mut self, snap: Arc<Snapshot>) {
        self.recent.push_back(snap);
        self.trim_recent();
    }

    fn trim_recent(&mut self) {
        while self.recent.len() > self.retention.recent_snapshots {
            if let Some(old) = self.recent.pop_front() {
                self.compaction.snapshots_summarized += 1;
                self.compaction.snapshot_points_dropped += self
                    .older
                    .push(SnapshotStats::summary(&old, self.retention.summary_classes));
            }
        }
    }

    /// Applies new limits to what is kept now.
    pub(crate) fn set_retention(&mut self, retention: Retention) {
        self.retention = retention;
        self.trim_recent();
        self.compaction.snapshot_points_dropped += self.older.set_cap(retention.snapshot_history);
        for c in self.classes.values_mut() {
            self.compaction.history_points_dropped += c.history.set_cap(retention.class_history);
        }
        for r in self.instances.values_mut() {
            self.compaction.size_points_dropped += r.sizes.set_cap(retention.instance_sizes);
        }
        self.evict();
    }
}

/// `time`, or the latest birth or death applied (`last`) if that is later; kept as the latest.
fn event_time(last: &mut f64, time: f64) -> f64 {
    *last = last.max(time);
    *last
}

/// What a tracker's instances report without waiting for its lock: applied to the [`State`] by
/// whoever holds the lock next (see [`History::post`]).
pub(crate) enum Event {
    /// An instance built by `construct`.
    Birth(Box<InstanceRecord>),
    /// A new representation of an instance.
    Repr(u64, String),
    /// The death of a constructed instance at a time, with its object id to give back.
    Death { id: u64, time: f64, object: u32 },
}

/// A class whose constructions register instances, as `construct` reads it.
pub(crate) struct Attached {
    pub(crate) name: String,
    pub(crate) options: TrackOptions,
}

/// A tracker's clock and its [`State`], shared with its instances' handles.
///
/// Building and dropping a tracked instance never waits for the tracker's lock, which a
/// snapshot holds for batches of its pass: the birth, representation and death are posted to a
/// mailbox that whoever holds the lock applies, first thing after taking it and last thing
/// before releasing it ([`StateGuard`]). The poster then takes the lock itself if it is free,
/// to apply them at once.
pub(crate) struct History {
    pub(crate) start: Instant,
    /// Held for short bookkeeping only: never while user code runs, and the allocator never
    /// takes it. Taken under an `OverheadGuard`, through [`History::lock`].
    state: Lock<State>,
    /// Births, representations and deaths not yet applied to `state`.
    events: Mailbox<Event>,
    /// The next instance id: never reset, so an id is never reused in a tracker's life (an
    /// old handle's death can never be taken for a new instance's).
    next_id: AtomicU64,
    /// The attached classes' names and options, apart from `state` so that `construct` reads
    /// them without waiting for a snapshot. Changed under `state`'s lock, with the classes'
    /// records; held for a lookup only, and no other lock is taken under it.
    attached: Lock<HashMap<ClassId, Arc<Attached>>>,
}

/// The tracker's state, locked: the events posted before it was taken are applied, and those
/// posted while it is held are applied when it is dropped.
pub(crate) struct StateGuard<'a> {
    history: &'a History,
    guard: Option<MutexGuard<'a, State>>,
}

impl Deref for StateGuard<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        // The guard is taken out only in `drop`.
        self.guard
            .as_deref()
            .expect("classtrack: state guard used after release")
    }
}

impl DerefMut for StateGuard<'_> {
    fn deref_mut(&mut self) -> &mut State {
        self.guard
            .as_deref_mut()
            .expect("classtrack: state guard used after release")
    }
}

impl Drop for StateGuard<'_> {
    fn drop(&mut self) {
        if let Some(mut guard) = self.guard.take() {
            self.history.apply(&mut guard);
            drop(guard);
            self.history.apply_posted();
        }
    }
}

impl History {
    pub(crate) fn new() -> History {
        History {
            start: Instant::now(),
            state: Lock::new(State::new(Retention::default())),
            events: Mailbox::new(),
            next_id: AtomicU64::new(0),
            attached: Lock::new(HashMap::new()),
        }
    }

    /// Seconds since the tracker was created.
    pub(crate) fn now(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// Waits for the tracker's lock and takes it, applying the events posted so far.
    pub(crate) fn lock(&self) -> StateGuard<'_> {
        let mut guard = self.state.lock();
        self.apply(&mut guard);
        StateGuard {
            history: self,
            guard: Some(guard),
        }
    }

    /// The lock itself, for `fork()`'s handlers: posted events stay posted (they are applied
    /// by the next [`lock`](Self::lock)).
    pub(crate) fn raw_lock(&self) -> &Lock<State> {
        &self.state
    }

    /// The lock of the attached classes, for `fork()`'s handlers (taken after the state's).
    pub(crate) fn attached_lock(&self) -> &Lock<HashMap<ClassId, Arc<Attached>>> {
        &self.attached
    }

    /// Between batches of a long job, with the lock released: see [`Lock::let_waiters_in`].
    pub(crate) fn let_waiters_in(&self) {
        self.state.let_waiters_in();
    }

    /// A new instance id: every instance registered before has a smaller one.
    pub(crate) fn next_id(&self) -> u64 {
        // Relaxed: ids only need to be unique and increasing, which the read-modify-write
        // gives.
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The id the next instance will get: every instance registered so far has a smaller one.
    pub(crate) fn id_limit(&self) -> u64 {
        // Relaxed: an instance whose id is handed out concurrently may be left out of the
        // snapshot that reads this; either way is right for an instance born at that moment.
        self.next_id.load(Ordering::Relaxed)
    }

    /// The attached class `class`, if any.
    pub(crate) fn attached(&self, class: ClassId) -> Option<Arc<Attached>> {
        self.attached.lock().get(&class).cloned()
    }

    /// Records whether `class` (with `st.classes`'s record of it) registers instances; called
    /// under the tracker's lock whenever a class record is attached or detached.
    pub(crate) fn set_attached(&self, class: ClassId, record: Option<&ClassRecord>) {
        let entry = record.filter(|c| c.attached).map(|c| {
            Arc::new(Attached {
                name: c.name.clone(),
                options: c.options.clone(),
            })
        });
        let old = match entry {
            Some(e) => self.attached.lock().insert(class, e),
            None => self.attached.lock().remove(&class),
        };
        drop(old);
    }

    /// Detaches every class from `construct` (see [`set_attached`](Self::set_attached)).
    pub(crate) fn detach_all_classes(&self) {
        let old = std::mem::take(&mut *self.attached.lock());
        drop(old);
    }

    /// Hands `event` to the tracker's state without waiting for its lock: applied at once if
    /// the lock is free, else by the thread that holds it, before it releases it.
    pub(crate) fn post(&self, event: Event) {
        let _g = OverheadGuard::new();
        self.events.push(event);
        self.apply_posted();
    }

    /// Applies posted events while the lock is free to take, without waiting for it.
    fn apply_posted(&self) {
        loop {
            // SeqCst: with the fence of the other side (a poster's fence comes after its push,
            // a holder's after its unlock), either the holder sees the event in the mailbox
            // below or the poster finds the lock free, so no event is left behind by both.
            fence(Ordering::SeqCst);
            if self.events.is_empty() {
                return;
            }
            let Some(mut guard) = self.state.try_lock() else {
                // The holder applies it before releasing the lock, or comes back here after.
                return;
            };
            self.apply(&mut guard);
        }
    }

    /// Applies the posted events, oldest first, under the lock.
    fn apply(&self, st: &mut State) {
        if self.events.is_empty() {
            return;
        }
        let _g = OverheadGuard::new();
        let mut old_reprs = Vec::new();
        self.events.take_all(|event| match event {
            Event::Birth(rec) => {
                let (class, time) = (rec.class, rec.birth);
                st.insert_instance(*rec);
                st.record_birth(class, time);
            }
            Event::Repr(id, repr) => {
                if let Some(rec) = st.instances.get_mut(&id) {
                    old_reprs.push(std::mem::replace(&mut rec.repr, repr));
                }
            }
            Event::Death { id, time, object } => {
                st.record_death(id, time);
                crate::objects::release_tree(object);
            }
        });
        drop(old_reprs);
    }

    /// Records the deaths of shared objects whose last strong reference is gone.
    pub(crate) fn reap(&self, st: &mut State) {
        // Every live, attached shared object is in `shared` (and nothing else is): look at
        // those only, not at every instance.
        if st.shared.is_empty() {
            return;
        }
        let time = self.now();
        let mut gone: Vec<u64> = st
            .shared
            .values()
            .copied()
            .filter(|id| {
                st.instances.get(id).is_some_and(|r| {
                    r.death.is_none()
                        && r.attached
                        && matches!(&r.source, Source::Shared(obj) if !obj.alive())
                })
            })
            .collect();
        // In id order, as deaths were recorded when every instance was looked at.
        gone.sort_unstable();
        for id in gone {
            st.record_death(id, time);
        }
    }
}

impl Drop for History {
    fn drop(&mut self) {
        // The last handle is gone with deaths not yet applied: give their object ids back.
        // (A live instance's handle holds no strong reference, so its death comes later and
        // finds no history: it gives its ids back itself.)
        let _g = OverheadGuard::new();
        self.events.take_all(|event| {
            if let Event::Death { object, .. } = event {
                crate::objects::release_tree(object);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(cap: usize, values: impl IntoIterator<Item = u64>) -> (Series<(f64, u64)>, u64) {
        let mut s = Series::new(cap);
        let mut dropped = 0;
        for (i, v) in values.into_iter().enumerate() {
            dropped += s.push((i as f64, v));
        }
        (s, dropped)
    }

    #[test]
    fn a_series_stays_within_its_capacity_and_counts_what_it_drops() {
        for cap in [4, 5, 7, 32, 1000] {
            let (s, dropped) = series(cap, 0..100_000);
            assert!(s.points().len() <= cap, "cap {cap}: {}", s.points().len());
            assert_eq!(s.points().len() as u64 + dropped, 100_000);
        }
    }

    #[test]
    fn first_last_and_peak_stay() {
        let values: Vec<u64> = (0..10_000u64)
            .map(|i| if i == 4321 { 1_000_000 } else { i % 97 })
            .collect();
        let (s, _) = series(16, values.iter().copied());
        let pts = s.points();
        assert_eq!(pts[0], (0.0, 0));
        assert_eq!(*pts.last().unwrap(), (9999.0, 9999 % 97));
        assert!(pts.contains(&(4321.0, 1_000_000)));
        // Times stay in order.
        assert!(pts.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn recent_points_are_kept_at_full_resolution() {
        let (s, _) = series(64, 0..10_000);
        let pts = s.points();
        // The newest quarter of a full series is never merged.
        let tail: Vec<u64> = pts[pts.len() - 12..].iter().map(|p| p.1).collect();
        let expected: Vec<u64> = (10_000 - 12..10_000).collect();
        assert_eq!(tail, expected);
    }

    #[test]
    fn shrinking_the_capacity_downsamples_at_once() {
        let (mut s, _) = series(100, 0..100);
        let dropped = s.set_cap(10);
        assert!(s.points().len() <= 10);
        assert_eq!(s.points().len() as u64 + dropped, 100);
        assert_eq!(s.points()[0].1, 0);
        assert_eq!(s.last().unwrap().1, 99);
    }

    fn record(id: u64, attached: bool) -> InstanceRecord {
        InstanceRecord {
            id,
            class: ClassId::FIRST_USER,
            class_name: String::new(),
            name: String::new(),
            repr: String::new(),
            birth: 0.0,
            death: None,
            attached,
            source: Source::Constructed { object: 0 },
            sizes: Series::new(4),
            max_size: 0,
            trace: None,
            referents: Vec::new(),
            breakdown: Breakdown::Scopes,
            pass: 0,
        }
    }

    #[test]
    fn instances_are_found_by_id_and_listed_in_id_order_across_pages() {
        const N: u64 = 5 * PAGE as u64 + 17;
        let mut instances = Instances::new();
        // Every 7th is detached from the start: kept apart from the live ones.
        for id in 0..N {
            instances.insert(record(id, id % 7 != 0));
        }
        // Every 3rd dies; every 5th is forgotten.
        for id in (0..N).step_by(3) {
            if let Some(r) = instances.get_mut(&id) {
                r.death = Some(1.0);
            }
            instances.settle(id);
        }
        for id in (0..N).step_by(5) {
            assert_eq!(instances.remove(&id).map(|r| r.id), Some(id));
        }
        let kept: Vec<u64> = (0..N).filter(|id| id % 5 != 0).collect();
        let listed: Vec<u64> = instances.values().map(|r| r.id).collect();
        assert_eq!(listed, kept);
        for &id in &kept {
            assert_eq!(instances.get(&id).map(|r| r.id), Some(id));
        }
        let live = (0..N)
            .filter(|id| id % 7 != 0 && id % 3 != 0 && id % 5 != 0)
            .count();
        assert_eq!(instances.live_len(), live);
        assert!((0..live).all(|i| instances.live_mut(i).in_pass()));
        // Detaching all empties the live part; every record stays.
        for r in instances.values_mut() {
            r.attached = false;
        }
        instances.settle_all();
        assert_eq!(instances.live_len(), 0);
        assert_eq!(instances.values().count(), kept.len());
    }

    #[test]
    fn retention_below_the_minimum_is_an_error() {
        assert!(Retention::new().check().is_ok());
        assert!(Retention::new()
            .recent_snapshots(0)
            .dead_instances(0)
            .check()
            .is_ok());
        let err = Retention::new().instance_sizes(3).check().unwrap_err();
        assert!(err.to_string().contains("instance_sizes"), "{err}");
    }
}
