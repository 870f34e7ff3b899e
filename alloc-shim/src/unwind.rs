//! Stack capture for samples: the DWARF unwind tables, read through a cache of the rule for each
//! code address (see `cached.rs`; Linux on x86-64), or by the platform unwinder (libgcc's, about
//! 80 ns a frame); or a frame-pointer walk (a few nanoseconds a frame) for programs built with
//! frame pointers.
//!
//! The walk only ever reads words inside the current thread's stack (its top is asked of the
//! platform once per thread: see `platform`; where it cannot be known, no walk is made), so a
//! binary without frame pointers cannot make it fault; it can make it return a short or wrong
//! stack. So by default ([`Unwinder::Auto`]) the sampler walks frame pointers only if, when
//! it starts, a walk and the DWARF unwinder agree on the same stack (the program was built
//! with `-C force-frame-pointers=yes`; the standard library is built with frame pointers;
//! rustc keeps them by default on AArch64 Linux and on macOS); otherwise it uses DWARF. On Apple AArch64 the ABI keeps a frame record in every function,
//! so there `Auto` walks frame pointers without that check. A walk that yields fewer than two
//! frames falls back to DWARF.

use std::cell::Cell;
use std::sync::atomic::{AtomicU8, Ordering};

/// How samples capture their stacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unwinder {
    /// Frame pointers if the program was found to have them when sampling started (always on
    /// Apple AArch64, whose ABI keeps them), else DWARF. The default.
    Auto,
    /// The DWARF unwind tables: right for every binary. On Linux x86-64 the tables are read by
    /// a cached unwinder (each code address's rule parsed once) if, when sampling started, it
    /// agreed with the platform unwinder; stacks through code it does not know (a library
    /// loaded after sampling started) go to the platform unwinder.
    Dwarf,
    /// Walk the frame-pointer chain: much faster; right only for programs built with
    /// `RUSTFLAGS="-C force-frame-pointers=yes"`. Falls back to DWARF on other targets than
    /// x86-64 and AArch64, when the check made as sampling started found that walks disagree
    /// with the DWARF unwinder (a build without frame pointers, where a walk can skip the
    /// program's own frames: see [`frame_pointers_detected`]), and when the walk finds fewer
    /// than two frames.
    FramePointers,
    /// The platform's DWARF unwinder (`backtrace::trace_unsynchronized`) for every stack, with
    /// no cache: the slowest, for comparison.
    DwarfUncached,
}

static UNWINDER: AtomicU8 = AtomicU8::new(0);
/// What `Auto` found: 0 not checked yet, 1 frame pointers, 2 DWARF.
static DETECTED: AtomicU8 = AtomicU8::new(0);

/// Chooses how samples capture their stacks (default: [`Unwinder::Auto`]).
pub fn set_unwinder(u: Unwinder) {
    // Relaxed: a setting.
    UNWINDER.store(u as u8, Ordering::Relaxed);
}

/// How samples capture their stacks (as set; see [`frame_pointers_detected`] for `Auto`).
pub fn unwinder() -> Unwinder {
    // Relaxed: a setting.
    match UNWINDER.load(Ordering::Relaxed) {
        1 => Unwinder::Dwarf,
        2 => Unwinder::FramePointers,
        3 => Unwinder::DwarfUncached,
        _ => Unwinder::Auto,
    }
}

/// Whether the check made when sampling started found frame pointers (`None` before it ran).
pub fn frame_pointers_detected() -> Option<bool> {
    // Relaxed: a statistic, written once.
    match DETECTED.load(Ordering::Relaxed) {
        1 => Some(true),
        2 => Some(false),
        _ => None,
    }
}

/// Whether the cached DWARF unwinder is in use: it agreed with the platform unwinder when
/// sampling started (`None` before that check ran; then always `Some(false)` on platforms
/// without it: all but Linux on x86-64).
pub fn cached_dwarf_enabled() -> Option<bool> {
    crate::cached::enabled()
}

/// Stacks the cached DWARF unwinder handed to the platform unwinder: they ran through code
/// outside the modules loaded when sampling started, or every cache was busy.
pub fn cached_dwarf_fallbacks() -> u64 {
    crate::cached::fallbacks()
}

/// Sets up the cached DWARF unwinder and checks it against the platform's, then checks whether
/// frame-pointer walks agree with the DWARF unwinder here: at least three consecutive return
/// addresses the same. Called when sampling starts (from the sampler, so not re-entered on
/// this thread).
#[cfg_attr(miri, allow(dead_code))]
#[inline(never)]
pub(crate) fn detect() {
    crate::cached::init();
    crate::cached::check(dwarf, stack_top_cached());
    // Where the ABI keeps frame records (Apple's AArch64) a walk is right for every binary.
    let agree = crate::platform::FRAME_POINTERS_BY_ABI || frame_pointers_agree(4);
    // Relaxed: read with no other data depending on it.
    DETECTED.store(if agree { 1 } else { 2 }, Ordering::Relaxed);
}

