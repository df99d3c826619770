"""Removing a named object: ``Region.remove_object(path, name)`` and ``Region.remove(name)``
free its entry and space once no live process uses it; a process's own handle counts
until every Region and object of that path in it is gone; each refusal is a typed error."""

import gc
import os
import pathlib
import pickle
import signal
import subprocess
import sys

import pytest

import shmstate


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "remove.region")


def _make_value(path, name, value):
    """Creates ``name`` = ``value`` (no lock) through a Region that is gone on return."""
    r = shmstate.Region(path, 1 << 16)
    r.Value(name, "q", value, lock=False)
    del r
    gc.collect()


def _hold(path, name, conn, lock=False):
    """Uses ``name`` through a Region (with its own lock if ``lock``), reports its value,
    and keeps it until told to go (or for 60 s: a parent that failed never leaves it
    running for good)."""
    r = shmstate.Region(path, create=False)
    v = r.Value(name, "q", lock=lock)
    conn.send(v.value)
    conn.poll(60)


def _start_holder(ctx, path, name, lock=False):
    parent, child = ctx.Pipe()
    p = ctx.Process(target=_hold, args=(path, name, child, lock))
    p.start()
    child.close()
    assert parent.poll(60), "the holder did not report"
    return p, parent


def test_removing_an_unused_object_frees_it_and_a_later_get_makes_a_new_one(path):
    _make_value(path, "n", 42)
    r = shmstate.Region(path)
    assert r.Value("other", "q", lock=False).value == 0  # a handle that never asked for "n"
    r.remove("n")
    assert "n" not in r.names()
    assert r.Value("n", "q", lock=False).value == 0  # a new object, initialised afresh


def test_remove_object_takes_a_path_like_and_frees_the_space(path):
    _make_value(path, "n", 7)
    shmstate.Region.remove_object(pathlib.Path(path), "n")
    r = shmstate.Region(path)
    assert r.names() == []
    assert r.Value("n", "q", 3, lock=False).value == 3  # created again, with its init


@pytest.mark.parametrize("end", ["exit", "kill"])
def test_removal_while_another_process_holds_the_object_names_it_until_it_ends(ctx, path, end):
    _make_value(path, "n", 5)
    p, conn = _start_holder(ctx, path, "n")
    try:
        assert conn.recv() == 5
        with pytest.raises(shmstate.ObjectInUseError) as e:
            shmstate.Region.remove_object(path, "n")
        assert e.value.pids == [p.pid]
        assert e.value.name == "n"
        assert str(p.pid) in str(e.value)
        assert isinstance(e.value, shmstate.RegionError)
        assert "n" in shmstate.Region(path).names()  # nothing was changed
        if end == "exit":
            conn.send("go")
        else:
            os.kill(p.pid, signal.SIGKILL)
        p.join(60)
        assert p.exitcode == (0 if end == "exit" else -signal.SIGKILL)
    finally:
        if p.is_alive():
            p.kill()
            p.join()
    shmstate.Region.remove_object(path, "n")  # a dead process's use does not count
    assert "n" not in shmstate.Region(path).names()


def test_own_handle_counts_as_a_user_until_its_region_and_objects_are_collected(path):
    r = shmstate.Region(path, 1 << 16)
    v = r.Value("n", "q", 9, lock=False)
    with pytest.raises(shmstate.ObjectInUseError) as e:
        r.remove("n")
    assert e.value.pids == [os.getpid()]
    # Another Region of the path, and a copy unpickled here, share the same handle.
    again = shmstate.Region(path)
    copy = pickle.loads(pickle.dumps(v))
    assert copy.value == 9
    assert r.attached_pids() == [os.getpid()]  # one handle, not three
    del r, again, copy
    gc.collect()
    with pytest.raises(shmstate.ObjectInUseError) as e:
        shmstate.Region.remove_object(path, "n")  # `v` keeps the handle open
    assert e.value.pids == [os.getpid()]
    del v
    gc.collect()
    shmstate.Region(path).remove("n")
    assert shmstate.Region(path).names() == []


def test_an_object_with_its_own_lock_is_removed_with_its_lock(path):
    r = shmstate.Region(path, 1 << 16)
    r.Value("n", "q", 1)  # lock=True: an RLock named n/lock
    r.Array("a", "i", 3)
    del r
    gc.collect()
    shmstate.Region.remove_object(path, "n")
    assert sorted(shmstate.Region(path).names()) == ["a", "a/lock"]
    gc.collect()
    shmstate.Region.remove_object(path, "a")
    assert shmstate.Region(path).names() == []


def _made_with_its_lock(path):
    r = shmstate.Region(path, 1 << 16)
    r.Value("n", "q", 1)
    del r
    gc.collect()


