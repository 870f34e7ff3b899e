//! The console tables: a snapshot's per-class table, the stats' summaries, instances and
//! leak suspects, and snapshot diffs.

use std::io::{self, Write};

use classtrack_shim::ClassId;

use super::format_bytes;
use crate::diff::{merge_same_stacks, SnapshotDiff};
use crate::objects::Referent;
use crate::sampling::{is_machinery, is_std, Frame};
use crate::snapshot::{ClassTotals, Snapshot, NOT_INSTALLED};
use crate::stats::{Breakdown, SnapshotStats, Stats};

fn share(part: u64, total: u64) -> String {
    if total == 0 {
        "-".to_owned()
    } else {
        format!("{:.1}%", part as f64 * 100.0 / total as f64)
    }
}

/// User classes a snapshot's table lists, the largest; the others are one row, summed.
pub(crate) const TABLE_ROWS: usize = 100;

pub(crate) fn write_table(snap: &Snapshot, out: &mut dyn Write) -> io::Result<()> {
    let mut users: Vec<&ClassTotals> = snap.user_classes().collect();
    let largest =
        |a: &&ClassTotals, b: &&ClassTotals| b.live_bytes.cmp(&a.live_bytes).then(a.id.cmp(&b.id));
    // The largest rows only are sorted: a snapshot may have a million classes.
    let mut rest = crate::stats::OmittedClasses::default();
    if users.len() > TABLE_ROWS {
        users.select_nth_unstable_by(TABLE_ROWS - 1, largest);
        for c in &users[TABLE_ROWS..] {
            rest.add(c);
        }
        users.truncate(TABLE_ROWS);
    }
    users.sort_by(largest);
    let heap: Vec<&ClassTotals> = users.into_iter().chain([snap.untracked()]).collect();
    let mut more = rest;
    more.merge(&snap.omitted);
    const USER_HEAP: &str = "user heap";
    let width = heap
        .iter()
        .chain([&snap.tracker_class()])
        .map(|c| c.name.chars().count())
        .chain([USER_HEAP.len(), if more.classes > 0 { 32 } else { 0 }])
        .max()
        .unwrap_or(5);
    let user_total = snap.user_live_bytes();
    writeln!(out, "snapshot {:?} at {:.3} s", snap.description, snap.time)?;
    if !snap.allocator_installed {
        writeln!(out, "{NOT_INSTALLED}")?;
    }
    if let Some(hint) = snap.hint {
        writeln!(out, "{hint}")?;
    }
    let line = |out: &mut dyn Write, cells: [&str; 8]| {
        writeln!(
            out,
            "{:<width$}  {:>12}  {:>12}  {:>10}  {:>6}  {:>12}  {:>12}  {:>12}",
            cells[0], cells[1], cells[2], cells[3], cells[4], cells[5], cells[6], cells[7]
        )
    };
    line(
        out,
        [
            "class",
            "live blocks",
            "live bytes",
            "average",
            "share",
            "peak seen",
            "allocated",
            "allocations",
        ],
    )?;
    let row = |out: &mut dyn Write, c: &ClassTotals, share_of: Option<u64>| {
        line(
            out,
            [
                &c.name,
                &c.live_blocks.to_string(),
                &format_bytes(c.live_bytes),
                &format_bytes(c.average_bytes().round() as u64),
                &share_of.map_or_else(|| "-".to_owned(), |t| share(c.live_bytes, t)),
                &format_bytes(c.peak_seen_bytes),
                &format_bytes(c.allocated_bytes),
                &c.allocations.to_string(),
            ],
        )
    };
    for c in &heap {
        row(out, c, Some(user_total))?;
    }
    if more.classes > 0 {
        let idle = if more.idle > 0 {
            format!(", {} idle", more.idle)
        } else {
            String::new()
        };
        line(
            out,
            [
                &format!("{} more classes{idle}", more.classes),
                &more.live_blocks.to_string(),
                &format_bytes(more.live_bytes),
                &format_bytes(if more.live_blocks == 0 {
                    0
                } else {
                    (more.live_bytes as f64 / more.live_blocks as f64).round() as u64
                }),
                &share(more.live_bytes, user_total),
                "",
                &format_bytes(more.allocated_bytes),
                &more.allocations.to_string(),
            ],
        )?;
    }
    let sum = |f: fn(&ClassTotals) -> u64| heap.iter().map(|c| f(c)).sum::<u64>();
    let blocks = sum(|c| c.live_blocks) + more.live_blocks;
    let average = |bytes: u64, blocks: u64| {
        if blocks == 0 {
            0
        } else {
            (bytes as f64 / blocks as f64).round() as u64
        }
    };
    line(
        out,
        [
            USER_HEAP,
            &blocks.to_string(),
            &format_bytes(user_total),
            &format_bytes(average(user_total, blocks)),
            &share(user_total, user_total),
            "",
            &format_bytes(sum(|c| c.allocated_bytes) + more.allocated_bytes),
            &(sum(|c| c.allocations) + more.allocations).to_string(),
        ],
    )?;
    row(out, snap.tracker_class(), None)?;
    let all = &snap.allocator;
    line(
        out,
        [
            "total",
            &all.live_blocks.to_string(),
            &format_bytes(all.live_bytes),
            &format_bytes(average(all.live_bytes, all.live_blocks)),
            "-",
            "",
            &format_bytes(all.allocated_bytes),
            &all.allocations.to_string(),
        ],
    )?;
    match snap.process {
        Some(p) => writeln!(
            out,
            "process: resident {}, virtual {}",
            format_bytes(p.resident_bytes),
            format_bytes(p.virtual_bytes)
        )?,
        None => writeln!(out, "process: memory not reported on this platform")?,
    }
    let o = &snap.overhead;
    writeln!(
        out,
        "tracking overhead: {} (tracker {}, block tags {}, counter shards {})",
        format_bytes(o.total_bytes()),
        format_bytes(o.tracker_bytes),
        format_bytes(o.metadata_bytes),
        format_bytes(o.shard_bytes)
    )?;
    let s = &snap.sampling;
    if s.mean_bytes == 0 {
        writeln!(
            out,
            "sampling: off ({} samples taken, {} dropped)",
            s.sent, s.dropped
        )
    } else {
        writeln!(
            out,
            "sampling: one stack per {} allocated ({} samples taken, {} dropped)",
            format_bytes(s.mean_bytes),
            s.sent,
            s.dropped
        )
    }
}

