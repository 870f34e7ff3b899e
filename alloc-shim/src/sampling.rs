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
//! with the chance its current size gives it and the live estimates stay unbiased; its record
//! carries the old size, so that only the growth is counted as allocated. The stack
//! is captured as raw return addresses (no symbols) into a fixed array, without allocating or
//! locking. A sample travels as a small [`SampleRecord`] naming its stack by a 64-bit hash;
//! the stack itself (a [`StackRecord`]) is sent on a second channel only the first time a
//! thread samples it (each thread remembers the last 256 stacks it sent), so the usual sample
//! costs a one-line record, not half a kilobyte of frames. Both channels are bounded crossbeam
//! channels fed with `try_send` to whoever drains [`sample_receivers`]; when one is full an
//! allocation's sample is dropped and counted (and its block left unmarked, so that every free
//! reported is of a block whose allocation was), and a free goes to a lock-free overflow list
//! that the consumer empties ([`take_overflowed_frees`]): frees are never lost, and the
//! allocating or freeing thread never waits. The one exception is a class traced entirely
//! ([`set_trace_all`]): there no record may be lost, so its threads wait for room (without
//! holding any lock) instead of dropping.
//!
//! Nothing is set up before the first block is sampled: the channels, and with them the
//! unwinder's index of the loaded modules, are made then (or when a consumer asks for them), so
//! a program that turns sampling off before it samples does no unwinder work at all.
//!
//! The countdown costs the hot path one subtraction in thread-local memory and a branch on
//! its flags (see the fast path in `local`); everything else is `#[cold]`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicU8, AtomicUsize, Ordering};
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
pub const CHANNEL_CAPACITY: usize = 4096;
/// Stack records the stack channel holds (new stacks only: far fewer than samples).
pub const STACK_CHANNEL_CAPACITY: usize = 256;
/// Stacks each thread remembers having sent (a direct-mapped table of their hashes).
const ANNOUNCED_STACKS: usize = 256;
/// While sampling is off, threads look again at the setting every this many bytes.
const RECHECK_BYTES: i64 = 64 << 20;

/// Under Miri sampling starts off: the unwinders read the program's unwind tables and stack
/// words that Miri does not model (see [`set_sample_mean`] to turn it on there anyway). It
/// starts off too where the platform's unwinder may wait on a lock (Windows: see
/// `platform::SAMPLE_BY_DEFAULT`).
static MEAN: AtomicU64 = AtomicU64::new(if cfg!(miri) || !crate::platform::SAMPLE_BY_DEFAULT {
    0
} else {
    DEFAULT_SAMPLE_MEAN
});
static DEPTH: AtomicUsize = AtomicUsize::new(MAX_STACK_DEPTH);
/// Sample records taken off the channel by its consumer (counted by the consumer, once per
/// batch, so that senders share no counter).
static RECEIVED: AtomicU64 = AtomicU64::new(0);
/// Threads that seeded their sample generator (once per thread).
static SEEDS: AtomicU64 = AtomicU64::new(0);
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// The state of the channel: 0 none yet, 1 being made, 2 ready.
static CHANNEL_STATE: AtomicU8 = AtomicU8::new(0);
/// The channels, once made: a leaked box, never freed (a sender may be reading it when a forked
/// child abandons it), so that a forked child can start afresh (see [`after_fork_in_child`]).
static CHANNEL: AtomicPtr<Channels> = AtomicPtr::new(ptr::null_mut());

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

/// Sample records sent (taken by the consumer, waiting in the channel, or frees sent to the
/// overflow list), and records dropped because a channel was full (allocation samples only: a
/// free is never dropped, see [`take_overflowed_frees`]).
pub fn sample_counts() -> (u64, u64) {
    let queued = channels_now().map_or(0, |c| c.samples.1.len() as u64);
    // Acquire: pairs with the release of each push in `overflow`.
    let overflowed = OVERFLOWED.load(Ordering::Acquire);
    // Acquire: pairs with the consumer's release in `note_received`.
    let received = RECEIVED.load(Ordering::Acquire);
    // Relaxed: a statistic.
    (
        received + queued + overflowed,
        DROPPED.load(Ordering::Relaxed),
    )
}

