//! The cached DWARF unwinder (Linux on x86-64): the unwind tables (`.eh_frame_hdr` and
//! `.eh_frame`) of the modules loaded when sampling starts, read in place with gimli; the rule
//! found for each code address (where the caller's frame is, and where the return address and
//! saved frame pointer lie in it) is kept in a set-associative cache, so a stack seen before
//! unwinds at a few nanoseconds a frame, where the platform unwinder parses the tables again
//! every time. (A direct-mapped cache, as framehop's, was measured to thrash on 40-frame
//! stacks: two frames of one stack sharing a slot cost two table parses on every sample.)
//!
//! Safe by construction where it can be, checked where it cannot:
//! - it reads only memory that stays mapped: the tables of modules pinned when they are
//!   registered (`dlopen(RTLD_NOLOAD | RTLD_NODELETE)`, so they are never unloaded) or of the
//!   executable itself, and stack words between the current stack pointer and the thread's
//!   stack top;
//! - a stack that reaches code outside the registered modules (a library loaded later, JIT
//!   code), a signal frame, or a rule this cache cannot hold (a DWARF expression) is not
//!   trusted: the capture returns `None` and the caller uses the platform unwinder instead
//!   (counted in [`fallbacks`]);
//! - when sampling starts, a capture of the same stack by this unwinder and by the platform's
//!   must agree, or this unwinder is never used;
//! - it neither allocates nor locks: the tables are indexed once, up front, and the caches and
//!   gimli's evaluation contexts are allocated with them and claimed by a compare-and-swap; a
//!   thread that finds all of them busy uses the platform unwinder.

#[cfg(all(target_os = "linux", target_arch = "x86_64", not(miri)))]
mod imp {
    use std::cell::UnsafeCell;
    use std::ffi::{c_int, c_void, CStr, CString};
    use std::ops::Range;
    use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
    use std::sync::OnceLock;

    use gimli::{
        BaseAddresses, CfaRule, EhFrame, EhFrameHdr, EndianSlice, NativeEndian, ParsedEhFrameHdr,
        RegisterRule, UnwindContext, UnwindSection, X86_64,
    };

    /// Caches: enough for the threads of a busy process to sample at once without waiting.
    const SLOTS: usize = 4;
    /// Sets of each rule cache; each set holds `WAYS` rules (one 64-byte line).
    const SETS: usize = 512;
    const WAYS: usize = 4;

    type Bytes = EndianSlice<'static, NativeEndian>;

