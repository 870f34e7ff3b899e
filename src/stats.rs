//! [`Stats`]: what a tracker gathered, to print, sort, dump and load (pympler's `Stats`).

use std::cmp::Ordering;
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;

use classtrack_shim::{ClassId, OverheadGuard};
use hashbrown::HashMap;
use serde::{Deserialize, Serialize};

use crate::diff::{LeakSuspect, Moment, SiteSummary, SnapshotDiff};
use crate::dump;
use crate::error::{Error, Result};
use crate::history::{Compaction, State};
use crate::instance::{Source, TrackOptions};
use crate::objects::Referent;
use crate::sampling::Estimate;
use crate::sampling::{Frame, Site};
use crate::snapshot::{
    AllocatorTotals, ClassTotals, Overhead, ProcessMemory, SamplingStats, Snapshot,
    TrackedClassTotals,
};
use crate::stats_v1::StatsV1;

/// The stats file format version written by [`Stats::dump`]. [`Stats::load`] reads it,
/// version 2 (the same without [`Stats::peak`]) and version 1 (see [`Stats::load`] for what a
/// version 1 file lacks).
pub const STATS_VERSION: u32 = 3;

/// One snapshot, as kept in [`Stats`]: a recent snapshot (every class for the latest, the
/// largest and changed ones for the others: see [`full`](Self::full); and its
/// allocation sites), or the summary kept of an older one (the largest classes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SnapshotStats {
    /// Seconds since the tracker was created.
    pub time: f64,
    /// The snapshot's description (its label).
    pub description: String,
    /// Whether every class that had allocated is in `classes`. Not so in the summary of an
    /// older snapshot (the largest classes: see
    /// [`Retention::summary_classes`](crate::Retention::summary_classes)), in a recent
    /// snapshot other than the latest when there are many classes
    /// ([`Retention::snapshot_classes`](crate::Retention::snapshot_classes)), or in one that
    /// left idle classes out ([`Retention::idle_after`](crate::Retention::idle_after)): the
    /// classes left out are summed in `omitted`.
    pub full: bool,
    /// The allocator's totals over all classes.
    pub allocator: AllocatorTotals,
    /// The process's resident and virtual memory, where reported.
    pub process: Option<ProcessMemory>,
    /// What tracking cost.
    pub overhead: Overhead,
    /// The sampler's state.
    pub sampling: SamplingStats,
    /// Whether a [`TrackingAlloc`](crate::TrackingAlloc) counted any allocation by then.
    pub allocator_installed: bool,
    /// The classes' totals, in class id order: every class that had allocated (`full`), or
    /// the two reserved classes and those kept (see `full`).
    pub classes: Vec<ClassTotals>,
    /// The classes left out of `classes`, summed (all zero when `full`).
    pub omitted: OmittedClasses,
    /// The tracked classes' instances.
    pub tracked: Vec<TrackedClassTotals>,
    /// Sampled allocation sites (recent snapshots only): per class, the largest by live
    /// bytes (see [`Retention::sites_per_class`](crate::Retention::sites_per_class)). Their
    /// stacks are in [`Stats::stacks`].
    pub sites: Vec<SiteStats>,
    /// One past the largest class id that had allocated by this snapshot: a class with this
    /// id or a larger one had not, so where a later snapshot has it, it is new since this one.
    /// Lets a summary tell a new class from one it left out. `None` in files written before
    /// this field was kept. Class ids are a process's own: between snapshots of two runs,
    /// only a full earlier snapshot tells which classes are new.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unseen_from: Option<u32>,
}

impl SnapshotStats {
    /// Whether a class absent from this snapshot's `classes` had not allocated by then (it is
    /// new in a later snapshot), rather than left out of a summary. Always true of a full
    /// snapshot, which has every class that had allocated.
    pub fn absent_means_new(&self, id: ClassId) -> bool {
        self.full || self.unseen_from.is_some_and(|from| id.0 >= from)
    }
}

/// The classes a snapshot summary leaves out, summed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct OmittedClasses {
    /// How many classes.
    pub classes: u64,
    /// Their live bytes.
    pub live_bytes: u64,
    /// Their live blocks.
    pub live_blocks: u64,
    /// Their bytes ever allocated.
    pub allocated_bytes: u64,
    /// Their blocks ever allocated.
    pub allocations: u64,
    /// Their bytes ever freed.
    pub freed_bytes: u64,
    /// Their blocks ever freed.
    pub frees: u64,
    /// How many of them were left out as idle: nothing live, and no allocation or free for
    /// [`Retention::idle_after`](crate::Retention::idle_after). 0 in dumps written before
    /// idle classes were left out.
    #[serde(default)]
    pub idle: u64,
}

impl OmittedClasses {
    pub(crate) fn add(&mut self, c: &ClassTotals) {
        self.classes += 1;
        self.live_bytes += c.live_bytes;
        self.live_blocks += c.live_blocks;
        self.allocated_bytes += c.allocated_bytes;
        self.allocations += c.allocations;
        self.freed_bytes += c.freed_bytes;
        self.frees += c.frees;
    }

    /// Adds the classes `other` sums.
    pub(crate) fn merge(&mut self, other: &OmittedClasses) {
        self.classes += other.classes;
        self.live_bytes += other.live_bytes;
        self.live_blocks += other.live_blocks;
        self.allocated_bytes += other.allocated_bytes;
        self.allocations += other.allocations;
        self.freed_bytes += other.freed_bytes;
        self.frees += other.frees;
        self.idle += other.idle;
    }
}

/// A sampled allocation site as kept in [`Stats`] and in dumps: its class by name, its stack
/// an index into [`Stats::stacks`] (symbolized, shared by every site that reads the same).
///
/// Its [`Estimate`] is a live [`Site`](crate::Site)'s, added over the raw stacks that read the
/// same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SiteStats {
    /// The class of the blocks allocated here.
    pub class: String,
    /// Its stack: an index into [`Stats::stacks`].
    pub stack: usize,
    /// What was allocated here, estimated from the samples (written inline in dumps, as
    /// before this type was shared).
    #[serde(flatten)]
    pub estimate: Estimate,
}