/// Sample records the consumer took off the channel and dealt with, and frees it took off the
/// overflow list and dealt with: once this reaches a figure [`sample_counts`] gave, every
/// record sent before that call has been dealt with.
pub fn samples_received() -> u64 {
    // Acquire: pairs with the consumer's releases in `note_received` and
    // `note_overflow_applied`.
    RECEIVED.load(Ordering::Acquire) + OVERFLOW_APPLIED.load(Ordering::Acquire)
}

/// Counts `n` sample records taken off the channel by its consumer, once it has dealt with
/// them (so that `sample_counts` never counts a record as sent before it is received or
/// still queued).
pub fn note_received(n: u64) {
    // Release: what the consumer did with the records is visible to whoever reads the count
    // with acquire.
    RECEIVED.fetch_add(n, Ordering::Release);
    if n > 0 && CONSUMER_STALLED.load(Ordering::Relaxed) {
        // Relaxed: see `may_wait`.
        CONSUMER_STALLED.store(false, Ordering::Relaxed);
    }
}

/// Frees taken off the overflow list ([`take_overflowed_frees`]) and dealt with.
static OVERFLOW_APPLIED: AtomicU64 = AtomicU64::new(0);

/// Counts `n` frees taken by [`take_overflowed_frees`], once the consumer has dealt with them.
pub fn note_overflow_applied(n: u64) {
    // Release: as in `note_received`.
    OVERFLOW_APPLIED.fetch_add(n, Ordering::Release);
}

/// Whether sampling is wanted now: a non-zero mean, or a class ever set to be traced entirely.
pub fn sampling_enabled() -> bool {
    // Relaxed: a setting.
    sample_mean() != 0 || ANY_TRACE_ALL.load(Ordering::Relaxed)
}

/// Whether the sample channels (and with them the unwinder's index of the loaded modules) have
/// been made: by the first block sampled, or by [`sample_receivers`].
pub fn sampling_started() -> bool {
    channels_now().is_some()
}

/// Classes whose every allocation is sampled, in pages of 65,536 created on first use.
static TRACE_ALL: [OnceLock<Box<[AtomicBool]>>; 256] = [const { OnceLock::new() }; 256];
/// Whether any class was ever set to be traced entirely: until then, entering a scope skips
/// the lookup.
static ANY_TRACE_ALL: AtomicBool = AtomicBool::new(false);

/// Samples every allocation of `class` (for small suspect classes), or stops doing so.
///
/// Takes effect at once on the calling thread, for scopes entered afterwards on every thread,
/// and on other threads already inside the class's scope (`<untracked>` above all: threads
/// start in it) from their next sample point (their first allocation, for a new thread).
///
/// A thread allocating in a class traced entirely never loses a record: when a channel is
/// full it waits for the consumer to make room (see `send_waiting`), so such classes run at
/// the consumer's pace. classtrack's own class ([`ClassId::OVERHEAD`]) cannot be traced
/// entirely (the call is ignored): the consumer's own allocations are in it.
pub fn set_trace_all(class: ClassId, on: bool) {
    if class == ClassId::OVERHEAD {
        return;
    }
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
    crate::local::refresh_trace_bit();
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
    /// The block was made by a `realloc` of a block of `old_size` bytes (the record carries the
    /// realloc's stack). To the sampler a resized block is a new block, as in jemalloc, so
    /// each live block is sampled with the chance its size gives it; but only its growth
    /// counts as allocated bytes, as in the class's exact counters.
    Realloc,
    /// The block was freed, or resized (the old block's record, before the new one's).
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
    /// For [`SampleEvent::Realloc`], the old block's size; 0 otherwise.
    pub old_size: usize,
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
/// consumer (classtrack's aggregator) should drain them: samples in order, the stack channel
/// whenever a sample names a stack not seen yet, and [`take_overflowed_frees`].
pub fn sample_receivers() -> Option<(Receiver<SampleRecord>, Receiver<StackRecord>)> {
    channel().map(|c| (c.samples.1.clone(), c.stacks.1.clone()))
}

/// The channels if they are made.
fn channels_now() -> Option<&'static Channels> {
    // Acquire: pairs with the release that published the box in `channel`.
    let c = CHANNEL.load(Ordering::Acquire);
    // SAFETY: a non-null `CHANNEL` is a leaked box, fully built before it was published, and
    // never freed.
    (!c.is_null()).then(|| unsafe { &*c })
}

