//! [`TrackingAlloc`]: the wrapping global allocator.

use std::alloc::{GlobalAlloc, Layout};
use std::ptr;

use crate::local::{
    count, count_alloc, countdown, current_measurement, fast_alloc, fast_free, fast_give_back,
    fast_take, fast_untake, rearm,
};
use crate::measure::{self, MEASURE_MASK, MEASURE_SHIFT};
use crate::objects::count_object;
use crate::sampling;
use crate::shard::Event;
use crate::{ClassId, Tag, SAMPLED_BIT};

/// Bytes of metadata after each block: the block's [`Tag`], little-endian, unaligned.
pub(crate) const TRAILER: usize = 8;

/// The largest alignment [`TrackingAlloc::alloc`] serves inline; at most [`TRAILER`], so that
/// the grown size of a block so aligned is never below its alignment.
const SMALL_ALIGN: usize = TRAILER;

/// A [`GlobalAlloc`] that wraps another and charges every block to the class scope that was
/// current on the allocating thread.
///
/// Each block carries its owner in an 8-byte trailer after the user's bytes, so alignment is
/// never padded for metadata and a free, on any thread, credits the class that allocated the
/// block. `realloc` keeps the block's owner and uses the inner allocator's `realloc`, so
/// in-place growth stays possible.
///
/// ```
/// use std::alloc::System;
/// use classtrack_shim::TrackingAlloc;
///
/// #[global_allocator]
/// static ALLOC: TrackingAlloc<System> = TrackingAlloc::new(System);
///
/// let v = vec![1u8; 100];
/// assert_eq!(v.len(), 100);
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct TrackingAlloc<A> {
    inner: A,
}

impl<A> TrackingAlloc<A> {
    /// Wraps `inner`. A `const fn`, so it can initialise a `#[global_allocator]` static.
    pub const fn new(inner: A) -> Self {
        TrackingAlloc { inner }
    }

    /// The wrapped allocator.
    pub const fn inner(&self) -> &A {
        &self.inner
    }
}

/// The layout asked of the inner allocator for a user layout of `size` and `align`, or `None`
/// when adding the trailer would overflow what a `Layout` can describe.
#[inline(always)]
fn outer(size: usize, align: usize) -> Option<Layout> {
    // A valid layout needs size rounded up to align <= isize::MAX; this bound keeps
    // `size + TRAILER` rounded up within it.
    if size > isize::MAX as usize - TRAILER - (align - 1) {
        return None;
    }
    // SAFETY: `align` comes from a valid `Layout` (a non-zero power of two) and the bound above
    // keeps the rounded size within isize::MAX.
    Some(unsafe { Layout::from_size_align_unchecked(size + TRAILER, align) })
}

/// Writes the tag word `bits` in the trailer of the block at `p` whose user size is `size`.
///
/// # Safety
/// `p` must point to a live block of at least `size + TRAILER` bytes.
#[inline(always)]
unsafe fn write_bits(p: *mut u8, size: usize, bits: u64) {
    // SAFETY: the caller guarantees `size + TRAILER` bytes at `p`; the write is unaligned.
    unsafe { ptr::write_unaligned(p.add(size).cast::<u64>(), bits.to_le()) }
}

/// Reads the tag word in the trailer of the block at `p` whose user size is `size`.
///
/// # Safety
/// `p` must point to a live block allocated by [`TrackingAlloc`] with user size `size`.
#[inline(always)]
unsafe fn read_bits(p: *const u8, size: usize) -> u64 {
    // SAFETY: the block was allocated with `size + TRAILER` bytes and its trailer written at
    // allocation (or resize); the read is unaligned.
    u64::from_le(unsafe { ptr::read_unaligned(p.add(size).cast::<u64>()) })
}

impl<A: GlobalAlloc> TrackingAlloc<A> {
    /// `alloc` and `alloc_zeroed`. A block aligned to at most [`SMALL_ALIGN`] (nearly every
    /// block) takes [`Self::alloc_fast`] inlined here, where the alignment is known to be small
    /// and the grown size at least that alignment, so that an inner allocator's own test for
    /// such layouts (`System`'s choice between `malloc` and `posix_memalign`) folds away. A
    /// larger alignment takes the same code out of line.
    #[inline(always)]
    unsafe fn alloc_with(&self, layout: Layout, zeroed: bool) -> *mut u8 {
        if layout.align() <= SMALL_ALIGN {
            // SAFETY: forwarded caller contract.
            unsafe { self.alloc_fast(layout, zeroed) }
        } else if zeroed {
            // SAFETY: forwarded caller contract.
            unsafe { self.alloc_aligned::<true>(layout) }
        } else {
            // SAFETY: forwarded caller contract.
            unsafe { self.alloc_aligned::<false>(layout) }
        }
    }

