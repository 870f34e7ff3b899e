//! The `classtrack` command run on stats dumped by a real tracker in this process (with the
//! tracking allocator installed, so the figures are real), a version 1 file made from them,
//! and broken inputs.

use std::alloc::System;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use classtrack::report::pprof::proto;
use classtrack::{ClassTracker, Retention, Stats, TrackOptions, Tracked, TrackingAlloc};
use prost::Message;

#[global_allocator]
static ALLOC: TrackingAlloc<System> = TrackingAlloc::new(System);

#[derive(Debug)]
#[allow(dead_code)]
struct Order {
    id: u64,
    lines: Vec<u64>,
}

/// The class that grows at every tick, 10,000 bytes a block, every allocation traced.
const LEAK: &str = "cli test leak";
const LEAK_BLOCK: usize = 10_000;
const TICKS: usize = 5;
/// The class of a spike of 32 MiB between the last two snapshots.
const SPIKE: &str = "cli test spike";
const SPIKE_BLOCKS: usize = 512;
const ORDERS: u64 = 3000;

#[inline(never)]
fn leak_block() -> Vec<u8> {
    classtrack::scope_named(LEAK, || vec![1u8; LEAK_BLOCK])
}

struct Fixture {
    /// A dump: snapshots "start", "warm", 5 × "tick", "end".
    dump: PathBuf,
    /// The same stats in version 1's format.
    v1: PathBuf,
    /// A dump with no snapshot.
    empty: PathBuf,
    /// A dump whose oldest snapshot, "old", is a summary that keeps its largest class.
    summaries: PathBuf,
    dir: PathBuf,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("classtrack-cli-tests");
        std::fs::create_dir_all(&dir).unwrap();
        classtrack::trace_every_allocation_named(LEAK, true);
        let tracker = ClassTracker::new();
        tracker.track_class::<Order>(TrackOptions::new().name("Order"));
        tracker.create_snapshot("start");
        let mut orders: Vec<Tracked<Order>> = (0..ORDERS)
            .map(|i| {
                tracker.construct_debug(|| Order {
                    id: i,
                    lines: vec![i; (i % 7 + 1) as usize],
                })
            })
            .collect();
        // The largest instance by far.
        orders.push(tracker.construct_debug(|| Order {
            id: 99_999,
            lines: vec![7; 10_000],
        }));
        tracker.create_snapshot("warm");
        let mut leak = Vec::new();
        // A trip count the optimizer cannot see, so that the loop is not unrolled into five
        // call sites (five sites of one block each).
        for _ in 0..std::hint::black_box(TICKS) {
            leak.push(leak_block());
            tracker.create_snapshot("tick");
        }
        // A spike between two snapshots: only the peak sees it.
        let spike: Vec<Vec<u8>> = classtrack::scope_named(SPIKE, || {
            (0..SPIKE_BLOCKS).map(|_| vec![2u8; 64 << 10]).collect()
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        drop(spike);
        orders.drain(..100);
        tracker.create_snapshot("end");
        let dump = dir.join("stats.json");
        tracker.stats().dump(&dump).unwrap();

        let v1 = dir.join("stats-v1.json");
        std::fs::write(&v1, to_version_1(&std::fs::read(&dump).unwrap())).unwrap();
        let empty = dir.join("empty.json");
        ClassTracker::new().stats().dump(&empty).unwrap();
        let summarizing = ClassTracker::new();
        summarizing
            .set_retention(Retention::new().recent_snapshots(2).summary_classes(1))
            .unwrap();
        for label in ["old", "recent", "latest"] {
            summarizing.create_snapshot(label);
        }
        let summaries = dir.join("summaries.json");
        summarizing.stats().dump(&summaries).unwrap();
        drop((orders, leak));
        Fixture {
            dump,
            v1,
            empty,
            summaries,
            dir,
        }
    })
}

/// A stats file rewritten as version 1 wrote it: per snapshot, only the
/// allocator's live figures, the process's memory, the overhead and the tracked classes.
fn to_version_1(v2: &[u8]) -> Vec<u8> {
    let mut stats: serde_json::Value = serde_json::from_slice(v2).unwrap();
    let o = stats.as_object_mut().unwrap();
    o.insert("version".into(), 1.into());
    o.remove("stacks");
    for s in o["snapshots"].as_array_mut().unwrap() {
        let overhead = &s["overhead"];
        let overhead_bytes = ["tracker_bytes", "metadata_bytes", "shard_bytes"]
            .iter()
            .map(|k| overhead[k].as_u64().unwrap())
            .sum::<u64>();
        *s = serde_json::json!({
            "time": s["time"],
            "description": s["description"],
            "allocator_live_bytes": s["allocator"]["live_bytes"],
            "allocator_live_blocks": s["allocator"]["live_blocks"],
            "resident_bytes": s["process"]["resident_bytes"],
            "virtual_bytes": s["process"]["virtual_bytes"],
            "overhead_bytes": overhead_bytes,
            "tracker_bytes": overhead["tracker_bytes"],
            "tracked": s["tracked"],
        });
    }
    serde_json::to_vec(&stats).unwrap()
}

