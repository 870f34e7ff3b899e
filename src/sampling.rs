//! Allocation sites per class: the shim's samples, aggregated off the hot path.
//!
//! A background thread (`classtrack-sampler`) drains the shim's sample channel and keeps, per
//! (class, stack), estimated bytes and blocks allocated and live. A sample of `Z` bytes taken
//! with mean `R` stands for `1 / (1 - e^(-Z/R))` blocks and `Z` times that in bytes (the
//! inverse of its chance of being sampled), so the estimates are unbiased; a block of a class
//! traced entirely stands for itself. Stacks are raw return addresses until shown; then they
//! are symbolized once per address and cached.

use std::ffi::c_void;
use std::sync::{Arc, LazyLock, Once, OnceLock};
use std::time::{Duration, Instant};

use classtrack_shim::{
    sample_receivers, ClassId, OverheadGuard, SampleEvent, SampleRecord, StackRecord,
};
use crossbeam_channel::Receiver;
use hashbrown::hash_map::Entry;
use hashbrown::HashMap;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// One frame of an allocation stack, symbolized.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Frame {
    /// The function's demangled name (or its address when it has no symbol).
    pub function: String,
    /// The source file, when debug info has it.
    pub file: Option<String>,
    /// The line, when debug info has it.
    pub line: Option<u32>,
    /// Whether this frame was inlined into the next one.
    pub inlined: bool,
}

/// Where a class's memory was allocated: one stack, with estimated totals.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Site {
    /// The class of the blocks allocated here.
    pub class: ClassId,
    /// Return addresses, innermost first (raw: see [`Site::frames`]).
    pub stack: Arc<[usize]>,
    /// Estimated bytes live now.
    pub live_bytes: f64,
    /// Estimated blocks live now.
    pub live_blocks: f64,
    /// Estimated bytes ever allocated here.
    pub allocated_bytes: f64,
    /// Estimated blocks ever allocated here.
    pub allocations: f64,
    /// Samples taken here.
    pub samples: u64,
}

impl Site {
    /// The stack symbolized, innermost first, without classtrack's and the allocator's own
    /// frames at the top.
    pub fn frames(&self) -> Vec<Frame> {
        frames_of(&self.stack)
    }
}

#[derive(Clone, Copy)]
struct Live {
    class: ClassId,
    stack: u32,
    size: usize,
    weight: f64,
}

#[derive(Default, Clone, Copy)]
struct Totals {
    live_bytes: f64,
    live_blocks: f64,
    allocated_bytes: f64,
    allocations: f64,
    samples: u64,
}

#[derive(Default)]
struct Aggregator {
    /// Stacks by the shim's id (the hash of their frames).
    stack_ids: HashMap<u64, u32>,
    stacks: Vec<Arc<[usize]>>,
    sites: HashMap<(ClassId, u32), Totals>,
    live: HashMap<usize, Live>,
    /// Bumped by every change, so an unchanged table is shared between snapshots.
    generation: u64,
    table: Option<(u64, Arc<[Site]>)>,
}

fn weight(size: usize, mean: u64) -> f64 {
    if mean == 0 {
        1.0
    } else {
        1.0 / -(-(size as f64) / mean as f64).exp_m1()
    }
}

impl Aggregator {
    fn learn(&mut self, s: &StackRecord) {
        if let Entry::Vacant(e) = self.stack_ids.entry(s.id) {
            e.insert(self.stacks.len() as u32);
            self.stacks.push(Arc::from(s.frames()));
        }
    }

    /// The stack a sample names: announced on the stack channel before the sample was sent, so
    /// found there if not known yet (`None` only if its record was lost).
    fn stack_of(&mut self, id: u64, stacks: &Receiver<StackRecord>) -> Option<u32> {
        if let Some(&s) = self.stack_ids.get(&id) {
            return Some(s);
        }
        while let Ok(s) = stacks.try_recv() {
            self.learn(&s);
            if s.id == id {
                break;
            }
        }
        self.stack_ids.get(&id).copied()
    }

