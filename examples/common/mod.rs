//! Where the examples write their files: the target directory they were built in (so
//! `CARGO_TARGET_DIR` and `build.target-dir` are honoured), `target/` if that cannot be told.

use std::path::PathBuf;

/// `name` in the target directory this example was built in, which is created if missing.
pub fn output_path(name: &str) -> PathBuf {
    // The example runs as `<target dir>/<profile>/examples/<name>`.
    let dir = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.to_path_buf()))
        .filter(|dir| dir.join("CACHEDIR.TAG").exists())
        .unwrap_or_else(|| PathBuf::from("target"));
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("{} is not writable: {e}", dir.display()));
    dir.join(name)
}
