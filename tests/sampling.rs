//! Sampled allocation sites: unbiased estimates, trace-every-allocation, and the pprof and
//! flamegraph outputs (with the features that write them, both on by default).

use std::alloc::System;
#[cfg(feature = "pprof")]
use std::io::Read;

#[cfg(feature = "pprof")]
use classtrack::report::pprof::proto;
#[cfg(any(feature = "html", feature = "pprof"))]
use classtrack::report::Measure;
use classtrack::{ClassTracker, TrackingAlloc};
#[cfg(feature = "pprof")]
use prost::Message;

#[global_allocator]
static ALLOC: TrackingAlloc<System> = TrackingAlloc::new(System);

/// The sampling mean and the sample channel are process-wide: the tests take turns, so that
/// one's burst of samples does not crowd out another's.
static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

fn with_mean<R>(mean: u64, f: impl FnOnce() -> R) -> R {
    let before = classtrack::sample_mean();
    classtrack::set_sample_mean(mean);
    // A thread takes a new mean up at its next sample point: allocate past the gap drawn with
    // the old mean (longer than 8 MiB once in e^16 at the default 512 KiB), outside any class
    // the tests look at.
    for _ in 0..8 {
        std::hint::black_box(vec![0u8; 1 << 20]);
    }
    let r = f();
    classtrack::set_sample_mean(before);
    r
}

/// Allocates about `total` bytes in blocks of mixed sizes (16 B to 1 MiB) and keeps them.
#[inline(never)]
fn mixed_blocks(rng: &mut fastrand::Rng, total: usize) -> Vec<Vec<u8>> {
    let mut kept = Vec::new();
    let mut bytes = 0;
    while bytes < total {
        let size = match rng.u32(0..100) {
            0..=49 => rng.usize(16..256),
            50..=89 => rng.usize(256..16_384),
            _ => rng.usize(16_384..1 << 20),
        };
        kept.push(vec![1u8; size]);
        bytes += size;
    }
    kept
}

#[test]
fn estimates_are_within_ten_percent_of_exact_on_100_mb() {
    let _turn = turn();
    let tracker = ClassTracker::new();
    tracker.create_snapshot("settled");
    let (_, dropped_before) = classtrack_shim::sample_counts();
    // A smaller mean than the default, so ~100 MB gives thousands of samples and the
    // estimate's spread (about 1/sqrt(samples)) is well inside 10%.
    let mut rng = fastrand::Rng::with_seed(42);
    let names = ["est::small_heavy", "est::mixed", "est::large_heavy"];
    let (keep, snap, dropped) = with_mean(32 * 1024, || {
        let mut keep = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let total = 30_000_000 + i * 5_000_000;
            keep.push(classtrack::scope_named(name, || {
                mixed_blocks(&mut rng, total)
            }));
        }
        let snap = tracker.create_snapshot("estimates");
        (keep, snap, classtrack_shim::sample_counts().1)
    });
    assert_eq!(dropped, dropped_before, "the sample channel overflowed");
    for name in names {
        let exact = snap.class_named(name).unwrap().live_bytes as f64;
        let estimate = snap.sampled_live_bytes(name);
        let error = (estimate - exact).abs() / exact;
        assert!(
            error < 0.10,
            "{name}: estimate {estimate:.0} vs exact {exact:.0} ({error:.3})"
        );
    }
    // The sites name the function that allocated.
    let site = snap.top_sites("est::mixed", 1)[0];
    let frames = site.frames();
    assert!(
        frames.iter().any(|f| f.function.contains("mixed_blocks")),
        "{frames:#?}"
    );
    assert!(
        !frames[0].function.contains("classtrack"),
        "machinery trimmed: {frames:#?}"
    );
    drop(keep);
    // Freed: the live estimate goes back to zero.
    let snap = tracker.create_snapshot("freed");
    for name in names {
        assert!(snap.sampled_live_bytes(name) < 1.0, "{name}");
    }
}

#[inline(never)]
fn small_suspects(n: usize) -> Vec<Box<[u8]>> {
    (0..n)
        .map(|i| vec![0u8; 10 + i % 7].into_boxed_slice())
        .collect()
}

