//! Folded stacks and flamegraphs of allocation sites (through the inferno crate).

use std::io::Write;

use crate::sampling::{Frame, Site};
use crate::snapshot::Snapshot;
use crate::stats::{SiteStats, SnapshotStats, Stats};

/// What a flamegraph or folded stack measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Measure {
    /// Estimated bytes live at the snapshot.
    LiveBytes,
    /// Estimated bytes ever allocated up to the snapshot.
    AllocatedBytes,
}

impl Measure {
    fn of(self, site: &Site) -> f64 {
        match self {
            Measure::LiveBytes => site.estimate.live_bytes,
            Measure::AllocatedBytes => site.estimate.allocated_bytes,
        }
    }

    fn of_stats(self, site: &SiteStats) -> f64 {
        match self {
            Measure::LiveBytes => site.estimate.live_bytes,
            Measure::AllocatedBytes => site.estimate.allocated_bytes,
        }
    }

    fn title(self) -> &'static str {
        match self {
            Measure::LiveBytes => "live bytes by allocation site",
            Measure::AllocatedBytes => "allocated bytes by allocation site",
        }
    }
}

/// Makes a frame name safe for the folded format (`;` separates frames).
fn clean(name: &str) -> String {
    name.replace(';', ":")
}

/// Folded stack lines, sorted: `class;outermost;...;innermost N` for each (class, frames
/// innermost first, value) whose value rounds to more than 0; sites whose stacks read the same
/// are one line, their values added.
fn fold<'a>(sites: impl Iterator<Item = (&'a str, &'a [Frame], f64)>) -> Vec<String> {
    let mut stacks: std::collections::BTreeMap<String, f64> = Default::default();
    for (class, frames, value) in sites {
        let mut line = clean(class);
        for f in frames.iter().rev() {
            line.push(';');
            line.push_str(&clean(&f.function));
        }
        *stacks.entry(line).or_default() += value;
    }
    stacks
        .into_iter()
        .filter_map(|(stack, value)| {
            let value = value.round() as u64;
            (value > 0).then(|| format!("{stack} {value}"))
        })
        .collect()
}

/// Writes a flamegraph SVG of folded `lines` (a valid, empty graph saying so when there are
/// none: inferno refuses an empty input).
fn flamegraph(lines: &[String], title: String, out: &mut dyn Write) -> crate::Result<()> {
    let mut options = inferno::flamegraph::Options::default();
    options.title = title;
    options.count_name = "bytes".to_owned();
    // Colours from the function names, not at random: the same stats draw the same graph,
    // and a function has one colour in every graph.
    options.hash = true;
    let placeholder = ["no sampled allocation 1".to_owned()];
    let lines = if lines.is_empty() {
        &placeholder[..]
    } else {
        lines
    };
    inferno::flamegraph::from_lines(&mut options, lines.iter().map(String::as_str), out)
        .map_err(|e| crate::Error::Report(e.to_string()))
}

#[cfg_attr(docsrs, doc(cfg(any(feature = "html", feature = "pprof"))))]
impl Snapshot {
    /// The sampled sites as folded stacks, one line each: `class;outermost;...;innermost N`,
    /// where N is the measure in bytes (rounded). Lines with nothing to show are left out.
    pub fn folded_stacks(&self, measure: Measure) -> Vec<String> {
        let _g = classtrack_shim::OverheadGuard::new();
        let _b = crate::sampling::Batch::new();
        let rows: Vec<(String, Vec<Frame>, f64)> = self
            .sites
            .iter()
            .filter(|s| measure.of(s).round() > 0.0)
            .map(|s| (self.class_label(s.class), s.frames(), measure.of(s)))
            .collect();
        fold(rows.iter().map(|(c, f, v)| (c.as_str(), f.as_slice(), *v)))
    }

    /// Writes a flamegraph SVG of the sampled sites, one tower per class.
    pub fn write_flamegraph(&self, out: &mut dyn Write, measure: Measure) -> crate::Result<()> {
        let _g = classtrack_shim::OverheadGuard::new();
        let lines = self.folded_stacks(measure);
        let title = format!("{:?} — {}", self.description, measure.title());
        flamegraph(&lines, title, out)
    }
}

#[cfg_attr(docsrs, doc(cfg(any(feature = "html", feature = "pprof"))))]
impl Stats {
    /// The sites kept of `snapshot` (one of [`snapshots`](Self::snapshots)) as folded stacks,
    /// as [`Snapshot::folded_stacks`]; with `class`, that class's sites only.
    pub fn folded_stacks(
        &self,
        snapshot: &SnapshotStats,
        measure: Measure,
        class: Option<&str>,
    ) -> Vec<String> {
        fold(
            snapshot
                .sites
                .iter()
                .filter(|s| class.is_none_or(|c| s.class == c))
                .map(|s| (s.class.as_str(), self.frames(s), measure.of_stats(s))),
        )
    }

    /// Writes a flamegraph SVG of the sites kept of `snapshot`, one tower per class (with
    /// `class`, that class's only).
    ///
    /// ```
    /// use classtrack::report::Measure;
    ///
    /// let tracker = classtrack::ClassTracker::new();
    /// tracker.create_snapshot("now");
    /// let stats = tracker.stats();
    /// let mut svg = Vec::new();
    /// stats.write_flamegraph(&stats.snapshots[0], &mut svg, Measure::LiveBytes, None)?;
    /// assert!(String::from_utf8(svg)?.contains("<svg"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn write_flamegraph(
        &self,
        snapshot: &SnapshotStats,
        out: &mut dyn Write,
        measure: Measure,
        class: Option<&str>,
    ) -> crate::Result<()> {
        let lines = self.folded_stacks(snapshot, measure, class);
        let title = match class {
            Some(c) => format!("{c} at {:?} — {}", snapshot.description, measure.title()),
            None => format!("{:?} — {}", snapshot.description, measure.title()),
        };
        flamegraph(&lines, title, out)
    }
}
