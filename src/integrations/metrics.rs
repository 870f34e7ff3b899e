//! Snapshots as metrics, through the [`metrics`](https://docs.rs/metrics) facade (feature
//! `metrics`): the program's recorder (a Prometheus exporter, StatsD, …) decides where they go.
//!
//! [`publish`] sets, from one snapshot:
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `classtrack_live_bytes` | gauge | `class` | bytes allocated and not yet freed |
//! | `classtrack_live_blocks` | gauge | `class` | blocks allocated and not yet freed |
//! | `classtrack_allocated_bytes_total` | counter | `class` | bytes ever allocated |
//! | `classtrack_allocations_total` | counter | `class` | blocks ever allocated |
//! | `classtrack_freed_bytes_total` | counter | `class` | bytes ever freed |
//! | `classtrack_frees_total` | counter | `class` | blocks ever freed |
//! | `classtrack_classes` | gauge | | classes that have allocated, reserved ones included |
//! | `classtrack_resident_bytes` | gauge | | the process's resident memory (if readable) |
//! | `classtrack_virtual_bytes` | gauge | | the process's virtual memory (if readable) |
//! | `classtrack_overhead_bytes` | gauge | | what tracking costs ([`Overhead::total_bytes`]) |
//! | `classtrack_samples_total` | counter | | allocation-site samples taken |
//! | `classtrack_samples_dropped_total` | counter | | samples dropped (channel full) |
//!
//! Counters are set with `absolute` from the allocator's monotonic counts.
//!
//! **Bounded cardinality.** The `class` label takes at most
//! [`top_classes`](MetricsOptions::top_classes) + 3 values: the top N classes by live bytes
//! (50 by default), the reserved `<untracked>` and `<classtrack overhead>`, and `<other>`, the
//! sum of every other class. A program with 100,000 classes publishes at most 53 series per
//! per-class metric.
//!
//! [`Overhead::total_bytes`]: crate::Overhead::total_bytes

use std::collections::HashSet;
use std::sync::Mutex;

use ::metrics::{counter, describe_counter, describe_gauge, gauge, Unit};
use classtrack_shim::OverheadGuard;

use crate::snapshot::{ClassTotals, Snapshot};

/// How many classes get a series of their own by default (see
/// [`MetricsOptions::top_classes`]).
pub const DEFAULT_TOP_CLASSES: usize = 50;

/// The `class` label of the series that sums every class not among the top N.
pub const OTHER_CLASS: &str = "<other>";

/// What to publish: see the [module documentation](self).
///
/// ```
/// let options = classtrack::metrics::MetricsOptions::new().top_classes(20);
/// assert_eq!(options.top_classes, 20);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MetricsOptions {
    /// How many user classes, the largest by live bytes, get series of their own; the rest
    /// are summed into `class="<other>"`. The two reserved classes always get their own.
    pub top_classes: usize,
}

impl Default for MetricsOptions {
    fn default() -> Self {
        MetricsOptions {
            top_classes: DEFAULT_TOP_CLASSES,
        }
    }
}

impl MetricsOptions {
    /// The defaults: the top [`DEFAULT_TOP_CLASSES`] classes.
    pub fn new() -> MetricsOptions {
        MetricsOptions::default()
    }

    /// Sets [`top_classes`](Self::top_classes). 0 sums every user class into `<other>`.
    pub fn top_classes(mut self, n: usize) -> MetricsOptions {
        self.top_classes = n;
        self
    }
}

/// One series' figures: a class's, or the sum of the classes in `<other>`.
#[derive(Default)]
struct Figures {
    live_bytes: u64,
    live_blocks: u64,
    allocated_bytes: u64,
    allocations: u64,
    freed_bytes: u64,
    frees: u64,
}

impl Figures {
    fn add(&mut self, c: &ClassTotals) {
        self.live_bytes += c.live_bytes;
        self.live_blocks += c.live_blocks;
        self.allocated_bytes += c.allocated_bytes;
        self.allocations += c.allocations;
        self.freed_bytes += c.freed_bytes;
        self.frees += c.frees;
    }
}

/// The classes that get series of their own: the reserved ones, then the top `n` user classes
/// by live bytes (ties by name, so the choice does not depend on the classes' order). Returns
/// them and the sum of the rest.
fn select(snapshot: &Snapshot, n: usize) -> (Vec<&ClassTotals>, Figures) {
    let mut chosen: Vec<&ClassTotals> = snapshot
        .classes
        .iter()
        .filter(|c| c.is_reserved())
        .collect();
    let mut users: Vec<&ClassTotals> = snapshot.user_classes().collect();
    let order = |a: &&ClassTotals, b: &&ClassTotals| {
        b.live_bytes
            .cmp(&a.live_bytes)
            .then_with(|| a.name.cmp(&b.name))
    };
    let mut other = Figures::default();
    if users.len() > n {
        if n > 0 {
            users.select_nth_unstable_by(n - 1, order);
        }
        for c in &users[n..] {
            other.add(c);
        }
        users.truncate(n);
    }
    users.sort_unstable_by(order);
    chosen.extend(users);
    (chosen, other)
}