/// Merges the sites of one snapshot that are of one class and one stack (as kept in
/// [`Stats::stacks`], where each symbolized stack is kept once), keeping the first's place.
pub(crate) fn merge_sites(sites: &mut Vec<SiteStats>) {
    let mut seen: HashMap<(String, usize), usize> = HashMap::new();
    let mut merged: Vec<SiteStats> = Vec::with_capacity(sites.len());
    for s in sites.drain(..) {
        match seen.entry((s.class.clone(), s.stack)) {
            hashbrown::hash_map::Entry::Occupied(e) => merged[*e.get()].estimate.add(&s.estimate),
            hashbrown::hash_map::Entry::Vacant(e) => {
                e.insert(merged.len());
                merged.push(s);
            }
        }
    }
    *sites = merged;
}

/// One tracked class over the whole run, as kept in [`Stats`]: its options and how many
/// instances lived when.
///
/// Not a snapshot's figures: those are [`ClassTotals`] (every class, exact bytes) and
/// [`TrackedClassTotals`] (a tracked class's instances) in each [`SnapshotStats`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ClassStats {
    /// The name it is tracked under.
    pub name: String,
    /// Whether new instances were still being registered.
    pub attached: bool,
    /// Its options.
    pub options: TrackOptions,
    /// Instances ever registered.
    pub created: u64,
    /// (seconds, instances alive) at births and deaths, downsampled when long (the first
    /// point and the peaks stay; see [`Retention::class_history`](crate::Retention)).
    pub history: Vec<(f64, u64)>,
}

/// One instance, as kept in [`Stats`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct InstanceStats {
    /// The instance id (unique within its tracker).
    pub id: u64,
    /// The name its class is tracked under.
    pub class: String,
    /// The instance's name (its class's, or the one given to `track_object`).
    pub name: String,
    /// Its `Debug` representation, clipped to 128 characters, or `<class>` without one.
    pub repr: String,
    /// Seconds since the tracker was created, at birth.
    pub birth: f64,
    /// At death, if it died.
    pub death: Option<f64>,
    /// (snapshot time, live bytes) at the snapshots of its life, downsampled when long (the
    /// first, the last and the largest stay; see
    /// [`Retention::instance_sizes`](crate::Retention)).
    pub sizes: Vec<(f64, u64)>,
    /// The largest size seen.
    pub max_size: u64,
    /// Its construction backtrace, one line per frame, when traced.
    pub trace: Vec<String>,
    /// Whether it was tracked by handle (`track_object`) rather than constructed.
    pub shared: bool,
    /// Its bytes broken down at the last snapshot, largest first: by nested scopes, or by
    /// its parts (see [`breakdown`](Self::breakdown)).
    pub referents: Vec<Referent>,
    /// How its sizes and referents were found. Absent in a file of an earlier classtrack:
    /// read from [`shared`](Self::shared) (by handle: its own bytes).
    #[serde(default)]
    pub breakdown: Breakdown,
}

/// How an instance's sizes and its breakdown ([`InstanceStats::referents`]) were found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Breakdown {
    /// Built with [`construct`](crate::ClassTracker::construct): its sizes are the live bytes
    /// allocated in its scope, and with a resolution level its referents are the scopes
    /// nested in it.
    #[default]
    Scopes,
    /// Tracked by handle ([`track_object`](crate::ClassTracker::track_object)) with no
    /// resolution level: its sizes are its own inline bytes (`size_of_val`).
    OwnBytes,
    /// Tracked with a traversal
    /// ([`track_object_footprint`](crate::ClassTracker::track_object_footprint), or
    /// `track_object_allocative`): its sizes are the bytes reachable from it (its inline
    /// bytes and all it owns), its referents its parts to the resolution level.
    Traversal,
    /// Tracked by handle with a resolution level above 0, but no traversal: its type has no
    /// [`Footprint`](crate::Footprint) (or it was given to `track_object`). Its sizes are its
    /// own inline bytes, with no breakdown.
    Unavailable {
        /// The resolution level asked.
        level: u32,
    },
}

/// What instances are sorted by in [`Stats::print_stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum SortKey {
    /// The class name, A to Z.
    ClassName,
    /// The size at the last snapshot, largest first.
    TotalSize,
    /// The largest size seen, largest first.
    MaxSize,
    /// The size at the peak snapshot, largest first (pympler's `tsize`): the peak is the
    /// snapshot with the largest total of tracked instances (the first of equal ones); an
    /// instance not alive then counts 0. Where an instance's sizes were downsampled, its
    /// latest size at or before the peak stands for it.
    TotalSizeAtPeak,
    /// Birth, oldest first.
    Birth,
    /// Death, earliest first; live instances last.
    Death,
    /// The instance name, A to Z.
    Name,
    /// The representation, A to Z.
    Repr,
}

