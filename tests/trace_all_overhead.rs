//! `trace_every_allocation` books the table of settings it takes (64 KiB at the first call)
//! as classtrack's own memory, not the program's.

use std::alloc::System;

use classtrack::{ClassId, TrackingAlloc};

#[global_allocator]
static ALLOC: TrackingAlloc<System> = TrackingAlloc::new(System);

struct Suspect;

#[test]
fn the_table_of_trace_every_allocation_is_classtrack_overhead() {
    let live = |class: ClassId| classtrack_shim::read_totals(2)[class.index()].live_bytes();
    let (untracked, overhead) = (live(ClassId::UNTRACKED), live(ClassId::OVERHEAD));
    classtrack::trace_every_allocation::<Suspect>(true);
    let (untracked_after, overhead_after) = (live(ClassId::UNTRACKED), live(ClassId::OVERHEAD));
    assert!(
        untracked_after < untracked + (16 << 10),
        "the program's memory grew from {untracked} to {untracked_after} bytes"
    );
    assert!(
        overhead_after >= overhead + (64 << 10),
        "classtrack's own memory went from {overhead} to {overhead_after} bytes"
    );
    classtrack::trace_every_allocation::<Suspect>(false);
}
