//! [`ClassTracker`]: tracked classes and objects, snapshots, periodic snapshots, stats.

use std::any::type_name;
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use classtrack_shim::{ClassId, OverheadGuard, Tag};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use hashbrown::HashMap;
use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::instance::{
    clip, InstanceRecord, SharedArc, SharedObject, Source, TrackOptions, Tracked,
};
use crate::periodic::Periodic;
use crate::scope::{class_id_of, ScopeGuard};
use crate::snapshot::{Snapshot, TrackedClassTotals};
use crate::stats::Stats;

/// A class this tracker has tracked.
pub(crate) struct ClassRecord {
    pub(crate) name: String,
    pub(crate) options: TrackOptions,
    /// Whether new constructions register instances.
    pub(crate) attached: bool,
    /// Instances alive now.
    pub(crate) active: u64,
    /// Instances ever registered.
    pub(crate) created: u64,
    /// (time, instances alive) at every birth and death.
    pub(crate) history: Vec<(f64, u64)>,
}

/// How many dead instances a tracker keeps by default (see
/// [`ClassTracker::set_dead_instance_limit`]).
pub const DEFAULT_DEAD_INSTANCE_LIMIT: usize = 10_000;

pub(crate) struct State {
    pub(crate) snapshots: Vec<Arc<Snapshot>>,
    pub(crate) classes: HashMap<ClassId, ClassRecord>,
    /// Live instances, and the most recent dead ones, by id.
    pub(crate) instances: BTreeMap<u64, InstanceRecord>,
    next_id: u64,
    /// Dead instances still kept, oldest death first.
    dead: VecDeque<u64>,
    dead_limit: usize,
    /// Dead instances forgotten to stay within the limit.
    pub(crate) evicted: u64,
    /// Shared objects alive now, by address: to refuse tracking one twice.
    shared: HashMap<usize, u64>,
}

impl Default for State {
    fn default() -> State {
        State {
            snapshots: Vec::new(),
            classes: HashMap::new(),
            instances: BTreeMap::new(),
            next_id: 0,
            dead: VecDeque::new(),
            dead_limit: DEFAULT_DEAD_INSTANCE_LIMIT,
            evicted: 0,
            shared: HashMap::new(),
        }
    }
}

impl State {
    /// Records the death of instance `id` at `time`, in its class's history too, and forgets
    /// the oldest dead instances beyond the limit.
    fn record_death(&mut self, id: u64, time: f64) {
        let Some(rec) = self.instances.get_mut(&id) else {
            return;
        };
        if rec.death.is_some() {
            return;
        }
        rec.death = Some(time);
        if let Source::Shared(obj) = &rec.source {
            self.shared.remove(&obj.address());
        }
        if let Some(class) = self.classes.get_mut(&rec.class) {
            class.active = class.active.saturating_sub(1);
            class.history.push((time, class.active));
        }
        self.dead.push_back(id);
        self.evict();
    }

    fn evict(&mut self) {
        while self.dead.len() > self.dead_limit {
            if let Some(old) = self.dead.pop_front() {
                self.instances.remove(&old);
                self.evicted += 1;
            }
        }
    }
}

struct Subscriber {
    tx: Sender<Arc<Snapshot>>,
    dropped: Arc<AtomicU64>,
}

/// The part of a tracker that its instances and its periodic thread refer to.
pub(crate) struct Inner {
    pub(crate) start: Instant,
    /// Held for short bookkeeping only: never while user code runs, and the allocator never
    /// takes it, so it cannot deadlock. Taken under an `OverheadGuard`.
    pub(crate) state: Mutex<State>,
    subscribers: Mutex<Vec<Subscriber>>,
    dropped: AtomicU64,
}

