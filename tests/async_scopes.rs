//! Futures in class scopes on real tokio runtimes: exact per-class totals across `.await`s,
//! worker threads and cross-task frees; guards held across `.await` leave no stale scope.
//!
//! Tokio's own allocations (tasks, timers, queues) are made outside these scopes; each test
//! compares snapshot differences of classes only it uses.

use std::alloc::System;
use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;

use classtrack::{ClassId, ClassTracker, InClass, TrackingAlloc};

#[global_allocator]
static ALLOC: TrackingAlloc<System> = TrackingAlloc::new(System);

mod common;
use common::yield_once;

/// The figures of one class compared between snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Figures {
    allocated_bytes: u64,
    allocations: u64,
    freed_bytes: u64,
    frees: u64,
    live_bytes: u64,
}

fn figures(tracker: &ClassTracker, name: &str) -> Figures {
    let snap = tracker.create_snapshot("figures");
    snap.class_named(name)
        .map_or(Figures::default(), |c| Figures {
            allocated_bytes: c.allocated_bytes,
            allocations: c.allocations,
            freed_bytes: c.freed_bytes,
            frees: c.frees,
            live_bytes: c.live_bytes,
        })
}

fn diff(after: Figures, before: Figures) -> Figures {
    Figures {
        allocated_bytes: after.allocated_bytes - before.allocated_bytes,
        allocations: after.allocations - before.allocations,
        freed_bytes: after.freed_bytes - before.freed_bytes,
        frees: after.frees - before.frees,
        live_bytes: after.live_bytes - before.live_bytes,
    }
}

thread_local! {
    static MARK: u8 = const { 0 };
}

/// An identity of the current thread that allocates nothing (unlike `thread::current()`).
fn thread_mark() -> usize {
    MARK.with(|m| m as *const u8 as usize)
}

const CLASSES: [&str; 3] = ["async_mt::alpha", "async_mt::beta", "async_mt::gamma"];
const TASKS_PER_CLASS: usize = 100;
const ROUNDS: usize = 6;

fn size(class: usize, task: usize, round: usize) -> usize {
    64 + class * 1000 + task * 7 + round * 13
}

/// One task's work: allocates, awaits (sleeps and yields, so it interleaves with the others
/// and may resume on another worker), frees some blocks, keeps one, hands one to a task of
/// another class to free, and frees one handed to it.
async fn work(
    class: usize,
    task: usize,
    slots: &'static [Mutex<Option<Vec<u8>>>],
) -> (Vec<u8>, bool) {
    let mut threads = [0usize; 2];
    threads[0] = thread_mark();
    let mut moved = false;
    let mut kept = Vec::new();
    for round in 0..ROUNDS {
        let v = black_box(vec![class as u8; size(class, task, round)]);
        if round % 2 == 0 {
            tokio::time::sleep(Duration::from_micros(200 + (task % 5) as u64 * 100)).await;
        } else {
            yield_once().await;
        }
        moved |= thread_mark() != threads[0];
        if round == 0 {
            kept = v; // the first block outlives the task
        } else if round == 1 {
            // handed over: a task of the next class frees it
            let next = (class + 1) % CLASSES.len();
            *slots[next * TASKS_PER_CLASS + task].lock().unwrap() = Some(v);
        } else {
            drop(v);
        }
    }
    // Free the block a task of the previous class handed to this one.
    loop {
        let taken = slots[class * TASKS_PER_CLASS + task].lock().unwrap().take();
        if let Some(v) = taken {
            drop(black_box(v));
            break;
        }
        tokio::time::sleep(Duration::from_micros(300)).await;
    }
    (kept, moved)
}

