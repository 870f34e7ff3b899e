//! Dumps written when memory reaches a limit ([`ClassTracker::dump_on`]): before the OOM
//! kill, while there is still someone to write them.
//!
//! A watcher thread (`classtrack-dumps`, one per tracker, started by the first `dump_on`)
//! polls each trigger's figure every [`DumpOptions::poll`] (10 ms by default: a read of the
//! allocator's counters, of the process's resident memory, or of two cgroup files), never on
//! the allocation path. When a figure reaches its limit, the thread takes a snapshot and writes
//! a stats dump (and, as options, the HTML report and a pprof profile) into the trigger's
//! directory, atomically. A trigger fires again only once its figure has fallen below 90% of
//! its limit and at least [`DumpOptions::min_interval`] later; at most
//! [`DumpOptions::keep`] dumps are kept in a directory, the oldest removed.
//!
//! A failed write (disk full, no permission) is counted, never a panic, and tried again
//! `min_interval` later: see [`ClassTracker::dump_status`] and [`ClassTracker::stop_dumps`].

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use classtrack_shim::{ClassId, OverheadGuard};

use crate::error::{Error, Result};
use crate::sync::Lock;
use crate::tracker::{ClassTracker, Inner};

/// What makes [`ClassTracker::dump_on`] write a dump.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum DumpTrigger {
    /// The live heap reaches this many bytes: every class's live bytes, classtrack's own
    /// overhead left out (exact, from the allocator's counters).
    LiveHeap(u64),
    /// The process's resident memory reaches this many bytes.
    Resident(u64),
    /// The process's cgroup uses this fraction of its limit (between 0 and 1), as a
    /// container's OOM killer sees it: cgroup v2's `memory.current` against `memory.max`, or
    /// cgroup v1's `memory.usage_in_bytes` against `memory.limit_in_bytes`.
    CgroupFraction(f64),
    /// The peak of the user's classes' live heap ([`ClassTracker::peak`]) grows by this many
    /// percent since the last dump of the trigger (or since `dump_on`): a dump at each new
    /// high-water mark, as jemalloc's `prof.gdump` writes a profile. Each dump holds the peak
    /// with its classes and sites ([`Stats::peak`](crate::Stats::peak)).
    NewPeak {
        /// The growth, in percent of the peak at the last dump, that makes the next one
        /// (above 0).
        percent: f64,
    },
}

impl DumpTrigger {
    /// A short name for file names: `live-heap`, `resident`, `cgroup`.
    fn slug(&self) -> &'static str {
        match self {
            DumpTrigger::LiveHeap(_) => "live-heap",
            DumpTrigger::Resident(_) => "resident",
            DumpTrigger::CgroupFraction(_) => "cgroup",
            DumpTrigger::NewPeak { .. } => "new-peak",
        }
    }
}

/// How [`ClassTracker::dump_on_with`] writes its dumps.
///
/// ```
/// use std::time::Duration;
/// let options = classtrack::DumpOptions::new()
///     .keep(3)
///     .min_interval(Duration::from_secs(60))
///     .html(true);
/// # let _ = options;
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct DumpOptions {
    /// How many dumps to keep in the directory, the oldest removed (8 by default).
    pub keep: usize,
    /// The least time between two dumps of one trigger (10 s by default).
    pub min_interval: Duration,
    /// How often the trigger's figure is read (10 ms by default).
    pub poll: Duration,
    /// Whether to write the HTML report beside each dump (needs the `html` feature).
    pub html: bool,
    /// Whether to write a pprof profile of the dump's snapshot beside it (needs the `pprof`
    /// feature).
    pub pprof: bool,
    /// The cgroup directory whose `memory.current` and `memory.max` a
    /// [`DumpTrigger::CgroupFraction`] reads, instead of the process's own (from
    /// `/proc/self/cgroup`, under `/sys/fs/cgroup`).
    pub cgroup_dir: Option<PathBuf>,
}

impl Default for DumpOptions {
    fn default() -> DumpOptions {
        DumpOptions {
            keep: 8,
            min_interval: Duration::from_secs(10),
            poll: Duration::from_millis(10),
            html: false,
            pprof: false,
            cgroup_dir: None,
        }
    }
}

impl DumpOptions {
    /// The defaults: 8 dumps kept, 10 s between dumps, polled every 10 ms, stats dumps alone.
    pub fn new() -> DumpOptions {
        DumpOptions::default()
    }

