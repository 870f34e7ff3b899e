//! The HTML report ([`Stats::write_html`]): one self-contained file with charts of memory
//! over time, growth and leak suspects, a section per class (allocation sites, flamegraph,
//! instances) and each snapshot's table; pympler's `HtmlStats` for classtrack.
//!
//! The page is built with maud, which escapes every value it is given: class names such as
//! `Vec<String>`, representations and file paths show as text. Charts are inline SVG drawn by
//! plotters ([`chart`]); flamegraphs are inferno's SVG (with its own script) in sandboxed
//! `<iframe srcdoc>`s, which keep their script away from the page. Nothing is loaded from
//! elsewhere, so the file shows the same offline.

mod chart;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use classtrack_shim::{ClassId, OverheadGuard};
use maud::{html, Markup, PreEscaped, DOCTYPE};

use self::chart::{Band, Frame as ChartFrame, Line, Rgb, Unit};
use crate::diff::{LeakSuspect, SnapshotDiff};
use crate::error::Result;
use crate::file::write_atomically;
use crate::objects::Referent;
use crate::report::{format_bytes, format_site_estimate, Measure};
use crate::sampling::Frame;
use crate::snapshot::{ClassTotals, NOT_INSTALLED};
use crate::stats::{Breakdown, ClassStats, InstanceStats, SiteStats, SnapshotStats, Stats};
use crate::ClassTracker;

/// Classes drawn as bands of the memory chart (the rest is "other").
const BANDS: usize = 10;
/// Classes whose sites the peak's section shows, and sites of each.
const PEAK_CLASSES: usize = 5;
const PEAK_SITES: usize = 3;

/// Classes given a section besides the bands, tracked classes and leak suspects: the largest
/// at the last snapshot.
const CLASS_SECTIONS: usize = 20;
/// Class rows of a snapshot's table; the rest are summed in one row.
const TABLE_ROWS: usize = 50;
/// Snapshots listed one by one, the most recent; earlier ones are folded in one list.
const SNAPSHOTS_LISTED: usize = 12;
/// Allocation sites listed per class.
const SITES: usize = 10;
/// Instances listed per class, the largest.
const INSTANCES: usize = 50;
/// Intervals between snapshots looked at for leak suspects.
const SUSPECT_INTERVALS: usize = 10;
/// Sites shown per leak suspect.
const SUSPECT_SITES: usize = 3;
/// Rows of the growth table.
const GROWERS: usize = 20;

