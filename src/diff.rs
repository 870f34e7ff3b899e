//! What changed between two snapshots ([`SnapshotDiff`]), and which classes keep growing
//! ([`LeakSuspect`]).
//!
//! Both work on a tracker's snapshots ([`ClassTracker::snapshots`],
//! [`ClassTracker::leak_suspects`]) and on the snapshots kept in [`Stats`], live or loaded
//! from a dump ([`SnapshotStats::diff`], [`Stats::leak_suspects`]). The latest snapshot has
//! every class (but idle ones); the other recent ones keep the largest classes and those that
//! changed ([`Retention::snapshot_classes`]), and summaries of older ones the largest classes
//! only ([`Retention::summary_classes`]). A class one left out is unknown there: a diff leaves
//! it out (counting it in [`SnapshotDiff::unknown`]), and a leak search takes the next
//! snapshot's figure for it.
//!
//! [`Stats`]: crate::Stats
//! [`Stats::leak_suspects`]: crate::Stats::leak_suspects
//! [`SnapshotStats::diff`]: crate::SnapshotStats::diff
//! [`ClassTracker::snapshots`]: crate::ClassTracker::snapshots
//! [`ClassTracker::leak_suspects`]: crate::ClassTracker::leak_suspects
//! [`Retention::summary_classes`]: crate::Retention::summary_classes
//! [`Retention::snapshot_classes`]: crate::Retention::snapshot_classes

use std::sync::Arc;

use classtrack_shim::{ClassId, OverheadGuard};

use hashbrown::HashMap;

use crate::sampling::{Estimate, Frame, Site};
use crate::snapshot::{ClassTotals, Snapshot};
use crate::stats::SiteStats;

/// One class's change between two snapshots.
///
/// Live figures are signed (the class may have shrunk); cumulative ones (allocations, frees)
/// only grow, so their change is what happened in between.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ClassDiff {
    /// The class id.
    pub id: ClassId,
    /// The class name.
    pub name: Arc<str>,
    /// Live bytes at the later snapshot.
    pub live_bytes: u64,
    /// Change of live bytes (later minus earlier).
    pub live_bytes_change: i64,
    /// Change of live blocks.
    pub live_blocks_change: i64,
    /// Bytes allocated in between (new blocks and `realloc` growth).
    pub allocated_bytes: u64,
    /// Blocks allocated in between.
    pub allocations: u64,
    /// Bytes freed in between (freed blocks and `realloc` shrinkage).
    pub freed_bytes: u64,
    /// Blocks freed in between.
    pub frees: u64,
    /// Whether the class is new: it had not allocated by the earlier snapshot (absent from a
    /// full snapshot, or from a summary that says it had not allocated yet). A class that a
    /// summary left out is not in the diff (see [`SnapshotDiff::unknown`]).
    pub new: bool,
}

impl ClassDiff {
    fn between(later: &ClassTotals, earlier: Option<&ClassTotals>, new: bool) -> ClassDiff {
        let (live_bytes, live_blocks, allocated_bytes, allocations, freed_bytes, frees) = earlier
            .map_or((0, 0, 0, 0, 0, 0), |e| {
                (
                    e.live_bytes,
                    e.live_blocks,
                    e.allocated_bytes,
                    e.allocations,
                    e.freed_bytes,
                    e.frees,
                )
            });
        ClassDiff {
            id: later.id,
            name: later.name.clone(),
            live_bytes: later.live_bytes,
            live_bytes_change: later.live_bytes as i64 - live_bytes as i64,
            live_blocks_change: later.live_blocks as i64 - live_blocks as i64,
            allocated_bytes: later.allocated_bytes.saturating_sub(allocated_bytes),
            allocations: later.allocations.saturating_sub(allocations),
            freed_bytes: later.freed_bytes.saturating_sub(freed_bytes),
            frees: later.frees.saturating_sub(frees),
            new,
        }
    }

    /// Whether anything happened to the class in between.
    pub fn changed(&self) -> bool {
        self.live_bytes_change != 0 || self.allocations != 0 || self.frees != 0
    }

    /// Whether this is one of classtrack's reserved classes (untracked or overhead).
    pub fn is_reserved(&self) -> bool {
        self.id < ClassId::FIRST_USER
    }
}

