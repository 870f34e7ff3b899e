//! Sampling allocation sites: which stacks allocate each class's memory.
//!
//! Each thread counts down the bytes it allocates; the countdown is redrawn from an
//! exponential distribution of mean [`sample_mean`] bytes, so sample points form a Poisson
//! process over allocated bytes (as in jemalloc, tcmalloc and Go): a block of `Z` bytes is
//! sampled with probability `1 - e^(-Z/R)`, large blocks almost always, small ones at the right
//! rate. Blocks of classes set to be traced entirely ([`set_trace_all`]) are all sampled.
//!
//! A sampled block is marked in its tag, so its free is reported too. A `realloc` is, to the
//! sampler, the free of the old block and the allocation of the new one: the new size counts
//! down and may be sampled afresh (with the realloc's stack), so every live block is sampled
//! with the chance its current size gives it and the estimates stay unbiased. The stack
//! is captured as raw return addresses (no symbols) into a fixed array, without allocating or
//! locking. A sample travels as a small [`SampleRecord`] naming its stack by a 64-bit hash;
//! the stack itself (a [`StackRecord`]) is sent on a second channel only the first time a
//! thread samples it (each thread remembers the last 256 stacks it sent), so the usual sample
//! costs a one-line record, not half a kilobyte of frames. Both channels are bounded crossbeam
//! channels fed with `try_send` to whoever drains [`sample_receivers`]; when one is full the
//! sample is dropped and counted, the allocating thread never waits.
//!
//! The countdown costs the hot path a load, a subtraction, a store and a branch on the
//! thread-local line it already reads; everything else is `#[cold]`.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::OnceLock;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::local::{with_sampler, SamplerState};
use crate::{ClassId, Tag};

/// The default mean distance between samples, in allocated bytes (as jemalloc's and Go's).
pub const DEFAULT_SAMPLE_MEAN: u64 = 512 * 1024;
/// The deepest stack a sample records.
pub const MAX_STACK_DEPTH: usize = 64;
/// Sample records the channel holds before new ones are dropped. A burst of frees of sampled
/// blocks (dropping a large structure) must fit; the buffer's pages become resident only as far
/// as a backlog ever reaches.
pub const CHANNEL_CAPACITY: usize = 8192;
/// Stack records the stack channel holds (new stacks only: far fewer than samples).
pub const STACK_CHANNEL_CAPACITY: usize = 1024;
/// Stacks each thread remembers having sent (a direct-mapped table of their hashes).
const ANNOUNCED_STACKS: usize = 256;
/// While sampling is off, threads look again at the setting every this many bytes.
const RECHECK_BYTES: i64 = 64 << 20;

static MEAN: AtomicU64 = AtomicU64::new(DEFAULT_SAMPLE_MEAN);
static DEPTH: AtomicUsize = AtomicUsize::new(MAX_STACK_DEPTH);
/// Sample records taken off the channel by its consumer (counted by the consumer, once per
/// batch, so that senders share no counter).
static RECEIVED: AtomicU64 = AtomicU64::new(0);
/// Threads that seeded their sample generator (once per thread).
static SEEDS: AtomicU64 = AtomicU64::new(0);
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// The state of the channel: 0 none yet, 1 being made, 2 ready.
static CHANNEL_STATE: AtomicU8 = AtomicU8::new(0);
static CHANNEL: OnceLock<Channels> = OnceLock::new();

/// The sample channel and the stack channel.
struct Channels {
    samples: (Sender<SampleRecord>, Receiver<SampleRecord>),
    stacks: (Sender<StackRecord>, Receiver<StackRecord>),
}

thread_local! {
    /// Hashes of the stacks this thread sent (0: none), by hash modulo the table's size. Used
    /// only inside the sampler, which is never re-entered on a thread.
    static ANNOUNCED: [Cell<u64>; ANNOUNCED_STACKS] =
        const { [const { Cell::new(0) }; ANNOUNCED_STACKS] };
}