/// The `classtrack` command, run through `CLASSTRACK_TEST_RUNNER` when that is set (a program
/// and its arguments, split at spaces: the emulator the suite runs under for another
/// architecture, as `.ci/cross` sets it), else directly.
fn classtrack_command() -> Command {
    let exe = env!("CARGO_BIN_EXE_classtrack");
    match std::env::var("CLASSTRACK_TEST_RUNNER") {
        Ok(runner) if !runner.trim().is_empty() => {
            let mut words = runner.split_whitespace();
            let mut cmd = Command::new(words.next().unwrap());
            cmd.args(words).arg(exe);
            cmd
        }
        _ => Command::new(exe),
    }
}

fn classtrack(args: &[&str]) -> Output {
    classtrack_command()
        .args(args)
        // A panic would print a backtrace: there must be none to print.
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("the classtrack binary runs")
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs a command that must succeed quietly, and returns its output.
fn ok(args: &[&str]) -> String {
    let out = classtrack(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?} failed: {stderr}");
    assert!(stderr.is_empty(), "{args:?} wrote to stderr: {stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(!stdout.contains('\x1b'), "colours in a pipe: {stdout}");
    stdout
}

/// Runs a command that writes `file`: nothing on standard output, and one line on stderr
/// that says where it wrote and how much.
fn writes(args: &[&str], file: &Path) {
    let out = classtrack(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?} failed: {stderr}");
    assert!(out.stdout.is_empty(), "{args:?} wrote to stdout");
    let size = std::fs::metadata(file).unwrap().len();
    assert!(
        stderr.starts_with(&format!("classtrack: wrote {} (", file.display()))
            && stderr.lines().count() == 1
            && (size < 1024 || stderr.contains("KiB") || stderr.contains("MiB")),
        "{args:?}: {stderr}"
    );
}

/// Runs a command that must fail with `code` and one line on stderr, and returns that line.
fn fails(args: &[&str], code: i32) -> String {
    let out = classtrack(args);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    assert!(!stderr.contains("backtrace"), "{args:?}: {stderr}");
    if code == 1 {
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("classtrack: "), "{stderr}");
    }
    stderr
}

#[test]
fn summary_shows_each_snapshot_with_its_largest_classes() {
    let f = fixture();
    let text = ok(&["summary", path(&f.dump)]);
    assert!(text.contains("8 snapshots from"), "{text}");
    assert!(text.contains("1 tracked class"), "{text}");
    for (i, label) in [(0, "start"), (1, "warm"), (2, "tick"), (7, "end")] {
        assert!(
            text.contains(&format!("{i}: {label:?} at ")),
            "{label}: {text}"
        );
    }
    assert!(text.contains("live in the program's heap"), "{text}");
    assert!(text.contains("classtrack's own"), "{text}");
    assert!(text.contains("resident"), "{text}");
    // The leak's row at the last tick: 5 blocks, 50,000 bytes, one more block than before.
    let end = &text[text.find("7: \"end\"").unwrap()..];
    let row = end.lines().find(|l| l.contains(LEAK)).unwrap();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[3..7], ["48.8", "KiB", "5", cells[6]], "{row}");
    assert!(row.trim_end().ends_with("0 B"), "{row}");
    let tick = &text[text.find("6: \"tick\"").unwrap()..];
    let row = tick.lines().find(|l| l.contains(LEAK)).unwrap();
    assert!(row.ends_with("+9.8 KiB"), "{row}");
    assert!(end.contains("tracked: Order 2901 alive"), "{end}");
    // --classes bounds the rows; the rest are summed.
    let one = ok(&["summary", path(&f.dump), "--classes", "1"]);
    assert!(one.contains("more class"), "{one}");
}

