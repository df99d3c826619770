#!/usr/bin/env python3
"""Times Python's multiprocessing.Queue moving byte messages between 2 processes.

The Python side of the message-channel rows of benches/channel.rs: the same message sizes
(8 B, 64 B, 1 KiB, 16 KiB), the same two shapes, each message a `bytes` object carrying its
sequence number in its first 8 bytes, checked by the receiver (in order, none lost):

- `oneway_<size>`: process 0 puts `n` messages, process 1 gets and checks them; one
  operation is one message (criterion: `channel_oneway_<size>_2procs`).
- `pingpong_<size>`: process 0 puts a message on one queue and waits for it on another;
  process 1 gets each one and puts it back; one operation is one round trip (criterion:
  `channel_pingpong_<size>_2procs`).

Time runs from the first process's start (after a barrier) to the last one's end.
`benches/report.py` divides these times by the criterion medians of `shmstate_channel`
in the same run.

Usage: python3 benches/python/channel_queue.py [--messages N] [--json FILE]
Standard library only.
"""

import argparse
import json
import multiprocessing as mp
import os
import struct
import sys
import time

SIZES = [(8, "8B"), (64, "64B"), (1024, "1KiB"), (16384, "16KiB")]
# Messages of queue capacity, as the 64 KiB of buffering in benches/channel.rs (in items
# per size); a multiprocessing.Queue's feeder thread buffers beyond it anyway.
BUFFER = 64 * 1024


def message(size, k):
    body = bytes(i & 0xFF for i in range(size))
    return struct.pack("<Q", k) + body[8:]


def check(msg, k, size):
    got = struct.unpack_from("<Q", msg)[0]
    if got != k or len(msg) != size:
        raise AssertionError(f"received message {got} of {len(msg)} bytes, expected {k} of {size}")


def _worker(shape, size, queues, n, barrier, stamps, done, i):
    base = message(size, 0)[8:]
    barrier.wait()
    t0 = time.perf_counter()  # CLOCK_MONOTONIC: comparable across processes
    if shape == "oneway":
        (q,) = queues
        if i == 0:
            for k in range(1, n + 1):
                q.put(struct.pack("<Q", k) + base)
        else:
            for k in range(1, n + 1):
                check(q.get(), k, size)
            done.value = n
    else:
        there, back = queues
        for k in range(1, n + 1):
            if i == 0:
                there.put(struct.pack("<Q", k) + base)
                check(back.get(), k, size)
                done.value += 1
            else:
                back.put(there.get())
    t1 = time.perf_counter()
    stamps[2 * i] = t0
    stamps[2 * i + 1] = t1


def run_case(ctx, shape, size, n):
    cap = max(1, BUFFER // size)
    queues = (ctx.Queue(cap),) if shape == "oneway" else (ctx.Queue(cap), ctx.Queue(cap))
    barrier = ctx.Barrier(2)
    stamps = ctx.Array("d", 4, lock=False)
    done = ctx.Value("q", 0, lock=False)
    procs = [ctx.Process(target=_worker, args=(shape, size, queues, n, barrier, stamps, done, i))
             for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise RuntimeError(f"{shape} {size} B: worker exited with {p.exitcode}")
    if done.value != n:
        raise AssertionError(f"{shape} {size} B: {done.value} of {n} messages")
    seconds = max(stamps[1], stamps[3]) - min(stamps[0], stamps[2])
    return seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=20000,
                    help="messages (one-way) and round trips (ping-pong) per size")
    ap.add_argument("--json", help="write the results to this file")
    args = ap.parse_args()
    if args.messages < 1:
        ap.error("--messages must be positive")
    ctx = mp.get_context("fork")
    results = []
    for shape in ("oneway", "pingpong"):
        for size, label in SIZES:
            n = args.messages if shape == "oneway" else max(100, args.messages // 4)
            seconds = run_case(ctx, shape, size, n)
            r = {"path": f"{shape}_{label}", "size": size, "ops": n, "seconds": seconds,
                 "ns_per_op": seconds * 1e9 / n}
            results.append(r)
            print(f"  multiprocessing.Queue {r['path']:<16} {n:>8} ops "
                  f"{r['ns_per_op']:>10.1f} ns/op", file=sys.stderr)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"python_version": sys.version.split()[0], "messages": args.messages,
                       "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
