"""Closed itemset mining on Ray by partitioning the search space, never the rows.

An itemset closed in the whole database need not be closed in any row partition, so
mining row partitions and merging is wrong. The LCM enumeration tree instead splits at its
first level into independent branches (:func:`neurolake.mining.lcm.first_level_branches`):
each branch is mined completely from its own conditional database, the branches produce
disjoint sets, and the coordinator only concatenates. Branch sizes are very uneven, so the
branches go out largest first, the heavy ones alone and the light ones in batches, with
no more tasks in flight than workers, which amounts to longest-processing-time-first list
scheduling.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import ray

from neurolake.cluster.ray_env import connect
from neurolake.errors import SpecError
from neurolake.mining.lcm import Branch, ClosedItemsets, first_level_branches, mine_branch

logger = logging.getLogger(__name__)

__all__ = ["distributed_closed_itemsets", "plan_batches"]

# Light branches are grouped until a batch holds this fraction of a worker's fair share of
# the total cost; smaller batches cost more in task overhead than they gain in balance.
_BATCH_SHARE = 1 / 8


def _mine_batch(branches: list[Branch]) -> ClosedItemsets:
    """Ray task body: mine every branch of a batch, concatenated in batch order."""
    return ClosedItemsets.concat(mine_branch(b) for b in branches)


def plan_batches(branches: list[Branch], num_workers: int) -> list[list[Branch]]:
    """Group branches (sorted by decreasing cost) into batches, heaviest batch first.

    A branch whose cost reaches ``total / num_workers * 1/8`` is a batch of its own; lighter
    ones are gathered in order until their batch reaches that size.
    """
    total = sum(b.cost for b in branches)
    target = max(1.0, total / max(1, num_workers) * _BATCH_SHARE)
    batches: list[list[Branch]] = []
    current: list[Branch] = []
    current_cost = 0
    for branch in sorted(branches, key=lambda b: b.cost, reverse=True):
        current.append(branch)
        current_cost += branch.cost
        if current_cost >= target:
            batches.append(current)
            current, current_cost = [], 0
    if current:
        batches.append(current)
    return batches


def _ensure_ray() -> None:
    connect()  # joins $RAY_ADDRESS, else starts a local Ray once


def distributed_closed_itemsets(
    transactions: Any,
    min_support: int | float,
    max_size: int | None = None,
    num_workers: int | None = None,
) -> ClosedItemsets:
    """Closed itemsets as :func:`neurolake.mining.lcm.closed_itemsets`, mined on Ray.

    The coordinator splits the search into first-level branches, ships them to Ray tasks
    (one CPU each), and concatenates the disjoint results; the set of ``(itemset, support)``
    pairs equals the single-process result. Ray is started locally (2 CPUs) when no
    connection exists.

    Args:
        transactions, min_support, max_size: as for
            :func:`neurolake.mining.lcm.closed_itemsets`.
        num_workers: most tasks running at once; default: the CPUs of the Ray cluster.
    """
    if num_workers is not None and (
        isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1
    ):
        raise SpecError(f"num_workers must be None or an int >= 1, got {num_workers!r}")
    start = time.perf_counter()
    plan = first_level_branches(transactions, min_support, max_size)
    if not plan.branches:
        return plan.root
    _ensure_ray()
    if num_workers is None:
        num_workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
    batches = plan_batches(plan.branches, num_workers)
    logger.info(
        "distributed LCM: %d branches in %d batches on %d workers (planning %.2f s)",
        len(plan.branches),
        len(batches),
        num_workers,
        time.perf_counter() - start,
    )
    mine = ray.remote(num_cpus=1)(_mine_batch)
    results: dict[int, ClosedItemsets] = {}
    pending: dict[ray.ObjectRef, int] = {}
    next_batch = 0
    while next_batch < len(batches) or pending:
        while next_batch < len(batches) and len(pending) < num_workers:
            pending[mine.remote(batches[next_batch])] = next_batch
            next_batch += 1
        done, _ = ray.wait(list(pending), num_returns=1)
        for ref in done:
            results[pending.pop(ref)] = ray.get(ref)
    result = ClosedItemsets.concat([plan.root] + [results[i] for i in range(len(batches))])
    logger.info("distributed LCM: %d closed itemsets in %.2f s", len(result), time.perf_counter() - start)
    return result
