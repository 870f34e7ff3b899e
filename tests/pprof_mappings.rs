//! pprof profiles' mappings: the executable first, with its path and GNU build id, and each
//! location's address in its mapping; `go tool pprof BINARY PROFILE` reads them, and names the
//! functions of a profile that has their addresses alone (as one from a stripped binary).
#![cfg(all(target_os = "linux", feature = "pprof"))]

use std::alloc::System;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use classtrack::report::pprof::proto;
use classtrack::{ClassTracker, TrackingAlloc};
use prost::Message;

#[global_allocator]
static ALLOC: TrackingAlloc<System> = TrackingAlloc::new(System);

const CLASS: &str = "mappings::blocks";

/// Allocates 64 blocks of 4 KiB in `CLASS`, every one traced.
#[inline(never)]
fn allocate_mapped_blocks() -> Vec<Vec<u8>> {
    classtrack::scope_named(CLASS, || {
        (0..64)
            .map(|i| std::hint::black_box(vec![i as u8; 4096]))
            .collect()
    })
}

/// A profile of a snapshot with `CLASS`'s sites, and the blocks (to keep them live).
fn profile() -> (proto::Profile, Vec<Vec<u8>>) {
    let (p, _, kept) = profiles();
    (p, kept)
}

/// The profiles of a snapshot with `CLASS`'s sites, from the snapshot and from its stats
/// dumped and loaded, and the blocks (to keep them live).
fn profiles() -> (proto::Profile, proto::Profile, Vec<Vec<u8>>) {
    let tracker = ClassTracker::new();
    classtrack::trace_every_allocation_named(CLASS, true);
    let kept = allocate_mapped_blocks();
    classtrack::trace_every_allocation_named(CLASS, false);
    let snap = tracker.create_snapshot("mapped");
    let path = std::env::temp_dir().join(format!(
        "classtrack-mappings-dump-{}-{:?}.json",
        std::process::id(),
        std::thread::current().id()
    ));
    tracker.stats().dump(&path).unwrap();
    let stats = classtrack::Stats::load(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let last = stats.snapshots.last().unwrap();
    (snap.pprof_profile(), stats.pprof_profile(last), kept)
}

fn s(p: &proto::Profile, i: i64) -> &str {
    &p.string_table[i as usize]
}

/// The function names at `loc`.
fn names<'a>(p: &'a proto::Profile, loc: &proto::Location) -> Vec<&'a str> {
    loc.line
        .iter()
        .map(|l| s(p, p.function[l.function_id as usize - 1].name))
        .collect()
}

