//! Sizes by traversal (`Footprint`, `#[derive(Footprint)]`, `track_object_footprint`): each
//! implementation of the standard library's types against what the allocator counted for the
//! same value; shared blocks counted once; the depth of the breakdown; the derive on structs,
//! tuple structs, enums and generics; and pympler's ClassTracker tests that track an object
//! with a resolution level (`test_merge`, `test_dump`, `test_dump_load_with_filename`,
//! `test_sort_stats`), ported.
//!
//! The derive comes with feature `macros` (on by default).
#![cfg(feature = "macros")]

use std::alloc::System;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet, LinkedList, VecDeque};
use std::ffi::{CString, OsString};
use std::mem::size_of_val;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use classtrack::testing::measure;
use classtrack::{
    footprint_of, Breakdown, ClassTracker, Footprint, Referent, SortKey, Stats, TrackOptions,
    TrackingAlloc,
};

#[global_allocator]
static ALLOC: TrackingAlloc<System> = TrackingAlloc::new(System);

/// Builds a value with `make`, and checks that the heap its traversal finds is exactly what
/// the allocator counted live for it.
fn exact<T: Footprint>(what: &str, make: impl FnOnce() -> T) {
    let (value, m) = measure(make);
    let heap = footprint_of(&value, 0).bytes - size_of_val(&value) as u64;
    assert_eq!(heap, m.live_bytes, "{what}: traversal vs allocator\n{m}");
    drop(value);
}

#[test]
fn the_standard_librarys_types_are_sized_as_the_allocator_counts_them() {
    exact("String", || String::with_capacity(100));
    exact("String grown", || {
        let mut s = String::new();
        for i in 0..100 {
            s.push_str(&i.to_string());
        }
        s
    });
    exact("Vec<u64>", || (0..1000u64).collect::<Vec<_>>());
    exact("empty Vec", Vec::<u64>::new);
    exact("Vec<String>", || {
        (0..100).map(|i| format!("item {i}")).collect::<Vec<_>>()
    });
    exact("Vec<Vec<u8>>", || vec![vec![0u8; 10]; 20]);
    exact("VecDeque", || (0..300u32).collect::<VecDeque<_>>());
    exact("BinaryHeap", || (0..300u32).collect::<BinaryHeap<_>>());
    exact("LinkedList<u64>", || (0..10u64).collect::<LinkedList<_>>());
    exact("LinkedList<u8>", || (0..10u8).collect::<LinkedList<_>>());
    exact("LinkedList<String>", || {
        (0..10).map(|i| i.to_string()).collect::<LinkedList<_>>()
    });
    for n in [1usize, 3, 4, 7, 8, 14, 15, 100, 1000, 10_000] {
        exact(&format!("HashMap<u64, u64> of {n}"), || {
            (0..n as u64).map(|i| (i, i)).collect::<HashMap<_, _>>()
        });
        exact(&format!("HashSet<u8> of {}", n.min(256)), || {
            (0..n.min(256)).map(|i| i as u8).collect::<HashSet<_>>()
        });
    }
    exact("HashMap<String, Vec<u8>>", || {
        (0..50)
            .map(|i| (format!("key {i}"), vec![0u8; i]))
            .collect::<HashMap<_, _>>()
    });
    exact("HashMap<u8, [u64; 3]>", || {
        (0..20u8).map(|i| (i, [0u64; 3])).collect::<HashMap<_, _>>()
    });
    exact("HashMap with_capacity", || {
        HashMap::<u32, u32>::with_capacity(100)
    });
    exact("Box<u64>", || Box::new(7u64));
    exact("Box<()>", || Box::new(()));
    exact("Box<[u8]>", || vec![0u8; 33].into_boxed_slice());
    exact("Box<[String]>", || {
        vec!["a".to_owned(), "bc".to_owned()].into_boxed_slice()
    });
    exact("Box<str>", || "some text".to_owned().into_boxed_str());
    exact("Arc<Vec<u8>>", || Arc::new(vec![0u8; 100]));
    exact("Arc<str>", || Arc::<str>::from("shared text"));
    exact("Arc<[u64]>", || Arc::<[u64]>::from(vec![1u64; 9]));
    exact("Rc<String>", || Rc::new("rc".repeat(20)));
    exact("Option<Box<u32>>", || Some(Box::new(1u32)));
    exact("Result<String, Vec<u8>>", || {
        Err::<String, Vec<u8>>(vec![1, 2, 3])
    });
    exact("Cow owned", || Cow::<str>::Owned("owned".repeat(3)));
    exact("Cow borrowed", || Cow::<str>::Borrowed("borrowed"));
    exact("CString", || CString::new("a C string").unwrap());
    exact("PathBuf", || PathBuf::from("/usr/share/doc"));
    exact("OsString", || OsString::from("os"));
    exact("tuple", || ("text".to_owned(), vec![0u16; 40], 7u8));
    exact("array of Strings", || {
        ["a".to_owned(), "bb".to_owned(), "ccc".to_owned()]
    });
}