impl Inner {
    fn now(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    pub(crate) fn instance_died(&self, id: u64) {
        let _g = OverheadGuard::new();
        let mut st = self.state.lock();
        // The time is read under the lock, so each class's history is in time order.
        let time = self.now();
        st.record_death(id, time);
    }

    pub(crate) fn set_repr(&self, id: u64, repr: String) {
        let _g = OverheadGuard::new();
        if let Some(rec) = self.state.lock().instances.get_mut(&id) {
            rec.repr = repr;
        }
    }

    /// Records the deaths of shared objects whose last strong reference is gone.
    fn reap(&self, st: &mut State) {
        let time = self.now();
        let gone: Vec<u64> = st
            .instances
            .values()
            .filter(|r| r.death.is_none() && r.attached)
            .filter(|r| matches!(&r.source, Source::Shared(obj) if !obj.alive()))
            .map(|r| r.id)
            .collect();
        for id in gone {
            st.record_death(id, time);
        }
    }

    pub(crate) fn snapshot(&self, description: &str) -> Arc<Snapshot> {
        let _g = OverheadGuard::new();
        crate::instance::bump_epoch();
        crate::objects::sweep();
        let time = self.now();
        let mut snap = Snapshot::take(time, description);
        // What to measure, gathered under the lock; measured outside it, because measuring a
        // shared object runs its `Debug` and may drop it (user code must never run under the
        // lock: it could call back into the tracker).
        enum Probe {
            Object(u32),
            Shared(Arc<dyn SharedObject>),
        }
        let probes: Vec<(u64, Probe)> = {
            let mut st = self.state.lock();
            self.reap(&mut st);
            st.instances
                .iter()
                .filter(|(_, r)| r.death.is_none() && r.attached)
                .map(|(&i, r)| {
                    let probe = match &r.source {
                        Source::Constructed { object } => Probe::Object(*object),
                        Source::Shared(obj) => Probe::Shared(obj.clone()),
                    };
                    (i, probe)
                })
                .collect()
        };
        type Measured = (u64, u64, Option<String>, Vec<crate::objects::Referent>);
        let measured: Vec<Measured> = probes
            .into_iter()
            .map(|(i, probe)| match probe {
                Probe::Object(object) => {
                    let (size, referents) = crate::objects::tree(object);
                    (i, size, None, referents)
                }
                Probe::Shared(obj) => (i, obj.size(), obj.repr().map(clip), Vec::new()),
            })
            .collect();
        let mut guard = self.state.lock();
        let st = &mut *guard;
        let mut per_class: HashMap<ClassId, TrackedClassTotals> = HashMap::new();
        for (i, size, repr, referents) in measured {
            let Some(rec) = st.instances.get_mut(&i) else {
                continue;
            };
            if let Some(repr) = repr {
                rec.repr = repr;
            }
            rec.referents = referents;
            rec.sizes.push((time, size));
            rec.max_size = rec.max_size.max(size);
            let name = st
                .classes
                .get(&rec.class)
                .map_or(&rec.class_name, |c| &c.name);
            per_class
                .entry(rec.class)
                .or_insert_with(|| TrackedClassTotals::empty(name.clone()))
                .add(size);
        }
        for (id, class) in st.classes.iter() {
            per_class
                .entry(*id)
                .or_insert_with(|| TrackedClassTotals::empty(class.name.clone()));
        }
        let mut tracked: Vec<TrackedClassTotals> = per_class.into_values().collect();
        tracked.sort_by(|a, b| a.name.cmp(&b.name));
        snap.tracked = tracked;
        let snap = Arc::new(snap);
        st.snapshots.push(snap.clone());
        drop(guard);
        self.publish(&snap);
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
    inner: Arc<Inner>,
    periodic: Mutex<Option<Periodic>>,
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
        self.stop_periodic_snapshots();
    }
}

impl ClassTracker {
    /// A tracker with nothing tracked and no snapshots; its clock starts now.
    pub fn new() -> ClassTracker {
        let _g = OverheadGuard::new();
        crate::sampling::start();
        ClassTracker {
            inner: Arc::new(Inner {
                start: Instant::now(),
                state: Mutex::new(State::default()),
                subscribers: Mutex::new(Vec::new()),
                dropped: AtomicU64::new(0),
            }),
            periodic: Mutex::new(None),
        }
    }

