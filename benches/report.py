#!/usr/bin/env python3
"""Turns a bench run into the ratio table of BENCHMARKS.md and the SVG chart.

Reads criterion's `target/criterion/**/new/{benchmark,estimates}.json` (medians) and,
if present, the JSON written by `benches/python/compare.py --json` and by
`benches/python/channel_queue.py --json` (the message channel's Python rows). In every criterion
group, each `shmstate_*` function is compared with every other function of the group
(same workers, same operations per iteration). Writes:

- the section between `<!-- results:begin -->` and `<!-- results:end -->` of BENCHMARKS.md
  (the scaling sweeps, groups `scaling_<primitive>_<n>proc(s)`, as one table per primitive
  with the worker counts across, after the ratio table)
- `benches/chart.svg`: speed-up of shmstate over each alternative, log scale, at a glance
  (the sweeps are not in it).

Also reads, if present, the JSON of `benches/python/manager_dict.py --json` (Python's
`Manager().dict()`), for the shared map's ratios.

Usage: python3 benches/report.py [--criterion DIR] [--python FILE] [--channel-python FILE]
       [--manager-dict FILE]
       [--markdown FILE] [--svg FILE]. Standard library only.
"""

import argparse
import datetime
import json
import math
import os
import platform
import re
import sys

BEGIN = "<!-- results:begin -->"
END = "<!-- results:end -->"

# Targets from the issue, as (group, shmstate function, alternative) -> (text, minimum
# speed-up = alternative time / shmstate time). A ratio target "shmstate/alt <= r" is a
# minimum speed-up of 1/r.
TARGETS = {
    ("counter_inc_1thread", "shmstate_counter", "heap_atomic_u64"):
        ("time ratio <= 1.05", 1 / 1.05),
    ("striped_2procs", "shmstate_striped", "padded_atomic_per_worker"):
        ("time ratio <= 1.3", 1 / 1.3),
    ("striped_2procs", "shmstate_striped", "one_atomic"):
        (">= 3x faster", 3.0),
    ("mutex_uncontended", "shmstate_mutex", "std_mutex"):
        ("time ratio <= 1.1", 1 / 1.1),
    ("mutex_uncontended", "shmstate_mutex", "pthread_pshared_robust"):
        ("faster (ratio < 1)", 1.0),
    ("mutex_contended_2procs", "shmstate_mutex", "pthread_pshared_robust"):
        (">= 1.5x throughput", 1.5),
    ("seqlock_read64_2readers", "shmstate_seqlock", "std_rwlock"):
        (">= 50x throughput", 50.0),
    ("channel_oneway_64B_2procs", "shmstate_channel", "unix_socket"):
        (">= 20x throughput", 20.0),
    # The shared map (benches/map.rs).
    ("map_get_1thread", "shmstate_bytemap", "std_rwlock_hashmap"):
        ("time ratio <= 1.5", 1 / 1.5),
    ("map_get_1thread", "shmstate_map_u64", "std_rwlock_hashmap"):
        ("time ratio <= 1.5", 1 / 1.5),
    ("map_get_1thread", "shmstate_bytemap_handle", "std_rwlock_hashmap"):
        ("time ratio <= 1.5", 1 / 1.5),
    ("map_get_1thread", "shmstate_map_u64_handle", "std_rwlock_hashmap"):
        ("time ratio <= 1.5", 1 / 1.5),
    ("map_get_1thread", "shmstate_bytemap", "redis"): (">= 300x", 300.0),
    # Redis' SET returns no old value: compared with `set`, which reads none out either
    # (`insert` hands the old value back).
    ("map_insert_1thread", "shmstate_bytemap_set", "redis"): (">= 300x", 300.0),
    ("map_incr_1thread", "shmstate_bytemap", "redis"): (">= 300x", 300.0),
    ("map_insert_1thread", "shmstate_bytemap_handle_set", "redis"): (">= 300x", 300.0),
    ("map_incr_1thread", "shmstate_bytemap_handle", "redis"): (">= 300x", 300.0),
}

# Absolute targets of the shared map, (group, shmstate function) -> (text, maximum median
# ns): reported, like every target, never asserted.
ABS_TARGETS = {
    ("map_insert_1thread", "shmstate_bytemap"): ("<= 100 ns", 100.0),
    ("map_insert_1thread", "shmstate_map_u64"): ("<= 100 ns", 100.0),
    ("map_incr_1thread", "shmstate_bytemap"): ("<= 100 ns", 100.0),
    ("map_incr_1thread", "shmstate_map_i64"): ("<= 100 ns", 100.0),
}

# Scaling sweeps with a target on the time with the most workers over the time with one
# (every worker's time per operation): sweep -> (text, maximum growth).
GROWTH_TARGETS = {
    "map_get": ("2 readers within 1.2x of 1", 1.2),
}