const CSS: &str = r#"
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0 auto;max-width:1240px;padding:12px 28px 60px;color:#1d1d1f}
h1{font-size:26px;margin:8px 0 4px}
h2{font-size:21px;border-bottom:2px solid #d8d8d8;padding-bottom:4px;margin-top:36px}
h3{font-size:17px;margin:26px 0 6px}
h4{font-size:15px;margin:18px 0 4px}
nav{position:sticky;top:0;background:#fff;padding:6px 0;border-bottom:1px solid #eee;z-index:1}
nav a{margin-right:16px}
a{color:#1a5fb4;text-decoration:none}
a:hover{text-decoration:underline}
table{border-collapse:collapse;margin:6px 0 10px}
th,td{padding:3px 9px;border-bottom:1px solid #ececec;text-align:left;vertical-align:top}
th{background:#f4f4f4;font-weight:600}
.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.sum td{font-weight:600;border-top:1px solid #bbb}
tr.own td{color:#666;font-style:italic}
tr.more td{color:#555}
code,.mono{font-family:ui-monospace,"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:12.5px}
td.name{min-width:16em;max-width:560px;overflow-wrap:anywhere}
.chart svg{display:block;max-width:100%;height:auto}
.legend{list-style:none;padding:0;margin:4px 0 12px;display:flex;flex-wrap:wrap;gap:4px 18px}
.swatch{display:inline-block;width:12px;height:12px;margin-right:6px;vertical-align:-1px;border:1px solid #0003}
.line{display:inline-block;width:18px;height:0;border-top:3px solid;margin-right:6px;vertical-align:3px}
.note{color:#5c5c5c}
.warn{background:#fff3cd;padding:8px 12px;border:1px solid #e3c55a}
.badge{font-size:12px;font-weight:600;background:#e8eefc;color:#1a4fa0;border-radius:3px;padding:1px 6px;margin-left:8px;vertical-align:2px}
.class{border-top:1px solid #ddd;margin-top:28px}
.class>h3{overflow-wrap:anywhere}
h3 code,h4 code{font-size:inherit}
.charts{display:flex;flex-wrap:wrap;gap:8px 24px}
.charts>div{flex:1 1 520px;min-width:0}
iframe.flame{width:100%;border:1px solid #ddd;background:#fff}
details{margin:4px 0}
details>summary{cursor:pointer}
ol.stack{margin:4px 0;padding-left:28px}
ul.tree{margin:2px 0;padding-left:20px}
.sizes{display:flex;flex-wrap:wrap;gap:2px 14px}
"#;

#[cfg_attr(docsrs, doc(cfg(feature = "html")))]
impl Stats {
    /// Writes an HTML report of these stats to `path`: one self-contained file (inline CSS
    /// and SVG, no network needed to view it), written atomically as [`dump`](Self::dump)
    /// writes: to a temporary file in the same directory, then renamed over `path`.
    ///
    /// The report has
    /// - memory over time: a stacked area chart of the program's live heap by class (the ten
    ///   classes with the largest peak, the rest as "other", which includes what older
    ///   summaries left out), with the process's resident memory and classtrack's overhead as
    ///   lines;
    /// - growth and leak suspects ([`leak_suspects`](Self::leak_suspects) over the last ten
    ///   intervals, and the largest growth from the first full snapshot to the last);
    /// - a section per class (the chart's classes, the largest at the last snapshot, the leak
    ///   suspects and every tracked class): live bytes and instances alive over time, the top
    ///   allocation sites with their estimates, a flamegraph of its sites, and its instances
    ///   with their representation, lifetime, size history, breakdown and construction trace;
    /// - each snapshot's class table (the largest 50 classes, the rest summed in one row),
    ///   folded except the last.
    ///
    /// Every name from the program (classes, representations, files) is escaped: it shows
    /// as text. A path that cannot be written is [`Error::Io`](crate::Error::Io).
    ///
    /// ```
    /// #[global_allocator]
    /// static ALLOC: classtrack::TrackingAlloc<std::alloc::System> =
    ///     classtrack::TrackingAlloc::new(std::alloc::System);
    ///
    /// fn main() -> classtrack::Result<()> {
    ///     let tracker = classtrack::ClassTracker::new();
    ///     let rows = classtrack::scope_named("Vec<Row>", || vec![0u64; 1000]);
    ///     tracker.create_snapshot("loaded");
    ///     let path = std::env::temp_dir().join(format!("classtrack-doc-{}.html", std::process::id()));
    ///     tracker.stats().write_html(&path)?;
    ///     let page = std::fs::read_to_string(&path).expect("written");
    ///     assert!(page.contains("Vec&lt;Row&gt;"));
    ///     std::fs::remove_file(&path).expect("written");
    ///     drop(rows);
    ///     Ok(())
    /// }
    /// ```
    pub fn write_html(&self, path: impl AsRef<Path>) -> Result<()> {
        let page = self.html()?;
        let _g = OverheadGuard::new();
        write_atomically(path.as_ref(), page.as_bytes())
    }

    /// The HTML report of [`write_html`](Self::write_html), as a string (to send elsewhere than
    /// to a file: a response, a pipe).
    ///
    /// ```
    /// let tracker = classtrack::ClassTracker::new();
    /// tracker.create_snapshot("start");
    /// let page = tracker.stats().html()?;
    /// assert!(page.starts_with("<!DOCTYPE html>"));
    /// # Ok::<(), classtrack::Error>(())
    /// ```
    pub fn html(&self) -> Result<String> {
        let _g = OverheadGuard::new();
        Ok(Report::new(self).page()?.into_string())
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "html")))]
impl ClassTracker {
    /// Writes an HTML report of what this tracker has gathered so far to `path`: the report of
    /// [`stats`](Self::stats) (see [`Stats::write_html`]).
    ///
    /// ```
    /// let tracker = classtrack::ClassTracker::new();
    /// tracker.create_snapshot("start");
    /// let path = std::env::temp_dir().join(format!("classtrack-tracker-doc-{}.html", std::process::id()));
    /// tracker.write_html(&path)?;
    /// assert!(std::fs::read_to_string(&path)?.starts_with("<!DOCTYPE html>"));
    /// std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn write_html(&self, path: impl AsRef<Path>) -> Result<()> {
        let _g = OverheadGuard::new();
        self.stats().write_html(path)
    }
}

/// A class given a section of its own.
struct ClassView<'a> {
    name: &'a str,
    /// Live bytes at each snapshot (`None` where a summary left it out).
    live: Vec<Option<u64>>,
    /// Its totals at the last snapshot, if kept there.
    last: Option<&'a ClassTotals>,
    /// The largest live bytes seen.
    peak: u64,
    /// Its record, when tracked under this name.
    tracked: Option<&'a ClassStats>,
}

/// What the page is made of, gathered once.
struct Report<'a> {
    stats: &'a Stats,
    times: Vec<f64>,
    /// The chart's bands: class names, bottom first.
    bands: Vec<&'a str>,
    /// The classes with a section, largest at the last snapshot first.
    classes: Vec<ClassView<'a>>,
    /// Section index by class name.
    anchors: HashMap<&'a str, usize>,
    suspects: Vec<LeakSuspect>,
    /// The first and last full snapshots' diff, when they differ.
    growth: Option<SnapshotDiff>,
    /// The snapshot whose sites are shown: the last that kept any.
    sites_at: Option<&'a SnapshotStats>,
    instances: HashMap<&'a str, Vec<&'a InstanceStats>>,
}

impl<'a> Report<'a> {
    fn new(stats: &'a Stats) -> Report<'a> {
        let snaps = &stats.snapshots;
        let times: Vec<f64> = snaps.iter().map(|s| s.time).collect();
        // Peak live bytes of every class of the program's heap (classtrack's own aside).
        let mut peaks: HashMap<&'a str, u64> = HashMap::new();
        for s in snaps {
            for c in s.classes.iter().filter(|c| c.id != ClassId::OVERHEAD) {
                let p = peaks.entry(&*c.name).or_insert(0);
                *p = (*p).max(c.live_bytes).max(c.peak_seen_bytes);
            }
        }
        let mut by_peak: Vec<(&str, u64)> = peaks.iter().map(|(n, p)| (*n, *p)).collect();
        by_peak.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let bands: Vec<&str> = by_peak
            .iter()
            .filter(|(_, p)| *p > 0)
            .take(BANDS)
            .map(|(n, _)| *n)
            .collect();

        let suspects = stats.leak_suspects(SUSPECT_INTERVALS, SUSPECT_SITES);
        let first_full = snaps.iter().find(|s| s.full);
        let last_full = snaps.iter().rev().find(|s| s.full);
        let growth = match (first_full, last_full) {
            (Some(a), Some(b)) if !std::ptr::eq(a, b) => Some(b.diff(a)),
            _ => None,
        };

        // The classes with a section: the bands, the largest now, the suspects, the tracked.
        let last = snaps.last();
        let mut names: Vec<&'a str> = bands.clone();
        if let Some(last) = last {
            let mut now: Vec<&ClassTotals> = last
                .classes
                .iter()
                .filter(|c| c.id != ClassId::OVERHEAD && c.live_bytes > 0)
                .collect();
            now.sort_by(|a, b| b.live_bytes.cmp(&a.live_bytes).then(a.id.cmp(&b.id)));
            names.extend(now.iter().take(CLASS_SECTIONS).map(|c| &*c.name));
            for s in &suspects {
                if let Some(c) = last.class_named(&s.name) {
                    names.push(&c.name);
                }
            }
        }
        names.extend(stats.classes.iter().map(|c| c.name.as_str()));
        let mut seen = std::collections::HashSet::new();
        names.retain(|n| seen.insert(*n));

        let index: HashMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
        let mut live: Vec<Vec<Option<u64>>> = vec![Vec::with_capacity(snaps.len()); names.len()];
        for s in snaps {
            let fill = if s.full { Some(0) } else { None };
            for series in &mut live {
                series.push(fill);
            }
            for c in &s.classes {
                if let Some(&i) = index.get(&*c.name) {
                    if let Some(v) = live[i].last_mut() {
                        *v = Some(c.live_bytes);
                    }
                }
            }
        }
        let mut classes: Vec<ClassView<'a>> = names
            .iter()
            .zip(live)
            .map(|(&name, live)| ClassView {
                name,
                last: last.and_then(|l| l.class_named(name)),
                peak: peaks.get(name).copied().unwrap_or(0),
                tracked: stats.classes.iter().find(|c| c.name == name),
                live,
            })
            .collect();
        let tracked_now = |v: &ClassView<'_>| {
            last.and_then(|l| l.tracked.iter().find(|t| t.name == v.name))
                .map_or(0, |t| t.total_bytes)
        };
        classes.sort_by(|a, b| {
            let size = |v: &ClassView<'_>| v.last.map_or_else(|| tracked_now(v), |c| c.live_bytes);
            size(b).cmp(&size(a)).then(a.name.cmp(b.name))
        });
        let anchors = classes
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name, i))
            .collect();

        let mut instances: HashMap<&str, Vec<&InstanceStats>> = HashMap::new();
        for i in &stats.instances {
            instances.entry(i.class.as_str()).or_default().push(i);
        }
        let last_size = |i: &InstanceStats| i.sizes.last().map_or(0, |s| s.1);
        for list in instances.values_mut() {
            list.sort_by(|a, b| last_size(b).cmp(&last_size(a)).then(a.id.cmp(&b.id)));
        }

        Report {
            stats,
            times,
            bands,
            classes,
            anchors,
            suspects,
            growth,
            sites_at: snaps.iter().rev().find(|s| !s.sites.is_empty()),
            instances,
        }
    }

    fn page(&self) -> Result<Markup> {
        let snaps = &self.stats.snapshots;
        let memory = self.memory()?;
        let classes = self.classes()?;
        Ok(html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { "classtrack report" }
                    style { (PreEscaped(CSS)) }
                }
                body {
                    h1 { "classtrack report" }
                    p.note { (self.overview()) }
                    @if !snaps.is_empty() && snaps.iter().all(|s| !s.allocator_installed) {
                        p.warn { (NOT_INSTALLED) }
                    }
                    nav {
                        a href="#memory" { "Memory over time" }
                        a href="#peak" { "At the peak" }
                        a href="#growth" { "Growth and leak suspects" }
                        a href="#classes" { "Classes" }
                        a href="#snapshots" { "Snapshots" }
                    }
                    @if snaps.is_empty() {
                        p.warn {
                            "No snapshot was taken: call ClassTracker::create_snapshot (or \
                             start_periodic_snapshots) before writing the report."
                        }
                    }
                    section #memory { (memory) }
                    section #peak { (self.peak()) }
                    section #growth { (self.growth()) }
                    section #classes { (classes) }
                    section #snapshots { (self.snapshots()) }
                }
            }
        })
    }

    fn overview(&self) -> String {
        let snaps = &self.stats.snapshots;
        let (Some(first), Some(last)) = (snaps.first(), snaps.last()) else {
            return "No snapshot.".to_owned();
        };
        let full = snaps.iter().filter(|s| s.full).count();
        let mut text = format!(
            "{} snapshot{} from {} to {}: {} with every class",
            snaps.len(),
            if snaps.len() == 1 { "" } else { "s" },
            seconds(first.time),
            seconds(last.time),
            full
        );
        if full < snaps.len() {
            let _ = write!(
                text,
                ", {} with their largest classes only (older ones, summarized) or their \
                 largest and their changed ones (recent ones, with many classes), the others \
                 summed",
                snaps.len() - full
            );
        }
        let c = &self.stats.compaction;
        if c.snapshot_points_dropped > 0 {
            let _ = write!(
                text,
                " ({} older summaries dropped to stay within the retention)",
                c.snapshot_points_dropped
            );
        }
        let _ = write!(
            text,
            ". {} tracked class{}, {} instance{} kept",
            self.stats.classes.len(),
            if self.stats.classes.len() == 1 {
                ""
            } else {
                "es"
            },
            self.stats.instances.len(),
            if self.stats.instances.len() == 1 {
                ""
            } else {
                "s"
            },
        );
        if self.stats.evicted_instances > 0 {
            let _ = write!(
                text,
                " ({} dead ones forgotten)",
                self.stats.evicted_instances
            );
        }
        text.push_str(". Written by classtrack ");
        text.push_str(env!("CARGO_PKG_VERSION"));
        text.push('.');
        text
    }

    fn link(&self, name: &str) -> Markup {
        match self.anchors.get(name) {
            Some(i) => html! { a href=(format!("#class-{i}")) { code { (name) } } },
            None => html! { code { (name) } },
        }
    }

    /// The stacked chart of the heap by class, with resident memory and overhead.
    fn memory(&self) -> Result<Markup> {
        let snaps = &self.stats.snapshots;
        if snaps.is_empty() {
            return Ok(html! { h2 { "Memory over time" } p.note { "No snapshot to chart." } });
        }
        let index: HashMap<&str, usize> = self
            .bands
            .iter()
            .enumerate()
            .map(|(i, n)| (*n, i))
            .collect();
        let mut bands: Vec<Band> = self
            .bands
            .iter()
            .enumerate()
            .map(|(i, _)| Band {
                color: chart::PALETTE[i % chart::PALETTE.len()],
                values: Vec::with_capacity(snaps.len()),
            })
            .collect();
        let mut other = Band {
            color: chart::OTHER,
            values: Vec::with_capacity(snaps.len()),
        };
        for s in snaps {
            let mut values = vec![0u64; bands.len()];
            for c in &s.classes {
                if let Some(&i) = index.get(&*c.name) {
                    values[i] = c.live_bytes;
                }
            }
            let shown: u64 = values.iter().sum();
            other
                .values
                .push(s.user_live_bytes().saturating_sub(shown) as f64);
            for (band, v) in bands.iter_mut().zip(values) {
                band.values.push(v as f64);
            }
        }
        let has_other = other.values.iter().any(|&v| v > 0.0);
        if has_other {
            bands.push(other);
        }
        let resident: Vec<(f64, f64)> = snaps
            .iter()
            .filter_map(|s| s.process.map(|p| (s.time, p.resident_bytes as f64)))
            .collect();
        let mut lines = vec![Line {
            color: chart::OVERHEAD,
            points: snaps
                .iter()
                .map(|s| (s.time, s.overhead.total_bytes() as f64))
                .collect(),
            filled: false,
        }];
        if !resident.is_empty() {
            lines.push(Line {
                color: chart::RESIDENT,
                points: resident.clone(),
                filled: false,
            });
        }
        let frame = ChartFrame {
            width: 1180,
            height: 460,
            unit: Unit::Bytes,
            y_title: "bytes",
        };
        // The moment of the peak, marked at the height of the whole stack then (the user's
        // classes and <untracked>, as the bands are).
        let marker = self.stats.peak.as_ref().map(|p| chart::Marker {
            time: p.time,
            value: p.user_live_bytes() as f64,
            label: format!("peak: {}", format_bytes(p.user_live_bytes())),
        });
        let svg = chart::stacked(&frame, &self.times, &bands, &lines, marker.as_ref())?;
        // Where a line (resident memory, often; overhead, with many instances kept) dwarfs the
        // heap, the bands are drawn again on their own.
        let heap_peak = (0..snaps.len())
            .map(|i| bands.iter().map(|b| b.values[i]).sum::<f64>())
            .fold(0.0, f64::max);
        let line_peak = lines
            .iter()
            .flat_map(|l| l.points.iter().map(|p| p.1))
            .fold(0.0, f64::max);
        let zoomed = if heap_peak > 0.0 && line_peak > 2.0 * heap_peak {
            Some(chart::stacked(
                &frame,
                &self.times,
                &bands,
                &[],
                marker.as_ref(),
            )?)
        } else {
            None
        };
        let last = snaps.last();
        Ok(html! {
            h2 { "Memory over time" }
            p.note {
                "The program's live heap at each snapshot, stacked by class"
                @if has_other {
                    ": the " (self.bands.len()) " classes with the largest peak, the rest as "
                    "“other” (which includes the classes that summaries of older snapshots "
                    "left out)"
                }
                ". Lines: the "
                "process's resident memory and what tracking costs (classtrack's own "
                "allocations, block tags and counter shards), not part of the stack."
            }
            div.chart role="img" aria-label="the program's heap by class over time, stacked, with resident memory and overhead as lines" { (PreEscaped(svg)) }
            @if let Some(zoomed) = zoomed {
                h4 { "The heap alone (without the lines, to show the classes)" }
                div.chart role="img" aria-label="the program's heap by class over time, stacked" { (PreEscaped(zoomed)) }
            }
            ul.legend {
                @if !resident.is_empty() {
                    li { span.line style=(format!("border-color:{}", chart::RESIDENT.css())) {} "resident memory (process)" }
                }
                li { span.line style=(format!("border-color:{}", chart::OVERHEAD.css())) {} "classtrack overhead" }
                @if has_other {
                    li { (swatch(chart::OTHER)) "other classes" }
                }
                @for (i, name) in self.bands.iter().enumerate().rev() {
                    li { (swatch(chart::PALETTE[i % chart::PALETTE.len()])) (self.link(name)) }
                }
            }
            @if let Some(s) = last {
                h3 { "At the last snapshot" }
                (figures(s))
            }
        })
    }

    fn growth(&self) -> Markup {
        let intervals = self
            .stats
            .snapshots
            .len()
            .saturating_sub(1)
            .min(SUSPECT_INTERVALS);
        html! {
            h2 { "Growth and leak suspects" }
            h3 { "Leak suspects" }
            p.note {
                "Classes whose live bytes grew in more than half of the last " (intervals)
                " intervals between snapshots, and overall; fastest first. Sites are sampled "
                "estimates at the last snapshot that kept sites, ± one standard error."
            }
            @if self.suspects.is_empty() {
                p { "No class grew in most of the last " (intervals) " intervals." }
            } @else {
                table {
                    tr {
                        th { "class" } th.n { "grew in" } th.n { "growth" } th.n { "per second" }
                        th.n { "live now" } th { "where its live memory was allocated" }
                    }
                    @for s in &self.suspects {
                        tr {
                            td.name { (self.link(&s.name)) }
                            td.n { (s.grew_in) " of " (s.intervals) }
                            td.n { (signed_bytes(s.growth_bytes)) }
                            td.n { (format_bytes(s.bytes_per_second.max(0.0) as u64)) "/s" }
                            td.n { (format_bytes(s.live_bytes)) }
                            td {
                                @for site in &s.top_sites {
                                    div {
                                        span.n { (format_site_estimate(site.estimate.live_bytes, site.estimate.live_samples, site.estimate.exact)) }
                                        " " (frame_where(&site.frames))
                                    }
                                }
                                @if s.top_sites.is_empty() { span.note { "no sampled site" } }
                            }
                        }
                    }
                }
            }
            @if let Some(d) = &self.growth {
                h3 {
                    "Largest growth from “" (d.from_description) "” (" (seconds(d.from_time))
                    ") to “" (d.to_description) "” (" (seconds(d.to_time)) ")"
                }
                p.note {
                    "The first and last snapshots with every class. The allocator's live bytes "
                    "changed by " (signed_bytes(d.live_bytes_change))
                    @if let Some(own) = d.classes.iter().find(|c| c.id == ClassId::OVERHEAD) {
                        ", classtrack's own by " (signed_bytes(own.live_bytes_change))
                    }
                    "."
                }
                @let grown: Vec<_> = d.classes.iter()
                    .filter(|c| c.id != ClassId::OVERHEAD && c.live_bytes_change > 0)
                    .take(GROWERS)
                    .collect();
                @if grown.is_empty() {
                    p { "No class grew." }
                } @else {
                    table {
                        tr {
                            th { "class" } th.n { "live bytes" } th.n { "live blocks" }
                            th.n { "live now" } th.n { "allocated" } th.n { "allocations" }
                            th.n { "freed" } th.n { "frees" }
                        }
                        @for c in grown {
                            tr {
                                td.name { (self.link(&c.name)) }
                                td.n { (signed_bytes(c.live_bytes_change)) }
                                td.n { (format!("{:+}", c.live_blocks_change)) }
                                td.n { (format_bytes(c.live_bytes)) }
                                td.n { (format_bytes(c.allocated_bytes)) }
                                td.n { (c.allocations) }
                                td.n { (format_bytes(c.freed_bytes)) }
                                td.n { (c.frees) }
                            }
                        }
                    }
                }
            }
        }
    }

    fn classes(&self) -> Result<Markup> {
        let mut sections = Vec::with_capacity(self.classes.len());
        for (i, c) in self.classes.iter().enumerate() {
            sections.push(self.class(i, c)?);
        }
        Ok(html! {
            h2 { "Classes" }
            p.note {
                "The classes of the memory chart, the largest at the last snapshot, the leak "
                "suspects and the tracked classes, largest first."
            }
            @if self.classes.is_empty() {
                p { "No class to show." }
            } @else {
                table {
                    tr {
                        th { "class" } th.n { "live now" } th.n { "peak seen" }
                        th.n { "instances alive" }
                    }
                    @for (i, c) in self.classes.iter().enumerate() {
                        tr {
                            td.name { a href=(format!("#class-{i}")) { code { (c.name) } } }
                            td.n { (c.last.map_or_else(|| "-".to_owned(), |t| format_bytes(t.live_bytes))) }
                            td.n { (format_bytes(c.peak)) }
                            td.n { (self.alive_now(c).map_or_else(|| "-".to_owned(), |n| n.to_string())) }
                        }
                    }
                }
            }
            @for s in sections { (s) }
        })
    }

    fn alive_now(&self, c: &ClassView<'_>) -> Option<u64> {
        c.tracked?;
        self.stats
            .snapshots
            .last()
            .and_then(|s| s.tracked.iter().find(|t| t.name == c.name))
            .map(|t| t.active)
    }

    fn class(&self, index: usize, c: &ClassView<'a>) -> Result<Markup> {
        let snaps = &self.stats.snapshots;
        let last_time = snaps.last().map(|s| s.time);
        let live: Vec<(f64, f64)> = self
            .times
            .iter()
            .zip(&c.live)
            .filter_map(|(t, v)| v.map(|v| (*t, v as f64)))
            .collect();
        let tracked_bytes: Vec<(f64, f64)> = snaps
            .iter()
            .filter_map(|s| {
                s.tracked
                    .iter()
                    .find(|t| t.name == c.name)
                    .map(|t| (s.time, t.total_bytes as f64))
            })
            .collect();
        let has_class = c.live.iter().any(Option::is_some) && c.peak > 0 || c.last.is_some();
        let mut lines = Vec::new();
        if has_class {
            lines.push(Line {
                color: chart::PALETTE[0],
                points: live,
                filled: true,
            });
        }
        if c.tracked.is_some() && !tracked_bytes.is_empty() {
            lines.push(Line {
                color: chart::PALETTE[1],
                points: tracked_bytes,
                filled: !has_class,
            });
        }
        let bytes_chart = if lines.is_empty() {
            None
        } else {
            Some(chart::lines(
                &ChartFrame {
                    width: 620,
                    height: 260,
                    unit: Unit::Bytes,
                    y_title: "live bytes",
                },
                &lines,
            )?)
        };
        let alive_chart = match c.tracked {
            Some(t) if !t.history.is_empty() => Some(chart::lines(
                &ChartFrame {
                    width: 620,
                    height: 260,
                    unit: Unit::Count,
                    y_title: "instances alive",
                },
                &[Line {
                    color: chart::PALETTE[2],
                    points: chart::steps(&t.history, last_time),
                    filled: true,
                }],
            )?),
            _ => None,
        };
        let sites = self.sites(c);
        let instances = self.instances.get(c.name).map(Vec::as_slice).unwrap_or(&[]);
        Ok(html! {
            div.class id=(format!("class-{index}")) {
                h3 {
                    code { (c.name) }
                    @if c.tracked.is_some() { span.badge { "tracked" } }
                    @if c.name == crate::UNTRACKED_CLASS { span.badge { "outside any scope" } }
                }
                @if let Some(t) = c.last {
                    p {
                        "At the last snapshot: " b { (format_bytes(t.live_bytes)) } " live in "
                        (t.live_blocks) " block" @if t.live_blocks != 1 { "s" } " (average " (format_bytes(t.average_bytes().round() as u64))
                        "); peak seen " (format_bytes(t.peak_seen_bytes)) "; "
                        (format_bytes(t.allocated_bytes)) " allocated in " (t.allocations)
                        " allocation" @if t.allocations != 1 { "s" } ", " (format_bytes(t.freed_bytes)) " freed."
                    }
                } @else if has_class {
                    p.note { "Not kept at the last snapshot (a summary keeps the largest classes only)." }
                }
                @if let Some(t) = c.tracked {
                    p {
                        "Tracked" @if t.options.name.is_some() { " as " code { (t.name) } } ": "
                        (t.created) " instance" @if t.created != 1 { "s" } " registered"
                        @if !t.attached {
                            @if !instances.is_empty() && instances.iter().all(|i| i.shared) {
                                ", by handle (track_object): what the class constructs is not registered"
                            } @else {
                                " (detached: new instances no longer registered)"
                            }
                        }
                        @if t.options.trace { "; construction traced" }
                        @if t.options.resolution_level > 0 { "; broken down " (t.options.resolution_level) " level" @if t.options.resolution_level != 1 { "s" } " deep" }
                        "."
                    }
                }
                div.charts {
                    @if let Some(svg) = bytes_chart {
                        div {
                            h4 {
                                @if has_class { "Live bytes over time" } @else { "Its instances' live bytes over time" }
                            }
                            div.chart role="img" aria-label=(format!("live bytes of {} over time", c.name)) { (PreEscaped(svg)) }
                            @if has_class && c.tracked.is_some() && lines.len() > 1 {
                                ul.legend {
                                    li { (swatch(chart::PALETTE[0])) "the class (every allocation in its scope)" }
                                    li {
                                        (swatch(chart::PALETTE[1])) "its tracked instances"
                                        @if instances.iter().any(|i| i.breakdown == Breakdown::Traversal) {
                                            " (those tracked with a traversal: the bytes reachable from them)"
                                        }
                                    }
                                }
                            }
                        }
                    }
                    @if let Some(svg) = alive_chart {
                        div {
                            h4 { "Instances alive over time" }
                            div.chart role="img" aria-label=(format!("instances of {} alive over time", c.name)) { (PreEscaped(svg)) }
                        }
                    }
                }
                (sites)
                @if !instances.is_empty() { (self.instance_table(instances, last_time)) }
            }
        })
    }

    /// The class's top sites at [`sites_at`](Self::sites_at), and their flamegraph.
    fn sites(&self, c: &ClassView<'_>) -> Markup {
        let Some(snap) = self.sites_at else {
            return html! {};
        };
        let sites: Vec<&SiteStats> = snap.sites_of(c.name);
        if sites.is_empty() {
            return html! {};
        }
        let measure = if sites.iter().any(|s| s.estimate.live_bytes > 0.0) {
            Measure::LiveBytes
        } else {
            Measure::AllocatedBytes
        };
        let flamegraph = self.flamegraph(snap, measure, c.name);
        html! {
            h4 {
                "Allocation sites at “" (snap.description) "” (" (seconds(snap.time)) ")"
            }
            p.note {
                "Sampled estimates, ± one standard error, with the samples they rest on (exact \
                 counts for a class whose every allocation is traced); the "
                "frame shown is the innermost outside the standard library."
            }
            table {
                tr { th.n { "live" } th.n { "allocated" } th { "where" } }
                @for s in sites.iter().take(SITES) {
                    @let frames = self.stats.frames(s);
                    tr {
                        td.n { (format_site_estimate(s.estimate.live_bytes, s.estimate.live_samples, s.estimate.exact)) }
                        td.n { (format_site_estimate(s.estimate.allocated_bytes, s.estimate.samples, s.estimate.exact)) }
                        td.name { (site_where(frames)) }
                    }
                }
            }
            @if sites.len() > SITES {
                p.note { (sites.len() - SITES) " more sites kept (in the flamegraph)." }
            }
            @if sites.iter().take(SITES).any(|s| s.estimate.live_bytes > s.estimate.allocated_bytes * 1.001) {
                p.note { (GROWN_HERE) }
            }
            (flamegraph)
        }
    }

    /// The flamegraph of class `name`'s sites at `snap`, in a sandboxed frame: inferno's SVG
    /// and its script, as a document of its own. If it cannot be drawn, says so (the rest of
    /// the report stands).
    fn flamegraph(&self, snap: &SnapshotStats, measure: Measure, name: &str) -> Markup {
        let mut svg = Vec::new();
        if let Err(e) = self
            .stats
            .write_flamegraph(snap, &mut svg, measure, Some(name))
        {
            return html! { p.warn { "The flamegraph could not be drawn: " (e.to_string()) } };
        }
        let svg = String::from_utf8_lossy(&svg);
        let height = svg_height(&svg).unwrap_or(300) + 6;
        // inferno's graph is fluid: its script drops the width, to fill its parent. As an
        // HTML document of its own (rather than an SVG one), the parent is the frame's body.
        let frame_doc = html! {
            (DOCTYPE)
            html {
                head {
                    meta charset="utf-8";
                    style { "html,body{margin:0}svg{display:block;width:100%}" }
                }
                body { (PreEscaped(svg.find("<svg").map_or(&svg[..], |at| &svg[at..]))) }
            }
        }
        .into_string();
        html! {
            details open {
                summary {
                    "Flamegraph of "
                    @match measure { Measure::LiveBytes => "live", _ => "allocated" }
                    " bytes by site (click a frame to zoom)"
                }
                iframe.flame sandbox="allow-scripts" height=(height) title=(format!("flamegraph of {name}")) srcdoc=(frame_doc) {}
            }
        }
    }

    fn instance_table(&self, instances: &[&InstanceStats], last_time: Option<f64>) -> Markup {
        html! {
            h4 { "Instances" }
            p.note {
                (instances.len()) " kept"
                @if instances.len() > INSTANCES { ", the " (INSTANCES) " largest shown" }
                "; sizes are their live bytes at each snapshot of their life"
                @if instances.iter().any(|i| i.breakdown == Breakdown::Traversal) {
                    " (for those marked " span.badge { "by traversal" } ", the bytes reachable from them: "
                    "their inline bytes and all they own, whoever allocated it)"
                }
                "."
            }
            table {
                tr {
                    th.n { "id" } th { "representation" } th.n { "born" } th.n { "died" }
                    th.n { "lifetime" } th.n { "size now" } th.n { "largest" }
                }
                @for i in instances.iter().take(INSTANCES) {
                    tr {
                        td.n { "#" (i.id) }
                        td.name {
                            code { (i.repr) }
                            @if i.name != i.class { " (" (i.name) ")" }
                            @match i.breakdown {
                                Breakdown::Traversal => { " " span.badge { "by traversal" } }
                                Breakdown::Unavailable { level } => {
                                    " " span.badge title=(format!("resolution level {level} asked: tracked by handle, its type has no Footprint")) { "by handle, no breakdown" }
                                }
                                _ => { @if i.shared { " " span.badge { "by handle" } } }
                            }
                        }
                        td.n { (seconds(i.birth)) }
                        td.n { (i.death.map_or_else(|| "alive".to_owned(), seconds)) }
                        td.n { (lifetime(i, last_time)) }
                        td.n { (i.sizes.last().map_or_else(|| "-".to_owned(), |s| format_bytes(s.1))) }
                        td.n { (format_bytes(i.max_size)) }
                    }
                    @if !i.sizes.is_empty() || !i.trace.is_empty() || !i.referents.is_empty() {
                        tr.more {
                            td {}
                            td colspan="6" {
                                details {
                                    summary { "size history, breakdown and trace" }
                                    @if !i.sizes.is_empty() {
                                        div { b { "Sizes: " } }
                                        div.sizes {
                                            @for (t, size) in &i.sizes {
                                                span { (seconds(*t)) ": " (format_bytes(*size)) }
                                            }
                                        }
                                    }
                                    @if !i.referents.is_empty() {
                                        div { b {
                                            @if i.breakdown == Breakdown::Traversal { "Breakdown by traversal (its parts) at the last snapshot:" }
                                            @else { "Breakdown by nested scopes at the last snapshot:" }
                                        } }
                                        (referents(&i.referents))
                                    }
                                    @if !i.trace.is_empty() {
                                        div { b { "Constructed at:" } }
                                        ol.stack { @for f in &i.trace { li { code { (f) } } } }
                                    }
                                }
                            }
                        }
                    }
                }
                @if instances.len() > INSTANCES {
                    tr.more { td colspan="7" { (instances.len() - INSTANCES) " smaller instances not shown" } }
                }
            }
        }
    }

    /// The heap at its peak: when, its figures, its class table and the top sites of its
    /// largest classes.
    fn peak(&self) -> Markup {
        let Some(peak) = &self.stats.peak else {
            return html! {
                h2 { "At the peak" }
                p.note { "No peak recorded: these stats come from a file of version 2 or older." }
            };
        };
        let user_classes: u64 =
            peak.user_classes().map(|c| c.live_bytes).sum::<u64>() + peak.omitted.live_bytes;
        let mut largest: Vec<&ClassTotals> =
            peak.user_classes().filter(|c| c.live_bytes > 0).collect();
        largest.sort_by(|a, b| b.live_bytes.cmp(&a.live_bytes).then(a.id.cmp(&b.id)));
        let rows: Vec<(&ClassTotals, &SiteStats)> = largest
            .iter()
            .take(PEAK_CLASSES)
            .flat_map(|c| {
                peak.sites_of(&c.name)
                    .into_iter()
                    .filter(|s| s.estimate.live_bytes > 0.0)
                    .take(PEAK_SITES)
                    .map(move |s| (*c, s))
            })
            .collect();
        html! {
            h2 { "At the peak" }
            p.note {
                "The highest live heap of the program's classes, read when the allocator saw "
                "it grow (not at a snapshot): " b { (format_bytes(user_classes)) } " at "
                (seconds(peak.time)) ", marked on the chart above. "
                (format_bytes(peak.user_live_bytes())) " in the program's heap with "
                code { "<untracked>" } "."
            }
            (self.snapshot_table(peak))
            @if !rows.is_empty() {
                h4 { "Where the largest classes allocated, at the peak" }
                p.note { "Sampled estimates of live bytes, ± one standard error; the frame shown is the innermost outside the standard library." }
                table {
                    tr { th { "class" } th.n { "live" } th { "where" } }
                    @for (c, s) in &rows {
                        @let frames = self.stats.frames(s);
                        tr {
                            td.name { (self.link(&c.name)) }
                            td.n { (format_site_estimate(s.estimate.live_bytes, s.estimate.live_samples, s.estimate.exact)) }
                            td.name { (site_where(frames)) }
                        }
                    }
                }
            }
        }
    }

    fn snapshots(&self) -> Markup {
        let snaps = &self.stats.snapshots;
        html! {
            h2 { "Snapshots" }
            p.note {
                "Each snapshot's classes, largest first (the " (TABLE_ROWS) " largest, the rest "
                "summed); shares are of the program's heap, classtrack's own allocations "
                "apart. The last snapshot is open; click another to open it"
                @if snaps.len() > SNAPSHOTS_LISTED { " (the earlier ones are in one list first)" }
                "."
            }
            @let split = snaps.len().saturating_sub(SNAPSHOTS_LISTED);
            @if split > 0 {
                details {
                    summary { (split) " earlier snapshots" }
                    @for (n, s) in snaps[..split].iter().enumerate() { (self.snapshot(n, s, false)) }
                }
            }
            @for (n, s) in snaps.iter().enumerate().skip(split) {
                (self.snapshot(n, s, n + 1 == snaps.len()))
            }
        }
    }

    /// Snapshot number `n`, folded unless `open`. Numbered from 0 on the page, as the
    /// `classtrack` command numbers them (`classtrack pprof DUMP --snapshot 0`).
    fn snapshot(&self, n: usize, s: &SnapshotStats, open: bool) -> Markup {
        html! {
            details open[open] {
                summary {
                    "#" (n) " " b { "“" (s.description) "”" } " at " (seconds(s.time)) " — "
                    (format_bytes(s.user_live_bytes())) " in the program's heap"
                    @if let Some(p) = s.process { ", " (format_bytes(p.resident_bytes)) " resident" }
                    @if !s.full { " (summary)" }
                }
                (self.snapshot_table(s))
            }
        }
    }

    fn snapshot_table(&self, s: &SnapshotStats) -> Markup {
        let mut users: Vec<&ClassTotals> = s.user_classes().collect();
        users.sort_by(|a, b| b.live_bytes.cmp(&a.live_bytes).then(a.id.cmp(&b.id)));
        let shown = users.len().min(TABLE_ROWS);
        let mut rest = s.omitted;
        for c in &users[shown..] {
            rest.classes += 1;
            rest.live_bytes += c.live_bytes;
            rest.live_blocks += c.live_blocks;
            rest.allocated_bytes += c.allocated_bytes;
            rest.allocations += c.allocations;
        }
        let untracked = s.classes.iter().find(|c| c.id == ClassId::UNTRACKED);
        let own = s.classes.iter().find(|c| c.id == ClassId::OVERHEAD);
        let heap = s.user_live_bytes();
        let heap_classes: Vec<&ClassTotals> = users.iter().copied().chain(untracked).collect();
        let blocks =
            heap_classes.iter().map(|c| c.live_blocks).sum::<u64>() + s.omitted.live_blocks;
        let allocated =
            heap_classes.iter().map(|c| c.allocated_bytes).sum::<u64>() + s.omitted.allocated_bytes;
        let allocations =
            heap_classes.iter().map(|c| c.allocations).sum::<u64>() + s.omitted.allocations;
        html! {
            @if !s.full {
                p.note {
                    "This snapshot keeps the largest classes (a summary of an older snapshot), \
                     or the largest and those that changed (a recent one), or leaves idle ones \
                     out; the " (s.omitted.classes) " it left out"
                    @if s.omitted.idle > 0 { " (" (s.omitted.idle) " idle)" }
                    " are summed below."
                }
            }
            @if !s.allocator_installed { p.warn { (NOT_INSTALLED) } }
            table {
                tr {
                    th { "class" } th.n { "live blocks" } th.n { "live bytes" } th.n { "average" }
                    th.n { "share" } th.n { "peak seen" } th.n { "allocated" } th.n { "allocations" }
                }
                @for c in &users[..shown] { (self.class_row(c, Some(heap))) }
                @if rest.classes > 0 {
                    tr.more {
                        td { (rest.classes) " more class" @if rest.classes != 1 { "es" } }
                        td.n { (rest.live_blocks) }
                        td.n { (format_bytes(rest.live_bytes)) }
                        td.n { (format_bytes(average(rest.live_bytes, rest.live_blocks))) }
                        td.n { (share(rest.live_bytes, heap)) }
                        td {}
                        td.n { (format_bytes(rest.allocated_bytes)) }
                        td.n { (rest.allocations) }
                    }
                }
                @if let Some(c) = untracked { (self.class_row(c, Some(heap))) }
                tr.sum {
                    td { "program's heap" }
                    td.n { (blocks) }
                    td.n { (format_bytes(heap)) }
                    td.n { (format_bytes(average(heap, blocks))) }
                    td.n { (share(heap, heap)) }
                    td {}
                    td.n { (format_bytes(allocated)) }
                    td.n { (allocations) }
                }
                @if let Some(c) = own { (self.class_row(c, None)) }
                tr.sum {
                    td { "allocator total" }
                    td.n { (s.allocator.live_blocks) }
                    td.n { (format_bytes(s.allocator.live_bytes)) }
                    td.n { (format_bytes(average(s.allocator.live_bytes, s.allocator.live_blocks))) }
                    td.n { "-" }
                    td {}
                    td.n { (format_bytes(s.allocator.allocated_bytes)) }
                    td.n { (s.allocator.allocations) }
                }
            }
            (figures(s))
            @if !s.tracked.is_empty() {
                table {
                    tr {
                        th { "tracked class" } th.n { "alive" } th.n { "total" } th.n { "average" }
                        th.n { "smallest" } th.n { "largest" } th.n { "share" }
                    }
                    @for t in &s.tracked {
                        tr {
                            td.name { (self.link(&t.name)) }
                            td.n { (t.active) }
                            td.n { (format_bytes(t.total_bytes)) }
                            td.n { (format_bytes(t.average_bytes().round() as u64)) }
                            td.n { (format_bytes(t.min_bytes)) }
                            td.n { (format_bytes(t.max_bytes)) }
                            td.n { (share(t.total_bytes, heap)) }
                        }
                    }
                }
            }
        }
    }

    fn class_row(&self, c: &ClassTotals, heap: Option<u64>) -> Markup {
        html! {
            tr.own[heap.is_none()] {
                td.name { (self.link(&c.name)) }
                td.n { (c.live_blocks) }
                td.n { (format_bytes(c.live_bytes)) }
                td.n { (format_bytes(c.average_bytes().round() as u64)) }
                td.n { (heap.map_or_else(|| "-".to_owned(), |h| share(c.live_bytes, h))) }
                td.n { (format_bytes(c.peak_seen_bytes)) }
                td.n { (format_bytes(c.allocated_bytes)) }
                td.n { (c.allocations) }
            }
        }
    }
}

/// A snapshot's process memory, tracking overhead and sampler.
fn figures(s: &SnapshotStats) -> Markup {
    let o = &s.overhead;
    let sampling = &s.sampling;
    html! {
        p.note {
            @match s.process {
                Some(p) => { "Process: " (format_bytes(p.resident_bytes)) " resident, " (format_bytes(p.virtual_bytes)) " virtual. " }
                None => { "Process memory not reported on this platform. " }
            }
            "Tracking overhead: " (format_bytes(o.total_bytes())) " (classtrack's own "
            (format_bytes(o.tracker_bytes)) ", block tags " (format_bytes(o.metadata_bytes))
            ", counter shards " (format_bytes(o.shard_bytes)) "). "
            @if sampling.mean_bytes == 0 {
                "Sampling off"
            } @else {
                "Sampling: one stack per " (format_bytes(sampling.mean_bytes)) " allocated"
            }
            " (" (sampling.sent) " samples taken, " (sampling.dropped) " dropped)."
        }
    }
}

fn swatch(color: Rgb) -> Markup {
    html! { span.swatch style=(format!("background:{}", color.css())) {} }
}

fn referents(list: &[Referent]) -> Markup {
    html! {
        ul.tree {
            @for r in list {
                li {
                    (format_bytes(r.bytes)) " " code { (r.name) }
                    @if !r.children.is_empty() { (referents(&r.children)) }
                }
            }
        }
    }
}

/// Why a site can show more live than allocated.
pub(crate) const GROWN_HERE: &str = "Live exceeds allocated where blocks were grown (by \
     realloc: a Vec or String that grew): a grown block is live in full at the site that grew \
     it, while allocated there counts only its growth; its first bytes count as allocated \
     where it was first allocated.";

/// Whether a frame is the standard library's or the allocation machinery's (classtrack's
/// own, the global allocator's entry points): sites are named by the innermost frame that is
/// not.
fn is_library(f: &Frame) -> bool {
    // The standard library's sources are recorded under `/rustc/<commit>/library/`.
    if f.file.as_deref().is_some_and(|p| p.starts_with("/rustc/")) {
        return true;
    }
    let name = f.function.trim_start_matches('<');
    [
        "alloc::",
        "core::",
        "std::",
        "hashbrown::",
        "classtrack::",
        "classtrack_shim::",
        "__rust",
        "__rdl_",
        "__rg_",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

fn frame_line(f: &Frame) -> Markup {
    html! {
        code { (f.function) }
        @if let Some(file) = &f.file {
            " " span.note.mono {
                "at " (file) @if let Some(line) = f.line { ":" (line) }
            }
        }
    }
}

/// A site's cell: its telling frame, and its whole stack folded.
fn site_where(frames: &[Frame]) -> Markup {
    html! {
        (frame_where(frames))
        @if frames.len() > 1 {
            details {
                summary { "stack (" (frames.len()) " frames)" }
                ol.stack {
                    @for f in frames { li { (frame_line(f)) } }
                }
            }
        }
    }
}

fn frame_where(frames: &[Frame]) -> Markup {
    match frames.iter().find(|f| !is_library(f)).or(frames.first()) {
        Some(f) => frame_line(f),
        None => html! { span.note { "(no frame)" } },
    }
}

/// The `height` of the first `<svg` element of `svg`, in pixels.
fn svg_height(svg: &str) -> Option<u32> {
    let tag = &svg[svg.find("<svg")?..];
    let tag = &tag[..tag.find('>')?];
    let at = tag.find(" height=\"")? + " height=\"".len();
    let rest = &tag[at..];
    rest[..rest.find('"')?].parse().ok()
}

fn seconds(t: f64) -> String {
    format!("{t:.3} s")
}

fn lifetime(i: &InstanceStats, last_time: Option<f64>) -> String {
    match (i.death, last_time) {
        (Some(d), _) => seconds((d - i.birth).max(0.0)),
        (None, Some(now)) if now >= i.birth => format!("{} so far", seconds(now - i.birth)),
        (None, _) => "-".to_owned(),
    }
}

fn share(part: u64, total: u64) -> String {
    if total == 0 {
        "-".to_owned()
    } else {
        format!("{:.1}%", part as f64 * 100.0 / total as f64)
    }
}

fn average(bytes: u64, blocks: u64) -> u64 {
    if blocks == 0 {
        0
    } else {
        (bytes as f64 / blocks as f64).round() as u64
    }
}

fn signed_bytes(change: i64) -> String {
    let sign = if change < 0 { "-" } else { "+" };
    format!("{sign}{}", format_bytes(change.unsigned_abs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svg_height_reads_the_first_svg_tag() {
        assert_eq!(
            svg_height(
                r#"<?xml version="1.0"?><svg version="1.1" width="1200" height="342" x="1">"#
            ),
            Some(342)
        );
        assert_eq!(svg_height("<svg width=\"3\">"), None);
        assert_eq!(svg_height("no svg"), None);
    }

    #[test]
    fn sites_are_named_by_their_first_frame_outside_the_standard_library() {
        let frame = |name: &str| Frame {
            function: name.to_owned(),
            file: Some("src/main.rs".to_owned()),
            line: Some(3),
            inlined: false,
        };
        let mut from_elem = frame("<u8 as alloc::vec::spec_from_elem::SpecFromElem>::from_elem");
        from_elem.file = Some("/rustc/0123abcd/library/alloc/src/vec/spec_from_elem.rs".to_owned());
        let frames = [
            frame("alloc::raw_vec::RawVec<T>::grow"),
            frame("<alloc::vec::Vec<T> as core::clone::Clone>::clone"),
            frame("classtrack_shim::sampling::on_countdown"),
            from_elem,
            frame("app::load"),
        ];
        let shown = frame_where(&frames).into_string();
        assert!(shown.contains("app::load"), "{shown}");
        assert!(shown.contains("src/main.rs:3"), "{shown}");
    }
}
