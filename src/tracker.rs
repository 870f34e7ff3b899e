//! [`ClassTracker`]: takes and keeps snapshots.

use std::sync::Arc;
use std::time::{Duration, Instant};

use classtrack_shim::OverheadGuard;
use parking_lot::Mutex;

use crate::snapshot::Snapshot;

/// Takes snapshots of memory per class and keeps them.
///
/// The counters belong to the allocator and are shared by every tracker; a tracker holds its
/// own clock (snapshot times are seconds since it was created) and its own list of snapshots.
/// It is `Send + Sync`: snapshots may be taken from any thread while others allocate.
///
/// ```
/// let tracker = classtrack::ClassTracker::new();
/// let first = tracker.create_snapshot("start");
/// let second = tracker.create_snapshot("later");
/// assert!(second.time >= first.time);
/// assert_eq!(tracker.snapshots().len(), 2);
/// ```
#[derive(Debug)]
pub struct ClassTracker {
    start: Instant,
    /// Held only to push or clone the list: never while reading counters, and the allocator
    /// never takes it, so it cannot deadlock.
    snapshots: Mutex<Vec<Arc<Snapshot>>>,
}

impl Default for ClassTracker {
    fn default() -> Self {
        Self::new()
    }
}

impl ClassTracker {
    /// A tracker with no snapshots; its clock starts now.
    pub fn new() -> ClassTracker {
        ClassTracker {
            start: Instant::now(),
            snapshots: Mutex::new(Vec::new()),
        }
    }

    /// Time since the tracker was created.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Reads every class's counters, the process's memory and the tracker's overhead now,
    /// keeps the snapshot and returns it.
    ///
    /// Totals come from the allocator's counters, so this is cheap (it does not walk the
    /// heap) and always complete; pympler's `compute_total` is always on.
    pub fn create_snapshot(&self, description: &str) -> Arc<Snapshot> {
        let _g = OverheadGuard::new();
        let time = self.start.elapsed().as_secs_f64();
        let snap = Arc::new(Snapshot::take(time, description));
        self.snapshots.lock().push(snap.clone());
        snap
    }

    /// The snapshots taken so far, oldest first.
    pub fn snapshots(&self) -> Vec<Arc<Snapshot>> {
        let _g = OverheadGuard::new();
        self.snapshots.lock().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracker_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<ClassTracker>();
        check::<Snapshot>();
    }

    #[test]
    fn snapshots_from_many_threads_are_all_kept() {
        let tracker = std::sync::Arc::new(ClassTracker::new());
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let t = tracker.clone();
                std::thread::spawn(move || {
                    for k in 0..10 {
                        let s = t.create_snapshot(&format!("thread {i} snapshot {k}"));
                        assert!(s.time >= 0.0);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(tracker.snapshots().len(), 40);
    }
}
