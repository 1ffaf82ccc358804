"""Thread pools and scratch memory shared by every reader or writer of a process."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np


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


class KeptScratch:
    """One block of scratch memory kept from one pass to the next, for passes that read a
    layer block after block into one buffer (NAP slot sums of slots spread over the run).

    Fresh pages cost about as much as the rows decoded into them: a 245 MB block filled took
    84-108 ms fresh against 28-31 ms reused on a 2-core KVM machine, where the pass over a
    1 GB layer takes about 0.3 s. A pass takes the block, uses it and gives it back, so the
    next pass (the next layer of a NAP, the next grouping) skips those pages; the first pass
    of a process still pays them. Holds at most one block, of at most ``limit`` bytes, until
    :meth:`release`; a pass that finds the block taken (another thread's) makes its own.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._kept: np.ndarray | None = None
        self._lock = threading.Lock()
        os.register_at_fork(after_in_child=self._forget)

    def take(self, nbytes: int) -> np.ndarray:
        """``[nbytes] uint8`` of scratch (contents undefined): the kept block's first bytes when
        it is large enough, else fresh memory."""
        with self._lock:
            kept, self._kept = self._kept, None
        if kept is None or kept.size < nbytes:
            kept = np.empty(nbytes, np.uint8)
        return kept[:nbytes]

    def give(self, scratch: np.ndarray) -> None:
        """Keep what :meth:`take` returned for the next pass, unless it is over ``limit`` or a
        block at least as large is kept already."""
        block = scratch.base if isinstance(scratch.base, np.ndarray) else scratch
        if not 0 < block.nbytes <= self.limit:
            return
        with self._lock:
            if self._kept is None or self._kept.size < block.size:
                self._kept = block

    def release(self) -> None:
        """Free the kept block."""
        with self._lock:
            self._kept = None

    def _forget(self) -> None:
        self._kept = None
        self._lock = threading.Lock()