    /// Keeps at most `keep` dumps in the directory.
    pub fn keep(mut self, keep: usize) -> DumpOptions {
        self.keep = keep;
        self
    }

    /// Writes at most one dump of the trigger per `interval`.
    pub fn min_interval(mut self, interval: Duration) -> DumpOptions {
        self.min_interval = interval;
        self
    }

    /// Reads the trigger's figure every `poll`.
    pub fn poll(mut self, poll: Duration) -> DumpOptions {
        self.poll = poll;
        self
    }

    /// Writes the HTML report beside each dump.
    pub fn html(mut self, html: bool) -> DumpOptions {
        self.html = html;
        self
    }

    /// Writes a pprof profile beside each dump.
    pub fn pprof(mut self, pprof: bool) -> DumpOptions {
        self.pprof = pprof;
        self
    }

    /// Reads `memory.current` and `memory.max` in `dir` instead of the process's own cgroup.
    pub fn cgroup_dir(mut self, dir: impl Into<PathBuf>) -> DumpOptions {
        self.cgroup_dir = Some(dir.into());
        self
    }
}

/// What the dumps of [`ClassTracker::dump_on`] have done so far.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct DumpStatus {
    /// The dumps written, the latest last (each the stats dump's path).
    pub written: Vec<PathBuf>,
    /// Dumps that could not be written.
    pub failures: u64,
    /// What the last failure said.
    pub last_failure: Option<String>,
    /// How long the last dump took, from its trigger firing to its files written (a
    /// snapshot, the stats gathered and symbolized, the files written).
    pub last_latency: Option<Duration>,
}

/// One trigger being watched.
struct Watch {
    trigger: DumpTrigger,
    dir: PathBuf,
    options: DumpOptions,
    /// For a cgroup trigger: the directory read.
    cgroup: Option<PathBuf>,
    /// Whether the trigger may fire (its figure was below 90% of the limit since it last did).
    armed: bool,
    /// For a new-peak trigger: the peak's bytes at its last dump (or at `dump_on`).
    baseline: u64,
    last: Option<Instant>,
}

/// The state the watcher thread shares with the tracker.
#[derive(Default)]
struct Shared {
    watches: Lock<Vec<Watch>>,
    status: Lock<DumpStatus>,
    stop: AtomicBool,
}

/// A tracker's running watcher.
pub(crate) struct Dumps {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    /// The process generation (see `fork.rs`) the thread was started in.
    generation: u64,
}

impl Dumps {
    fn stop(mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            if self.generation == crate::fork::generation() {
                let _ = t.join();
            }
        }
    }
}

impl ClassTracker {
    /// Writes a stats dump into `dir` when `trigger` fires: the live heap, the resident memory
    /// or the cgroup's use reaches its limit. With the default [`DumpOptions`]; see
    /// [`dump_on_with`](Self::dump_on_with).
    ///
    /// ```
    /// use classtrack::{ClassTracker, DumpTrigger};
    /// let tracker = ClassTracker::new();
    /// let dir = std::env::temp_dir().join(format!("classtrack-dump-on-{}", std::process::id()));
    /// // A dump in `dir` once the program's heap reaches 2 GiB.
    /// tracker.dump_on(DumpTrigger::LiveHeap(2 << 30), &dir)?;
    /// assert!(tracker.dump_status().written.is_empty());
    /// tracker.stop_dumps()?;
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn dump_on(&self, trigger: DumpTrigger, dir: impl AsRef<Path>) -> Result<()> {
        self.dump_on_with(trigger, dir, DumpOptions::default())
    }

