//! Object ids: the second half of a block's tag, naming the tracked instance it belongs to.
//!
//! Ids are shared by all trackers. An id is reused once its object is dead and none of the
//! blocks tagged with it is live any more (so no later free can be credited to the new owner);
//! the shim's counters are monotonic, so a reused id starts from a baseline read when it is
//! handed out.

use std::sync::LazyLock;

use classtrack_shim::{read_object, ClassCounters, OverheadGuard, OBJECT_LIMIT};
use hashbrown::HashMap;
use parking_lot::Mutex;

struct Ids {
    next: u32,
    free: Vec<u32>,
    /// Counters at the time a reused id was handed out.
    base: HashMap<u32, ClassCounters>,
    /// Dead objects some of whose blocks are still live.
    draining: Vec<u32>,
}

static IDS: LazyLock<Mutex<Ids>> = LazyLock::new(|| {
    Mutex::new(Ids {
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
    if let Some(id) = ids.free.pop() {
        let now = read_object(id);
        ids.base.insert(id, now);
        return id;
    }
    if ids.next >= OBJECT_LIMIT {
        sweep_locked(&mut ids);
        return match ids.free.pop() {
            Some(id) => {
                let now = read_object(id);
                ids.base.insert(id, now);
                id
            }
            None => 0,
        };
    }
    let id = ids.next;
    ids.next += 1;
    id
}

/// Everything allocated and freed under `id` since it was handed out.
pub(crate) fn counters(id: u32) -> ClassCounters {
    if id == 0 {
        return ClassCounters::default();
    }
    let now = read_object(id);
    let _g = OverheadGuard::new();
    let ids = IDS.lock();
    delta(now, ids.base.get(&id))
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

/// The object that a scope of `class`, entered inside the scope of object `parent`, charges.
///
/// Without a breakdown this is `parent` itself.
#[inline]
pub(crate) fn nested(parent: u32, class: classtrack_shim::ClassId) -> u32 {
    let _ = class;
    parent
}