/// Whether a frame-pointer walk from inside `depth` nested calls of this function finds the
/// frames the DWARF unwinder finds: its first three return addresses all into this function
/// (the recursive call), in the same order in the DWARF stack. Only this code's frames are
/// judged, so what the caller's stack happens to hold (frames of code that keeps a frame
/// pointer anyway) cannot pass for a build with frame pointers.
#[cfg_attr(miri, allow(dead_code))]
#[inline(never)]
fn frame_pointers_agree(depth: usize) -> bool {
    if depth > 0 {
        // Not a tail call: each level keeps its frame.
        return std::hint::black_box(frame_pointers_agree(std::hint::black_box(depth - 1)));
    }
    let mut walked = [0usize; 16];
    let mut unwound = [0usize; 32];
    let n = walk_frame_pointers(&mut walked);
    let m = dwarf(&mut unwound);
    n >= 3
        && walked[0] == walked[1]
        && walked[1] == walked[2]
        && unwound[..m].windows(3).any(|w| w == &walked[..3])
}

thread_local! {
    /// The highest address of this thread's stack (0: not asked yet; 1: unknown).
    static STACK_TOP: Cell<usize> = const { Cell::new(0) };
}

/// Fills `frames` with return addresses, innermost first; returns how many.
///
/// Must not be re-entered on a thread (the sampler guarantees it).
#[inline(always)]
pub(crate) fn capture(frames: &mut [usize]) -> usize {
    let walk = match unwinder() {
        // Not where walks were found wrong.
        Unwinder::FramePointers => frame_pointers_detected() != Some(false),
        Unwinder::Dwarf => false,
        Unwinder::DwarfUncached => return dwarf(frames),
        Unwinder::Auto => frame_pointers_detected() == Some(true),
    };
    if walk {
        let n = walk_frame_pointers(frames);
        if n >= 2 {
            return n;
        }
    }
    if let Some(n) = crate::cached::capture(frames, stack_top_cached()) {
        return n;
    }
    dwarf(frames)
}

/// Fills `frames` by the platform's DWARF unwinder.
#[cfg(not(miri))]
fn dwarf(frames: &mut [usize]) -> usize {
    let mut n = 0;
    // SAFETY: `trace_unsynchronized` requires that no other unwinding runs on this thread at
    // the same time: the sampler is never re-entered on a thread, and the closure neither
    // allocates nor unwinds.
    unsafe {
        backtrace::trace_unsynchronized(|frame| {
            frames[n] = frame.ip() as usize;
            n += 1;
            n < frames.len()
        })
    };
    n
}

/// Under Miri there is no unwinder (it reads memory and tables Miri does not model): stacks
/// are empty.
#[cfg(miri)]
fn dwarf(_: &mut [usize]) -> usize {
    0
}

/// The highest address of this thread's stack (1 if unknown), asked of the platform once.
#[inline(always)]
fn stack_top_cached() -> usize {
    match STACK_TOP.try_with(Cell::get).unwrap_or(1) {
        0 => stack_top(),
        top => top,
    }
}

/// Asks the platform for this thread's stack top (see `platform`) and keeps it.
#[cold]
fn stack_top() -> usize {
    let top = crate::platform::stack_top().unwrap_or(1);
    let _ = STACK_TOP.try_with(|t| t.set(top));
    top
}

#[cfg(all(any(target_arch = "x86_64", target_arch = "aarch64"), not(miri)))]
#[inline(always)]
fn walk_frame_pointers(frames: &mut [usize]) -> usize {
    let fp: usize;
    // SAFETY: reads the frame-pointer register into a local; no memory access.
    unsafe {
        #[cfg(target_arch = "x86_64")]
        std::arch::asm!("mov {}, rbp", out(reg) fp, options(nomem, nostack, preserves_flags));
        #[cfg(target_arch = "aarch64")]
        std::arch::asm!("mov {}, x29", out(reg) fp, options(nomem, nostack, preserves_flags));
    }
    let marker = 0u8;
    // Everything this thread may read lies between its current stack pointer and the top.
    let low = &marker as *const u8 as usize;
    let high = stack_top_cached();
    if high <= low {
        return 0;
    }
    let mut fp = fp;
    let mut n = 0;
    while n < frames.len() {
        if fp < low || fp > high - 16 || fp % std::mem::align_of::<usize>() != 0 {
            break;
        }
        // SAFETY: `fp` and `fp + 8` lie inside this thread's live stack (between the current
        // stack pointer and the stack's top) and are aligned, so both words are mapped and
        // readable; a frame record is (saved frame pointer, return address) on x86-64 and
        // AArch64.
        let (next, ret) = unsafe {
            (
                std::ptr::read(fp as *const usize),
                std::ptr::read((fp + 8) as *const usize),
            )
        };
        if ret == 0 {
            break;
        }
        frames[n] = ret;
        n += 1;
        // Frames grow towards the top: a chain that does not is not a chain.
        if next <= fp {
            break;
        }
        fp = next;
    }
    n
}

#[cfg(any(not(any(target_arch = "x86_64", target_arch = "aarch64")), miri))]
fn walk_frame_pointers(_: &mut [usize]) -> usize {
    0
}