# What each group measures, for the table.
MEANING = {
    "counter_inc_1thread": "one increment, one thread",
    "counter_contended_2threads": "one counter, 2 threads incrementing",
    "counter_contended_2procs": "one counter, 2 processes incrementing",
    "striped_2threads": "exact counting, 2 threads",
    "striped_2procs": "exact counting, 2 processes",
    "f64_add_1thread": "add 1.0 to a shared f64, one thread",
    "f64_add_2threads": "add 1.0 to a shared f64, 2 threads",
    "array_fetch_add_2threads": "add 1 to one of 16 buckets, 2 threads",
    "array_fetch_add_2procs": "add 1 to one of 16 buckets, 2 processes",
    "mutex_uncontended": "lock + increment + unlock, one thread",
    "mutex_contended_2threads": "lock + increment + unlock, 2 threads",
    "mutex_contended_2procs": "lock + increment + unlock, 2 processes",
    "rwlock_read_1thread": "read-lock + read + unlock, one thread",
    "rwlock_read_2threads": "read-lock + read + unlock, 2 threads",
    "rwlock_write_2procs": "write-lock + increment + unlock, 2 processes",
    "condvar_pingpong_2procs": "wait/notify round trip between 2 processes",
    "seqlock_read64_1reader": "consistent 64-byte read, 1 reader",
    "seqlock_read64_2readers": "consistent 64-byte read, 2 readers, no writer",
    "seqlock_read64_1reader_1writer": "consistent 64-byte read, 1 reader, a writer looping",
    "seqlock_write64_2procs": "64-byte read-modify-write, 2 writer processes",
    "seqlock_array_snapshot_1000f64": "consistent copy of 1,000 f64, one thread",
    "semaphore_uncontended": "acquire + increment + release, one permit, one thread",
    "semaphore_contended_2procs": "acquire + increment + release, one permit, 2 processes",
    "event_pingpong_2procs": "set-to-wake round trip between 2 processes, two flags",
    "barrier_2procs": "one round of a 2-process barrier",
    "queue_oneway_2procs": "one u64 message, one process sending, one receiving",
    "queue_pingpong_2procs": "one u64 message there and back between 2 processes",
    "map_get_1thread": "get of a present 8-byte key (8-byte value), one thread",
    "map_insert_1thread": "insert over a present 8-byte key (8-byte value), one thread",
    "map_incr_1thread": "increment a present counter, one thread",
}
# Networked engines on loopback beside shmstate (benches/remote.rs).
MEANING["remote_lock_1thread"] = "acquire + release of an uncontended lock, one thread"
MEANING["remote_stream_64B_1thread"] = "one 64 B message in and back out, one thread"
MEANING["remote_kv_put_1thread"] = "put of an 8-byte value over a present 8-byte key, one thread"
MEANING["remote_kv_get_1thread"] = "get of a present 8-byte key, one thread"
# The message channel (benches/channel.rs): one group per shape and size.
CHANNEL_SIZES = ["8B", "64B", "1KiB", "16KiB"]
for _size in CHANNEL_SIZES:
    MEANING[f"channel_oneway_{_size}_2procs"] = \
        f"one {_size} message, one process sending, one receiving"
for _size in CHANNEL_SIZES:
    MEANING[f"channel_pingpong_{_size}_2procs"] = \
        f"one {_size} message there and back between 2 processes"
MEANING["channel_floor_2procs"] = "two atomics bounced between 2 processes (the floor)"
MEANING["channel_oneway_64B_1thread"] = ("one 64 B message sent and received back by one "
                                         "thread: the CPU's part, no cross-core traffic")
MEANING["channel_memcpy"] = ("one 16 KiB memcpy, one thread: in cache, and 16 KiB at a time "
                             "of a 256 MiB copy (memory bandwidth)")
# Groups of physical floors: measured without a shmstate side on purpose.
FLOOR_GROUPS = {"channel_floor_2procs", "channel_memcpy"}

GROUP_ORDER = list(MEANING)

BENCH_FILE = {
    "counter": "counters", "striped": "counters", "f64": "counters", "array": "counters",
    "mutex": "locks", "rwlock": "locks", "condvar": "locks", "seqlock": "seqlock",
    "semaphore": "coord", "event": "coord", "barrier": "coord", "queue": "coord",
    "channel": "channel",
    "map": "map", "remote": "remote", "histogram": "metrics", "metrics": "metrics", "render": "metrics",
}


def bench_file(group):
    if group.startswith(SCALING_PREFIX):
        group = group[len(SCALING_PREFIX):]
    return BENCH_FILE.get(group.split("_")[0], "?")


# The scaling sweeps: groups `scaling_<primitive>_<n>proc(s)`, one per worker count (1, 2,
# 4, 8 processes). They are rendered as one table per primitive (workers across), not as
# rows of the ratio table or bars of the chart.
SCALING_PREFIX = "scaling_"
SCALING_RE = re.compile(r"^scaling_(.+)_(\d+)procs?$")

# What one operation of each sweep is, in the order the tables are printed.
SCALING_MEANING = {
    "counter": "one shared counter: `Counter::inc` vs `AtomicU64::fetch_add` in the same "
               "kind of shared memory",
    "striped": "exact counting: `StripedCounter::inc` (default stripes: the cores, rounded "
               "up to a power of two) vs one shared atomic and one padded atomic per worker",
    "mutex": "lock + increment + unlock of one `Mutex<u64>` vs glibc's process-shared "
             "robust mutex",
    "rwlock_read": "read-lock + read + unlock of one `RwLock<u64>`, no writer, vs glibc's "
                   "process-shared `pthread_rwlock_t`",
    "seqlock_read64": "consistent 64-byte read of one `SeqLock<[u64; 8]>`, no writer, vs "
                      "the same block under glibc's process-shared `pthread_rwlock_t`",
    "map_get": "get of a present 8-byte key from a shared map by 1 and 2 reader processes, "
               "no writer (`ByteMap::get_with`, `Map<u64, u64>::get`)",
}


