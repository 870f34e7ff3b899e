//! Periodic snapshots on a background thread, controlled over a crossbeam channel.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::tracker::Inner;

enum Command {
    Interval(Duration),
    Stop,
}

/// A running periodic-snapshot thread.
pub(crate) struct Periodic {
    tx: Sender<Command>,
    thread: Option<JoinHandle<()>>,
}

impl Periodic {
    pub(crate) fn start(tracker: Arc<Inner>, interval: Duration) -> Periodic {
        let (tx, rx) = crossbeam_channel::unbounded();
        let thread = std::thread::Builder::new()
            .name("classtrack-snapshots".into())
            .spawn(move || run(&tracker, interval, &rx))
            .ok();
        Periodic { tx, thread }
    }

    /// Continues at a new interval, counted from now.
    pub(crate) fn set_interval(&self, interval: Duration) {
        let _ = self.tx.send(Command::Interval(interval));
    }

    /// Stops the thread and waits for it: the thread wakes on the command at once.
    pub(crate) fn stop(mut self) {
        let _ = self.tx.send(Command::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Periodic {
    fn drop(&mut self) {
        let _ = self.tx.send(Command::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(tracker: &Inner, mut interval: Duration, rx: &Receiver<Command>) {
    // Everything this thread allocates is classtrack's.
    let _g = classtrack_shim::OverheadGuard::new();
    let mut next = Instant::now() + interval;
    loop {
        let wait = next.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(Command::Interval(i)) => {
                interval = i;
                next = Instant::now() + interval;
            }
            Ok(Command::Stop) | Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => {
                tracker.snapshot("periodic");
                // Keep the cadence; after a stall, start again from now rather than catch up.
                next += interval;
                let now = Instant::now();
                if next < now {
                    next = now + interval;
                }
            }
        }
    }
}
