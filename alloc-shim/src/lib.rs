//! The allocation hot path of [classtrack](https://docs.rs/classtrack).
//!
//! This crate holds the part of classtrack that every allocation touches: [`TrackingAlloc`],
//! a wrapping [`GlobalAlloc`](std::alloc::GlobalAlloc) that tags every block with the
//! thread's current [`Tag`] (a class id and an object id) and counts bytes and blocks per
//! class in per-thread counter shards. It is small and changes rarely; users depend on
//! `classtrack`, which re-exports [`TrackingAlloc`] and builds scopes, names and snapshots on
//! top of the primitives here.
//!
//! # Invariants of the hot path
//!
//! On the steady-state path `alloc`, `alloc_zeroed`, `dealloc` and `realloc`:
//! - take no lock, make no allocation and make no system call;
//! - do no atomic read-modify-write: each thread writes only its own counter shard, with a
//!   relaxed load followed by a store; the snapshot reader sums the shards;
//! - find the owner of a block without a lookup: an 8-byte trailer after the user's bytes holds
//!   the block's [`Tag`], so a free (or realloc) on any thread credits the class that allocated
//!   the block;
//! - never panic, and pass the inner allocator's null through with no counter change.
//!
//! The cold paths (the first allocation of a thread, the first use of a class on a thread, a
//! thread that is exiting) are marked `#[cold]` and may do a compare-and-swap or a
//! `fetch_add`; none of them takes a lock or allocates through the global allocator.
//!
//! # Consistency of a read
//!
//! Counters are monotonic (bytes and blocks allocated, bytes and blocks freed). [`read_totals`]
//! reads every *freed* counter with acquire ordering before it reads any *allocated* counter,
//! and frees are published with release stores. So a read that sees a free also sees the
//! allocation it undoes: live figures (allocated − freed) are never negative and never wrap,
//! even while other threads allocate. A read is not a single instant: allocations that happen
//! during the read may or may not be included.
//!
//! # Sampling
//!
//! Allocation sites are sampled (see [`set_sample_mean`]): a Poisson process over allocated
//! bytes decides which blocks are sampled; their stacks and events are sent on bounded channels
//! to one consumer ([`sample_receivers`]). Nothing of it is set up until the first block is
//! sampled: with a mean of 0 from the start no channel is made and the unwind tables are never
//! indexed. An allocation's sample may be dropped when a channel is full (its block is then
//! left unmarked); the free of a sampled block never is: it waits in an overflow list for the
//! consumer ([`take_overflowed_frees`]). A block made by `realloc` is reported with its old
//! size ([`SampleEvent::Realloc`]), so that estimates count only its growth as allocated.
//!
//! # Platforms
//!
//! Accounting (tags, counters, trailers) is the same everywhere; what the sampler does to find
//! a stack differs (see `src/platform/` for the per-platform code):
//!
//! | target | stacks walked by ([`Unwinder::Auto`]) | sampled by default | stack top for walks | fork hooks |
//! |---|---|---|---|---|
//! | Linux x86-64 | the cached DWARF unwinder (gimli), or frame pointers if the build has them | yes | `pthread_getattr_np` | yes |
//! | Linux AArch64 | frame pointers (rustc keeps them there), checked against libgcc's unwinder | yes | `pthread_getattr_np` | yes |
//! | macOS AArch64 | frame pointers (the ABI keeps a frame record in every function) | yes | `pthread_get_stackaddr_np` | yes |
//! | macOS x86-64 | frame pointers (rustc keeps them there), checked against the system libunwind | yes | `pthread_get_stackaddr_np` | yes |
//! | Windows x86-64 (MSVC) | `RtlVirtualUnwind` (the `backtrace` crate) | **no** | `GetCurrentThreadStackLimits` | none (no `fork`) |
//!
//! "Checked against" means the check made when sampling starts ([`frame_pointers_detected`]):
//! a walk is used only if it agrees with the DWARF unwinder on the same stack, else every
//! stack goes to the DWARF unwinder. The platform unwinders (libgcc's, libunwind's) take a
//! lock of their own and may call the C library's `malloc` on their first use, never this
//! allocator; the sampler warms them up once, outside any sample.
//!
//! On Windows, sampling is off until the program turns it on ([`set_sample_mean`], or tracing
//! a class entirely): the unwinder's `RtlLookupFunctionEntry` takes the loader's lock on its
//! function tables (shared; `LoadLibrary`/`FreeLibrary` hold it exclusively), so a sample can
//! wait for a library being loaded on another thread. It does not use `dbghelp` (which locks
//! and allocates), and it allocates nothing.
//!
//! # Fork
//!
//! [`before_fork`], [`after_fork_in_parent`] and [`after_fork_in_child`] are for classtrack's
//! `pthread_atfork` handlers (on Unix; Windows has no `fork`): they keep senders off the sample channels across the fork, and
//! in the child forget the parent's consumer thread and anything vanished threads held.
//!
//! # Miri
//!
//! The unit tests and `tests/miri_workload.rs` run under Miri with Tree Borrows
//! (`.ci/miri`). Under Miri the unwinders are compiled out (they read the program's unwind
//! tables and raw stack words, which Miri does not model), sampling starts off, and a sample's
//! stack is empty.
//!
//! `dealloc` and `realloc` read the block's trailer through the pointer the user hands back,
//! past the `layout.size()` bytes that the user's reference covered. This is sound under the
//! allocator contract: the allocator owns the whole block it handed out (`size + 8` bytes from
//! the inner allocator), exactly as an allocator owns a header before the user's bytes, and
//! the pointer it receives back has the provenance of that whole block (the inner allocator's
//! pointer, returned unchanged). Stacked Borrows reports the read anyway, because it retags
//! the pointer at each function boundary to the user's `layout.size()` bytes; Tree Borrows,
//! which models the allocator's ownership of the rest, accepts it, and is what CI checks.
#![deny(missing_docs, unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod cached;
mod local;
mod measure;
mod objects;
mod peak;
mod platform;
mod sampling;
mod shard;
mod tracking;
mod unwind;

