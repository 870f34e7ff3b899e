//! What differs between platforms for the sampler, behind one small interface (the `cfg` is at
//! the module boundary, as in the standard library's `sys/`):
//! - [`stack_top`]: the highest address of the current thread's stack, from the platform's own
//!   call, for the frame-pointer walk (which reads only words inside the thread's stack);
//! - [`SAMPLE_BY_DEFAULT`]: whether allocation sites are sampled unless the program says
//!   otherwise (not where the platform unwinder may take a loader lock held by a thread that
//!   allocates: see `windows.rs`);
//! - [`FRAME_POINTERS_BY_ABI`]: whether the platform ABI keeps a frame record in every
//!   function, so that a frame-pointer walk is right for every binary.
//!
//! | platform | stack top | sampled by default | frame pointers by ABI |
//! |---|---|---|---|
//! | Linux, Android | `pthread_getattr_np` + `pthread_attr_getstack` | yes | no |
//! | macOS, iOS | `pthread_get_stackaddr_np` | yes | on AArch64 |
//! | Windows | `GetCurrentThreadStackLimits` | no | no |
//! | other (and Miri) | unknown: no frame-pointer walk | yes (no unwinder under Miri) | no |

#[cfg(all(any(target_os = "linux", target_os = "android"), not(miri)))]
#[path = "linux.rs"]
mod imp;

#[cfg(all(target_vendor = "apple", not(miri)))]
#[path = "macos.rs"]
mod imp;

#[cfg(all(windows, not(miri)))]
#[path = "windows.rs"]
mod imp;

#[cfg(any(
    miri,
    not(any(
        target_os = "linux",
        target_os = "android",
        target_vendor = "apple",
        windows
    ))
))]
#[path = "other.rs"]
mod imp;

pub(crate) use imp::{stack_top, SAMPLE_BY_DEFAULT};

/// Whether the platform ABI requires a frame record (saved frame pointer and return address,
/// chained through the frame-pointer register) in every function that calls another: Apple's
/// AArch64 ABI does ("the frame pointer register (x29) must always address a valid frame
/// record"), so a walk is right there for every binary, C libraries included, and
/// [`Unwinder::Auto`](crate::Unwinder::Auto) walks without asking the DWARF unwinder first.
pub(crate) const FRAME_POINTERS_BY_ABI: bool = cfg!(all(
    target_vendor = "apple",
    target_arch = "aarch64",
    not(miri)
));
