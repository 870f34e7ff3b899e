//! An in-memory order book, tracked per class.
//!
//! Run it with `cargo run --release --example quickstart`. It loads a symbol cache, builds a
//! book of resting orders, matches crossing orders into trades and cancels half the book,
//! taking a snapshot after each phase and printing where the heap went; then writes an HTML
//! report of the run to `target/classtrack-quickstart.html` (open it in any browser).

mod common;

use std::alloc::System;
use std::collections::{BTreeMap, HashMap, VecDeque};

use classtrack::{report::format_bytes, ClassTracker, TrackingAlloc};

#[global_allocator]
static ALLOC: TrackingAlloc<System> = TrackingAlloc::new(System);

/// Reference data for one traded symbol.
#[allow(dead_code)]
struct SymbolInfo {
    name: String,
    description: String,
    tick_sizes: Vec<u32>,
}

/// A resting order.
#[allow(dead_code)]
struct Order {
    id: u64,
    trader: String,
    symbol: String,
    price: u32,
    qty: u32,
    tags: Vec<String>,
}

/// All resting orders at one price.
#[allow(dead_code)]
struct PriceLevel {
    price: u32,
    queue: VecDeque<u64>,
}

/// An execution between two orders.
#[allow(dead_code)]
struct Trade {
    buy: u64,
    sell: u64,
    price: u32,
    qty: u32,
    venue_ref: String,
}

/// The book: price levels and the orders by id.
#[derive(Default)]
struct OrderBook {
    bids: BTreeMap<u32, PriceLevel>,
    asks: BTreeMap<u32, PriceLevel>,
    orders: HashMap<u64, Order>,
}

/// A small deterministic generator, so every run prints the same figures.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, bound: u32) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % u64::from(bound)) as u32
    }
}

// Every constructor of the block runs in the type's class scope: what `new` allocates (the
// strings, the tags) is charged to `quickstart::Order`.
#[classtrack::class]
impl Order {
    fn new(id: u64, price: u32, rng: &mut Lcg) -> Self {
        Order {
            id,
            trader: format!("trader-{:04}", rng.next(5000)),
            symbol: format!("SYM{:03}", rng.next(200)),
            price,
            qty: 1 + rng.next(500),
            tags: (0..rng.next(3)).map(|t| format!("tag{t}")).collect(),
        }
    }
}

#[classtrack::class]
impl Trade {
    fn new(buy: u64, sell: u64, price: u32, qty: u32) -> Self {
        Trade {
            buy,
            sell,
            price,
            qty,
            venue_ref: format!("X{buy}-{sell}"),
        }
    }
}

/// The reference data, charged to the class named "symbol cache".
#[classtrack::scope("symbol cache")]
fn load_symbols() -> HashMap<String, SymbolInfo> {
    (0..2000)
        .map(|i| {
            let name = format!("SYM{i:03}");
            let info = SymbolInfo {
                description: format!("{name}: listed instrument number {i} ").repeat(20),
                tick_sizes: (1..=16).collect(),
                name: name.clone(),
            };
            (name, info)
        })
        .collect()
}

impl OrderBook {
    fn add(&mut self, id: u64, bid: bool, price: u32, rng: &mut Lcg) {
        let order = Order::new(id, price, rng);
        let side = if bid { &mut self.bids } else { &mut self.asks };
        // Growth that is not a constructor's: the closure form charges it where it happens.
        classtrack::scope::<PriceLevel, _>(|| {
            side.entry(price)
                .or_insert_with(|| PriceLevel {
                    price,
                    queue: VecDeque::new(),
                })
                .queue
                .push_back(id)
        });
        classtrack::scope::<OrderBook, _>(|| self.orders.insert(id, order));
    }

    /// Crosses the best bid and ask while they overlap.
    fn match_orders(&mut self, trades: &mut Vec<Trade>) {
        while let (Some((&bid, _)), Some((&ask, _))) =
            (self.bids.last_key_value(), self.asks.first_key_value())
        {
            if bid < ask {
                break;
            }
            let buy = self.bids.get_mut(&bid).and_then(|l| l.queue.pop_front());
            let sell = self.asks.get_mut(&ask).and_then(|l| l.queue.pop_front());
            if let (Some(buy), Some(sell)) = (buy, sell) {
                let qty = self.orders.remove(&buy).map_or(0, |o| o.qty);
                self.orders.remove(&sell);
                let trade = Trade::new(buy, sell, ask, qty);
                // The vector's growth is the trades' too.
                classtrack::scope::<Trade, _>(|| trades.push(trade));
            }
            self.bids.retain(|_, l| !l.queue.is_empty());
            self.asks.retain(|_, l| !l.queue.is_empty());
        }
    }

    fn cancel_every_other(&mut self) {
        let ids: Vec<u64> = self
            .orders
            .keys()
            .copied()
            .filter(|id| id % 2 == 0)
            .collect();
        for id in ids {
            if let Some(o) = self.orders.remove(&id) {
                let side = if o.id % 4 == 0 {
                    &mut self.bids
                } else {
                    &mut self.asks
                };
                if let Some(level) = side.get_mut(&o.price) {
                    level.queue.retain(|&q| q != id);
                }
            }
        }
        self.bids.retain(|_, l| !l.queue.is_empty());
        self.asks.retain(|_, l| !l.queue.is_empty());
    }
}

fn main() {
    let tracker = ClassTracker::new();
    let mut rng = Lcg(7);
    tracker.create_snapshot("startup");

    let cache = load_symbols();
    tracker.create_snapshot("symbols cached");

    let mut book = OrderBook::default();
    for id in 0..40_000u64 {
        // Bids at 900..1000, asks at 1000..1100: a few cross.
        let bid = id % 2 == 0;
        let price = if bid {
            900 + rng.next(101)
        } else {
            1000 + rng.next(100)
        };
        book.add(id, bid, price, &mut rng);
    }
    tracker.create_snapshot("book built");

    let mut trades = Vec::new();
    book.match_orders(&mut trades);
    tracker.create_snapshot("after matching");

    book.cancel_every_other();
    tracker.create_snapshot("after cancelling half");

    for snap in tracker.snapshots() {
        snap.write_table(&mut std::io::stdout())
            .expect("stdout is writable");
        println!();
    }

    println!("live bytes per class over the run:");
    let snaps = tracker.snapshots();
    let last = snaps.last().expect("five snapshots were taken");
    print!("{:<24}", "class");
    for s in &snaps {
        print!(" {:>22}", s.description);
    }
    println!();
    for class in last.user_classes() {
        print!("{:<24}", class.name);
        for s in &snaps {
            let bytes = s.class_named(&class.name).map_or(0, |c| c.live_bytes);
            print!(" {:>22}", format_bytes(bytes));
        }
        println!();
    }
    println!(
        "\n{} symbols, {} resting orders, {} trades",
        cache.len(),
        book.orders.len(),
        trades.len()
    );

    let report = common::output_path("classtrack-quickstart.html");
    tracker
        .write_html(&report)
        .unwrap_or_else(|e| panic!("{}: {e}", report.display()));
    println!("wrote {} (open it in a browser)", report.display());
}
