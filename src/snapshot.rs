//! Snapshots: per-class totals, allocator totals, process memory and tracker overhead at one
//! moment.

use std::sync::Arc;
use std::time::SystemTime;

use classtrack_shim::{
    read_totals_from, shim_stats, ClassId, OverheadGuard, METADATA_BYTES_PER_BLOCK,
};
use serde::{Deserialize, Serialize};

use crate::registry;

/// Classes a snapshot reads at a time (see [`Snapshot::take`]).
const WINDOW: usize = 4096;

/// What reports say when no allocation was counted.
pub(crate) const NOT_INSTALLED: &str =
    "no allocation was counted: install classtrack::TrackingAlloc as the #[global_allocator]";

/// One class's exact allocator totals at a snapshot: every class has them (types, named
/// scopes, the reserved `<untracked>` and `<classtrack overhead>`), tracked or not.
///
/// Exact, where a site's figures ([`Site`](crate::Site)) are sampled estimates, and of all
/// the class's blocks, where [`TrackedClassTotals`] sums the instances built through a
/// tracker. `live_bytes` counts what the program asked for (`Layout::size()`), never classtrack's
/// metadata. A block is charged to the class whose scope allocated it, for the block's whole
/// life: growth by `realloc` is charged to that class too, whichever scope is current then.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ClassTotals {
    /// The class id (within the process that took the snapshot).
    #[serde(with = "class_id")]
    pub id: ClassId,
    /// The class name: `std::any::type_name::<T>()` for a type, the given name for a named
    /// scope, or one of the reserved names `<untracked>` and `<classtrack overhead>`.
    pub name: Arc<str>,
    /// Bytes live now.
    pub live_bytes: u64,
    /// Blocks live now.
    pub live_blocks: u64,
    /// Bytes ever allocated: new blocks plus `realloc` growth.
    pub allocated_bytes: u64,
    /// Blocks ever allocated.
    pub allocations: u64,
    /// Bytes ever freed: freed blocks plus `realloc` shrinkage.
    pub freed_bytes: u64,
    /// Blocks ever freed.
    pub frees: u64,
    /// The largest `live_bytes` of this class seen by the tracker's snapshots so far, this
    /// one included (a high-water mark as seen by snapshots, not the true peak between them).
    pub peak_seen_bytes: u64,
}

impl ClassTotals {
    /// Average size of a live block in bytes (0 when no block is live).
    pub fn average_bytes(&self) -> f64 {
        if self.live_blocks == 0 {
            0.0
        } else {
            self.live_bytes as f64 / self.live_blocks as f64
        }
    }

    /// Whether this is one of classtrack's reserved classes (untracked or overhead).
    pub fn is_reserved(&self) -> bool {
        self.id < ClassId::FIRST_USER
    }
}

/// The sum over all classes, reserved ones included: everything the tracking allocator has
/// handed out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AllocatorTotals {
    /// Bytes live now.
    pub live_bytes: u64,
    /// Blocks live now.
    pub live_blocks: u64,
    /// Bytes ever allocated.
    pub allocated_bytes: u64,
    /// Blocks ever allocated.
    pub allocations: u64,
    /// Bytes ever freed.
    pub freed_bytes: u64,
    /// Blocks ever freed.
    pub frees: u64,
}

/// A tracked class's instances at a snapshot: how many are alive and their sizes.
///
/// Only for classes given to [`ClassTracker::track_class`](crate::ClassTracker::track_class),
/// and only their instances (built with `construct` or registered with `track_object`),
/// where [`ClassTotals`] counts every block allocated in the class's scope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TrackedClassTotals {
    /// The class's name as tracked (its `TrackOptions::name`, or the class name).
    pub name: String,
    /// Instances alive.
    pub active: u64,
    /// Their live bytes, summed.
    pub total_bytes: u64,
    /// The smallest instance's live bytes (0 with no instance).
    pub min_bytes: u64,
    /// The largest instance's live bytes.
    pub max_bytes: u64,
}

