"""Regions: the named ``Region`` and the process's default region for unnamed objects.

Every object lives in a shmstate region, a file of named objects that any process can
map. ``shmstate.Value(...)`` and the other factories place their object in the calling
process's *default region*: a file ``shmstate-py-<pid>-<random>`` in ``/dev/shm``
(``$SHMSTATE_PY_DIR`` overrides the directory), created with ``remove_when_unused``, so
the file is removed when the last process that has it open exits. A program that was
killed leaves its file behind until the next program that creates a default region
removes every such file that no live process has open.

Objects pickle as a reference (kind, region path, object name, shape) and are reopened
in the receiving process (see ``shmstate._reduce``), so they can be passed to
``multiprocessing.Process`` and ``concurrent.futures.ProcessPoolExecutor`` under every
start method.
"""

import glob
import os
import secrets
import threading

from . import _shmstate
from ._reduce import keep_if_removed_when_unused, typecode_of

__all__ = ["Region"]

#: The default region's size and directory capacity.
DEFAULT_SIZE = 1 << 20
DEFAULT_CAPACITY = 2048
_PREFIX = "shmstate-py-"


class Region:
    """A region: a file of named shared objects that unrelated processes open.

    ``Region(path, size=1 MiB, *, create=True, remove_when_unused=False, capacity=None,
    recreate_stale_format=False)``
    opens the region file at ``path``, creating it (mode 0600, ``size`` bytes, room for
    ``capacity`` objects, 64 by default) if it does not exist and ``create`` is true.
    Exactly one of several processes opening the same path at once creates it.

    Its methods create an object under a name, or open the one that exists (its type and
    length must match, else ``TypeError``): ``Value``, ``Array``, ``Lock``, ``RLock``,
    ``Semaphore``, ``BoundedSemaphore``, ``Condition``, ``Event``, ``Barrier`` and
    ``Counter``, with ``multiprocessing``'s arguments after the name; ``Queue`` and
    ``JoinableQueue`` too (an existing queue keeps the ``maxsize`` it was made with). An initial value is
    applied only by the process that creates the object.

    With ``remove_when_unused=True`` (recorded in the file when it is created) the file is
    removed when the last process that has it open closes it or exits; otherwise it stays
    until removed (``os.unlink`` or ``shmstate rm``), keeping its objects' state. A
    process has one handle on a path: every ``Region`` of the path and every object made
    from one share it, and it closes when the last of them is collected, except on a
    file made with ``remove_when_unused=True``, which stays open until the process exits
    (an object of it may still be on its way to another process in a pickle, and the
    last close removes the file).

    :meth:`remove` and :meth:`remove_object` remove one object, freeing its entry and
    space, once no live process uses it (this one included: see :meth:`remove`).

    A file made by an older shmstate whose format this one does not read raises
    ``RegionError``; with ``recreate_stale_format=True`` it is replaced by a new, empty
    region instead (its objects are lost), once no live process uses it (else
    ``RegionError`` names the processes). See the Rust ``RegionOptions::recreate_stale_format``
    for how that is decided and its limits.

    Example::

        r = shmstate.Region("/dev/shm/jobs", 1 << 16)
        done = r.Value("done", "q")       # another program opens the same object
        done.add(1)
    """

    def __init__(self, path, size=DEFAULT_SIZE, *, create=True, remove_when_unused=False,
                 capacity=None, recreate_stale_format=False):
        path = os.fspath(path)
        # One handle per path in a process: a Region of a path another Region or object
        # of this process still uses shares that one's handle.
        self._core = keep_if_removed_when_unused(
            _shmstate.RegionCore(path, size, create, remove_when_unused, capacity,
                                 recreate_stale_format))

    @classmethod
    def _from_core(cls, core):
        self = cls.__new__(cls)
        self._core = core
        return self

    @property
    def path(self):
        """The region file's path."""
        return self._core.path

    @property
    def size(self):
        """The region's size in bytes."""
        return self._core.size

    @property
    def capacity(self):
        """How many objects the region holds at most."""
        return self._core.capacity

    def names(self):
        """The names of the objects in the region (an object with a lock also has a
        ``NAME/lock`` entry)."""
        return self._core.names()

    def attached_pids(self):
        """The pids of the live processes that have the region open."""
        return self._core.attached_pids()

    @staticmethod
    def remove_object(path, name):
        """Removes object ``name`` from the region file at ``path``, freeing its directory
        entry and its space for later objects, through a handle opened for the purpose.

        The object is removed only if no live handle of any process has asked for it: a
        handle counts as a user of every object it was ever handed (and of every name it
        asked for) until it is closed, since it may still hold references to it. In
        Python a process's handle on a path is the one every :class:`Region` of that
        path and every object made from one (or unpickled) shares: it closes when the
        last of them is collected, or when the process exits; a killed process does not
        count.

        An object made with a lock of its own (``lock=True``, the default of ``Value``
        and ``Array``) also has an ``RLock`` named ``NAME/lock``: if ``name`` exists and
        ``NAME/lock`` is an ``RLock``, that lock is removed first, under the same rule
        (so a process that uses the value with its lock makes the removal raise
        :class:`ObjectInUseError` with ``name`` set to ``"NAME/lock"``, nothing
        removed). If the lock was removed and ``name`` then cannot be, the lock stays
        removed: no process used it, and the next ``Value(name, ..., lock=True)`` makes
        a fresh one. Another process that opens ``name`` afterwards gets a new object,
        initialised afresh.

        Raises ``KeyError(name)`` if the region has no object ``name``;
        :class:`ObjectInUseError` if live processes use it (its ``pids`` lists them,
        this process's own pid included while it keeps a handle that used it);
        ``ValueError`` for an invalid name (empty, too long, or with a NUL);
        ``TimeoutError`` if another process kept the object busy (being created or
        removed) past the region's timeout; :class:`RegionError` if the region cannot
        be opened, is corrupt, or ever had a process without a slot in its full table of
        handles (nobody can tell what that one uses: no object of such a region is ever
        removed). Nothing is changed when it raises.

        Example (a cleanup program, after the workers that used ``batch-17`` exited)::

            shmstate.Region.remove_object("/dev/shm/jobs", "batch-17")
        """
        _shmstate.RegionCore.remove_object(os.fspath(path), name)

    def remove(self, name):
        """Removes object ``name`` from this region's file:
        ``Region.remove_object(self.path, name)`` (see there for the rule and the
        errors).

        The removal goes through a fresh handle, not through this ``Region``'s: this
        process's handle on the file (shared by every ``Region`` of that path in the
        process and by every object made from one) counts as a user of every object it
        ever asked for, because nothing can prove that no Python object still refers to
        it (the Rust ``Region::remove`` takes ``&mut self`` for that proof). So if this
        process used ``name`` through any of them, ``remove`` raises
        :class:`ObjectInUseError` with this process's own pid in ``pids`` until it drops
        them all and they are collected::

            r = shmstate.Region("/dev/shm/jobs", 1 << 16)
            v = r.Value("batch-17", "q", lock=False)
            v.add(1)
            try:
                r.remove("batch-17")
            except shmstate.ObjectInUseError as e:
                assert e.pids == [os.getpid()]      # our own handle uses it
            del r, v                                # the handle closes with the last one
            shmstate.Region.remove_object("/dev/shm/jobs", "batch-17")   # removed

        A ``Region`` that used other objects but not ``name`` removes it in place:
        ``r.remove("old-batch")``.

        An anonymous region (``path`` is ``None``, shared with fork children only) raises
        ``ValueError``: there is no file to open a fresh handle on, and its one handle is
        shared by this process and its children, any of which may still hold a
        reference to the object.
        """
        self._core.remove(name)

    def Value(self, name, typecode_or_type, *args, lock=True):
        """Value(name, typecode_or_type, *args, lock=True): see :func:`shmstate.Value`.

        ``lock=True`` guards the value with an ``RLock`` named ``NAME/lock``; ``lock=`` an
        existing :class:`shmstate.Lock` or :class:`shmstate.RLock` guards it with that
        one (another process that opens the value by name passes its own ``lock=``)."""
        code = typecode_of(typecode_or_type)
        if len(args) > 1:
            raise TypeError("Value() takes at most one initial value")
        init = args[0] if args else None
        return self._core.value(name, code, init, _lock_flag(lock))

    def Array(self, name, typecode_or_type, size_or_initializer, *, lock=True):
        """Array(name, typecode_or_type, size_or_initializer, lock=True): see
        :func:`shmstate.Array` (``lock=`` as :meth:`Value`'s)."""
        code = typecode_of(typecode_or_type)
        if isinstance(size_or_initializer, int):
            n, init = size_or_initializer, None
        else:
            init = list(size_or_initializer)
            n = len(init)
        if n < 1:
            raise ValueError("an Array has at least one element")
        return self._core.array(name, code, n, init, _lock_flag(lock))

    def Lock(self, name):
        """A :class:`shmstate.Lock` named ``name``."""
        return self._core.lock(name)

    def RLock(self, name):
        """A :class:`shmstate.RLock` named ``name``."""
        return self._core.rlock(name)

    def Semaphore(self, name, value=1):
        """A :class:`shmstate.Semaphore` named ``name`` with ``value`` permits."""
        return self._core.semaphore(name, _permits(value), False)

    def BoundedSemaphore(self, name, value=1):
        """A :class:`shmstate.BoundedSemaphore` named ``name`` with ``value`` permits."""
        return self._core.semaphore(name, _permits(value), True)

    def Event(self, name):
        """A :class:`shmstate.Event` named ``name``."""
        return self._core.event(name)

    def Condition(self, name, lock=None):
        """A :class:`shmstate.Condition` named ``name`` (on ``lock``, or on a new
        ``RLock`` named ``NAME/lock``)."""
        from ._sync import Condition

        return Condition._in_region(self, name, lock)

    def Barrier(self, name, parties, action=None, timeout=None):
        """A :class:`shmstate.Barrier` named ``name`` for ``parties`` parties."""
        from ._sync import Barrier

        return Barrier._in_region(self, name, parties, action, timeout)

    def Counter(self, name, stripes=None):
        """A striped :class:`shmstate.Counter` named ``name`` (``stripes`` cache lines,
        one per CPU by default, at most 64)."""
        if stripes is None:
            stripes = min(max(os.cpu_count() or 1, 1), 64)
        return self._core.counter(name, stripes)

    def Queue(self, name, maxsize=0, *, capacity=None):
        """A :class:`shmstate.Queue` named ``name`` (``capacity`` bytes of ring, 1 MiB by
        default; an existing queue keeps the ``maxsize`` it was created with)."""
        return self._core.queue(name, maxsize, _capacity(capacity), False)

    def JoinableQueue(self, name, maxsize=0, *, capacity=None):
        """A :class:`shmstate.JoinableQueue` named ``name`` (as :meth:`Queue`)."""
        return self._core.queue(name, maxsize, _capacity(capacity), True)

    def Dict(self, name, *, capacity=None, max_key_size=None, max_value_size=None,
             timeout=None):
        """A :class:`shmstate.Dict` named ``name``: created with ``capacity``,
        ``max_key_size`` and ``max_value_size`` (1024, 64 and 512 by default) if there is
        none; with none of them given, the existing dict whatever its sizes."""
        return self._core.dict(name, capacity, max_key_size, max_value_size, timeout)

    def __repr__(self):
        return f"<shmstate.Region {self.path!r} size={self.size}>"


