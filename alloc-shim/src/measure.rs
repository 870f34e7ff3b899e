//! Measurements: exact figures for what a piece of code allocates (classtrack's
//! `testing::measure`), apart from every other thread's allocations.
//!
//! A measurement holds one of [`MEASUREMENT_SLOTS`] slots. While a thread works for it (its
//! *measurement id*, set with [`set_measurement`], is the slot's number), every allocation it
//! makes takes the slow path, is counted in the slot (bytes and blocks allocated, live bytes and
//! their peak, and the same per class in a small table) and carries the id in its tag word
//! ([`MEASURE_SHIFT`]: the six bits above the sampled bit), so that its resize and its free, on
//! any thread, are counted in the same slot. Counting in a slot is a `fetch_add` on lines the
//! measuring threads share: a measured thread pays for it, no other thread does (a block of a
//! measurement freed elsewhere takes that thread's slow path, as any block of another class
//! does).
//!
//! The peak is exact: live bytes change by atomic additions, each followed by a `fetch_max` of
//! the peak with the value that addition made, so the peak is the largest value the sequence of
//! additions went through.
//!
//! A slot is handed out again only once its measurement ended and every block it counted was
//! freed: a block that outlives its measurement (a leak, or the measured closure's result) still
//! counts its free there, never in a later measurement.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicU8, Ordering};

use crate::shard::Event;
use crate::ClassId;

/// Where a block's measurement id sits in its tag word.
pub(crate) const MEASURE_SHIFT: u32 = 26;
/// The bits of a block's tag word that hold its measurement id.
pub(crate) const MEASURE_MASK: u64 = 0x3f << MEASURE_SHIFT;

/// How many measurements can be under way, or have blocks live, at once.
pub const MEASUREMENT_SLOTS: usize = 63;
/// Classes counted one by one in a measurement; the others are summed.
pub const MEASURED_CLASSES: usize = 256;

/// A slot's states.
const FREE: u8 = 0;
const MEASURING: u8 = 1;
/// Ended, with blocks still live.
const ENDED: u8 = 2;
/// A class table entry not taken.
const EMPTY: u32 = u32::MAX;

#[derive(Default)]
struct Counts {
    alloc_bytes: AtomicU64,
    allocs: AtomicU64,
    freed_bytes: AtomicU64,
    frees: AtomicU64,
}

impl Counts {
    fn apply(&self, event: Event) {
        // Relaxed: the figures are read by the measurement's owner after the measured code
        // returned and handed its work back (a join, a channel), which orders them.
        match event {
            Event::Alloc(n) => {
                self.alloc_bytes.fetch_add(n as u64, Ordering::Relaxed);
                self.allocs.fetch_add(1, Ordering::Relaxed);
            }
            Event::Free(n) => {
                self.freed_bytes.fetch_add(n as u64, Ordering::Relaxed);
                self.frees.fetch_add(1, Ordering::Relaxed);
            }
            Event::Resize(old, new) if new >= old => {
                self.alloc_bytes
                    .fetch_add((new - old) as u64, Ordering::Relaxed);
            }
            Event::Resize(old, new) => {
                self.freed_bytes
                    .fetch_add((old - new) as u64, Ordering::Relaxed);
            }
        }
    }

    fn read(&self) -> MeasuredCounts {
        // Relaxed: see `apply`.
        MeasuredCounts {
            allocated_bytes: self.alloc_bytes.load(Ordering::Relaxed),
            allocations: self.allocs.load(Ordering::Relaxed),
            freed_bytes: self.freed_bytes.load(Ordering::Relaxed),
            frees: self.frees.load(Ordering::Relaxed),
        }
    }

    fn reset(&self) {
        for c in [
            &self.alloc_bytes,
            &self.allocs,
            &self.freed_bytes,
            &self.frees,
        ] {
            // Relaxed: the slot is not in use; whoever uses it next acquires it first.
            c.store(0, Ordering::Relaxed);
        }
    }
}

struct Entry {
    class: AtomicU32,
    counts: Counts,
}

type Table = [Entry; MEASURED_CLASSES];

