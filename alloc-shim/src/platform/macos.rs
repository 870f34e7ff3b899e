//! macOS and the other Apple platforms.

/// Sampling is on by default: on AArch64 stacks are walked by frame pointers (the ABI keeps
/// them), elsewhere by the system's libunwind through the `backtrace` crate, which neither
/// allocates nor waits on a lock a thread holds while it allocates once warmed up.
pub(crate) const SAMPLE_BY_DEFAULT: bool = true;

/// The highest address of the current thread's stack: `pthread_get_stackaddr_np` gives the
/// stack's base, which on Apple platforms is its top (the stack grows down from it).
#[cold]
pub(crate) fn stack_top() -> Option<usize> {
    // SAFETY: `pthread_self` is always valid for the calling thread; the call reads the
    // thread's own descriptor, takes no lock and allocates nothing.
    let top = unsafe { libc::pthread_get_stackaddr_np(libc::pthread_self()) } as usize;
    (top != 0).then_some(top)
}
