"""The calls of an inner loop (Lock/RLock acquire, release and `with`; a Value's value,
add and sub) are CPython methods with a fast path for their common arguments, and the
full method for everything else: both paths must behave as multiprocessing's objects do,
whatever the arguments."""

import inspect
import os
import signal
import time

import pytest

import shmstate


@pytest.fixture(params=["Lock", "RLock"])
def lock(request):
    return getattr(shmstate, request.param)()


def test_acquire_forms_on_a_free_lock(lock):
    # no arguments, a positional bool, keywords, a timeout, a non-bool block: all acquire
    for call in (
        lambda: lock.acquire(),
        lambda: lock.acquire(True),
        lambda: lock.acquire(False),
        lambda: lock.acquire(block=False),
        lambda: lock.acquire(True, 1.0),
        lambda: lock.acquire(timeout=1.0),
        lambda: lock.acquire(1),
        lambda: lock.acquire(0),
    ):
        assert call() is True
        assert lock._is_mine()
        lock.release()
        assert not lock.locked()


def _hold(lock, held, done):
    lock.acquire()
    held.set()
    done.wait(30)
    lock.release()


def test_acquire_forms_on_a_held_lock(ctx, lock):
    held, done = shmstate.Event(), shmstate.Event()
    p = ctx.Process(target=_hold, args=(lock, held, done))
    p.start()
    try:
        assert held.wait(30)
        assert lock.acquire(False) is False
        assert lock.acquire(block=False) is False
        assert lock.acquire(0) is False
        t = time.monotonic()
        assert lock.acquire(True, 0.05) is False
        assert lock.acquire(timeout=0.05) is False
        assert time.monotonic() - t >= 0.1
    finally:
        done.set()
        p.join(30)
    assert p.exitcode == 0
    # the holder released: the blocking fast form acquires
    assert lock.acquire() is True
    lock.release()


def test_bad_arguments_raise_like_the_full_method(lock):
    with pytest.raises(TypeError):
        lock.acquire(True, 1.0, 3)
    with pytest.raises(TypeError):
        lock.acquire(nope=1)
    with pytest.raises(TypeError):
        lock.acquire(True, "soon")
    with pytest.raises(TypeError):
        lock.release(1)
    assert not lock.locked()


def test_release_of_an_unheld_lock_raises(lock):
    with pytest.raises(RuntimeError):
        lock.release()
    with pytest.raises(RuntimeError):
        lock.__exit__(None, None, None)


def test_with_releases_on_an_exception(lock):
    with pytest.raises(KeyError):
        with lock:
            assert lock._is_mine()
            raise KeyError("x")
    assert not lock.locked()


def test_rlock_fast_path_counts_depth():
    r = shmstate.RLock()
    assert r.acquire() and r.acquire(False) and r.acquire()
    assert r._count() == 3
    with r:
        assert r._count() == 4
    r.release()
    r.release()
    assert r.locked()
    r.release()
    assert not r.locked()
    with pytest.raises(RuntimeError):
        r.release()


def _hold_forever(lock, held):
    lock.acquire()
    held.set()
    time.sleep(60)


@pytest.mark.parametrize("form", ["acquire()", "acquire(False)", "with"])
def test_a_dead_holder_is_reported_by_the_fast_forms(ctx, lock, form):
    held = shmstate.Event()
    p = ctx.Process(target=_hold_forever, args=(lock, held))
    p.start()
    assert held.wait(30)
    os.kill(p.pid, signal.SIGKILL)
    p.join(30)
    with pytest.raises(shmstate.OwnerDiedError):
        if form == "acquire()":
            lock.acquire()
        elif form == "acquire(False)":
            lock.acquire(False)
        else:
            with lock:
                pass
    if form == "with":
        # `with` reports the dead holder with the lock released again, still marked:
        # the next acquisition reports it too, and holds the lock
        assert not lock.locked()
        with pytest.raises(shmstate.OwnerDiedError):
            lock.acquire(False)
    # acquire reports it with the lock held by the caller, as the full method does
    assert lock._is_mine()
    assert lock.mark_consistent()
    lock.release()
    assert lock.acquire(False) is True
    lock.release()


def test_signatures_and_docs(lock):
    assert str(inspect.signature(lock.acquire)) == "(block=True, timeout=None)"
    assert str(inspect.signature(lock.release)) == "()"
    assert "Acquire the lock" in type(lock).acquire.__doc__
    v = shmstate.Value("q", 0)
    assert str(inspect.signature(v.add)) == "(n, /)"
    assert "value" in type(v).value.__doc__


@pytest.mark.parametrize("code,one", [("q", 1), ("i", 1), ("d", 1.5), ("B", 1)])
def test_value_add_sub_and_value(code, one):
    for lock in (True, False):
        v = shmstate.Value(code, 0, lock=lock)
        v.add(one)
        v.add(one)
        v.sub(one)
        assert v.value == one
        v.value = 3 * one
        assert v.value == 3 * one


def test_value_fast_methods_reject_bad_input():
    v = shmstate.Value("q", 5)
    with pytest.raises(TypeError):
        v.add("x")
    with pytest.raises(TypeError):
        v.add()
    with pytest.raises(TypeError):
        v.sub(1, 2)
    with pytest.raises(OverflowError):
        v.add(1 << 70)
    with pytest.raises(TypeError):
        v.value = "x"
    with pytest.raises(AttributeError):
        del v.value
    assert v.value == 5
    b = shmstate.Value("?", False)
    with pytest.raises(TypeError):
        b.add(1)  # a bool Value has no arithmetic, as through the full method
    assert b.value is False
