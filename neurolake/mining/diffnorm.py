r"""DiffNorm: the difference and the norm between databases, by MDL.

Budhathoki & Vreeken, "The difference and the norm — characterising similarities and
differences between databases", ECML PKDD 2015, pp. 206-223. Given groups of frames
``D_1..D_k`` over one item universe (e.g. the frames of a model that it got wrong and those
it got right), DiffNorm finds pattern sets ``S_j`` for subsets ``j`` of the groups, so that
the patterns shared by several groups (the norm) and those that describe one group (the
difference) come out separately and without redundancy.

Encoding (the paper's MDL score, Sec. 3; the choices its text leaves open are stated)
--------------------------------------------------------------------------------------
Items ``I = {0..m-1}``; groups ``i = 1..k``; a family ``J`` of subsets of ``{1..k}``
(default: every ``{i}`` and ``{1..k}``); the model is ``S = {S_j : j ∈ J}``, a pattern lying
in at most one ``S_j``. Group ``i`` is encoded with its coding set

    C_i = I ∪ ⋃_{j ∈ J, i ∈ j} S_j.

*Cover.* Each transaction ``t`` of ``D_i`` is covered greedily by the elements of ``C_i`` in
standard cover order — ``|X|`` descending, ``supp_i(X)`` (rows of ``D_i`` containing ``X``)
descending, ``X`` lexicographically ascending — taking ``X`` when it lies inside the part of
``t`` not yet covered; singletons cover the rest. ``usg_i(X)`` is the number of transactions
of ``D_i`` whose cover uses ``X`` and ``U_i = Σ_{X ∈ C_i} usg_i(X)``.

*Codes.* Shannon-optimal code lengths from the usages, for every ``X ∈ C_i`` with
``usg_i(X) > 0`` (unused elements get no code)::

    L(code_i(X)) = -log2(usg_i(X) / U_i)

and the standard code of the items over all groups together, with ``s(x) = Σ_i supp_i({x})``::

    L_ST(x) = -log2(s(x) / Σ_{y ∈ I} s(y))

*Data.* ``L(D_i | C_i) = Σ_{X ∈ C_i, usg_i(X) > 0} usg_i(X) · L(code_i(X))``.

*Model.* The model sends the number of patterns and then every pattern: the subset it
belongs to (uniform over ``J``), its length, and its items in the standard code; every
coding set sends the code of each element it uses (Krimp's code table cost, with the
singleton column of ``C_i`` spelled out in the standard code)::

    L(S) = L_N(|S| + 1) + Σ_{j ∈ J} Σ_{X ∈ S_j} ( log2|J| + L_N(|X|) + Σ_{x ∈ X} L_ST(x) )
         + Σ_i [ Σ_{X ∈ C_i \ I, usg_i(X) > 0} L(code_i(X))
                 + Σ_{x ∈ I, usg_i({x}) > 0} ( L_ST(x) + L(code_i({x})) ) ]

with ``|S| = Σ_j |S_j|``. ``L_N`` is Rissanen's universal code for integers ``n >= 1``:
``L_N(n) = log2(c0) + log2(n) + log2(log2(n)) + ...`` (positive terms only),
``c0 = 2.865064``; ``|S| + 1`` because ``S`` may be empty. Sending one count for the whole
model and a subset label per pattern (rather than a count ``L_N(|S_j| + 1)`` per subset)
makes a pattern cost the same whichever set it joins: ``L_N`` grows irregularly for small
counts (``L_N(2) - L_N(1) = 1`` bit but ``L_N(3) - L_N(2) ≈ 1.25`` bits), which would
otherwise pull patterns into whichever set is still empty. Where a pattern goes is thus
decided by the data costs alone, and on a tie (no group outside the smaller subset uses
it) the subset with fewer groups wins.

*Score.* ``L(D, S) = L(S) + Σ_i L(D_i | C_i)`` bits; ``L(D, ∅)`` is the same with every
``S_j`` empty (singletons only) and ``L% = 100 · L(D, S) / L(D, ∅)``.

*Dense noise.* A row costs the sum of its codes, as in Krimp, so the code pays for an order
among a row's codes that a set does not have; merging two elements that are often used
together saves about ``log2(codes per row)`` bits per use, even for independent items. With
a few items per row that stays below a pattern's model cost (independent data: L% ≈ 100),
but with tens of items per row pairs that meet by chance pay for themselves: on
independent 2,000 x 100 groups L% is 99.9 at 5 % density (21 pairs), 95 at 10 % and 88 at
20 % (both stopped by ``max_iterations=500``).

Search (the paper's Sec. 4, Krimp- and Slim-style)
--------------------------------------------------
1. Closed candidates: the closed frequent itemsets of every ``j ∈ J`` (LCM on the rows of
   the groups in ``j``, :mod:`neurolake.mining.lcm`, with ``mine_workers``) of two or
   more items, in standard
   candidate order (support descending, length descending, lexicographic; support as the
   fraction of the rows of the subset where the itemset is most frequent, so that a small
   group's patterns do not queue behind a large group's), the first ``max_candidates``. Each in turn is tried in every
   ``S_j``; it goes where the total length drops most, if it drops at all.
2. Slim combinations: for every pair of elements used together in some cover of ``D_i``,
   their union with an estimated usage of the rows using both; the estimated gain of the
   union in ``S_j`` sums the estimated data gains over the groups ``i ∈ j`` and pays its
   model cost once. Unions are tried by estimated gain (the best ``max_candidates``); each
   whose exact placement lowers the total (against the model as it is at that moment) is
   accepted, going down the list, and after ``slim_batch`` acceptances (default 8; 1 is
   Slim's own rule) or at the end of the list the pairs are rebuilt. The search stops when a
   freshly built list holds nothing that helps.
3. Every acceptance is followed by pruning: a model pattern whose usage fell in some group
   is removed when that lowers the total (lowest usage first), and the patterns whose usage
   fell through a removal are tried too.
4. Steps 1-3 repeat until a round accepts nothing (or ``max_iterations`` acceptances).

"Lowers the total" means by more than ``1e-6`` bits, so that rounding in sums of many
code lengths cannot register as a gain; the search therefore cannot cycle. Lengths are
summed with :func:`math.fsum`, which makes them independent of summation order.

Cover and usage counting goes through a :class:`UsageCounter`: :class:`LocalUsageCounter`
runs the numba kernels of :mod:`neurolake.mining._diffnorm_kernels` on whole groups, and
:class:`PartitionedUsageCounter` (``workers > 1``) counts row partitions on Ray actors.
Usages are integers, so both yield the same search, bit for bit. Covers are incremental:
adding or removing ``X`` changes only the covers of rows that contain ``X``, so only those
rows are covered again, under the old and the new coding set, and the difference of the two
usage vectors updates the whole-group usages exactly. The counters find those rows from
each group's item columns (one bit per row for each item, as many bytes as the rows): the
AND of the pattern's items' columns, instead of a test of every row. They keep each row's
cover under the current table (the few patterns it uses, :class:`_Covers`), so a row is
covered again from its cover before the pattern's position, and not at all where the
pattern inserted does not fit there or the one removed was not used. Slim's pair
statistics (how many covers use two elements together) are kept the same way: counted once
per group (band by band of the matrix, whose rows for a band stay in cache while every
cover adds its pairs), then updated from the rows holding every accepted or pruned pattern,
only for the pairs holding an element whose use changed
(:func:`~neurolake.mining._diffnorm_kernels.co_usage_delta`, from the covers kept before and
after the change where the counter has them); the updates wait
until Slim's list is built next and are then made in one round, each matrix renumbered once
(:meth:`UsageCounter.co_usage_sequence`; on Ray every actor sends the sparse changes of its
partition's counts). The estimated gains of all pairs come from one numba pass
(:func:`~neurolake.mining._diffnorm_kernels.slim_gains_tabled`) with ``x log2 x`` read from a
table of the integer usages made once per search (up to the largest group's rows) and, for the
usages' total less a pair's co-usage, from a window made per list, keeping only the pairs that
can make the list.

On Ray (``workers > 1``) every actor holds a partition of each group's rows and the search
itself runs on the first actor (:meth:`_RowPartition.search`): it counts its own partition in
its process while the other actors count theirs, so no trip leaves the machine for a share of
the rows, and the process that called :meth:`DiffNorm.fit` only mines the closed candidates
(while the actors start) and takes the fitted state back. A round trip to the other actors
costs milliseconds: candidates go in batches that start at one and double while none helps,
the supports of the next candidates travel in one round, the actors hold each group's current
table (a trip names the others by one pattern in or out of it), and the search computes the
groups' pair gains on up to ``workers`` threads.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
import pyarrow as pa

from neurolake.cluster.channel import Channel, ChannelHost, spin_where_cores
from neurolake.cluster.claims import ClaimBoard, claims_possible
from neurolake.errors import NeurolakeError, SpecError
from neurolake.mining import _diffnorm_kernels as kernels
from neurolake.mining.lcm import ClosedItemsets, PackedRows, absolute_support, closed_itemsets

logger = logging.getLogger(__name__)

__all__ = [
    "BitMatrix",
    "CoUsageChange",
    "DiffNorm",
    "DiffNormPattern",
    "DiffNormResult",
    "LocalUsageCounter",
    "PartitionedUsageCounter",
    "UsageCounter",
    "default_subsets",
    "diffnorm",
    "universal_code_length",
]

# A drop in total length smaller than this (bits) is rounding, not a gain.
_MIN_GAIN = 1e-6
# Rissanen's normalising constant for the universal integer code.
_LOG2_C0 = math.log2(2.865064)
# On Ray, the actor that searches holds more rows than each other actor, since their shares
# of a count come back a trip later: (1 + t) / (1 - t) times as many, t being a trip's time
# against a count's, which falls as the rows grow. On 2 cores, 100k frames x 2,000 units,
# 2 workers: 1.3 took 18.5 / 18.7 s, 1 took 20.9 / 20.2 s, 1.6 took 19.9 / 19.0 s
# (interleaved), so t = 0.13 at 100k rows.
_TRIP_SHARE_ROWS = 0.13 * 100_000


def _searcher_share(n_rows: int) -> float:
    """How many times the rows of each other actor the searching actor holds, for a search
    over ``n_rows`` rows: 1.3 at 100k rows, 1.03 at 1 M."""
    t = min(0.5, _TRIP_SHARE_ROWS / max(n_rows, 1))
    return (1 + t) / (1 - t)


# How long both ends of a trip spin for the next message before they sleep: a search's own
# steps between its trips took 4.3 ms on average at 2 M frames on 2 workers (3.5 s over 823
# trips).
_TRIP_SPIN_S = 0.02

# 1 / golden ratio: the step of the sequence that deals rows to the actors (see _row_owners).
_DEAL_STEP = (math.sqrt(5) - 1) / 2


def _row_owners(n_rows: int, weights: np.ndarray) -> np.ndarray:
    """``[n_rows] int64``: the partition each row goes to, in proportion to ``weights``. Row
    ``r`` goes to the partition whose share of ``[0, 1)`` holds ``r / golden ratio mod 1``,
    a sequence that spreads every run of consecutive rows over the shares within a few rows
    of their size. Rows in the order of a corpus (by utterance, speaker, chapter) hold the
    same patterns in long runs; cut into contiguous blocks, one actor would hold most of such
    a pattern's rows and count them while the others wait."""
    ends = np.cumsum(weights, dtype=np.float64)
    ends = ends[:-1] / ends[-1]
    return np.searchsorted(ends, (np.arange(n_rows, dtype=np.float64) * _DEAL_STEP) % 1.0, side="right")


def _deal(rows: np.ndarray, weights: np.ndarray) -> list[np.ndarray]:
    """``rows`` dealt into ``len(weights)`` partitions as :func:`_row_owners` assigns them,
    each in the rows' order; one partition is ``rows`` itself, not a copy."""
    if len(weights) == 1:
        return [rows]
    owners = _row_owners(rows.shape[0], weights)
    return [rows[owners == w] for w in range(len(weights))]


Itemset = tuple[int, ...]
Subset = tuple[int, ...]
UsageRequest = tuple[int, np.ndarray, np.ndarray]
# ``(group, old table, new table, within, pos)``: see UsageCounter.usage_changes.
UsageChange = tuple[int, np.ndarray, np.ndarray, np.ndarray, int]


def universal_code_length(n: int) -> float:
    """``L_N(n)`` in bits: Rissanen's universal code for an integer ``n >= 1``."""
    if n < 1:
        raise SpecError(f"the universal integer code is defined for n >= 1, got {n}")
    total = _LOG2_C0
    x = float(n)
    while True:
        x = math.log2(x)
        if x <= 0.0:
            return total
        total += x


