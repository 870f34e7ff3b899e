//! Object ids: the second half of a block's tag, naming the tracked instance it belongs to.
//!
//! Ids are shared by all trackers. An id is reused once its object is dead and none of the
//! blocks tagged with it is live any more (so no later free can be credited to the new owner);
//! its counters in the shim are set back to zero before it is handed out again.
//!
//! Handing out an id and giving one back never wait for a lock (a thread building or dropping
//! a tracked instance must not wait for a snapshot): a dead object's id goes to the mailbox
//! [`RELEASED`], which whoever holds the lock of the free ids empties, and an id is taken from
//! the free ids only when their lock is free at that moment, else a fresh one is counted out.

use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::{LazyLock, OnceLock};

use classtrack_shim::{
    read_object, reset_object, ClassCounters, ClassId, OverheadGuard, OBJECT_LIMIT,
};
use hashbrown::HashMap;

use crate::sync::{Lock, Mailbox};
use serde::{Deserialize, Serialize};

/// Ids to hand out again, behind [`IDS`].
struct Ids {
    free: Vec<u32>,
    /// Dead objects some of whose blocks are still live.
    draining: Vec<u32>,
}

static IDS: Lock<Ids> = Lock::new(Ids {
    free: Vec::new(),
    draining: Vec::new(),
});

/// The next id never handed out.
static NEXT: AtomicU32 = AtomicU32::new(1);

/// Ids of dead objects, not yet sorted into [`Ids`].
static RELEASED: Mailbox<u32> = Mailbox::new();

/// Sorts the released ids into free and draining; then moves the draining ones whose blocks
/// are all gone to the free ones when `sweep`.
fn absorb(ids: &mut Ids, sweep: bool) {
    RELEASED.take_all(|id| match read_object(id).live_blocks() {
        0 => free(ids, id),
        _ => ids.draining.push(id),
    });
    if sweep {
        let mut i = 0;
        while i < ids.draining.len() {
            let id = ids.draining[i];
            if read_object(id).live_blocks() == 0 {
                ids.draining.swap_remove(i);
                free(ids, id);
            } else {
                i += 1;
            }
        }
    }
}

/// `id` is dead and none of its blocks is live: nothing counts against it any more.
fn free(ids: &mut Ids, id: u32) {
    reset_object(id);
    ids.free.push(id);
}

/// A fresh object id, or 0 when all 2^24 ids are taken by live objects (the instance is then
/// counted in its class but has no size of its own). Never waits, unless every id has been
/// handed out.
pub(crate) fn acquire() -> u32 {
    let _g = OverheadGuard::new();
    if let Some(mut ids) = IDS.try_lock() {
        absorb(&mut ids, false);
        if let Some(id) = ids.free.pop() {
            return id;
        }
    }
    // Relaxed: ids only need to be unique, which the read-modify-write gives.
    let fresh = NEXT.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
        (n < OBJECT_LIMIT).then_some(n + 1)
    });
    if let Ok(id) = fresh {
        return id;
    }
    // Every id has been handed out: wait for the lock and look for one whose object is gone.
    let mut ids = IDS.lock();
    absorb(&mut ids, true);
    ids.free.pop().unwrap_or(0)
}

/// Everything allocated and freed under `id` since it was handed out.
pub(crate) fn counters(id: u32) -> ClassCounters {
    read_object(id)
}

/// The object `id` is dead: its id is reused once none of its blocks is live.
fn release(id: u32) {
    if id != 0 {
        let _g = OverheadGuard::new();
        RELEASED.push(id);
    }
}

/// Reuses the ids of dead objects whose blocks are all gone now.
pub(crate) fn sweep() {
    let _g = OverheadGuard::new();
    absorb(&mut IDS.lock(), true);
}

// ---- Breakdown of an instance by nested scopes (its class's `resolution_level`) ----------
//
// An instance tracked with a resolution level N > 0 gets, for each class scope entered inside
// its own, a child node: an object id of its own, so the blocks allocated there are counted
// apart. Children get level N - 1, so the tree is N deep. The instance's size is the sum over
// its tree. A nested *tracked instance* is never a node: it has its own object id and is
// charged to itself, not to its parent.

/// Per object id: the levels of breakdown left below it (the low 7 bits) and whether it has
/// nodes of a breakdown ([`HAS_CHILDREN`]), in pages of 65,536 created on first use.
static LEVELS: [OnceLock<Box<[AtomicU8]>>; 256] = [const { OnceLock::new() }; 256];

/// The bit of [`LEVELS`] set once an object has a node of a breakdown.
const HAS_CHILDREN: u8 = 0x80;

/// The deepest breakdown kept.
const MAX_LEVELS: u32 = (HAS_CHILDREN - 1) as u32;

fn level_entry(id: u32) -> Option<&'static AtomicU8> {
    LEVELS[(id >> 16) as usize & 255]
        .get()
        .map(|page| &page[(id & 0xffff) as usize])
}

fn levels(id: u32) -> u8 {
    // Relaxed: set before the id is handed to the thread that enters its scopes.
    level_entry(id).map_or(0, |e| e.load(Ordering::Relaxed) & !HAS_CHILDREN)
}