fn signed_bytes(change: i64) -> String {
    let sign = if change < 0 { "-" } else { "+" };
    format!("{sign}{}", format_bytes(change.unsigned_abs()))
}

pub(crate) fn write_diff(diff: &SnapshotDiff, out: &mut dyn Write) -> io::Result<()> {
    let mut rows: Vec<_> = diff.classes.iter().filter(|c| c.changed()).collect();
    // The largest growths and shrinkages; those between are one line, summed.
    let mut between = None;
    if rows.len() > TABLE_ROWS {
        let half = TABLE_ROWS / 2;
        let middle: Vec<_> = rows.drain(half..rows.len() - half).collect();
        let change: i64 = middle.iter().map(|c| c.live_bytes_change).sum();
        between = Some((half, middle.len(), change));
    }
    let width = rows
        .iter()
        .map(|c| c.name.chars().count() + if c.new { " (new)".len() } else { 0 })
        .chain([5])
        .max()
        .unwrap_or(5);
    writeln!(
        out,
        "from {:?} at {:.3} s to {:?} at {:.3} s ({:.3} s)",
        diff.from_description,
        diff.from_time,
        diff.to_description,
        diff.to_time,
        diff.seconds()
    )?;
    writeln!(
        out,
        "{:<width$}  {:>12}  {:>12}  {:>12}  {:>12}  {:>12}  {:>12}  {:>12}",
        "class",
        "live bytes",
        "live blocks",
        "live now",
        "allocated",
        "allocations",
        "freed",
        "frees"
    )?;
    for (i, c) in rows.iter().enumerate() {
        if let Some((_, n, change)) = between.filter(|b| b.0 == i) {
            writeln!(
                out,
                "... {n} more classes changed, by {} in all",
                signed_bytes(change)
            )?;
        }
        let name = if c.new {
            format!("{} (new)", c.name)
        } else {
            c.name.to_string()
        };
        writeln!(
            out,
            "{:<width$}  {:>12}  {:>12}  {:>12}  {:>12}  {:>12}  {:>12}  {:>12}",
            name,
            signed_bytes(c.live_bytes_change),
            format!("{:+}", c.live_blocks_change),
            format_bytes(c.live_bytes),
            format_bytes(c.allocated_bytes),
            c.allocations,
            format_bytes(c.freed_bytes),
            c.frees
        )?;
    }
    if rows.is_empty() {
        writeln!(out, "(no class changed)")?;
    }
    if diff.unknown > 0 {
        writeln!(
            out,
            "{} classes not compared: the earlier snapshot left them out (a summary, or a \
             recent snapshot that keeps the largest and the changed classes only)",
            diff.unknown
        )?;
    }
    writeln!(
        out,
        "allocator: {} live",
        signed_bytes(diff.live_bytes_change)
    )
}