#[test]
fn stats_sorts_limits_reverses_and_filters_instances() {
    let f = fixture();
    let largest = ok(&["stats", path(&f.dump), "--sort", "size", "--limit", "1"]);
    assert_eq!(largest.matches("Order #").count(), 1, "{largest}");
    assert!(largest.contains("id: 99999"), "{largest}");
    let smallest = ok(&[
        "stats",
        path(&f.dump),
        "--sort",
        "max-size",
        "--reverse",
        "--limit",
        "1",
    ]);
    assert!(!smallest.contains("id: 99999"), "{smallest}");
    // tsize is the size-at-peak key's pympler name; keys can be given together.
    let peak = ok(&[
        "stats",
        path(&f.dump),
        "--sort",
        "tsize,birth",
        "--limit",
        "1",
    ]);
    assert!(peak.contains("id: 99999"), "{peak}");
    for key in ["class", "birth", "death", "name", "repr", "size-at-peak"] {
        ok(&["stats", path(&f.dump), "--sort", key, "--limit", "2"]);
    }
    let dead = ok(&["stats", path(&f.dump), "--sort", "death", "--limit", "1"]);
    assert!(dead.contains("died"), "{dead}");
    let filtered = ok(&["stats", path(&f.dump), "--class", "Ord", "--limit", "3"]);
    assert_eq!(filtered.matches("Order #").count(), 3, "{filtered}");
    // A filter that matches nothing says so on stderr, and is not a failure.
    let out = classtrack(&["stats", path(&f.dump), "--class", "Nothing"]);
    assert!(out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("tracked classes: Order"), "{stderr}");
}

#[test]
fn diff_compares_snapshots_by_index_or_label_and_two_dumps() {
    let f = fixture();
    let whole = ok(&["diff", path(&f.dump)]);
    assert!(whole.starts_with("from \"start\""), "{whole}");
    let row = whole.lines().find(|l| l.starts_with(LEAK)).unwrap();
    let cells: Vec<&str> = row[LEAK.len()..].split_whitespace().collect();
    // The leak began after the first snapshot: new.
    assert_eq!(cells[..5], ["(new)", "+48.8", "KiB", "+5", "48.8"], "{row}");
    let by_label = ok(&["diff", path(&f.dump), "--from", "warm", "--to", "-2"]);
    assert!(
        by_label.starts_with("from \"warm\"") && by_label.contains("to \"tick\""),
        "{by_label}"
    );
    let row = by_label.lines().find(|l| l.starts_with(LEAK)).unwrap();
    assert!(row.contains("+48.8 KiB"), "{row}");
    // The label "tick" names the latest of its five snapshots: nothing grew after it.
    let after = ok(&["diff", path(&f.dump), "--from", "tick"]);
    assert!(!after.lines().any(|l| l.starts_with(LEAK)), "{after}");
    // Two dumps: the latest snapshot of each, classes matched by name.
    let two = ok(&["diff", path(&f.v1), path(&f.dump)]);
    assert!(two.starts_with("from snapshot 7 of"), "{two}");
    assert!(
        two.contains("note: snapshot 7 (\"end\") keeps no per-class totals"),
        "{two}"
    );
    let same = ok(&["diff", path(&f.dump), path(&f.dump)]);
    assert!(same.contains("(no class changed)"), "{same}");
}

#[test]
fn leaks_names_the_growing_class_and_its_site() {
    let f = fixture();
    // From "warm", before the first tick, to "end", after the last.
    let text = ok(&["leaks", path(&f.dump), "--intervals", "6"]);
    assert!(
        text.contains(&format!("{LEAK}: grew in 5 of 6 intervals, +48.8 KiB")),
        "{text}"
    );
    let site = text
        .lines()
        .skip_while(|l| !l.starts_with(LEAK))
        .nth(1)
        .unwrap();
    // Every allocation traced: the figure is exact, and said to be.
    assert!(site.contains("48.8 KiB (exact)"), "{site}");
    assert!(site.contains("leak_block"), "{site}");
    assert!(site.contains("cli.rs:"), "{site}");
    // No interval at all is a mistake in the option, and the message says so.
    let line = fails(&["leaks", path(&f.dump), "--intervals", "0"], 1);
    assert!(
        line.contains("--intervals 0 looks at no interval"),
        "{line}"
    );
}