/// What changed between two snapshots: [`Snapshot::diff`].
///
/// ```
/// #[global_allocator]
/// static ALLOC: classtrack::TrackingAlloc<std::alloc::System> =
///     classtrack::TrackingAlloc::new(std::alloc::System);
///
/// fn main() -> std::io::Result<()> {
///     let tracker = classtrack::ClassTracker::new();
///     let before = tracker.create_snapshot("before");
///     let cache = classtrack::scope_named("diff doc cache", || vec![0u8; 4096]);
///     let after = tracker.create_snapshot("after");
///     let diff = after.diff(&before);
///     let grown = diff.class_named("diff doc cache").expect("the cache allocated");
///     assert_eq!(grown.live_bytes_change, 4096);
///     assert_eq!(grown.allocations, 1);
///     diff.write_table(&mut std::io::stdout())?;
///     drop(cache);
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SnapshotDiff {
    /// The earlier snapshot's time (seconds since its tracker was created).
    pub from_time: f64,
    /// The later snapshot's time.
    pub to_time: f64,
    /// The earlier snapshot's description.
    pub from_description: String,
    /// The later snapshot's description.
    pub to_description: String,
    /// Every class of the later snapshot whose change is known, largest growth of live
    /// bytes first (largest shrinkage last); ties in class id order.
    pub classes: Vec<ClassDiff>,
    /// Classes of the later snapshot that the earlier one left out although they had
    /// allocated by then (it is a summary, or a trimmed recent snapshot: see
    /// [`SnapshotStats::full`](crate::SnapshotStats::full)): their change is unknown, so they
    /// are not in `classes`. A trimmed recent snapshot keeps every class that changed into
    /// the next one ([`Retention::snapshot_classes`](crate::Retention::snapshot_classes)), so
    /// between neighbours these are classes that did not change.
    pub unknown: u64,
    /// Change of the allocator's live bytes (all classes).
    pub live_bytes_change: i64,
}

/// What a diff or a leak search reads of a snapshot, full ([`Snapshot`]) or as kept in
/// [`Stats`](crate::Stats) ([`SnapshotStats`](crate::SnapshotStats)).
#[derive(Clone, Copy)]
pub(crate) struct Moment<'a> {
    pub(crate) time: f64,
    pub(crate) description: &'a str,
    pub(crate) classes: &'a [ClassTotals],
    pub(crate) allocator_live_bytes: u64,
    /// Whether `classes` has every class that had allocated.
    pub(crate) full: bool,
    /// See [`SnapshotStats::unseen_from`](crate::SnapshotStats::unseen_from).
    pub(crate) unseen_from: Option<u32>,
}

impl<'a> From<&'a Snapshot> for Moment<'a> {
    fn from(s: &'a Snapshot) -> Moment<'a> {
        Moment {
            time: s.time,
            description: &s.description,
            classes: &s.classes,
            allocator_live_bytes: s.allocator.live_bytes,
            full: s.is_full(),
            unseen_from: Some(s.unseen_from),
        }
    }
}

impl<'a> Moment<'a> {
    /// Whether a class absent from `classes` had not allocated by then (see
    /// [`SnapshotStats::absent_means_new`](crate::SnapshotStats::absent_means_new)).
    fn absent_means_new(&self, id: ClassId) -> bool {
        self.full || self.unseen_from.is_some_and(|from| id.0 >= from)
    }

    /// Live bytes per class name.
    fn by_name(&self) -> HashMap<&'a str, &'a ClassTotals> {
        self.classes.iter().map(|c| (&*c.name, c)).collect()
    }
}

impl SnapshotDiff {
    pub(crate) fn of(later: Moment<'_>, earlier: Moment<'_>) -> SnapshotDiff {
        let _g = OverheadGuard::new();
        let before = earlier.by_name();
        let mut unknown = 0;
        let mut classes: Vec<ClassDiff> = later
            .classes
            .iter()
            .filter_map(|c| {
                let e = before.get(&*c.name).copied();
                let new = e.is_none() && earlier.absent_means_new(c.id);
                if e.is_none() && !new {
                    unknown += 1;
                    return None;
                }
                Some(ClassDiff::between(c, e, new))
            })
            .collect();
        classes.sort_by(|a, b| {
            b.live_bytes_change
                .cmp(&a.live_bytes_change)
                .then(a.id.cmp(&b.id))
        });
        SnapshotDiff {
            from_time: earlier.time,
            to_time: later.time,
            from_description: earlier.description.to_owned(),
            to_description: later.description.to_owned(),
            classes,
            unknown,
            live_bytes_change: later.allocator_live_bytes as i64
                - earlier.allocator_live_bytes as i64,
        }
    }

    /// Seconds between the two snapshots.
    pub fn seconds(&self) -> f64 {
        self.to_time - self.from_time
    }

    /// The change of class `name`, if the later snapshot has it.
    pub fn class_named(&self, name: &str) -> Option<&ClassDiff> {
        self.classes.iter().find(|c| &*c.name == name)
    }

    /// The change of type `T`'s class.
    pub fn class_of<T: ?Sized>(&self) -> Option<&ClassDiff> {
        self.class_named(std::any::type_name::<T>())
    }

    /// Writes a table of the classes that changed, largest growth first: class, change of
    /// live bytes and blocks, live bytes now, bytes and blocks allocated and freed in
    /// between; then the allocator's total change.
    pub fn write_table(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        let _g = OverheadGuard::new();
        crate::report::console::write_diff(self, out)
    }
}

