"""``Condition`` and ``Barrier``, built as ``multiprocessing`` builds them, on shmstate's
semaphores, locks and arrays (every wait is interruptible and never hangs on a dead
lock holder)."""

import sys
import threading
import time

from . import _region

__all__ = ["Condition", "Barrier"]


class Condition:
    """A condition variable shared between processes: ``multiprocessing.Condition``.

    ``Condition(lock=None)`` works on ``lock`` (a :class:`Lock` or :class:`RLock`; a new
    ``RLock`` if ``None``). Hold the lock (``with cond:``) to call ``wait(timeout=None)``
    (releases the lock fully, waits for a notification, re-acquires it; returns ``False``
    on timeout), ``wait_for(predicate, timeout=None)`` (waits until ``predicate()`` is
    true; returns its last value), ``notify(n=1)`` and ``notify_all()``.

    Built as multiprocessing's is: a count of sleepers, a count of woken sleepers and a
    semaphore the sleepers wait on, all shmstate semaphores; ``notify`` waits until the
    sleepers it woke have taken their wakeup, so a notification never goes to a thread
    that starts waiting later.
    """

    def __init__(self, lock=None):
        def make(region, name):
            return Condition._in_region(region, name, lock)

        other = _region.place(make)
        self.__dict__.update(other.__dict__)

    @classmethod
    def _in_region(cls, region, name, lock):
        self = cls.__new__(cls)
        self._lock = lock if lock is not None else region.RLock(name + "/lock")
        self._sleeping_count = region.Semaphore(name + "/sleeping", 0)
        self._woken_count = region.Semaphore(name + "/woken", 0)
        self._wait_semaphore = region.Semaphore(name + "/wait", 0)
        return self

    def __getstate__(self):
        return (self._lock, self._sleeping_count, self._woken_count, self._wait_semaphore)

    def __setstate__(self, state):
        (self._lock, self._sleeping_count, self._woken_count, self._wait_semaphore) = state

    def __enter__(self):
        return self._lock.__enter__()

    def __exit__(self, *args):
        return self._lock.__exit__(*args)

    def acquire(self, block=True, timeout=None):
        """Acquire the underlying lock."""
        return self._lock.acquire(block, timeout)

    def release(self):
        """Release the underlying lock."""
        return self._lock.release()

    def __repr__(self):
        return f"<shmstate.Condition({self._lock!r}, sleeping={self._sleeping_count.get_value()})>"

    def wait(self, timeout=None):
        """Release the lock, wait until notified or ``timeout`` seconds pass, re-acquire
        the lock. Returns ``False`` if the wait timed out."""
        if not self._lock._is_mine():
            raise RuntimeError("cannot wait on an un-acquired condition")
        self._sleeping_count.release()
        count = self._lock._count()
        for _ in range(count):
            self._lock.release()
        try:
            return self._wait_semaphore.acquire(True, timeout)
        finally:
            self._woken_count.release()
            for _ in range(count):
                self._lock.acquire()

    def notify(self, n=1):
        """Wake up to ``n`` waiters (the lock must be held)."""
        if not self._lock._is_mine():
            raise RuntimeError("cannot notify on an un-acquired condition")
        # Account for the waiters that timed out since the last notify.
        while self._woken_count.acquire(False):
            self._sleeping_count.acquire(False)
        sleepers = 0
        while sleepers < n and self._sleeping_count.acquire(False):
            self._wait_semaphore.release()
            sleepers += 1
        if sleepers:
            for _ in range(sleepers):
                self._woken_count.acquire()
            # Drop the wakeups of waiters that timed out meanwhile.
            while self._wait_semaphore.acquire(False):
                pass

    def notify_all(self):
        """Wake every waiter (the lock must be held)."""
        self.notify(n=sys.maxsize)

    def wait_for(self, predicate, timeout=None):
        """Wait until ``predicate()`` is true (at most ``timeout`` seconds); returns the
        last value of ``predicate()``."""
        result = predicate()
        if result:
            return result
        endtime = None if timeout is None else time.monotonic() + timeout
        waittime = None
        while not result:
            if endtime is not None:
                waittime = endtime - time.monotonic()
                if waittime <= 0:
                    break
            self.wait(waittime)
            result = predicate()
        return result


class Barrier(threading.Barrier):
    """A barrier for a fixed number of processes: ``multiprocessing.Barrier``.

    ``Barrier(parties, action=None, timeout=None)``: ``wait(timeout=None)`` blocks until
    ``parties`` callers wait, then releases them all and returns each its arrival index
    (``0`` .. ``parties - 1``, distinct). The last to arrive first calls ``action()`` (if
    given; it must be picklable to reach other processes); if the action raises, the
    barrier breaks. ``timeout`` is the default for ``wait``; a wait that times out breaks
    the barrier (``threading.BrokenBarrierError`` in every waiter) until ``reset()``.
    ``abort()`` breaks it; ``parties``, ``n_waiting`` and ``broken`` describe it.

    The state (round and count) is a shmstate ``Array`` and the waits a
    :class:`Condition`, as multiprocessing builds it, so every wait is interruptible.
    """

    def __init__(self, parties, action=None, timeout=None):
        def make(region, name):
            return Barrier._in_region(region, name, parties, action, timeout)

        other = _region.place(make)
        self.__setstate__(other.__getstate__())

    @classmethod
    def _in_region(cls, region, name, parties, action, timeout):
        if parties < 1:
            raise ValueError("parties must be > 0")
        self = cls.__new__(cls)
        cond = region.Condition(name + "/cond")
        state = region.Array(name + "/state", "i", 2, lock=False)
        self.__setstate__((parties, action, timeout, cond, state))
        return self

    def __setstate__(self, state):
        (self._parties, self._action, self._timeout, self._cond, self._array) = state

    def __getstate__(self):
        return (self._parties, self._action, self._timeout, self._cond, self._array)

    @property
    def _state(self):
        return self._array[0]

    @_state.setter
    def _state(self, value):
        self._array[0] = value

    @property
    def _count(self):
        return self._array[1]

    @_count.setter
    def _count(self, value):
        self._array[1] = value
