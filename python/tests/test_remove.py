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


def _hold(path, name, conn):
    """Uses ``name`` through a Region, reports its value, and keeps it until told to go
    (or for 60 s: a parent that failed never leaves it running for good)."""
    r = shmstate.Region(path, create=False)
    v = r.Value(name, "q", lock=False)
    conn.send(v.value)
    conn.poll(60)


def _start_holder(ctx, path, name):
    parent, child = ctx.Pipe()
    p = ctx.Process(target=_hold, args=(path, name, child))
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


def test_an_object_with_its_own_lock_leaves_the_lock_entry_to_remove(path):
    r = shmstate.Region(path, 1 << 16)
    r.Value("n", "q", 1)  # lock=True: an RLock named n/lock
    del r
    gc.collect()
    shmstate.Region.remove_object(path, "n")
    assert shmstate.Region(path).names() == ["n/lock"]
    gc.collect()
    shmstate.Region.remove_object(path, "n/lock")
    assert shmstate.Region(path).names() == []


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
