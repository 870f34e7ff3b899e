//! Class scopes: which class the current thread's allocations are charged to.
//!
//! A scope sets the thread's current class until it ends; scopes nest and the innermost wins.
//! Memory is charged to the scope that *allocated* it, for the block's whole life: a `realloc`
//! keeps the block's class, and a free on any thread credits that class.
//!
//! Each thread keeps a stack of its open scopes (a depth, and a record of scopes that ended
//! before scopes entered after them), so that the current class is always the innermost open
//! scope's whatever the order scopes end in. Scopes only change the thread's tag through the
//! shim's `replace_tag`: nothing here touches the allocation path.

use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};

use classtrack_shim::{replace_tag, ClassId, OverheadGuard, Tag};

use crate::registry;

/// How many nested scopes a thread records. Deeper scopes still nest and restore correctly
/// when dropped in order; an out-of-order drop past this depth is counted but not repaired.
const STACK_CAP: u32 = 64;

/// A guard's depth meaning "not on the thread's stack": its drop just restores `prev`. One
/// below `u32::MAX`, so that `UNSTACKED + 1` is never the stack's depth and exiting it takes
/// the cold path.
const UNSTACKED: u32 = u32::MAX - 1;

/// The scopes entered on this thread and not yet exited, innermost last.
///
/// `depth` scopes are open. Bit `i` of `exited` says that the guard of entry `i` was dropped
/// while a scope entered after it was still open; `prevs[i]` then holds the tag that was
/// current before that scope was entered. Such an entry is taken off when every scope above
/// it has ended, and the thread resumes the `prev` of the lowest entry taken off. Entering and
/// exiting in order touch only `depth` (and read `exited`). Invariant: bits at or above
/// `depth` are clear.
struct Stack {
    depth: Cell<u32>,
    exited: Cell<u64>,
    prevs: [Cell<Tag>; STACK_CAP as usize],
}

thread_local! {
    // No destructor: entering a scope is a plain thread-local access, also while the thread
    // exits.
    static STACK: Stack = const {
        Stack {
            depth: Cell::new(0),
            exited: Cell::new(0),
            prevs: [const { Cell::new(Tag::UNTRACKED) }; STACK_CAP as usize],
        }
    };
}

/// Scope exits that happened out of order, in the whole process.
static OUT_OF_ORDER: AtomicU64 = AtomicU64::new(0);

/// One entry on the thread's scope stack: what to restore, and where it sits.
///
/// Not a guard: its owner (a [`ScopeGuard`], a future's poll, a tracing span's enter) passes
/// it back to [`RawScope::exit`] on the same thread.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawScope {
    prev: Tag,
    depth: u32,
}

impl RawScope {
    /// Records that `tag` becomes current, `prev` having been current before it.
    ///
    /// The caller has already made `prev` no longer current (the overhead tag may be current
    /// during a class lookup); this makes `tag` current.
    #[inline(always)]
    fn push(prev: Tag, tag: Tag) -> RawScope {
        let depth = STACK
            .try_with(|s| {
                let d = s.depth.get();
                // Wraps only after 4 billion nested scopes: the stack would have overflowed.
                s.depth.set(d.wrapping_add(1));
                d
            })
            .unwrap_or(UNSTACKED);
        replace_tag(tag);
        RawScope { prev, depth }
    }

    /// Enters `tag` (a tracked instance's scope): no class lookup.
    #[inline]
    pub(crate) fn enter_tag(tag: Tag) -> RawScope {
        let prev = classtrack_shim::current_tag();
        RawScope::push(prev, tag)
    }

    /// Enters the scope of `class`. Inside a tracked instance's scope, the block stays the
    /// instance's too (or goes to the instance's node for this class, when its class asks for
    /// a breakdown).
    #[inline]
    pub(crate) fn enter_class(class: ClassId) -> RawScope {
        let prev = classtrack_shim::current_tag();
        let object = crate::objects::nested(prev.object, class);
        RawScope::push(prev, Tag { class, object })
    }

    /// Ends this scope, whatever the order in which this thread's scopes end.
    ///
    /// The innermost scope restores the tag that was current when it was entered, as a plain
    /// save-and-restore would. A scope that is not the innermost is marked ended and the
    /// thread's tag stays that of the innermost; once the scopes above it end, the thread
    /// resumes the tag of the innermost scope still open, or the tag from before the first
    /// scope.
    #[inline(always)]
    pub(crate) fn exit(self) {
        // The common case, kept small enough to inline: the innermost scope ends and no scope
        // below it ended early.
        let in_order = STACK
            .try_with(|s| {
                let in_order = self.depth.wrapping_add(1) == s.depth.get() && s.exited.get() == 0;
                if in_order {
                    s.depth.set(self.depth);
                }
                in_order
            })
            .unwrap_or(false);
        if in_order {
            replace_tag(self.prev);
        } else {
            self.exit_slow();
        }
    }

