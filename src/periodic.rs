//! Periodic snapshots on a background thread, controlled over a crossbeam channel.
//!
//! The thread never dies silently: a snapshot that panics (a tracked object's `Debug`, say)
//! is caught, counted and reported by the next `stop`; a thread that stopped by itself is
//! reported by the next `start` or `stop`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::error::{Error, Result};
use crate::sync::Lock;
use crate::tracker::Inner;

enum Command {
    Interval(Duration),
    Stop,
}

/// Snapshots of the periodic thread that failed.
#[derive(Default)]
struct Failures {
    count: u64,
    last: String,
}

/// A running periodic-snapshot thread.
pub(crate) struct Periodic {
    tx: Sender<Command>,
    thread: Option<JoinHandle<()>>,
    failures: Arc<Lock<Failures>>,
    /// The process generation (see `fork.rs`) the thread was started in: in a child of
    /// `fork()` the thread does not exist.
    generation: u64,
}

impl Periodic {
    pub(crate) fn start(tracker: Arc<Inner>, interval: Duration) -> Result<Periodic> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let failures = Arc::new(Lock::new(Failures::default()));
        let f = failures.clone();
        let thread = std::thread::Builder::new()
            .name("classtrack-snapshots".into())
            .spawn(move || run(&tracker, interval, &rx, &f))
            .map_err(|source| Error::Spawn {
                thread: "classtrack-snapshots",
                source,
            })?;
        Ok(Periodic {
            tx,
            thread: Some(thread),
            failures,
            generation: crate::fork::generation(),
        })
    }

    /// Whether the thread exists in this process (it was not started before a `fork()`).
    fn is_ours(&self) -> bool {
        self.generation == crate::fork::generation()
    }

    /// Whether the thread is running: started in this process and not stopped by itself.
    pub(crate) fn is_running(&self) -> bool {
        self.is_ours() && self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// What a new start finds: `Some(self)` if the thread is running; `None` if it was
    /// started before a `fork()` (it is not in this process: it is forgotten); the error if it
    /// stopped by itself.
    pub(crate) fn take_over(self) -> Result<Option<Periodic>> {
        if !self.is_ours() {
            self.forget_in_child();
            return Ok(None);
        }
        if self.is_running() {
            return Ok(Some(self));
        }
        Err(self
            .stop()
            .err()
            .unwrap_or_else(|| Error::PeriodicSnapshots {
                failures: 0,
                last: "the periodic snapshot thread stopped by itself".to_owned(),
            }))
    }

    /// Continues at a new interval, counted from now.
    pub(crate) fn set_interval(&self, interval: Duration) {
        let _ = self.tx.send(Command::Interval(interval));
    }

    /// Stops the thread and waits for it (it wakes on the command at once); reports the
    /// snapshots that failed and a thread that had stopped by itself.
    pub(crate) fn stop(mut self) -> Result<()> {
        if !self.is_ours() {
            self.forget_in_child();
            return Ok(());
        }
        let _ = self.tx.send(Command::Stop);
        let joined = self.thread.take().map(JoinHandle::join);
        let failures = std::mem::take(&mut *self.failures.lock());
        if let Some(Err(panic)) = joined {
            return Err(Error::PeriodicSnapshots {
                failures: failures.count + 1,
                last: panic_message(&*panic),
            });
        }
        if failures.count > 0 {
            return Err(Error::PeriodicSnapshots {
                failures: failures.count,
                last: failures.last,
            });
        }
        Ok(())
    }

    /// In a child of `fork()`: the thread does not exist, and its channel may be locked by
    /// it (it vanished mid-operation). Nothing of it is touched: its memory is left as is.
    fn forget_in_child(self) {
        std::mem::forget(self);
    }
}

impl Drop for Periodic {
    fn drop(&mut self) {
        if !self.is_ours() {
            return;
        }
        let _ = self.tx.send(Command::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The text of a panic's payload.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

fn run(tracker: &Inner, mut interval: Duration, rx: &Receiver<Command>, failures: &Lock<Failures>) {
    // Everything this thread allocates is classtrack's.
    let _g = classtrack_shim::OverheadGuard::new();
    // `None`: the interval is too long to count down (`Duration::MAX`): wait for a command.
    let mut next = Instant::now().checked_add(interval);
    loop {
        let command = match next {
            Some(at) => rx.recv_timeout(at.saturating_duration_since(Instant::now())),
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match command {
            Ok(Command::Interval(i)) => {
                interval = i;
                next = Instant::now().checked_add(interval);
            }
            Ok(Command::Stop) | Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => {
                // A snapshot runs user code (`Debug` of tracked objects): a panic there is
                // counted and reported, and the next snapshot is taken all the same.
                if let Err(panic) = catch_unwind(AssertUnwindSafe(|| {
                    tracker.snapshot("periodic");
                })) {
                    let mut f = failures.lock();
                    f.count += 1;
                    f.last = panic_message(&*panic);
                }
                // Keep the cadence; after a stall, start again from now rather than catch up.
                let now = Instant::now();
                next = next
                    .and_then(|n| n.checked_add(interval))
                    .filter(|&n| n >= now)
                    .or_else(|| now.checked_add(interval));
            }
        }
    }
}