/// Everything a tracker gathered: snapshots, classes, instances and their history.
///
/// Take it with [`ClassTracker::stats`](crate::ClassTracker::stats); print it with
/// [`print_summary`](Self::print_summary) and [`print_stats`](Self::print_stats); write it
/// with [`dump`](Self::dump) and read it back with [`load`](Self::load), which prints exactly
/// the same.
///
/// ```
/// use classtrack::{ClassTracker, SortKey, TrackOptions, TrackingAlloc};
///
/// #[global_allocator]
/// static ALLOC: TrackingAlloc<std::alloc::System> = TrackingAlloc::new(std::alloc::System);
///
/// struct Job(Vec<u8>);
///
/// fn main() {
///     let tracker = ClassTracker::new();
///     tracker.track_class::<Job>(TrackOptions::new());
///     let job = tracker.construct(|| Job(vec![0; 4096]));
///     tracker.create_snapshot("one job");
///     let mut stats = tracker.stats();
///     stats.sort_stats(&[SortKey::MaxSize]).reverse_order();
///     let mut out = Vec::new();
///     stats.print_summary(&mut out).unwrap();
///     assert!(String::from_utf8(out).unwrap().contains("4.0 KiB"));
///     drop(job);
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Stats {
    /// The format version ([`STATS_VERSION`]).
    pub version: u32,
    /// The snapshots, oldest first: summaries of every snapshot the tracker keeps, the
    /// recent ones and the downsampled older ones.
    pub snapshots: Vec<SnapshotStats>,
    /// The tracked classes, by name.
    pub classes: Vec<ClassStats>,
    /// The instances kept (all live ones, and the most recent dead ones), by id.
    pub instances: Vec<InstanceStats>,
    /// Dead instances forgotten to stay within the tracker's dead-instance limit.
    pub evicted_instances: u64,
    /// What the tracker dropped to stay within its [`Retention`](crate::Retention): snapshots
    /// summarized and downsampled, size and history points merged, instances forgotten.
    pub compaction: Compaction,
    /// The stacks of the snapshots' allocation sites ([`SiteStats::stack`]), innermost frame
    /// first, each kept once however many sites and snapshots share it.
    pub stacks: Vec<Vec<Frame>>,
    /// For each of [`stacks`](Self::stacks), the code address of each of its locations (each
    /// run of inlined frames and the frame they are inlined into), for pprof profiles; empty
    /// where unknown (dumps of older versions).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) stack_addresses: Vec<Vec<u64>>,
    /// The process's code mappings when the stats were gathered (Linux; empty elsewhere and in
    /// dumps of older versions): pprof profiles of a dump carry them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) mappings: Vec<crate::mapping::Mapping>,
    /// The heap at its peak ([`ClassTracker::peak`](crate::ClassTracker::peak)) when the
    /// stats were gathered, in full, with its sites; `None` in dumps of version 2 and older,
    /// and when the tracker had recorded none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak: Option<SnapshotStats>,
    /// The sort keys in force.
    pub order: Vec<SortKey>,
    /// Whether the order is reversed.
    pub reversed: bool,
}

/// Resolves a construction backtrace to one line per frame, without classtrack's own frames
/// at the top or the runtime's below `main`.
///
/// The capture already starts below classtrack's marker frame (see `instance::capture_trace`);
/// what is left of classtrack's at the top is its public entry point (`construct`, ...), a
/// frame of its own in unoptimized builds and inlined into the caller in optimized ones. It is
/// trimmed as allocation sites are: by address where the symbol table tells, by source file
/// (which line tables name even for inlined frames, whose names they give unqualified), or by
/// qualified name.
fn resolve_trace(ips: &[usize]) -> Vec<String> {
    let mut lines: Vec<String> = crate::sampling::frames_of(ips)
        .into_iter()
        .map(|f| match (f.file, f.line) {
            (Some(file), Some(line)) => format!("{} at {file}:{line}", f.function),
            _ => f.function,
        })
        .collect();
    lines.truncate(32);
    lines
}

impl SnapshotStats {
    /// `s` in full, without its sites (see [`Stats::resolve`]).
    pub(crate) fn whole(s: &Snapshot) -> SnapshotStats {
        SnapshotStats {
            classes: s.classes.clone(),
            ..SnapshotStats::full_without_classes(s)
        }
    }

    /// The summary kept of `s` once it leaves a tracker's recent snapshots: the reserved
    /// classes and the `classes` largest others by live bytes (ties: the first class).
    pub(crate) fn summary(s: &Snapshot, classes: usize) -> SnapshotStats {
        // The largest by a heap of `classes`, not a sort of every class: a summary is made
        // under the tracker's lock, of a snapshot that may have a million classes.
        let kept = s.trimmed(classes, &[]);
        SnapshotStats {
            full: false,
            classes: kept.classes,
            omitted: kept.omitted,
            ..SnapshotStats::full_without_classes(s)
        }
    }

    fn full_without_classes(s: &Snapshot) -> SnapshotStats {
        SnapshotStats {
            time: s.time,
            description: s.description.clone(),
            full: s.omitted.classes == 0,
            allocator: s.allocator,
            process: s.process,
            overhead: s.overhead,
            sampling: s.sampling,
            allocator_installed: s.allocator_installed,
            classes: Vec::new(),
            omitted: s.omitted,
            tracked: s.tracked.clone(),
            sites: Vec::new(),
            unseen_from: Some(s.unseen_from),
        }
    }

    /// Live bytes of the program's own heap: every class but `<classtrack overhead>`.
    pub fn user_live_bytes(&self) -> u64 {
        self.allocator
            .live_bytes
            .saturating_sub(self.overhead.tracker_bytes)
    }

    /// The class named `name`, if kept.
    pub fn class_named(&self, name: &str) -> Option<&ClassTotals> {
        self.classes.iter().find(|c| &*c.name == name)
    }

    /// The user's classes kept (all but the two reserved ones), in class id order.
    pub fn user_classes(&self) -> impl Iterator<Item = &ClassTotals> {
        self.classes.iter().filter(|c| !c.is_reserved())
    }

    /// What changed from `earlier` to this snapshot, per class, largest growth first (as
    /// [`Snapshot::diff`]). Where either is a summary, a class it left out counts as absent
    /// there (see [`full`](SnapshotStats#structfield.full)).
    pub fn diff(&self, earlier: &SnapshotStats) -> SnapshotDiff {
        SnapshotDiff::of(self.into(), earlier.into())
    }

    /// This snapshot's sites of class `name`, largest live bytes first, then largest
    /// allocated; sites with nothing live or allocated are left out.
    pub fn sites_of(&self, name: &str) -> Vec<&SiteStats> {
        let mut sites: Vec<&SiteStats> = self.sites.iter().filter(|s| s.class == name).collect();
        sites.sort_by(|a, b| crate::Estimate::largest_first(&a.estimate, &b.estimate));
        sites
    }
}

impl<'a> From<&'a SnapshotStats> for Moment<'a> {
    fn from(s: &'a SnapshotStats) -> Moment<'a> {
        Moment {
            time: s.time,
            description: &s.description,
            classes: &s.classes,
            allocator_live_bytes: s.allocator.live_bytes,
            full: s.full,
            unseen_from: s.unseen_from,
        }
    }
}

/// In [`Unresolved::sites`], the index that stands for [`Stats::peak`].
const PEAK_INDEX: usize = usize::MAX;