    /// [`RawScope::exit`] of a scope that is not the innermost, or above scopes that ended
    /// early, or on a thread whose stack is gone.
    #[cold]
    #[inline(never)]
    fn exit_slow(self) {
        let restore = STACK
            .try_with(|s| {
                if self.depth.wrapping_add(1) == s.depth.get() {
                    s.depth.set(self.depth);
                    Some(s.pop_exited(self.prev))
                } else {
                    s.exit_out_of_order(self);
                    None
                }
            })
            .unwrap_or(Some(self.prev));
        if let Some(tag) = restore {
            replace_tag(tag);
        }
    }
}

impl Stack {
    /// After the innermost scope ended: takes off the entries below it whose guards already
    /// ended, and returns the tag to resume (`prev` when there were none).
    fn pop_exited(&self, prev: Tag) -> Tag {
        let mut depth = self.depth.get();
        let mut exited = self.exited.get();
        let mut resume = prev;
        while depth > 0 && depth <= STACK_CAP && exited & (1 << (depth - 1)) != 0 {
            depth -= 1;
            exited &= !(1 << depth);
            resume = self.prevs[depth as usize].get();
        }
        self.exited.set(exited);
        self.depth.set(depth);
        resume
    }

    /// A scope that is not the innermost ended: mark it, keep the current tag.
    fn exit_out_of_order(&self, scope: RawScope) {
        if scope.depth == UNSTACKED {
            // Entered while the thread's stack was gone (thread exit): restore as before.
            replace_tag(scope.prev);
            return;
        }
        if scope.depth < self.depth.get() && scope.depth < STACK_CAP {
            self.prevs[scope.depth as usize].set(scope.prev);
            self.exited.set(self.exited.get() | 1 << scope.depth);
        }
        report_out_of_order();
    }
}

#[cold]
fn report_out_of_order() {
    // Relaxed: a statistic; nothing is ordered by it.
    let n = OUT_OF_ORDER.fetch_add(1, Ordering::Relaxed);
    if cfg!(debug_assertions) && n == 0 {
        let _g = OverheadGuard::new();
        eprintln!(
            "classtrack: a scope ended while a scope entered after it on the same thread was \
             still open (was a ScopeGuard held across `.await`?). The thread's scope was \
             repaired; to scope async work use `InClass::in_class` on the future instead. \
             (Reported once; see classtrack::scope_exits_out_of_order.)"
        );
    }
}

/// How many scopes in this process have ended out of order: while a scope entered after them
/// on the same thread was still open.
///
/// Each is repaired (the thread's current class is always that of the innermost scope still
/// open, and the class from before any scope once all have ended), but it means that a scope
/// guard outlived a later one, usually because a [`ScopeGuard`] was held across an `.await`:
/// while its task was suspended, other tasks on that thread were charged to its class. Scope
/// async work with [`InClass`](crate::InClass) instead. Debug builds also print a warning to
/// stderr the first time.
pub fn scope_exits_out_of_order() -> u64 {
    // Relaxed: a statistic.
    OUT_OF_ORDER.load(Ordering::Relaxed)
}

/// A class scope entered with [`enter`], [`enter_named`] or [`enter_id`]; the scope ends when
/// it is dropped.
///
/// Dropping restores the scope that was current before, also when a panic unwinds through the
/// guard. Guards dropped out of order are repaired: each guard knows its place on the
/// thread's stack of open scopes, dropping it removes that entry, and the thread's class is
/// always that of the innermost scope still open (see [`scope_exits_out_of_order`]).
///
/// The guard is `!Send`: a scope belongs to the thread that entered it.
///
/// ```compile_fail
/// let guard = classtrack::enter_named("cache");
/// std::thread::spawn(move || drop(guard)); // error: the guard cannot leave its thread
/// ```
///
/// # Not across `.await`
///
/// A guard held across an `.await` is wrong: while the task is suspended, its thread runs
/// other tasks, and they are charged to this class; the task itself, resumed on another
/// worker thread, is not. Such a future is `!Send`, so a multi-threaded runtime refuses it:
///
/// ```compile_fail
/// fn spawn<F: std::future::Future + Send>(_: F) {}
/// spawn(async {
///     let _guard = classtrack::enter_named("loader");
///     std::future::ready(()).await; // error: the guard is held across an await
/// });
/// ```
///
/// but a single-threaded executor (tokio's `LocalSet`, `block_on`) accepts it. Wrap the
/// future instead, which enters the scope around each poll only:
///
/// ```
/// use classtrack::InClass;
/// # async fn fetch_rows() -> Vec<u64> { vec![1, 2, 3] }
/// async fn load() -> Vec<u64> {
///     // wrong: let _guard = classtrack::enter_named("loader"); fetch_rows().await
///     fetch_rows().in_class_named("loader").await
/// }
/// # let _ = load();
/// ```
#[must_use = "the scope ends when the guard is dropped; bind it with `let _guard = …`"]
#[derive(Debug)]
pub struct ScopeGuard {
    raw: RawScope,
    class: ClassId,
    /// For a [`Scope`] that carries a measurement: the thread's measurement before it, restored
    /// after the scope ends.
    measured: Option<u8>,
    _not_send: PhantomData<*const ()>,
}

