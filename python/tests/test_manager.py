"""shmstate.Manager and shmstate.List: the docs' Manager program under every start
method, List against a plain list for a sequence of operations, atomic appends from two
processes, a full list and a too-large value change nothing, and pickling."""

import collections.abc
import os
import pickle
import random

import pytest

import shmstate
from shmstate import List, ListFullError, Manager

from helpers import run_all


def _docs_f(d, l):
    d[1] = '1'
    d['2'] = 2
    d[0.25] = None
    l.reverse()


def test_docs_manager_program(ctx):
    with Manager() as manager:
        d = manager.dict()
        l = manager.list(range(10))
        assert run_all(ctx, _docs_f, [(d, l)]) == [0]
        assert str(d) == "{1: '1', '2': 2, 0.25: None}"
        assert repr(l) == str(l) == "[9, 8, 7, 6, 5, 4, 3, 2, 1, 0]"


def test_manager_is_syncmanager_shaped():
    m = Manager()
    m.start()
    assert m.dict({"a": 1}, b=2) == {"a": 1, "b": 2}
    assert m.dict([("x", 1)]) == {"x": 1}
    assert m.list() == [] and m.list("ab") == ["a", "b"]
    assert m.Value("i", 7).value == 7
    assert m.Array("d", [1.5, 2.5])[:] == [1.5, 2.5]
    for make in (m.Lock, m.RLock, m.Semaphore, m.BoundedSemaphore):
        lock = make()
        assert lock.acquire() and lock.release() is None
    e = m.Event()
    e.set()
    assert e.is_set()
    with m.Condition() as held:
        assert held
    assert m.Barrier(1).wait() == 0
    q = m.Queue()
    q.put(3)
    assert q.get(timeout=10) == 3
    jq = m.JoinableQueue()
    jq.put(4)
    assert jq.get(timeout=10) == 4
    jq.task_done()
    jq.join()
    m.shutdown()


# -- List against a plain list ---------------------------------------------------------


def test_list_matches_a_plain_list_over_a_sequence_of_operations():
    ref = list(range(5))
    sl = List(range(5), capacity=64)
    rng = random.Random(1)

    def step(name, *args, **kw):
        want = got = None
        want_exc = got_exc = None
        try:
            want = getattr(ref, name)(*args, **kw)
        except Exception as e:  # noqa: BLE001 - compared below
            want_exc = type(e)
        try:
            got = getattr(sl, name)(*args, **kw)
        except Exception as e:  # noqa: BLE001
            got_exc = type(e)
        assert got_exc == want_exc, (name, args)
        assert got == want, (name, args)
        assert sl == ref and len(sl) == len(ref), (name, args)

    for _ in range(300):
        n = len(ref)
        i = rng.randrange(-n - 2, n + 3)
        op = rng.randrange(16)
        if op == 0:
            step("append", rng.choice([i, "s", None, (1, 2), 2.5]))
        elif op == 1:
            step("extend", [rng.randrange(9) for _ in range(rng.randrange(4))])
        elif op == 2:
            step("insert", i, rng.randrange(9))
        elif op == 3:
            step("pop", *([i] if rng.random() < 0.7 else []))
        elif op == 4:
            step("remove", rng.randrange(9))
        elif op == 5:
            step("index", rng.randrange(9))
        elif op == 6:
            step("count", rng.randrange(9))
        elif op == 7:
            step("reverse")
        elif op == 8:
            # every item comparable: sort only numbers
            ref[:] = [x for x in ref if isinstance(x, int)]
            sl[:] = ref
            step("sort", key=rng.choice([None, lambda x: -x, str]), reverse=rng.random() < 0.5)
        elif op == 9:
            step("__getitem__", i)
        elif op == 10:
            step("__setitem__", i, "v")
        elif op == 11:
            step("__delitem__", i)
        elif op == 12:
            s = slice(rng.randrange(-3, n + 2), rng.randrange(-3, n + 2), rng.choice([None, 1, 2, -1]))
            step("__getitem__", s)
            if s.step in (None, 1):
                step("__setitem__", s, [rng.randrange(9) for _ in range(rng.randrange(4))])
            else:
                k = len(range(*s.indices(n)))
                step("__setitem__", s, [rng.randrange(9) for _ in range(k + rng.choice([0, 0, 1]))])
        elif op == 13:
            s = slice(rng.randrange(-3, n + 2), rng.randrange(-3, n + 2), rng.choice([None, 2, -1]))
            step("__delitem__", s)
        elif op == 14:
            step("__contains__", rng.randrange(9))
        else:
            step("copy")
    assert list(sl) == ref and list(reversed(sl)) == ref[::-1]


