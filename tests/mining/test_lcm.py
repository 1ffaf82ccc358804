"""LCM against oracles: pyfim on the FIMI benchmarks and random data, brute force on small data."""

from __future__ import annotations

import itertools
import math
import os
import subprocess
import sys
from pathlib import Path

import fim
import numba
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from neurolake.errors import SpecError
from neurolake.mining import _lcm_kernels as kernels
from neurolake.mining._lcm_kernels import BITS_ALWAYS, BITS_AUTO, BITS_NEVER, BITS_ROOT
from neurolake.mining.lcm import (
    LCM,
    ClosedItemsets,
    PackedRows,
    Transactions,
    _mine_prepared,
    _prepare,
    closed_itemsets,
    first_level_branches,
    mine_branch,
    read_fimi,
)

FIMI_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "fimi"


def as_set(result: ClosedItemsets) -> set[tuple[tuple[int, ...], int]]:
    pairs = list(result)
    assert len(set(pairs)) == len(pairs), "an itemset was reported twice"
    return set(pairs)


def brute_force(rows: list[list[int]], minsup: int, max_size: int | None = None):
    """Every non-empty itemset with support >= minsup that no one-item superset matches."""
    sets = [frozenset(r) for r in rows]
    items = sorted(set().union(*sets)) if sets else []

    def support(x: frozenset) -> int:
        return sum(1 for s in sets if x <= s)

    found = set()
    for size in range(1, len(items) + 1):
        for combo in itertools.combinations(items, size):
            x = frozenset(combo)
            sup = support(x)
            if sup < minsup:
                continue
            if any(support(x | {i}) == sup for i in items if i not in x):
                continue
            if max_size is None or size <= max_size:
                found.add((combo, sup))
    return found


def pyfim_closed(rows: list[list[int]], minsup: int):
    """pyfim's closed sets plus the closure of the whole database, which pyfim leaves out
    (it treats the items of every row as extensions of the empty set)."""
    found = {(tuple(sorted(s)), c) for s, c in fim.fpgrowth(rows, target="c", supp=-minsup, report="a")}
    if rows and len(rows) >= minsup:
        common = set(rows[0]).intersection(*rows[1:])
        if common:
            found.add((tuple(sorted(common)), len(rows)))
    return found


def random_rows(seed: int, n_rows: int, n_items: int, density: float) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    dense = rng.random((n_rows, n_items)) < density
    return [np.flatnonzero(r).tolist() for r in dense]


def fimi(name: str) -> Transactions:
    path = FIMI_DIR / f"{name}.dat"
    if not path.exists():
        pytest.skip(f"FIMI benchmark file {path.name} is not in the shared data directory")
    return read_fimi(str(path))


# --- hand-computed cases ---------------------------------------------------------------


def test_hand_computed_example():
    rows = [[1, 2, 3], [1, 2], [2, 3], [2], [1, 2, 3, 4]]
    # 2 is in every row; {1,2}: rows 0,1,4; {2,3}: rows 0,2,4; {1,2,3}: rows 0,4; {1,2,3,4}: row 4.
    expected = {((2,), 5), ((1, 2), 3), ((2, 3), 3), ((1, 2, 3), 2), ((1, 2, 3, 4), 1)}
    assert as_set(closed_itemsets(rows, 1)) == expected
    assert as_set(closed_itemsets(rows, 2)) == {e for e in expected if e[1] >= 2}
    assert as_set(closed_itemsets(rows, 6)) == set()


def test_duplicate_transactions_are_counted_with_their_multiplicity():
    rows = [[1, 2]] * 3 + [[1]] + [[3, 1, 2]] * 2
    assert as_set(closed_itemsets(rows, 1)) == {((1,), 6), ((1, 2), 5), ((1, 2, 3), 2)}
    assert as_set(closed_itemsets(rows, 3)) == {((1,), 6), ((1, 2), 5)}


def test_repeated_and_unsorted_items_in_a_row():
    rows = [[3, 1, 3, 2], [2, 2, 1], [3]]
    assert as_set(closed_itemsets(rows, 1)) == brute_force(rows, 1)