/// [`Stats::print_classes`].
pub(crate) fn write_classes(
    stats: &Stats,
    filter: &str,
    limit: Option<usize>,
    out: &mut dyn Write,
) -> io::Result<()> {
    let Some(last) = stats.snapshots.last() else {
        return writeln!(out, "no snapshot: take one with create_snapshot");
    };
    let mut found: Vec<&ClassTotals> = last
        .classes
        .iter()
        .filter(|c| c.name.contains(filter))
        .collect();
    found.sort_by(|a, b| b.live_bytes.cmp(&a.live_bytes).then(a.id.cmp(&b.id)));
    let shown = found.len().min(limit.unwrap_or(usize::MAX));
    let width = found[..shown]
        .iter()
        .map(|c| c.name.chars().count())
        .chain([5])
        .max()
        .unwrap_or(5);
    writeln!(
        out,
        "classes whose name contains {filter:?} at snapshot {:?} ({:.3} s): {}",
        last.description,
        last.time,
        found.len()
    )?;
    if shown > 0 {
        writeln!(
            out,
            "{:<width$}  {:>12}  {:>12}  {:>12}  {:>12}  {:>12}",
            "class", "live bytes", "live blocks", "peak seen", "allocated", "allocations"
        )?;
    }
    for c in &found[..shown] {
        writeln!(
            out,
            "{:<width$}  {:>12}  {:>12}  {:>12}  {:>12}  {:>12}",
            c.name,
            format_bytes(c.live_bytes),
            c.live_blocks,
            format_bytes(c.peak_seen_bytes),
            format_bytes(c.allocated_bytes),
            c.allocations
        )?;
    }
    if shown < found.len() {
        let rest: u64 = found[shown..].iter().map(|c| c.live_bytes).sum();
        writeln!(
            out,
            "... {} more, {} live in all",
            found.len() - shown,
            format_bytes(rest)
        )?;
    }
    if !last.full {
        writeln!(
            out,
            "(the snapshot left {} classes out{}: a class among them is not listed)",
            last.omitted.classes,
            if last.omitted.idle > 0 {
                format!(", {} of them idle", last.omitted.idle)
            } else {
                String::new()
            }
        )?;
    }
    Ok(())
}

/// One row of a snapshot's largest classes in the heap summary.
struct SummaryRow {
    name: String,
    live_bytes: u64,
    live_blocks: u64,
    change: String,
}