    /// Writes a dump into `dir` when `trigger` fires, as `options` say. Each call adds a
    /// trigger; all are watched by one background thread, started by the first.
    ///
    /// Each dump is the tracker's [`Stats`](crate::Stats) with a snapshot taken as the trigger
    /// fired (labelled with it), written atomically as
    /// `classtrack-YYYYMMDDTHHMMSS.mmmZ-TRIGGER.json` (and `.html`, `.pb.gz` as options ask),
    /// readable by [`Stats::load`](crate::Stats::load) and the `classtrack` command. A trigger
    /// fires when its figure reaches its limit, and again only after the figure has fallen
    /// below 90% of the limit and at least [`DumpOptions::min_interval`] later.
    ///
    /// Errors, before anything is watched: [`Error::InvalidDumpTrigger`] for a limit of zero, a
    /// fraction outside (0, 1], `keep` or `poll` of zero, or an option whose feature is off;
    /// for a cgroup trigger, a process whose cgroup has no memory controller or no limit;
    /// [`Error::Io`] when `dir` cannot be created.
    pub fn dump_on_with(
        &self,
        trigger: DumpTrigger,
        dir: impl AsRef<Path>,
        options: DumpOptions,
    ) -> Result<()> {
        let _g = OverheadGuard::new();
        let invalid = |reason: String| Err(Error::InvalidDumpTrigger { reason });
        match trigger {
            DumpTrigger::LiveHeap(0) | DumpTrigger::Resident(0) => {
                return invalid(format!("{trigger:?} has a limit of zero bytes"));
            }
            DumpTrigger::CgroupFraction(f) if !(f > 0.0 && f <= 1.0) => {
                return invalid(format!(
                    "{trigger:?}: the fraction of the cgroup's limit must be above 0 and at \
                     most 1"
                ));
            }
            DumpTrigger::NewPeak { percent } if !(percent > 0.0 && percent.is_finite()) => {
                return invalid(format!(
                    "{trigger:?}: the peak's growth must be a percentage above 0 (1.0 for 1%)"
                ));
            }
            _ => {}
        }
        if options.keep == 0 {
            return invalid("DumpOptions::keep is zero: keep at least one dump".into());
        }
        if options.poll.is_zero() {
            return invalid("DumpOptions::poll is zero: poll at least every few ms".into());
        }
        if options.html && !cfg!(feature = "html") {
            return invalid("DumpOptions::html needs classtrack's `html` feature".into());
        }
        if options.pprof && !cfg!(feature = "pprof") {
            return invalid("DumpOptions::pprof needs classtrack's `pprof` feature".into());
        }
        let cgroup = match trigger {
            DumpTrigger::CgroupFraction(_) => {
                let dir = match &options.cgroup_dir {
                    Some(d) => d.clone(),
                    None => own_cgroup().map_err(|reason| Error::InvalidDumpTrigger { reason })?,
                };
                cgroup_use(&dir).map_err(|reason| Error::InvalidDumpTrigger { reason })?;
                Some(dir)
            }
            _ => None,
        };
        let dir = dir.as_ref().to_owned();
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
            path: dir.clone(),
            source,
        })?;
        // Read before the dumps' lock is taken: `peak` takes every tracker's lock in turn (see
        // `peak::rewatch`), which must not happen under a lock of this tracker's.
        let baseline = match trigger {
            // The peak now (the heap now, if it is above the recorded one).
            DumpTrigger::NewPeak { .. } => crate::peak::peak(&self.inner.history)
                .map_or(0, |p| crate::peak::user_class_bytes(&p)),
            _ => 0,
        };
        let mut dumps = self.inner.dumps.lock();
        if dumps
            .as_ref()
            .is_some_and(|d| d.generation != crate::fork::generation())
        {
            // Started before a fork(): the thread does not exist in this process.
            *dumps = None;
        }
        let running = match dumps.as_mut() {
            Some(d) => d,
            None => {
                let shared = Arc::new(Shared::default());
                let (inner, s) = (Arc::downgrade(&self.inner), shared.clone());
                let thread = std::thread::Builder::new()
                    .name("classtrack-dumps".into())
                    .spawn(move || watch(&inner, &s))
                    .map_err(|source| Error::Spawn {
                        thread: "classtrack-dumps",
                        source,
                    })?;
                dumps.insert(Dumps {
                    shared,
                    thread: Some(thread),
                    generation: crate::fork::generation(),
                })
            }
        };
        running.shared.watches.lock().push(Watch {
            trigger,
            dir,
            options,
            cgroup,
            armed: true,
            baseline,
            last: None,
        });
        if let Some(t) = &running.thread {
            t.thread().unpark();
        }
        Ok(())
    }

    /// What the dumps have done so far: the files written and the failures.
    pub fn dump_status(&self) -> DumpStatus {
        let _g = OverheadGuard::new();
        self.inner
            .dumps
            .lock()
            .as_ref()
            // In a child of fork() the parent's watcher does not exist (and may have held the
            // status's lock as the process forked).
            .filter(|d| d.generation == crate::fork::generation())
            .map(|d| d.shared.status.lock().clone())
            .unwrap_or_default()
    }

    /// Stops watching every trigger. Returns [`Error::Dumps`] if any dump could not be
    /// written since the first `dump_on`.
    pub fn stop_dumps(&self) -> Result<()> {
        let _g = OverheadGuard::new();
        let Some(dumps) = self.inner.dumps.lock().take() else {
            return Ok(());
        };
        if dumps.generation != crate::fork::generation() {
            // The parent's watcher, which does not exist here: nothing to stop or report.
            drop(dumps);
            return Ok(());
        }
        let status = dumps.shared.status.lock().clone();
        dumps.stop();
        match status.last_failure {
            Some(last) if status.failures > 0 => Err(Error::Dumps {
                failures: status.failures,
                last,
            }),
            _ => Ok(()),
        }
    }
}

