"""The `+=` lesson: 4 processes add 1 to a shared number N times each, three ways.

- naive:    ``v.value += 1`` (a read and a write: concurrent processes lose updates)
- locked:   ``with v.get_lock(): v.value += 1`` (exact; a lock round trip per add)
- atomic:   ``v.add(1)`` (exact; one atomic instruction)

Usage: python plus_equals.py [N] [--start-method fork|spawn|forkserver]
Exits with status 1 if the locked or atomic path is not exact.
"""

import multiprocessing as mp
import sys
import time

from shmstate import Value

PROCESSES = 4


def naive(v, n, start):
    start.wait()
    for _ in range(n):
        v.value += 1


def locked(v, n, start):
    start.wait()
    for _ in range(n):
        with v.get_lock():
            v.value += 1


def atomic(v, n, start):
    start.wait()
    add = v.add
    for _ in range(n):
        add(1)


def run(ctx, work, n):
    v = Value("q", 0)
    start = ctx.Event()
    procs = [ctx.Process(target=work, args=(v, n, start)) for _ in range(PROCESSES)]
    for p in procs:
        p.start()
    t = time.perf_counter()
    start.set()
    for p in procs:
        p.join()
    return v.value, time.perf_counter() - t


def main(argv):
    n = 100_000
    method = None
    args = list(argv)
    while args:
        a = args.pop(0)
        if a == "--start-method":
            method = args.pop(0)
        else:
            n = int(a)
    ctx = mp.get_context(method)
    expected = PROCESSES * n
    print(f"{PROCESSES} processes x {n} increments each ({ctx.get_start_method()})")
    print(f"{'path':8} {'expected':>10} {'final':>10} {'lost':>10} {'seconds':>9}")
    exact = True
    for name, work in (("naive", naive), ("locked", locked), ("atomic", atomic)):
        final, secs = run(ctx, work, n)
        print(f"{name:8} {expected:>10} {final:>10} {expected - final:>10} {secs:>9.3f}")
        if name != "naive" and final != expected:
            exact = False
    print("naive v.value += 1 loses updates when processes really run at once; "
          "get_lock() and add(1) are exact")
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
