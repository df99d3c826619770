"""What ``Queue`` and ``JoinableQueue`` need from Python: the ``ShutDown`` exception and
the default ring size (the queues themselves are native: ``shmstate._shmstate``)."""

import queue

__all__ = ["ShutDown", "DEFAULT_CAPACITY"]

#: The bytes a queue's ring holds when no ``capacity`` is given: 1 MiB, so an item may
#: pickle to 512 KiB - 8 bytes.
DEFAULT_CAPACITY = 1 << 20

if hasattr(queue, "ShutDown"):  # Python 3.13+
    ShutDown = queue.ShutDown
else:

    class ShutDown(Exception):
        """Raised by ``put`` on a queue that was shut down, and by ``get`` on one that was
        shut down and is empty (``queue.ShutDown`` on Python 3.13 and later)."""
