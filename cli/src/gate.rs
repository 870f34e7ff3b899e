//! Memory gates for a CI pipeline: `classtrack check` (limits at one snapshot) and
//! `classtrack diff --fail-on-growth` (growth between two). Each breach is one line; the
//! command then exits with status 1.

use classtrack::report::format_bytes;
use classtrack::{ClassId, SnapshotDiff, SnapshotStats, Stats};

/// A size on the command line: a number with an optional unit. `B`, `KB`, `MB`, `GB` and `TB`
/// are powers of 1000; `KiB`, `MiB`, `GiB` and `TiB` (and the short `K`, `M`, `G`, `T`) powers
/// of 1024. Case and a space between number and unit do not matter: `24MB`, `1.5 GiB`,
/// `512k`, `100000`.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number.replace('_', "").parse().map_err(|_| {
        format!("{text:?} is not a size: give a number with an optional unit (24MB, 1.5GiB, 512k)")
    })?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tib" => 1024.0f64.powi(4),
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?}; use B, KB, MB, GB (powers of 1000) or KiB, \
                 MiB, GiB (powers of 1024)"
            ))
        }
    };
    let bytes = number * scale;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("{text:?} is too large a size"));
    }
    Ok(bytes.round() as u64)
}

/// `CLASS=SIZE`: a class's limit of live bytes.
#[derive(Clone, Debug)]
pub(crate) struct Limit {
    pub(crate) class: String,
    pub(crate) bytes: u64,
}

impl std::str::FromStr for Limit {
    type Err = String;

    fn from_str(s: &str) -> Result<Limit, String> {
        // The last `=`: a type's name can hold one (`dyn Iterator<Item = u8>`), a size cannot.
        let (class, size) = s
            .rsplit_once('=')
            .ok_or_else(|| format!("{s:?}: give CLASS=SIZE, as in myapp::Cache=64MiB"))?;
        if class.is_empty() {
            return Err(format!("{s:?}: the class name is empty"));
        }
        Ok(Limit {
            class: class.to_owned(),
            bytes: parse_size(size)?,
        })
    }
}

/// What a gate found: breaches (one line each), and what it could not check.
#[derive(Default)]
pub(crate) struct Verdict {
    pub(crate) breaches: Vec<String>,
    pub(crate) unchecked: Vec<String>,
    pub(crate) passed: Vec<String>,
}

/// The id any snapshot of `stats` gives class `name`, if it ever allocated there.
fn id_in_dump(stats: &Stats, name: &str) -> Option<ClassId> {
    stats
        .snapshots
        .iter()
        .rev()
        .find_map(|s| s.class_named(name).map(|c| c.id))
}

/// Checks the limits at `snap` (snapshot `index` of `stats`). A class the dump never saw
/// is an error (a misspelt name must not pass a gate): `Err` with the message.
pub(crate) fn check(
    stats: &Stats,
    index: usize,
    snap: &SnapshotStats,
    limits: &[Limit],
    max_total: Option<u64>,
) -> Result<Verdict, String> {
    let mut v = Verdict::default();
    let at = format!("at snapshot {index} ({:?})", snap.description);
    for limit in limits {
        let live = match snap.class_named(&limit.class) {
            Some(c) => c.live_bytes,
            None => match id_in_dump(stats, &limit.class) {
                // It allocated at another snapshot, and had not yet at this one.
                Some(id) if snap.absent_means_new(id) => 0,
                Some(_) => {
                    v.unchecked.push(format!(
                        "{}: not checked: snapshot {index} is a summary that left it out (check \
                         a recent snapshot, which keeps every class)",
                        limit.class
                    ));
                    continue;
                }
                None => {
                    let mut names: Vec<&str> = snap.user_classes().map(|c| &*c.name).collect();
                    names.sort_unstable();
                    names.truncate(20);
                    return Err(format!(
                        "no class named {:?} in the dump: class names are exact (a type's full \
                         path, as in the summary); some classes it has: {}",
                        limit.class,
                        if names.is_empty() {
                            "none".to_owned()
                        } else {
                            names.join(", ")
                        }
                    ));
                }
            },
        };
        let line = format!(
            "{}: {} live {at}, limit {}",
            limit.class,
            format_bytes(live),
            format_bytes(limit.bytes)
        );
        if live > limit.bytes {
            v.breaches.push(format!(
                "{line}: over by {}",
                format_bytes(live - limit.bytes)
            ));
        } else {
            v.passed.push(line);
        }
    }
    if let Some(max) = max_total {
        let live = snap.user_live_bytes();
        let line = format!(
            "program heap: {} live {at}, limit {}",
            format_bytes(live),
            format_bytes(max)
        );
        if live > max {
            v.breaches
                .push(format!("{line}: over by {}", format_bytes(live - max)));
        } else {
            v.passed.push(line);
        }
    }
    Ok(v)
}