#[test]
fn trace_every_allocation_samples_each_block_exactly() {
    let _turn = turn();
    struct Suspect;
    let tracker = ClassTracker::new();
    classtrack::trace_every_allocation::<Suspect>(true);
    let kept = classtrack::scope::<Suspect, _>(|| small_suspects(100));
    let snap = tracker.create_snapshot("suspects");
    let exact = snap.class_of::<Suspect>().unwrap();
    let name = std::any::type_name::<Suspect>();
    assert_eq!(snap.sampled_live_bytes(name), exact.live_bytes as f64);
    let samples: u64 = snap
        .top_sites(name, 100)
        .iter()
        .map(|s| s.estimate.samples)
        .sum();
    assert_eq!(samples, exact.allocations);
    classtrack::trace_every_allocation::<Suspect>(false);
    drop(kept);
}

#[cfg(any(feature = "html", feature = "pprof"))]
fn sites_snapshot(tracker: &ClassTracker) -> (std::sync::Arc<classtrack::Snapshot>, Vec<Vec<u8>>) {
    // A snapshot waits for the aggregator to catch up: the previous test's burst of frees
    // must not crowd this one's samples out of the channel.
    tracker.create_snapshot("settled");
    let (_, dropped_before) = classtrack_shim::sample_counts();
    let (snap, kept) = with_mean(16 * 1024, || {
        let mut rng = fastrand::Rng::with_seed(7);
        let kept = classtrack::scope_named("out::pprof", || mixed_blocks(&mut rng, 4_000_000));
        (tracker.create_snapshot("for outputs"), kept)
    });
    assert_eq!(
        classtrack_shim::sample_counts().1,
        dropped_before,
        "samples were dropped"
    );
    (snap, kept)
}

