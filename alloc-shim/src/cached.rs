//! The cached DWARF unwinder (Linux on x86-64): the unwind tables (`.eh_frame_hdr` and
//! `.eh_frame`) of the modules loaded when sampling starts, read in place by framehop, with the
//! rule found for each code address kept in a cache, so that a stack seen before unwinds at a
//! few nanoseconds a frame, where the platform unwinder parses the tables again every time.
//!
//! Safe by construction where it can be, checked where it cannot:
//! - it reads only memory that stays mapped: the tables of modules pinned when they are
//!   registered (`dlopen(RTLD_NOLOAD | RTLD_NODELETE)`, so they are never unloaded) or of the
//!   executable itself, and stack words between the current stack pointer and the thread's
//!   stack top;
//! - a stack that reaches code outside the registered modules (a library loaded later, JIT
//!   code) is not trusted: the capture returns `None` and the caller uses the platform
//!   unwinder instead (counted in [`fallbacks`]);
//! - when sampling starts, a capture of the same stack by this unwinder and by the platform's
//!   must agree, or this unwinder is never used;
//! - it neither allocates nor locks: the unwinder is built once, up front, and the caches (with
//!   room for the DWARF evaluation, `MustNotAllocateDuringUnwind`) are allocated with it and
//!   claimed by a compare-and-swap; a thread that finds all of them busy uses the platform
//!   unwinder.

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod imp {
    use std::cell::UnsafeCell;
    use std::ffi::{c_int, c_void, CStr, CString};
    use std::ops::{Deref, Range};
    use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
    use std::sync::OnceLock;

    use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64};
    use framehop::{ExplicitModuleSectionInfo, Module, MustNotAllocateDuringUnwind, Unwinder};

    /// Caches: enough for the threads of a busy process to sample at once without waiting.
    const SLOTS: usize = 8;

    /// Bytes of a loaded module, read in place.
    #[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
    pub(super) struct Mapped {
        addr: usize,
        len: usize,
    }

    impl Deref for Mapped {
        type Target = [u8];
        fn deref(&self) -> &[u8] {
            if self.len == 0 {
                return &[];
            }
            // SAFETY: a `Mapped` is made only from the file-backed part of a loaded segment of
            // a module that stays loaded for the rest of the process (pinned, or the
            // executable), so the range is mapped, readable and never written (read-only
            // segments; `.eh_frame` is not relocated at run time).
            unsafe { std::slice::from_raw_parts(self.addr as *const u8, self.len) }
        }
    }

    type Cache = CacheX86_64<MustNotAllocateDuringUnwind>;

    struct Slot {
        busy: AtomicBool,
        cache: UnsafeCell<Cache>,
    }

    // SAFETY: `cache` is only used by the thread that switched `busy` from false to true, until
    // it stores false again (acquire on the claim, release on the release: each user sees its
    // predecessor's writes).
    unsafe impl Sync for Slot {}

    struct State {
        unwinder: UnwinderX86_64<Mapped, MustNotAllocateDuringUnwind>,
        /// The registered modules' address ranges, sorted by start.
        ranges: Vec<Range<u64>>,
        /// The range of the module holding this code (usually the executable, where most
        /// frames are), looked at first.
        home: Range<u64>,
        slots: Box<[Slot]>,
    }

    impl State {
        #[inline(always)]
        fn knows(&self, address: u64) -> bool {
            if self.home.contains(&address) {
                return true;
            }
            let i = self.ranges.partition_point(|r| r.start <= address);
            i > 0 && address < self.ranges[i - 1].end
        }
    }

    static STATE: OnceLock<State> = OnceLock::new();
    /// 0 not checked yet, 1 agreed with the platform unwinder, 2 did not (never used).
    static CHECKED: AtomicU8 = AtomicU8::new(0);
    static FALLBACKS: AtomicU64 = AtomicU64::new(0);

    /// A module found by `dl_iterate_phdr`.
    struct Found {
        name: CString,
        avma: Range<u64>,
        base: u64,
        info: ExplicitModuleSectionInfo<Mapped>,
    }

    /// Reads a module's program headers: its address range, code segment and unwind tables.
    ///
    /// # Safety
    /// `info` must be what `dl_iterate_phdr` passed, during its callback.
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
                        text = Some(ph.p_vaddr..ph.p_vaddr + ph.p_filesz);
                    }
                }
                libc::PT_GNU_EH_FRAME => hdr = Some(ph.p_vaddr..ph.p_vaddr + ph.p_memsz),
                _ => {}
            }
        }
        let (text, hdr) = (text?, hdr?);
        if lo >= hi || hdr.end - hdr.start < 8 {
            return None;
        }
        // The file-backed part of the loaded segment holding `svma`, from `svma` on.
        let in_segment = |svma: u64| -> Option<Mapped> {
            phdrs
                .iter()
                .find(|ph| {
                    ph.p_type == libc::PT_LOAD
                        && ph.p_vaddr <= svma
                        && svma < ph.p_vaddr + ph.p_filesz
                })
                .map(|ph| Mapped {
                    addr: (base + svma) as usize,
                    len: (ph.p_vaddr + ph.p_filesz - svma) as usize,
                })
        };
        let hdr_bytes = in_segment(hdr.start)?;
        let hdr_bytes = Mapped {
            len: hdr_bytes.len.min((hdr.end - hdr.start) as usize),
            ..hdr_bytes
        };
        // `.eh_frame_hdr`: version 1, then the encoding of the pointer to `.eh_frame`, which
        // follows at offset 4.
        let h: &[u8] = &hdr_bytes;
        if h.len() < 12 || h[0] != 1 {
            return None;
        }
        let field = base + hdr.start + 4;
        let raw = match h[1] & 0x0f {
            0x03 => u32::from_le_bytes(h[4..8].try_into().ok()?) as i64,
            0x0b => i32::from_le_bytes(h[4..8].try_into().ok()?) as i64,
            0x04 | 0x0c => i64::from_le_bytes(h[4..12].try_into().ok()?),
            _ => return None,
        };
        let eh_frame_avma = match h[1] & 0x70 {
            0x00 => base.wrapping_add(raw as u64),
            0x10 => field.wrapping_add(raw as u64),
            _ => return None,
        };
        let eh_frame_svma = eh_frame_avma.checked_sub(base)?;
        // `.eh_frame` has no length of its own here: it runs at most to the end of its
        // segment, and entries are only ever found through the header's table.
        let eh_frame = in_segment(eh_frame_svma)?;
        let text_bytes = in_segment(text.start)?;
        let name = if info.dlpi_name.is_null() {
            CString::default()
        } else {
            // SAFETY: the loader's name for the module, a C string (may be empty).
            unsafe { CStr::from_ptr(info.dlpi_name) }.to_owned()
        };
        Some(Found {
            name,
            avma: base + lo..base + hi,
            base,
            info: ExplicitModuleSectionInfo {
                base_svma: 0,
                text_svma: Some(text.start..text.start + text_bytes.len as u64),
                text: Some(text_bytes),
                eh_frame_svma: Some(eh_frame_svma..eh_frame_svma + eh_frame.len as u64),
                eh_frame: Some(eh_frame),
                eh_frame_hdr_svma: Some(hdr.start..hdr.start + hdr_bytes.len as u64),
                eh_frame_hdr: Some(hdr_bytes),
                ..Default::default()
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
        STATE.get_or_init(|| {
            let mut found: Vec<Found> = Vec::new();
            // SAFETY: the callback only reads what the loader passes and pushes to `found`.
            unsafe {
                libc::dl_iterate_phdr(Some(each_module), &mut found as *mut Vec<Found> as *mut _)
            };
            let mut unwinder = UnwinderX86_64::new();
            let mut ranges = Vec::new();
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
                ranges.push(m.avma.clone());
                let name = m.name.to_string_lossy().into_owned();
                unwinder.add_module(Module::new(name, m.avma, m.base, m.info));
            }
            ranges.sort_by_key(|r| r.start);
            let here = init as fn() as usize as u64;
            let home = ranges
                .iter()
                .find(|r| r.contains(&here))
                .cloned()
                .unwrap_or(0..0);
            let slots = (0..SLOTS)
                .map(|_| Slot {
                    busy: AtomicBool::new(false),
                    cache: UnsafeCell::new(Cache::new_in()),
                })
                .collect();
            State {
                unwinder,
                ranges,
                home,
                slots,
            }
        });
    }

    /// Fills `frames` with return addresses, innermost first (the first entry is an address
    /// inside this function), reading the stack below `stack_top`. `None`: use the platform
    /// unwinder (not initialised, no free cache, or the stack leaves the registered modules).
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
        // Everything an unwind may read lies between the current stack pointer and the top.
        let mut read_stack = |addr: u64| -> Result<u64, ()> {
            if addr < sp || addr > high - 8 || addr % 8 != 0 {
                return Err(());
            }
            // SAFETY: an aligned word inside this thread's live stack, so mapped and readable.
            Ok(unsafe { std::ptr::read(addr as *const u64) })
        };
        // SAFETY: this thread claimed the slot above (see `Slot`).
        let cache = unsafe { &mut *slot.cache.get() };
        let mut iter = state.unwinder.iter_frames(
            ip,
            UnwindRegsX86_64::new(ip, sp, bp),
            cache,
            &mut read_stack,
        );
        let mut n = 0;
        let mut trusted = true;
        while n < frames.len() {
            match iter.next() {
                Ok(Some(frame)) => {
                    let address = frame.address();
                    if !state.knows(address) {
                        trusted = false;
                        break;
                    }
                    frames[n] = address as usize;
                    n += 1;
                }
                // The stack's root, or a word outside the stack: the end of what can be known.
                Ok(None) | Err(_) => break,
            }
        }
        // Release: the next user of this cache sees what this unwind wrote to it.
        slot.busy.store(false, Ordering::Release);
        (trusted && n >= 2).then_some(n)
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
}

#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
mod imp {
    pub(crate) fn init() {}
    pub(crate) fn capture(_: &mut [usize], _: usize) -> Option<usize> {
        None
    }
    pub(crate) fn check(_: fn(&mut [usize]) -> usize, _: usize) -> bool {
        false
    }
    pub(crate) fn enabled() -> Option<bool> {
        Some(false)
    }
    pub(crate) fn fallbacks() -> u64 {
        0
    }
}

pub(crate) use imp::{capture, check, enabled, fallbacks, init};

/// Whether two captures of the same stack, made from different places in one function,
/// agree below it: from the first return address of `ours` (after its own frame) found in
/// `theirs`, the rest of the stacks match, at least three frames, with at most one extra frame
/// at the root on either side.
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
