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

mode = sys.argv[1] if len(sys.argv) > 1 else "overhead"
# criterion writes here whatever the cargo target directory.
root = pathlib.Path("target/criterion")


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
    base = median_ns("two_thread_small", "system")
    plus8 = median_ns("two_thread_small", "system_plus8")
    t = median_ns("two_thread_small", "tracked")
    if None not in (base, plus8, t):
        print()
        print("| workload | System | System, 8 bytes more a block | ratio | tracked | ratio |")
        print("|---|---|---|---|---|---|")
        print(f"| two_thread_small | {fmt(base)} | {fmt(plus8)} | {plus8 / base:.3f}× "
              f"| {fmt(t)} | {t / base:.3f}× |")
    print()
    print("| scope operation | median |")
    print("|---|---|")
    for case in ["enter_type", "enter_named", "scope_closure", "plain_constructor",
                 "class_attribute_constructor", "scope_attribute_function"]:
        m = median_ns("scope_enter_exit", case)
        if m is not None:
            print(f"| {case} (enter + exit) | {fmt(m)} |")
else:
    # Each classtrack column: the median, then how many times faster than dhat-rs.
    cases = [("classtrack_trace_all_uncached", "platform DWARF unwinder"),
             ("classtrack_trace_all", "cached DWARF"),
             ("classtrack_trace_all_depth16", "cached DWARF, 16 frames"),
             ("classtrack_trace_all_fp", "frame pointers")]
    print("| workload | threads | System | dhat-rs | "
          + " | ".join(f"classtrack, {label}" for _, label in cases) + " |")
    print("|---|---|---|---|" + "---|" * len(cases))
    for work in ["small_alloc_free", "hashmap_build"]:
        for t in [1, 2]:
            group = f"{work}_{t}t"
            base = median_ns(group, "system")
            dhat = median_ns(group, "dhat")
            ours = [median_ns(group, case) for case, _ in cases]
            if None in (base, dhat) or None in ours:
                continue
            cells = " | ".join(f"{fmt(o)} ({dhat / o:.2f}× faster)" for o in ours)
            print(f"| {work} | {t} | {fmt(base)} | {fmt(dhat)} | {cells} |")