/// The channels, made by the first caller; `None` while another thread is making them.
fn channel() -> Option<&'static Channels> {
    if let Some(c) = channels_now() {
        return Some(c);
    }
    // Acquire/Relaxed: the winner publishes through `CHANNEL` (release), read with acquire.
    if CHANNEL_STATE
        .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
        .is_ok()
    {
        // This thread's allocations here (the channel's buffer) are classtrack's, and are not
        // sampled (there is nowhere to send a sample yet).
        let _g = crate::OverheadGuard::new();
        let made = with_sampler(|_| {
            warm_up();
            let made = Box::new(Channels {
                samples: crossbeam_channel::bounded(CHANNEL_CAPACITY),
                stacks: crossbeam_channel::bounded(STACK_CHANNEL_CAPACITY),
            });
            // Release: the channels are built before anyone reads them through the pointer.
            CHANNEL.store(Box::into_raw(made), Ordering::Release);
        });
        // Made, or (called inside the sampler, which cannot warm the unwinder up now) left
        // for a later caller. Release: pairs with `before_fork`'s acquire.
        CHANNEL_STATE.store(if made.is_some() { 2 } else { 0 }, Ordering::Release);
    }
    channels_now()
}

/// Warms the unwinder up once before the first real sample: its first use may take the
/// loader's lock and allocate (libgcc's FDE caches). Then indexes the loaded modules for the
/// cached unwinder and sees whether this program has frame pointers (for `Unwinder::Auto`).
#[cfg(not(miri))]
fn warm_up() {
    backtrace::trace(|_| true);
    crate::unwind::detect();
}

/// Under Miri there is no unwinder: stacks are empty.
#[cfg(miri)]
fn warm_up() {}

/// The thread that drains the channel, if it asked to be woken when a backlog builds: a leaked
/// box (never freed: a sender may be reading the old one when a new consumer registers).
static CONSUMER: AtomicPtr<std::thread::Thread> = AtomicPtr::new(ptr::null_mut());

/// Registers the thread that drains [`sample_receivers`]: it may sleep while the channels are
/// quiet, and is woken (`Thread::unpark`) once a quarter of either is taken. Senders
/// never wait on it. A later call replaces the consumer (a new aggregator thread, or the first
/// one of a forked child).
pub fn set_sample_consumer(thread: std::thread::Thread) {
    if thread.id() == std::thread::current().id() {
        let _ = IS_CONSUMER.try_with(|c| c.set(true));
    }
    let new = Box::into_raw(Box::new(thread));
    // Release: the box is built before a sender reads it (acquire in `wake_consumer`). The old
    // box is leaked on purpose (see `CONSUMER`).
    CONSUMER.swap(new, Ordering::AcqRel);
}

/// Sends `frames` on the stack channel unless this thread remembers sending them; returns
/// their id, or `None` if the stack could not be sent (channel full or not made yet; for a
/// block of a class traced entirely, `traced`, only once waiting for room gave up: see
/// [`send_waiting`]).
fn announce(frames: &[usize], traced: bool) -> Option<u64> {
    let id = stack_id(frames);
    let slot = (id % ANNOUNCED_STACKS as u64) as usize;
    let known = ANNOUNCED.try_with(|a| a[slot].get() == id).unwrap_or(false);
    if known {
        return Some(id);
    }
    let mut record = StackRecord {
        id,
        depth: frames.len(),
        frames: [0; MAX_STACK_DEPTH],
    };
    record.frames[..frames.len()].copy_from_slice(frames);
    let send = || {
        let Some(channels) = channel() else {
            return false;
        };
        if !enter_channel() {
            return false;
        }
        let sent = channels.stacks.0.try_send(record).is_ok();
        leave_channel();
        if sent && channels.stacks.0.len() >= STACK_CHANNEL_CAPACITY / 4 {
            wake_consumer();
        }
        sent
    };
    if !send_waiting(send, traced) {
        return None;
    }
    let _ = ANNOUNCED.try_with(|a| a[slot].set(id));
    Some(id)
}

/// The longest a thread tracing every allocation of its class waits for room on a channel
/// before it drops the record (counted as dropped), and stops waiting until the consumer
/// takes records again: a consumer that stopped draining must not stall the program.
const TRACED_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Set when a traced sender waited [`TRACED_WAIT`] in vain; cleared when the consumer takes
/// records ([`note_received`]). While it is set, traced senders drop what does not fit.
static CONSUMER_STALLED: AtomicBool = AtomicBool::new(false);