def test_empty_input_and_nothing_frequent():
    assert len(closed_itemsets([], 1)) == 0
    assert len(closed_itemsets([[], []], 1)) == 0
    assert len(closed_itemsets([[1], [2], [3]], 2)) == 0
    assert len(closed_itemsets(np.zeros((0, 5), bool), 0.5)) == 0
    assert len(closed_itemsets([[1, 2]], 2)) == 0


def test_relative_and_absolute_support_agree():
    rows = random_rows(3, 30, 8, 0.4)
    # 0.1 * 30 is 3.0000000000000004 in floating point and must still mean 3 rows.
    assert as_set(closed_itemsets(rows, 0.1)) == as_set(closed_itemsets(rows, 3))
    assert as_set(closed_itemsets(rows, 0.25)) == as_set(closed_itemsets(rows, 8))
    assert as_set(closed_itemsets(rows, 1.0)) == as_set(closed_itemsets(rows, 30))
    assert LCM(0.25).fit(rows).min_support_ == 8


def test_max_size_filters_closed_sets_of_the_whole_database():
    rows = random_rows(5, 40, 9, 0.5)
    full = as_set(closed_itemsets(rows, 2))
    for max_size in (1, 2, 3, 5):
        expected = {(s, c) for s, c in full if len(s) <= max_size}
        assert as_set(closed_itemsets(rows, 2, max_size=max_size)) == expected
        assert expected == brute_force(rows, 2, max_size)
    # Items in every row are in every closed set: nothing fits below their count.
    common = [[1, 2, 3, x] for x in range(4, 9)] + [[1, 2, 3]]
    assert len(closed_itemsets(common, 1, max_size=2)) == 0
    assert as_set(closed_itemsets(common, 1, max_size=3)) == {((1, 2, 3), 6)}


def test_input_forms_agree(tmp_path):
    rows = random_rows(11, 60, 12, 0.35)
    dense = np.zeros((60, 12), bool)
    for r, row in enumerate(rows):
        dense[r, row] = True
    csr = Transactions.from_any(rows)
    path = tmp_path / "rows.dat"
    path.write_text("\n".join(" ".join(map(str, r)) for r in rows) + "\n")
    expected = brute_force(rows, 4)
    for form in (rows, dense, csr, read_fimi(str(path)), (tuple(r) for r in rows)):
        assert as_set(closed_itemsets(form, 4)) == expected
    assert read_fimi(str(path)).to_lists() == rows


def test_result_table():
    result = LCM(min_support=2).fit([[5, 1], [1, 5, 7], [7, 1]]).discover()
    assert len(result) == 3
    assert set(result.items) == {(1,), (1, 7), (1, 5)}
    assert result.support.dtype == np.int64
    table = result.to_arrow()
    assert table.schema.field("itemset").type == pa.list_(pa.int64())
    assert table.schema.field("support").type == pa.int64()
    assert table.schema.field("size").type == pa.int32()
    rows = {(tuple(r["itemset"]), r["support"], r["size"]) for r in table.to_pylist()}
    assert rows == {((1,), 3, 1), ((1, 5), 2, 2), ((1, 7), 2, 2)}
    assert ClosedItemsets.empty().to_arrow().num_rows == 0


@pytest.mark.parametrize("bad", [0, -1, 0.0, 1.5, True, "10%", None], ids=lambda b: repr(b))
def test_bad_min_support_is_a_spec_error(bad):
    with pytest.raises(SpecError):
        LCM(bad)


@pytest.mark.parametrize("bad", [0, -2, 1.5, True])
def test_bad_max_size_is_a_spec_error(bad):
    with pytest.raises(SpecError):
        LCM(1, max_size=bad)


def test_bad_items_and_unfitted_miner_are_spec_errors():
    with pytest.raises(SpecError, match="non-negative"):
        closed_itemsets([[1, -3]], 1)
    with pytest.raises(SpecError, match="non-negative"):
        closed_itemsets([["a"]], 1)
    with pytest.raises(SpecError, match="fit"):
        LCM(1).discover()


