//! Budgets: soft limits of live bytes per class ([`set_budget`], [`over_budget`],
//! [`ClassTracker::on_budget_exceeded`](crate::ClassTracker::on_budget_exceeded)).
//!
//! The allocator does nothing for a budget: it never fails, waits or panics because of one.
//! One thread per process, `classtrack-budget`, runs while a budget is set: every
//! [`budget_interval`] it reads the live bytes of the classes with a budget (two loads per class
//! and per counter shard, no lock the allocator takes), sets each class's flag, which
//! [`over_budget`] loads, and runs the callbacks for the classes that crossed their limit,
//! either way, since the last round.
//!
//! # How late
//!
//! A class whose live bytes go above its limit, and stay there, is flagged by the end of the
//! next round: at most [`budget_interval`] (10 ms by default) plus one round's reading after it
//! crossed ([`budget_stats`] reports how long a round takes). A class above its limit for a shorter while may be missed. As
//! the counters are read in two passes (frees first), a class that allocates and frees within
//! a round can read above its true live bytes by what it allocated during the reading: it may be
//! flagged one round early.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use classtrack_shim::{ClassId, OverheadGuard};

use crate::error::{Error, Result};
use crate::history::History;
use crate::sync::Lock;

/// The default time between two readings of the budgeted classes.
pub const DEFAULT_BUDGET_INTERVAL: Duration = Duration::from_millis(10);

/// A class that crossed its budget, one way or the other, as the callbacks of
/// [`ClassTracker::on_budget_exceeded`](crate::ClassTracker::on_budget_exceeded) see it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BudgetEvent {
    /// The class.
    pub class: ClassId,
    /// Its name.
    pub name: Arc<str>,
    /// Its budget, in live bytes.
    pub limit: u64,
    /// Its live bytes at the reading.
    pub live_bytes: u64,
    /// `true`: it went above its budget; `false`: it came back to it or under.
    pub exceeded: bool,
}

/// What the budget thread did ([`budget_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BudgetStats {
    /// Classes with a budget now.
    pub budgets: usize,
    /// Classes over their budget at the last round.
    pub over: usize,
    /// Rounds of readings so far.
    pub rounds: u64,
    /// How long the last round's reading took.
    pub last_round: Duration,
    /// The longest round's reading.
    pub longest_round: Duration,
    /// Callbacks that panicked (the panic is caught; the thread goes on).
    pub callback_panics: u64,
}

type Callback = Arc<dyn Fn(&BudgetEvent) + Send + Sync>;

struct Budgets {
    /// Class id → limit, in id order (the reading walks the counter pages in order).
    limits: BTreeMap<ClassId, u64>,
    /// Bumped at each change of `limits`.
    version: u64,
    interval: Duration,
    /// The callbacks, each with the tracker that registered it (it ends with the tracker).
    callbacks: Vec<(Weak<History>, Callback)>,
    /// The thread, by the process generation that started it (a forked child has none).
    thread: Option<(u64, std::thread::Thread)>,
    stats: BudgetStats,
}

static BUDGETS: Lock<Budgets> = Lock::new(Budgets {
    limits: BTreeMap::new(),
    version: 0,
    interval: DEFAULT_BUDGET_INTERVAL,
    callbacks: Vec::new(),
    thread: None,
    stats: BudgetStats {
        budgets: 0,
        over: 0,
        rounds: 0,
        last_round: Duration::ZERO,
        longest_round: Duration::ZERO,
        callback_panics: 0,
    },
});

/// Whether a thread runs in this process's generation (see `fork.rs`), as `generation + 1`;
/// 0: none. Lets [`over_budget`] notice cheaply that a forked child has no thread.
static RUNNING: AtomicU64 = AtomicU64::new(0);

/// Flags per class, in pages allocated the first time a class of the page gets a budget.
const FLAG_PAGE: usize = 4096;
type FlagPage = [AtomicBool; FLAG_PAGE];
static FLAGS: [AtomicPtr<FlagPage>; ClassId::LIMIT as usize / FLAG_PAGE] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; ClassId::LIMIT as usize / FLAG_PAGE];

fn flag(class: ClassId) -> Option<&'static AtomicBool> {
    let slot = FLAGS.get(class.index() / FLAG_PAGE)?;
    // Acquire: see the page's zeroed contents as its installer wrote them.
    let page = slot.load(Ordering::Acquire);
    // SAFETY: installed pages are leaked, never freed.
    unsafe { page.as_ref() }.map(|p| &p[class.index() % FLAG_PAGE])
}

/// The flag of `class`, its page installed if needed (under [`BUDGETS`]'s lock).
fn install_flag(class: ClassId) -> Option<&'static AtomicBool> {
    let slot = FLAGS.get(class.index() / FLAG_PAGE)?;
    if slot.load(Ordering::Acquire).is_null() {
        let page: Box<FlagPage> = Box::new([const { AtomicBool::new(false) }; FLAG_PAGE]);
        // Release: publishes the page's contents. Pages are installed under the lock only, so
        // the slot is still null.
        slot.store(Box::into_raw(page), Ordering::Release);
    }
    flag(class)
}

