"""Locks, semaphores, events, conditions and barriers: the behaviours CPython's
_test_multiprocessing.py checks for these types (_TestLock, _TestSemaphore,
_TestCondition, _TestEvent, _TestBarrier), with real processes under every start
method."""

import threading
import time

import pytest

import shmstate
from helpers import run_all


def test_lock():
    lock = shmstate.Lock()
    assert lock.acquire() is True
    assert lock.acquire(False) is False
    assert lock.locked()
    assert lock.release() is None
    with pytest.raises((ValueError, threading.ThreadError)):
        lock.release()
    with lock:
        assert lock.locked()
    assert not lock.locked()


def test_lock_timeout_honours_the_deadline():
    lock = shmstate.Lock()
    lock.acquire()
    t = time.monotonic()
    assert lock.acquire(True, 0.2) is False
    assert time.monotonic() - t >= 0.2
    assert lock.acquire(timeout=-1) is False  # negative is 0, as in multiprocessing
    lock.release()


def test_lock_release_by_another_thread_is_refused():
    lock = shmstate.Lock()
    lock.acquire()
    errors = []

    def other():
        try:
            lock.release()
        except RuntimeError as e:
            errors.append(e)

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert len(errors) == 1 and lock.locked()
    lock.release()


def test_rlock():
    lock = shmstate.RLock()
    assert lock.acquire() is True
    assert lock.acquire() is True
    assert lock.acquire() is True
    assert lock._count() == 3
    lock.release()
    lock.release()
    assert lock.locked()
    lock.release()
    assert not lock.locked()
    with pytest.raises((AssertionError, RuntimeError)):
        lock.release()


def _hold(lock, held, done):
    with lock:
        held.set()
        done.wait(30)


def test_lock_excludes_other_processes(ctx):
    for lock in (shmstate.Lock(), shmstate.RLock()):
        held, done = shmstate.Event(), shmstate.Event()
        p = ctx.Process(target=_hold, args=(lock, held, done))
        p.start()
        assert held.wait(30)
        assert lock.acquire(False) is False
        assert lock.acquire(timeout=0.05) is False
        done.set()
        assert lock.acquire(timeout=30) is True
        lock.release()
        p.join(30)
        assert p.exitcode == 0


def test_semaphore():
    sem = shmstate.Semaphore(2)
    assert sem.get_value() == 2
    assert sem.acquire() is True
    assert sem.get_value() == 1
    assert sem.acquire() is True
    assert sem.acquire(False) is False
    assert sem.acquire(timeout=0.05) is False
    sem.release()
    assert sem.get_value() == 1
    sem.release()
    sem.release()  # an unbounded semaphore may exceed its initial value
    assert sem.get_value() == 3
    with pytest.raises(ValueError):
        shmstate.Semaphore(-1)


def test_bounded_semaphore():
    sem = shmstate.BoundedSemaphore(2)
    sem.acquire()
    sem.release()
    with pytest.raises(ValueError):
        sem.release()
    assert sem.get_value() == 2


def _release_later(sem, n):
    for _ in range(n):
        sem.release()


def test_semaphore_wakes_waiter_in_other_process(ctx):
    sem = shmstate.Semaphore(0)
    p = ctx.Process(target=_release_later, args=(sem, 3))
    p.start()
    for _ in range(3):
        assert sem.acquire(timeout=30)
    p.join(30)
    assert p.exitcode == 0 and sem.get_value() == 0


def _set_event(e):
    time.sleep(0.1)
    e.set()


def test_event(ctx):
    event = shmstate.Event()
    assert event.is_set() is False
    assert event.wait(0.0) is False
    assert event.wait(0.05) is False
    event.set()
    assert event.is_set() is True
    assert event.wait() is True
    assert event.wait(0.0) is True
    event.clear()
    assert event.is_set() is False
    p = ctx.Process(target=_set_event, args=(event,))
    p.start()
    assert event.wait(30) is True
    p.join(30)


def _cond_waiter(cond, sleeping, woken, timeout):
    with cond:
        sleeping.release()
        cond.wait(timeout)
        woken.release()


def _wait_value(sem, n, timeout=30):
    deadline = time.monotonic() + timeout
    while sem.get_value() < n:
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_condition_notify(ctx):
    cond = shmstate.Condition()
    sleeping, woken = shmstate.Semaphore(0), shmstate.Semaphore(0)
    procs = [ctx.Process(target=_cond_waiter, args=(cond, sleeping, woken, None))
             for _ in range(3)]
    for p in procs:
        p.start()
    for _ in range(3):
        assert sleeping.acquire(timeout=30)
    # all three are sleeping (or about to): notify one, then two at once
    _wait_for_sleepers(cond, 3)
    with cond:
        cond.notify()
    assert woken.acquire(timeout=30)
    assert woken.acquire(timeout=0.2) is False
    with cond:
        cond.notify(n=2)
    assert woken.acquire(timeout=30) and woken.acquire(timeout=30)
    for p in procs:
        p.join(30)
        assert p.exitcode == 0


