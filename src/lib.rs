//! Which kinds of objects own your heap.
//!
//! classtrack is a wrapping global allocator that charges every allocation to the *class
//! scope* that was current when it was made (a type, or a named subsystem) and keeps exact
//! live bytes and blocks per class, cheaply enough to leave on in production. It is the Rust
//! counterpart of pympler's `ClassTracker`, built on the allocator instead of on walking
//! object graphs.
//!
//! # Setup
//!
//! Install the tracking allocator around the allocator you use now:
//!
//! ```
//! use std::alloc::System;
//! use classtrack::TrackingAlloc;
//!
//! #[global_allocator]
//! static ALLOC: TrackingAlloc<System> = TrackingAlloc::new(System);
//! # fn main() {}
//! ```
//!
//! Any `GlobalAlloc` can be wrapped (jemalloc, mimalloc, …). Each block costs 8 extra bytes
//! (its owner's tag, stored after the user's bytes), reported as overhead.
//!
//! # Scopes
//!
//! A scope names the class that the current thread's allocations are charged to:
//!
//! ```
//! struct Order { lines: Vec<String> }
//!
//! // closure form, by type: the class is named `std::any::type_name::<Order>()`
//! let order = classtrack::scope::<Order, _>(|| Order { lines: vec!["2 x bolt".into()] });
//! // closure form, by name, for subsystems that are not one type
//! let cache = classtrack::scope_named("cache", || vec![0u8; 1024]);
//! // guard form: the scope ends when the guard is dropped
//! {
//!     let _guard = classtrack::enter::<Order>();
//!     let more: Vec<u64> = Vec::with_capacity(16); // charged to Order
//! #   drop(more);
//! }
//! # drop((order, cache));
//! ```
//!
//! Scopes nest; the innermost wins. A scope ends on panic as on return. Entering a scope
//! whose class this thread has used before takes no lock (a thread-local lookup).
//!
//! What users must know, because it differs from pympler (which charges memory to whatever
//! object *reaches* it at snapshot time):
//! - memory is charged to the scope that **allocated** it, for the block's whole life;
//! - `realloc` keeps the block's owner: a `Vec` built in `Order`'s scope and grown later
//!   elsewhere still charges `Order`;
//! - a free on another thread credits the class that allocated the block;
//! - allocations outside any scope go to the reserved class `<untracked>`, classtrack's own
//!   to `<classtrack overhead>`; so the classes always sum to the allocator's live total.
//!
//! Classes are identified by name: a type's class and a named scope with the same name are
//! one class. Up to 2^24 (about 16.7 million) classes are supported; names beyond that share
//! `<untracked>`.
//!
//! # Async tasks and other threads
//!
//! A scope belongs to a thread. For a future, wrap it with [`InClass`]: the scope is entered
//! around each poll, on whichever worker thread polls it, and left before the poll returns
//! (never hold a [`ScopeGuard`] across `.await`). To carry a scope to work run on another
//! thread, take [`current_scope`] (a `Copy + Send` value) and enter it there; [`scope_id`] and
//! [`enter_id`] enter a class by its [`ClassId`].
//!
//! ```
//! use classtrack::InClass;
//!
//! # async fn demo() {
//! let rows = async { vec![0u64; 512] }.in_class_named("db rows").await;
//! let s = classtrack::current_scope();
//! std::thread::spawn(move || s.enter(|| vec![1u8; 64])).join().unwrap();
//! # drop(rows);
//! # }
//! ```
//!
//! Scopes dropped out of order (guards held across `.await` on a single-threaded executor)
//! are repaired: the thread's class is always that of the innermost scope still open; see
//! [`scope_exits_out_of_order`].
//!
//! # Snapshots
//!
//! A [`ClassTracker`] takes [`Snapshot`]s: per-class [`ClassTotals`], the allocator's totals,
//! the process's resident and virtual memory, and the tracker's own overhead.
//!
//! ```
//! let tracker = classtrack::ClassTracker::new();
//! let snap = tracker.create_snapshot("after load");
//! for class in snap.user_classes() {
//!     println!("{}: {} live bytes in {} blocks", class.name, class.live_bytes, class.live_blocks);
//! }
//! snap.write_table(&mut std::io::stdout()).unwrap();
//! ```
//!
//! `write_table` prints (from `cargo run --release --example quickstart`):
//!
//! ```text
//! snapshot "book built" at 0.047 s
//! class                    live blocks    live bytes     average   share     peak seen     allocated   allocations
//! quickstart::OrderBook              1       6.1 MiB     6.1 MiB   58.5%       6.1 MiB      12.1 MiB            15
//! symbol cache                    8001       2.0 MiB       259 B   19.1%       2.0 MiB       2.1 MiB         10001
//! quickstart::Order             146709       1.9 MiB        14 B   18.4%       1.9 MiB       1.9 MiB        146709
//! quickstart::PriceLevel           230     416.4 KiB     1.8 KiB    3.9%     416.4 KiB     416.4 KiB           230
//! <untracked>                        3         566 B       189 B    0.0%         566 B         566 B             3
//! user heap                     154944      10.4 MiB        70 B  100.0%                    16.5 MiB        156958
//! <classtrack overhead>             77       1.4 MiB    18.8 KiB       -       1.4 MiB       1.4 MiB            99
//! total                         155021      11.8 MiB        80 B       -                    17.9 MiB        157057
//! process: resident 18.1 MiB, virtual 85.4 MiB
//! tracking overhead: 2.6 MiB (tracker 1.4 MiB, block tags 1.2 MiB, counter shards 20.0 KiB)
//! sampling: one stack per 512.0 KiB allocated (21 samples taken, 0 dropped)
//! ```
//!
//! **Consistency.** Each thread counts into its own counter shard; a snapshot sums them. It
//! reads all "freed" counters before all "allocated" counters, and frees are published with
//! release stores, so a snapshot that sees a free also sees its allocation: live figures are
//! never negative and never wrap, even while other threads allocate. A snapshot is not one
//! instant: allocations made while it reads may or may not be included.
//!
//! # Tracked classes and instances
//!
//! [`ClassTracker::track_class`] makes values built by [`ClassTracker::construct`] instances
//! with a birth, a death (the [`Tracked`] handle's drop), a size at each snapshot (the live
//! bytes allocated in their scopes), a representation and optionally a construction
//! backtrace that starts at the line that built it. [`ClassTracker::track_object`] tracks an
//! existing `Arc` (without a breakdown by nested scopes: it was allocated before it was
//! tracked); [`ClassTracker::track_change`] changes one instance's breakdown depth. Periodic
//! snapshots run on a background thread; [`ClassTracker::snapshot_labeled`] finds a snapshot
//! by its description; [`ClassTracker::close`] ends tracking. [`ClassTracker::stats`] gathers
//! everything into [`Stats`] to print, sort, [`dump`](Stats::dump) and [`load`](Stats::load).
//! See the README and `examples/leak_hunt.rs`. A snapshot measures the live instances a batch
//! at a time under the tracker's lock, but a thread that builds, changes or drops an instance
//! never waits for it: births, representations and deaths are handed to the tracker through a
//! lock-free mailbox that the lock's holder applies.
//!
//! # Leaving it on
//!
//! A tracker's own memory is bounded whatever its uptime, snapshot rate or instance churn: it
//! keeps its most recent snapshots in full, a downsampled series of older ones, a downsampled
//! size history per instance (its first, last and largest sizes always kept) and per tracked
//! class, and a bounded number of dead instances. [`Retention`] sets the limits and gives the
//! formula (about 30 MiB with the defaults for 1,000 classes, 10 tracked classes and 1,000
//! live instances); [`ClassTracker::compaction`] counts what was dropped.
//!
//! ```
//! use classtrack::{ClassTracker, Retention};
//!
//! let tracker = ClassTracker::new();
//! tracker.set_retention(Retention::new().dead_instances(1000)).unwrap();
//! tracker.start_periodic_snapshots(std::time::Duration::from_secs(10)).unwrap();
//! // ... months later ...
//! tracker.stop_periodic_snapshots().unwrap(); // reports any periodic snapshot that failed
//! ```
//!
//! A child of `fork()` keeps working: it can allocate, free its parent's blocks, enter scopes,
//! take snapshots and start periodic snapshots of its own (threads do not survive `fork()`, so
//! the parent's periodic snapshots are not running in the child). classtrack's locks are all
//! taken around `fork()` by `pthread_atfork` handlers, so no lock is left held by a thread the
//! child does not have.
//!
//! # Allocation sites
//!
//! Sampling is on by default (on Windows it is off until turned on: see [Platforms](#platforms)):
//! about one stack per 512 KiB allocated per thread, as raw return addresses, weighted so that
//! per-site estimates are unbiased
//! ([`set_sample_mean`] changes the rate, 0 turns it off; [`trace_every_allocation`] records
//! every allocation of one class). A snapshot's [`Snapshot::top_sites`] lists where a class's
//! memory came from; [`Snapshot::write_flamegraph`] and [`Snapshot::write_pprof`] write an SVG
//! flamegraph and a gzipped pprof profile. See `examples/where_from.rs`.
//!
//! [`ClassTracker::write_html`] and [`Stats::write_html`] write all of it as one
//! self-contained HTML page: memory over time by class, leak suspects and growth, each class's
//! sites, flamegraph and instances, and each snapshot's table (pympler's `HtmlStats`).
//!
//! With `set_sample_mean(0)` first thing in `main`, the sampler sets nothing up: no unwind
//! tables are indexed, no module is pinned, no `classtrack-sampler` thread runs. Turning
//! sampling on later starts the thread and indexes the modules loaded at that moment.
//!
//! # Platforms
//!
//! Linux (x86-64, AArch64), macOS (Apple silicon, Intel) and Windows (x86-64, MSVC).
//! Accounting, scopes, snapshots, reports, the command and the endpoint are the same on all.
//! What differs is how sampled stacks are found (see `classtrack_shim`'s crate docs, section
//! "Platforms"): frame-pointer walks where the build keeps frame pointers (AArch64 Linux,
//! macOS), DWARF unwinding elsewhere, and on Windows sampling is off by default (its unwinder
//! can wait on the loader's lock); `fork()` handlers exist only on Unix.
//!
//! # Testing
//!
//! Tests that check figures should have their own integration-test file with its own
//! `#[global_allocator]`, use class names that no other test uses, and compare differences
//! between two snapshots.
//!
//! # Feature flags
//!
//! Scopes, snapshots, instances, stats with their console tables and JSON dumps, sampled
//! sites and the `classtrack` command's dump format are always available. The reports are on
//! by default; the integrations are off.
//!
//! - **`html`** (default): the HTML report, [`Stats::write_html`], [`Stats::html`] and
//!   [`ClassTracker::write_html`], with flamegraphs. Pulls in `maud`, `plotters` (its SVG
//!   backend only) and `inferno`.
//! - **`pprof`** (default): pprof profiles ([`Snapshot::write_pprof`], [`Stats::write_pprof`],
//!   [`report::pprof`]), flamegraphs and folded stacks ([`Snapshot::write_flamegraph`],
//!   [`Stats::write_flamegraph`]; also with `html`). Pulls in `prost`, `flate2` and `inferno`.
//!
//! - **`allocative`**: `ClassTracker::track_object_allocative`, objects tracked by handle
//!   measured by the traversal of Meta's [`allocative`](https://docs.rs/allocative) for types
//!   that derive `Allocative` rather than [`Footprint`]. Pulls in `allocative`.
//! - **`tracing`**: `integrations::tracing::ClassLayer`, a `tracing-subscriber` layer that
//!   makes spans class scopes (by span name, or by a `class` field), so `#[instrument]`ed
//!   functions and `.instrument(span)`ed tasks are attributed with no other change. Pulls in
//!   `tracing-core` and `tracing-subscriber` (its `registry` and `std` features only).
//! - **`metrics`**: snapshots as metrics through the [`metrics`](https://docs.rs/metrics)
//!   facade, for whatever recorder the program installs: `metrics::publish` and
//!   `ClassTracker::publish_metrics` (on every snapshot). Per-class live bytes and blocks,
//!   allocation counters, process memory, overhead and sampler drops, named per Prometheus
//!   conventions (`classtrack_live_bytes{class="…"}`, …), with a bounded number of classes.
//!   Pulls in `metrics`.
//! - **`server`** (implies `metrics`, and `pprof` and `html` for its pages): `serve` starts an
//!   HTTP endpoint on a background thread: a live page at `/`, `/metrics` (Prometheus text),
//!   `/debug/pprof/heap` and `/debug/pprof/allocs` (for `go tool pprof`, Parca, Pyroscope),
//!   `/stats.json` (a dump, which the `classtrack` command reads by URL), `/report.html` and
//!   `/snapshot.json`;
//!   loopback only unless told otherwise, optional bearer token, timeouts on every request. Pulls in `hyper`, `hyper-util`,
//!   `http-body-util`, `tokio` (a one-thread runtime on the server thread) and
//!   `metrics-exporter-prometheus` (its renderer only, no listener).
//!
//! ```
//! # #[cfg(feature = "server")] {
//! let tracker = classtrack::ClassTracker::new();
//! tracker.start_periodic_snapshots(std::time::Duration::from_secs(10)).unwrap();
//! let server = classtrack::serve(&tracker, "127.0.0.1:0").unwrap();
//! // curl http://ADDR/metrics · go tool pprof -http=: http://ADDR/debug/pprof/heap
//! println!("listening on {}", server.local_addr());
//! # }
//! ```
//!
//! To only count bytes per class (in production, say), leave the reports out:
//!
//! ```toml
//! [dependencies]
//! classtrack = { version = "0.1", default-features = false }
//! ```
//!
//! classtrack then builds with its core's crates only: `classtrack-shim`, `backtrace`,
//! `crossbeam-channel`, `parking_lot`, `hashbrown`, `memory-stats`, `serde`, `serde_json`,
//! `pin-project-lite`, `futures-core` and `libc`, and what they need. A dump written by such a
//! program ([`Stats::dump`]) is read by the `classtrack` command, which writes every report.
//! The README's "Feature flags" gives the build time of a small program both ways.
#![deny(missing_docs, unsafe_op_in_unsafe_fn)]
// docs.rs (`--cfg docsrs`, see Cargo.toml) marks the items that a feature gates.
#![cfg_attr(docsrs, feature(doc_cfg))]
// The manual above links the reports' methods, which a build without them does not have.
#![cfg_attr(
    not(all(feature = "html", feature = "pprof")),
    allow(rustdoc::broken_intra_doc_links)
)]