#[cfg(feature = "pprof")]
#[test]
fn pprof_output_decodes_with_the_expected_sample_types_and_labels() {
    let _turn = turn();
    let tracker = ClassTracker::new();
    let (snap, kept) = sites_snapshot(&tracker);
    let mut gz = Vec::new();
    snap.write_pprof(&mut gz).unwrap();
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut raw)
        .unwrap();
    let profile = proto::Profile::decode(&raw[..]).unwrap();
    let s = |i: i64| profile.string_table[i as usize].as_str();
    let types: Vec<(&str, &str)> = profile
        .sample_type
        .iter()
        .map(|t| (s(t.r#type), s(t.unit)))
        .collect();
    assert_eq!(
        types,
        [
            ("alloc_objects", "count"),
            ("alloc_space", "bytes"),
            ("inuse_objects", "count"),
            ("inuse_space", "bytes")
        ]
    );
    assert_eq!(s(profile.default_sample_type), "inuse_space");
    let ours: Vec<&proto::Sample> = profile
        .sample
        .iter()
        .filter(|smp| {
            smp.label
                .iter()
                .any(|l| s(l.key) == "class" && s(l.str) == "out::pprof")
        })
        .collect();
    assert!(!ours.is_empty());
    let inuse: i64 = ours.iter().map(|smp| smp.value[3]).sum();
    let exact = snap.class_named("out::pprof").unwrap().live_bytes as f64;
    assert!(
        (inuse as f64 - exact).abs() / exact < 0.25,
        "{inuse} vs {exact}"
    );
    // Every location id resolves, every function has a name.
    for smp in &profile.sample {
        for id in &smp.location_id {
            let loc = &profile.location[*id as usize - 1];
            assert_eq!(loc.id, *id);
            for line in &loc.line {
                let f = &profile.function[line.function_id as usize - 1];
                assert!(!s(f.name).is_empty());
            }
        }
    }
    drop(kept);
}

#[cfg(feature = "pprof")]
#[test]
#[ignore = "needs Go (apt-get install golang-go): cargo test --test sampling -- --ignored"]
fn go_tool_pprof_reads_the_profile() {
    let _turn = turn();
    let tracker = ClassTracker::new();
    let (snap, kept) = sites_snapshot(&tracker);
    let mut gz = Vec::new();
    snap.write_pprof(&mut gz).unwrap();
    let path = std::env::temp_dir().join(format!("classtrack-go-{}.pb.gz", std::process::id()));
    std::fs::write(&path, &gz).unwrap();
    let out = std::process::Command::new("go")
        .args(["tool", "pprof", "-top"])
        .arg(&path)
        .env("GOTOOLCHAIN", "local")
        .output()
        .unwrap_or_else(|e| {
            panic!("`go` did not run ({e}): install Go (apt-get install golang-go)")
        });
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("Type: inuse_space"), "{text}");
    assert!(text.contains("mixed_blocks"), "{text}");
    std::fs::remove_file(&path).unwrap();
    drop(kept);
}

/// Each sample of `profile` as (class, function names innermost first, values), sorted.
#[cfg(feature = "pprof")]
fn samples_of(profile: &proto::Profile) -> Vec<(String, Vec<String>, Vec<i64>)> {
    let s = |i: i64| profile.string_table[i as usize].clone();
    let mut samples: Vec<_> = profile
        .sample
        .iter()
        .map(|smp| {
            let class = smp.label.iter().find(|l| s(l.key) == "class").unwrap();
            let functions = smp
                .location_id
                .iter()
                .flat_map(|id| &profile.location[*id as usize - 1].line)
                .map(|line| s(profile.function[line.function_id as usize - 1].name))
                .collect();
            (s(class.str), functions, smp.value.clone())
        })
        .collect();
    samples.sort();
    samples
}

#[cfg(feature = "pprof")]
#[test]
fn stats_profile_of_a_snapshot_has_the_sites_it_kept_as_the_live_snapshot_has_them() {
    let _turn = turn();
    let tracker = ClassTracker::new();
    let (snap, kept) = sites_snapshot(&tracker);
    let stats = tracker.stats();
    let kept_snap = stats.snapshot("for outputs").unwrap();
    let from_stats = samples_of(&stats.pprof_profile(kept_snap));
    let live = samples_of(&snap.pprof_profile());
    // Stats keep the largest sites of each class (16 by default) with anything live or
    // allocated, each as the snapshot had it.
    let ours = |v: &[(String, Vec<String>, Vec<i64>)]| {
        v.iter()
            .filter(|(c, _, values)| c == "out::pprof" && (values[1] != 0 || values[3] != 0))
            .count()
    };
    assert_eq!(
        ours(&from_stats),
        ours(&live).min(tracker.retention().sites_per_class)
    );
    for sample in &from_stats {
        assert!(
            live.contains(sample),
            "{sample:?} is not in the snapshot's profile, whose values for these functions are \
             {:?}",
            live.iter()
                .filter(|l| l.0 == sample.0 && l.1 == sample.1)
                .map(|l| &l.2)
                .collect::<Vec<_>>()
        );
    }
    let profile = stats.pprof_profile(kept_snap);
    assert_eq!(profile.period, 16 * 1024);
    let mut gz = Vec::new();
    stats.write_pprof(kept_snap, &mut gz).unwrap();
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut raw)
        .unwrap();
    assert_eq!(proto::Profile::decode(&raw[..]).unwrap(), profile);
    drop(kept);
}

#[cfg(any(feature = "html", feature = "pprof"))]
#[test]
fn flamegraph_svg_is_well_formed_and_names_the_class() {
    let _turn = turn();
    let tracker = ClassTracker::new();
    let (snap, kept) = sites_snapshot(&tracker);
    let folded = snap.folded_stacks(Measure::LiveBytes);
    assert!(
        folded.iter().any(|l| l.starts_with("out::pprof;")),
        "{folded:#?}"
    );
    for line in &folded {
        let (_, n) = line.rsplit_once(' ').unwrap();
        n.parse::<u64>().unwrap();
    }
    let mut svg = Vec::new();
    snap.write_flamegraph(&mut svg, Measure::AllocatedBytes)
        .unwrap();
    let text = String::from_utf8(svg).unwrap();
    assert!(text.contains("out::pprof"));
    let mut reader = quick_xml::Reader::from_str(&text);
    let mut elements = 0;
    loop {
        match reader.read_event() {
            Ok(quick_xml::events::Event::Eof) => break,
            Ok(quick_xml::events::Event::Start(_)) => elements += 1,
            Ok(_) => {}
            Err(e) => panic!("malformed SVG at {}: {e}", reader.buffer_position()),
        }
    }
    assert!(elements > 10);
    drop(kept);
}

