"""shmstate's Python package against multiprocessing, in one run: ratios only.

Cases (fork start method; every case is timed RUNS times, interleaved, and reported as
medians; the machine may be loaded):
  incr_locked_P   P processes each doing `with v.get_lock(): v.value += 1` N times
  incr_atomic_P   P processes each doing `v.add(1)` N times (shmstate; multiprocessing has
                  no atomic add, so its row is the locked one: the ratio is the speed-up a
                  user gets by switching `+=` under the lock to `add`)
  lock            one process, Lock acquire + release
  array_read      one process, `a[:]` of a 1000-element 'i' Array (lock=True)
  queue_2procs    a child puts N small objects ((i, "payload")), the parent gets them
                  (multiprocessing.Queue against shmstate.Queue, both unbounded)
  queue_pingpong  2 processes bounce a small object over two queues; one op is a round
                  trip (two put+get pairs)
  queue_1proc     one process, put then get of a small object
  dict_{int,str}_{get,set}
                  one process, `d[k]` / `d[k] = v` on a `Manager().dict()` against a
                  `shmstate.Dict`, 100 short str keys ("key17"), small int values (the key's
                  number) or short str values ("value17")
  list_{get,set,append_pop}
                  one process, `l[i]`, `l[i] = v` and `l.append(v)` then `l.pop()` on a
                  `Manager().list()` against a `shmstate.List`, 100 small int items

Usage: python benches/python/shmstate_vs_mp.py [--quick] [--runs K]  (SHMSTATE_BENCH_QUICK=1
too; K = 5 by default, 1 quick). Prints one line per case: both median rates, the median of
shmstate's per-run speed-ups and their range.
"""

import multiprocessing as mp
import os
import statistics
import sys
import time

import shmstate

QUICK = "--quick" in sys.argv or os.environ.get("SHMSTATE_BENCH_QUICK") == "1"
# Runs of every case (`--runs K`): a loaded machine swings a single timing by 2x or more.
RUNS = int(sys.argv[sys.argv.index("--runs") + 1]) if "--runs" in sys.argv else (1 if QUICK else 5)
N = 2_000 if QUICK else 50_000
SINGLE = 20_000 if QUICK else 500_000
ARRAY_READS = 2_000 if QUICK else 50_000
MANAGER_OPS = 1_000 if QUICK else 20_000  # a Manager dict op is a socket round trip
DICT_OPS = 20_000 if QUICK else 500_000


def locked_worker(v, n, go):
    go.wait()
    lock = v.get_lock()
    for _ in range(n):
        with lock:
            v.value += 1


def atomic_worker(v, n, go):
    go.wait()
    add = v.add
    for _ in range(n):
        add(1)


def processes(ctx, worker, v, procs, n):
    go = ctx.Event()
    ps = [ctx.Process(target=worker, args=(v, n, go)) for _ in range(procs)]
    for p in ps:
        p.start()
    time.sleep(0.2)  # let them reach the start line (not timed)
    t = time.perf_counter()
    go.set()
    for p in ps:
        p.join()
    secs = time.perf_counter() - t
    assert v.value == procs * n, (v.value, procs * n)
    return procs * n / secs


def lock_rate(lock):
    acquire, release = lock.acquire, lock.release
    t = time.perf_counter()
    for _ in range(SINGLE):
        acquire()
        release()
    return SINGLE / (time.perf_counter() - t)


def array_rate(arr):
    t = time.perf_counter()
    for _ in range(ARRAY_READS):
        arr[:]
    return ARRAY_READS / (time.perf_counter() - t)


QUEUE_ITEMS = 2_000 if QUICK else 100_000
PINGPONG = 500 if QUICK else 20_000
ITEM = "payload"


def queue_producer(q, n, go):
    go.wait()
    put = q.put
    for i in range(n):
        put((i, ITEM))


def queue_stream(ctx, q):
    go = ctx.Event()
    p = ctx.Process(target=queue_producer, args=(q, QUEUE_ITEMS, go))
    p.start()
    time.sleep(0.2)  # let it reach the start line (not timed)
    get = q.get
    t = time.perf_counter()
    go.set()
    for i in range(QUEUE_ITEMS):
        assert get()[0] == i
    secs = time.perf_counter() - t
    p.join()
    return QUEUE_ITEMS / secs


def queue_echo(there, back, n):
    for _ in range(n):
        back.put(there.get())


def queue_pingpong(ctx, there, back):
    p = ctx.Process(target=queue_echo, args=(there, back, PINGPONG + 1))
    p.start()
    there.put((0, ITEM))  # the first round trip waits for the child to start (not timed)
    back.get()
    put, get = there.put, back.get
    t = time.perf_counter()
    for i in range(PINGPONG):
        put((i, ITEM))
        assert get()[0] == i
    secs = time.perf_counter() - t
    p.join()
    return PINGPONG / secs


