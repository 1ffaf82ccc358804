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
from llvmlite import ir as llvm_ir
from numba import types
from numba.extending import intrinsic

from neurolake.store._cpu import numba_cpu_features

_TILE = 2048  # rows per transposed tile of the histogram
_SLAB = 32  # units per transposed tile: 32 x 2,048 uint16 = 128 KB


def order_keys() -> np.ndarray:
    """``[65536] uint16``: the order key of every float16 bit pattern."""
    bits = np.arange(65536, dtype=np.uint32)
    return np.where(bits & 0x8000, ~bits & 0xFFFF, bits | 0x8000).astype(np.uint16)


def key_values() -> np.ndarray:
    """``[65536] float64``: the float16 value of every order key (inverse of :func:`order_keys`)."""
    keys = np.arange(65536, dtype=np.uint32)
    bits = np.where(keys & 0x8000, keys & 0x7FFF, ~keys & 0xFFFF).astype(np.uint16)
    return bits.view(np.float16).astype(np.float64)


# Reassociation lets the unit loops vectorise; NaN and infinity keep their IEEE meaning.
_FAST = {"nsz", "arcp", "contract", "afn", "reassoc"}
_F16_SCALE = np.float32(2.0**112)  # 2**(127 - 15): float16's exponent bias to float32's


@numba.njit(nogil=True, cache=True, inline="always")
def _widen_f16(row, wide):  # pragma: no cover - numba
    """Float16 bit patterns ``row`` (``uint16``) as float32 bit patterns in ``wide``, still to be
    multiplied by :data:`_F16_SCALE`: sign, exponent and mantissa moved into place in integer
    operations that vectorise (numba has no float16); the multiplication then corrects the
    exponent bias and renormalises subnormals exactly. An all-ones exponent (infinity, NaN) is
    set all-ones."""
    for u in range(row.shape[0]):
        h = np.uint32(row[u])
        w = ((h & 0x8000) << 16) | ((h & 0x7FFF) << 13)
        if (h & 0x7C00) == 0x7C00:
            w |= 0x7F800000
        wide[u] = w


@numba.njit(nogil=True, cache=True)
def greater_f16(bits, thresholds):  # pragma: no cover - numba
    """``[rows, units]`` bool: the float16 values of ``bits`` (``uint16`` bit patterns) above
    the float32 ``thresholds`` ``[units]``, exactly as numpy compares them widened to float32
    (NaN is above nothing), without a float32 copy of the block."""
    rows, units = bits.shape
    out = np.empty((rows, units), np.bool_)
    wide = np.empty(units, np.uint32)
    values = wide.view(np.float32)
    for r in range(rows):
        _widen_f16(bits[r], wide)
        for u in range(units):
            out[r, u] = values[u] * _F16_SCALE > thresholds[u]
    return out


@numba.njit(nogil=True, cache=True, inline="always")
def _pack_flags(flags, n, out, byte0):  # pragma: no cover - numba
    """OR ``flags[:n]`` (0/1 bytes, bit position ``8 * byte0 + j`` for ``flags[j]``) into bytes
    of ``out`` from ``byte0`` in ``np.packbits`` order (the first bit is the byte's highest);
    ``flags`` has room up to the next multiple of 8, which is zeroed."""
    end = (n + 7) & ~7
    for j in range(n, end):
        flags[j] = 0
    for k in range(end >> 3):
        f = flags[8 * k : 8 * k + 8]
        out[byte0 + k] |= np.uint8(
            (f[0] << 7) | (f[1] << 6) | (f[2] << 5) | (f[3] << 4) | (f[4] << 3) | (f[5] << 2) | (f[6] << 1) | f[7]
        )


@numba.njit(nogil=True, cache=True)
def pack_greater_f16(bits, thresholds, out, row0, bit0):  # pragma: no cover - numba
    """OR into rows ``row0 ..`` of ``out`` (``np.packbits`` rows, ``uint8``) the flags of
    :func:`greater_f16` for the rows of ``bits``, unit ``u`` at bit position ``bit0 + u``: a
    layer's items packed straight into a row of several layers, without a bool block."""
    rows, units = bits.shape
    wide = np.empty(units, np.uint32)
    values = wide.view(np.float32)
    lead = bit0 & 7
    flags = np.zeros(lead + units + 8, np.uint8)
    for r in range(rows):
        _widen_f16(bits[r], wide)
        for u in range(units):
            flags[lead + u] = values[u] * _F16_SCALE > thresholds[u]
        _pack_flags(flags, lead + units, out[row0 + r], bit0 >> 3)