/// Gives `class` a budget of `limit` live bytes, or with `None` takes its budget away.
///
/// A soft limit: nothing fails or waits because of it. [`over_budget`] answers whether the
/// class is above it, and the callbacks of
/// [`ClassTracker::on_budget_exceeded`](crate::ClassTracker::on_budget_exceeded) run when it
/// crosses it. The first budget starts the `classtrack-budget` thread; it stops when the last
/// is taken away. A class whose budget is taken away is no longer over it (no callback runs
/// for that).
///
/// How late: the thread reads the live bytes of the classes with a budget every
/// [`budget_interval`] (10 ms by default), so a class that goes above its budget, and stays
/// there, is flagged within one interval and one round's reading ([`budget_stats`] tells how
/// long a round takes; `benches/tenants.rs` measures it with up to a million budgets). A
/// class above its budget for less time may be missed. The counters are read in two passes
/// (frees first), so a class that allocates and frees during a reading can read above its
/// true live bytes by what it allocated meanwhile, and be flagged one round early.
///
/// An id that names no class ([`class_id_named`](crate::class_id_named) and
/// [`class_id_of`](crate::class_id_of) give valid ones) is [`Error::InvalidBudget`]; a thread
/// that cannot start is [`Error::Spawn`].
///
/// ```
/// # #[global_allocator]
/// # static ALLOC: classtrack::TrackingAlloc<std::alloc::System> =
/// #     classtrack::TrackingAlloc::new(std::alloc::System);
/// # fn main() -> Result<(), classtrack::Error> {
/// let tenant = classtrack::class_id_named("tenant-42");
/// classtrack::set_budget(tenant, Some(1 << 20))?;
/// let data = classtrack::scope_named("tenant-42", || vec![0u8; 2 << 20]);
/// // Within a round of the budget thread (10 ms by default):
/// while !classtrack::over_budget(tenant) {
///     std::thread::sleep(std::time::Duration::from_millis(1));
/// }
/// drop(data);
/// classtrack::set_budget(tenant, None)?;
/// assert!(!classtrack::over_budget(tenant));
/// # Ok(()) }
/// ```
pub fn set_budget(class: ClassId, limit: Option<u64>) -> Result<()> {
    let _g = OverheadGuard::new();
    if !crate::registry::is_registered(class) {
        return Err(Error::InvalidBudget {
            reason: format!(
                "class id {} names no class: take ids from classtrack::class_id_named or \
                 class_id_of",
                class.0
            ),
        });
    }
    let mut b = BUDGETS.lock();
    match limit {
        Some(limit) => {
            install_flag(class);
            b.limits.insert(class, limit);
        }
        None => {
            b.limits.remove(&class);
            if let Some(f) = flag(class) {
                // Release: pairs with `over_budget`'s acquire.
                f.store(false, Ordering::Release);
            }
        }
    }
    b.version += 1;
    b.stats.budgets = b.limits.len();
    if b.limits.is_empty() {
        return Ok(());
    }
    ensure_running(&mut b)?;
    if let Some((_, thread)) = &b.thread {
        // A new budget is read at once.
        thread.unpark();
    }
    Ok(())
}

/// The budget of `class`, if it has one.
pub fn budget(class: ClassId) -> Option<u64> {
    let _g = OverheadGuard::new();
    BUDGETS.lock().limits.get(&class).copied()
}

/// Whether `class` was above its budget at the budget thread's last reading: one atomic load,
/// no lock, nothing allocated, so a request handler can ask it for every request and refuse or
/// shed the work of a tenant over budget. `false` for a class with no budget.
///
/// ```
/// let tenant = classtrack::class_id_named("tenant-7");
/// if classtrack::over_budget(tenant) {
///     // refuse the request
/// }
/// ```
#[inline]
pub fn over_budget(class: ClassId) -> bool {
    // Relaxed: compared with the process generation only, which the fork handler writes.
    let running = RUNNING.load(Ordering::Relaxed);
    if running != 0 && running != crate::fork::generation() + 1 {
        restart_after_fork();
    }
    // Acquire: pairs with the thread's release store; the class's flag as last read.
    flag(class).is_some_and(|f| f.load(Ordering::Acquire))
}

#[cold]
fn restart_after_fork() {
    let _g = OverheadGuard::new();
    let mut b = BUDGETS.lock();
    if !b.limits.is_empty() {
        // A thread that cannot start leaves the flags as they were; the next call tries again.
        let _ = ensure_running(&mut b);
    }
}

/// Sets the time between two readings of the budgeted classes ([`DEFAULT_BUDGET_INTERVAL`]
/// by default): how late [`over_budget`] can turn true, against the cost of a round (see
/// [`budget_stats`]). Zero is [`Error::InvalidBudget`].
pub fn set_budget_interval(interval: Duration) -> Result<()> {
    if interval.is_zero() {
        return Err(Error::InvalidBudget {
            reason: "a budget interval of zero: give at least a millisecond".to_owned(),
        });
    }
    let _g = OverheadGuard::new();
    let mut b = BUDGETS.lock();
    b.interval = interval;
    if let Some((_, thread)) = &b.thread {
        thread.unpark();
    }
    Ok(())
}