#[test]
fn peak_shows_the_spike_no_snapshot_saw() {
    let f = fixture();
    let text = ok(&["peak", path(&f.dump), "--classes", "3", "--sites", "2"]);
    println!("{text}");
    assert!(text.starts_with("---- AT THE PEAK"), "{text}");
    // 512 blocks of 64 KiB and the vector holding them; the reading is a step and a few
    // threads' granularity from the top at most (see `ClassTracker::peak`).
    let row = text
        .lines()
        .find(|l| l.trim_start().starts_with(SPIKE))
        .expect(&text);
    let cells: Vec<&str> = row.split_whitespace().collect();
    let mib: f64 = cells[3].parse().expect(row);
    assert!((30.5..=32.1).contains(&mib) && cells[4] == "MiB", "{row}");
    // Its sites: sampled, in this file.
    let sites: Vec<&str> = text
        .lines()
        .skip_while(|l| l.trim() != format!("{SPIKE}:"))
        .skip(1)
        .take_while(|l| l.starts_with("    "))
        .collect();
    assert!(!sites.is_empty(), "{text}");
    assert!(sites.iter().any(|s| s.contains("cli.rs:")), "{text}");
    // The summary's snapshots never saw it live.
    let summary = ok(&["summary", path(&f.dump), "--classes", "50"]);
    assert!(
        summary
            .lines()
            .all(|l| !l.contains(SPIKE) || l.contains(" 0 B ")),
        "{summary}"
    );
    // A version 1 file has no peak, and the command says so.
    let v1 = ok(&["peak", path(&f.v1)]);
    assert!(v1.contains("no peak recorded"), "{v1}");
}

/// `go tool pprof -raw` on `file`: Go must be installed.
fn go_pprof_raw(file: &Path) -> String {
    let out = Command::new("go")
        .args(["tool", "pprof", "-raw"])
        .arg(file)
        // The Go installed, never one fetched for a go.mod.
        .env("GOTOOLCHAIN", "local")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "reading the profile back needs Go's pprof, and `go` did not run ({e}): install \
                 Go (apt-get install golang-go), as .ci/run does"
            )
        });
    assert!(
        out.status.success(),
        "go tool pprof -raw failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
#[ignore = "needs Go (apt-get install golang-go): cargo test -p classtrack-cli -- --ignored"]
fn pprof_writes_a_profile_go_tool_pprof_reads() {
    let f = fixture();
    let file = f.dir.join("heap.pb.gz");
    let _ = std::fs::remove_file(&file);
    writes(&["pprof", path(&f.dump), "-o", path(&file)], &file);
    let raw = go_pprof_raw(&file);
    assert!(raw.contains("PeriodType: space bytes"), "{raw}");
    assert!(
        raw.contains("alloc_objects/count alloc_space/bytes inuse_objects/count inuse_space/bytes"),
        "{raw}"
    );
    // The leak's sample: 5 blocks of 10,000 bytes, allocated and live, every one traced.
    let lines: Vec<&str> = raw.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.contains(&format!("class:[{LEAK}]")))
        .unwrap_or_else(|| panic!("no sample of {LEAK}: {raw}"));
    let values: Vec<&str> = lines[at - 1].split_whitespace().take(4).collect();
    assert_eq!(values, ["5", "50000", "5", "50000:"], "{}", lines[at - 1]);
    assert!(raw.contains("leak_block"), "{raw}");
    // Stacks start below the allocator and the sampler.
    for machinery in ["classtrack_shim::", "__rust_alloc", "core::bool"] {
        assert!(!raw.contains(machinery), "{machinery}: {raw}");
    }
    // Names keep their generic parameters: pprof strips `<...>` from a name it takes for
    // C++, leaving `::with_capacity_in` of `<alloc::vec::Vec<u8>>::with_capacity_in`.
    let top = Command::new("go")
        .args(["tool", "pprof", "-top", "-nodecount=1000"])
        .arg(&file)
        .env("GOTOOLCHAIN", "local")
        .output()
        .unwrap();
    let top = String::from_utf8(top.stdout).unwrap();
    assert!(top.contains("leak_block"), "{top}");
    for line in top.lines().skip_while(|l| !l.contains("flat%")).skip(1) {
        let name = line.split_whitespace().nth(5).unwrap_or("");
        assert!(!name.starts_with("::"), "{line}");
    }

    // The same profile as the library's for the latest snapshot.
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&file).unwrap())
        .read_to_end(&mut bytes)
        .unwrap();
    let stats = Stats::load(&f.dump).unwrap();
    assert_eq!(
        proto::Profile::decode(&bytes[..]).unwrap(),
        stats.pprof_profile(stats.snapshots.last().unwrap())
    );

    // A snapshot by label, written to standard output (a pipe here).
    let out = classtrack(&["pprof", path(&f.dump), "--snapshot", "warm", "-o", "-"]);
    assert!(out.status.success());
    assert_eq!(out.stdout[..2], [0x1f, 0x8b], "gzip's magic number");
}

