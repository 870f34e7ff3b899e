//! A small multi-tenant service with a memory budget per tenant: worker threads serve requests
//! of 1,000 tenants, each request in its tenant's class scope; every tenant has a budget of
//! 256 KiB of live memory, and a request of a tenant over its budget is refused. One tenant,
//! `tenant-17`, keeps everything it is sent (a leak): it is refused once over budget, and the
//! others are served as before. Per-tenant memory is on the endpoint while it runs.
//!
//! ```sh
//! cargo run --release --example tenants --features server            # 30 s on 127.0.0.1:6061
//! cargo run --release --example tenants --features server -- 600 0   # 600 s, any free port
//! curl -s http://127.0.0.1:6061/metrics | grep 'classtrack_live_bytes{class="tenant-'
//! classtrack summary http://127.0.0.1:6061
//! ```

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use classtrack::{ClassId, ClassTracker, ServerBuilder, TrackingAlloc};

#[global_allocator]
static ALLOC: TrackingAlloc<std::alloc::System> = TrackingAlloc::new(std::alloc::System);

const TENANTS: usize = 1_000;
const WORKERS: usize = 8;
const BUDGET: u64 = 256 << 10;
const LEAKY: usize = 17;

/// What a tenant keeps between requests: its recent documents (the last 16), or with the leak,
/// all of them.
#[derive(Default)]
struct TenantState {
    documents: Vec<String>,
}

struct Tenant {
    name: String,
    class: ClassId,
    state: Mutex<TenantState>,
    served: AtomicU64,
    refused: AtomicU64,
}

/// One request: a document built in the tenant's scope, kept in its state.
fn serve(tenant: &Tenant, request: u64, leaky: bool) {
    if classtrack::over_budget(tenant.class) {
        tenant.refused.fetch_add(1, Ordering::Relaxed);
        return;
    }
    classtrack::scope_named(&tenant.name, || {
        let document = format!("{} request {request}: {}", tenant.name, "x".repeat(200));
        let mut state = tenant.state.lock().unwrap();
        state.documents.push(document);
        if !leaky && state.documents.len() > 16 {
            state.documents.remove(0);
        }
    });
    tenant.served.fetch_add(1, Ordering::Relaxed);
}

fn main() -> classtrack::Result<()> {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(30);
    let port: u16 = args.next().and_then(|a| a.parse().ok()).unwrap_or(6061);

    let tracker = ClassTracker::new();
    tracker.start_periodic_snapshots(Duration::from_secs(1))?;
    tracker.on_budget_exceeded(|e| {
        let verb = if e.exceeded { "over" } else { "back within" };
        println!(
            "{} is {verb} its budget: {} KiB live of {} KiB",
            e.name,
            e.live_bytes >> 10,
            e.limit >> 10
        );
    });
    let server = ServerBuilder::new(&tracker)
        .addr(([127, 0, 0, 1], port).into())
        .start()?;
    let addr = server.local_addr();
    println!("serving per-tenant memory on http://{addr}/ for {seconds} s:");
    println!("  curl -s http://{addr}/metrics | grep 'classtrack_live_bytes{{class=\"tenant-'");
    println!("  classtrack summary http://{addr}");

    let tenants: Vec<Tenant> = (0..TENANTS)
        .map(|i| {
            let name = format!("tenant-{i}");
            let class = classtrack::class_id_named(&name);
            Tenant {
                name,
                class,
                state: Mutex::default(),
                served: AtomicU64::new(0),
                refused: AtomicU64::new(0),
            }
        })
        .collect();
    for t in &tenants {
        classtrack::set_budget(t.class, Some(BUDGET))?;
    }
    let tenants = Arc::new(tenants);
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (tenants, stop) = (tenants.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut x = w as u64 * 0x9e37_79b9 + 1;
                let mut request = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    request += 1;
                    // One request in 20 is the leaky tenant's.
                    let i = if x % 20 == 0 {
                        LEAKY
                    } else {
                        (x >> 8) as usize % TENANTS
                    };
                    serve(&tenants[i], request, i == LEAKY);
                    if request % 64 == 0 {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                }
            })
        })
        .collect();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("a worker panicked");
    }
    tracker.stop_periodic_snapshots()?;

    let snap = tracker.create_snapshot("end");
    let mut rows: Vec<(&Tenant, u64)> = tenants
        .iter()
        .map(|t| (t, snap.class_named(&t.name).map_or(0, |c| c.live_bytes)))
        .collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.1));
    println!(
        "\nthe largest tenants at the end ({} tenants, budget {} KiB each):",
        TENANTS,
        BUDGET >> 10
    );
    println!(
        "{:<12} {:>10} {:>9} {:>9}",
        "tenant", "live", "served", "refused"
    );
    for (t, live) in rows.iter().take(5) {
        println!(
            "{:<12} {:>6} KiB {:>9} {:>9}",
            t.name,
            live >> 10,
            t.served.load(Ordering::Relaxed),
            t.refused.load(Ordering::Relaxed)
        );
    }
    let refused_others: u64 = tenants
        .iter()
        .filter(|t| t.name != tenants[LEAKY].name)
        .map(|t| t.refused.load(Ordering::Relaxed))
        .sum();
    println!("requests refused to the other tenants: {refused_others}");
    let stats = classtrack::budget_stats();
    println!(
        "budget thread: {} rounds over {} budgets, the last took {:?}",
        stats.rounds, stats.budgets, stats.last_round
    );
    let leaky = &tenants[LEAKY];
    assert!(
        leaky.refused.load(Ordering::Relaxed) > 0 || seconds < 2,
        "the leaky tenant was never refused"
    );
    drop(server);
    Ok(())
}