#[inline(never)]
fn probe_site(n: usize) -> Vec<u8> {
    std::hint::black_box(vec![3u8; n])
}

#[inline(never)]
fn probe_caller(n: usize) -> Vec<u8> {
    let v = probe_site(n);
    std::hint::black_box(v)
}

/// Whether this test binary keeps frame pointers: CI says so for its build with
/// `-C force-frame-pointers=yes`; rustc keeps them by default on AArch64 Linux and Apple
/// targets ("non-leaf") and on x86-64 macOS ("always").
fn builds_keep_frame_pointers() -> bool {
    std::env::var_os("CLASSTRACK_EXPECT_FRAME_POINTERS").is_some()
        || cfg!(any(
            all(
                target_arch = "aarch64",
                any(target_os = "linux", target_vendor = "apple")
            ),
            all(target_arch = "x86_64", target_vendor = "apple")
        ))
}

#[test]
fn frame_pointer_unwinder_agrees_with_dwarf_or_falls_back() {
    struct ByDwarf;
    struct ByFramePointers;
    let _turn = turn();
    let tracker = ClassTracker::new();
    classtrack::trace_every_allocation::<ByDwarf>(true);
    classtrack::trace_every_allocation::<ByFramePointers>(true);
    classtrack::set_unwinder(classtrack::Unwinder::Dwarf);
    let a = classtrack::scope::<ByDwarf, _>(|| probe_caller(100));
    classtrack::set_unwinder(classtrack::Unwinder::FramePointers);
    let b = classtrack::scope::<ByFramePointers, _>(|| probe_caller(100));
    classtrack::set_unwinder(classtrack::Unwinder::Auto);
    // The check made when sampling started found frame pointers exactly in a build with them:
    // one built with `-C force-frame-pointers=yes`, or for a target whose code keeps them by
    // default (rustc's AArch64 Linux and Apple targets and x86-64 macOS do).
    let expect_fp = builds_keep_frame_pointers();
    assert_eq!(classtrack::frame_pointers_detected(), Some(expect_fp));
    let snap = tracker.create_snapshot("unwinders");
    let names = |s: &classtrack::Site| -> Vec<String> {
        s.frames().into_iter().map(|f| f.function).collect()
    };
    let dwarf = names(snap.top_sites_of::<ByDwarf>(1)[0]);
    let fp = names(snap.top_sites_of::<ByFramePointers>(1)[0]);
    assert!(dwarf.iter().any(|f| f.contains("probe_site")), "{dwarf:#?}");
    // Without frame pointers in the build the walk falls back to DWARF: same site either way.
    assert!(fp.iter().any(|f| f.contains("probe_site")), "{fp:#?}");
    if expect_fp {
        // Built with frame pointers: the walk itself must agree with the DWARF unwinder.
        let from = |v: &[String]| -> Vec<String> {
            let i = v.iter().position(|f| f.contains("probe_site")).unwrap();
            v[i..].iter().take(3).cloned().collect()
        };
        assert_eq!(from(&fp), from(&dwarf));
    }
    classtrack::trace_every_allocation::<ByDwarf>(false);
    classtrack::trace_every_allocation::<ByFramePointers>(false);
    drop((a, b));
}

/// Blocks allocated from inside a C library's callback (so the stack runs through libc).
static FROM_QSORT: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());

extern "C" fn compare_and_allocate(a: *const libc::c_void, b: *const libc::c_void) -> libc::c_int {
    FROM_QSORT.lock().unwrap().push(probe_caller(24));
    // SAFETY: qsort passes pointers to two elements of the `u32` array being sorted.
    unsafe { (*(a as *const u32)).cmp(&*(b as *const u32)) as libc::c_int }
}

/// Sorts with the C library's `qsort`, whose comparisons allocate.
#[inline(never)]
fn sort_through_libc() {
    let mut v: Vec<u32> = (0..8).rev().collect();
    // SAFETY: `v` holds `v.len()` elements of 4 bytes, compared by a matching comparator.
    unsafe {
        libc::qsort(
            v.as_mut_ptr().cast(),
            v.len(),
            4,
            Some(compare_and_allocate),
        )
    };
    std::hint::black_box(v);
}

