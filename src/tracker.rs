//! [`ClassTracker`]: tracked classes and objects, snapshots, periodic snapshots, stats.

use std::any::type_name;
use std::fmt::Debug;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use classtrack_shim::{ClassId, OverheadGuard, Tag};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use hashbrown::HashMap;

use crate::error::{Error, Result};
use crate::history::{Compaction, Event, History, InstanceRecord, Retention, Series};
use crate::instance::{clip, SharedArc, SharedObject, Source, TrackOptions, Tracked};
use crate::periodic::Periodic;
use crate::scope::{class_id_of, ScopeGuard};
use crate::snapshot::{Snapshot, TrackedClassTotals};
use crate::stats::Stats;
use crate::sync::Lock;

/// How many dead instances a tracker keeps by default (see
/// [`ClassTracker::set_dead_instance_limit`] and [`Retention::dead_instances`]).
pub const DEFAULT_DEAD_INSTANCE_LIMIT: usize = 10_000;

/// The most snapshots a subscription's channel may hold.
pub const MAX_SUBSCRIPTION_CAPACITY: usize = 1 << 16;

pub(crate) struct Subscriber {
    tx: Sender<Arc<Snapshot>>,
    dropped: Arc<AtomicU64>,
}

/// Instances a snapshot goes through in one hold of the tracker's lock: tens of microseconds
/// of work (see [`Inner::snapshot`]).
const BATCH: usize = 256;

/// What [`__set_snapshot_batch_hook`] set: a `fn()` cast to a pointer, or null.
static BATCH_HOOK: AtomicPtr<()> = AtomicPtr::new(std::ptr::null_mut());

/// Runs `hook` on a snapshot's thread between every two batches of its pass over the live
/// instances, with none of the tracker's locks held (`None`: no hook), so that a test can
/// build and drop instances at a known point of a snapshot. Not for use outside tests.
#[doc(hidden)]
pub fn __set_snapshot_batch_hook(hook: Option<fn()>) {
    let p = hook.map_or(std::ptr::null_mut(), |f| f as *mut ());
    // Relaxed: a function pointer points to code, which needs no publishing.
    BATCH_HOOK.store(p, Ordering::Relaxed);
}

/// What [`__set_snapshot_locked_hook`] set: a `fn()` cast to a pointer, or null.
static LOCKED_HOOK: AtomicPtr<()> = AtomicPtr::new(std::ptr::null_mut());

/// Runs `hook` on a snapshot's thread at the end of every batch of its pass over the live
/// instances, with the tracker's lock held (`None`: no hook), so that a test can build and
/// drop instances while a snapshot holds the lock. Not for use outside tests.
#[doc(hidden)]
pub fn __set_snapshot_locked_hook(hook: Option<fn()>) {
    let p = hook.map_or(std::ptr::null_mut(), |f| f as *mut ());
    // Relaxed: see `__set_snapshot_batch_hook`.
    LOCKED_HOOK.store(p, Ordering::Relaxed);
}

#[inline]
fn batch_hook() {
    run_hook(&BATCH_HOOK);
}

#[inline]
fn run_hook(slot: &AtomicPtr<()>) {
    // Relaxed: see `__set_snapshot_batch_hook`.
    let p = slot.load(Ordering::Relaxed);
    if !p.is_null() {
        // SAFETY: the only non-null values stored in `BATCH_HOOK` and `LOCKED_HOOK` are
        // `fn()` pointers cast to `*mut ()` (`__set_snapshot_batch_hook`,
        // `__set_snapshot_locked_hook`), so this casts one back to its own type.
        let hook = unsafe { std::mem::transmute::<*mut (), fn()>(p) };
        hook();
    }
}

/// A snapshot's totals of tracked instances, per class, summed as the instances are gone
/// through (neighbours, mostly built one after the other, are mostly of one class: the last
/// class is looked up first).
#[derive(Default)]
struct PerClass {
    index: HashMap<ClassId, usize>,
    totals: Vec<TrackedClassTotals>,
    last: Option<(ClassId, usize)>,
}

impl PerClass {
    /// Counts an instance of `class` of `size` bytes; `name` names a class seen first.
    #[inline]
    fn add(&mut self, class: ClassId, size: u64, name: impl FnOnce() -> String) {
        let i = match self.last {
            Some((c, i)) if c == class => i,
            _ => {
                let totals = &mut self.totals;
                let i = *self.index.entry(class).or_insert_with(|| {
                    totals.push(TrackedClassTotals::empty(name()));
                    totals.len() - 1
                });
                self.last = Some((class, i));
                i
            }
        };
        self.totals[i].add(size);
    }

    /// The totals, with an empty one for each tracked class that had no instance.
    fn finish<'a>(
        mut self,
        classes: impl Iterator<Item = (ClassId, &'a String)>,
    ) -> Vec<TrackedClassTotals> {
        for (id, name) in classes {
            if !self.index.contains_key(&id) {
                self.index.insert(id, self.totals.len());
                self.totals.push(TrackedClassTotals::empty(name.clone()));
            }
        }
        self.totals
    }
}

/// The part of a tracker that its periodic thread refers to.
pub(crate) struct Inner {
    pub(crate) history: Arc<History>,
    /// Held for the whole of a snapshot, so that this tracker's snapshots are taken one at a
    /// time (their passes over the instances would otherwise interleave). Nothing but a
    /// snapshot takes it; lock order: before the state's.
    pub(crate) snapshotting: Lock<()>,
    subscribers: Lock<Vec<Subscriber>>,
    dropped: AtomicU64,
    pub(crate) periodic: Lock<Option<Periodic>>,
    /// The watcher of [`ClassTracker::dump_on`]'s triggers.
    pub(crate) dumps: Lock<Option<crate::dumps::Dumps>>,
    /// Publication of every snapshot as metrics ([`ClassTracker::publish_metrics`]).
    #[cfg(feature = "metrics")]
    pub(crate) metrics: Lock<Option<Arc<crate::integrations::metrics::Publisher>>>,
}

impl Inner {
    /// See [`ClassTracker::stats`].
    pub(crate) fn stats(&self) -> Stats {
        let _g = OverheadGuard::new();
        // Gathered under the lock; construction traces are symbolized after it is released
        // (that can take a while, and instances must not wait for it).
        let (mut stats, unresolved) = Stats::gather(&self.history.lock());
        stats.resolve(unresolved);
        stats
    }

