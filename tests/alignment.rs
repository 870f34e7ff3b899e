//! Every alignment from 1 to 65,536 is honoured and counted exactly; `alloc_zeroed` is zeroed.

use std::alloc::{alloc, alloc_zeroed, dealloc, realloc, Layout, System};

use classtrack::{ClassTracker, TrackingAlloc};

#[global_allocator]
static ALLOC: TrackingAlloc<System> = TrackingAlloc::new(System);

#[test]
fn alignments_1_to_65536_are_honoured_and_counted() {
    let tracker = ClassTracker::new();
    let sizes = [1usize, 3, 8, 24, 100, 4095, 4096, 65_537, 300_000];
    let mut align = 1usize;
    while align <= 65_536 {
        let class = format!("align::{align}");
        let mut blocks = Vec::new();
        let mut allocated = 0u64;
        for (i, &size) in sizes.iter().enumerate() {
            let layout = Layout::from_size_align(size, align).unwrap();
            // SAFETY: non-zero size; freed below with the layout it then has.
            let p = classtrack::scope_named(&class, || unsafe { alloc(layout) });
            assert!(!p.is_null());
            assert_eq!(p as usize % align, 0, "align {align} size {size}");
            // SAFETY: fresh block of `size` bytes.
            unsafe { p.write_bytes(i as u8 + 1, size) };
            allocated += size as u64;
            // Grow, then shrink below the original size; contents and alignment survive.
            let grown = size * 3 + 5;
            // SAFETY: live block with `layout`.
            let q = unsafe { realloc(p, layout, grown) };
            assert!(!q.is_null());
            assert_eq!(q as usize % align, 0);
            allocated += (grown - size) as u64;
            let small = size.div_ceil(2);
            // SAFETY: live block of `grown` bytes at `align`.
            let r = unsafe { realloc(q, Layout::from_size_align(grown, align).unwrap(), small) };
            assert!(!r.is_null());
            assert_eq!(r as usize % align, 0);
            // SAFETY: `small` bytes, all from the original fill.
            let bytes = unsafe { std::slice::from_raw_parts(r, small) };
            assert!(bytes.iter().all(|&b| b == i as u8 + 1));
            blocks.push((r, small));
        }
        let snap = tracker.create_snapshot(&class);
        let c = snap.class_named(&class).unwrap();
        let live: u64 = blocks.iter().map(|&(_, s)| s as u64).sum();
        assert_eq!(c.live_bytes, live, "align {align}");
        assert_eq!(c.live_blocks, sizes.len() as u64);
        assert_eq!(c.allocated_bytes, allocated);
        assert_eq!(c.freed_bytes, allocated - live);
        for (p, s) in blocks {
            // SAFETY: live block of `s` bytes at `align`.
            unsafe { dealloc(p, Layout::from_size_align(s, align).unwrap()) };
        }
        let snap = tracker.create_snapshot(&class);
        let c = snap.class_named(&class).unwrap();
        assert_eq!(
            (c.live_bytes, c.live_blocks, c.frees),
            (0, 0, sizes.len() as u64)
        );
        align <<= 1;
    }
}

#[test]
fn over_aligned_types_through_box_and_vec() {
    #[repr(align(4096))]
    struct Page([u8; 4096]);
    let tracker = ClassTracker::new();
    let pages = classtrack::scope::<Page, _>(|| {
        (0..10)
            .map(|_| Box::new(Page([7; 4096])))
            .collect::<Vec<_>>()
    });
    for p in &pages {
        assert_eq!(&**p as *const Page as usize % 4096, 0);
        assert_eq!(p.0[4095], 7);
    }
    let snap = tracker.create_snapshot("pages");
    let c = snap.class_of::<Page>().unwrap();
    // Ten pages plus the vector holding ten pointers.
    assert_eq!(
        c.live_bytes,
        10 * 4096 + 10 * std::mem::size_of::<usize>() as u64
    );
    assert_eq!(c.live_blocks, 11);
}

#[test]
fn alloc_zeroed_is_zeroed_even_over_dirty_memory() {
    for &size in &[1usize, 7, 64, 1000, 4096, 1 << 20, 3 << 20] {
        for &align in &[1usize, 16, 4096] {
            let layout = Layout::from_size_align(size, align).unwrap();
            // Dirty a block of the same size first, so a reused block would show.
            // SAFETY: non-zero size; freed with the same layout.
            unsafe {
                let d = std::hint::black_box(alloc(layout));
                d.write_bytes(0xEE, size);
                dealloc(d, layout);
            }
            // SAFETY: as above.
            let z = classtrack::scope_named("zeroed", || unsafe { alloc_zeroed(layout) });
            assert!(!z.is_null());
            assert_eq!(z as usize % align, 0);
            // SAFETY: `size` bytes at `z`.
            let bytes = unsafe { std::slice::from_raw_parts(z, size) };
            assert!(bytes.iter().all(|&b| b == 0), "size {size} align {align}");
            // SAFETY: live block with `layout`.
            unsafe { dealloc(z, layout) };
        }
    }
}
