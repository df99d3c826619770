#!/usr/bin/env python3
"""Python's shared dict, the baseline for the shared map: `multiprocessing.Manager().dict()`.

A Manager dict lives in a server process; every `d[k]` and `d[k] = v` from another process
is a proxy call: the key (and value) pickled, a round trip over a Unix socket, the answer
unpickled. This script measures that per operation, from one client process (the main
process, as in Python's Manager example) with the dict pre-filled with `--keys` integer
keys, and reads and writes the keys in a fixed shuffled order (the same every run).

Usage (from the repository root):

    python3 benches/python/manager_dict.py --ops 20000 --json target/bench-results/manager_dict.json

`benches/run_all.sh` runs it; `benches/report.py` turns its `get_ns` / `set_ns` into ratios
against the criterion rows `map_get_1thread` and `map_insert_1thread` of benches/map.rs.
Standard library only.
"""

import argparse
import json
import multiprocessing as mp
import platform
import random
import time


def measure(d, keys, ops):
    """(get ns/op, set ns/op): the mean over `ops` operations of each kind."""
    n = len(keys)
    # Warm the connection and the server's caches.
    for i in range(min(ops, 1000)):
        _ = d[keys[i % n]]
    t0 = time.perf_counter_ns()
    s = 0
    for i in range(ops):
        s += d[keys[i % n]]
    get_ns = (time.perf_counter_ns() - t0) / ops
    t0 = time.perf_counter_ns()
    for i in range(ops):
        d[keys[i % n]] = i
    set_ns = (time.perf_counter_ns() - t0) / ops
    # Every get found its key (values were the keys themselves: the sum is checkable).
    expect = sum(keys[i % n] for i in range(ops))
    if s != expect:
        raise SystemExit(f"manager_dict: wrong sum of gets: {s} != {expect}")
    if d[keys[(ops - 1) % n]] != ops - 1:
        raise SystemExit("manager_dict: the last set is not visible")
    return get_ns, set_ns


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", type=int, default=20000, help="gets, then as many sets")
    ap.add_argument("--keys", type=int, default=1000, help="keys in the dict")
    ap.add_argument("--json", help="write the results here for benches/report.py")
    args = ap.parse_args()

    keys = list(range(args.keys))
    random.Random(7).shuffle(keys)
    with mp.Manager() as manager:
        d = manager.dict({k: k for k in keys})
        get_ns, set_ns = measure(d, keys, args.ops)
    out = {
        "python_version": platform.python_version(),
        "ops": args.ops,
        "keys": args.keys,
        "get_ns": get_ns,
        "set_ns": set_ns,
    }
    print(f"Manager().dict(): get {get_ns:.0f} ns/op ({1e3 / get_ns:.4f} M/s), "
          f"set {set_ns:.0f} ns/op ({1e3 / set_ns:.4f} M/s), {args.ops} ops each, "
          f"{args.keys} keys, Python {out['python_version']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
