//! `#[classtrack::class]` and `#[classtrack::scope]`: constructors of every return shape,
//! trait impls, named classes, generic and borrowed types, async functions (allocations after
//! `.await`), early returns, `?` and panics; functions that are not constructors are left as
//! they are. Figures are exact, from `testing::measure`'s per-class counts.
#![cfg(feature = "macros")]

use std::alloc::System;
use std::rc::Rc;
use std::str::FromStr;
use std::sync::Arc;

use classtrack::testing::{measure, Measurement};
use classtrack::TrackingAlloc;

#[global_allocator]
static ALLOC: TrackingAlloc<System> = TrackingAlloc::new(System);

/// Bytes `m` counted for class `name` (0 if none).
fn allocated(m: &Measurement, name: &str) -> u64 {
    m.classes
        .iter()
        .find(|c| c.name == name)
        .map_or(0, |c| c.allocated_bytes)
}

const ORDER: &str = "macros::Order";

#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    lines: Vec<u64>,
}

#[derive(Debug)]
pub struct NotEnoughLines;

#[classtrack::class]
impl Order {
    pub fn new(n: usize) -> Self {
        Order { lines: vec![7; n] }
    }

    /// By the type's name, not `Self`.
    pub fn by_name(n: usize) -> Order {
        Order::new(n)
    }

    pub fn parse(text: &str) -> Result<Self, NotEnoughLines> {
        let lines: Vec<u64> = text.split(',').filter_map(|s| s.parse().ok()).collect();
        if lines.is_empty() {
            // An early return: the scope ends here too.
            return Err(NotEnoughLines);
        }
        Ok(Order { lines })
    }

    pub fn parse_twice(text: &str) -> Result<Self, NotEnoughLines> {
        // `?` inside the wrapped body.
        let first = Order::parse(text)?;
        let mut lines = first.lines.clone();
        lines.extend(first.lines);
        Ok(Order { lines })
    }

    pub fn maybe(n: usize) -> Option<Self> {
        (n > 0).then(|| Order::new(n))
    }

    pub fn boxed(n: usize) -> Box<Self> {
        Box::new(Order::new(n))
    }

    pub fn shared(n: usize) -> Arc<Self> {
        Arc::new(Order::new(n))
    }

    pub fn local(n: usize) -> Rc<Self> {
        Rc::new(Order::new(n))
    }

    /// Not a constructor: left as it is.
    pub fn summary(&self) -> String {
        format!("{} lines", self.lines.len())
    }

    pub fn exploding(n: usize) -> Self {
        let _half = vec![0u8; n];
        panic!("a constructor that panics");
    }
}

impl Default for Order {
    fn default() -> Self {
        Order::new(16)
    }
}

#[classtrack::class]
impl From<&[u64]> for Order {
    fn from(lines: &[u64]) -> Self {
        Order {
            lines: lines.to_vec(),
        }
    }
}

#[classtrack::class]
impl FromStr for Order {
    type Err = NotEnoughLines;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Order::parse(s)
    }
}

#[test]
fn constructors_of_every_shape_run_in_the_class_scope() {
    let (orders, m) = measure(|| {
        (
            Order::new(10),
            Order::by_name(10),
            Order::parse("1,2,3,4,5,6,7,8,9,10").unwrap(),
            Order::parse_twice("1,2,3,4,5").unwrap(),
            Order::maybe(10).unwrap(),
            Order::boxed(10),
            Order::shared(10),
            Order::local(10),
        )
    });
    // Eight vectors of 10 u64, a Box of an Order (24 bytes), an Arc's and an Rc's (24 + 2 × 8
    // each), and parse's vectors as they grew (collect and extend).
    let order = allocated(&m, ORDER);
    let lines = 8 * 80;
    assert!(order >= lines + 24 + 40 + 40, "{m}");
    // Everything the closure allocated is the class's: no other class.
    assert_eq!(order, m.allocated_bytes, "{m}");
    drop(orders);
}

#[test]
fn trait_impls_and_methods() {
    let ((a, b, text), m) = measure(|| {
        let a = Order::from(&[1u64, 2, 3][..]);
        let b: Order = "4,5,6".parse().unwrap();
        // A method that is not a constructor allocates outside the class.
        let text = a.summary();
        (a, b, text)
    });
    assert_eq!(text, "3 lines");
    assert!(allocated(&m, ORDER) >= 2 * 24, "{m}");
    assert_eq!(allocated(&m, "<untracked>"), text.capacity() as u64, "{m}");
    // `Default` was not marked: its body calls `new`, which is.
    let (d, m) = measure(Order::default);
    assert_eq!(allocated(&m, ORDER), 16 * 8);
    drop((a, b, d));
}