    /// The subscribers' lock, taken for `fork()`.
    pub(crate) fn subscribers_lock(&self) -> std::sync::MutexGuard<'_, Vec<Subscriber>> {
        self.subscribers.lock()
    }

    /// Takes a snapshot: the allocator's counters, then each live instance's size.
    ///
    /// The live instances are gone through [`BATCH`] at a time, each batch in one hold of the
    /// tracker's lock; other calls on the tracker (a `stats`, a `track_class`) wait for one
    /// batch at most and are let in before the next. A thread that builds or drops an instance
    /// never waits: its birth or death is posted and applied when the batch ends (see
    /// [`History`]). Instances born after the snapshot started are left out; one that dies
    /// during it is counted if its batch came first. Snapshots of one tracker are taken one at
    /// a time.
    pub(crate) fn snapshot(&self, description: &str) -> Arc<Snapshot> {
        let _g = OverheadGuard::new();
        let one_at_a_time = self.snapshotting.lock();
        crate::instance::bump_epoch();
        crate::objects::sweep();
        let history = &*self.history;
        let time = history.now();
        // The snapshot before (the latest so far): read beside the counters, for the classes
        // that changed since, which it keeps when it is trimmed below.
        let (previous, keep) = {
            let st = history.lock();
            (st.recent.back().cloned(), st.retention.snapshot_classes)
        };
        let (mut snap, changed) =
            Snapshot::take_after(time, description, keep, previous.as_deref());
        // Shared objects are measured first, outside the lock: measuring one runs its `Debug`
        // and may drop it (user code must never run under the lock: it could call back into
        // the tracker), and a panic there leaves no snapshot half recorded.
        let (pass, end, shared) = {
            let mut st = history.lock();
            history.reap(&mut st);
            let shared: Vec<(u64, Arc<dyn SharedObject>)> = st
                .shared
                .values()
                .filter_map(|id| match st.instances.get(id) {
                    Some(rec) if rec.death.is_none() && rec.attached => match &rec.source {
                        Source::Shared(obj) => Some((*id, obj.clone())),
                        Source::Constructed { .. } => None,
                    },
                    _ => None,
                })
                .collect();
            (st.begin_pass(), history.id_limit(), shared)
        };
        type Measured = (u64, u64, Option<String>, Vec<crate::objects::Referent>);
        let mut measured: Vec<Measured> = shared
            .into_iter()
            .map(|(i, obj)| {
                let (size, referents) = obj.measure();
                (i, size, obj.repr().map(clip), referents)
            })
            .collect();
        // The pass over the live constructed instances, from the last record to the first: a
        // death in between batches moves the last record into the dead one's place, so a
        // record can only move from the part already gone through to the part still to go
        // through, never the other way; one seen twice is measured once (its `pass`).
        let mut per_class = PerClass::default();
        // Instances broken down by nested scopes, measured after the pass: naming their nodes
        // takes the class registry's lock, which comes before the object tables'.
        let mut deep = Vec::new();
        // Breakdowns replaced, dropped after the lock is released.
        let mut old_referents = Vec::new();
        let mut cursor = usize::MAX;
        loop {
            let mut guard = history.lock();
            let st = &mut *guard;
            cursor = cursor.min(st.instances.live_len());
            let from = cursor.saturating_sub(BATCH);
            for i in (from..cursor).rev() {
                let rec = st.instances.live_mut(i);
                if rec.id >= end || rec.pass == pass {
                    continue;
                }
                rec.pass = pass;
                let Source::Constructed { object } = rec.source else {
                    debug_assert!(false, "classtrack: a shared object among the live records");
                    continue;
                };
                let Some(size) = crate::objects::size(object) else {
                    deep.push((rec.id, object));
                    continue;
                };
                st.compaction.size_points_dropped += rec.record_size(time, size);
                if !rec.referents.is_empty() {
                    old_referents.push(std::mem::take(&mut rec.referents));
                }
                let (class, classes, class_name) = (rec.class, &st.classes, &rec.class_name);
                per_class.add(class, size, || match classes.get(&class) {
                    Some(c) => c.name.clone(),
                    None => class_name.clone(),
                });
            }
            run_hook(&LOCKED_HOOK);
            drop(guard);
            if from == 0 {
                break;
            }
            cursor = from;
            batch_hook();
            history.let_waiters_in();
        }
        drop(old_referents);
        measured.extend(deep.into_iter().map(|(i, object)| {
            let (size, referents) = crate::objects::tree(object);
            (i, size, None, referents)
        }));
        // Replaced representations and breakdowns are dropped after the lock is released.
        let mut replaced = Vec::new();
        let mut old_referents = Vec::new();
        let mut measured = measured.into_iter().peekable();
        while measured.peek().is_some() {
            let mut guard = history.lock();
            let st = &mut *guard;
            for (i, size, repr, referents) in measured.by_ref().take(BATCH) {
                let Some(rec) = st.instances.get_mut(&i) else {
                    continue;
                };
                st.compaction.size_points_dropped += rec.record_size(time, size);
                if let Some(repr) = repr {
                    replaced.push(std::mem::replace(&mut rec.repr, repr));
                }
                old_referents.push(std::mem::replace(&mut rec.referents, referents));
                let (class, classes, class_name) = (rec.class, &st.classes, &rec.class_name);
                per_class.add(class, size, || match classes.get(&class) {
                    Some(c) => c.name.clone(),
                    None => class_name.clone(),
                });
            }
            drop(guard);
            history.let_waiters_in();
        }
        let mut guard = history.lock();
        let st = &mut *guard;
        let mut tracked = per_class.finish(st.classes.iter().map(|(id, c)| (*id, &c.name)));
        tracked.sort_by(|a, b| a.name.cmp(&b.name));
        snap.tracked = tracked;
        st.record_classes(&mut snap, time);
        let snap = Arc::new(snap);
        let changed_before = std::mem::take(&mut st.changed_into_latest);
        st.record_snapshot(snap.clone());
        // A snapshot above the recorded peak (which is a step behind the heap at most) is
        // the peak: the peak is never below a snapshot.
        let new_peak = crate::peak::offer_snapshot(st, &snap);
        drop(guard);
        // The snapshot before is no longer the latest: it keeps its largest classes and those
        // that changed into it or out of it (`Retention::snapshot_classes`). Trimmed outside
        // the lock, then swapped in; dropped (the full one) after it is released.
        if let Some(previous) = previous {
            let changed = changed.ids;
            let trimmed = (previous.classes.len() > keep.saturating_add(2)).then(|| {
                let mut also = changed_before;
                also.extend_from_slice(&changed);
                also.sort_unstable();
                also.dedup();
                Arc::new(previous.trimmed(keep, &also))
            });
            let mut st = history.lock();
            let mut replaced = Vec::new();
            if let Some(trimmed) = trimmed {
                for r in st.recent.iter_mut().filter(|r| Arc::ptr_eq(r, &previous)) {
                    replaced.push(std::mem::replace(r, trimmed.clone()));
                }
                if let Some(peak) = st.peak.as_mut().filter(|p| Arc::ptr_eq(p, &previous)) {
                    replaced.push(std::mem::replace(peak, trimmed));
                }
            }
            if st.recent.back().is_some_and(|r| Arc::ptr_eq(r, &snap)) {
                st.changed_into_latest = changed;
            }
            drop(st);
            drop((replaced, previous));
        }
        drop(one_at_a_time);
        // With no lock of this tracker held: `rewatch` takes every tracker's lock in turn, and
        // holding one of ours meanwhile would invert the fork handlers' order.
        if new_peak {
            crate::peak::rewatch();
        }
        drop((replaced, old_referents));
        self.publish(&snap);
        #[cfg(feature = "metrics")]
        {
            // Cloned out, so that the recorder (user code) runs under no lock of ours.
            let publisher = self.metrics.lock().clone();
            if let Some(p) = publisher {
                p.publish(&snap);
            }
        }
        snap
    }

    fn publish(&self, snap: &Arc<Snapshot>) {
        let mut subs = self.subscribers.lock();
        subs.retain(|s| match s.tx.try_send(snap.clone()) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                // Relaxed: statistics.
                s.dropped.fetch_add(1, Ordering::Relaxed);
                self.dropped.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(TrySendError::Disconnected(_)) => false,
        });
    }
}

