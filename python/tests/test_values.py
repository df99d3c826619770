"""Value and Array: multiprocessing's behaviours (ported from CPython's
_test_multiprocessing.py _TestValue/_TestArray), atomic arithmetic, and the lost-update
lesson, with real processes under every start method."""

import concurrent.futures
import ctypes
import pickle
import subprocess
import sys

import pytest

import shmstate
from shmstate import Array, Value

from helpers import run_all

CODES = [
    ("i", 2 ** 30, -(2 ** 31)),
    ("d", 3.25, -1.5),
    ("h", -410, 300),
    ("l", 2 ** 40, -(2 ** 40)),
    ("B", 200, 7),
    ("?", True, False),
]


def _set_values(values, news):
    for v, new in zip(values, news):
        v.value = new


def test_value_typecodes_roundtrip_in_child(ctx):
    values = [Value(code, first) for code, first, _ in CODES]
    for v, (_, first, _) in zip(values, CODES):
        assert v.value == first
    assert run_all(ctx, _set_values, [(values, [c[2] for c in CODES])]) == [0]
    for v, (_, _, new) in zip(values, CODES):
        assert v.value == new


def test_value_accepts_ctypes_types_and_defaults_to_zero():
    assert Value(ctypes.c_int).value == 0
    assert Value(ctypes.c_double, 1.5).value == 1.5
    assert Value(ctypes.c_bool).value is False
    assert Value("q").typecode == "q"


def test_value_rejects_bad_typecodes_and_out_of_range():
    with pytest.raises(ValueError):
        Value("x")
    with pytest.raises(OverflowError):
        Value("b", 300)
    v = Value("B", 0)
    with pytest.raises(OverflowError):
        v.value = -1


def test_getobj_getlock():
    val1 = Value("i", 5)
    lock1 = val1.get_lock()
    assert isinstance(lock1, shmstate.RLock)
    obj1 = val1.get_obj()
    obj1.value = 7
    assert val1.value == 7
    val2 = Value("i", 5, lock=False)
    with pytest.raises(AttributeError):
        val2.get_lock()
    lock = shmstate.Lock()
    assert Value("i", 5, lock=lock).get_lock() is lock
    with pytest.raises(TypeError):
        Value("i", 5, lock=__import__("threading").Lock())


def test_atomic_methods():
    v = Value("q", 10)
    v.add(5)
    v.sub(3)
    assert v.value == 12
    assert v.fetch_add(1) == 12
    assert v.fetch_sub(3) == 13
    assert v.max(100) == 10 and v.value == 100
    assert v.min(-4) == 100 and v.value == -4
    assert v.swap(8) == -4
    assert v.compare_exchange(8, 9) == (True, 8)
    assert v.compare_exchange(8, 10) == (False, 9)
    f = Value("d", 0.5)
    f.add(0.25)
    assert f.value == 0.75
    b = Value("?")
    with pytest.raises(TypeError):
        b.add(1)
    assert b.compare_exchange(False, True) == (True, False)
    u = Value("B", 255)
    u.add(1)  # wraps, as C does
    assert u.value == 0


def _count(v, n, how):
    for _ in range(n):
        if how == "atomic":
            v.add(1)
        elif how == "locked":
            with v.get_lock():
                v.value += 1


@pytest.mark.parametrize("how", ["atomic", "locked"])
def test_concurrent_increments_are_exact(ctx, how):
    v = Value("q", 0)
    n = 2000
    assert run_all(ctx, _count, [(v, n, how)] * 4) == [0] * 4
    assert v.value == 4 * n


def _negate(arr):
    for i in range(len(arr)):
        arr[i] = -arr[i]


@pytest.mark.parametrize("lock", [True, False])
def test_array_like_the_docs(ctx, lock):
    arr = Array("i", range(10), lock=lock)
    assert run_all(ctx, _negate, [(arr,)]) == [0]
    assert arr[:] == [-i for i in range(10)]


