//! The heap at its peak (`ClassTracker::peak`): a spike of 200 MB in one class, held for
//! 40 ms between two periodic snapshots 1 s apart, is recorded with its bytes within the
//! stated bound; a smaller spike of another class later does not replace it; threads
//! allocating the spike together; `reset_peak`; a periodic snapshot's per-class
//! `peak_seen_bytes` counts the spike that no periodic snapshot saw.
//!
//! The tests run one at a time (they read the process's heap, which every test changes).

use std::alloc::System;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant, SystemTime};

use classtrack::{ClassTracker, Snapshot, TrackingAlloc, PEAK_GRANULARITY};

#[global_allocator]
static ALLOC: TrackingAlloc<System> = TrackingAlloc::new(System);

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const MB: u64 = 1 << 20;

/// The stated bound for a true peak of `bytes` with `threads` threads allocating: 1% of it (at
/// least the granularity) plus threads × the granularity.
fn bound(bytes: u64, threads: u64) -> u64 {
    (bytes / 100).max(PEAK_GRANULARITY) + threads * PEAK_GRANULARITY
}

/// `total` bytes of class `name` in blocks of `block` bytes (zeroed: the pages are not
/// touched, so a 200 MB spike takes milliseconds), and the class's bytes: the blocks and the
/// vector that holds them.
fn spike(name: &str, total: u64, block: usize) -> (Vec<Vec<u8>>, u64) {
    let n = (total / block as u64) as usize;
    let blocks = classtrack::scope_named(name, || {
        let mut v = Vec::with_capacity(n);
        v.extend((0..n).map(|_| vec![0u8; block]));
        v
    });
    (blocks, total + (n * std::mem::size_of::<Vec<u8>>()) as u64)
}

fn live(snap: &Snapshot, name: &str) -> u64 {
    snap.class_named(name).map_or(0, |c| c.live_bytes)
}

fn user_bytes(snap: &Snapshot) -> u64 {
    snap.user_classes().map(|c| c.live_bytes).sum()
}

