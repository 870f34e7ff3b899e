//! Folded stacks and flamegraphs of allocation sites (through the inferno crate).

use std::io::Write;

use crate::sampling::Site;
use crate::snapshot::Snapshot;

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
            Measure::LiveBytes => site.live_bytes,
            Measure::AllocatedBytes => site.allocated_bytes,
        }
    }
}

/// Makes a frame name safe for the folded format (`;` separates frames).
fn clean(name: &str) -> String {
    name.replace(';', ":")
}

impl Snapshot {
    /// The sampled sites as folded stacks, one line each: `class;outermost;...;innermost N`,
    /// where N is the measure in bytes (rounded). Lines with nothing to show are left out.
    pub fn folded_stacks(&self, measure: Measure) -> Vec<String> {
        let _g = classtrack_shim::OverheadGuard::new();
        let mut lines: Vec<String> = Vec::new();
        for site in self.sites.iter() {
            let value = measure.of(site).round() as u64;
            if value == 0 {
                continue;
            }
            let class = self.class_label(site.class);
            let mut line = clean(&class);
            for f in site.frames().iter().rev() {
                line.push(';');
                line.push_str(&clean(&f.function));
            }
            line.push(' ');
            line.push_str(&value.to_string());
            lines.push(line);
        }
        lines.sort();
        lines
    }

    /// Writes a flamegraph SVG of the sampled sites, one tower per class.
    pub fn write_flamegraph(&self, out: &mut dyn Write, measure: Measure) -> crate::Result<()> {
        let _g = classtrack_shim::OverheadGuard::new();
        let lines = self.folded_stacks(measure);
        let mut options = inferno::flamegraph::Options::default();
        options.title = format!(
            "{:?} — {}",
            self.description,
            match measure {
                Measure::LiveBytes => "live bytes by allocation site",
                Measure::AllocatedBytes => "allocated bytes by allocation site",
            }
        );
        options.count_name = "bytes".to_owned();
        if lines.is_empty() {
            // inferno refuses an empty input; say so in a valid, empty graph instead.
            let placeholder = ["no sampled allocation 1".to_owned()];
            return inferno::flamegraph::from_lines(
                &mut options,
                placeholder.iter().map(String::as_str),
                out,
            )
            .map_err(|e| crate::Error::Report(e.to_string()));
        }
        inferno::flamegraph::from_lines(&mut options, lines.iter().map(String::as_str), out)
            .map_err(|e| crate::Error::Report(e.to_string()))
    }
}