/// Times a traced sender found a channel full and waited for room.
static TRACED_WAITS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Whether this thread is the registered consumer ([`set_sample_consumer`]): it never
    /// waits for room, which only it would make.
    static IS_CONSUMER: Cell<bool> = const { Cell::new(false) };
}

/// Whether a traced sender may wait for the consumer to make room: there is a consumer, it is
/// another thread, and it has not stalled.
fn may_wait() -> bool {
    // Relaxed, here and below: a registered consumer is all this asks (it is never freed); a
    // late view of the stall flag costs one more wait or one record dropped.
    !CONSUMER.load(Ordering::Relaxed).is_null()
        && !IS_CONSUMER.try_with(Cell::get).unwrap_or(true)
        && !CONSUMER_STALLED.load(Ordering::Relaxed)
}

/// Runs `send` (one attempt to put a record on a channel), and for a record of a class traced
/// entirely (`traced`) tries again until it succeeds: the thread wakes the consumer and yields
/// (then sleeps 50 µs at a time) while the channel is full, being made by another thread, or a
/// fork is being prepared. It holds no lock of classtrack's while it waits, and gives up after
/// [`TRACED_WAIT`] (see there). Returns whether the record was sent. Default sampling
/// (`traced == false`) never waits.
fn send_waiting(mut send: impl FnMut() -> bool, traced: bool) -> bool {
    if send() {
        return true;
    }
    if !traced || !may_wait() {
        return false;
    }
    // Relaxed: a statistic.
    TRACED_WAITS.fetch_add(1, Ordering::Relaxed);
    let start = std::time::Instant::now();
    let mut attempts = 0u32;
    loop {
        wake_consumer();
        if attempts < 64 {
            std::thread::yield_now();
        } else {
            std::thread::sleep(std::time::Duration::from_micros(50));
        }
        attempts += 1;
        if send() {
            return true;
        }
        if !may_wait() {
            return false;
        }
        if start.elapsed() >= TRACED_WAIT {
            CONSUMER_STALLED.store(true, Ordering::Relaxed);
            return false;
        }
    }
}

/// Times a thread tracing every allocation of its class found a sample channel full and
/// waited for the consumer to make room (see [`set_trace_all`]).
pub fn traced_waits() -> u64 {
    // Relaxed: a statistic.
    TRACED_WAITS.load(Ordering::Relaxed)
}

/// Whether the consumer is in [`wait_for_samples`] (about to sleep, or asleep).
static CONSUMER_ASLEEP: AtomicBool = AtomicBool::new(false);

/// For the consumer registered with [`set_sample_consumer`], when it found both channels
/// empty: sleeps up to `timeout`, unless a record arrived meanwhile. Senders wake it once a
/// quarter of a channel is taken (or a free goes to the overflow list); while it is awake they
/// do not touch it at all (waking a running thread would cost every sender a write to a line
/// the consumer reads).
pub fn wait_for_samples(timeout: std::time::Duration) {
    CONSUMER_ASLEEP.store(true, Ordering::Relaxed);
    // SeqCst fence, here and in `wake_consumer`, between each side's write (the flag; the
    // record) and its read (the channels; the flag): either this thread sees the record, or
    // its sender sees the flag and wakes it.
    std::sync::atomic::fence(Ordering::SeqCst);
    let quiet = channels_now().is_none_or(|c| c.samples.1.is_empty() && c.stacks.1.is_empty())
        // Relaxed: ordered by the fence.
        && OVERFLOW.load(Ordering::Relaxed).is_null();
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
        // Acquire: pairs with the release in `set_sample_consumer`.
        let consumer = CONSUMER.load(Ordering::Acquire);
        if !consumer.is_null() {
            // SAFETY: a non-null `CONSUMER` is a leaked box, built before it was published and
            // never freed.
            unsafe { &*consumer }.unpark();
        }
    }
}

/// Threads inside a `try_send` on either channel (see [`before_fork`]).
static SENDERS: AtomicUsize = AtomicUsize::new(0);
/// Set by [`before_fork`] until the fork is over: senders keep off the channels.
static FORKING: AtomicBool = AtomicBool::new(false);
/// Whether [`before_fork`] saw the channels quiet (no send under way, not being made).
static QUIET_AT_FORK: AtomicBool = AtomicBool::new(false);