def _wait_for_sleepers(cond, n, timeout=30):
    deadline = time.monotonic() + timeout
    while cond._sleeping_count.get_value() < n:
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_condition_notify_all(ctx):
    cond = shmstate.Condition(shmstate.Lock())
    sleeping, woken = shmstate.Semaphore(0), shmstate.Semaphore(0)
    procs = [ctx.Process(target=_cond_waiter, args=(cond, sleeping, woken, None))
             for _ in range(3)]
    for p in procs:
        p.start()
    _wait_for_sleepers(cond, 3)
    with cond:
        cond.notify_all()
    for _ in range(3):
        assert woken.acquire(timeout=30)
    for p in procs:
        p.join(30)
        assert p.exitcode == 0


def test_condition_timeout_and_unowned():
    cond = shmstate.Condition()
    with pytest.raises(RuntimeError):
        cond.wait()
    with pytest.raises(RuntimeError):
        cond.notify()
    with cond:
        t = time.monotonic()
        assert cond.wait(0.1) is False
        assert time.monotonic() - t >= 0.1
        cond.notify()  # the timed-out waiter is not woken later


def _bump(cond, state):
    for _ in range(4):
        time.sleep(0.01)
        with cond:
            state.value += 1
            cond.notify()


def test_condition_wait_for(ctx):
    cond = shmstate.Condition()
    state = shmstate.Value("i", 0)
    p = ctx.Process(target=_bump, args=(cond, state))
    p.start()
    with cond:
        assert cond.wait_for(lambda: state.value == 4, timeout=30)
        assert cond.wait_for(lambda: state.value == 5, timeout=0.1) is False
    p.join(30)
    assert p.exitcode == 0


def _barrier_party(barrier, results):
    results.put(barrier.wait(30))


def test_barrier(ctx):
    barrier = shmstate.Barrier(3)
    assert barrier.parties == 3 and barrier.n_waiting == 0 and not barrier.broken
    indices = ctx.Queue()
    procs = [ctx.Process(target=_barrier_party, args=(barrier, indices)) for _ in range(2)]
    for p in procs:
        p.start()
    mine = barrier.wait(30)
    got = sorted([mine, indices.get(timeout=30), indices.get(timeout=30)])
    assert got == [0, 1, 2]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0


def _action(counter):
    counter.add(1)


def test_barrier_action_timeout_abort_reset():
    counter = shmstate.Value("i", 0)
    barrier = shmstate.Barrier(1, action=lambda: counter.add(1))
    assert barrier.wait() == 0 and counter.value == 1
    b2 = shmstate.Barrier(2, timeout=0.1)
    with pytest.raises(threading.BrokenBarrierError):
        b2.wait()
    assert b2.broken
    b2.reset()
    assert not b2.broken
    b2.abort()
    with pytest.raises(threading.BrokenBarrierError):
        b2.wait()
    b3 = shmstate.Barrier(1, action=lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        b3.wait()
    assert b3.broken


def _wait_rounds(barrier, rounds):
    for _ in range(rounds):
        barrier.wait(30)


def test_barrier_is_reusable_with_an_action_across_processes(ctx):
    counter = shmstate.Value("i", 0)
    barrier = shmstate.Barrier(3, action=_ActionAdd(counter))
    assert run_all(ctx, _wait_rounds, [(barrier, 5)] * 3) == [0] * 3
    assert counter.value == 5


class _ActionAdd:
    """A picklable barrier action."""

    def __init__(self, counter):
        self.counter = counter

    def __call__(self):
        self.counter.add(1)


def test_region_objects_are_shared_by_name(tmp_path):
    path = tmp_path / "named.region"
    r1 = shmstate.Region(path, 1 << 16)
    r2 = shmstate.Region(path, create=False)
    r1.Value("x", "q", 5).add(1)
    assert r2.Value("x", "q").value == 6
    with pytest.raises(TypeError):
        r2.Value("x", "d")
    r1.Array("a", "i", [1, 2, 3])
    assert r2.Array("a", "i", 3)[:] == [1, 2, 3]
    assert "x" in r1.names() and "a/lock" in r1.names()
    r2.Semaphore("s", 0).release()
    assert r1.Semaphore("s").acquire(timeout=5)
    assert path.exists()  # a named file stays