impl ScopeGuard {
    /// Enters a scope whose class is found by `lookup`.
    ///
    /// The lookup may register the class (a first use): that memory is classtrack's, so the
    /// lookup runs with the overhead class current. The guard already holds the previous tag,
    /// so a panic in the lookup restores it too.
    #[inline(always)]
    fn enter_with(lookup: impl FnOnce() -> ClassId) -> ScopeGuard {
        let mut guard = ScopeGuard {
            raw: RawScope {
                prev: replace_tag(Tag::OVERHEAD),
                depth: UNSTACKED,
            },
            class: ClassId::OVERHEAD,
            measured: None,
            _not_send: PhantomData,
        };
        let class = lookup();
        let prev = guard.raw.prev;
        let object = crate::objects::nested(prev.object, class);
        guard.raw = RawScope::push(prev, Tag { class, object });
        guard.class = class;
        guard
    }

    /// Enters the scope of a tracked instance: `tag` names its class and object.
    #[inline]
    pub(crate) fn enter_tag(tag: Tag) -> ScopeGuard {
        ScopeGuard {
            raw: RawScope::enter_tag(tag),
            class: tag.class,
            measured: None,
            _not_send: PhantomData,
        }
    }

    /// The class this scope charges allocations to.
    pub fn class_id(&self) -> ClassId {
        self.class
    }
}

impl Drop for ScopeGuard {
    #[inline]
    fn drop(&mut self) {
        self.raw.exit();
        if let Some(prev) = self.measured {
            classtrack_shim::set_measurement(prev);
        }
    }
}

#[inline]
fn class_of<T: ?Sized + 'static>() -> ClassId {
    let _g = OverheadGuard::new();
    registry::id_of_type::<T>()
}

#[inline]
fn class_named(name: &str) -> ClassId {
    let _g = OverheadGuard::new();
    registry::id_of_name(name)
}

/// Enters the class scope of type `T` until the returned guard is dropped.
///
/// The class is named `std::any::type_name::<T>()`.
///
/// ```
/// struct Order;
/// let _guard = classtrack::enter::<Order>();
/// let lines: Vec<String> = Vec::with_capacity(8); // charged to Order
/// # drop(lines);
/// ```
#[inline]
pub fn enter<T: ?Sized + 'static>() -> ScopeGuard {
    ScopeGuard::enter_with(registry::id_of_type::<T>)
}

/// Enters the class scope named `name` (a subsystem, a cache, a phase) until the returned
/// guard is dropped.
///
/// ```
/// let _guard = classtrack::enter_named("parser");
/// let tokens: Vec<u32> = Vec::with_capacity(1024); // charged to "parser"
/// # drop(tokens);
/// ```
#[inline]
pub fn enter_named(name: &str) -> ScopeGuard {
    ScopeGuard::enter_with(|| registry::id_of_name(name))
}

/// Runs `f` inside the class scope of type `T` and returns its result.
///
/// Everything `f` allocates on this thread is charged to `T`'s class, named
/// `std::any::type_name::<T>()`, unless an inner scope says otherwise. The outer scope is
/// restored when `f` returns or panics.
///
/// ```
/// struct Order { lines: Vec<String> }
/// let order = classtrack::scope::<Order, _>(|| Order { lines: vec!["1 x widget".into()] });
/// # assert_eq!(order.lines.len(), 1);
/// ```
#[inline]
pub fn scope<T: ?Sized + 'static, R>(f: impl FnOnce() -> R) -> R {
    let _guard = enter::<T>();
    f()
}