fn describe() {
    describe_gauge!(
        "classtrack_live_bytes",
        Unit::Bytes,
        "Bytes allocated and not yet freed, per class."
    );
    describe_gauge!(
        "classtrack_live_blocks",
        Unit::Count,
        "Blocks allocated and not yet freed, per class."
    );
    describe_counter!(
        "classtrack_allocated_bytes_total",
        Unit::Bytes,
        "Bytes ever allocated, per class."
    );
    describe_counter!(
        "classtrack_allocations_total",
        Unit::Count,
        "Blocks ever allocated, per class."
    );
    describe_counter!(
        "classtrack_freed_bytes_total",
        Unit::Bytes,
        "Bytes ever freed, per class."
    );
    describe_counter!(
        "classtrack_frees_total",
        Unit::Count,
        "Blocks ever freed, per class."
    );
    describe_gauge!(
        "classtrack_classes",
        Unit::Count,
        "Classes that have allocated, reserved ones included."
    );
    describe_gauge!(
        "classtrack_resident_bytes",
        Unit::Bytes,
        "The process's resident memory."
    );
    describe_gauge!(
        "classtrack_virtual_bytes",
        Unit::Bytes,
        "The process's virtual memory."
    );
    describe_gauge!(
        "classtrack_overhead_bytes",
        Unit::Bytes,
        "What tracking costs: classtrack's own allocations, block tags and counter shards."
    );
    describe_counter!(
        "classtrack_samples_total",
        Unit::Count,
        "Allocation-site samples taken."
    );
    describe_counter!(
        "classtrack_samples_dropped_total",
        Unit::Count,
        "Allocation-site samples dropped because the sample channel was full."
    );
}

fn set_class(class: &str, f: &Figures) {
    let label = || [("class", class.to_owned())];
    gauge!("classtrack_live_bytes", &label()).set(f.live_bytes as f64);
    gauge!("classtrack_live_blocks", &label()).set(f.live_blocks as f64);
    counter!("classtrack_allocated_bytes_total", &label()).absolute(f.allocated_bytes);
    counter!("classtrack_allocations_total", &label()).absolute(f.allocations);
    counter!("classtrack_freed_bytes_total", &label()).absolute(f.freed_bytes);
    counter!("classtrack_frees_total", &label()).absolute(f.frees);
}

/// Publishes `snapshot` through the current `metrics` recorder: see the
/// [module documentation](self) for the names. Returns the class labels it set (the
/// `<other>` series included).
///
/// A class that was among the top N in an earlier call and is not now keeps the values it had
/// then: [`ClassTracker::publish_metrics`](crate::ClassTracker::publish_metrics) sets its
/// gauges to 0 instead, so that they sum to the total.
///
/// ```
/// let tracker = classtrack::ClassTracker::new();
/// let snap = tracker.create_snapshot("now");
/// let classes = classtrack::metrics::publish(&snap, &classtrack::metrics::MetricsOptions::new());
/// assert!(classes.iter().any(|c| c == "<other>"));
/// ```
pub fn publish(snapshot: &Snapshot, options: &MetricsOptions) -> Vec<String> {
    let _g = OverheadGuard::new();
    describe();
    let (chosen, other) = select(snapshot, options.top_classes);
    let mut published = Vec::with_capacity(chosen.len() + 1);
    for c in chosen {
        let mut f = Figures::default();
        f.add(c);
        set_class(&c.name, &f);
        published.push(c.name.to_string());
    }
    set_class(OTHER_CLASS, &other);
    published.push(OTHER_CLASS.to_owned());
    gauge!("classtrack_classes").set(snapshot.classes.len() as f64);
    if let Some(p) = &snapshot.process {
        gauge!("classtrack_resident_bytes").set(p.resident_bytes as f64);
        gauge!("classtrack_virtual_bytes").set(p.virtual_bytes as f64);
    }
    gauge!("classtrack_overhead_bytes").set(snapshot.overhead.total_bytes() as f64);
    counter!("classtrack_samples_total").absolute(snapshot.sampling.sent);
    counter!("classtrack_samples_dropped_total").absolute(snapshot.sampling.dropped);
    published
}

/// Publication on every snapshot of a tracker: [`publish`], and the gauges of classes that
/// left the top N set to 0.
pub(crate) struct Publisher {
    options: MetricsOptions,
    /// The classes published last time.
    ///
    /// A plain mutex, only ever `try_lock`ed: two snapshots that finish at once publish
    /// nearly the same figures, so the second one skips; and a child of `fork()` whose parent
    /// was publishing then gives up publishing rather than hang on a lock held by a thread it
    /// does not have.
    last: Mutex<HashSet<String>>,
}

impl Publisher {
    pub(crate) fn new(options: MetricsOptions) -> Publisher {
        Publisher {
            options,
            last: Mutex::new(HashSet::new()),
        }
    }

    pub(crate) fn publish(&self, snapshot: &Snapshot) {
        let _g = OverheadGuard::new();
        let Ok(mut last) = self.last.try_lock() else {
            return;
        };
        let now: HashSet<String> = publish(snapshot, &self.options).into_iter().collect();
        for gone in last.difference(&now) {
            let label = [("class", gone.clone())];
            gauge!("classtrack_live_bytes", &label).set(0.0);
            gauge!("classtrack_live_blocks", &label).set(0.0);
        }
        *last = now;
    }
}