/// The heap summary of `stats` ([`Stats::print_heap_summary`]).
pub(crate) fn write_heap_summary(stats: &Stats, top: usize, out: &mut dyn Write) -> io::Result<()> {
    writeln!(out, "---- HEAP SUMMARY {}", "-".repeat(61))?;
    let snaps = &stats.snapshots;
    let (Some(first), Some(last)) = (snaps.first(), snaps.last()) else {
        writeln!(out, "no snapshot")?;
        return writeln!(out, "{}", "-".repeat(79));
    };
    let plural = |n: usize, one: &str, many: &str| {
        if n == 1 {
            format!("{n} {one}")
        } else {
            format!("{n} {many}")
        }
    };
    writeln!(
        out,
        "{} from {:.3} s to {:.3} s; {}, {} kept",
        plural(snaps.len(), "snapshot", "snapshots"),
        first.time,
        last.time,
        plural(stats.classes.len(), "tracked class", "tracked classes"),
        plural(stats.instances.len(), "instance", "instances"),
    )?;
    if snaps.iter().all(|s| !s.allocator_installed) {
        writeln!(out, "{NOT_INSTALLED}")?;
    }
    let mut previous: Option<&SnapshotStats> = None;
    let mut unknown_change = false;
    for (index, s) in snaps.iter().enumerate() {
        let resident = s.process.map_or_else(String::new, |p| {
            format!(", {} resident", format_bytes(p.resident_bytes))
        });
        let user_bytes = s.user_live_bytes();
        writeln!(
            out,
            "{index}: {:?} at {:.3} s: {} live in the program's heap, {} classtrack's own{resident}",
            s.description,
            s.time,
            format_bytes(user_bytes),
            format_bytes(s.overhead.tracker_bytes),
        )?;
        unknown_change |= write_top_classes(s, previous, top, out)?;
        if !s.tracked.is_empty() {
            let tracked: Vec<String> = s
                .tracked
                .iter()
                .map(|t| {
                    format!(
                        "{} {} alive, {}",
                        t.name,
                        t.active,
                        format_bytes(t.total_bytes)
                    )
                })
                .collect();
            writeln!(out, "  tracked: {}", tracked.join("; "))?;
        }
        previous = Some(s);
    }
    if unknown_change {
        writeln!(
            out,
            "(change ?: the snapshot before is a summary that left the class out)"
        )?;
    }
    writeln!(out, "{}", "-".repeat(79))
}

/// The `top` largest classes of the program's heap at `s` (`<untracked>` among them, not
/// classtrack's own), each with its change since `previous`, and the rest summed. Returns
/// whether a change was unknown (`?`).
fn write_top_classes(
    s: &SnapshotStats,
    previous: Option<&SnapshotStats>,
    top: usize,
    out: &mut dyn Write,
) -> io::Result<bool> {
    if s.classes.is_empty() {
        writeln!(
            out,
            "  (no per-class totals: a snapshot from a version 1 stats file)"
        )?;
        return Ok(false);
    }
    let mut heap: Vec<&ClassTotals> = s
        .classes
        .iter()
        .filter(|c| c.id != ClassId::OVERHEAD)
        .collect();
    heap.sort_by(|a, b| b.live_bytes.cmp(&a.live_bytes).then(a.id.cmp(&b.id)));
    let change = |c: &ClassTotals| -> String {
        let Some(p) = previous else {
            return String::new();
        };
        let change = match p.class_named(&c.name) {
            Some(before) => c.live_bytes as i64 - before.live_bytes as i64,
            // Absent from a full snapshot, or not yet allocating at a summary's: new since.
            None if p.absent_means_new(c.id) => return "new".to_owned(),
            // A summary that left it out, or a snapshot without per-class totals.
            None => return "?".to_owned(),
        };
        if change == 0 {
            "0 B".to_owned()
        } else {
            signed_bytes(change)
        }
    };
    // Classes with nothing live are left out, unless they just dropped to nothing.
    let telling = |c: &&ClassTotals| {
        c.live_bytes > 0
            || previous
                .and_then(|p| p.class_named(&c.name))
                .is_some_and(|before| before.live_bytes > 0)
    };
    heap.retain(telling);
    let mut rows: Vec<SummaryRow> = heap
        .iter()
        .take(top)
        .map(|c| SummaryRow {
            name: c.name.to_string(),
            live_bytes: c.live_bytes,
            live_blocks: c.live_blocks,
            change: change(c),
        })
        .collect();
    let rest = &heap[rows.len()..];
    let more = rest.len() as u64 + s.omitted.classes;
    if more > 0 {
        rows.push(SummaryRow {
            name: format!("{more} more class{}", if more == 1 { "" } else { "es" }),
            live_bytes: rest.iter().map(|c| c.live_bytes).sum::<u64>() + s.omitted.live_bytes,
            live_blocks: rest.iter().map(|c| c.live_blocks).sum::<u64>() + s.omitted.live_blocks,
            change: String::new(),
        });
    }
    let width = rows
        .iter()
        .map(|r| r.name.chars().count())
        .chain([5])
        .max()
        .unwrap_or(5);
    let user_bytes = s.user_live_bytes();
    let line = |out: &mut dyn Write, cells: [&str; 5]| {
        let text = format!(
            "  {:<width$}  {:>12}  {:>11}  {:>6}  {:>12}",
            cells[0], cells[1], cells[2], cells[3], cells[4]
        );
        writeln!(out, "{}", text.trim_end())
    };
    let change = if previous.is_some() { "change" } else { "" };
    line(out, ["class", "live bytes", "live blocks", "share", change])?;
    for r in &rows {
        line(
            out,
            [
                &r.name,
                &format_bytes(r.live_bytes),
                &r.live_blocks.to_string(),
                &share(r.live_bytes, user_bytes),
                &r.change,
            ],
        )?;
    }
    Ok(rows.iter().any(|r| r.change == "?"))
}