/// Tracks classes and objects and takes snapshots of memory per class: pympler's
/// `ClassTracker`, with exact sizes from the allocator.
///
/// The allocator's counters are shared by every tracker; each tracker has its own clock
/// (snapshot times are seconds since it was created), tracked classes, instances and
/// snapshots. It is `Send + Sync`: snapshots may be taken from any thread while others
/// allocate. Dropping it stops its periodic snapshots.
///
/// ```
/// use classtrack::{ClassTracker, TrackOptions};
///
/// #[derive(Debug)]
/// struct Session { user: String }
///
/// let tracker = ClassTracker::new();
/// tracker.track_class::<Session>(TrackOptions::new());
/// let s = tracker.construct_debug(|| Session { user: "ada".into() });
/// let snap = tracker.create_snapshot("one session");
/// assert_eq!(snap.tracked_class::<Session>().unwrap().active, 1);
/// drop(s);
/// assert_eq!(tracker.create_snapshot("none").tracked_class::<Session>().unwrap().active, 0);
/// ```
pub struct ClassTracker {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for ClassTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClassTracker")
            .field("elapsed", &self.elapsed())
            .finish_non_exhaustive()
    }
}

impl Default for ClassTracker {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for ClassTracker {
    fn drop(&mut self) {
        // A failure was the periodic thread's to report; nobody is left to report it to.
        let _ = self.stop_periodic_snapshots();
        let dumps = self.inner.dumps.lock().take();
        crate::dumps::stop(dumps);
    }
}

impl ClassTracker {
    /// A tracker with nothing tracked and no snapshots; its clock starts now.
    pub fn new() -> ClassTracker {
        let _g = OverheadGuard::new();
        crate::sampling::start();
        let inner = Arc::new(Inner {
            history: Arc::new(History::new()),
            snapshotting: Lock::new(()),
            subscribers: Lock::new(Vec::new()),
            dropped: AtomicU64::new(0),
            periodic: Lock::new(None),
            dumps: Lock::new(None),
            #[cfg(feature = "metrics")]
            metrics: Lock::new(None),
        });
        crate::fork::register(&inner);
        // Without the watcher thread (the system refused a thread), `peak` still answers
        // with the largest reading taken by a call.
        let _ = crate::peak::register(&inner.history);
        ClassTracker { inner }
    }

    fn history(&self) -> &History {
        &self.inner.history
    }

    #[cfg(feature = "server")]
    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }

    /// Publishes every snapshot this tracker takes from now on (periodic ones and
    /// [`create_snapshot`](Self::create_snapshot)'s) through the `metrics` facade, as
    /// [`metrics::publish`](crate::metrics::publish) does; a class that leaves the top N has
    /// its gauges set to 0 once. Calling it again changes the options. Feature `metrics`.
    ///
    /// ```
    /// use classtrack::metrics::MetricsOptions;
    ///
    /// let tracker = classtrack::ClassTracker::new();
    /// tracker.publish_metrics(MetricsOptions::new().top_classes(20));
    /// tracker.create_snapshot("published");
    /// tracker.stop_publishing_metrics();
    /// ```
    #[cfg(feature = "metrics")]
    pub fn publish_metrics(&self, options: crate::metrics::MetricsOptions) {
        let _g = OverheadGuard::new();
        let publisher = Arc::new(crate::integrations::metrics::Publisher::new(options));
        let old = self.inner.metrics.lock().replace(publisher);
        drop(old);
    }

    /// Stops what [`publish_metrics`](Self::publish_metrics) started; the series keep their
    /// last values in the recorder. Feature `metrics`.
    #[cfg(feature = "metrics")]
    pub fn stop_publishing_metrics(&self) {
        let _g = OverheadGuard::new();
        let old = self.inner.metrics.lock().take();
        drop(old);
    }

    /// Time since the tracker was created.
    pub fn elapsed(&self) -> Duration {
        self.history().start.elapsed()
    }