    /// The bytes `[addr, addr + len)` of a loaded module.
    ///
    /// # Safety
    /// The range must lie in the file-backed part of a loaded segment of a module that stays
    /// loaded for the rest of the process (pinned, or the executable): then it is mapped,
    /// readable and never written (read-only segments; `.eh_frame` is not relocated at run
    /// time), for `'static`.
    unsafe fn mapped(addr: u64, len: u64) -> &'static [u8] {
        // SAFETY: as the caller guarantees.
        unsafe { std::slice::from_raw_parts(addr as *const u8, len as usize) }
    }

    /// A registered module: its address range and its unwind tables.
    struct Tables {
        range: Range<u64>,
        bases: BaseAddresses,
        eh_frame: EhFrame<Bytes>,
        hdr: ParsedEhFrameHdr<Bytes>,
    }

    /// Where a function's caller frame is: the canonical frame address (CFA) is the stack
    /// pointer (or the frame pointer, with `FROM_BP`) plus `cfa_offset`; the return address
    /// lies at CFA - 8; the caller's frame pointer at CFA + `bp_offset` with `RESTORES_BP`,
    /// else it is unchanged.
    #[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
    struct Rule {
        cfa_offset: i32,
        bp_offset: i16,
        /// `FROM_BP`, `RESTORES_BP`, `END` (the root of the stack: no caller).
        flags: u8,
    }

    const FROM_BP: u8 = 1;
    const RESTORES_BP: u8 = 2;
    const END: u8 = 4;

    // A rule and its address in 16 bytes: a set of four is one 64-byte line.
    const _: () = assert!(std::mem::size_of::<Entry>() == 16);

    #[derive(Clone, Copy, Default)]
    struct Entry {
        /// The code address looked up (0: empty).
        address: u64,
        rule: Rule,
    }

    /// Rules by code address, `WAYS`-way set-associative; a new rule goes first in its set and
    /// the last one falls out.
    struct RuleCache {
        sets: Box<[[Entry; WAYS]; SETS]>,
    }

    impl RuleCache {
        fn new() -> Self {
            RuleCache {
                sets: Box::new([[Entry::default(); WAYS]; SETS]),
            }
        }

        #[inline(always)]
        fn set_of(address: u64) -> usize {
            (address.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - SETS.trailing_zeros())) as usize
        }

        /// The rule kept for `address` (never for 0, the mark of an empty entry).
        #[inline(always)]
        fn get(&self, address: u64) -> Option<Rule> {
            self.sets[Self::set_of(address)]
                .iter()
                .find(|e| e.address == address && address != 0)
                .map(|e| e.rule)
        }

        fn insert(&mut self, address: u64, rule: Rule) {
            let set = &mut self.sets[Self::set_of(address)];
            set.copy_within(0..WAYS - 1, 1);
            set[0] = Entry { address, rule };
        }
    }

    struct Slot {
        busy: AtomicBool,
        work: UnsafeCell<Work>,
    }

    /// What an unwind writes: its rule cache and gimli's evaluation context.
    struct Work {
        rules: RuleCache,
        context: Box<UnwindContext<usize>>,
    }

    // SAFETY: `work` is only used by the thread that switched `busy` from false to true, until
    // it stores false again (acquire on the claim, release on the release: each user sees its
    // predecessor's writes).
    unsafe impl Sync for Slot {}

    struct State {
        /// Sorted by address.
        modules: Vec<Tables>,
        /// The range of the module holding this code (usually the executable, where most
        /// frames are), looked at first.
        home: Range<u64>,
        slots: Box<[Slot]>,
    }

    impl State {
        #[inline(always)]
        fn module(&self, address: u64) -> Option<&Tables> {
            let i = self.modules.partition_point(|m| m.range.start <= address);
            let m = self.modules.get(i.checked_sub(1)?)?;
            (address < m.range.end).then_some(m)
        }

        #[inline(always)]
        fn knows(&self, address: u64) -> bool {
            self.home.contains(&address) || self.module(address).is_some()
        }

        /// The rule for code address `address`, from the tables; `None` if it has none this
        /// cache can hold (then the capture falls back to the platform unwinder).
        #[cold]
        fn rule(&self, address: u64, context: &mut UnwindContext<usize>) -> Option<Rule> {
            let m = self.module(address)?;
            let table = m.hdr.table()?;
            let fde = table
                .fde_for_address(&m.eh_frame, &m.bases, address, EhFrame::cie_from_offset)
                .ok()?;
            if fde.is_signal_trampoline() {
                return None;
            }
            let row = fde
                .unwind_info_for_address(&m.eh_frame, &m.bases, context, address)
                .ok()?;
            match row.register(X86_64::RA) {
                None | Some(RegisterRule::Undefined) => {
                    return Some(Rule {
                        flags: END,
                        ..Rule::default()
                    })
                }
                Some(RegisterRule::Offset(-8)) => {}
                Some(_) => return None,
            }
            let (from_bp, cfa_offset) = match *row.cfa() {
                CfaRule::RegisterAndOffset { register, offset } if register == X86_64::RSP => {
                    (false, offset)
                }
                CfaRule::RegisterAndOffset { register, offset } if register == X86_64::RBP => {
                    (true, offset)
                }
                _ => return None,
            };
            let (restores_bp, bp_offset) = match row.register(X86_64::RBP) {
                None | Some(RegisterRule::SameValue | RegisterRule::Undefined) => (false, 0),
                Some(RegisterRule::Offset(k)) => (true, i16::try_from(k).ok()?),
                Some(_) => return None,
            };
            Some(Rule {
                cfa_offset: i32::try_from(cfa_offset).ok()?,
                bp_offset,
                flags: if from_bp { FROM_BP } else { 0 }
                    | if restores_bp { RESTORES_BP } else { 0 },
            })
        }
    }

    static STATE: OnceLock<State> = OnceLock::new();
    /// Set in a forked child whose parent had a thread inside `init` (its `STATE` may never
    /// be finished): the child never sets this unwinder up.
    static ABANDONED: AtomicBool = AtomicBool::new(false);
    /// 0 not checked yet, 1 agreed with the platform unwinder, 2 did not (never used).
    static CHECKED: AtomicU8 = AtomicU8::new(0);
    static FALLBACKS: AtomicU64 = AtomicU64::new(0);

    /// A module found by `dl_iterate_phdr`.
    struct Found {
        name: CString,
        tables: Tables,
    }

    /// Reads a module's program headers: its address range and unwind tables.
    ///
    /// # Safety
    /// `info` must be what `dl_iterate_phdr` passed, during its callback; the tables are only
    /// used after the module is pinned.
    unsafe fn module_of(info: &libc::dl_phdr_info) -> Option<Found> {
        let base = info.dlpi_addr;
        if info.dlpi_phdr.is_null() {
            return None;
        }
        // SAFETY: the loader passes `dlpi_phnum` headers at `dlpi_phdr`.
        let phdrs = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) };
        let (mut lo, mut hi) = (u64::MAX, 0u64);
        let mut text = None;
        let mut hdr = None;
        for ph in phdrs {
            match ph.p_type {
                libc::PT_LOAD => {
                    lo = lo.min(ph.p_vaddr);
                    hi = hi.max(ph.p_vaddr + ph.p_memsz);
                    if ph.p_flags & libc::PF_X != 0 && text.is_none() {
                        text = Some(ph.p_vaddr);
                    }
                }
                libc::PT_GNU_EH_FRAME => hdr = Some(ph.p_vaddr..ph.p_vaddr + ph.p_memsz),
                _ => {}
            }
        }
        let (text, hdr) = (text?, hdr?);
        if lo >= hi {
            return None;
        }
        // How many bytes from `svma` on lie in the file-backed part of a loaded segment.
        let room = |svma: u64| -> Option<u64> {
            phdrs
                .iter()
                .find(|ph| {
                    ph.p_type == libc::PT_LOAD
                        && ph.p_vaddr <= svma
                        && svma < ph.p_vaddr + ph.p_filesz
                })
                .map(|ph| ph.p_vaddr + ph.p_filesz - svma)
        };
        let hdr_len = room(hdr.start)?.min(hdr.end - hdr.start);
        if hdr_len < 12 {
            return None;
        }
        // SAFETY: inside a loaded segment (`room`); pinned before use (see `init`).
        let hdr_bytes = unsafe { mapped(base + hdr.start, hdr_len) };
        // `.eh_frame_hdr`: version 1, then the encoding of the pointer to `.eh_frame`, which
        // follows at offset 4.
        if hdr_bytes[0] != 1 {
            return None;
        }
        let field = base + hdr.start + 4;
        let raw = match hdr_bytes[1] & 0x0f {
            0x03 => u32::from_le_bytes(hdr_bytes[4..8].try_into().ok()?) as i64,
            0x0b => i32::from_le_bytes(hdr_bytes[4..8].try_into().ok()?) as i64,
            0x04 | 0x0c => i64::from_le_bytes(hdr_bytes[4..12].try_into().ok()?),
            _ => return None,
        };
        let eh_frame_avma = match hdr_bytes[1] & 0x70 {
            0x00 => base.wrapping_add(raw as u64),
            0x10 => field.wrapping_add(raw as u64),
            _ => return None,
        };
        let eh_frame_svma = eh_frame_avma.checked_sub(base)?;
        // `.eh_frame` has no length of its own here: it runs at most to the end of its
        // segment, and entries are only ever found through the header's table.
        // SAFETY: inside a loaded segment (`room`); pinned before use (see `init`).
        let eh_frame_bytes = unsafe { mapped(eh_frame_avma, room(eh_frame_svma)?) };
        let bases = BaseAddresses::default()
            .set_eh_frame_hdr(base + hdr.start)
            .set_eh_frame(eh_frame_avma)
            .set_text(base + text);
        let parsed = EhFrameHdr::new(hdr_bytes, NativeEndian)
            .parse(&bases, 8)
            .ok()?;
        parsed.table()?;
        let name = if info.dlpi_name.is_null() {
            CString::default()
        } else {
            // SAFETY: the loader's name for the module, a C string (may be empty).
            unsafe { CStr::from_ptr(info.dlpi_name) }.to_owned()
        };
        Some(Found {
            name,
            tables: Tables {
                range: base + lo..base + hi,
                bases,
                eh_frame: EhFrame::new(eh_frame_bytes, NativeEndian),
                hdr: parsed,
            },
        })
    }

    unsafe extern "C" fn each_module(
        info: *mut libc::dl_phdr_info,
        _size: usize,
        data: *mut c_void,
    ) -> c_int {
        // SAFETY: `data` is the `Vec` `init` passed; `info` is valid during the callback.
        let (found, info) = unsafe { (&mut *(data as *mut Vec<Found>), &*info) };
        // SAFETY: during the callback, as `module_of` requires.
        if let Some(m) = unsafe { module_of(info) } {
            found.push(m);
        }
        0
    }

    /// Registers the loaded modules and allocates the caches (once; from the sampler's start,
    /// under the overhead guard).
    pub(crate) fn init() {
        // Relaxed: set before the fork by the only thread of the child.
        if ABANDONED.load(Ordering::Relaxed) {
            return;
        }
        STATE.get_or_init(|| {
            let mut found: Vec<Found> = Vec::new();
            // SAFETY: the callback only reads what the loader passes and pushes to `found`.
            unsafe {
                libc::dl_iterate_phdr(Some(each_module), &mut found as *mut Vec<Found> as *mut _)
            };
            let mut modules = Vec::new();
            for m in found {
                if !m.name.is_empty() {
                    // Pin the library so its tables stay mapped; one that cannot be pinned
                    // (already unloaded, or the vDSO) is left to the platform unwinder.
                    // SAFETY: a C string; RTLD_NOLOAD never loads anything new.
                    let handle = unsafe {
                        libc::dlopen(
                            m.name.as_ptr(),
                            libc::RTLD_LAZY | libc::RTLD_NOLOAD | libc::RTLD_NODELETE,
                        )
                    };
                    if handle.is_null() {
                        continue;
                    }
                }
                modules.push(m.tables);
            }
            modules.sort_by_key(|m| m.range.start);
            let here = init as fn() as usize as u64;
            let home = modules
                .iter()
                .find(|m| m.range.contains(&here))
                .map_or(0..0, |m| m.range.clone());
            let slots = (0..SLOTS)
                .map(|_| Slot {
                    busy: AtomicBool::new(false),
                    work: UnsafeCell::new(Work {
                        rules: RuleCache::new(),
                        context: Box::new(UnwindContext::new()),
                    }),
                })
                .collect();
            State {
                modules,
                home,
                slots,
            }
        });
    }

    /// Fills `frames` with return addresses, innermost first (the first entry is an address
    /// inside this function), reading the stack below `stack_top`. `None`: use the platform
    /// unwinder (not initialised, no free cache, or the stack leaves what this unwinder can
    /// follow).
    #[inline(never)]
    fn unwind(frames: &mut [usize], stack_top: usize) -> Option<usize> {
        let state = STATE.get()?;
        let (ip, sp, bp): (u64, u64, u64);
        // SAFETY: reads three registers into locals; no memory access. `ip` is the address of
        // the next instruction of this function, where the stack pointer is the one read here.
        unsafe {
            std::arch::asm!(
                "lea {ip}, [rip]",
                "mov {sp}, rsp",
                "mov {bp}, rbp",
                ip = out(reg) ip,
                sp = out(reg) sp,
                bp = out(reg) bp,
                options(nomem, nostack, preserves_flags)
            );
        }
        let high = stack_top as u64;
        if high <= sp + 8 {
            return None;
        }
        // Start at a slot picked by the stack's address, so threads tend to keep their own.
        let first = (sp >> 16) as usize;
        let slot = (0..SLOTS)
            .map(|i| &state.slots[(first + i) % SLOTS])
            // Acquire: see the cache as its last user (who released it) left it.
            .find(|s| {
                s.busy
                    .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            })?;
        // SAFETY: this thread claimed the slot above (see `Slot`).
        let work = unsafe { &mut *slot.work.get() };
        // Everything an unwind may read lies between the current stack pointer and the top.
        let read = |addr: u64| -> Option<u64> {
            if addr < sp || addr > high - 8 || addr % 8 != 0 {
                return None;
            }
            // SAFETY: an aligned word inside this thread's live stack, so mapped and readable.
            Some(unsafe { std::ptr::read(addr as *const u64) })
        };
        let (mut pc, mut at_sp, mut at_bp) = (ip, sp, bp);
        let mut n = 0;
        let mut trusted = true;
        while n < frames.len() {
            if !state.knows(pc) {
                trusted = false;
                break;
            }
            frames[n] = pc as usize;
            // A return address points after the call: its rule is the call's (`pc - 1`).
            let lookup = if n == 0 { pc } else { pc - 1 };
            n += 1;
            let rule = match work.rules.get(lookup) {
                Some(rule) => rule,
                None => match state.rule(lookup, &mut work.context) {
                    Some(rule) => {
                        work.rules.insert(lookup, rule);
                        rule
                    }
                    None => {
                        trusted = false;
                        break;
                    }
                },
            };
            if rule.flags & END != 0 {
                break;
            }
            let cfa = if rule.flags & FROM_BP != 0 {
                at_bp
            } else {
                at_sp
            }
            .wrapping_add(rule.cfa_offset as i64 as u64);
            // Words outside the stack end what can be known; a frame must lie above the last.
            let Some(ret) = read(cfa.wrapping_sub(8)) else {
                break;
            };
            let caller_bp = if rule.flags & RESTORES_BP != 0 {
                match read(cfa.wrapping_add(rule.bp_offset as i64 as u64)) {
                    Some(v) => v,
                    None => break,
                }
            } else {
                at_bp
            };
            if ret == 0 || cfa <= at_sp {
                break;
            }
            (pc, at_sp, at_bp) = (ret, cfa, caller_bp);
        }
        // Release: the next user of this slot sees what this unwind wrote to it.
        slot.busy.store(false, Ordering::Release);
        (trusted && n >= 2).then_some(n)
    }

    /// In a forked child whose parent was setting this unwinder up: never set it up (the
    /// vanished thread's `OnceLock` would be waited for forever).
    pub(crate) fn abandon() {
        // Relaxed: the child has one thread.
        ABANDONED.store(true, Ordering::Relaxed);
    }

    /// In a forked child: releases the caches that threads of the parent had claimed (they
    /// vanished mid-unwind; the forking thread itself was not unwinding). No allocation, no
    /// lock.
    pub(crate) fn after_fork_in_child() {
        if let Some(state) = STATE.get() {
            for slot in state.slots.iter() {
                // Release: as a slot's user releases it.
                slot.busy.store(false, Ordering::Release);
            }
        }
    }

    /// Like `unwind`, once the start-up check has passed; counts fallbacks.
    #[inline(always)]
    pub(crate) fn capture(frames: &mut [usize], stack_top: usize) -> Option<usize> {
        // Relaxed: written once, before any sample is sent; a stale 0 only means a fallback.
        if CHECKED.load(Ordering::Relaxed) != 1 {
            return None;
        }
        let r = unwind(frames, stack_top);
        if r.is_none() {
            // Relaxed: a statistic (off the hot path, and rare).
            FALLBACKS.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    /// Captures this stack by this unwinder and by the platform's (`platform`, called from
    /// here) and enables this unwinder if both see the same frames below this function.
    #[inline(never)]
    pub(crate) fn check(platform: fn(&mut [usize]) -> usize, stack_top: usize) -> bool {
        let mut ours = [0usize; 64];
        let mut theirs = [0usize; 64];
        let n = unwind(&mut ours, stack_top).unwrap_or(0);
        let m = platform(&mut theirs);
        let ok = super::same_below(&ours[..n], &theirs[..m]);
        // Relaxed: read with no other data depending on it.
        CHECKED.store(if ok { 1 } else { 2 }, Ordering::Relaxed);
        ok
    }

    /// Whether the start-up check passed (`None` before it ran).
    pub(crate) fn enabled() -> Option<bool> {
        // Relaxed: a statistic, written once.
        match CHECKED.load(Ordering::Relaxed) {
            1 => Some(true),
            2 => Some(false),
            _ => None,
        }
    }

    /// Stacks this unwinder left to the platform's.
    pub(crate) fn fallbacks() -> u64 {
        // Relaxed: a statistic.
        FALLBACKS.load(Ordering::Relaxed)
    }

    #[cfg(test)]
    mod tests {
        use super::{Rule, RuleCache, WAYS};

        #[test]
        fn rule_cache_keeps_the_last_rules_of_a_set() {
            let mut c = RuleCache::new();
            let set = RuleCache::set_of(0x1000);
            // Addresses of the same set as 0x1000.
            let same: Vec<u64> = (0x1000u64..)
                .filter(|&a| RuleCache::set_of(a) == set)
                .take(WAYS + 1)
                .collect();
            for (i, &a) in same.iter().enumerate() {
                let rule = Rule {
                    cfa_offset: i as i32 * 8,
                    ..Rule::default()
                };
                c.insert(a, rule);
                assert_eq!(c.get(a), Some(rule));
            }
            // The first of WAYS + 1 fell out; the others stay.
            assert_eq!(c.get(same[0]), None);
            for (i, &a) in same.iter().enumerate().skip(1) {
                assert_eq!(c.get(a).map(|r| r.cfa_offset), Some(i as i32 * 8));
            }
            assert_eq!(
                c.get(0),
                None,
                "an empty entry never matches a real address"
            );
        }
    }
}

/// Elsewhere there is no cached unwinder: every stack goes to the platform unwinder (or the
/// frame-pointer walk).
#[cfg(not(all(target_os = "linux", target_arch = "x86_64", not(miri))))]
mod imp {
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Whether `check` ran: sampling started and set the unwinders up.
    static CHECKED: AtomicBool = AtomicBool::new(false);

    pub(crate) fn init() {}
    pub(crate) fn abandon() {}
    pub(crate) fn after_fork_in_child() {}
    pub(crate) fn capture(_: &mut [usize], _: usize) -> Option<usize> {
        None
    }
    pub(crate) fn check(_: fn(&mut [usize]) -> usize, _: usize) -> bool {
        // Relaxed: a statistic, read with no other data depending on it.
        CHECKED.store(true, Ordering::Relaxed);
        false
    }
    /// As on Linux x86-64: `None` until sampling started, then never enabled.
    pub(crate) fn enabled() -> Option<bool> {
        // Relaxed: see `check`.
        CHECKED.load(Ordering::Relaxed).then_some(false)
    }
    pub(crate) fn fallbacks() -> u64 {
        0
    }
}

pub(crate) use imp::{abandon, after_fork_in_child, capture, check, enabled, fallbacks, init};

/// Whether two captures of the same stack, made from different places in one function,
/// agree below it: from the first return address of `ours` (after its own frame) found in
/// `theirs`, the rest of the stacks match, at least three frames, with at most one extra frame
/// at the root on either side.
#[cfg_attr(
    not(all(target_os = "linux", target_arch = "x86_64", not(miri))),
    allow(dead_code)
)]
pub(crate) fn same_below(ours: &[usize], theirs: &[usize]) -> bool {
    for (i, ip) in ours.iter().enumerate().skip(1) {
        if let Some(j) = theirs.iter().position(|t| t == ip) {
            let (a, b) = (&ours[i..], &theirs[j..]);
            let k = a.len().min(b.len());
            return k >= 3 && a[..k] == b[..k] && a.len().abs_diff(b.len()) <= 1;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::same_below;

    #[test]
    fn agreement_needs_the_same_frames_below() {
        assert!(same_below(&[9, 1, 2, 3, 4], &[7, 8, 1, 2, 3, 4]));
        assert!(same_below(&[9, 1, 2, 3, 4], &[7, 1, 2, 3, 4, 5]));
        assert!(!same_below(&[9, 1, 2, 3, 4], &[7, 1, 2, 6, 4]));
        assert!(!same_below(&[9, 1, 2], &[1, 2]));
        assert!(!same_below(&[9, 1, 2, 3], &[5, 6, 7]));
        assert!(!same_below(&[9, 1, 2, 3, 4, 5, 6], &[1, 2, 3]));
    }
}
