"""Pickling: an object travels as ``(kind, region path, name, shape)`` and is reopened.

The receiving process looks the object up by name in the region file, opened once for
as long as anything of it lives (the native module keeps one handle per path while a
``Region`` or object of it lives, so many objects of one region share one mapping and one
attach-table entry, and the handle closes once none is left, so that its objects can
then be removed; a handle on a file made with ``remove_when_unused`` stays open until
exit, see ``_kept``); the region's type records refuse a name reopened as another type.

A ``Value``'s or ``Array``'s shape carries its lock as the lock object itself (``False``
for none), which pickles as a reference of its own: objects that share a lock and travel
in one pickle share one lock object in the receiver, and every receiver takes the same
shared lock.
"""

import threading

from . import _shmstate

#: ctypes type codes -> array-module typecodes understood by the native module.
_ALIASES = {"l": "l", "L": "L", "q": "q", "Q": "Q"}


def typecode_of(typecode_or_type):
    """The typecode of a typecode string or a ctypes type (``c_int`` -> ``'i'``)."""
    if isinstance(typecode_or_type, str):
        code = typecode_or_type
    else:
        code = getattr(typecode_or_type, "_type_", None)
        if not isinstance(code, str):
            raise TypeError(f"not a typecode or ctypes simple type: {typecode_or_type!r}")
    if len(code) != 1:
        raise ValueError(f"bad typecode {code!r}")
    return code


#: Handles on files made with ``remove_when_unused``, by path, kept open until the
#: interpreter exits (and tears this module down, closing them): the last close of such a
#: file removes it, and an object of it may still be on its way to another process in a
#: pickle (a queue item) after its last reference here is gone. This process never
#: removes objects from such a file; other processes do.
_kept = {}
_kept_lock = threading.Lock()


def keep_if_removed_when_unused(core):
    """Keeps ``core`` open until exit if its file is removed when unused; returns it."""
    if core.path is not None and core.remove_when_unused:
        with _kept_lock:
            _kept.setdefault(core.path, core)
    return core


def open_region(path):
    """The region file at ``path``: this process's open handle on it if anything uses
    one, else opened now."""
    return keep_if_removed_when_unused(_shmstate.RegionCore.open_shared(path))


def rebuild(kind, path, name, *shape):
    """Reopens object ``name`` of kind ``kind`` in the region file at ``path``."""
    core = open_region(path)
    if kind == "Value":
        code, lock = shape
        return core.value(name, code, None, lock)
    if kind == "Array":
        code, n, lock = shape
        return core.array(name, code, n, None, lock)
    if kind == "Lock":
        return core.lock(name)
    if kind == "RLock":
        return core.rlock(name)
    if kind == "Semaphore":
        return core.semaphore(name, 0, False)
    if kind == "BoundedSemaphore":
        return core.semaphore(name, 0, True)
    if kind == "Event":
        return core.event(name)
    if kind == "Counter":
        (stripes,) = shape
        return core.counter(name, stripes)
    if kind in ("Queue", "JoinableQueue"):
        maxsize, capacity = shape
        return core.queue(name, maxsize, capacity, kind == "JoinableQueue")
    if kind == "Dict":
        (timeout,) = shape
        return core.dict(name, None, None, None, timeout)
    raise ValueError(f"unknown shmstate object kind {kind!r}")
