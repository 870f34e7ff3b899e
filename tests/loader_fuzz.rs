//! A fuzz run of `Stats::load` on mutated dumps (bytes flipped, cut, garbage inserted, values
//! swapped for other types, huge numbers, deep nesting): it never panics or overflows its stack
//! and returns stats or a typed error; what it accepts dumps and loads back equal. And dump
//! then load is the identity on generated stats, floats bit for bit.
//!
//! Each property runs `PROPTEST_CASES` cases (by default 1000 and 200, 40 of the second in a
//! debug build: about half a minute).

use std::alloc::System;
use std::path::PathBuf;
use std::sync::OnceLock;

use classtrack::{ClassTracker, Error, Referent, Stats, TrackOptions, TrackingAlloc};
use proptest::prelude::*;
use proptest::sample::Index;

#[global_allocator]
static ALLOC: TrackingAlloc<System> = TrackingAlloc::new(System);

#[derive(Debug)]
struct Doc {
    _text: String,
}

/// `PROPTEST_CASES` if set, else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "classtrack-fuzz-{name}-{}.json",
        std::process::id()
    ))
}

/// The valid dump every mutation starts from, as a JSON value.
fn base() -> &'static serde_json::Value {
    static BASE: OnceLock<serde_json::Value> = OnceLock::new();
    BASE.get_or_init(|| {
        let tracker = ClassTracker::new();
        tracker.track_class::<Doc>(TrackOptions::new().trace(true));
        let docs: Vec<_> = (0..3)
            .map(|i| {
                tracker.construct_debug(|| Doc {
                    _text: "é\"\n".repeat(i + 1),
                })
            })
            .collect();
        tracker.create_snapshot("first");
        tracker.create_snapshot("second");
        let mut stats = tracker.stats();
        stats.instances[0].referents = serde_json::from_str(
            r#"[{"name":"a","bytes":10,"children":[{"name":"b","bytes":5,"children":[]}]}]"#,
        )
        .unwrap();
        drop(docs);
        let path = temp_path("base");
        stats.dump(&path).unwrap();
        let value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        std::fs::remove_file(&path).unwrap();
        value
    })
}

/// Every JSON pointer into `value`, the root's ("") included.
fn pointers(value: &serde_json::Value, at: String, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                pointers(item, format!("{at}/{i}"), out);
            }
        }
        serde_json::Value::Object(members) => {
            for (key, item) in members {
                let key = key.replace('~', "~0").replace('/', "~1");
                pointers(item, format!("{at}/{key}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

/// JSON text to put in place of a value: other types, edge and huge numbers, deep nesting.
fn raw_value() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "null",
            "true",
            "false",
            "0",
            "-0",
            "-1",
            "1.5",
            "1e999",
            "-1e999",
            "1e-400",
            "4294967296",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775809",
            "123456789012345678901234567890",
            "\"\"",
            "\"1\"",
            "\"\\ud800\"",
            "[]",
            "{}",
            "[1,2,3]",
            "[1.0,2]",
            "{\"version\":1}",
            "{\"name\":\"x\",\"bytes\":1,\"children\":[]}",
        ])
        .prop_map(str::to_owned),
        any::<i64>().prop_map(|v| v.to_string()),
        any::<u64>().prop_map(|v| v.to_string()),
        any::<f64>().prop_map(|v| format!("{v:e}")),
        any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap()),
        (1usize..200_000).prop_map(|n| format!("{}1{}", "[".repeat(n), "]".repeat(n))),
        (1usize..20_000).prop_map(|n| format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n))),
        (1usize..2_000).prop_map(|n| "[".repeat(n)),
    ]
}

/// A change of the dump's bytes.
#[derive(Debug, Clone)]
enum ByteChange {
    Flip(Index, u8),
    Cut(Index),
    Insert(Index, Vec<u8>),
    Remove(Index, usize),
}