@numba.njit(nogil=True, cache=True)
def pack_greater(values, thresholds, out, row0, bit0):  # pragma: no cover - numba
    """:func:`pack_greater_f16` for float32 or float64 rows, compared as given."""
    rows, units = values.shape
    lead = bit0 & 7
    flags = np.zeros(lead + units + 8, np.uint8)
    for r in range(rows):
        row = values[r]
        for u in range(units):
            flags[lead + u] = row[u] > thresholds[u]
        _pack_flags(flags, lead + units, out[row0 + r], bit0 >> 3)


def _has_f16c() -> bool:
    """Whether the code numba compiles may use the x86 instructions that convert float16
    (F16C)."""
    return "+f16c" in numba_cpu_features()


F16C = _has_f16c()


@intrinsic
def _f16_to_f64(typingctx, bits):  # pragma: no cover - numba
    """The float16 value of bit pattern ``bits`` (``uint16``) as float64: LLVM's own
    conversion, which the compiler vectorises into F16C instructions (to float32, then to
    float64), or into one conversion where the CPU has AVX-512's float16 instructions (only
    used where the target has F16C; elsewhere it could become a call to a runtime routine).
    Widened to float32 first in the kernel, the moments ran at 9.3 GB/s on one core of an
    Intel Xeon with AVX-512 FP16, against 12.6 straight to float64."""
    if bits != types.uint16:
        return None

    def codegen(context, builder, signature, args):
        return builder.fpext(builder.bitcast(args[0], llvm_ir.HalfType()), llvm_ir.DoubleType())

    return types.float64(types.uint16), codegen


# Extremes are folded as 16-bit order keys (:func:`order_keys`): the keys order as the values
# do (-0 just below +0), and the NaN patterns order beyond the infinities (positive NaN above
# +inf's key, negative below -inf's). The fold takes no notice of NaN (integer operations and a
# max and a min per value, in 16-bit lanes); a unit whose block extremes came out as NaN keys
# is folded again without its NaNs (:func:`_extremes_without_nan`), which only data holding NaN
# pays for. Against masking NaN out value by value: the extremes' loop 29 -> 38 GB/s on one
# core of an Intel Xeon (AVX-512), the moments with it 9.0-9.1 -> 9.8-10.0 GB/s.
_NO_HIGH = np.uint16(0)  # the key of NaN 0xFFFF: below every value's
_NO_LOW = np.uint16(0xFFFF)  # the key of NaN 0x7FFF: above every value's
_INF_KEY = np.uint16(0xFC00)  # +inf's key
_NINF_KEY = np.uint16(0x03FF)  # -inf's key


@numba.njit(nogil=True, cache=True, inline="always")
def _order_key(h):  # pragma: no cover - numba
    return np.uint16(h ^ np.uint16(np.uint16(np.int16(h) >> 15) >> 1 | np.uint16(0x8000)))


@numba.njit(nogil=True, cache=True, inline="always")
def _extremes_f16(row, key_high, key_low, act):  # pragma: no cover - numba
    """Fold a row of float16 bit patterns into per-unit extremes (order keys, NaN
    included: see :func:`_extremes_without_nan`) and active counts (value > 0, i.e. a
    pattern in 1..0x7C00), in 16-bit integer operations that vectorise widely."""
    for u in range(row.shape[0]):
        h = np.uint16(row[u])
        key = _order_key(h)
        key_high[u] = max(key_high[u], key)
        key_low[u] = min(key_low[u], key)
        act[u] += np.uint16(np.uint16(h - np.uint16(1)) < np.uint16(0x7C00))


@numba.njit(nogil=True, cache=True)
def _extremes_without_nan(bits, key_high, key_low):  # pragma: no cover - numba
    """Fold again, leaving NaN out, the extremes of every unit of ``bits`` whose keys from
    :func:`_extremes_f16` are NaN's (beyond an infinity's); :data:`_NO_HIGH` / :data:`_NO_LOW`
    where a unit holds NaN only."""
    for u in range(key_high.size):
        if key_high[u] <= _INF_KEY and key_low[u] >= _NINF_KEY:
            continue
        high, low = _NO_HIGH, _NO_LOW
        for r in range(bits.shape[0]):
            h = np.uint16(bits[r, u])
            if np.uint16(h & np.uint16(0x7FFF)) <= np.uint16(0x7C00):
                key = _order_key(h)
                high = max(high, key)
                low = min(low, key)
        key_high[u] = high
        key_low[u] = low


