#!/usr/bin/env python3
"""System, mimalloc and jemalloc, each alone and wrapped by TrackingAlloc: wall time and
instructions, with ratios to System, as the Markdown tables kept in the README.

    cargo bench --bench inner          # the wall-time medians (criterion)
    python3 benches/inner.py           # prints them, then counts instructions (callgrind)
    python3 benches/inner.py --no-instructions

Wall time: the median of each case of `cargo bench --bench inner`, read from the workspace's
target/criterion. Instructions: builds the `inner_instructions` bench binary (release), runs it
under valgrind's callgrind with 0 and N rounds of each workload for each allocator, and divides
the difference by N, so that the program's start-up cancels out.
"""
import json
import pathlib
import re
import shutil
import subprocess
import sys

ROUNDS = 100
SETUPS = [
    ("system", "System"),
    ("tracked_system", "TrackingAlloc<System>"),
    ("mimalloc", "mimalloc"),
    ("tracked_mimalloc", "TrackingAlloc<MiMalloc>"),
    ("jemalloc", "jemalloc"),
    ("tracked_jemalloc", "TrackingAlloc<Jemalloc>"),
]
WORKLOADS = ["small_alloc_free", "vec_growth", "hashmap_build"]


def target_dir():
    out = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps"],
        check=True, capture_output=True, text=True,
    ).stdout
    return pathlib.Path(json.loads(out)["target_directory"])


def median_ns(root, group, case):
    f = root / "criterion" / group / case / "new" / "estimates.json"
    return json.loads(f.read_text())["median"]["point_estimate"] if f.exists() else None


def fmt_ns(ns):
    return f"{ns / 1000:.2f} µs" if ns >= 1000 else f"{ns:.2f} ns"


def table(title, values, fmt, mixed=False):
    """values[(setup, workload)] -> number or None; a row per setup, ratios to System. With
    `mixed`, a last column adds up the three workloads (the mixed workload)."""
    columns = WORKLOADS + (["mixed"] if mixed else [])
    print(f"| {title} | " + " | ".join(f"{w} | ratio" for w in columns) + " |")
    print("|---|" + "---|---|" * len(columns))
    for setup, label in SETUPS:
        cells = []
        for w in columns:
            names = WORKLOADS if w == "mixed" else [w]
            vs = [values.get((setup, n)) for n in names]
            bases = [values.get(("system", n)) for n in names]
            if None in vs or None in bases:
                cells += ["-", "-"]
            else:
                v, base = sum(vs), sum(bases)
                cells += [fmt(v), f"{v / base:.3f}×"]
        print(f"| {label} | " + " | ".join(cells) + " |")


def binary():
    out = subprocess.run(
        ["cargo", "bench", "-p", "classtrack-benches", "--bench", "inner_instructions",
         "--no-run", "--message-format=json"],
        check=True, capture_output=True, text=True,
    ).stdout
    for line in out.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" \
                and msg["target"]["name"] == "inner_instructions" and msg.get("executable"):
            return msg["executable"]
    sys.exit("inner.py: cargo built no `inner_instructions` bench binary")


def instructions(exe, setup, workload, rounds):
    run = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", exe, setup, workload,
         str(rounds)],
        capture_output=True, text=True,
    )
    if run.returncode != 0:
        sys.exit(f"inner.py: {setup} {workload} {rounds} failed:\n{run.stderr}")
    m = re.search(r"Collected : (\d+)", run.stderr)
    if not m:
        sys.exit(f"inner.py: no instruction count in callgrind's output:\n{run.stderr}")
    return int(m.group(1))


def main():
    root = target_dir()
    times = {(s, w): median_ns(root, f"inner_{w}", s) for s, _ in SETUPS for w in WORKLOADS}
    if all(v is None for v in times.values()):
        print(f"(no wall-time results in {root / 'criterion'}: run `cargo bench --bench inner`)")
    else:
        print("Wall time, criterion medians of one round:\n")
        table("allocator", times, fmt_ns)
    if "--no-instructions" in sys.argv:
        return
    if shutil.which("valgrind") is None:
        sys.exit("inner.py: valgrind is not installed (apt-get install valgrind)")
    exe = binary()
    counts = {}
    for w in WORKLOADS:
        for s, _ in SETUPS:
            n = instructions(exe, s, w, ROUNDS) - instructions(exe, s, w, 0)
            counts[(s, w)] = n / ROUNDS
    print(f"\nInstructions per round (callgrind, {ROUNDS} rounds less 0):\n")
    table("allocator", counts, lambda v: f"{v:,.0f}", mixed=True)


main()
