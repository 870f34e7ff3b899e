//! Linux (glibc, musl) and Android.

/// Sampling is on by default: the platform unwinder (libgcc's, or the cached one on x86-64)
/// neither allocates through the global allocator nor waits on a lock a thread holds while it
/// allocates (see `sampling::warm_up` for its first use).
pub(crate) const SAMPLE_BY_DEFAULT: bool = true;

/// The highest address of the current thread's stack, from `pthread_getattr_np`; `None` if
/// pthreads cannot tell.
///
/// Cold: called once per thread. For the main thread glibc reads `/proc/self/maps` and may call
/// its own `malloc`, never the global allocator.
#[cold]
pub(crate) fn stack_top() -> Option<usize> {
    // SAFETY: `attr` is initialised by `pthread_getattr_np` before use and destroyed after (it
    // is not used when that call fails); the out-pointers are valid locals.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return None;
        }
        let mut addr: *mut libc::c_void = std::ptr::null_mut();
        let mut size: libc::size_t = 0;
        let ok = libc::pthread_attr_getstack(&attr, &mut addr, &mut size) == 0;
        libc::pthread_attr_destroy(&mut attr);
        ok.then(|| addr as usize + size)
    }
}
