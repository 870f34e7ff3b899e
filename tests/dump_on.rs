//! Dumps written when memory reaches a limit (`ClassTracker::dump_on`): a live-heap trigger, a
//! cgroup trigger on a tree of files laid out as the kernel's, a failing write, bad input, and
//! a real child process that grows one class until its allocator fails under an address-space
//! limit and dies, leaving a dump behind.

use std::alloc::System;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use classtrack::{ClassTracker, DumpOptions, DumpTrigger, Error, Stats, TrackingAlloc};

#[global_allocator]
static ALLOC: TrackingAlloc<System> = TrackingAlloc::new(System);

struct Hog;

/// Held by the tests that grow the heap by tens of megabytes: one's growth would move the
/// other's limits.
static BIG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn big() -> std::sync::MutexGuard<'static, ()> {
    BIG.lock().unwrap_or_else(|e| e.into_inner())
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("classtrack-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Waits up to `limit` for the tracker's first dump.
fn first_dump(tracker: &ClassTracker, limit: Duration) -> Option<PathBuf> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(p) = tracker.dump_status().written.first() {
            return Some(p.clone());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

/// The class with the most live bytes at the dump's last snapshot, classtrack's own left out.
fn largest_class(path: &Path) -> (String, u64, String) {
    let stats = Stats::load(path).expect("the dump loads");
    let last = stats.snapshots.last().expect("the dump has a snapshot");
    let top = last
        .classes
        .iter()
        .filter(|c| c.name.as_ref() != "<classtrack overhead>")
        .max_by_key(|c| c.live_bytes)
        .expect("classes");
    (
        top.name.to_string(),
        top.live_bytes,
        last.description.clone(),
    )
}

/// The one dump a child process left in `dir`.
#[cfg(target_os = "linux")]
fn only_dump(dir: &Path) -> PathBuf {
    let dumps: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("the child made no dump directory")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    assert_eq!(dumps.len(), 1, "{dumps:?}");
    dumps[0].clone()
}

/// The live heap now (every class's live bytes but classtrack's own), from a snapshot.
fn live_heap(tracker: &ClassTracker) -> u64 {
    let snap = tracker.create_snapshot("baseline");
    snap.classes
        .iter()
        .filter(|c| c.name.as_ref() != "<classtrack overhead>")
        .map(|c| c.live_bytes)
        .sum()
}

#[test]
fn the_live_heap_reaching_its_limit_writes_a_dump_naming_the_class_that_grew() {
    let _big = big();
    let tracker = ClassTracker::new();
    let dir = temp_dir("dump-live");
    let limit = live_heap(&tracker) + (64 << 20);
    let options = DumpOptions::new().poll(Duration::from_millis(2));
    tracker
        .dump_on_with(DumpTrigger::LiveHeap(limit), &dir, options)
        .unwrap();
    // Below the limit: nothing.
    std::thread::sleep(Duration::from_millis(50));
    assert!(tracker.dump_status().written.is_empty());
    let hog = classtrack::scope::<Hog, _>(|| {
        (0..24)
            .map(|_| vec![1u8; 4 << 20])
            .collect::<Vec<Vec<u8>>>()
    });
    let path = first_dump(&tracker, Duration::from_secs(10)).expect("no dump was written");
    let (name, live, label) = largest_class(&path);
    assert!(name.ends_with("Hog"), "{name}");
    assert!(live >= 64 << 20, "{live}");
    let latency = tracker.dump_status().last_latency.expect("a latency");
    eprintln!("{label}: written in {latency:?}");
    assert!(label.starts_with("dump: live heap"), "{label}");
    let file = path.file_name().unwrap().to_str().unwrap().to_owned();
    assert!(
        file.starts_with("classtrack-2") && file.ends_with("-live-heap.json"),
        "{file}"
    );
    // It stays above the limit: no second dump (it fires again only after falling below 90%).
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(tracker.dump_status().written.len(), 1);
    tracker.stop_dumps().unwrap();
    drop(hog);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn each_new_peak_writes_a_dump_holding_the_peak() {
    struct Climber;
    let _big = big();
    let tracker = ClassTracker::new();
    let dir = temp_dir("dump-new-peak");
    let options = DumpOptions::new()
        .poll(Duration::from_millis(2))
        .min_interval(Duration::from_millis(1));
    tracker
        .dump_on_with(DumpTrigger::NewPeak { percent: 50.0 }, &dir, options)
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        tracker.dump_status().written.is_empty(),
        "a dump before the peak grew"
    );
    let climber_at_peak = |path: &Path| -> u64 {
        let stats = Stats::load(path).unwrap();
        let peak = stats.peak.expect("a new-peak dump holds the peak");
        let bytes = peak
            .user_classes()
            .find(|c| c.name.ends_with("Climber"))
            .map_or(0, |c| c.live_bytes);
        bytes
    };
    let mut kept = Vec::new();
    // Climbs to 64 MB, then to 256 MB. A climb may be dumped at several heights on its way,
    // each 50% above the last dump: at its top the last dump holds at least two thirds of it
    // (else the top, 50% above that dump, makes another).
    for mb in [64u64, 256] {
        kept.push(classtrack::scope::<Climber, _>(|| {
            (0..mb - kept.len() as u64 * 64)
                .map(|_| vec![1u8; 1 << 20])
                .collect::<Vec<Vec<u8>>>()
        }));
        // Two thirds of the top, less the bound of `ClassTracker::peak` (1% plus a few
        // threads' granularity).
        let low = (mb << 20) * 2 / 3 - (mb << 20) / 100 - (8 << 20);
        let start = Instant::now();
        while tracker
            .dump_status()
            .written
            .last()
            .is_none_or(|p| climber_at_peak(p) < low)
        {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "no dump of the peak at {mb} MB"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let written = tracker.dump_status().written;
    assert!(
        written.len() >= 2,
        "one dump or more per climb: {written:?}"
    );
    let last = written.last().unwrap();
    assert!(
        last.to_str().unwrap().ends_with("-new-peak.json"),
        "{last:?}"
    );
    let stats = Stats::load(last).unwrap();
    let label = &stats.snapshots.last().unwrap().description;
    assert!(label.starts_with("dump: a new peak of"), "{label}");
    tracker.stop_dumps().unwrap();
    drop(kept);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_cgroup_near_its_limit_writes_a_dump() {
    let tracker = ClassTracker::new();
    let dir = temp_dir("dump-cgroup");
    // A cgroup directory as the kernel lays it out.
    let cgroup = temp_dir("cgroup-tree");
    std::fs::create_dir_all(&cgroup).unwrap();
    std::fs::write(cgroup.join("memory.current"), "400000000\n").unwrap();
    std::fs::write(cgroup.join("memory.max"), "1000000000\n").unwrap();
    let options = DumpOptions::new()
        .poll(Duration::from_millis(2))
        .cgroup_dir(&cgroup);
    tracker
        .dump_on_with(DumpTrigger::CgroupFraction(0.9), &dir, options)
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert!(tracker.dump_status().written.is_empty());
    std::fs::write(cgroup.join("memory.current"), "950000000\n").unwrap();
    let path = first_dump(&tracker, Duration::from_secs(10)).expect("no dump was written");
    let (_, _, label) = largest_class(&path);
    assert!(label.contains("90% of its limit"), "{label}");
    assert!(path.to_str().unwrap().ends_with("-cgroup.json"));
    tracker.stop_dumps().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&cgroup).unwrap();
}

#[test]
fn a_dump_that_cannot_be_written_is_counted_and_reported() {
    let tracker = ClassTracker::new();
    let dir = temp_dir("dump-unwritable");
    let options = DumpOptions::new().poll(Duration::from_millis(2));
    tracker
        .dump_on_with(DumpTrigger::LiveHeap(1), dir.join("gone"), options)
        .unwrap();
    // The directory is replaced by a file: every write fails.
    std::fs::remove_dir_all(dir.join("gone")).unwrap();
    std::fs::write(dir.join("gone"), "not a directory").unwrap();
    let _more = vec![0u8; 1 << 20];
    let start = Instant::now();
    while tracker.dump_status().failures == 0 && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let status = tracker.dump_status();
    assert!(status.written.is_empty());
    // One failure: the next try waits for `min_interval` (10 s).
    assert_eq!(status.failures, 1, "{status:?}");
    let err = tracker.stop_dumps().unwrap_err();
    assert!(matches!(err, Error::Dumps { failures: 1, .. }), "{err}");
    assert!(err.to_string().contains("could not be written"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_triggers_and_options_are_errors_that_say_what_to_do() {
    let tracker = ClassTracker::new();
    let dir = temp_dir("dump-bad");
    let bad = |trigger, options| match tracker.dump_on_with(trigger, &dir, options) {
        Err(Error::InvalidDumpTrigger { reason }) => reason,
        other => panic!("{trigger:?}: {other:?}"),
    };
    assert!(bad(DumpTrigger::LiveHeap(0), DumpOptions::new()).contains("zero"));
    assert!(bad(DumpTrigger::Resident(0), DumpOptions::new()).contains("zero"));
    assert!(bad(DumpTrigger::CgroupFraction(1.5), DumpOptions::new()).contains("at most 1"));
    assert!(bad(DumpTrigger::CgroupFraction(f64::NAN), DumpOptions::new()).contains("above 0"));
    assert!(bad(DumpTrigger::LiveHeap(1 << 30), DumpOptions::new().keep(0)).contains("keep"));
    let reason = bad(DumpTrigger::NewPeak { percent: 0.0 }, DumpOptions::new());
    assert!(reason.contains("percentage above 0"), "{reason}");
    let cgroup = temp_dir("cgroup-unlimited");
    std::fs::create_dir_all(&cgroup).unwrap();
    std::fs::write(cgroup.join("memory.current"), "1000\n").unwrap();
    std::fs::write(cgroup.join("memory.max"), "max\n").unwrap();
    let reason = bad(
        DumpTrigger::CgroupFraction(0.9),
        DumpOptions::new().cgroup_dir(&cgroup),
    );
    assert!(reason.contains("no memory limit"), "{reason}");
    std::fs::remove_dir_all(&cgroup).unwrap();
    // Nothing was watched.
    assert_eq!(tracker.dump_status(), Default::default());
    tracker.stop_dumps().unwrap();
}

/// The child of `a_process_that_dies_of_memory_leaves_a_dump`.
#[cfg(target_os = "linux")]
#[test]
#[ignore = "a helper: run by a_process_that_dies_of_memory_leaves_a_dump in a child process"]
fn oom_child() {
    let Ok(dir) = std::env::var("CLASSTRACK_OOM_DIR") else {
        panic!("run by a_process_that_dies_of_memory_leaves_a_dump, with CLASSTRACK_OOM_DIR");
    };
    let tracker = ClassTracker::new();
    tracker
        .dump_on_with(
            DumpTrigger::LiveHeap(512 << 20),
            &dir,
            DumpOptions::new().poll(Duration::from_millis(2)),
        )
        .unwrap();
    // An address-space limit 1.5 GiB above what the process has mapped now.
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let vm_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    let limit = (vm_kib << 10) + (1536 << 20);
    let rlimit = libc::rlimit {
        rlim_cur: limit,
        rlim_max: limit,
    };
    // SAFETY: setrlimit reads the struct given; lowering a limit needs no privilege.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &rlimit) }, 0);
    let mut kept = Vec::new();
    classtrack::scope::<Hog, _>(|| loop {
        // Until the allocator fails and the process aborts: 400 MB/s, so that the dump (a
        // snapshot, the stats symbolized, the file written: tens of milliseconds) is written
        // in the 2.5 s from the trigger to the limit even on a busy machine.
        kept.push(vec![0u8; 4 << 20]);
        std::thread::sleep(Duration::from_millis(10));
    });
}

#[cfg(target_os = "linux")]
#[test]
fn a_process_that_dies_of_memory_leaves_a_dump() {
    let dir = temp_dir("dump-oom");
    let started = Instant::now();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "oom_child", "--ignored", "--nocapture"])
        .env("CLASSTRACK_OOM_DIR", &dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the child did not die: {stderr}");
    assert!(
        stderr.contains("memory allocation") && stderr.contains("failed"),
        "the child did not die of memory: {stderr}"
    );
    let (name, live, label) = largest_class(&only_dump(&dir));
    assert!(name.ends_with("Hog"), "{name}");
    assert!(live >= 512 << 20, "{live}");
    eprintln!(
        "the child died after {:?}; its dump: {label}, {name} {} MiB live",
        started.elapsed(),
        live >> 20
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The exit status of a `cgroup_child` that could not join its cgroup.
#[cfg(target_os = "linux")]
const CANNOT_JOIN: i32 = 77;

/// The child of `a_process_killed_by_its_cgroup_leaves_a_dump`: joins the cgroup, then grows
/// one class, touching its pages, until the kernel's OOM killer ends it.
#[cfg(target_os = "linux")]
#[test]
#[ignore = "a helper: run by a_process_killed_by_its_cgroup_leaves_a_dump in a child process"]
fn cgroup_child() {
    let (Ok(dir), Ok(cgroup)) = (
        std::env::var("CLASSTRACK_OOM_DIR"),
        std::env::var("CLASSTRACK_CGROUP"),
    ) else {
        panic!("run by a_process_killed_by_its_cgroup_leaves_a_dump");
    };
    if let Err(e) = std::fs::write(
        Path::new(&cgroup).join("cgroup.procs"),
        std::process::id().to_string(),
    ) {
        eprintln!("cannot join the cgroup {cgroup}: {e}");
        std::process::exit(CANNOT_JOIN);
    }
    let tracker = ClassTracker::new();
    // The process's own cgroup, found from /proc/self/cgroup.
    tracker
        .dump_on_with(
            DumpTrigger::CgroupFraction(0.5),
            &dir,
            DumpOptions::new().poll(Duration::from_millis(2)),
        )
        .unwrap();
    let mut kept = Vec::new();
    classtrack::scope::<Hog, _>(|| loop {
        // 100 MB/s: from the trigger (128 MiB) to the kill (256 MiB) takes about 1.3 s, time
        // for the dump (a few hundred milliseconds in a dev build on a busy machine).
        kept.push(vec![1u8; 4 << 20]);
        std::thread::sleep(Duration::from_millis(40));
    });
}

/// A real cgroup with a 256 MiB limit, where the machine lets the test make one (as root,
/// with cgroup v1's memory controller or cgroup v2 with the memory controller enabled).
#[cfg(target_os = "linux")]
#[test]
fn a_process_killed_by_its_cgroup_leaves_a_dump() {
    use std::os::unix::process::ExitStatusExt;
    let name = format!("classtrack-test-{}", std::process::id());
    let (cgroup, limit_file) = if Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists()
    {
        (
            Path::new("/sys/fs/cgroup/memory").join(&name),
            "memory.limit_in_bytes",
        )
    } else {
        (Path::new("/sys/fs/cgroup").join(&name), "memory.max")
    };
    let made = std::fs::create_dir(&cgroup)
        .and_then(|()| std::fs::write(cgroup.join(limit_file), (256u64 << 20).to_string()));
    if let Err(e) = made {
        let _ = std::fs::remove_dir(&cgroup);
        eprintln!(
            "skipped: this machine does not let the test make a cgroup with a memory limit at \
             {} ({e}); the cgroup trigger is tested on a tree of files instead",
            cgroup.display()
        );
        return;
    }
    let dir = temp_dir("dump-cgroup-oom");
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "cgroup_child", "--ignored", "--nocapture"])
        .env("CLASSTRACK_OOM_DIR", &dir)
        .env("CLASSTRACK_CGROUP", &cgroup)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir(&cgroup);
    if out.status.code() == Some(CANNOT_JOIN) {
        eprintln!(
            "skipped: {}; the cgroup trigger is tested on a tree of files instead",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return;
    }
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGKILL),
        "the child was not killed by the OOM killer: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let (name, live, label) = largest_class(&only_dump(&dir));
    assert!(name.ends_with("Hog"), "{name}");
    assert!(label.contains("50% of its limit"), "{label}");
    eprintln!(
        "killed by its cgroup's OOM killer; its dump: {label}, {name} {} MiB live",
        live >> 20
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
