//! Helpers shared by integration tests (each test file that uses them says `mod common;`).
#![allow(dead_code)]

use std::sync::mpsc::RecvTimeoutError;
use std::task::Poll;
use std::time::{Duration, Instant};

use classtrack::Snapshot;

/// Whether this process has a thread named `classtrack-sampler`, once it has named itself (a
/// new thread sets its name when it starts: this waits up to a second for one to appear).
pub fn sampler_thread_exists() -> bool {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        if sampler_thread_named() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Whether a thread of this process is named `classtrack-sampler` now.
pub fn sampler_thread_named() -> bool {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        // Linux keeps the first 15 bytes of a thread's name.
        .any(|comm| comm.trim_end() == &"classtrack-sampler"[..15])
}

/// The site estimates of class `name` summed: (live bytes, live blocks).
pub fn site_live(snap: &Snapshot, name: &str) -> (f64, f64) {
    let Some(class) = snap.class_named(name) else {
        return (0.0, 0.0);
    };
    snap.sites
        .iter()
        .filter(|s| s.class == class.id)
        .fold((0.0, 0.0), |(b, n), s| {
            (b + s.live_bytes, n + s.live_blocks)
        })
}

/// Yields once to the scheduler, waking itself. (Not `tokio::task::yield_now`, which parks the
/// waker in a per-worker buffer: when that buffer grows, inside some task's poll, the growth
/// is rightly charged to that task's class, but it is not a test's ground truth.)
pub async fn yield_once() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await
}

/// Runs `f` on its own thread and fails if it takes longer than `secs`.
pub fn within<R: Send + 'static>(secs: u64, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        let r = f();
        let _ = tx.send(());
        r
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(()) | Err(RecvTimeoutError::Disconnected) => match worker.join() {
            Ok(r) => r,
            Err(e) => std::panic::resume_unwind(e),
        },
        Err(RecvTimeoutError::Timeout) => panic!("timed out after {secs} s"),
    }
}
