//! Platforms without a known way to ask for the thread's stack bounds, and Miri (which does not
//! model the stack words the walk reads).

/// On by default (under Miri sampling starts off anyway: see `sampling::MEAN`).
pub(crate) const SAMPLE_BY_DEFAULT: bool = true;

/// Unknown: the frame-pointer walk is never used, stacks go to the DWARF unwinder.
pub(crate) fn stack_top() -> Option<usize> {
    None
}