def _lock_flag(lock):
    """multiprocessing's ``lock=``: ``True`` or ``None`` (a new ``RLock``), ``False``
    (none), or an existing shmstate ``Lock`` or ``RLock`` (the native constructor refuses
    any other object with ``TypeError``)."""
    return True if lock is None else lock


def _capacity(capacity):
    from ._queue import DEFAULT_CAPACITY

    if capacity is None:
        return DEFAULT_CAPACITY
    if capacity < 1:
        raise ValueError("capacity must be positive")
    return capacity


def _permits(value):
    if value < 0:
        raise ValueError("semaphore initial value must be >= 0")
    return value


# ---------------------------------------------------------------------------------
# The default region of this process.

_lock = threading.Lock()
_current = None  # the default Region objects are placed in
_serial = 0
_swept = False


def _dir():
    d = os.environ.get("SHMSTATE_PY_DIR")
    if d:
        return d
    return "/dev/shm" if os.path.isdir("/dev/shm") else "/tmp"


def _sweep(directory):
    """Removes default-region files that no live process has open (left by a killed
    program)."""
    for path in glob.glob(os.path.join(directory, _PREFIX + "*")):
        if os.path.basename(path).startswith(f"{_PREFIX}{os.getpid()}-"):
            continue
        try:
            _shmstate.RegionCore.remove_unused(path)
        except Exception:  # noqa: BLE001 - best effort: another user's file, a race
            pass


