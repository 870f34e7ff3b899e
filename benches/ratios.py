#!/usr/bin/env python3
"""Prints the median of each case of `cargo bench --bench overhead` and its ratio to the
`system` case of the same group, as the Markdown table kept in the README.

Run after `cargo bench --bench overhead`; reads target/criterion/*/*/new/estimates.json.
"""
import json
import pathlib
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")


def median_ns(group, case):
    f = root / group / case / "new" / "estimates.json"
    return json.loads(f.read_text())["median"]["point_estimate"] if f.exists() else None


def fmt(ns):
    return f"{ns / 1000:.2f} µs" if ns >= 1000 else f"{ns:.2f} ns"


print("| workload | System | tracked | ratio | tracked, in a scope | ratio | tracked, sampling off | ratio |")
print("|---|---|---|---|---|---|---|---|")
for group in ["small_alloc_free", "vec_growth", "hashmap_build"]:
    base = median_ns(group, "system")
    t = median_ns(group, "tracked")
    s = median_ns(group, "tracked_in_scope")
    u = median_ns(group, "tracked_unsampled")
    if None in (base, t, s, u):
        continue
    print(f"| {group} | {fmt(base)} | {fmt(t)} | {t / base:.3f}× | {fmt(s)} | {s / base:.3f}× "
          f"| {fmt(u)} | {u / base:.3f}× |")
print()
print("| scope operation | median |")
print("|---|---|")
for case in ["enter_type", "enter_named", "scope_closure"]:
    m = median_ns("scope_enter_exit", case)
    if m is not None:
        print(f"| {case} (enter + exit) | {fmt(m)} |")
