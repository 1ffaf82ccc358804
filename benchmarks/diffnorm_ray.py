"""Where a DiffNorm search's time goes: one process against the counting on Ray workers.

    python benchmarks/diffnorm_ray.py [--frames N] [--iterations N] [--workers 0 1 2]

Runs the ``--large`` contrast of ``benchmarks/diffnorm.py`` (N frames x 2,000 units, 5 %
active, target-only groups planted) once per entry of ``--workers`` (0: one process; k: the
row-partitioned counter on k Ray actors, even for k = 1) and prints, for each run, its time,
the time of every counting call and of Slim's list on the coordinator, the round trips to
the actors (``broadcast`` calls) and the compute time of every method in each actor. The
runs must find the same model.
"""

from __future__ import annotations

import argparse
import collections
import functools
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from diffnorm import large_contrast

import neurolake.mining.diffnorm as dn
from neurolake.cluster import pool
from neurolake.cluster.ray_env import connect
from neurolake.mining import _diffnorm_kernels as kernels

SPENT: dict[str, float] = collections.defaultdict(float)
CALLS: collections.Counter = collections.Counter()


def timed(owner: Any, name: str, key: str) -> None:
    """Wrap ``owner.name`` to add its time to ``SPENT[key]``."""
    original = getattr(owner, name)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            SPENT[key] += time.perf_counter() - start
            CALLS[key] += 1

    setattr(owner, name, wrapper)


class TimedPartition(dn._RowPartition):
    """The actors' counter, timing its methods."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.spent: dict[str, float] = collections.defaultdict(float)
        self.calls: collections.Counter = collections.Counter()

    def _timed(self, name: str, *args: Any) -> Any:
        start = time.perf_counter()
        try:
            return getattr(super(), name)(*args)
        finally:
            self.spent[name] += time.perf_counter() - start
            self.calls[name] += 1

    def supports(self, *args: Any) -> Any:
        return self._timed("supports", *args)

    def usages_held(self, *args: Any) -> Any:
        return self._timed("usages_held", *args)

    def co_usages(self, *args: Any) -> Any:
        return self._timed("co_usages", *args)

    def co_usage_deltas_held(self, *args: Any) -> Any:
        return self._timed("co_usage_deltas_held", *args)

    def times(self) -> tuple[dict[str, float], dict[str, int]]:
        return dict(self.spent), dict(self.calls)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args(argv)
    connect(num_cpus=2)  # a local Ray as neurolake starts one (its workers not reniced)
    groups, _ = large_contrast(args.frames)
    packed = [dn.BitMatrix.from_dense(g) for g in groups]
    del groups
    for cls in (dn.LocalUsageCounter, dn.PartitionedUsageCounter):
        for name in ("supports", "usages", "co_usages", "co_usage_sequence"):
            timed(cls, name, f"{cls.__name__}.{name}")
    timed(kernels, "slim_gains_tabled", "slim_gains")
    for name in ("_closed_candidates", "_slim_candidates"):
        timed(dn.DiffNorm, name, f"DiffNorm.{name}")
    timed(pool.ActorPool, "broadcast", "round trips (broadcast)")
    timed(pool.ActorPool, "broadcast_later", "round trips started (broadcast_later)")
    # Start Ray's workers and load the kernels outside the timings.
    dn.DiffNorm(workers=2).fit([np.eye(4, dtype=bool)] * 2)
    dn.DiffNorm().fit([np.eye(4, dtype=bool)] * 2)
    hosted, closing = dn._RowPartition, dn.PartitionedUsageCounter.close
    first = None
    for workers in args.workers:
        SPENT.clear()
        CALLS.clear()
        actor_times: list[Any] = []

        def close(self: dn.PartitionedUsageCounter, into: list[Any] = actor_times) -> None:
            into.extend(self._pool.broadcast("times"))
            closing(self)

        dn.PartitionedUsageCounter.close = close  # type: ignore[method-assign]
        dn._RowPartition = TimedPartition  # type: ignore[misc]
        model = dn.DiffNorm(min_support=0.05, max_iterations=args.iterations)
        if workers:
            model._make_counter = lambda g, m, w=workers: dn.PartitionedUsageCounter(g, m, w)  # type: ignore[method-assign]
        start = time.perf_counter()
        try:
            model.fit(packed)
        finally:
            dn._RowPartition = hosted  # type: ignore[misc]
            dn.PartitionedUsageCounter.close = closing  # type: ignore[method-assign]
        elapsed = time.perf_counter() - start
        result = model.discover()
        first = first or result
        same = result.patterns == first.patterns and result.total_length == first.total_length
        label = "one process" if workers == 0 else f"{workers} Ray worker{'s' if workers > 1 else ''}"
        print(
            f"== {label}: {elapsed:.1f} s, {result.n_accepted} accepted, L% {result.l_percent:.3f}"
            f" ({'same model' if same else 'MODEL DIFFERS'})",
            flush=True,
        )
        for key in sorted(SPENT, key=lambda k: -SPENT[k]):
            print(
                f"   {key:<45} {SPENT[key]:7.2f} s {CALLS[key]:6d} calls {1000 * SPENT[key] / CALLS[key]:8.2f} ms/call"
            )
        for a, (spent, calls) in enumerate(actor_times):
            print(f"   actor {a}: " + ", ".join(f"{k} {v:.2f} s / {calls[k]}" for k, v in spent.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
