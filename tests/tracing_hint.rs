//! Feature `tracing`: when a `ClassLayer` is installed and no span reaches it while the program
//! allocates, snapshots' tables and the endpoint's page say so in one line. The flag is
//! process-wide: this file is its own test binary, with one test.
#![cfg(feature = "tracing")]

use std::alloc::System;
use std::time::Duration;

use classtrack::integrations::tracing::ClassLayer;
use classtrack::{ClassTracker, TrackingAlloc};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::prelude::*;

#[global_allocator]
static ALLOC: TrackingAlloc<System> = TrackingAlloc::new(System);

fn table(tracker: &ClassTracker) -> String {
    let mut out = Vec::new();
    tracker
        .create_snapshot("now")
        .write_table(&mut out)
        .unwrap();
    String::from_utf8(out).unwrap()
}

const HINT: &str = "hint: a ClassLayer is installed but no span has reached it";

#[test]
fn a_layer_that_sees_no_span_is_pointed_out_once_then_not_after_a_span() {
    let tracker = ClassTracker::new();
    assert!(!table(&tracker).contains(HINT), "no layer yet");
    // A global filter that lets no INFO span through: the layer sees none.
    let subscriber = tracing_subscriber::registry()
        .with(LevelFilter::ERROR)
        .with(ClassLayer::by_target());
    let dispatch = tracing::Dispatch::new(subscriber);
    tracing::dispatcher::with_default(&dispatch, || {
        let _e = tracing::info_span!("never_seen").entered();
        // Neither allocated enough nor quiet long enough yet.
        assert!(!table(&tracker).contains(HINT));
        std::thread::sleep(Duration::from_millis(1100));
        assert!(
            !table(&tracker).contains(HINT),
            "quiet, but little allocated"
        );
        let churn: Vec<Vec<u8>> = (0..64).map(|_| vec![0u8; 32 << 10]).collect();
        drop(churn);
        let t = table(&tracker);
        assert_eq!(t.matches(HINT).count(), 1, "{t}");
        assert!(t.contains("classtrack::integrations::tracing"), "{t}");
        // The endpoint's page says so too.
        #[cfg(feature = "server")]
        {
            let server = classtrack::serve(&tracker, "127.0.0.1:0").unwrap();
            let page = ureq::get(&format!("http://{}/", server.local_addr()))
                .call()
                .unwrap()
                .into_string()
                .unwrap();
            assert_eq!(page.matches("no span has reached it").count(), 1, "{page}");
        }
    });
    // Once a span reaches a layer, the hint is gone.
    let seen = tracing_subscriber::registry().with(ClassLayer::by_target());
    tracing::subscriber::with_default(seen, || {
        let _e = tracing::info_span!("seen").entered();
    });
    assert!(!table(&tracker).contains(HINT));
}