#[test]
fn tasks_of_several_classes_on_a_multi_thread_runtime_are_exact() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_time()
        .build()
        .unwrap();
    let slots: &'static [Mutex<Option<Vec<u8>>>] = Box::leak(
        (0..CLASSES.len() * TASKS_PER_CLASS)
            .map(|_| Mutex::new(None))
            .collect(),
    );
    let run = |names: &[&str; 3]| {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        rt.block_on(async {
            let mut handles = Vec::with_capacity(CLASSES.len() * TASKS_PER_CLASS);
            for task in 0..TASKS_PER_CLASS {
                for (class, name) in names.iter().enumerate() {
                    handles.push(tokio::spawn(work(class, task, slots).in_class_named(name)));
                }
            }
            let mut results = Vec::with_capacity(handles.len());
            for h in handles {
                results.push(h.await.unwrap());
            }
            results
        })
    };
    // A first round in classes of its own: the runtime's queues and buffers grow to size.
    drop(run(&[
        "async_mt::warm1",
        "async_mt::warm2",
        "async_mt::warm3",
    ]));

    let tracker = ClassTracker::new();
    let warm = ["async_mt::warm1", "async_mt::warm2", "async_mt::warm3"];
    let warm_before: Vec<Figures> = warm.iter().map(|c| figures(&tracker, c)).collect();
    let before: Vec<Figures> = CLASSES.iter().map(|c| figures(&tracker, c)).collect();
    let results = run(&CLASSES);
    let after: Vec<Figures> = CLASSES.iter().map(|c| figures(&tracker, c)).collect();
    let warm_after: Vec<Figures> = warm.iter().map(|c| figures(&tracker, c)).collect();
    assert_eq!(warm_after, warm_before, "another class was charged");

    let migrated = results.iter().filter(|(_, moved)| *moved).count();
    assert!(migrated > 0, "no task resumed on another worker thread");
    for (class, name) in CLASSES.iter().enumerate() {
        let sizes = |round: usize| -> u64 {
            (0..TASKS_PER_CLASS)
                .map(|t| size(class, t, round) as u64)
                .sum()
        };
        let allocated: u64 = (0..ROUNDS).map(sizes).sum();
        let kept = sizes(0);
        let want = Figures {
            allocated_bytes: allocated,
            allocations: (TASKS_PER_CLASS * ROUNDS) as u64,
            freed_bytes: allocated - kept,
            frees: (TASKS_PER_CLASS * (ROUNDS - 1)) as u64,
            live_bytes: kept,
        };
        assert_eq!(
            diff(after[class], before[class]),
            want,
            "class {name} ({migrated} tasks migrated)"
        );
    }
    let untracked = classtrack::class_id_named(classtrack::UNTRACKED_CLASS);
    assert_eq!(untracked, ClassId::UNTRACKED);
    drop(results);
    let end: Vec<Figures> = CLASSES.iter().map(|c| figures(&tracker, c)).collect();
    for (class, name) in CLASSES.iter().enumerate() {
        assert_eq!(
            end[class].live_bytes, before[class].live_bytes,
            "class {name}: the kept blocks freed outside the tasks credit their class"
        );
    }
}

/// A future that allocates when dropped.
struct AllocatesOnDrop;

impl Future for AllocatesOnDrop {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }
}

impl Drop for AllocatesOnDrop {
    fn drop(&mut self) {
        std::mem::forget(black_box(vec![0u8; 777]));
    }
}

#[test]
fn dropping_a_wrapped_future_runs_in_its_scope() {
    let tracker = ClassTracker::new();
    let before = figures(&tracker, "async_drop::class");
    let fut = AllocatesOnDrop.in_class_named("async_drop::class");
    drop(fut); // never polled
    let after = figures(&tracker, "async_drop::class");
    assert_eq!(diff(after, before).allocated_bytes, 777);
    assert_eq!(classtrack::current_class(), ClassId::UNTRACKED);
}

/// A stream of `n` vectors of `len` bytes.
struct Vectors {
    n: usize,
    len: usize,
}

impl futures_core::Stream for Vectors {
    type Item = Vec<u8>;
    fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Vec<u8>>> {
        if self.n == 0 {
            return Poll::Ready(None);
        }
        self.n -= 1;
        Poll::Ready(Some(vec![1u8; self.len]))
    }
}

#[test]
fn a_wrapped_stream_polls_in_its_scope() {
    use futures_core::Stream;
    let tracker = ClassTracker::new();
    let before = figures(&tracker, "async_stream::class");
    let mut s = Vectors { n: 5, len: 300 }.in_class_named("async_stream::class");
    let mut items = Vec::with_capacity(8);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        while let Some(v) = std::future::poll_fn(|cx| Pin::new(&mut s).poll_next(cx)).await {
            items.push(v);
        }
    });
    let after = figures(&tracker, "async_stream::class");
    assert_eq!(diff(after, before).live_bytes, 5 * 300);
    assert_eq!(diff(after, before).allocations, 5);
    drop(items);
}