#[test]
fn a_hash_map_after_removals_and_a_btree_are_lower_bounds() {
    // Removals can leave tombstones that lower the capacity a map reports.
    let (map, m) = measure(|| {
        let mut map: HashMap<u64, u64> = (0..1000).map(|i| (i, i)).collect();
        for i in (0..1000).step_by(2) {
            map.remove(&i);
        }
        map
    });
    let heap = footprint_of(&map, 0).bytes - size_of_val(&map) as u64;
    assert!(heap <= m.live_bytes, "{heap} > {}", m.live_bytes);
    // A B-tree's node count is not public: the fewest nodes that can hold its entries.
    for n in [1u64, 11, 12, 100, 10_000] {
        let (tree, m) = measure(|| (0..n).map(|i| (i, i)).collect::<BTreeMap<_, _>>());
        let heap = footprint_of(&tree, 0).bytes - size_of_val(&tree) as u64;
        assert!(
            heap <= m.live_bytes && heap * 2 >= m.live_bytes,
            "BTreeMap of {n}: {heap} against {}",
            m.live_bytes
        );
        // Inserted out of order, nodes are split and left part full.
        let (tree, m) = measure(|| {
            let mut tree = BTreeMap::new();
            for i in 0..n {
                tree.insert(i * 7919 % 10_007, i);
            }
            tree
        });
        let heap = footprint_of(&tree, 0).bytes - size_of_val(&tree) as u64;
        assert!(
            heap <= m.live_bytes && heap * 2 >= m.live_bytes,
            "BTreeMap of {n} inserted out of order: {heap} against {}",
            m.live_bytes
        );
        let (set, m) = measure(|| (0..n).collect::<BTreeSet<_>>());
        let heap = footprint_of(&set, 0).bytes - size_of_val(&set) as u64;
        assert!(
            heap <= m.live_bytes && heap * 2 >= m.live_bytes,
            "BTreeSet of {n}: {heap} against {}",
            m.live_bytes
        );
    }
}

#[derive(Footprint)]
struct Shares {
    first: Arc<Vec<u8>>,
    second: Arc<Vec<u8>>,
    own: Rc<String>,
}

#[test]
fn a_block_shared_by_several_handles_counts_once() {
    let (value, m) = measure(|| {
        let data = Arc::new(vec![0u8; 1000]);
        let text = Rc::new("x".repeat(50));
        (
            Shares {
                first: data.clone(),
                second: data,
                own: text.clone(),
            },
            text,
        )
    });
    let size = footprint_of(&value.0, 1);
    // Every block once: the Arc's (two counts and the Vec), the Vec's buffer, the Rc's and
    // its String's text.
    assert_eq!(
        size.bytes - size_of_val(&value.0) as u64,
        m.live_bytes,
        "{size:?}\n{m}"
    );
    // The first handle reached is charged; the second shows its pointer only.
    let part = |name| {
        size.referents
            .iter()
            .find(|r| r.name == name)
            .unwrap()
            .bytes
    };
    assert_eq!(part("first"), 8 + 16 + 24 + 1000);
    assert_eq!(part("second"), 8);
    assert_eq!(part("own"), 8 + 16 + 24 + 50);
    // Two traversals each count it.
    assert_eq!(footprint_of(&value.0, 0).bytes, size.bytes);
}