    /// Time since the tracker was created.
    pub fn elapsed(&self) -> Duration {
        self.inner.start.elapsed()
    }

    /// Tracks class `T`: from now on each value built by [`construct`](Self::construct) or
    /// [`construct_debug`](Self::construct_debug) registers one instance. Values built before
    /// are not tracked. Calling it again updates the options (and re-attaches a detached
    /// class).
    pub fn track_class<T: ?Sized + 'static>(&self, options: TrackOptions) {
        let class = class_id_of::<T>();
        let _g = OverheadGuard::new();
        let mut st = self.inner.state.lock();
        let name = options
            .name
            .clone()
            .unwrap_or_else(|| type_name::<T>().to_owned());
        let rec = st.classes.entry(class).or_insert_with(|| ClassRecord {
            name: name.clone(),
            options: options.clone(),
            attached: true,
            active: 0,
            created: 0,
            history: Vec::new(),
        });
        rec.name = name;
        rec.options = options;
        rec.attached = true;
    }

    /// Reads the record of `class`, if this tracker has one and it is attached.
    fn attached_class<R>(&self, class: ClassId, f: impl FnOnce(&ClassRecord) -> R) -> Option<R> {
        let _g = OverheadGuard::new();
        self.inner
            .state
            .lock()
            .classes
            .get(&class)
            .filter(|c| c.attached)
            .map(f)
    }