fn byte_change() -> impl Strategy<Value = ByteChange> {
    prop_oneof![
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| ByteChange::Flip(i, b)),
        any::<Index>().prop_map(ByteChange::Cut),
        (
            any::<Index>(),
            prop_oneof![
                prop::collection::vec(any::<u8>(), 1..16),
                prop::sample::select(vec![",", "]", "}", "[", "{", "\"", ":", "\\", "-", "e"])
                    .prop_map(|s| s.as_bytes().to_vec()),
            ]
        )
            .prop_map(|(i, g)| ByteChange::Insert(i, g)),
        (any::<Index>(), 1usize..64).prop_map(|(i, n)| ByteChange::Remove(i, n)),
    ]
}

fn apply(bytes: &mut Vec<u8>, change: &ByteChange) {
    match change {
        ByteChange::Flip(at, b) if !bytes.is_empty() => {
            let at = at.index(bytes.len());
            bytes[at] = *b;
        }
        ByteChange::Flip(..) => {}
        ByteChange::Cut(at) => {
            let at = at.index(bytes.len() + 1);
            bytes.truncate(at);
        }
        ByteChange::Insert(at, garbage) => {
            let at = at.index(bytes.len() + 1);
            bytes.splice(at..at, garbage.iter().copied());
        }
        ByteChange::Remove(at, n) => {
            let at = at.index(bytes.len() + 1);
            let end = (at + n).min(bytes.len());
            bytes.drain(at..end);
        }
    }
}

/// The base dump with the values at the chosen pointers replaced by raw JSON text, then its
/// bytes changed.
fn mutated(replacements: &[(Index, String)], changes: &[ByteChange]) -> Vec<u8> {
    const MARK: &str = "@@classtrack-fuzz-{}@@";
    let mut value = base().clone();
    let mut raws = Vec::new();
    for (at, raw) in replacements {
        let mut all = Vec::new();
        pointers(&value, String::new(), &mut all);
        let pointer = &all[at.index(all.len())];
        let mark = MARK.replace("{}", &raws.len().to_string());
        if pointer.is_empty() {
            value = serde_json::Value::String(mark.clone());
        } else {
            *value.pointer_mut(pointer).unwrap() = serde_json::Value::String(mark.clone());
        }
        raws.push((mark, raw));
    }
    let mut text = serde_json::to_string(&value).unwrap();
    for (mark, raw) in raws {
        text = text.replace(&format!("\"{mark}\""), raw);
    }
    let mut bytes = text.into_bytes();
    for change in changes {
        apply(&mut bytes, change);
    }
    bytes
}

fn load_bytes(bytes: &[u8], name: &str) -> classtrack::Result<Stats> {
    let path = temp_path(name);
    std::fs::write(&path, bytes).unwrap();
    let loaded = Stats::load(&path);
    std::fs::remove_file(&path).unwrap();
    loaded
}

/// `stats` dumped and loaded back, and checked equal bit for bit (`==` alone takes -0.0 for
/// 0.0; `Debug` prints each float's shortest exact form).
fn assert_round_trips(stats: &Stats, name: &str) -> Result<(), TestCaseError> {
    let path = temp_path(name);
    stats
        .dump(&path)
        .map_err(|e| TestCaseError::fail(format!("dump: {e}")))?;
    let loaded = Stats::load(&path);
    std::fs::remove_file(&path).unwrap();
    let loaded = loaded.map_err(|e| TestCaseError::fail(format!("load: {e}")))?;
    prop_assert_eq!(&loaded, stats);
    prop_assert_eq!(format!("{loaded:?}"), format!("{stats:?}"));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(1000),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn load_of_a_mutated_dump_returns_stats_or_a_typed_error(
        replacements in prop::collection::vec((any::<Index>(), raw_value()), 0..3),
        changes in prop::collection::vec(byte_change(), 0..3),
    ) {
        let bytes = mutated(&replacements, &changes);
        match load_bytes(&bytes, "mutated") {
            Ok(stats) => {
                prop_assert!((1..=classtrack::STATS_VERSION).contains(&stats.version));
                assert_round_trips(&stats, "mutated-again")?;
            }
            Err(e @ (Error::Corrupt { .. }
                | Error::UnsupportedVersion { .. }
                | Error::InvalidVersion { .. })) => {
                prop_assert!(!e.to_string().is_empty());
            }
            Err(e) => prop_assert!(false, "unexpected error {e:?}"),
        }
    }
}