    /// [`Self::alloc_fast`] for an alignment above [`SMALL_ALIGN`], out of line.
    ///
    /// # Safety
    /// As `GlobalAlloc::alloc`.
    #[inline(never)]
    unsafe fn alloc_aligned<const ZEROED: bool>(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded caller contract.
        unsafe { self.alloc_fast(layout, ZEROED) }
    }

    /// The common case takes one test before the inner call (the block fits in the thread's
    /// fast countdown, which every rare case empties) and, after it, two counter stores and
    /// the trailer; everything else is in [`Self::alloc_slow`].
    ///
    /// # Safety
    /// As `GlobalAlloc::alloc`.
    #[inline(always)]
    unsafe fn alloc_fast(&self, layout: Layout, zeroed: bool) -> *mut u8 {
        let size = layout.size();
        if !fast_take(size) {
            // SAFETY: forwarded caller contract.
            return unsafe { self.alloc_slow(layout, zeroed) };
        }
        // SAFETY: `fast_take` accepts only sizes below `FAST_LEFT_MAX`, so `size + TRAILER`
        // does not overflow and, rounded up to `layout.align()`, stays within isize::MAX (see
        // `FAST_LEFT_MAX`); `layout.align()` is a non-zero power of two. (The unchecked
        // addition tells the compiler that the grown size is at least `TRAILER`.)
        let outer = unsafe {
            Layout::from_size_align_unchecked(size.unchecked_add(TRAILER), layout.align())
        };
        // SAFETY: `outer` is a valid layout with non-zero size (at least TRAILER bytes).
        let p = unsafe {
            if zeroed {
                self.inner.alloc_zeroed(outer)
            } else {
                self.inner.alloc(outer)
            }
        };
        if p.is_null() {
            fast_give_back(size);
            return p;
        }
        let bits = fast_alloc(size);
        // SAFETY: `p` is a fresh block of `outer.size() = size + TRAILER` bytes.
        unsafe { write_bits(p, size, bits) };
        p
    }

    /// An allocation off the fast path: a sample point due, a tracked object, a class traced
    /// entirely or off the thread's cached counter page, a thread without its own counters,
    /// or a size beyond the fast countdown.
    ///
    /// # Safety
    /// As `GlobalAlloc::alloc`.
    #[cold]
    #[inline(never)]
    unsafe fn alloc_slow(&self, layout: Layout, zeroed: bool) -> *mut u8 {
        fast_untake(layout.size());
        let Some(outer) = outer(layout.size(), layout.align()) else {
            return ptr::null_mut();
        };
        // SAFETY: `outer` is a valid layout with non-zero size (at least TRAILER bytes).
        let p = unsafe {
            if zeroed {
                self.inner.alloc_zeroed(outer)
            } else {
                self.inner.alloc(outer)
            }
        };
        if p.is_null() {
            return p;
        }
        let (tag, look, trace_all) = count_alloc(layout.size());
        count_object(tag.object, Event::Alloc(layout.size()));
        let mut bits = tag.to_bits();
        let measure = current_measurement();
        if measure != 0 && tag.class != ClassId::OVERHEAD {
            measure::count(measure, tag.class, Event::Alloc(layout.size()));
            bits |= (measure as u64) << MEASURE_SHIFT;
        }
        if look && sampling::on_countdown(p as usize, layout.size(), None, tag, trace_all) {
            bits |= SAMPLED_BIT;
        }
        // SAFETY: `p` is a fresh block of `outer.size() = size + TRAILER` bytes.
        unsafe { write_bits(p, layout.size(), bits) };
        rearm();
        p
    }
}

impl<A: GlobalAlloc> TrackingAlloc<A> {
    /// A resize of a measured block, or on a measured thread: counted in the block's
    /// measurement; or, for a block of another measurement (or none) resized by a thread that
    /// works for measurement `now`, a free there and a new block of `now`'s (the resize is
    /// work of the measured code). Returns the new block's tag word.
    #[cold]
    #[inline(never)]
    fn realloc_measured(
        bits: u64,
        new_bits: u64,
        tag: Tag,
        old: usize,
        new: usize,
        now: u8,
    ) -> u64 {
        let was = measure::id_of(bits);
        if was == now || now == 0 || tag.class == ClassId::OVERHEAD {
            measure::count(was, tag.class, Event::Resize(old, new));
            return new_bits;
        }
        if was != 0 {
            measure::count(was, tag.class, Event::Free(old));
        }
        measure::count(now, tag.class, Event::Alloc(new));
        (new_bits & !MEASURE_MASK) | (now as u64) << MEASURE_SHIFT
    }

