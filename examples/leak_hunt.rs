//! Finding a slow leak in a service-like loop with periodic snapshots.
//!
//! Run it with `cargo run --release --example leak_hunt`. A request loop creates sessions
//! and responses that are all dropped, keeps a bounded cache, and, by mistake, keeps every
//! audit entry forever. Periodic snapshots and the summary show which class grows; an HTML
//! report of the run is written to `target/classtrack-leak-hunt.html`, and the stats are
//! dumped to `target/leak_hunt.json` for the `classtrack` command
//! (`cargo run -p classtrack-cli -- leaks target/leak_hunt.json`).

mod common;

use std::alloc::System;
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use classtrack::report::format_bytes;
use classtrack::{ClassTracker, SortKey, TrackOptions, TrackingAlloc};

#[global_allocator]
static ALLOC: TrackingAlloc<System> = TrackingAlloc::new(System);

/// Per-request state: built and dropped for every request.
#[derive(Debug)]
#[allow(dead_code)]
struct Session {
    user: String,
    headers: Vec<(String, String)>,
}

/// A rendered response: dropped once sent.
#[allow(dead_code)]
struct Response {
    body: Vec<u8>,
}

/// One audit record. The service means to flush these, but never does: the leak.
#[derive(Debug)]
#[allow(dead_code)]
struct AuditEntry {
    request: u64,
    action: String,
}

/// A bounded cache of recent responses: grows to its bound, then stays flat.
struct ResponseCache {
    order: VecDeque<u64>,
    bodies: HashMap<u64, Vec<u8>>,
    bound: usize,
}

impl ResponseCache {
    fn insert(&mut self, key: u64, body: Vec<u8>) {
        if self.bodies.insert(key, body).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > self.bound {
            if let Some(old) = self.order.pop_front() {
                self.bodies.remove(&old);
            }
        }
    }
}

fn main() {
    // One stack per 32 KiB allocated rather than the default 512 KiB, so that the audit
    // entries' few hundred KiB are sampled well enough to say where they come from.
    classtrack::set_sample_mean(32 * 1024);
    let tracker = ClassTracker::new();
    tracker.track_class::<Session>(TrackOptions::new().name("Session"));
    tracker.track_class::<AuditEntry>(TrackOptions::new().name("AuditEntry").trace(true));

    let mut cache = ResponseCache {
        order: VecDeque::new(),
        bodies: HashMap::new(),
        bound: 500,
    };
    let mut audit_log = Vec::new();

    tracker
        .start_periodic_snapshots(Duration::from_millis(100))
        .expect("a non-zero interval");
    let started = std::time::Instant::now();
    let mut request = 0u64;
    while started.elapsed() < Duration::from_millis(1050) {
        request += 1;
        let session = tracker.construct_debug(|| Session {
            user: format!("user-{}", request % 977),
            headers: (0..8)
                .map(|h| (format!("x-header-{h}"), "v".repeat(32)))
                .collect(),
        });
        let response = classtrack::scope::<Response, _>(|| Response {
            body: format!("hello {} #{request}", session.user)
                .repeat(16)
                .into_bytes(),
        });
        classtrack::scope::<ResponseCache, _>(|| {
            cache.insert(request % 2000, response.body.clone())
        });
        if request % 4 == 0 {
            // The leak: a quarter of the requests leave an audit entry behind, for good.
            audit_log.push(tracker.construct_debug(|| AuditEntry {
                request,
                action: format!("{} read /orders/{}", session.user, request % 100),
            }));
        }
        drop((session, response));
    }
    tracker.stop_periodic_snapshots().unwrap();

    let stats = tracker.stats();
    let dump = common::output_path("leak_hunt.json");
    stats
        .dump(&dump)
        .unwrap_or_else(|e| panic!("{}: {e}", dump.display()));
    stats
        .print_summary(&mut std::io::stdout())
        .expect("stdout is writable");

    // What changed per class from the first periodic snapshot to the last.
    let snaps = tracker.snapshots();
    let (first, last) = (&snaps[0], &snaps[snaps.len() - 1]);
    println!("\nchanges per class, largest growth first:");
    last.diff(first)
        .write_table(&mut std::io::stdout())
        .expect("stdout is writable");

    // Classes whose live bytes grew in most of the last 8 intervals, fastest first.
    println!("\nleak suspects (growth in most of the last 8 intervals):");
    for s in tracker.leak_suspects(8, 2) {
        println!(
            "  {} grew in {} of {} intervals: {} now, {}/s",
            s.name,
            s.grew_in,
            s.intervals,
            format_bytes(s.live_bytes),
            format_bytes(s.bytes_per_second.max(0.0) as u64)
        );
        for site in &s.top_sites {
            let f = &site.frames;
            let at = f
                .iter()
                .find(|f| f.function.starts_with("leak_hunt::"))
                .or(f.first())
                .map_or("?", |f| f.function.as_str());
            println!("    {} from {at}", site.estimate);
        }
    }
    println!(
        "tracking cost at the last snapshot: {} ({} in the tracker's own records)",
        format_bytes(last.overhead.total_bytes()),
        format_bytes(last.overhead.tracker_bytes)
    );

    println!("\nthe three oldest audit entries, with where they were built:");
    let mut stats = stats;
    stats.sort_stats(&[SortKey::Birth]);
    stats
        .print_stats(&mut std::io::stdout(), Some("AuditEntry"), Some(3))
        .expect("stdout is writable");
    println!(
        "\n{request} requests, {} audit entries kept, cache of {}",
        audit_log.len(),
        cache.bodies.len()
    );
    println!("wrote {0} (classtrack summary {0})", dump.display());

    let report = common::output_path("classtrack-leak-hunt.html");
    stats
        .write_html(&report)
        .unwrap_or_else(|e| panic!("{}: {e}", report.display()));
    println!("wrote {} (open it in a browser)", report.display());
}