#[test]
fn flamegraph_writes_an_svg_of_a_snapshot_or_one_class() {
    let f = fixture();
    let file = f.dir.join("heap.svg");
    writes(&["flamegraph", path(&f.dump), "-o", path(&file)], &file);
    let svg = std::fs::read_to_string(&file).unwrap();
    assert!(svg.starts_with("<?xml") && svg.contains(LEAK), "{svg}");
    let one = ok(&[
        "flamegraph",
        path(&f.dump),
        "--class",
        LEAK,
        "--allocated",
        "--snapshot",
        "-2",
        "-o",
        "-",
    ]);
    assert!(one.contains("<svg") && one.contains("leak_block"), "{one}");
    assert!(one.contains("allocated bytes by allocation site"), "{one}");
    assert!(!one.contains("Order"), "only the class asked for");
}

#[test]
fn html_writes_the_report_to_a_file_or_standard_output() {
    let f = fixture();
    let file = f.dir.join("report.html");
    writes(&["html", path(&f.dump), "-o", path(&file)], &file);
    let page = std::fs::read_to_string(&file).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>"), "{page}");
    assert!(page.contains(LEAK) && page.contains("<svg"));
    let piped = ok(&["html", path(&f.dump), "-o", "-"]);
    assert_eq!(piped, page, "the same page either way");
    let v1 = ok(&["html", path(&f.v1), "-o", "-"]);
    assert!(v1.contains("Order"), "a version 1 dump has a report too");
    let line = fails(&["html", path(&f.dir.join("missing.json")), "-o", "-"], 1);
    assert!(line.contains("No such file"), "{line}");
    let nowhere = f.dir.join("no such dir").join("report.html");
    let line = fails(&["html", path(&f.dump), "-o", path(&nowhere)], 1);
    assert!(line.contains("cannot write"), "{line}");
}

#[test]
fn a_version_1_dump_is_read_migrated() {
    let f = fixture();
    let text = ok(&["summary", path(&f.v1)]);
    assert!(text.contains("7: \"end\" at"), "{text}");
    assert!(text.contains("(no per-class totals"), "{text}");
    assert!(text.contains("tracked: Order 2901 alive"), "{text}");
    let stats = ok(&["stats", path(&f.v1), "--sort", "size", "--limit", "1"]);
    assert!(stats.contains("id: 99999"), "{stats}");
    let diff = ok(&["diff", path(&f.v1), "--from", "start", "--to", "end"]);
    assert!(diff.contains("allocator: +"), "{diff}");
    assert!(diff.contains("keeps no per-class totals"), "{diff}");
    let leaks = ok(&["leaks", path(&f.v1)]);
    assert!(leaks.contains("keep no per-class totals"), "{leaks}");
    // No site is kept in version 1: the profile is empty, and says so.
    let file = f.dir.join("v1.pb.gz");
    let out = classtrack(&["pprof", path(&f.v1), "-o", path(&file)]);
    assert!(out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("has no allocation site"), "{stderr}");
}

#[test]
#[ignore = "needs Go (apt-get install golang-go): cargo test -p classtrack-cli -- --ignored"]
fn go_tool_pprof_reads_the_empty_profile_of_a_version_1_dump() {
    let f = fixture();
    let file = f.dir.join("v1-go.pb.gz");
    let out = classtrack(&["pprof", path(&f.v1), "-o", path(&file)]);
    assert!(out.status.success());
    assert!(go_pprof_raw(&file).contains("Samples:"));
}

#[test]
fn unreadable_dumps_fail_with_one_line_and_status_1() {
    let f = fixture();
    let missing = f.dir.join("missing.json");
    let line = fails(&["summary", path(&missing)], 1);
    assert!(line.contains("No such file"), "{line}");

    let line = fails(&["summary", path(&f.dir)], 1);
    assert!(
        line.contains("is a directory, not a regular file"),
        "{line}"
    );

    let whole = std::fs::read(&f.dump).unwrap();
    let truncated = f.dir.join("truncated.json");
    std::fs::write(&truncated, &whole[..whole.len() / 2]).unwrap();
    let line = fails(&["leaks", path(&truncated)], 1);
    assert!(
        line.contains("not a complete classtrack stats file"),
        "{line}"
    );

    let mut stats: serde_json::Value = serde_json::from_slice(&whole).unwrap();
    stats["version"] = 99.into();
    let newer = f.dir.join("newer.json");
    std::fs::write(&newer, serde_json::to_vec(&stats).unwrap()).unwrap();
    let line = fails(&["stats", path(&newer)], 1);
    assert!(line.contains("version 99, newer than"), "{line}");

    stats["version"] = 0.into();
    let zero = f.dir.join("zero.json");
    std::fs::write(&zero, serde_json::to_vec(&stats).unwrap()).unwrap();
    let line = fails(&["diff", path(&zero)], 1);
    assert!(line.contains("which no classtrack writes"), "{line}");
}