    /// `dealloc` of a block of a tracked object, or sampled, or of another class than the
    /// current one (or on a thread whose fast path is off).
    ///
    /// # Safety
    /// As `GlobalAlloc::dealloc`; `bits` is the block's tag word, and nothing was counted for
    /// this free yet.
    #[inline(never)]
    unsafe fn dealloc_slow(&self, ptr: *mut u8, layout: Layout, bits: u64) {
        let tag = Tag::from_bits(bits);
        // Reported before the block is handed back, so that no reuse of the address can be
        // reported before this free. The block is the caller's until then.
        count(tag.class, Event::Free(layout.size()));
        if tag.object != 0 || bits & (SAMPLED_BIT | MEASURE_MASK) != 0 {
            Self::dealloc_rare(ptr, layout.size(), bits);
        }
        // SAFETY: the block was allocated with size + TRAILER; that layout was valid then.
        let outer =
            unsafe { Layout::from_size_align_unchecked(layout.size() + TRAILER, layout.align()) };
        // SAFETY: `ptr` was returned by the inner allocator for `outer`.
        unsafe { self.inner.dealloc(ptr, outer) }
    }

    /// The free of a block of a tracked object, or sampled, or measured: counts it for the
    /// object and the measurement, and reports it to the sampler.
    #[cold]
    #[inline(never)]
    fn dealloc_rare(ptr: *mut u8, size: usize, bits: u64) {
        let tag = Tag::from_bits(bits);
        count_object(tag.object, Event::Free(size));
        let id = measure::id_of(bits);
        if id != 0 {
            measure::count(id, tag.class, Event::Free(size));
        }
        if bits & SAMPLED_BIT != 0 {
            sampling::report_free(ptr as usize, size, tag.class);
        }
    }
}