/// A site being merged in [`Stats::resolve`]: its class, its symbolized stack, its estimates
/// and the raw stack of the first site merged into it (for its code addresses).
type SiteRow = (ClassId, Arc<Vec<Frame>>, SiteStats, Arc<[usize]>);

/// What [`Stats::gather`] leaves to do once the tracker's lock is released: construction
/// traces to symbolize (index into `Stats::instances`, return addresses) and the recent
/// snapshots' sites to pick and symbolize (index into `Stats::snapshots`, the sites).
#[derive(Default)]
pub(crate) struct Unresolved {
    traces: Vec<(usize, Box<[usize]>)>,
    sites: Vec<(usize, Arc<[Site]>)>,
    sites_per_class: usize,
}

impl Stats {
    /// Copies what a tracker keeps; the construction traces are returned raw, to be resolved
    /// by [`resolve_traces`](Self::resolve_traces) once the tracker's lock is released.
    pub(crate) fn gather(st: &State) -> (Stats, Unresolved) {
        let mut unresolved = Unresolved {
            sites_per_class: st.retention.sites_per_class,
            ..Unresolved::default()
        };
        let older = st.older.points();
        let snapshots = older
            .iter()
            .cloned()
            .chain(st.recent.iter().enumerate().map(|(i, s)| {
                unresolved.sites.push((older.len() + i, s.sites.clone()));
                SnapshotStats::whole(s)
            }))
            .collect();
        let mut classes: Vec<ClassStats> = st
            .classes
            .values()
            .map(|c| ClassStats {
                name: c.name.clone(),
                attached: c.attached,
                options: c.options.clone(),
                created: c.created,
                history: c.history.points().to_vec(),
            })
            .collect();
        classes.sort_by(|a, b| a.name.cmp(&b.name));
        let traces = &mut unresolved.traces;
        let instances = st
            .instances
            .values()
            .enumerate()
            .map(|(i, r)| {
                if let Some(t) = &r.trace {
                    traces.push((i, t.clone()));
                }
                InstanceStats {
                    id: r.id,
                    class: st
                        .classes
                        .get(&r.class)
                        .map_or_else(|| r.class_name.clone(), |c| c.name.clone()),
                    name: r.name.clone(),
                    repr: r.repr.clone(),
                    birth: r.birth,
                    death: r.death,
                    sizes: r.sizes.points().to_vec(),
                    max_size: r.max_size,
                    trace: Vec::new(),
                    shared: matches!(r.source, Source::Shared(_)),
                    referents: r.referents.clone(),
                    breakdown: r.breakdown,
                }
            })
            .collect();
        let stats = Stats {
            version: STATS_VERSION,
            snapshots,
            classes,
            instances,
            evicted_instances: st.compaction.instances_evicted,
            compaction: st.compaction,
            stacks: Vec::new(),
            stack_addresses: Vec::new(),
            mappings: Vec::new(),
            peak: st.peak.as_ref().map(|p| {
                unresolved.sites.push((PEAK_INDEX, p.sites.clone()));
                SnapshotStats::whole(p)
            }),
            order: Vec::new(),
            reversed: false,
        };
        (stats, unresolved)
    }

    /// Symbolizes the construction traces that [`gather`](Self::gather) returned, and picks
    /// and symbolizes the recent snapshots' top sites, each stack kept once.
    ///
    /// Sites of one class whose stacks read the same once symbolized and trimmed (raw stacks
    /// that differ in classtrack's frames, or in addresses within one line) are one site,
    /// their estimates added; then the largest `sites_per_class` of each class are kept.
    pub(crate) fn resolve(&mut self, unresolved: Unresolved) {
        // One batch: the symbol caches are shared by every stack here, then emptied.
        let _b = crate::sampling::Batch::new();
        for (i, ips) in unresolved.traces {
            if let Some(instance) = self.instances.get_mut(i) {
                instance.trace = resolve_trace(&ips);
            }
        }
        let per_class = unresolved.sites_per_class;
        let mut symbolized: HashMap<Arc<[usize]>, Arc<Vec<Frame>>> = HashMap::new();
        let mut by_frames: HashMap<Arc<Vec<Frame>>, usize> = HashMap::new();
        let mut interned: hashbrown::HashSet<Arc<Vec<Frame>>> = hashbrown::HashSet::new();
        for (i, sites) in unresolved.sites {
            let snap = if i == PEAK_INDEX {
                self.peak.as_mut()
            } else {
                self.snapshots.get_mut(i)
            };
            let Some(snap) = snap else {
                continue;
            };
            let names: HashMap<ClassId, Arc<str>> = snap
                .classes
                .iter()
                .map(|c| (c.id, c.name.clone()))
                .collect();
            let mut picked: Vec<&Site> = sites
                .iter()
                .filter(|s| s.estimate.live_bytes > 0.0 || s.estimate.allocated_bytes > 0.0)
                .collect();
            picked.sort_by(|a, b| {
                a.class
                    .cmp(&b.class)
                    .then_with(|| Estimate::largest_first(&a.estimate, &b.estimate))
            });
            // Merged sites, in class order, by (class, frames).
            let mut rows: Vec<SiteRow> = Vec::new();
            // By class name, as outputs show them.
            let mut row_of: HashMap<(String, Arc<Vec<Frame>>), usize> = HashMap::new();
            for site in picked {
                let frames = symbolized
                    .entry(site.stack.clone())
                    .or_insert_with(|| {
                        // Kept once per symbolized stack, however many raw stacks read so.
                        interned.get_or_insert(Arc::new(site.frames())).clone()
                    })
                    .clone();
                let stats = SiteStats {
                    class: names
                        .get(&site.class)
                        .map_or_else(|| format!("class {}", site.class.0), |n| n.to_string()),
                    stack: 0,
                    estimate: site.estimate,
                };
                match row_of.entry((stats.class.clone(), frames.clone())) {
                    hashbrown::hash_map::Entry::Occupied(e) => {
                        rows[*e.get()].2.estimate.add(&stats.estimate)
                    }
                    hashbrown::hash_map::Entry::Vacant(e) => {
                        e.insert(rows.len());
                        rows.push((site.class, frames, stats, site.stack.clone()));
                    }
                }
            }
            rows.sort_by(|a, b| {
                a.0.cmp(&b.0)
                    .then(b.2.estimate.live_bytes.total_cmp(&a.2.estimate.live_bytes))
                    .then(
                        b.2.estimate
                            .allocated_bytes
                            .total_cmp(&a.2.estimate.allocated_bytes),
                    )
            });
            let mut kept: HashMap<ClassId, usize> = HashMap::new();
            for (class, frames, mut stats, raw) in rows {
                let n = kept.entry(class).or_insert(0);
                if *n >= per_class {
                    continue;
                }
                *n += 1;
                stats.stack = *by_frames.entry(frames.clone()).or_insert_with(|| {
                    self.stack_addresses
                        .push(crate::mapping::location_addresses(&raw, &frames));
                    self.stacks.push(frames.to_vec());
                    self.stacks.len() - 1
                });
                snap.sites.push(stats);
            }
        }
        if !self.stacks.is_empty() {
            self.mappings = crate::mapping::current();
        }
    }

