//! [`Stats`]: what a tracker gathered, to print, sort, dump and load (pympler's `Stats`).

use std::cmp::Ordering;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use classtrack_shim::OverheadGuard;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::history::{Compaction, State};
use crate::instance::{Source, TrackOptions};
use crate::objects::Referent;
use crate::report::format_bytes;
use crate::report::json;
use crate::snapshot::{Snapshot, TrackedClassTotals};

/// The stats file format version written by [`Stats::dump`].
pub const STATS_VERSION: u32 = 1;

/// One snapshot, as kept in [`Stats`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SnapshotStats {
    /// Seconds since the tracker was created.
    pub time: f64,
    /// The snapshot's description.
    pub description: String,
    /// The allocator's live bytes (all classes).
    pub allocator_live_bytes: u64,
    /// The allocator's live blocks.
    pub allocator_live_blocks: u64,
    /// The process's resident bytes, where reported.
    pub resident_bytes: Option<u64>,
    /// The process's virtual bytes, where reported.
    pub virtual_bytes: Option<u64>,
    /// What tracking cost, in bytes.
    pub overhead_bytes: u64,
    /// Live bytes of classtrack's own allocations (the `<classtrack overhead>` class), part of
    /// `allocator_live_bytes`. (Absent from files written before it existed: 0 then.)
    #[serde(default)]
    pub tracker_bytes: u64,
    /// The tracked classes' instances.
    pub tracked: Vec<TrackedClassTotals>,
}

/// One tracked class, as kept in [`Stats`].
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
    /// Its bytes broken down by nested scopes at the last snapshot (with a resolution level).
    pub referents: Vec<Referent>,
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
    /// (Absent from version 1 files written before it existed: all zero then.)
    #[serde(default)]
    pub compaction: Compaction,
    /// The sort keys in force.
    pub order: Vec<SortKey>,
    /// Whether the order is reversed.
    pub reversed: bool,
}

/// classtrack's own source directory, as recorded in debug info.
const OWN_SOURCES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/");

/// Resolves a construction backtrace to one line per frame, without classtrack's own frames
/// at the top or the runtime's below `main`.
///
/// The capture already starts below classtrack's marker frame (see `instance::capture_trace`);
/// what is left of classtrack's at the top is its public entry point (`construct`, ...), a
/// frame of its own in unoptimized builds and inlined into the caller in optimized ones. It is
/// told by its source file, which line tables name even for inlined frames (whose names they
/// give unqualified), or by its qualified name.
fn resolve_trace(ips: &[usize]) -> Vec<String> {
    let mut lines = Vec::new();
    'frames: for &ip in ips {
        let mut names = Vec::new();
        crate::fork::with_backtrace(|| {
            backtrace::resolve(ip as *mut std::ffi::c_void, |sym| {
                let name = sym
                    .name()
                    .map_or_else(|| format!("{ip:#x}"), |n| format!("{n:#}"));
                let own_file = sym.filename().is_some_and(|f| f.starts_with(OWN_SOURCES));
                let at = match (sym.filename(), sym.lineno()) {
                    (Some(f), Some(l)) => format!(" at {}:{l}", f.display()),
                    _ => String::new(),
                };
                names.push((name, at, own_file));
            })
        });
        if names.is_empty() {
            names.push((format!("{ip:#x}"), String::new(), false));
        }
        for (name, at, own_file) in names {
            let ours = own_file
                || [
                    "classtrack::",
                    "<classtrack::",
                    "backtrace::",
                    "<backtrace::",
                ]
                .iter()
                .any(|p| name.starts_with(p));
            if lines.is_empty() && ours {
                continue;
            }
            if name.starts_with("std::rt::lang_start")
                || name.starts_with("std::sys::backtrace::__rust_begin_short_backtrace")
            {
                break 'frames;
            }
            lines.push(format!("{name}{at}"));
        }
    }
    lines.truncate(32);
    lines
}

impl SnapshotStats {
    /// The summary of `s` kept once it leaves a tracker's recent snapshots.
    pub(crate) fn of(s: &Snapshot) -> SnapshotStats {
        SnapshotStats {
            time: s.time,
            description: s.description.clone(),
            allocator_live_bytes: s.allocator.live_bytes,
            allocator_live_blocks: s.allocator.live_blocks,
            resident_bytes: s.process.map(|p| p.resident_bytes),
            virtual_bytes: s.process.map(|p| p.virtual_bytes),
            overhead_bytes: s.overhead.total_bytes(),
            tracker_bytes: s.overhead.tracker_bytes,
            tracked: s.tracked.clone(),
        }
    }
}

/// Construction traces still to symbolize: (index into `Stats::instances`, return addresses).
pub(crate) type RawTraces = Vec<(usize, Box<[usize]>)>;