/// Enters a send on a channel, unless a fork is being prepared (then `false`: the caller must
/// not touch the channels). Cold paths only: two read-modify-writes on a shared line.
fn enter_channel() -> bool {
    // SeqCst, here and in `before_fork`: either the forking thread sees this sender counted,
    // or this sender sees `FORKING` (a store-load pair on two variables).
    SENDERS.fetch_add(1, Ordering::SeqCst);
    if FORKING.load(Ordering::SeqCst) {
        leave_channel();
        return false;
    }
    true
}

fn leave_channel() {
    // Release: the send is complete before the forking thread (acquire) sees the count drop.
    SENDERS.fetch_sub(1, Ordering::Release);
}

/// Tries to send `record` on the sample channel; `false` if it is full, not made, or a fork is
/// being prepared.
fn try_send(record: SampleRecord) -> bool {
    let Some(channels) = channel() else {
        return false;
    };
    if !enter_channel() {
        return false;
    }
    let tx = &channels.samples.0;
    let sent = match tx.try_send(record) {
        Ok(()) => true,
        Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
    };
    leave_channel();
    if sent && tx.len() >= CHANNEL_CAPACITY / 4 {
        wake_consumer();
    }
    sent
}

/// A free that found the sample channel full, waiting in [`OVERFLOW`] for the consumer.
struct Overflowed {
    next: *mut Overflowed,
    record: SampleRecord,
}

/// Frees of sampled blocks that found the channel full: a lock-free stack (Treiber's) of nodes
/// taken from [`System`] (never through tracking), emptied all at once by the consumer, so it
/// has no ABA problem. It survives the thread that pushed (a thread's exit, a fork: a push is
/// one compare-and-swap of a complete node).
static OVERFLOW: AtomicPtr<Overflowed> = AtomicPtr::new(ptr::null_mut());
/// Records pushed on [`OVERFLOW`] since the process started.
static OVERFLOWED: AtomicU64 = AtomicU64::new(0);
/// Frees that could not be recorded at all: the system allocator had no memory for a node.
static FREES_LOST: AtomicU64 = AtomicU64::new(0);

/// Keeps a free that found the channel full for the consumer, in [`OVERFLOW`]. Never loses it
/// unless the system allocator is out of memory (counted in [`frees_lost`]).
#[cold]
#[inline(never)]
fn overflow(record: SampleRecord) {
    let layout = Layout::new::<Overflowed>();
    // SAFETY: a non-zero layout. (glibc's malloc here, never the global allocator.)
    let node = unsafe { System.alloc(layout) }.cast::<Overflowed>();
    if node.is_null() {
        // Relaxed: statistics.
        FREES_LOST.fetch_add(1, Ordering::Relaxed);
        DROPPED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    // Relaxed: the compare-and-swap below publishes the node.
    let mut head = OVERFLOW.load(Ordering::Relaxed);
    loop {
        // SAFETY: `node` is a fresh, aligned allocation for an `Overflowed`, not shared yet.
        unsafe { node.write(Overflowed { next: head, record }) };
        // Release: the node's contents before the consumer (acquire swap) reads them.
        match OVERFLOW.compare_exchange_weak(head, node, Ordering::Release, Ordering::Relaxed) {
            Ok(_) => break,
            Err(now) => head = now,
        }
    }
    // Release: pairs with `sample_counts`' acquire (the record is counted once it is there).
    OVERFLOWED.fetch_add(1, Ordering::Release);
    wake_consumer();
}

/// For the consumer: appends to `out` the frees that found the sample channel full, oldest
/// first, and returns how many.
///
/// Each of them was reported after its block's allocation record was sent, but may be taken
/// here before that record is received: apply them only once the sample channel has been
/// found empty after this call. A free taken here may also be older than an allocation at
/// the same address already received (the address was reused meanwhile): it frees the older
/// block.
pub fn take_overflowed_frees(out: &mut Vec<SampleRecord>) -> usize {
    // Acquire: pairs with each push's release.
    let mut node = OVERFLOW.swap(ptr::null_mut(), Ordering::Acquire);
    let start = out.len();
    while !node.is_null() {
        // SAFETY: a node pushed by `overflow`, complete (release/acquire) and now this
        // thread's alone (the swap took the whole list).
        let Overflowed { next, record } = unsafe { node.read() };
        out.push(record);
        // SAFETY: allocated from `System` with this layout in `overflow`; read above.
        unsafe { System.dealloc(node.cast(), Layout::new::<Overflowed>()) };
        node = next;
    }
    // The stack gives the newest first.
    out[start..].reverse();
    out.len() - start
}

/// Frees of sampled blocks that could not be recorded because the system allocator had no
/// memory for an overflow node (the estimates then keep those blocks live).
pub fn frees_lost() -> u64 {
    // Relaxed: a statistic.
    FREES_LOST.load(Ordering::Relaxed)
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

/// Advances the thread's countdown: `Some(mean)` if the block is sampled, with the mean its
/// weight is computed with (0: it stands for itself alone).
fn decide(state: &mut SamplerState, trace_all: bool) -> Option<u64> {
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
            // generator (from the address of this frame and the number of threads seeded so
            // far) and draw a gap.
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
            // Points beyond the first inside this block do not matter: the next gap starts
            // from the block's end, past them.
            while state.left <= 0 {
                state.left += next_gap(state, mean);
            }
            state.gap_mean = mean;
        }
    }
    sampled.then_some(if trace_all { 0 } else { weight_mean })
}