    /// The stack of `site` (one of this stats' snapshots' sites), innermost frame first.
    pub fn frames(&self, site: &SiteStats) -> &[Frame] {
        self.stacks.get(site.stack).map_or(&[], |s| s.as_slice())
    }

    /// Classes whose live bytes grew in more than half of the last `intervals` intervals
    /// between snapshots and overall, ranked by growth per second, each with up to `sites` of
    /// its top sites at the last snapshot (as
    /// [`ClassTracker::leak_suspects`](crate::ClassTracker::leak_suspects), on the
    /// snapshots kept here). Summaries of older snapshots keep the largest classes only (see
    /// [`Retention::summary_classes`](crate::Retention::summary_classes)): a class one left
    /// out counts as having nothing live there.
    ///
    /// ```
    /// #[global_allocator]
    /// static ALLOC: classtrack::TrackingAlloc<std::alloc::System> =
    ///     classtrack::TrackingAlloc::new(std::alloc::System);
    ///
    /// fn main() {
    ///     let tracker = classtrack::ClassTracker::new();
    ///     let mut kept = Vec::new();
    ///     for i in 0..6 {
    ///         kept.push(classtrack::scope_named("stats suspects doc", || vec![i as u8; 1000]));
    ///         tracker.create_snapshot("tick");
    ///     }
    ///     let suspects = tracker.stats().leak_suspects(5, 3);
    ///     let log = suspects.iter().find(|s| &*s.name == "stats suspects doc").unwrap();
    ///     assert_eq!((log.grew_in, log.intervals, log.growth_bytes), (5, 5, 5000));
    /// }
    /// ```
    pub fn leak_suspects(&self, intervals: usize, sites: usize) -> Vec<LeakSuspect> {
        let from = self.snapshots.len().saturating_sub(intervals + 1);
        let snaps = &self.snapshots[from..];
        let moments: Vec<Moment<'_>> = snaps.iter().map(Moment::from).collect();
        let last = snaps.last();
        LeakSuspect::find(&moments, |name| {
            last.map_or_else(Vec::new, |l| {
                l.sites_of(name)
                    .into_iter()
                    .filter(|s| s.estimate.live_bytes > 0.0)
                    .take(sites)
                    .map(|s| SiteSummary::of_stats(s, &self.stacks))
                    .collect()
            })
        })
    }

    /// Sorts the instances of [`print_stats`](Self::print_stats) by `keys`, the first key
    /// first; ties keep instance id order. Replaces the previous keys and, as in pympler,
    /// sorts afresh: an earlier [`reverse_order`](Self::reverse_order) is undone (call it
    /// again after `sort_stats` to reverse the new order).
    ///
    /// ```
    /// use classtrack::{ClassTracker, SortKey};
    ///
    /// let mut stats = ClassTracker::new().stats();
    /// stats.sort_stats(&[SortKey::MaxSize]).reverse_order();
    /// assert!(stats.reversed);
    /// stats.sort_stats(&[SortKey::Birth]);
    /// assert!(!stats.reversed);
    /// ```
    pub fn sort_stats(&mut self, keys: &[SortKey]) -> &mut Self {
        self.order = keys.to_vec();
        self.reversed = false;
        self
    }

    /// The most recent snapshot described as `label`, or `None` when none is kept (pympler's
    /// snapshot description, used as a label). Descriptions need not be unique: the latest
    /// wins. Older snapshots are kept as summaries, downsampled on long runs (see
    /// [`Retention`](crate::Retention)), so a label given long ago may be gone.
    ///
    /// ```
    /// let tracker = classtrack::ClassTracker::new();
    /// tracker.create_snapshot("before");
    /// tracker.create_snapshot("after");
    /// let stats = tracker.stats();
    /// assert_eq!(stats.snapshot("before").unwrap().description, "before");
    /// assert!(stats.snapshot("during").is_none());
    /// ```
    pub fn snapshot(&self, label: &str) -> Option<&SnapshotStats> {
        self.snapshots.iter().rev().find(|s| s.description == label)
    }

    /// The time of the snapshot with the largest total of tracked instances.
    fn peak_time(&self) -> Option<f64> {
        let total = |s: &SnapshotStats| s.tracked.iter().map(|t| t.total_bytes).sum::<u64>();
        let mut peak: Option<(&SnapshotStats, u64)> = None;
        for s in &self.snapshots {
            let t = total(s);
            if peak.is_none_or(|(_, best)| t > best) {
                peak = Some((s, t));
            }
        }
        peak.map(|(s, _)| s.time)
    }

