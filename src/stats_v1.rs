//! Reading stats files of format version 1, migrated to the current format.
//!
//! Version 1 kept, per snapshot, only the allocator's live bytes and blocks, the process's
//! memory, the overhead's total (and, in later version 1 files, classtrack's own bytes) and
//! the tracked classes; no per-class totals and no sites. Migrated snapshots are summaries
//! (`full == false`) with no class and no site; the overhead beyond classtrack's own bytes
//! is counted as metadata, the one part version 1 did not tell apart from the shards.

use serde::Deserialize;

use crate::history::Compaction;
use crate::snapshot::{AllocatorTotals, Overhead, ProcessMemory, TrackedClassTotals};
use crate::stats::{
    ClassStats, InstanceStats, OmittedClasses, SnapshotStats, SortKey, Stats, STATS_VERSION,
};

#[derive(Deserialize)]
pub(crate) struct StatsV1 {
    snapshots: Vec<SnapshotStatsV1>,
    classes: Vec<ClassStats>,
    instances: Vec<InstanceStats>,
    evicted_instances: u64,
    #[serde(default)]
    compaction: Compaction,
    order: Vec<SortKey>,
    reversed: bool,
}

#[derive(Deserialize)]
struct SnapshotStatsV1 {
    time: f64,
    description: String,
    allocator_live_bytes: u64,
    allocator_live_blocks: u64,
    resident_bytes: Option<u64>,
    virtual_bytes: Option<u64>,
    overhead_bytes: u64,
    #[serde(default)]
    tracker_bytes: u64,
    tracked: Vec<TrackedClassTotals>,
}

impl StatsV1 {
    /// The same stats in the current format.
    pub(crate) fn migrate(self) -> Stats {
        let snapshots = self
            .snapshots
            .into_iter()
            .map(|s| {
                let allocator = AllocatorTotals {
                    live_bytes: s.allocator_live_bytes,
                    live_blocks: s.allocator_live_blocks,
                    ..AllocatorTotals::default()
                };
                let overhead = Overhead {
                    tracker_bytes: s.tracker_bytes,
                    metadata_bytes: s.overhead_bytes.saturating_sub(s.tracker_bytes),
                    ..Overhead::default()
                };
                let process = s.resident_bytes.map(|resident_bytes| ProcessMemory {
                    resident_bytes,
                    virtual_bytes: s.virtual_bytes.unwrap_or(0),
                });
                SnapshotStats {
                    time: s.time,
                    description: s.description,
                    full: false,
                    allocator,
                    process,
                    overhead,
                    sampling: Default::default(),
                    allocator_installed: s.allocator_live_bytes > 0,
                    classes: Vec::new(),
                    omitted: OmittedClasses::default(),
                    tracked: s.tracked,
                    sites: Vec::new(),
                    unseen_from: None,
                }
            })
            .collect();
        Stats {
            version: STATS_VERSION,
            snapshots,
            classes: self.classes,
            // An object tracked by handle was measured by its own bytes.
            instances: self
                .instances
                .into_iter()
                .map(|mut i| {
                    if i.shared {
                        i.breakdown = crate::stats::Breakdown::OwnBytes;
                    }
                    i
                })
                .collect(),
            evicted_instances: self.evicted_instances,
            compaction: self.compaction,
            stacks: Vec::new(),
            stack_addresses: Vec::new(),
            mappings: Vec::new(),
            peak: None,
            order: self.order,
            reversed: self.reversed,
        }
    }
}