struct Slot {
    state: AtomicU8,
    total: Counts,
    live_bytes: AtomicU64,
    live_blocks: AtomicU64,
    peak_bytes: AtomicU64,
    /// Classes past the table's room.
    other: Counts,
    /// Taken from `System` the first time the slot is used, kept for its next uses.
    classes: AtomicPtr<Table>,
}

static SLOTS: [Slot; MEASUREMENT_SLOTS] = [const {
    Slot {
        state: AtomicU8::new(FREE),
        total: Counts {
            alloc_bytes: AtomicU64::new(0),
            allocs: AtomicU64::new(0),
            freed_bytes: AtomicU64::new(0),
            frees: AtomicU64::new(0),
        },
        live_bytes: AtomicU64::new(0),
        live_blocks: AtomicU64::new(0),
        peak_bytes: AtomicU64::new(0),
        other: Counts {
            alloc_bytes: AtomicU64::new(0),
            allocs: AtomicU64::new(0),
            freed_bytes: AtomicU64::new(0),
            frees: AtomicU64::new(0),
        },
        classes: AtomicPtr::new(std::ptr::null_mut()),
    }
}; MEASUREMENT_SLOTS];

/// A measurement's figures for one class, or for all: bytes and blocks allocated and freed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MeasuredCounts {
    /// Bytes allocated (new blocks and realloc growth).
    pub allocated_bytes: u64,
    /// Blocks allocated.
    pub allocations: u64,
    /// Bytes freed (freed blocks and realloc shrinkage).
    pub freed_bytes: u64,
    /// Blocks freed.
    pub frees: u64,
}

/// What a measurement counted ([`end_measurement`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MeasuredTotals {
    /// Every class together.
    pub total: MeasuredCounts,
    /// The largest live bytes the measurement's blocks reached at once.
    pub peak_bytes: u64,
    /// Per class, for the first [`MEASURED_CLASSES`] classes it saw.
    pub classes: Vec<(ClassId, MeasuredCounts)>,
    /// The classes past those, summed.
    pub other: MeasuredCounts,
}

fn slot(id: u8) -> Option<&'static Slot> {
    SLOTS.get((id as usize).checked_sub(1)?)
}

/// Takes a free slot for a new measurement and returns its id (1 to [`MEASUREMENT_SLOTS`]),
/// or `None` when every slot is in use (measurements under way, or ended with blocks live).
/// Off the allocation path: it may take a class table from the system allocator.
pub fn begin_measurement() -> Option<u8> {
    for (i, s) in SLOTS.iter().enumerate() {
        // Acquire: everything the slot's last use did (its last free) happened before.
        if s.state
            .compare_exchange(FREE, MEASURING, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            continue;
        }
        s.total.reset();
        s.other.reset();
        for c in [&s.live_bytes, &s.live_blocks, &s.peak_bytes] {
            // Relaxed: nothing counts in the slot until its id is handed to a thread.
            c.store(0, Ordering::Relaxed);
        }
        // Acquire: the table's initialisation, if another use installed it.
        let mut table = s.classes.load(Ordering::Acquire);
        if table.is_null() {
            let layout = Layout::new::<Table>();
            // SAFETY: a non-zero size.
            table = unsafe { System.alloc(layout) }.cast::<Table>();
            if !table.is_null() {
                for k in 0..MEASURED_CLASSES {
                    // SAFETY: `table` is a fresh block of MEASURED_CLASSES entries; each is
                    // written once, before the table is published below.
                    unsafe {
                        table.cast::<Entry>().add(k).write(Entry {
                            class: AtomicU32::new(EMPTY),
                            counts: Counts::default(),
                        })
                    };
                }
                // Release: publishes the initialised table (only this thread holds the slot).
                s.classes.store(table, Ordering::Release);
            }
        }
        // SAFETY: an installed table is never freed.
        if let Some(table) = unsafe { table.as_ref() } {
            for e in table {
                // Relaxed: as above.
                e.class.store(EMPTY, Ordering::Relaxed);
                e.counts.reset();
            }
        }
        return Some(i as u8 + 1);
    }
    None
}

