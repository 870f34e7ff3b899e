//! The first frame of an allocation site is the program's own, in any build: `.ci/profiles`
//! builds this program four ways (the release profile without debug info, with
//! `debug = "line-tables-only"`, with `debug = 1`, and the dev profile) and runs it.
//!
//! It allocates in two functions of its own, one class sampled and one traced entirely, and
//! checks that each site's first frame outside the standard library is that function, with
//! none of classtrack's or the allocation glue's before it: in the stats dump as loaded back,
//! in the pprof profile and in the HTML report. It exits with an error saying what it found
//! otherwise.
//!
//! ```text
//! cargo run -p classtrack-examples --example profiles
//! ```

use std::process::ExitCode;

use classtrack::{ClassTracker, Frame, Stats, TrackingAlloc};

#[global_allocator]
static ALLOC: TrackingAlloc<std::alloc::System> = TrackingAlloc::new(std::alloc::System);

/// Sampled at the default rate.
struct Sampled;
/// Every allocation traced.
struct Traced;

#[inline(never)]
fn fill_sampled(n: usize) -> Vec<Vec<u8>> {
    let mut blocks = Vec::new();
    for i in 0..n {
        blocks.push(vec![i as u8; 64 << 10]);
    }
    blocks
}

#[inline(never)]
fn fill_traced(n: usize) -> Vec<String> {
    let mut names = Vec::with_capacity(n);
    for i in 0..n {
        names.push(format!("name number {i}"));
    }
    names
}

/// Whether `function` names the program's function `name` (qualified, or as line tables name
/// it).
fn names(function: &str, name: &str) -> bool {
    function == name || function.ends_with(&format!("::{name}"))
}

/// Whether a frame is the standard library's (not the allocation glue's).
fn is_std(function: &str, file: &str) -> bool {
    file.starts_with("/rustc/")
        || [
            "alloc::", "<alloc::", "core::", "<core::", "std::", "<std::",
        ]
        .iter()
        .any(|p| function.starts_with(p))
}

/// The repository's directory (this package is its `examples/`).
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// Whether a frame is classtrack's or the allocation glue's.
fn is_machinery(function: &str, file: &str) -> bool {
    let f = function.trim_start_matches('<');
    f.starts_with("classtrack")
        || f.starts_with("__r")
        || f.contains("raw_vec")
        || file.starts_with(&format!("{ROOT}/src/"))
        || file.starts_with(&format!("{ROOT}/alloc-shim/src/"))
        || file.ends_with("library/alloc/src/alloc.rs")
}

/// Checks a site's frames (innermost first, as (function, file)): the first that is not the
/// standard library's is `name`, and none before it is the machinery's.
fn check(what: &str, frames: &[(String, String)], name: &str) -> Result<(), String> {
    let shown = || {
        frames
            .iter()
            .map(|(f, file)| format!("  {f} {file}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    for (function, file) in frames {
        if is_machinery(function, file) {
            return Err(format!(
                "{what}: a frame of classtrack or the allocation glue before {name}:\n{}",
                shown()
            ));
        }
        if !is_std(function, file) {
            return if names(function, name) {
                Ok(())
            } else {
                Err(format!(
                    "{what}: the first frame outside the standard library is not {name}:\n{}",
                    shown()
                ))
            };
        }
    }
    Err(format!("{what}: no frame of {name}:\n{}", shown()))
}

fn pairs(frames: &[Frame]) -> Vec<(String, String)> {
    frames
        .iter()
        .map(|f| (f.function.clone(), f.file.clone().unwrap_or_default()))
        .collect()
}

/// classtrack's own live bytes now.
fn overhead_bytes() -> u64 {
    classtrack::ClassTracker::new()
        .create_snapshot("memory")
        .overhead
        .tracker_bytes
}

fn run() -> Result<String, String> {
    classtrack::set_sample_mean(16 << 10);
    classtrack::trace_every_allocation::<Traced>(true);
    let tracker = ClassTracker::new();
    let sampled = classtrack::scope::<Sampled, _>(|| fill_sampled(64));
    let traced = classtrack::scope::<Traced, _>(|| fill_traced(64));
    tracker.create_snapshot("built");
    // What symbolizing costs, for the record: classtrack's own memory before and after.
    let before = overhead_bytes();
    let dir = std::env::temp_dir().join(format!("classtrack-profiles-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let path = dir.join("stats.json");
    tracker.stats().dump(&path).map_err(|e| e.to_string())?;
    let stats = Stats::load(&path).map_err(|e| e.to_string())?;
    std::fs::remove_dir_all(&dir).map_err(|e| e.to_string())?;
    drop((sampled, traced));

    let snap = stats
        .snapshots
        .iter()
        .rev()
        .find(|s| !s.sites.is_empty())
        .ok_or("no snapshot kept sites")?;
    let mut checked = 0;
    for (class, function) in [("Sampled", "fill_sampled"), ("Traced", "fill_traced")] {
        let sites: Vec<_> = snap
            .sites
            .iter()
            .filter(|s| s.class.ends_with(class))
            .collect();
        if sites.is_empty() {
            return Err(format!("no site of class {class} in the dump"));
        }
        for s in sites {
            check(
                &format!("dump, class {class}"),
                &pairs(stats.frames(s)),
                function,
            )?;
            checked += 1;
        }
    }

    // pprof: each sample's locations, innermost first, each location's lines innermost first.
    let profile = stats.pprof_profile(snap);
    let string = |i: i64| profile.string_table[i as usize].clone();
    for sample in &profile.sample {
        let class = sample
            .label
            .iter()
            .map(|l| string(l.str))
            .find(|v| v.ends_with("Sampled") || v.ends_with("Traced"));
        let Some(class) = class else { continue };
        let function = if class.ends_with("Sampled") {
            "fill_sampled"
        } else {
            "fill_traced"
        };
        let mut frames = Vec::new();
        for id in &sample.location_id {
            let location = profile
                .location
                .iter()
                .find(|l| l.id == *id)
                .ok_or("a sample names a missing location")?;
            for line in &location.line {
                let f = profile
                    .function
                    .iter()
                    .find(|f| f.id == line.function_id)
                    .ok_or("a line names a missing function")?;
                frames.push((string(f.name), string(f.filename)));
            }
        }
        check(&format!("pprof, class {class}"), &frames, function)?;
        checked += 1;
    }

    // The HTML report names each site by its first frame of the program's.
    let page = stats.html().map_err(|e| e.to_string())?;
    for function in ["fill_sampled", "fill_traced"] {
        if !page.contains(function) {
            return Err(format!("the HTML report does not name {function}"));
        }
    }
    drop((stats, page, profile));
    let after = overhead_bytes();
    Ok(format!(
        "{checked} sites checked: each starts at the program's function; classtrack's own \
         memory {before} bytes before symbolizing, {after} after"
    ))
}

fn main() -> ExitCode {
    match run() {
        Ok(said) => {
            println!("{said}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("profiles: {e}");
            ExitCode::FAILURE
        }
    }
}