def is_scaling(group):
    return SCALING_RE.match(group) is not None


def machine():
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "kernel": platform.release()}


def load_criterion(root):
    """{(group, function): median ns per iteration} from criterion's `new` estimates."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        if os.path.basename(dirpath) != "new" or "estimates.json" not in files:
            continue
        try:
            with open(os.path.join(dirpath, "benchmark.json")) as f:
                meta = json.load(f)
            with open(os.path.join(dirpath, "estimates.json")) as f:
                est = json.load(f)
            med = est["median"]
            out[(meta["group_id"], meta["function_id"])] = {
                "median": med["point_estimate"],
                "lo": med["confidence_interval"]["lower_bound"],
                "hi": med["confidence_interval"]["upper_bound"],
            }
        except (OSError, ValueError, KeyError, TypeError):
            print(f"report: skipping unreadable {dirpath}", file=sys.stderr)
    return out


def load_warnings(log):
    """{(group, function)} flagged by the benches' OVERLAP WARNING lines."""
    flagged = set()
    try:
        with open(log, errors="replace") as f:
            for line in f:
                m = re.search(r"OVERLAP WARNING (\S+)/(\S+?):", line)
                if m:
                    flagged.add((m.group(1), m.group(2)))
    except OSError:
        pass
    return flagged


# Python path -> (criterion group, shmstate function, workers per iteration, meaning,
# target speed-up): the same job measured by the criterion benches, per operation.
# `Array('d', 1000)` full reads have no `shmstate demo` path, so this is their only pair:
# the one-reader snapshot row, against Python's 2 processes (conservative for shmstate,
# whose readers do not slow each other down, where Python's serialise on one lock).
# `Array('q', 16)` per-bucket increments have no demo path either: they pair with the
# criterion `ValueArray<u64>` row, the same bucket sequence on 2 processes.
PY_VS_CRITERION = [
    ("value_get_lock", "counter_contended_2procs", "shmstate_value_u64", 2,
     "Value + get_lock() vs Value<u64>::fetch_add", 30.0),
    ("value_get_lock", "striped_2procs", "shmstate_striped", 2,
     "Value + get_lock() vs StripedCounter", 300.0),
    ("value_get_lock", "mutex_contended_2procs", "shmstate_mutex", 2,
     "Value + get_lock() vs shmstate Mutex", None),
    ("lock_acquire_release", "mutex_contended_2procs", "shmstate_mutex", 2,
     "multiprocessing.Lock vs shmstate Mutex", None),
    ("manager_value", "counter_contended_2procs", "shmstate_value_u64", 2,
     "Manager().Value (+Lock) vs Value<u64>::fetch_add", None),
    ("array_get_lock", "array_fetch_add_2procs", "shmstate_value_array", 2,
     "Array('q', 16)[i] += 1 under get_lock() vs ValueArray<u64>::fetch_add", None),
    ("array_full_read", "seqlock_array_snapshot_1000f64", "shmstate_seqlock_array", 1,
     "Array('d', 1000)[:] under get_lock() vs SeqLockArray snapshot (1 reader)", None),
    # The coordination paths (benches/coord.rs): an uncontended semaphore is one process,
    # and a round trip, barrier round or queue message is one iteration of its row.
    ("semaphore_uncontended", "semaphore_uncontended", "shmstate_semaphore", 1,
     "Semaphore(1) acquire+release, 1 process", None),
    ("semaphore_contended", "semaphore_contended_2procs", "shmstate_semaphore", 2,
     "Semaphore(1) acquire+release, 2 processes", None),
    ("event_pingpong", "event_pingpong_2procs", "shmstate_event", 1,
     "Event set/wait round trip (2 events)", None),
    ("barrier_round", "barrier_2procs", "shmstate_barrier", 1,
     "Barrier(2) round", None),
    ("queue_oneway", "queue_oneway_2procs", "shmstate_queue", 1,
     "Queue(1024) message, one way", None),
    ("queue_pingpong", "queue_pingpong_2procs", "shmstate_queue", 1,
     "Queue(1024) message there and back (2 queues)", None),
]


def py_vs_criterion(py, est):
    out = []
    pyr = {r["path"]: r for r in (py or {}).get("python", [])}
    if not py or py.get("processes") != 2:
        return out
    for p, g, fn, workers, meaning, target in PY_VS_CRITERION:
        if p in pyr and (g, fn) in est:
            shm_ns = est[(g, fn)]["median"] / workers
            out.append({"meaning": meaning, "py_ns": pyr[p]["ns_per_op"], "shm_ns": shm_ns,
                        "speedup": pyr[p]["ns_per_op"] / shm_ns, "target": target,
                        "bench": f"{g}/{fn}"})
    return out


def rows_from_criterion(est):
    groups = {}
    for (g, fn), e in est.items():
        if is_scaling(g):
            continue  # rendered by `scaling_tables`
        groups.setdefault(g, {})[fn] = e
    order = sorted(groups, key=lambda g: (GROUP_ORDER.index(g) if g in GROUP_ORDER else 99, g))
    rows = []
    for g in order:
        fns = groups[g]
        for s in sorted(f for f in fns if f.startswith("shmstate_")):
            for a in sorted(f for f in fns if not f.startswith("shmstate_")):
                target = TARGETS.get((g, s, a))
                rows.append({
                    "group": g, "shmstate": s, "alt": a,
                    "shm_ns": fns[s]["median"], "alt_ns": fns[a]["median"],
                    "speedup": fns[a]["median"] / fns[s]["median"],
                    "target": target,
                })
    return rows, groups


