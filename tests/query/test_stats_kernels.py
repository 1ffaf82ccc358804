"""The statistics kernels against numpy on every float16 bit pattern."""

import numpy as np
import pytest

from neurolake.query import _stats_kernels as kernels
from neurolake.query.neurons import check_bins

# Both ways of widening float16: the CPU's conversion (where it has F16C) and integer code.
WIDENINGS = [pytest.param(True, id="f16c"), pytest.param(False, id="integer")]


def _widening(f16c: bool) -> bool:
    if f16c and not kernels.F16C:
        pytest.skip("this CPU has no F16C instructions")
    return f16c


def accumulators(units: int) -> tuple[np.ndarray, ...]:
    return np.zeros(units), np.zeros(units), np.full(units, -np.inf), np.full(units, np.inf), np.zeros(units, np.int64)


@pytest.mark.parametrize("f16c", WIDENINGS)
def test_float16_moments_widen_every_bit_pattern_exactly(f16c):
    f16c = _widening(f16c)
    patterns = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    values = patterns.view(np.float16)
    finite = patterns[np.isfinite(values)]  # subnormals, both zeros, the largest values
    rng = np.random.default_rng(0)
    bits = rng.permutation(finite)[: 480 * 128].reshape(480, 128)  # rows x units
    x = bits.view(np.float16).astype(np.float64)
    total, squares, high, low, active = accumulators(128)
    kernels.moments_f16(bits, total, squares, high, low, active, f16c=f16c)
    kernels.moments_f16(bits[:7], total, squares, high, low, active, f16c=f16c)  # added, not replaced
    both = np.concatenate([x, x[:7]])
    # every float16 value and its square are exact in float64, so the sums equal numpy's to
    # the last bit up to the order of addition
    np.testing.assert_allclose(total, both.sum(0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(squares, (both * both).sum(0), rtol=1e-12)
    np.testing.assert_array_equal(high, both.max(0))
    np.testing.assert_array_equal(low, both.min(0))
    np.testing.assert_array_equal(active, (both > 0).sum(0))
    # each value alone: the widening itself, including subnormals and signed zeros
    one = finite.reshape(-1, 1)[: finite.size // 8 * 8].reshape(-1, 8)
    for row in one[:: max(1, one.shape[0] // 997)]:
        t, s, h, lo, a = accumulators(8)
        kernels.moments_f16(row.reshape(1, 8), t, s, h, lo, a, f16c=f16c)
        np.testing.assert_array_equal(t, row.view(np.float16).astype(np.float64))
        np.testing.assert_array_equal(h, row.view(np.float16).astype(np.float64))
        np.testing.assert_array_equal(lo, row.view(np.float16).astype(np.float64))


@pytest.mark.parametrize("f16c", WIDENINGS)
def test_float16_active_counts_past_16_bits(f16c):
    """Active counts are kept in 16 bits for up to 65,535 rows at a time: a block of more rows,
    every unit active in all of them, one in none, one in every third, counts each row once."""
    f16c = _widening(f16c)
    rows = 2 * 65535 + 70_000
    one, minus = np.array([1.0, -1.0], np.float16).view(np.uint16)
    bits = np.full((rows, 3), one, np.uint16)
    bits[:, 1] = minus
    bits[::3, 2] = 0
    total, squares, high, low, active = accumulators(3)
    kernels.moments_f16(bits, total, squares, high, low, active, f16c=f16c)
    np.testing.assert_array_equal(active, [rows, 0, rows - len(range(0, rows, 3))])
    np.testing.assert_array_equal(total, [rows, -rows, rows - len(range(0, rows, 3))])


@pytest.mark.parametrize("f16c", WIDENINGS)
def test_float16_infinities_and_nan_keep_their_meaning(f16c):
    """Infinities are values (sums, extremes); NaN makes the sums NaN but is no extreme and
    not active, and a unit of NaN only keeps the extremes it had."""
    f16c = _widening(f16c)
    inf, ninf, nan, one = (np.array(v, np.float16).view(np.uint16) for v in (np.inf, -np.inf, np.nan, 1.0))
    negative_nan = np.uint16(0xFE01)
    bits = np.array([[one, inf, one, nan], [ninf, one, nan, negative_nan]], np.uint16)
    total, squares, high, low, active = accumulators(4)
    kernels.moments_f16(bits, total, squares, high, low, active, f16c=f16c)
    assert total[0] == -np.inf and total[1] == np.inf and np.isnan(total[2]) and np.isnan(total[3])
    np.testing.assert_array_equal(high, [1, np.inf, 1, -np.inf])
    np.testing.assert_array_equal(low, [-np.inf, 1, 1, np.inf])
    np.testing.assert_array_equal(active, [1, 2, 1, 0])


@pytest.mark.filterwarnings("ignore:All-NaN slice")  # numpy's own extremes of the NaN column
@pytest.mark.parametrize("f16c", WIDENINGS)
def test_nan_patterns_among_values_are_no_extremes_and_active_counts_outgrow_16_bits(f16c):
    """Every NaN pattern, of both signs, strewn among values: the extremes are numpy's
    nanmax / nanmin, a column of NaN only keeps its extremes; 70,000 active rows in one block
    count 70,000 (no count narrower than 17 bits may hold them)."""
    f16c = _widening(f16c)
    rng = np.random.default_rng(3)
    patterns = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    nans = patterns[np.isnan(patterns.view(np.float16))]
    bits = rng.standard_normal((2000, 16)).astype(np.float16).view(np.uint16)
    bits[:, 3] = rng.choice(nans, 2000)  # NaN only
    where = rng.random((2000, 16)) < 0.05
    bits[where] = rng.choice(nans, int(where.sum()))
    bits[17, 5], bits[18, 6] = 0x7FFF, 0xFFFF  # the NaNs beyond every other key, both signs
    x = bits.view(np.float16).astype(np.float64)
    total, squares, high, low, active = accumulators(16)
    high[3], low[3] = 7.0, -7.0  # kept by the NaN column
    kernels.moments_f16(bits, total, squares, high, low, active, f16c=f16c)
    expected_high, expected_low = np.nanmax(x, 0), np.nanmin(x, 0)
    expected_high[3], expected_low[3] = 7.0, -7.0
    np.testing.assert_array_equal(high, expected_high)
    np.testing.assert_array_equal(low, expected_low)
    np.testing.assert_array_equal(active, (x > 0).sum(0))

    ones = np.full((70_000, 4), np.float16(0.5)).view(np.uint16)
    ones[:, 1] = np.float16(-1).view(np.uint16)
    total, squares, high, low, active = accumulators(4)
    kernels.moments_f16(ones, total, squares, high, low, active, f16c=f16c)
    np.testing.assert_array_equal(active, [70_000, 0, 70_000, 70_000])
    np.testing.assert_array_equal(total, [35_000, -70_000, 35_000, 35_000])


def test_float32_moments_match_numpy():
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((300, 70)) * 1e3).astype(np.float32)
    total, squares, high, low, active = accumulators(70)
    kernels.moments_f32(x, total, squares, high, low, active)
    d = x.astype(np.float64)
    np.testing.assert_allclose(total, d.sum(0), rtol=1e-12)
    np.testing.assert_allclose(squares, (d * d).sum(0), rtol=1e-12)
    np.testing.assert_array_equal(high, d.max(0))
    np.testing.assert_array_equal(low, d.min(0))
    np.testing.assert_array_equal(active, (d > 0).sum(0))


@pytest.mark.parametrize("units", [72, 40, 7])
def test_histogram_counts_each_row_in_its_order_key_bin(units):
    """Two full slabs of units and a narrower one, one and a narrower one, a narrow one alone
    (unit counts not all multiples of eight); more than one tile of rows, in tiles whose rows
    are not a multiple of eight; columns with more and fewer than an eighth of their values in
    the bin of +0 (whose count is then added at once), with -0 and the smallest positive
    values beside them (the same bin as +0 at coarse bins, another at 65,536)."""
    rng = np.random.default_rng(2)
    rows = 2 * kernels._TILE + 603
    bits = rng.integers(0, 65536, size=(rows, units), dtype=np.uint32).astype(np.uint16)  # every kind of pattern
    bits[:, 3] = np.array(-1.5, np.float16).view(np.uint16)  # one unit constant
    bits[:, 4] = 0  # +0 throughout
    bits[rng.random(rows) < 0.5, 5] = 0  # half +0, as a ReLU's
    beside = rng.random(rows) < 0.1
    bits[beside, 5] = rng.choice(np.array([0x8000, 1, 2, 7, 8], np.uint16), size=int(beside.sum()))  # beside it
    bits[rng.random(rows) < 0.1, 6] = 0  # under an eighth
    keys = kernels.order_keys()
    for shift in (0, 3, 8):
        hist = np.zeros((units, 65536 >> shift), np.int32)
        kernels.histogram(bits, shift, hist)
        kernels.histogram(bits[:5], shift, hist)  # added, not replaced
        taken = np.concatenate([np.arange(rows), np.arange(5)])
        want = np.stack([np.bincount(keys[bits[taken, u]] >> shift, minlength=65536 >> shift) for u in range(units)])
        np.testing.assert_array_equal(hist, want)
    # order keys sort like the values they stand for
    finite = np.flatnonzero(np.isfinite(np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16)))
    values = finite.astype(np.uint16).view(np.float16).astype(np.float64)
    order = np.argsort(keys[finite], kind="stable")
    assert np.all(np.diff(values[order]) >= 0)


@pytest.mark.parametrize("f16c", WIDENINGS)
def test_slot_sums_equal_numpy_in_float64(f16c):
    """Rows added to their slots, and their squares: the same float64 sums as numpy's ``add.at``
    over the rows widened from float16 (pairs in the same order), subnormals and repeats
    included; pair rows counted from an offset (rows of a block that starts there); rows of a
    slot scattered (added four at a time), following each other (one at a time) and pairs in no
    slot order; float32 rows through the generic kernel."""
    slot_sums_f16 = kernels.slot_sums_f16c if _widening(f16c) else kernels.slot_sums_f16
    rng = np.random.default_rng(9)
    values = (rng.standard_normal((300, 37)) * rng.choice([1e-6, 1.0, 300.0], (300, 37))).astype(np.float16)
    values[5, :3] = [np.float16(2**-24), -np.float16(0.0), np.float16(65504)]
    pair_rows = rng.integers(0, 300, 1000)
    pair_slots = np.sort(rng.integers(0, 7, 1000))
    wide = values.astype(np.float64)
    want, want2 = np.zeros((7, 37)), np.zeros((7, 37))
    np.add.at(want, pair_slots, wide[pair_rows])
    np.add.at(want2, pair_slots, wide[pair_rows] ** 2)
    for offset in (0, 1000):
        sums, sums2 = np.zeros((7, 37)), np.zeros((7, 37))
        slot_sums_f16(values.view(np.uint16), pair_rows + offset, offset, pair_slots, sums, sums2)
        assert np.array_equal(sums, want) and np.array_equal(sums2, want2)
    alone = np.zeros((7, 37))
    slot_sums_f16(values.view(np.uint16), pair_rows, 0, pair_slots, alone, np.zeros((0, 37)))
    assert np.array_equal(alone, want)
    # Slots of 43 rows in a row; then scattered rows, in slot order; then in no order, as pairs
    # sorted by frame come (a frame in two slots, slots alternating).
    following = np.arange(300)
    scattered = np.concatenate([following, pair_rows])
    for rows, slots in [
        (following, following // 43),
        (scattered, np.sort(rng.integers(0, 7, scattered.size))),
        (scattered, np.tile([0, 1, 0, 0, 2, 2, 2, 2], scattered.size // 8 + 1)[: scattered.size]),
    ]:
        want, want2 = np.zeros((7, 37)), np.zeros((7, 37))
        np.add.at(want, slots, wide[rows])
        np.add.at(want2, slots, wide[rows] ** 2)
        sums, sums2 = np.zeros((7, 37)), np.zeros((7, 37))
        slot_sums_f16(values.view(np.uint16), rows, 0, slots, sums, sums2)
        assert np.array_equal(sums, want) and np.array_equal(sums2, want2)
    floats = values.astype(np.float32) * np.float32(1.5)
    sums, sums2 = np.zeros((7, 37)), np.zeros((7, 37))
    kernels.slot_sums(floats, pair_rows + 7, 7, pair_slots, sums, sums2)
    want, want2 = np.zeros((7, 37)), np.zeros((7, 37))
    np.add.at(want, pair_slots, floats.astype(np.float64)[pair_rows])
    np.add.at(want2, pair_slots, floats.astype(np.float64)[pair_rows] ** 2)
    assert np.array_equal(sums, want) and np.array_equal(sums2, want2)


@pytest.mark.parametrize(
    ("dtype", "f16c"),
    [(np.float16, True), (np.float16, False), (np.float32, False)],
    ids=["float16-f16c", "float16-integer", "float32"],
)
def test_split_slot_sums_add_only_the_slots_a_block_holds_whole(dtype, f16c):
    """A block of rows 100..109 (pairs counted in rows of the whole pass): slots whose every row
    lies in it go straight into the shared sums; a slot with a row before or after the block,
    even one row (the block's edges are in), is summed into a local row, numbered in order of
    first use and listed, and added by ``add_slot_rows``; the map of local rows is reset."""
    rng = np.random.default_rng(4)
    block = rng.standard_normal((10, 5)).astype(dtype)
    # slot: its rows over the whole pass; 0 and 3 lie whole in 100..109, 1, 2 and 4 do not
    slot_rows = {0: [100, 103, 103], 1: [104, 110], 2: [99, 101], 3: [109], 4: [50, 105, 200]}
    everywhere = sorted((r, s) for s, rows in slot_rows.items() for r in rows)
    pair_rows = np.array([r for r, _ in everywhere], np.int64)
    pair_slots = np.array([s for _, s in everywhere], np.int64)
    first, last = kernels.slot_row_spans(pair_rows, pair_slots, 6)
    assert first.tolist()[:5] == [100, 104, 99, 109, 50] and last.tolist()[:5] == [103, 110, 101, 109, 200]
    assert first[5] > last[5]  # slot 5: no pair
    inside = (pair_rows >= 100) & (pair_rows < 110)
    rows, slots = pair_rows[inside], pair_slots[inside]
    sums, sums2 = np.zeros((6, 5)), np.zeros((6, 5))
    local, local2 = np.full((4, 5), np.nan), np.full((4, 5), np.nan)  # rows taken are zeroed first
    local_of, local_slots = np.full(6, -1, np.int64), np.zeros(4, np.int64)
    if dtype == np.float16:
        kernel = kernels.split_slot_sums_f16c if _widening(f16c) else kernels.split_slot_sums_f16
    else:
        kernel = kernels.split_slot_sums
    values = block.view(np.uint16) if dtype == np.float16 else block
    k = kernel(values, rows, 100, slots, first, last, sums, sums2, local, local2, local_of, local_slots)
    wide = block.astype(np.float64)

    def total(rs, power=1):
        return sum((wide[r - 100] ** power for r in rs), np.zeros(5))

    assert k == 3 and local_slots[:3].tolist() == [2, 1, 4]  # first used at rows 101, 104, 105
    assert (local_of == -1).all()
    for j, rs in enumerate([[101], [104], [105]]):  # slots 2, 1, 4
        np.testing.assert_array_equal(local[j], total(rs))
        np.testing.assert_array_equal(local2[j], total(rs, 2))
    for s in (0, 3):
        np.testing.assert_array_equal(sums[s], total(slot_rows[s]))
        np.testing.assert_array_equal(sums2[s], total(slot_rows[s], 2))
    assert not sums[[1, 2, 4, 5]].any() and not sums2[[1, 2, 4, 5]].any()
    kernels.add_slot_rows(sums, sums2, local, local2, local_slots, k)
    np.testing.assert_array_equal(sums[4], total([105]))
    np.testing.assert_array_equal(sums2[1], total([104], 2))
    alone = np.zeros((6, 5))  # without squares
    k = kernel(
        values, rows, 100, slots, first, last, alone, np.zeros((0, 5)), local, np.zeros((0, 5)), local_of, local_slots
    )
    assert k == 3
    np.testing.assert_array_equal(alone[0], total(slot_rows[0]))


def test_shared_slot_rows_counts_the_slots_each_block_cuts():
    """Frames in blocks of 10 ids: slot 0 (ids 0..9) lies in block 0; slot 1 (ids 8..12) is cut
    by the boundary at 10 (one local row in block 0, one in block 1); slot 2 (ids 5, 15, 25, 26)
    takes one in each of blocks 0, 1 and 2 however many of its frames a block has."""
    distinct = np.arange(0, 30)
    pairs = sorted([(i, 0) for i in range(10)] + [(i, 1) for i in range(8, 13)] + [(i, 2) for i in (5, 15, 25, 26)])
    rows = np.array([r for r, _ in pairs], np.int64)
    slots = np.array([s for _, s in pairs], np.int64)
    first, last = kernels.slot_row_spans(rows, slots, 3)
    assert kernels.shared_slot_rows(distinct, rows, slots, first, last, 10) == 5
    assert kernels.shared_slot_rows(distinct, rows, slots, first, last, 30) == 0
    # the blocks are of frame ids, not of rows: the same pairs over ids 0, 3, 6, ...
    assert kernels.shared_slot_rows(distinct * 3, rows, slots, first, last, 30) == 2 + 3


def test_pack_greater_packs_layers_at_any_bit_offset_as_numpy_packbits():
    """Three layers of 13, 250 and 3 units packed one after the other into rows of 34 bytes
    (layer boundaries inside bytes), from a row offset: the bytes equal ``np.packbits`` of the
    concatenated comparisons, ``greater_f16``'s for float16 (NaN above nothing, -0.0 not above
    0) and numpy's for float32."""
    rng = np.random.default_rng(5)
    layers = [rng.standard_normal((40, n)).astype(np.float16) for n in (13, 250, 3)]
    layers[1][3, :4] = [np.nan, -np.float16(0.0), np.inf, -np.inf]
    limits = [rng.standard_normal(x.shape[1]).astype(np.float32) for x in layers]
    limits[1][:2] = 0.0
    flags = np.concatenate(
        [kernels.greater_f16(x.view(np.uint16), t) for x, t in zip(layers, limits, strict=True)], axis=1
    )
    want = np.packbits(flags, axis=1)
    assert want.shape == (40, 34) and flags[:, :13].any() and not flags[3, 13:15].any()
    out = np.zeros((45, 34), np.uint8)
    bit = 0
    for x, t in zip(layers, limits, strict=True):
        kernels.pack_greater_f16(x.view(np.uint16), t, out, 5, bit)
        bit += x.shape[1]
    np.testing.assert_array_equal(out[5:], want)
    assert not out[:5].any()
    floats = [x.astype(np.float32) + np.float32(0.25) for x in layers]
    want = np.packbits(np.concatenate([x > t for x, t in zip(floats, limits, strict=True)], axis=1), axis=1)
    out = np.zeros((40, 34), np.uint8)
    bit = 0
    for x, t in zip(floats, limits, strict=True):
        kernels.pack_greater(x, t, out, 0, bit)
        bit += x.shape[1]
    np.testing.assert_array_equal(out, want)


def _array_quantiles(hist, shift, qs, low, high):
    """The quantiles of :func:`kernels.quantiles` in numpy array operations, bin by bin."""
    edges = kernels.key_values()[:: 1 << shift]
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
        hi_edge = np.minimum(upper[b], high)
        value = edges[b] + frac * np.maximum(hi_edge - edges[b], 0.0)
        out[:, j] = np.minimum(np.maximum(value, low), high)
    return out


@pytest.mark.parametrize("bins", [65536, 8192, 256])
def test_quantiles_walk_to_the_same_bins_as_the_array_version(bins):
    """Per-unit scaled values, a unit of zeros, one half infinite, one without values; the
    quantiles asked for out of order."""
    shift = check_bins(bins)
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((3000, 40)) * rng.gamma(2.0, 1.0, 40)).astype(np.float16)
    x[:, 3] = 0
    x[:1500, 4] = np.inf
    hist = np.zeros((40, bins), np.int32)
    kernels.histogram(x.view(np.uint16), shift, hist)
    hist[5] = 0
    d = x.astype(np.float64)
    low, high = d.min(0), d.max(0)
    low[5], high[5] = np.inf, -np.inf
    qs = (0.99, 0.5, 0.25, 0.9, 1.0)
    got = kernels.quantiles(hist, shift, qs, low, high)
    with np.errstate(invalid="ignore"):  # the infinite unit's bins: inf - inf, as in the kernel
        expected = _array_quantiles(hist, shift, qs, low, high)
    np.testing.assert_array_equal(got, expected)
    assert np.isfinite(got[[0, 1, 2, 3]]).all() and np.isnan(got[5]).all()