# --- brute force on small random data ----------------------------------------------------

small_rows = st.lists(st.lists(st.integers(0, 7), max_size=8), min_size=0, max_size=25)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=small_rows, minsup=st.integers(1, 6), max_size=st.none() | st.integers(1, 4))
def test_matches_brute_force(rows, minsup, max_size):
    expected = brute_force(rows, minsup, max_size)
    assert as_set(closed_itemsets(rows, minsup, max_size)) == expected
    plan = first_level_branches(rows, minsup, max_size)
    parts = ClosedItemsets.concat([plan.root] + [mine_branch(b) for b in plan.branches])
    assert as_set(parts) == expected
    # The root from bits and its children from the prefix tree of its rows.
    assert as_set(_mine_prepared(_prepare(rows, minsup, max_size), BITS_ROOT)) == expected


@settings(max_examples=40, deadline=None)
@given(rows=small_rows, copies=st.lists(st.integers(1, 4), min_size=25, max_size=25))
def test_duplicated_rows_match_brute_force(rows, copies):
    repeated = [r for r, c in zip(rows, copies, strict=False) for _ in range(c)]
    for minsup in (1, 3, 7):
        assert as_set(closed_itemsets(repeated, minsup)) == brute_force(repeated, minsup)


# --- pyfim on random and benchmark data ---------------------------------------------------


@pytest.mark.parametrize(
    "seed,n_rows,n_items,density,minsup",
    [(0, 300, 30, 0.3, 6), (1, 500, 60, 0.1, 3), (2, 200, 20, 0.6, 30), (3, 1000, 200, 0.03, 2)],
)
def test_random_data_matches_pyfim_with_rows_and_bits(seed, n_rows, n_items, density, minsup):
    rows = random_rows(seed, n_rows, n_items, density)
    expected = pyfim_closed(rows, minsup)
    assert as_set(closed_itemsets(rows, minsup)) == expected
    prep = _prepare(rows, minsup, None)
    for mode in (BITS_NEVER, BITS_ALWAYS, BITS_ROOT):
        assert as_set(_mine_prepared(prep, mode)) == expected


@pytest.mark.parametrize(
    "name,fraction,count",
    [("mushroom", 0.20, 1196), ("chess", 0.80, 5083), ("retail", 0.01, 159)],
)
def test_fimi_matches_pyfim(name, fraction, count):
    db = fimi(name)
    rows = db.to_lists()
    minsup = math.ceil(fraction * len(rows))
    expected = pyfim_closed(rows, minsup)
    result = as_set(closed_itemsets(db, fraction))
    assert result == expected
    # The published counts leave out the closure of the whole database (mushroom has an
    # item in every row).
    assert len([r for r in result if r[1] < len(rows)]) == count
    prep = _prepare(db, minsup, None)
    for mode in (BITS_NEVER, BITS_ALWAYS, BITS_ROOT):
        assert as_set(_mine_prepared(prep, mode)) == expected


def test_fimi_max_size_matches_filtered_pyfim():
    db = fimi("mushroom")
    rows = db.to_lists()
    minsup = math.ceil(0.1 * len(rows))
    expected = {(s, c) for s, c in pyfim_closed(rows, minsup) if len(s) <= 4}
    assert as_set(closed_itemsets(db, minsup, max_size=4)) == expected


# --- prefix tree of a dense root, bit-mask nodes -------------------------------------------