@numba.njit(nogil=True, cache=True)
def _merge_f16(sums, sums_sq, key_high, key_low, act, values, total, squares, high, low, active):  # pragma: no cover
    """Add a block's moments to the accumulators; extremes from order keys back to values
    (``values``: :func:`key_values`). A unit whose values were all NaN keeps its extremes."""
    for u in range(sums.size):
        total[u] += sums[u]
        squares[u] += sums_sq[u]
        active[u] += act[u]
        if key_high[u] != _NO_HIGH:
            high[u] = max(high[u], values[key_high[u]])
        if key_low[u] != _NO_LOW:
            low[u] = min(low[u], values[key_low[u]])


@numba.njit(nogil=True, cache=True, inline="always")
def _block_moments(units):  # pragma: no cover - numba
    """A block's own accumulators (local arrays, which the compiler knows alias nothing): sums,
    sums of squares, the highest and lowest order keys, active counts, and active counts of
    the last rows (at most :data:`_ACTIVE_ROWS`) in 16 bits."""
    return (
        np.zeros(units),
        np.zeros(units),
        np.full(units, _NO_HIGH, np.uint16),
        np.full(units, _NO_LOW, np.uint16),
        np.zeros(units, np.int32),
        np.zeros(units, np.uint16),
    )


# Rows whose active counts are kept in 16 bits before they are added to the block's 32-bit
# counts: with every operation of the extremes' loop on 16-bit lanes it vectorises twice as
# wide (that loop 4.9 -> 7.4 GB/s on one core of an AMD EPYC without AVX-512, the moments
# 1.9 -> 2.2).
_ACTIVE_ROWS = 65535


@numba.njit(nogil=True, cache=True, inline="always")
def _fold_active(act16, act):  # pragma: no cover - numba
    for u in range(act.size):
        act[u] += act16[u]
        act16[u] = 0


@numba.njit(nogil=True, cache=True, inline="always")
def _extremes4_f16(r0, r1, r2, r3, key_high, key_low, act):  # pragma: no cover - numba
    """:func:`_extremes_f16` for four rows at once: each unit's accumulators loaded and
    stored once for the four."""
    for u in range(r0.shape[0]):
        high = _NO_HIGH
        low = _NO_LOW
        n = np.uint16(0)
        for h in (np.uint16(r0[u]), np.uint16(r1[u]), np.uint16(r2[u]), np.uint16(r3[u])):
            key = _order_key(h)
            high = max(high, key)
            low = min(low, key)
            n += np.uint16(np.uint16(h - np.uint16(1)) < np.uint16(0x7C00))
        key_high[u] = max(key_high[u], high)
        key_low[u] = min(key_low[u], low)
        act[u] += n


@numba.njit(nogil=True, cache=True, fastmath=_FAST)
def _moments_f16c(bits, values, total, squares, high, low, active):  # pragma: no cover - numba
    """Four rows at a time: their values summed in pairs before they are added to the unit's
    sums, so each accumulator is loaded and stored once per four rows (float16 values and
    their sums of up to four are exact in float64). On one core of an Intel Xeon with
    AVX-512, 7.5-7.7 -> 8.7 GB/s against one row at a time."""
    rows, units = bits.shape
    sums, sums_sq, key_high, key_low, act, act16 = _block_moments(units)
    since = 0  # rows in the 16-bit active counts
    r = 0
    while r < rows:
        if r + 4 <= rows:
            r0, r1, r2, r3 = bits[r], bits[r + 1], bits[r + 2], bits[r + 3]
            for u in range(units):
                d0 = np.float64(_f16_to_f64(r0[u]))  # type: ignore[call-arg]  # typed by numba
                d1 = np.float64(_f16_to_f64(r1[u]))
                d2 = np.float64(_f16_to_f64(r2[u]))
                d3 = np.float64(_f16_to_f64(r3[u]))
                sums[u] += (d0 + d1) + (d2 + d3)
                sums_sq[u] += (d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3)
            _extremes4_f16(r0, r1, r2, r3, key_high, key_low, act16)
            step = 4
        else:
            row = bits[r]
            for u in range(units):
                d = np.float64(_f16_to_f64(row[u]))  # type: ignore[call-arg]  # typed by numba
                sums[u] += d
                sums_sq[u] += d * d
            _extremes_f16(row, key_high, key_low, act16)
            step = 1
        r += step
        since += step
        if since > _ACTIVE_ROWS - 4:
            _fold_active(act16, act)
            since = 0
    _fold_active(act16, act)
    _extremes_without_nan(bits, key_high, key_low)
    _merge_f16(sums, sums_sq, key_high, key_low, act, values, total, squares, high, low, active)