/// Runs `f` inside the class scope named `name` and returns its result.
///
/// ```
/// let cache = classtrack::scope_named("cache", || vec![0u8; 4096]);
/// # assert_eq!(cache.len(), 4096);
/// ```
#[inline]
pub fn scope_named<R>(name: &str, f: impl FnOnce() -> R) -> R {
    let _guard = enter_named(name);
    f()
}

/// The class id that type `T`'s scope charges, registering the class if it is new.
pub fn class_id_of<T: ?Sized + 'static>() -> ClassId {
    class_of::<T>()
}

/// The class id of the class named `name`, registering the class if it is new.
pub fn class_id_named(name: &str) -> ClassId {
    class_named(name)
}

/// The class the current thread's allocations are charged to now.
pub fn current_class() -> ClassId {
    classtrack_shim::current_tag().class
}

/// The class id `id` enters, or [`ClassId::UNTRACKED`] for an id that names no user class.
#[inline]
fn checked(id: ClassId) -> ClassId {
    if id == ClassId::UNTRACKED || (id >= ClassId::FIRST_USER && registry::is_registered(id)) {
        id
    } else {
        ClassId::UNTRACKED
    }
}

/// Enters the scope of the class `id` (from [`class_id_of`], [`class_id_named`],
/// [`current_class`] or [`Scope::class_id`]) until the returned guard is dropped.
///
/// No lookup at all: the cheapest way to enter a class known in advance. An id that no class
/// was given (or the reserved overhead class) enters `<untracked>` instead: classtrack's own
/// class is never charged by user code.
///
/// ```
/// let parser = classtrack::class_id_named("parser");
/// let _guard = classtrack::enter_id(parser);
/// assert_eq!(classtrack::current_class(), parser);
/// ```
#[inline]
pub fn enter_id(id: ClassId) -> ScopeGuard {
    let class = checked(id);
    ScopeGuard {
        raw: RawScope::enter_class(class),
        class,
        measured: None,
        _not_send: PhantomData,
    }
}

/// Runs `f` inside the scope of the class `id` and returns its result (see [`enter_id`]).
///
/// ```
/// let cache = classtrack::class_id_named("cache");
/// let v = classtrack::scope_id(cache, || vec![0u8; 64]); // charged to "cache"
/// # drop(v);
/// ```
#[inline]
pub fn scope_id<R>(id: ClassId, f: impl FnOnce() -> R) -> R {
    let _guard = enter_id(id);
    f()
}

/// A class scope as a value, to enter on another thread: see [`current_scope`].
///
/// It is `Copy` and `Send`, and names the class only. Inside a tracked instance's scope
/// ([`Tracked::scope`](crate::Tracked::scope)) the instance does **not** travel: work done
/// elsewhere with this value is charged to the class, not to the instance's size. An object
/// id is only valid while its instance lives (ids are reused afterwards), and a copied value
/// can outlive the instance, so carrying it could charge a later, unrelated instance. To
/// grow an instance from another thread, move its [`Tracked`](crate::Tracked) handle there
/// and use its `scope`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Scope {
    class: ClassId,
    /// The measurement ([`testing::measure`](crate::testing::measure)) of the thread that
    /// took it with [`current_scope`], or 0.
    measure: u8,
}

impl Scope {
    /// The scope of type `T`'s class.
    pub fn of<T: ?Sized + 'static>() -> Scope {
        Scope {
            class: class_of::<T>(),
            measure: 0,
        }
    }

    /// The scope of the class named `name`.
    pub fn named(name: &str) -> Scope {
        Scope {
            class: class_named(name),
            measure: 0,
        }
    }

    /// The scope of the class `id`; an id that names no user class stands for
    /// `<untracked>` (see [`enter_id`]).
    pub fn from_id(id: ClassId) -> Scope {
        Scope {
            class: checked(id),
            measure: 0,
        }
    }

    /// The class this scope charges.
    pub fn class_id(self) -> ClassId {
        self.class
    }

    /// Runs `f` inside this scope, on the current thread, and returns its result.
    #[inline]
    pub fn enter<R>(self, f: impl FnOnce() -> R) -> R {
        let _guard = self.guard();
        f()
    }

    /// Enters this scope on the current thread until the returned guard is dropped.
    #[inline]
    pub fn guard(self) -> ScopeGuard {
        // The measurement first, so that the scope's own bookkeeping is done in it too.
        let measured = (self.measure != 0).then(|| classtrack_shim::set_measurement(self.measure));
        ScopeGuard {
            raw: RawScope::enter_class(self.class),
            class: self.class,
            measured,
            _not_send: PhantomData,
        }
    }

    /// The measurement this scope carries (0 for none).
    pub(crate) fn measurement(self) -> u8 {
        self.measure
    }
}