#[derive(Footprint)]
struct Inner {
    label: String,
    values: Vec<u32>,
}

#[derive(Footprint)]
struct Outer {
    name: String,
    inners: Vec<Inner>,
    single: Box<Inner>,
    #[footprint(skip)]
    skipped: Vec<u8>,
    r#type: Option<String>,
}

#[derive(Footprint)]
struct Pair(String, #[footprint(skip)] Vec<u8>, u32);

#[derive(Footprint)]
struct Unit;

#[derive(Footprint)]
enum Shape {
    Empty,
    Named {
        points: Vec<(f64, f64)>,
        tag: String,
    },
    Boxed(Box<Shape>, u8),
}

#[derive(Footprint)]
struct Generic<T, const N: usize> {
    items: [T; N],
    more: Vec<T>,
}

fn inner(label: &str, n: u32) -> Inner {
    Inner {
        label: label.to_owned(),
        values: (0..n).collect(),
    }
}

fn names(list: &[Referent]) -> Vec<&str> {
    list.iter().map(|r| r.name.as_str()).collect()
}

#[test]
fn the_derive_visits_every_field_by_name_to_the_depth_asked() {
    let outer = Outer {
        name: "outer".to_owned(),
        inners: vec![inner("a", 10), inner("bb", 100)],
        single: Box::new(inner("ccc", 1000)),
        skipped: vec![0u8; 5000],
        r#type: Some("t".repeat(7)),
    };
    let inner_size = size_of_val(&outer.inners[0]) as u64;
    let by_hand = size_of_val(&outer) as u64
        + 5 // name
        + 2 * inner_size + 1 + 40 + 2 + 400 // inners: the buffer, labels and values
        + inner_size + 3 + 4000 // single
        + 7; // type; `skipped` owns 5000 bytes, not counted
    let flat = footprint_of(&outer, 0);
    assert_eq!(flat.bytes, by_hand);
    assert!(flat.referents.is_empty());

    let one = footprint_of(&outer, 1);
    assert_eq!(one.bytes, by_hand);
    assert_eq!(names(&one.referents), ["single", "inners", "type", "name"]);
    let part =
        |list: &[Referent], name: &str| list.iter().find(|r| r.name == name).unwrap().clone();
    assert_eq!(
        part(&one.referents, "single").bytes,
        8 + inner_size + 3 + 4000
    );
    assert!(part(&one.referents, "single").children.is_empty());
    // The parts hold every byte but the inline bytes of fields not shown (`skipped`) and
    // padding.
    let shown: u64 = one.referents.iter().map(|r| r.bytes).sum();
    assert_eq!(one.bytes - shown, size_of_val(&outer.skipped) as u64);

    let two = footprint_of(&outer, 2);
    let single = part(&two.referents, "single");
    assert_eq!(names(&single.children), ["values", "label"]);
    assert_eq!(part(&single.children, "values").bytes, 24 + 4000);
    // A collection's items are one part, their fields merged below it.
    let inners = part(&two.referents, "inners");
    assert_eq!(names(&inners.children), ["[items]"]);
    assert_eq!(inners.children[0].bytes, 2 * inner_size + 1 + 40 + 2 + 400);
    assert!(inners.children[0].children.is_empty());
    let three = footprint_of(&outer, 3);
    let items = &part(&three.referents, "inners").children[0];
    assert_eq!(names(&items.children), ["values", "label"]);
    assert_eq!(part(&items.children, "values").bytes, 2 * 24 + 40 + 400);
    assert_eq!(part(&items.children, "label").bytes, 2 * 24 + 1 + 2);
    // Deeper levels change the tree, never the total.
    for depth in 0..8 {
        assert_eq!(footprint_of(&outer, depth).bytes, by_hand);
    }

    let pair = Pair("ab".to_owned(), vec![1; 100], 3);
    let size = footprint_of(&pair, 1);
    assert_eq!(size.bytes, size_of_val(&pair) as u64 + 2);
    assert_eq!(names(&size.referents), ["0", "2"]);
    assert_eq!(footprint_of(&Unit, 1).bytes, 0);

    let shape = Shape::Boxed(
        Box::new(Shape::Named {
            points: vec![(0.0, 0.0); 10],
            tag: "tag".to_owned(),
        }),
        1,
    );
    let size = footprint_of(&shape, 2);
    let shape_size = size_of_val(&shape) as u64;
    assert_eq!(size.bytes, 2 * shape_size + 160 + 3);
    assert_eq!(names(&size.referents), ["0", "1"]);
    assert_eq!(names(&size.referents[0].children), ["points", "tag"]);
    assert_eq!(footprint_of(&Shape::Empty, 1).bytes, shape_size);

    let generic = Generic {
        items: ["x".to_owned(), "yy".to_owned()],
        more: vec!["zzz".to_owned()],
    };
    let size = footprint_of(&generic, 2);
    assert_eq!(size.bytes, size_of_val(&generic) as u64 + 3 + 24 + 3);
    let items = part(&size.referents, "items");
    assert_eq!(items.bytes, 48 + 3);
    assert_eq!(items.children[0].name, "[items]");
    assert_eq!(items.children[0].bytes, 48 + 3);
}

/// pympler's `Foo` (`FooNew`): attributes `a` and, on some, `b`.
#[derive(Debug, Footprint)]
struct Foo {
    a: Vec<u64>,
    b: Option<String>,
}

/// A class with no traversal (pympler's `Bar`, tracked without a level).
#[derive(Debug)]
struct Bar {
    _data: Vec<u8>,
}

fn instance(stats: &Stats, id: u64) -> &classtrack::InstanceStats {
    stats.instances.iter().find(|i| i.id == id).unwrap()
}

/// pympler's `test_merge`: two Foos tracked with resolution level 2; at the snapshot, the
/// class's merged tree holds both sizes, and its part `a` both lists.
#[test]
fn pympler_test_merge() {
    let tracker = ClassTracker::new();
    let opts = TrackOptions::new().name("Foo").resolution_level(2);
    let f1 = Arc::new(Foo {
        a: (0..1000).collect(),
        b: None,
    });
    let f2 = Arc::new(Foo {
        a: (0..100).collect(),
        b: Some("This is some stupid spam.".to_owned()),
    });
    tracker.track_object_footprint(&f1, opts.clone()).unwrap();
    tracker.track_object_footprint(&f2, opts).unwrap();
    tracker.create_snapshot("Merge test");
    let sz1 = footprint_of(&*f1, 2);
    let sz2 = footprint_of(&*f2, 2);
    let stats = tracker.stats();
    let merged = stats
        .merged_referents(std::any::type_name::<Foo>())
        .unwrap();
    assert_eq!(merged.bytes, sz1.bytes + sz2.bytes);
    let foo = size_of_val(&*f1) as u64;
    assert_eq!(merged.bytes, 2 * foo + 8000 + 800 + 25);
    let a = merged.children.iter().find(|r| r.name == "a").unwrap();
    let b = merged.children.iter().find(|r| r.name == "b").unwrap();
    // asizeof(f1.a, f2.a): both lists, once each.
    assert_eq!(
        a.bytes,
        footprint_of(&f1.a, 0).bytes + footprint_of(&f2.a, 0).bytes
    );
    assert_eq!(a.bytes, 2 * 24 + 8800);
    assert_eq!(b.bytes, 2 * 24 + 25);
    assert_eq!(a.children[0].name, "[items]");
    assert_eq!(a.children[0].bytes, 8800);
    // Not tracked, no tree.
    assert!(stats.merged_referents("Bar").is_none());
}

/// pympler's `test_dump`, and `test_dump_load_with_filename`: a Foo tracked with resolution
/// level 4 and a Bar without one; print_stats before and after a dump and a load print the
/// same; a print filtered to Bar is shorter and holds no Foo.
#[test]
fn pympler_test_dump_and_load_with_filename() {
    let tracker = ClassTracker::new();
    let foo = Arc::new(Foo {
        a: (0..1000).collect(),
        b: Some("spam".to_owned()),
    });
    let bar = Arc::new(Bar {
        _data: vec![0u8; 100],
    });
    let foo_id = tracker
        .track_object_footprint(&foo, TrackOptions::new().resolution_level(4))
        .unwrap();
    let bar_id = tracker.track_object(&bar, TrackOptions::new()).unwrap();
    // pympler's callers pass a level whatever the object: tracked, with no breakdown.
    let bar2 = Arc::new(Bar { _data: Vec::new() });
    let bar2_id = tracker
        .track_object(&bar2, TrackOptions::new().resolution_level(4))
        .unwrap();
    tracker.create_snapshot("Footest");

    let stats = tracker.stats();
    let f = instance(&stats, foo_id);
    assert_eq!(f.breakdown, Breakdown::Traversal);
    assert_eq!(
        f.sizes.last().unwrap().1,
        size_of_val(&*foo) as u64 + 8000 + 4
    );
    assert_eq!(f.referents[0].name, "a");
    assert_eq!(f.referents[0].children[0].name, "[items]");
    assert_eq!(instance(&stats, bar_id).breakdown, Breakdown::OwnBytes);
    assert_eq!(
        instance(&stats, bar2_id).breakdown,
        Breakdown::Unavailable { level: 4 }
    );

    let print = |stats: &Stats, filter: Option<&str>| {
        let mut out = Vec::new();
        stats.print_stats(&mut out, filter, None).unwrap();
        String::from_utf8(out).unwrap()
    };
    let before = print(&stats, None);
    assert!(before.contains("sizes by traversal"), "{before}");
    assert!(
        before.contains("referents at the last snapshot, by traversal"),
        "{before}"
    );
    assert!(before.contains("no breakdown (resolution level 4 asked)"));

    let dir = std::env::temp_dir().join(format!("classtrack-traversal-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("footest.json");
    stats.dump(&path).unwrap();
    tracker.clear();
    assert!(tracker.stats().instances.is_empty());
    let loaded = Stats::load(&path).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(loaded, stats);
    assert_eq!(print(&loaded, None), before);

    let bars = print(&loaded, Some("Bar"));
    assert!(bars.len() < before.len());
    assert!(
        bars.contains("traversal::Bar #") && !bars.contains("traversal::Foo"),
        "{bars}"
    );
}

/// pympler's `test_sort_stats`: objects tracked with a resolution level, sorted by size.
#[test]
fn pympler_test_sort_stats() {
    let tracker = ClassTracker::new();
    let deep = TrackOptions::new().resolution_level(4);
    let sizes = [300u64, 10, 2000, 40];
    let foos: Vec<Arc<Foo>> = sizes
        .iter()
        .map(|&n| {
            Arc::new(Foo {
                a: (0..n).collect(),
                b: None,
            })
        })
        .collect();
    for f in &foos {
        tracker.track_object_footprint(f, deep.clone()).unwrap();
    }
    tracker.create_snapshot("sort");
    let mut stats = tracker.stats();
    stats.sort_stats(&[SortKey::TotalSize]);
    let order: Vec<u64> = stats
        .sorted_instances()
        .iter()
        .map(|i| (i.sizes.last().unwrap().1 - size_of_val(&*foos[0]) as u64) / 8)
        .collect();
    assert_eq!(order, [2000, 300, 40, 10]);
    stats.reverse_order();
    let first = stats.sorted_instances()[0].sizes.last().unwrap().1;
    assert_eq!(first, size_of_val(&*foos[0]) as u64 + 80);
}

/// What a snapshot measures follows the object: it grows, and a dead object is not measured.
#[test]
fn the_traversal_runs_at_each_snapshot_until_the_object_dies() {
    let tracker = ClassTracker::new();
    let list = Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    // A type with a lock: its Footprint by hand, reading with try_lock.
    struct Locked(Arc<std::sync::Mutex<Vec<u8>>>);
    impl Footprint for Locked {
        fn footprint(&self, v: &mut classtrack::Visitor<'_>) {
            if let Ok(data) = self.0.try_lock() {
                v.heap(16 + size_of_val(&*data));
                v.field("data", &*data);
            }
        }
    }
    let obj = Arc::new(Locked(list.clone()));
    let id = tracker
        .track_object_footprint(&obj, TrackOptions::new().resolution_level(1))
        .unwrap();
    tracker.create_snapshot("empty");
    list.lock().unwrap().reserve_exact(4096);
    tracker.create_snapshot("grown");
    drop(obj);
    tracker.create_snapshot("gone");
    let stats = tracker.stats();
    let i = instance(&stats, id);
    let sizes: Vec<u64> = i.sizes.iter().map(|s| s.1).collect();
    assert_eq!(sizes, [8 + 16 + 24, 8 + 16 + 24 + 4096]);
    assert!(i.death.is_some());
}

#[cfg(feature = "html")]
#[test]
fn the_html_report_marks_traversal_sizes() {
    let tracker = ClassTracker::new();
    let foo = Arc::new(Foo {
        a: vec![1; 10],
        b: None,
    });
    tracker
        .track_object_footprint(&foo, TrackOptions::new().resolution_level(2))
        .unwrap();
    let bar = Arc::new(Bar { _data: Vec::new() });
    tracker
        .track_object(&bar, TrackOptions::new().resolution_level(2))
        .unwrap();
    tracker.create_snapshot("one");
    let page = tracker.stats().html().unwrap();
    assert!(page.contains("by traversal"), "no badge");
    assert!(page.contains("Breakdown by traversal (its parts) at the last snapshot:"));
    assert!(page.contains("by handle, no breakdown"));
}

#[cfg(feature = "allocative")]
mod allocative_adapter {
    use super::*;
    use allocative::Allocative;

    #[derive(Allocative)]
    struct Doc {
        words: Vec<String>,
        raw: Vec<u8>,
    }

    #[derive(Footprint)]
    struct SameDoc {
        words: Vec<String>,
        raw: Vec<u8>,
    }

    #[test]
    fn allocative_types_are_measured_by_their_traversal() {
        let words = || {
            (0..20)
                .map(|i| format!("word {i}"))
                .collect::<Vec<String>>()
        };
        let doc = Arc::new(Doc {
            words: words(),
            raw: vec![0; 1000],
        });
        let same = SameDoc {
            words: words(),
            raw: vec![0; 1000],
        };
        let tracker = ClassTracker::new();
        let id = tracker
            .track_object_allocative(&doc, TrackOptions::new().resolution_level(1))
            .unwrap();
        tracker.create_snapshot("one");
        let stats = tracker.stats();
        let i = instance(&stats, id);
        assert_eq!(i.breakdown, Breakdown::Traversal);
        // The same bytes as the Footprint traversal of the same data.
        assert_eq!(i.sizes[0].1, footprint_of(&same, 0).bytes);
        let mut parts = names(&i.referents);
        parts.sort();
        assert_eq!(parts, ["raw", "words"]);
        let raw = i.referents.iter().find(|r| r.name == "raw").unwrap();
        assert_eq!(raw.bytes, 24 + 1000);
    }
}

/// A traced object tracked by traversal: its construction trace starts at the program's call.
#[test]
fn a_traced_object_tracked_by_traversal_starts_at_the_programs_call() {
    let tracker = ClassTracker::new();
    let foo = Arc::new(Foo {
        a: vec![1; 4],
        b: None,
    });
    tracker
        .track_object_footprint(&foo, TrackOptions::new().trace(true))
        .unwrap();
    let stats = tracker.stats();
    let first = &stats.instances[0].trace[0];
    assert!(
        first.contains("a_traced_object_tracked_by_traversal_starts_at_the_programs_call"),
        "{:?}",
        stats.instances[0].trace
    );
}