@numba.njit(nogil=True, cache=True, fastmath=_FAST)
def _moments_widened(bits, values, total, squares, high, low, active):  # pragma: no cover - numba
    rows, units = bits.shape
    wide = np.empty(units, np.uint32)
    as_float = wide.view(np.float32)
    sums, sums_sq, key_high, key_low, act, act16 = _block_moments(units)
    for r in range(rows):
        row = bits[r]
        _widen_f16(row, wide)
        for u in range(units):
            d = np.float64(as_float[u] * _F16_SCALE)
            sums[u] += d
            sums_sq[u] += d * d
        _extremes_f16(row, key_high, key_low, act16)
        if r % _ACTIVE_ROWS == _ACTIVE_ROWS - 1:
            _fold_active(act16, act)
    _fold_active(act16, act)
    _extremes_without_nan(bits, key_high, key_low)
    _merge_f16(sums, sums_sq, key_high, key_low, act, values, total, squares, high, low, active)


_KEY_VALUES = key_values()


def moments_f16(
    bits: np.ndarray,
    total: np.ndarray,
    squares: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    active: np.ndarray,
    f16c: bool = F16C,
) -> None:
    """Add a ``[rows, units]`` block of float16 bit patterns (``uint16``) to the moments.

    Sums and sums of squares run in float64 (every float16 value and its square are exact
    there, so they are as exact as summing the values one by one in float64). Float16 is
    widened by the CPU's conversion instructions where it has them (F16C), else by integer
    operations that vectorise (sign, exponent and mantissa moved into place, then one
    multiplication by 2**112 that corrects the exponent bias and renormalises subnormals
    exactly). Extremes and active counts (value > 0) are folded in 16-bit integer
    operations on the bit patterns; NaN counts in the sums (which become NaN) but not in the
    extremes. Active counts are kept in 32 bits per block: blocks of up to 2**31 rows.
    """
    kernel = _moments_f16c if f16c else _moments_widened
    kernel(bits, _KEY_VALUES, total, squares, high, low, active)


@numba.njit(nogil=True, cache=True)
def slot_sums_f16(bits, pair_rows, row_offset, pair_slots, sums, sums2):  # pragma: no cover - numba
    """Add row ``pair_rows[p] - row_offset`` of ``bits`` (``[rows, units]`` float16 bit
    patterns, ``uint16``) to row ``pair_slots[p]`` of ``sums`` (``[slots, units]`` float64),
    and its square to ``sums2`` unless that has no rows; pairs in order. Float16 is widened
    one row at a time (:func:`_widen_f16`), so no float64 copy of the block is made."""
    units = bits.shape[1]
    wide = np.empty(units, np.uint32)
    values = wide.view(np.float32)
    squares = sums2.shape[0] > 0
    for p in range(pair_rows.size):
        s = pair_slots[p]
        _widen_f16(bits[pair_rows[p] - row_offset], wide)
        for u in range(units):
            v = np.float64(values[u] * _F16_SCALE)
            sums[s, u] += v
            if squares:
                sums2[s, u] += v * v


@numba.njit(nogil=True, cache=True)
def slot_sums_f16c(bits, pair_rows, row_offset, pair_slots, sums, sums2):  # pragma: no cover - numba
    """:func:`slot_sums_f16` with float16 widened by the CPU's conversion (:func:`_f16_to_f64`;
    only where it has F16C): on one core of an Intel Xeon with AVX-512, 65,536 rows of 768
    units into 20,000 slots (pairs in slot order) 25.5 -> 18.5 ms, with squares 36.6 -> 29.5.
    Four pairs in a row of one slot whose rows do not follow each other in ``bits`` (slots
    spread over the run, such as event-aligned offsets) are added in one pass over the slot's
    row (:func:`_add_rows4_f16c`), the four rows' loads in flight at once; rows that follow
    each other go one at a time, which streams them as well. The sums are those of one row at
    a time. 160,000 rows of 768 units into 20,000 slots spread over them (8 rows each): 39.6
    -> 33.3 ms on one core, 21.5 -> 17.4 ms on two; into 5,000 slots of 32 rows that follow
    each other, 39.3 -> 41.2 ms on one core, 20.4 -> 21.1 ms on two."""
    n = pair_rows.size
    p = 0
    while p < n:
        s = pair_slots[p]
        if (
            p + 3 < n
            and pair_slots[p + 1] == s
            and pair_slots[p + 2] == s
            and pair_slots[p + 3] == s
            and pair_rows[p + 3] - pair_rows[p] != 3
        ):
            _add_rows4_f16c(
                bits[pair_rows[p] - row_offset],
                bits[pair_rows[p + 1] - row_offset],
                bits[pair_rows[p + 2] - row_offset],
                bits[pair_rows[p + 3] - row_offset],
                sums,
                sums2,
                s,
            )
            p += 4
        else:
            _add_row_f16c(bits[pair_rows[p] - row_offset], sums, sums2, s)
            p += 1