/// The thread's countdown ran out, or the class is traced entirely: decide whether the block
/// at `address` (user size `size`, tag `tag`; made by a realloc of a block of `resized_from`
/// bytes, if so) is sampled, and if so report it with its stack.
///
/// Returns whether the block's sample was sent: the caller then marks it, so that its free is
/// reported. A sample that could not be sent (a channel full) is dropped and counted, and its
/// block left unmarked: every free reported is of a block whose allocation was reported.
#[cold]
#[inline(never)]
pub(crate) fn on_countdown(
    address: usize,
    size: usize,
    resized_from: Option<usize>,
    tag: Tag,
    trace_all: bool,
) -> bool {
    // The thread's tag word carries the trace-everything bit only from the moment it entered
    // its scope: bring it up to date with the setting now (so a thread that never enters a
    // scope traces `<untracked>` when asked), and decide this block with the setting now too.
    // A realloc's tag is the block's owner, whose setting the caller read already.
    crate::local::refresh_trace_bit();
    let trace_all = if resized_from.is_none() {
        traces_all(tag.class)
    } else {
        trace_all
    };
    // Decided first: the channels (and the unwinder's index, made with them) are made only
    // once a block is sampled, so a program with sampling off never builds them.
    let Some(Some(mean)) = with_sampler(|state| decide(state, trace_all)) else {
        return false;
    };
    // Made here, outside the sampler's state (making them warms the unwinder up inside it).
    // A block of a class traced entirely waits while another thread makes them.
    let made = channel().is_some() || (mean == 0 && send_waiting(|| channel().is_some(), true));
    let record = made
        .then(|| {
            with_sampler(|_| {
                let mut frames = [0usize; MAX_STACK_DEPTH];
                let depth = crate::unwind::capture(&mut frames[..stack_depth()]);
                announce(&frames[..depth], mean == 0).map(|stack| SampleRecord {
                    event: if resized_from.is_some() {
                        SampleEvent::Realloc
                    } else {
                        SampleEvent::Alloc
                    },
                    address,
                    class: tag.class,
                    size,
                    old_size: resized_from.unwrap_or(0),
                    mean,
                    stack,
                })
            })
        })
        .flatten()
        .flatten();
    // A block of a class traced entirely (`mean == 0`) waits for room rather than be lost.
    if record.is_some_and(|r| send_waiting(|| try_send(r), mean == 0)) {
        return true;
    }
    // Relaxed: statistics.
    DROPPED.fetch_add(1, Ordering::Relaxed);
    false
}

/// Reports the free of a sampled block (or of the old block of a realloc). Never lost: if the
/// channel is full, it waits in the overflow list for the consumer.
#[cold]
#[inline(never)]
pub(crate) fn report_free(address: usize, size: usize, class: ClassId) {
    let record = SampleRecord {
        event: SampleEvent::Free,
        address,
        class,
        size,
        old_size: 0,
        mean: 0,
        stack: 0,
    };
    if !try_send(record) {
        overflow(record);
    }
}

