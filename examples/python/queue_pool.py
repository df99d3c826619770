# A queue as the argument of pool tasks: each task streams its progress to the parent
# while it runs. multiprocessing.Queue refuses this ("Queue objects should only be shared
# between processes through inheritance"); a shmstate.Queue pickles as a reference to
# shared memory, so it travels with the task under every start method.
import sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

from shmstate import Queue


def work(progress, n):
    for i in range(n):
        progress.put((n, i))  # reaches the parent while the task runs
    return n


if __name__ == "__main__":
    method = sys.argv[1] if len(sys.argv) > 1 else "spawn"
    progress = Queue()
    with ProcessPoolExecutor(2, mp_context=get_context(method)) as ex:
        futures = [ex.submit(work, progress, n) for n in (3, 4)]
        got = [progress.get(timeout=30) for _ in range(7)]
        done = sorted(f.result() for f in futures)
    print("tasks", done)
    print("progress", sorted(got))
