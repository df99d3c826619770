"""Character typecodes ('c', 'u') and ``lock=`` an existing lock, for Value and Array:
multiprocessing's behaviours (ported from CPython's _test_multiprocessing.py _TestValue,
_TestArray and _TestSharedCTypes), checked side by side with ctypes where it defines
them, across real processes under every start method."""

import ctypes
import mmap
import multiprocessing
import os
import pickle
import struct
import threading
from multiprocessing import sharedctypes

import pytest

import shmstate
from shmstate import Array, Value

from helpers import run_all

# ---------------------------------------------------------------------------------
# Values: CPython's _TestValue with 'c' and 'u' added.

CODES_VALUES = [
    ("i", 4343, 24234),
    ("d", 3.625, -4.25),
    ("h", -232, 234),
    ("q", 2 ** 33, 2 ** 34),
    ("c", b"x", b"y"),
    ("u", "x", "\N{GREEK SMALL LETTER ALPHA}"),
]


def _set_to_third(values):
    for sv, cv in zip(values, CODES_VALUES):
        sv.value = cv[2]


@pytest.mark.parametrize("lock", [True, False], ids=["value", "rawvalue"])
def test_value_chars_cross_processes(ctx, lock):
    values = [Value(code, value, lock=lock) for code, value, _ in CODES_VALUES]
    for sv, cv in zip(values, CODES_VALUES):
        assert sv.value == cv[1]
    assert run_all(ctx, _set_to_third, [(values,)]) == [0]
    for sv, cv in zip(values, CODES_VALUES):
        assert sv.value == cv[2]


def _outcome(f):
    try:
        return ("ok", f())
    except Exception as e:  # noqa: BLE001 - the exception's type is what is compared
        return ("raise", type(e))


def _set_value(obj, x):
    def f():
        obj.value = x
        return obj.value

    return f


CHAR_INPUTS = [b"a", b"\x00", 65, 0, 255, bytearray(b"z"), b"", b"ab", "a", 256, -1, 1.5, [1]]
WCHAR_INPUTS = ["a", "\x00", "\N{SNOWMAN}", "\U0001f600", "\ud800", "", "ab", b"a", 65, ["a"]]


@pytest.mark.parametrize(
    "code,ctype,inputs", [("c", ctypes.c_char, CHAR_INPUTS), ("u", ctypes.c_wchar, WCHAR_INPUTS)]
)
def test_char_value_converts_as_ctypes(code, ctype, inputs):
    assert Value(code).value == ctype().value
    assert Value(ctype).typecode == code
    v = Value(code)
    for x in inputs:
        assert _outcome(lambda: Value(code, x).value) == _outcome(lambda: ctype(x).value), x
        assert _outcome(_set_value(v, x)) == _outcome(_set_value(ctype(), x)), x


def test_char_value_has_swap_and_compare_exchange_but_no_arithmetic():
    c = Value("c", b"a")
    assert c.swap(b"b") == b"a"
    assert c.compare_exchange(b"b", b"c") == (True, b"b")
    assert c.compare_exchange(b"b", b"d") == (False, b"c")
    u = Value("u", "a")
    assert u.swap("\N{SNOWMAN}") == "a"
    assert u.compare_exchange("\N{SNOWMAN}", "z") == (True, "\N{SNOWMAN}")
    assert u.value == "z"
    for v in (c, u):
        for op in (v.add, v.sub, v.fetch_add, v.fetch_sub, v.max, v.min):
            with pytest.raises(TypeError):
                op(1)
    assert c.value == b"c" and u.value == "z"
    assert repr(c).endswith("'c' b'c'>") and repr(u).endswith("'u' 'z'>")


# ---------------------------------------------------------------------------------
# Arrays of characters: the same operations on ours and on ctypes' / multiprocessing's.