/// An allocation site of a [`LeakSuspect`]: a [`Site`]'s [`Estimate`] with its frames inline,
/// so that a suspect stands alone (live or from a dump).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SiteSummary {
    /// The stack, innermost first, without classtrack's and the allocator's frames.
    pub frames: Vec<Frame>,
    /// What was allocated here, estimated from the samples.
    pub estimate: Estimate,
}

impl SiteSummary {
    pub(crate) fn of_site(site: &Site) -> SiteSummary {
        SiteSummary {
            frames: site.frames(),
            estimate: site.estimate,
        }
    }

    pub(crate) fn of_stats(site: &SiteStats, stacks: &[Vec<Frame>]) -> SiteSummary {
        SiteSummary {
            frames: stacks.get(site.stack).cloned().unwrap_or_default(),
            estimate: site.estimate,
        }
    }
}

/// `sites` with those of equal symbolized stacks summed, largest live bytes first.
pub(crate) fn merge_same_stacks(sites: &[SiteSummary]) -> Vec<SiteSummary> {
    let mut merged: Vec<SiteSummary> = Vec::new();
    for site in sites {
        match merged.iter_mut().find(|m| m.frames == site.frames) {
            Some(m) => m.estimate.add(&site.estimate),
            None => merged.push(site.clone()),
        }
    }
    merged.sort_by(|a, b| b.estimate.live_bytes.total_cmp(&a.estimate.live_bytes));
    merged
}

/// A class whose live bytes grew across most of the recent intervals between snapshots:
/// [`ClassTracker::leak_suspects`](crate::ClassTracker::leak_suspects) and
/// [`Stats::leak_suspects`](crate::Stats::leak_suspects).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct LeakSuspect {
    /// The class id.
    pub id: ClassId,
    /// The class name.
    pub name: Arc<str>,
    /// Intervals (between consecutive snapshots) in which its live bytes grew.
    pub grew_in: usize,
    /// Intervals looked at.
    pub intervals: usize,
    /// Change of live bytes from the first snapshot looked at to the last.
    pub growth_bytes: i64,
    /// That change per second.
    pub bytes_per_second: f64,
    /// Live bytes at the last snapshot.
    pub live_bytes: u64,
    /// Where its live memory was allocated at the last snapshot, largest first (sampled
    /// estimates; empty with sampling off).
    pub top_sites: Vec<SiteSummary>,
}

impl LeakSuspect {
    /// Finds the suspects in `snaps` (oldest first): classes other than classtrack's own
    /// whose live bytes grew in more than half of the intervals and overall, ranked by growth
    /// per second, each with the top sites `sites_of` gives for its name.
    pub(crate) fn find(
        snaps: &[Moment<'_>],
        sites_of: impl Fn(&str) -> Vec<SiteSummary>,
    ) -> Vec<LeakSuspect> {
        let _g = OverheadGuard::new();
        let (Some(first), Some(last)) = (snaps.first(), snaps.last()) else {
            return Vec::new();
        };
        let intervals = snaps.len() - 1;
        if intervals == 0 {
            return Vec::new();
        }
        let seconds = last.time - first.time;
        let by_name: Vec<HashMap<&str, &ClassTotals>> = snaps.iter().map(|m| m.by_name()).collect();
        let mut found: Vec<LeakSuspect> = last
            .classes
            .iter()
            .filter(|c| c.id != ClassId::OVERHEAD)
            .filter_map(|c| {
                // Where a snapshot left the class out although it had allocated (a trimmed
                // one keeps every class that changed into the next), the next one's figure.
                let live = |i: usize| {
                    (i..snaps.len())
                        .find_map(|j| match by_name[j].get(&*c.name) {
                            Some(t) => Some(t.live_bytes),
                            None if snaps[j].absent_means_new(c.id) => Some(0),
                            None => None,
                        })
                        .unwrap_or(0)
                };
                let grew_in = (1..snaps.len()).filter(|&i| live(i) > live(i - 1)).count();
                let growth_bytes = c.live_bytes as i64 - live(0) as i64;
                (grew_in * 2 > intervals && growth_bytes > 0).then(|| LeakSuspect {
                    id: c.id,
                    name: c.name.clone(),
                    grew_in,
                    intervals,
                    growth_bytes,
                    bytes_per_second: if seconds > 0.0 {
                        growth_bytes as f64 / seconds
                    } else {
                        0.0
                    },
                    live_bytes: c.live_bytes,
                    top_sites: sites_of(&c.name),
                })
            })
            .collect();
        found.sort_by(|a, b| {
            b.bytes_per_second
                .total_cmp(&a.bytes_per_second)
                .then(b.growth_bytes.cmp(&a.growth_bytes))
                .then(a.id.cmp(&b.id))
        });
        found
    }
}