/// Sets the mean distance between samples in allocated bytes; 0 turns sampling off. Threads
/// pick the new setting up at their next sample (or within 64 MiB while it was off).
pub fn set_sample_mean(bytes: u64) {
    // Relaxed: a setting; nothing else is published with it.
    MEAN.store(bytes, Ordering::Relaxed);
}

/// The mean distance between samples in allocated bytes (0: off).
pub fn sample_mean() -> u64 {
    // Relaxed: a setting.
    MEAN.load(Ordering::Relaxed)
}

/// Sets how many frames a sample keeps (1 to [`MAX_STACK_DEPTH`]).
pub fn set_stack_depth(frames: usize) {
    // Relaxed: a setting.
    DEPTH.store(frames.clamp(1, MAX_STACK_DEPTH), Ordering::Relaxed);
}

/// How many frames a sample keeps.
pub fn stack_depth() -> usize {
    // Relaxed: a setting.
    DEPTH.load(Ordering::Relaxed)
}

/// Sample records sent (taken by the consumer or waiting in the channel), and records dropped
/// because a channel was full.
pub fn sample_counts() -> (u64, u64) {
    let queued = CHANNEL.get().map_or(0, |c| c.samples.1.len() as u64);
    // Acquire: pairs with the consumer's release in `note_received`.
    let received = RECEIVED.load(Ordering::Acquire);
    // Relaxed: a statistic.
    (received + queued, DROPPED.load(Ordering::Relaxed))
}

/// Sample records taken off the channel by its consumer and dealt with.
pub fn samples_received() -> u64 {
    // Acquire: pairs with the consumer's release in `note_received`.
    RECEIVED.load(Ordering::Acquire)
}

/// Counts `n` sample records taken off the channel by its consumer, once it has dealt with
/// them (so that `sample_counts` never counts a record as sent before it is received or
/// still queued).
pub fn note_received(n: u64) {
    // Release: what the consumer did with the records is visible to whoever reads the count
    // with acquire.
    RECEIVED.fetch_add(n, Ordering::Release);
}

/// Classes whose every allocation is sampled, in pages of 65,536 created on first use.
static TRACE_ALL: [OnceLock<Box<[AtomicBool]>>; 256] = [const { OnceLock::new() }; 256];
/// Whether any class was ever set to be traced entirely: until then, entering a scope skips
/// the lookup.
static ANY_TRACE_ALL: AtomicBool = AtomicBool::new(false);

/// Samples every allocation of `class` (for small suspect classes), or stops doing so. Takes
/// effect for scopes entered afterwards.
pub fn set_trace_all(class: ClassId, on: bool) {
    let i = class.index() & (ClassId::LIMIT as usize - 1);
    if !on && TRACE_ALL[i >> 16].get().is_none() {
        return;
    }
    // Relaxed: a setting; scopes entered afterwards on any thread may see it a little late.
    ANY_TRACE_ALL.store(true, Ordering::Relaxed);
    let page =
        TRACE_ALL[i >> 16].get_or_init(|| (0..1 << 16).map(|_| AtomicBool::new(false)).collect());
    // Relaxed: a setting read when a scope is entered.
    page[i & 0xffff].store(on, Ordering::Relaxed);
}

/// Whether every allocation of `class` is sampled.
#[inline]
pub fn traces_all(class: ClassId) -> bool {
    // Relaxed: see `set_trace_all`.
    if !ANY_TRACE_ALL.load(Ordering::Relaxed) {
        return false;
    }
    let i = class.index() & (ClassId::LIMIT as usize - 1);
    TRACE_ALL[i >> 16]
        .get()
        // Relaxed: see `set_trace_all`.
        .is_some_and(|page| page[i & 0xffff].load(Ordering::Relaxed))
}

/// What happened to a sampled block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleEvent {
    /// The block was allocated (the record carries its stack).
    Alloc,
    /// The block was freed (or resized: to the sampler a resized block is a new allocation,
    /// as in jemalloc, so each live block is sampled with the chance its size gives it).
    Free,
}

