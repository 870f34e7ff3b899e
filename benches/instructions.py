#!/usr/bin/env python3
"""Instructions per alloc/free pair under valgrind's callgrind, for System and TrackingAlloc.

    python3 benches/instructions.py                # prints the table
    python3 benches/instructions.py --check 120    # also fails if the default adds more than
                                                   # 120 instructions a pair to System's
    python3 benches/instructions.py --two-threads  # also two threads allocating batches of
                                                   # typical small blocks

Builds the `instructions` bench binary (release), runs it under callgrind with 0 and N pairs
for each allocator, and divides the difference by N: the program's start-up cancels out, and
so does what happens once per process before the pairs (the thread's counter shard, and with
sampling on the sampler's set-up at its first sample, which the binary forces beforehand).
"""
import json
import re
import shutil
import subprocess
import sys

PAIRS = 200_000
MODES = [
    ("system", "System"),
    ("tracked-off", "TrackingAlloc, sampling off"),
    ("tracked", "TrackingAlloc, default sampling"),
    ("tracked-peak", "TrackingAlloc, default sampling, in a class scope, peak watched"),
    ("measured", "the same inside testing::measure (every pair on the slow path)"),
]
# Two threads, batches of 64 typical small blocks (24 to 80 bytes) allocated then freed.
TWO_THREAD_MODES = [
    ("system-2t", "System"),
    ("plus8-2t", "System, 8 bytes more a block"),
    ("tracked-2t", "TrackingAlloc, default sampling"),
]


def binary():
    out = subprocess.run(
        ["cargo", "bench", "--bench", "instructions", "--no-run", "--message-format=json"],
        check=True, capture_output=True, text=True,
    ).stdout
    for line in out.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg["target"]["name"] == "instructions" \
                and msg.get("executable"):
            return msg["executable"]
    sys.exit("instructions.py: cargo built no `instructions` bench binary")


def instructions(exe, mode, pairs):
    run = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", exe, mode, str(pairs)],
        capture_output=True, text=True,
    )
    if run.returncode != 0:
        sys.exit(f"instructions.py: {mode} {pairs} failed:\n{run.stderr}")
    m = re.search(r"Collected : (\d+)", run.stderr)
    if not m:
        sys.exit(f"instructions.py: no instruction count in callgrind's output:\n{run.stderr}")
    return int(m.group(1))


def main():
    if shutil.which("valgrind") is None:
        sys.exit("instructions.py: valgrind is not installed (apt-get install valgrind)")
    limit = None
    if "--check" in sys.argv:
        limit = float(sys.argv[sys.argv.index("--check") + 1])
    exe = binary()
    per_pair = {}
    for mode, _ in MODES:
        per_pair[mode] = (instructions(exe, mode, PAIRS) - instructions(exe, mode, 0)) / PAIRS
    base = per_pair["system"]
    print("| allocator | instructions per alloc/free pair | beyond System |")
    print("|---|---|---|")
    for mode, label in MODES:
        print(f"| {label} | {per_pair[mode]:.1f} | {per_pair[mode] - base:+.1f} |")
    if "--two-threads" in sys.argv:
        two = {}
        for mode, _ in TWO_THREAD_MODES:
            two[mode] = (instructions(exe, mode, PAIRS) - instructions(exe, mode, 0)) / PAIRS
        print("\nTwo threads, batches of 64 blocks of 24 to 80 bytes:\n")
        print("| allocator | instructions per alloc/free pair | beyond System |")
        print("|---|---|---|")
        for mode, label in TWO_THREAD_MODES:
            print(f"| {label} | {two[mode]:.1f} | {two[mode] - two['system-2t']:+.1f} |")
    if limit is not None:
        extra = max(per_pair["tracked"], per_pair["tracked-peak"]) - base
        if extra > limit:
            sys.exit(f"instructions.py: the default adds {extra:.1f} instructions a pair to "
                     f"System's, over the limit of {limit:g}")
        print(f"\nwithin the limit: {extra:.1f} <= {limit:g} instructions a pair beyond System")


main()
