//! Reports: human-readable output of snapshots.
//!
//! The console tables are always built; the HTML report needs the `html` feature, pprof
//! profiles the `pprof` feature, and flamegraphs either of them (both are on by default).

pub(crate) mod console;
#[cfg(any(feature = "html", feature = "pprof"))]
mod flame;
#[cfg(feature = "html")]
mod html;
#[cfg(feature = "pprof")]
#[cfg_attr(docsrs, doc(cfg(feature = "pprof")))]
pub mod pprof;

#[cfg(any(feature = "html", feature = "pprof"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "html", feature = "pprof"))))]
pub use flame::Measure;

#[cfg(any(feature = "html", feature = "pprof"))]
impl crate::Snapshot {
    /// The name of class `id` for reports (`class N` if it had not allocated by then).
    pub(crate) fn class_label(&self, id: crate::ClassId) -> String {
        self.classes
            .iter()
            .find(|c| c.id == id)
            .map_or_else(|| format!("class {}", id.0), |c| c.name.to_string())
    }
}

/// Formats a byte count with binary units: `512 B`, `1.5 KiB`, `12.0 MiB`, `3.25 GiB`.
///
/// ```
/// assert_eq!(classtrack::report::format_bytes(512), "512 B");
/// assert_eq!(classtrack::report::format_bytes(1536), "1.5 KiB");
/// assert_eq!(classtrack::report::format_bytes(3 << 20), "3.0 MiB");
/// ```
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit >= 2 && value < 10.0 {
        format!("{value:.2} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Formats a sampled estimate with what it rests on: `650.0 KiB ±50% (4 samples)`; the bound
/// is one relative standard error, about `1/√samples`.
///
/// ```
/// assert_eq!(classtrack::report::format_estimate(665_600.0, 4), "650.0 KiB ±50% (4 samples)");
/// assert_eq!(classtrack::report::format_estimate(0.0, 0), "0 B (no sample)");
/// assert_eq!(classtrack::report::format_estimate(2048.0, 1), "2.0 KiB ±100% (1 sample)");
/// ```
pub fn format_estimate(bytes: f64, samples: u64) -> String {
    format_site_estimate(bytes, samples, false)
}

/// As [`format_estimate`], or the figure alone, said to be exact, for a site whose blocks were
/// all traced (`exact`: each stands for itself).
pub(crate) fn format_site_estimate(bytes: f64, samples: u64, exact: bool) -> String {
    if exact {
        return format!("{} (exact)", format_bytes(bytes.max(0.0).round() as u64));
    }
    let value = format_bytes(bytes.max(0.0).round() as u64);
    match samples {
        0 => format!("{value} (no sample)"),
        1 => format!("{value} ±100% (1 sample)"),
        n => format!(
            "{value} ±{:.0}% ({n} samples)",
            crate::sampling::relative_error(n) * 100.0
        ),
    }
}