def _char_ops(code):
    """(label, operation on an array of 5 characters) pairs."""
    one, other = (b"j", b"k") if code == "c" else ("j", "k")
    text = b"hello" if code == "c" else "hello"
    short = text[:2]
    nul = b"\x00" if code == "c" else "\x00"

    def setitem(k, x):
        def op(a):
            a[k] = x
            return a[:]

        return op

    def setattr_(name, x):
        def op(a):
            setattr(a, name, x)
            return a[:]

        return op

    return [
        ("len", len),
        ("a[0]", lambda a: a[0]),
        ("a[-1]", lambda a: a[-1]),
        ("a[5]", lambda a: a[5]),
        ("a[:]", lambda a: a[:]),
        ("a[1:3]", lambda a: a[1:3]),
        ("a[::-1]", lambda a: a[::-1]),
        ("a[::2]", lambda a: a[::2]),
        ("list", list),
        ("value", lambda a: a.value),
        ("a[0]=one", setitem(0, one)),
        ("a[-1]=other", setitem(-1, other)),
        ("a[0]=65", setitem(0, 65)),
        ("a[0]='x'", setitem(0, "x")),
        ("a[0]=b'x'", setitem(0, b"x")),
        ("a[0]=two", setitem(0, one + other)),
        ("a[0:2]=short", setitem(slice(0, 2), short)),
        ("a[0:2]=[one,other]", setitem(slice(0, 2), [one, other])),
        ("a[0:2]=[67,68]", setitem(slice(0, 2), [67, 68])),
        ("a[0:2]=bytearray", setitem(slice(0, 2), bytearray(b"zz"))),
        ("a[0:2]=text", setitem(slice(0, 2), text)),
        ("a[::2]=3", setitem(slice(None, None, 2), text[:3])),
        ("value=short", setattr_("value", short)),
        ("value=text", setattr_("value", text)),
        ("value=long", setattr_("value", text + text[:1])),
        ("value=nul", setattr_("value", text[:1] + nul + text[1:2])),
        ("value=other type", setattr_("value", "hi" if code == "c" else b"hi")),
        ("value=bytearray", setattr_("value", bytearray(b"hi"))),
        ("value=empty", setattr_("value", text[:0])),
    ]


@pytest.mark.parametrize("code", ["c", "u"])
def test_char_array_indexes_slices_and_values_as_ctypes(code):
    text = b"hello" if code == "c" else "hello"
    for label, op in _char_ops(code):
        ours = Array(code, text)
        theirs = sharedctypes.RawArray(code, text)
        assert _outcome(lambda: op(ours)) == _outcome(lambda: op(theirs)), label
        assert ours[:] == theirs[:], label


@pytest.mark.parametrize("code", ["c", "u"])
def test_char_array_from_size_is_nul_filled(code):
    a = Array(code, 10)
    assert a[:] == sharedctypes.RawArray(code, 10)[:]
    assert a.value == (b"" if code == "c" else "")
    assert Array(ctypes.c_char, 3).typecode == "c"
    assert Array(ctypes.c_wchar, 3).typecode == "u"


def test_char_array_raw_as_ctypes():
    def setraw(x):
        def op(a):
            a.raw = x
            return a.raw

        return op

    ops = [
        ("raw", lambda a: a.raw),
        ("raw=bytes", setraw(b"xy")),
        ("raw=full", setraw(b"abcde")),
        ("raw=long", setraw(b"abcdef")),
        ("raw=bytearray", setraw(bytearray(b"qq"))),
        ("raw=memoryview", setraw(memoryview(b"mm"))),
        ("raw=nul", setraw(b"\x00\x00\x00")),
        ("raw=str", setraw("ab")),
        ("raw=list", setraw([1, 2])),
    ]
    for label, op in ops:
        ours = Array("c", b"hello")
        theirs = sharedctypes.RawArray("c", b"hello")
        assert _outcome(lambda: op(ours)) == _outcome(lambda: op(theirs)), label
        assert ours.raw == theirs.raw, label


def test_value_and_raw_belong_to_character_arrays():
    with pytest.raises(AttributeError):
        Array("i", 3).value
    with pytest.raises(AttributeError):
        Array("i", 3).value = b"x"
    with pytest.raises(AttributeError):
        Array("u", 3).raw
    with pytest.raises(AttributeError):
        Array("u", 3).raw = b"x"
    for code in "cu":
        a = Array(code, 2)
        with pytest.raises(TypeError):
            a.add(0, 1)
        with pytest.raises(TypeError):
            a.fetch_add(0, 1)


def _double_strings(string, wide):
    # _TestSharedCTypes._double: string.value *= 2
    string.value *= 2
    wide.value *= 2
    string[0] = b"H"


@pytest.mark.parametrize("lock", [True, False], ids=["synchronized", "raw"])
def test_string_value_doubles_in_child(ctx, lock):
    # _TestSharedCTypes.test_sharedctypes / test_synchronize, for the string part.
    string = Array("c", 20, lock=lock)
    string.value = b"hello"
    wide = Array("u", 12, lock=lock)
    wide.value = "h\N{SNOWMAN}llo"
    assert run_all(ctx, _double_strings, [(string, wide)]) == [0]
    assert string.value == b"Hellohello"
    assert string.raw == b"Hellohello" + b"\x00" * 10
    assert wide.value == "h\N{SNOWMAN}lloh\N{SNOWMAN}llo"
    assert list(wide) == list("h\N{SNOWMAN}lloh\N{SNOWMAN}llo") + ["\x00"] * 2