/// One sampled event, as sent on the sample channel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleRecord {
    /// What happened.
    pub event: SampleEvent,
    /// The block's address (its identity until freed).
    pub address: usize,
    /// The class the block is charged to.
    pub class: ClassId,
    /// The block's size.
    pub size: usize,
    /// The sampling mean in force when the block was sampled; 0 if every allocation of its
    /// class is sampled (the sample then stands for itself alone).
    pub mean: u64,
    /// The allocation's stack, by the hash of its frames (see [`StackRecord`]); 0 for frees.
    pub stack: u64,
}

/// A stack, sent on the stack channel before the first sample of a thread that refers to it
/// (and again when the thread has forgotten sending it): so whoever reads a sample naming a
/// stack it has not seen finds the stack's record already waiting on the stack channel.
#[derive(Clone, Copy)]
pub struct StackRecord {
    /// The hash of `frames[..depth]` that samples name it by (never 0).
    pub id: u64,
    /// How many entries of `frames` are set.
    pub depth: usize,
    /// Return addresses, innermost first.
    pub frames: [usize; MAX_STACK_DEPTH],
}

impl StackRecord {
    /// The frames, innermost first.
    pub fn frames(&self) -> &[usize] {
        &self.frames[..self.depth.min(MAX_STACK_DEPTH)]
    }
}

impl std::fmt::Debug for StackRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StackRecord")
            .field("id", &self.id)
            .field("frames", &self.frames())
            .finish()
    }
}

/// A stack's identity: a 64-bit hash of its frames, never 0. (Two different stacks collide
/// with a chance of about n²/2⁶⁵ for n stacks.)
pub fn stack_id(frames: &[usize]) -> u64 {
    let mut h = 0x243F_6A88_85A3_08D3u64 ^ frames.len() as u64;
    for &f in frames {
        h = (h ^ f as u64)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(29);
    }
    // A finaliser (from MurmurHash3) so every bit of every frame moves every bit of the id.
    h ^= h >> 33;
    h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    h ^= h >> 33;
    h = h.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    h ^= h >> 33;
    h.max(1)
}

/// The receiving ends of the sample channel and of the stack channel, made on first use. One
/// consumer (classtrack's aggregator) should drain them: samples in order, and the stack
/// channel whenever a sample names a stack not seen yet.
pub fn sample_receivers() -> Option<(Receiver<SampleRecord>, Receiver<StackRecord>)> {
    channel().map(|c| (c.samples.1.clone(), c.stacks.1.clone()))
}

/// The channels, made by the first caller; `None` while another thread is making them.
fn channel() -> Option<&'static Channels> {
    if let Some(c) = CHANNEL.get() {
        return Some(c);
    }
    // Acquire/Relaxed: the winner publishes through `CHANNEL` (a OnceLock, itself ordered).
    if CHANNEL_STATE
        .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
        .is_ok()
    {
        // This thread's allocations here (the channel's buffer) are classtrack's, and are not
        // sampled (there is nowhere to send a sample yet).
        let _g = crate::OverheadGuard::new();
        let made = with_sampler(|_| {
            // Warm the unwinder up once before the first real sample: its first use may take
            // the loader's lock and allocate (libgcc's FDE caches). Then see whether this
            // program has frame pointers (for `Unwinder::Auto`).
            backtrace::trace(|_| true);
            crate::unwind::detect();
            let _ = CHANNEL.set(Channels {
                samples: crossbeam_channel::bounded(CHANNEL_CAPACITY),
                stacks: crossbeam_channel::bounded(STACK_CHANNEL_CAPACITY),
            });
        });
        // Made, or (called inside the sampler, which cannot warm the unwinder up now) left
        // for a later caller.
        CHANNEL_STATE.store(if made.is_some() { 2 } else { 0 }, Ordering::Release);
    }
    CHANNEL.get()
}