@numba.njit(nogil=True, cache=True)
def slot_sums(values, pair_rows, row_offset, pair_slots, sums, sums2):  # pragma: no cover - numba
    """The same for float32 or float64 ``values``."""
    units = values.shape[1]
    squares = sums2.shape[0] > 0
    for p in range(pair_rows.size):
        s = pair_slots[p]
        row = values[pair_rows[p] - row_offset]
        for u in range(units):
            v = np.float64(row[u])
            sums[s, u] += v
            if squares:
                sums2[s, u] += v * v


@numba.njit(nogil=True, cache=True)
def slot_row_spans(pair_rows, pair_slots, n_slots):  # pragma: no cover - numba
    """``([n_slots], [n_slots])`` int64: the first and the last row any pair adds to each slot
    (a slot no pair names: first above last)."""
    first = np.full(n_slots, np.iinfo(np.int64).max, np.int64)
    last = np.full(n_slots, -1, np.int64)
    for p in range(pair_rows.size):
        s = pair_slots[p]
        first[s] = min(first[s], pair_rows[p])
        last[s] = max(last[s], pair_rows[p])
    return first, last


@numba.njit(nogil=True, cache=True)
def shared_slot_rows(distinct, pair_rows, pair_slots, first, last, block):  # pragma: no cover - numba
    """How many local rows :func:`split_slot_sums_f16` would take in all if the frames
    (``distinct[pair_rows]``) came in blocks of ``block`` frame ids: per block, the distinct
    slots of its pairs whose frames do not all lie in it."""
    seen = np.full(first.size, -1, np.int64)
    count = 0
    for p in range(pair_rows.size):
        s = pair_slots[p]
        b = distinct[pair_rows[p]] // block
        if distinct[first[s]] // block != distinct[last[s]] // block and seen[s] != b:
            seen[s] = b
            count += 1
    return count


@numba.njit(nogil=True, cache=True, inline="always")
def _split_target(
    s, row_offset, stop, first, last, sums, sums2, local, local2, local_of, local_slots, k
):  # pragma: no cover
    """Where a pair of slot ``s`` adds its row: ``sums`` when every row of the slot lies in
    ``row_offset .. stop - 1`` (no other block adds to it), else a local row (taken and
    zeroed on the slot's first pair). ``(target, target2, row, k)``."""
    if first[s] >= row_offset and last[s] < stop:
        return sums, sums2, s, k
    i = local_of[s]
    if i < 0:
        i = k
        local_of[s] = k
        local_slots[k] = s
        local[k, :] = 0.0
        if local2.shape[0] > 0:
            local2[k, :] = 0.0
        k += 1
    return local, local2, i, k


@numba.njit(nogil=True, cache=True, inline="always")
def _add_row(row, scale, t, t2, i):  # pragma: no cover - numba
    """Add ``row * scale`` (widened to float64) to row ``i`` of ``t``, and its square to ``t2``
    unless that has no rows."""
    squares = t2.shape[0] > 0
    for u in range(row.size):
        v = np.float64(row[u] * scale)
        t[i, u] += v
        if squares:
            t2[i, u] += v * v


@numba.njit(nogil=True, cache=True, inline="always")
def _add_row_f16c(bits, t, t2, i):  # pragma: no cover - numba
    """Add the float16 row ``bits`` (``uint16`` patterns), widened by :func:`_f16_to_f64`, to
    row ``i`` of ``t``, and its square to ``t2`` unless that has no rows (a loop of its own
    each way, so that neither tests for the squares per value)."""
    if t2.shape[0] > 0:
        for u in range(bits.size):
            v = np.float64(_f16_to_f64(bits[u]))  # type: ignore[call-arg]  # typed by numba
            t[i, u] += v
            t2[i, u] += v * v
    else:
        for u in range(bits.size):
            t[i, u] += np.float64(_f16_to_f64(bits[u]))  # type: ignore[call-arg]  # typed by numba