impl TrackedClassTotals {
    pub(crate) fn empty(name: String) -> TrackedClassTotals {
        TrackedClassTotals {
            name,
            active: 0,
            total_bytes: 0,
            min_bytes: 0,
            max_bytes: 0,
        }
    }

    pub(crate) fn add(&mut self, size: u64) {
        self.min_bytes = if self.active == 0 {
            size
        } else {
            self.min_bytes.min(size)
        };
        self.max_bytes = self.max_bytes.max(size);
        self.active += 1;
        self.total_bytes += size;
    }

    /// Average live bytes per instance (0 with no instance).
    pub fn average_bytes(&self) -> f64 {
        if self.active == 0 {
            0.0
        } else {
            self.total_bytes as f64 / self.active as f64
        }
    }
}

/// The sampler's state at a snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SamplingStats {
    /// The mean distance between samples in allocated bytes (0: sampling off).
    pub mean_bytes: u64,
    /// Sample records sent to the aggregator since the process started.
    pub sent: u64,
    /// Sample records dropped because the channel was full (the estimates miss them).
    pub dropped: u64,
    /// Stacks the cached DWARF unwinder (see [`crate::Unwinder::Dwarf`]) left to the
    /// platform's since the process started: they ran through code loaded after sampling
    /// started (or every cache was busy). Each costs a full, uncached DWARF unwind.
    pub uncached_stacks: u64,
    /// Times the aggregator thread (`classtrack-sampler`) was started again because it had
    /// died (a panic: a bug in classtrack); records it had taken but not applied are lost.
    pub aggregator_restarts: u64,
    /// Times a thread allocating in a class traced entirely found the sample channel full and
    /// waited for room (such records are never dropped while the aggregator drains; see
    /// [`trace_every_allocation`](crate::trace_every_allocation)).
    #[serde(default)]
    pub traced_waits: u64,
}

/// The process's memory as the operating system reports it (from the `memory-stats` crate).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ProcessMemory {
    /// Resident set size in bytes.
    pub resident_bytes: u64,
    /// Virtual memory size in bytes.
    pub virtual_bytes: u64,
}

/// What tracking costs in memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Overhead {
    /// Live bytes of classtrack's own allocations (registries, names, snapshots): the
    /// `<classtrack overhead>` class.
    pub tracker_bytes: u64,
    /// The 8-byte tag stored with every live block.
    pub metadata_bytes: u64,
    /// Per-thread counter shards, taken from the system allocator outside tracking.
    pub shard_bytes: u64,
}

impl Overhead {
    /// All of the above.
    pub fn total_bytes(&self) -> u64 {
        self.tracker_bytes + self.metadata_bytes + self.shard_bytes
    }
}

