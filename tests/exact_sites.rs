//! Sites of a class traced entirely are exact counts (no "±100% (1 sample)"), and a site that
//! grows blocks, whose live bytes exceed its allocated bytes, says why.

use std::alloc::System;

use classtrack::{ClassTracker, TrackingAlloc};

#[global_allocator]
static ALLOC: TrackingAlloc<System> = TrackingAlloc::new(System);

struct Traced;

#[inline(never)]
fn start() -> Vec<u64> {
    Vec::with_capacity(1000)
}

#[inline(never)]
fn grow(mut v: Vec<u64>, n: usize) -> Vec<u64> {
    for i in 0..n as u64 {
        v.push(i);
    }
    v
}

#[test]
fn sites_of_a_class_traced_entirely_are_exact() {
    classtrack::trace_every_allocation::<Traced>(true);
    let tracker = ClassTracker::new();
    let kept = classtrack::scope::<Traced, _>(|| (grow(start(), 100_000), vec![1u8; 4096]));
    tracker.create_snapshot("traced");
    let stats = tracker.stats();
    let snap = stats.snapshots.last().unwrap();
    let sites: Vec<_> = snap
        .sites
        .iter()
        .filter(|s| s.class.ends_with("Traced"))
        .collect();
    assert!(!sites.is_empty());
    for s in &sites {
        assert!(s.estimate.exact, "{s:?}");
        assert_eq!(s.estimate.relative_error(), 0.0);
    }
    // The vector started in one function and grown in another is live in full where it grew,
    // allocated there by its growth.
    assert!(
        sites
            .iter()
            .any(|s| s.estimate.live_bytes > s.estimate.allocated_bytes),
        "{sites:?}"
    );
    #[cfg(feature = "html")]
    {
        let page = stats.html().unwrap();
        // The class's own section: its sites read exact. (Another class's site seen by one
        // sample rightly reads "±100% (1 sample)" elsewhere on the page.)
        let heading = format!("<h3><code>{}</code>", std::any::type_name::<Traced>());
        let start = page
            .find(&heading)
            .unwrap_or_else(|| panic!("no section for the class: {heading}"));
        let section = &page[start..];
        let section = &section[..section
            .find("<div class=\"class\"")
            .or_else(|| section.find("</section>"))
            .unwrap_or(section.len())];
        assert!(section.contains("(exact)"), "{section}");
        assert!(!section.contains("±100% (1 sample)"), "{section}");
        assert!(page.contains("Live exceeds allocated where blocks were grown"));
    }
    classtrack::trace_every_allocation::<Traced>(false);
    drop(kept);
}
