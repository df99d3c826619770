"""What a killed or interrupted process costs the others: a lock whose holder died
raises OwnerDiedError instead of hanging; Ctrl-C interrupts every blocking call; no
region file outlives the program, a killed one included."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import shmstate
from helpers import assert_ctrl_c_interrupts

PYTHON = sys.executable


def _hold_forever(lock, held):
    lock.acquire()
    held.set()
    time.sleep(60)


@pytest.mark.parametrize("kind", ["Lock", "RLock"])
def test_lock_whose_holder_was_killed_raises_owner_died(ctx, kind):
    lock = getattr(shmstate, kind)()
    held = shmstate.Event()
    p = ctx.Process(target=_hold_forever, args=(lock, held))
    p.start()
    assert held.wait(30)
    os.kill(p.pid, signal.SIGKILL)
    p.join(30)
    t = time.monotonic()
    with pytest.raises(shmstate.OwnerDiedError):
        lock.acquire(timeout=30)
    assert time.monotonic() - t < 10
    # the caller holds the lock; until it is marked consistent, acquisitions say so
    assert lock._is_mine()
    lock.release()
    with pytest.raises(shmstate.OwnerDiedError):
        with lock:
            pass
    assert not lock.locked()  # `with` released it before raising
    with pytest.raises(shmstate.OwnerDiedError):
        lock.acquire()
    assert lock.mark_consistent()
    lock.release()
    assert lock.acquire(timeout=5) is True
    lock.release()


def _hold_value_lock(v, held):
    v.get_lock().acquire()
    held.set()
    time.sleep(60)


def test_value_setter_reports_a_dead_lock_holder(ctx):
    v = shmstate.Value("i", 1)
    held = shmstate.Event()
    p = ctx.Process(target=_hold_value_lock, args=(v, held))
    p.start()
    assert held.wait(30)
    p.kill()
    p.join(30)
    with pytest.raises(shmstate.OwnerDiedError):
        v.value = 2
    assert v.add(1) is None and v.value == 2  # the atomic path needs no lock


SETUP = {
    "lock": "o = shmstate.Lock(); o.acquire()",
    "rlock_in_other_thread": (
        "o = shmstate.RLock(); "
        "threading.Thread(target=lambda: (o.acquire(), time.sleep(60)), daemon=True).start()"
    ),
    "semaphore": "o = shmstate.Semaphore(0)",
    "event": "o = shmstate.Event()",
    "barrier": "o = shmstate.Barrier(2)",
    "condition": "o = shmstate.Condition(); o.acquire()",
}

WAIT = {
    "lock": "o.acquire()",
    "rlock_in_other_thread": "time.sleep(0.05); o.acquire()",
    "semaphore": "o.acquire()",
    "event": "o.wait()",
    "barrier": "o.wait()",
    "condition": "o.wait()",
}


@pytest.mark.parametrize("what", sorted(SETUP))
def test_ctrl_c_interrupts_a_blocking_call(what):
    assert_ctrl_c_interrupts(SETUP[what], WAIT[what])


def test_blocking_acquire_releases_the_gil():
    import threading

    lock = shmstate.Lock()
    lock.acquire()
    t = threading.Thread(target=lock.acquire, kwargs={"timeout": 0.5}, daemon=True)
    t.start()
    n = 0
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:
        n += 1
    assert n > 1000  # the main thread ran while the other waited
    t.join(5)
    lock.release()


def _shm_files(directory):
    return sorted(f for f in os.listdir(directory) if f.startswith("shmstate-py-"))



PROGRAM = textwrap.dedent("""
    import multiprocessing as mp, os, sys, time, shmstate
    def child(v, a):
        v.add(1)
        a[0] = 7
    if __name__ == "__main__":
        mp.set_start_method(sys.argv[1])
        v = shmstate.Value("i", 0)
        a = shmstate.Array("d", 100_000)   # a region of its own
        ps = [mp.Process(target=child, args=(v, a)) for _ in range(2)]
        for p in ps: p.start()
        for p in ps: p.join()
        assert v.value == 2 and a[0] == 7
        d = os.environ["SHMSTATE_PY_DIR"]
        print("files", len([f for f in os.listdir(d) if f.startswith("shmstate-py-")]), flush=True)
        if len(sys.argv) > 2:
            time.sleep(60)