/// Memory per class at one moment, taken by
/// [`ClassTracker::create_snapshot`](crate::ClassTracker::create_snapshot).
///
/// Each class's figures are consistent with each other: a free is never seen without its
/// allocation, so live figures are never negative. Classes are read one after the other while
/// the program runs, so allocations made during the snapshot may or may not be included.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Snapshot {
    /// Seconds since the tracker was created.
    pub time: f64,
    /// Wall-clock time of the snapshot.
    pub timestamp: SystemTime,
    /// The description given to `create_snapshot`.
    pub description: String,
    /// Every class that has allocated at least once, plus the two reserved classes, in class
    /// id order (the order classes were first used); but for the classes summed in
    /// [`omitted`](Self::omitted).
    pub classes: Vec<ClassTotals>,
    /// The classes left out of [`classes`](Self::classes), summed (all zero when none is):
    /// idle ones ([`Retention::idle_after`](crate::Retention::idle_after)), and, in a
    /// tracker's recent snapshots other than the latest, those beyond
    /// [`Retention::snapshot_classes`](crate::Retention::snapshot_classes). The snapshot
    /// [`ClassTracker::create_snapshot`](crate::ClassTracker::create_snapshot) returns keeps
    /// every class but idle ones.
    pub omitted: crate::stats::OmittedClasses,
    /// The sum over all classes.
    pub allocator: AllocatorTotals,
    /// The process's resident and virtual memory, when the platform reports them.
    pub process: Option<ProcessMemory>,
    /// What tracking costs.
    pub overhead: Overhead,
    /// The tracker's tracked classes: instances alive and their sizes, by name.
    pub tracked: Vec<TrackedClassTotals>,
    /// Sampled allocation sites of every class (estimates; see [`Snapshot::top_sites`]).
    pub sites: Arc<[crate::sampling::Site]>,
    /// The sampler's state: its mean, and the samples it sent and dropped so far.
    pub sampling: SamplingStats,
    /// Whether a [`TrackingAlloc`](crate::TrackingAlloc) counted any allocation by then:
    /// `false` means it is not the `#[global_allocator]`, and every figure is zero.
    pub allocator_installed: bool,
    /// A hint about the set-up, shown under the table: a tracing layer that sees no span.
    pub(crate) hint: Option<&'static str>,
    /// The number of classes registered when it was taken: a class with this id or a larger
    /// one had not allocated (see [`SnapshotStats::unseen_from`](crate::SnapshotStats)).
    pub(crate) unseen_from: u32,
    /// The ids of its largest user classes by live bytes, in id order, as many as `largest_of`
    /// (found while it was taken, for [`trimmed`](Self::trimmed)).
    largest: Vec<ClassId>,
    /// How many largest classes `largest` was asked for.
    largest_of: usize,
}

/// What [`Snapshot::take_after`] finds while it reads the counters, for the tracker to trim
/// the snapshot before.
pub(crate) struct Changed {
    /// The classes in both snapshots whose counts differ, at most the number asked for (the
    /// largest changes of live bytes first, then of allocations), by id.
    pub(crate) ids: Vec<ClassId>,
}

impl Snapshot {
    /// Reads the counters now (see [`take_after`](Self::take_after)).
    pub(crate) fn take(time: f64, description: &str) -> Snapshot {
        Snapshot::take_after(time, description, 0, None).0
    }