/// The thread that drains the channel, if it asked to be woken when a backlog builds.
static CONSUMER: OnceLock<std::thread::Thread> = OnceLock::new();

/// Registers the thread that drains [`sample_receivers`]: it may sleep while the channels are
/// quiet, and is woken (`Thread::unpark`) once a quarter of either is taken. Senders
/// never wait on it.
pub fn set_sample_consumer(thread: std::thread::Thread) {
    let _ = CONSUMER.set(thread);
}

/// Sends `frames` on the stack channel unless this thread remembers sending them; returns
/// their id, or `None` if the stack could not be sent (channel full or not made yet).
fn announce(frames: &[usize]) -> Option<u64> {
    let id = stack_id(frames);
    let slot = (id % ANNOUNCED_STACKS as u64) as usize;
    let known = ANNOUNCED.try_with(|a| a[slot].get() == id).unwrap_or(false);
    if known {
        return Some(id);
    }
    let channels = channel()?;
    let mut record = StackRecord {
        id,
        depth: frames.len(),
        frames: [0; MAX_STACK_DEPTH],
    };
    record.frames[..frames.len()].copy_from_slice(frames);
    channels.stacks.0.try_send(record).ok()?;
    if channels.stacks.0.len() >= STACK_CHANNEL_CAPACITY / 4 {
        wake_consumer();
    }
    let _ = ANNOUNCED.try_with(|a| a[slot].set(id));
    Some(id)
}

/// Whether the consumer is in [`wait_for_samples`] (about to sleep, or asleep).
static CONSUMER_ASLEEP: AtomicBool = AtomicBool::new(false);

/// For the consumer registered with [`set_sample_consumer`], when it found both channels
/// empty: sleeps up to `timeout`, unless a record arrived meanwhile. Senders wake it once a
/// quarter of a channel is taken; while it is awake they do not touch it at all (waking a
/// running thread would cost every sender a write to a line the consumer reads).
pub fn wait_for_samples(timeout: std::time::Duration) {
    CONSUMER_ASLEEP.store(true, Ordering::Relaxed);
    // SeqCst fence, here and in `wake_consumer`, between each side's write (the flag; the
    // record) and its read (the channels; the flag): either this thread sees the record, or
    // its sender sees the flag and wakes it.
    std::sync::atomic::fence(Ordering::SeqCst);
    let quiet = CHANNEL
        .get()
        .is_none_or(|c| c.samples.1.is_empty() && c.stacks.1.is_empty());
    if quiet {
        std::thread::park_timeout(timeout);
    }
    // Relaxed: a late clear only costs a sender a needless `unpark`.
    CONSUMER_ASLEEP.store(false, Ordering::Relaxed);
}

/// A backlog: wake the consumer if it sleeps. `unpark` takes no lock and allocates nothing; it
/// makes a system call only if the consumer is parked.
fn wake_consumer() {
    // See `wait_for_samples`.
    std::sync::atomic::fence(Ordering::SeqCst);
    // Relaxed: ordered by the fence.
    if CONSUMER_ASLEEP.load(Ordering::Relaxed) {
        if let Some(consumer) = CONSUMER.get() {
            consumer.unpark();
        }
    }
}