pub use local::{
    current_measurement, current_tag, exclude_thread_from_sampling, replace_tag, set_measurement,
    thread_owns_shard, OverheadGuard,
};
pub use measure::{
    begin_measurement, end_measurement, MeasuredCounts, MeasuredTotals, MEASURED_CLASSES,
    MEASUREMENT_SLOTS,
};
pub use objects::{read_object, reset_object, OBJECT_LIMIT};
pub use peak::{
    peak_checks, set_class_level, set_peak_waker, user_heap_estimate, watch_peak, PEAK_GRANULARITY,
};
pub use sampling::{
    after_fork_in_child, after_fork_in_parent, before_fork, frees_lost, note_overflow_applied,
    note_received, sample_counts, sample_mean, sample_receivers, samples_received,
    sampling_enabled, sampling_started, set_sample_consumer, set_sample_mean, set_stack_depth,
    set_trace_all, stack_depth, stack_id, take_overflowed_frees, traced_waits, traces_all,
    wait_for_samples, SampleEvent, SampleRecord, StackRecord, CHANNEL_CAPACITY,
    DEFAULT_SAMPLE_MEAN, MAX_STACK_DEPTH, STACK_CHANNEL_CAPACITY,
};
pub use shard::{
    read_live_bytes, read_totals, read_totals_from, shim_stats, ClassCounters, ShimStats,
    SHARD_PAGE_LIMIT,
};
pub use tracking::TrackingAlloc;
pub use unwind::{
    cached_dwarf_enabled, cached_dwarf_fallbacks, frame_pointers_detected, set_unwinder, unwinder,
    Unwinder,
};

/// This crate's directory as its debug info records its sources (`SOURCE_DIR/src/...`): the
/// root crate tells this crate's inlined frames by it.
#[doc(hidden)]
pub const SOURCE_DIR: &str = env!("CARGO_MANIFEST_DIR");

/// In a tag word: every allocation of the class is sampled (the thread-local tag only).
pub(crate) const TRACE_ALL_BIT: u64 = 1 << 24;
/// In a block's tag word: the block was sampled, so its resize and free are reported.
pub(crate) const SAMPLED_BIT: u64 = 1 << 25;

/// Bytes of metadata stored in each tracked block, after the user's bytes.
///
/// This is what classtrack adds to every block; it is reported as overhead, never as a
/// class's live bytes.
pub const METADATA_BYTES_PER_BLOCK: usize = tracking::TRAILER;

/// The identity of a class: a small integer handed out by classtrack's registry.
///
/// Ids below [`ClassId::FIRST_USER`] are reserved. Ids at or above [`ClassId::LIMIT`] are
/// never handed out; should one reach the allocator it is counted as
/// [`ClassId::UNTRACKED`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClassId(pub u32);

impl ClassId {
    /// Memory allocated outside any class scope.
    pub const UNTRACKED: ClassId = ClassId(0);
    /// Memory allocated by classtrack itself (its maps, names and snapshots).
    pub const OVERHEAD: ClassId = ClassId(1);
    /// The first id that names a user class.
    pub const FIRST_USER: ClassId = ClassId(2);
    /// One past the largest class id the counters can hold (2^24, about 16.7 million classes).
    pub const LIMIT: u32 = 1 << 24;

    /// The id as an index into per-class tables.
    #[inline]
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// The owner of an allocation: the class scope and the tracked object (0 for none) that were
/// current on the allocating thread.
///
/// A tag travels in its block, so the block's bytes are credited to the same owner when the
/// block is resized or freed, on any thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tag {
    /// The class the block is charged to.
    pub class: ClassId,
    /// The tracked object the block is charged to, or 0 for none.
    pub object: u32,
}

impl Tag {
    /// Allocations outside any scope.
    pub const UNTRACKED: Tag = Tag::class(ClassId::UNTRACKED);
    /// classtrack's own allocations.
    pub const OVERHEAD: Tag = Tag::class(ClassId::OVERHEAD);

    /// A tag for `class` with no object.
    #[inline]
    pub const fn class(class: ClassId) -> Tag {
        Tag { class, object: 0 }
    }

    /// Packs the tag into the 64-bit word stored in a block's trailer.
    #[inline]
    pub(crate) const fn to_bits(self) -> u64 {
        (self.class.0 as u64) | ((self.object as u64) << 32)
    }

    /// Unpacks a trailer word. Class bits at or above [`ClassId::LIMIT`] are reserved for
    /// flags and ignored here.
    #[inline]
    pub(crate) const fn from_bits(bits: u64) -> Tag {
        Tag {
            class: ClassId((bits as u32) & (ClassId::LIMIT - 1)),
            object: (bits >> 32) as u32,
        }
    }
}
