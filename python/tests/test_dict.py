"""shmstate.Dict: dict's mapping protocol (ported from what CPython's test_dict and the
Manager dict tests check, where it applies), keys and values of every type, sizes and a
full dict, atomic setdefault and incr across processes, timeouts, a killed writer, and
no file left behind."""

import collections.abc
import contextlib
import concurrent.futures
import enum
import multiprocessing as mp
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import shmstate
from shmstate import Dict, DictFullError

from helpers import run_all, assert_ctrl_c_interrupts

PYTHON = sys.executable


class Point:
    """A picklable class (module level)."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __eq__(self, other):
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)


class Color(enum.IntEnum):
    RED = 1


# -- the mapping protocol --------------------------------------------------------------


def test_constructor_like_dict():
    assert Dict() == {}
    assert Dict({"a": 1, "b": 2}) == {"a": 1, "b": 2}
    assert Dict([("a", 1), ("b", 2)]) == {"a": 1, "b": 2}
    assert Dict(iter([("a", 1)])) == {"a": 1}
    with pytest.raises(TypeError):
        Dict({}, {})
    with pytest.raises(TypeError):
        Dict([1, 2])  # an element that is not a pair
    with pytest.raises(ValueError):
        Dict([(1, 2, 3)])


def test_bool_len_contains():
    d = Dict()
    assert not d and len(d) == 0
    d["a"] = 1
    assert d and len(d) == 1
    assert "a" in d and "b" not in d
    assert None not in d and (1, 2) not in d  # hashable, not a key type: absent
    with pytest.raises(TypeError):
        [] in d  # unhashable, as in a dict  # noqa: B015


def test_getitem_setitem_delitem_raise_like_dict():
    d = Dict()
    d["a"] = 1
    d["a"] = 2
    assert d["a"] == 2
    with pytest.raises(KeyError) as e:
        d["missing"]
    assert e.value.args == ("missing",)
    del d["a"]
    assert "a" not in d
    with pytest.raises(KeyError):
        del d["a"]
    with pytest.raises(TypeError):
        d[None] = 1
    with pytest.raises(TypeError):
        d[(1, 2)] = 1
    with pytest.raises(TypeError):
        d[[1]]


def test_keys_values_items_are_snapshots_in_insertion_order():
    d = Dict()
    for k in ["c", "a", "b"]:
        d[k] = k.upper()
    d["a"] = "A2"  # replacing keeps the key's place, as in a dict
    assert d.keys() == ["c", "a", "b"]
    assert d.values() == ["C", "A2", "B"]
    assert d.items() == [("c", "C"), ("a", "A2"), ("b", "B")]
    assert list(d) == ["c", "a", "b"]
    del d["c"]
    d["c"] = 1  # a re-inserted key goes last
    assert list(d) == ["a", "b", "c"]
    keys = d.keys()
    d["z"] = 0
    assert keys == ["a", "b", "c"]  # a snapshot: later writes do not show
    for k in d:  # changing the dict while iterating does not raise
        d[k + "x"] = 1


def test_get_setdefault_pop_popitem():
    d = Dict()
    assert d.get("a") is None and d.get("a", 3) == 3
    assert d.setdefault("a", [1]) == [1]
    assert d.setdefault("a", [2]) == [1]
    assert d.setdefault("n") is None and d["n"] is None
    assert d.pop("a") == [1]
    assert d.pop("a", "dflt") == "dflt"
    with pytest.raises(KeyError):
        d.pop("a")
    with pytest.raises(TypeError):
        d.pop("a", 1, 2)
    d.update(x=1, y=2)
    assert d.popitem() == ("y", 2)  # last in, first out, as a dict
    assert d.popitem() == ("x", 1)
    assert d.popitem() == ("n", None)
    with pytest.raises(KeyError):
        d.popitem()


def test_update_clear_copy_union():
    d = Dict()
    d.update({"a": 1})
    d.update([("b", 2)])
    d.update(c=3)
    d.update({"d": 4}, e=5)

    class KeysOnly:  # a mapping through keys() and __getitem__ only
        def keys(self):
            return ["f"]

        def __getitem__(self, k):
            return 6

    d.update(KeysOnly())
    assert d == {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "f": 6}
    with pytest.raises(TypeError):
        d.update([1])
    c = d.copy()
    assert type(c) is dict and c == d
    assert d | {"g": 7} == {**c, "g": 7} and type(d | {}) is dict
    assert {"g": 7} | d == {"g": 7, **c}
    d |= {"g": 7}
    assert d["g"] == 7 and isinstance(d, Dict)
    d.clear()
    assert len(d) == 0 and d == {}


def test_equality_repr_str_and_abc():
    d = Dict({"a": 1})
    assert d == {"a": 1} and {"a": 1} == d
    assert d != {"a": 2} and d != {"a": 1, "b": 2}
    assert d != [("a", 1)] and not (d == 1)
    assert d == Dict({"a": 1})
    assert str(d) == "{'a': 1}"  # what a Manager dict proxy prints
    assert repr(d).startswith("<shmstate.Dict ") and "{'a': 1}" in repr(d)
    assert isinstance(d, collections.abc.MutableMapping)
    with pytest.raises(TypeError):
        hash(d)


def test_help_reads_well():
    assert "Manager().dict()" in Dict.__doc__
    for m in ("get", "setdefault", "pop", "popitem", "incr", "update", "with_timeout",
              "keys", "copy", "clear"):
        assert getattr(Dict, m).__doc__, m


# -- keys and values -------------------------------------------------------------------


def test_key_types_are_distinct_and_round_trip():
    d = Dict()
    d[1] = "int"
    d["1"] = "str"
    d[b"1"] = "bytes"
    d[0.5] = "float"
    d[-(2**70)] = "big"
    d[""] = "empty str"
    d[b""] = "empty bytes"
    assert len(d) == 7
    assert d.items() == [(1, "int"), ("1", "str"), (b"1", "bytes"), (0.5, "float"),
                         (-(2**70), "big"), ("", "empty str"), (b"", "empty bytes")]
    assert [type(k) for k in d] == [int, str, bytes, float, int, str, bytes]
    # equal keys are one key, as in a dict
    d[True] = "bool"
    d[1.0] = "float one"
    assert d[1] == "float one" and len(d) == 7
    d[2**80] = "big int"
    assert d[2.0**80] == "big int"
    assert "é" not in d
    d["é"] = 1
    assert d["é"] == 1


@pytest.mark.parametrize("value", [
    0, -1, 2**63 - 1, -(2**63), 2**64, -(10**40), 1.5, float("inf"), "", "text", "é" * 10,
    b"", b"\x00\xff", None, True, False, [1, "a"], {"n": {"m": (1, 2)}}, (1,), {1, 2},
    Point(1, 2), Color.RED, 3 + 4j,
])
def test_values_round_trip_with_their_type(value):
    d = Dict()
    d["k"] = value
    got = d["k"]
    assert got == value and type(got) is type(value)


def test_float_nan_value():
    d = Dict()
    d["k"] = float("nan")
    assert d["k"] != d["k"]


def test_sizes_are_checked_and_nothing_is_stored():
    d = Dict(capacity=10, max_key_size=8, max_value_size=16)
    assert (d.capacity, d.max_key_size, d.max_value_size) == (10, 8, 16)
    d["k"] = "x" * 16  # exactly the limit
    with pytest.raises(ValueError, match="max_value_size"):
        d["k"] = "x" * 17
    assert d["k"] == "x" * 16  # the old value stays
    with pytest.raises(ValueError):
        d["new"] = list(range(100))  # its pickle is too large
    assert "new" not in d and len(d) == 1
    with pytest.raises(ValueError):
        d.setdefault("new", b"y" * 17)
    assert "new" not in d
    d["12345678"] = 1
    with pytest.raises(ValueError, match="max_key_size"):
        d["123456789"] = 1
    assert "123456789" not in d  # too long to be a key: absent
    assert d.get("123456789", 5) == 5
    with pytest.raises(ValueError):
        Dict(max_value_size=70000)
    with pytest.raises(ValueError):
        Dict(max_key_size=2000)
    with pytest.raises(ValueError):
        Dict(capacity=0)


def test_full_dict_raises_dict_full_error():
    d = Dict(capacity=4)
    for i in range(4):
        d[i] = i
    with pytest.raises(DictFullError, match="full"):
        d[4] = 4
    assert 4 not in d and len(d) == 4
    with pytest.raises(DictFullError):
        d.setdefault(4, 4)
    with pytest.raises(DictFullError):
        d.incr(4)
    d[0] = "replaced"  # a key already in it still takes a new value
    assert d.incr(1) == 2
    del d[3]
    d[4] = 4
    assert d == {0: "replaced", 1: 2, 2: 2, 4: 4}


def test_a_large_dict_gets_a_region_of_its_own():
    d = Dict(capacity=5000, max_value_size=1024)
    for i in range(5000):
        d[i] = i
    assert len(d) == 5000 and d[4999] == 4999


# -- incr ------------------------------------------------------------------------------


def test_incr():
    d = Dict()
    assert d.incr("n") == 1
    assert d.incr("n", 5) == 6
    assert d.incr("n", -10) == -4
    assert d.incr("m", 2, init=100) == 102
    assert d.incr("f", 0.5) == 0.5 and d.incr("f", 1) == 1.5
    assert d.incr("n", 0.5) == -3.5 and type(d["n"]) is float
    d["big"] = 2**63 - 1
    with pytest.raises(OverflowError):
        d.incr("big")
    assert d["big"] == 2**63 - 1  # unchanged
    with pytest.raises(OverflowError):
        d.incr("x", 2**64)
    d["s"] = "text"
    with pytest.raises(TypeError):
        d.incr("s")
    assert d["s"] == "text"
    d["b"] = True
    with pytest.raises(TypeError):
        d.incr("b")
    with pytest.raises(TypeError):
        d.incr("n", "1")


# -- across processes ------------------------------------------------------------------


def _child_writes(d):
    d[1] = "1"
    d["2"] = 2
    d[0.25] = None
    d["list"] = [1, 2, 3]
    del d["gone"]
    assert d["from parent"] == "hello"


def test_updates_are_seen_across_processes(ctx):
    d = Dict()
    d["gone"] = 1
    d["from parent"] = "hello"
    assert run_all(ctx, _child_writes, [(d,)]) == [0]
    assert d == {"from parent": "hello", 1: "1", "2": 2, 0.25: None, "list": [1, 2, 3]}


def _incr_many(d, n, go):
    go.wait()
    for _ in range(n):
        d.incr("hits")
        d.incr(os.getpid())


INCRS = 2_000


def test_concurrent_incr_from_four_processes_is_exact(ctx):
    d = Dict()
    go = shmstate.Event()
    procs = [ctx.Process(target=_incr_many, args=(d, INCRS, go)) for _ in range(4)]
    for p in procs:
        p.start()
    go.set()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * 4
    assert d["hits"] == 4 * INCRS
    assert sorted(d[p.pid] for p in procs) == [INCRS] * 4


def _setdefault_race(d, mine, go, out):
    go.wait()
    out.put(d.setdefault("winner", mine))


def test_setdefault_is_atomic_across_processes(ctx):
    d = Dict()
    go = shmstate.Event()
    out = ctx.Queue()
    procs = [ctx.Process(target=_setdefault_race, args=(d, f"p{i}", go, out)) for i in range(4)]
    for p in procs:
        p.start()
    go.set()
    got = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(60)
    assert len(set(got)) == 1 and got[0] == d["winner"]


def _pool_task(d, i):
    d[f"k{i}"] = i * i
    return d.incr("calls")


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_process_pool_executor(method):
    d = Dict()
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=mp.get_context(method)) as ex:
        results = list(ex.map(_pool_task, [d] * 8, range(8), timeout=60))
    assert sorted(results) == list(range(1, 9))
    assert d.copy() == {**{f"k{i}": i * i for i in range(8)}, "calls": 8}


def test_pickle_is_a_reference_and_region_dicts_are_shared_by_name(tmp_path):
    d = Dict(capacity=50).with_timeout(1.5)
    e = pickle.loads(pickle.dumps(d))
    e["x"] = 1
    assert d["x"] == 1 and e.timeout == 1.5 and e.capacity == 50
    r = shmstate.Region(tmp_path / "r", 1 << 20)
    a = r.Dict("cfg", capacity=10)
    b = shmstate.Region(tmp_path / "r").Dict("cfg")  # opens it whatever its sizes
    a["k"] = "v"
    assert b["k"] == "v" and b.capacity == 10
    with pytest.raises(TypeError):
        r.Dict("cfg", capacity=11)
    with pytest.raises(ValueError):
        r.Dict("other", capacity=10).with_timeout(-1)
    anon = shmstate._region.Region._from_core(shmstate._shmstate.RegionCore.anonymous(1 << 20))
    with pytest.raises(ValueError, match="anonymous"):
        pickle.dumps(anon.Dict("d"))


# -- waiting, and a writer killed or stopped -------------------------------------------


def _hold(d, key, seconds):
    d._hold_key_lock(key, seconds)


def _wait_until_held(d):
    """Until another process holds the lock of the dict's table (its only part: capacity
    <= 128): a write that may not wait times out (removing an absent key changes
    nothing)."""
    probe = d.with_timeout(0)
    while True:
        try:
            probe.pop("\0probe", None)
        except TimeoutError:
            return


@pytest.mark.timeout(60)
def test_timeouts_are_bounded_and_change_nothing(ctx):
    d = Dict(capacity=10)  # one part of the table: every key shares the lock
    d["a"] = 1
    p = ctx.Process(target=_hold, args=(d, "held", 30))
    p.start()
    try:
        _wait_until_held(d)
        t = d.with_timeout(0.2)
        for op in (lambda: t.__setitem__("a", 2), lambda: t.incr("a"),
                   lambda: t.__delitem__("a"), lambda: t.setdefault("new", 1),
                   lambda: t.pop("a")):
            start = time.monotonic()
            with pytest.raises(TimeoutError):
                op()
            assert 0.2 <= time.monotonic() - start < 5
        assert t["a"] == 1 and t.get("new") is None  # reads take no lock
        assert d == {"a": 1}
        with pytest.raises(TimeoutError):
            d.with_timeout(0)["a"] = 3
    finally:
        p.kill()
        p.join(30)
    d["a"] = 4  # the killed holder's lock is taken over
    assert d["a"] == 4


@pytest.mark.timeout(60)
def test_a_writer_killed_holding_the_lock_does_not_wedge_others(ctx):
    d = Dict(capacity=10)
    d.update({"a": 1, "b": [2]})
    p = ctx.Process(target=_hold, args=(d, "a", 60))
    p.start()
    _wait_until_held(d)
    os.kill(p.pid, signal.SIGKILL)
    p.join(30)
    start = time.monotonic()
    assert d.with_timeout(10).incr("a") == 2  # taken over and repaired
    d["c"] = 3
    assert time.monotonic() - start < 5
    assert d == {"a": 2, "b": [2], "c": 3}


@pytest.mark.timeout(60)
def test_a_stopped_writer_holds_up_only_bounded_calls_until_their_deadline(ctx):
    d = Dict(capacity=10)
    d["a"] = 1
    p = ctx.Process(target=_hold, args=(d, "a", 1))
    p.start()
    try:
        _wait_until_held(d)
        os.kill(p.pid, signal.SIGSTOP)
        with pytest.raises(TimeoutError):
            d.with_timeout(0.3)["a"] = 2
        assert d["a"] == 1  # readers are not held up
        os.kill(p.pid, signal.SIGCONT)
        d.with_timeout(10)["a"] = 2
        assert d["a"] == 2
    finally:
        with contextlib.suppress(ProcessLookupError):  # exited (forkserver reaps it)
            os.kill(p.pid, signal.SIGCONT)
        p.join(30)
    assert p.exitcode == 0


@pytest.mark.timeout(60)
def test_ctrl_c_interrupts_a_write_waiting_for_the_lock(tmp_path):
    setup = f"d = shmstate.Region({str(tmp_path / 'r')!r}, 1 << 20).Dict('d', capacity=10)"
    d = shmstate.Region(tmp_path / "r", 1 << 20).Dict("d", capacity=10)
    holder = mp.get_context("fork").Process(target=_hold, args=(d, "k", 30))
    holder.start()
    try:
        _wait_until_held(d)
        assert_ctrl_c_interrupts(setup, 'd["k"] = 1')
    finally:
        holder.kill()
        holder.join(30)


PROGRAM = textwrap.dedent("""
    import multiprocessing as mp, os, sys, shmstate
    def child(d, big):
        d.incr("n")
        big[1] = "x"
    if __name__ == "__main__":
        mp.set_start_method(sys.argv[1])
        d = shmstate.Dict()
        big = shmstate.Dict(capacity=20000)   # a region of its own
        ps = [mp.Process(target=child, args=(d, big)) for _ in range(2)]
        for p in ps: p.start()
        for p in ps: p.join()
        assert d["n"] == 2 and big[1] == "x"
        dir = os.environ["SHMSTATE_PY_DIR"]
        print("files", len([f for f in os.listdir(dir) if f.startswith("shmstate-py-")]))
""")


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_no_file_outlives_the_program(tmp_path, method):
    prog = tmp_path / "prog" / "program.py"
    prog.parent.mkdir()
    prog.write_text(PROGRAM)
    env = dict(os.environ, SHMSTATE_PY_DIR=str(tmp_path / "shm"))
    os.mkdir(tmp_path / "shm")
    out = subprocess.run([PYTHON, str(prog), method], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "files 2" in out.stdout
    assert os.listdir(tmp_path / "shm") == []