def fmt_ns(ns):
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.2f} ns"


def verdict(speedup, target):
    if not target:
        return ""
    text, need = target
    if speedup >= need:
        return f"{text}: **met**"
    return f"{text}: **not met** (needs {need / speedup:.2f}x more)"


def scaling_tables(est, flagged, cores):
    """One table per swept primitive: rows shmstate and each alternative, columns the
    worker counts; cells the median time per iteration (= per operation of each worker)."""
    sweeps = {}
    for (g, fn), e in est.items():
        m = SCALING_RE.match(g)
        if m:
            sweeps.setdefault(m.group(1), {}).setdefault(int(m.group(2)), {})[fn] = (g, e)
    if not sweeps:
        return []
    order = sorted(sweeps, key=lambda p: (list(SCALING_MEANING).index(p)
                                          if p in SCALING_MEANING else 99, p))
    over = any(n > cores for p in sweeps for n in sweeps[p])
    lines = ["### Scaling: 1 to 8 worker processes", ""]
    lines.append("Cells: median time per iteration, in which every worker does one operation, "
                 "so it is each worker's time per operation: a flat row scales perfectly, a "
                 "row that doubles with the workers has a fixed total throughput. In "
                 "brackets, the speed-up of shmstate over that alternative at that worker "
                 "count (alternative time / shmstate time). Last column: the row's time with "
                 "the most workers over its time with one. Every point checks its count. "
                 "Reproduce one: `cargo bench --bench <file> -- scaling_<primitive>`.")
    if over:
        lines.append("")
        lines.append(f"**†: more worker processes than this machine's {cores} cores.** "
                     "These points measure oversubscription: the workers take turns on the "
                     "cores (the kernel's time slices, and a lock holder preempted while "
                     "others wait for it), not cores contending for a cache line. Even a "
                     "primitive that scales perfectly shows N / cores times its time at N "
                     "such workers (2x at 4, 4x at 8 on 2 cores); only a departure from that "
                     "says something. These points always carry the overlap warning, which is "
                     "not repeated in their cells. Rerun on a machine with at least 8 cores "
                     "for contention numbers (see \"Scaling\" above).")
    lines.append("")
    for p in order:
        pts = sweeps[p]
        counts = sorted(pts)
        fns = sorted({f for n in counts for f in pts[n]})
        shm = [f for f in fns if f.startswith("shmstate_")]
        alts = [f for f in fns if not f.startswith("shmstate_")]
        lines.append(f"`scaling_{p}` ({bench_file('scaling_' + p)}.rs): "
                     f"{SCALING_MEANING.get(p, '')}")
        lines.append("")
        head = ["workers →"] + [f"{n}{' †' if n > cores else ''}" for n in counts]
        lines.append("| " + " | ".join(head) + f" | {counts[-1]} vs {counts[0]} |")
        lines.append("|---|" + "---:|" * (len(counts) + 1))
        for f in shm + alts:
            cells = []
            for n in counts:
                if f not in pts[n]:
                    cells.append("–")
                    continue
                g, e = pts[n][f]
                cell = fmt_ns(e["median"])
                if not f.startswith("shmstate_") and shm and shm[0] in pts[n]:
                    cell += f" ({e['median'] / pts[n][shm[0]][1]['median']:.2f}x)"
                if n <= cores and (g, f) in flagged:
                    cell += " ⚠"
                cells.append(cell)
            lo, hi = pts[counts[0]].get(f), pts[counts[-1]].get(f)
            growth = f"{hi[1]['median'] / lo[1]['median']:.1f}x" if lo and hi else "–"
            if lo and hi and p in GROWTH_TARGETS and f.startswith("shmstate_"):
                text, most = GROWTH_TARGETS[p]
                g_ = hi[1]["median"] / lo[1]["median"]
                met = "**met**" if g_ <= most else "**not met**"
                growth = f"{g_:.2f}x ({text}: {met})"
            name = f"shmstate {f[len('shmstate_'):]}" if f.startswith("shmstate_") else f
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {growth} |")
        lines.append("")
    if any((g, f) in flagged for p in sweeps for n in sweeps[p] if n <= cores
           for f, (g, _e) in sweeps[p][n].items()):
        lines.append("⚠: the workers did not run together in some samples (busy machine).")
        lines.append("")
    return lines