fn send(record: SampleRecord) {
    let Some(Channels {
        samples: (tx, _), ..
    }) = channel()
    else {
        // Relaxed: statistics.
        DROPPED.fetch_add(1, Ordering::Relaxed);
        return;
    };
    match tx.try_send(record) {
        Ok(()) => {
            if tx.len() >= CHANNEL_CAPACITY / 4 {
                wake_consumer();
            }
        }
        Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
            // Relaxed: statistics.
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The next gap between sample points: exponential with mean `mean`, from the thread's
/// xorshift generator.
fn next_gap(state: &mut SamplerState, mean: u64) -> i64 {
    let mut x = state.rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    state.rng = x;
    // A uniform in (0, 1]: 53 random bits, never 0.
    let u = ((x >> 11) + 1) as f64 / (1u64 << 53) as f64;
    let gap = -u.ln() * mean as f64;
    gap.clamp(1.0, i64::MAX as f64 / 4.0) as i64
}

/// The thread's countdown ran out, or the class is traced entirely: decide whether the block
/// at `address` (user size `size`, tag `tag`) is sampled, and if so report it with its stack.
///
/// Returns whether the block was sampled: the caller then marks it.
#[cold]
#[inline(never)]
pub(crate) fn on_countdown(address: usize, size: usize, tag: Tag, trace_all: bool) -> bool {
    // Made here, outside the sampler's state (making them warms the unwinder up inside it).
    channel();
    let record = with_sampler(|state| {
        let mean = sample_mean();
        let mut sampled = trace_all;
        // The sample point fell in a gap drawn with `gap_mean`: that is the rate the block was
        // exposed to, so its weight uses it (not a mean changed since).
        let mut weight_mean = state.gap_mean;
        if state.left <= 0 {
            if mean == 0 {
                state.left = RECHECK_BYTES;
                state.gap_mean = 0;
            } else if state.rng == 0 || state.gap_mean == 0 {
                // The thread's first countdown (or the first since sampling was off): seed its
                // generator (from the address of this frame and the number of threads seeded
                // so far) and draw a gap.
                if state.rng == 0 {
                    let seed = (&raw const *state as u64)
                        // Relaxed: any distinct value will do; once per thread.
                        ^ SEEDS.fetch_add(1, Ordering::Relaxed).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                    state.rng = seed | 1;
                }
                state.left = next_gap(state, mean);
                state.gap_mean = mean;
            } else {
                sampled = true;
                weight_mean = state.gap_mean;
                // Points beyond the first inside this block do not matter: the next gap
                // starts from the block's end, past them.
                while state.left <= 0 {
                    state.left += next_gap(state, mean);
                }
                state.gap_mean = mean;
            }
        }
        if !sampled {
            return None;
        }
        let mut frames = [0usize; MAX_STACK_DEPTH];
        let depth = crate::unwind::capture(&mut frames[..stack_depth()]);
        // `None` inside: sampled, but the stack could not be sent (the sample is lost).
        Some(announce(&frames[..depth]).map(|stack| SampleRecord {
            event: SampleEvent::Alloc,
            address,
            class: tag.class,
            size,
            mean: if trace_all { 0 } else { weight_mean },
            stack,
        }))
    })
    .flatten();
    match record {
        Some(Some(r)) => {
            send(r);
            true
        }
        Some(None) => {
            // Relaxed: statistics.
            DROPPED.fetch_add(1, Ordering::Relaxed);
            // Marked all the same: its free is reported and ignored, as for any lost sample.
            true
        }
        None => false,
    }
}

/// Reports an event of a sampled block.
#[cold]
#[inline(never)]
pub(crate) fn report(event: SampleEvent, address: usize, size: usize, class: ClassId) {
    send(SampleRecord {
        event,
        address,
        class,
        size,
        mean: 0,
        stack: 0,
    });
}

#[cfg(test)]
mod tests {
    use super::stack_id;

    #[test]
    fn stack_ids_are_never_zero_and_tell_order_and_length_apart() {
        assert_ne!(stack_id(&[]), 0);
        assert_ne!(stack_id(&[0]), 0);
        assert_ne!(stack_id(&[1, 2]), stack_id(&[2, 1]));
        assert_ne!(stack_id(&[1, 2]), stack_id(&[1, 2, 0]));
        assert_eq!(stack_id(&[7, 8, 9]), stack_id(&[7, 8, 9]));
        let ids: std::collections::HashSet<u64> =
            (0..10_000usize).map(|i| stack_id(&[i, i * 3])).collect();
        assert_eq!(ids.len(), 10_000);
    }
}