/// The frame that names a site best: the innermost one that is neither the standard
/// library's nor classtrack's (the innermost of all when there is none).
pub(crate) fn telling_frame(frames: &[Frame]) -> Option<&Frame> {
    frames
        .iter()
        .find(|f| !is_std(f) && !is_machinery(&f.function))
        .or(frames.first())
}

/// One site's line: its estimate of live bytes and its telling frame.
fn write_live_site(
    out: &mut dyn Write,
    frames: &[Frame],
    estimate: &crate::sampling::Estimate,
) -> io::Result<()> {
    let at = telling_frame(frames).map_or_else(|| "?".to_owned(), frame_line);
    writeln!(
        out,
        "    {}  {at}",
        super::format_site_estimate(estimate.live_bytes, estimate.live_samples, estimate.exact)
    )
}

/// `function (file:line)`, or the function alone without debug info.
fn frame_line(f: &Frame) -> String {
    match (&f.file, f.line) {
        (Some(file), Some(line)) => format!("{} ({file}:{line})", f.function),
        (Some(file), None) => format!("{} ({file})", f.function),
        _ => f.function.clone(),
    }
}

/// The leak suspects of `stats`'s last `intervals` intervals
/// ([`Stats::print_leak_suspects`]).
pub(crate) fn write_leak_suspects(
    stats: &Stats,
    intervals: usize,
    sites: usize,
    out: &mut dyn Write,
) -> io::Result<()> {
    let snaps = &stats.snapshots;
    if intervals == 0 {
        return writeln!(
            out,
            "no leak suspect: 0 intervals asked for; ask for 1 or more (a suspect grew in more \
             than half of the last intervals between snapshots)"
        );
    }
    if snaps.len() < 2 {
        return writeln!(
            out,
            "no leak suspect: {} snapshot(s) and {intervals} interval(s) asked for; suspects are \
             found between at least two snapshots",
            snaps.len()
        );
    }
    let from = snaps.len().saturating_sub(intervals + 1);
    let looked_at = snaps.len() - 1 - from;
    let (first, last) = (&snaps[from], &snaps[snaps.len() - 1]);
    writeln!(
        out,
        "classes whose live bytes grew in more than half of the last {looked_at} intervals,\n\
         from snapshot {from} ({:?}) at {:.3} s to snapshot {} ({:?}) at {:.3} s, fastest first:",
        first.description,
        first.time,
        snaps.len() - 1,
        last.description,
        last.time
    )?;
    let window = &snaps[from..];
    if window.iter().any(|s| s.classes.is_empty()) {
        writeln!(
            out,
            "note: some of these snapshots keep no per-class totals (a version 1 stats file): \
             their classes count as having nothing live"
        )?;
    } else if window.iter().any(|s| s.omitted.classes > 0) {
        writeln!(
            out,
            "note: some of these snapshots are summaries that keep only their largest classes: \
             a class one left out counts as having nothing live there"
        )?;
    }
    // Sites whose stacks read the same (an unrolled loop's call sites, say) are shown as
    // one: ask for more, merge, then keep `sites`.
    let suspects = stats.leak_suspects(intervals, sites.saturating_mul(4));
    if suspects.is_empty() {
        return writeln!(out, "(none)");
    }
    for s in &suspects {
        writeln!(
            out,
            "{}: grew in {} of {} intervals, {} ({}/s), {} live now",
            s.name,
            s.grew_in,
            s.intervals,
            signed_bytes(s.growth_bytes),
            format_bytes(s.bytes_per_second.max(0.0).round() as u64),
            format_bytes(s.live_bytes)
        )?;
        if s.top_sites.is_empty() {
            let why = if last.sampling.mean_bytes == 0 {
                "sampling was off".to_owned()
            } else if !last.full {
                "the last snapshot keeps no site".to_owned()
            } else {
                format!(
                    "none of its live blocks was sampled, at one stack per {} allocated",
                    format_bytes(last.sampling.mean_bytes)
                )
            };
            writeln!(out, "    (no allocation site: {why})")?;
        }
        for site in merge_same_stacks(&s.top_sites).iter().take(sites) {
            write_live_site(out, &site.frames, &site.estimate)?;
        }
    }
    Ok(())
}