#[test]
fn cached_dwarf_unwinder_gives_the_platform_unwinders_stacks() {
    struct Cached;
    struct Uncached;
    let _turn = turn();
    let tracker = ClassTracker::new();
    classtrack::trace_every_allocation::<Cached>(true);
    classtrack::trace_every_allocation::<Uncached>(true);
    let fallbacks_before = classtrack::cached_dwarf_fallbacks();
    // Room for every block the comparisons keep, so that growing the list allocates nothing.
    FROM_QSORT.lock().unwrap().reserve(1000);
    fn run<C: 'static>(unwinder: classtrack::Unwinder) -> (Vec<u8>, Vec<u8>) {
        classtrack::set_unwinder(unwinder);
        classtrack::scope::<C, _>(|| {
            let on_main = probe_caller(100);
            // Another thread's stack, and a stack that runs through the C library.
            let on_thread = std::thread::spawn(|| classtrack::scope::<C, _>(|| probe_caller(200)))
                .join()
                .unwrap();
            sort_through_libc();
            (on_main, on_thread)
        })
    }
    let a = run::<Cached>(classtrack::Unwinder::Dwarf);
    let b = run::<Uncached>(classtrack::Unwinder::DwarfUncached);
    classtrack::set_unwinder(classtrack::Unwinder::Auto);
    if cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        assert_eq!(classtrack::cached_dwarf_enabled(), Some(true));
        // Every stack (main thread, another thread, through libc) was the cached unwinder's.
        assert_eq!(classtrack::cached_dwarf_fallbacks(), fallbacks_before);
    }
    let snap = tracker.create_snapshot("cached and uncached");
    let stacks = |name: &str| -> Vec<Vec<String>> {
        let mut v: Vec<Vec<String>> = snap
            .top_sites(name, 100)
            .iter()
            .map(|s| s.frames().into_iter().map(|f| f.function).collect())
            .collect();
        v.sort();
        v
    };
    let cached = stacks(std::any::type_name::<Cached>());
    let uncached = stacks(std::any::type_name::<Uncached>());
    assert!(cached.len() >= 3, "{cached:#?}");
    // Frames the two unwinders see the same way: every site, frame by frame, root included.
    assert_eq!(cached, uncached);
    assert!(
        cached
            .iter()
            .any(|s| s.iter().any(|f| f.contains("sort_through_libc"))),
        "no stack through qsort: {cached:#?}"
    );
    classtrack::trace_every_allocation::<Cached>(false);
    classtrack::trace_every_allocation::<Uncached>(false);
    drop((a, b));
    FROM_QSORT.lock().unwrap().clear();
}

/// One of eight allocation sites (eight distinct return addresses).
#[inline(never)]
fn leaf(k: usize) -> Vec<u8> {
    use std::hint::black_box;
    match k % 8 {
        0 => black_box(vec![0u8; 10]),
        1 => black_box(vec![1u8; 11]),
        2 => black_box(vec![2u8; 12]),
        3 => black_box(vec![3u8; 13]),
        4 => black_box(vec![4u8; 14]),
        5 => black_box(vec![5u8; 15]),
        6 => black_box(vec![6u8; 16]),
        _ => black_box(vec![7u8; 17]),
    }
}

/// `leaf(k)` called `depth` frames down: a distinct stack for each (depth, k % 8).
#[inline(never)]
fn at_depth(depth: usize, k: usize) -> Vec<u8> {
    if depth == 0 {
        leaf(k)
    } else {
        std::hint::black_box(at_depth(depth - 1, k))
    }
}