#[doc(hidden)]
pub mod __private;
mod budget;
mod diff;
mod dump;
mod dumps;
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
mod dwarf;
mod error;
mod file;
mod footprint;
mod fork;
mod future;
mod history;
mod instance;
#[cfg(any(feature = "metrics", feature = "server", feature = "tracing"))]
#[cfg_attr(
    docsrs,
    doc(cfg(any(feature = "metrics", feature = "server", feature = "tracing")))
)]
pub mod integrations;
mod machinery;
mod mapping;
mod objects;
mod peak;
mod periodic;
mod registry;
pub mod report;
mod sampling;
mod scope;
mod snapshot;
mod stats;
mod stats_v1;
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
mod symtab;
mod sync;
pub mod testing;
mod tracker;

pub use budget::{
    budget, budget_interval, budget_stats, over_budget, set_budget, set_budget_interval,
    BudgetEvent, BudgetStats, DEFAULT_BUDGET_INTERVAL,
};
#[cfg(feature = "macros")]
pub use classtrack_macros::{class, scope, Footprint};
pub use classtrack_shim::{
    cached_dwarf_enabled, cached_dwarf_fallbacks, frame_pointers_detected, sample_mean,
    set_stack_depth, set_unwinder, stack_depth, unwinder, ClassId, TrackingAlloc, Unwinder,
    DEFAULT_SAMPLE_MEAN, METADATA_BYTES_PER_BLOCK, PEAK_GRANULARITY,
};
pub use diff::{ClassDiff, LeakSuspect, SiteSummary, SnapshotDiff};
pub use dumps::{DumpOptions, DumpStatus, DumpTrigger};
pub use error::{Error, Result};
pub use footprint::{footprint_of, Footprint, FootprintSize, Visitor};
pub use future::{InClass, Scoped};
pub use history::{Compaction, Retention};
pub use instance::{TrackOptions, Tracked, REPR_LIMIT};
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub use integrations::metrics;
#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub use integrations::server::{serve, ServerBuilder, ServerHandle};
pub use objects::Referent;
pub use registry::{class_count, OVERHEAD_CLASS, UNTRACKED_CLASS};
#[doc(hidden)]
pub use sampling::__stop_aggregator;
pub use sampling::{
    set_sample_mean, trace_every_allocation, trace_every_allocation_named, Estimate, Frame, Site,
};
pub use scope::{
    class_id_named, class_id_of, current_class, current_scope, enter, enter_id, enter_named, scope,
    scope_exits_out_of_order, scope_id, scope_named, Scope, ScopeGuard,
};
pub use snapshot::{
    AllocatorTotals, ClassTotals, Overhead, ProcessMemory, SamplingStats, Snapshot,
    TrackedClassTotals,
};
pub use stats::{
    Breakdown, ClassStats, InstanceStats, OmittedClasses, SiteStats, SnapshotStats, SortKey, Stats,
    STATS_VERSION,
};
#[doc(hidden)]
pub use tracker::{__set_snapshot_batch_hook, __set_snapshot_locked_hook};
pub use tracker::{
    ClassTracker, Subscription, DEFAULT_DEAD_INSTANCE_LIMIT, MAX_SUBSCRIPTION_CAPACITY,
};

/// Whether a [`TrackingAlloc`] has counted any allocation in this process.
///
/// `false` means figures will all be zero: install `TrackingAlloc` as the
/// `#[global_allocator]`.
pub fn allocator_installed() -> bool {
    classtrack_shim::shim_stats().shards > 0
}

// The README's examples write reports and use the attributes: they need the default features.
#[doc = include_str!("../README.md")]
#[cfg(all(doctest, feature = "html", feature = "pprof", feature = "macros"))]
pub struct ReadmeDoctests;