/// [`Stats::print_peak`]: the heap at its peak, its largest classes and their top sites.
pub(crate) fn write_peak(
    stats: &Stats,
    top: usize,
    sites: usize,
    out: &mut dyn Write,
) -> io::Result<()> {
    writeln!(out, "---- AT THE PEAK {}", "-".repeat(62))?;
    let Some(peak) = &stats.peak else {
        writeln!(
            out,
            "no peak recorded: the stats come from a file of version 2 or older, or from a \
             tracker that had recorded none"
        )?;
        return writeln!(out, "{}", "-".repeat(79));
    };
    let user_classes: u64 =
        peak.user_classes().map(|c| c.live_bytes).sum::<u64>() + peak.omitted.live_bytes;
    let resident = peak.process.map_or_else(String::new, |p| {
        format!(", {} resident", format_bytes(p.resident_bytes))
    });
    writeln!(
        out,
        "the user's classes peaked at {} live, at {:.3} s ({} in the program's heap with \
         <untracked>, {} classtrack's own{resident})",
        format_bytes(user_classes),
        peak.time,
        format_bytes(peak.user_live_bytes()),
        format_bytes(peak.overhead.tracker_bytes),
    )?;
    write_top_classes(peak, None, top, out)?;
    let mut classes: Vec<&ClassTotals> = peak.user_classes().filter(|c| c.live_bytes > 0).collect();
    classes.sort_by(|a, b| b.live_bytes.cmp(&a.live_bytes).then(a.id.cmp(&b.id)));
    if sites > 0 && !classes.is_empty() {
        writeln!(
            out,
            "where they allocated (sampled estimates of live bytes):"
        )?;
        if peak.sampling.mean_bytes == 0 {
            writeln!(out, "  (no allocation site: sampling was off)")?;
        }
    }
    for c in classes.iter().take(top) {
        let found: Vec<_> = peak
            .sites_of(&c.name)
            .into_iter()
            .filter(|s| s.estimate.live_bytes > 0.0)
            .take(sites)
            .collect();
        if found.is_empty() {
            continue;
        }
        writeln!(out, "  {}:", c.name)?;
        for site in found {
            write_live_site(out, stats.frames(site), &site.estimate)?;
        }
    }
    writeln!(out, "{}", "-".repeat(79))
}

