//! The class registry: names to class ids.
//!
//! A class is identified by its name. A type's class is named `std::any::type_name::<T>()`, so
//! `scope::<T, _>` and `scope_named(type_name::<T>(), …)` charge the same class. Ids are handed
//! out once, in order, and never reused.
//!
//! The global registry sits behind a [`Lock`] (see `sync.rs`). The allocator never takes it,
//! so holding it while allocating cannot deadlock; every access runs under the shim's
//! `OverheadGuard`, so its memory is booked as overhead.
//!
//! A known name is found without any lock, in a table shared by every thread ([`NameTable`]:
//! open addressing over pointers to entries that are never freed, grown under the lock by
//! publishing a larger copy), so a thread keeps no cache of names: its memory does not grow
//! with the number of names it uses. A known type is found in a per-thread cache of the types
//! it used (a program has few types).

use std::any::TypeId;
use std::cell::RefCell;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};
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
    by_type: HashMap<TypeId, ClassId>,
    /// Every name table published so far, the current one last: a reader may still be in an
    /// older one, so none is freed. Boxed: `TABLE` points at a table, which must not move when
    /// the list grows.
    #[allow(clippy::vec_box)]
    tables: Vec<Box<NameTable>>,
    /// Names in the current table.
    table_len: usize,
}

/// A class name's entry in the [`NameTable`]s: its id, its name's length and its bytes in one
/// block (`[id: u32][len: u32][bytes]`, native byte order), so that a lookup reads one block
/// beyond the slot, not a block and then the name's. Made once, never freed.
#[derive(Clone, Copy)]
struct Entry(&'static [u8]);

impl Entry {
    /// Leaks a new entry.
    fn new(id: ClassId, name: &str) -> Entry {
        let len = u32::try_from(name.len()).unwrap_or(u32::MAX) as usize;
        let mut block = Vec::with_capacity(8 + len);
        block.extend_from_slice(&id.0.to_ne_bytes());
        block.extend_from_slice(&(len as u32).to_ne_bytes());
        block.extend_from_slice(&name.as_bytes()[..len]);
        Entry(Box::leak(block.into_boxed_slice()))
    }

    /// The entry whose block starts at `p`.
    ///
    /// # Safety
    /// `p` is the start of a block made by [`Entry::new`] (never freed).
    #[inline]
    unsafe fn from_ptr(p: *const u8) -> Entry {
        // SAFETY: the block starts with its length at bytes 4..8 and is 8 + len bytes long
        // (the caller's promise); u8 needs no alignment.
        unsafe {
            let len = u32::from_ne_bytes(*p.add(4).cast::<[u8; 4]>()) as usize;
            Entry(std::slice::from_raw_parts(p, 8 + len))
        }
    }

    fn id(self) -> ClassId {
        let mut id = [0; 4];
        id.copy_from_slice(&self.0[..4]);
        ClassId(u32::from_ne_bytes(id))
    }

    fn name(self) -> &'static [u8] {
        &self.0[8..]
    }
}

/// One slot of a [`NameTable`]: the entry, and its name's hash (never 0 in a filled slot), so
/// that a probe passes other names without reading their entries.
struct Slot {
    hash: AtomicU64,
    /// The start of an [`Entry`]'s block.
    entry: AtomicPtr<u8>,
}

/// Names to ids, read without a lock: a power-of-two array of slots, linear probing, at most
/// half full. Only [`Registry::id_of_name`] writes it, under the registry's lock: it fills an
/// empty slot (the entry first, then the hash), or publishes a copy twice as large.
struct NameTable {
    slots: Box<[Slot]>,
}

/// The current name table, or null before the first name.
static TABLE: AtomicPtr<NameTable> = AtomicPtr::new(std::ptr::null_mut());

/// The hash of names, the same for every table and thread.
static HASHER: LazyLock<hashbrown::DefaultHashBuilder> = LazyLock::new(Default::default);

/// The hash of `name` as the tables keep it: never 0 (0 marks an empty slot).
#[inline]
fn hash_of(name: &str) -> u64 {
    HASHER.hash_one(name) | 1
}

impl NameTable {
    fn with_slots(slots: usize) -> NameTable {
        NameTable {
            slots: (0..slots)
                .map(|_| Slot {
                    hash: AtomicU64::new(0),
                    entry: AtomicPtr::new(std::ptr::null_mut()),
                })
                .collect(),
        }
    }

    /// The id of `name` (whose hash is `hash`) if this table has it.
    #[inline]
    fn find(&self, hash: u64, name: &str) -> Option<ClassId> {
        let mask = self.slots.len() - 1;
        let mut i = hash as usize & mask;
        loop {
            let slot = &self.slots[i];
            // Acquire: pairs with the release store of the hash, which comes after the entry's
            // pointer was stored (and the entry written).
            match slot.hash.load(Ordering::Acquire) {
                // Empty, or being filled: not found here (the caller then asks under the lock).
                0 => return None,
                h if h == hash => {
                    // Relaxed: ordered by the acquire load of the hash above.
                    let entry = slot.entry.load(Ordering::Relaxed);
                    if !entry.is_null() {
                        // SAFETY: the pointer was stored before the hash, and entries are
                        // leaked when made and never freed.
                        let entry = unsafe { Entry::from_ptr(entry) };
                        if entry.name() == name.as_bytes() {
                            return Some(entry.id());
                        }
                    }
                }
                _ => {}
            }
            i = (i + 1) & mask;
        }
    }