@numba.njit(nogil=True, cache=True, inline="always")
def _add_rows4_f16c(b0, b1, b2, b3, t, t2, i):  # pragma: no cover - numba
    """:func:`_add_row_f16c` of four rows at once: each value of row ``i`` of ``t`` (and of
    ``t2``) is read and written once, the rows added in order, so the sums are those of four
    calls."""
    if t2.shape[0] > 0:
        for u in range(b0.size):
            v0 = np.float64(_f16_to_f64(b0[u]))  # type: ignore[call-arg]  # typed by numba
            v1 = np.float64(_f16_to_f64(b1[u]))
            v2 = np.float64(_f16_to_f64(b2[u]))
            v3 = np.float64(_f16_to_f64(b3[u]))
            t[i, u] = t[i, u] + v0 + v1 + v2 + v3
            t2[i, u] = t2[i, u] + v0 * v0 + v1 * v1 + v2 * v2 + v3 * v3
    else:
        for u in range(b0.size):
            t[i, u] = (
                t[i, u]
                + np.float64(_f16_to_f64(b0[u]))  # type: ignore[call-arg]
                + np.float64(_f16_to_f64(b1[u]))  # type: ignore[call-arg]
                + np.float64(_f16_to_f64(b2[u]))  # type: ignore[call-arg]
                + np.float64(_f16_to_f64(b3[u]))  # type: ignore[call-arg]
            )


@numba.njit(nogil=True, cache=True, inline="always")
def _release(local_of, local_slots, k):  # pragma: no cover - numba
    """Mark the ``k`` slots given local rows as having none again."""
    for j in range(k):
        local_of[local_slots[j]] = -1


@numba.njit(nogil=True, cache=True)
def split_slot_sums_f16(
    bits, pair_rows, row_offset, pair_slots, first, last, sums, sums2, local, local2, local_of, local_slots
):  # pragma: no cover - numba
    """:func:`slot_sums_f16` into one ``sums`` shared by every thread: a slot whose rows
    (``first[s] .. last[s]``, from :func:`slot_row_spans`) all lie in this block's rows is
    added to ``sums`` directly, since no other block adds to it; the other slots are summed
    into rows of ``local`` (``local_of[s]``: the slot's local row, -1 for none; ``-1`` again
    on return) and listed in ``local_slots``, for :func:`add_slot_rows` to add under a lock.
    Returns how many local rows were used."""
    wide = np.empty(bits.shape[1], np.uint32)
    values = wide.view(np.float32)
    stop = row_offset + bits.shape[0]
    k = 0
    for p in range(pair_rows.size):
        t, t2, i, k = _split_target(
            pair_slots[p], row_offset, stop, first, last, sums, sums2, local, local2, local_of, local_slots, k
        )
        _widen_f16(bits[pair_rows[p] - row_offset], wide)
        _add_row(values, _F16_SCALE, t, t2, i)
    _release(local_of, local_slots, k)
    return k


@numba.njit(nogil=True, cache=True)
def split_slot_sums_f16c(
    bits, pair_rows, row_offset, pair_slots, first, last, sums, sums2, local, local2, local_of, local_slots
):  # pragma: no cover - numba
    """:func:`split_slot_sums_f16` with the CPU's conversion (:func:`_add_row_f16c`)."""
    stop = row_offset + bits.shape[0]
    k = 0
    for p in range(pair_rows.size):
        t, t2, i, k = _split_target(
            pair_slots[p], row_offset, stop, first, last, sums, sums2, local, local2, local_of, local_slots, k
        )
        _add_row_f16c(bits[pair_rows[p] - row_offset], t, t2, i)
    _release(local_of, local_slots, k)
    return k


@numba.njit(nogil=True, cache=True)
def split_slot_sums(
    values, pair_rows, row_offset, pair_slots, first, last, sums, sums2, local, local2, local_of, local_slots
):  # pragma: no cover - numba
    """The same for float32 or float64 ``values``."""
    stop = row_offset + values.shape[0]
    k = 0
    for p in range(pair_rows.size):
        t, t2, i, k = _split_target(
            pair_slots[p], row_offset, stop, first, last, sums, sums2, local, local2, local_of, local_slots, k
        )
        _add_row(values[pair_rows[p] - row_offset], 1.0, t, t2, i)
    _release(local_of, local_slots, k)
    return k


@numba.njit(nogil=True, cache=True)
def add_slot_rows(sums, sums2, local, local2, local_slots, k):  # pragma: no cover - numba
    """Add the first ``k`` rows of ``local`` (and ``local2``) to rows ``local_slots`` of
    ``sums`` (and ``sums2``, unless it has no rows)."""
    for j in range(k):
        s = local_slots[j]
        for u in range(sums.shape[1]):
            sums[s, u] += local[j, u]
        if sums2.shape[0] > 0:
            for u in range(sums.shape[1]):
                sums2[s, u] += local2[j, u]