/// Stops the watcher of a tracker being dropped.
pub(crate) fn stop(dumps: Option<Dumps>) {
    if let Some(d) = dumps {
        d.stop();
    }
}

/// The watcher thread: polls every trigger until stopped or the tracker is gone.
fn watch(inner: &std::sync::Weak<Inner>, shared: &Shared) {
    let _g = OverheadGuard::new();
    while !shared.stop.load(Ordering::Relaxed) {
        let Some(tracker) = inner.upgrade() else {
            return;
        };
        let mut poll = Duration::from_secs(1);
        let mut fire = Vec::new();
        {
            let mut watches = shared.watches.lock();
            for (i, w) in watches.iter_mut().enumerate() {
                poll = poll.min(w.options.poll);
                let Some((value, limit)) = figure(w, &tracker) else {
                    continue;
                };
                if let DumpTrigger::NewPeak { .. } = w.trigger {
                    // Every new high fires, however high the last one was.
                    let due = w.last.is_none_or(|t| t.elapsed() >= w.options.min_interval);
                    if value >= limit && due {
                        w.baseline = value as u64;
                        w.last = Some(Instant::now());
                        fire.push((i, value));
                    }
                } else if value >= limit {
                    let due = w.last.is_none_or(|t| t.elapsed() >= w.options.min_interval);
                    if w.armed && due {
                        w.armed = false;
                        w.last = Some(Instant::now());
                        fire.push((i, value));
                    }
                } else if value < limit * 0.9 {
                    w.armed = true;
                }
            }
        }
        for (i, value) in fire {
            let w = {
                let watches = shared.watches.lock();
                let w = &watches[i];
                (w.trigger, w.dir.clone(), w.options.clone())
            };
            let fired = Instant::now();
            match write_dump(&tracker, w.0, value, &w.1, &w.2) {
                Ok(path) => {
                    let mut s = shared.status.lock();
                    s.written.push(path);
                    s.last_latency = Some(fired.elapsed());
                }
                Err(e) => {
                    let mut s = shared.status.lock();
                    s.failures += 1;
                    s.last_failure = Some(e.to_string());
                    // Tried again after `min_interval`, even if the figure stays high (a new
                    // peak's, whatever the peak then).
                    let mut watches = shared.watches.lock();
                    watches[i].armed = true;
                    watches[i].baseline = 0;
                }
            }
        }
        drop(tracker);
        std::thread::park_timeout(poll);
    }
}

/// The user's classes' live bytes at the tracker's recorded peak (0 when none).
fn recorded_peak(tracker: &Inner) -> u64 {
    tracker
        .history
        .lock()
        .peak
        .as_ref()
        .map_or(0, |p| crate::peak::user_class_bytes(p))
}

/// A trigger's figure now and its limit, in the same unit.
fn figure(w: &Watch, tracker: &Inner) -> Option<(f64, f64)> {
    match w.trigger {
        DumpTrigger::NewPeak { percent } => {
            let limit = (w.baseline as f64 * (1.0 + percent / 100.0)).max(1.0);
            Some((recorded_peak(tracker) as f64, limit))
        }
        DumpTrigger::LiveHeap(limit) => Some((live_heap() as f64, limit as f64)),
        DumpTrigger::Resident(limit) => {
            let m = memory_stats::memory_stats()?;
            Some((m.physical_mem as f64, limit as f64))
        }
        DumpTrigger::CgroupFraction(f) => {
            let (current, max) = cgroup_use(w.cgroup.as_deref()?).ok()?;
            Some((current as f64, max as f64 * f))
        }
    }
}

