"""DiffNorm with cover and usage counting data-parallel over row partitions on Ray.

The search of :class:`neurolake.mining.diffnorm.DiffNorm` stays on the coordinator: it holds
the code tables, proposes changes and decides. What it asks for — supports, the usages of
the covers of some rows under a proposed code table, and co-usages — are sums over rows, so
every worker (a Ray actor holding a contiguous row partition of every group) counts its own
rows and the coordinator adds the integer counts. Sums of integers do not depend on how the
rows are split, so the search takes exactly the steps of the single-process version and
ends with the same patterns and the same total length.

Closed candidates are mined on the coordinator with LCM on the whole rows (closedness is not
a property of row partitions; see :mod:`neurolake.mining.distributed`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import ray

from neurolake.cluster.ray_env import connect
from neurolake.errors import SpecError
from neurolake.mining.diffnorm import DiffNorm, LocalUsageCounter, UsageCounter, UsageRequest

logger = logging.getLogger(__name__)

__all__ = ["DiffNormRay", "RayUsageCounter"]


class RayUsageCounter(UsageCounter):
    """A :class:`~neurolake.mining.diffnorm.UsageCounter` over Ray actors, one per row
    partition; every request goes to all actors at once and their counts are summed.

    Args:
        groups: one ``[rows, W] uint64`` packed matrix per group.
        n_items: size of the item universe.
        num_workers: actors (each holds about ``1 / num_workers`` of every group's rows).
    """

    # A round trip to the actors costs about a millisecond, far more than covering the rows
    # of one candidate; evaluating 16 candidates per trip wastes at most 15 evaluations
    # when one is accepted.
    batch_size = 16

    def __init__(self, groups: Sequence[np.ndarray], n_items: int, num_workers: int) -> None:
        connect()  # joins $RAY_ADDRESS, else starts a local Ray once
        self.n_items = n_items
        self.n_groups = len(groups)
        # Actors reserve no CPU, so that more partitions than CPUs still start (and share
        # the CPUs) instead of waiting forever for resources.
        # Each actor is a LocalUsageCounter over its row partition of every group.
        actor = ray.remote(num_cpus=0)(LocalUsageCounter)
        splits = [np.array_split(g, num_workers, axis=0) for g in groups]
        self.workers = [actor.remote([split[w] for split in splits], n_items) for w in range(num_workers)]
        logger.debug(
            "DiffNorm on Ray: %d workers, rows per group %s",
            num_workers,
            [g.shape[0] for g in groups],
        )

    def supports(self, patterns: np.ndarray) -> np.ndarray:
        parts = ray.get([w.supports.remote(patterns) for w in self.workers])
        return np.sum(parts, axis=0, dtype=np.int64)

    def usages(self, requests: Sequence[UsageRequest]) -> list[tuple[np.ndarray, np.ndarray]]:
        if not requests:
            return []
        requests = list(requests)
        parts = ray.get([w.usages.remote(requests) for w in self.workers])
        return [
            (
                np.sum([p[r][0] for p in parts], axis=0, dtype=np.int64),
                np.sum([p[r][1] for p in parts], axis=0, dtype=np.int64),
            )
            for r in range(len(requests))
        ]

    def co_usages(self, requests: Sequence[tuple[int, np.ndarray]]) -> list[np.ndarray]:
        requests = list(requests)
        parts = ray.get([w.co_usages.remote(requests) for w in self.workers])
        return [np.sum([p[r] for p in parts], axis=0, dtype=np.int64) for r in range(len(requests))]

    def close(self) -> None:
        for worker in self.workers:
            ray.kill(worker)
        self.workers = []


class DiffNormRay(DiffNorm):
    """:class:`~neurolake.mining.diffnorm.DiffNorm` whose counting runs on Ray actors.

    Same parameters and results as the single-process class (identical patterns and total
    length), plus:

    Args:
        num_workers: row partitions (one actor each). Ray is started locally with 2 CPUs
            when no connection exists.
    """

    def __init__(
        self,
        min_support: int | float = 0.05,
        max_candidates: int = 1000,
        max_iterations: int = 500,
        subsets: Sequence[Sequence[int]] | None = None,
        num_workers: int = 2,
    ) -> None:
        super().__init__(min_support, max_candidates, max_iterations, subsets)
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1:
            raise SpecError(f"num_workers must be an int >= 1, got {num_workers!r}")
        self.num_workers = num_workers

    def _make_counter(self, groups: list[np.ndarray], n_items: int) -> UsageCounter:
        return RayUsageCounter(groups, n_items, self.num_workers)
