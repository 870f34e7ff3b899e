#!/usr/bin/env python3
"""Prints the medians of a criterion run as the Markdown tables kept in the README.

    python3 benches/ratios.py          # after `cargo bench --bench overhead`
    python3 benches/ratios.py sites    # after `cargo bench --bench sites`

Reads target/criterion/<group>/<case>/new/estimates.json; ratios are to the `system` case
of the same group, measured in the same run.
"""
import json
import pathlib
import sys

root = pathlib.Path("target/criterion")
mode = sys.argv[1] if len(sys.argv) > 1 else "overhead"


def median_ns(group, case):
    f = root / group / case / "new" / "estimates.json"
    return json.loads(f.read_text())["median"]["point_estimate"] if f.exists() else None


def fmt(ns):
    return f"{ns / 1000:.2f} µs" if ns >= 1000 else f"{ns:.2f} ns"


if mode == "overhead":
    print("| workload | System | tracked (sampling on) | ratio | tracked, in a scope | ratio "
          "| tracked, sampling off | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for group in ["small_alloc_free", "vec_growth", "hashmap_build"]:
        base = median_ns(group, "system")
        t = median_ns(group, "tracked")
        s = median_ns(group, "tracked_in_scope")
        u = median_ns(group, "tracked_unsampled")
        if None in (base, t, s, u):
            continue
        print(f"| {group} | {fmt(base)} | {fmt(t)} | {t / base:.3f}× | {fmt(s)} "
              f"| {s / base:.3f}× | {fmt(u)} | {u / base:.3f}× |")
    print()
    print("| scope operation | median |")
    print("|---|---|")
    for case in ["enter_type", "enter_named", "scope_closure"]:
        m = median_ns("scope_enter_exit", case)
        if m is not None:
            print(f"| {case} (enter + exit) | {fmt(m)} |")
else:
    print("| workload | threads | System | classtrack, every allocation | dhat-rs "
          "| dhat-rs / classtrack |")
    print("|---|---|---|---|---|---|")
    for work in ["small_alloc_free", "hashmap_build"]:
        for t in [1, 2]:
            group = f"{work}_{t}t"
            base = median_ns(group, "system")
            ours = median_ns(group, "classtrack_trace_all")
            dhat = median_ns(group, "dhat")
            if None in (base, ours, dhat):
                continue
            print(f"| {work} | {t} | {fmt(base)} | {fmt(ours)} ({ours / base:.1f}×) "
                  f"| {fmt(dhat)} ({dhat / base:.1f}×) | {dhat / ours:.2f}× |")
