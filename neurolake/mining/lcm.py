"""Closed frequent itemsets with LCM (Uno, Asai, Uchida, Arimura; FIMI 2003/2004).

A transaction is a set of non-negative integer items (in neurolake: a frame and the units
active in it). An itemset is *closed* when no proper superset occurs in exactly the same
transactions; its *support* is the number of transactions containing it. LCM enumerates the
closed itemsets as a tree by prefix-preserving closure extension: a closed set ``P`` has
the child ``Q = C(P ∪ {i})`` for an item ``i`` above the core of ``P`` when ``Q`` adds no
item below ``i``. Every closed set has exactly one parent, so there is no duplicate check and
memory stays linear in the data. Occurrence deliver lists, for every extension item, the
transactions that contain it in one pass, and every conditional database is reduced
(infrequent and closure items dropped, identical transactions merged with weights).

Dense data (binarised activations: many rows, a fair fraction of the units active) is
mined from vertical bit matrices near the root, where pair counts by popcount replace row
scans; a cost model in :mod:`neurolake.mining._lcm_kernels` picks the form per node. Such a
root's children come from a prefix tree of its rows when the rows share their frequent
items (categorical data), and nodes of at most 1024 merged rows are mined from one bit mask
per item.

Conventions (pyfim's with ``zmin=1``, except the second point):

- The empty itemset is never reported.
- The closure of the whole database (the items in every row) is a closed itemset and is
  reported once when it is not empty; pyfim leaves it out.
- ``min_support`` is an absolute row count (``int >= 1``) or a fraction of the rows
  (``float`` in ``(0, 1]``, rounded up: ``ceil(min_support * n_rows)``).
- ``max_size`` keeps the closed itemsets (closed in the whole database) that have at most
  ``max_size`` items; it does not redefine closedness among the short sets.

The search space splits at the first level of the tree into independent branches
(:func:`first_level_branches` builds them all, :func:`mine_branch` mines one), and that split
is how ``LCM(workers=N)`` mines on Ray without ever partitioning the rows. An itemset closed in the
whole database need not be closed in any row partition, so mining row partitions and merging
would be wrong; each branch is instead mined completely from its own conditional database,
the branches produce disjoint sets, and the coordinator only concatenates. The coordinator
does not build the branches: the prepared database goes once through the object store, and
each task runs the root of the search on it and descends only into its branches (the
first-level item ids it is given), so that they are mined exactly as in one process. Branch
sizes are uneven, so the items go out in batches by an estimate of their cost, heaviest
first, the batches shrinking towards the end (guided self-scheduling), with no more tasks in
flight than workers; tasks answer in the narrowest integer types.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa

from neurolake.errors import SpecError
from neurolake.mining import _lcm_kernels as kernels

logger = logging.getLogger(__name__)


__all__ = [
    "LCM",
    "Branch",
    "ClosedItemsets",
    "PackedRows",
    "SearchPlan",
    "Transactions",
    "absolute_support",
    "closed_itemsets",
    "compile_kernels",
    "first_level_branches",
    "mine_branch",
    "read_fimi",
]


@dataclass(frozen=True)
class Transactions:
    """Transactions as a CSR matrix: row ``r`` holds ``indices[indptr[r]:indptr[r + 1]]``.

    Attributes:
        indptr: ``[n_rows + 1] int64`` row starts.
        indices: ``[nnz] int64`` non-negative item ids.
    """

    indptr: np.ndarray
    indices: np.ndarray

    def __post_init__(self) -> None:
        indptr = np.ascontiguousarray(self.indptr, dtype=np.int64)
        indices = np.ascontiguousarray(self.indices, dtype=np.int64)
        if indptr.ndim != 1 or indices.ndim != 1 or indptr.size == 0:
            raise SpecError("CSR transactions need 1-D indptr (n_rows + 1 entries) and indices")
        if indptr[0] != 0 or indptr[-1] != indices.size or np.any(np.diff(indptr) < 0):
            raise SpecError("CSR indptr must start at 0, never decrease and end at len(indices)")
        if indices.size and indices.min() < 0:
            raise SpecError("items must be non-negative integers; renumber negative item ids")
        object.__setattr__(self, "indptr", indptr)
        object.__setattr__(self, "indices", indices)

    def __len__(self) -> int:
        return self.indptr.size - 1

    @classmethod
    def from_any(cls, transactions: Any) -> Transactions:
        """Accept :class:`Transactions`, anything with ``indptr``/``indices`` (a SciPy CSR
        matrix), a 2-D numpy array ``[rows, items]`` (non-zero = present), or an iterable of
        iterables of int items."""
        if isinstance(transactions, Transactions):
            return transactions
        if hasattr(transactions, "indptr") and hasattr(transactions, "indices"):
            return cls(np.asarray(transactions.indptr), np.asarray(transactions.indices))
        if isinstance(transactions, np.ndarray):
            if transactions.ndim != 2:
                raise SpecError(f"a dense transaction matrix must be 2-D [rows, items], got shape {transactions.shape}")
            return cls(*kernels.dense_to_csr(np.ascontiguousarray(transactions)))
        rows_list = [list(row) for row in transactions]
        lengths = np.fromiter((len(row) for row in rows_list), np.int64, len(rows_list))
        indptr = np.zeros(len(rows_list) + 1, np.int64)
        np.cumsum(lengths, out=indptr[1:])
        flat = np.asarray([item for row in rows_list for item in row])
        if flat.size == 0:
            flat = np.zeros(0, np.int64)
        if flat.dtype.kind not in "iu":
            raise SpecError(f"items must be non-negative integers, got {flat.dtype} values such as {flat[0]!r}")
        return cls(indptr, flat)

    def to_lists(self) -> list[list[int]]:
        """The rows as Python lists (the form pyfim and other miners take)."""
        flat = self.indices.tolist()
        bounds = self.indptr.tolist()
        return [flat[bounds[r] : bounds[r + 1]] for r in range(len(self))]


@dataclass(frozen=True)
class PackedRows:
    """Transactions as packed bits: the rows of ``blocks``, one block after the other, each
    ``[rows, words] uint64`` with item ``x`` at bit ``x % 64`` of word ``x // 64``
    (``words = ceil(n_items / 64)``, at least one; bits past ``n_items`` are ignored). LCM
    prepares them without a CSR matrix of their items: binarised activations and DiffNorm's
    groups come this way.

    Attributes:
        blocks: the packed rows, in blocks (a subset of groups mined as one database).
        n_items: size of the item universe.
    """

    blocks: tuple[np.ndarray, ...]
    n_items: int

    def __post_init__(self) -> None:
        n_words = self.n_words
        blocks = tuple(np.ascontiguousarray(b, dtype=np.uint64) for b in self.blocks)
        for b in blocks:
            if b.ndim != 2 or b.shape[1] != n_words:
                raise SpecError(f"packed rows of {self.n_items} items need [rows, {n_words}] uint64, got {b.shape}")
        object.__setattr__(self, "blocks", blocks)

    def __len__(self) -> int:
        return sum(b.shape[0] for b in self.blocks)

    @property
    def n_words(self) -> int:
        """Words per row."""
        return max(1, (self.n_items + 63) // 64)


def read_fimi(path: str) -> Transactions:
    """Read a FIMI ``.dat`` file: one transaction per line, items as space-separated ints.

    Args:
        path: local path or fsspec URL.
    """
    with fsspec.open(path, "rt") as handle:
        lines = handle.read().splitlines()
    tokens = [line.split() for line in lines]
    lengths = np.fromiter((len(row) for row in tokens), np.int64, len(tokens))
    indptr = np.zeros(len(tokens) + 1, np.int64)
    np.cumsum(lengths, out=indptr[1:])
    flat = [tok for row in tokens for tok in row]
    try:
        indices = np.array(flat, dtype=np.int64) if flat else np.zeros(0, np.int64)
    except ValueError as exc:
        raise SpecError(f"{path} is not a FIMI file of integer items: {exc}") from exc
    return Transactions(indptr, indices)


@dataclass(frozen=True, eq=False)
class ClosedItemsets:
    """Closed itemsets with their supports, as a table.

    Itemset ``i`` is ``values[offsets[i]:offsets[i + 1]]`` (increasing item ids).

    Attributes:
        values: ``[total items] int64`` concatenated itemsets.
        offsets: ``[n + 1] int64`` itemset starts.
        support: ``[n] int64`` number of rows containing each itemset.
    """

    values: np.ndarray
    offsets: np.ndarray
    support: np.ndarray

    @classmethod
    def empty(cls) -> ClosedItemsets:
        """No itemsets."""
        return cls(np.zeros(0, np.int64), np.zeros(1, np.int64), np.zeros(0, np.int64))

    @classmethod
    def concat(cls, parts: Iterable[ClosedItemsets]) -> ClosedItemsets:
        """Concatenate results of disjoint searches, in the given order."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        shifts = np.cumsum([0] + [p.values.size for p in parts[:-1]])
        offsets = np.concatenate(
            [np.zeros(1, np.int64)] + [p.offsets[1:] + s for p, s in zip(parts, shifts, strict=False)]
        )
        return cls(
            np.concatenate([p.values for p in parts]),
            offsets,
            np.concatenate([p.support for p in parts]),
        )

    def __len__(self) -> int:
        return self.support.size

    def __iter__(self) -> Iterator[tuple[tuple[int, ...], int]]:
        """Yield ``(itemset, support)`` pairs."""
        return iter(zip(self.items, self.support.tolist(), strict=False))

    @property
    def sizes(self) -> np.ndarray:
        """``[n] int32`` number of items of each itemset."""
        return np.diff(self.offsets).astype(np.int32)

    @cached_property
    def items(self) -> list[tuple[int, ...]]:
        """The itemsets as sorted tuples of ints (built on first access)."""
        flat = self.values.tolist()
        bounds = self.offsets.tolist()
        return [tuple(flat[bounds[i] : bounds[i + 1]]) for i in range(len(self))]

    def to_arrow(self) -> pa.Table:
        """Table with columns ``itemset: list<int64>``, ``support: int64``, ``size: int32``.

        Beyond 2**31 - 1 items in all, ``itemset`` is a ``large_list<int64>``: Arrow lists
        address their values with 32-bit offsets.
        """
        values = pa.array(self.values, pa.int64())
        if self.values.size <= np.iinfo(np.int32).max:
            itemsets = pa.ListArray.from_arrays(pa.array(self.offsets.astype(np.int32)), values)
        else:
            itemsets = pa.LargeListArray.from_arrays(pa.array(self.offsets), values)
        return pa.table(
            {
                "itemset": itemsets,
                "support": pa.array(self.support, pa.int64()),
                "size": pa.array(self.sizes, pa.int32()),
            }
        )