    /// The instances of the tracked class `class` alive at the last snapshot, merged into one
    /// tree (pympler's `merged` referents of a class): their sizes summed, and their referents
    /// summed part by part (parts of the same name, at the same place, are one). `None` when
    /// no instance of the class was measured by the last snapshot.
    ///
    /// ```
    /// # #[cfg(feature = "macros")] {
    /// use std::sync::Arc;
    /// use classtrack::{ClassTracker, TrackOptions};
    ///
    /// #[derive(classtrack::Footprint)]
    /// struct Foo { a: Vec<u64> }
    ///
    /// let tracker = ClassTracker::new();
    /// let deep = TrackOptions::new().resolution_level(1);
    /// let f1 = Arc::new(Foo { a: Vec::with_capacity(1000) });
    /// let f2 = Arc::new(Foo { a: Vec::with_capacity(100) });
    /// tracker.track_object_footprint(&f1, deep.clone()).unwrap();
    /// tracker.track_object_footprint(&f2, deep).unwrap();
    /// tracker.create_snapshot("merge");
    /// let merged = tracker.stats().merged_referents(std::any::type_name::<Foo>()).unwrap();
    /// assert_eq!(merged.bytes, 2 * 24 + 1100 * 8);
    /// assert_eq!(merged.children[0].name, "a");
    /// assert_eq!(merged.children[0].bytes, 2 * 24 + 1100 * 8);
    /// # }
    /// ```
    pub fn merged_referents(&self, class: &str) -> Option<Referent> {
        let last = self.snapshots.last()?.time;
        let mut merged = Referent {
            name: class.to_owned(),
            bytes: 0,
            children: Vec::new(),
        };
        let mut any = false;
        for i in self.instances.iter().filter(|i| i.class == class) {
            let Some(&(time, size)) = i.sizes.last() else {
                continue;
            };
            if time != last || i.death.is_some_and(|d| d <= last) {
                continue;
            }
            any = true;
            merged.bytes += size;
            merge_referents(&mut merged.children, &i.referents);
        }
        sort_referents(&mut merged.children);
        any.then_some(merged)
    }

    /// Reverses the order of [`print_stats`](Self::print_stats) (again: back to normal).
    pub fn reverse_order(&mut self) -> &mut Self {
        self.reversed = !self.reversed;
        self
    }

    /// The instances in the order set by `sort_stats` and `reverse_order`.
    pub fn sorted_instances(&self) -> Vec<&InstanceStats> {
        let mut v: Vec<&InstanceStats> = self.instances.iter().collect();
        let peak = if self.order.contains(&SortKey::TotalSizeAtPeak) {
            self.peak_time()
        } else {
            None
        };
        v.sort_by(|a, b| {
            for key in &self.order {
                let o = compare(key, a, b, peak);
                if o != Ordering::Equal {
                    return o;
                }
            }
            a.id.cmp(&b.id)
        });
        if self.reversed {
            v.reverse();
        }
        v
    }

    /// Prints, for each snapshot, each tracked class's instances alive, their total and average
    /// size and their share of the program's heap: the allocator's live bytes without
    /// classtrack's own, which are shown apart (not of virtual memory).
    pub fn print_summary(&self, out: &mut dyn Write) -> io::Result<()> {
        let _g = OverheadGuard::new();
        crate::report::console::write_summary(self, out)
    }

    /// Prints the heap at its peak ([`Stats::peak`]): when, the user's classes' live bytes
    /// then, the `classes` largest classes with their share of the heap, and for each up to
    /// `sites` of its allocation sites (sampled estimates), each by its innermost function
    /// outside the standard library and classtrack. Without a peak (a file of version 2 or
    /// older), says so.
    ///
    /// ```
    /// #[global_allocator]
    /// static ALLOC: classtrack::TrackingAlloc<std::alloc::System> =
    ///     classtrack::TrackingAlloc::new(std::alloc::System);
    ///
    /// fn main() -> std::io::Result<()> {
    ///     let tracker = classtrack::ClassTracker::new();
    ///     let spike = classtrack::scope_named("print peak doc", || vec![0u8; 16 << 20]);
    ///     tracker.peak();
    ///     drop(spike);
    ///     let mut out = Vec::new();
    ///     tracker.stats().print_peak(&mut out, 3, 2)?;
    ///     let text = String::from_utf8_lossy(&out);
    ///     assert!(text.contains("AT THE PEAK"), "{text}");
    ///     let row = text.lines().find(|l| l.contains("print peak doc")).unwrap();
    ///     assert!(row.contains("16.0 MiB"), "{row}");
    ///     Ok(())
    /// }
    /// ```
    pub fn print_peak(&self, out: &mut dyn Write, classes: usize, sites: usize) -> io::Result<()> {
        crate::report::console::write_peak(self, classes, sites, out)
    }

    /// Prints, for each snapshot, its time and label, the program's live heap (all but
    /// classtrack's own bytes, shown apart), the resident memory, the `classes` largest
    /// classes of the heap (`<untracked>` among them) with their share of it and their change
    /// since the snapshot before (`new` for a class that had not allocated by then), the rest
    /// summed, and the tracked classes' instances. A snapshot from a version 1 file has no
    /// per-class totals, and says so.
    ///
    /// ```
    /// #[global_allocator]
    /// static ALLOC: classtrack::TrackingAlloc<std::alloc::System> =
    ///     classtrack::TrackingAlloc::new(std::alloc::System);
    ///
    /// fn main() -> std::io::Result<()> {
    ///     let tracker = classtrack::ClassTracker::new();
    ///     tracker.create_snapshot("empty");
    ///     let cache = classtrack::scope_named("heap summary doc", || vec![0u8; 1 << 20]);
    ///     tracker.create_snapshot("filled");
    ///     let mut out = Vec::new();
    ///     tracker.stats().print_heap_summary(&mut out, 3)?;
    ///     let text = String::from_utf8_lossy(&out);
    ///     let row = text.lines().rfind(|l| l.contains("heap summary doc")).unwrap();
    ///     // The class had not allocated by the first snapshot: its change is "new".
    ///     assert!(row.contains("1.0 MiB") && row.trim_end().ends_with("new"), "{row}");
    ///     drop(cache);
    ///     Ok(())
    /// }
    /// ```
    pub fn print_heap_summary(&self, out: &mut dyn Write, classes: usize) -> io::Result<()> {
        let _g = OverheadGuard::new();
        crate::report::console::write_heap_summary(self, classes, out)
    }