    /// Reads the counters now, and in the same pass finds its `keep` largest user classes and
    /// the classes (at most `keep`) whose counts changed since `previous`.
    ///
    /// A window of [`WINDOW`] classes at a time (their names, then their counters), so that
    /// reading a million classes needs no buffer of every class's counters beside the
    /// snapshot's own, and holds the registry's lock for one window at a time. Finding the
    /// largest and the changed classes while they are read costs no other pass over them (at
    /// a million classes, each pass moves some 80 MB through the caches).
    pub(crate) fn take_after(
        time: f64,
        description: &str,
        keep: usize,
        previous: Option<&Snapshot>,
    ) -> (Snapshot, Changed) {
        let _g = OverheadGuard::new();
        let mut largest = Largest::new(keep);
        let mut changed = Largest::new(if previous.is_some() { keep } else { 0 });
        let mut earlier = previous.map(|p| p.classes.iter().peekable());
        let count = registry::class_count();
        let shim = shim_stats();
        let process = memory_stats::memory_stats().map(|m| ProcessMemory {
            resident_bytes: m.physical_mem as u64,
            virtual_bytes: m.virtual_mem as u64,
        });
        let mut allocator = AllocatorTotals::default();
        // Every class that has allocated, usually most of those registered: sized once, as a
        // vector grown by doubling would copy (and fault in) its contents again and again.
        let mut classes = Vec::with_capacity(count);
        let mut names = Vec::with_capacity(WINDOW.min(count));
        let mut counters = vec![classtrack_shim::ClassCounters::default(); WINDOW.min(count)];
        let mut first = 0;
        while first < count {
            names.clear();
            // The classes registered when the snapshot began: those since are left out.
            registry::names_from(first, WINDOW.min(count - first), &mut names);
            let counters = &mut counters[..names.len()];
            read_totals_from(first, counters);
            for (k, (c, name)) in counters.iter().zip(names.drain(..)).enumerate() {
                let i = first + k;
                allocator.live_bytes += c.live_bytes();
                allocator.live_blocks += c.live_blocks();
                allocator.allocated_bytes += c.allocated_bytes;
                allocator.allocations += c.allocations;
                allocator.freed_bytes += c.freed_bytes;
                allocator.frees += c.frees;
                if c.allocations == 0 && i >= ClassId::FIRST_USER.index() {
                    continue;
                }
                let id = ClassId(i as u32);
                if id >= ClassId::FIRST_USER {
                    largest.offer((c.live_bytes(), std::cmp::Reverse(id)));
                }
                if let Some(earlier) = earlier.as_mut() {
                    while earlier.next_if(|e| e.id < id).is_some() {}
                    if let Some(e) = earlier.next_if(|e| e.id == id) {
                        if e.allocations != c.allocations || e.frees != c.frees {
                            changed.offer((
                                e.live_bytes.abs_diff(c.live_bytes()),
                                c.allocations.wrapping_sub(e.allocations),
                                std::cmp::Reverse(id),
                            ));
                        }
                    }
                }
                classes.push(ClassTotals {
                    id,
                    name,
                    live_bytes: c.live_bytes(),
                    live_blocks: c.live_blocks(),
                    allocated_bytes: c.allocated_bytes,
                    allocations: c.allocations,
                    freed_bytes: c.freed_bytes,
                    frees: c.frees,
                    peak_seen_bytes: c.live_bytes(),
                });
            }
            if counters.is_empty() {
                break;
            }
            first += counters.len();
        }
        let tracker_bytes = classes
            .get(ClassId::OVERHEAD.index())
            .map_or(0, |c| c.live_bytes);
        let snap = Snapshot {
            time,
            timestamp: SystemTime::now(),
            description: description.to_owned(),
            overhead: Overhead {
                tracker_bytes,
                metadata_bytes: allocator.live_blocks * METADATA_BYTES_PER_BLOCK as u64,
                shard_bytes: shim.shard_bytes,
            },
            classes,
            omitted: Default::default(),
            unseen_from: count as u32,
            largest: largest.ids(|(_, std::cmp::Reverse(id))| id),
            largest_of: keep,
            allocator,
            process,
            tracked: Vec::new(),
            sites: crate::sampling::table(),
            sampling: {
                let (sent, dropped) = classtrack_shim::sample_counts();
                let uncached_stacks = classtrack_shim::cached_dwarf_fallbacks();
                SamplingStats {
                    mean_bytes: classtrack_shim::sample_mean(),
                    sent,
                    dropped,
                    uncached_stacks,
                    aggregator_restarts: crate::sampling::aggregator_restarts(),
                    traced_waits: classtrack_shim::traced_waits(),
                }
            },
            allocator_installed: allocator.allocations > 0 || crate::allocator_installed(),
            #[cfg(feature = "tracing")]
            hint: crate::integrations::tracing::quiet_hint(allocator.allocated_bytes),
            #[cfg(not(feature = "tracing"))]
            hint: None,
        };
        let changed = Changed {
            ids: changed.ids(|(_, _, std::cmp::Reverse(id))| id),
        };
        (snap, changed)
    }

    /// Whether every class that had allocated is in [`classes`](Self::classes) (none is
    /// [`omitted`](Self::omitted)).
    pub fn is_full(&self) -> bool {
        self.omitted.classes == 0
    }

