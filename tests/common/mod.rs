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
            (b + s.estimate.live_bytes, n + s.estimate.live_blocks)
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

/// `fork()`: in the child, runs `child` and leaves with `_exit` and its code (101 if it
/// panicked), running no destructor of the parent's; in the parent, returns the child's pid.
///
/// Under an emulator (`CLASSTRACK_TEST_RUNNER` set, as `.ci/cross` sets it for qemu-user) the
/// fork is made from a thread started for it: qemu-user 7.2 aborts (exit status 127) the child
/// of a multi-threaded process when the child starts a thread, unless the thread that forked
/// was the parent's newest (the child hands out the emulated CPU numbers of the parent's other
/// threads again); a C program that forks from `main` with two threads running shows the same.
/// So under the emulator no other thread may be started while this one forks: run such tests
/// one at a time there (`--test-threads=1`). Natively the calling thread forks.
///
/// # Safety
///
/// `child` must only do what is safe in the child of a multi-threaded process (where only the
/// forking thread exists): here, classtrack's own code, which its fork handlers make safe.
#[cfg(unix)]
pub unsafe fn fork_then(child: impl FnOnce() -> i32 + Send) -> libc::pid_t {
    let fork = move || {
        // SAFETY: the caller vouches for what the child runs; the child leaves with `_exit`.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed: {}", std::io::Error::last_os_error());
        if pid == 0 {
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(child)).unwrap_or(101);
            // SAFETY: leaves the child at once, without running the parent's destructors.
            unsafe { libc::_exit(code) };
        }
        pid
    };
    if std::env::var_os("CLASSTRACK_TEST_RUNNER").is_some() {
        std::thread::scope(|s| s.spawn(fork).join().unwrap())
    } else {
        fork()
    }
}