def queue_local(q):
    put, get = q.put, q.get
    t = time.perf_counter()
    for i in range(SINGLE // 5):
        put((i, ITEM))
        get()
    return (SINGLE // 5) / (time.perf_counter() - t)


def dict_rates(d, values, ops):
    """(gets/s, sets/s) on `d` with 100 str keys and `values` (one per key)."""
    keys = [f"key{i}" for i in range(100)]
    pairs = list(zip(keys, values)) * (ops // 100)
    for k, v in zip(keys, values):
        d[k] = v
    t = time.perf_counter()
    for k, v in pairs:
        d[k] = v
    set_rate = len(pairs) / (time.perf_counter() - t)
    t = time.perf_counter()
    for k, v in pairs:
        d[k]
    get_rate = len(pairs) / (time.perf_counter() - t)
    assert d[keys[-1]] == values[-1]
    return get_rate, set_rate


def dict_pair(d, values, ops):
    """{"get": gets/s, "set": sets/s} of `dict_rates`."""
    get, set_ = dict_rates(d, values, ops)
    return {"get": get, "set": set_}


def list_rates(lst, ops):
    """{"get": l[i]/s, "set": l[i] = v/s, "append_pop": append+pop pairs/s} on `lst`,
    filled with the ints 0..99 (`ops` operations of each kind, `ops // 2` pairs)."""
    lst.extend(range(100))
    idx = list(range(100)) * (ops // 100)
    t = time.perf_counter()
    for i in idx:
        lst[i] = i
    set_rate = len(idx) / (time.perf_counter() - t)
    t = time.perf_counter()
    s = 0
    for i in idx:
        s += lst[i]
    get_rate = len(idx) / (time.perf_counter() - t)
    assert s == sum(idx)
    pairs = ops // 2
    append, pop = lst.append, lst.pop
    t = time.perf_counter()
    for i in range(pairs):
        append(i)
        pop()
    pair_rate = pairs / (time.perf_counter() - t)
    assert len(lst) == 100
    return {"get": get_rate, "set": set_rate, "append_pop": pair_rate}


def cases(ctx, manager):
    """(row name, multiprocessing thunk, shmstate thunk); a thunk returns a rate, or a dict
    of rates for rows named `row_KEY`."""
    ints = list(range(100))
    strs = [f"value{i}" for i in range(100)]
    out = []
    for procs in (2, 4):
        def base(procs=procs):
            return processes(ctx, locked_worker, mp.Value("q", 0), procs, N)
        out.append((f"incr_locked_{procs}", base,
                    lambda procs=procs: processes(ctx, locked_worker, shmstate.Value("q", 0), procs, N)))
        out.append((f"incr_atomic_{procs}", base,
                    lambda procs=procs: processes(ctx, atomic_worker, shmstate.Value("q", 0), procs, N)))
    out += [
        ("lock", lambda: lock_rate(mp.Lock()), lambda: lock_rate(shmstate.Lock())),
        ("array_read", lambda: array_rate(mp.Array("i", range(1000))),
         lambda: array_rate(shmstate.Array("i", range(1000)))),
        ("queue_2procs", lambda: queue_stream(ctx, ctx.Queue()),
         lambda: queue_stream(ctx, shmstate.Queue())),
        ("queue_pingpong", lambda: queue_pingpong(ctx, ctx.Queue(), ctx.Queue()),
         lambda: queue_pingpong(ctx, shmstate.Queue(), shmstate.Queue())),
        ("queue_1proc", lambda: queue_local(ctx.Queue()), lambda: queue_local(shmstate.Queue())),
        ("dict_int", lambda: dict_pair(manager.dict(), ints, MANAGER_OPS),
         lambda: dict_pair(shmstate.Dict(), ints, DICT_OPS)),
        ("dict_str", lambda: dict_pair(manager.dict(), strs, MANAGER_OPS),
         lambda: dict_pair(shmstate.Dict(), strs, DICT_OPS)),
        ("list", lambda: list_rates(manager.list(), MANAGER_OPS),
         lambda: list_rates(shmstate.List(), DICT_OPS)),
    ]
    return out


def main():
    ctx = mp.get_context("fork")
    print(f"{RUNS} run(s); each run times every case, multiprocessing then shmstate; the "
          "rates are medians, the speed-up is the median of the runs' ratios (min-max)")
    print(f"{'case':16} {'mp ops/s':>14} {'shmstate ops/s':>14} {'speed-up':>10}  runs")
    rates = {}
    with ctx.Manager() as manager:
        table = cases(ctx, manager)
        for _ in range(RUNS):
            for name, mp_case, ss_case in table:
                a, b = mp_case(), ss_case()
                pairs = [(f"{name}_{k}", a[k], b[k]) for k in a] if isinstance(a, dict) else [(name, a, b)]
                for row_name, x, y in pairs:
                    rates.setdefault(row_name, []).append((x, y))
    for name, runs in rates.items():
        mp_med = statistics.median(x for x, _ in runs)
        ss_med = statistics.median(y for _, y in runs)
        ratios = [y / x for x, y in runs]
        spread = f"{min(ratios):.1f}-{max(ratios):.1f}x" if len(ratios) > 1 else ""
        print(f"{name:16} {mp_med:>14,.0f} {ss_med:>14,.0f} {statistics.median(ratios):>9.1f}x  {spread}",
              flush=True)


if __name__ == "__main__":
    main()