// SAFETY: every method forwards to the inner allocator with the user's layout grown by
// `TRAILER` bytes at the same alignment, and returns the inner allocator's pointer unchanged,
// so the block is at least `layout.size()` bytes and aligned to `layout.align()`. `dealloc`
// and `realloc` rebuild exactly the outer layout the block was allocated with (the user must
// pass the same layout, as `GlobalAlloc` requires). Nothing here panics or unwinds.
unsafe impl<A: GlobalAlloc> GlobalAlloc for TrackingAlloc<A> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded caller contract.
        unsafe { self.alloc_with(layout, false) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded caller contract. The trailer is written over zeroed bytes past the
        // user's, so the user's bytes stay zero.
        unsafe { self.alloc_with(layout, true) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller passes a block from this allocator with its layout.
        let bits = unsafe { read_bits(ptr, layout.size()) };
        // Counted before the block is handed back, so that the inner allocator's `dealloc` is
        // a tail call. The common case (a block of the current tag, no object, not sampled)
        // is counted here and needs nothing kept across a call; any other goes to
        // `dealloc_slow`, which counts nothing twice: `fast_free` counts only when it returns
        // true.
        if !fast_free(bits, layout.size()) {
            // SAFETY: forwarded caller contract; nothing was counted for this block yet.
            return unsafe { self.dealloc_slow(ptr, layout, bits) };
        }
        // SAFETY: the block was allocated with size + TRAILER; that layout was valid then.
        let outer =
            unsafe { Layout::from_size_align_unchecked(layout.size() + TRAILER, layout.align()) };
        // SAFETY: `ptr` was returned by the inner allocator for `outer`.
        unsafe { self.inner.dealloc(ptr, outer) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Some(new_outer) = outer(new_size, layout.align()) else {
            return ptr::null_mut();
        };
        // SAFETY: the caller passes a block from this allocator with its layout.
        let bits = unsafe { read_bits(ptr, layout.size()) };
        let tag = Tag::from_bits(bits);
        let sampled = bits & SAMPLED_BIT != 0;
        if sampled {
            // Reported before the inner realloc frees the address, so that its reuse by
            // another thread cannot be reported first.
            sampling::report_free(ptr as usize, layout.size(), tag.class);
        }
        // SAFETY: the block was allocated with size + TRAILER; that layout was valid then.
        let old_outer =
            unsafe { Layout::from_size_align_unchecked(layout.size() + TRAILER, layout.align()) };
        // SAFETY: `ptr` was returned by the inner allocator for `old_outer`; the new size is
        // non-zero and valid for the alignment (checked by `outer`).
        let p = unsafe { self.inner.realloc(ptr, old_outer, new_outer.size()) };
        if p.is_null() {
            // The old block is untouched: no counter changes. If it was sampled, the sampler
            // has forgotten it; unmark it so that its free is not reported.
            if sampled {
                // SAFETY: the old block is live, of `layout.size() + TRAILER` bytes.
                unsafe { write_bits(ptr, layout.size(), bits & !SAMPLED_BIT) };
            }
            return p;
        }
        // To the sampler the new block is a new block of `new_size` bytes (sampled with the
        // chance its size gives it), of which only the growth counts as allocated.
        // Counted before the countdown, so that a check of the live user heap that the
        // countdown leads to (see `crate::peak`) includes this block's growth.
        count(tag.class, Event::Resize(layout.size(), new_size));
        count_object(tag.object, Event::Resize(layout.size(), new_size));
        let mut new_bits = bits & !SAMPLED_BIT;
        let (was, now) = (measure::id_of(bits), current_measurement());
        if was != 0 || now != 0 {
            new_bits = Self::realloc_measured(bits, new_bits, tag, layout.size(), new_size, now);
        }
        let trace_all = sampled && sampling::traces_all(tag.class);
        if countdown(new_size) || trace_all {
            if sampling::on_countdown(p as usize, new_size, Some(layout.size()), tag, trace_all) {
                new_bits |= SAMPLED_BIT;
            }
            rearm();
        }
        // SAFETY: `p` is a live block of `new_size + TRAILER` bytes.
        unsafe { write_bits(p, new_size, new_bits) };
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{replace_tag, ClassId};
    use std::alloc::System;

    static A: TrackingAlloc<System> = TrackingAlloc::new(System);

    #[test]
    fn aligned_and_large_layouts() {
        // Under Miri (slow on big blocks): a few sizes and alignments, the page-sized ones kept.
        let (max_align, sizes): (usize, &[usize]) = if cfg!(miri) {
            (1 << 13, &[1, 9, 64, 4097])
        } else {
            (
                1 << 16,
                &[1, 7, 8, 9, 63, 64, 4095, 4096, 4097, 100_000, 1 << 21],
            )
        };
        let mut align = 1;
        while align <= max_align {
            for &size in sizes {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: non-zero layout; freed below with the same layout.
                unsafe {
                    let p = A.alloc(layout);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "align {align} size {size}");
                    p.write_bytes(0xA5, size);
                    let q = A.realloc(p, layout, size * 2 + 3);
                    assert!(!q.is_null());
                    assert_eq!(q as usize % align, 0);
                    assert_eq!(*q.add(size - 1), 0xA5);
                    let l2 = Layout::from_size_align(size * 2 + 3, align).unwrap();
                    let r = A.realloc(q, l2, size);
                    assert_eq!(*r, 0xA5);
                    A.dealloc(r, layout);
                }
            }
            align <<= 1;
        }
    }

    #[test]
    fn tag_survives_realloc_under_another_tag() {
        let prev = replace_tag(Tag::class(ClassId(42)));
        let layout = Layout::from_size_align(24, 8).unwrap();
        // SAFETY: as above.
        unsafe {
            let p = A.alloc(layout);
            replace_tag(Tag::class(ClassId(43)));
            let read_tag = |p, size| Tag::from_bits(read_bits(p, size));
            assert_eq!(read_tag(p, 24).class, ClassId(42));
            let q = A.realloc(p, layout, 1000);
            assert_eq!(read_tag(q, 1000).class, ClassId(42));
            let q2 = A.realloc(q, Layout::from_size_align(1000, 8).unwrap(), 5);
            assert_eq!(read_tag(q2, 5).class, ClassId(42));
            A.dealloc(q2, Layout::from_size_align(5, 8).unwrap());
        }
        replace_tag(prev);
    }

    #[test]
    fn zeroed_is_zero() {
        let sizes: &[usize] = if cfg!(miri) {
            &[1, 13, 4096]
        } else {
            &[1, 13, 4096, 1 << 20]
        };
        for &size in sizes {
            let layout = Layout::from_size_align(size, 16).unwrap();
            // SAFETY: as above.
            unsafe {
                let p = A.alloc(layout);
                p.write_bytes(0xFF, size);
                A.dealloc(p, layout);
                let z = A.alloc_zeroed(layout);
                assert!(std::slice::from_raw_parts(z, size).iter().all(|&b| b == 0));
                A.dealloc(z, layout);
            }
        }
    }

    #[test]
    fn oversized_layout_gives_null_not_panic() {
        let layout = Layout::from_size_align(isize::MAX as usize - 4, 1).unwrap();
        // SAFETY: non-zero layout; null is expected.
        unsafe {
            assert!(A.alloc(layout).is_null());
            let small = Layout::from_size_align(8, 8).unwrap();
            let p = A.alloc(small);
            assert!(A.realloc(p, small, isize::MAX as usize - 2).is_null());
            A.dealloc(p, small);
        }
    }
}