/// The current thread's class scope, as a value to enter elsewhere: work handed to another
/// thread (a thread pool, `std::thread::scope`, rayon) is charged to the class that handed it
/// over.
///
/// ```
/// let work = classtrack::scope_named("indexer", || {
///     let s = classtrack::current_scope();
///     std::thread::scope(|t| {
///         t.spawn(move || s.enter(|| vec![0u32; 256])) // charged to "indexer"
///             .join()
///             .unwrap()
///     })
/// });
/// # assert_eq!(work.len(), 256);
/// ```
///
/// With rayon, enter it in each job: `items.par_iter().map(|x| s.enter(|| f(x)))`.
///
/// Outside any scope this is the `<untracked>` scope. The class only travels, not a tracked
/// instance (see [`Scope`]). Inside [`testing::measure`](crate::testing::measure), the
/// measurement travels too: what the work allocates is measured.
pub fn current_scope() -> Scope {
    Scope {
        class: checked(current_class()),
        measure: crate::testing::current(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str) -> ClassId {
        class_id_named(name)
    }

    #[test]
    fn every_drop_order_of_three_guards_ends_where_it_began() {
        let names = ["order::a", "order::b", "order::c"];
        let perms = [
            [0, 1, 2],
            [0, 2, 1],
            [1, 0, 2],
            [1, 2, 0],
            [2, 0, 1],
            [2, 1, 0],
        ];
        let outer = id("order::outer");
        let _o = enter_id(outer);
        for perm in perms {
            let mut guards: Vec<Option<ScopeGuard>> =
                names.iter().map(|n| Some(enter_named(n))).collect();
            let mut open = [true; 3];
            for &i in &perm {
                drop(guards[i].take());
                open[i] = false;
                // The class is the innermost scope still open, or the outer one.
                let want = (0..3)
                    .rev()
                    .find(|&j| open[j])
                    .map_or(outer, |j| id(names[j]));
                assert_eq!(current_class(), want, "order {perm:?}, after dropping {i}");
            }
        }
        drop(_o);
        assert_eq!(current_class(), ClassId::UNTRACKED);
    }

    #[test]
    fn deep_nesting_past_the_recorded_depth_restores_in_order() {
        fn nest(n: u32) {
            if n == 0 {
                return;
            }
            let name = format!("deep::{}", n % 5);
            let c = id(&name);
            scope_id(c, || {
                nest(n - 1);
                assert_eq!(current_class(), c);
            });
        }
        nest(STACK_CAP * 3);
        assert_eq!(current_class(), ClassId::UNTRACKED);
    }

    #[test]
    fn out_of_order_under_deep_nesting_is_repaired_below_the_recorded_depth() {
        let a = enter_named("oo::a");
        let b = enter_named("oo::b");
        let mut inner: Vec<ScopeGuard> = (0..STACK_CAP * 2).map(|_| enter_named("oo::x")).collect();
        drop(a); // out of order: marked
        assert_eq!(current_class(), id("oo::x"));
        while let Some(g) = inner.pop() {
            drop(g); // in order, innermost first
        }
        assert_eq!(current_class(), id("oo::b"));
        drop(b);
        assert_eq!(current_class(), ClassId::UNTRACKED);
    }

    #[test]
    fn enter_id_refuses_unknown_and_reserved_ids() {
        let _g = enter_id(ClassId(ClassId::LIMIT - 1));
        assert_eq!(current_class(), ClassId::UNTRACKED);
        let _h = enter_id(ClassId::OVERHEAD);
        assert_eq!(current_class(), ClassId::UNTRACKED);
        let known = id("enter_id::known");
        let _k = enter_id(known);
        assert_eq!(current_class(), known);
        assert_eq!(current_scope().class_id(), known);
    }

    #[test]
    fn a_scope_value_is_copy_and_send() {
        fn check<T: Copy + Send + Sync + 'static>() {}
        check::<Scope>();
    }

    #[test]
    fn a_scope_value_enters_on_another_thread() {
        let s = Scope::named("carry::x");
        let seen = std::thread::spawn(move || s.enter(current_class))
            .join()
            .unwrap();
        assert_eq!(seen, id("carry::x"));
        assert_eq!(current_class(), ClassId::UNTRACKED);
    }
}