def test_prefix_tree_nodes_count_and_share_rows():
    rows = [sorted(r) for r in random_rows(7, 300, 12, 0.45) if r] + [[0, 3, 5]] * 4 + [[5]]
    ptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
    items = np.concatenate([np.asarray(r, np.int32) for r in rows])
    n, item, parent, count, depth, ends = kernels._build_trie(ptr, items, 12, items.size)
    below = kernels._trie_below(n, item, parent, ends, 1)
    start, nodes = kernels._trie_nodes_by_item(n, item, 12)
    seen = 0
    for k in range(12):
        for v in nodes[start[k] : start[k + 1]].tolist():
            assert item[v] == k
            path = []
            u = v
            while u > 0:
                path.append(int(item[u]))
                u = parent[u]
            # The rows through a node are those whose items from the node's item up are its path.
            through = [r for r in rows if sorted(x for x in r if x >= k) == sorted(path)]
            assert count[v] == len(through) and depth[v] == len(path)
            assert bool(ends[v]) == any(min(r) == k for r in through)
            common = set.intersection(*({x for x in r if x < k} for r in through))
            assert {b for b in range(12) if int(below[v, 0]) >> b & 1} == common
            seen += 1
    assert seen == n - 1 < items.size
    # Too many nodes for the limit: no tree.
    assert kernels._build_trie(ptr, items, 12, 10)[0] == 0
    # Many rows that share little: given up on the first sixteenth, whatever the limit.
    sparse = random_rows(8, 2048, 200, 0.2)
    ptr = np.concatenate([[0], np.cumsum([len(r) for r in sparse])]).astype(np.int64)
    items = np.concatenate([np.asarray(r, np.int32) for r in sparse])
    assert kernels._build_trie(ptr, items, 200, items.size)[0] == 0
    assert kernels._trie_of_rows(ptr, items, 200, items.size)[0] > 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_children_from_the_prefix_tree_match_the_rows_path(seed):
    # Categorical rows (one value of each of 6 attributes) share most of their paths.
    rng = np.random.default_rng(seed)
    rows = [[3 * a + int(rng.integers(3)) for a in range(6)] for _ in range(400)]
    rows += [list(range(0, 18, 3))] * 5
    for minsup in (1, 4, 20):
        expected = pyfim_closed(rows, minsup)
        prep = _prepare(rows, minsup, None)
        assert as_set(_mine_prepared(prep, BITS_ROOT)) == expected
        assert as_set(_mine_prepared(prep, BITS_NEVER)) == expected
        for max_size in (1, 2, 4):
            filtered = {(s, c) for s, c in expected if len(s) <= max_size}
            assert as_set(_mine_prepared(_prepare(rows, minsup, max_size), BITS_ROOT)) == filtered


