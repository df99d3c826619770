#!/usr/bin/env python3
"""Python multiprocessing, the baseline: the same counting job as `shmstate demo`.

P processes each do N operations on shared state, started together (a barrier); the time
is from the earliest start to the latest finish, measured inside the workers (so process
start-up and exit are not counted, as in the Rust benches). Every exact path checks its
final count; the lossy path (Value(lock=False)) reports its lost updates.

Usage (one command, from the repository root):

    python3 benches/python/compare.py --processes 2 --increments 200000

It then runs `cargo run --release -p shmstate-cli -- demo --processes P --increments N
--json` for the shmstate side (or `--shmstate-bin PATH -- demo ...`), and prints both and
the ratios. Without the demo it reports the Python half only. `--json FILE` saves all the
results for `benches/report.py`. Standard library only.

`Array('d', 1000)` full reads and `Array('q', 16)` per-bucket increments have no
`shmstate demo` counterpart, so they get no ratio here: `benches/report.py` pairs them with
the criterion `SeqLockArray` snapshot of 1,000 f64 and the criterion `ValueArray<u64>`
per-bucket `fetch_add` on 2 processes (`benches/run_all.sh` runs both sides and writes
those ratios into BENCHMARKS.md).

The coordination paths (`Semaphore`, `Event`, `Barrier`, `Queue`) are paired the same way,
with the criterion rows of `benches/coord.rs` doing the same job: they run with their own
number of processes (1 for the uncontended semaphore, 2 for the rest, whatever
`--processes` says), and count per operation what the criterion row counts per
iteration: one acquire+release per process, one round trip, one barrier round, one queue
message.
"""

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import time

ARRAY_LEN = 1000
# The capacity of the queues, as `QUEUE_CAP` in benches/coord.rs.
QUEUE_CAP = 1024
# Coordination paths: (kind, processes, whether it is scaled down by --coord-scale).
COORD = [
    ("semaphore_uncontended", 1, False),
    ("semaphore_contended", 2, False),
    ("event_pingpong", 2, True),
    ("barrier_round", 2, True),
    ("queue_oneway", 2, True),
    ("queue_pingpong", 2, True),
]
# Paths whose operation is one round (both processes together), not one per process.
PER_ROUND = {"event_pingpong", "barrier_round", "queue_oneway", "queue_pingpong"}
# Buckets of the per-bucket counting path; the same count and the same bucket sequence
# as the criterion `array_fetch_add_*` benches (benches/counters.rs).
BUCKETS = 16