/// Every class's live bytes but classtrack's own.
fn live_heap() -> u64 {
    let counters = classtrack_shim::read_totals(crate::registry::class_count());
    counters
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != ClassId::OVERHEAD.index())
        .map(|(_, c)| c.live_bytes())
        .sum()
}

/// The process's own cgroup directory with a memory controller: cgroup v2's (`0::PATH` in
/// `/proc/self/cgroup`, under `/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on a hybrid
/// system), else cgroup v1's memory controller (`N:memory:PATH`, under
/// `/sys/fs/cgroup/memory`).
fn own_cgroup() -> std::result::Result<PathBuf, String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| {
        format!(
            "cannot read /proc/self/cgroup ({e}): the cgroup trigger needs Linux's cgroups; use \
             the Resident or LiveHeap trigger"
        )
    })?;
    let mut tried = Vec::new();
    for line in text.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let path = path.trim_start_matches('/');
        let candidates: Vec<(PathBuf, &str)> = if controllers.is_empty() {
            vec![
                (Path::new("/sys/fs/cgroup").join(path), "memory.current"),
                (
                    Path::new("/sys/fs/cgroup/unified").join(path),
                    "memory.current",
                ),
            ]
        } else if controllers.split(',').any(|c| c == "memory") {
            vec![(
                Path::new("/sys/fs/cgroup/memory").join(path),
                "memory.usage_in_bytes",
            )]
        } else {
            continue;
        };
        for (dir, file) in candidates {
            if dir.join(file).exists() {
                return Ok(dir);
            }
            tried.push(dir.join(file).display().to_string());
        }
    }
    Err(format!(
        "the process's cgroup has no memory controller (looked for {}): use the Resident or \
         LiveHeap trigger, or give the cgroup's directory with DumpOptions::cgroup_dir",
        if tried.is_empty() {
            "a cgroup in /proc/self/cgroup".to_owned()
        } else {
            tried.join(", ")
        }
    ))
}

/// The memory a cgroup uses and its limit, from directory `dir`: cgroup v2's `memory.current`
/// and `memory.max`, or cgroup v1's `memory.usage_in_bytes` and `memory.limit_in_bytes`; an
/// error naming what is missing when there is no limit or the files cannot be read.
fn cgroup_use(dir: &Path) -> std::result::Result<(u64, u64), String> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path)
            .map(|s| s.trim().to_owned())
            .map_err(|e| format!("cannot read {} ({e})", path.display()))
    };
    let v2 = dir.join("memory.current").exists() || !dir.join("memory.usage_in_bytes").exists();
    let (current_file, max_file) = if v2 {
        ("memory.current", "memory.max")
    } else {
        ("memory.usage_in_bytes", "memory.limit_in_bytes")
    };
    let current = read(current_file)?;
    let max = read(max_file)?;
    let no_limit = || {
        Err(format!(
            "the cgroup {} has no memory limit ({max_file} is {max}): use the Resident or \
             LiveHeap trigger",
            dir.display()
        ))
    };
    if max == "max" {
        return no_limit();
    }
    let number = |name: &str, s: &str| {
        s.parse::<u64>()
            .map_err(|_| format!("{}/{name} reads {s:?}, not a number", dir.display()))
    };
    let (current, max_bytes) = (number(current_file, &current)?, number(max_file, &max)?);
    // cgroup v1 says "no limit" with the largest page-aligned value (about 2^63).
    if max_bytes >= 1 << 62 {
        return no_limit();
    }
    if max_bytes == 0 {
        return Err(format!(
            "the cgroup {} has a memory limit of 0",
            dir.display()
        ));
    }
    Ok((current, max_bytes))
}

