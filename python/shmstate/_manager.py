"""``Manager``: ``multiprocessing.Manager()``'s shape without the server process."""

import builtins

__all__ = ["Manager"]


class Manager:
    """``multiprocessing.Manager()`` without the server process or proxies.

    ``with Manager() as manager:`` (or ``manager = Manager()``; ``start()`` and
    ``shutdown()`` do nothing) makes shared objects that pass to other processes as
    ``SyncManager``'s proxies do: ``dict(...)`` is a :class:`shmstate.Dict` (initial items
    as ``dict()`` takes them), ``list(iterable=())`` a :class:`shmstate.List`, and
    ``Value``, ``Array``, ``Lock``, ``RLock``, ``Semaphore``, ``BoundedSemaphore``,
    ``Event``, ``Condition``, ``Barrier``, ``Queue`` and ``JoinableQueue`` the package's
    own. The objects outlive the manager (each lives until the last process using it
    exits).

    Example::

        with shmstate.Manager() as manager:
            d = manager.dict()
            l = manager.list(range(10))
    """

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def start(self, initializer=None, initargs=()):
        """Does nothing (there is no server process to start)."""

    def shutdown(self):
        """Does nothing (there is no server process to stop)."""

    def join(self, timeout=None):
        """Does nothing (there is no server process to wait for)."""

    def dict(self, *args, **kwargs):
        """A :class:`shmstate.Dict` of the items ``dict(*args, **kwargs)`` has."""
        from . import Dict

        return Dict(builtins.dict(*args, **kwargs))

    def list(self, iterable=()):
        """A :class:`shmstate.List` of the items of ``iterable``."""
        from ._list import List

        return List(iterable)

    def Value(self, typecode, value, lock=True):
        """A :class:`shmstate.Value` (``SyncManager.Value``'s arguments)."""
        from . import Value

        return Value(typecode, value, lock=lock)

    def Array(self, typecode, sequence, lock=True):
        """A :class:`shmstate.Array` (``SyncManager.Array``'s arguments)."""
        from . import Array

        return Array(typecode, sequence, lock=lock)

    def Lock(self):
        """A :class:`shmstate.Lock`."""
        from . import Lock

        return Lock()

    def RLock(self):
        """A :class:`shmstate.RLock`."""
        from . import RLock

        return RLock()

    def Semaphore(self, value=1):
        """A :class:`shmstate.Semaphore`."""
        from . import Semaphore

        return Semaphore(value)

    def BoundedSemaphore(self, value=1):
        """A :class:`shmstate.BoundedSemaphore`."""
        from . import BoundedSemaphore

        return BoundedSemaphore(value)

    def Event(self):
        """A :class:`shmstate.Event`."""
        from . import Event

        return Event()

    def Condition(self, lock=None):
        """A :class:`shmstate.Condition`."""
        from . import Condition

        return Condition(lock)

    def Barrier(self, parties, action=None, timeout=None):
        """A :class:`shmstate.Barrier`."""
        from . import Barrier

        return Barrier(parties, action, timeout)

    def Queue(self, maxsize=0):
        """A :class:`shmstate.Queue`."""
        from . import Queue

        return Queue(maxsize)

    def JoinableQueue(self, maxsize=0):
        """A :class:`shmstate.JoinableQueue`."""
        from . import JoinableQueue

        return JoinableQueue(maxsize)