    /// Prints the [`leak_suspects`](Self::leak_suspects) of the last `intervals` intervals,
    /// which snapshots they span, and for each suspect its growth, its live bytes and up to
    /// `sites` of its allocation sites: the sampled estimate of live bytes there, with its
    /// error, and the innermost frame outside the standard library (function, file and line).
    /// Sites whose stacks read the same (the call sites of an unrolled loop) are shown as one.
    ///
    /// ```
    /// #[global_allocator]
    /// static ALLOC: classtrack::TrackingAlloc<std::alloc::System> =
    ///     classtrack::TrackingAlloc::new(std::alloc::System);
    ///
    /// fn main() -> std::io::Result<()> {
    ///     let tracker = classtrack::ClassTracker::new();
    ///     let mut kept = Vec::new();
    ///     for i in 0..4 {
    ///         kept.push(classtrack::scope_named("leaks doc log", || vec![i as u8; 1000]));
    ///         tracker.create_snapshot("tick");
    ///     }
    ///     let mut out = Vec::new();
    ///     tracker.stats().print_leak_suspects(&mut out, 3, 2)?;
    ///     let text = String::from_utf8_lossy(&out);
    ///     assert!(text.contains("leaks doc log: grew in 3 of 3 intervals"), "{text}");
    ///     Ok(())
    /// }
    /// ```
    pub fn print_leak_suspects(
        &self,
        out: &mut dyn Write,
        intervals: usize,
        sites: usize,
    ) -> io::Result<()> {
        let _g = OverheadGuard::new();
        crate::report::console::write_leak_suspects(self, intervals, sites, out)
    }

    /// Prints each instance (those whose class name contains `filter`, at most `limit` of
    /// them, in the order set by [`sort_stats`](Self::sort_stats)): its representation, birth
    /// and death, size at each snapshot, largest size and construction backtrace.
    pub fn print_stats(
        &self,
        out: &mut dyn Write,
        filter: Option<&str>,
        limit: Option<usize>,
    ) -> io::Result<()> {
        let _g = OverheadGuard::new();
        crate::report::console::write_instances(self, filter, limit, out)
    }

    /// Prints the totals, at the latest snapshot, of every class whose name contains `filter`
    /// (tracked or not: any class that allocated), the largest live bytes first, at most
    /// `limit` of them (all when `None`), then how many more matched. Finds any class of a
    /// million: the latest snapshot keeps every class but idle ones
    /// ([`Retention::idle_after`](crate::Retention::idle_after)), which it says it left out.
    ///
    /// ```
    /// #[global_allocator]
    /// static ALLOC: classtrack::TrackingAlloc<std::alloc::System> =
    ///     classtrack::TrackingAlloc::new(std::alloc::System);
    ///
    /// fn main() {
    ///     let tracker = classtrack::ClassTracker::new();
    ///     let kept = classtrack::scope_named("tenant-42", || vec![0u8; 100]);
    ///     tracker.create_snapshot("now");
    ///     let mut out = Vec::new();
    ///     tracker.stats().print_classes(&mut out, "tenant-4", None).unwrap();
    ///     let text = String::from_utf8(out).unwrap();
    ///     assert!(text.contains("tenant-42"), "{text}");
    ///     drop(kept);
    /// }
    /// ```
    pub fn print_classes(
        &self,
        out: &mut dyn Write,
        filter: &str,
        limit: Option<usize>,
    ) -> io::Result<()> {
        let _g = OverheadGuard::new();
        crate::report::console::write_classes(self, filter, limit, out)
    }

    /// Writes the stats to `path` as versioned JSON, atomically: to a temporary file in the
    /// same directory, then renamed over `path`, so a crash never leaves half a file.
    ///
    /// What it writes, [`load`](Self::load) reads back equal, floats bit for bit. Stats that
    /// could not be read back are not written: a float field set to NaN or infinity (JSON has
    /// neither), or instance breakdowns nested more than 61 levels deep (as a
    /// `resolution_level` that high can make), are [`Error::Unwritable`], naming the field. A path
    /// that cannot be written is [`Error::Io`].
    pub fn dump(&self, path: impl AsRef<Path>) -> Result<()> {
        let _g = OverheadGuard::new();
        let path = path.as_ref();
        let io_err = |source| Error::Io {
            path: path.to_owned(),
            source,
        };
        dump::check_writable(self).map_err(|reason| Error::Unwritable {
            path: path.to_owned(),
            reason,
        })?;
        let mut json = serde_json::to_vec(self).map_err(|e| io_err(io::Error::other(e)))?;
        json.push(b'\n');
        crate::file::write_atomically(path, &json)
    }