def test_list_protocol_details():
    l = List([3, 1, 2])
    assert isinstance(l, collections.abc.MutableSequence)
    assert l.copy() == [3, 1, 2] and type(l.copy()) is list
    l.sort()
    assert l == [1, 2, 3]
    l.sort(key=lambda x: -x)
    assert l == [3, 2, 1]
    l.sort(reverse=True, key=str)
    assert l == [3, 2, 1]
    same = l
    l += [0]
    assert l is same and l == [3, 2, 1, 0]
    assert l + [9] == [3, 2, 1, 0, 9] and [9] + l == [9, 3, 2, 1, 0]
    assert l != [3] and not (l == [3]) and l == List([3, 2, 1, 0])
    assert l.index(1) == 2 and l.count(3) == 1 and 0 in l and 7 not in l
    with pytest.raises(ValueError):
        l.remove(7)
    with pytest.raises(ValueError):
        l.index(7)
    with pytest.raises(IndexError):
        l[4]
    with pytest.raises(IndexError):
        List().pop()
    with pytest.raises(TypeError):
        hash(l)
    with pytest.raises(TypeError):
        l["a"]


def test_sort_that_raises_leaves_the_list_unchanged():
    l = List([2, "a", 1])
    with pytest.raises(TypeError):
        l.sort()
    assert l == [2, "a", 1]


def test_full_list_and_too_large_value_change_nothing():
    l = List(range(3), capacity=4, max_value_size=64)
    assert l.capacity == 4
    with pytest.raises(ListFullError):
        l.extend([7, 8])
    assert l == [0, 1, 2]
    l.append(3)
    for add in (lambda: l.append(4), lambda: l.insert(0, 4), lambda: l.__setitem__(slice(0, 0), [4])):
        with pytest.raises(ListFullError) as e:
            add()
        assert isinstance(e.value, shmstate.DictFullError)
        assert l == [0, 1, 2, 3]
    with pytest.raises(ListFullError):
        List(range(5), capacity=4)
    big = "x" * 200
    del l[2:]
    for add in (lambda: l.append(big), lambda: l.insert(0, big), lambda: l.extend([9, big]),
                lambda: l.__setitem__(slice(0, 1), [9, big]), lambda: l.__setitem__(1, big)):
        with pytest.raises(ValueError):
            add()
        assert l == [0, 1]
    l[1:2] = [5, 6]
    assert l == [0, 5, 6]


# -- processes -------------------------------------------------------------------------


def _append_500(l, tag):
    for i in range(500):
        l.append((tag, i))


def test_two_processes_append_500_each(ctx):
    l = List(capacity=1000)
    assert run_all(ctx, _append_500, [(l, "a"), (l, "b")]) == [0, 0]
    items = l.copy()
    assert len(l) == len(items) == 1000
    for tag in ("a", "b"):
        assert [i for t, i in items if t == tag] == list(range(500))


def test_pickles_as_a_reference():
    l = List([1, 2])
    l2 = pickle.loads(pickle.dumps(l))
    l2.append(3)
    assert l == [1, 2, 3] and l2.capacity == l.capacity
    l.reverse()
    assert l2 == [3, 2, 1]


def _die_inside_extend(l):
    # what a process killed inside extend leaves: the lock held, a new item written past
    # the length, the length not yet updated
    l._lock.acquire()
    l._d[len(l)] = "stray"
    l._d["x"] = "tried"
    os._exit(0)


def test_a_process_killed_inside_a_method(ctx):
    l = List([1, 2], capacity=3)
    assert run_all(ctx, _die_inside_extend, [(l,)]) == [0]
    with pytest.raises(shmstate.OwnerDiedError):
        l.append(3)
    with pytest.raises(shmstate.OwnerDiedError):  # until repaired
        len(l.copy())
    assert l.mark_consistent() is True
    assert l == [1, 2] and len(l._d) == 3  # the items and the length: no stray slot
    l.append(3)
    assert l == [1, 2, 3]
    assert l.mark_consistent() is False


def test_unpicklable_value_changes_nothing():
    l = List([1, 2])
    for add in (lambda: l.extend([3, lambda: 0]), lambda: l.insert(0, lambda: 0),
                lambda: l.__setitem__(slice(0, 1), [3, lambda: 0])):
        with pytest.raises(Exception):  # noqa: B017 - what pickle raises varies
            add()
        assert l == [1, 2]
    assert len(l._d) == 3  # no slot left behind