@dataclass(frozen=True, eq=False)
class _Prepared:
    """A database ready for the kernels: frequent items renumbered, rows projected on them
    (unit weights; the kernel merges identical rows itself).

    ``labels[k]`` is the original id of internal item ``k`` (internal ids increase with
    support); ``common`` holds the original ids of the items in every row.
    """

    ptr: np.ndarray
    items: np.ndarray
    weights: np.ndarray
    labels: np.ndarray
    common: np.ndarray
    n_rows: int
    min_support: int
    max_size: int | None

    @property
    def kernel_max_size(self) -> int:
        return _kernel_max_size(self.max_size, self.common)

    @property
    def nothing_below_root(self) -> bool:
        """No frequent item beyond the common ones, or no room for one under ``max_size``."""
        return self.labels.size == 0 or (self.max_size is not None and self.max_size <= self.common.size)


def _kernel_max_size(max_size: int | None, common: np.ndarray) -> int:
    """``max_size`` counted in internal items (the common items are in every set), -1 for
    no limit."""
    return -1 if max_size is None else max_size - common.size


def absolute_support(min_support: int | float, n_rows: int) -> int:
    """Minimum support as a row count: ``int >= 1`` as is, ``float`` in ``(0, 1]`` as
    ``ceil(min_support * n_rows)`` (at least 1)."""
    if isinstance(min_support, bool):
        raise SpecError("min_support must be an int row count or a float fraction, not a bool")
    if isinstance(min_support, (int, np.integer)):
        if min_support < 1:
            raise SpecError(f"an absolute min_support must be >= 1 row, got {min_support}")
        return int(min_support)
    if isinstance(min_support, (float, np.floating)):
        if not 0.0 < min_support <= 1.0:
            raise SpecError(
                f"a relative min_support must be in (0, 1], got {min_support}; pass an int for an absolute row count"
            )
        # Rounding first keeps 0.1 * 30 at 3 rows instead of 4.
        return max(1, math.ceil(round(float(min_support) * n_rows, 9)))
    raise SpecError(f"min_support must be an int or a float, got {type(min_support).__name__}")


