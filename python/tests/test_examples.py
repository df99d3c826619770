"""The programs in examples/python print what they promise."""

import os
import subprocess
import sys

import pytest

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "python")


def run(*args):
    out = subprocess.run([sys.executable, *args], capture_output=True, text=True,
                         timeout=120, cwd=EXAMPLES)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_value_array_prints_what_multiprocessing_prints():
    assert run("value_array.py") == "3.1415927\n[0, -1, -2, -3, -4, -5, -6, -7, -8, -9]\n"


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_manager_dict_prints_what_the_manager_program_prints(method):
    out = run("-c", "import multiprocessing as mp, runpy; "
              f"mp.set_start_method({method!r}); "
              "runpy.run_path('manager_dict.py', run_name='__main__')")
    assert out == "{1: '1', '2': 2, 0.25: None}\n[9, 8, 7, 6, 5, 4, 3, 2, 1, 0]\n"


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_manager_program_runs_with_only_its_import_changed(method):
    with open(os.path.join(EXAMPLES, "manager.py")) as f:
        source = f.read()
    assert "from shmstate import Manager\n" in source
    out = run("-c", "import multiprocessing as mp, runpy; "
              f"mp.set_start_method({method!r}); "
              "runpy.run_path('manager.py', run_name='__main__')")
    assert out == "{1: '1', '2': 2, 0.25: None}\n[9, 8, 7, 6, 5, 4, 3, 2, 1, 0]\n"


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_plus_equals_lesson(method):
    out = run("plus_equals.py", "20000", "--start-method", method)
    rows = {line.split()[0]: line.split() for line in out.splitlines()[2:5]}
    assert set(rows) == {"naive", "locked", "atomic"}
    for path in ("locked", "atomic"):
        assert rows[path][1] == rows[path][2] == "80000" and rows[path][3] == "0"
    # naive may lose updates (how many depends on the machine and its load)
    assert int(rows["naive"][2]) <= 80000


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_queue_pool_streams_progress_from_pool_tasks(method):
    assert run("queue_pool.py", method) == (
        "tasks [3, 4]\n"
        "progress [(3, 0), (3, 1), (3, 2), (4, 0), (4, 1), (4, 2), (4, 3)]\n"
    )