/// Makes the sampler ready for `fork()`: called by classtrack's `pthread_atfork` prepare handler
/// (after it has taken the aggregator's lock, so that the consumer is not receiving). Waits
/// (up to about 100 ms) until no thread is sending on the channels or making them, and keeps
/// new senders off them until [`after_fork_in_parent`] / [`after_fork_in_child`]: meanwhile
/// allocation samples are dropped and frees go to the overflow list. So the child inherits
/// channels in a consistent state, and keeps the records in them.
pub fn before_fork() {
    // SeqCst: see `enter_channel`.
    FORKING.store(true, Ordering::SeqCst);
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(100);
    let quiet = loop {
        // SeqCst: see `enter_channel`. Acquire (implied) for `CHANNEL_STATE`: a channel made
        // is published.
        let quiet =
            SENDERS.load(Ordering::SeqCst) == 0 && CHANNEL_STATE.load(Ordering::SeqCst) != 1;
        if quiet || std::time::Instant::now() >= deadline {
            break quiet;
        }
        std::thread::yield_now();
    };
    // Relaxed: read after the fork by this same thread.
    QUIET_AT_FORK.store(quiet, Ordering::Relaxed);
}

/// Undoes [`before_fork`] in the parent: senders use the channels again.
pub fn after_fork_in_parent() {
    // Relaxed: senders only need to see it eventually.
    FORKING.store(false, Ordering::Relaxed);
}

/// The process that [`after_fork_in_child`] last ran in (0: none).
static CHILD_PID: AtomicU64 = AtomicU64::new(0);

/// Resets the sampler in the child of `fork()`, where only the forking thread is left. Meant
/// for a `pthread_atfork` child handler: it neither allocates nor locks, and is idempotent in a
/// process (a second call does nothing).
///
/// - The registered consumer (a thread of the parent) is forgotten: the next consumer to
///   register (classtrack's aggregator, respawned in the child) is woken instead.
/// - Channels that a vanished thread was making are left to be made again; channels that a
///   vanished thread may have been sending on (no [`before_fork`] ran, or it timed out) are
///   abandoned, their records counted as dropped, and made afresh by the next sample. With
///   [`before_fork`] run first they are kept, with every record in them.
/// - Caches of the cached unwinder claimed by vanished threads are released.
/// - Frees waiting in the overflow list stay there for the child's consumer: their blocks were
///   freed before the fork, in the child's copy of the heap too (a thread that vanished
///   between reporting a free and handing its block back leaves that block allocated in the
///   child, as any thread vanishing in `free` does; the counters count it freed).
pub fn after_fork_in_child() {
    // `getpid` (async-signal-safe, no allocation).
    let pid = u64::from(std::process::id());
    // Relaxed: only this thread runs in the child.
    if CHILD_PID.swap(pid, Ordering::Relaxed) == pid {
        return;
    }
    // Relaxed, here and below: the child has one thread.
    CONSUMER.store(ptr::null_mut(), Ordering::Relaxed);
    CONSUMER_ASLEEP.store(false, Ordering::Relaxed);
    let prepared = FORKING.swap(false, Ordering::Relaxed) && QUIET_AT_FORK.load(Ordering::Relaxed);
    SENDERS.store(0, Ordering::Relaxed);
    if CHANNEL_STATE.load(Ordering::Relaxed) == 1 {
        // Its maker vanished, maybe inside the cached unwinder's set-up: never use it here.
        crate::cached::abandon();
        let made = !CHANNEL.load(Ordering::Relaxed).is_null();
        CHANNEL_STATE.store(if made { 2 } else { 0 }, Ordering::Relaxed);
    }
    if !prepared {
        if let Some(c) = channels_now() {
            // A vanished sender may have left a slot half-written: a receiver would wait for
            // it forever. Start afresh (the old channels are leaked).
            DROPPED.fetch_add(c.samples.1.len() as u64, Ordering::Relaxed);
            CHANNEL.store(ptr::null_mut(), Ordering::Relaxed);
            CHANNEL_STATE.store(0, Ordering::Relaxed);
            // This thread's announced stacks went with them.
            let _ = ANNOUNCED.try_with(|a| a.iter().for_each(|s| s.set(0)));
        }
    }
    crate::cached::after_fork_in_child();
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
        let n = if cfg!(miri) { 500 } else { 10_000 };
        let ids: std::collections::HashSet<u64> = (0..n).map(|i| stack_id(&[i, i * 3])).collect();
        assert_eq!(ids.len(), n);
    }
}
