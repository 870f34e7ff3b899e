//! Many classes: T threads serve requests for N tenants, each request in the tenant's scope
//! (`scope_named("tenant-<id>")`), each tenant keeping one 64-byte value live; then forty
//! snapshots (more than the 32 recent ones a tracker keeps), and a round of the budget thread
//! with a budget on every tenant.
//!
//! ```text
//! cargo bench --bench tenants                      # the README's rows
//! cargo bench --bench tenants -- 4x1000 16x100000  # chosen rows
//! ```
//!
//! Each row runs in a child process of its own (classes and counter shards are never freed
//! within a process), and prints:
//! - the processor time per request ([`serve`]): outside any scope, reading the tenant's name
//!   (what the request costs without classtrack), by the tenant's name (`scope_named`) and by
//!   its class id kept with it (`scope_id`);
//! - the median time of the forty snapshots (each call, trimming the snapshot before included);
//! - the tracker's memory after them, and per tenant: classtrack's own live bytes
//!   (`<classtrack overhead>`) with the tracker, less once it is dropped;
//! - the rest of classtrack's own memory then (the class registry's names and table most of
//!   it), and the counter shards;
//! - the process's resident memory;
//! - the time of one round of the budget thread, with a budget on every tenant.
//!
//! Not a criterion bench: one row takes seconds to set up and holds up to a gigabyte. Each
//! request figure is millions of requests timed together; compare rows of one run.

use std::alloc::System;
use std::hint::black_box;
use std::process::Command;
use std::time::{Duration, Instant};

use classtrack::{ClassTracker, TrackingAlloc};

#[global_allocator]
static ALLOC: TrackingAlloc<System> = TrackingAlloc::new(System);

const ROWS: [(usize, usize); 4] = [(4, 1_000), (4, 100_000), (16, 100_000), (4, 1_000_000)];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(row) = args.iter().find_map(|a| a.strip_prefix("--row=")) {
        let (t, n) = parse(row).expect("a row is THREADSxTENANTS");
        return run(t, n);
    }
    // `cargo bench` passes `--bench`; rows are the other arguments.
    let chosen: Vec<(usize, usize)> = args.iter().filter_map(|a| parse(a)).collect();
    let rows = if chosen.is_empty() {
        ROWS.to_vec()
    } else {
        chosen
    };
    println!(
        "| threads × tenants | request, no scope | request, by name | request, by id | snapshot | tracker (per tenant) | registry and the rest | counter shards | RSS | budget round |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let exe = std::env::current_exe().expect("the bench's own path");
    for (t, n) in rows {
        let out = Command::new(&exe)
            .arg(format!("--row={t}x{n}"))
            .output()
            .expect("the row's process");
        if !out.status.success() {
            eprintln!("{}", String::from_utf8_lossy(&out.stderr));
            panic!("row {t}x{n} failed");
        }
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }
}

fn parse(row: &str) -> Option<(usize, usize)> {
    let (t, n) = row.split_once('x')?;
    Some((t.parse().ok()?, n.parse().ok()?))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

fn run(threads: usize, tenants: usize) {
    let tracker = ClassTracker::new();
    let names: Vec<String> = (0..tenants).map(|i| format!("tenant-{i}")).collect();
    let kept: Vec<Vec<u8>> = names
        .iter()
        .map(|n| classtrack::scope_named(n, || vec![1u8; 64]))
        .collect();
    let ids: Vec<classtrack::ClassId> = names
        .iter()
        .map(|n| classtrack::class_id_named(n))
        .collect();
    let by_name = serve(threads, tenants, |i| {
        classtrack::scope_named(&names[i], || black_box(vec![0u8; 48]));
    });
    // The same requests outside any scope, reading the tenant's name: what a request costs the
    // program itself at this many tenants (the name out of cache), without classtrack.
    let bare = serve(threads, tenants, |i| {
        black_box(names[i].as_bytes().last());
        black_box(vec![0u8; 48]);
    });
    // The same requests with each tenant's class id at hand (`scope_id`): no name to look up.
    let by_id = serve(threads, tenants, |i| {
        classtrack::scope_id(ids[i], || black_box(vec![0u8; 48]));
    });
    let overhead = || {
        let mut live = [0u64];
        classtrack_shim::read_live_bytes(&[classtrack_shim::ClassId::OVERHEAD], &mut live);
        live[0]
    };
    let snapshots: Vec<f64> = (0..40)
        .map(|i| {
            let start = Instant::now();
            black_box(tracker.create_snapshot(&format!("snapshot {i}")));
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    let snap = tracker.create_snapshot("figures");
    let check = snap.class_named("tenant-0").map(|c| c.live_bytes);
    assert_eq!(check, Some(64), "a tenant's live bytes are exact");
    let rss = snap.process.map(|p| p.resident_bytes).unwrap_or(0);
    let shards = snap.overhead.shard_bytes;
    drop(snap);
    // The tracker's own: what classtrack holds with it (the latest snapshot is the tracker's,
    // not another copy) less what it holds once the tracker is gone.
    let with_tracker = overhead();
    drop(tracker);
    std::thread::sleep(Duration::from_millis(100));
    let rest = overhead();
    let tracker_bytes = with_tracker.saturating_sub(rest);
    // A budget on every tenant, then the time of one round of the budget thread.
    for &id in &ids {
        classtrack::set_budget(id, Some(1 << 20)).unwrap();
    }
    let round = {
        let start = classtrack::budget_stats().rounds;
        let deadline = Instant::now() + Duration::from_secs(60);
        while classtrack::budget_stats().rounds < start + 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        classtrack::budget_stats().last_round
    };
    println!(
        "| {threads} × {tenants} | {bare:.0} ns | {by_name:.0} ns | {by_id:.0} ns | {:.2} ms | {} ({:.0} B) | {} | {} | {} | {:.2} ms |",
        median(snapshots),
        mib(tracker_bytes),
        tracker_bytes as f64 / tenants as f64,
        mib(rest),
        mib(shards),
        mib(rss),
        round.as_secs_f64() * 1e3,
    );
    drop(kept);
}

/// Processor time per request, in ns: `threads` threads each serve every one of `tenants`
/// tenants with `request`, in an order of their own (a warm-up pass, then at least three passes
/// and a million requests), all at once (a barrier before and after the timed passes); the wall
/// time of the timed passes × the processors the threads had (at most one each), over the
/// requests they served.
fn serve(threads: usize, tenants: usize, request: impl Fn(usize) + Sync) -> f64 {
    let barrier = std::sync::Barrier::new(threads + 1);
    let passes = (1_000_000 / tenants).max(3);
    let mut wall = Duration::ZERO;
    std::thread::scope(|s| {
        for t in 0..threads {
            let (barrier, request) = (&barrier, &request);
            s.spawn(move || {
                let order: Vec<usize> = {
                    let mut x = t as u64 + 1;
                    let mut order: Vec<usize> = (0..tenants).collect();
                    for i in (1..order.len()).rev() {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        order.swap(i, (x % (i as u64 + 1)) as usize);
                    }
                    order
                };
                let pass = || order.iter().for_each(|&i| request(i));
                pass();
                barrier.wait();
                for _ in 0..passes {
                    pass();
                }
                barrier.wait();
            });
        }
        barrier.wait();
        let start = Instant::now();
        barrier.wait();
        wall = start.elapsed();
    });
    let cpus = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(threads);
    wall.as_secs_f64() * 1e9 * cpus as f64 / (passes * threads * tenants) as f64
}