/// Ends measurement `id` and returns its figures. Its blocks still live keep counting their
/// frees there; the slot is free for another measurement once they are all freed.
pub fn end_measurement(id: u8) -> MeasuredTotals {
    let Some(s) = slot(id) else {
        return MeasuredTotals::default();
    };
    let mut totals = MeasuredTotals {
        total: s.total.read(),
        // Relaxed: see `Counts::apply`.
        peak_bytes: s.peak_bytes.load(Ordering::Relaxed),
        classes: Vec::new(),
        other: s.other.read(),
    };
    // Acquire: see `begin_measurement`.
    // SAFETY: an installed table is never freed.
    if let Some(table) = unsafe { s.classes.load(Ordering::Acquire).as_ref() } {
        for e in table {
            // Relaxed: see `Counts::apply`.
            let class = e.class.load(Ordering::Relaxed);
            if class != EMPTY {
                totals.classes.push((ClassId(class), e.counts.read()));
            }
        }
    }
    // Release: the reads above happen before the slot is reused.
    s.state.store(ENDED, Ordering::Release);
    release_if_done(s);
    totals
}

/// Frees `s` for another measurement if it ended and none of its blocks is live.
fn release_if_done(s: &Slot) {
    // Acquire: the frees counted before the last block went pair with the next use.
    if s.live_blocks.load(Ordering::Acquire) == 0 {
        // AcqRel: once, by whichever of the owner and the last free sees both conditions.
        let _ = s
            .state
            .compare_exchange(ENDED, FREE, Ordering::AcqRel, Ordering::Relaxed);
    }
}

/// Counts `event` of a block of `class` in measurement `id`. Cold: measured blocks only.
#[cold]
#[inline(never)]
pub(crate) fn count(id: u8, class: ClassId, event: Event) {
    let Some(s) = slot(id) else {
        return;
    };
    s.total.apply(event);
    // Acquire: see `begin_measurement`.
    // SAFETY: an installed table is never freed.
    let table = unsafe { s.classes.load(Ordering::Acquire).as_ref() };
    match table.and_then(|t| entry(t, class)) {
        Some(e) => e.counts.apply(event),
        None => s.other.apply(event),
    }
    // Relaxed on the figures: see `Counts::apply`. The peak follows each addition.
    match event {
        Event::Alloc(n) => {
            s.live_blocks.fetch_add(1, Ordering::Relaxed);
            let live = s.live_bytes.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
            s.peak_bytes.fetch_max(live, Ordering::Relaxed);
        }
        Event::Resize(old, new) if new >= old => {
            let grown = (new - old) as u64;
            let live = s.live_bytes.fetch_add(grown, Ordering::Relaxed) + grown;
            s.peak_bytes.fetch_max(live, Ordering::Relaxed);
        }
        Event::Resize(old, new) => {
            s.live_bytes
                .fetch_sub((old - new) as u64, Ordering::Relaxed);
        }
        Event::Free(n) => {
            s.live_bytes.fetch_sub(n as u64, Ordering::Relaxed);
            // Release: the counts above happen before the slot is freed for reuse.
            if s.live_blocks.fetch_sub(1, Ordering::Release) == 1 {
                release_if_done(s);
            }
        }
    }
}

/// The table entry of `class`, taken if new; `None` when the table is full.
fn entry(table: &Table, class: ClassId) -> Option<&Entry> {
    let start = (class.0 as usize).wrapping_mul(0x9e37_79b9) % MEASURED_CLASSES;
    for k in 0..MEASURED_CLASSES {
        let e = &table[(start + k) % MEASURED_CLASSES];
        // Relaxed: the entry's class is the only thing decided here; its counts are read
        // after the measurement, ordered as in `Counts::apply`.
        match e.class.load(Ordering::Relaxed) {
            c if c == class.0 => return Some(e),
            EMPTY => {
                match e
                    .class
                    .compare_exchange(EMPTY, class.0, Ordering::Relaxed, Ordering::Relaxed)
                {
                    Ok(_) => return Some(e),
                    Err(c) if c == class.0 => return Some(e),
                    Err(_) => continue,
                }
            }
            _ => continue,
        }
    }
    None
}

/// The measurement id in a block's tag word (0 for none).
#[inline(always)]
pub(crate) fn id_of(bits: u64) -> u8 {
    ((bits & MEASURE_MASK) >> MEASURE_SHIFT) as u8
}