#[test]
fn the_executable_is_the_first_mapping_and_locations_point_into_theirs() {
    let (p, kept) = profile();
    assert!(!p.mapping.is_empty(), "no mapping");
    let exe = std::fs::canonicalize(std::env::current_exe().unwrap()).unwrap();
    let main = &p.mapping[0];
    assert_eq!(PathBuf::from(s(&p, main.filename)), exe);
    assert_eq!(main.id, 1);
    let id = s(&p, main.build_id);
    assert!(
        id.len() >= 16 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "build id {id:?}"
    );
    // The build id is the one in the file's note (`readelf -n` shows it too).
    let file = std::fs::read(&exe).unwrap();
    let needle: Vec<u8> = (0..id.len() / 2)
        .map(|i| u8::from_str_radix(&id[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    assert!(
        file.windows(needle.len()).any(|w| w == needle),
        "the build id's bytes are in the executable"
    );
    for m in &p.mapping {
        assert!(m.memory_start < m.memory_limit, "{m:?}");
    }
    // Every location with a mapping has its address inside it.
    let mut ours = 0;
    for loc in &p.location {
        if loc.mapping_id == 0 {
            continue;
        }
        let m = &p.mapping[loc.mapping_id as usize - 1];
        assert!(
            (m.memory_start..m.memory_limit).contains(&loc.address),
            "{:#x} outside {m:?}",
            loc.address
        );
        if names(&p, loc)
            .iter()
            .any(|n| n.ends_with("allocate_mapped_blocks"))
        {
            assert_eq!(loc.mapping_id, 1, "this test's code is the executable's");
            ours += 1;
        }
    }
    assert!(ours > 0, "a location names allocate_mapped_blocks");
    assert!(
        main.has_functions,
        "the executable's frames were symbolized"
    );
    drop(kept);
}

/// `p` without any name, file or line: each location its address alone, each mapping marked as
/// not symbolized (what a profile of a stripped binary is).
fn addresses_only(mut p: proto::Profile) -> proto::Profile {
    for loc in &mut p.location {
        loc.line.clear();
    }
    p.function.clear();
    for m in &mut p.mapping {
        m.has_functions = false;
        m.has_filenames = false;
        m.has_line_numbers = false;
        m.has_inline_frames = false;
    }
    p
}

/// Runs `go tool pprof ARGS` in a directory of its own; returns stdout and stderr.
fn go_pprof(dir: &std::path::Path, args: &[&str]) -> (String, String) {
    let out = Command::new("go")
        .args(["tool", "pprof"])
        .args(args)
        .env("PPROF_TMPDIR", dir)
        .env("HOME", dir)
        .env("GOTOOLCHAIN", "local")
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("`go` runs (Debian: apt-get install golang-go)");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "go tool pprof {args:?}: {stderr}");
    (stdout, stderr)
}

#[test]
#[ignore = "needs go: apt-get install golang-go && cargo test --test pprof_mappings -- --include-ignored"]
fn go_tool_pprof_names_the_functions_of_addresses_with_the_binary() {
    let (p, kept) = profile();
    let dir = std::env::temp_dir().join(format!("classtrack-mappings-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, p: &proto::Profile| {
        let path = dir.join(name);
        let mut gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&path).unwrap(),
            flate2::Compression::default(),
        );
        gz.write_all(&p.encode_to_vec()).unwrap();
        gz.finish().unwrap();
        path.display().to_string()
    };
    let exe = std::env::current_exe().unwrap().display().to_string();

    // As taken: the binary given, no warning, the function named.
    let full = write("full.pb.gz", &p);
    let (stdout, stderr) = go_pprof(&dir, &["-traces", &exe, &full]);
    assert!(
        !stderr.contains("Main binary filename not available"),
        "{stderr}"
    );
    assert!(
        stdout.contains("allocate_mapped_blocks"),
        "{stdout}\n{stderr}"
    );

    // Addresses alone: `go tool pprof` names them from the binary; a dump's profile too.
    let (_, dumped, more) = profiles();
    let bare = write("dumped-bare.pb.gz", &addresses_only(dumped));
    let (stdout, stderr) = go_pprof(&dir, &["-symbolize=local", "-traces", &exe, &bare]);
    assert!(
        stdout.contains("allocate_mapped_blocks"),
        "{stdout}\n{stderr}"
    );
    drop(more);
    let bare = write("bare.pb.gz", &addresses_only(p));
    let (stdout, stderr) = go_pprof(&dir, &["-symbolize=local", "-traces", &exe, &bare]);
    assert!(
        !stderr.contains("Main binary filename not available"),
        "{stderr}"
    );
    assert!(
        stdout.contains("allocate_mapped_blocks"),
        "{stdout}\n{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    drop(kept);
}

/// The addresses of the locations that name `function`.
fn addresses_of(p: &proto::Profile, function: &str) -> Vec<u64> {
    let mut a: Vec<u64> = p
        .location
        .iter()
        .filter(|l| names(p, l).iter().any(|n| n.ends_with(function)))
        .map(|l| l.address)
        .collect();
    a.sort_unstable();
    a
}

#[test]
fn a_dumps_profile_has_the_mappings_and_addresses_of_the_process_it_came_from() {
    let (live, dumped, kept) = profiles();
    assert_eq!(live.mapping.len(), dumped.mapping.len());
    for (a, b) in live.mapping.iter().zip(&dumped.mapping) {
        assert_eq!(s(&live, a.filename), s(&dumped, b.filename));
        assert_eq!(s(&live, a.build_id), s(&dumped, b.build_id));
        assert_eq!(
            (a.memory_start, a.memory_limit, a.file_offset),
            (b.memory_start, b.memory_limit, b.file_offset)
        );
    }
    let at = addresses_of(&dumped, "allocate_mapped_blocks");
    assert!(!at.is_empty() && at.iter().all(|&a| a != 0), "{at:?}");
    assert_eq!(at, addresses_of(&live, "allocate_mapped_blocks"));
    drop(kept);
}

#[test]
fn a_dump_without_mappings_loads_and_its_profile_has_none() {
    let (_, _, kept) = profiles();
    let tracker = ClassTracker::new();
    tracker.create_snapshot("one");
    let path = std::env::temp_dir().join(format!(
        "classtrack-mappings-old-{}.json",
        std::process::id()
    ));
    tracker.stats().dump(&path).unwrap();
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    std::fs::remove_file(&path).unwrap();
    // As a dump written before mappings were kept.
    let object = json.as_object_mut().unwrap();
    assert!(
        object.remove("mappings").is_some(),
        "a dump keeps the mappings"
    );
    object.remove("stack_addresses");
    let bytes = serde_json::to_vec(&json).unwrap();
    let stats = classtrack::Stats::from_json(&bytes, "an older dump").unwrap();
    let p = stats.pprof_profile(stats.snapshots.last().unwrap());
    assert!(p.mapping.is_empty());
    assert!(p
        .location
        .iter()
        .all(|l| l.mapping_id == 0 && l.address == 0));
    drop(kept);
}

#[test]
fn a_profile_decodes_after_gzip() {
    let (p, kept) = profile();
    let tracker = ClassTracker::new();
    let mut gz = Vec::new();
    tracker
        .create_snapshot("again")
        .write_pprof(&mut gz)
        .unwrap();
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut raw)
        .unwrap();
    let again = proto::Profile::decode(&raw[..]).unwrap();
    assert_eq!(
        s(&again, again.mapping[0].filename),
        s(&p, p.mapping[0].filename)
    );
    drop(kept);
}
