//! Windows.

/// Sampling is off by default on Windows ([`set_sample_mean`](crate::set_sample_mean) turns it
/// on). The `backtrace` crate unwinds there with `RtlLookupFunctionEntry` and
/// `RtlVirtualUnwind` (not `dbghelp`), which allocate nothing, but `RtlLookupFunctionEntry`
/// takes the loader's inverted-function-table lock (shared), which `LoadLibrary` and
/// `FreeLibrary` hold exclusively: a sample taken while another thread loads or unloads a
/// library waits for it, and a thread that allocates while it holds that lock (a hooked or
/// instrumented loader) would deadlock with a sampler waiting on it. That is no lock-free hot
/// path, so sampling is the program's choice here. Exact per-class accounting is unaffected.
pub(crate) const SAMPLE_BY_DEFAULT: bool = false;

/// The highest address of the current thread's stack, from `GetCurrentThreadStackLimits`.
#[cold]
pub(crate) fn stack_top() -> Option<usize> {
    let mut low = 0usize;
    let mut high = 0usize;
    // SAFETY: both out-pointers are valid, writable locals; the call reads the thread's own
    // environment block, takes no lock and allocates nothing.
    unsafe {
        windows_sys::Win32::System::Threading::GetCurrentThreadStackLimits(&mut low, &mut high)
    };
    (high > low).then_some(high)
}
