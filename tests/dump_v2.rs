//! Stats format 2: what a dump keeps of every snapshot (every class's totals, the allocator's,
//! process memory, overhead, the sampler, sites with symbolized stacks), that older snapshots
//! are summarized and the whole stays bounded, and that version 1 files load migrated.

use std::alloc::System;
use std::hint::black_box;
use std::path::PathBuf;

use classtrack::{ClassTracker, Retention, Stats, TrackingAlloc, STATS_VERSION};

#[global_allocator]
static ALLOC: TrackingAlloc<System> = TrackingAlloc::new(System);

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("classtrack-dump-v2-{}-{name}", std::process::id()))
}

fn round_trip(stats: &Stats, name: &str) -> Stats {
    let path = temp_path(name);
    stats.dump(&path).unwrap();
    let loaded = Stats::load(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    loaded
}

#[inline(never)]
fn allocate_sited_blocks() -> Vec<Vec<u8>> {
    classtrack::scope_named("dump::sited", || {
        (0..10).map(|_| black_box(vec![7u8; 4096])).collect()
    })
}

#[test]
fn a_dump_keeps_every_class_its_allocator_totals_and_sites() {
    classtrack::trace_every_allocation_named("dump::sited", true);
    let tracker = ClassTracker::new();
    let blocks = allocate_sited_blocks();
    let snap = tracker.create_snapshot("with blocks");
    let stats = tracker.stats();
    let loaded = round_trip(&stats, "classes.json");
    assert_eq!(loaded, stats);
    assert_eq!(loaded.version, STATS_VERSION);

    let s = loaded.snapshot("with blocks").unwrap();
    assert!(s.full);
    assert_eq!(
        s.classes, snap.classes,
        "every class, as the snapshot had it"
    );
    assert_eq!(s.allocator, snap.allocator);
    assert_eq!(s.overhead, snap.overhead);
    assert_eq!(s.process, snap.process);
    assert_eq!(s.sampling, snap.sampling);
    assert!(s.allocator_installed);
    assert_eq!(s.omitted, Default::default());
    // Reserved classes included, and the totals add up to the allocator's.
    assert!(s.class_named(classtrack::UNTRACKED_CLASS).is_some());
    assert!(
        s.class_named(classtrack::OVERHEAD_CLASS)
            .unwrap()
            .live_bytes
            > 0
    );
    assert_eq!(
        s.classes.iter().map(|c| c.allocations).sum::<u64>(),
        s.allocator.allocations
    );
    let sited = s.class_named("dump::sited").unwrap();
    // Ten 4 KiB blocks and the vector holding them (10 × 24 bytes).
    assert_eq!((sited.live_bytes, sited.live_blocks), (10 * 4096 + 240, 11));

    // Every allocation of the class was traced: the sites are exact, and their stacks name
    // this file's function, file and line.
    let sites = s.sites_of("dump::sited");
    assert!(
        !sites.is_empty(),
        "{} sites in the snapshot, {} of the class; {} kept in the stats",
        snap.sites.len(),
        snap.top_sites("dump::sited", 100).len(),
        s.sites.len()
    );
    let live: f64 = sites.iter().map(|s| s.estimate.live_bytes).sum();
    assert_eq!(live, (10 * 4096 + 240) as f64);
    let frames = loaded.frames(sites[0]);
    let ours = frames
        .iter()
        .find(|f| f.function.contains("allocate_sited_blocks"))
        .unwrap_or_else(|| panic!("no frame of this test in {frames:#?}"));
    assert!(ours.file.as_deref().unwrap().ends_with("tests/dump_v2.rs"));
    assert!(ours.line.unwrap() > 0);
    // Each stack is kept once.
    let mut stacks = loaded.stacks.clone();
    stacks.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    stacks.dedup();
    assert_eq!(stacks.len(), loaded.stacks.len());
    drop(blocks);
    classtrack::trace_every_allocation_named("dump::sited", false);
}

#[test]
fn older_snapshots_keep_the_largest_classes_and_sum_the_rest() {
    let tracker = ClassTracker::new();
    tracker
        .set_retention(Retention::new().recent_snapshots(1).summary_classes(3))
        .unwrap();
    let kept: Vec<Vec<u8>> = (1..=10)
        .map(|i| classtrack::scope_named(&format!("dump::summary{i}"), || vec![0u8; i * 1000]))
        .collect();
    let first = tracker.create_snapshot("first");
    tracker.create_snapshot("second");
    let stats = tracker.stats();
    assert_eq!(stats.snapshots.len(), 2);
    let summary = &stats.snapshots[0];
    assert!(!summary.full);
    assert!(stats.snapshots[1].full);
    assert!(summary.sites.is_empty());

    let mut users: Vec<_> = first.user_classes().collect();
    users.sort_by(|a, b| b.live_bytes.cmp(&a.live_bytes).then(a.id.cmp(&b.id)));
    let (top, rest) = users.split_at(3);
    let kept_users: Vec<&str> = summary.user_classes().map(|c| &*c.name).collect();
    let mut top_names: Vec<&str> = top.iter().map(|c| &*c.name).collect();
    top_names.sort_by_key(|n| first.class_named(n).unwrap().id);
    assert_eq!(kept_users, top_names);
    assert_eq!(
        summary.classes.len(),
        5,
        "the two reserved classes and the three largest"
    );
    assert_eq!(summary.omitted.classes, rest.len() as u64);
    assert_eq!(
        summary.omitted.live_bytes,
        rest.iter().map(|c| c.live_bytes).sum::<u64>()
    );
    assert_eq!(
        summary.omitted.allocations,
        rest.iter().map(|c| c.allocations).sum::<u64>()
    );
    assert_eq!(
        summary.classes.iter().map(|c| c.live_bytes).sum::<u64>() + summary.omitted.live_bytes,
        summary.allocator.live_bytes
    );
    assert_eq!(round_trip(&stats, "summary.json"), stats);
    drop(kept);
}

#[test]
fn a_dump_stays_bounded_however_long_the_tracker_runs() {
    let tracker = ClassTracker::new();
    tracker
        .set_retention(
            Retention::new()
                .recent_snapshots(8)
                .snapshot_history(32)
                .summary_classes(8)
                .sites_per_class(4),
        )
        .unwrap();
    classtrack::set_sample_mean(4096);
    let mut kept = Vec::new();
    let mut size_at = Vec::new();
    for round in 0..400 {
        for class in 0..300 {
            kept.push(classtrack::scope_named(
                &format!("dump::bounded{class}"),
                || black_box(vec![round as u8; 64 + class]),
            ));
        }
        tracker.create_snapshot("round");
        if round == 199 || round == 399 {
            let path = temp_path(&format!("bounded-{round}.json"));
            tracker.stats().dump(&path).unwrap();
            size_at.push(std::fs::metadata(&path).unwrap().len());
            std::fs::remove_file(&path).unwrap();
        }
    }
    let stats = tracker.stats();
    assert!(stats.snapshots.len() <= 8 + 32, "{}", stats.snapshots.len());
    for s in stats.snapshots.iter().filter(|s| !s.full) {
        assert!(s.classes.len() <= 2 + 8);
        assert!(s.sites.is_empty());
    }
    for s in stats.snapshots.iter().filter(|s| s.full) {
        let mut per_class = std::collections::HashMap::new();
        for site in &s.sites {
            *per_class.entry(site.class.as_str()).or_insert(0) += 1;
        }
        assert!(per_class.values().all(|&n| n <= 4), "{per_class:?}");
    }
    // Each stack is kept once, and only for a kept site.
    let sites: usize = stats.snapshots.iter().map(|s| s.sites.len()).sum();
    assert!(stats.stacks.len() <= sites);
    // Twice the snapshots, not twice the file. What can still grow is the sampling's doing
    // (sites first seen late, each with its stack of up to 32 frames, about 15 KB here) and
    // the figures' digits: about 8% from 200 to 400 snapshots.
    println!(
        "dump after 200 snapshots: {} B, after 400: {} B",
        size_at[0], size_at[1]
    );
    assert!(
        size_at[1] as f64 <= size_at[0] as f64 * 1.25,
        "{} B after 200 snapshots, {} B after 400",
        size_at[0],
        size_at[1]
    );
    drop(kept);
}

#[test]
fn leak_suspects_and_diffs_survive_a_dump() {
    let tracker = ClassTracker::new();
    let mut leak = Vec::new();
    for i in 0..6 {
        leak.push(classtrack::scope_named("dump::leak", || {
            black_box(vec![i as u8; 1000])
        }));
        tracker.create_snapshot(&format!("tick {i}"));
    }
    let stats = tracker.stats();
    let loaded = round_trip(&stats, "suspects.json");
    let suspects = loaded.leak_suspects(5, 3);
    assert_eq!(suspects, stats.leak_suspects(5, 3));
    let live = tracker.leak_suspects(5, 3);
    let leak_suspect = suspects.iter().find(|s| &*s.name == "dump::leak").unwrap();
    let live_suspect = live.iter().find(|s| &*s.name == "dump::leak").unwrap();
    assert_eq!(
        (
            leak_suspect.grew_in,
            leak_suspect.intervals,
            leak_suspect.growth_bytes
        ),
        (5, 5, 5000)
    );
    assert_eq!(leak_suspect.growth_bytes, live_suspect.growth_bytes);
    assert_eq!(leak_suspect.bytes_per_second, live_suspect.bytes_per_second);

    let (first, last) = (&loaded.snapshots[0], &loaded.snapshots[5]);
    let diff = last.diff(first);
    let snaps = tracker.snapshots();
    assert_eq!(diff, snaps[5].diff(&snaps[0]));
    assert_eq!(
        diff.class_named("dump::leak").unwrap().live_bytes_change,
        5000
    );
    drop(leak);
}

#[test]
fn version_1_files_load_migrated() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/stats-v1.json");
    let stats = Stats::load(path).unwrap();
    assert_eq!(stats.version, STATS_VERSION);
    assert_eq!(stats.snapshots.len(), 4);
    let s = &stats.snapshots[0];
    assert_eq!(s.description, "step 0");
    assert!(!s.full);
    assert!(s.classes.is_empty() && s.sites.is_empty());
    assert_eq!(
        (s.allocator.live_bytes, s.allocator.live_blocks),
        (1_478_648, 64)
    );
    assert_eq!(s.overhead.tracker_bytes, 1_477_034);
    assert_eq!(s.overhead.total_bytes(), 1_495_994);
    assert_eq!(s.process.unwrap().resident_bytes, 7_086_080);
    assert!(s.allocator_installed);
    assert_eq!(s.tracked[0].name, "v1dump::Order");
    assert_eq!(stats.instances.len(), 3);
    assert!(stats.instances[0].trace[0].starts_with("v1dump::main"));

    let mut out = Vec::new();
    stats.print_summary(&mut out).unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("\"after drop\""), "{out}");
    // Migrated once, written in the current format.
    assert_eq!(round_trip(&stats, "migrated.json"), stats);
}