def _check_max_size(max_size: int | None) -> int | None:
    if max_size is None:
        return None
    if isinstance(max_size, bool) or not isinstance(max_size, (int, np.integer)) or max_size < 1:
        raise SpecError(f"max_size must be None or an int >= 1, got {max_size!r}")
    return int(max_size)


def _prepare(transactions: Any, min_support: int | float, max_size: int | None) -> _Prepared:
    if isinstance(transactions, PackedRows):
        return _prepare_packed(transactions, min_support, max_size)
    db = Transactions.from_any(transactions)
    max_size = _check_max_size(max_size)
    n_rows = len(db)
    minsup = absolute_support(min_support, n_rows)
    indptr, indices = kernels.canonical_rows(db.indptr, db.indices)
    counts = np.bincount(indices, minlength=1) if indices.size else np.zeros(1, np.int64)
    common = np.flatnonzero(counts == n_rows) if n_rows >= minsup else np.zeros(0, np.int64)
    frequent = np.flatnonzero((counts >= minsup) & (counts < n_rows))
    # Least frequent items first: they get the most extension candidates, and their
    # conditional databases are the smallest.
    labels = frequent[np.argsort(counts[frequent], kind="stable")]
    remap = np.full(counts.size, -1, np.int64)
    remap[labels] = np.arange(labels.size)
    ptr, items, weights = kernels.project_rows(indptr, indices, remap, labels.size)
    return _Prepared(ptr, items, weights, labels, common, n_rows, minsup, max_size)


