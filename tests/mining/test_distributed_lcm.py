"""LCM on Ray workers against LCM in one process, on a real local Ray."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neurolake.errors import SpecError
from neurolake.mining import _lcm_kernels as kernels
from neurolake.mining.lcm import (
    ClosedItemsets,
    _batches_by_cost,
    _common_closure,
    _mine_cores,
    _prepare,
    _widen,
    closed_itemsets,
    first_level_branches,
    plan_batches,
    read_fimi,
)

pytestmark = pytest.mark.usefixtures("local_ray")

FIMI_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "fimi"


def as_set(result):
    pairs = list(result)
    assert len(set(pairs)) == len(pairs), "an itemset was reported twice"
    return set(pairs)


def random_rows(seed: int, n_rows: int, n_items: int, density: float) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [np.flatnonzero(r).tolist() for r in rng.random((n_rows, n_items)) < density]


@pytest.mark.parametrize("fraction,max_size", [(0.05, None), (0.2, 3)])
def test_mushroom_matches_single_process(fraction, max_size):
    path = FIMI_DIR / "mushroom.dat"
    if not path.exists():
        pytest.skip("FIMI benchmark file mushroom.dat is not in the shared data directory")
    db = read_fimi(str(path))
    expected = as_set(closed_itemsets(db, fraction, max_size))
    assert as_set(closed_itemsets(db, fraction, max_size, workers=2)) == expected


@pytest.mark.parametrize("seed,density,minsup,workers", [(0, 0.3, 5, 2), (1, 0.1, 2, 1), (2, 0.5, 40, 3)])
def test_random_data_matches_single_process(seed, density, minsup, workers):
    rows = random_rows(seed, 400, 40, density)
    expected = as_set(closed_itemsets(rows, minsup))
    assert len(expected) > 10
    assert as_set(closed_itemsets(rows, minsup, workers=workers)) == expected


def test_dense_activation_like_matrix_matches_single_process():
    # Enough frames that the first level is mined from bits and its branches travel
    # unmerged, to be mined from bits on the workers too.
    rng = np.random.default_rng(7)
    frames = rng.random((6000, 80)) < 0.15
    group = np.array([3, 17, 40, 41, 79])
    on = rng.random(6000) < 0.2
    frames[np.ix_(on, group)] = True
    expected = as_set(closed_itemsets(frames, 0.02))
    assert dict(expected)[tuple(group.tolist())] >= on.sum()
    assert as_set(closed_itemsets(frames, 0.02, workers=2)) == expected


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_bad_worker_count_is_a_spec_error(bad):
    with pytest.raises(SpecError):
        closed_itemsets([[1, 2]], 1, workers=bad)


def test_trivial_inputs_need_no_tasks():
    assert len(closed_itemsets([], 1, workers=None)) == 0
    assert as_set(closed_itemsets([[1, 2], [1, 2]], 1, workers=None)) == {((1, 2), 2)}


def test_batches_cover_every_branch_once_heaviest_first():
    plan = first_level_branches(random_rows(4, 500, 50, 0.2), 5)
    batches = plan_batches(plan.branches, workers=2)
    flat = [b for batch in batches for b in batch]
    assert sorted(id(b) for b in flat) == sorted(id(b) for b in plan.branches)
    costs = [sum(b.cost for b in batch) for batch in batches]
    assert batches[0][0].cost == max(b.cost for b in plan.branches)
    assert len(batches) < len(plan.branches)
    assert costs[0] >= costs[-1]


small_rows = st.lists(st.lists(st.integers(0, 9), max_size=9), min_size=0, max_size=40)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=small_rows, minsup=st.integers(1, 5), max_size=st.none() | st.integers(1, 4), workers=st.integers(1, 3))
def test_branches_mined_from_the_shared_database_give_the_whole_result(rows, minsup, max_size, workers):
    # The task bodies, run here on every batch: the first-level branches of each batch mined
    # from the database that the tasks share, plus the root, are the single-process result.
    prep = _prepare(rows, minsup, max_size)
    expected = as_set(closed_itemsets(rows, minsup, max_size))
    if prep.nothing_below_root:
        return
    batches = _batches_by_cost(kernels.first_level_costs(prep.ptr, prep.items, prep.labels.size), workers)
    assert sorted(c for batch in batches for c in batch) == list(range(prep.labels.size))
    parts = [_widen(*_mine_cores(prep, batch)) for batch in batches]
    assert as_set(ClosedItemsets.concat([_common_closure(prep), *parts])) == expected


def test_tasks_answer_in_narrow_types():
    # 30 items and supports up to about 300 of 1,000 rows: bytes, bytes and 16-bit counts.
    prep = _prepare(random_rows(5, 1000, 30, 0.3), 10, None)
    values, sizes, support = _mine_cores(prep, list(range(prep.labels.size)))
    assert values.dtype == np.uint8 and sizes.dtype == np.uint8 and support.dtype == np.uint16
    assert sizes.sum() == values.size and 255 < support.max() <= 1000


def test_batches_shrink_towards_the_end():
    costs = np.random.default_rng(3).pareto(1.5, 400) * 1000
    batches = _batches_by_cost(costs, workers=2)
    totals = [costs[batch].sum() for batch in batches]
    assert sorted(c for batch in batches for c in batch) == list(range(400))
    # Heaviest first: the first batch opens with the dearest branch, and each batch but the
    # last closes at a quarter of what was left for each worker, or at 1/200 of the total.
    assert batches[0][0] == int(np.argmax(costs))
    assert totals[0] >= costs.sum() / 8 and max(totals[-3:]) < totals[0] / 4
    assert min(totals[:-1]) >= costs.sum() / 200


def test_first_level_costs_count_row_length_times_items_above():
    rows = random_rows(6, 300, 25, 0.3)
    prep = _prepare(rows, 3, None)
    expected = np.zeros(prep.labels.size)
    for t in range(prep.weights.size):
        row = prep.items[prep.ptr[t] : prep.ptr[t + 1]]
        for k in row:
            expected[k] += row.size * np.count_nonzero(row > k)
    np.testing.assert_array_equal(kernels.first_level_costs(prep.ptr, prep.items, prep.labels.size), expected)


def test_dense_batches_mined_in_process_give_the_whole_result():
    # Dense enough that the root and its children are mined from bits: each batch's search
    # from the root, restricted to its first-level items, gives exactly its branches.
    frames = np.random.default_rng(8).random((5000, 60)) < 0.2
    prep = _prepare(frames, 0.02, None)
    batches = _batches_by_cost(kernels.first_level_costs(prep.ptr, prep.items, prep.labels.size), 3)
    assert len(batches) > 3
    parts = [_widen(*_mine_cores(prep, batch)) for batch in batches]
    assert as_set(ClosedItemsets.concat([_common_closure(prep), *parts])) == as_set(closed_itemsets(frames, 0.02))