    /// Reads stats written by [`dump`](Self::dump).
    ///
    /// The file is read whole and parsed straight into `Stats`, so the heap peaks at the
    /// file's size plus the stats' own (about twice the file). When it does not parse, its
    /// format version is read on its own (the rest skipped, not built), so that a file from a
    /// newer classtrack is told from a damaged one.
    ///
    /// Every misuse is an error, never a panic or a wait:
    /// - a missing or unreadable file is [`Error::Io`];
    /// - a path that names no regular file (a directory, a FIFO, a device such as
    ///   `/dev/zero`, a socket) is [`Error::NotAFile`], checked on the opened file, which on
    ///   unix is opened non-blocking so that a FIFO cannot hold the call;
    /// - a file written by a newer classtrack is [`Error::UnsupportedVersion`], one with a
    ///   format version no classtrack writes (0, or past `u32::MAX`) [`Error::InvalidVersion`];
    /// - a truncated or foreign file, or one whose version is missing or not a number, is
    ///   [`Error::Corrupt`], saying what is wrong.
    ///
    /// ```
    /// use classtrack::{ClassTracker, Error, Stats};
    ///
    /// let dir = std::env::temp_dir();
    /// let path = dir.join(format!("classtrack-load-doc-{}.json", std::process::id()));
    /// let stats = ClassTracker::new().stats();
    /// stats.dump(&path)?;
    /// assert_eq!(Stats::load(&path)?, stats);
    /// std::fs::remove_file(&path)?;
    ///
    /// assert!(matches!(Stats::load(&dir), Err(Error::NotAFile { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn load(path: impl AsRef<Path>) -> Result<Stats> {
        let _g = OverheadGuard::new();
        let path = path.as_ref();
        let bytes = dump::read_regular_file(path)?;
        Stats::from_json(&bytes, path)
    }

    /// Reads stats from the bytes [`dump`](Self::dump) writes, such as a response of the
    /// endpoint's `/stats.json`; `source` names them in errors (a path or a URL). Errors as
    /// [`load`](Self::load)'s, but for those of reading a file.
    ///
    /// ```
    /// let stats = classtrack::ClassTracker::new().stats();
    /// let path = std::env::temp_dir().join(format!("classtrack-json-doc-{}.json", std::process::id()));
    /// stats.dump(&path)?;
    /// let bytes = std::fs::read(&path)?;
    /// assert_eq!(classtrack::Stats::from_json(&bytes, "a copy")?, stats);
    /// assert!(classtrack::Stats::from_json(b"{", "a copy").is_err());
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_json(bytes: &[u8], source: impl AsRef<Path>) -> Result<Stats> {
        let _g = OverheadGuard::new();
        let path = source.as_ref();
        let version_error = |found: u64| match u32::try_from(found) {
            Ok(newer) if newer != 0 => Error::UnsupportedVersion {
                path: path.to_owned(),
                found: newer,
                supported: STATS_VERSION,
            },
            _ => Error::InvalidVersion {
                path: path.to_owned(),
                found,
            },
        };
        let corrupt = |reason: String| Error::Corrupt {
            path: path.to_owned(),
            reason,
        };
        match serde_json::from_slice::<Stats>(bytes) {
            // Version 2 is version 3 without the peak (a field that may be absent).
            Ok(mut stats) if stats.version == STATS_VERSION || stats.version == 2 => {
                // Files written before sites were merged can hold several of one stack.
                for snap in stats.snapshots.iter_mut().chain(&mut stats.peak) {
                    merge_sites(&mut snap.sites);
                }
                // Files written before the breakdown was recorded: an object tracked by handle
                // was measured by its own bytes.
                for i in &mut stats.instances {
                    if i.shared && i.breakdown == Breakdown::Scopes {
                        i.breakdown = Breakdown::OwnBytes;
                    }
                }
                stats.version = STATS_VERSION;
                Ok(stats)
            }
            Ok(stats) => Err(version_error(u64::from(stats.version))),
            // Tell an older version (migrated) and a version this classtrack cannot read
            // from damage: another format does not parse as this one, and its version is
            // what decides.
            Err(e) => match dump::peek_version(bytes) {
                dump::Version::Number(1) => serde_json::from_slice::<StatsV1>(bytes)
                    .map(StatsV1::migrate)
                    .map_err(|e| corrupt(format!("a version 1 file that does not parse: {e}"))),
                dump::Version::Number(v) if v == 0 || v > u64::from(STATS_VERSION) => {
                    Err(version_error(v))
                }
                dump::Version::Invalid(reason) => Err(corrupt(reason)),
                dump::Version::Missing => Err(corrupt("no format version".to_owned())),
                dump::Version::Number(_) | dump::Version::Unknown => Err(corrupt(e.to_string())),
            },
        }
    }
}

/// Adds `from` into `into`, part by part (by name).
fn merge_referents(into: &mut Vec<Referent>, from: &[Referent]) {
    for r in from {
        match into.iter_mut().find(|m| m.name == r.name) {
            Some(m) => {
                m.bytes += r.bytes;
                merge_referents(&mut m.children, &r.children);
            }
            None => into.push(r.clone()),
        }
    }
}

/// Largest first, then by name, at every level.
fn sort_referents(list: &mut [Referent]) {
    list.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.name.cmp(&b.name)));
    for r in list {
        sort_referents(&mut r.children);
    }
}

/// `i`'s size at snapshot time `peak` (see [`SortKey::TotalSizeAtPeak`]).
fn size_at(i: &InstanceStats, peak: Option<f64>) -> u64 {
    let Some(peak) = peak else { return 0 };
    if i.birth > peak || i.death.is_some_and(|d| d <= peak) {
        return 0;
    }
    i.sizes
        .iter()
        .rev()
        .find(|(t, _)| *t <= peak)
        .map_or(0, |&(_, size)| size)
}

fn compare(key: &SortKey, a: &InstanceStats, b: &InstanceStats, peak: Option<f64>) -> Ordering {
    let last = |i: &InstanceStats| i.sizes.last().map_or(0, |s| s.1);
    match key {
        SortKey::ClassName => a.class.cmp(&b.class),
        SortKey::TotalSize => last(b).cmp(&last(a)),
        SortKey::TotalSizeAtPeak => size_at(b, peak).cmp(&size_at(a, peak)),
        SortKey::MaxSize => b.max_size.cmp(&a.max_size),
        SortKey::Birth => a.birth.total_cmp(&b.birth),
        SortKey::Death => match (a.death, b.death) {
            (Some(x), Some(y)) => x.total_cmp(&y),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        },
        SortKey::Name => a.name.cmp(&b.name),
        SortKey::Repr => a.repr.cmp(&b.repr),
    }
}

#[cfg(test)]
mod merge_tests {
    use super::*;

    fn site(class: &str, stack: usize, live: f64, samples: u64, exact: bool) -> SiteStats {
        SiteStats {
            class: class.to_owned(),
            stack,
            estimate: Estimate {
                live_bytes: live,
                live_blocks: samples as f64,
                allocated_bytes: live,
                allocations: samples as f64,
                samples,
                live_samples: samples,
                exact,
            },
        }
    }

    #[test]
    fn sites_of_one_class_and_stack_are_one_with_estimates_added() {
        let mut sites = vec![
            site("a", 0, 100.0, 1, true),
            site("b", 0, 50.0, 2, false),
            site("a", 1, 10.0, 1, false),
            site("a", 0, 300.0, 3, false),
        ];
        merge_sites(&mut sites);
        assert_eq!(sites.len(), 3);
        let merged = &sites[0];
        assert_eq!((merged.class.as_str(), merged.stack), ("a", 0));
        assert_eq!(
            (
                merged.estimate.live_bytes,
                merged.estimate.samples,
                merged.estimate.live_samples
            ),
            (400.0, 4, 4)
        );
        assert!(!merged.estimate.exact);
        assert_eq!(merged.estimate.relative_error(), 0.5);
        assert_eq!((sites[1].class.as_str(), sites[2].stack), ("b", 1));
    }
}