def map_section(est, md):
    """The shared map's absolute targets and its ratios to Python's `Manager().dict()`
    (benches/python/manager_dict.py: one client process, per operation)."""
    if not any(g.startswith("map_") for g, _f in est):
        return []
    lines = ["### Shared map: absolute targets and Python's Manager().dict()", ""]
    rows = []
    for (g, f), (text, most) in ABS_TARGETS.items():
        if (g, f) in est:
            ns = est[(g, f)]["median"]
            met = "**met**" if ns <= most else f"**not met** ({ns / most:.2f}x over)"
            rows.append(f"| `{g}/{f}` | {fmt_ns(ns)} | {text}: {met} |")
    if rows:
        lines += ["| row | median | target |", "|---|---:|---|"] + rows + [""]
    if md:
        lines.append(f"Python `Manager().dict()` ({md['ops']} gets then {md['ops']} sets from one "
                     f"client process, {md['keys']} integer keys; Python {md['python_version']}; "
                     "reproduce: `python3 benches/python/manager_dict.py`):")
        lines.append("")
        lines.append("| comparison | Python ns/op | shmstate ns/op (criterion row) "
                     "| speed-up of shmstate | target |")
        lines.append("|---|---:|---:|---:|---|")
        pairs = [("get_ns", "map_get_1thread", "shmstate_bytemap", "d[k] vs ByteMap::get_with"),
                 ("get_ns", "map_get_1thread", "shmstate_map_u64", "d[k] vs Map<u64, u64>::get"),
                 ("set_ns", "map_insert_1thread", "shmstate_bytemap_set",
                  "d[k] = v vs ByteMap::set"),
                 ("set_ns", "map_insert_1thread", "shmstate_map_u64_set",
                  "d[k] = v vs Map<u64, u64>::set"),
                 ("get_ns", "map_get_1thread", "shmstate_bytemap_handle",
                  "d[k] vs ByteMapHandle::get_with"),
                 ("get_ns", "map_get_1thread", "shmstate_map_u64_handle",
                  "d[k] vs MapHandle<u64, u64>::get"),
                 ("set_ns", "map_insert_1thread", "shmstate_bytemap_handle_set",
                  "d[k] = v vs ByteMapHandle::set"),
                 ("set_ns", "map_insert_1thread", "shmstate_map_u64_handle_set",
                  "d[k] = v vs MapHandle<u64, u64>::set"),
                 ("set_ns", "map_insert_1thread", "shmstate_bytemap",
                  "d[k] = v vs ByteMap::insert (returns the old value)"),
                 ("set_ns", "map_insert_1thread", "shmstate_map_u64",
                  "d[k] = v vs Map<u64, u64>::insert (returns the old value)")]
        for key, g, f, meaning in pairs:
            if (g, f) in est and md.get(key):
                shm = est[(g, f)]["median"]
                sp = md[key] / shm
                lines.append(f"| {meaning} | {md[key]:.0f} | {shm:.2f} (`{g}/{f}`) | {sp:.0f}x "
                             f"| {verdict(sp, ('>= 1000x', 1000.0))} |")
        lines.append("")
    return lines


def markdown(rows, groups, py, mach, missing_targets, flagged, pyc, scaling=(), channel=(), mapsec=()):
    lines = []
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines.append(f"Machine: **{mach['cpu']}**, {mach['cores']} cores, Linux "
                 f"{mach['kernel']}; generated {now} by `benches/report.py`.")
    lines.append("")
    lines.append("Speed-up = alternative median time / shmstate median time (higher is better "
                 "for shmstate; < 1 means shmstate is slower). Time ratio = its inverse. "
                 "Medians of criterion's per-iteration estimates; an iteration is one "
                 "operation by each worker.")
    lines.append("")
    lines.append("| group (what one iteration is) | shmstate | alternative | shmstate median "
                 "| alternative median | time ratio | speed-up | target |")
    lines.append("|---|---|---|---:|---:|---:|---:|---|")
    for r in rows:
        g = r["group"]
        warn = ""
        if (g, r["shmstate"]) in flagged or (g, r["alt"]) in flagged:
            warn = " ⚠ workers did not run together in some samples (busy machine)"
        lines.append(
            f"| `{g}` ({MEANING.get(g, '')}) | {r['shmstate'][len('shmstate_'):]} | {r['alt']} "
            f"| {fmt_ns(r['shm_ns'])} | {fmt_ns(r['alt_ns'])} | {1 / r['speedup']:.3f} "
            f"| {r['speedup']:.2f}x | {verdict(r['speedup'], r['target'])}{warn} |")
    alone = [g for g, fns in groups.items()
             if g not in FLOOR_GROUPS and not any(f.startswith("shmstate_") for f in fns)]
    if alone:
        lines.append("")
        lines.append("Groups measured without a shmstate side yet (primitive not merged): "
                     + ", ".join(f"`{g}`" for g in sorted(alone)) + ".")
    if missing_targets:
        lines.append("")
        lines.append("Targets not measured in this run: " + "; ".join(missing_targets) + ".")
    lines.append("")
    lines.extend(channel)
    lines.extend(scaling)
    lines.extend(mapsec)
    if py:
        lines.append(f"### Against Python multiprocessing ({py['processes']} processes, "
                     f"{py['increments']} operations each; Python {py['python_version']})")
        lines.append("")
        coord = ""
        if py.get("coord_scale"):
            coord = (f"; the coordination paths run with their own process count (1 for "
                     f"`semaphore_uncontended`, else 2), and Event, Barrier and Queue "
                     f"paths run increments/{py['coord_scale']} round trips, rounds or "
                     f"messages, each one operation")
        lines.append("Reproduce: `python3 benches/python/compare.py --processes "
                     f"{py['processes']} --increments {py['increments']}`. Rates are per "
                     f"operation; Array reads run increments/{py['array_scale']} and Manager "
                     f"paths increments/{py['manager_scale']} per process{coord}.")
        lines.append("")
        lines.append("| path | operations | lost updates | ns/op | rate |")
        lines.append("|---|---:|---:|---:|---:|")
        for side, name in (("python", "Python"), ("shmstate", "shmstate demo")):
            for r in py.get(side) or []:
                rate = 1e3 / r["ns_per_op"] if r["ns_per_op"] > 0 else float("inf")
                lines.append(f"| {name} `{r['path']}` | {r['ops']} | {r['lost']} "
                             f"| {r['ns_per_op']:.1f} | {rate:.3f} M/s |")
        lines.append("")
        if py.get("ratios"):
            lines.append("| comparison | speed-up of shmstate | target |")
            lines.append("|---|---:|---|")
            for r in py["ratios"]:
                t = (f">= {r['target']:g}x", r["target"]) if r["target"] else None
                lines.append(f"| {r['meaning']} | {r['speedup']:.1f}x "
                             f"| {verdict(r['speedup'], t)} |")
        else:
            lines.append(f"shmstate demo not available: {py.get('shmstate_missing')}")
        lines.append("")
    if pyc:
        lines.append("The same Python numbers against the criterion rows of this run (per "
                     "operation = per-iteration median / the row's workers: 2 processes, "
                     "except the one-reader `SeqLockArray` snapshot, the one-thread "
                     "semaphore, and the round trips, barrier rounds and queue messages, "
                     "which are one per iteration):")
        lines.append("")
        lines.append("| comparison | Python ns/op | shmstate ns/op (criterion row) "
                     "| speed-up of shmstate | target |")
        lines.append("|---|---:|---:|---:|---|")
        for r in pyc:
            t = (f">= {r['target']:g}x", r["target"]) if r["target"] else None
            lines.append(f"| {r['meaning']} | {r['py_ns']:.1f} | {r['shm_ns']:.2f} "
                         f"(`{r['bench']}`) | {r['speedup']:.0f}x | {verdict(r['speedup'], t)} |")
        lines.append("")
    return "\n".join(lines)


