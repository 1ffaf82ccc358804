"""Thread pools shared by every reader or writer of a process."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor


def usable_cpus() -> int:
    """The CPUs this process can keep busy, as joblib counts them: its CPU affinity, capped by
    a container's CPU limit (a Kubernetes pod's ``limits.cpu`` is a CFS quota, and the
    affinity still holds every core of the node) and by ``LOKY_MAX_CPU_COUNT`` where set.
    The readers' and writers' threads and a local Ray follow it."""
    from joblib import cpu_count

    return max(1, int(cpu_count()))


class SharedPool:
    """A thread pool started on first use and shared by the process.

    A forked child (a DataLoader worker) inherits the pool object but none of its threads, so
    work submitted there would wait forever: the child forgets the pool and starts its own.
    """

    def __init__(self, threads: int, prefix: str) -> None:
        self.threads = threads
        self.prefix = prefix
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        os.register_at_fork(after_in_child=self._forget)

    def get(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix=self.prefix)
            return self._pool

    def _forget(self) -> None:
        self._pool = None
        self._lock = threading.Lock()
