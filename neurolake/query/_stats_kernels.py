"""Numba kernels for neuron statistics: moments, extremes, active counts and a quantile
histogram per unit, in one pass over a block of rows.

The histogram's bins are ranges of float16 bit patterns in value order (the "order key":
negative patterns reversed below positive ones), so it needs no range known in advance
and one pass suffices. With ``shift`` = 16 - log2(bins), a bin holds ``2**shift``
consecutive float16 values: 65,536 bins are exact float16 values; 8,192 bins keep 7 of
the 10 mantissa bits, so a bin spans less than 2**-7 (0.8 %) of the values in it.
"""

from __future__ import annotations

import numba
import numpy as np

_TILE = 64  # rows per transposed tile of the histogram


def order_keys() -> np.ndarray:
    """``[65536] uint16``: the order key of every float16 bit pattern."""
    bits = np.arange(65536, dtype=np.uint32)
    return np.where(bits & 0x8000, ~bits & 0xFFFF, bits | 0x8000).astype(np.uint16)


def key_values() -> np.ndarray:
    """``[65536] float64``: the float16 value of every order key (inverse of :func:`order_keys`)."""
    keys = np.arange(65536, dtype=np.uint32)
    bits = np.where(keys & 0x8000, keys & 0x7FFF, ~keys & 0xFFFF).astype(np.uint16)
    return bits.view(np.float16).astype(np.float64)


@numba.njit(nogil=True, cache=True)
def moments_f16(bits, value_of, total, squares, high, low, active):  # pragma: no cover - numba
    """Add a ``[rows, units]`` block of float16 bit patterns (``uint16``) to the moments."""
    rows, units = bits.shape
    for r in range(rows):
        for u in range(units):
            v = value_of[bits[r, u]]
            total[u] += v
            squares[u] += v * v
            high[u] = max(high[u], v)  # branch-free: activations flip sign unpredictably
            low[u] = min(low[u], v)
            active[u] += v > 0


@numba.njit(nogil=True, cache=True)
def moments_f32(values, total, squares, high, low, active):  # pragma: no cover - numba
    """The same for a float32 block."""
    rows, units = values.shape
    for r in range(rows):
        for u in range(units):
            v = np.float64(values[r, u])
            total[u] += v
            squares[u] += v * v
            high[u] = max(high[u], v)  # branch-free: activations flip sign unpredictably
            low[u] = min(low[u], v)
            active[u] += v > 0


@numba.njit(nogil=True, cache=True)
def histogram(bits, rows, bin_of, hist):  # pragma: no cover - numba
    """Count rows ``rows`` of a ``[n, units]`` block of float16 bit patterns into ``hist``
    ``[units, bins]`` (int32): tiles of rows are transposed first, so that each unit's bins
    are hit in a burst instead of once per row."""
    units = bits.shape[1]
    tile = np.empty((units, _TILE), np.uint16)
    for t0 in range(0, rows.size, _TILE):
        t1 = min(rows.size, t0 + _TILE)
        for j in range(t0, t1):
            r = rows[j]
            for u in range(units):
                tile[u, j - t0] = bits[r, u]
        for u in range(units):
            h = hist[u]
            for j in range(t1 - t0):
                h[bin_of[tile[u, j]]] += 1


def quantiles(hist: np.ndarray, shift: int, qs, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """``[units, len(qs)]`` from order-key histograms ``[units, 65536 >> shift]``.

    Linear interpolation inside the bin where the cumulative count crosses ``q``, between
    the bin's first value and the next bin's first value; clipped to each unit's range.
    """
    edges = key_values()[:: 1 << shift]
    upper = np.append(edges[1:], np.inf)
    cum = np.cumsum(hist, axis=1, dtype=np.int64)
    total = cum[:, -1]
    rows = np.arange(hist.shape[0])
    out = np.empty((hist.shape[0], len(qs)))
    for j, q in enumerate(qs):
        target = q * total
        b = np.minimum((cum < target[:, None]).sum(axis=1), hist.shape[1] - 1)
        before = np.where(b > 0, cum[rows, np.maximum(b - 1, 0)], 0)
        inside = hist[rows, b]
        frac = np.where(inside > 0, (target - before) / np.maximum(inside, 1), 0.0)
        lo_edge = edges[b]
        hi_edge = np.minimum(upper[b], high)
        value = lo_edge + frac * np.maximum(hi_edge - lo_edge, 0.0)
        out[:, j] = np.minimum(np.maximum(value, low), high)
    return out
