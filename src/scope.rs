//! Class scopes: which class the current thread's allocations are charged to.
//!
//! A scope sets the thread's current class until it ends; scopes nest and the innermost wins.
//! Memory is charged to the scope that *allocated* it, for the block's whole life: a `realloc`
//! keeps the block's class, and a free on any thread credits that class.

use std::marker::PhantomData;

use classtrack_shim::{replace_tag, ClassId, OverheadGuard, Tag};

use crate::registry;

/// A class scope entered with [`enter`] or [`enter_named`]; the scope ends when it is dropped.
///
/// Dropping restores the scope that was current before, also when a panic unwinds through the
/// guard. Drop guards in the reverse order of entering them (as plain `let` bindings do).
///
/// The guard is `!Send`: a scope belongs to the thread that entered it.
///
/// ```compile_fail
/// let guard = classtrack::enter_named("cache");
/// std::thread::spawn(move || drop(guard)); // error: the guard cannot leave its thread
/// ```
#[must_use = "the scope ends when the guard is dropped; bind it with `let _guard = …`"]
#[derive(Debug)]
pub struct ScopeGuard {
    prev: Tag,
    class: ClassId,
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
            prev: replace_tag(Tag::OVERHEAD),
            class: ClassId::OVERHEAD,
            _not_send: PhantomData,
        };
        let class = lookup();
        // Inside a tracked instance's scope, the block stays the instance's too (or goes to
        // the instance's node for this class, when its class asks for a breakdown).
        let object = crate::objects::nested(guard.prev.object, class);
        replace_tag(Tag { class, object });
        guard.class = class;
        guard
    }

    /// Enters the scope of a tracked instance: `tag` names its class and object.
    #[inline]
    pub(crate) fn enter_tag(tag: Tag) -> ScopeGuard {
        ScopeGuard {
            prev: replace_tag(tag),
            class: tag.class,
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
        replace_tag(self.prev);
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
