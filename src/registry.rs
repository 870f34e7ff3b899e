//! The class registry: names to class ids.
//!
//! A class is identified by its name. A type's class is named `std::any::type_name::<T>()`, so
//! `scope::<T, _>` and `scope_named(type_name::<T>(), …)` charge the same class. Ids are handed
//! out once, in order, and never reused.
//!
//! The global registry sits behind a [`Lock`] (see `sync.rs`). The allocator never takes it,
//! so holding it while allocating cannot deadlock; every access runs under the shim's
//! `OverheadGuard`, so its memory is booked as overhead. Each
//! thread keeps a cache of the ids it has used, so entering a known scope takes no lock.

use std::any::TypeId;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, LazyLock};

use crate::sync::Lock;
use classtrack_shim::{ClassId, OverheadGuard};
use hashbrown::HashMap;

/// The reserved name of the class of allocations made outside any scope.
pub const UNTRACKED_CLASS: &str = "<untracked>";
/// The reserved name of the class of classtrack's own allocations.
pub const OVERHEAD_CLASS: &str = "<classtrack overhead>";

struct Registry {
    names: Vec<Arc<str>>,
    by_name: HashMap<Arc<str>, ClassId>,
    by_type: HashMap<TypeId, ClassId>,
}

impl Registry {
    fn new() -> Registry {
        let mut r = Registry {
            names: Vec::new(),
            by_name: HashMap::new(),
            by_type: HashMap::new(),
        };
        r.id_of_name(UNTRACKED_CLASS);
        r.id_of_name(OVERHEAD_CLASS);
        debug_assert_eq!(r.names.len(), ClassId::FIRST_USER.index());
        r
    }

    fn id_of_name(&mut self, name: &str) -> ClassId {
        if let Some(&id) = self.by_name.get(name) {
            return id;
        }
        if self.names.len() >= ClassId::LIMIT as usize {
            // Counters hold 2^24 classes; beyond that, new names share the untracked class.
            return ClassId::UNTRACKED;
        }
        let id = ClassId(self.names.len() as u32);
        let name: Arc<str> = Arc::from(name);
        self.names.push(name.clone());
        self.by_name.insert(name, id);
        // Release: a thread that sees the count sees the class registered (ids are dense).
        REGISTERED.store(self.names.len() as u32, Ordering::Release);
        id
    }
}

/// How many classes are registered: ids below it are handed out. Written under the lock.
static REGISTERED: AtomicU32 = AtomicU32::new(0);

/// Whether `id` names a class handed out by the registry (the reserved ones included).
#[inline]
pub(crate) fn is_registered(id: ClassId) -> bool {
    // Acquire: pairs with the store at registration.
    id.0 < REGISTERED.load(Ordering::Acquire)
}

static REGISTRY: LazyLock<Lock<Registry>> = LazyLock::new(|| Lock::new(Registry::new()));

/// The registry's lock, taken for `fork()` (see `fork.rs`).
pub(crate) fn fork_locks() -> Vec<Box<dyn std::any::Any>> {
    vec![Box::new(REGISTRY.lock())]
}

#[derive(Default)]
struct Cache {
    types: HashMap<TypeId, ClassId>,
    names: HashMap<Box<str>, ClassId>,
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
}

/// The class id of type `T`, registering it on first use.
///
/// Call it under an [`OverheadGuard`]: a miss allocates.
#[inline]
pub(crate) fn id_of_type<T: ?Sized + 'static>() -> ClassId {
    let tid = TypeId::of::<T>();
    let hit = CACHE
        .try_with(|c| c.borrow().types.get(&tid).copied())
        .ok()
        .flatten();
    match hit {
        Some(id) => id,
        None => id_of_type_slow(tid, std::any::type_name::<T>()),
    }
}

#[cold]
#[inline(never)]
fn id_of_type_slow(tid: TypeId, name: &'static str) -> ClassId {
    let id = {
        let mut r = REGISTRY.lock();
        match r.by_type.get(&tid) {
            Some(&id) => id,
            None => {
                let id = r.id_of_name(name);
                r.by_type.insert(tid, id);
                id
            }
        }
    };
    let _ = CACHE.try_with(|c| c.borrow_mut().types.insert(tid, id));
    id
}

/// The class id of the class named `name`, registering it on first use.
///
/// Call it under an [`OverheadGuard`]: a miss allocates.
#[inline]
pub(crate) fn id_of_name(name: &str) -> ClassId {
    let hit = CACHE
        .try_with(|c| c.borrow().names.get(name).copied())
        .ok()
        .flatten();
    match hit {
        Some(id) => id,
        None => id_of_name_slow(name),
    }
}

#[cold]
#[inline(never)]
fn id_of_name_slow(name: &str) -> ClassId {
    let id = REGISTRY.lock().id_of_name(name);
    let _ = CACHE.try_with(|c| c.borrow_mut().names.insert(Box::from(name), id));
    id
}

/// The names of all classes registered so far, indexed by class id.
pub(crate) fn names() -> Vec<Arc<str>> {
    let _g = OverheadGuard::new();
    REGISTRY.lock().names.clone()
}

/// The number of classes registered so far, reserved classes included.
pub fn class_count() -> usize {
    let _g = OverheadGuard::new();
    REGISTRY.lock().names.len()
}

/// The name of class `id`, if registered.
pub(crate) fn name_of(id: ClassId) -> Option<Arc<str>> {
    let _g = OverheadGuard::new();
    REGISTRY.lock().names.get(id.index()).cloned()
}