impl Stats {
    /// Copies what a tracker keeps; the construction traces are returned raw, to be resolved
    /// by [`resolve_traces`](Self::resolve_traces) once the tracker's lock is released.
    pub(crate) fn gather(st: &State) -> (Stats, RawTraces) {
        let snapshots = st
            .older
            .points()
            .iter()
            .cloned()
            .chain(st.recent.iter().map(|s| SnapshotStats::of(s)))
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
        let mut traces = Vec::new();
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
            order: Vec::new(),
            reversed: false,
        };
        (stats, traces)
    }

    /// Symbolizes the traces that [`gather`](Self::gather) returned.
    pub(crate) fn resolve_traces(&mut self, traces: RawTraces) {
        for (i, ips) in traces {
            if let Some(instance) = self.instances.get_mut(i) {
                instance.trace = resolve_trace(&ips);
            }
        }
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
        writeln!(out, "---- SUMMARY {}", "-".repeat(66))?;
        if !self.snapshots.is_empty() && self.snapshots.iter().all(|s| s.allocator_live_bytes == 0)
        {
            writeln!(out, "{}", crate::snapshot::NOT_INSTALLED)?;
        }
        for s in &self.snapshots {
            let resident = s
                .resident_bytes
                .map_or_else(String::new, |r| format!(", {} resident", format_bytes(r)));
            let user_bytes = s.allocator_live_bytes.saturating_sub(s.tracker_bytes);
            writeln!(
                out,
                "{:?} at {:.3} s: {} live in the program's heap, {} classtrack's own{resident}",
                s.description,
                s.time,
                format_bytes(user_bytes),
                format_bytes(s.tracker_bytes)
            )?;
            if s.tracked.is_empty() {
                writeln!(out, "  (no tracked class)")?;
                continue;
            }
            let width = s
                .tracked
                .iter()
                .map(|t| t.name.chars().count())
                .max()
                .unwrap_or(5)
                .max(5);
            writeln!(
                out,
                "  {:<width$}  {:>8}  {:>12}  {:>10}  {:>6}",
                "class", "active", "total", "average", "share"
            )?;
            for t in &s.tracked {
                let share = if user_bytes == 0 {
                    "-".to_owned()
                } else {
                    format!("{:.1}%", t.total_bytes as f64 * 100.0 / user_bytes as f64)
                };
                writeln!(
                    out,
                    "  {:<width$}  {:>8}  {:>12}  {:>10}  {:>6}",
                    t.name,
                    t.active,
                    format_bytes(t.total_bytes),
                    format_bytes(t.average_bytes().round() as u64),
                    share
                )?;
            }
        }
        writeln!(out, "{}", "-".repeat(79))
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
        writeln!(out, "---- INSTANCES {}", "-".repeat(64))?;
        let shown = self
            .sorted_instances()
            .into_iter()
            .filter(|i| filter.is_none_or(|f| i.class.contains(f)))
            .take(limit.unwrap_or(usize::MAX));
        for i in shown {
            let label = if i.name == i.class {
                format!("{} #{}", i.class, i.id)
            } else {
                format!("{} #{} ({})", i.class, i.id, i.name)
            };
            writeln!(out, "{label} {}", i.repr)?;
            match i.death {
                Some(d) => writeln!(out, "  born {:.3} s, died {d:.3} s", i.birth)?,
                None => writeln!(out, "  born {:.3} s, alive", i.birth)?,
            }
            for (t, size) in &i.sizes {
                writeln!(out, "  {t:>10.3} s  {:>12}", format_bytes(*size))?;
            }
            writeln!(out, "  max {}", format_bytes(i.max_size))?;
            if !i.referents.is_empty() {
                writeln!(out, "  referents at the last snapshot:")?;
                write_referents(out, &i.referents, 2)?;
            }
            if !i.trace.is_empty() {
                writeln!(out, "  constructed at:")?;
                for frame in &i.trace {
                    writeln!(out, "    {frame}")?;
                }
            }
        }
        writeln!(out, "{}", "-".repeat(79))
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
        json::check_writable(self).map_err(|reason| Error::Unwritable {
            path: path.to_owned(),
            reason,
        })?;
        let file_name = path.file_name().ok_or_else(|| {
            io_err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the path names no file",
            ))
        })?;
        let tmp: PathBuf = path.with_file_name(format!(
            ".{}.tmp-{}",
            file_name.to_string_lossy(),
            std::process::id()
        ));
        let json = serde_json::to_vec(self).map_err(|e| io_err(io::Error::other(e)))?;
        let written = (|| {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(&json)?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            fs::rename(&tmp, path)
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(io_err(e));
        }
        Ok(())
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
        let bytes = json::read_regular_file(path)?;
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
        match serde_json::from_slice::<Stats>(&bytes) {
            Ok(stats) if (1..=STATS_VERSION).contains(&stats.version) => Ok(stats),
            Ok(stats) => Err(version_error(u64::from(stats.version))),
            // Tell a version this classtrack cannot read from damage: a newer format may not
            // parse as this one, and its version is what the user needs to know.
            Err(e) => Err(match json::peek_version(&bytes) {
                json::Version::Number(v) if v == 0 || v > u64::from(STATS_VERSION) => {
                    version_error(v)
                }
                json::Version::Invalid(reason) => corrupt(reason),
                json::Version::Missing => corrupt("no format version".to_owned()),
                json::Version::Number(_) | json::Version::Unknown => corrupt(e.to_string()),
            }),
        }
    }
}

fn write_referents(out: &mut dyn Write, referents: &[Referent], depth: usize) -> io::Result<()> {
    for r in referents {
        writeln!(
            out,
            "{:indent$}{:>12}  {}",
            "",
            format_bytes(r.bytes),
            r.name,
            indent = depth * 2
        )?;
        write_referents(out, &r.children, depth + 1)?;
    }
    Ok(())
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