def default_subsets(n_groups: int) -> list[Subset]:
    """Every group alone and all groups together: ``[(0,), (1,), ..., (0, .., k-1)]``."""
    subsets: list[Subset] = [(i,) for i in range(n_groups)]
    if n_groups > 1:
        subsets.append(tuple(range(n_groups)))
    return subsets


# Every byte with its bits in reverse order (``np.packbits``' default order to the words').
_REVERSED_BITS = np.packbits(np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1), axis=1, bitorder="little")
_REVERSED_BITS = _REVERSED_BITS[:, 0]


@dataclass(frozen=True, eq=False)
class BitMatrix:
    """A boolean matrix packed 64 items to a word: item ``x`` is bit ``x % 64`` of word
    ``x // 64``.

    Attributes:
        words: ``[rows, ceil(n_items / 64)] uint64``.
        n_items: number of columns (items).
    """

    words: np.ndarray
    n_items: int

    def __post_init__(self) -> None:
        words = np.ascontiguousarray(self.words, dtype=np.uint64)
        if words.ndim != 2 or words.shape[1] != kernels.words_for(self.n_items):
            raise SpecError(
                f"a BitMatrix of {self.n_items} items needs [rows, "
                f"{kernels.words_for(self.n_items)}] uint64 words, got shape {words.shape}"
            )
        object.__setattr__(self, "words", words)

    @classmethod
    def from_dense(cls, dense: np.ndarray) -> BitMatrix:
        """Pack a ``[rows, items]`` matrix (non-zero = present)."""
        dense = np.asarray(dense)
        if dense.ndim != 2:
            raise SpecError(f"a group must be a 2-D [rows, items] matrix, got shape {dense.shape}")
        return cls(kernels.pack_rows(dense), dense.shape[1])

    @classmethod
    def from_packbits(cls, packed: np.ndarray, n_items: int, bitorder: Literal["big", "little"] = "big") -> BitMatrix:
        """Take ``np.packbits(dense, axis=1, bitorder=bitorder)`` output of ``n_items`` columns:
        its bytes become the words' (bits reversed within each byte for ``"big"``), with no
        ``[rows, items]`` matrix on the way; bits past ``n_items`` are cleared."""
        packed = np.asarray(packed, dtype=np.uint8)
        if packed.ndim != 2 or packed.shape[1] != (n_items + 7) // 8:
            raise SpecError(
                f"packed bits of {n_items} items need [rows, {(n_items + 7) // 8}] uint8, got shape {packed.shape}"
            )
        out = np.zeros((packed.shape[0], kernels.words_for(n_items) * 8), np.uint8)
        out[:, : packed.shape[1]] = _REVERSED_BITS[packed] if bitorder == "big" else packed
        if n_items % 8:
            out[:, n_items // 8] &= np.uint8((1 << (n_items % 8)) - 1)
        return cls(out.view("<u8").astype(np.uint64, copy=False), n_items)

    def to_dense(self) -> np.ndarray:
        """``[rows, n_items] bool``."""
        as_bytes = self.words.astype("<u8", copy=False).view(np.uint8)
        bits = np.unpackbits(as_bytes, axis=1, count=self.n_items, bitorder="little")
        return bits.astype(bool)

    def __len__(self) -> int:
        return self.words.shape[0]


def _as_bitmatrix(group: Any) -> BitMatrix:
    return group if isinstance(group, BitMatrix) else BitMatrix.from_dense(group)


class CoUsageChange(NamedTuple):
    """One table change for :meth:`UsageCounter.co_usage_change`: group ``group``'s co-usages
    ``counts`` under table ``old``, which becomes ``new`` with the pattern ``within`` inserted
    at (``add``) or removed from position ``pos``. ``spare``: a matrix of the group's co-usages
    that the caller holds no more, whose memory the new co-usages may take (see
    :func:`_renumbered_once`); the new ones are then a view of it. Like ``counts``, it is read
    from a group's first change of a sequence only."""

    group: int
    counts: np.ndarray
    old: np.ndarray
    new: np.ndarray
    within: np.ndarray
    pos: int
    add: bool
    spare: np.ndarray | None = None


class UsageCounter(ABC):
    """Counts supports, cover usages and co-usages over the rows of ``k`` groups.

    Tables are ``[p, W] uint64`` patterns in cover order (see
    :mod:`neurolake.mining._diffnorm_kernels`). Implementations may split the rows any way
    they like as long as they return the sums over all rows.
    """

    n_items: int
    n_groups: int
    #: How many candidate evaluations the search should send per call of :meth:`usage_changes`.
    batch_size: int = 1

    @abstractmethod
    def supports(self, patterns: np.ndarray) -> np.ndarray:
        """``[k, p] int64``: rows of each group containing each of ``patterns [p, W]``."""

    @abstractmethod
    def usages(self, requests: Sequence[UsageRequest]) -> list[tuple[np.ndarray, np.ndarray]]:
        """For each ``(group, table, within)``: the pattern and singleton usages
        (``[p] int64``, ``[n_items] int64``) of the cover of the group's rows that contain
        the itemset ``within [W]`` (all zeros: every row)."""

    def usage_changes(self, requests: Sequence[UsageChange]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """For each ``(group, old, new, within, pos)``, ``new`` being ``old`` with one pattern
        inserted at or removed from position ``pos``: the pattern usages (``[p_old] int64``,
        ``[p_new] int64``) of the covers under ``old`` and under ``new`` of the group's rows
        that contain ``within``, and the singleton usages under ``new`` minus those under
        ``old`` (``[n_items] int64``). Counted here as two :meth:`usages`; a counter holding
        the rows covers each row under both tables at once."""
        pairs = [request for i, old, new, within, _ in requests for request in ((i, old, within), (i, new, within))]
        answers = self.usages(pairs)
        return [
            (old_pat, new_pat, new_items - old_items)
            for (old_pat, old_items), (new_pat, new_items) in zip(answers[::2], answers[1::2], strict=True)
        ]

    @abstractmethod
    def co_usages(self, requests: Sequence[tuple[int, np.ndarray]]) -> list[np.ndarray]:
        """For each ``(group, table)``: ``[p + n_items, p + n_items] int32`` rows whose cover
        uses both elements (patterns first, then singletons; filled above the diagonal)."""

    def co_usage_change(
        self, group: int, counts: np.ndarray, old: np.ndarray, new: np.ndarray, within: np.ndarray, pos: int, add: bool
    ) -> np.ndarray:
        """The co-usages of table ``new``, given ``counts`` (those of ``old``): ``new`` is ``old``
        with the pattern ``within`` inserted at (``add``) or removed from position ``pos``.
        Counted again from scratch here; a counter holding the rows may update instead."""
        return self.co_usages([(group, new)])[0]

    def co_usage_sequence(self, changes: Sequence[CoUsageChange]) -> dict[int, np.ndarray]:
        """The co-usages of each group after ``changes``, made one after the other: a change
        of a group that an earlier one changed applies to that one's result (only the first
        change of a group brings its ``counts``)."""
        latest: dict[int, np.ndarray] = {}
        for change in changes:
            counts = latest.get(change.group, change.counts)
            latest[change.group] = self.co_usage_change(
                change.group, counts, change.old, change.new, change.within, change.pos, change.add
            )
        return latest

    def close(self) -> None:  # noqa: B027 - optional to override: most counters hold nothing
        """Release whatever the counter holds (nothing for the local one)."""


def _same_table(a: np.ndarray, b: np.ndarray) -> bool:
    return a is b or (a.shape == b.shape and np.array_equal(a, b))


class _CountedChange(NamedTuple):
    """A change counted by :meth:`LocalUsageCounter.usage_changes` with covers kept: the
    covers of ``selected`` (the rows holding ``within``) under ``new`` it made, kept if the
    search takes the change."""

    version: int
    new: np.ndarray
    pos: int
    add: bool
    within: np.ndarray
    selected: np.ndarray
    new_cov: np.ndarray
    new_n: np.ndarray


class _TakenStep(NamedTuple):
    """A change the covers of a group moved by (:meth:`_Covers.take`), kept until its
    co-usage change is counted: the covers of its rows under ``old`` (``was_*``) and under
    its ``change.new`` (``change.new_*``), so that count tests no pattern."""

    old: np.ndarray
    change: _CountedChange
    was_cov: np.ndarray
    was_n: np.ndarray

    @property
    def nbytes(self) -> int:
        change = self.change
        return sum(a.nbytes for a in (change.selected, change.new_cov, change.new_n, self.was_cov, self.was_n))


class _Covers:
    """The cover of every row of a group under one table (the group's current one, to the
    search's counts) by the patterns it uses, each as a slot that stays its own while the
    pattern is in the table: a count of a change at position ``pos`` starts each row from
    what it keeps (:func:`~neurolake.mining._diffnorm_kernels.cover_usage_change_cached`)
    instead of testing the patterns before ``pos`` again, which was most of the work.

    A search counts every change it then makes, so the covers move to a new table by
    keeping those the count made (:meth:`take`); any other table is reached by covering
    afresh the rows holding a pattern it gains or loses (:meth:`move`).
    """

    def __init__(self, rows: np.ndarray, columns: np.ndarray, table: np.ndarray, width: int) -> None:
        self.rows = rows
        self.columns = columns
        self.slots = np.zeros((rows.shape[0], width), np.uint16)
        self.n_used = np.zeros(rows.shape[0], np.uint8)
        self.table = table
        self.slot_at = np.arange(table.shape[0], dtype=np.int64)
        self.free: list[int] = []
        self.n_slots = table.shape[0]
        self._index_slots()
        # Counted changes are taken only by the covers they were counted from.
        self.version = 0
        kernels.covers_recount(rows, np.arange(rows.shape[0]), table, self.slot_at, self.slots, self.n_used)

    # Slots are uint16 and positions are kept as such: a larger table is counted afresh.
    most_patterns = np.iinfo(np.uint16).max

    def _index_slots(self) -> None:
        """``slot_pos``: the position of each slot's pattern in the table, -1 for a free slot."""
        self.slot_pos = np.full(max(self.n_slots, 1), -1, np.int64)
        self.slot_pos[self.slot_at] = np.arange(self.slot_at.size)

    def _slot(self) -> int:
        if self.free:
            return self.free.pop()
        self.n_slots += 1
        return self.n_slots - 1

    def holds(self, table: np.ndarray) -> bool:
        return _same_table(table, self.table)

    def take(self, change: _CountedChange, step: bool = False) -> _TakenStep | None:
        """Move to ``change.new``, keeping the covers its count made (the rows it did not
        count hold neither pattern that differs, and keep theirs); with ``step``, the step
        with its rows' covers before."""
        taken = None
        if step:
            was_cov, was_n = kernels.covers_gather(self.slots, self.n_used, change.selected, self.slot_pos)
            taken = _TakenStep(self.table, change, was_cov, was_n)
        if change.add:
            slot_at = np.insert(self.slot_at, change.pos, self._slot())
        else:
            self.free.append(int(self.slot_at[change.pos]))
            slot_at = np.delete(self.slot_at, change.pos)
        kernels.covers_write(self.slots, self.n_used, change.selected, change.new_cov, change.new_n, slot_at)
        self._moved(change.new, slot_at)
        return taken

    def move(self, table: np.ndarray) -> None:
        """Move to ``table``: the patterns both tables hold keep their slots and the rows
        holding a pattern gained or lost are covered afresh; every row, where the patterns
        kept come in another order."""
        keys = {self.table[t].tobytes(): t for t in range(self.table.shape[0])}
        kept = np.array([keys.get(table[t].tobytes(), -1) for t in range(table.shape[0])], np.int64)
        found = kept[kept >= 0]
        gone = np.setdiff1d(np.arange(self.table.shape[0]), found)
        slot_at = np.empty(table.shape[0], np.int64)
        slot_at[kept >= 0] = self.slot_at[found]
        self.free.extend(int(s) for s in self.slot_at[gone])
        for t in np.flatnonzero(kept < 0):
            slot_at[t] = self._slot()
        if np.all(np.diff(found) > 0):
            changed = [table[t] for t in np.flatnonzero(kept < 0)] + [self.table[t] for t in gone]
            rows = np.unique(
                np.concatenate(
                    [np.zeros(0, np.int64)]
                    + [kernels.rows_within(self.columns, bits, self.rows.shape[0]) for bits in changed]
                )
            )
        else:
            rows = np.arange(self.rows.shape[0])
        kernels.covers_recount(self.rows, rows, table, slot_at, self.slots, self.n_used)
        self._moved(table, slot_at)

    def _moved(self, table: np.ndarray, slot_at: np.ndarray) -> None:
        self.table = table
        self.slot_at = slot_at
        self._index_slots()
        self.version += 1


class LocalUsageCounter(UsageCounter):
    """Counts in this process with the numba kernels.

    Args:
        groups: one ``[rows, W] uint64`` packed matrix per group.
        n_items: size of the item universe.
    """

    def __init__(self, groups: Sequence[np.ndarray], n_items: int) -> None:
        self.groups = [np.ascontiguousarray(g, dtype=np.uint64) for g in groups]
        self.n_items = n_items
        self.n_groups = len(self.groups)
        # Each group by item (as many bytes as its rows): the rows holding a pattern are the
        # AND of its items' columns, so a count visits those rows only.
        self.columns = [kernels.item_columns(g, n_items) for g in self.groups]
        # Each group's covers under its current table, made at its first usage change, and the
        # changes of the last count of each group that they may move to (see _Covers).
        self._covers: list[_Covers | None] = [None] * self.n_groups
        self._counted: dict[int, list[_CountedChange]] = {}
        # The steps the covers of each group moved by since its co-usages were last counted
        # afresh, until their co-usage changes are counted (the latest _STEP_BYTES of them).
        self._steps: dict[int, list[_TakenStep]] = {}

    def _within(self, group: int, within: np.ndarray) -> np.ndarray:
        """The rows of ``group`` that contain ``within`` (all rows for the empty itemset)."""
        return kernels.rows_within(self.columns[group], within, self.groups[group].shape[0])

    def supports(self, patterns: np.ndarray) -> np.ndarray:
        out = np.zeros((self.n_groups, patterns.shape[0]), np.int64)
        for i, rows in enumerate(self.groups):
            out[i] = kernels.supports_of_columns(self.columns[i], patterns, rows.shape[0])
        return out

    def usages(self, requests: Sequence[UsageRequest]) -> list[tuple[np.ndarray, np.ndarray]]:
        return [
            kernels.cover_usage_of(self.groups[i], self._within(i, within), table, self.n_items)
            for i, table, within in requests
        ]

    # Patterns a row's kept cover holds at most (16 uint16 slots: half a cache line); at
    # 500,000 frames the rows' covers under a search's final tables used at most 8.
    cover_slots = 16

    def usage_changes(self, requests: Sequence[UsageChange]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Each row containing ``within`` is read once and covered under both tables from its
        cover under ``old``, kept from the counts before (see :class:`_Covers`); its new
        cover is kept in turn, for the table the search takes next."""
        out = []
        counted: dict[int, list[_CountedChange]] = {}
        for i, old, new, within, pos in requests:
            rows, selected = self.groups[i], self._within(i, within)
            covers = self._covers_at(i, old)
            if covers is None:
                out.append(kernels.cover_usage_change_of(rows, selected, old, new, self.n_items, pos))
                continue
            add = new.shape[0] > old.shape[0]
            old_pat, new_pat, items, new_cov, new_n = kernels.cover_usage_change_cached(
                rows, selected, old, new, self.n_items, pos, add, covers.slots, covers.n_used, covers.slot_pos
            )
            out.append((old_pat, new_pat, items))
            changed = new[pos] if add else old[pos]
            # The new covers stand for the table only if every row holding the pattern that
            # differs was covered.
            if np.array_equal(within & changed, within):
                counted.setdefault(i, []).append(
                    _CountedChange(covers.version, new, pos, add, within, selected, new_cov, new_n)
                )
        self._counted.update(counted)
        return out

    def _covers_at(self, group: int, table: np.ndarray) -> _Covers | None:
        """The covers of ``group`` moved to ``table`` (made at the first call); None for a
        table too large to keep covers for."""
        if table.shape[0] >= _Covers.most_patterns:
            return None
        covers = self._covers[group]
        if covers is None:
            covers = _Covers(self.groups[group], self.columns[group], table, self.cover_slots)
            self._covers[group] = covers
        elif not covers.holds(table) and not self._take(group, covers, table):
            covers.move(table)
        return covers

    def _take(self, group: int, covers: _Covers, table: np.ndarray) -> bool:
        """Move ``covers`` to ``table`` by a change the group's last count counted (kept as a
        step where the group's co-usages are kept); whether one led there."""
        for change in self._counted.get(group, []):
            if change.version == covers.version and _same_table(change.new, table):
                step = covers.take(change, step=group in self._steps)
                if step is not None:
                    steps = self._steps[group]
                    steps.append(step)
                    held = np.cumsum([s.nbytes for s in reversed(steps)])
                    del steps[: len(steps) - max(1, int(np.searchsorted(held, self._STEP_BYTES, side="right")))]
                return True
        return False

    # Bytes of steps kept per group at most for its co-usage changes, the latest first (a
    # search counts them every few acceptances; a step not kept is counted afresh). A step
    # holds 74 bytes for each row of its pattern.
    _STEP_BYTES = 256 << 20

    def co_usages(self, requests: Sequence[tuple[int, np.ndarray]]) -> list[np.ndarray]:
        """Counted afresh; each group's steps from there on are kept for its co-usage
        changes (see :meth:`co_usage_delta`)."""
        for i, _ in requests:
            self._steps[i] = []
        return [kernels.co_usage(self.groups[i], table, self.n_items) for i, table in requests]

    def co_usage_change(
        self, group: int, counts: np.ndarray, old: np.ndarray, new: np.ndarray, within: np.ndarray, pos: int, add: bool
    ) -> np.ndarray:
        """Only the rows containing the changed pattern are covered again, under both tables,
        and only the pairs holding an element whose use changed are counted."""
        where, increments = self.co_usage_delta(group, old, new, within, pos, add)
        counts = kernels.co_usage_renumbered(counts, pos, add)
        counts.reshape(-1)[where] += increments
        return counts

    def co_usage_sequence(self, changes: Sequence[CoUsageChange]) -> dict[int, np.ndarray]:
        """The sparse change of every step (rows holding its pattern only), then each group's
        matrix renumbered once for all its steps and the changes added (one copy of the
        matrix per group, not one per step)."""
        deltas = [self.co_usage_delta(c.group, c.old, c.new, c.within, c.pos, c.add) for c in changes]
        return _co_usages_after(changes, [deltas])

    def usages_stacked(
        self, tables: Sequence[np.ndarray], requests: Sequence[tuple[int, int, np.ndarray]]
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`usages` for ``(group, index into tables, within)`` requests, stacked for the
        trip back: ``([sum of p] int32`` pattern usages one request after the other,
        ``[requests, n_items] int32)`` singleton usages (counts of rows of one partition)."""
        answers = self.usages([(i, tables[t], within) for i, t, within in requests])
        patterns = [pat for pat, _ in answers]
        pat = np.concatenate(patterns).astype(np.int32) if patterns else np.zeros(0, np.int32)
        items = np.stack([items for _, items in answers]).astype(np.int32) if answers else np.zeros((0, 0), np.int32)
        return pat, items

    def usage_changes_stacked(
        self, tables: Sequence[np.ndarray], requests: Sequence[tuple[int, int, int, np.ndarray, int]]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`usage_changes` for ``(group, old, new, within, pos)`` requests whose tables
        are indices into ``tables``, stacked for the trip back: the old tables' pattern usages
        one request after the other, the new ones' likewise (``int32``), and ``[requests,
        n_items] int32`` singleton changes (counts of rows of one partition)."""
        answers = self.usage_changes([(i, tables[o], tables[n], within, pos) for i, o, n, within, pos in requests])
        if not answers:
            return np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros((0, self.n_items), np.int32)
        return (
            np.concatenate([old for old, _, _ in answers]).astype(np.int32),
            np.concatenate([new for _, new, _ in answers]).astype(np.int32),
            np.stack([items for _, _, items in answers]).astype(np.int32),
        )

    def co_usage_delta(
        self, group: int, old: np.ndarray, new: np.ndarray, within: np.ndarray, pos: int, add: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """What :meth:`co_usage_change` adds to the renumbered co-usages, sparse: the flat
        positions in the ``[p + n_items, p + n_items]`` matrix of table ``new`` that change,
        and their increments (``int32``). Only the elements whose use changed in the rows
        holding the pattern have pairs that change, so this is small beside the matrix.
        Where the covers moved by this change (:meth:`usage_changes` counted it), both
        covers of those rows are known and no pattern is tested."""
        rows = self.groups[group]
        step = self._step(group, old, new, within, pos, add)
        if step is None:
            where, increments = kernels.co_usage_delta_of(
                rows, self._within(group, within), old, new, self.n_items, pos, add
            )
        else:
            change = step.change
            where, increments = kernels.co_usage_delta_kept(
                rows,
                change.selected,
                old,
                new,
                self.n_items,
                pos,
                add,
                step.was_cov,
                step.was_n,
                change.new_cov,
                change.new_n,
            )
        size = (new.shape[0] + self.n_items) ** 2
        return where.astype(np.min_scalar_type(size)), increments

    def _step(
        self, group: int, old: np.ndarray, new: np.ndarray, within: np.ndarray, pos: int, add: bool
    ) -> _TakenStep | None:
        """The step kept of this change (the covers move by it now if they are at ``old`` and
        counted it), taken out with those before it; None if none was kept."""
        covers = self._covers[group]
        if covers is not None and covers.holds(old):
            self._take(group, covers, new)
        steps = self._steps.get(group, [])
        for k, step in enumerate(steps):
            change = step.change
            if (
                change.pos == pos
                and change.add == add
                and np.array_equal(change.within, within)
                and _same_table(step.old, old)
                and _same_table(change.new, new)
            ):
                del steps[: k + 1]
                return step
        return None


# How a trip names a table to the actors (see ``_RowPartition.resolve``): the one they hold
# for the group, it with one row inserted or removed, or the table itself.
TableSpec = tuple


class _SharedRows(NamedTuple):
    """Every partition's rows in Ray's object store, for the actors to count chunks of one
    another's: ``refs[w]`` holds partition ``w``'s list of groups' rows, ``rows[w, i]`` is the
    number of rows of group ``i`` there, ``chunk_rows`` the rows of a chunk."""

    refs: list[Any]
    rows: np.ndarray
    chunk_rows: int


class _RowPartition(LocalUsageCounter, ChannelHost):
    """What each actor of :class:`PartitionedUsageCounter` runs: a local counter over its rows
    that also holds the last table it was told to keep of every group, so that a trip names
    most tables by their difference from it (one pattern in or out) instead of sending them.
    The counter reaches it through a :class:`~neurolake.cluster.channel.Channel` it opens."""

    def __init__(
        self, groups: Sequence[np.ndarray], n_items: int, part: int = 0, shared: _SharedRows | None = None
    ) -> None:
        # The rows arrive from Ray's object store: read-only views of shared memory. Two
        # actors counting on such views at once each ran 1.5x slower than alone here (one
        # alone: no slower), and on copies in their own memory as fast as alone.
        super().__init__([np.array(g, dtype=np.uint64, order="C") for g in groups], n_items)
        self._held: dict[int, np.ndarray] = {}
        # This partition's number, and every partition's rows where the actors may count
        # chunks of one another's (see co_usages_claimed); the others' are read when needed.
        self._part = part
        self._shared = shared
        self._others: dict[int, list[np.ndarray]] = {}

    def resolve(self, group: int, spec: TableSpec) -> np.ndarray:
        """The table ``spec = (keep, kind, ...)`` names; held for the group if ``keep``."""
        keep, kind = spec[0], spec[1]
        if kind == "table":
            table = spec[2]
        elif kind == "held":
            table = self._held[group]
        elif kind == "insert":
            table = np.insert(self._held[group], spec[2], spec[3], axis=0)
        else:
            table = np.delete(self._held[group], spec[2], axis=0)
        if keep:
            self._held[group] = table
        return table

    def usages_held(
        self, tables: Sequence[tuple[int, TableSpec]], requests: Sequence[tuple[int, int, np.ndarray]]
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`usages_stacked` with the tables named by ``(group, spec)``, in order."""
        return self.usages_stacked([self.resolve(i, spec) for i, spec in tables], requests)

    def usage_changes_held(
        self, tables: Sequence[tuple[int, TableSpec]], requests: Sequence[tuple[int, int, int, np.ndarray, int]]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`usage_changes_stacked` with the tables named by ``(group, spec)``, in order."""
        return self.usage_changes_stacked([self.resolve(i, spec) for i, spec in tables], requests)

    def co_usage_deltas_held(self, requests: Sequence[tuple]) -> list[tuple[np.ndarray, np.ndarray]]:
        """:meth:`co_usage_delta` for each ``(group, old spec, new spec, within, pos, add)``."""
        out = []
        for group, old, new, within, pos, add in requests:
            old_table = self.resolve(group, old)
            out.append(self.co_usage_delta(group, old_table, self.resolve(group, new), within, pos, add))
        return out

    def co_usages_claimed(
        self, requests: Sequence[tuple[int, np.ndarray]], board: tuple[str, np.ndarray, int]
    ) -> tuple[list[np.ndarray | None], np.ndarray]:
        """:meth:`co_usages` over the chunks of rows this process claims on the
        :class:`~neurolake.cluster.claims.ClaimBoard` ``board = (path, rows, chunk_rows)``:
        this partition's, then the last ones of whichever partition has the most left (read
        as views of Ray's object store), so that the partitions end together whichever
        process runs slower. The counts of each request (None where this process counted no
        chunk of it) and the chunks it counted of each partition."""
        for i, _ in requests:
            self._steps[i] = []
        path, rows, chunk_rows = board
        flats: list[np.ndarray | None] = [None] * len(requests)
        counted = np.zeros(rows.shape[1], np.int64)
        with ClaimBoard(path, rows, chunk_rows) as claims:
            while (claim := claims.claim(self._part)) is not None:
                i, table = requests[claim.request]
                flat = flats[claim.request]
                if flat is None:
                    flat = flats[claim.request] = np.zeros((table.shape[0] + self.n_items) ** 2, np.int32)
                rows_of = self._rows_of(claim.part, i)[claim.start : claim.stop]
                kernels.co_usage_into(rows_of, table, self.n_items, flat)
                counted[claim.part] += 1
        n_el = [table.shape[0] + self.n_items for _, table in requests]
        return [None if f is None else f.reshape(n, n) for f, n in zip(flats, n_el, strict=True)], counted

    def _rows_of(self, part: int, group: int) -> np.ndarray:
        """The rows of ``group`` in partition ``part``: this one's, or another's from Ray's
        object store (a view, not a copy)."""
        if part == self._part:
            return self.groups[group]
        if part not in self._others:
            from neurolake.cluster.ray_env import get

            assert self._shared is not None
            self._others[part] = get(self._shared.refs[part])
        return self._others[part][group]

    def search(self, model: DiffNorm, candidates: list[Itemset], others: Any) -> DiffNorm:
        """Run the search of ``model`` (set up by :meth:`DiffNorm._setup`) here, counting
        these rows in this process and the other partitions on their actors (``others``: an
        :class:`~neurolake.cluster.pool.ActorPool`, or None when this actor holds every row);
        the fitted model comes back."""
        model._counter = PartitionedUsageCounter.hosting(self, others)
        try:
            model._init_state()
            model._search(candidates)
        finally:
            model._counter.close()
            model._counter = None
            model._logs = None
        return model


class PartitionedUsageCounter(UsageCounter):
    """A :class:`UsageCounter` over row partitions held by Ray actors (one partition each);
    every request goes to all actors at once and their integer counts are summed.

    The counter :meth:`hosting` makes runs in one of these actors (where
    :meth:`_RowPartition.search` runs the search): it counts that actor's partition in its
    own process while the other actors count theirs.

    Args:
        groups: one ``[rows, W] uint64`` packed matrix per group.
        n_items: size of the item universe.
        workers: actors (each holds about ``1 / workers`` of every group's rows, dealt out
            as :func:`_row_owners` does, not in contiguous blocks).
        first_weight: the first actor's partition is this many times as large as each
            other's (the actor that runs a search counts its share without a trip).
    """

    # A round trip to the actors costs a millisecond or more, more than covering the rows of
    # one candidate on small data: batches grow to 16 candidates per trip while none helps
    # (they start at one, since the first candidates of a list are the likeliest to).
    batch_size = 16

    # Rows in a chunk of the first co-usages that the processes claim (see co_usages): about
    # 0.09 s of counting at 2,000 units, 5 % active, so that they end within that of each
    # other; a claim took 9 us here.
    claim_rows = 1 << 14

    def __init__(self, groups: Sequence[np.ndarray], n_items: int, workers: int, first_weight: float = 1.0) -> None:
        from neurolake.cluster.pool import ActorPool
        from neurolake.cluster.ray_env import connect, put

        self.n_items = n_items
        self.n_groups = len(groups)
        weights = np.ones(workers)
        weights[0] = first_weight
        splits = [_deal(g, weights) for g in groups]
        # Each partition goes to the object store once: its actor copies it, and the others
        # may read chunks of it (see co_usages).
        connect()
        refs = [put([split[w] for split in splits]) for w in range(workers)]
        rows = np.array([[split[w].shape[0] for split in splits] for w in range(workers)])
        shared = _SharedRows(refs, rows, self.claim_rows)
        del splits
        # The actors reserve no CPU, so that more partitions than CPUs still start (and
        # share the CPUs) instead of waiting for resources.
        self._pool = ActorPool(_RowPartition, [(refs[w], n_items, w, shared) for w in range(workers)], num_cpus=0)
        self._shared: _SharedRows | None = shared
        # Whether every process that counts runs on this node (known at the first count that
        # needs it).
        self._one_node: bool | None = None
        # The chunks each process counted of each partition at the last claimed count.
        self.claimed: np.ndarray | None = None
        # The rows counted in this process (see hosting).
        self._local: _RowPartition | None = None
        # The table of each group the actors hold (the same on all of them).
        self._held: list[np.ndarray | None] = [None] * self.n_groups
        # A direct connection to each actor, opened at the first trip (empty: Ray's calls).
        self._channels: list[Channel] | None = None
        # The thread that renumbers co-usage matrices beside this one (see co_usage_sequence).
        self._beside: ThreadPoolExecutor | None = None
        logger.debug("DiffNorm on %d workers, rows per group %s", workers, [g.shape[0] for g in groups])

    @classmethod
    def hosting(cls, local: _RowPartition, others: Any) -> PartitionedUsageCounter:
        """The counter of the rows of ``local`` (counted in this process) and of the actors of
        ``others`` (an :class:`~neurolake.cluster.pool.ActorPool` over the other partitions, or
        None). Without other actors there are no trips, so candidates go one at a time; with
        them, the channels to them open here, so that the search's first count does not wait
        for them to connect."""
        counter = object.__new__(cls)
        counter.n_items = local.n_items
        counter.n_groups = local.n_groups
        counter._pool = others
        counter._local = local
        counter._shared = local._shared
        counter._one_node = None
        counter.claimed = None
        counter._held = [None] * local.n_groups
        counter._channels = None
        counter._beside = None
        if others is None:
            counter.batch_size = 1
        else:
            counter._direct()
        return counter

    def search(self, model: DiffNorm, candidates: list[Itemset]) -> DiffNorm:
        """:meth:`_RowPartition.search` on the first actor, with the others' pool; the fitted
        model."""
        others = self._pool.view(range(1, len(self._pool))) if len(self._pool) > 1 else None
        fitted: DiffNorm = self._pool.call(0, "search", model, candidates, others)
        return fitted

    def _parts(self, method: str, args: tuple, here: Callable[[_RowPartition], Any]) -> Callable[[], list[Any]]:
        """Start ``method(*args)`` on the actors and run ``here`` on the partition of this
        process meanwhile; a function that waits for the actors and returns every part's
        answer."""
        remote = self._broadcast(method, *args, later=True) if self._pool is not None else list
        if self._local is None:
            return remote
        answer = here(self._local)
        return lambda: [answer, *remote()]

    def supports(self, patterns: np.ndarray) -> np.ndarray:
        parts = self._parts("supports", (patterns,), lambda part: part.supports(patterns))()
        return np.asarray(np.sum(parts, axis=0, dtype=np.int64))

    def _named(
        self, tables_of: Sequence[tuple[int, np.ndarray, np.ndarray | None, int]]
    ) -> tuple[list[np.ndarray], list[tuple[int, TableSpec]], list[int]]:
        """The distinct tables of ``(group, table, base, pos)`` entries, how the actors get
        each, and each entry's index into them. A table is named once per trip however many
        requests use it (a candidate's requests share the group's current table), mostly by
        its difference from the one the actors hold: the first of a group in a trip (its
        current table) is held from then on. ``base``: the table is it with one row inserted
        at or removed from ``pos`` (None: not known)."""
        index: dict[int, int] = {}
        tables: list[np.ndarray] = []
        specs: list[tuple[int, TableSpec]] = []
        at = []
        for i, table, base, pos in tables_of:
            if id(table) not in index:
                index[id(table)] = len(tables)
                tables.append(table)
                if self._pool is not None:
                    keep = all(g != i for g, _ in specs)
                    specs.append((i, self._spec(i, table, keep=keep, base=base, pos=pos)))
            at.append(index[id(table)])
        return tables, specs, at

    def usages(self, requests: Sequence[UsageRequest]) -> list[tuple[np.ndarray, np.ndarray]]:
        if not requests:
            return []
        tables, specs, at = self._named([(i, table, None, 0) for i, table, _ in requests])
        compact = [(i, t, within) for (i, _, within), t in zip(requests, at, strict=True)]
        # The answers come back as two arrays.
        parts = self._parts(
            "usages_held",
            (specs, compact),
            lambda part: part.usages_stacked(tables, compact),
        )()
        pat = np.asarray(np.sum([p for p, _ in parts], axis=0, dtype=np.int64))
        items = np.asarray(np.sum([x for _, x in parts], axis=0, dtype=np.int64))
        bounds = np.cumsum([0] + [tables[t].shape[0] for t in at])
        return [(pat[bounds[r] : bounds[r + 1]], items[r]) for r in range(len(compact))]

    def usage_changes(self, requests: Sequence[UsageChange]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        if not requests:
            return []
        tables, specs, at = self._named(
            [entry for i, old, new, _, pos in requests for entry in ((i, old, None, 0), (i, new, old, pos))]
        )
        compact = [(i, at[2 * r], at[2 * r + 1], within, pos) for r, (i, _, _, within, pos) in enumerate(requests)]
        # The answers come back as three arrays, half the singleton counts of two usages.
        parts = self._parts(
            "usage_changes_held",
            (specs, compact),
            lambda part: part.usage_changes_stacked(tables, compact),
        )()
        old_pat, new_pat, items = (np.asarray(np.sum([p[a] for p in parts], axis=0, dtype=np.int64)) for a in range(3))
        old_bounds = np.cumsum([0] + [tables[at[2 * r]].shape[0] for r in range(len(requests))])
        new_bounds = np.cumsum([0] + [tables[at[2 * r + 1]].shape[0] for r in range(len(requests))])
        return [
            (old_pat[old_bounds[r] : old_bounds[r + 1]], new_pat[new_bounds[r] : new_bounds[r + 1]], items[r])
            for r in range(len(requests))
        ]

    def co_usages(self, requests: Sequence[tuple[int, np.ndarray]]) -> list[np.ndarray]:
        """Where every process that counts runs on this node, the rows go in chunks that the
        processes claim (see :meth:`_RowPartition.co_usages_claimed`): the longest count of a
        search (more than half the counting at 3.5 M frames), which ended up to 2 s apart on
        the two actors when each counted its own rows. Elsewhere each counts its own."""
        requests = list(requests)
        if not requests:
            return []
        if not self._claims():
            parts = self._parts("co_usages", (requests,), lambda part: part.co_usages(requests))()
            return [np.asarray(np.sum([p[r] for p in parts], axis=0, dtype=np.int32)) for r in range(len(requests))]
        assert self._shared is not None
        rows = self._shared.rows[:, [i for i, _ in requests]].T
        path = ClaimBoard.create(rows, self._shared.chunk_rows)
        try:
            board = (path, rows, self._shared.chunk_rows)
            claimed = self._parts(
                "co_usages_claimed", (requests, board), lambda part: part.co_usages_claimed(requests, board)
            )()
        finally:
            ClaimBoard.remove(path)
        self.claimed = np.stack([counted for _, counted in claimed])
        out = []
        for r, (_, table) in enumerate(requests):
            counts = [answer[r] for answer, _ in claimed if answer[r] is not None]
            total = counts[0] if counts else np.zeros((table.shape[0] + self.n_items,) * 2, np.int32)
            if not total.flags.writeable:
                total = total.copy()
            for more in counts[1:]:
                total += more
            out.append(total)
        return out

    def _claims(self) -> bool:
        """Whether the processes that count can claim chunks of one another's rows: every
        partition is in the object store and every process runs on this node (where the
        board's file is)."""
        if self._shared is None or self._pool is None or not claims_possible():
            return False
        if self._one_node is None:
            from neurolake.cluster.ray_env import node_id

            here = node_id()
            self._one_node = len(self._shared.refs) == len(self._pool) + (self._local is not None) and all(
                self._pool.node_of(a, wait=True) == here for a in range(len(self._pool))
            )
        return self._one_node

    def co_usage_change(
        self, group: int, counts: np.ndarray, old: np.ndarray, new: np.ndarray, within: np.ndarray, pos: int, add: bool
    ) -> np.ndarray:
        return self.co_usage_sequence([CoUsageChange(group, counts, old, new, within, pos, add)])[group]

    def co_usage_sequence(self, changes: Sequence[CoUsageChange]) -> dict[int, np.ndarray]:
        """Every actor (and this process, for the rows it holds) counts the sparse change of
        each step, all in one round (each step's change depends only on its two tables and
        the rows); they are added here in order."""
        if not changes:
            return {}
        requests = []
        if self._pool is not None:
            requests = [
                (
                    c.group,
                    self._spec(c.group, c.old, keep=True),
                    self._spec(c.group, c.new, keep=True, base=c.old, pos=c.pos),
                    c.within,
                    c.pos,
                    c.add,
                )
                for c in changes
            ]
        parts = self._parts(
            "co_usage_deltas_held",
            (requests,),
            lambda part: [part.co_usage_delta(c.group, c.old, c.new, c.within, c.pos, c.add) for c in changes],
        )
        # This process's rows were counted while the actors counted theirs; the groups'
        # matrices are renumbered at once, each on a thread, as their answers come. Renumbered
        # beside the counting, three threads on two cores, the renumbering slowed the counting
        # of this process's rows, on which the update waited.
        if self._beside is None:
            self._beside = ThreadPoolExecutor(1, thread_name_prefix="neurolake-diffnorm")
        return _co_usages_after(changes, parts, self._beside)

    def _spec(
        self, group: int, table: np.ndarray, keep: bool, base: np.ndarray | None = None, pos: int = 0
    ) -> TableSpec:
        """How the actors get ``table`` of ``group`` (see :meth:`_RowPartition.resolve`);
        what they hold afterwards is noted here as they will note it. ``base``: ``table``
        is it with one row inserted at or removed from ``pos``, so where the actors hold
        ``base`` the tables are not compared."""
        held = self._held[group]
        spec: TableSpec = (keep, "table", table)
        if held is not None:
            grown = table.shape[0] - held.shape[0]
            if grown == 0 and (table is held or np.array_equal(table, held)):
                spec = (keep, "held")
            elif abs(grown) == 1:
                if base is not held:
                    # The first row where the two differ, if the rest is the same shifted by one.
                    longer, shorter = (table, held) if grown == 1 else (held, table)
                    differ = np.flatnonzero(np.any(longer[:-1] != shorter, axis=1))
                    pos = int(differ[0]) if differ.size else shorter.shape[0]
                    if not np.array_equal(longer[pos + 1 :], shorter[pos:]):
                        pos = -1
                if pos >= 0:
                    spec = (keep, "insert", pos, table[pos]) if grown == 1 else (keep, "delete", pos)
        if keep:
            self._held[group] = table
        return spec

    def _direct(self) -> list[Channel]:
        """A channel to each actor (a trip through Ray's calls cost 2.4 ms more than the
        actors' counting of a candidate on 1M rows, two actors on 2 cores), opened once;
        none where the actors cannot be reached directly, and the trips go through Ray. Both
        ends spin between trips (see :mod:`~neurolake.cluster.channel`) where every process
        that counts has a CPU of this node's."""
        if self._channels is None:
            self._channels = []
            spin = spin_where_cores(len(self._pool) + (self._local is not None), _TRIP_SPIN_S)
            try:
                for address, key in self._pool.broadcast("neurolake_open_channel", None, spin):
                    self._channels.append(Channel(address, key, spin=spin))
            except (OSError, EOFError, NeurolakeError) as exc:
                logger.warning("DiffNorm's trips go through Ray: no direct channel to an actor (%s)", exc)
                self._close_channels()
        return self._channels

    def _close_channels(self) -> None:
        for channel in self._channels or []:
            channel.close()
        self._channels = []

    def _broadcast(self, method: str, *args: Any, later: bool = False) -> Any:
        """The pool's broadcast, over the direct channels where there are; should it fail,
        what the actors hold is not known any more and every table is sent again."""
        try:
            channels = self._direct()
            if channels:
                answers = [channel.call_later(method, *args) for channel in channels]

                def values() -> list[Any]:
                    return [answer() for answer in answers]

                if not later:
                    return values()
            elif not later:
                return self._pool.broadcast(method, *args)
            else:
                values = self._pool.broadcast_later(method, *args)
        except Exception:
            self._held = [None] * self.n_groups
            raise

        def waited() -> list[Any]:
            try:
                return values()
            except Exception:
                self._held = [None] * self.n_groups
                raise

        return waited

    def close(self) -> None:
        self._close_channels()
        if self._beside is not None:
            self._beside.shutdown()
            self._beside = None
        if self._pool is not None:
            self._pool.close()
        self._shared = None  # the partitions leave the object store with the actors


@dataclass(frozen=True)
class DiffNormPattern:
    """One pattern of the model.

    Attributes:
        itemset: increasing item ids.
        subset: the groups whose pattern set holds it.
        usage: ``[k]`` covers using it in each group (0 outside ``subset``).
        support: ``[k]`` rows containing it in each group.
    """

    itemset: Itemset
    subset: Subset
    usage: tuple[int, ...]
    support: tuple[int, ...]


@dataclass(frozen=True, eq=False)
class DiffNormResult:
    """The model DiffNorm found and its encoded lengths (bits).

    Attributes:
        subsets: the subsets of groups, in the order given.
        patterns: every pattern, by subset (in ``subsets`` order), then in standard
            candidate order (support in all groups descending, length descending, items).
        total_length: ``L(D, S) = L(S) + Σ_i L(D_i | C_i)``.
        model_length: ``L(S)``, code columns of the coding sets included.
        data_lengths: ``[k]`` ``L(D_i | C_i)``.
        singleton_length: ``L(D, ∅)``, the total with every pattern set empty.
        n_accepted: candidates accepted during the search (some may have been pruned since).
        n_rows: ``[k]`` rows of each group.
        singleton_usage: ``[k, n_items] int64`` covers using each item as a singleton.
    """

    subsets: tuple[Subset, ...]
    patterns: tuple[DiffNormPattern, ...]
    total_length: float
    model_length: float
    data_lengths: tuple[float, ...]
    singleton_length: float
    n_accepted: int
    n_rows: tuple[int, ...]
    singleton_usage: np.ndarray

    @property
    def l_percent(self) -> float:
        """``L% = 100 · L(D, S) / L(D, ∅)``; 100 when there is nothing to encode."""
        if self.singleton_length == 0.0:
            return 100.0
        return 100.0 * self.total_length / self.singleton_length

    def by_subset(self) -> dict[Subset, list[DiffNormPattern]]:
        """The patterns of each subset (every subset present, maybe with an empty list)."""
        out: dict[Subset, list[DiffNormPattern]] = {s: [] for s in self.subsets}
        for pattern in self.patterns:
            out[pattern.subset].append(pattern)
        return out

    def to_arrow(self) -> pa.Table:
        """One row per pattern: ``subset: list<int32>``, ``itemset: list<int64>``,
        ``size: int32``, ``usage: list<int64>`` and ``support: list<int64>`` (one entry per
        group)."""
        return pa.table(
            {
                "subset": pa.array([list(p.subset) for p in self.patterns], pa.list_(pa.int32())),
                "itemset": pa.array([list(p.itemset) for p in self.patterns], pa.list_(pa.int64())),
                "size": pa.array([len(p.itemset) for p in self.patterns], pa.int32()),
                "usage": pa.array([list(p.usage) for p in self.patterns], pa.list_(pa.int64())),
                "support": pa.array([list(p.support) for p in self.patterns], pa.list_(pa.int64())),
            }
        )


@dataclass
class _Table:
    """The coding set ``C_i`` of one group: its patterns in cover order and their usages.

    Attributes:
        itemsets: patterns in cover order.
        keys: their cover-order keys ``(-|X|, -supp_i(X), X)``.
        bits: ``[p, W] uint64`` the patterns packed, same order.
        pat_usage: ``[p] int64``.
        item_usage: ``[n_items] int64`` singleton usages.
        data: ``L(D_i | C_i)`` bits.
        column: code lengths of the elements used (singletons with their standard code), bits.
    """

    itemsets: list[Itemset]
    keys: list[tuple]
    bits: np.ndarray
    pat_usage: np.ndarray
    item_usage: np.ndarray
    data: float
    column: float


@dataclass
class _Proposal:
    """A model change evaluated exactly: new tables for the groups it touches."""

    total: float
    subset_index: int
    tables: dict[int, _Table]


def _renumberings(n_before: int, steps: Sequence[tuple[int, bool]]) -> list[np.ndarray]:
    """For the numbering before the steps (first) and after each ``(pos, add)`` step (one
    element inserted at or removed from ``pos``), the number of each element after the last
    step, -1 for an element a later step removes."""
    sizes = [n_before]
    for _, add in steps:
        sizes.append(sizes[-1] + (1 if add else -1))
    maps = [np.arange(sizes[-1], dtype=np.int64)]
    for (pos, add), n in zip(reversed(steps), reversed(sizes[:-1]), strict=True):
        later = maps[-1]
        if add:
            earlier = later[np.arange(n) + (np.arange(n) >= pos)]
        else:
            earlier = np.empty(n, np.int64)
            earlier[:pos] = later[:pos]
            earlier[pos] = -1
            earlier[pos + 1 :] = later[pos:]
        maps.append(earlier)
    return maps[::-1]


# A fresh co-usage matrix has room for at least this many elements more than it holds (see
# _renumbered_once).
_CO_USAGE_ROOM = 64


def _renumbered_once(counts: np.ndarray, to: np.ndarray, n_after: int, spare: np.ndarray | None = None) -> np.ndarray:
    """``counts`` (upper triangle) in a new numbering, ``to[x]`` the new number of element ``x``
    (increasing where not -1, -1: dropped): block copies of the runs of elements that keep
    their neighbours.

    The matrix is a view of the memory of ``spare`` (a matrix the caller holds no more) where
    that holds it and is not ``counts``' own, else of a fresh buffer with room for half as
    many elements again (only the part a matrix uses is ever touched), which a later call can
    then be given as its spare while the table grows: a fresh matrix of 2,500 elements (25
    MB) took 7.9 ms to fill here, one in the memory of another 3.4 ms (the fresh one's pages
    are faulted in and zeroed first)."""
    size = n_after * n_after
    memory = None if spare is None else (spare if spare.base is None else spare.base)
    if (
        isinstance(memory, np.ndarray)
        and memory.dtype == counts.dtype
        and memory.flags.c_contiguous
        and memory.flags.writeable
        and memory.size >= size
        and not np.may_share_memory(memory, counts)
    ):
        out = memory.reshape(-1)[:size].reshape(n_after, n_after)
        out[...] = 0
    else:
        room = n_after + max(_CO_USAGE_ROOM, n_after // 2)
        out = np.zeros(room * room, counts.dtype)[:size].reshape(n_after, n_after)
    kept = np.flatnonzero(to >= 0)
    if kept.size == 0:
        return out
    # A run ends where the next kept element is not the next source or the next target.
    breaks = np.flatnonzero((np.diff(kept) != 1) | (np.diff(to[kept]) != 1)) + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [kept.size]])
    runs = [(int(kept[s]), int(kept[e - 1]) + 1, int(to[kept[s]])) for s, e in zip(starts, ends, strict=True)]
    for i, (src_i, end_i, dst_i) in enumerate(runs):
        for src_j, end_j, dst_j in runs[i:]:
            out[dst_i : dst_i + end_i - src_i, dst_j : dst_j + end_j - src_j] = counts[src_i:end_i, src_j:end_j]
    return out


def _co_usages_after(
    changes: Sequence[CoUsageChange],
    parts: Sequence[Any] | Callable[[], Sequence[Any]],
    beside: Executor | None = None,
) -> dict[int, np.ndarray]:
    """Each group's co-usages after ``changes`` (in order; the first change of a group holds its
    counts), given the sparse change of every step (``(where, increments)`` in the numbering
    after that step) from each part of the rows: ``parts`` is a list, one entry a list of the
    steps' changes, or a function that returns that list (called once the matrices are
    renumbered). The renumberings compose and the counts are integers, so this equals
    renumbering and adding step by step. ``beside``: every group's matrix but the last is
    renumbered there meanwhile (numpy's copies release the interpreter lock)."""
    by_group: dict[int, list[int]] = {}
    for r, change in enumerate(changes):
        by_group.setdefault(change.group, []).append(r)
    maps: dict[int, list[np.ndarray]] = {}
    for i, steps in by_group.items():
        maps[i] = _renumberings(changes[steps[0]].counts.shape[0], [(changes[r].pos, changes[r].add) for r in steps])

    def renumbered(i: int) -> np.ndarray:
        first = changes[by_group[i][0]]
        return _renumbered_once(first.counts, maps[i][0], maps[i][-1].size, first.spare)

    groups = list(by_group)
    later = {i: beside.submit(renumbered, i) for i in groups[:-1]} if beside is not None else {}
    here = {i: renumbered(i) for i in groups if i not in later}
    out = {i: later[i].result() if i in later else here[i] for i in groups}
    if callable(parts):
        parts = parts()
    for i, steps in by_group.items():
        n_after = maps[i][-1].size
        flat = out[i].reshape(-1)
        for t, r in enumerate(steps, start=1):
            to = maps[i][t]
            for part in parts:
                where, increments = part[r]
                kernels.co_usage_add(flat, n_after, to, where, increments)
    return out


def _group_lengths(pat_usage: np.ndarray, item_usage: np.ndarray, st_lengths: np.ndarray) -> tuple[float, float]:
    """``(L(D_i | C_i), code column of C_i)`` in bits for the given usages."""
    used_items = item_usage > 0
    usage = np.concatenate([pat_usage[pat_usage > 0], item_usage[used_items]])
    if usage.size == 0:
        return 0.0, 0.0
    total = float(usage.sum())
    codes = math.log2(total) - np.log2(usage.astype(np.float64))
    data = math.fsum((usage * codes).tolist())
    column = math.fsum(codes.tolist()) + math.fsum(st_lengths[used_items].tolist())
    return data, column


def _itemset_bits(itemset: Itemset, n_words: int) -> np.ndarray:
    """``[W] uint64`` mask of an itemset."""
    words = np.zeros(n_words, np.uint64)
    for x in itemset:
        words[x // 64] |= np.uint64(1) << np.uint64(x % 64)
    return words


def _top_stable(values: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` largest ``values``, largest first, ties in position order: the
    first ``k`` of a stable descending argsort, without sorting everything."""
    if k <= 0:
        return np.zeros(0, np.int64)
    if values.size > k:
        kth = np.partition(-values, k - 1)[k - 1]
        above = np.flatnonzero(-values < kth)
        ties = np.flatnonzero(-values == kth)[: k - above.size]
        chosen = np.concatenate([above, ties])
    else:
        chosen = np.arange(values.size)
    return chosen[np.lexsort((chosen, -values[chosen]))]


def _best_unions(
    pairs: Mapping[int, tuple[np.ndarray, ...]],
    names: Mapping[int, list[Itemset]],
    placed: Mapping[Itemset, Any],
    subsets: Sequence[Subset],
    limit: int,
) -> list[Itemset]:
    """Slim's candidate list from the best pairs of each group: ``pairs[i] = (a, b, gain,
    model)`` (element indices into ``names[i]``, the estimated drop of group ``i``'s length
    and the union's model cost). A union's gain in a group is its best pair's there (0 in a
    group with none), its model cost the first pair's that makes it; its score is the best
    subset's summed gains (added in the subset's order) less that cost. The unions not in
    ``placed`` that score above 0, best first (ties by itemset), at most ``limit``."""
    unions: dict[Itemset, int] = {}
    union_ids: list[int] = []
    union_groups: list[int] = []
    union_gains: list[float] = []
    union_costs: list[float] = []
    for i, (a, b, gain, union_model) in pairs.items():
        group_names = names[i]
        for a_i, b_i, g, cost in zip(a.tolist(), b.tolist(), gain.tolist(), union_model.tolist(), strict=True):
            union = tuple(sorted(group_names[a_i] + group_names[b_i]))
            if union in placed:
                continue
            u = unions.setdefault(union, len(unions))
            if u == len(union_costs):
                union_costs.append(cost)
            union_ids.append(u)
            union_groups.append(i)
            union_gains.append(g)
    if not unions:
        return []
    n_groups = 1 + max(max(pairs), *(max(s) for s in subsets))
    per_group = np.full((len(unions), n_groups), -np.inf)
    np.fmax.at(per_group, (np.asarray(union_ids), np.asarray(union_groups)), np.asarray(union_gains))
    per_group[np.isneginf(per_group)] = 0.0  # no pair of that group makes the union
    best = np.full(len(unions), -np.inf)
    for subset in subsets:
        summed = np.zeros(len(unions))
        for i in subset:
            summed = summed + per_group[:, i]
        best = np.maximum(best, summed)
    best -= np.asarray(union_costs)
    kept = np.flatnonzero(best > 0)
    ordered = list(unions)
    scored = sorted(zip((-best[kept]).tolist(), [ordered[u] for u in kept.tolist()], strict=True))
    return [union for _, union in scored[:limit]]


def _xlog2x(x: np.ndarray) -> np.ndarray:
    """``x · log2(x)`` elementwise, 0 at 0."""
    x = x.astype(np.float64)
    out = np.zeros_like(x)
    positive = x > 0
    out[positive] = x[positive] * np.log2(x[positive])
    return out


class DiffNorm:
    """DiffNorm pattern-set search (estimator style; the formulas are in the module doc).

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> a = rng.random((300, 12)) < 0.1
    >>> a[:150, :4] = True
    >>> b = rng.random((300, 12)) < 0.1
    >>> result = DiffNorm(min_support=0.2).fit([a, b]).discover()
    >>> [p.itemset for p in result.by_subset()[(0,)]]
    [(0, 1, 2, 3)]

    Args:
        min_support: LCM threshold for the closed candidates: ``int >= 1`` rows, or a
            ``float`` in ``(0, 1]`` as a fraction of the rows of each subset's groups.
        max_candidates: closed candidates tried (the first in standard candidate order),
            and Slim combinations tried per iteration (the best by estimated gain).
        max_iterations: most candidates accepted in the whole search.
        slim_batch: Slim combinations accepted from one candidate list before the list is
            built again (each acceptance is still evaluated exactly against the model as it
            then is, so the total only falls; the list's estimated order just ages). 1 builds
            it after every acceptance, as Slim does; building it is most of a search's time
            on dense data (1,885 units: 8 made the demo contrast several times faster).
        subsets: subsets of group indices with a pattern set each; default every group
            alone and all groups together.
        workers: 1 searches in this process; more split every group's rows into that many
            partitions, each held by a Ray actor (on ``$RAY_ADDRESS``, else a local Ray) that
            counts its rows, and the search runs on the first of them, where its own rows
            are counted without a trip. Counts are sums of integers over rows, so the
            search takes the same steps and ends with the same patterns and total length
            whatever the number of workers. With more than one, the closed candidates of
            up to ``workers`` subsets are mined at once (threads of this process, while the
            actors start), and the search computes the pair gains of Slim's list for up to
            ``workers`` groups at once (threads of the searching actor, while the others
            wait).
        mine_workers: workers of the closed-candidate mining (:class:`~neurolake.mining.lcm.LCM`);
            1 (the default) mines in this process. LCM's first-level branches on Ray pay off
            only when mining is long: a 100,000 x 2,000 contrast at 5 % support mined in
            1.7 s here and 16.5 s on 2 local workers.
    """

    def __init__(
        self,
        min_support: int | float = 0.05,
        max_candidates: int = 1000,
        max_iterations: int = 500,
        subsets: Sequence[Sequence[int]] | None = None,
        workers: int = 1,
        slim_batch: int = 8,
        mine_workers: int = 1,
    ) -> None:
        absolute_support(min_support, 1)  # fail on a bad value now, not at fit time
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise SpecError(f"workers must be an int >= 1, got {workers!r}")
        self.workers = workers
        if isinstance(mine_workers, bool) or not isinstance(mine_workers, int) or mine_workers < 1:
            raise SpecError(f"mine_workers must be an int >= 1, got {mine_workers!r}")
        self.mine_workers = mine_workers
        if isinstance(slim_batch, bool) or not isinstance(slim_batch, int) or slim_batch < 1:
            raise SpecError(f"slim_batch must be an int >= 1, got {slim_batch!r}")
        self.slim_batch = slim_batch
        for name, value in (("max_candidates", max_candidates), ("max_iterations", max_iterations)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise SpecError(f"{name} must be an int >= 0, got {value!r}")
        self.min_support = min_support
        self.max_candidates = int(max_candidates)
        self.max_iterations = int(max_iterations)
        self.subsets = None if subsets is None else [tuple(s) for s in subsets]
        self._result: DiffNormResult | None = None
        self._counter: UsageCounter | None = None
        # log2 v and v log2 v for Slim's gains, made once per search (see _log_tables).
        self._logs: tuple[np.ndarray, np.ndarray] | None = None

    # ----------------------------------------------------------------- public API

    def fit(self, groups: Sequence[Any]) -> DiffNorm:
        """Search the model for ``groups``.

        Args:
            groups: ``k >= 1`` databases over one item universe, each a ``[rows, items]``
                matrix (numpy, non-zero = present) or a :class:`BitMatrix`.
        """
        start = time.perf_counter()
        packed = [_as_bitmatrix(g) for g in groups]
        hosts = self._search_workers()
        if hosts:
            self._search_on_ray(packed, hosts)
        else:
            with self._counting(packed, mine=True) as candidates:
                self._search(candidates)
        logger.info(
            "DiffNorm: %d patterns, L%% = %.2f, %d accepted, %.2f s",
            len(self.discover().patterns),
            self.discover().l_percent,
            self.discover().n_accepted,
            time.perf_counter() - start,
        )
        return self

    def _live_counter(self) -> UsageCounter:
        if self._counter is None:
            raise RuntimeError("DiffNorm counts only inside fit()")
        return self._counter

    def discover(self) -> DiffNormResult:
        """The model found by :meth:`fit`."""
        if self._result is None:
            raise SpecError("call DiffNorm.fit(groups) before discover()")
        return self._result

    def patterns_for(self, subset: Sequence[int]) -> list[Itemset]:
        """The itemsets of one subset's pattern set found by :meth:`fit`, in the order of
        :attr:`DiffNormResult.patterns`.

        Args:
            subset: group indices of one of the subsets searched, e.g. ``(0,)``.
        """
        result = self.discover()
        key = tuple(sorted(set(int(i) for i in subset)))
        if key not in result.subsets:
            raise SpecError(f"subset {tuple(subset)!r} was not searched; the subsets are {list(result.subsets)}")
        return [p.itemset for p in result.patterns if p.subset == key]

    def evaluate(self, groups: Sequence[Any], model: Mapping[Sequence[int], Sequence[Sequence[int]]]) -> DiffNormResult:
        """Score a given model instead of searching one.

        Args:
            groups: as for :meth:`fit`.
            model: the patterns of each subset, keyed by the subset's groups; subsets left
                out are empty. A pattern has two or more items and appears once.

        Returns:
            The model with its usages and encoded lengths (``n_accepted`` 0); the state of
            the estimator (:meth:`discover`) is left as it was.
        """
        packed = [_as_bitmatrix(g) for g in groups]
        with self._counting(packed):
            index = {subset: j for j, subset in enumerate(self._subsets)}
            placements = []
            for subset, itemsets in model.items():
                key = tuple(sorted(set(int(i) for i in subset)))
                if key not in index:
                    raise SpecError(
                        f"model subset {tuple(subset)!r} is not among the subsets {self._subsets}; pass it in subsets="
                    )
                for itemset in itemsets:
                    placements.append((self._check_itemset(itemset), index[key]))
            self._register([x for x, _ in placements])
            for itemset, j in placements:
                if itemset in self._placed:
                    raise SpecError(f"pattern {itemset} appears twice in the model")
                self._placed[itemset] = j
                self._apply(_Proposal(0.0, j, self._changed_tables(itemset, list(self._subsets[j]), True)))
            return self._build_result(self._singleton_length, 0)

    def _check_itemset(self, itemset: Sequence[int]) -> Itemset:
        items = tuple(sorted(set(int(x) for x in itemset)))
        if len(items) < 2 or items[0] < 0 or items[-1] >= self._n_items:
            raise SpecError(
                f"pattern {tuple(itemset)!r} must have two or more distinct items among "
                f"0..{self._n_items - 1} (singletons are always in the coding sets)"
            )
        return items

    # ------------------------------------------------------------ extension point

    def _make_counter(self, groups: list[np.ndarray], n_items: int) -> UsageCounter:
        """The usage counter the search runs on: this process's, or one over row partitions."""
        if self.workers == 1:
            return LocalUsageCounter(groups, n_items)
        return PartitionedUsageCounter(groups, n_items, self.workers)

    def _search_workers(self) -> int:
        """Ray actors the search of :meth:`fit` runs on; 0: in this process, counting with
        :meth:`_make_counter`."""
        return self.workers if self.workers > 1 else 0

    def _search_on_ray(self, packed: list[BitMatrix], workers: int) -> None:
        """:meth:`fit` on ``workers`` Ray actors, each holding a partition of every group's
        rows: the closed candidates are mined here while the actors start, then the first
        actor runs the search, counting its own rows in its process (no trip) and the
        others' on their actors, and this model takes the fitted state it sends back."""
        self._setup(packed)
        counter = PartitionedUsageCounter(
            [p.words for p in packed], self._n_items, workers, _searcher_share(sum(self._n_rows))
        )
        try:
            candidates = self._closed_candidates(packed)
            fitted = counter.search(self, candidates)
        finally:
            counter.close()
        self.__dict__.update(fitted.__dict__)

    # ------------------------------------------------------------------ set-up

    def _setup(self, packed: list[BitMatrix]) -> None:
        if not packed:
            raise SpecError("DiffNorm needs at least one group of rows")
        n_items = {p.n_items for p in packed}
        if len(n_items) != 1:
            raise SpecError(f"all groups must share one item universe, got item counts {sorted(n_items)}")
        self._n_items = n_items.pop()
        self._n_words = kernels.words_for(self._n_items)
        self._k = len(packed)
        self._n_rows = tuple(len(p) for p in packed)
        subsets = default_subsets(self._k) if self.subsets is None else self.subsets
        canonical = []
        for subset in subsets:
            members = tuple(sorted(set(int(i) for i in subset)))
            if not members or members[0] < 0 or members[-1] >= self._k:
                raise SpecError(f"subset {subset!r} must name groups among 0..{self._k - 1}")
            if members in canonical:
                raise SpecError(f"subset {subset!r} is given twice")
            canonical.append(members)
        self._subsets = canonical

    @contextlib.contextmanager
    def _counting(self, packed: list[BitMatrix], mine: bool = False) -> Iterator[list[Itemset]]:
        """Validate, start the usage counter and the singleton-only state; close the
        counter afterwards. ``mine``: give the closed candidates, mined after the counter is
        started and before it is first used (Ray's actors start meanwhile), else nothing."""
        self._setup(packed)
        self._counter = self._make_counter([p.words for p in packed], self._n_items)
        try:
            candidates = self._closed_candidates(packed) if mine else []
            self._init_state()
            yield candidates
        finally:
            self._live_counter().close()
            self._counter = None
            self._logs = None

    def _init_state(self) -> None:
        """Standard code, empty pattern sets, singleton covers."""
        k, m = self._k, self._n_items
        # The singleton-only cover of a row uses each of its items once, so its usages are
        # the item supports: one pass over the rows' words instead of a test per item.
        empty_bits = np.zeros((0, self._n_words), np.uint64)
        whole = np.zeros(self._n_words, np.uint64)
        covers = self._live_counter().usages([(i, empty_bits, whole) for i in range(k)])
        item_support = np.stack([items for _, items in covers])
        total_item_support = item_support.sum(axis=0)
        self._st = np.zeros(m, np.float64)
        present = total_item_support > 0
        if np.any(present):
            self._st[present] = math.log2(float(total_item_support.sum())) - np.log2(
                total_item_support[present].astype(np.float64)
            )
        self._support: dict[Itemset, np.ndarray] = {}
        self._bits: dict[Itemset, np.ndarray] = {}
        self._content: dict[Itemset, float] = {}
        self._placed: dict[Itemset, int] = {}
        self._tables = []
        for i in range(k):
            item_usage = item_support[i].astype(np.int64)
            data, column = _group_lengths(np.zeros(0, np.int64), item_usage, self._st)
            self._tables.append(_Table([], [], empty_bits, np.zeros(0, np.int64), item_usage, data, column))
        self._total = self._total_length()
        self._singleton_length = self._total
        # Co-usages of each group's current table (Slim's pair statistics), counted when first
        # needed and then updated with every change of the table.
        self._co: list[np.ndarray | None] = [None] * k
        # Each group's co-usages before the last update, whose memory the next one takes.
        self._co_spare: list[np.ndarray | None] = [None] * k
        # Table changes not yet applied to ``_co`` (CoUsageChange, in order).
        self._co_pending: list[CoUsageChange] = []
        self._logs = None

    def _search(self, candidates: list[Itemset]) -> None:
        singleton_length = self._singleton_length
        n_accepted = 0
        self._register(candidates)
        logger.debug(
            "DiffNorm: %d closed candidates, L(D, singletons) = %.1f bits",
            len(candidates),
            singleton_length,
        )
        while n_accepted < self.max_iterations:
            accepted_this_round = 0
            position = 0
            while position < len(candidates) and n_accepted < self.max_iterations:
                rest = [x for x in candidates[position:] if x not in self._placed]
                index, proposal = self._first_improving(rest)
                if proposal is None:
                    break
                self._accept(rest[index], proposal)
                n_accepted += 1
                accepted_this_round += 1
                position = candidates.index(rest[index]) + 1
            while n_accepted < self.max_iterations:
                accepted = self._slim_step(self.max_iterations - n_accepted)
                if accepted == 0:
                    break
                n_accepted += accepted
                accepted_this_round += accepted
            logger.debug("DiffNorm round: %d accepted, total %.1f bits", accepted_this_round, self._total)
            if accepted_this_round == 0:
                break
        self._co_usages_now()
        self._co_spare = [None] * self._k  # nothing to take their memory any more
        self._result = self._build_result(singleton_length, n_accepted)

    # ------------------------------------------------------------- candidates

    def _register(self, itemsets: list[Itemset]) -> None:
        """Record bits, per-group supports and content cost of new itemsets."""
        new = [x for x in dict.fromkeys(itemsets) if x not in self._support]
        if not new:
            return
        bits = np.zeros((len(new), self._n_words), np.uint64)
        for r, x in enumerate(new):
            bits[r] = _itemset_bits(x, self._n_words)
        support = self._live_counter().supports(bits)
        for r, x in enumerate(new):
            self._bits[x] = bits[r]
            self._support[x] = support[:, r]
            self._content[x] = self._pattern_cost(x)

    def _pattern_cost(self, itemset: Itemset) -> float:
        """Model cost of one pattern: subset label, length and items, in bits."""
        return math.log2(len(self._subsets)) + universal_code_length(len(itemset)) + self._content_items(itemset)

    def _content_items(self, itemset: Itemset) -> float:
        """``Σ_{x ∈ X} L_ST(x)`` in bits."""
        return math.fsum(self._st[list(itemset)].tolist())

    def _closed_candidates(self, packed: list[BitMatrix]) -> list[Itemset]:
        """Closed itemsets (2+ items) of every subset in standard candidate order, capped.

        Support counts as the fraction of the rows of the subset where the itemset is most
        frequent: with absolute counts, the patterns of a small group would queue behind
        every frequent itemset of the large ones and could fall past ``max_candidates``.
        Needs no counter: :meth:`fit` mines while a Ray counter's actors start.
        """
        if self.max_candidates == 0:
            return []

        def mine(subset: Subset) -> tuple[int, ClosedItemsets]:
            # LCM prepares the subset's rows from their packed bits (no CSR of their items).
            rows = PackedRows(tuple(packed[i].words for i in subset), self._n_items)
            if len(rows) == 0:
                return 0, ClosedItemsets.empty()
            return len(rows), closed_itemsets(rows, self.min_support, workers=self.mine_workers)

        # The subsets' mining is independent: with more than one worker, up to that many at
        # once on threads (the kernels release the GIL), largest subsets first.
        threads = min(self.workers, len(self._subsets))
        if threads > 1:
            order = sorted(self._subsets, key=lambda s: -sum(self._n_rows[i] for i in s))
            with ThreadPoolExecutor(threads) as pool:
                found = list(pool.map(mine, order))
        else:
            found = [mine(subset) for subset in self._subsets]
        frequency: dict[Itemset, float] = {}
        for n_rows, closed in found:
            for itemset, support in closed:
                if len(itemset) >= 2:
                    share = support / n_rows
                    frequency[itemset] = max(frequency.get(itemset, 0.0), share)
        ordered = sorted(frequency, key=lambda x: (-frequency[x], -len(x), x))
        return ordered[: self.max_candidates]

    def _slim_candidates(self) -> list[Itemset]:
        """Unions of elements used together in covers, best estimated gain first.

        For a pair ``a, b`` used together in ``e`` covers of ``D_i``, the union is assumed
        to take over exactly those ``e`` uses: ``usg(a)`` and ``usg(b)`` fall by ``e``,
        ``U_i`` by ``e``, and the data cost is recomputed from these usages (the other
        elements keep their usages, so only ``U_i`` changes their codes); in the code
        column the union gains a code and ``a`` or ``b`` lose theirs when all their uses
        move. The estimate for subset ``j`` sums these gains over ``i ∈ j`` and subtracts
        the union's model cost once.
        """
        k, m = self._k, self._n_items
        n_patterns = len(self._placed)
        count_cost = universal_code_length(n_patterns + 2) - universal_code_length(n_patterns + 1)
        label_cost = math.log2(len(self._subsets))
        self._co_usages_now()
        stale = [i for i in range(k) if self._co[i] is None]
        for i, counts in zip(
            stale, self._live_counter().co_usages([(i, self._tables[i].bits) for i in stale]), strict=True
        ):
            self._co[i] = counts
        co = [c for c in self._co if c is not None]
        inputs = {}
        for i in range(k):
            table = self._tables[i]
            usage = np.concatenate([table.pat_usage, table.item_usage])
            sizes = np.concatenate([[len(x) for x in table.itemsets], np.ones(m)]).astype(np.int64)
            if usage.sum() == 0:
                continue
            st_el = np.concatenate([[self._content_items(x) for x in table.itemsets], self._st])
            singleton_st = np.concatenate([np.zeros(len(table.itemsets)), self._st])
            longest = 2 * int(sizes.max())
            length_cost = np.array([universal_code_length(n) for n in range(1, longest + 1)])
            inputs[i] = (co[i], usage, sizes, st_el, singleton_st, length_cost, label_cost + count_cost)
        logs = self._log_tables()

        def best_pairs(i: int) -> tuple[np.ndarray, ...]:
            a, b, gain, union_model = kernels.slim_gains_tabled(*inputs[i], *logs, self.max_candidates)
            keep = _top_stable(gain, self.max_candidates)
            return a[keep], b[keep], gain[keep], union_model[keep]

        threads = min(self.workers, len(inputs))
        if threads > 1:
            # The kernel releases the GIL: the groups' pairs at once, merged in group order.
            with ThreadPoolExecutor(threads) as pool:
                pairs = dict(zip(inputs, pool.map(best_pairs, inputs), strict=True))
        else:
            pairs = {i: best_pairs(i) for i in inputs}
        names = {i: self._tables[i].itemsets + [(x,) for x in range(m)] for i in pairs}
        return _best_unions(pairs, names, self._placed, self._subsets, self.max_candidates)

    def _log_tables(self) -> tuple[np.ndarray, np.ndarray]:
        """``log2 v`` and ``v log2 v`` for the usages of the search, made once: a cover uses
        an element at most once per row, so no usage exceeds its group's rows."""
        if self._logs is None:
            self._logs = kernels.log_tables(max(self._n_rows, default=0))
        return self._logs

    def _slim_step(self, limit: int) -> int:
        """Build Slim's candidate list and accept from it, in order, each combination that
        lowers the total (evaluated exactly against the model as it then is), at most
        ``slim_batch`` and ``limit``; the number accepted (0: none of a fresh list helps)."""
        candidates = self._slim_candidates()
        accepted, position = 0, 0
        while accepted < min(limit, self.slim_batch):
            index, proposal = self._first_improving(candidates[position:])
            if proposal is None:
                break
            self._accept(candidates[position + index], proposal)
            accepted += 1
            position += index + 1
        return accepted

    # ------------------------------------------------------------- evaluation

    def _total_length(self, tables: dict[int, _Table] | None = None, contents: list[float] | None = None) -> float:
        """``L(D, S)`` with some tables replaced and ``contents`` (the model cost of each
        pattern) in place of the current patterns'."""
        tables = tables or {}
        if contents is None:
            contents = [self._content[x] for x in self._placed]
        parts = [universal_code_length(len(contents) + 1)]
        parts.extend(contents)
        for i, table in enumerate(self._tables):
            table = tables.get(i, table)
            parts.append(table.data)
            parts.append(table.column)
        return math.fsum(parts)

    def _plan_change(self, itemset: Itemset, groups: list[int], add: bool) -> tuple[list[tuple], list[UsageChange]]:
        """The new table layouts of ``groups`` with ``itemset`` added (or removed), and the
        usage requests that update them: the rows containing the itemset, covered under the
        old and the new table (no request where its support is 0: nothing changes there)."""
        within = self._bits[itemset]
        support = self._support[itemset]
        plans = []
        requests: list[UsageChange] = []
        for i in groups:
            old = self._tables[i]
            if add:
                key = (-len(itemset), -int(support[i]), itemset)
                pos = bisect.bisect_left(old.keys, key)
                itemsets = old.itemsets[:pos] + [itemset] + old.itemsets[pos:]
                keys = old.keys[:pos] + [key] + old.keys[pos:]
                bits = np.insert(old.bits, pos, within, axis=0)
            else:
                pos = old.itemsets.index(itemset)
                itemsets = old.itemsets[:pos] + old.itemsets[pos + 1 :]
                keys = old.keys[:pos] + old.keys[pos + 1 :]
                bits = np.delete(old.bits, pos, axis=0)
            plans.append((i, pos, itemsets, keys, bits, bool(support[i] > 0)))
            if support[i] > 0:
                requests.append((i, old.bits, bits, within, pos))
        return plans, requests

    def _finish_change(
        self, plans: list[tuple], counts: Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]], add: bool
    ) -> dict[int, _Table]:
        """The tables of :meth:`_plan_change`, given the answers to its requests in order."""
        out = {}
        for i, pos, itemsets, keys, bits, occurs in plans:
            old = self._tables[i]
            if not occurs:
                pat_usage = np.insert(old.pat_usage, pos, 0) if add else np.delete(old.pat_usage, pos)
                out[i] = _Table(itemsets, keys, bits, pat_usage, old.item_usage, old.data, old.column)
                continue
            old_pat, new_pat, item_change = next(counts)
            if add:
                pat_usage = np.insert(old.pat_usage - old_pat, pos, 0) + new_pat
            else:
                pat_usage = np.delete(old.pat_usage - old_pat, pos) + new_pat
            item_usage = old.item_usage + item_change
            data, column = _group_lengths(pat_usage, item_usage, self._st)
            out[i] = _Table(itemsets, keys, bits, pat_usage, item_usage, data, column)
        return out

    def _changed_tables(self, itemset: Itemset, groups: list[int], add: bool) -> dict[int, _Table]:
        """The tables of ``groups`` with ``itemset`` added (or removed)."""
        plans, requests = self._plan_change(itemset, groups, add)
        return self._finish_change(plans, iter(self._live_counter().usage_changes(requests)), add)

    def _propose_additions(self, itemsets: list[Itemset]) -> list[_Proposal | None]:
        """For each itemset (against the current model), the best subset and the total it
        would give, None when it occurs in no group. One round of counting for all."""
        self._register(itemsets)
        planned: list[Any] = []
        requests: list[UsageChange] = []
        for itemset in itemsets:
            if np.any(self._support[itemset] > 0):
                plans, more = self._plan_change(itemset, list(range(self._k)), add=True)
                planned.append(plans)
                requests.extend(more)
            else:
                planned.append(None)
        counts = iter(self._live_counter().usage_changes(requests))
        current = [self._content[x] for x in self._placed]
        # Fewer groups first on equal totals: a pattern that no other group uses belongs to
        # the most specific set.
        order = sorted(range(len(self._subsets)), key=lambda j: (len(self._subsets[j]), j))
        proposals: list[_Proposal | None] = []
        for itemset, plans in zip(itemsets, planned, strict=False):
            if plans is None:
                proposals.append(None)
                continue
            changed = self._finish_change(plans, counts, add=True)
            support = self._support[itemset]
            contents = current + [self._content[itemset]]
            best: _Proposal | None = None
            for j in order:
                subset = self._subsets[j]
                if not any(support[i] > 0 for i in subset):
                    continue
                tables = {i: changed[i] for i in subset}
                total = self._total_length(tables, contents)
                if best is None or total < best.total:
                    best = _Proposal(total, j, tables)
            proposals.append(best)
        return proposals

    def _first_improving(self, candidates: list[Itemset]) -> tuple[int, _Proposal | None]:
        """Try ``candidates`` in order; the index of the first whose best placement lowers
        the total and its proposal, or ``(len(candidates), None)``.

        Candidates are evaluated in batches (one round of counting per batch), all against
        the current model, so the answer is the one a candidate-by-candidate loop would give.
        The first batch holds one candidate and each batch that brings no improvement doubles
        the next, up to the counter's ``batch_size``: the first candidates of a list are the
        likeliest to be accepted (Slim's by estimated gain), and every candidate of a batch
        after the accepted one is counted for nothing.
        """
        limit = max(1, self._live_counter().batch_size)
        start, step = 0, 1
        while start < len(candidates):
            batch = candidates[start : start + step]
            if any(x not in self._support for x in batch):
                # The supports of the next batches too, in one round of counting.
                self._register(candidates[start : start + max(step, limit)])
            for offset, proposal in enumerate(self._propose_additions(batch)):
                if proposal is not None and proposal.total < self._total - _MIN_GAIN:
                    return start + offset, proposal
            start += len(batch)
            step = min(2 * step, limit)
        return len(candidates), None

    def _propose_removals(self, itemsets: list[Itemset]) -> list[_Proposal]:
        """The model without each of ``itemsets`` (each alone, against the current model),
        in one round of counting."""
        planned = []
        requests: list[UsageChange] = []
        for itemset in itemsets:
            plans, more = self._plan_change(itemset, list(self._subsets[self._placed[itemset]]), add=False)
            planned.append(plans)
            requests.extend(more)
        counts = iter(self._live_counter().usage_changes(requests))
        proposals = []
        for itemset, plans in zip(itemsets, planned, strict=True):
            tables = self._finish_change(plans, counts, add=False)
            contents = [self._content[x] for x in self._placed if x != itemset]
            proposals.append(_Proposal(self._total_length(tables, contents), self._placed[itemset], tables))
        return proposals

    # ---------------------------------------------------------- model updates

    def _apply(self, proposal: _Proposal) -> None:
        for i, table in proposal.tables.items():
            change = self._co_usage_change(i, self._tables[i], table)
            if change is not None:
                self._co_pending.append(change)
            self._tables[i] = table
        self._total = self._total_length()

    def _co_usages_now(self) -> None:
        """Bring the co-usages up to date with the table changes made since they were last
        needed, in one round of counting (Slim's list is built only every few acceptances and
        prunings; nothing else reads them)."""
        if self._co_pending:
            for i, counts in self._live_counter().co_usage_sequence(self._co_pending).items():
                # Nothing else holds the matrices replaced: the next ones take their memory.
                self._co_spare[i], self._co[i] = self._co[i], counts
            self._co_pending = []

    def _co_usage_change(self, i: int, old: _Table, new: _Table) -> CoUsageChange | None:
        """What brings group ``i``'s co-usages from table ``old`` to ``new`` (one pattern in or
        out); None when it has none to bring (they are counted afresh when next needed)."""
        counts = self._co[i]
        if counts is None:
            return None
        add = len(new.itemsets) == len(old.itemsets) + 1
        if not add and len(new.itemsets) != len(old.itemsets) - 1:
            self._co[i] = None
            self._co_pending = [c for c in self._co_pending if c.group != i]
            return None
        shorter, longer = (old.itemsets, new.itemsets) if add else (new.itemsets, old.itemsets)
        pos = next((t for t, x in enumerate(shorter) if x != longer[t]), len(shorter))
        return CoUsageChange(i, counts, old.bits, new.bits, self._bits[longer[pos]], pos, add, self._co_spare[i])

    def _usage_matrix(self, names: list[Itemset]) -> np.ndarray:
        """``[len(names), k]`` usage of each of ``names`` in every group (0 where a group's
        table does not hold it)."""
        index = {x: r for r, x in enumerate(names)}
        out = np.zeros((len(names), self._k), np.int64)
        for i, table in enumerate(self._tables):
            rows = np.fromiter((index.get(x, -1) for x in table.itemsets), np.int64, len(table.itemsets))
            held = rows >= 0
            out[rows[held], i] = table.pat_usage[held]
        return out

    def _accept(self, itemset: Itemset, proposal: _Proposal) -> None:
        """Add ``itemset`` to the subset of ``proposal``, then prune."""
        names = list(self._placed)
        before = self._usage_matrix(names)
        j = proposal.subset_index
        self._placed[itemset] = j
        self._apply(proposal)
        logger.debug("DiffNorm: + %s in %s, total %.1f bits", itemset, self._subsets[j], self._total)
        self._prune(names, before, exclude=itemset)

    def _prune(self, names: list[Itemset], before: np.ndarray, exclude: Itemset) -> None:
        """Remove model patterns whose usage fell below ``before`` (the usages of ``names``),
        lowest usage first, while that helps."""

        def fell(names: list[Itemset], before: np.ndarray) -> set[Itemset]:
            lower = np.any(self._usage_matrix(names) < before, axis=1).tolist()
            return {x for x, f in zip(names, lower, strict=True) if f and x != exclude and x in self._placed}

        pending = fell(names, before)
        # Victims are tried in the order one at a time would take them; while none is removed
        # the model stays as it is, so several are evaluated per round of counting (one, then
        # twice as many after each round that removes nothing, up to the counter's batch).
        limit = max(1, self._live_counter().batch_size)
        step = 1
        while pending:
            names = list(self._placed)
            usage = self._usage_matrix(names)
            total = dict(zip(names, usage.sum(axis=1).tolist(), strict=True))
            victims = sorted(pending, key=lambda x: (total[x], -len(x), x))[:step]
            step = min(2 * step, limit)
            for victim, proposal in zip(victims, self._propose_removals(victims), strict=True):
                pending.discard(victim)
                if proposal.total < self._total - _MIN_GAIN:
                    j = self._placed.pop(victim)
                    self._apply(proposal)
                    logger.debug(
                        "DiffNorm: - %s from %s, total %.1f bits",
                        victim,
                        self._subsets[j],
                        self._total,
                    )
                    pending |= fell(names, usage)
                    step = 1
                    break

    # --------------------------------------------------------------- results

    def _build_result(self, singleton_length: float, n_accepted: int) -> DiffNormResult:
        names = list(self._placed)
        usage = dict(zip(names, self._usage_matrix(names), strict=True))
        patterns = []
        for j, subset in enumerate(self._subsets):
            members = sorted(
                (x for x, placed_in in self._placed.items() if placed_in == j),
                key=lambda x: (-int(self._support[x].sum()), -len(x), x),
            )
            for x in members:
                patterns.append(
                    DiffNormPattern(
                        itemset=x,
                        subset=subset,
                        usage=tuple(usage[x].tolist()),
                        support=tuple(int(s) for s in self._support[x]),
                    )
                )
        data_lengths = tuple(t.data for t in self._tables)
        return DiffNormResult(
            subsets=tuple(self._subsets),
            patterns=tuple(patterns),
            total_length=self._total,
            model_length=self._total - math.fsum(data_lengths),
            data_lengths=data_lengths,
            singleton_length=singleton_length,
            n_accepted=n_accepted,
            n_rows=self._n_rows,
            singleton_usage=np.stack([t.item_usage for t in self._tables]),
        )


def diffnorm(
    groups: Sequence[Any],
    min_support: int | float = 0.05,
    max_candidates: int = 1000,
    max_iterations: int = 500,
    subsets: Sequence[Sequence[int]] | None = None,
) -> DiffNormResult:
    """Run :class:`DiffNorm` on ``groups`` and return its :class:`DiffNormResult`."""
    return DiffNorm(min_support, max_candidates, max_iterations, subsets).fit(groups).discover()