/// Waits until the watcher's reading holds at least `bytes` of class `name` (it runs on its
/// own thread), up to 5 s; returns when it saw it, after `since`.
fn recorded_after(tracker: &ClassTracker, name: &str, bytes: u64, since: SystemTime) -> Duration {
    let start = Instant::now();
    loop {
        // Not `tracker.peak()`: it reads the counters itself, and must not stand in for the
        // watcher. `snapshots` does not read them.
        if let Some(at) = recorded(tracker).filter(|p| live(p, name) >= bytes) {
            return at.timestamp.duration_since(since).unwrap_or_default();
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the watcher did not record {name} at {bytes} bytes"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The watcher's recorded peak, without a reading of our own.
fn recorded(tracker: &ClassTracker) -> Option<Arc<Snapshot>> {
    tracker.__recorded_peak()
}

/// How long a spike is held: the heap must stay at its peak while the watcher wakes and
/// reads the counters.
const HOLD: Duration = Duration::from_millis(40);

/// Holds a spike (the caller keeps it live) for [`HOLD`] from `start`, and longer if the
/// watcher has not read class `name` at `bytes` or more by then: on a machine busy with other
/// work it can take longer to get a CPU (said on standard output; the latency test holds the
/// watcher to its figures). Panics after 5 s.
fn hold(tracker: &ClassTracker, name: &str, bytes: u64, start: Instant) {
    std::thread::sleep(HOLD.saturating_sub(start.elapsed()));
    let read = || recorded(tracker).is_some_and(|p| live(&p, name) >= bytes);
    if read() {
        return;
    }
    while !read() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the watcher did not read {name} at {bytes} bytes in 5 s"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    println!(
        "the watcher read {name} after {:?}, past the {HOLD:?} hold (a busy machine)",
        start.elapsed()
    );
}

#[test]
fn a_spike_between_periodic_snapshots_is_the_peak() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let tracker = ClassTracker::new();
    let (base, base_bytes) = spike("peak base", 20 * MB, 4096);
    tracker
        .start_periodic_snapshots(Duration::from_secs(1))
        .unwrap();
    // Between two periodic snapshots.
    std::thread::sleep(Duration::from_millis(300));
    let heap_before = user_bytes(&tracker.create_snapshot("before"));
    let (big, big_bytes) = spike("peak spike", 200 * MB, 64 << 10);
    // The spike is at its top: held from here.
    let start = Instant::now();
    let true_peak = heap_before + big_bytes;
    // Two threads allocate: this one and the periodic snapshots' (its own allocations are
    // classtrack's, not the user's, but it is counted all the same).
    let b = bound(true_peak, 2);
    hold(&tracker, "peak spike", big_bytes - b, start);
    drop(big);
    // A smaller spike of another class later does not replace it.
    std::thread::sleep(Duration::from_millis(100));
    let (smaller, smaller_bytes) = spike("peak smaller", 100 * MB, 64 << 10);
    // Not a peak of the heap: the class's own level wakes the watcher.
    std::thread::sleep(HOLD);
    drop(smaller);
    let peak = recorded(&tracker).expect("a peak was recorded");
    let spike_bytes = live(&peak, "peak spike");
    assert!(
        spike_bytes <= big_bytes && spike_bytes + b >= big_bytes,
        "the spike at the peak: {spike_bytes} bytes, not {big_bytes} within {b}"
    );
    assert_eq!(
        live(&peak, "peak smaller"),
        0,
        "the smaller spike replaced the peak"
    );
    assert_eq!(live(&peak, "peak base"), base_bytes);
    let heap = user_bytes(&peak);
    assert!(
        heap <= true_peak && heap + b >= true_peak,
        "{heap} {true_peak}"
    );
    let top = peak.user_classes().max_by_key(|c| c.live_bytes).unwrap();
    assert_eq!(&*top.name, "peak spike");
    // `peak` reads the counters too; the heap now is smaller, so the recorded peak stands.
    assert_eq!(live(&tracker.peak().unwrap(), "peak spike"), spike_bytes);
    // The next periodic snapshot comes after both spikes: none saw either, but each class's
    // peak seen counts the watcher's readings.
    let waited = Instant::now();
    let last = loop {
        let periodic = tracker
            .snapshots()
            .into_iter()
            .rfind(|s| s.description != "before" && s.description != "peak");
        if let Some(last) = periodic {
            if last.class_named("peak smaller").is_some() {
                break last;
            }
        }
        assert!(
            waited.elapsed() < Duration::from_secs(5),
            "no periodic snapshot"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(live(&last, "peak spike"), 0);
    let seen = last.class_named("peak spike").unwrap().peak_seen_bytes;
    assert!(
        seen + b >= big_bytes && seen <= big_bytes,
        "peak seen {seen}"
    );
    let seen_smaller = last.class_named("peak smaller").unwrap().peak_seen_bytes;
    assert!(
        seen_smaller + b >= smaller_bytes && seen_smaller <= smaller_bytes,
        "peak seen {seen_smaller}"
    );
    tracker.stop_periodic_snapshots().unwrap();
    drop(base);
}

#[test]
fn the_watcher_reads_within_a_millisecond_or_so() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let tracker = ClassTracker::new();
    let mut latencies = Vec::new();
    for round in 0..20u64 {
        tracker.reset_peak();
        let before = SystemTime::now();
        // One block: one check, one wake.
        let block =
            classtrack::scope_named("peak latency", || vec![0u8; ((32 + round) << 20) as usize]);
        let latency = recorded_after(&tracker, "peak latency", (32 + round) << 20, before);
        drop(block);
        latencies.push(latency);
    }
    latencies.sort();
    // The watcher also looks once a second without being woken: a reading that late means
    // the allocator did not wake it. (Generous, for a busy machine.)
    assert!(
        latencies[latencies.len() / 2] < Duration::from_millis(100),
        "{latencies:?}"
    );
    println!(
        "from the allocation to the watcher's reading: median {:?}, max {:?} ({} rounds)",
        latencies[latencies.len() / 2],
        latencies.last().unwrap(),
        latencies.len()
    );
}

#[test]
fn threads_allocating_the_spike_together() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let tracker = ClassTracker::new();
    let heap_before = user_bytes(&tracker.create_snapshot("before"));
    const THREADS: u64 = 4;
    let barrier = Arc::new(Barrier::new(THREADS as usize + 1));
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                // Blocks of 4 KiB: the threads' last checks lag by up to the granularity each.
                let (part, bytes) = spike("peak together", 50 * MB, 4096);
                barrier.wait();
                // Held until the main thread saw the watcher's reading.
                barrier.wait();
                drop(part);
                bytes
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    // Each thread's part: 50 MB and the vector holding its 4 KiB blocks.
    let part = 50 * MB + (50 * MB / 4096) * std::mem::size_of::<Vec<u8>>() as u64;
    let expected = THREADS * part;
    let b = bound(heap_before + expected, THREADS + 1);
    hold(&tracker, "peak together", expected - b, start);
    barrier.wait();
    let together_bytes: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(together_bytes, expected);
    let peak = recorded(&tracker).expect("a peak was recorded");
    let together = live(&peak, "peak together");
    assert!(
        together <= together_bytes && together + b >= together_bytes,
        "{together} of {together_bytes} within {b}"
    );
}

#[test]
fn reset_peak_starts_again_from_now() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let tracker = ClassTracker::new();
    let (before, before_bytes) = spike("peak before reset", 64 * MB, 1 << 20);
    let start = Instant::now();
    hold(
        &tracker,
        "peak before reset",
        before_bytes - bound(before_bytes, 2),
        start,
    );
    drop(before);
    let seen = live(&tracker.peak().unwrap(), "peak before reset");
    assert!(seen <= before_bytes && seen + bound(before_bytes, 2) >= before_bytes);
    tracker.reset_peak();
    let (kept, kept_bytes) = spike("peak after reset", 8 * MB, 1 << 20);
    // `peak` reads the counters: the heap now is the peak, exactly.
    let peak = tracker.peak().unwrap();
    assert_eq!(live(&peak, "peak before reset"), 0);
    assert_eq!(live(&peak, "peak after reset"), kept_bytes);
    drop(kept);
    // A tracker made after the spikes saw none of them.
    let other = ClassTracker::new();
    assert_eq!(live(&other.peak().unwrap(), "peak before reset"), 0);
}

