"""``List``: a ``list`` shared between processes (``Manager().list()`` without the server).

The items live in a :class:`shmstate.Dict` under the keys ``0 .. n-1``, the length under
the key ``"n"``; an :class:`shmstate.RLock` guards every operation, so each method is
atomic across processes (a method's new values are checked against ``max_value_size``
before anything is changed, so a failed call leaves the list as it was). A process
killed inside a method leaves the lock to the next caller, who gets
:class:`shmstate.OwnerDiedError` (as does every later call) until one calls
:meth:`List.mark_consistent`: the list may then be half-way through the killed method
(an ``insert`` or ``pop`` that was moving items shows one of them twice).
"""

import operator

from ._shmstate import Dict, DictFullError, OwnerDiedError, RLock

__all__ = ["List", "ListFullError"]

_LEN = "n"  # the key of the length
_CHECK = "x"  # the key a new value is tried at before a multi-step change


class ListFullError(DictFullError):
    """A :class:`List` has no room for the items a call would add (nothing was changed)."""


class List:
    """A ``list`` shared between processes: ``Manager().list()`` without the server.

    ``List(iterable=(), *, capacity=1024, max_value_size=512)`` holds at most
    ``capacity`` items (:class:`ListFullError` beyond it), each any picklable object of
    up to ``max_value_size`` bytes encoded (``ValueError`` beyond it). Every method is
    atomic across processes; iteration, ``copy()`` and ``repr`` work on a snapshot.
    It pickles as a reference, so it can be passed to ``multiprocessing.Process`` under
    every start method.

    Example::

        l = shmstate.List(range(3))
        l.append(3)          # seen by every process that has l
        l.reverse()
        assert l == [3, 2, 1, 0]
    """

    def __init__(self, iterable=(), *, capacity=1024, max_value_size=512):
        if capacity < 1:
            raise ValueError("capacity must be positive")
        items = list(iterable)
        self._capacity = capacity
        self._room(len(items))  # before anything is made
        # the items, the length, and the slot a value is tried at
        self._d = Dict(capacity=capacity + 2, max_key_size=16, max_value_size=max_value_size)
        self._lock = RLock()
        self._d[_LEN] = 0
        if items:
            self.extend(items)

    @classmethod
    def _rebuild(cls, d, lock, capacity):
        self = cls.__new__(cls)
        self._d, self._lock, self._capacity = d, lock, capacity
        return self

    def __reduce__(self):
        return (List._rebuild, (self._d, self._lock, self._capacity))

    @property
    def capacity(self):
        """How many items the list holds at most."""
        return self._capacity

    def mark_consistent(self):
        """After :class:`OwnerDiedError` (a process was killed inside a method): drops the
        slots the killed call left beyond the length, and lets later calls proceed.
        Returns whether the list needed it. The items are as the killed call left them.

        Example::

            try:
                l.append(x)
            except shmstate.OwnerDiedError:
                l.mark_consistent()
                l.append(x)
        """
        lock = self._lock
        died = False
        try:
            lock.acquire()
        except OwnerDiedError:
            died = True  # the caller holds the lock
        try:
            d = self._d
            n = d.get(_LEN)
            if not isinstance(n, int) or not 0 <= n <= self._capacity:
                n = 0
                while n < self._capacity and n in d:
                    n += 1
            for k in d.keys():
                if k != _LEN and not (isinstance(k, int) and 0 <= k < n):
                    d.pop(k, None)
            d[_LEN] = n
            if died:
                lock.mark_consistent()
            return died
        finally:
            lock.release()

    # -- helpers (called with the lock held) ------------------------------------------

    def _len(self):
        return self._d[_LEN]

    def _snapshot(self):
        c = self._d.copy()
        return [c[j] for j in range(c[_LEN])]

    def _room(self, new_len):
        if new_len > self._capacity:
            raise ListFullError(
                f"a list of {new_len} items; this shmstate.List holds up to "
                f"{self._capacity} (capacity)")

    def _check(self, values):
        """Raises what storing each of ``values`` would raise, changing no item."""
        d = self._d
        try:
            for v in values:
                d[_CHECK] = v
        finally:
            d.pop(_CHECK, None)

    def _assign(self, new, fresh=()):
        """Makes the items ``new``; ``fresh`` are the values not already in the list."""
        self._room(len(new))
        self._check(fresh)
        d = self._d
        n = self._len()
        for j, v in enumerate(new):
            d[j] = v
        for j in range(len(new), n):
            del d[j]
        d[_LEN] = len(new)

    def _index(self, i, n):
        i = operator.index(i)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("list index out of range")
        return i

    # -- the list protocol -------------------------------------------------------------

    def __len__(self):
        return self._len()

    def __getitem__(self, i):
        with self._lock:
            if isinstance(i, slice):
                return self._snapshot()[i]
            return self._d[self._index(i, self._len())]

    def __setitem__(self, i, value):
        with self._lock:
            if isinstance(i, slice):
                value = list(value)
                new = self._snapshot()
                new[i] = value  # raises as a list does (an extended slice's length)
                self._assign(new, value)
            else:
                self._d[self._index(i, self._len())] = value

    def __delitem__(self, i):
        with self._lock:
            if isinstance(i, slice):
                new = self._snapshot()
                del new[i]
                self._assign(new)
            else:
                self.pop(i)

    def __iter__(self):
        return iter(self.copy())

    def __reversed__(self):
        return reversed(self.copy())

    def __contains__(self, value):
        return value in self.copy()

    def __eq__(self, other):
        if isinstance(other, List):
            other = other.copy()
        if not isinstance(other, list):
            return NotImplemented
        return self.copy() == other

    def __ne__(self, other):
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    __hash__ = None

    def __repr__(self):
        return repr(self.copy())

    def __add__(self, other):
        if isinstance(other, List):
            other = other.copy()
        if not isinstance(other, list):
            return NotImplemented
        return self.copy() + other

    def __radd__(self, other):
        if not isinstance(other, list):
            return NotImplemented
        return other + self.copy()

    def __iadd__(self, other):
        self.extend(other)
        return self

    def copy(self):
        """A plain ``list`` of the items (a snapshot)."""
        with self._lock:
            return self._snapshot()

    def append(self, value):
        """Appends ``value``."""
        with self._lock:
            n = self._len()
            self._room(n + 1)
            self._d[n] = value
            self._d[_LEN] = n + 1

    def extend(self, iterable):
        """Appends the items of ``iterable`` (all or, on an error, none of them)."""
        items = iterable.copy() if isinstance(iterable, List) else list(iterable)
        with self._lock:
            n = self._len()
            self._room(n + len(items))
            d = self._d
            written = 0
            try:
                for j, v in enumerate(items):
                    d[n + j] = v
                    written += 1
            except BaseException:
                for j in range(written):
                    d.pop(n + j, None)
                raise
            d[_LEN] = n + len(items)

    def insert(self, i, value):
        """Inserts ``value`` before index ``i`` (clamped, as ``list.insert``)."""
        i = operator.index(i)
        with self._lock:
            n = self._len()
            self._room(n + 1)
            if i < 0:
                i = max(i + n, 0)
            i = min(i, n)
            d = self._d
            d[n] = value  # the new slot: checks the value before anything moves
            for j in range(n, i, -1):
                d[j] = d[j - 1]
            d[i] = value
            d[_LEN] = n + 1

    def pop(self, i=-1):
        """Removes and returns the item at ``i`` (the last by default)."""
        with self._lock:
            n = self._len()
            if n == 0:
                raise IndexError("pop from empty list")
            i = self._index(i, n)
            d = self._d
            value = d[i]
            for j in range(i, n - 1):
                d[j] = d[j + 1]
            del d[n - 1]
            d[_LEN] = n - 1
            return value

    def remove(self, value):
        """Removes the first item equal to ``value`` (``ValueError`` if there is none)."""
        with self._lock:
            items = self._snapshot()
            try:
                i = items.index(value)
            except ValueError:
                raise ValueError("List.remove(x): x not in list") from None
            self.pop(i)

    def index(self, value, start=0, stop=None):
        """The index of the first item equal to ``value`` in ``[start:stop]``."""
        items = self.copy()
        return items.index(value, start, len(items) if stop is None else stop)

    def count(self, value):
        """How many items equal ``value``."""
        return self.copy().count(value)

    def reverse(self):
        """Reverses the list in place."""
        with self._lock:
            self._assign(self._snapshot()[::-1])

    def sort(self, *, key=None, reverse=False):
        """Sorts the list in place, as ``list.sort`` (unchanged if a comparison raises)."""
        with self._lock:
            items = self._snapshot()
            items.sort(key=key, reverse=reverse)
            self._assign(items)

    def clear(self):
        """Removes every item."""
        with self._lock:
            self._assign([])
