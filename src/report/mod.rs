//! Reports: human-readable output of snapshots.

pub(crate) mod console;
mod flame;
pub(crate) mod json;
pub mod pprof;

pub use flame::Measure;

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
