//! A small tokio service, watched live: request tasks of a few classes run on a multi-thread
//! runtime, each wrapped with `InClass` so its allocations are its class's across `.await`s and
//! worker threads; an audit log leaks slowly. classtrack serves its live page at `/`, and
//! `/metrics`, `/stats.json`, `/report.html`, `/debug/pprof/heap` and `/debug/pprof/allocs`
//! while it runs.
//!
//! ```sh
//! cargo run --release --example service --features server            # 60 s on 127.0.0.1:6060
//! cargo run --release --example service --features server -- 600 0   # 600 s, any free port
//! curl -s http://127.0.0.1:6060/metrics | grep classtrack_live_bytes
//! classtrack summary http://127.0.0.1:6060
//! go tool pprof -http=: target/release/examples/service http://127.0.0.1:6060/debug/pprof/heap
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use classtrack::{ClassTracker, InClass, ServerBuilder, TrackingAlloc};

#[global_allocator]
static ALLOC: TrackingAlloc<std::alloc::System> = TrackingAlloc::new(std::alloc::System);

/// A parsed request and what answering it builds.
struct Request {
    path: String,
    headers: Vec<(String, String)>,
}

/// The shared response cache (a class of its own: bounded).
type Cache = Arc<Mutex<HashMap<u64, Vec<u8>>>>;

/// The audit log: one entry per 10 requests, never trimmed (the slow leak).
type Audit = Arc<Mutex<Vec<String>>>;

async fn handle(id: u64, cache: Cache, audit: Audit) {
    let request = Request {
        path: format!("/orders/{}", id % 500),
        headers: (0..8)
            .map(|h| (format!("x-header-{h}"), "v".repeat(32)))
            .collect(),
    };
    // Await in the middle: the task may resume on another worker thread.
    tokio::time::sleep(Duration::from_millis(id % 3)).await;
    let body = format!("{} with {} headers", request.path, request.headers.len()).into_bytes();
    // The cache's growth is the cache's, whichever task grows it.
    let cache_insert = async {
        cache.lock().unwrap().insert(id % 2000, body.repeat(8));
    };
    cache_insert.in_class_named("response cache").await;
    if id % 10 == 0 {
        record(&audit, id, &request.path);
    }
}

/// The leak, in a class of its own: the entry and the log's growth.
#[classtrack::scope("audit log")]
fn record(audit: &Audit, id: u64, path: &str) {
    audit
        .lock()
        .unwrap()
        .push(format!("request {id} read {path}"));
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> classtrack::Result<()> {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(60);
    let port: u16 = args.next().and_then(|a| a.parse().ok()).unwrap_or(6060);

    let tracker = ClassTracker::new();
    tracker.start_periodic_snapshots(Duration::from_secs(1))?;
    let server = ServerBuilder::new(&tracker)
        .addr(([127, 0, 0, 1], port).into())
        .start()?;
    let addr = server.local_addr();
    println!("serving on http://{addr}/ for {seconds} s:");
    println!("  curl -s http://{addr}/metrics | grep classtrack_live_bytes");
    println!("  classtrack summary http://{addr}");
    println!("  go tool pprof -http=: http://{addr}/debug/pprof/heap");

    let cache: Cache = Arc::default();
    let audit: Audit = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let mut id = 0u64;
    while started.elapsed() < Duration::from_secs(seconds) {
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                id += 1;
                // Requests for orders and for sessions: two classes, the same handler.
                let class = if id % 3 == 0 {
                    "session requests"
                } else {
                    "order requests"
                };
                let audit = audit.clone();
                tokio::spawn(handle(id, cache.clone(), audit).in_class_named(class))
            })
            .collect();
        for t in tasks {
            t.await.expect("a request task panicked");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tracker.stop_periodic_snapshots()?;
    let snap = tracker.create_snapshot("end");
    snap.write_table(&mut std::io::stdout())
        .expect("stdout is writable");
    drop(server);
    Ok(())
}