def channel_section(est, chpy):
    """The message channel against its targets, across groups: the Unix socket and Python's
    multiprocessing.Queue (one-way 64 B), the cache-line round trip (ping-pong with the
    receiver spinning), memcpy bandwidth (16 KiB one-way). Ratios only, from one run."""
    def med(g, f):
        e = est.get((g, f))
        return e["median"] if e else None

    lines = []
    rows = []  # (comparison, shmstate ns, other ns, ratio text, verdict)

    def add(what, shm, other, ratio, target_text, need):
        if shm is None or other is None:
            return
        r = ratio(shm, other)
        v = ""
        if need is not None:
            v = f"{target_text}: **met**" if r >= need else \
                f"{target_text}: **not met** (needs {need / r:.2f}x more)"
        rows.append(f"| {what} | {fmt_ns(shm)} | {fmt_ns(other)} | {r:.2f}x | {v} |")

    speedup = lambda shm, other: other / shm
    for size in CHANNEL_SIZES:
        g = f"channel_oneway_{size}_2procs"
        for alt, need in (("unix_socket", 20.0 if size == "64B" else None), ("pipe", None),
                          ("crossbeam_channel", None), ("crate_queue", None)):
            add(f"one-way {size}: speed-up over `{alt}`", med(g, "shmstate_channel"),
                med(g, alt), speedup, ">= 20x", need)
        # A streaming producer that holds the send side (`Channel::send_side`), and a
        # consumer that also holds the receive side (`Channel::recv_side`).
        for fn in ("shmstate_channel_send_side", "shmstate_channel_send_side_drain",
                   "shmstate_channel_held_sides"):
            add(f"one-way {size} (`{fn[len('shmstate_channel_'):]}`): speed-up over "
                "`unix_socket`", med(g, fn), med(g, "unix_socket"), speedup, ">= 20x",
                20.0 if size == "64B" else None)
    pyr = {r["path"]: r for r in (chpy or {}).get("results", [])}
    for shape in ("oneway", "pingpong"):
        for size in CHANNEL_SIZES:
            p = pyr.get(f"{shape}_{size}")
            need = 100.0 if (shape, size) == ("oneway", "64B") else None
            add(f"{shape} {size}: speed-up over Python `multiprocessing.Queue`",
                med(f"channel_{shape}_{size}_2procs", "shmstate_channel"),
                p["ns_per_op"] if p else None, speedup, ">= 100x", need)
            if shape == "oneway":
                for fn in ("shmstate_channel_send_side", "shmstate_channel_held_sides"):
                    add(f"{shape} {size} (`{fn[len('shmstate_channel_'):]}`): speed-up over "
                        "Python `multiprocessing.Queue`",
                        med(f"channel_{shape}_{size}_2procs", fn),
                        p["ns_per_op"] if p else None, speedup, ">= 100x", need)
    floor = med("channel_floor_2procs", "cacheline_pingpong")
    # Two atomics bounced between two running cores take well under a microsecond; a floor
    # of more than 5 µs means the two spinning processes did not have two cores (a busy
    # machine), and no spinning row of the run measured a round trip.
    floor_ok = floor is not None and floor < 5000
    # A floor whose median's confidence interval spans more than 1.5x took its samples in
    # both placements of this VM's vCPUs (about 100 ns and 300-430 ns here): no round trip
    # is judged against it.
    fe = est.get(("channel_floor_2procs", "cacheline_pingpong"))
    floor_mixed = fe is not None and fe["lo"] > 0 and fe["hi"] / fe["lo"] > 1.5
    for size in CHANNEL_SIZES:
        g = f"channel_pingpong_{size}_2procs"
        # `held_sides` blocks in `RecvSide::recv_into`, which spins for about 5 µs first:
        # far longer than a round trip, so its receiver spins too and the row is judged.
        for fn in ("shmstate_channel_spin", "shmstate_channel_held_sides_spin",
                   "shmstate_channel_held_sides", "shmstate_channel"):
            judged = fn.endswith("_spin") or fn == "shmstate_channel_held_sides"
            need = 0.5 if judged and size in ("8B", "64B") else None
            text = "within 2x (>= 0.5)"
            suffix = " |"
            if need is not None and not floor_ok:
                need = None
                rows_note = f"not measured: the cache-line floor took {fmt_ns(floor or 0)}"
                suffix = " (busy machine) |"
            elif need is not None and floor_mixed:
                need = None
                rows_note = (f"not judged: the floor's samples spread {fmt_ns(fe['lo'])}-"
                             f"{fmt_ns(fe['hi'])} (both vCPU placements in one measurement)")
            else:
                rows_note = None
            shm = med(g, fn)
            if need is not None and rows_note is None and shm is not None and floor > shm:
                # No round trip through a channel beats two bare cache lines on the same
                # cores: the floor ran in another (slower) placement of this VM's vCPUs.
                need = None
                rows_note = (f"not judged: the floor ({fmt_ns(floor)}) is slower than the "
                             "channel, so the two ran in different vCPU placements")
            add(f"ping-pong {size} (`{fn[len('shmstate_'):]}`): cache-line round trip / "
                "channel round trip", shm, floor, lambda s, o: o / s, text, need)
            if rows_note and rows:
                rows[-1] = rows[-1][:-2] + rows_note + suffix
    # "memcpy bandwidth" as a machine's bandwidth is measured: a copy too large for any
    # cache (the sustained bandwidth that STREAM's copy and `mbw` report; STREAM's rules
    # ask for arrays well beyond the last-level cache). The target is judged against it.
    # A 16 KiB copy in cache (L1/L2 bandwidth inside one core) is printed beside it for
    # reference, not judged: no copy between two cores reaches it (the bare ring's row
    # below), so no channel can (BENCHMARKS.md, "The 16 KiB target: which memcpy").
    mc = med("channel_memcpy", "memcpy_16KiB")
    mm = med("channel_memcpy", "memcpy_16KiB_of_256MiB")
    for fn in ("shmstate_channel", "shmstate_channel_send_side", "shmstate_channel_held_sides"):
        for what, floor_ns, need in (("memory", mm, 0.5), ("in-cache", mc, None)):
            add(f"one-way 16 KiB (`{fn[len('shmstate_'):]}`): channel bandwidth / "
                f"{what} memcpy bandwidth", med("channel_oneway_16KiB_2procs", fn),
                floor_ns, lambda s, o: o / s, ">= 0.5", need)
    # The least a one-way stream costs between the two processes here (a bare ring of
    # fixed slots, `channel_floor_2procs/spsc_ring_*`): how far each target is from what
    # this machine allows.
    for size, ring in (("64B", "spsc_ring_64B"), ("16KiB", "spsc_ring_16KiB")):
        floor_ns = med("channel_floor_2procs", ring)
        for fn in ("shmstate_channel", "shmstate_channel_send_side",
                   "shmstate_channel_held_sides"):
            add(f"one-way {size} (`{fn[len('shmstate_'):]}`): bare-ring floor / channel",
                med(f"channel_oneway_{size}_2procs", fn), floor_ns, lambda s, o: o / s,
                "", None)
        add(f"one-way {size}: the bare-ring floor's speed-up over `unix_socket` "
            "(the most any channel reaches here)",
            floor_ns, med(f"channel_oneway_{size}_2procs", "unix_socket"), speedup, "", None)
    # The same bare ring packed as the channel packs its ring, published by a store of
    # `tail`, by a compare-exchange of it, or by a store of each record's header: the least
    # a round trip through each kind of publication costs here.
    for ring, how in (("packed_ring_pingpong_8B", "a store of `tail`"),
                      ("packed_ring_cas_pingpong_8B", "a compare-exchange of `tail`"),
                      ("stamped_ring_pingpong_8B", "a store of the record's header")):
        add(f"ping-pong 8B: cache-line round trip / bare packed ring's, published by {how} "
            "(the least a channel so published reaches)", med("channel_floor_2procs", ring),
            floor, lambda s, o: o / s, "", None)
    for ring, how in (("packed_ring_64B", "a store of `tail`"),
                      ("packed_ring_fenced_64B", "a store of `tail`, the receiver fencing"),
                      ("packed_ring_cas_64B", "a compare-exchange of `tail`"),
                      ("packed_ring_cas_fenced_64B",
                       "a compare-exchange of `tail`, the receiver fencing"),
                      ("stamped_ring_64B", "a store of the record's header")):
        add(f"one-way 64B: bare packed ring's speed-up over `unix_socket`, published by "
            f"{how}", med("channel_floor_2procs", ring),
            med("channel_oneway_64B_2procs", "unix_socket"), speedup, "", None)
    for what, floor_ns in (("in-cache", mc), ("memory", mm)):
        add(f"one-way 16 KiB: bare-ring floor bandwidth / {what} memcpy bandwidth (the "
            "most any channel reaches here)", med("channel_floor_2procs", "spsc_ring_16KiB"),
            floor_ns, lambda s, o: o / s, "", None)
    if not rows:
        return lines
    lines.append("### Message channel (`benches/channel.rs`, "
                 "`benches/python/channel_queue.py`)")
    lines.append("")
    lines.append("Ratios across groups of this run; > 1 is better for the channel. The "
                 "cache-line row bounces two atomics between the 2 processes; the memcpy rows "
                 "copy 16 KiB in one thread, in cache and out of a 256 MiB copy.")
    lines.append("")
    lines.append("| comparison | channel | other | ratio | target |")
    lines.append("|---|---:|---:|---:|---|")
    lines.extend(rows)
    lines.append("")
    return lines


