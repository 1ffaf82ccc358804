"""Numba kernels for DiffNorm: covers, usages and supports over bit-packed rows.

A row (transaction) of ``m`` items is ``W = ceil(m / 64)`` ``uint64`` words; item ``x`` is
bit ``x % 64`` of word ``x // 64``. A code table is a ``[p, W] uint64`` matrix of patterns
already in standard cover order. These kernels are stateless (the covers a count starts
from are arrays its caller keeps): the single-process search calls them on whole databases,
the Ray layer on row partitions, and the counts add up.

Most counts of a search concern the rows that contain one pattern (only their covers
change when it enters or leaves a table). Those rows are found from the database's item
columns (:func:`item_columns`: one bit per row for each item) by AND-ing the pattern's
items' columns, ``|X| * n / 64`` words, instead of testing every row: on 100,000 rows of
2,000 items that scan read a cache line of each row, about 6 MB per group and count.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from neurolake.mining._lcm_kernels import _lowest_bit, _popcount

__all__ = [
    "co_usage",
    "co_usage_add",
    "co_usage_delta",
    "co_usage_renumbered",
    "cover_usage",
    "cover_usage_of",
    "cover_usage_change_cached",
    "cover_usage_change_of",
    "covers_gather",
    "covers_recount",
    "covers_write",
    "co_usage_delta_kept",
    "co_usage_delta_of",
    "item_columns",
    "rows_containing",
    "rows_within",
    "supports_of_columns",
    "pack_rows",
    "log_tables",
    "slim_gains",
    "slim_gains_tabled",
    "supports",
    "words_for",
]

_ONE = np.uint64(1)
_ZERO = np.uint64(0)
# :func:`co_usage` adds the pairs of the covers of a block of rows (this many bytes of their
# elements, kept in the last-level cache) to a band of the matrix's rows (this many bytes,
# kept in a core's L2 cache) at a time. On the 2-core AMD EPYC (1 MB of L2 a core, 32 MB of L3
# shared), 800,000 rows of 100 items out of 2,000: 3.6 s, and 1.9-2.0 s for two threads
# counting a half each, against 5.3-5.5 s and 2.7-3.0 s with bands of 256 KB over every row
# (which read the elements of every row again for every band); blocks of 2-8 MB and bands of
# 384 KB-1 MB within 4 % of each other.
_CO_USAGE_BAND_BYTES = 512 * 1024
_CO_USAGE_BLOCK_BYTES = 4 * 1024 * 1024


# Rows ahead of the one being covered whose words a count asks the CPU to fetch: at 2 M frames
# of 2,000 units, a search's candidates' counts took 7.4-7.7 s in one process against 9.5-10.2 s
# without, and its co-usage changes 5.0-5.1 s against 5.3-5.5 s.
_PREFETCH_ROWS = 8


@intrinsic
def _prefetch(typingctx, array, row, word):
    """Ask the CPU to bring ``array[row, word]`` (a 2-D array's element) into its caches, to be
    read soon (LLVM's prefetch: a hint that never faults). A count reads rows scattered over
    the database; fetching those a few rows ahead keeps the next ones' misses from stalling
    the one being covered."""
    sig = types.void(array, row, word)

    def codegen(context, builder, signature, args):
        array_type = signature.args[0]
        view = context.make_array(array_type)(context, builder, args[0])
        address = cgutils.get_item_pointer(context, builder, array_type, view, [args[1], args[2]])
        byte_pointer = ir.IntType(8).as_pointer()
        function = cgutils.get_or_insert_function(
            builder.module,
            ir.FunctionType(ir.VoidType(), [byte_pointer, ir.IntType(32), ir.IntType(32), ir.IntType(32)]),
            "llvm.prefetch.p0",
        )
        # Read, keep in every cache level, data (not instructions).
        flags = [ir.Constant(ir.IntType(32), v) for v in (0, 3, 1)]
        builder.call(function, [builder.bitcast(address, byte_pointer), *flags])
        return context.get_dummy_value()

    return sig, codegen


@numba.njit(cache=True, nogil=True, inline="always")
def _prefetch_row(rows: np.ndarray, r: int) -> None:
    """Ask for every cache line of row ``r`` of the packed ``rows`` (8 words a line)."""
    for w in range(0, rows.shape[1], 8):
        _prefetch(rows, r, w)


@numba.njit(cache=True, nogil=True, inline="always")
def _fetch_ahead(rows: np.ndarray, selected: np.ndarray, k: int) -> None:
    """Before covering row ``selected[k]``: ask for the row ``_PREFETCH_ROWS`` further on (and,
    at the first, for those before it)."""
    if k == 0:
        for j in range(1, min(_PREFETCH_ROWS, selected.size)):
            _prefetch_row(rows, selected[j])
    if k + _PREFETCH_ROWS < selected.size:
        _prefetch_row(rows, selected[k + _PREFETCH_ROWS])


def words_for(n_items: int) -> int:
    """Words per row for ``n_items`` items (at least one, so empty universes still pack)."""
    return max(1, (n_items + 63) // 64)


def pack_rows(dense: np.ndarray) -> np.ndarray:
    """Pack a ``[rows, items]`` matrix (non-zero = present) into ``[rows, W] uint64`` words."""
    dense = np.asarray(dense)
    n_rows, n_items = dense.shape
    n_words = words_for(n_items)
    # Little bit order puts item 8b + j at bit j of byte b; little-endian bytes then make
    # item x bit x % 64 of word x // 64. A boolean matrix is packed as it is and the packed
    # bytes padded to whole words (1,000,000 x 2,000: padding the matrix itself to whole words
    # first made a temporary of 2 GB and took 4.5 times as long).
    present = dense if dense.dtype == np.bool_ else dense != 0
    packed = np.packbits(present, axis=1, bitorder="little")
    if packed.shape[1] != n_words * 8:
        padded = np.zeros((n_rows, n_words * 8), np.uint8)
        padded[:, : packed.shape[1]] = packed
        packed = padded
    return np.ascontiguousarray(packed).view("<u8").astype(np.uint64, copy=False)


@numba.njit(cache=True, nogil=True)
def _contains(row: np.ndarray, pattern: np.ndarray) -> bool:
    for w in range(pattern.size):
        if row[w] & pattern[w] != pattern[w]:
            return False
    return True


@numba.njit(cache=True, nogil=True)
def item_columns(rows: np.ndarray, n_items: int) -> np.ndarray:
    """The database by item: ``[n_items, ceil(n / 64)] uint64``, bit ``r % 64`` of word
    ``r // 64`` of item ``x``'s column set where row ``r`` holds ``x``. Built 64 rows at a
    time in one word per item, then written out (a write per item and 64 rows, not per bit)."""
    n_rows, n_words = rows.shape
    n_cols = (n_rows + 63) // 64
    cols = np.zeros((n_items, n_cols), np.uint64)
    block = np.zeros(n_words * 64, np.uint64)
    for c in range(n_cols):
        block[:] = _ZERO
        start = c * 64
        for r in range(start, min(n_rows, start + 64)):
            bit = _ONE << np.uint64(r - start)
            for w in range(n_words):
                bits = rows[r, w]
                while bits != _ZERO:
                    block[w * 64 + np.int64(_lowest_bit(bits))] |= bit
                    bits &= bits - _ONE
        for x in range(n_items):
            cols[x, c] = block[x]
    return cols


@numba.njit(cache=True, nogil=True)
def _set_bits(words: np.ndarray, limit: int) -> np.ndarray:
    """``[k] int64`` positions (increasing) of the set bits of ``words`` below ``limit``:
    a pattern's items, or the rows of a column."""
    count = 0
    for w in range(words.size):
        count += np.int64(_popcount(words[w]))
    out = np.empty(count, np.int64)
    k = 0
    for w in range(words.size):
        bits = words[w]
        while bits != _ZERO:
            x = w * 64 + np.int64(_lowest_bit(bits))
            if x < limit:
                out[k] = x
                k += 1
            bits &= bits - _ONE
    return out[:k]


@numba.njit(cache=True, nogil=True, inline="always")
def _rows_of_pattern(cols: np.ndarray, pattern: np.ndarray, n_rows: int, acc: np.ndarray) -> None:
    """Write into ``acc`` the rows (a column's bits) that hold ``pattern``: the AND of its
    items' columns; every row for the empty pattern, none for one with an item beyond the
    universe."""
    items = _set_bits(pattern, cols.shape[0])
    if items.size == 0:
        fill = _ZERO if np.any(pattern != _ZERO) else ~_ZERO
        for c in range(acc.size):
            acc[c] = fill
        if fill != _ZERO and n_rows % 64:
            acc[acc.size - 1] = (_ONE << np.uint64(n_rows % 64)) - _ONE
        return
    acc[:] = cols[items[0]]
    for j in range(1, items.size):
        col = cols[items[j]]
        for c in range(acc.size):
            acc[c] &= col[c]


@numba.njit(cache=True, nogil=True)
def rows_within(cols: np.ndarray, within: np.ndarray, n_rows: int) -> np.ndarray:
    """``[k] int64`` rows (increasing) that contain the itemset ``within [W] uint64``, from
    the item columns of :func:`item_columns`; every row for the empty itemset."""
    acc = np.empty(cols.shape[1], np.uint64)
    _rows_of_pattern(cols, within, n_rows, acc)
    return _set_bits(acc, n_rows)


@numba.njit(cache=True, nogil=True)
def rows_containing(rows: np.ndarray, within: np.ndarray) -> np.ndarray:
    """``[k] int64`` rows (increasing) of the packed ``rows`` that contain ``within``, by
    testing each row (:func:`rows_within` finds them from item columns)."""
    out = np.empty(rows.shape[0], np.int64)
    k = 0
    for r in range(rows.shape[0]):
        if _contains(rows[r], within):
            out[k] = r
            k += 1
    return out[:k]


@numba.njit(cache=True, nogil=True)
def supports_of_columns(cols: np.ndarray, patterns: np.ndarray, n_rows: int) -> np.ndarray:
    """``[p] int64`` rows containing each of ``patterns [p, W]``, as :func:`supports`
    counts them, from the item columns: popcounts of the AND of each pattern's columns."""
    out = np.zeros(patterns.shape[0], np.int64)
    acc = np.empty(cols.shape[1], np.uint64)
    for t in range(patterns.shape[0]):
        _rows_of_pattern(cols, patterns[t], n_rows, acc)
        total = 0
        for c in range(acc.size):
            total += np.int64(_popcount(acc[c]))
        out[t] = total
    return out


@numba.njit(cache=True, nogil=True)
def cover_usage(rows: np.ndarray, table: np.ndarray, within: np.ndarray, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """Usages of the greedy cover of every row that contains ``within``.

    Each row is covered by the patterns of ``table`` in order (a pattern is used when all
    its items are still uncovered), then by singletons for what is left.

    Args:
        rows: ``[n, W] uint64`` packed rows.
        table: ``[p, W] uint64`` patterns in cover order.
        within: ``[W] uint64`` itemset; only rows containing it are covered (all zeros: all
            rows).
        n_items: size of the item universe.

    Returns:
        ``([p] int64, [n_items] int64)``: rows whose cover uses each pattern, and each item
        as a singleton.
    """
    return cover_usage_of(rows, rows_containing(rows, within), table, n_items)


@numba.njit(cache=True, nogil=True)
def cover_usage_of(
    rows: np.ndarray, selected: np.ndarray, table: np.ndarray, n_items: int
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`cover_usage` of the rows ``selected`` (``[k] int64`` indices)."""
    n_words = rows.shape[1]
    n_pat = table.shape[0]
    pat_usage = np.zeros(n_pat, np.int64)
    item_usage = np.zeros(n_items, np.int64)
    rest = np.empty(n_words, np.uint64)
    used = np.empty(n_pat, np.int64)
    ptr, word, mask = _sparse(table)
    for k in range(selected.size):
        _fetch_ahead(rows, selected, k)
        row = rows[selected[k]]
        for w in range(n_words):
            rest[w] = row[w]
        for u in range(_cover_patterns(ptr, word, mask, 0, n_pat, rest, used, 0)):
            pat_usage[used[u]] += 1
        for w in range(n_words):
            bits = rest[w]
            while bits != _ZERO:
                item_usage[w * 64 + np.int64(_lowest_bit(bits))] += 1
                bits &= bits - _ONE
    return pat_usage, item_usage


@numba.njit(cache=True, nogil=True)
def cover_usage_change_of(
    rows: np.ndarray, selected: np.ndarray, old: np.ndarray, new: np.ndarray, n_items: int, pos: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The usages of the rows ``selected`` under two tables that agree before ``pos`` (one
    pattern inserted at ``pos`` into ``old``, or removed from it there), each row read and
    its shared cover prefix made once.

    Returns:
        ``([p_old] int64, [p_new] int64, [n_items] int64)``: the pattern usages of
        :func:`cover_usage_of` under ``old`` and under ``new``, and the singleton usages
        under ``new`` minus those under ``old``: only the items covered differently in a
        row are visited (the bits where the two covers' leftovers differ), not every
        leftover item twice.
    """
    n_words = rows.shape[1]
    n_old, n_new = old.shape[0], new.shape[0]
    old_pat = np.zeros(n_old, np.int64)
    new_pat = np.zeros(n_new, np.int64)
    item_change = np.zeros(n_items, np.int64)
    rest = np.empty(n_words, np.uint64)
    rest_new = np.empty(n_words, np.uint64)
    used = np.empty(max(n_old, n_new), np.int64)
    o_ptr, o_word, o_mask = _sparse(old)
    n_ptr, n_word, n_mask = _sparse(new)
    for k in range(selected.size):
        _fetch_ahead(rows, selected, k)
        r = selected[k]
        n_same = _cover_prefix(rows[r], o_ptr, o_word, o_mask, pos, rest, rest_new, used)
        for u in range(n_same):
            old_pat[used[u]] += 1
            new_pat[used[u]] += 1
        for u in range(_cover_patterns(o_ptr, o_word, o_mask, pos, n_old, rest, used, 0)):
            old_pat[used[u]] += 1
        for u in range(_cover_patterns(n_ptr, n_word, n_mask, pos, n_new, rest_new, used, 0)):
            new_pat[used[u]] += 1
        _add_item_changes(rest, rest_new, item_change)
    return old_pat, new_pat, item_change


# A row's cover kept between counts (:func:`covers_recount`, :func:`cover_usage_change_cached`):
# the slots of the patterns it uses, at most as many as ``slots`` has columns; a row whose
# cover uses more is marked with this and covered afresh by every count.
COVER_OVERFLOW = 255


@numba.njit(cache=True, nogil=True)
def covers_recount(
    rows: np.ndarray,
    selected: np.ndarray,
    table: np.ndarray,
    slot_at: np.ndarray,
    slots: np.ndarray,
    n_used: np.ndarray,
) -> None:
    """Cover the rows ``selected`` under ``table`` afresh and keep each cover: ``slots[r]``
    the slots (``slot_at``: the slot of each pattern of ``table``) of the patterns it uses in
    table order, ``n_used[r]`` their number (:data:`COVER_OVERFLOW` where more than ``slots``
    has columns)."""
    ptr, word, mask = _sparse(table)
    rest = np.empty(rows.shape[1], np.uint64)
    used = np.empty(max(1, table.shape[0]), np.int64)
    width = slots.shape[1]
    for k in range(selected.size):
        _fetch_ahead(rows, selected, k)
        r = selected[k]
        for w in range(rows.shape[1]):
            rest[w] = rows[r, w]
        n = _cover_patterns(ptr, word, mask, 0, table.shape[0], rest, used, 0)
        if n > width:
            n_used[r] = COVER_OVERFLOW
        else:
            n_used[r] = n
            for u in range(n):
                slots[r, u] = slot_at[used[u]]


@numba.njit(cache=True, nogil=True)
def cover_usage_change_cached(
    rows: np.ndarray,
    selected: np.ndarray,
    old: np.ndarray,
    new: np.ndarray,
    n_items: int,
    pos: int,
    add: bool,
    slots: np.ndarray,
    n_used: np.ndarray,
    slot_pos: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`cover_usage_change_of` (``add``: ``new`` is ``old`` with a pattern inserted at
    ``pos``, else with the one there removed), each row started from its cover under ``old``
    as :func:`covers_recount` keeps it (``slot_pos``: the position in ``old`` of each slot)
    instead of testing the patterns before ``pos``: what they leave is the row less those
    its cover uses. At 500,000 frames the rows' covers under a search's final tables used
    1.2-1.6 patterns each (at most 8); at 1.5 M frames the tables its counts were of held
    180 patterns on average, and ``pos`` was 121.

    The covers are read first, alone: a cover that cannot change (the pattern inserted
    shares an item with one it uses before ``pos``, or the one removed is not among those
    it uses) is the old one renumbered, and its row is not read. Only the other rows are
    then read, their new cover going on from ``pos``. At 1.5 M frames that left a third of
    the rows to read, and the usage changes of a search (its 778 counts replayed) took
    1.57-1.67 s against 1.85-2.18 s reading every row, in interleaved runs.

    Returns:
        The three counts of :func:`cover_usage_change_of`, then each row's new cover as
        positions in ``new``: ``[k, slots.shape[1]] uint16`` and ``[k] uint8`` their number
        (:data:`COVER_OVERFLOW` where more), for :func:`covers_write` once ``new`` is kept.
    """
    n_words = rows.shape[1]
    n_old, n_new = old.shape[0], new.shape[0]
    width = slots.shape[1]
    old_pat = np.zeros(n_old, np.int64)
    new_pat = np.zeros(n_new, np.int64)
    item_change = np.zeros(n_items, np.int64)
    rest = np.empty(n_words, np.uint64)
    rest_new = np.empty(n_words, np.uint64)
    was = np.empty(max(1, n_old), np.int64)
    now = np.empty(max(1, n_new), np.int64)
    new_cov = np.zeros((selected.size, width), np.uint16)
    new_n = np.zeros(selected.size, np.uint8)
    o_ptr, o_word, o_mask = _sparse(old)
    n_ptr, n_word, n_mask = _sparse(new)
    # First the kept covers alone; ``clash``: the patterns before ``pos`` that share an item
    # with the one inserted.
    clash = np.zeros(max(1, pos), np.bool_)
    if add:
        for t in range(pos):
            for j in range(o_ptr[t], o_ptr[t + 1]):
                if new[pos, o_word[j]] & o_mask[j] != _ZERO:
                    clash[t] = True
    n_used_rows = n_used.reshape((n_used.size, 1))  # 2-D, as the prefetch takes it
    shift = 1 if add else -1
    read = np.empty(selected.size, np.int64)
    n_read = 0
    for k in range(selected.size):
        if k + _PREFETCH_ROWS < selected.size:
            _prefetch(slots, selected[k + _PREFETCH_ROWS], 0)
            _prefetch(n_used_rows, selected[k + _PREFETCH_ROWS], 0)
        r = selected[k]
        n_was = np.int64(n_used[r])
        changes = add or n_was == COVER_OVERFLOW
        if n_was != COVER_OVERFLOW:
            for u in range(n_was):
                t = slot_pos[slots[r, u]]
                if add and t < pos and clash[t]:
                    changes = False
                    break
                if not add and t == pos:
                    changes = True
                    break
        if changes:
            read[n_read] = k
            n_read += 1
            continue
        for u in range(n_was):
            t = slot_pos[slots[r, u]]
            old_pat[t] += 1
            if t >= pos:
                t += shift
            new_pat[t] += 1
            new_cov[k, u] = t
        new_n[k] = n_was
    # Then the rows whose cover may change, read and covered.
    reading = selected[read[:n_read]]
    for j in range(n_read):
        _fetch_ahead(rows, reading, j)
        k = read[j]
        r = selected[k]
        for w in range(n_words):
            rest[w] = rows[r, w]
        if n_used[r] == COVER_OVERFLOW:
            n_was = _cover_patterns(o_ptr, o_word, o_mask, 0, n_old, rest, was, 0)
            for w in range(n_words):
                rest[w] = rows[r, w]
        else:
            n_was = np.int64(n_used[r])
            for u in range(n_was):
                was[u] = slot_pos[slots[r, u]]
        # rest_new: what the patterns before pos leave (the covers' shared start); rest: what
        # the whole old cover leaves.
        for u in range(n_was):
            old_pat[was[u]] += 1
            if was[u] < pos:
                _clear_pattern(rest, o_ptr, o_word, o_mask, was[u])
        for w in range(n_words):
            rest_new[w] = rest[w]
        differs = False
        n_now = 0
        for u in range(n_was):
            t = was[u]
            if t < pos:
                now[n_now] = t
                n_now += 1
            else:
                _clear_pattern(rest, o_ptr, o_word, o_mask, t)
                differs |= t == pos and not add
        if add:
            differs = _fits(rest_new, n_ptr, n_word, n_mask, pos)
        if differs:
            n_now = _cover_patterns(n_ptr, n_word, n_mask, pos, n_new, rest_new, now, n_now)
            _add_item_changes(rest, rest_new, item_change)
        else:
            for u in range(n_was):
                if was[u] >= pos:
                    now[n_now] = was[u] + shift
                    n_now += 1
        for u in range(n_now):
            new_pat[now[u]] += 1
        if n_now > width:
            new_n[k] = COVER_OVERFLOW
        else:
            new_n[k] = n_now
            for u in range(n_now):
                new_cov[k, u] = now[u]
    return old_pat, new_pat, item_change, new_cov, new_n


@numba.njit(cache=True, nogil=True)
def covers_gather(
    slots: np.ndarray, n_used: np.ndarray, selected: np.ndarray, slot_pos: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The covers kept of the rows ``selected`` as positions in their table (``slot_pos``:
    the position of each slot): ``[k, slots.shape[1]] uint16`` and ``[k] uint8`` their
    number, as :func:`co_usage_delta_kept` reads them."""
    cov = np.zeros((selected.size, slots.shape[1]), np.uint16)
    n = np.empty(selected.size, np.uint8)
    for k in range(selected.size):
        r = selected[k]
        n[k] = n_used[r]
        if n_used[r] != COVER_OVERFLOW:
            for u in range(n_used[r]):
                cov[k, u] = slot_pos[slots[r, u]]
    return cov, n


@numba.njit(cache=True, nogil=True)
def covers_write(
    slots: np.ndarray,
    n_used: np.ndarray,
    selected: np.ndarray,
    new_cov: np.ndarray,
    new_n: np.ndarray,
    slot_at: np.ndarray,
) -> None:
    """Keep the new covers :func:`cover_usage_change_cached` made of the rows ``selected``
    (``slot_at``: the slot of each pattern of the new table)."""
    for k in range(selected.size):
        r = selected[k]
        n_used[r] = new_n[k]
        if new_n[k] != COVER_OVERFLOW:
            for u in range(new_n[k]):
                slots[r, u] = slot_at[new_cov[k, u]]


@numba.njit(cache=True, nogil=True)
def co_usage(
    rows: np.ndarray,
    table: np.ndarray,
    n_items: int,
    band_bytes: int = _CO_USAGE_BAND_BYTES,
    block_bytes: int = _CO_USAGE_BLOCK_BYTES,
) -> np.ndarray:
    """Rows whose cover uses both of two elements (Slim's estimate of a union's usage):
    :func:`co_usage_into` a matrix of zeros.

    Returns:
        ``[p + n_items, p + n_items] int32``, filled above the diagonal only (``a < b``).
    """
    n_el = table.shape[0] + n_items
    flat = np.zeros(n_el * n_el, np.int32)  # counts of rows: int32 halves the memory traffic
    co_usage_into(rows, table, n_items, flat, band_bytes, block_bytes)
    return flat.reshape((n_el, n_el))


@numba.njit(cache=True, nogil=True)
def co_usage_into(
    rows: np.ndarray,
    table: np.ndarray,
    n_items: int,
    flat: np.ndarray,
    band_bytes: int = _CO_USAGE_BAND_BYTES,
    block_bytes: int = _CO_USAGE_BLOCK_BYTES,
) -> None:
    """Add to ``flat`` the rows whose cover uses both of two elements (Slim's estimate of a
    union's usage), so that the rows can be counted a part at a time.

    Elements are numbered patterns first (``0..p-1``, table order), then singletons
    (``p + x``). Two elements used in the same cover are disjoint, so their union has
    ``|a| + |b|`` items.

    Args:
        rows: ``[n, W] uint64`` packed rows.
        table: ``[p, W] uint64`` patterns in cover order.
        n_items: size of the item universe.
        flat: ``[(p + n_items) ** 2] int32``, the matrix ``[p + n_items, p + n_items]`` flat,
            added to above the diagonal only (``a < b``).
        band_bytes: bytes of the matrix's rows one pass adds to (see ``_CO_USAGE_BAND_BYTES``).
        block_bytes: bytes of covers' elements (4 each) made and read at a time (whole rows:
            one more than fits, at least one).
    """
    n_rows, n_words = rows.shape
    n_pat = table.shape[0]
    n_el = n_pat + n_items
    sparse = _sparse(table)
    rest = np.empty(n_words, np.uint64)
    used = np.empty(n_el, np.int64)
    # The pairs by bands of first elements: each band's rows of the matrix stay in cache
    # while every cover adds its pairs there (the whole matrix, 19 MB for 2,200 elements,
    # does not), and a cursor per cover keeps each pair visited once. A cover's pairs with a
    # first element in a band reach to its last element, so a pass reads nearly all of each
    # cover: the rows go by blocks, whose covers (their elements in increasing order) are
    # made and stay in cache through all the bands, never written out for every row.
    # Added through a flat view at unsigned offsets (no wraparound test for negative
    # indices), four at a time with the four loads before the four stores: a cover's
    # elements are distinct, so the four counts are, and the loads need not wait for the
    # stores before them. 100,000 rows of 100 items out of 2,000 (about 500 M pairs): 1.05 s
    # against 1.9 s one at a time and 2.84 s through rows of the 2-D matrix.
    band = max(1, band_bytes // (4 * n_el))
    block = max(1, block_bytes // 4)
    # A block closes once it holds ``block`` elements or rows; one more cover always fits.
    block_rows = min(block, n_rows)
    elements = np.empty(min(block, n_rows * n_el) + n_el, np.int32)
    ptr = np.empty(block_rows + 2, np.int64)
    cursor = np.empty(block_rows + 1, np.int64)
    width = np.uint64(n_el)
    r0 = 0
    while r0 < n_rows:
        n_block = 0
        ptr[0] = 0
        while r0 + n_block < n_rows and n_block < block_rows and ptr[n_block] < block:
            n_used = _cover_elements(rows[r0 + n_block], sparse, n_pat, rest, used)
            at = ptr[n_block]
            for a in range(n_used):
                elements[at + a] = used[a]
            cursor[n_block] = at
            ptr[n_block + 1] = at + n_used
            n_block += 1
        for a0 in range(0, n_el, band):
            a1 = a0 + band
            for r in range(n_block):
                s = cursor[r]
                end = ptr[r + 1]
                while s < end and elements[s] < a1:
                    base = np.uint64(elements[s]) * width
                    c = s + 1
                    while c + 4 <= end:
                        i0 = base + np.uint64(elements[c])
                        i1 = base + np.uint64(elements[c + 1])
                        i2 = base + np.uint64(elements[c + 2])
                        i3 = base + np.uint64(elements[c + 3])
                        v0 = flat[i0]
                        v1 = flat[i1]
                        v2 = flat[i2]
                        v3 = flat[i3]
                        flat[i0] = v0 + 1
                        flat[i1] = v1 + 1
                        flat[i2] = v2 + 1
                        flat[i3] = v3 + 1
                        c += 4
                    while c < end:
                        flat[base + np.uint64(elements[c])] += 1
                        c += 1
                    s += 1
                cursor[r] = s
        r0 += n_block


@numba.njit(cache=True, nogil=True)
def supports(rows: np.ndarray, patterns: np.ndarray) -> np.ndarray:
    """``[p] int64`` number of rows of ``rows [n, W]`` containing each of ``patterns [p, W]``."""
    n_pat = patterns.shape[0]
    out = np.zeros(n_pat, np.int64)
    for r in range(rows.shape[0]):
        row = rows[r]
        for t in range(n_pat):
            if _contains(row, patterns[t]):
                out[t] += 1
    return out


@numba.njit(cache=True, nogil=True)
def slim_gains(
    co: np.ndarray,
    usage: np.ndarray,
    sizes: np.ndarray,
    st_el: np.ndarray,
    singleton_st: np.ndarray,
    length_cost: np.ndarray,
    fixed_cost: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Slim's estimated gain of the union of every pair of elements used together in covers.

    For elements ``a < b`` used together in ``e = co[a, b] > 0`` covers, the union takes over
    those ``e`` uses (the formulas are in ``DiffNorm._slim_candidates``). One pass over the
    upper triangle, in row-major order; pairs whose gain is not positive are left out.

    Args:
        co: ``[n, n] int32`` co-usages (:func:`co_usage`).
        usage: ``[n] int64`` usages of the elements (patterns first, then singletons).
        sizes: ``[n] int64`` items of each element.
        st_el: ``[n]`` standard-code length of each element's items.
        singleton_st: ``[n]`` the standard code of a singleton's item (0 for patterns).
        length_cost: ``[L]`` ``L_N(k)`` at ``k - 1`` for the union lengths that can occur.
        fixed_cost: model cost every union pays (subset label and the count's growth).

    Returns:
        ``(a, b, gain, model_cost)`` of the pairs with a positive gain.
    """
    largest = 0
    for x in range(co.shape[0]):
        largest = max(largest, usage[x])
    lg, xl = log_tables(largest)
    return slim_gains_tabled(co, usage, sizes, st_el, singleton_st, length_cost, fixed_cost, lg, xl)


@numba.njit(cache=True, nogil=True)
def log_tables(largest: int) -> tuple[np.ndarray, np.ndarray]:
    """``(log2 v, v log2 v)`` for the integers ``v`` in ``[0, largest]`` (0 at 0)."""
    xl = np.zeros(largest + 1, np.float64)
    lg = np.zeros(largest + 1, np.float64)
    for v in range(1, largest + 1):
        lg[v] = np.log2(float(v))
        xl[v] = v * lg[v]
    return lg, xl


@numba.njit(cache=True, nogil=True)
def slim_gains_tabled(
    co: np.ndarray,
    usage: np.ndarray,
    sizes: np.ndarray,
    st_el: np.ndarray,
    singleton_st: np.ndarray,
    length_cost: np.ndarray,
    fixed_cost: float,
    lg: np.ndarray,
    xl: np.ndarray,
    top: int = -1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`slim_gains` with the tables of :func:`log_tables`, reaching at least the largest
    of ``usage``, given: a search makes them once for all its lists (no element is used more
    often than its group has rows), instead of a log per usage for every list. The usages'
    total ``U`` and what a pair leaves of it, ``U - e``, are read from a window made here of
    ``log2`` and ``x log2 x`` over ``U - max(e) .. U`` (a table up to the total, made once, was
    1.2 GB and 0.8-3 s at a million rows of a hundred active items, and the search waited on it).

    With ``top >= 0`` only pairs that can be among the ``top`` best are returned (still in
    row-major order, a superset of them): whenever the output fills, it keeps its ``top``
    best (gain descending, earlier pairs first on equal gains) and from then on a pair must
    beat the last of these to enter. A pair left out has ``top`` pairs before it with at
    least its gain, so the ``top`` best of the answer (as ``_top_stable`` picks them) are
    those of all pairs; on dense data most pairs have a positive gain and are never stored.
    """
    if top == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64), np.empty(0, np.float64)
    n = co.shape[0]
    whole = 0
    for x in range(n):
        if usage[x] >= lg.shape[0]:
            raise ValueError("the log tables do not reach every usage")
        whole += usage[x]
    # e = co[a, b] <= min(usage[a], usage[b]), so U - e stays in the window.
    most = 0
    for a in range(n):
        row = co[a]
        for b in range(a + 1, n):
            most = max(most, row[b])
    lg_left = np.zeros(most + 1, np.float64)  # log2(U - e), 0 where U - e = 0 (as lg[0])
    xl_left = np.zeros(most + 1, np.float64)  # (U - e) log2(U - e)
    for e in range(min(most, whole - 1) + 1):
        lg_left[e] = np.log2(float(whole - e))
        xl_left[e] = (whole - e) * lg_left[e]
    log_total = lg_left[0]
    base = xl_left[0]
    capacity = 1024 if top < 0 else max(1024, 4 * top)
    out_a = np.empty(capacity, np.int64)
    out_b = np.empty(capacity, np.int64)
    out_gain = np.empty(capacity, np.float64)
    out_cost = np.empty(capacity, np.float64)
    found = 0
    floor = 0.0  # a pair enters with a gain above this
    for a in range(n):
        ua = usage[a]
        code_a = log_total - lg[max(ua, 1)]
        xl_a = xl[ua]
        row = co[a]
        for b in range(a + 1, n):
            e = row[b]
            if e == 0:
                continue
            ub = usage[b]
            after = whole - e
            gain = base - xl_left[e] - xl_a - xl[ub] + xl[ua - e] + xl[ub - e] + xl[e] - (lg_left[e] - lg[e])
            if after == 0:
                gain = np.inf  # as log2(0) = -inf would give
            if ua == e:
                gain += code_a + singleton_st[a]
            if ub == e:
                gain += log_total - lg[max(ub, 1)] + singleton_st[b]
            if gain <= floor:
                continue
            if found == capacity and top > 0:
                found, floor = _keep_best(out_a, out_b, out_gain, out_cost, found, top)
                if gain <= floor:
                    continue
            elif found == capacity:
                capacity *= 2
                out_a = _grown(out_a, capacity)
                out_b = _grown(out_b, capacity)
                out_gain = _grown(out_gain, capacity)
                out_cost = _grown(out_cost, capacity)
            out_a[found] = a
            out_b[found] = b
            out_gain[found] = gain
            out_cost[found] = fixed_cost + st_el[a] + st_el[b] + length_cost[sizes[a] + sizes[b] - 1]
            found += 1
    return out_a[:found], out_b[:found], out_gain[:found], out_cost[:found]


@numba.njit(cache=True, nogil=True)
def _keep_best(
    out_a: np.ndarray, out_b: np.ndarray, out_gain: np.ndarray, out_cost: np.ndarray, found: int, top: int
) -> tuple[int, float]:
    """Keep the ``top`` best of the ``found`` pairs stored (gain descending, earlier first on
    ties), in their order; their number and the gain of the last of them."""
    order = np.argsort(-out_gain[:found], kind="mergesort")
    floor = out_gain[order[top - 1]]
    kept = np.sort(order[:top])
    for t in range(kept.size):
        s = kept[t]  # s >= t: moving forward overwrites nothing still needed
        out_a[t] = out_a[s]
        out_b[t] = out_b[s]
        out_gain[t] = out_gain[s]
        out_cost[t] = out_cost[s]
    return kept.size, floor


@numba.njit(cache=True, nogil=True)
def _grown(values: np.ndarray, capacity: int) -> np.ndarray:
    out = np.empty(capacity, values.dtype)
    out[: values.shape[0]] = values
    return out


@numba.njit(cache=True, nogil=True)
def _sparse(table: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A table by its non-zero words: pattern ``t`` is ``mask[j]`` in word ``word[j]`` for
    ``j`` in ``ptr[t]..ptr[t+1]-1``. A pattern of a few items spans a few of a row's words,
    so a cover tests and clears those only."""
    n_pat, n_words = table.shape
    ptr = np.zeros(n_pat + 1, np.int64)
    for t in range(n_pat):
        ptr[t + 1] = ptr[t]
        for w in range(n_words):
            if table[t, w] != _ZERO:
                ptr[t + 1] += 1
    word = np.empty(ptr[n_pat], np.int64)
    mask = np.empty(ptr[n_pat], np.uint64)
    j = 0
    for t in range(n_pat):
        for w in range(n_words):
            if table[t, w] != _ZERO:
                word[j] = w
                mask[j] = table[t, w]
                j += 1
    return ptr, word, mask


@numba.njit(cache=True, nogil=True)
def _cover_elements(
    row: np.ndarray, sparse: tuple[np.ndarray, np.ndarray, np.ndarray], n_pat: int, rest: np.ndarray, used: np.ndarray
) -> int:
    """Write the elements the cover of ``row`` uses into ``used`` (increasing: patterns by
    table position, then ``p + x`` for singleton ``x``); their number. ``sparse``: the
    table of ``n_pat`` patterns as :func:`_sparse` gives it."""
    for w in range(row.shape[0]):
        rest[w] = row[w]
    ptr, word, mask = sparse
    n_used = _cover_patterns(ptr, word, mask, 0, n_pat, rest, used, 0)
    return _cover_singletons(n_pat, rest, used, n_used)


@numba.njit(cache=True, nogil=True, inline="always")
def _cover_patterns(
    ptr: np.ndarray,
    word: np.ndarray,
    mask: np.ndarray,
    start: int,
    stop: int,
    rest: np.ndarray,
    used: np.ndarray,
    n_used: int,
) -> int:
    """Continue a cover (``rest``: the items still uncovered) with the patterns
    ``start..stop-1`` of a table (:func:`_sparse`), appending those used to
    ``used[n_used:]``."""
    for t in range(start, stop):
        if _fits(rest, ptr, word, mask, t):
            used[n_used] = t
            n_used += 1
            _clear_pattern(rest, ptr, word, mask, t)
    return n_used


@numba.njit(cache=True, nogil=True, inline="always")
def _fits(rest: np.ndarray, ptr: np.ndarray, word: np.ndarray, mask: np.ndarray, t: int) -> bool:
    """Whether pattern ``t`` of a table (:func:`_sparse`) is within ``rest``."""
    for j in range(ptr[t], ptr[t + 1]):
        if rest[word[j]] & mask[j] != mask[j]:
            return False
    return True


@numba.njit(cache=True, nogil=True, inline="always")
def _clear_pattern(rest: np.ndarray, ptr: np.ndarray, word: np.ndarray, mask: np.ndarray, t: int) -> None:
    """Take pattern ``t`` of a table (:func:`_sparse`) out of ``rest``."""
    for j in range(ptr[t], ptr[t + 1]):
        rest[word[j]] &= ~mask[j]


@numba.njit(cache=True, nogil=True, inline="always")
def _add_item_changes(rest: np.ndarray, rest_new: np.ndarray, item_change: np.ndarray) -> None:
    """Count the singleton changes of a row whose two covers leave ``rest`` and ``rest_new``:
    only the items where they differ, +1 left to singletons by the new cover, -1 by the old."""
    for w in range(rest.shape[0]):
        bits = rest[w] ^ rest_new[w]
        while bits != _ZERO:
            x = w * 64 + np.int64(_lowest_bit(bits))
            if rest_new[w] & (bits & (~bits + _ONE)) != _ZERO:
                item_change[x] += 1
            else:
                item_change[x] -= 1
            bits &= bits - _ONE


@numba.njit(cache=True, nogil=True, inline="always")
def _cover_prefix(
    row: np.ndarray,
    ptr: np.ndarray,
    word: np.ndarray,
    mask: np.ndarray,
    pos: int,
    rest: np.ndarray,
    rest_new: np.ndarray,
    used: np.ndarray,
) -> int:
    """Start the covers of ``row`` under two tables that agree before ``pos`` (one pattern
    inserted or removed there): the patterns ``0..pos-1`` of the first (:func:`_sparse`), the
    part the covers share, written to ``used[:n]``; ``rest`` and ``rest_new`` both hold what
    it leaves, for each cover to go on from. ``n``."""
    for w in range(row.shape[0]):
        rest[w] = row[w]
    n_same = _cover_patterns(ptr, word, mask, 0, pos, rest, used, 0)
    for w in range(row.shape[0]):
        rest_new[w] = rest[w]
    return n_same


@numba.njit(cache=True, nogil=True, inline="always")
def _cover_singletons(n_pat: int, rest: np.ndarray, used: np.ndarray, n_used: int) -> int:
    """End a cover with the singletons of what ``rest`` leaves (``n_pat + x``)."""
    for w in range(rest.shape[0]):
        bits = rest[w]
        while bits != _ZERO:
            used[n_used] = n_pat + w * 64 + np.int64(_lowest_bit(bits))
            n_used += 1
            bits &= bits - _ONE
    return n_used


@numba.njit(cache=True, nogil=True, inline="always")
def _give_slots(cover, at, n_changed, slot_of, slot_el, n_slots):  # pragma: no cover - numba
    """Give the changed elements ``cover[at[:n_changed]]`` that have none a row of the dense
    change counts (``slot_of[x]``, and ``slot_el`` back); the number of rows given."""
    for g in range(n_changed):
        x = cover[at[g]]
        if slot_of[x] < 0:
            slot_of[x] = n_slots
            slot_el[n_slots] = x
            n_slots += 1
    return n_slots


@numba.njit(cache=True, nogil=True, inline="always")
def _changed_pairs(cover, n, changed, at, n_changed, slot_of, counts, sign):  # pragma: no cover - numba
    """Add ``sign`` to ``counts[slot_of[x], y]`` for every pair ``x, y`` of the cover
    ``cover[:n]`` that holds an element marked in ``changed`` (at the positions
    ``at[:n_changed]``), once: a pair of two changed elements from the first of them."""
    for g in range(n_changed):
        a = at[g]
        row = counts[slot_of[cover[a]]]
        for c in range(n):
            if c == a or (c < a and changed[cover[c]]):
                continue
            row[cover[c]] += sign


@numba.njit(cache=True, nogil=True)
def co_usage_delta(
    rows: np.ndarray, old: np.ndarray, new: np.ndarray, within: np.ndarray, n_items: int, pos: int, add: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The change of the co-usages (as :func:`co_usage` counts them) when table ``old``
    becomes ``new``, one pattern inserted at (``add``) or removed from position ``pos``,
    sparse and in the numbering of ``new``: ``co_usage(rows, new)`` is
    ``co_usage_renumbered(co_usage(rows, old), pos, add)`` with ``increments`` added at the
    flat positions ``where`` (each once, in no set order; no zero increment).

    Only rows containing ``within`` (the pattern) change their cover. In such a row, a pair
    of elements used under both tables counts under both and does not change; only the pairs
    holding an element that left the cover (-1) or joined it (+1) do, so the work is a few
    elements times the row's cover, not the whole matrix.

    Returns:
        ``(where [d] int64, increments [d] int32)``.
    """
    return co_usage_delta_of(rows, rows_containing(rows, within), old, new, n_items, pos, add)


@numba.njit(cache=True, nogil=True)
def co_usage_delta_of(
    rows: np.ndarray, selected: np.ndarray, old: np.ndarray, new: np.ndarray, n_items: int, pos: int, add: bool
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`co_usage_delta` over the rows ``selected`` (``[k] int64``: those holding the
    pattern)."""
    none = np.full(selected.size, COVER_OVERFLOW, np.uint8)
    nothing = np.zeros((selected.size, 0), np.uint16)
    return co_usage_delta_kept(rows, selected, old, new, n_items, pos, add, nothing, none, nothing, none)


@numba.njit(cache=True, nogil=True)
def co_usage_delta_kept(
    rows: np.ndarray,
    selected: np.ndarray,
    old: np.ndarray,
    new: np.ndarray,
    n_items: int,
    pos: int,
    add: bool,
    was_cov: np.ndarray,
    was_n: np.ndarray,
    now_cov: np.ndarray,
    now_n: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`co_usage_delta_of` given the patterns of each row's covers under ``old`` and
    ``new`` (``[k, s] uint16`` positions in increasing order and ``[k] uint8`` their number,
    as :func:`cover_usage_change_cached` gives the new ones), kept when the count of the
    change made them: only the singletons are found, no pattern tested. A row whose either
    cover was too long to keep (:data:`COVER_OVERFLOW`) is covered afresh."""
    n_words = rows.shape[1]
    n_old = old.shape[0] + n_items
    n_new = new.shape[0] + n_items
    rest = np.empty(n_words, np.uint64)
    rest_new = np.empty(n_words, np.uint64)
    was = np.empty(n_old, np.int64)
    now = np.empty(n_new, np.int64)
    gone = np.zeros(n_new + 1, np.bool_)
    came = np.zeros(n_new, np.bool_)
    gone_at = np.empty(n_old, np.int64)
    o_ptr, o_word, o_mask = _sparse(old)
    n_ptr, n_word, n_mask = _sparse(new)
    came_at = np.empty(n_new, np.int64)
    # The changes counted densely per changed element (rows mostly change the same few):
    # ``counts[slot_of[x], y]`` for the pairs of x counted from x.
    slot_of = np.full(n_new, -1, np.int64)
    slot_el = np.empty(n_new, np.int64)
    n_slots = 0
    counts = np.zeros((16, n_new), np.int32)
    for k in range(selected.size):
        _fetch_ahead(rows, selected, k)
        r = selected[k]
        if was_n[k] != COVER_OVERFLOW and now_n[k] != COVER_OVERFLOW:
            for w in range(n_words):
                rest[w] = rows[r, w]
                rest_new[w] = rest[w]
            for u in range(was_n[k]):
                was[u] = was_cov[k, u]
                _clear_pattern(rest, o_ptr, o_word, o_mask, was[u])
            for u in range(now_n[k]):
                now[u] = now_cov[k, u]
                _clear_pattern(rest_new, n_ptr, n_word, n_mask, now[u])
            n_was = _cover_singletons(old.shape[0], rest, was, np.int64(was_n[k]))
            n_now = _cover_singletons(new.shape[0], rest_new, now, np.int64(now_n[k]))
        else:
            n_same = _cover_prefix(rows[r], o_ptr, o_word, o_mask, pos, rest, rest_new, was)
            n_was = _cover_singletons(
                old.shape[0], rest, was, _cover_patterns(o_ptr, o_word, o_mask, pos, old.shape[0], rest, was, n_same)
            )
            for a in range(n_same):
                now[a] = was[a]
            n_now = _cover_singletons(
                new.shape[0],
                rest_new,
                now,
                _cover_patterns(n_ptr, n_word, n_mask, pos, new.shape[0], rest_new, now, n_same),
            )
        # The old cover in the new numbering (increasing still); the removed pattern's pairs
        # leave the matrix with its row and column.
        kept = 0
        for a in range(n_was):
            x = was[a]
            if add:
                if x >= pos:
                    x += 1
            elif x == pos:
                continue
            elif x > pos:
                x -= 1
            was[kept] = x
            kept += 1
        n_was = kept
        # Elements in one cover and not the other (both lists increasing): their positions.
        a = 0
        c = 0
        n_gone = 0
        n_came = 0
        while a < n_was or c < n_now:
            if c == n_now or (a < n_was and was[a] < now[c]):
                gone[was[a]] = True
                gone_at[n_gone] = a
                n_gone += 1
                a += 1
            elif a == n_was or now[c] < was[a]:
                came[now[c]] = True
                came_at[n_came] = c
                n_came += 1
                c += 1
            else:
                a += 1
                c += 1
        n_slots = _give_slots(was, gone_at, n_gone, slot_of, slot_el, n_slots)
        n_slots = _give_slots(now, came_at, n_came, slot_of, slot_el, n_slots)
        if n_slots > counts.shape[0]:
            grown = np.zeros((max(n_slots, 2 * counts.shape[0]), n_new), np.int32)
            grown[: counts.shape[0]] = counts
            counts = grown
        # The pairs holding a changed element, each once: with the other changed elements
        # only from the first of the two.
        _changed_pairs(was, n_was, gone, gone_at, n_gone, slot_of, counts, -1)
        _changed_pairs(now, n_now, came, came_at, n_came, slot_of, counts, 1)
        for g in range(n_gone):
            gone[was[gone_at[g]]] = False
        for g in range(n_came):
            came[now[came_at[g]]] = False
    # A pair of two changed elements may have been counted from either of them: its count
    # from the higher one is folded into the lower one's slot, so that each pair is in one
    # slot and the flat keys come out distinct with no sort (sorting them and merging equal
    # keys cost 0.3-0.5 ms a call, about a sixth of the call on half of 1 M rows).
    for t in range(n_slots):
        x = slot_el[t]
        for t2 in range(n_slots):
            y = slot_el[t2]
            if x < y and counts[t2, x] != 0:
                counts[t, y] += counts[t2, x]
                counts[t2, x] = 0
    found = 0
    for t in range(n_slots):
        for y in range(n_new):
            if counts[t, y] != 0:
                found += 1
    where = np.empty(found, np.int64)
    increments = np.empty(found, np.int32)
    found = 0
    for t in range(n_slots):
        x = slot_el[t]
        for y in range(n_new):
            if counts[t, y] != 0:
                where[found] = x * n_new + y if x < y else y * n_new + x
                increments[found] = counts[t, y]
                found += 1
    return where, increments


@numba.njit(cache=True, nogil=True)
def co_usage_add(flat: np.ndarray, n_after: int, to: np.ndarray, where: np.ndarray, increments: np.ndarray) -> None:
    """Add ``increments`` to the ``[n_after, n_after]`` matrix ``flat`` (flat) at the flat
    positions ``where`` of a ``[to.size, to.size]`` matrix, element ``x`` of which is element
    ``to[x]`` of ``flat``'s (-1: gone, and its pairs with it). One pass, where numpy's fancy
    indexing made six arrays of ``where``'s size first."""
    n = np.int64(to.size)
    for k in range(where.size):
        w = np.int64(where[k])
        a = to[w // n]
        b = to[w % n]
        if a >= 0 and b >= 0:
            flat[a * n_after + b] += increments[k]


def co_usage_renumbered(counts: np.ndarray, pos: int, insert: bool) -> np.ndarray:
    """``counts`` with element ``pos`` inserted (a zero row and column) or removed: the
    numbering after a pattern joins or leaves the table at position ``pos``. Only the upper
    triangle holds counts, so three block copies move them."""
    n = counts.shape[0]
    if insert:
        out = np.zeros((n + 1, n + 1), counts.dtype)
        out[:pos, :pos] = counts[:pos, :pos]
        out[:pos, pos + 1 :] = counts[:pos, pos:]
        out[pos + 1 :, pos + 1 :] = counts[pos:, pos:]
    else:
        out = np.zeros((n - 1, n - 1), counts.dtype)
        out[:pos, :pos] = counts[:pos, :pos]
        out[:pos, pos:] = counts[:pos, pos + 1 :]
        out[pos:, pos:] = counts[pos + 1 :, pos + 1 :]
    return out