@numba.njit(nogil=True, cache=True, fastmath=_FAST)
def moments_f32(values, total, squares, high, low, active):  # pragma: no cover - numba
    """The same for a float32 block."""
    rows, units = values.shape
    sums = np.zeros(units)
    sums_sq = np.zeros(units)
    hi = np.full(units, -np.inf, np.float32)
    lo = np.full(units, np.inf, np.float32)
    act = np.zeros(units, np.int64)
    for r in range(rows):
        row = values[r]
        for u in range(units):
            v = row[u]
            d = np.float64(v)
            sums[u] += d
            sums_sq[u] += d * d
            hi[u] = max(hi[u], v)
            lo[u] = min(lo[u], v)
            act[u] += v > 0
    _merge(sums, sums_sq, hi, lo, act, total, squares, high, low, active)


@numba.njit(nogil=True, cache=True)
def _merge(sums, sums_sq, hi, lo, act, total, squares, high, low, active):  # pragma: no cover - numba
    """Add a block's moments (kept in local arrays, which the compiler knows alias nothing)
    to the accumulators."""
    for u in range(sums.size):
        total[u] += sums[u]
        squares[u] += sums_sq[u]
        high[u] = max(high[u], hi[u])
        low[u] = min(low[u], lo[u])
        active[u] += act[u]


# LLVM shuffle masks of an 8 x 8 transposition of 16-bit items: lanes 0-7 are the first
# vector's, 8-15 the second's; interleaving the low or high halves by 16-, 32- and 64-bit items.
_LO16, _HI16 = (0, 8, 1, 9, 2, 10, 3, 11), (4, 12, 5, 13, 6, 14, 7, 15)
_LO32, _HI32 = (0, 1, 8, 9, 2, 3, 10, 11), (4, 5, 12, 13, 6, 7, 14, 15)
_LO64, _HI64 = (0, 1, 2, 3, 8, 9, 10, 11), (4, 5, 6, 7, 12, 13, 14, 15)


@intrinsic
def _transpose8(typingctx, src, src_at, src_stride, dst, dst_at, dst_stride):  # pragma: no cover - numba
    """``dst[dst_at + i * dst_stride + j] = src[src_at + j * src_stride + i]`` for i, j < 8
    (flat ``uint16`` arrays): eight 16-byte loads, 24 shuffles of LLVM's own (interleaving
    halves, which x86 compiles to SSE2's unpack instructions and ARM to its zips) and eight
    16-byte stores, where item by item it is 64 loads and stores."""
    flat = types.Array(types.uint16, 1, "C")
    if src not in (flat, types.Array(types.uint16, 1, "C", readonly=True)) or dst != flat:
        return None

    def codegen(context, builder, signature, args):
        vec = llvm_ir.VectorType(llvm_ir.IntType(16), 8)
        i32 = llvm_ir.IntType(32)

        def at(array, kind, start, stride, i):
            base = context.make_array(kind)(context, builder, array).data
            offset = builder.add(start, builder.mul(stride, llvm_ir.Constant(stride.type, i)))
            return builder.bitcast(builder.gep(base, [offset]), vec.as_pointer())

        def shuffle(a, b, lanes):
            mask = llvm_ir.Constant(llvm_ir.VectorType(i32, 8), [llvm_ir.Constant(i32, k) for k in lanes])
            return builder.shuffle_vector(a, b, mask)

        src_type, dst_type = signature.args[0], signature.args[3]
        r = [builder.load(at(args[0], src_type, args[1], args[2], i), align=2) for i in range(8)]
        t = []  # pairs of rows interleaved item by item
        for i in range(0, 8, 2):
            t += [shuffle(r[i], r[i + 1], _LO16), shuffle(r[i], r[i + 1], _HI16)]
        s = []  # four rows interleaved by pairs of items
        for a, b in ((0, 2), (1, 3), (4, 6), (5, 7)):
            s += [shuffle(t[a], t[b], _LO32), shuffle(t[a], t[b], _HI32)]
        for i in range(4):  # eight rows by fours: the columns
            builder.store(shuffle(s[i], s[i + 4], _LO64), at(args[3], dst_type, args[4], args[5], 2 * i), align=2)
            builder.store(shuffle(s[i], s[i + 4], _HI64), at(args[3], dst_type, args[4], args[5], 2 * i + 1), align=2)
        return context.get_dummy_value()

    return types.none(src, types.intp, types.intp, dst, types.intp, types.intp), codegen