    /// A copy that keeps the reserved classes, the `keep` largest others by live bytes (ties:
    /// the first class) and the classes in `also` (sorted ids); the others are summed into
    /// its `omitted`. Its sites are shared with this one.
    pub(crate) fn trimmed(&self, keep: usize, also: &[ClassId]) -> Snapshot {
        // The `keep` largest: found when it was taken, or now, in one pass with a heap of
        // `keep` (no buffer of every class).
        let largest_now;
        let largest = if self.largest_of == keep {
            &self.largest
        } else {
            let mut heap = Largest::new(keep);
            for c in self.user_classes() {
                heap.offer((c.live_bytes, std::cmp::Reverse(c.id)));
            }
            largest_now = heap.ids(|(_, std::cmp::Reverse(id))| id);
            &largest_now
        };
        let mut ids: Vec<ClassId> = largest.iter().chain(also).copied().collect();
        ids.sort_unstable();
        ids.dedup();
        let (classes, omitted) = if ids.len().saturating_mul(16) < self.classes.len() {
            self.keep_few(&ids)
        } else {
            self.keep_many(&ids)
        };
        Snapshot {
            time: self.time,
            timestamp: self.timestamp,
            description: self.description.clone(),
            classes,
            omitted,
            allocator: self.allocator,
            process: self.process,
            overhead: self.overhead,
            tracked: self.tracked.clone(),
            sites: self.sites.clone(),
            sampling: self.sampling,
            allocator_installed: self.allocator_installed,
            hint: self.hint,
            unseen_from: self.unseen_from,
            largest: Vec::new(),
            largest_of: 0,
        }
    }

    /// The reserved classes and those of `ids` (sorted), and the others summed, in one pass
    /// over every class.
    fn keep_many(&self, ids: &[ClassId]) -> (Vec<ClassTotals>, crate::stats::OmittedClasses) {
        let mut ids = ids.iter().copied().peekable();
        let mut omitted = self.omitted;
        let mut classes = Vec::with_capacity((ids.len() + 2).min(self.classes.len()));
        for c in &self.classes {
            while ids.next_if(|&id| id < c.id).is_some() {}
            if c.is_reserved() || ids.next_if(|&id| id == c.id).is_some() {
                classes.push(c.clone());
            } else {
                omitted.add(c);
            }
        }
        (classes, omitted)
    }

    /// As [`keep_many`](Self::keep_many), for few `ids`: each found by a binary search, and
    /// the others' sums found by subtraction from the allocator's totals (which sum every
    /// class read), so the classes left out are never gone through.
    fn keep_few(&self, ids: &[ClassId]) -> (Vec<ClassTotals>, crate::stats::OmittedClasses) {
        let mut classes: Vec<ClassTotals> = Vec::with_capacity(ids.len() + 2);
        let mut kept = crate::stats::OmittedClasses::default();
        let mut reserved = crate::stats::OmittedClasses::default();
        for c in self.classes.iter().take_while(|c| c.is_reserved()) {
            classes.push(c.clone());
            reserved.add(c);
        }
        for &id in ids {
            if let Ok(i) = self.classes.binary_search_by_key(&id, |c| c.id) {
                let c = &self.classes[i];
                if !c.is_reserved() {
                    classes.push(c.clone());
                    kept.add(c);
                }
            }
        }
        let a = &self.allocator;
        let users_listed = self.classes.len() as u64 - reserved.classes;
        // Exact: the allocator's totals are the sums of every class read. (Saturating only so
        // that a snapshot whose public fields were changed cannot make this panic.)
        let rest = |all: u64, reserved: u64, kept: u64| all.saturating_sub(reserved + kept);
        let omitted = crate::stats::OmittedClasses {
            classes: self.omitted.classes + users_listed.saturating_sub(kept.classes),
            live_bytes: rest(a.live_bytes, reserved.live_bytes, kept.live_bytes),
            live_blocks: rest(a.live_blocks, reserved.live_blocks, kept.live_blocks),
            allocated_bytes: rest(
                a.allocated_bytes,
                reserved.allocated_bytes,
                kept.allocated_bytes,
            ),
            allocations: rest(a.allocations, reserved.allocations, kept.allocations),
            freed_bytes: rest(a.freed_bytes, reserved.freed_bytes, kept.freed_bytes),
            frees: rest(a.frees, reserved.frees, kept.frees),
            idle: self.omitted.idle,
        };
        (classes, omitted)
    }

    /// What changed from `earlier` to this snapshot, per class, largest growth first.
    pub fn diff(&self, earlier: &Snapshot) -> crate::diff::SnapshotDiff {
        crate::diff::SnapshotDiff::of(self.into(), earlier.into())
    }