    fn apply(&mut self, r: &SampleRecord, stacks: &Receiver<StackRecord>) {
        self.generation += 1;
        match r.event {
            SampleEvent::Alloc => {
                let Some(stack) = self.stack_of(r.stack, stacks) else {
                    return;
                };
                let w = weight(r.size, r.mean);
                let t = self.sites.entry((r.class, stack)).or_default();
                t.allocated_bytes += r.size as f64 * w;
                t.allocations += w;
                t.live_bytes += r.size as f64 * w;
                t.live_blocks += w;
                t.samples += 1;
                let live = Live {
                    class: r.class,
                    stack,
                    size: r.size,
                    weight: w,
                };
                if let Some(old) = self.live.insert(r.address, live) {
                    // The free of the block that had this address was lost (channel full).
                    self.unlive(old);
                }
            }
            SampleEvent::Free => {
                if let Some(old) = self.live.remove(&r.address) {
                    self.unlive(old);
                }
            }
        }
    }

    fn unlive(&mut self, l: Live) {
        if let Some(t) = self.sites.get_mut(&(l.class, l.stack)) {
            t.live_bytes = (t.live_bytes - l.size as f64 * l.weight).max(0.0);
            t.live_blocks = (t.live_blocks - l.weight).max(0.0);
        }
    }

    fn table(&mut self) -> Arc<[Site]> {
        if let Some((generation, table)) = &self.table {
            if *generation == self.generation {
                return table.clone();
            }
        }
        let table: Arc<[Site]> = self
            .sites
            .iter()
            .map(|(&(class, stack), t)| Site {
                class,
                stack: self.stacks[stack as usize].clone(),
                live_bytes: t.live_bytes,
                live_blocks: t.live_blocks,
                allocated_bytes: t.allocated_bytes,
                allocations: t.allocations,
                samples: t.samples,
            })
            .collect();
        self.table = Some((self.generation, table.clone()));
        table
    }
}

static AGGREGATOR: LazyLock<Mutex<Aggregator>> = LazyLock::new(Default::default);
static DRAIN: Once = Once::new();
/// The drain thread, to wake it when a snapshot wants the records now.
static CONSUMER: OnceLock<std::thread::Thread> = OnceLock::new();

/// Starts the thread that drains the shim's samples (once per process).
pub(crate) fn start() {
    DRAIN.call_once(|| {
        let _g = OverheadGuard::new();
        let Some((rx, stacks)) = sample_receivers() else {
            return;
        };
        let spawned = std::thread::Builder::new()
            .name("classtrack-sampler".into())
            .spawn(move || {
                // Everything this thread allocates is classtrack's, and never sampled.
                let _g = OverheadGuard::new();
                classtrack_shim::exclude_thread_from_sampling();
                // The only consumer of the channel, so records are applied in the order sent:
                // a block's free is never applied before its allocation. It parks rather than
                // blocks on the channel, so that a sending thread never has a sleeping
                // receiver to wake on every sample; senders unpark it when a backlog builds,
                // and `drain_now` when a snapshot wants the records.
                classtrack_shim::set_sample_consumer(std::thread::current());
                let mut idle = Duration::from_micros(100);
                loop {
                    let mut n = 0;
                    {
                        // Records are received and applied under the lock, so a snapshot that
                        // takes it sees every record the shim counts as received.
                        let mut agg = AGGREGATOR.lock();
                        // Stacks first (each was sent before any sample naming it), so that
                        // stacks re-sent by threads that forgot them never fill the channel.
                        for s in stacks.try_iter().take(1 << 16) {
                            agg.learn(&s);
                        }
                        for r in rx.try_iter().take(1 << 16) {
                            agg.apply(&r, &stacks);
                            n += 1;
                        }
                    }
                    classtrack_shim::note_received(n);
                    if n == 0 {
                        classtrack_shim::wait_for_samples(idle);
                        idle = (idle * 2).min(Duration::from_millis(20));
                    } else {
                        idle = Duration::from_micros(100);
                    }
                }
            });
        if let Ok(handle) = spawned {
            let _ = CONSUMER.set(handle.thread().clone());
        }
    });
}

