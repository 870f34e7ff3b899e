//! Where each class's memory comes from: sampled allocation sites, a flamegraph and a pprof
//! profile.
//!
//! Run it with `cargo run --release --example where_from`; it writes
//! `target/where_from.svg` (open it in any browser) and `target/where_from.pb.gz`
//! (`go tool pprof -top target/where_from.pb.gz`, or `go tool pprof -http=: …`).

mod common;

use std::alloc::System;
use std::collections::HashMap;

use classtrack::report::{format_bytes, format_estimate, Measure};
use classtrack::{ClassTracker, TrackingAlloc};

#[global_allocator]
static ALLOC: TrackingAlloc<System> = TrackingAlloc::new(System);

/// A token of a parsed document.
#[allow(dead_code)]
struct Token {
    text: String,
    kind: u8,
}

#[inline(never)]
fn tokenize(doc: &str) -> Vec<Token> {
    doc.split_whitespace()
        .map(|w| Token {
            text: w.to_string(),
            kind: w.len() as u8,
        })
        .collect()
}

#[inline(never)]
fn build_index(tokens: &[Token]) -> HashMap<String, Vec<usize>> {
    let mut index: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, t) in tokens.iter().enumerate() {
        index.entry(t.text.clone()).or_default().push(i);
    }
    index
}

#[inline(never)]
fn load_thumbnails(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| vec![i as u8; 64 * 1024]).collect()
}

fn main() {
    let tracker = ClassTracker::new();
    let doc = "the quick brown fox jumps over the lazy dog ".repeat(20_000);
    let tokens = classtrack::scope::<Token, _>(|| tokenize(&doc));
    let index = classtrack::scope_named("search index", || build_index(&tokens));
    let thumbs = classtrack::scope_named("thumbnail cache", || load_thumbnails(200));
    let snap = tracker.create_snapshot("loaded");

    for class in ["where_from::Token", "search index", "thumbnail cache"] {
        let exact = snap.class_named(class).map_or(0, |c| c.live_bytes);
        println!(
            "{class}: {} live (sampled estimate {})",
            format_bytes(exact),
            format_estimate(
                snap.sampled_live_bytes(class),
                snap.sampled_live_samples(class)
            )
        );
        for site in snap.top_sites(class, 3) {
            println!(
                "  {} live, {:.0} blocks, from:",
                site.estimate, site.estimate.live_blocks
            );
            for f in site.frames().iter().take(4) {
                let at = match (&f.file, f.line) {
                    (Some(file), Some(line)) => format!(" ({file}:{line})"),
                    _ => String::new(),
                };
                println!("      {}{at}", f.function);
            }
        }
    }

    let (svg_path, pb_path) = (
        common::output_path("where_from.svg"),
        common::output_path("where_from.pb.gz"),
    );
    let mut svg =
        std::fs::File::create(&svg_path).unwrap_or_else(|e| panic!("{}: {e}", svg_path.display()));
    snap.write_flamegraph(&mut svg, Measure::LiveBytes)
        .expect("the flamegraph is written");
    let mut pb =
        std::fs::File::create(&pb_path).unwrap_or_else(|e| panic!("{}: {e}", pb_path.display()));
    snap.write_pprof(&mut pb).expect("the profile is written");
    println!("\nwrote {} (open it in a browser)", svg_path.display());
    println!("wrote {0} (go tool pprof -top {0})", pb_path.display());
    println!(
        "{} tokens, {} index keys, {} thumbnails",
        tokens.len(),
        index.len(),
        thumbs.len()
    );
}
