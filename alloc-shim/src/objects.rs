//! Per-object counters.
//!
//! A block whose tag names an object (a tracked instance) is also counted against that object,
//! in one global table indexed by object id, written with `fetch_add`: two threads rarely
//! build or grow the same object at once, so these lines are rarely contended. Blocks with no
//! object (the common case) pay one predictable branch.

use crate::shard::{lost, ClassCounters, Event, Shard, Sink};
use crate::ClassId;

/// One past the largest object id the table holds.
pub const OBJECT_LIMIT: u32 = ClassId::LIMIT;

static OBJECTS: Shard = Shard::empty();

/// Counts `event` against `object`, if the block has one.
#[inline(always)]
pub(crate) fn count_object(object: u32, event: Event) {
    if object != 0 {
        // Passed as scalars, so that nothing is spilled to the stack on the common path (an
        // enum of this size would be passed by reference).
        let (kind, a, b) = match event {
            Event::Alloc(n) => (0, n, 0),
            Event::Free(n) => (1, n, 0),
            Event::Resize(old, new) => (2, old, new),
        };
        count_object_slow(object, kind, a, b)
    }
}

#[inline(never)]
fn count_object_slow(object: u32, kind: u8, a: usize, b: usize) {
    let event = match kind {
        0 => Event::Alloc(a),
        1 => Event::Free(a),
        _ => Event::Resize(a, b),
    };
    if object >= OBJECT_LIMIT {
        return lost();
    }
    match OBJECTS.page(ClassId(object)) {
        Some(page) => Sink::Shared(page.counters(ClassId(object))).apply(event),
        None => lost(),
    }
}

/// The counters of `object`: everything ever allocated and freed by blocks tagged with it.
///
/// Ids are reused by classtrack once an object is dead and none of its blocks is live, so a
/// reader subtracts the counters it saw when the id was handed out.
pub fn read_object(object: u32) -> ClassCounters {
    if object == 0 || object >= OBJECT_LIMIT {
        return ClassCounters::default();
    }
    OBJECTS
        .existing_page(ClassId(object))
        .map(|p| p.counters(ClassId(object)).read())
        .unwrap_or_default()
}

/// Sets the counters of `object` back to zero, for an id about to be handed out again.
///
/// Call it only when nothing can count against `object` any more: the object is dead (no
/// thread runs in its scope) and none of its blocks is live (no free or resize of one can
/// come). Then no thread writes these counters, and the stores below cannot lose an update;
/// the new owner's first update happens after this call through whatever handed the id over.
pub fn reset_object(object: u32) {
    if object == 0 || object >= OBJECT_LIMIT {
        return;
    }
    if let Some(page) = OBJECTS.existing_page(ClassId(object)) {
        page.counters(ClassId(object)).reset();
    }
}
