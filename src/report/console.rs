//! The per-class table printed for a snapshot.

use std::io::{self, Write};

use super::format_bytes;
use crate::snapshot::{ClassTotals, Snapshot};

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
    let rows: Vec<&ClassTotals> = users
        .into_iter()
        .chain([snap.untracked(), snap.tracker_class()])
        .collect();
    let width = rows
        .iter()
        .map(|c| c.name.chars().count())
        .chain([5])
        .max()
        .unwrap_or(5);
    let total = snap.allocator.live_bytes;
    writeln!(out, "snapshot {:?} at {:.3} s", snap.description, snap.time)?;
    writeln!(
        out,
        "{:<width$}  {:>12}  {:>12}  {:>10}  {:>6}",
        "class", "live blocks", "live bytes", "average", "share"
    )?;
    for c in &rows {
        writeln!(
            out,
            "{:<width$}  {:>12}  {:>12}  {:>10}  {:>6}",
            c.name,
            c.live_blocks,
            format_bytes(c.live_bytes),
            format_bytes(c.average_bytes().round() as u64),
            share(c.live_bytes, total)
        )?;
    }
    let all = &snap.allocator;
    let average = if all.live_blocks == 0 {
        0
    } else {
        (all.live_bytes as f64 / all.live_blocks as f64).round() as u64
    };
    writeln!(
        out,
        "{:<width$}  {:>12}  {:>12}  {:>10}  {:>6}",
        "total",
        all.live_blocks,
        format_bytes(all.live_bytes),
        format_bytes(average),
        share(total, total)
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