#[test]
fn early_returns_and_panics_end_the_scope() {
    let (err, m) = measure(|| Order::parse("no numbers here"));
    assert!(err.is_err());
    // The scope ended with the early return: the error path's allocation was charged, and
    // the next allocation is not.
    let ((), after) = measure(|| drop(std::hint::black_box(vec![0u8; 100])));
    assert_eq!(allocated(&after, "<untracked>"), 100, "{after}");
    assert_eq!(allocated(&m, "<untracked>"), 0, "{m}");
    let caught = std::panic::catch_unwind(|| Order::exploding(1000));
    assert!(caught.is_err());
    assert_eq!(classtrack::current_class(), classtrack::ClassId::UNTRACKED);
}

#[derive(Debug)]
pub struct Basket {
    pub items: Vec<String>,
}

#[classtrack::class(name = "shopping baskets")]
impl Basket {
    pub fn with(item: &str) -> Self {
        Basket {
            items: vec![item.to_owned()],
        }
    }
}

pub struct Wrapper<T> {
    values: Vec<T>,
}

#[classtrack::class]
impl<T: Clone> Wrapper<T> {
    pub fn repeat(value: T, n: usize) -> Self {
        Wrapper {
            values: vec![value; n],
        }
    }
}

pub struct View<'a> {
    words: Vec<&'a str>,
}

#[classtrack::class]
impl<'a> View<'a> {
    pub fn of(text: &'a str) -> Self {
        View {
            words: text.split(' ').collect(),
        }
    }
}

#[test]
fn named_generic_and_borrowed_classes() {
    let text = String::from("a borrowed view of words");
    let ((basket, wrapper, view), m) = measure(|| {
        (
            Basket::with("pears"),
            Wrapper::repeat(7u32, 100),
            View::of(&text),
        )
    });
    assert_eq!(allocated(&m, "shopping baskets"), 24 + 5, "{m}");
    assert_eq!(allocated(&m, "macros::Wrapper<u32>"), 400, "{m}");
    // `type_name` shows a borrowed type's lifetime as `'_`; `collect` grew the vector to 8.
    assert_eq!(allocated(&m, "macros::View<'_>"), 8 * 16, "{m}");
    assert_eq!(view.words.len(), 5);
    assert_eq!(wrapper.values.len(), 100);
    drop((basket, wrapper, view));
}

pub struct Connection {
    buffer: Vec<u8>,
    greeting: String,
}

/// Pending once, then ready: an `.await` that lets the runtime poll the task again (on any of
/// its threads), allocating nothing itself.
struct YieldOnce(bool);

impl std::future::Future for YieldOnce {
    type Output = ();
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

#[classtrack::class]
impl Connection {
    pub async fn open(size: usize) -> std::io::Result<Self> {
        let buffer = vec![0u8; size];
        YieldOnce(false).await;
        // Allocated after the `.await`, on whatever thread polls it: charged too.
        let greeting = "hello".repeat(size / 5);
        Ok(Connection { buffer, greeting })
    }
}

#[classtrack::scope]
fn load_rows(n: usize) -> Vec<u64> {
    (0..n as u64).collect()
}

#[classtrack::scope("row cache")]
fn cache_rows(n: usize) -> Vec<u64> {
    vec![1; n]
}

#[classtrack::scope]
async fn fetch_rows(n: usize) -> Result<Vec<u64>, std::num::ParseIntError> {
    YieldOnce(false).await;
    let first: u64 = "1".parse()?;
    Ok(vec![first; n])
}

impl Order {
    #[classtrack::scope("order totals")]
    pub fn totals(&self) -> Vec<u64> {
        self.lines.iter().scan(0, |s, x| Some(*s + x)).collect()
    }
}

#[test]
fn scope_on_functions_methods_and_async_functions() {
    let order = Order::new(10);
    let ((rows, cached, totals), m) = measure(|| (load_rows(100), cache_rows(50), order.totals()));
    assert_eq!(allocated(&m, "macros::load_rows"), 800, "{m}");
    assert_eq!(allocated(&m, "row cache"), 400, "{m}");
    // `collect` on a `scan` grows its vector: 4, 8, then 16 elements.
    assert_eq!(allocated(&m, "order totals"), 16 * 8, "{m}");
    drop((rows, cached, totals));
}

#[test]
fn async_functions_are_charged_after_each_await() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let ((conn, rows), m) = measure(|| {
        let scope = classtrack::current_scope();
        rt.block_on(async {
            use classtrack::InClass;
            // Run on the runtime's threads, the measurement handed on with the scope.
            tokio::spawn(
                async {
                    (
                        Connection::open(1000).await.unwrap(),
                        fetch_rows(10).await.unwrap(),
                    )
                }
                .in_scope(scope),
            )
            .await
            .unwrap()
        })
    });
    assert_eq!(allocated(&m, "macros::Connection"), 1000 + 1000, "{m}");
    assert_eq!(allocated(&m, "macros::fetch_rows"), 80, "{m}");
    assert_eq!(conn.buffer.len() + conn.greeting.len(), 2000);
    drop((conn, rows));
}