    /// Live bytes of the program's own heap: every class but `<classtrack overhead>`. The
    /// shares in [`write_table`](Self::write_table) are of this.
    pub fn user_live_bytes(&self) -> u64 {
        self.allocator.live_bytes - self.overhead.tracker_bytes
    }

    pub(crate) fn classes_mut(&mut self) -> &mut [ClassTotals] {
        &mut self.classes
    }

    /// The `n` sites where most of class `name`'s live memory was allocated, largest first
    /// (estimated from samples: see [`Site`](crate::Site)); sites with nothing live are left
    /// out.
    pub fn top_sites(&self, name: &str, n: usize) -> Vec<&crate::sampling::Site> {
        let Some(class) = self.class_named(name) else {
            return Vec::new();
        };
        let mut sites: Vec<&crate::sampling::Site> = self
            .sites
            .iter()
            .filter(|s| s.class == class.id && s.estimate.live_bytes > 0.0)
            .collect();
        sites.sort_by(|a, b| crate::Estimate::largest_first(&a.estimate, &b.estimate));
        sites.truncate(n);
        sites
    }

    /// The `n` sites where most of type `T`'s class's live memory was allocated.
    pub fn top_sites_of<T: ?Sized>(&self, n: usize) -> Vec<&crate::sampling::Site> {
        self.top_sites(std::any::type_name::<T>(), n)
    }

    /// Estimated live bytes of class `name` from the samples alone (compare with its exact
    /// `live_bytes`).
    pub fn sampled_live_bytes(&self, name: &str) -> f64 {
        self.class_named(name).map_or(0.0, |c| {
            self.sites
                .iter()
                .filter(|s| s.class == c.id)
                .map(|s| s.estimate.live_bytes)
                .sum()
        })
    }

    /// Sampled blocks of class `name` still live: what [`sampled_live_bytes`] rests on.
    /// The estimate's relative standard error is about `1/√samples`
    /// ([`report::format_estimate`](crate::report::format_estimate) shows both).
    ///
    /// [`sampled_live_bytes`]: Self::sampled_live_bytes
    pub fn sampled_live_samples(&self, name: &str) -> u64 {
        self.class_named(name).map_or(0, |c| {
            self.sites
                .iter()
                .filter(|s| s.class == c.id)
                .map(|s| s.estimate.live_samples)
                .sum()
        })
    }

    /// The instances of tracked class `T` (found by the name it is tracked under: its
    /// `TrackOptions::name`, or `std::any::type_name::<T>()`).
    pub fn tracked_class<T: ?Sized>(&self) -> Option<&TrackedClassTotals> {
        self.tracked_class_named(std::any::type_name::<T>())
    }

    /// The instances of the tracked class shown as `name`.
    pub fn tracked_class_named(&self, name: &str) -> Option<&TrackedClassTotals> {
        self.tracked.iter().find(|t| t.name == name)
    }

    /// The class named `name`, or `None` if no class of that name had allocated by the time of
    /// the snapshot.
    ///
    /// ```
    /// let tracker = classtrack::ClassTracker::new();
    /// let snap = tracker.create_snapshot("start");
    /// assert!(snap.class_named("no such class").is_none());
    /// ```
    pub fn class_named(&self, name: &str) -> Option<&ClassTotals> {
        // By the name's id (found without a lock, and without a per-snapshot index: a
        // snapshot of a million classes holds no map of them), among classes in id order.
        let id = registry::find(name)?;
        match self.classes.binary_search_by_key(&id, |c| c.id) {
            Ok(i) if *self.classes[i].name == *name => Some(&self.classes[i]),
            // `classes` was changed since it was taken (a public field): look at each.
            Ok(_) => self.classes.iter().find(|c| *c.name == *name),
            Err(_) => None,
        }
    }

    /// The class of type `T` (named `std::any::type_name::<T>()`), or `None` if it had not
    /// allocated by the time of the snapshot.
    pub fn class_of<T: ?Sized>(&self) -> Option<&ClassTotals> {
        self.class_named(std::any::type_name::<T>())
    }