#[test]
fn every_sample_finds_its_stack_when_threads_forget_the_stacks_they_sent() {
    struct ManyStacks;
    let _turn = turn();
    let tracker = ClassTracker::new();
    classtrack::trace_every_allocation::<ManyStacks>(true);
    let (_, dropped_before) = classtrack_shim::sample_counts();
    // 304 distinct stacks, twice over: more than a thread remembers having sent, so some are
    // sent again and must be recognised as the same stacks.
    let kept: Vec<Vec<u8>> = classtrack::scope::<ManyStacks, _>(|| {
        let mut kept = Vec::with_capacity(608);
        for _ in 0..std::hint::black_box(2) {
            for depth in 0..38 {
                for k in 0..8 {
                    kept.push(at_depth(depth, k));
                }
            }
        }
        kept
    });
    let snap = tracker.create_snapshot("many stacks");
    assert_eq!(snap.sampling.dropped, dropped_before, "{:?}", snap.sampling);
    let exact = snap.class_of::<ManyStacks>().unwrap();
    let name = std::any::type_name::<ManyStacks>();
    assert_eq!(snap.sampled_live_bytes(name), exact.live_bytes as f64);
    let sites = snap.top_sites(name, 10_000);
    // The list that keeps the blocks is one more site.
    let leaf_sites: Vec<_> = sites
        .iter()
        .filter(|s| s.frames().iter().any(|f| f.function.contains("leaf")))
        .collect();
    assert_eq!(leaf_sites.len(), 304);
    assert!(leaf_sites.iter().all(|s| s.estimate.samples == 2));
    classtrack::trace_every_allocation::<ManyStacks>(false);
    drop(kept);
}

/// Blocks allocated from code outside every module (a hand-written "JIT" function).
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
static FROM_JIT: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
extern "C" fn allocate_for_jit() {
    FROM_JIT.lock().unwrap().push(probe_caller(48));
}

/// A function written to an anonymous executable page, with no unwind tables (as
/// JIT-compiled code), that calls `allocate_for_jit`: `push rbp; mov rbp, rsp;
/// call [rip + 2]; pop rbp; ret`, then the callee's address. Unmapped on drop.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
struct JitCode(*mut libc::c_void);

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
impl JitCode {
    fn new() -> JitCode {
        let mut code: Vec<u8> = vec![
            0x55, 0x48, 0x89, 0xe5, 0xff, 0x15, 0x02, 0, 0, 0, 0x5d, 0xc3,
        ];
        code.extend_from_slice(&(allocate_for_jit as extern "C" fn() as usize).to_le_bytes());
        // SAFETY: a fresh private mapping, written while writable, then made read+execute.
        unsafe {
            let page = libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(page, libc::MAP_FAILED);
            std::ptr::copy_nonoverlapping(code.as_ptr(), page.cast::<u8>(), code.len());
            assert_eq!(
                libc::mprotect(page, 4096, libc::PROT_READ | libc::PROT_EXEC),
                0
            );
            JitCode(page)
        }
    }

    #[inline(never)]
    fn call(&self) {
        // SAFETY: the page holds a complete function that keeps the ABI (the stack aligned at
        // its call) and calls a plain `extern "C" fn()`.
        let f: extern "C" fn() = unsafe { std::mem::transmute(self.0) };
        f();
    }
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
impl Drop for JitCode {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, no longer running.
        unsafe { libc::munmap(self.0, 4096) };
    }
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[test]
fn stacks_through_unknown_code_go_to_the_platform_unwinder() {
    struct ThroughJit;
    let _turn = turn();
    let tracker = ClassTracker::new();
    FROM_JIT.lock().unwrap().reserve(10);
    classtrack::trace_every_allocation::<ThroughJit>(true);
    classtrack::set_unwinder(classtrack::Unwinder::Dwarf);
    let before = classtrack::cached_dwarf_fallbacks();
    let jit = JitCode::new();
    classtrack::scope::<ThroughJit, _>(|| jit.call());
    let after = classtrack::cached_dwarf_fallbacks();
    classtrack::set_unwinder(classtrack::Unwinder::Auto);
    assert_eq!(classtrack::cached_dwarf_enabled(), Some(true));
    // The cached unwinder met an address in no module it knows, and handed the stack over.
    assert_eq!(after - before, 1);
    let snap = tracker.create_snapshot("through JIT code");
    let sites = snap.top_sites_of::<ThroughJit>(10);
    assert_eq!(sites.len(), 1);
    let frames: Vec<String> = sites[0].frames().into_iter().map(|f| f.function).collect();
    // The platform unwinder's stack: from the allocation up to the unknown code at least.
    assert!(
        frames.iter().any(|f| f.contains("allocate_for_jit")),
        "{frames:#?}"
    );
    classtrack::trace_every_allocation::<ThroughJit>(false);
    FROM_JIT.lock().unwrap().clear();
}