/// The time between two readings of the budgeted classes.
pub fn budget_interval() -> Duration {
    let _g = OverheadGuard::new();
    BUDGETS.lock().interval
}

/// What the budget thread did: budgets, rounds, how long they took.
pub fn budget_stats() -> BudgetStats {
    let _g = OverheadGuard::new();
    BUDGETS.lock().stats
}

/// Registers `callback` for the tracker whose history is `history`.
pub(crate) fn on_exceeded(history: &Arc<History>, callback: Callback) {
    let _g = OverheadGuard::new();
    let mut b = BUDGETS.lock();
    b.callbacks.retain(|(h, _)| h.strong_count() > 0);
    b.callbacks.push((Arc::downgrade(history), callback));
}

/// The budgets' lock, taken for `fork()` (see `fork.rs`).
pub(crate) fn fork_lock() -> Box<dyn std::any::Any> {
    Box::new(BUDGETS.lock())
}

fn ensure_running(b: &mut Budgets) -> Result<()> {
    let generation = crate::fork::generation();
    if b.thread.as_ref().is_some_and(|(g, _)| *g == generation) {
        return Ok(());
    }
    let handle = std::thread::Builder::new()
        .name("classtrack-budget".into())
        .spawn(move || run(generation))
        .map_err(|source| Error::Spawn {
            thread: "classtrack-budget",
            source,
        })?;
    b.thread = Some((generation, handle.thread().clone()));
    // Relaxed: see `over_budget`.
    RUNNING.store(generation + 1, Ordering::Relaxed);
    Ok(())
}

/// The budget thread: a round every interval, until no budget is left.
fn run(generation: u64) {
    let mut version = u64::MAX;
    let mut classes: Vec<ClassId> = Vec::new();
    let mut limits: Vec<u64> = Vec::new();
    let mut live: Vec<u64> = Vec::new();
    loop {
        let interval = {
            let _g = OverheadGuard::new();
            let mut b = BUDGETS.lock();
            if b.thread.as_ref().is_none_or(|(g, _)| *g != generation) {
                // A later generation's thread (this one was copied by fork: it cannot be).
                return;
            }
            if b.limits.is_empty() {
                b.thread = None;
                RUNNING.store(0, Ordering::Relaxed);
                return;
            }
            if b.version != version {
                version = b.version;
                classes.clear();
                limits.clear();
                for (&c, &l) in &b.limits {
                    classes.push(c);
                    limits.push(l);
                }
                live.resize(classes.len(), 0);
            }
            b.interval
        };
        let events = round(version, &classes, &limits, &mut live);
        if !events.is_empty() {
            call_back(&events);
        }
        std::thread::park_timeout(interval);
    }
}

/// Reads the classes' live bytes (the budgets of `version`), sets their flags; returns the
/// crossings.
fn round(version: u64, classes: &[ClassId], limits: &[u64], live: &mut [u64]) -> Vec<BudgetEvent> {
    let _g = OverheadGuard::new();
    let start = Instant::now();
    classtrack_shim::read_live_bytes(classes, live);
    let took = start.elapsed();
    let mut events = Vec::new();
    let mut over = 0;
    let mut b = BUDGETS.lock();
    b.stats.rounds += 1;
    b.stats.last_round = took;
    b.stats.longest_round = b.stats.longest_round.max(took);
    if b.version != version {
        // Budgets changed during the reading: a class whose budget was taken away must keep
        // its cleared flag. The next round reads the new budgets.
        return events;
    }
    for ((&class, &limit), &bytes) in classes.iter().zip(limits).zip(live.iter()) {
        let exceeded = bytes > limit;
        over += usize::from(exceeded);
        let Some(f) = flag(class) else { continue };
        // AcqRel: the release pairs with `over_budget`'s acquire. Flags change only under
        // the lock held here (this round, and `set_budget` taking a budget away).
        if f.swap(exceeded, Ordering::AcqRel) != exceeded {
            events.push(BudgetEvent {
                class,
                name: crate::registry::name_of(class).unwrap_or_else(|| Arc::from("")),
                limit,
                live_bytes: bytes,
                exceeded,
            });
        }
    }
    b.stats.over = over;
    events
}

/// Runs the callbacks of the trackers alive for each event, with no lock held; a panic in one
/// is caught and counted.
fn call_back(events: &[BudgetEvent]) {
    let callbacks: Vec<Callback> = {
        let _g = OverheadGuard::new();
        let mut b = BUDGETS.lock();
        b.callbacks.retain(|(h, _)| h.strong_count() > 0);
        b.callbacks.iter().map(|(_, c)| c.clone()).collect()
    };
    let mut panics = 0;
    for callback in &callbacks {
        for event in events {
            if catch_unwind(AssertUnwindSafe(|| callback(event))).is_err() {
                panics += 1;
            }
        }
    }
    if panics > 0 {
        let _g = OverheadGuard::new();
        BUDGETS.lock().stats.callback_panics += panics;
    }
}
