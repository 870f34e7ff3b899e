//! Spans as class scopes (feature `tracing`): tokio tasks instrumented with spans are charged
//! exactly to their spans' classes.
#![cfg(feature = "tracing")]

use std::alloc::System;
use std::hint::black_box;
use std::time::Duration;

use classtrack::integrations::tracing::ClassLayer;
use classtrack::{ClassId, ClassTracker, TrackingAlloc};
use tracing::Instrument;
use tracing_subscriber::prelude::*;

#[global_allocator]
static ALLOC: TrackingAlloc<System> = TrackingAlloc::new(System);

mod common;
use common::yield_once;

fn figures(tracker: &ClassTracker, name: &str) -> (u64, u64, u64) {
    tracker
        .create_snapshot(name)
        .class_named(name)
        .map_or((0, 0, 0), |c| {
            (c.allocated_bytes, c.allocations, c.live_bytes)
        })
}

fn diff(a: (u64, u64, u64), b: (u64, u64, u64)) -> (u64, u64, u64) {
    (a.0 - b.0, a.1 - b.1, a.2 - b.2)
}

const TASKS: usize = 60;

async fn task_work(n: usize) -> Vec<u8> {
    let v = black_box(vec![3u8; 100 + n]);
    tokio::time::sleep(Duration::from_micros(300)).await;
    drop(v);
    yield_once().await;
    black_box(vec![4u8; 10 + n])
}

#[tracing::instrument(fields(class = "tracing_t::instrumented"))]
fn build_index(n: usize) -> Vec<u32> {
    black_box(vec![0u32; n])
}

/// One test owns the global subscriber: the layer's modes are checked with `with_default`.
#[test]
fn spans_are_class_scopes() {
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(ClassLayer::new()))
        .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(3)
        .enable_time()
        .build()
        .unwrap();
    let run = |field_class: &'static str| {
        rt.block_on(async move {
            let mut handles = Vec::with_capacity(2 * TASKS);
            for n in 0..TASKS {
                // One class by the span's `class` field, one by the span's name.
                let by_field = tracing::info_span!("request", class = field_class);
                handles.push(tokio::spawn(task_work(n).instrument(by_field)));
                let by_name = tracing::info_span!(parent: None, "ingest");
                handles.push(tokio::spawn(task_work(n).instrument(by_name)));
            }
            let mut out = Vec::with_capacity(handles.len());
            for h in handles {
                out.push(h.await.unwrap());
            }
            out
        })
    };
    // Warm the runtime and the span registry's slots up.
    drop(run("tracing_t::warm"));

    let tracker = ClassTracker::new();
    let f0 = figures(&tracker, "tracing_t::field");
    let n0 = figures(&tracker, "ingest");
    let kept = run("tracing_t::field");
    let f1 = figures(&tracker, "tracing_t::field");
    let n1 = figures(&tracker, "ingest");
    let allocated: u64 = (0..TASKS as u64).map(|n| 100 + n + 10 + n).sum();
    let live: u64 = (0..TASKS as u64).map(|n| 10 + n).sum();
    let want = (allocated, 2 * TASKS as u64, live);
    assert_eq!(diff(f1, f0), want, "by field");
    assert_eq!(diff(n1, n0), want, "by span name");
    assert_eq!(classtrack::current_class(), ClassId::UNTRACKED);

    // #[instrument] with a class field.
    let i0 = figures(&tracker, "tracing_t::instrumented");
    let idx = build_index(1000);
    assert_eq!(
        diff(figures(&tracker, "tracing_t::instrumented"), i0),
        (4000, 1, 4000)
    );
    assert_eq!(classtrack::current_class(), ClassId::UNTRACKED);

    // Spans exited out of order leave no stale scope.
    let a = tracing::info_span!("tracing_t::a");
    let b = tracing::info_span!("tracing_t::b");
    let ea = a.enter();
    let eb = b.enter();
    assert_eq!(
        classtrack::current_class(),
        classtrack::class_id_named("tracing_t::b")
    );
    drop(ea);
    assert_eq!(
        classtrack::current_class(),
        classtrack::class_id_named("tracing_t::b")
    );
    drop(eb);
    assert_eq!(classtrack::current_class(), ClassId::UNTRACKED);

    drop((kept, idx));
}

