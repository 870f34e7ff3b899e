//! Object ids: the second half of a block's tag, naming the tracked instance it belongs to.
//!
//! Ids are shared by all trackers. An id is reused once its object is dead and none of the
//! blocks tagged with it is live any more (so no later free can be credited to the new owner);
//! the shim's counters are monotonic, so a reused id starts from a baseline read when it is
//! handed out.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{LazyLock, OnceLock};

use classtrack_shim::{read_object, ClassCounters, ClassId, OverheadGuard, OBJECT_LIMIT};
use hashbrown::HashMap;

use crate::sync::Lock;
use serde::{Deserialize, Serialize};

struct Ids {
    next: u32,
    free: Vec<u32>,
    /// Counters at the time a reused id was handed out.
    base: HashMap<u32, ClassCounters>,
    /// Dead objects some of whose blocks are still live.
    draining: Vec<u32>,
}

static IDS: LazyLock<Lock<Ids>> = LazyLock::new(|| {
    Lock::new(Ids {
        next: 1,
        free: Vec::new(),
        base: HashMap::new(),
        draining: Vec::new(),
    })
});

fn delta(now: ClassCounters, base: Option<&ClassCounters>) -> ClassCounters {
    let b = base.copied().unwrap_or_default();
    let mut d = ClassCounters::default();
    d.allocated_bytes = now.allocated_bytes - b.allocated_bytes;
    d.allocations = now.allocations - b.allocations;
    d.freed_bytes = now.freed_bytes - b.freed_bytes;
    d.frees = now.frees - b.frees;
    d
}

/// A fresh object id, or 0 when all 2^24 ids are taken by live objects (the instance is then
/// counted in its class but has no size of its own).
pub(crate) fn acquire() -> u32 {
    let _g = OverheadGuard::new();
    let mut ids = IDS.lock();
    if ids.free.is_empty() && ids.next < OBJECT_LIMIT {
        let id = ids.next;
        ids.next += 1;
        return id;
    }
    if ids.free.is_empty() {
        sweep_locked(&mut ids);
    }
    let Some(id) = ids.free.pop() else {
        return 0;
    };
    let now = read_object(id);
    ids.base.insert(id, now);
    id
}

/// Everything allocated and freed under `id` since it was handed out.
pub(crate) fn counters(id: u32) -> ClassCounters {
    if id == 0 {
        return ClassCounters::default();
    }
    let _g = OverheadGuard::new();
    let ids = IDS.lock();
    // Read under the lock: the id cannot be handed out again (with a newer baseline) between
    // this read and the baseline's, so the counters are never behind their baseline.
    delta(read_object(id), ids.base.get(&id))
}

/// The object `id` is dead: its id is reused once none of its blocks is live.
pub(crate) fn release(id: u32) {
    if id == 0 {
        return;
    }
    let _g = OverheadGuard::new();
    let mut ids = IDS.lock();
    let live = delta(read_object(id), ids.base.get(&id)).live_blocks();
    if live == 0 {
        ids.free.push(id);
    } else {
        ids.draining.push(id);
    }
}

/// Reuses the ids of dead objects whose blocks are all gone now.
pub(crate) fn sweep() {
    let _g = OverheadGuard::new();
    sweep_locked(&mut IDS.lock());
}

fn sweep_locked(ids: &mut Ids) {
    let mut i = 0;
    while i < ids.draining.len() {
        let id = ids.draining[i];
        if delta(read_object(id), ids.base.get(&id)).live_blocks() == 0 {
            ids.draining.swap_remove(i);
            ids.free.push(id);
        } else {
            i += 1;
        }
    }
}

// ---- Breakdown of an instance by nested scopes (its class's `resolution_level`) ----------
//
// An instance tracked with a resolution level N > 0 gets, for each class scope entered inside
// its own, a child node: an object id of its own, so the blocks allocated there are counted
// apart. Children get level N - 1, so the tree is N deep. The instance's size is the sum over
// its tree. A nested *tracked instance* is never a node: it has its own object id and is
// charged to itself, not to its parent.

/// Levels of breakdown left below each object id, in pages of 65,536 created on first use.
static LEVELS: [OnceLock<Box<[AtomicU8]>>; 256] = [const { OnceLock::new() }; 256];

fn levels(id: u32) -> u8 {
    LEVELS[(id >> 16) as usize & 255]
        .get()
        // Relaxed: set before the id is handed to the thread that enters its scopes.
        .map_or(0, |page| {
            page[(id & 0xffff) as usize].load(Ordering::Relaxed)
        })
}

pub(crate) fn set_levels(id: u32, n: u32) {
    if id == 0 || (n == 0 && LEVELS[(id >> 16) as usize & 255].get().is_none()) {
        return;
    }
    let _g = OverheadGuard::new();
    let page = LEVELS[(id >> 16) as usize & 255]
        .get_or_init(|| (0..1 << 16).map(|_| AtomicU8::new(0)).collect());
    // Relaxed: see `levels`.
    page[(id & 0xffff) as usize].store(n.min(u8::MAX as u32) as u8, Ordering::Relaxed);
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

/// Sizes of many objects read under one hold of the object tables' locks: a batch of a
/// snapshot. Holding it keeps [`acquire`], [`release`] and the first entry of a nested scope
/// inside a broken-down instance waiting, so a batch is kept short, and [`let_waiters_in`] is
/// called between batches.
///
/// Lock order: a tracker's state, then these (as everywhere, and as the fork handlers take
/// them).
pub(crate) struct Sizer {
    children: std::sync::MutexGuard<'static, HashMap<u32, Children>>,
    ids: std::sync::MutexGuard<'static, Ids>,
}

impl Sizer {
    /// Takes the object tables' locks.
    pub(crate) fn new() -> Sizer {
        let children = CHILDREN.lock();
        Sizer {
            children,
            ids: IDS.lock(),
        }
    }

    /// The live bytes of `object`, as [`tree`] gives them, or `None` when it has nodes of a
    /// breakdown (measure it with [`tree`], with no lock held: naming the nodes takes the
    /// class registry's lock, which comes before these).
    #[inline]
    pub(crate) fn size(&self, object: u32) -> Option<u64> {
        if object == 0 {
            return Some(0);
        }
        // Most programs have no breakdown and no reused id: skip the lookups then.
        if !self.children.is_empty() && self.children.contains_key(&object) {
            return None;
        }
        // Read under the lock of the ids, as in `counters`.
        let base = match self.ids.base.is_empty() {
            true => None,
            false => self.ids.base.get(&object),
        };
        Some(delta(read_object(object), base).live_bytes())
    }
}

/// Between batches of a snapshot, with no [`Sizer`] held: lets the threads waiting for the
/// object tables' locks have them first.
pub(crate) fn let_waiters_in() {
    CHILDREN.let_waiters_in();
    IDS.let_waiters_in();
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
    {
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
        set_levels(id, 0);
        release(id);
    }
}