def _prepare_packed(packed: PackedRows, min_support: int | float, max_size: int | None) -> _Prepared:
    """:func:`_prepare` of rows given as packed bits: the items' supports by counting set
    bits, then every row's frequent items mapped and sorted straight from its bits (the same
    database as from the rows' CSR, which is never made: at a million rows of a hundred
    items it is 800 MB of item ids, and building, checking and projecting it cost more than
    mining)."""
    max_size = _check_max_size(max_size)
    n_rows = len(packed)
    minsup = absolute_support(min_support, n_rows)
    counts = np.zeros(max(packed.n_items, 1), np.int64)
    for block in packed.blocks:
        counts[: packed.n_items] += kernels.packed_item_counts(block, packed.n_items)
    common = np.flatnonzero(counts == n_rows) if n_rows >= minsup else np.zeros(0, np.int64)
    frequent = np.flatnonzero((counts >= minsup) & (counts < n_rows))
    labels = frequent[np.argsort(counts[frequent], kind="stable")]
    remap = np.full(counts.size, -1, np.int64)
    remap[labels] = np.arange(labels.size)
    keep = np.zeros(packed.n_words, np.uint64)
    np.bitwise_or.at(keep, labels // 64, np.left_shift(np.uint64(1), (labels % 64).astype(np.uint64)))
    sizes = [kernels.packed_kept_sizes(block, keep) for block in packed.blocks]
    lengths = np.concatenate([s[s > 0] for s in sizes]) if sizes else np.zeros(0, np.int64)
    ptr = np.zeros(lengths.size + 1, np.int64)
    np.cumsum(lengths, out=ptr[1:])
    items = np.empty(ptr[-1], np.int32)
    pos = 0
    for block, block_sizes in zip(packed.blocks, sizes, strict=True):
        pos = kernels.packed_project(block, keep, remap, labels.size, block_sizes, items, pos)
    return _Prepared(ptr, items, np.ones(lengths.size, np.int64), labels, common, n_rows, minsup, max_size)


def _finish(labels: np.ndarray, common: np.ndarray, out_items, out_ptr, out_supp) -> ClosedItemsets:
    """Map internal ids back to item ids, add the common items, sort every itemset."""
    values, offsets = kernels.finish_itemsets(out_items, out_ptr, labels, common)
    return ClosedItemsets(values, offsets, out_supp.astype(np.int64, copy=False))


def _common_closure(prep: _Prepared) -> ClosedItemsets:
    """The closure of the empty set (items in every row) when it is a reportable set."""
    if (
        prep.common.size == 0
        or prep.n_rows < prep.min_support
        or (prep.max_size is not None and prep.common.size > prep.max_size)
    ):
        return ClosedItemsets.empty()
    return ClosedItemsets(
        np.sort(prep.common).astype(np.int64),
        np.array([0, prep.common.size], np.int64),
        np.array([prep.n_rows], np.int64),
    )


def _read_only(values: np.ndarray) -> np.ndarray:
    """``values`` as an array that cannot be written (a view where it can be). The search's
    kernel gets its database so everywhere, as a Ray worker gets it from the object store:
    numba compiles a kernel once per kind of array, and the search's takes 30-40 s to
    compile on one core (a writable and a read-only database compiled it twice)."""
    if not values.flags.writeable:
        return values
    view = values.view()
    view.flags.writeable = False
    return view


def _enumerate_from_root(
    prep: _Prepared, keep_children: bool, bits_mode: int = kernels.BITS_AUTO, only: np.ndarray | None = None
) -> tuple:
    """The kernel's search from the root; ``keep_children`` also returns the first-level
    branches' conditional databases instead of descending into them; ``only`` (``[n_items]
    bool``) restricts the search to the first-level branches of those items."""
    return kernels.enumerate_closed(
        _read_only(prep.ptr),
        _read_only(prep.items),
        _read_only(prep.weights),
        prep.labels.size,
        -1,
        _read_only(np.zeros(0, np.int32)),
        prep.min_support,
        prep.kernel_max_size,
        keep_children,
        bits_mode,
        np.zeros(0, np.bool_) if only is None else only,
    )


def _mine_prepared(prep: _Prepared, bits_mode: int = kernels.BITS_AUTO) -> ClosedItemsets:
    root = _common_closure(prep)
    if prep.nothing_below_root:
        return root
    out_items, out_ptr, out_supp, *_ = _enumerate_from_root(prep, keep_children=False, bits_mode=bits_mode)
    return ClosedItemsets.concat([root, _finish(prep.labels, prep.common, out_items, out_ptr, out_supp)])


def closed_itemsets(
    transactions: Any, min_support: int | float, max_size: int | None = None, workers: int | None = 1
) -> ClosedItemsets:
    """All closed itemsets with support >= ``min_support`` (and at most ``max_size`` items).

    Args:
        transactions: rows as an iterable of iterables of non-negative ints, a 2-D numpy
            array ``[rows, items]`` (non-zero = present), CSR (:class:`Transactions`, a
            SciPy CSR matrix), or packed bits (:class:`PackedRows`).
        min_support: ``int >= 1`` rows, or ``float`` in ``(0, 1]`` as a fraction of the rows.
        max_size: report only closed itemsets of at most this many items (None: all).
        workers: as for :class:`LCM`.

    Returns:
        The closed itemsets, each once; the empty set is not reported.
    """
    return LCM(min_support, max_size, workers=workers).fit(transactions).discover()


def compile_kernels() -> None:
    """Compile the search's kernels for the argument types every search gives them (or load
    them from numba's disk cache, where a process compiled them before): searches of rows and
    of packed bits, on a tiny database. A process that mines later then loads them instead
    of compiling them (the search's kernel takes 30-40 s on one core), so a command can have
    this done in a process of its own while it does other work (``neurolake demo``)."""
    closed_itemsets([[0, 1], [0, 1, 2], [1], [1, 2]], 1)
    packed = np.zeros((4, 1), np.uint64)
    packed[:, 0] = [0b011, 0b111, 0b010, 0b110]
    closed_itemsets(PackedRows((packed,), 3), 1)


class LCM:
    """Closed frequent itemset miner (estimator style).

    >>> LCM(min_support=2).fit([[1, 2], [1, 2, 3], [2]]).discover().items
    [(2,), (1, 2)]

    Args:
        min_support: ``int >= 1`` rows, or ``float`` in ``(0, 1]`` as a fraction of the rows.
        max_size: report only closed itemsets of at most this many items (None: all). The
            sets reported are closed in the whole database; ``max_size`` only filters them
            (and prunes the search, since a closed set's descendants are larger).
        workers: 1 mines in this process (in enumeration order); more mine the first-level
            branches as that many Ray tasks at once (on ``$RAY_ADDRESS``, else a local Ray),
            and ``None`` as many as the cluster has CPUs. The set of ``(itemset, support)``
            pairs is the same either way.
    """

    def __init__(self, min_support: int | float, max_size: int | None = None, workers: int | None = 1) -> None:
        absolute_support(min_support, 1)  # fail on a bad value now, not at fit time
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise SpecError(f"workers must be None or an int >= 1, got {workers!r}")
        self.min_support = min_support
        self.max_size = _check_max_size(max_size)
        self.workers = workers
        self._prepared: _Prepared | None = None

    def fit(self, transactions: Any) -> LCM:
        """Validate and reduce ``transactions`` (see :func:`closed_itemsets` for the forms)."""
        start = time.perf_counter()
        self._prepared = _prepare(transactions, self.min_support, self.max_size)
        prep = self._prepared
        logger.debug(
            "LCM fit: %d rows, %d frequent items, %d rows with a frequent item, min support %d rows (%.3f s)",
            prep.n_rows,
            prep.labels.size,
            prep.weights.size,
            prep.min_support,
            time.perf_counter() - start,
        )
        return self

    @property
    def n_rows_(self) -> int:
        """Rows of the fitted database."""
        return self._fitted().n_rows

    @property
    def min_support_(self) -> int:
        """The minimum support in rows that the search uses."""
        return self._fitted().min_support

    def discover(self) -> ClosedItemsets:
        """Mine the fitted database."""
        start = time.perf_counter()
        if self.workers == 1:
            result = _mine_prepared(self._fitted())
        else:
            result = _mine_on_workers(self._fitted(), self.workers)
        logger.debug("LCM: %d closed itemsets in %.3f s", len(result), time.perf_counter() - start)
        return result

    def _fitted(self) -> _Prepared:
        if self._prepared is None:
            raise SpecError("call LCM.fit(transactions) before discover()")
        return self._prepared


@dataclass(frozen=True, eq=False)
class Branch:
    """One first-level branch of the search: a child of the root and everything below it.

    Attributes:
        itemset: ``[size] int32`` internal ids of the branch's closed itemset.
        support: its support (rows).
        core: internal id of the item whose closure created it.
        ptr, items, weights: its conditional database (see
            :mod:`neurolake.mining._lcm_kernels`): merged, or unmerged with unit weights
            when it is dense enough to be mined from bits; empty when nothing lies below it.
        cost: item visits to count the branch's children from that database (the sum over
            its rows of row length times items above the core), the scheduling estimate of
            its work.
        labels: ``[n_items] int64`` original id of every internal id (shared by branches).
        common: ``[c] int64`` original ids of the items in every row.
        min_support: absolute minimum support.
        max_size: largest itemset size reported, None for no limit.
    """

    itemset: np.ndarray
    support: int
    core: int
    ptr: np.ndarray
    items: np.ndarray
    weights: np.ndarray
    labels: np.ndarray = field(repr=False)
    common: np.ndarray = field(repr=False)
    min_support: int
    max_size: int | None
    cost: int


def _branch_cost(ptr: np.ndarray, items: np.ndarray, core: int) -> int:
    above = np.concatenate([[0], np.cumsum(items > core)])
    return int(np.diff(ptr) @ (above[ptr[1:]] - above[ptr[:-1]]))


@dataclass(frozen=True, eq=False)
class SearchPlan:
    """The search split for parallel mining.

    Attributes:
        root: the closure of the whole database when it is reported (0 or 1 itemset).
        branches: independent branches, largest cost first; ``root`` plus the results of
            :func:`mine_branch` on every branch is the full result, each set exactly once.
    """

    root: ClosedItemsets
    branches: list[Branch]


def first_level_branches(transactions: Any, min_support: int | float, max_size: int | None = None) -> SearchPlan:
    """Split the search into its first-level branches (the children of the root).

    The prefix-preservation test of each child is done here, so only branches that hold
    at least their own closed itemset are returned. Arguments as for
    :func:`closed_itemsets`.
    """
    return _plan(_prepare(transactions, min_support, max_size))


def _plan(prep: _Prepared) -> SearchPlan:
    root = _common_closure(prep)
    if prep.nothing_below_root:
        return SearchPlan(root, [])
    out_items, out_ptr, out_supp, n_out, iarena, larena, children = _enumerate_from_root(prep, keep_children=True)
    branches = []
    for i in range(n_out):
        core, ptr_off, n, lo, hi = (int(v) for v in children[i])
        ptr = larena[ptr_off : ptr_off + n + 1] - lo if n else np.zeros(1, np.int64)
        items = iarena[lo:hi].copy()
        branches.append(
            Branch(
                itemset=out_items[out_ptr[i] : out_ptr[i + 1]].copy(),
                support=int(out_supp[i]),
                core=core,
                ptr=ptr,
                items=items,
                weights=larena[ptr_off + n + 1 : ptr_off + 2 * n + 1].copy(),
                labels=prep.labels,
                common=prep.common,
                min_support=prep.min_support,
                max_size=prep.max_size,
                cost=_branch_cost(ptr, items, core),
            )
        )
    branches.sort(key=lambda b: b.cost, reverse=True)
    logger.debug(
        "LCM plan: %d first-level branches, total cost %d item visits",
        len(branches),
        sum(b.cost for b in branches),
    )
    return SearchPlan(root, branches)


def mine_branch(branch: Branch) -> ClosedItemsets:
    """All closed itemsets of one branch: its own itemset and every one below it."""
    own = _finish(
        branch.labels,
        branch.common,
        branch.itemset,
        np.array([0, branch.itemset.size], np.int64),
        np.array([branch.support], np.int64),
    )
    if branch.weights.size == 0:
        return own
    out_items, out_ptr, out_supp, *_ = kernels.enumerate_closed(
        _read_only(branch.ptr),
        _read_only(branch.items),
        _read_only(branch.weights),
        branch.labels.size,
        branch.core,
        _read_only(branch.itemset),
        branch.min_support,
        _kernel_max_size(branch.max_size, branch.common),
        False,
        kernels.BITS_AUTO,
        np.zeros(0, np.bool_),
    )
    return ClosedItemsets.concat([own, _finish(branch.labels, branch.common, out_items, out_ptr, out_supp)])


# Guided self-scheduling: a batch closes when it holds 1 / (_BATCH_SPLIT * workers) of the
# cost not yet batched, so batches shrink towards the end and the workers, pulling them
# heaviest first, finish close together; none is smaller than _BATCH_FLOOR of the total, as
# a task costs a few milliseconds whatever it holds. On 100k frames x 200 units this makes
# about 30 batches, and the measured branch times give 99 % of a perfect split over 2 workers.
_BATCH_SPLIT = 4
_BATCH_FLOOR = 1 / 200


def _batches_by_cost(costs: Sequence[int] | np.ndarray, workers: int) -> list[list[int]]:
    """Positions of ``costs`` grouped into batches in decreasing cost, heaviest batch first;
    a batch closes once it holds ``1 / (4 * workers)`` of the cost not yet batched (at least
    1/200 of the total), so a heavy branch is a batch of its own and the last ones are small."""
    costs = np.asarray(costs, dtype=np.float64)
    total = float(costs.sum())
    remaining = total
    batches: list[list[int]] = []
    current: list[int] = []
    current_cost = 0.0
    for position in np.argsort(-costs, kind="stable").tolist():
        current.append(position)
        current_cost += costs[position]
        if current_cost >= max(remaining / (_BATCH_SPLIT * max(1, workers)), total * _BATCH_FLOOR, 1.0):
            batches.append(current)
            remaining -= current_cost
            current, current_cost = [], 0.0
    if current:
        batches.append(current)
    return batches


def plan_batches(branches: list[Branch], workers: int) -> list[list[Branch]]:
    """Group branches into batches by their cost, heaviest batch first (as the distributed
    search groups its first-level branches)."""
    return [[branches[i] for i in batch] for batch in _batches_by_cost([b.cost for b in branches], workers)]


def _mine_cores(prep: _Prepared, cores: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Task body: the closed itemsets of the first-level branches of the items ``cores``, as
    ``(values, sizes, support)`` in the narrowest integer types (see :func:`_widen`).

    The task runs the root of the search again (one pass over the database: its bit
    matrix and pair counts, about 20 ms on 100k frames x 200 units) and descends only into
    ``cores``, so each branch is mined exactly as the single-process search mines it: the
    dense children's bit matrices cut from the root's, the same choice between merged rows
    and bits, one set of arenas for the whole batch. Deriving every branch's database on
    its own from the rows containing its item did 6-21 % more work in all on binarised
    activations (a counting pass per branch, branches that merge well mined from bits,
    bit matrices built from rows).
    """
    only = np.zeros(prep.labels.size, np.bool_)
    only[cores] = True
    out_items, out_ptr, out_supp, *_ = _enumerate_from_root(prep, keep_children=False, only=only)
    found = _finish(prep.labels, prep.common, out_items, out_ptr, out_supp)
    return _narrow(found.values), _narrow(found.sizes), _narrow(found.support)


def _narrow(values: np.ndarray) -> np.ndarray:
    """Non-negative ints in the smallest unsigned type that holds them (for the trip back)."""
    return values.astype(np.min_scalar_type(int(values.max()))) if values.size else values


def _widen(values: np.ndarray, sizes: np.ndarray, support: np.ndarray) -> ClosedItemsets:
    """The :class:`ClosedItemsets` of a :func:`_mine_cores` answer."""
    offsets = np.zeros(sizes.size + 1, np.int64)
    np.cumsum(sizes, out=offsets[1:])
    return ClosedItemsets(values.astype(np.int64), offsets, support.astype(np.int64))


def _mine_on_workers(prep: _Prepared, workers: int | None) -> ClosedItemsets:
    """The closed itemsets of ``prep`` with its first-level branches mined as tasks on the
    cluster: the database travels once through the object store, every task mines its
    branches from it (:func:`_mine_cores`), and the workers pull batches of branches
    heaviest first."""
    root = _common_closure(prep)
    if prep.nothing_below_root:
        return root
    from neurolake.cluster.pool import cluster_cpus, task_map

    workers = workers or cluster_cpus()
    costs = kernels.first_level_costs(prep.ptr, prep.items, prep.labels.size)
    batches = _batches_by_cost(costs, workers)
    logger.info("LCM on %d workers: %d first-level items in %d batches", workers, costs.size, len(batches))
    found = task_map(_mine_cores, batches, workers=workers, shared=prep)
    return ClosedItemsets.concat([root, *(_widen(*part) for part in found)])
