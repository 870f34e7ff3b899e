//! The per-class table printed for a snapshot.

use std::io::{self, Write};

use super::format_bytes;
use crate::diff::SnapshotDiff;
use crate::snapshot::{ClassTotals, Snapshot, NOT_INSTALLED};

fn share(part: u64, total: u64) -> String {
    if total == 0 {
        "-".to_owned()
    } else {
        format!("{:.1}%", part as f64 * 100.0 / total as f64)
    }
}

pub(crate) fn write_table(snap: &Snapshot, out: &mut dyn Write) -> io::Result<()> {
    let mut users: Vec<&ClassTotals> = snap.user_classes().collect();
    users.sort_by(|a, b| b.live_bytes.cmp(&a.live_bytes).then(a.id.cmp(&b.id)));
    let heap: Vec<&ClassTotals> = users.into_iter().chain([snap.untracked()]).collect();
    const USER_HEAP: &str = "user heap";
    let width = heap
        .iter()
        .chain([&snap.tracker_class()])
        .map(|c| c.name.chars().count())
        .chain([USER_HEAP.len()])
        .max()
        .unwrap_or(5);
    let user_total = snap.user_live_bytes();
    writeln!(out, "snapshot {:?} at {:.3} s", snap.description, snap.time)?;
    if !snap.allocator_installed {
        writeln!(out, "{NOT_INSTALLED}")?;
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
    let sum = |f: fn(&ClassTotals) -> u64| heap.iter().map(|c| f(c)).sum::<u64>();
    let blocks = sum(|c| c.live_blocks);
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
            &format_bytes(sum(|c| c.allocated_bytes)),
            &sum(|c| c.allocations).to_string(),
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
    let rows: Vec<_> = diff.classes.iter().filter(|c| c.changed()).collect();
    let width = rows
        .iter()
        .map(|c| c.name.chars().count())
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
    for c in &rows {
        writeln!(
            out,
            "{:<width$}  {:>12}  {:>12}  {:>12}  {:>12}  {:>12}  {:>12}  {:>12}",
            c.name,
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
    writeln!(
        out,
        "allocator: {} live",
        signed_bytes(diff.live_bytes_change)
    )
}