#[test]
fn unknown_snapshots_list_what_there_is() {
    let f = fixture();
    let line = fails(&["diff", path(&f.dump), "--from", "cold"], 1);
    assert!(
        line.contains("no snapshot labelled \"cold\" in ",)
            && line.contains("its labels: \"start\", \"warm\", \"tick\" (5 snapshots), \"end\""),
        "{line}"
    );
    for index in ["8", "-9"] {
        let line = fails(&["pprof", path(&f.dump), "--snapshot", index, "-o", "-"], 1);
        assert!(
            line.contains(&format!("snapshot index {index} is out of range"))
                && line.contains("8 snapshots, 0 to 7 (or -8 to -1 from the latest)"),
            "{line}"
        );
    }
    let line = fails(&["flamegraph", path(&f.empty), "-o", "-"], 1);
    assert!(line.contains("has no snapshot"), "{line}");
    let line = fails(
        &["flamegraph", path(&f.dump), "--class", "Nothing", "-o", "-"],
        1,
    );
    assert!(
        line.contains("classes with sites there:") && line.contains(LEAK),
        "{line}"
    );
    // A dump without snapshots still summarizes.
    assert!(ok(&["summary", path(&f.empty)]).contains("no snapshot"));
}

#[test]
fn unwritable_outputs_fail_with_one_line_and_status_1() {
    let f = fixture();
    let nowhere = f.dir.join("no such dir").join("heap.pb.gz");
    let line = fails(&["pprof", path(&f.dump), "-o", path(&nowhere)], 1);
    assert!(
        line.contains("cannot write") && line.contains("heap.pb.gz"),
        "{line}"
    );
    let line = fails(&["flamegraph", path(&f.dump), "-o", path(&f.dir)], 1);
    assert!(line.contains("cannot write"), "{line}");
}

#[test]
fn usage_errors_exit_2_and_help_shows_examples() {
    let f = fixture();
    fails(&[], 2);
    fails(&["summary"], 2);
    fails(&["frobnicate", path(&f.dump)], 2);
    fails(&["stats", path(&f.dump), "--sort", "weight"], 2);
    fails(&["diff", "a.json", "b.json", "c.json"], 2);
    fails(&["pprof", path(&f.dump)], 2);
    fails(&["summary", path(&f.dump), "--classes", "-1"], 2);
    let help = ok(&["--help"]);
    for command in ["summary", "stats", "diff", "leaks", "pprof", "flamegraph"] {
        assert!(help.contains(command), "{help}");
    }
    assert!(
        help.contains("Examples:") && help.contains("Exit status"),
        "{help}"
    );
    let diff = ok(&["help", "diff"]);
    assert!(
        diff.contains("--from <SNAP>") && diff.contains("Examples:"),
        "{diff}"
    );
    assert!(ok(&["--version"]).starts_with("classtrack "));
}

#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    let f = fixture();
    // Thousands of instances: far more than a pipe holds, so writes go on after the reader
    // has gone.
    let mut child = classtrack_command()
        .args(["stats", path(&f.dump)])
        .env("RUST_BACKTRACE", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("---- INSTANCES"), "{first}");
    // The reader is dropped here: the pipe is closed, as `| head -1` does.
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}: {stderr}");
    assert_eq!(stderr, "");
}

#[test]
fn summaries_of_older_snapshots_are_shown_as_such() {
    let f = fixture();
    let text = ok(&["summary", path(&f.summaries), "--classes", "5"]);
    let old = &text[text.find("0: \"old\"").unwrap()..text.find("1: \"recent\"").unwrap()];
    // The largest user class kept, <untracked> beside it, the others summed.
    assert!(old.contains("more class"), "{old}");
    // The leak's change from "old", which left it out, is unknown, and the summary says why.
    let recent = &text[text.find("1: \"recent\"").unwrap()..];
    let row = recent.lines().find(|l| l.contains(LEAK)).unwrap();
    assert!(row.ends_with('?'), "{row}");
    assert!(
        text.contains("(change ?: the snapshot before is a summary"),
        "{text}"
    );
    let diff = ok(&["diff", path(&f.summaries), "--from", "old"]);
    assert!(
        diff.contains("note: snapshot 0 (\"old\") keeps 1 class (and sums"),
        "{diff}"
    );
    let out = classtrack(&["pprof", path(&f.summaries), "--snapshot", "old", "-o", "-"]);
    assert!(out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("only recent snapshots keep their sites"),
        "{stderr}"
    );
}