def _new_region(size, capacity=DEFAULT_CAPACITY):
    global _swept
    directory = _dir()
    if not _swept:
        _swept = True
        _sweep(directory)
    path = os.path.join(directory, f"{_PREFIX}{os.getpid()}-{secrets.token_hex(6)}")
    # Kept open until the process exits, as every file made with remove_when_unused
    # (`_reduce.keep_if_removed_when_unused`): an object whose last reference is gone may
    # still travel in a pickle (a queue item) that another process opens later, and the
    # last close would remove the file.
    return Region(path, size, remove_when_unused=True, capacity=capacity)


def place(make, nbytes=0):
    """Calls ``make(region, name)`` with the default region and a fresh name; starts a new
    default region when the current one is full, and gives a large object a region of
    its own."""
    global _current, _serial
    with _lock:
        _serial += 1
        name = f"o{_serial}"
        if nbytes > DEFAULT_SIZE // 4:
            # room for the object, its lock and the header
            return make(_new_region(nbytes + (1 << 16), capacity=8), name)
        if _current is None:
            _current = _new_region(DEFAULT_SIZE)
        try:
            return make(_current, name)
        except _shmstate.RegionFullError:
            _current = _new_region(DEFAULT_SIZE)
            return make(_current, name)


def _after_fork_in_child():
    # A forked child names its own objects: it starts its own default region (the
    # parent's stays mapped for the objects it inherited).
    global _current, _serial, _lock
    _lock = threading.Lock()
    _current = None
    _serial = 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


