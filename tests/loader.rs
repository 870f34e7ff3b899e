//! `Stats::load` refuses every wrong input with a typed error that says what to do, never
//! blocks, and reads back exactly what `Stats::dump` wrote.

use std::alloc::System;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use classtrack::{ClassTracker, Error, Referent, Stats, TrackOptions, TrackingAlloc};

#[global_allocator]
static ALLOC: TrackingAlloc<System> = TrackingAlloc::new(System);

#[derive(Debug)]
struct Doc {
    _text: String,
}

/// A fresh directory of its own for one test, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("classtrack-loader-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Stats from a real tracker: two snapshots, a dead instance and a live one.
fn sample_stats() -> Stats {
    let tracker = ClassTracker::new();
    tracker.track_class::<Doc>(TrackOptions::new().trace(true));
    let a = tracker.construct_debug(|| Doc {
        _text: "a".repeat(300),
    });
    let b = tracker.construct_debug(|| Doc {
        _text: "b\n\"quoted\" é 🦀".into(),
    });
    tracker.create_snapshot("both");
    drop(a);
    tracker.create_snapshot("one");
    let stats = tracker.stats();
    drop(b);
    stats
}

/// Runs `Stats::load(path)` on a thread of its own and returns its result, or fails the test
/// if it has not returned within ten seconds (a load that blocks must not hang the suite).
fn load_within_deadline(path: &Path) -> classtrack::Result<Stats> {
    let (tx, rx) = mpsc::channel();
    let path = path.to_owned();
    std::thread::spawn(move || {
        let _ = tx.send(Stats::load(&path));
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("Stats::load blocked for 10 s")
}

/// The sample stats' JSON, changed by `edit`, written to `name` in `dir`.
fn edited_dump(dir: &TempDir, name: &str, edit: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
    let mut value = serde_json::to_value(sample_stats()).unwrap();
    edit(&mut value);
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec(&value).unwrap()).unwrap();
    path
}

#[test]
fn dump_then_load_is_equal() {
    let dir = TempDir::new("equal");
    let stats = sample_stats();
    let path = dir.join("stats.json");
    stats.dump(&path).unwrap();
    assert_eq!(Stats::load(&path).unwrap(), stats);
}

#[test]
fn times_from_a_nanosecond_to_thirty_years_load_back_bit_for_bit() {
    let dir = TempDir::new("floats");
    let mut stats = sample_stats();
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    // Log-uniform over 1e-9 s to 1e9 s: every decimal exponent equally often.
    let mut time = || 10f64.powf(rng.f64() * 18.0 - 9.0);
    let inst = &mut stats.instances[0];
    inst.sizes = (0..200_000).map(|i| (time(), i)).collect();
    inst.birth = time();
    inst.death = Some(time());
    stats.snapshots[0].time = time();
    stats.classes[0].history = (0..1000).map(|i| (time(), i)).collect();
    let path = dir.join("floats.json");
    stats.dump(&path).unwrap();
    let loaded = Stats::load(&path).unwrap();
    let differ = stats.instances[0]
        .sizes
        .iter()
        .zip(&loaded.instances[0].sizes)
        .filter(|(a, b)| a.0.to_bits() != b.0.to_bits())
        .count();
    assert_eq!(differ, 0, "{differ} of 200000 times changed on the way");
    assert_eq!(loaded, stats);
}

#[test]
fn a_non_finite_float_is_refused_at_dump_and_nothing_is_written() {
    let dir = TempDir::new("nan");
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let mut stats = sample_stats();
        stats.instances[0].sizes.push((bad, 1));
        let path = dir.join("nan.json");
        let err = stats.dump(&path).unwrap_err();
        assert!(matches!(err, Error::Unwritable { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("instances[0].sizes["), "{msg}");
        assert!(msg.contains("make it a finite number"), "{msg}");
        assert_eq!(
            std::fs::read_dir(&dir.0).unwrap().count(),
            0,
            "no file left"
        );
    }
}

/// A chain of `depth` breakdown nodes, each the only child of the one above, as JSON.
fn referent_chain_json(depth: usize) -> String {
    let mut json = String::from("[]");
    for i in 0..depth {
        json = format!("[{{\"name\":\"level {i}\",\"bytes\":{i},\"children\":{json}}}]");
    }
    json
}

fn referent_chain(depth: usize) -> Vec<Referent> {
    serde_json::from_str(&referent_chain_json(depth)).unwrap()
}

#[test]
fn breakdowns_nested_as_deep_as_load_reads_round_trip_and_deeper_ones_are_refused() {
    let dir = TempDir::new("deep");
    let path = dir.join("deep.json");
    let mut stats = sample_stats();
    // Stats { instances [ { referents [ then two levels a node: 4 + 2 * 61 = 126 levels.
    stats.instances[0].referents = referent_chain(61);
    stats.dump(&path).unwrap();
    assert_eq!(Stats::load(&path).unwrap(), stats);

    stats.instances[0].referents = referent_chain(62);
    let err = stats.dump(dir.join("deeper.json")).unwrap_err();
    assert!(matches!(err, Error::Unwritable { .. }), "{err:?}");
    assert!(err.to_string().contains("resolution_level"), "{err}");

    // The same written by hand: a typed error, not a stack overflow.
    let mut value = serde_json::to_value(sample_stats()).unwrap();
    value["instances"][0]["referents"] = "CHAIN".into();
    let text = serde_json::to_string(&value)
        .unwrap()
        .replace("\"CHAIN\"", &referent_chain_json(5000));
    let hand = dir.join("hand.json");
    std::fs::write(&hand, text).unwrap();
    let err = Stats::load(&hand).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("recursion limit"), "{err}");
}

#[test]
fn a_directory_is_not_a_file() {
    let dir = TempDir::new("dir");
    let err = load_within_deadline(&dir.0).unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotAFile {
                kind: "a directory",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("pass the path of a file written by Stats::dump"),
        "{err}"
    );
}

#[cfg(unix)]
#[test]
fn a_fifo_is_refused_without_waiting_for_a_writer() {
    let dir = TempDir::new("fifo");
    let fifo = dir.join("stats.fifo");
    let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: `c_path` is a NUL-terminated path that outlives the call; mkfifo reads it only.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    let err = load_within_deadline(&fifo).unwrap_err();
    assert!(
        matches!(err, Error::NotAFile { kind: "a FIFO", .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("is a FIFO, not a regular file"),
        "{err}"
    );
}

#[cfg(unix)]
#[test]
fn a_device_is_not_read_without_end() {
    let zero = Path::new("/dev/zero");
    if !zero.exists() {
        return;
    }
    let err = load_within_deadline(zero).unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotAFile {
                kind: "a character device",
                ..
            }
        ),
        "{err:?}"
    );
}

#[cfg(unix)]
#[test]
fn a_socket_is_not_a_file() {
    let dir = TempDir::new("socket");
    let path = dir.join("stats.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let err = load_within_deadline(&path).unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotAFile {
                kind: "a socket",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn a_missing_file_is_an_io_error() {
    let dir = TempDir::new("missing");
    let err = Stats::load(dir.join("none.json")).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
}

#[test]
fn version_zero_is_no_version() {
    let dir = TempDir::new("v0");
    let path = edited_dump(&dir, "v0.json", |v| v["version"] = 0.into());
    let err = Stats::load(&path).unwrap_err();
    assert!(
        matches!(err, Error::InvalidVersion { found: 0, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("dump the stats again"), "{err}");
}

#[test]
fn version_two_to_the_32_does_not_wrap() {
    let dir = TempDir::new("v2_32");
    let path = edited_dump(&dir, "big.json", |v| v["version"] = (1u64 << 32).into());
    let err = Stats::load(&path).unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidVersion {
                found: 4_294_967_296,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("version 4294967296"), "{err}");
}

#[test]
fn a_newer_version_is_told_even_when_its_fields_differ() {
    let dir = TempDir::new("newer");
    const NEWER: u32 = classtrack::STATS_VERSION + 1;
    let same = edited_dump(&dir, "same.json", |v| v["version"] = NEWER.into());
    let changed = edited_dump(&dir, "changed.json", |v| {
        v["version"] = NEWER.into();
        v["snapshots"] = "in a format of the future".into();
    });
    for path in [same, changed] {
        let err = Stats::load(&path).unwrap_err();
        assert!(
            matches!(
                err,
                Error::UnsupportedVersion {
                    found: NEWER,
                    supported: classtrack::STATS_VERSION,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("newer classtrack"), "{err}");
    }
}

#[test]
fn a_missing_or_non_number_version_is_corrupt() {
    let dir = TempDir::new("noversion");
    type Edit = fn(&mut serde_json::Value);
    let cases: [(&str, Edit, &str); 4] = [
        (
            "missing.json",
            |v| {
                v.as_object_mut().unwrap().remove("version");
            },
            "no format version",
        ),
        (
            "string.json",
            |v| v["version"] = "1".into(),
            "the format version is a string \"1\", not a whole number",
        ),
        (
            "negative.json",
            |v| v["version"] = (-1).into(),
            "the format version is -1, below 0",
        ),
        (
            "fraction.json",
            |v| v["version"] = 1.5.into(),
            "the format version is 1.5, not a whole number",
        ),
    ];
    for (name, edit, reason) in cases {
        let path = edited_dump(&dir, name, edit);
        let err = Stats::load(&path).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{name}: {err:?}");
        assert!(err.to_string().contains(reason), "{name}: {err}");
    }
}

#[test]
fn a_truncated_file_is_corrupt() {
    let dir = TempDir::new("truncated");
    let path = dir.join("stats.json");
    sample_stats().dump(&path).unwrap();
    let full = std::fs::read(&path).unwrap();
    for cut in [0, 1, full.len() / 3, full.len() - 2] {
        std::fs::write(&path, &full[..cut]).unwrap();
        let err = Stats::load(&path).unwrap_err();
        assert!(
            matches!(err, Error::Corrupt { .. }),
            "cut at {cut}: {err:?}"
        );
        assert!(err.to_string().contains("truncated"), "{err}");
    }
}

#[test]
fn wrong_types_are_corrupt() {
    let dir = TempDir::new("types");
    let edits: [fn(&mut serde_json::Value); 5] = [
        |v| v["snapshots"] = 5.into(),
        |v| v["instances"][0]["birth"] = "yesterday".into(),
        |v| v["instances"][0]["id"] = (-3).into(),
        |v| v["evicted_instances"] = 1e30.into(),
        |v| v["classes"][0]["history"][0] = serde_json::json!({"t": 1}),
    ];
    for (i, edit) in edits.into_iter().enumerate() {
        let path = edited_dump(&dir, &format!("types{i}.json"), edit);
        let err = Stats::load(&path).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "case {i}: {err:?}");
        assert!(err.to_string().contains("invalid"), "case {i}: {err}");
    }
    let top = dir.join("array.json");
    std::fs::write(&top, b"[1, 2]").unwrap();
    assert!(matches!(Stats::load(&top), Err(Error::Corrupt { .. })));
}
