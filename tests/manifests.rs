//! The examples and the benches are packages of their own whose manifests live beside their
//! files (`examples/Cargo.toml`, `benches/Cargo.toml`), so cargo finds none of their targets by
//! itself: each must be listed. A file that is not would silently never be built; this test
//! fails instead. And the README's first command, `cargo run --release --example quickstart`,
//! must build classtrack and its dependencies and nothing else.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// The `*.rs` files directly in `dir` that `manifest` does not name as `path = "FILE"` of a
/// `[[kind]]` target.
fn unlisted(dir: &str, kind: &str) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let manifest = std::fs::read_to_string(root.join("Cargo.toml"))
        .unwrap_or_else(|e| panic!("{dir}/Cargo.toml: {e}"));
    let listed: Vec<&str> = manifest
        .split(&format!("[[{kind}]]"))
        .skip(1)
        .filter_map(|target| {
            let line = target
                .lines()
                .find(|l| l.trim_start().starts_with("path"))?;
            line.split('"').nth(1)
        })
        .collect();
    let mut missing: Vec<String> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{dir}/: {e}"))
        .map(|e| {
            e.expect("a directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".rs") && !listed.contains(&name.as_str()))
        .collect();
    missing.sort();
    missing
}

#[test]
fn every_example_file_is_a_listed_example() {
    let missing = unlisted("examples", "example");
    assert!(
        missing.is_empty(),
        "add an [[example]] with `path = \"FILE\"` to examples/Cargo.toml for {missing:?}"
    );
}

#[test]
fn every_bench_file_is_a_listed_bench() {
    let missing = unlisted("benches", "bench");
    assert!(
        missing.is_empty(),
        "add a [[bench]] with `path = \"FILE\"` and `harness = false` to benches/Cargo.toml \
         for {missing:?}"
    );
}

/// The packages `cargo tree` lists for `package`'s normal and build dependencies, itself
/// included, as `name vVERSION`.
fn dependencies(package: &str) -> BTreeSet<String> {
    tree(package, &[])
}

/// [`dependencies`] with more options for `cargo tree` (features, depth).
fn tree(package: &str, options: &[&str]) -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(&cargo)
        .args(["tree", "--locked", "--offline", "-e", "normal,build"])
        .args(["--prefix", "none", "--format", "{p}", "-p", package])
        .args(options)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| panic!("`{cargo} tree` could not run (is cargo installed?): {e}"));
    assert!(
        out.status.success(),
        "`{cargo} tree -p {package}` failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            // `name vX.Y.Z (/path)` for path packages, `name vX.Y.Z (*)` for repeats.
            let mut words = l.split_whitespace();
            format!(
                "{} {}",
                words.next().unwrap_or(""),
                words.next().unwrap_or("")
            )
        })
        .filter(|p| p.trim() != "")
        .collect()
}

#[test]
fn the_quickstart_builds_classtrack_and_its_dependencies_only() {
    let mut examples = dependencies("classtrack-examples");
    let own = format!("classtrack-examples v{}", env!("CARGO_PKG_VERSION"));
    assert!(
        examples.remove(&own),
        "{own} not in its own tree: {examples:?}"
    );
    let classtrack = dependencies("classtrack");
    let extra: Vec<_> = examples.difference(&classtrack).collect();
    assert!(
        extra.is_empty(),
        "the examples build packages that classtrack does not depend on: {extra:?}; \
         keep examples/Cargo.toml's dependencies to classtrack (the test suite's and the \
         benches' dependencies belong in the root's and in benches/Cargo.toml)"
    );
}

/// The names in a [`tree`] (without versions).
fn names(packages: &BTreeSet<String>) -> BTreeSet<&str> {
    packages
        .iter()
        .filter_map(|p| p.split_whitespace().next())
        .collect()
}

/// The crates the reports need: none of them may be built with `default-features = false`.
const REPORT_CRATES: [&str; 5] = ["maud", "plotters", "inferno", "prost", "flate2"];

#[test]
fn without_default_features_classtrack_depends_on_its_core_crates_only() {
    let lean = tree("classtrack", &["--no-default-features", "--depth", "1"]);
    let direct = names(&lean);
    let core: BTreeSet<&str> = [
        "classtrack",
        "classtrack-shim",
        "backtrace",
        "crossbeam-channel",
        "parking_lot",
        "memory-stats",
        "hashbrown",
        "serde",
        "serde_json",
        // The future wrapper's: neither has dependencies of its own.
        "pin-project-lite",
        "futures-core",
    ]
    .into_iter()
    // Unix only: `pthread_atfork` and `open` flags.
    .chain(cfg!(unix).then_some("libc"))
    // The symbol table's function ranges (classtrack's own frames told by address) and, on
    // Linux, the build ids of the mappings kept in dumps and profiles: backtrace builds both
    // crates with the same features, so they add nothing to the build.
    .chain(cfg!(unix).then_some("object"))
    .chain(cfg!(unix).then_some("rustc-demangle"))
    // Linux: the executable's debug info read one compilation unit at a time (`dwarf.rs`):
    // backtrace builds it (through addr2line) with the same features.
    .chain(cfg!(target_os = "linux").then_some("gimli"))
    .collect();
    assert_eq!(
        direct, core,
        "classtrack's dependencies without default features changed; a dependency that not \
         every user needs belongs behind a feature (see [features] in Cargo.toml)"
    );
    let all = tree("classtrack", &["--no-default-features"]);
    for name in names(&all) {
        assert!(
            !REPORT_CRATES.contains(&name),
            "{name} is built without default features: {all:?}"
        );
    }
}

#[test]
fn the_default_features_bring_the_reports_crates() {
    // The other side of the test above: `html` and `pprof` are on by default, so that
    // `cargo add classtrack` gives every report.
    let default = tree("classtrack", &[]);
    let present = names(&default);
    for name in REPORT_CRATES {
        assert!(present.contains(name), "{name} missing: {default:?}");
    }
}