#: The bytes of one element of each typecode (as the crate stores it).
_ITEMSIZE = {"b": 1, "B": 1, "h": 2, "H": 2, "i": 4, "I": 4, "l": 8, "L": 8, "q": 8, "Q": 8,
             "f": 4, "d": 8, "?": 1, "c": 1, "u": 4}


def new_object(kind, *args, **kwargs):
    """``shmstate.<kind>(*args, **kwargs)``: the object, placed in the default region (the
    native classes' constructors call this)."""
    nbytes = 0
    if kind == "Array" and len(args) >= 2:
        size = args[1]
        if not isinstance(size, int):
            size = list(size)
            args = (args[0], size) + tuple(args[2:])
            size = len(size)
        try:
            itemsize = _ITEMSIZE.get(typecode_of(args[0]), 8)
        except (TypeError, ValueError):
            itemsize = 8  # the constructor reports the bad typecode
        nbytes = itemsize * size
    elif kind in ("Queue", "JoinableQueue"):
        from ._queue import DEFAULT_CAPACITY

        cap = kwargs.get("capacity") or DEFAULT_CAPACITY
        # the ring (rounded up to a power of two) and its header
        nbytes = (1 << max(cap - 1, 63).bit_length()) + 4096
    elif kind == "Counter":
        nbytes = 64 * (kwargs.get("stripes") or (args[0] if args else None) or 64)
    elif kind == "Dict":
        sizes = ("capacity", "max_key_size", "max_value_size")
        nbytes = _shmstate.Dict._nbytes(**{k: kwargs[k] for k in sizes if kwargs.get(k)})
    method = getattr(Region, kind)
    return place(lambda region, name: method(region, name, *args, **kwargs), nbytes)