#[test]
fn by_field_ignores_spans_without_the_field() {
    let subscriber = tracing_subscriber::registry().with(ClassLayer::by_field("owner"));
    tracing::subscriber::with_default(subscriber, || {
        let outer = tracing::info_span!("outer", owner = "tracing_t::owner");
        let _o = outer.enter();
        let inner = tracing::info_span!("inner_plain");
        let _i = inner.enter();
        assert_eq!(
            classtrack::current_class(),
            classtrack::class_id_named("tracing_t::owner")
        );
    });
    let subscriber = tracing_subscriber::registry().with(ClassLayer::by_span_name());
    tracing::subscriber::with_default(subscriber, || {
        let span = tracing::info_span!("tracing_t::named", class = "ignored");
        let _e = span.enter();
        assert_eq!(
            classtrack::current_class(),
            classtrack::class_id_named("tracing_t::named")
        );
    });
    assert_eq!(classtrack::current_class(), ClassId::UNTRACKED);
}

#[test]
fn a_class_recorded_later_applies_from_the_next_entry() {
    let subscriber = tracing_subscriber::registry().with(ClassLayer::by_field("class"));
    tracing::subscriber::with_default(subscriber, || {
        let span = tracing::info_span!("late", class = tracing::field::Empty);
        {
            let _e = span.enter();
            assert_eq!(classtrack::current_class(), ClassId::UNTRACKED);
        }
        span.record("class", "tracing_t::late");
        let _e = span.enter();
        assert_eq!(
            classtrack::current_class(),
            classtrack::class_id_named("tracing_t::late")
        );
    });
    assert_eq!(classtrack::current_class(), ClassId::UNTRACKED);
}

mod app {
    pub mod server {
        /// An `#[instrument]`ed function of a module, named like one in another module.
        #[tracing::instrument]
        pub fn run() -> Vec<u8> {
            std::hint::black_box(vec![1u8; 1234])
        }
    }
    pub mod client {
        #[tracing::instrument]
        pub fn run() -> Vec<u8> {
            std::hint::black_box(vec![2u8; 4321])
        }
    }
}

#[test]
fn by_target_names_classes_by_module_and_span() {
    let tracker = ClassTracker::new();
    let subscriber = tracing_subscriber::registry().with(ClassLayer::by_target());
    let (server, client) =
        tracing::subscriber::with_default(subscriber, || (app::server::run(), app::client::run()));
    let snap = tracker.create_snapshot("by target");
    let live = |name: &str| snap.class_named(name).map(|c| c.live_bytes);
    assert_eq!(live("tracing_layer::app::server::run"), Some(1234));
    assert_eq!(live("tracing_layer::app::client::run"), Some(4321));
    // Not merged under the bare function name.
    assert_eq!(live("run"), None);
    drop((server, client));
}

#[test]
fn a_per_layer_filter_keeps_spans_for_the_layer_while_logs_are_filtered() {
    use tracing_subscriber::filter::{self, LevelFilter};
    // What a global filter with RUST_LOG unset does: spans below ERROR reach no layer.
    let global = tracing_subscriber::registry()
        .with(LevelFilter::ERROR)
        .with(ClassLayer::by_target());
    let class = tracing::subscriber::with_default(global, || {
        let _e = tracing::info_span!("filtered_out").entered();
        classtrack::current_class()
    });
    assert_eq!(class, ClassId::UNTRACKED);
    // The recipe: the logs' filter on their layer alone, every span for the class layer.
    let logs = tracing_subscriber::layer::Identity::new().with_filter(LevelFilter::ERROR);
    let per_layer = tracing_subscriber::registry()
        .with(logs)
        .with(ClassLayer::by_target().with_filter(filter::filter_fn(|m| m.is_span())));
    let class = tracing::subscriber::with_default(per_layer, || {
        let _e = tracing::debug_span!("kept").entered();
        classtrack::current_class()
    });
    assert_eq!(class, classtrack::class_id_named("tracing_layer::kept"));
}
