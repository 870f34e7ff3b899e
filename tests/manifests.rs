//! The examples and the benches are packages of their own whose manifests live beside their
//! files (`examples/Cargo.toml`, `benches/Cargo.toml`), so cargo finds none of their targets by
//! itself: each must be listed. A file that is not would silently never be built; this test
//! fails instead.

use std::path::Path;

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
