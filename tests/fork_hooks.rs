//! The sampler's fork hooks: after `fork()` the child has no aggregator thread (only the forking
//! thread is copied) and may have inherited locks and channels mid-use; with the hooks
//! (registered by classtrack itself when sampling or a tracker starts), the child starts a new aggregator, keeps the parent's estimates and every record
//! sent before the fork, and its estimates stay exact under trace-every-allocation. And an
//! aggregator thread that dies is started again, and counted.
//!
//! Runs without the test harness (`harness = false`): a forked child must not find the
//! harness's threads' locks held, and exits with `_exit`.

use std::alloc::System;
#[cfg(unix)]
use std::sync::atomic::{AtomicBool, Ordering};
#[cfg(unix)]
use std::sync::Arc;
use std::time::{Duration, Instant};

use classtrack::{ClassTracker, TrackingAlloc};
#[cfg(unix)]
use classtrack_shim::{replace_tag, Tag};

#[global_allocator]
static ALLOC: TrackingAlloc<System> = TrackingAlloc::new(System);

mod common;
use common::*;

/// Waits (up to 10 s) until the site estimate of traced class `name` equals its exact live
/// figures; returns them, or the last mismatch.
fn settled(tracker: &ClassTracker, name: &str) -> Result<(f64, f64), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let snap = tracker.create_snapshot("settling");
        let exact = snap
            .class_named(name)
            .map_or((0.0, 0.0), |c| (c.live_bytes as f64, c.live_blocks as f64));
        let estimate = site_live(&snap, name);
        if estimate == exact {
            return Ok(exact);
        }
        if Instant::now() > deadline {
            return Err(format!("{name}: estimate {estimate:?}, exact {exact:?}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[inline(never)]
fn blocks(name: &str, n: usize) -> Vec<Box<[u8]>> {
    classtrack::scope_named(name, || {
        (0..n)
            .map(|i| vec![7u8; 8 + i % 200].into_boxed_slice())
            .collect()
    })
}

fn restarts_after_a_panic() {
    const NAME: &str = "fork::restart";
    let tracker = ClassTracker::new();
    classtrack::trace_every_allocation_named(NAME, true);
    let before = tracker
        .create_snapshot("running")
        .sampling
        .aggregator_restarts;
    assert!(sampler_thread_exists());
    classtrack::__stop_aggregator();
    let deadline = Instant::now() + Duration::from_secs(10);
    while sampler_thread_named() {
        assert!(
            Instant::now() < deadline,
            "the aggregator thread did not stop"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let kept = blocks(NAME, 1000);
    let snap = tracker.create_snapshot("restarted");
    assert_eq!(snap.sampling.aggregator_restarts, before + 1);
    assert!(sampler_thread_exists(), "not started again");
    let (bytes, n) = settled(&tracker, NAME).unwrap();
    // The blocks and the vector holding them.
    assert!(bytes > 0.0 && n == 1001.0, "{n}");
    drop(kept);
    settled(&tracker, NAME).unwrap();
    classtrack::trace_every_allocation_named(NAME, false);
}

/// In a child: the aggregator is gone, a tracker starts a new one, the parent's estimates of
/// `kept` are there and follow its frees and new allocations exactly.
#[cfg(unix)]
fn in_child(kept: &mut Vec<Box<[u8]>>) -> Result<(), String> {
    if sampler_thread_exists() {
        return Err("the parent's aggregator thread in the child".into());
    }
    let tracker = ClassTracker::new();
    if !sampler_thread_exists() {
        return Err("no aggregator thread started in the child".into());
    }
    // The blocks and the vector holding them.
    let (_, n) = settled(&tracker, "fork::kept")?;
    if n != kept.len() as f64 + 1.0 {
        return Err(format!("{n} blocks estimated, {} kept", kept.len()));
    }
    kept.truncate(kept.len() / 2);
    kept.extend(blocks("fork::kept", 3000));
    let started = Instant::now();
    let (_, n) = settled(&tracker, "fork::kept")?;
    if n != kept.len() as f64 + 1.0 {
        return Err(format!("{n} blocks estimated, {} kept", kept.len()));
    }
    if started.elapsed() > Duration::from_secs(2) {
        return Err(format!("settling took {:?}", started.elapsed()));
    }
    Ok(())
}

#[cfg(unix)]
fn child_after_fork_keeps_sampling() {
    const NAME: &str = "fork::kept";
    let tracker = ClassTracker::new();
    classtrack::trace_every_allocation_named(NAME, true);
    classtrack::trace_every_allocation_named("fork::hammer", true);
    let mut kept = blocks(NAME, 5000);
    settled(&tracker, NAME).unwrap();
    // A thread that samples all the time (every allocation of its class is traced), so that
    // forks find it sending; it enters its class without classtrack's registry lock.
    let hammer_class = classtrack::class_id_named("fork::hammer");
    let stop = Arc::new(AtomicBool::new(false));
    let hammer = std::thread::spawn({
        let stop = stop.clone();
        move || {
            let prev = replace_tag(Tag::class(hammer_class));
            let mut ring: Vec<Option<Box<[u8]>>> = (0..512).map(|_| None).collect();
            let mut i = 0usize;
            // Relaxed: a stop flag.
            while !stop.load(Ordering::Relaxed) {
                ring[i % 512] = Some(vec![1u8; 16 + i % 300].into_boxed_slice());
                i += 1;
            }
            drop(ring);
            replace_tag(prev);
        }
    });
    std::thread::sleep(Duration::from_millis(50));
    for round in 0..5 {
        let child = || {
            // SAFETY: `alarm` has no preconditions: a hang in the child kills it.
            unsafe { libc::alarm(30) };
            match in_child(&mut kept) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("fork round {round}: child: {e}");
                    1
                }
            }
        };
        // SAFETY: the child runs only code that this test's fork handlers made safe to run
        // (classtrack's sampler and tracker), then leaves with `_exit`.
        let pid = unsafe { fork_then(child) };
        let mut status = 0;
        // SAFETY: waits for the child forked above; `status` is a valid out-pointer.
        let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(waited, pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "fork round {round}: the child failed (status {status:#x})"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Relaxed: a stop flag.
    stop.store(true, Ordering::Relaxed);
    hammer.join().unwrap();
    // The parent goes on sampling too.
    kept.extend(blocks(NAME, 100));
    settled(&tracker, NAME).unwrap();
    drop(kept);
    settled(&tracker, NAME).unwrap();
    classtrack::trace_every_allocation_named(NAME, false);
    classtrack::trace_every_allocation_named("fork::hammer", false);
}

fn main() {
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(180));
        eprintln!("fork_hooks: timed out");
        std::process::exit(2);
    });
    restarts_after_a_panic();
    println!("test fork_hooks::restarts_after_a_panic ... ok");
    // Only where there is `fork`.
    #[cfg(unix)]
    {
        child_after_fork_keeps_sampling();
        println!("test fork_hooks::child_after_fork_keeps_sampling ... ok");
        println!("2 passed, 0 failed");
    }
    #[cfg(not(unix))]
    println!("1 passed, 0 failed");
}