def _object_bytes(region_path, pattern):
    """The offset of the one occurrence of ``pattern`` in the region file."""
    with open(region_path, "rb") as f:
        data = f.read()
    at = data.find(pattern)
    assert at >= 0 and data.find(pattern, at + 1) < 0
    return at


def test_wide_chars_a_peer_wrote_read_as_ctypes_reads_them(tmp_path):
    # Whatever a peer writes into a 'u' array, reading it raises ValueError (a number past
    # U+10FFFF) or returns the character (a lone surrogate), never anything worse.
    r = shmstate.Region(tmp_path / "r", 1 << 16)
    marker = "\U0001f600\U0001f601\U0001f602\U0001f603"
    a = r.Array("wide", "u", marker)
    b = r.Array("bytes", "c", b"\xf0\xf1\xf2\xf3\xf4\xf5")
    at = _object_bytes(r.path, marker.encode("utf-32-le"))
    bat = _object_bytes(r.path, b"\xf0\xf1\xf2\xf3\xf4\xf5")
    with open(r.path, "r+b") as f:
        m = mmap.mmap(f.fileno(), 0)
        m[at : at + 16] = struct.pack("<4I", 0x110000, 0xD800, 0xFFFFFFFF, 0x41)
        m[bat : bat + 6] = b"\x00\xff\x00abc"
        m.close()
    theirs = (ctypes.c_wchar * 4)()
    ctypes.memmove(theirs, struct.pack("<4I", 0x110000, 0xD800, 0xFFFFFFFF, 0x41), 16)
    for label, op in [
        ("a[0]", lambda x: x[0]),
        ("a[1]", lambda x: x[1]),
        ("a[2]", lambda x: x[2]),
        ("a[3]", lambda x: x[3]),
        ("a[1:]", lambda x: x[1:2] + x[3:]),
        ("a[:]", lambda x: x[:]),
        ("value", lambda x: x.value),
    ]:
        ours = _outcome(lambda: op(a))
        assert ours == _outcome(lambda: op(theirs)), label
    assert a[1:2] + a[3:] == "\ud800A"
    assert b.raw == b"\x00\xff\x00abc" and b.value == b"" and b[1] == b"\xff"


# ---------------------------------------------------------------------------------
# lock= an existing lock.


def _no_lock(obj):
    try:
        obj.get_lock()
    except AttributeError:
        return True
    return False


def test_getobj_getlock():
    # CPython's _TestValue.test_getobj_getlock and _TestArray.test_getobj_getlock_obj.
    for make in (lambda **kw: Value("i", 5, **kw), lambda **kw: Array("i", range(10), **kw)):
        val1 = make()
        assert isinstance(val1.get_lock(), shmstate.RLock)
        val1.get_obj()
        val2 = make(lock=None)
        assert isinstance(val2.get_lock(), shmstate.RLock)
        assert val2.get_lock() is not val1.get_lock()
        for lock in (shmstate.Lock(), shmstate.RLock()):
            val3 = make(lock=lock)
            assert val3.get_lock() is lock
            assert not hasattr(val3.get_obj(), "get_lock") or _no_lock(val3.get_obj())
        val4 = make(lock=False)
        with pytest.raises(AttributeError):
            val4.get_lock()
        with pytest.raises(AttributeError):
            make(lock="navalue")


@pytest.mark.parametrize(
    "other", [multiprocessing.Lock, multiprocessing.RLock, threading.Lock, threading.RLock]
)
def test_a_lock_of_another_kind_is_refused(other):
    with pytest.raises(TypeError, match="shmstate.Lock"):
        Value("i", 0, lock=other())
    with pytest.raises(TypeError, match="shmstate.Lock"):
        Array("c", 4, lock=other())


def test_region_objects_take_a_given_lock(tmp_path):
    r = shmstate.Region(tmp_path / "r", 1 << 16)
    lock = r.Lock("shared")
    v = r.Value("v", "q", 1, lock=lock)
    a = r.Array("a", "c", b"abc", lock=lock)
    assert v.get_lock() is lock and a.get_lock() is lock
    assert "v/lock" not in r.names() and "a/lock" not in r.names()
    assert "v" in r.names() and "a" in r.names()
    with pytest.raises(TypeError):
        r.Value("w", "q", lock=threading.Lock())
    assert r.Value("own", "q").get_lock() is not None and "own/lock" in r.names()


def test_a_plain_lock_held_by_the_caller_is_not_taken_again():
    # multiprocessing's accessors would take a multiprocessing.Lock again and hang.
    lock = shmstate.Lock()
    v = Value("q", 0, lock=lock)
    a = Array("c", b"ab", lock=lock)
    w = Array("u", "ab", lock=lock)
    with v.get_lock():
        v.value += 1
        a[:] = b"xy"
        a.value = b"z"
        a.raw = a.raw[::-1]
        w.value = "q"
        assert lock._is_mine()
    assert not lock.locked()
    assert v.value == 1 and a.raw == b"\x00z" and w[:] == "q\x00"
    # And the accessors take it (and release it) when the caller does not hold it.
    v.value = 2
    assert a[:] == b"\x00z" and not lock.locked()