""")


def _program(tmp_path):
    # A file, not `-c`: spawn children import the main module.
    path = tmp_path / "prog" / "program.py"
    path.parent.mkdir(exist_ok=True)
    path.write_text(PROGRAM)
    return str(path)


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_no_region_file_outlives_the_program(tmp_path, method):
    env = dict(os.environ, SHMSTATE_PY_DIR=str(tmp_path))
    out = subprocess.run([PYTHON, _program(tmp_path), method], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "files 2" in out.stdout  # the default region and the large array's
    assert _shm_files(tmp_path) == []


def test_a_killed_programs_files_are_removed_by_the_next_program(tmp_path):
    env = dict(os.environ, SHMSTATE_PY_DIR=str(tmp_path))
    p = subprocess.Popen([PYTHON, _program(tmp_path), "fork", "stay"], env=env,
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().startswith("files 2")
        p.kill()
        p.wait(10)
    finally:
        p.kill()
        p.wait()
    assert len(_shm_files(tmp_path)) == 2  # left by the killed program...
    out = subprocess.run([PYTHON, _program(tmp_path), "fork"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert _shm_files(tmp_path) == []  # ...removed by the next one


def test_a_thread_that_exits_holding_a_lock_counts_as_dead():
    # The lock records its holder's thread: a thread that ends without releasing it is a
    # dead holder, as a killed process is.
    import threading

    lock = shmstate.Lock()
    t = threading.Thread(target=lock.acquire)
    t.start()
    t.join()
    with pytest.raises(shmstate.OwnerDiedError):
        lock.acquire(timeout=30)
    lock.mark_consistent()
    lock.release()


def _hold(kind, obj):
    if kind == "RLock":
        obj.acquire()
        obj.acquire()  # a nested holder: the depth a reuser must not inherit
    elif kind == "Lock":
        obj.acquire()
    else:
        obj.get_lock().acquire()


def _use(kind, obj):
    """In the process that reused the dead holder's PID: 0 if the lock is taken over and
    reported, 1 if it was taken for this thread's own, 2 if it stays held after."""
    try:
        if kind == "Value":
            obj.value = 7  # the access must not skip a lock it takes for its own
            return 1
        if not obj.acquire(timeout=5):
            return 1  # waited on itself
        return 1  # entered as a nested acquisition of the dead holder's
    except shmstate.OwnerDiedError:
        lock = obj.get_lock() if kind == "Value" else obj
        if kind != "Value":
            if not (lock._is_mine() and lock._count() == 1):
                return 2
            lock.mark_consistent()
            lock.release()
        return 2 if lock.locked() else 0


@pytest.mark.parametrize("kind", ["RLock", "Lock", "Value"])
def test_a_process_that_reused_the_dead_holders_pid_gets_owner_died(kind):
    # A holder killed holding the lock; the kernel then hands its PID to a new process
    # (forced through ns_last_pid: root only). The lock word names that process's thread,
    # which must not take the lock for its own (enter an RLock at the dead holder's depth,
    # wait on a Lock forever, or skip a Value's lock): it gets OwnerDiedError.
    if kind == "Value":
        obj = shmstate.Value("i", 0, lock=shmstate.Lock())
    else:
        obj = getattr(shmstate, kind)()
    r, w = os.pipe()
    dead = os.fork()
    if dead == 0:
        _hold(kind, obj)
        os.write(w, b"x")
        time.sleep(60)
        os._exit(1)
    assert os.read(r, 1) == b"x"
    os.close(r)
    os.close(w)
    os.kill(dead, signal.SIGKILL)
    os.waitpid(dead, 0)
    try:
        with open("/proc/sys/kernel/ns_last_pid", "w") as f:
            f.write(str(dead - 1))
    except OSError:
        pytest.skip("cannot set ns_last_pid (not root)")
    new = os.fork()
    if new == 0:
        code = 3
        try:
            # A watchdog: a child that waits on a lock it takes for its own must not
            # outlive the test.
            signal.alarm(20)
            if os.getpid() == dead:
                code = _use(kind, obj)
            else:
                code = 4
        finally:
            os._exit(code)
    _, status = os.waitpid(new, 0)
    if new != dead:
        # Another process took the PID between the write and the fork: the lock now
        # names that live process, and cannot be recovered here.
        pytest.skip("another process took the reused PID")
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status


def test_a_lock_taken_in_an_early_fork_hook_is_released_in_the_child():
    # The count of a thread's lock acquisitions is reset in a forked child inside fork()
    # itself, before any Python after_in_child hook runs: a hook registered before
    # shmstate was imported, which takes a lock, must leave the child able to release it.
    program = textwrap.dedent(
        """
        import os
        state = {}
        os.register_at_fork(after_in_child=lambda: state["lock"].acquire())
        import shmstate
        state["lock"] = shmstate.Lock()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                state["lock"].release()
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        raise SystemExit(os.waitstatus_to_exitcode(status))
        """
    )
    out = subprocess.run([PYTHON, "-c", program], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
