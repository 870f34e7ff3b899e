//! Scopes nest (innermost wins), end on panic as on return, and name classes as documented.

use std::alloc::System;
use std::hint::black_box;
use std::panic::{catch_unwind, AssertUnwindSafe};

use classtrack::{ClassTracker, TrackingAlloc};

#[global_allocator]
static ALLOC: TrackingAlloc<System> = TrackingAlloc::new(System);

struct Outer;
struct Inner;

fn live(tracker: &ClassTracker, name: &str) -> (u64, u64) {
    tracker
        .create_snapshot(name)
        .class_named(name)
        .map_or((0, 0), |c| (c.live_bytes, c.live_blocks))
}

#[test]
fn nested_scopes_innermost_wins_and_outer_resumes() {
    let tracker = ClassTracker::new();
    let (a, b, c) = classtrack::scope_named("nest::outer", || {
        let a = black_box(vec![0u8; 100]);
        let (b, c) = classtrack::scope_named("nest::inner", || {
            let b = black_box(vec![0u8; 30]);
            let c = classtrack::scope_named("nest::innermost", || black_box(vec![0u8; 7]));
            (b, c)
        });
        (a, b, c)
    });
    let after = vec![0u8; 1]; // outside any scope
    assert_eq!(live(&tracker, "nest::outer"), (100, 1));
    assert_eq!(live(&tracker, "nest::inner"), (30, 1));
    assert_eq!(live(&tracker, "nest::innermost"), (7, 1));
    drop((a, b, c, after));
    assert_eq!(live(&tracker, "nest::outer"), (0, 0));
}

#[test]
fn panic_inside_closure_scope_restores_outer() {
    // The default hook may capture and symbolize a backtrace (RUST_BACKTRACE), whose caches
    // would be charged to the inner scope and live on: keep the panic's memory to its payload.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let tracker = ClassTracker::new();
    let outer = classtrack::class_id_named("panic::outer");
    let g = classtrack::enter_named("panic::outer");
    let r = catch_unwind(|| {
        classtrack::scope_named("panic::inner", || {
            let _v = std::hint::black_box(vec![0u8; 10]);
            panic!("boom");
        })
    });
    assert_eq!(classtrack::current_class(), outer);
    drop(g);
    std::panic::set_hook(default_hook);
    assert!(r.is_err());
    drop(r);
    let _g = classtrack::enter_named("panic::outer");
    assert_eq!(classtrack::current_class(), outer);
    let v = black_box(vec![0u8; 55]);
    assert_eq!(live(&tracker, "panic::outer"), (55, 1));
    // The inner vector was dropped during unwinding, the payload by `catch_unwind`'s caller:
    // both credited to the inner class, which allocated them.
    let snap = tracker.create_snapshot("inner");
    let inner = snap.class_named("panic::inner").unwrap();
    assert_eq!((inner.live_bytes, inner.live_blocks), (0, 0));
    assert!(inner.frees >= 2, "{inner:?}");
    drop(v);
}

#[test]
fn panic_inside_guard_scope_restores_outer() {
    let outer = classtrack::class_id_of::<Outer>();
    let _o = classtrack::enter::<Outer>();
    let r = catch_unwind(AssertUnwindSafe(|| {
        let _i = classtrack::enter::<Inner>();
        assert_eq!(
            classtrack::current_class(),
            classtrack::class_id_of::<Inner>()
        );
        panic!("boom");
    }));
    assert!(r.is_err());
    assert_eq!(classtrack::current_class(), outer);
    drop(_o);
    assert_eq!(classtrack::current_class(), classtrack::ClassId::UNTRACKED);
}

#[test]
fn type_classes_are_named_by_type_name_and_shared_with_named_scopes() {
    let tracker = ClassTracker::new();
    let by_type = classtrack::scope::<Outer, _>(|| black_box(vec![1u32; 10]));
    let by_name =
        classtrack::scope_named(std::any::type_name::<Outer>(), || black_box(vec![1u8; 3]));
    assert_eq!(
        classtrack::class_id_of::<Outer>(),
        classtrack::class_id_named(std::any::type_name::<Outer>())
    );
    let snap = tracker.create_snapshot("types");
    let c = snap.class_of::<Outer>().unwrap();
    assert_eq!(&*c.name, "scopes::Outer");
    assert!(c.live_bytes >= 43 && c.live_blocks >= 2);
    drop((by_type, by_name));
}

#[test]
fn scope_guard_reports_its_class_and_ids_agree_across_threads() {
    let g = classtrack::enter_named("ids::shared");
    let id = g.class_id();
    drop(g);
    let other = std::thread::spawn(|| classtrack::class_id_named("ids::shared"))
        .join()
        .unwrap();
    assert_eq!(id, other);
    assert!(id >= classtrack::ClassId::FIRST_USER);
}

#[test]
fn unknown_class_is_none() {
    let tracker = ClassTracker::new();
    let snap = tracker.create_snapshot("s");
    assert!(snap.class_named("never::used").is_none());
    assert_eq!(&*snap.untracked().name, classtrack::UNTRACKED_CLASS);
    assert_eq!(&*snap.tracker_class().name, classtrack::OVERHEAD_CLASS);
}