def _release(p, conn):
    conn.send("go")
    p.join(60)
    assert p.exitcode == 0
    gc.collect()


def test_a_value_used_with_its_lock_keeps_both(path, ctx):
    _made_with_its_lock(path)
    p, conn = _start_holder(ctx, path, "n", lock=True)
    try:
        assert conn.recv() == 1
        with pytest.raises(shmstate.ObjectInUseError) as e:
            shmstate.Region.remove_object(path, "n")
        assert (e.value.name, e.value.pids) == ("n/lock", [p.pid])
        assert sorted(shmstate.Region(path).names()) == ["n", "n/lock"]  # nothing removed
    finally:
        _release(p, conn)
    shmstate.Region.remove_object(path, "n")
    assert shmstate.Region(path).names() == []


def test_a_value_used_without_its_lock_loses_only_the_lock(path, ctx):
    _made_with_its_lock(path)
    p, conn = _start_holder(ctx, path, "n", lock=False)
    try:
        assert conn.recv() == 1
        with pytest.raises(shmstate.ObjectInUseError) as e:
            shmstate.Region.remove_object(path, "n")
        assert (e.value.name, e.value.pids) == ("n", [p.pid])
        # Nobody used the lock: it is gone, and the next `lock=True` makes a fresh one.
        assert shmstate.Region(path).names() == ["n"]
    finally:
        _release(p, conn)
    r = shmstate.Region(path, 1 << 16)
    v = r.Value("n", "q")
    with v.get_lock():
        v.value += 1
    assert v.value == 2
    assert sorted(r.names()) == ["n", "n/lock"]


def test_only_an_rlock_named_after_an_existing_object_goes_with_it(path):
    r = shmstate.Region(path, 1 << 16)
    r.Lock("x/lock")  # a Lock, not the RLock a Value makes
    r.RLock("y/lock")  # no object "y"
    r.Value("x", "q", lock=False)
    del r
    gc.collect()
    shmstate.Region.remove_object(path, "x")
    assert sorted(shmstate.Region(path).names()) == ["x/lock", "y/lock"]
    gc.collect()
    with pytest.raises(KeyError):
        shmstate.Region.remove_object(path, "y")
    assert sorted(shmstate.Region(path).names()) == ["x/lock", "y/lock"]


def test_removing_a_missing_object_raises_key_error(path):
    r = shmstate.Region(path, 1 << 16)
    with pytest.raises(KeyError) as e:
        r.remove("nothing")
    assert e.value.args == ("nothing",)
    with pytest.raises(KeyError):
        shmstate.Region.remove_object(path, "nothing")


@pytest.mark.parametrize("name", ["", "a\0b", "x" * 1000])
def test_an_invalid_name_raises_value_error(path, name):
    r = shmstate.Region(path, 1 << 16)
    with pytest.raises(ValueError, match="invalid object name"):
        r.remove(name)
    with pytest.raises(ValueError, match="invalid object name"):
        shmstate.Region.remove_object(path, name)


def test_remove_object_of_a_missing_region_raises_region_error(tmp_path):
    with pytest.raises(shmstate.RegionError, match="no region"):
        shmstate.Region.remove_object(tmp_path / "absent.region", "n")


def test_an_anonymous_region_refuses_removal_with_value_error():
    anon = shmstate._region.Region._from_core(shmstate._shmstate.RegionCore.anonymous(1 << 16))
    anon.Value("n", "q", lock=False)
    with pytest.raises(ValueError, match="anonymous"):
        anon.remove("n")
    assert "n" in anon.names()


def test_the_readme_example_runs(tmp_path):
    readme = pathlib.Path(__file__).parents[2] / "README.md"
    text = readme.read_text().split("### Removing a named object", 1)[1]
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    assert "/dev/shm/jobs" in code
    code = code.replace("/dev/shm/jobs", str(tmp_path / "jobs"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr


def test_a_remove_when_unused_file_keeps_its_handle_until_exit(path):
    """A handle on a file made with remove_when_unused=True stays open after its Region
    and objects are collected (a pickle of an object may still be in flight), so this
    process's own use keeps refusing the removal; the file is still there."""
    r = shmstate.Region(path, 1 << 16, remove_when_unused=True)
    v = r.Value("kept", "q", lock=False)
    v.value = 5
    del r, v
    gc.collect()
    assert os.path.exists(path)
    with pytest.raises(shmstate.ObjectInUseError) as e:
        shmstate.Region.remove_object(path, "kept")
    assert e.value.pids == [os.getpid()]
    assert shmstate.Region(path, create=False).Value("kept", "q", lock=False).value == 5