    /// Puts `entry` (of `hash`) in the first empty slot of its probe sequence. Under the
    /// registry's lock (the only writer), with room left (at most half full); readers may be
    /// probing the table meanwhile.
    fn insert(&self, hash: u64, entry: Entry) {
        let mask = self.slots.len() - 1;
        let mut i = hash as usize & mask;
        while self.slots[i].hash.load(Ordering::Relaxed) != 0 {
            i = (i + 1) & mask;
        }
        // Relaxed, then release: a reader that sees the hash sees the pointer and the entry.
        self.slots[i]
            .entry
            .store(entry.0.as_ptr().cast_mut(), Ordering::Relaxed);
        self.slots[i].hash.store(hash, Ordering::Release);
    }
}

/// The id of `name`, found in the current table without a lock.
#[inline]
fn find_name(hash: u64, name: &str) -> Option<ClassId> {
    // Acquire: pairs with the release store that published the table, so its slots are seen
    // as filled before it was published.
    let table = TABLE.load(Ordering::Acquire);
    // SAFETY: published tables are kept in `Registry::tables` and never freed.
    unsafe { table.as_ref() }?.find(hash, name)
}

impl Registry {
    fn new() -> Registry {
        let mut r = Registry {
            names: Vec::new(),
            by_type: HashMap::new(),
            tables: Vec::new(),
            table_len: 0,
        };
        r.id_of_name(UNTRACKED_CLASS);
        r.id_of_name(OVERHEAD_CLASS);
        debug_assert_eq!(r.names.len(), ClassId::FIRST_USER.index());
        r
    }

    fn id_of_name(&mut self, name: &str) -> ClassId {
        let hash = hash_of(name);
        if let Some(id) = find_name(hash, name) {
            return id;
        }
        if self.names.len() >= ClassId::LIMIT as usize {
            // Counters hold 2^24 classes; beyond that, new names share the untracked class.
            return ClassId::UNTRACKED;
        }
        let id = ClassId(self.names.len() as u32);
        let entry = Entry::new(id, name);
        self.names.push(Arc::from(name));
        let full = self
            .tables
            .last()
            .is_none_or(|t| (self.table_len + 1) * 2 > t.slots.len());
        if full {
            let slots = self.tables.last().map_or(64, |t| t.slots.len() * 2);
            let table = Box::new(NameTable::with_slots(slots));
            if let Some(old) = self.tables.last() {
                for slot in old.slots.iter() {
                    let h = slot.hash.load(Ordering::Relaxed);
                    let e = slot.entry.load(Ordering::Relaxed);
                    if !e.is_null() {
                        // SAFETY: entries are leaked when made and never freed.
                        table.insert(h, unsafe { Entry::from_ptr(e) });
                    }
                }
            }
            table.insert(hash, entry);
            // Release: publishes the filled table (see `find_name`).
            TABLE.store(std::ptr::from_ref(&*table).cast_mut(), Ordering::Release);
            self.tables.push(table);
        } else if let Some(table) = self.tables.last() {
            table.insert(hash, entry);
        }
        self.table_len += 1;
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

/// The class id of the class named `name`, registering it on first use. A known name is
/// found without a lock.
///
/// Call it under an [`OverheadGuard`]: a miss allocates.
#[inline]
pub(crate) fn id_of_name(name: &str) -> ClassId {
    let hash = hash_of(name);
    match find_name(hash, name) {
        Some(id) => id,
        None => id_of_name_slow(name),
    }
}

/// The class id of the class named `name` if it is registered (without registering it, and
/// without a lock).
pub(crate) fn find(name: &str) -> Option<ClassId> {
    find_name(hash_of(name), name)
}

#[cold]
#[inline(never)]
fn id_of_name_slow(name: &str) -> ClassId {
    REGISTRY.lock().id_of_name(name)
}

/// The names of the classes `first..first + n`, appended to `out`, fewer where the registry
/// ends. The registry's lock is held for these only, so a reader of many classes holds it a
/// window at a time.
pub(crate) fn names_from(first: usize, n: usize, out: &mut Vec<Arc<str>>) {
    let _g = OverheadGuard::new();
    let r = REGISTRY.lock();
    let end = first.saturating_add(n).min(r.names.len());
    if first < end {
        out.extend_from_slice(&r.names[first..end]);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Threads registering names while others look them up, across several growths of the
    /// table: every thread gets the same id for a name, distinct names get distinct ids, and
    /// each id names its name.
    #[test]
    fn names_are_found_without_a_lock_while_the_table_grows() {
        const THREADS: usize = if cfg!(miri) { 3 } else { 8 };
        const NAMES: usize = if cfg!(miri) { 150 } else { 5_000 };
        let _g = OverheadGuard::new();
        let ids: Vec<Vec<ClassId>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..THREADS)
                .map(|t| {
                    s.spawn(move || {
                        let _g = OverheadGuard::new();
                        // Each thread in its own order, so that registrations and lookups of
                        // one name meet.
                        (0..NAMES)
                            .map(|i| {
                                let i = (i * 7 + t * 911) % NAMES;
                                (i, id_of_name(&format!("registry test {i}")))
                            })
                            .fold(vec![ClassId::UNTRACKED; NAMES], |mut v, (i, id)| {
                                v[i] = id;
                                v
                            })
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for other in &ids[1..] {
            assert_eq!(other, &ids[0]);
        }
        let mut seen: Vec<ClassId> = ids[0].clone();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), NAMES);
        for (i, &id) in ids[0].iter().enumerate() {
            assert!(id >= ClassId::FIRST_USER);
            assert_eq!(&*name_of(id).unwrap(), format!("registry test {i}"));
            assert_eq!(id_of_name(&format!("registry test {i}")), id);
        }
        assert_eq!(id_of_name(UNTRACKED_CLASS), ClassId::UNTRACKED);
        assert_eq!(id_of_name(OVERHEAD_CLASS), ClassId::OVERHEAD);
    }
}