#[test]
fn check_fails_with_one_line_per_limit_exceeded() {
    let f = fixture();
    let leak_limit = format!("{LEAK}={}", LEAK_BLOCK * TICKS);
    let within = ok(&[
        "check",
        path(&f.dump),
        "--max",
        &leak_limit,
        "--max-total",
        "1GiB",
    ]);
    assert!(
        within.contains(&format!(
            "ok: {LEAK}: 48.8 KiB live at snapshot 7 (\"end\"), limit 48.8 KiB"
        )),
        "{within}"
    );
    assert!(within.contains("ok: program heap: "), "{within}");

    // One byte over, and a total far too small: two breaches, one line each, status 1.
    let over = format!("{LEAK}={}", LEAK_BLOCK * TICKS - 1);
    let out = classtrack(&["check", path(&f.dump), "--max", &over, "--max-total", "1KB"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(
        lines[0].starts_with(&format!("classtrack: {LEAK}: 48.8 KiB live at snapshot 7"))
            && lines[0].ends_with("over by 1 B"),
        "{stderr}"
    );
    assert!(
        lines[1].starts_with("classtrack: program heap: "),
        "{stderr}"
    );

    // Before the leak began (a full snapshot), the class had nothing live: within any limit.
    let start = ok(&[
        "check",
        path(&f.dump),
        "--snapshot",
        "start",
        "--max",
        &over,
    ]);
    assert!(
        start.contains(&format!("ok: {LEAK}: 0 B live at snapshot 0")),
        "{start}"
    );

    // A misspelt class must not pass: status 2, naming the classes there are.
    let line = fails(&["check", path(&f.dump), "--max", "cli test lek=1MB"], 2);
    assert!(line.contains("no class named \"cli test lek\""), "{line}");
    assert!(line.contains(LEAK), "{line}");
    let line = fails(&["check", path(&f.dump)], 2);
    assert!(line.contains("give limits to check"), "{line}");
    let line = fails(&["check", path(&f.dump), "--max", "Order=12 parsecs"], 2);
    assert!(line.contains("unknown unit"), "{line}");
}

#[test]
fn diff_fails_on_growth_beyond_a_percentage() {
    let f = fixture();
    // From "warm" to "end" the leak went from nothing to 48.8 KiB: more than any percent.
    let out = classtrack(&[
        "diff",
        path(&f.dump),
        "--from",
        "warm",
        "--to",
        "end",
        "--fail-on-growth",
        "10",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.starts_with("from \"warm\""),
        "the table still comes: {stdout}"
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.lines().any(|l| l
            == format!(
                "classtrack: {LEAK} (new class): live bytes grew from nothing to 48.8 KiB, more \
                 than 10%"
            )),
        "{stderr}"
    );
    assert!(!stderr.contains("Order"), "Order shrank: {stderr}");
    // Classes under the floor are left out; the heap as a whole grew less than 1000%.
    let quiet = ok(&[
        "diff",
        path(&f.dump),
        "--from",
        "warm",
        "--to",
        "end",
        "--fail-on-growth",
        "1000",
        "--ignore-below",
        "1MiB",
    ]);
    assert!(quiet.starts_with("from \"warm\""), "{quiet}");
    // The same snapshot twice: nothing grew.
    ok(&[
        "diff",
        path(&f.dump),
        "--from",
        "end",
        "--to",
        "end",
        "--fail-on-growth",
        "0",
    ]);
    let line = fails(&["diff", path(&f.dump), "--fail-on-growth", "ten"], 2);
    assert!(line.contains("not a percentage"), "{line}");
}

/// Runs the command with `token` in `CLASSTRACK_TOKEN` (none: the variable unset).
fn classtrack_env(args: &[&str], token: Option<&str>) -> Output {
    let mut cmd = classtrack_command();
    cmd.args(args).env("RUST_BACKTRACE", "1");
    match token {
        Some(t) => cmd.env("CLASSTRACK_TOKEN", t),
        None => cmd.env_remove("CLASSTRACK_TOKEN"),
    };
    cmd.output().expect("the classtrack binary runs")
}

/// The one line a failed command wrote, checked to be one line with status 1.
fn one_line_failure(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("classtrack: "), "{stderr}");
    stderr
}

#[test]
fn the_command_reads_a_live_endpoint_by_its_url() {
    const CLASS: &str = "cli live class";
    let tracker = ClassTracker::new();
    let kept = classtrack::scope_named(CLASS, || vec![9u8; 20_000]);
    tracker.create_snapshot("live one");
    let more = classtrack::scope_named(CLASS, || vec![9u8; 30_000]);
    tracker.create_snapshot("live two");
    let server = classtrack::ServerBuilder::new(&tracker)
        .bearer_token("cli-t0ken")
        .start()
        .unwrap();
    let url = format!("http://{}", server.local_addr());

    // The token from the environment.
    let out = classtrack_env(&["summary", &url], Some("cli-t0ken"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("\"live one\""), "{stdout}");
    assert!(stdout.contains("\"live two\""), "{stdout}");
    let row = stdout
        .lines()
        .rev()
        .find(|l| l.contains(CLASS))
        .unwrap_or_else(|| panic!("{CLASS} in:\n{stdout}"));
    assert!(row.contains("48.8 KiB"), "{row}");

    // From the option, with a trailing slash, and with the route itself.
    for target in [format!("{url}/"), format!("{url}/stats.json")] {
        let out = classtrack_env(&["--token", "cli-t0ken", "diff", &target], None);
        assert!(
            out.status.success(),
            "{target}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains(CLASS));
    }
    let out = classtrack_env(&["pprof", &url, "-o", "-"], Some("cli-t0ken"));
    assert!(out.status.success());
    assert_eq!(&out.stdout[..2], [0x1f, 0x8b], "a gzipped profile");

    // No token, a wrong one.
    let line = one_line_failure(&classtrack_env(&["summary", &url], None));
    assert!(line.contains("401"), "{line}");
    assert!(line.contains("--token or CLASSTRACK_TOKEN"), "{line}");
    let line = one_line_failure(&classtrack_env(&["leaks", &url], Some("nope")));
    assert!(line.contains("not the server's"), "{line}");
    drop((kept, more));
}

#[test]
fn urls_the_command_cannot_read_fail_with_one_line() {
    let line = one_line_failure(&classtrack_env(
        &["summary", "https://127.0.0.1:6060"],
        None,
    ));
    assert!(line.contains("https is not supported"), "{line}");
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let line = one_line_failure(&classtrack_env(
        &["summary", &format!("http://127.0.0.1:{port}")],
        None,
    ));
    assert!(line.contains("is the program running"), "{line}");
    // A server that is not classtrack's endpoint route: 404.
    let tracker = ClassTracker::new();
    let server = classtrack::serve(&tracker, "127.0.0.1:0").unwrap();
    let line = one_line_failure(&classtrack_env(
        &[
            "summary",
            &format!("http://{}/elsewhere/x.json", server.local_addr()),
        ],
        None,
    ));
    assert!(line.contains("404"), "{line}");
}

#[test]
fn stats_class_finds_any_class_among_thousands_by_part_of_its_name() {
    let tracker = classtrack::ClassTracker::new();
    let kept: Vec<Vec<u8>> = (0..3000)
        .map(|i| classtrack::scope_named(&format!("cli::tenant-{i}"), || vec![0u8; 1 + i]))
        .collect();
    tracker.create_snapshot("tenants");
    let dump = std::env::temp_dir().join(format!(
        "classtrack-cli-classes-{}.json",
        std::process::id()
    ));
    tracker.stats().dump(&dump).unwrap();
    let one = ok(&["stats", path(&dump), "--class", "cli::tenant-2999"]);
    let row = one
        .lines()
        .find(|l| l.starts_with("cli::tenant-2999"))
        .unwrap_or_else(|| panic!("{one}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    // class, live bytes (two cells: number and unit), live blocks, ...
    assert_eq!(&cells[1..4], ["2.9", "KiB", "1"], "{row}");
    assert!(one.contains(": 1\n"), "one class matched: {one}");
    // Many matches: the largest first, at most --limit, then how many more.
    let many = ok(&[
        "stats",
        path(&dump),
        "--class",
        "cli::tenant-1",
        "--limit",
        "5",
    ]);
    let rows: Vec<&str> = many
        .lines()
        .filter(|l| l.starts_with("cli::tenant-"))
        .collect();
    assert_eq!(rows.len(), 5, "{many}");
    assert!(rows[0].starts_with("cli::tenant-1999 "), "{many}");
    // tenant-1, 10-19, 100-199, 1000-1999: 1,111 classes.
    assert!(many.contains(": 1111\n"), "{many}");
    assert!(many.contains("... 1106 more"), "{many}");
    std::fs::remove_file(&dump).unwrap();
    drop(kept);
}