/// The classes (and the program's heap) that grew by more than `percent` percent from
/// `earlier` to `later`; classes below `ignore_below` live bytes at the later snapshot are not
/// checked, and classtrack's own class never is.
pub(crate) fn growth(
    earlier: &SnapshotStats,
    later: &SnapshotStats,
    diff: &SnapshotDiff,
    percent: f64,
    ignore_below: u64,
) -> Verdict {
    let mut v = Verdict::default();
    let grew_too_much = |before: u64, after: u64| {
        after > before && (before == 0 || (after - before) as f64 > before as f64 * percent / 100.0)
    };
    let describe = |before: u64, after: u64| {
        if before == 0 {
            format!("from nothing to {}", format_bytes(after))
        } else {
            format!(
                "+{:.1}% (from {} to {})",
                (after - before) as f64 / before as f64 * 100.0,
                format_bytes(before),
                format_bytes(after)
            )
        }
    };
    for c in &diff.classes {
        if c.id == ClassId::OVERHEAD || c.live_bytes < ignore_below || c.live_bytes_change <= 0 {
            continue;
        }
        if !c.new && earlier.class_named(&c.name).is_none() {
            v.unchecked.push(format!(
                "{}: not checked: the earlier snapshot is a summary that left it out",
                c.name
            ));
            continue;
        }
        let before = (c.live_bytes as i64 - c.live_bytes_change).max(0) as u64;
        if grew_too_much(before, c.live_bytes) {
            let new = if c.new { " (new class)" } else { "" };
            v.breaches.push(format!(
                "{}{new}: live bytes grew {}, more than {percent}%",
                c.name,
                describe(before, c.live_bytes)
            ));
        }
    }
    let (before, after) = (earlier.user_live_bytes(), later.user_live_bytes());
    if after >= ignore_below && grew_too_much(before, after) {
        v.breaches.push(format!(
            "program heap: grew {}, more than {percent}%",
            describe(before, after)
        ));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_decimal_and_binary_units() {
        assert_eq!(parse_size("100000"), Ok(100_000));
        assert_eq!(parse_size("24MB"), Ok(24_000_000));
        assert_eq!(parse_size("24 MB"), Ok(24_000_000));
        assert_eq!(parse_size("1.5GiB"), Ok(1_610_612_736));
        assert_eq!(parse_size("512k"), Ok(524_288));
        assert_eq!(parse_size("2mib"), Ok(2_097_152));
        assert_eq!(parse_size("10_000B"), Ok(10_000));
        assert!(parse_size("MB").unwrap_err().contains("is not a size"));
        assert!(parse_size("12 parsecs")
            .unwrap_err()
            .contains("unknown unit"));
        assert!(parse_size("1e30 TB").is_err());
    }

    #[test]
    fn limits_split_at_the_last_equals_sign() {
        let l: Limit = "dyn Iterator<Item = u8>=1KiB".parse().unwrap();
        assert_eq!(
            (l.class.as_str(), l.bytes),
            ("dyn Iterator<Item = u8>", 1024)
        );
        assert!("Cache".parse::<Limit>().unwrap_err().contains("CLASS=SIZE"));
        assert!("=1MB".parse::<Limit>().unwrap_err().contains("empty"));
    }
}