    /// Whether new values of `T` register instances with this tracker.
    pub fn is_tracked<T: ?Sized + 'static>(&self) -> bool {
        self.attached_class(class_id_of::<T>(), |_| ()).is_some()
    }

    /// Builds a value inside `T`'s class scope. If `T` is tracked, the value is registered as
    /// an instance whose size is what it allocates in its scope; the returned [`Tracked`] is
    /// its handle, and its drop is the instance's death.
    pub fn construct<T: 'static>(&self, f: impl FnOnce() -> T) -> Tracked<T> {
        self.construct_with(f, None)
    }

    /// As [`construct`](Self::construct), and records the value's `Debug` representation
    /// (clipped to 128 characters), refreshed at the first access after each snapshot (so it
    /// shows the value as it was at the snapshot), by [`Tracked::scope`] and at drop. The
    /// tracker never reads the value itself: its owner may be changing it.
    pub fn construct_debug<T: Debug + 'static>(&self, f: impl FnOnce() -> T) -> Tracked<T> {
        self.construct_with(f, Some(|v: &T| format!("{v:?}")))
    }

    fn construct_with<T: 'static>(
        &self,
        f: impl FnOnce() -> T,
        repr: Option<fn(&T) -> String>,
    ) -> Tracked<T> {
        let class = class_id_of::<T>();
        let options = self.attached_class(class, |c| (c.options.clone(), c.name.clone()));
        let Some((options, class_name)) = options else {
            let _s = ScopeGuard::enter_tag(Tag::class(class));
            return Tracked::untracked(f());
        };
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
        let id = self.register(
            class,
            class_name,
            repr_text,
            Source::Constructed { object },
            trace,
        );
        Tracked::new(value, Arc::downgrade(&self.inner), id, tag, repr)
    }

    fn register(
        &self,
        class: ClassId,
        name: String,
        repr: String,
        source: Source,
        trace: Option<Box<[usize]>>,
    ) -> u64 {
        let mut st = self.inner.state.lock();
        let time = self.inner.now();
        let st = &mut *st;
        let id = st.next_id;
        st.next_id += 1;
        let class_name = st
            .classes
            .get(&class)
            .map_or_else(|| name.clone(), |c| c.name.clone());
        if let Source::Shared(obj) = &source {
            st.shared.insert(obj.address(), id);
        }
        st.instances.insert(
            id,
            InstanceRecord {
                id,
                class,
                class_name,
                name,
                repr,
                birth: time,
                death: None,
                attached: true,
                source,
                sizes: Vec::new(),
                max_size: 0,
                trace,
                referents: Vec::new(),
            },
        );
        if let Some(c) = st.classes.get_mut(&class) {
            c.active += 1;
            c.created += 1;
            c.history.push((time, c.active));
        }
        id
    }

    /// Tracks an existing shared object by handle; returns its instance id.
    ///
    /// Birth is now. Its size at each snapshot is the object's own bytes
    /// (`size_of_val(&*obj)`): that is what can be measured exactly of an object built
    /// elsewhere (what it owns on the heap was charged to the scope that allocated it). The
    /// tracker holds a `Weak` reference, or with `keep` a strong one. The death is the moment
    /// the last strong reference is gone, recorded by the next snapshot or
    /// [`ClassTracker::poll`].
    ///
    /// Tracking an object that this tracker already tracks is an error.
    pub fn track_object<T: Send + Sync + 'static>(
        &self,
        obj: &Arc<T>,
        options: TrackOptions,
    ) -> Result<u64> {
        self.track_shared(obj, options, None)
    }

    /// As [`track_object`](Self::track_object), and records the object's `Debug`
    /// representation at each snapshot.
    pub fn track_object_debug<T: Debug + Send + Sync + 'static>(
        &self,
        obj: &Arc<T>,
        options: TrackOptions,
    ) -> Result<u64> {
        self.track_shared(obj, options, Some(|v: &T| format!("{v:?}")))
    }

    fn track_shared<T: Send + Sync + 'static>(
        &self,
        obj: &Arc<T>,
        options: TrackOptions,
        repr: Option<fn(&T) -> String>,
    ) -> Result<u64> {
        let class = class_id_of::<T>();
        let _g = OverheadGuard::new();
        let name = options
            .name
            .clone()
            .unwrap_or_else(|| type_name::<T>().to_owned());
        let address = Arc::as_ptr(obj) as *const () as usize;
        {
            let mut st = self.inner.state.lock();
            self.inner.reap(&mut st);
            if let Some(&id) = st.shared.get(&address) {
                return Err(Error::AlreadyTracked { name, id });
            }
            st.classes.entry(class).or_insert_with(|| ClassRecord {
                name: type_name::<T>().to_owned(),
                options: TrackOptions::new(),
                attached: false,
                active: 0,
                created: 0,
                history: Vec::new(),
            });
        }
        let repr_text = repr.map_or_else(|| format!("<{name}>"), |r| clip(r(obj)));
        let trace = options.trace.then(crate::instance::capture_trace);
        let shared: Arc<dyn SharedObject> = Arc::new(SharedArc {
            weak: Arc::downgrade(obj),
            _kept: options.keep.then(|| obj.clone()),
            repr,
        });
        Ok(self.register(class, name, repr_text, Source::Shared(shared), trace))
    }

    /// Records the deaths of tracked shared objects that are gone (snapshots do this too).
    pub fn poll(&self) {
        let _g = OverheadGuard::new();
        self.inner.reap(&mut self.inner.state.lock());
    }

    /// Stops registering new instances of `T`. Instances already tracked stay tracked.
    ///
    /// Returns [`Error::NotTracked`] if `T` is not tracked (never was, or was detached).
    pub fn detach_class<T: ?Sized + 'static>(&self) -> Result<()> {
        let class = class_id_of::<T>();
        let _g = OverheadGuard::new();
        match self.inner.state.lock().classes.get_mut(&class) {
            Some(c) if c.attached => {
                c.attached = false;
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
        for c in self.inner.state.lock().classes.values_mut() {
            c.attached = false;
        }
    }

    /// Detaches every class and stops measuring every instance (their records stay, and
    /// objects kept alive with `keep` are released).
    pub fn detach_all(&self) {
        let _g = OverheadGuard::new();
        let mut released = Vec::new();
        {
            let mut st = self.inner.state.lock();
            for c in st.classes.values_mut() {
                c.attached = false;
            }
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
        }
        // Kept objects may be dropped here, running user code: never under the lock.
        drop(released);
    }

    /// Keeps at most `limit` dead instances (the most recent deaths), forgetting older ones;
    /// live instances are always kept, and every birth and death stays in its class's
    /// history. The default is [`DEFAULT_DEAD_INSTANCE_LIMIT`]; a service that builds
    /// tracked objects for ever needs a bound.
    pub fn set_dead_instance_limit(&self, limit: usize) {
        let _g = OverheadGuard::new();
        let mut st = self.inner.state.lock();
        st.dead_limit = limit;
        st.evict();
    }

    /// Detaches everything and forgets all snapshots, instances and history.
    pub fn clear(&self) {
        self.detach_all();
        let _g = OverheadGuard::new();
        let old = std::mem::take(&mut *self.inner.state.lock());
        drop(old);
    }

    /// Reads every class's counters, the tracked instances' sizes, the process's memory and
    /// the tracker's overhead now, keeps the snapshot and returns it.
    ///
    /// Totals come from the allocator's counters, so this is cheap (it does not walk the
    /// heap) and always complete; pympler's `compute_total` is always on. A snapshot with
    /// nothing tracked still records the per-class and process figures.
    pub fn create_snapshot(&self, description: &str) -> Arc<Snapshot> {
        self.inner.snapshot(description)
    }

    /// The snapshots taken so far, oldest first.
    pub fn snapshots(&self) -> Vec<Arc<Snapshot>> {
        let _g = OverheadGuard::new();
        self.inner.state.lock().snapshots.clone()
    }

    /// Takes a snapshot every `interval` on a background thread, described as "periodic". If
    /// periodic snapshots are running already, they continue at the new interval.
    ///
    /// An interval of zero is an error.
    pub fn start_periodic_snapshots(&self, interval: Duration) -> Result<()> {
        if interval.is_zero() {
            return Err(Error::InvalidInterval { interval });
        }
        let _g = OverheadGuard::new();
        let mut p = self.periodic.lock();
        match &*p {
            Some(running) => running.set_interval(interval),
            None => *p = Some(Periodic::start(self.inner.clone(), interval)),
        }
        Ok(())
    }

    /// Stops periodic snapshots, returning as soon as the thread has stopped (within
    /// milliseconds, not one interval). Does nothing if none are running.
    pub fn stop_periodic_snapshots(&self) {
        let running = {
            let _g = OverheadGuard::new();
            self.periodic.lock().take()
        };
        if let Some(p) = running {
            p.stop();
        }
    }

    /// Whether periodic snapshots are running.
    pub fn periodic_snapshots_running(&self) -> bool {
        self.periodic.lock().is_some()
    }

    /// A stream of this tracker's snapshots (periodic and on demand) on a bounded channel of
    /// `capacity` (at least 1). A subscriber that falls behind never blocks the snapshot
    /// thread or any allocating thread: snapshots it has no room for are dropped and counted
    /// ([`Subscription::dropped`]). Dropping the receiver ends the subscription.
    pub fn subscribe(&self, capacity: usize) -> Subscription {
        let _g = OverheadGuard::new();
        let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        self.inner.subscribers.lock().push(Subscriber {
            tx,
            dropped: dropped.clone(),
        });
        Subscription { rx, dropped }
    }

    /// Snapshots dropped because a subscriber's channel was full, over all subscribers.
    pub fn dropped_snapshots(&self) -> u64 {
        // Relaxed: a statistic.
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// A copy of everything this tracker has gathered, to print, sort or dump.
    pub fn stats(&self) -> Stats {
        let _g = OverheadGuard::new();
        Stats::from_state(&self.inner.state.lock())
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
        assert_eq!(tracker.snapshots().len(), 40);
    }

    #[test]
    fn repr_is_clipped() {
        let long = "x".repeat(500);
        let r = clip(format!("{long:?}"));
        assert_eq!(r.chars().count(), crate::instance::REPR_LIMIT + 1);
        assert!(r.ends_with('…'));
    }
}