def bucket(worker, k):
    return (k + worker * BUCKETS // 2) % BUCKETS


def _worker(kind, objs, n, barrier, stamps, i):
    barrier.wait()
    t0 = time.perf_counter()  # CLOCK_MONOTONIC: comparable across processes
    if kind == "value_get_lock":
        v = objs
        for _ in range(n):
            with v.get_lock():
                v.value += 1
    elif kind == "value_lock_false":
        v = objs
        for _ in range(n):
            v.value += 1
    elif kind == "lock_acquire_release":
        lock, v = objs
        for _ in range(n):
            lock.acquire()
            v.value += 1
            lock.release()
    elif kind == "array_get_lock":
        a = objs
        for k in range(n):
            with a.get_lock():
                a[bucket(i, k)] += 1
    elif kind == "array_full_read":
        a, count = objs
        total = 0.0
        for _ in range(n):
            with a.get_lock():
                snap = a[:]
            total += snap[0]
        with count.get_lock():
            count.value += int(total)
    elif kind == "manager_value":
        lock, v = objs
        for _ in range(n):
            with lock:
                v.value += 1
    elif kind == "manager_dict":
        lock, d = objs
        for _ in range(n):
            with lock:
                d["count"] += 1
    elif kind in ("semaphore_uncontended", "semaphore_contended"):
        # One permit guarding a plain count: lost counts would show a broken semaphore.
        sem, v = objs
        for _ in range(n):
            sem.acquire()
            v.value += 1
            sem.release()
    elif kind == "event_pingpong":
        ping, pong, rounds = objs
        for _ in range(n):
            if i == 0:
                ping.set()
                pong.wait()
                pong.clear()
            else:
                ping.wait()
                ping.clear()
                rounds.value += 1
                pong.set()
    elif kind == "barrier_round":
        b, leaders = objs
        for _ in range(n):
            if b.wait() == 0:
                with leaders.get_lock():
                    leaders.value += 1
    elif kind == "queue_oneway":
        q, got = objs
        if i == 0:
            for k in range(1, n + 1):
                q.put(k)
        else:
            for k in range(1, n + 1):
                v = q.get()
                if v != k:
                    raise AssertionError(f"queue delivered {v}, expected {k}")
            got.value = n
    elif kind == "queue_pingpong":
        there, back, rounds = objs
        for k in range(1, n + 1):
            if i == 0:
                there.put(k)
                v = back.get()
                if v != k:
                    raise AssertionError(f"queue echoed {v}, expected {k}")
                rounds.value += 1
            else:
                back.put(there.get())
    else:
        raise ValueError(kind)
    t1 = time.perf_counter()
    stamps[2 * i] = t0
    stamps[2 * i + 1] = t1


def run_case(ctx, kind, processes, n, manager=None):
    """Runs one case; returns a result dict like the Rust demo's."""
    if kind == "value_get_lock":
        objs = ctx.Value("q", 0)
        final = lambda: objs.value
    elif kind == "value_lock_false":
        objs = ctx.Value("q", 0, lock=False)
        final = lambda: objs.value
    elif kind == "lock_acquire_release":
        objs = (ctx.Lock(), ctx.Value("q", 0, lock=False))
        final = lambda: objs[1].value
    elif kind == "array_get_lock":
        objs = ctx.Array("q", BUCKETS)
        final = lambda: sum(objs[:])
    elif kind == "array_full_read":
        objs = (ctx.Array("d", [1.0] * ARRAY_LEN), ctx.Value("q", 0))
        final = lambda: objs[1].value
    elif kind == "manager_value":
        objs = (ctx.Lock(), manager.Value("q", 0))
        final = lambda: objs[1].value
    elif kind == "manager_dict":
        d = manager.dict()
        d["count"] = 0
        objs = (ctx.Lock(), d)
        final = lambda: objs[1]["count"]
    elif kind in ("semaphore_uncontended", "semaphore_contended"):
        objs = (ctx.Semaphore(1), ctx.Value("q", 0, lock=False))
        final = lambda: objs[1].value
    elif kind == "event_pingpong":
        objs = (ctx.Event(), ctx.Event(), ctx.Value("q", 0, lock=False))
        final = lambda: objs[2].value
    elif kind == "barrier_round":
        objs = (ctx.Barrier(2), ctx.Value("q", 0))
        final = lambda: objs[1].value
    elif kind == "queue_oneway":
        objs = (ctx.Queue(QUEUE_CAP), ctx.Value("q", 0, lock=False))
        final = lambda: objs[1].value
    elif kind == "queue_pingpong":
        objs = (ctx.Queue(QUEUE_CAP), ctx.Queue(QUEUE_CAP), ctx.Value("q", 0, lock=False))
        final = lambda: objs[2].value
    else:
        raise ValueError(kind)
    barrier = ctx.Barrier(processes)
    stamps = ctx.Array("d", 2 * processes, lock=False)
    procs = [
        ctx.Process(target=_worker, args=(kind, objs, n, barrier, stamps, i))
        for i in range(processes)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise RuntimeError(f"{kind}: worker exited with {p.exitcode}")
    starts = [stamps[2 * i] for i in range(processes)]
    ends = [stamps[2 * i + 1] for i in range(processes)]
    seconds = max(ends) - min(starts)
    # The coordination paths count one operation per round trip, barrier round or queue
    # message (as their criterion rows count one per iteration); the rest one per process.
    expected = n if kind in PER_ROUND else processes * n
    got = final()
    lost = expected - got
    if kind != "value_lock_false" and lost != 0:
        raise AssertionError(f"{kind}: expected {expected}, got {got}")
    return {
        "path": kind,
        "ops": expected,
        "expected": expected,
        "final": got,
        "lost": lost,
        "seconds": seconds,
        "ns_per_op": seconds * 1e9 / expected,
    }


def run_python(processes, increments, scale_array, scale_manager, scale_coord):
    ctx = mp.get_context("fork")
    results = []
    plan = [
        ("value_get_lock", increments),
        ("value_lock_false", increments),
        ("lock_acquire_release", increments),
        ("array_get_lock", increments),
        ("array_full_read", max(100, increments // scale_array)),
    ]
    for kind, n in plan:
        results.append(run_case(ctx, kind, processes, n))
        print(f"  python {kind:<22} done", file=sys.stderr)
    for kind, procs, scaled in COORD:
        n = max(100, increments // scale_coord) if scaled else increments
        results.append(run_case(ctx, kind, procs, n))
        print(f"  python {kind:<22} done", file=sys.stderr)
    with ctx.Manager() as manager:
        for kind in ("manager_value", "manager_dict"):
            n = max(100, increments // scale_manager)
            results.append(run_case(ctx, kind, processes, n, manager))
            print(f"  python {kind:<22} done", file=sys.stderr)
    return results


def run_shmstate(processes, increments, binary):
    """The `shmstate demo --json` results, or (None, reason) if it cannot run."""
    demo = ["demo", "--processes", str(processes), "--increments", str(increments), "--json"]
    if binary:
        cmd = [binary] + demo
    else:
        cmd = ["cargo", "run", "--quiet", "--release", "-p", "shmstate-cli", "--"] + demo
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"could not run {' '.join(cmd)}: {e}"
    if out.returncode != 0:
        err = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return None, f"`{' '.join(cmd)}` failed ({err})"
    try:
        doc = json.loads(out.stdout.strip().splitlines()[-1])
        results = doc["results"]
        for r in results:
            r["ops"] = r["expected"]
            r["ns_per_op"] = r["seconds"] * 1e9 / r["expected"]
        return results, None
    except (ValueError, KeyError, IndexError, TypeError, ZeroDivisionError) as e:
        return None, f"unexpected demo output ({e}): {out.stdout[:200]!r}"


# (python path, shmstate path, what the ratio means, target speed-up or None). No pair for
# array_full_read: see the module docs.
PAIRS = [
    ("value_get_lock", "atomic", "Value + get_lock() vs Value::fetch_add", 30.0),
    ("value_get_lock", "striped", "Value + get_lock() vs StripedCounter", 300.0),
    ("value_get_lock", "locked", "Value + get_lock() vs shmstate Mutex", None),
    ("lock_acquire_release", "locked", "multiprocessing.Lock vs shmstate Mutex", None),
    ("value_lock_false", "naive", "Value(lock=False) vs naive load+store (both lose updates)", None),
    ("manager_value", "atomic", "Manager().Value (+Lock) vs Value::fetch_add", None),
    ("manager_dict", "atomic", "Manager().dict() (+Lock) vs Value::fetch_add", None),
]


def ratios(py, rs):
    """Speed-ups (python ns/op / shmstate ns/op) for each pair both sides have."""
    py = {r["path"]: r for r in py}
    rs = {r["path"]: r for r in (rs or [])}
    out = []
    for p, s, meaning, target in PAIRS:
        if p in py and s in rs and rs[s]["ns_per_op"] > 0:
            out.append({
                "python": p,
                "shmstate": s,
                "meaning": meaning,
                "speedup": py[p]["ns_per_op"] / rs[s]["ns_per_op"],
                "target": target,
            })
    return out


def fmt_rate(ns):
    return f"{1e9 / ns / 1e6:8.3f} M/s" if ns > 0 else "      inf"


def print_table(title, results):
    print(f"\n{title}")
    print(f"  {'path':<22} {'ops':>10} {'lost':>9} {'ns/op':>10} {'rate':>12}")
    for r in results:
        print(f"  {r['path']:<22} {r['ops']:>10} {r['lost']:>9} {r['ns_per_op']:>10.1f} "
              f"{fmt_rate(r['ns_per_op']):>12}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--increments", type=int, default=200000,
                    help="operations per process (Value, Lock, and the shmstate demo)")
    ap.add_argument("--array-scale", type=int, default=10,
                    help="Array full reads do increments/this per process")
    ap.add_argument("--manager-scale", type=int, default=100,
                    help="Manager paths do increments/this per process (they are slow)")
    ap.add_argument("--coord-scale", type=int, default=40,
                    help="Event, Barrier and Queue round trips do increments/this (they "
                         "sleep in the kernel every time)")
    ap.add_argument("--shmstate-bin", help="path to a built `shmstate` binary")
    ap.add_argument("--no-shmstate", action="store_true", help="run the Python half only")
    ap.add_argument("--json", help="write all results to this file")
    args = ap.parse_args()
    if args.processes < 1 or args.increments < 1 or args.coord_scale < 1:
        ap.error("--processes, --increments and --coord-scale must be positive")

    py = run_python(args.processes, args.increments, args.array_scale, args.manager_scale,
                    args.coord_scale)
    rs, why = (None, "skipped (--no-shmstate)")
    if not args.no_shmstate:
        rs, why = run_shmstate(args.processes, args.increments, args.shmstate_bin)

    print(f"processes={args.processes} increments={args.increments} "
          f"(Array reads /{args.array_scale}, Manager /{args.manager_scale}, "
          f"Event/Barrier/Queue /{args.coord_scale}); "
          f"time from first start to last finish")
    print_table("Python multiprocessing", py)
    if rs:
        print_table("shmstate demo", rs)
    else:
        print(f"\nshmstate demo: not available: {why}")
    rows = ratios(py, rs)
    if rows:
        print("\nSpeed-up of shmstate (Python ns/op / shmstate ns/op; higher is better)")
        for r in rows:
            verdict = ""
            if r["target"]:
                ok = "met" if r["speedup"] >= r["target"] else "NOT met"
                verdict = f"  target >= {r['target']:g}x: {ok}"
            print(f"  {r['meaning']:<60} {r['speedup']:>9.1f}x{verdict}")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({
                "processes": args.processes,
                "increments": args.increments,
                "array_scale": args.array_scale,
                "manager_scale": args.manager_scale,
                "coord_scale": args.coord_scale,
                "python_version": sys.version.split()[0],
                "python": py,
                "shmstate": rs,
                "shmstate_missing": why if not rs else None,
                "ratios": rows,
            }, f, indent=2)


if __name__ == "__main__":
    main()