/// A finite f64: any sign, any exponent, subnormals and zeros included, and elapsed times
/// from a nanosecond to thirty years.
fn time() -> impl Strategy<Value = f64> {
    use proptest::num::f64 as f;
    prop_oneof![
        f::POSITIVE | f::NEGATIVE | f::NORMAL | f::SUBNORMAL | f::ZERO,
        (-9.0f64..9.0).prop_map(|e| 10f64.powf(e)),
    ]
}

fn referents() -> impl Strategy<Value = serde_json::Value> {
    let leaf = (any::<String>(), any::<u64>()).prop_map(
        |(name, bytes)| serde_json::json!({"name": name, "bytes": bytes, "children": []}),
    );
    leaf.prop_recursive(4, 16, 3, |inner| {
        (any::<String>(), any::<u64>(), prop::collection::vec(inner, 0..3)).prop_map(
            |(name, bytes, children)| {
                serde_json::json!({"name": name, "bytes": bytes, "children": children})
            },
        )
    })
}

/// What a generated `Stats` is made of: what the tracker records (names, descriptions, reprs),
/// then times, sizes and breakdowns set on its fields.
#[derive(Debug, Clone)]
struct Recipe {
    class_name: String,
    descriptions: Vec<String>,
    reprs: Vec<String>,
    times: Vec<f64>,
    sizes: Vec<Vec<(f64, u64)>>,
    counts: Vec<u64>,
    referents: Vec<serde_json::Value>,
}

fn recipe() -> impl Strategy<Value = Recipe> {
    (
        any::<String>(),
        prop::collection::vec(any::<String>(), 1..4),
        prop::collection::vec(any::<String>(), 0..5),
        prop::collection::vec(time(), 12),
        prop::collection::vec(prop::collection::vec((time(), any::<u64>()), 0..8), 5),
        prop::collection::vec(any::<u64>(), 8),
        prop::collection::vec(referents(), 5),
    )
        .prop_map(
            |(class_name, descriptions, reprs, times, sizes, counts, referents)| Recipe {
                class_name,
                descriptions,
                reprs,
                times,
                sizes,
                counts,
                referents,
            },
        )
}

fn build(recipe: &Recipe) -> Stats {
    let tracker = ClassTracker::new();
    tracker.track_class::<Doc>(TrackOptions::new().name(recipe.class_name.clone()));
    let mut docs: Vec<_> = recipe
        .reprs
        .iter()
        .map(|r| tracker.construct_debug(|| Doc { _text: r.clone() }))
        .collect();
    for d in &recipe.descriptions {
        tracker.create_snapshot(d);
        docs.pop();
    }
    let mut stats = tracker.stats();
    drop(docs);
    let mut times = recipe.times.iter().copied().cycle();
    let mut counts = recipe.counts.iter().copied().cycle();
    for s in &mut stats.snapshots {
        s.time = times.next().unwrap();
        s.allocator.live_bytes = counts.next().unwrap();
        if let Some(p) = &mut s.process {
            p.resident_bytes = counts.next().unwrap();
        }
        for c in &mut s.classes {
            c.live_bytes = counts.next().unwrap();
            c.allocated_bytes = counts.next().unwrap();
        }
    }
    for c in &mut stats.classes {
        for h in &mut c.history {
            h.0 = times.next().unwrap();
        }
    }
    for (i, inst) in stats.instances.iter_mut().enumerate() {
        inst.birth = times.next().unwrap();
        inst.death = inst.death.map(|_| times.next().unwrap());
        inst.sizes = recipe.sizes[i % recipe.sizes.len()].clone();
        inst.max_size = counts.next().unwrap();
        inst.referents =
            serde_json::from_value::<Vec<Referent>>(serde_json::Value::Array(vec![recipe
                .referents[i % recipe.referents.len()]
            .clone()]))
            .unwrap();
    }
    stats
}

proptest! {
    #![proptest_config(ProptestConfig {
        // Each case gathers a tracker's stats, symbolizing its sites: most of a second in a
        // debug build. CI runs 3,000 cases in a release build.
        cases: cases(if cfg!(debug_assertions) { 40 } else { 200 }),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn dump_then_load_is_the_identity(recipe in recipe()) {
        let stats = build(&recipe);
        assert_round_trips(&stats, "identity")?;
    }
}