def _die_holding(lock):
    lock.acquire()
    os._exit(0)


@pytest.mark.parametrize("kind", ["Lock", "RLock"])
def test_accessors_take_the_given_lock(ctx, kind):
    # A holder that died: the accessors that take the lock report it, so they take this
    # one (and not a lock of their own).
    lock = getattr(shmstate, kind)()
    v = Value("q", 0, lock=lock)
    a = Array("c", b"abc", lock=lock)
    assert run_all(ctx, _die_holding, [(lock,)]) == [0]
    for access in (
        lambda: setattr(v, "value", 1),
        lambda: a[:],
        lambda: a.value,
        lambda: a.raw,
        lambda: a.__setitem__(0, b"x"),
    ):
        with pytest.raises(shmstate.OwnerDiedError):
            access()
    assert not lock.locked()
    with pytest.raises(shmstate.OwnerDiedError):
        lock.acquire()
    assert lock.mark_consistent()
    lock.release()
    v.value = 7
    a[0] = b"x"
    assert v.value == 7 and a[:] == b"xbc"
    # get_obj() has no lock: it does not look at the lock's state.
    assert a.get_obj()[:] == b"xbc"


def test_pickle_keeps_the_lock_shared():
    for kind in (shmstate.Lock, shmstate.RLock):
        lock = kind()
        v = Value("i", 1, lock=lock)
        a = Array("u", "ab", lock=lock)
        v2, a2, lock2 = pickle.loads(pickle.dumps((v, a, lock)))
        assert v2.get_lock() is lock2 and a2.get_lock() is lock2
        assert type(lock2) is kind
        with lock:
            # the same shared lock: held (by this thread) through the other object too
            assert lock2._is_mine() and lock2.locked()
        assert not lock2.locked()
        v2.value = 5
        a2[:] = "yz"
        assert v.value == 5 and a[:] == "yz"
        # an own lock still travels as the object's own RLock
        own = Value("i", 0)
        own2 = pickle.loads(pickle.dumps(own))
        with own.get_lock():
            assert own2.get_lock()._is_mine()
        assert pickle.loads(pickle.dumps(Value("i", lock=False))).get_obj().value == 0


def _probe(v, a, lock, n):
    # In the child: get_lock() is the lock passed alongside, and it is the parent's lock.
    assert v.get_lock() is lock and a.get_lock() is lock
    for _ in range(n):
        with lock:
            v.value += 1  # a plain Lock: the setter does not take it again
            a[0] = a[0] + 1
            a[1] = a[1] - 1
            assert a[0] + a[1] == 0


@pytest.mark.parametrize("kind", ["Lock", "RLock"])
def test_values_sharing_one_lock_across_processes(ctx, kind):
    lock = getattr(shmstate, kind)()
    v = Value("q", 0, lock=lock)
    a = Array("q", 2, lock=lock)
    n = 300
    assert run_all(ctx, _probe, [(v, a, lock, n)] * 3) == [0] * 3
    assert v.value == 3 * n
    assert a[:] == [3 * n, -3 * n]


def _try_acquire_through(v, a):
    # The parent holds the lock: the child's get_lock() is that same lock.
    if v.get_lock().acquire(False) or a.get_lock().acquire(False):
        os._exit(3)
    if v.get_lock() is not a.get_lock():
        os._exit(4)


@pytest.mark.parametrize("kind", ["Lock", "RLock"])
def test_childs_get_lock_is_the_parents_lock(ctx, kind):
    lock = getattr(shmstate, kind)()
    v = Value("c", b"x", lock=lock)
    a = Array("u", "hi", lock=lock)
    with lock:
        assert run_all(ctx, _try_acquire_through, [(v, a)]) == [0]
    assert not lock.locked()


def test_a_large_character_array_takes_its_bytes_in_the_region():
    # An array too large for the shared default region gets a region of its own, sized
    # by its element size (1 byte for 'c', 4 for 'u'), not by the widest element.
    a = Array("c", 400_000)
    w = Array("u", 100_000)
    for arr, nbytes in ((a, 400_000), (w, 400_000)):
        path = arr.__reduce__()[1][1]
        assert nbytes <= os.path.getsize(path) < nbytes + (1 << 17)
    a[-1] = b"z"
    w[-1] = "z"
    assert a.raw[-2:] == b"\x00z" and w[-2:] == "\x00z"