@pytest.mark.parametrize("n_occurrences", [1, 2, 63, 64, 65, 130, kernels.SMALL_MAX_ROWS + 1])
def test_nodes_at_bit_mask_word_and_size_limits(n_occurrences):
    # Item 99 occurs in n_occurrences rows with distinct items above it (all of 0..10 are
    # more frequent), so its child has that many merged rows: masks of one word, of several
    # (squeezed to one under a child of at most 64 rows), and one row more than the limit
    # goes the rows path. Repeated rows give the merged rows weights.
    rng = np.random.default_rng(n_occurrences)
    subsets = rng.permutation(1 << 11)[:n_occurrences]
    rows = [[b for b in range(11) if s >> b & 1] + [99] for s in subsets.tolist()]
    rows += [[99, 100]] * 3 + random_rows(5, 1500, 11, 0.5)
    weighted = rows + [r for r in rows[: n_occurrences // 2] for _ in range(int(rng.integers(1, 4)))]
    for data in (rows, weighted):
        for minsup in (2, 30):
            expected = pyfim_closed(data, minsup)
            assert as_set(closed_itemsets(data, minsup)) == expected
            assert as_set(closed_itemsets(data, minsup, max_size=3)) == {(s, c) for s, c in expected if len(s) <= 3}


def test_bit_mask_nodes_with_identical_rows_and_single_items():
    # Weighted (merged) rows, a single frequent item, and nothing frequent under a node.
    rows = [[1, 2, 3]] * 5 + [[1, 2]] * 3 + [[2, 3]] * 2 + [[4]] * 70 + [[1, 4]] + [[7]]
    for minsup in (1, 2, 3, 6, 71, 200):
        assert as_set(closed_itemsets(rows, minsup)) == brute_force(rows, minsup)
    assert as_set(closed_itemsets([[5]] * 80, 1)) == {((5,), 80)}
    assert len(closed_itemsets([[5]] * 80 + [[6]], 100)) == 0


# --- search-space partition -------------------------------------------------------------------


@pytest.mark.parametrize("max_size", [None, 3])
def test_branches_partition_the_result(max_size):
    db = fimi("mushroom")
    full = closed_itemsets(db, 0.1, max_size)
    plan = first_level_branches(db, 0.1, max_size)
    assert len(plan.root) == 1 and plan.root.items == [(85,)]
    costs = [b.cost for b in plan.branches]
    assert costs == sorted(costs, reverse=True) and costs[0] > costs[-1]
    parts = [mine_branch(b) for b in plan.branches]
    for branch, part in zip(plan.branches, parts, strict=False):
        assert part.support[0] == branch.support
    merged = ClosedItemsets.concat([plan.root] + parts)
    assert len(merged) == len(full)
    assert as_set(merged) == as_set(full)


def test_the_search_kernel_gets_one_kind_of_array_from_every_caller(monkeypatch):
    """numba compiles the search once per kind of argument (30-40 s): a search in this
    process, the branches of a plan, and branches as a Ray worker gets them (read-only, from
    the object store) must all call it with the same kinds."""
    kinds = []
    compiled = kernels.enumerate_closed

    def spy(*args):
        kinds.append(tuple(numba.typeof(a) for a in args))
        return compiled(*args)

    monkeypatch.setattr(kernels, "enumerate_closed", spy)
    db = fimi("mushroom")
    closed_itemsets(db, 0.1)
    closed_itemsets([[1, 2], [1, 2, 3], [2]], 1)
    plan = first_level_branches(db, 0.1)
    branches = [b for b in plan.branches if b.weights.size][:3]
    assert branches
    for branch in branches:
        mine_branch(branch)
        for name in ("ptr", "items", "weights", "itemset"):
            getattr(branch, name).flags.writeable = False  # as Ray hands them over
        mine_branch(branch)
    assert len(kinds) == 3 + 2 * len(branches)  # two searches, the plan, the branches twice
    assert len(set(kinds)) == 1, set(kinds)


# Searches as the command line runs them, in a process of their own; prints how many kernels of
# the search numba compiled (not loaded from its cache), and how many of this script's own, as
# the command line's compile listener logs them (outermost compiles).
_LATER_SEARCHES = """
import logging
import sys
import numba
import numpy as np
from neurolake.cluster.progress import CompileNotice
from neurolake.mining.lcm import PackedRows, closed_itemsets, read_fimi

compiled = []

class Names(logging.Handler):
    def emit(self, record):
        compiled.append(record.getMessage().split(" in ")[0])

log = logging.getLogger("neurolake.cluster.progress")
log.setLevel(logging.DEBUG)
log.addHandler(Names())
for package in ("neurolake.mining._lcm_kernels", "__main__"):
    CompileNotice(None, package).install()
closed_itemsets(read_fimi(sys.argv[1]), 0.2)
rows = np.random.default_rng(0).random((2000, 128)) < 0.2
closed_itemsets(PackedRows((np.packbits(rows, axis=1, bitorder="little").view("<u8").astype(np.uint64),), 128), 0.02)

@numba.njit
def own(x):
    return x + 1

own(1)
print(sum(".mining." in name for name in compiled), compiled.count("numba compiled __main__.own"))
"""


@pytest.mark.slow
def test_compile_kernels_leaves_a_later_search_nothing_to_compile(tmp_path):
    """What ``neurolake demo`` has compiled in a process of its own while it ingests
    (:func:`compile_kernels`, on a tiny database) is what later searches of rows and of packed
    bits load from numba's cache: none of the search's kernels compiles again."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    code = "from neurolake.mining.lcm import compile_kernels; compile_kernels()"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=600)
    later = subprocess.run(
        [sys.executable, "-c", _LATER_SEARCHES, str(FIMI_DIR / "mushroom.dat")],
        env=env,
        check=True,
        timeout=600,
        capture_output=True,
        text=True,
    )
    search, script = map(int, later.stdout.split())
    assert script == 1  # the listener sees compiles
    assert search == 0


medium_rows = st.integers(0, 2**32 - 1).flatmap(
    lambda seed: st.tuples(st.just(seed), st.integers(20, 300), st.integers(5, 40), st.floats(0.05, 0.6))
)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(case=medium_rows, minsup=st.integers(1, 12))
def test_random_data_matches_pyfim_property(case, minsup):
    seed, n_rows, n_items, density = case
    # Dense rows of many items at a support of 1 have millions of closed itemsets (one such
    # draw took minutes and 12 GB); keep rows to about 16 items on average.
    assume(n_items * density <= 16)
    rows = random_rows(seed, n_rows, n_items, density)
    expected = pyfim_closed(rows, minsup)
    prep = _prepare(rows, minsup, None)
    for mode in (BITS_NEVER, BITS_ALWAYS, BITS_ROOT):
        assert as_set(_mine_prepared(prep, mode)) == expected


def planted_frames(seed: int, n_frames: int, n_parts: int, rate: float) -> np.ndarray:
    """Binarised activations ``[frames, units] bool`` with two planted co-active groups."""
    rng = np.random.default_rng(seed)
    frames = rng.random((n_frames, n_parts)) < rate
    for group in (np.array([1, 5, 9, 30]), np.array([2, 5, 40, 41, 42])):
        on = rng.random(n_frames) < 0.1
        frames[np.ix_(on, group)] |= rng.random((int(on.sum()), group.size)) < 0.9
    return frames


def test_dense_frames_take_the_bit_path_and_agree():
    frames = planted_frames(0, 6000, 50, 0.2)
    prep = _prepare(frames, 0.02, None)
    lengths = np.diff(prep.ptr)
    # The cost model picks bits for the root of this matrix.
    assert kernels._prefer_bits(prep.labels.size, lengths.size, int(lengths @ lengths), BITS_AUTO)
    expected = as_set(_mine_prepared(prep, BITS_NEVER))
    assert dict(expected)[(1, 5, 9, 30)] >= 0.1 * 6000 * 0.9**4 * 0.9
    assert as_set(closed_itemsets(frames, 0.02)) == expected
    assert as_set(_mine_prepared(prep, BITS_ALWAYS)) == expected
    rows = [np.flatnonzero(r).tolist() for r in frames]
    assert expected == pyfim_closed(rows, math.ceil(0.02 * 6000))
    plan = first_level_branches(frames, 0.02)
    parts = ClosedItemsets.concat([plan.root] + [mine_branch(b) for b in plan.branches])
    assert as_set(parts) == expected


# --- rows projected to internal ids ----------------------------------------------------------


@pytest.mark.parametrize("n_items, row_len", [(40, 10), (130, 40), (1_000, 50), (200_000, 40)])
def test_project_rows_every_path_against_numpy(n_items, row_len):
    """Short rows ranked in place, long rows through a bit mask (few items) or bucketed by
    item (many): every path maps, drops and sorts as numpy does, and drops emptied rows."""
    rng = np.random.default_rng(n_items)
    n = 300
    rows = [np.sort(rng.choice(n_items, size=int(rng.integers(0, 2 * row_len)), replace=False)) for _ in range(n)]
    indptr = np.concatenate([[0], np.cumsum([r.size for r in rows])]).astype(np.int64)
    indices = np.concatenate(rows).astype(np.int64)
    kept = rng.permutation(n_items)[: n_items // 2]  # half the items, in a shuffled order
    remap = np.full(n_items, -1, np.int64)
    remap[kept] = np.arange(kept.size)
    expected = [np.sort(remap[r][remap[r] >= 0]) for r in rows]
    expected = [r for r in expected if r.size]
    ptr, items, weights = kernels.project_rows(indptr, indices, remap, kept.size)
    assert ptr.tolist() == np.concatenate([[0], np.cumsum([r.size for r in expected])]).tolist()
    assert items.dtype == np.int32 and items.tolist() == np.concatenate(expected).tolist()
    assert weights.tolist() == [1] * len(expected)
    for path in (kernels._project_rows_by_mask, kernels._project_rows_by_item):
        ptr2, items2, weights2 = path(indptr, indices, remap, kept.size)
        assert (
            ptr2.tolist() == ptr.tolist()
            and items2.tolist() == items.tolist()
            and weights2.tolist() == weights.tolist()
        )


def _packed(dense: np.ndarray) -> np.ndarray:
    """``[rows, words] uint64`` with item ``x`` at bit ``x % 64`` of word ``x // 64`` (at least
    one word), packed here with numpy."""
    n, m = dense.shape
    width = max(1, -(-m // 64)) * 64
    padded = np.zeros((n, width), bool)
    padded[:, :m] = dense
    return np.packbits(padded, axis=1, bitorder="little").view("<u8").astype(np.uint64)


@pytest.mark.parametrize("m", [0, 1, 63, 64, 65, 130, 2_000])
def test_packed_rows_prepare_as_their_csr(m):
    """Rows given as packed bits (in blocks, some empty; stray bits past the universe) give
    the very database LCM prepares from the same rows' CSR: item supports, common and
    frequent items, their order, the projected rows with emptied ones dropped. Blocks of
    more than 255 rows cross the item counters' emptying."""
    rng = np.random.default_rng(m)
    for trial in range(6):
        blocks = []
        for _ in range(int(rng.integers(1, 4))):
            n = int(rng.integers(0, 700 if trial % 2 else 40))
            block = rng.random((n, m)) < rng.uniform(0.0, 0.5)
            if m and n and trial % 3 == 0:
                block[:, rng.integers(0, m)] = True  # an item in every row: a common item
            blocks.append(block)
        dense = np.concatenate(blocks)
        packed = [_packed(b) for b in blocks]
        if m % 64:
            for words in packed:
                words[:, -1] |= np.uint64(1) << np.uint64(63)  # a bit past the universe
        np.testing.assert_array_equal(sum(kernels.packed_item_counts(words, m) for words in packed), dense.sum(axis=0))
        for minsup in (1, 3, 0.2):
            ours = _prepare(PackedRows(tuple(packed), m), minsup, None)
            theirs = _prepare(dense, minsup, None)
            for name in ("ptr", "items", "weights", "labels", "common"):
                a, b = getattr(ours, name), getattr(theirs, name)
                assert a.dtype == b.dtype and a.tolist() == b.tolist(), name
            assert (ours.n_rows, ours.min_support) == (theirs.n_rows, theirs.min_support)


def test_packed_rows_mine_as_pyfim():
    """Binarised-activation-like rows mined from packed bits, in two blocks, find pyfim's
    closed sets; a block of the wrong width is a spec error."""
    rng = np.random.default_rng(5)
    dense = rng.random((3_000, 70)) < 0.3
    dense[rng.random(3_000) < 0.2, 10:15] = True  # a planted co-active group
    packed = PackedRows((_packed(dense[:1_234]), _packed(dense[1_234:])), 70)
    rows = [np.flatnonzero(r).tolist() for r in dense]
    assert as_set(closed_itemsets(packed, 0.1)) == as_set(closed_itemsets(rows, 0.1)) == pyfim_closed(rows, 300)
    with pytest.raises(SpecError, match="uint64"):
        PackedRows((np.zeros((3, 3), np.uint64),), 70)


@pytest.mark.parametrize("m", [1, 3, 4, 7, 13])
def test_pair_counts_of_bits_against_numpy(m):
    """All pair supports of a vertical bit matrix, four items at a time and the rest one by
    one, over more words than one block: the dense matrix's co-occurrence counts."""
    rng = np.random.default_rng(m)
    dense = rng.random((m, 64 * 300 - 5)) < 0.3
    bits = np.packbits(np.pad(dense, ((0, 0), (0, 5))), axis=1, bitorder="little").view(np.uint64)
    pairs = np.zeros((m, m), np.int64)
    kernels._pair_counts_into(np.ascontiguousarray(bits), pairs)
    as_int = dense.astype(np.int64)
    assert pairs.tolist() == (as_int @ as_int.T).tolist()