/// Waits (up to 100 ms) until the drain thread has applied every record sent so far, so that a
/// snapshot sees them.
pub(crate) fn drain_now() {
    start();
    let (sent, _) = classtrack_shim::sample_counts();
    if let Some(consumer) = CONSUMER.get() {
        consumer.unpark();
    }
    let deadline = Instant::now() + Duration::from_millis(100);
    // The count of records received catches up with the count sent (received or queued)
    // then: those queued now have been applied.
    while classtrack_shim::samples_received() < sent && Instant::now() < deadline {
        std::thread::sleep(Duration::from_micros(50));
    }
}

/// The sites now (shared with the previous call when nothing changed).
pub(crate) fn table() -> Arc<[Site]> {
    let _g = OverheadGuard::new();
    drain_now();
    AGGREGATOR.lock().table()
}

/// Samples every allocation of `T`'s class from now on (scopes entered afterwards), or stops.
/// For small suspect classes: each allocation then costs a stack capture.
pub fn trace_every_allocation<T: ?Sized + 'static>(on: bool) {
    classtrack_shim::set_trace_all(crate::class_id_of::<T>(), on);
}

/// As [`trace_every_allocation`], for a class by name.
pub fn trace_every_allocation_named(name: &str, on: bool) {
    classtrack_shim::set_trace_all(crate::class_id_named(name), on);
}

/// Frames that belong to classtrack or to the allocator machinery, trimmed from the top.
fn is_machinery(function: &str) -> bool {
    const PREFIXES: [&str; 15] = [
        "backtrace::",
        "<backtrace::",
        "classtrack_shim::",
        "<classtrack_shim::",
        "classtrack::",
        "<classtrack::",
        "__rustc::",
        "__rust_alloc",
        "__rust_realloc",
        "__rdl_",
        "__rg_",
        "std::alloc::",
        "alloc::alloc::",
        "<alloc::alloc::Global",
        "alloc::raw_vec::",
    ];
    PREFIXES.iter().any(|p| function.starts_with(p)) || function.starts_with("<alloc::raw_vec::")
}

static SYMBOLS: LazyLock<Mutex<HashMap<usize, Arc<[Frame]>>>> = LazyLock::new(Default::default);

/// The frames at return address `ip` (several when calls were inlined), cached.
fn symbolize(ip: usize) -> Arc<[Frame]> {
    if let Some(f) = SYMBOLS.lock().get(&ip) {
        return f.clone();
    }
    let mut frames = Vec::new();
    // A return address points after the call: look up the call itself.
    backtrace::resolve(ip.saturating_sub(1) as *mut c_void, |sym| {
        frames.push(Frame {
            function: sym
                .name()
                .map_or_else(|| format!("{ip:#x}"), |n| format!("{n:#}")),
            file: sym.filename().map(|f| f.display().to_string()),
            line: sym.lineno(),
            inlined: true,
        });
    });
    if frames.is_empty() {
        frames.push(Frame {
            function: format!("{ip:#x}"),
            file: None,
            line: None,
            inlined: false,
        });
    }
    if let Some(last) = frames.last_mut() {
        last.inlined = false;
    }
    let frames: Arc<[Frame]> = frames.into();
    match SYMBOLS.lock().entry(ip) {
        Entry::Occupied(e) => e.get().clone(),
        Entry::Vacant(e) => e.insert(frames).clone(),
    }
}

/// A stack symbolized, innermost first, without the machinery at the top.
pub(crate) fn frames_of(stack: &[usize]) -> Vec<Frame> {
    let _g = OverheadGuard::new();
    let mut out: Vec<Frame> = Vec::new();
    'stack: for &ip in stack {
        for f in symbolize(ip).iter() {
            if out.is_empty() && is_machinery(&f.function) {
                continue;
            }
            // The runtime's frames below `main` (or a thread's closure) say nothing.
            if f.function.starts_with("std::rt::lang_start")
                || f.function
                    .starts_with("std::sys::backtrace::__rust_begin_short_backtrace")
            {
                break 'stack;
            }
            out.push(f.clone());
        }
    }
    out
}