def svg_chart(rows, py):
    """Horizontal bars of speed-up on a log axis, 1x marked; targets as ticks."""
    items = [(f"{r['group']}: {r['shmstate'][len('shmstate_'):]} vs {r['alt']}",
              r["speedup"], r["target"][1] if r["target"] else None) for r in rows]
    for r in (py or {}).get("ratios") or []:
        items.append((f"python: {r['meaning']}", r["speedup"], r["target"]))
    lo_exp, hi_exp = -1, 4  # 0.1x .. 10000x
    left, bar_w, row_h, top = 470, 400, 20, 56
    width = left + bar_w + 90
    height = top + row_h * max(1, len(items)) + 40

    def x(v):
        v = min(max(v, 10 ** lo_exp), 10 ** hi_exp)
        return left + (math.log10(v) - lo_exp) / (hi_exp - lo_exp) * bar_w

    def esc(s):
        return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="10" y="18" font-size="14" font-weight="bold">shmstate speed-up over '
           f'the alternative (median time ratio, log scale)</text>',
           f'<text x="10" y="36" fill="#555">green: shmstate faster; red: slower; black '
           f'tick: target. {esc(machine()["cpu"])}, {machine()["cores"]} cores</text>']
    for e in range(lo_exp, hi_exp + 1):
        gx = x(10 ** e)
        out.append(f'<line x1="{gx:.1f}" y1="{top - 6}" x2="{gx:.1f}" '
                   f'y2="{height - 30}" stroke="{"#000" if e == 0 else "#ddd"}"/>')
        out.append(f'<text x="{gx:.1f}" y="{height - 16}" text-anchor="middle">'
                   f'{10 ** e if e >= 0 else 0.1:g}x</text>')
    for i, (label, sp, target) in enumerate(items):
        y = top + i * row_h
        x1, x0 = x(sp), x(1)
        color = "#2a9d4a" if sp >= 1 else "#c0392b"
        out.append(f'<text x="{left - 6}" y="{y + 13}" text-anchor="end">{esc(label)}</text>')
        out.append(f'<rect x="{min(x0, x1):.1f}" y="{y + 3}" width="{abs(x1 - x0):.1f}" '
                   f'height="{row_h - 6}" fill="{color}"/>')
        out.append(f'<text x="{max(x0, x1) + 4:.1f}" y="{y + 13}">{sp:.2f}x</text>')
        if target:
            tx = x(target)
            out.append(f'<line x1="{tx:.1f}" y1="{y + 1}" x2="{tx:.1f}" y2="{y + row_h - 1}" '
                       f'stroke="black" stroke-width="2"/>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.dirname(here)
    target_dir = os.environ.get("CARGO_TARGET_DIR", os.path.join(repo, "target"))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--criterion", default=os.path.join(target_dir, "criterion"))
    ap.add_argument("--python", default=os.path.join(target_dir, "bench-results", "python.json"))
    ap.add_argument("--log", default=os.path.join(target_dir, "bench-results", "criterion.log"),
                    help="cargo bench output, scanned for OVERLAP WARNING lines")
    ap.add_argument("--channel-python",
                    default=os.path.join(target_dir, "bench-results", "channel_python.json"),
                    help="the JSON of benches/python/channel_queue.py --json")
    ap.add_argument("--manager-dict",
                    default=os.path.join(target_dir, "bench-results", "manager_dict.json"),
                    help="the JSON of benches/python/manager_dict.py --json")
    ap.add_argument("--markdown", default=os.path.join(repo, "BENCHMARKS.md"))
    ap.add_argument("--svg", default=os.path.join(here, "chart.svg"))
    args = ap.parse_args()

    est = load_criterion(args.criterion)
    rows, groups = rows_from_criterion(est)
    py = None
    if os.path.exists(args.python):
        with open(args.python) as f:
            py = json.load(f)
    measured = {(r["group"], r["shmstate"], r["alt"]) for r in rows}
    missing = [f"`{g}` {s} vs {a} ({t[0]})" for (g, s, a), t in TARGETS.items()
               if (g, s, a) not in measured]
    flagged = load_warnings(args.log)
    chpy = None
    if os.path.exists(args.channel_python):
        with open(args.channel_python) as f:
            chpy = json.load(f)
    md = None
    if os.path.exists(args.manager_dict):
        with open(args.manager_dict) as f:
            md = json.load(f)
    section = markdown(rows, groups, py, machine(), missing, flagged, py_vs_criterion(py, est),
                       scaling_tables(est, flagged, machine()["cores"] or 1),
                       channel_section(est, chpy), map_section(est, md))

    with open(args.markdown) as f:
        doc = f.read()
    pat = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    if not pat.search(doc):
        sys.exit(f"report: {args.markdown} has no {BEGIN} ... {END} section")
    doc = pat.sub(lambda _m: f"{BEGIN}\n{section}\n{END}", doc)
    with open(args.markdown, "w") as f:
        f.write(doc)
    with open(args.svg, "w") as f:
        f.write(svg_chart(rows, py))
    print(f"report: {len(rows)} comparisons from {len(est)} benches -> {args.markdown}, {args.svg}")


if __name__ == "__main__":
    main()