/// Task A and task C enter a scope and hold it across `.await`; task B, scoped nowhere, runs
/// while they are suspended. Written with guards (wrong), B is charged to them, but the
/// thread ends back in `<untracked>` whatever the order the guards are dropped in.
///
/// The order (A enters, C enters, B runs, A leaves while C is open, C leaves) is forced by
/// channels rather than timers, so a slow machine (an emulator) cannot reorder it.
#[test]
fn guards_held_across_await_on_a_local_set_leave_no_stale_scope() {
    use tokio::sync::oneshot;
    let tracker = ClassTracker::new();
    let out_of_order = classtrack::scope_exits_out_of_order();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    let (a_entered, a_entered_rx) = oneshot::channel::<()>();
    let (c_entered, c_entered_rx) = oneshot::channel::<()>();
    let (b_done, b_done_rx) = oneshot::channel::<()>();
    let (a_left, a_left_rx) = oneshot::channel::<()>();
    local.block_on(&rt, async {
        let a = tokio::task::spawn_local(async move {
            let _g = classtrack::enter_named("ls_guard::a");
            let v = black_box(vec![0u8; 100]);
            a_entered.send(()).unwrap();
            b_done_rx.await.unwrap();
            drop(v);
            // A's guard drops while C's (entered later) is still open.
            drop(_g);
            a_left.send(()).unwrap();
        });
        let b = tokio::task::spawn_local(async move {
            c_entered_rx.await.unwrap();
            drop(black_box(vec![0u8; 55]));
            b_done.send(()).unwrap();
        });
        let c = tokio::task::spawn_local(async move {
            a_entered_rx.await.unwrap();
            let _g = classtrack::enter_named("ls_guard::c");
            c_entered.send(()).unwrap();
            a_left_rx.await.unwrap();
            // Still suspended once more with the guard held.
            tokio::time::sleep(Duration::from_millis(1)).await;
        });
        let _ = tokio::join!(a, b, c);
    });
    drop(local);
    drop(rt);
    assert_eq!(classtrack::current_class(), ClassId::UNTRACKED);
    assert!(classtrack::scope_exits_out_of_order() > out_of_order);
    // A later allocation outside any scope is charged to no class of the test.
    let a0 = figures(&tracker, "ls_guard::a");
    let c0 = figures(&tracker, "ls_guard::c");
    let v = black_box(vec![0u8; 4321]);
    assert_eq!(figures(&tracker, "ls_guard::a"), a0);
    assert_eq!(figures(&tracker, "ls_guard::c"), c0);
    drop(v);
}

/// The same tasks written with the future wrapper: every class is exact and B's bytes are
/// `<untracked>`.
#[test]
fn wrapped_futures_on_a_local_set_are_exact() {
    let tracker = ClassTracker::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    const B_BYTES: usize = 123_457;
    let before_a = figures(&tracker, "ls_fut::a");
    let before_c = figures(&tracker, "ls_fut::c");
    let before_u = figures(&tracker, classtrack::UNTRACKED_CLASS);
    let kept = local.block_on(&rt, async {
        let a = tokio::task::spawn_local(
            async {
                let v = black_box(vec![0u8; 100]);
                tokio::time::sleep(Duration::from_millis(20)).await;
                drop(v);
                black_box(vec![0u8; 101])
            }
            .in_class_named("ls_fut::a"),
        );
        let b = tokio::task::spawn_local(async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            drop(black_box(vec![0u8; B_BYTES]));
        });
        let c = tokio::task::spawn_local(async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            async {
                let v = black_box(vec![0u8; 300]);
                tokio::time::sleep(Duration::from_millis(40)).await;
                v
            }
            .in_class_named("ls_fut::c")
            .await
        });
        let (a, b, c) = tokio::join!(a, b, c);
        b.unwrap();
        (a.unwrap(), c.unwrap())
    });
    drop(local);
    drop(rt);
    assert_eq!(classtrack::current_class(), ClassId::UNTRACKED);
    let a = diff(figures(&tracker, "ls_fut::a"), before_a);
    let c = diff(figures(&tracker, "ls_fut::c"), before_c);
    // Other tests free untracked memory meanwhile: only what was allocated only grows.
    let u =
        figures(&tracker, classtrack::UNTRACKED_CLASS).allocated_bytes - before_u.allocated_bytes;
    assert_eq!(
        (a.allocated_bytes, a.allocations, a.live_bytes),
        (201, 2, 101)
    );
    assert_eq!(
        (c.allocated_bytes, c.allocations, c.live_bytes),
        (300, 1, 300)
    );
    assert!(u >= B_BYTES as u64, "{u}");
    drop(kept);
}