/// Whether `id` has nodes of a breakdown (set when its first node is made).
fn has_children(id: u32) -> bool {
    // Acquire: pairs with the release in `nested_slow`; a snapshot that sees the bit finds the
    // node in `CHILDREN`. One that misses a node made at that very moment measures the
    // instance without it, as if it had looked an instant earlier.
    level_entry(id).is_some_and(|e| e.load(Ordering::Acquire) & HAS_CHILDREN != 0)
}

/// Sets how many levels of breakdown `id` gets below it, keeping whether it has nodes.
pub(crate) fn set_levels(id: u32, n: u32) {
    if id == 0 || (n == 0 && LEVELS[(id >> 16) as usize & 255].get().is_none()) {
        return;
    }
    let _g = OverheadGuard::new();
    let page = LEVELS[(id >> 16) as usize & 255]
        .get_or_init(|| (0..1 << 16).map(|_| AtomicU8::new(0)).collect());
    let n = n.min(MAX_LEVELS) as u8;
    // Relaxed: see `levels`; a read-modify-write, so that a node made at the same time keeps
    // its bit.
    let _ = page[(id & 0xffff) as usize].fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
        Some(v & HAS_CHILDREN | n)
    });
}

/// Forgets the levels and nodes of a dead object's id.
fn clear_levels(id: u32) {
    if let Some(e) = level_entry(id) {
        // Relaxed: the object is dead; its id is handed out again only through `RELEASED`
        // and the lock of the free ids, which order this store before the next owner's use.
        e.store(0, Ordering::Relaxed);
    }
}

/// The children of one node: (class of the nested scope, child id).
type Children = Vec<(ClassId, u32)>;

/// Children of each node that has any.
static CHILDREN: LazyLock<Lock<HashMap<u32, Children>>> =
    LazyLock::new(|| Lock::new(HashMap::new()));

/// The locks of the object tables, in the order they are taken (a node's children, then ids),
/// for `fork()` (see `fork.rs`).
pub(crate) fn fork_locks() -> Vec<Box<dyn std::any::Any>> {
    vec![Box::new(CHILDREN.lock()), Box::new(IDS.lock())]
}

/// The object that a scope of `class`, entered inside the scope of object `parent`, charges:
/// `parent` itself, or its child node for `class` when `parent` is broken down further.
#[inline]
pub(crate) fn nested(parent: u32, class: ClassId) -> u32 {
    if parent == 0 {
        return 0;
    }
    match levels(parent) {
        0 => parent,
        n => nested_slow(parent, class, n),
    }
}

#[cold]
fn nested_slow(parent: u32, class: ClassId, levels: u8) -> u32 {
    let _g = OverheadGuard::new();
    let mut children = CHILDREN.lock();
    if let Some(&(_, child)) = children
        .get(&parent)
        .and_then(|c| c.iter().find(|(k, _)| *k == class))
    {
        return child;
    }
    let child = acquire();
    if child == 0 {
        return parent;
    }
    set_levels(child, u32::from(levels) - 1);
    children.entry(parent).or_default().push((class, child));
    if let Some(e) = level_entry(parent) {
        // Release: see `has_children`.
        e.fetch_or(HAS_CHILDREN, Ordering::Release);
    }
    child
}

/// One node of an instance's breakdown: the bytes live in a nested scope, and below it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Referent {
    /// The nested scope's class name.
    pub name: String,
    /// Live bytes allocated in that scope (and the scopes nested in it) for this instance.
    pub bytes: u64,
    /// The breakdown one level further down.
    pub children: Vec<Referent>,
}

/// The live bytes of `root`'s whole tree, and the breakdown of its children.
pub(crate) fn tree(root: u32) -> (u64, Vec<Referent>) {
    let _g = OverheadGuard::new();
    let children = CHILDREN.lock().get(&root).cloned().unwrap_or_default();
    let mut total = counters(root).live_bytes();
    let mut referents = Vec::with_capacity(children.len());
    for (class, child) in children {
        let (bytes, below) = tree(child);
        total += bytes;
        referents.push(Referent {
            name: crate::registry::name_of(class).map_or_else(String::new, |n| n.to_string()),
            bytes,
            children: below,
        });
    }
    referents.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.name.cmp(&b.name)));
    (total, referents)
}

/// The live bytes of `object`, as [`tree`] gives them, or `None` when it has nodes of a
/// breakdown (measure it with [`tree`]). Takes no lock: a snapshot's pass over the instances
/// calls it under the tracker's lock, for many instances in a row.
#[inline]
pub(crate) fn size(object: u32) -> Option<u64> {
    if object == 0 {
        return Some(0);
    }
    if has_children(object) {
        return None;
    }
    Some(counters(object).live_bytes())
}

/// In the child of `fork()`: the threads that were waiting for the object tables' locks do not
/// exist there.
pub(crate) fn forget_waiters() {
    CHILDREN.forget_waiters();
    IDS.forget_waiters();
}

/// The instance whose tree `root` is has died: release every id in the tree.
pub(crate) fn release_tree(root: u32) {
    if root == 0 {
        return;
    }
    let _g = OverheadGuard::new();
    let mut ids = vec![root];
    // Only objects with a breakdown have nodes to look up.
    if has_children(root) {
        let mut children = CHILDREN.lock();
        let mut i = 0;
        while i < ids.len() {
            if let Some(c) = children.remove(&ids[i]) {
                ids.extend(c.into_iter().map(|(_, id)| id));
            }
            i += 1;
        }
    }
    for id in ids {
        clear_levels(id);
        release(id);
    }
}