def test_array_sequence_protocol():
    seq = [680, 626, 934, 821, 150, 233, 548, 982, 714, 831]
    arr = Array("i", seq)
    assert len(arr) == len(seq)
    assert arr[3] == seq[3]
    assert arr[-1] == seq[-1]
    assert list(arr[2:7]) == seq[2:7]
    assert arr[::3] == seq[::3]
    assert arr[7:2:-2] == seq[7:2:-2]
    arr[4:8] = seq[4:8] = [1, 2, 3, 4]
    assert arr[:] == seq
    arr[::2] = seq[::2] = [9, 9, 9, 9, 9]
    assert list(arr) == seq
    with pytest.raises(ValueError):
        arr[0:3] = [1, 2]
    with pytest.raises(IndexError):
        arr[10]
    with pytest.raises(IndexError):
        arr[-11] = 0
    zeros = Array("d", 4)
    assert zeros[:] == [0.0] * 4
    assert Array(ctypes.c_long, [1, 2]).typecode == "l"
    assert list(Array("i", range(5)).get_obj()) == list(range(5))
    with pytest.raises(AttributeError):
        Array("i", 3, lock=False).get_lock()


def _array_atomic(arr, n):
    for _ in range(n):
        arr.add(1, 1)
        with arr.get_lock():
            arr[0] = arr[0] + 1
            arr[2] = arr[2] - 1


def test_array_reads_under_the_lock_are_consistent(ctx):
    # Writers keep arr[0] + arr[2] == 0 under the lock; whole reads never see it broken.
    arr = Array("q", 3)
    procs = [ctx.Process(target=_array_atomic, args=(arr, 3000)) for _ in range(2)]
    for p in procs:
        p.start()
    while any(p.is_alive() for p in procs):
        a = arr[:]
        assert a[0] + a[2] == 0
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert arr[0] == 6000 and arr[1] == 6000 and arr[2] == -6000


def _pool_add(v, arr, i):
    v.add(i)
    arr[i] = i * i
    return v.typecode


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_process_pool_executor(method):
    import multiprocessing as mp

    v = Value("q", 0)
    arr = Array("q", 8)
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=mp.get_context(method)) as ex:
        results = list(ex.map(_pool_add, [v] * 8, [arr] * 8, range(8), timeout=60))
    assert results == ["q"] * 8
    assert v.value == sum(range(8))
    assert arr[:] == [i * i for i in range(8)]


def test_pickle_roundtrip_refers_to_the_same_memory():
    v = Value("i", 1)
    w = pickle.loads(pickle.dumps(v))
    w.value = 42
    assert v.value == 42
    a = Array("d", [1.0, 2.0])
    b = pickle.loads(pickle.dumps(a))
    b[1] = 5.0
    assert a[:] == [1.0, 5.0]
    c = shmstate.Counter()
    d = pickle.loads(pickle.dumps(c))
    d.add(3)
    assert c.value == 3


def _count_counter(c, n):
    for _ in range(n):
        c.inc()


def test_counter_counts_every_add(ctx):
    c = shmstate.Counter(stripes=4)
    assert run_all(ctx, _count_counter, [(c, 1000)] * 3) == [0] * 3
    assert c.value == 3000
    assert c.take() == 3000
    assert c.value == 0


def test_a_region_of_an_older_format_is_recreated_only_when_asked(tmp_path):
    path = tmp_path / "stale"
    # Made by another process, which exits: nobody maps it any more.
    code = f"import shmstate; shmstate.Region({str(path)!r}, 1 << 16).Counter('old').add(7)"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    # As an older build would have made it: format version 5 (the u32 at byte 8).
    with open(path, "r+b") as f:
        f.seek(8)
        f.write((5).to_bytes(4, sys.byteorder))
    with pytest.raises(shmstate.RegionError):
        shmstate.Region(path, 1 << 16)
    r = shmstate.Region(path, 1 << 16, recreate_stale_format=True)
    assert r.Counter("old").value == 0