    /// Tracks class `T`: from now on each value built by [`construct`](Self::construct) or
    /// [`construct_debug`](Self::construct_debug) registers one instance. Values built before
    /// are not tracked. Calling it again updates the options (and re-attaches a detached
    /// class).
    pub fn track_class<T: ?Sized + 'static>(&self, options: TrackOptions) {
        let class = class_id_of::<T>();
        let _g = OverheadGuard::new();
        let name = options
            .name
            .clone()
            .unwrap_or_else(|| type_name::<T>().to_owned());
        let history = self.history();
        let mut st = history.lock();
        let rec = st.class_entry(class, || (name.clone(), options.clone(), true));
        rec.name = name;
        rec.options = options;
        rec.attached = true;
        history.set_attached(class, Some(rec));
    }

    /// Whether new values of `T` register instances with this tracker.
    pub fn is_tracked<T: ?Sized + 'static>(&self) -> bool {
        let _g = OverheadGuard::new();
        self.history().attached(class_id_of::<T>()).is_some()
    }

    /// Builds a value inside `T`'s class scope. If `T` is tracked, the value is registered as
    /// an instance whose size is what it allocates in its scope; the returned [`Tracked`] is
    /// its handle, and its drop is the instance's death.
    pub fn construct<T: 'static>(&self, f: impl FnOnce() -> T) -> Tracked<T> {
        crate::instance::through_marker(|| self.construct_with(f, None))
    }

    /// As [`construct`](Self::construct), and records the value's `Debug` representation
    /// (clipped to 128 characters), refreshed at the first access after each snapshot (so it
    /// shows the value as it was at the snapshot), by [`Tracked::scope`] and at drop. The
    /// tracker never reads the value itself: its owner may be changing it.
    pub fn construct_debug<T: Debug + 'static>(&self, f: impl FnOnce() -> T) -> Tracked<T> {
        crate::instance::through_marker(|| self.construct_with(f, Some(|v: &T| format!("{v:?}"))))
    }

    fn construct_with<T: 'static>(
        &self,
        f: impl FnOnce() -> T,
        repr: Option<fn(&T) -> String>,
    ) -> Tracked<T> {
        let class = class_id_of::<T>();
        let attached = {
            let _g = OverheadGuard::new();
            self.history().attached(class)
        };
        let Some(attached) = attached else {
            let _s = ScopeGuard::enter_tag(Tag::class(class));
            return Tracked::untracked(f());
        };
        let (options, class_name) = (&attached.options, &attached.name);
        let object = crate::objects::acquire();
        crate::objects::set_levels(object, options.resolution_level);
        let tag = Tag { class, object };
        let value = {
            // Releases the object id if `f` panics.
            struct Release(u32);
            impl Drop for Release {
                fn drop(&mut self) {
                    crate::objects::release_tree(self.0);
                }
            }
            let release = Release(object);
            let _s = ScopeGuard::enter_tag(tag);
            let v = f();
            std::mem::forget(release);
            v
        };
        let _g = OverheadGuard::new();
        let trace = options.trace.then(crate::instance::capture_trace);
        let repr_text = repr.map_or_else(|| format!("<{class_name}>"), |r| clip(r(&value)));
        // Posted, not registered under the tracker's lock: a snapshot in progress does not
        // hold this thread up.
        let history = self.history();
        let id = history.next_id();
        let record = self.record(id, class, class_name.clone(), class_name.clone(), repr_text);
        history.post(Event::Birth(Box::new(InstanceRecord {
            source: Source::Constructed { object },
            trace,
            ..record
        })));
        Tracked::new(value, Arc::downgrade(&self.inner.history), id, tag, repr)
    }

    /// A new instance's record, born now (with no source or trace yet).
    fn record(
        &self,
        id: u64,
        class: ClassId,
        class_name: String,
        name: String,
        repr: String,
    ) -> InstanceRecord {
        InstanceRecord {
            id,
            class,
            class_name,
            name,
            repr,
            birth: self.history().now(),
            death: None,
            attached: true,
            source: Source::Constructed { object: 0 },
            // Made with the tracker's capacity by `State::insert_instance`.
            sizes: Series::new(0),
            max_size: 0,
            trace: None,
            referents: Vec::new(),
            breakdown: crate::stats::Breakdown::Scopes,
            pass: 0,
        }
    }

    /// Registers a shared object under the tracker's lock; returns its instance id.
    fn register_shared(
        &self,
        class: ClassId,
        name: String,
        repr: String,
        shared: Arc<dyn SharedObject>,
        trace: Option<Box<[usize]>>,
        breakdown: crate::stats::Breakdown,
    ) -> u64 {
        let history = self.history();
        let mut st = history.lock();
        let st = &mut *st;
        let id = history.next_id();
        let class_name = st
            .classes
            .get(&class)
            .map_or_else(|| name.clone(), |c| c.name.clone());
        st.shared.insert(shared.address(), id);
        let record = self.record(id, class, class_name, name, repr);
        let time = record.birth;
        st.insert_instance(InstanceRecord {
            source: Source::Shared(shared),
            trace,
            breakdown,
            ..record
        });
        st.record_birth(class, time);
        id
    }

    /// Tracks an existing shared object by handle; returns its instance id.
    ///
    /// Birth is now. Its size at each snapshot is the object's own bytes
    /// (`size_of_val(&*obj)`): that is what can be measured of any object built elsewhere
    /// (what it owns on the heap was charged to the scope that allocated it). For the bytes
    /// it reaches, by traversal, use [`track_object_footprint`](Self::track_object_footprint).
    /// The tracker holds a `Weak` reference, or with `keep` a strong one. The death is the
    /// moment the last strong reference is gone, recorded by the next snapshot or
    /// [`ClassTracker::poll`].
    ///
    /// Tracking an object that this tracker already tracks is an error.
    ///
    /// A `resolution_level` above 0 cannot be honoured here: the object's blocks were
    /// allocated before it was tracked, under whatever scope was current then, so there is no
    /// breakdown by nested scopes, and without a [`Footprint`](crate::Footprint) there is no
    /// traversal. The object is tracked all the same, its
    /// [`InstanceStats::breakdown`](crate::InstanceStats::breakdown) is
    /// [`Breakdown::Unavailable`](crate::Breakdown::Unavailable), and
    /// [`Stats::print_stats`](crate::Stats::print_stats) says so.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use classtrack::{Breakdown, ClassTracker, TrackOptions};
    ///
    /// let tracker = ClassTracker::new();
    /// let config = Arc::new(vec![1u8; 64]);
    /// tracker.track_object(&config, TrackOptions::new().resolution_level(2))?;
    /// tracker.create_snapshot("one");
    /// let stats = tracker.stats();
    /// assert_eq!(stats.instances[0].breakdown, Breakdown::Unavailable { level: 2 });
    /// // Its own bytes: the Vec's pointer, capacity and length.
    /// assert_eq!(stats.instances[0].sizes[0].1, 24);
    /// # Ok::<(), classtrack::Error>(())
    /// ```
    pub fn track_object<T: Send + Sync + 'static>(
        &self,
        obj: &Arc<T>,
        options: TrackOptions,
    ) -> Result<u64> {
        crate::instance::through_marker(|| self.track_shared(obj, options, None, None))
    }

    /// As [`track_object`](Self::track_object), and records the object's `Debug`
    /// representation at each snapshot.
    pub fn track_object_debug<T: Debug + Send + Sync + 'static>(
        &self,
        obj: &Arc<T>,
        options: TrackOptions,
    ) -> Result<u64> {
        crate::instance::through_marker(|| {
            self.track_shared(obj, options, Some(|v: &T| format!("{v:?}")), None)
        })
    }

    /// Tracks an existing shared object by handle, as [`track_object`](Self::track_object),
    /// measured by traversal (pympler's `track_object(obj, resolution_level=…)`, sized by
    /// `asizeof`): its size at each snapshot is the bytes reachable from it, its inline bytes
    /// and everything it owns (a block shared by several `Arc`s within it counted once), and
    /// with a `resolution_level` its
    /// [`InstanceStats::referents`](crate::InstanceStats::referents) are its parts (fields,
    /// then their fields, …) to that depth. Its
    /// [`breakdown`](crate::InstanceStats::breakdown) is
    /// [`Breakdown::Traversal`](crate::Breakdown::Traversal).
    ///
    /// A traversal answers "what does this object reach now"; the class's live bytes answer
    /// "what was allocated in its scope". They differ when the object holds what other code
    /// allocated, or when its scope allocated what it no longer holds; `print_stats` and the
    /// HTML report show both. The traversal runs on the thread that takes the snapshot, and
    /// reads the object through a shared reference, taking no lock.
    ///
    /// ```
    /// # #[cfg(feature = "macros")] {
    /// use std::sync::Arc;
    /// use classtrack::{Breakdown, ClassTracker, TrackOptions};
    ///
    /// #[derive(classtrack::Footprint)]
    /// struct Foo { data: Vec<u64>, name: String }
    ///
    /// let tracker = ClassTracker::new();
    /// let foo = Arc::new(Foo { data: (0..1000).collect(), name: "spam".to_owned() });
    /// tracker.track_object_footprint(&foo, TrackOptions::new().resolution_level(2)).unwrap();
    /// tracker.create_snapshot("one");
    /// let stats = tracker.stats();
    /// let foo = &stats.instances[0];
    /// assert_eq!(foo.breakdown, Breakdown::Traversal);
    /// assert_eq!(foo.sizes[0].1, 48 + 8000 + 4);
    /// assert_eq!(foo.referents[0].name, "data");
    /// assert_eq!(foo.referents[0].bytes, 24 + 8000);
    /// assert_eq!(foo.referents[0].children[0].name, "[items]");
    /// # }
    /// ```
    pub fn track_object_footprint<T: crate::Footprint + Send + Sync + 'static>(
        &self,
        obj: &Arc<T>,
        options: TrackOptions,
    ) -> Result<u64> {
        self.track_walked(obj, options, |v: &T, d| {
            crate::footprint::footprint_of(v, d)
        })
    }

    /// As [`track_object_footprint`](Self::track_object_footprint), for a type that
    /// implements Meta's `allocative::Allocative` (`#[derive(Allocative)]`) instead of
    /// [`Footprint`](crate::Footprint): the traversal is allocative's, and the parts are named
    /// as allocative names them (a field, then the field's type below it).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use allocative::Allocative;
    /// use classtrack::{ClassTracker, TrackOptions};
    ///
    /// #[derive(Allocative)]
    /// struct Foo { data: Vec<u64> }
    ///
    /// let tracker = ClassTracker::new();
    /// let foo = Arc::new(Foo { data: Vec::with_capacity(1000) });
    /// tracker.track_object_allocative(&foo, TrackOptions::new().resolution_level(1))?;
    /// tracker.create_snapshot("one");
    /// let foo = &tracker.stats().instances[0];
    /// assert_eq!(foo.sizes[0].1, 24 + 8000);
    /// assert_eq!(foo.referents[0].name, "data");
    /// # Ok::<(), classtrack::Error>(())
    /// ```
    #[cfg(feature = "allocative")]
    #[cfg_attr(docsrs, doc(cfg(feature = "allocative")))]
    pub fn track_object_allocative<T: allocative::Allocative + Send + Sync + 'static>(
        &self,
        obj: &Arc<T>,
        options: TrackOptions,
    ) -> Result<u64> {
        crate::instance::through_marker(|| {
            self.track_walked(obj, options, |v: &T, d| {
                crate::footprint::allocative_of(v, d)
            })
        })
    }

    /// Tracks `obj` by handle, measured by the traversal `walk` to the resolution level. Called
    /// through the trace marker by the public entry points (so a construction trace starts at
    /// the program's call).
    fn track_walked<T: Send + Sync + 'static>(
        &self,
        obj: &Arc<T>,
        options: TrackOptions,
        walk: crate::instance::Walk<T>,
    ) -> Result<u64> {
        let depth = options.resolution_level;
        self.track_shared(obj, options, None, Some((walk, depth)))
    }

    fn track_shared<T: Send + Sync + 'static>(
        &self,
        obj: &Arc<T>,
        options: TrackOptions,
        repr: Option<fn(&T) -> String>,
        walk: Option<(crate::instance::Walk<T>, u32)>,
    ) -> Result<u64> {
        let class = class_id_of::<T>();
        let _g = OverheadGuard::new();
        let name = options
            .name
            .clone()
            .unwrap_or_else(|| type_name::<T>().to_owned());
        let breakdown = match (&walk, options.resolution_level) {
            (Some(_), _) => crate::stats::Breakdown::Traversal,
            (None, 0) => crate::stats::Breakdown::OwnBytes,
            (None, level) => crate::stats::Breakdown::Unavailable { level },
        };
        let address = Arc::as_ptr(obj) as *const () as usize;
        {
            let history = self.history();
            let mut st = history.lock();
            history.reap(&mut st);
            if let Some(&id) = st.shared.get(&address) {
                return Err(Error::AlreadyTracked { name, id });
            }
            st.class_entry(class, || {
                (type_name::<T>().to_owned(), TrackOptions::new(), false)
            });
        }
        let repr_text = repr.map_or_else(|| format!("<{name}>"), |r| clip(r(obj)));
        let trace = options.trace.then(crate::instance::capture_trace);
        let shared: Arc<dyn SharedObject> = Arc::new(SharedArc {
            weak: Arc::downgrade(obj),
            _kept: options.keep.then(|| obj.clone()),
            repr,
            walk,
        });
        Ok(self.register_shared(class, name, repr_text, shared, trace, breakdown))
    }

    /// Changes how deep one live instance is broken down by nested scopes (pympler's
    /// `track_change`), leaving its class's [`TrackOptions::resolution_level`] and the other
    /// instances as they are.
    ///
    /// The new level applies to the scopes entered inside the instance from now on: bytes
    /// already charged stay where they are (a lower level keeps the nodes made so far, and
    /// new nested scopes are charged to the instance itself). The breakdown shows at the
    /// next snapshot, in [`InstanceStats::referents`](crate::InstanceStats::referents).
    ///
    /// A value that is not a live instance of this tracker is
    /// [`Error::InstanceNotTracked`]: built while its class was not tracked, built by another
    /// tracker, or forgotten by [`clear`](Self::clear) or [`detach_all`](Self::detach_all).
    /// Objects tracked by handle keep the level they were tracked with (see
    /// [`track_object_footprint`](Self::track_object_footprint)).
    ///
    /// ```
    /// use classtrack::{ClassTracker, TrackOptions};
    ///
    /// struct Cart { items: Vec<String> }
    /// struct Item;
    ///
    /// let tracker = ClassTracker::new();
    /// tracker.track_class::<Cart>(TrackOptions::new());
    /// let mut cart = tracker.construct(|| Cart { items: Vec::new() });
    /// tracker.track_change(&cart, 1)?;
    /// cart.scope(|c| classtrack::scope::<Item, _>(|| c.items.push("pen".into())));
    /// # Ok::<(), classtrack::Error>(())
    /// ```
    pub fn track_change<T>(&self, tracked: &Tracked<T>, resolution_level: u32) -> Result<()> {
        let _g = OverheadGuard::new();
        let Some((history, id, object)) = tracked.link() else {
            return Err(Error::InstanceNotTracked { id: None });
        };
        let not_tracked = Error::InstanceNotTracked { id: Some(id) };
        if !std::ptr::eq(history.as_ptr(), Arc::as_ptr(&self.inner.history)) {
            return Err(not_tracked);
        }
        let st = self.history().lock();
        match st.instances.get(&id) {
            Some(rec) if rec.attached && rec.death.is_none() => {
                // Under the lock, so that `clear` cannot forget the instance in between.
                crate::objects::set_levels(object, resolution_level);
                Ok(())
            }
            _ => Err(not_tracked),
        }
    }

    /// The most recent snapshot kept in full whose description is `label`, or `None`
    /// (pympler's snapshot description, used as a label). Descriptions need not be unique:
    /// the latest wins. Only the most recent [`Retention::recent_snapshots`] are kept in
    /// full; [`Stats::snapshot`] finds the summaries of older ones too.
    ///
    /// ```
    /// let tracker = classtrack::ClassTracker::new();
    /// tracker.create_snapshot("warm");
    /// tracker.create_snapshot("loaded");
    /// assert_eq!(tracker.snapshot_labeled("warm").unwrap().description, "warm");
    /// assert!(tracker.snapshot_labeled("cold").is_none());
    /// ```
    pub fn snapshot_labeled(&self, label: &str) -> Option<Arc<Snapshot>> {
        let _g = OverheadGuard::new();
        let st = self.history().lock();
        st.recent
            .iter()
            .rev()
            .find(|s| s.description == label)
            .cloned()
    }

    /// Ends tracking (pympler's `close`): stops periodic snapshots, detaches every class and
    /// instance ([`detach_all`](Self::detach_all)), ends every subscription (a receiver gets
    /// the snapshots its channel holds, then sees the channel disconnected) and, with feature
    /// `metrics`, stops publishing. What was gathered stays: [`stats`](Self::stats),
    /// [`snapshots`](Self::snapshots) and the other verbs work as before, and tracking can
    /// start again with [`track_class`](Self::track_class). Calling it again does nothing
    /// more.
    ///
    /// Returns [`Error::PeriodicSnapshots`] if a periodic snapshot failed or the periodic
    /// thread stopped by itself (as [`stop_periodic_snapshots`](Self::stop_periodic_snapshots)
    /// does); everything else is done all the same.
    ///
    /// ```
    /// use classtrack::{ClassTracker, TrackOptions};
    ///
    /// struct Job;
    /// let tracker = ClassTracker::new();
    /// tracker.track_class::<Job>(TrackOptions::new());
    /// tracker.start_periodic_snapshots(std::time::Duration::from_millis(10))?;
    /// tracker.close()?;
    /// assert!(!tracker.periodic_snapshots_running());
    /// assert!(!tracker.is_tracked::<Job>());
    /// # Ok::<(), classtrack::Error>(())
    /// ```
    pub fn close(&self) -> Result<()> {
        let stopped = self.stop_periodic_snapshots();
        self.detach_all();
        let _g = OverheadGuard::new();
        let subscribers = std::mem::take(&mut *self.inner.subscribers.lock());
        drop(subscribers);
        #[cfg(feature = "metrics")]
        self.stop_publishing_metrics();
        stopped
    }

    /// Records the deaths of tracked shared objects that are gone (snapshots do this too).
    pub fn poll(&self) {
        let _g = OverheadGuard::new();
        let history = self.history();
        history.reap(&mut history.lock());
    }

    /// Stops registering new instances of `T`. Instances already tracked stay tracked.
    ///
    /// Returns [`Error::NotTracked`] if `T` is not tracked (never was, or was detached).
    pub fn detach_class<T: ?Sized + 'static>(&self) -> Result<()> {
        let class = class_id_of::<T>();
        let _g = OverheadGuard::new();
        let history = self.history();
        match history.lock().classes.get_mut(&class) {
            Some(c) if c.attached => {
                c.attached = false;
                history.set_attached(class, None);
                Ok(())
            }
            _ => Err(Error::NotTracked {
                class: type_name::<T>().to_owned(),
            }),
        }
    }

    /// Stops registering new instances of every class.
    pub fn detach_all_classes(&self) {
        let _g = OverheadGuard::new();
        let history = self.history();
        let mut st = history.lock();
        for c in st.classes.values_mut() {
            c.attached = false;
        }
        history.detach_all_classes();
    }

    /// Detaches every class and stops measuring every instance (their records stay, and
    /// objects kept alive with `keep` are released).
    pub fn detach_all(&self) {
        let _g = OverheadGuard::new();
        let mut released = Vec::new();
        {
            let history = self.history();
            let mut st = history.lock();
            for c in st.classes.values_mut() {
                c.attached = false;
            }
            history.detach_all_classes();
            for rec in st.instances.values_mut() {
                rec.attached = false;
                if let Source::Shared(_) = rec.source {
                    released.push(std::mem::replace(
                        &mut rec.source,
                        Source::Constructed { object: 0 },
                    ));
                }
            }
            st.shared.clear();
            st.instances.settle_all();
        }
        // Kept objects may be dropped here, running user code: never under the lock.
        drop(released);
    }

    /// Keeps at most `limit` dead instances (the most recent deaths), forgetting older ones;
    /// live instances are always kept, and every birth and death stays in its class's
    /// history. The default is [`DEFAULT_DEAD_INSTANCE_LIMIT`]. The same as setting
    /// [`Retention::dead_instances`].
    pub fn set_dead_instance_limit(&self, limit: usize) {
        let retention = self.retention().dead_instances(limit);
        // Only the series limits can be out of range, and they are unchanged.
        let _ = self.set_retention(retention);
    }

    /// Sets how much history this tracker keeps: the bound on its memory (see [`Retention`]
    /// for the formula). What is kept now is downsampled to fit at once. Settings survive
    /// [`clear`](Self::clear).
    ///
    /// A series limit below 4 is [`Error::InvalidRetention`].
    pub fn set_retention(&self, retention: Retention) -> Result<()> {
        retention.check()?;
        let _g = OverheadGuard::new();
        self.history().lock().set_retention(retention);
        Ok(())
    }

    /// How much history this tracker keeps.
    pub fn retention(&self) -> Retention {
        let _g = OverheadGuard::new();
        self.history().lock().retention
    }

    /// What this tracker dropped so far to stay within its [`Retention`].
    pub fn compaction(&self) -> Compaction {
        let _g = OverheadGuard::new();
        self.history().lock().compaction
    }

    /// Detaches everything and forgets all snapshots, instances and history. The settings
    /// ([`Retention`], the dead-instance limit) stay, and instance ids keep counting up: a
    /// [`Tracked`] handle from before `clear` never stands for an instance registered after
    /// it.
    pub fn clear(&self) {
        self.detach_all();
        let _g = OverheadGuard::new();
        let old = self.history().lock().clear();
        drop(old);
    }

    /// Reads every class's counters, the tracked instances' sizes, the process's memory and
    /// the tracker's overhead now, keeps the snapshot and returns it.
    ///
    /// Totals come from the allocator's counters, so this is cheap (it does not walk the
    /// heap) and always complete; pympler's `compute_total` is always on. A snapshot with
    /// nothing tracked still records the per-class and process figures.
    ///
    /// Without [`TrackingAlloc`](crate::TrackingAlloc) as the `#[global_allocator]`, every
    /// figure is zero: the first such snapshot in the process says so on standard error
    /// (and [`Snapshot::allocator_installed`] is `false`).
    pub fn create_snapshot(&self, description: &str) -> Arc<Snapshot> {
        let snap = self.inner.snapshot(description);
        if !snap.allocator_installed {
            static WARNED: std::sync::atomic::AtomicBool =
                std::sync::atomic::AtomicBool::new(false);
            // Relaxed: a once-only message.
            if !WARNED.swap(true, Ordering::Relaxed) {
                eprintln!("classtrack: {}", crate::snapshot::NOT_INSTALLED);
            }
        }
        snap
    }

    /// Classes whose live bytes grew in more than half of the last `intervals` intervals
    /// between this tracker's recent full snapshots (and overall), ranked by growth per
    /// second, each with its `sites` top allocation sites at the last snapshot.
    ///
    /// The series looked at is the recent full snapshots ([`snapshots`](Self::snapshots):
    /// [`Retention::recent_snapshots`], 32 by default), because they have every class's
    /// totals; [`Stats`] keeps only summaries of older ones. With fewer snapshots kept, fewer
    /// intervals are looked at; with fewer than two, there is no suspect.
    ///
    /// ```
    /// #[global_allocator]
    /// static ALLOC: classtrack::TrackingAlloc<std::alloc::System> =
    ///     classtrack::TrackingAlloc::new(std::alloc::System);
    ///
    /// fn main() {
    ///     let tracker = classtrack::ClassTracker::new();
    ///     let mut kept = Vec::new();
    ///     for i in 0..6 {
    ///         kept.push(classtrack::scope_named("suspects doc log", || vec![i as u8; 1000]));
    ///         tracker.create_snapshot("tick");
    ///     }
    ///     let suspects = tracker.leak_suspects(5, 3);
    ///     let log = suspects.iter().find(|s| &*s.name == "suspects doc log");
    ///     let log = log.expect("the log grew in every interval");
    ///     assert_eq!((log.grew_in, log.intervals, log.growth_bytes), (5, 5, 5000));
    /// }
    /// ```
    pub fn leak_suspects(&self, intervals: usize, sites: usize) -> Vec<crate::LeakSuspect> {
        let snaps = self.snapshots();
        let from = snaps.len().saturating_sub(intervals + 1);
        let snaps = &snaps[from..];
        let moments: Vec<crate::diff::Moment<'_>> = snaps.iter().map(|s| (&**s).into()).collect();
        let last = snaps.last();
        let _b = crate::sampling::Batch::new();
        crate::diff::LeakSuspect::find(&moments, |name| {
            last.map_or_else(Vec::new, |l| {
                // Sites whose stacks read the same are one: more are taken, merged, then cut.
                let raw: Vec<_> = l
                    .top_sites(name, sites.saturating_mul(4))
                    .into_iter()
                    .map(crate::diff::SiteSummary::of_site)
                    .collect();
                let mut merged = crate::diff::merge_same_stacks(&raw);
                merged.truncate(sites);
                merged
            })
        })
    }

    /// The heap at its peak: every class's totals and the sampled sites at the highest live
    /// user heap (the sum of the user's classes' live bytes, the two reserved classes left
    /// out) since the tracker was created or since [`reset_peak`](Self::reset_peak).
    ///
    /// It is not a poll: the allocator notices growth (each thread checks the live user heap
    /// every [`PEAK_GRANULARITY`](crate::PEAK_GRANULARITY) bytes it allocates, off its fast
    /// path) and wakes a background thread, `classtrack-peak`, which reads the counters. The
    /// recorded peak is a reading, so never above the true peak, and below it by at most 1%
    /// of it (at least `PEAK_GRANULARITY`) plus threads × `PEAK_GRANULARITY`, provided the
    /// heap stays near its peak while that thread wakes and reads the counters (well under a
    /// millisecond with thousands of classes). Each class's
    /// [`peak_seen_bytes`](crate::ClassTotals::peak_seen_bytes) counts these readings too.
    ///
    /// The call reads the counters itself as well: if the heap is larger now than at the
    /// recorded peak, now is the peak; and a snapshot of the tracker's that saw a larger heap
    /// than the readings is the peak (the peak is never below a snapshot). The snapshot's
    /// [`time`](Snapshot::time) is the tracker's clock at the reading, its description
    /// `"peak"` (or the snapshot's own), and a reading has no tracked instances (it does not
    /// measure them). `None` only when [`TrackingAlloc`](crate::TrackingAlloc) is not the
    /// global allocator.
    ///
    /// ```
    /// #[global_allocator]
    /// static ALLOC: classtrack::TrackingAlloc<std::alloc::System> =
    ///     classtrack::TrackingAlloc::new(std::alloc::System);
    ///
    /// fn main() {
    ///     let tracker = classtrack::ClassTracker::new();
    ///     // 8 MB live for a moment, then gone.
    ///     let spike = classtrack::scope_named("peak doc spike", || vec![1u8; 8 << 20]);
    ///     // The `classtrack-peak` thread reads the counters soon after the allocation; a
    ///     // call of `peak` reads them too, so this example does not depend on how soon.
    ///     tracker.peak();
    ///     drop(spike);
    ///     let peak = tracker.peak().unwrap();
    ///     let spike = peak.class_named("peak doc spike").unwrap();
    ///     assert_eq!(spike.live_bytes, 8 << 20);
    ///     // The heap now has no spike; the peak still does.
    ///     assert_eq!(tracker.create_snapshot("now").class_named("peak doc spike").unwrap().live_bytes, 0);
    /// }
    /// ```
    pub fn peak(&self) -> Option<Arc<Snapshot>> {
        crate::peak::peak(&self.inner.history)
    }

    /// The peak as the background thread recorded it, without a reading of the caller's
    /// (tests of the watcher).
    #[doc(hidden)]
    pub fn __recorded_peak(&self) -> Option<Arc<Snapshot>> {
        self.history().lock().peak.clone()
    }

    /// Forgets the recorded peak: the heap now becomes the peak, and
    /// [`peak`](Self::peak) reports the highest heap from now on. Per-class
    /// [`peak_seen_bytes`](crate::ClassTotals::peak_seen_bytes) are kept.
    pub fn reset_peak(&self) {
        crate::peak::reset(&self.inner.history)
    }

    /// Runs `callback` on the `classtrack-budget` thread (never in the allocator) each time a
    /// class with a budget ([`set_budget`](crate::set_budget)) goes above it
    /// ([`BudgetEvent::exceeded`](crate::BudgetEvent::exceeded) `true`), and again when it
    /// comes back to it or under (`false`), for as long as this tracker lives.
    ///
    /// The callback runs with no lock of classtrack's held, so it may call classtrack (take a
    /// snapshot, write a dump, take a budget away); a panic in it is caught and counted in
    /// [`budget_stats`](crate::budget_stats). It should be quick: the next round waits for it.
    ///
    /// ```
    /// # #[global_allocator]
    /// # static ALLOC: classtrack::TrackingAlloc<std::alloc::System> =
    /// #     classtrack::TrackingAlloc::new(std::alloc::System);
    /// # fn main() -> Result<(), classtrack::Error> {
    /// use std::sync::mpsc;
    ///
    /// let tracker = classtrack::ClassTracker::new();
    /// let (tx, rx) = mpsc::channel();
    /// let tx = std::sync::Mutex::new(tx);
    /// tracker.on_budget_exceeded(move |e| {
    ///     let _ = tx.lock().unwrap().send((e.name.to_string(), e.exceeded));
    /// });
    /// let tenant = classtrack::class_id_named("tenant-9");
    /// classtrack::set_budget(tenant, Some(64 << 10))?;
    /// let data = classtrack::scope_named("tenant-9", || vec![0u8; 1 << 20]);
    /// assert_eq!(rx.recv().unwrap(), ("tenant-9".to_owned(), true));
    /// drop(data);
    /// assert_eq!(rx.recv().unwrap(), ("tenant-9".to_owned(), false));
    /// classtrack::set_budget(tenant, None)?;
    /// # Ok(()) }
    /// ```
    pub fn on_budget_exceeded(
        &self,
        callback: impl Fn(&crate::BudgetEvent) + Send + Sync + 'static,
    ) {
        crate::budget::on_exceeded(&self.inner.history, Arc::new(callback));
    }

    /// The recent snapshots, oldest first: the most recent
    /// [`Retention::recent_snapshots`] (32 by default). The latest has every class (but idle
    /// ones); the others keep the largest classes and those that changed, the rest summed in
    /// their [`omitted`](Snapshot::omitted) ([`Retention::snapshot_classes`], 1,000 by
    /// default, so that a tracker of a million classes keeps one snapshot of every class, not
    /// 32). Older ones are summarized in [`Stats::snapshots`].
    pub fn snapshots(&self) -> Vec<Arc<Snapshot>> {
        let _g = OverheadGuard::new();
        self.history().lock().recent.iter().cloned().collect()
    }

    /// Takes a snapshot every `interval` on a background thread, described as "periodic". If
    /// periodic snapshots are running already, they continue at the new interval.
    ///
    /// An interval of zero is [`Error::InvalidInterval`]; an interval too long to count down
    /// (such as `Duration::MAX`) means no snapshot until the interval is changed. If the
    /// previous periodic thread had stopped by itself, that is reported here
    /// ([`Error::PeriodicSnapshots`]) and nothing is started: call again to start. A thread
    /// that cannot be started is [`Error::Spawn`].
    ///
    /// Threads do not survive `fork()`: in a child process periodic snapshots are not
    /// running until started there.
    pub fn start_periodic_snapshots(&self, interval: Duration) -> Result<()> {
        if interval.is_zero() {
            return Err(Error::InvalidInterval { interval });
        }
        let _g = OverheadGuard::new();
        let mut p = self.inner.periodic.lock();
        if let Some(running) = p.take().map(Periodic::take_over).transpose()?.flatten() {
            running.set_interval(interval);
            *p = Some(running);
            return Ok(());
        }
        *p = Some(Periodic::start(self.inner.clone(), interval)?);
        Ok(())
    }

    /// Stops periodic snapshots, returning as soon as the thread has stopped (within
    /// milliseconds, not one interval). Does nothing if none are running.
    ///
    /// Returns [`Error::PeriodicSnapshots`] if any periodic snapshot failed since they were
    /// started (a tracked object's `Debug` panicked, say) or the thread stopped by itself:
    /// the periodic thread never fails silently.
    pub fn stop_periodic_snapshots(&self) -> Result<()> {
        let running = {
            let _g = OverheadGuard::new();
            self.inner.periodic.lock().take()
        };
        match running {
            Some(p) => p.stop(),
            None => Ok(()),
        }
    }

    /// Whether periodic snapshots are running: started, not stopped, and the thread alive.
    pub fn periodic_snapshots_running(&self) -> bool {
        let _g = OverheadGuard::new();
        self.inner
            .periodic
            .lock()
            .as_ref()
            .is_some_and(Periodic::is_running)
    }

    /// A stream of this tracker's snapshots (periodic and on demand) on a bounded channel of
    /// `capacity` snapshots (1 to [`MAX_SUBSCRIPTION_CAPACITY`]; anything else is
    /// [`Error::InvalidCapacity`]). A subscriber that falls behind never blocks the snapshot
    /// thread or any allocating thread: snapshots it has no room for are dropped and counted
    /// ([`Subscription::dropped`]). Dropping the receiver ends the subscription.
    pub fn subscribe(&self, capacity: usize) -> Result<Subscription> {
        if capacity == 0 || capacity > MAX_SUBSCRIPTION_CAPACITY {
            return Err(Error::InvalidCapacity {
                capacity,
                maximum: MAX_SUBSCRIPTION_CAPACITY,
            });
        }
        let _g = OverheadGuard::new();
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        let dropped = Arc::new(AtomicU64::new(0));
        self.inner.subscribers.lock().push(Subscriber {
            tx,
            dropped: dropped.clone(),
        });
        Ok(Subscription { rx, dropped })
    }

    /// Snapshots dropped because a subscriber's channel was full, over all subscribers.
    pub fn dropped_snapshots(&self) -> u64 {
        // Relaxed: a statistic.
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// A copy of everything this tracker has gathered, to print, sort or dump.
    pub fn stats(&self) -> Stats {
        self.inner.stats()
    }
}

/// A stream of snapshots from [`ClassTracker::subscribe`].
#[derive(Debug)]
pub struct Subscription {
    rx: Receiver<Arc<Snapshot>>,
    dropped: Arc<AtomicU64>,
}

impl Subscription {
    /// The receiving end of the stream.
    pub fn receiver(&self) -> &Receiver<Arc<Snapshot>> {
        &self.rx
    }

    /// Snapshots dropped because this subscriber's channel was full.
    pub fn dropped(&self) -> u64 {
        // Relaxed: a statistic.
        self.dropped.load(Ordering::Relaxed)
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
        check::<Stats>();
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
        // The most recent in full, the others summarized: none lost.
        assert_eq!(
            tracker.snapshots().len(),
            Retention::default().recent_snapshots
        );
        assert_eq!(tracker.stats().snapshots.len(), 40);
    }

    #[test]
    fn repr_is_clipped() {
        let long = "x".repeat(500);
        let r = clip(format!("{long:?}"));
        assert_eq!(r.chars().count(), crate::instance::REPR_LIMIT + 1);
        assert!(r.ends_with('…'));
    }
}