#[test]
fn a_class_growing_in_short_scopes_among_others_has_its_peak_seen() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let tracker = ClassTracker::new();
    // A larger heap earlier: the class's growth below is never a peak of the whole heap.
    let (earlier, earlier_bytes) = spike("peak short earlier", 200 * MB, 1 << 20);
    let start = Instant::now();
    hold(
        &tracker,
        "peak short earlier",
        earlier_bytes - bound(earlier_bytes, 2),
        start,
    );
    drop(earlier);
    let mut kept = Vec::new();
    for i in 0..(40 * MB / 4096) {
        kept.push(classtrack::scope_named("peak short", || vec![0u8; 4096]));
        // Other classes come and go in between.
        let other = ["peak short a", "peak short b", "peak short c"][i as usize % 3];
        drop(classtrack::scope_named(other, || vec![0u8; 8192]));
    }
    let kept_bytes = 40 * MB + (kept.capacity() * std::mem::size_of::<Vec<u8>>()) as u64;
    // Per-class readings are not visible without a snapshot (which would read the class
    // itself): a generous hold.
    std::thread::sleep(4 * HOLD);
    drop(kept);
    let snap = tracker.create_snapshot("after");
    assert_eq!(live(&snap, "peak short"), 0);
    let seen = snap.class_named("peak short").unwrap().peak_seen_bytes;
    // The vector holding the blocks is not the scope's: only the blocks are the class's.
    let class_bytes = 40 * MB;
    assert!(
        seen <= class_bytes && seen + bound(class_bytes, 2) >= class_bytes,
        "peak seen {seen} of {class_bytes} ({kept_bytes} kept in all)"
    );
    let peak = live(&tracker.peak().unwrap(), "peak short earlier");
    assert!(peak <= earlier_bytes && peak + bound(earlier_bytes, 2) >= earlier_bytes);
}

#[test]
fn the_peak_is_in_the_stats_the_dump_and_the_report() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let tracker = ClassTracker::new();
    tracker.create_snapshot("before");
    let (spike_blocks, spike_bytes) = spike("peak in the report", 48 * MB, 64 << 10);
    let start = Instant::now();
    hold(
        &tracker,
        "peak in the report",
        spike_bytes - bound(spike_bytes, 2),
        start,
    );
    drop(spike_blocks);
    tracker.create_snapshot("after");
    let stats = tracker.stats();
    let peak = stats.peak.as_ref().expect("the stats keep the peak");
    let bytes = peak.class_named("peak in the report").unwrap().live_bytes;
    assert!(bytes <= spike_bytes && bytes + bound(spike_bytes, 2) >= spike_bytes);
    // Its sites are resolved with the snapshots' (one stack table).
    let sites = peak.sites_of("peak in the report");
    assert!(!sites.is_empty(), "no site sampled in 48 MB");
    assert!(sites.iter().all(|s| !stats.frames(s).is_empty()));
    // The dump keeps it; a version 2 file (the same without the peak) loads without one.
    let dir = std::env::temp_dir().join(format!("classtrack-peak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("stats.json");
    stats.dump(&path).unwrap();
    let loaded = classtrack::Stats::load(&path).unwrap();
    assert_eq!(loaded.peak, stats.peak);
    let mut v2: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    v2["version"] = serde_json::json!(2);
    v2.as_object_mut().unwrap().remove("peak");
    let v2_path = dir.join("v2.json");
    std::fs::write(&v2_path, serde_json::to_vec(&v2).unwrap()).unwrap();
    let old = classtrack::Stats::load(&v2_path).unwrap();
    assert_eq!(old.peak, None);
    assert_eq!(old.version, classtrack::STATS_VERSION);
    assert_eq!(old.snapshots, stats.snapshots);
    // The report: a section of its own, and the moment marked on the memory chart.
    #[cfg(feature = "html")]
    {
        let page = stats.html().unwrap();
        let section = &page[page.find("<section id=\"peak\">").expect("a peak section")..];
        let section = &section[..section.find("</section>").unwrap()];
        assert!(section.contains("At the peak") && section.contains("peak in the report"));
        assert!(
            section.contains("Where the largest classes allocated"),
            "no sites shown"
        );
        let memory = &page[page.find("<section id=\"memory\">").unwrap()..];
        assert!(
            memory.contains("peak: "),
            "the chart does not mark the peak"
        );
    }
    let mut text = Vec::new();
    stats.print_peak(&mut text, 3, 2).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(text.contains("peak in the report"), "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}