/// [`Stats::print_summary`]: each snapshot's tracked classes.
pub(crate) fn write_summary(stats: &Stats, out: &mut dyn Write) -> io::Result<()> {
    writeln!(out, "---- SUMMARY {}", "-".repeat(66))?;
    if !stats.snapshots.is_empty() && stats.snapshots.iter().all(|s| !s.allocator_installed) {
        writeln!(out, "{}", crate::snapshot::NOT_INSTALLED)?;
    }
    for s in &stats.snapshots {
        let resident = s.process.map_or_else(String::new, |p| {
            format!(", {} resident", format_bytes(p.resident_bytes))
        });
        let user_bytes = s.user_live_bytes();
        writeln!(
            out,
            "{:?} at {:.3} s: {} live in the program's heap, {} classtrack's own{resident}",
            s.description,
            s.time,
            format_bytes(user_bytes),
            format_bytes(s.overhead.tracker_bytes)
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

/// [`Stats::print_stats`]: the instances, their sizes and construction traces.
pub(crate) fn write_instances(
    stats: &Stats,
    filter: Option<&str>,
    limit: Option<usize>,
    out: &mut dyn Write,
) -> io::Result<()> {
    writeln!(out, "---- INSTANCES {}", "-".repeat(64))?;
    if stats.instances.is_empty() {
        writeln!(
            out,
            "no tracked instance: per-instance figures are kept for tracked classes only.\n\
             Track a class with `tracker.track_class::<T>(TrackOptions::new())` and build its \
             instances with\n`tracker.construct(|| T::new())` (or `track_object`); per-class \
             totals need none of it\n(`classtrack summary DUMP`)."
        )?;
    }
    let shown = stats
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
        match i.breakdown {
            Breakdown::Traversal => {
                writeln!(
                    out,
                    "  sizes by traversal: the bytes reachable from it (inline and owned)"
                )?;
                // Beside it, what the allocator charged to its class's scope.
                let scoped = stats
                    .snapshots
                    .last()
                    .and_then(|s| s.classes.iter().find(|c| *c.name == *i.class));
                match scoped {
                    Some(c) => writeln!(
                        out,
                        "  its class: {} live allocated in its scope at the last snapshot",
                        format_bytes(c.live_bytes)
                    )?,
                    None => writeln!(
                        out,
                        "  its class: nothing allocated in its scope at the last snapshot"
                    )?,
                }
            }
            Breakdown::Unavailable { level } => writeln!(
                out,
                "  no breakdown (resolution level {level} asked): tracked by handle, sized by \
                 its own bytes;\n  for a breakdown, implement classtrack::Footprint for its \
                 type and use track_object_footprint"
            )?,
            _ => {}
        }
        if !i.referents.is_empty() {
            match i.breakdown {
                Breakdown::Traversal => writeln!(
                    out,
                    "  referents at the last snapshot, by traversal (its parts):"
                )?,
                _ => writeln!(out, "  referents at the last snapshot:")?,
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::SiteSummary;
    use crate::Estimate;

    fn site(function: &str, live_bytes: f64, live_samples: u64) -> SiteSummary {
        SiteSummary {
            frames: vec![Frame {
                function: function.to_owned(),
                file: None,
                line: None,
                inlined: false,
            }],
            estimate: Estimate {
                live_bytes,
                live_blocks: live_samples as f64,
                allocated_bytes: live_bytes,
                allocations: live_samples as f64,
                samples: live_samples,
                live_samples,
                exact: false,
            },
        }
    }

    #[test]
    fn sites_whose_stacks_read_the_same_are_merged() {
        let merged = merge_same_stacks(&[
            site("app::small", 300.0, 1),
            site("app::unrolled", 200.0, 1),
            site("app::unrolled", 200.0, 2),
        ]);
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].frames[0].function, "app::unrolled");
        assert_eq!(
            (
                merged[0].estimate.live_bytes,
                merged[0].estimate.live_samples
            ),
            (400.0, 3)
        );
        assert_eq!(
            (
                merged[1].estimate.live_bytes,
                merged[1].estimate.live_samples
            ),
            (300.0, 1)
        );
    }
}
