//! What the benches share: an adapter that lets collections allocate from any `GlobalAlloc`,
//! and the workloads.

use std::alloc::{GlobalAlloc, Layout};
use std::ptr::NonNull;

use allocator_api2::alloc::{AllocError, Allocator};
use allocator_api2::vec::Vec as AVec;
use hashbrown::{DefaultHashBuilder, HashMap};

/// A `GlobalAlloc` seen as an `Allocator`, so collections can be built in either allocator.
#[derive(Clone, Copy)]
pub struct Via(pub &'static (dyn GlobalAlloc + Sync));

// SAFETY: blocks come from and go back to the same `GlobalAlloc` with their layouts; zero-size
// requests get a dangling, well-aligned pointer and are never passed to the allocator.
unsafe impl Allocator for Via {
    #[inline]
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            let p = NonNull::new(layout.align() as *mut u8).ok_or(AllocError)?;
            return Ok(NonNull::slice_from_raw_parts(p, 0));
        }
        // SAFETY: non-zero size.
        let p = unsafe { self.0.alloc(layout) };
        NonNull::new(p)
            .map(|p| NonNull::slice_from_raw_parts(p, layout.size()))
            .ok_or(AllocError)
    }

    #[inline]
    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if layout.size() != 0 {
            // SAFETY: allocated by `allocate` with this layout.
            unsafe { self.0.dealloc(ptr.as_ptr(), layout) }
        }
    }

    #[inline]
    unsafe fn grow(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        if old.size() == 0 || old.align() != new.align() {
            let fresh = self.allocate(new)?;
            // SAFETY: both blocks hold at least `old.size()` bytes and do not overlap.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr.as_ptr(), fresh.cast().as_ptr(), old.size());
                self.deallocate(ptr, old);
            }
            return Ok(fresh);
        }
        // SAFETY: live block with layout `old`; `new.size()` is non-zero.
        let p = unsafe { self.0.realloc(ptr.as_ptr(), old, new.size()) };
        NonNull::new(p)
            .map(|p| NonNull::slice_from_raw_parts(p, new.size()))
            .ok_or(AllocError)
    }
}

/// 1,000 alloc/free pairs of 16 to 256 bytes.
pub fn small_pairs(a: Via) -> usize {
    let mut sum = 0;
    for i in 0..1000usize {
        let layout = Layout::from_size_align(16 << (i % 5), 8).unwrap();
        let p = a.allocate(layout).unwrap();
        // SAFETY: just allocated with `layout`.
        unsafe {
            p.cast::<u8>().as_ptr().write(i as u8);
            sum += *p.cast::<u8>().as_ptr() as usize;
            a.deallocate(p.cast(), layout);
        }
    }
    sum
}

/// A map of 1,000 string keys to small vectors, built and dropped.
pub fn hashmap_build(a: Via) -> usize {
    let mut map: HashMap<AVec<u8, Via>, AVec<u32, Via>, DefaultHashBuilder, Via> =
        HashMap::with_hasher_in(DefaultHashBuilder::default(), a);
    for i in 0..1000u32 {
        let mut key = AVec::new_in(a);
        key.extend_from_slice(b"key-");
        key.extend_from_slice(i.to_string().as_bytes());
        let mut value = AVec::new_in(a);
        for k in 0..(i % 8) {
            value.push(k);
        }
        map.insert(key, value);
    }
    map.len()
}

/// A workload: builds and drops its data in the given allocator.
pub type Workload = fn(Via) -> usize;