@numba.njit(nogil=True, cache=True)
def histogram(bits, shift, hist):  # pragma: no cover - numba
    """Count every row of a ``[n, units]`` block of float16 bit patterns (``uint16``, C order)
    into ``hist`` ``[units, 65536 >> shift]`` (int32), bin = order key >> ``shift``.

    A slab of ``_SLAB`` units at a time, over all the rows: tiles of ``_TILE`` rows are
    transposed 8 x 8 items at a time by vector shuffles (:func:`_transpose8`) into a buffer
    that stays in the core's cache, turned into bins there a unit's column at a time (a loop
    the compiler vectorises), then each unit's bins are counted in one burst into its row of
    ``hist`` (32 KB at 8,192 bins), which stays in the cache from one tile to the next of the
    same slab; ``hist`` as a whole (25 MB for 768 units) is swept once per call, so calls
    should bring many rows. Where over an eighth of a column's values fall in the bin of +0
    (half of a ReLU's), the others are first packed together and the bin of +0 gets their
    count at once: adding one to the same count over and over waits on each addition. 65,536
    x 768 values on one core of an Intel Xeon (AVX-512): Gaussian 0.114-0.123 s -> 0.056-
    0.059 s, half zeros 0.126-0.129 -> 0.061-0.065 s, against bins made and transposed 4 x 4
    by 64-bit words.
    """
    n_rows, units = bits.shape
    flat = bits.reshape(-1)
    shift16 = np.uint16(shift)
    zero_bin = np.uint16(np.uint16(0x8000) >> shift16)
    tile = np.empty(_SLAB * _TILE, np.uint16)
    for u0 in range(0, units, _SLAB):
        width = min(_SLAB, units - u0)
        full = width - width % 8
        for t0 in range(0, n_rows, _TILE):
            n = min(n_rows, t0 + _TILE) - t0
            done = n - n % 8
            for j in range(0, done, 8):
                for g in range(0, full, 8):
                    _transpose8(flat, (t0 + j) * units + u0 + g, units, tile, g * _TILE + j, _TILE)  # type: ignore[call-arg]
            for j in range(done, n):  # the last rows of a tile, or units past the last eight
                for k in range(full):
                    tile[k * _TILE + j] = flat[(t0 + j) * units + u0 + k]
            for k in range(full, width):
                for j in range(n):
                    tile[k * _TILE + j] = flat[(t0 + j) * units + u0 + k]
            for k in range(width):
                h_u = hist[u0 + k]
                column = tile[k * _TILE : k * _TILE + n]
                zeros = np.int32(0)
                for j in range(n):
                    h = column[j]
                    b = _order_key(h) >> shift16
                    column[j] = b
                    zeros += np.int32(b == zero_bin)
                if zeros * 8 > n:
                    m = 0
                    for j in range(n):
                        b = column[j]
                        column[m] = b
                        m += b != zero_bin
                    h_u[zero_bin] += zeros
                    n_counted = m
                else:
                    n_counted = n
                for j in range(n_counted):
                    h_u[column[j]] += 1


def quantiles(hist: np.ndarray, shift: int, qs, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """``[units, len(qs)]`` from order-key histograms ``[units, 65536 >> shift]``.

    Linear interpolation inside the bin where the cumulative count crosses ``q``, between
    the bin's first value and the next bin's first value; clipped to each unit's range.
    One pass per unit over its bins up to the highest ``q`` (a numba kernel: the array
    version took 40-180 ms for 768 units of 8,192 bins, a fixed cost beside a pass that
    reads a layer in half a second).
    """
    edges = key_values()[:: 1 << shift]
    upper = np.append(edges[1:], np.inf)
    qs = np.asarray(qs, dtype=np.float64)
    order = np.argsort(qs, kind="stable")
    out = np.empty((hist.shape[0], qs.size))
    _quantiles(hist, edges, upper, qs[order], np.asarray(low, np.float64), np.asarray(high, np.float64), out)
    result = np.empty_like(out)
    result[:, order] = out
    return result


@numba.njit(nogil=True, cache=True)
def _quantiles(hist, edges, upper, qs, low, high, out):  # pragma: no cover - numba
    """:func:`quantiles` for ascending ``qs``: the first bin whose cumulative count reaches
    ``q`` times the unit's count, walked to once for all ``qs``."""
    units, bins = hist.shape
    for u in range(units):
        total = np.int64(0)
        for b in range(bins):
            total += hist[u, b]
        cum = np.int64(0)
        b = 0
        for j in range(qs.size):
            target = qs[j] * total
            while b < bins - 1 and cum + hist[u, b] < target:
                cum += hist[u, b]
                b += 1
            inside = hist[u, b]
            frac = (target - cum) / inside if inside > 0 else 0.0
            lo_edge = edges[b]
            hi_edge = np.minimum(upper[b], high[u])
            value = lo_edge + frac * np.maximum(hi_edge - lo_edge, 0.0)
            out[u, j] = np.minimum(np.maximum(value, low[u]), high[u])
