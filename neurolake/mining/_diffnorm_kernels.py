"""Numba kernels for DiffNorm: covers, usages and supports over bit-packed rows.

A row (transaction) of ``m`` items is ``W = ceil(m / 64)`` ``uint64`` words; item ``x`` is
bit ``x % 64`` of word ``x // 64``. A code table is a ``[p, W] uint64`` matrix of patterns
already in standard cover order. These kernels are stateless: the single-process search
calls them on whole databases, the Ray layer on row partitions, and the counts add up.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["co_usage", "cover_usage", "pack_rows", "supports", "words_for"]

_ONE = np.uint64(1)
_ZERO = np.uint64(0)


def words_for(n_items: int) -> int:
    """Words per row for ``n_items`` items (at least one, so empty universes still pack)."""
    return max(1, (n_items + 63) // 64)


def pack_rows(dense: np.ndarray) -> np.ndarray:
    """Pack a ``[rows, items]`` matrix (non-zero = present) into ``[rows, W] uint64`` words."""
    dense = np.asarray(dense)
    n_rows, n_items = dense.shape
    n_words = words_for(n_items)
    padded = np.zeros((n_rows, n_words * 64), np.uint8)
    padded[:, :n_items] = dense != 0
    # Little bit order puts item 8b + j at bit j of byte b; little-endian bytes then make
    # item x bit x % 64 of word x // 64.
    packed = np.packbits(padded, axis=1, bitorder="little")
    return np.ascontiguousarray(packed).view("<u8").astype(np.uint64, copy=False)


@numba.njit(cache=True, nogil=True)
def _contains(row: np.ndarray, pattern: np.ndarray) -> bool:
    for w in range(pattern.size):
        if row[w] & pattern[w] != pattern[w]:
            return False
    return True


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
    n_rows, n_words = rows.shape
    n_pat = table.shape[0]
    pat_usage = np.zeros(n_pat, np.int64)
    item_usage = np.zeros(n_items, np.int64)
    rest = np.empty(n_words, np.uint64)
    for r in range(n_rows):
        row = rows[r]
        if not _contains(row, within):
            continue
        for w in range(n_words):
            rest[w] = row[w]
        for t in range(n_pat):
            if _contains(rest, table[t]):
                pat_usage[t] += 1
                for w in range(n_words):
                    rest[w] &= ~table[t, w]
        for w in range(n_words):
            bits = rest[w]
            b = 0
            while bits != _ZERO:
                if bits & _ONE:
                    item_usage[w * 64 + b] += 1
                bits >>= _ONE
                b += 1
    return pat_usage, item_usage


@numba.njit(cache=True, nogil=True)
def co_usage(rows: np.ndarray, table: np.ndarray, n_items: int) -> np.ndarray:
    """Rows whose cover uses both of two elements (Slim's estimate of a union's usage).

    Elements are numbered patterns first (``0..p-1``, table order), then singletons
    (``p + x``). Two elements used in the same cover are disjoint, so their union has
    ``|a| + |b|`` items.

    Args:
        rows: ``[n, W] uint64`` packed rows.
        table: ``[p, W] uint64`` patterns in cover order.
        n_items: size of the item universe.

    Returns:
        ``[p + n_items, p + n_items] int64``, filled above the diagonal only (``a < b``).
    """
    n_rows, n_words = rows.shape
    n_pat = table.shape[0]
    n_el = n_pat + n_items
    counts = np.zeros((n_el, n_el), np.int64)
    rest = np.empty(n_words, np.uint64)
    used = np.empty(n_el, np.int64)
    for r in range(n_rows):
        row = rows[r]
        n_used = 0
        for w in range(n_words):
            rest[w] = row[w]
        for t in range(n_pat):
            if _contains(rest, table[t]):
                used[n_used] = t
                n_used += 1
                for w in range(n_words):
                    rest[w] &= ~table[t, w]
        for w in range(n_words):
            bits = rest[w]
            b = 0
            while bits != _ZERO:
                if bits & _ONE:
                    used[n_used] = n_pat + w * 64 + b
                    n_used += 1
                bits >>= _ONE
                b += 1
        # ``used`` is increasing, so every pair lands above the diagonal.
        for a in range(n_used):
            ua = used[a]
            for c in range(a + 1, n_used):
                counts[ua, used[c]] += 1
    return counts


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
