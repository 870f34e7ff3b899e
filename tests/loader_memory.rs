//! `Stats::load` of a large dump: its peak heap stays a small multiple of the file's size.
//!
//! The dump's size is `CLASSTRACK_LOAD_MB` megabytes (30 by default, so that a debug build
//! takes a few seconds). The load's time is printed, not asserted: speed is measured by
//! benches, not by timed tests. With `CLASSTRACK_LOAD_COMPARE=1` it also prints, side by side
//! in the same process (best CPU time of three, interleaved), two other ways to parse the same file:
//! through a `serde_json::Value` (as `load` did before) and with `from_reader` on a
//! `BufReader`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use classtrack::{ClassTracker, Stats, TrackOptions, TrackingAlloc};

/// The tracking allocator, wrapped to keep the peak of the bytes live on the heap.
struct PeakAlloc {
    inner: TrackingAlloc<System>,
}

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

impl PeakAlloc {
    fn grew(&self, bytes: usize) {
        // Relaxed: the counters are read after the measured work joined; no data hangs on them.
        let now = LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
        PEAK.fetch_max(now, Ordering::Relaxed);
    }

    fn shrank(&self, bytes: usize) {
        // Relaxed: see `grew`.
        LIVE.fetch_sub(bytes, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to `TrackingAlloc<System>`, a `GlobalAlloc`, with the caller's
// own arguments, so the caller's obligations are the inner allocator's; the counting on the
// side neither allocates nor touches the blocks.
unsafe impl GlobalAlloc for PeakAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller meets `GlobalAlloc::alloc`'s contract (non-zero size).
        let p = unsafe { self.inner.alloc(layout) };
        if !p.is_null() {
            self.grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { self.inner.alloc_zeroed(layout) };
        if !p.is_null() {
            self.grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller passes a block of this allocator with the layout it was made with.
        unsafe { self.inner.dealloc(ptr, layout) };
        self.shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller passes a block of this allocator, its layout and a valid size.
        let p = unsafe { self.inner.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            self.grew(new_size);
            self.shrank(layout.size());
        }
        p
    }
}

#[global_allocator]
static ALLOC: PeakAlloc = PeakAlloc {
    inner: TrackingAlloc::new(System),
};

#[derive(Debug)]
struct Doc {
    _text: String,
}

/// Stats from a real tracker, grown to about `target` bytes of JSON by repeating its
/// instances with many sizes (elapsed times with all 17 significant digits, as real ones have)
/// and long backtraces: half numbers, half text.
fn large_stats(target: usize) -> Stats {
    let tracker = ClassTracker::new();
    tracker.track_class::<Doc>(TrackOptions::new());
    let doc = tracker.construct_debug(|| Doc {
        _text: "x".repeat(100),
    });
    tracker.create_snapshot("one");
    let mut stats = tracker.stats();
    drop(doc);
    let proto = stats.instances[0].clone();
    let mut rng = fastrand::Rng::with_seed(7);
    const SIZES: usize = 500;
    const TRACE: usize = 300;
    // One `[t,n],` entry is about 30 bytes, one trace line about 50.
    let count = target / (SIZES * 30 + TRACE * 50) + 1;
    let snapshot = stats.snapshots[0].clone();
    stats.snapshots = (0..count)
        .map(|i| {
            let mut s = snapshot.clone();
            s.time = rng.f64() * 86_400.0;
            s.description = format!("snapshot {i}");
            s
        })
        .collect();
    stats.instances = (0..count as u64)
        .map(|id| {
            let mut inst = proto.clone();
            inst.id = id;
            inst.birth = rng.f64() * 1000.0;
            inst.sizes = (0..SIZES)
                .map(|_| (rng.f64() * 86_400.0, rng.u64(0..1 << 30)))
                .collect();
            // A traced instance's backtrace: about as many bytes of text as of sizes.
            inst.trace = (0..TRACE)
                .map(|f| {
                    format!(
                        "app::module_{f}::handler_{id} at /src/app/module_{f}.rs:{}",
                        rng.u32(1..2000)
                    )
                })
                .collect();
            inst
        })
        .collect();
    stats
}

/// This thread's CPU time: on a busy machine, steadier than the wall clock.
#[cfg(unix)]
fn cpu_time() -> std::time::Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the call to fill.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0);
    std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[cfg(not(unix))]
fn cpu_time() -> std::time::Duration {
    // No thread clock here: the wall clock since the first call.
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed()
}

/// The CPU time and heap peak of one `parse`.
fn measure(parse: &dyn Fn() -> Stats) -> (std::time::Duration, usize) {
    // Relaxed: single-threaded.
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let start = cpu_time();
    let stats = parse();
    let elapsed = cpu_time() - start;
    let peak = PEAK.load(Ordering::Relaxed) - before;
    drop(stats);
    (elapsed, peak)
}

fn compare(path: &std::path::Path, file_size: usize) {
    use std::io::BufReader;
    let ways: [(&str, &dyn Fn() -> Stats); 3] = [
        ("Stats::load", &|| Stats::load(path).unwrap()),
        ("via serde_json::Value", &|| {
            let bytes = std::fs::read(path).unwrap();
            let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            serde_json::from_value(value).unwrap()
        }),
        ("from_reader(BufReader)", &|| {
            let file = std::fs::File::open(path).unwrap();
            serde_json::from_reader(BufReader::new(file)).unwrap()
        }),
    ];
    let mut best = [(std::time::Duration::MAX, 0); 3];
    for _ in 0..3 {
        for (i, (_, parse)) in ways.iter().enumerate() {
            let (t, peak) = measure(*parse);
            best[i] = (best[i].0.min(t), best[i].1.max(peak));
        }
    }
    for ((name, _), (t, peak)) in ways.iter().zip(best) {
        println!(
            "  {name:<24} {t:>10.2?} CPU  peak heap {:>7.1} MiB ({:.2}x the file)",
            peak as f64 / f64::from(1 << 20),
            peak as f64 / file_size as f64
        );
    }
}

#[test]
fn load_of_a_large_dump_peaks_below_four_times_its_size() {
    let mb: usize = std::env::var("CLASSTRACK_LOAD_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let path = std::env::temp_dir().join(format!(
        "classtrack-loader-memory-{}.json",
        std::process::id()
    ));
    let stats = large_stats(mb << 20);
    stats.dump(&path).unwrap();
    let file_size = std::fs::metadata(&path).unwrap().len() as usize;

    // Relaxed: single-threaded from here to the reads below.
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let (start, cpu_start) = (Instant::now(), cpu_time());
    let loaded = Stats::load(&path).unwrap();
    let (elapsed, cpu) = (start.elapsed(), cpu_time() - cpu_start);
    let peak = PEAK.load(Ordering::Relaxed) - before;
    let kept = LIVE.load(Ordering::Relaxed) - before;

    let mib = |b: usize| b as f64 / f64::from(1 << 20);
    println!(
        "load of a {:.1} MiB dump: {elapsed:.2?} ({cpu:.2?} CPU), peak heap {:.1} MiB ({:.2}x the file), \
         {:.1} MiB kept",
        mib(file_size),
        mib(peak),
        peak as f64 / file_size as f64,
        mib(kept),
    );
    if std::env::var_os("CLASSTRACK_LOAD_COMPARE").is_some() {
        compare(&path, file_size);
    }
    std::fs::remove_file(&path).unwrap();
    assert!(loaded == stats, "the large dump loads back equal");
    assert!(
        peak < 4 * file_size,
        "load peaked at {:.1} MiB for a {:.1} MiB file",
        mib(peak),
        mib(file_size)
    );
}
