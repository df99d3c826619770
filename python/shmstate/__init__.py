"""shmstate: ``multiprocessing``'s shared state on lock-free shared-memory primitives.

A drop-in for the shared-state part of :mod:`multiprocessing`: change the import and
``Value``, ``Array``, ``Lock``, ``RLock``, ``Semaphore``, ``BoundedSemaphore``,
``Condition``, ``Event`` and ``Barrier`` take the same arguments and behave the same,
passed to ``multiprocessing.Process`` or ``concurrent.futures.ProcessPoolExecutor``
under the ``fork``, ``spawn`` and ``forkserver`` start methods (and so do ``Queue`` and
``JoinableQueue``, on a shared-memory channel instead of a pipe and a feeder thread)::

    from multiprocessing import Process
    from shmstate import Value, Array

Each object lives in a shmstate region (a memory-mapped file in ``/dev/shm``, removed
when the last process using it exits) and is built on the shmstate Rust crate's
primitives: a number is one atomic word, a lock is a futex that costs no system call
when uncontended and that a waiter takes over, with :class:`OwnerDiedError`, if its
holder dies. What it adds:

- atomic arithmetic on ``Value``: ``v.add(1)`` is one instruction, where ``v.value += 1``
  loses updates and ``with v.get_lock(): v.value += 1`` costs a lock round trip;
- :class:`Counter`, a striped counter for many processes counting at once;
- :class:`Dict`, ``Manager().dict()`` without the server process, with an atomic ``incr``;
- :class:`List`, ``Manager().list()`` without the server process, and :class:`Manager`
  making both (the docs' Manager program runs with only its import changed);
- :class:`Region`, a file of *named* objects that unrelated programs open;
- every blocking call releases the GIL and is interrupted by Ctrl-C.
"""

from . import _shmstate
from ._region import Region
from ._shmstate import (
    Array,
    BoundedSemaphore,
    Counter,
    Dict,
    DictFullError,
    Event,
    JoinableQueue,
    Lock,
    ObjectInUseError,
    OwnerDiedError,
    Queue,
    RegionError,
    RegionFullError,
    RLock,
    Semaphore,
    Value,
)
from ._queue import ShutDown
from ._list import List, ListFullError
from ._manager import Manager
from ._sync import Barrier, Condition

import collections.abc as _abc

_abc.MutableMapping.register(Dict)
_abc.MutableSequence.register(List)

__all__ = [
    "Array",
    "Barrier",
    "BoundedSemaphore",
    "Condition",
    "Counter",
    "Dict",
    "DictFullError",
    "Event",
    "JoinableQueue",
    "List",
    "ListFullError",
    "Lock",
    "Manager",
    "ObjectInUseError",
    "OwnerDiedError",
    "Queue",
    "RLock",
    "Region",
    "RegionError",
    "RegionFullError",
    "Semaphore",
    "ShutDown",
    "Value",
]

__version__ = "0.1.0"
