//! Instructions per workload round for the six allocators of `inner.rs`, counted by valgrind's
//! callgrind. Run it through `python3 benches/inner.py`, which builds this binary, runs it
//! under callgrind with 0 and N rounds for each allocator and workload, and prints the
//! difference per round beside the wall-time medians of `cargo bench --bench inner`.
//!
//! `inner_instructions SETUP WORKLOAD ROUNDS`, SETUP one of `system`, `tracked_system`,
//! `mimalloc`, `tracked_mimalloc`, `jemalloc`, `tracked_jemalloc`, WORKLOAD one of
//! `small_alloc_free`, `vec_growth`, `hashmap_build`. Every setup is called through the same
//! adapter, so the workload's own instructions are the same in each.

mod common;
mod setups;

use std::hint::black_box;

use common::Via;
use setups::{SETUPS, WORKLOADS};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "--bench") {
        // `cargo bench` with no bench named runs every bench binary this way.
        println!("inner_instructions: run by `python3 benches/inner.py`, under callgrind");
        return;
    }
    let usage = "usage: inner_instructions SETUP WORKLOAD ROUNDS";
    let [setup, workload, rounds] = args.as_slice() else {
        panic!("{usage}");
    };
    let alloc = SETUPS
        .iter()
        .find(|(name, _)| name == setup)
        .unwrap_or_else(|| panic!("unknown setup {setup:?}; {usage}"))
        .1;
    let work = WORKLOADS
        .iter()
        .find(|(name, _)| name == workload)
        .unwrap_or_else(|| panic!("unknown workload {workload:?}; {usage}"))
        .1;
    let rounds: usize = rounds.parse().expect(usage);
    let a = Via(alloc);
    // One round before counting starts in both runs (0 and N rounds): the thread's first
    // allocations set up each allocator's per-thread state and classtrack's counter shard.
    black_box(work(black_box(a)));
    for _ in 0..rounds {
        black_box(work(black_box(a)));
    }
}