    /// The class of allocations made outside any scope.
    pub fn untracked(&self) -> &ClassTotals {
        &self.classes[ClassId::UNTRACKED.index()]
    }

    /// The class of classtrack's own allocations.
    pub fn tracker_class(&self) -> &ClassTotals {
        &self.classes[ClassId::OVERHEAD.index()]
    }

    /// The user's classes (all but the two reserved ones), in class id order.
    pub fn user_classes(&self) -> impl Iterator<Item = &ClassTotals> {
        self.classes.iter().filter(|c| !c.is_reserved())
    }

    /// Writes a per-class table: class, live blocks, live bytes, average block size, share of
    /// the program's heap ([`user_live_bytes`](Self::user_live_bytes): classtrack's own bytes
    /// left out), peak live bytes seen by snapshots, bytes and blocks ever allocated; the
    /// user classes largest first, then `<untracked>`, the program's heap, classtrack's own
    /// class on its own line, the allocator's total, process memory and tracker overhead.
    /// Without the tracking allocator installed, it says so.
    ///
    /// ```
    /// let tracker = classtrack::ClassTracker::new();
    /// let snap = tracker.create_snapshot("start");
    /// let mut out = Vec::new();
    /// snap.write_table(&mut out).unwrap();
    /// assert!(String::from_utf8(out).unwrap().contains("<untracked>"));
    /// ```
    pub fn write_table(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        let _g = OverheadGuard::new();
        crate::report::console::write_table(self, out)
    }
}

/// The `k` largest items offered, kept in a min-heap of `k`: an item no larger than the least
/// kept is passed over at the cost of one comparison.
struct Largest<T: Ord> {
    heap: std::collections::BinaryHeap<std::cmp::Reverse<T>>,
    k: usize,
}

impl<T: Ord> Largest<T> {
    fn new(k: usize) -> Largest<T> {
        Largest {
            heap: std::collections::BinaryHeap::with_capacity(k.min(4096)),
            k,
        }
    }

    #[inline]
    fn offer(&mut self, item: T) {
        if self.heap.len() < self.k {
            self.heap.push(std::cmp::Reverse(item));
        } else if let Some(mut least) = self.heap.peek_mut() {
            if item > least.0 {
                least.0 = item;
            }
        }
    }

    /// The ids of the items kept (by `id`), sorted.
    fn ids(self, id: impl Fn(T) -> ClassId) -> Vec<ClassId> {
        let mut ids: Vec<ClassId> = self.heap.into_iter().map(|r| id(r.0)).collect();
        ids.sort_unstable();
        ids
    }
}

/// A [`ClassId`] in a dump: its number.
mod class_id {
    use classtrack_shim::ClassId;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<S: Serializer>(id: &ClassId, s: S) -> Result<S::Ok, S::Error> {
        id.0.serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ClassId, D::Error> {
        u32::deserialize(d).map(ClassId)
    }
}

#[cfg(test)]
mod tests {
    use super::Largest;
    use classtrack_shim::ClassId;
    use std::cmp::Reverse;

    #[test]
    fn largest_keeps_the_k_largest_with_ties_broken_by_the_first_id() {
        let mut x = 12345u64;
        let items: Vec<(u64, Reverse<ClassId>)> = (0..5000u32)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % 50, Reverse(ClassId(i)))
            })
            .collect();
        for k in [0, 1, 7, 100, 4999, 5000, 6000] {
            let mut heap = Largest::new(k);
            for &item in &items {
                heap.offer(item);
            }
            let got = heap.ids(|(_, Reverse(id))| id);
            let mut want = items.clone();
            want.sort_unstable_by(|a, b| b.cmp(a));
            want.truncate(k);
            let mut want: Vec<ClassId> = want.into_iter().map(|(_, Reverse(id))| id).collect();
            want.sort_unstable();
            assert_eq!(got, want, "k = {k}");
        }
    }
}