/// Takes a snapshot, writes the dump (and what the options add), keeps the directory within
/// `keep`: the stats dump's path.
fn write_dump(
    tracker: &Inner,
    trigger: DumpTrigger,
    value: f64,
    dir: &Path,
    options: &DumpOptions,
) -> Result<PathBuf> {
    let label = match trigger {
        DumpTrigger::LiveHeap(limit) => format!(
            "dump: live heap {} reached the limit of {}",
            crate::report::format_bytes(value as u64),
            crate::report::format_bytes(limit)
        ),
        DumpTrigger::Resident(limit) => format!(
            "dump: resident memory {} reached the limit of {}",
            crate::report::format_bytes(value as u64),
            crate::report::format_bytes(limit)
        ),
        DumpTrigger::CgroupFraction(f) => format!(
            "dump: cgroup memory {} reached {:.0}% of its limit",
            crate::report::format_bytes(value as u64),
            f * 100.0
        ),
        DumpTrigger::NewPeak { percent } => format!(
            "dump: a new peak of {}, {percent}% above the last",
            crate::report::format_bytes(value as u64),
        ),
    };
    tracker.snapshot(&label);
    let stats = tracker.stats();
    let stem = format!(
        "classtrack-{}-{}",
        timestamp(SystemTime::now()),
        trigger.slug()
    );
    let path = dir.join(format!("{stem}.json"));
    stats.dump(&path)?;
    #[cfg(feature = "html")]
    if options.html {
        stats.write_html(dir.join(format!("{stem}.html")))?;
    }
    #[cfg(feature = "pprof")]
    if options.pprof {
        if let Some(last) = stats.snapshots.last() {
            let mut gz = Vec::new();
            stats.write_pprof(last, &mut gz)?;
            crate::file::write_atomically(&dir.join(format!("{stem}.pb.gz")), &gz)?;
        }
    }
    prune(dir, options.keep);
    Ok(path)
}

/// Removes the oldest dumps of `dir` beyond `keep` (with their HTML and pprof files).
fn prune(dir: &Path, keep: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut stems: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| {
            n.strip_suffix(".json")
                .filter(|s| s.starts_with("classtrack-"))
                .map(str::to_owned)
        })
        .collect();
    // Names start with the time: the oldest sort first.
    stems.sort();
    let excess = stems.len().saturating_sub(keep);
    for stem in &stems[..excess] {
        for ext in ["json", "html", "pb.gz"] {
            let _ = std::fs::remove_file(dir.join(format!("{stem}.{ext}")));
        }
    }
}

/// `YYYYMMDDTHHMMSS.mmmZ` in UTC.
fn timestamp(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}.{:03}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_and_sort_by_time() {
        let t = UNIX_EPOCH + Duration::from_millis(1_796_316_139_123);
        assert_eq!(timestamp(t), "20261203T164219.123Z");
        assert_eq!(timestamp(UNIX_EPOCH), "19700101T000000.000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(timestamp(leap), "20000229T000000.000Z");
    }

    #[test]
    fn a_cgroup_is_read_from_its_files() {
        let dir = std::env::temp_dir().join(format!("classtrack-cgroup-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("memory.current"), "900\n").unwrap();
        std::fs::write(dir.join("memory.max"), "1000\n").unwrap();
        assert_eq!(cgroup_use(&dir), Ok((900, 1000)));
        std::fs::write(dir.join("memory.max"), "max\n").unwrap();
        let err = cgroup_use(&dir).unwrap_err();
        assert!(err.contains("no memory limit"), "{err}");
        std::fs::write(dir.join("memory.max"), "lots\n").unwrap();
        assert!(cgroup_use(&dir).unwrap_err().contains("not a number"));
        // cgroup v1's files.
        let v1 = dir.join("v1");
        std::fs::create_dir_all(&v1).unwrap();
        std::fs::write(v1.join("memory.usage_in_bytes"), "300\n").unwrap();
        std::fs::write(v1.join("memory.limit_in_bytes"), "4096\n").unwrap();
        assert_eq!(cgroup_use(&v1), Ok((300, 4096)));
        std::fs::write(v1.join("memory.limit_in_bytes"), "9223372036854771712\n").unwrap();
        assert!(cgroup_use(&v1).unwrap_err().contains("no memory limit"));
        std::fs::remove_dir_all(&v1).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(cgroup_use(&dir).unwrap_err().contains("cannot read"));
    }

    #[test]
    fn pruning_keeps_the_newest() {
        let dir = std::env::temp_dir().join(format!("classtrack-prune-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..5 {
            let stem = format!("classtrack-2026120{i}T000000.000Z-live-heap");
            std::fs::write(dir.join(format!("{stem}.json")), "{}").unwrap();
            std::fs::write(dir.join(format!("{stem}.html")), "").unwrap();
        }
        std::fs::write(dir.join("notes.json"), "{}").unwrap();
        prune(&dir, 2);
        let mut left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "classtrack-20261203T000000.000Z-live-heap.html",
                "classtrack-20261203T000000.000Z-live-heap.json",
                "classtrack-20261204T000000.000Z-live-heap.html",
                "classtrack-20261204T000000.000Z-live-heap.json",
                "notes.json"
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
