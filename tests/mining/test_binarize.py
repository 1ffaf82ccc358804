import numpy as np
import pytest

from neurolake.errors import SpecError
from neurolake.mining.binarize import binarize, parse_spec

X = np.array(
    [
        [0.0, 2.0, -1.0, 5.0],
        [3.0, 3.0, 0.5, -2.0],
        [1.0, 0.0, 0.0, 0.0],
    ],
    dtype=np.float32,
)


def test_absolute():
    expected = [[0, 1, 0, 1], [1, 1, 1, 0], [1, 0, 0, 0]]
    np.testing.assert_array_equal(binarize(X, {"method": "absolute", "threshold": 0.0}), np.array(expected, bool))


def test_topk_breaks_ties_by_unit_index():
    # row 1: 3.0 at units 0 and 1 tie -> both in top-2; row 2: zeros tie for the second place -> unit 1
    expected = [[0, 1, 0, 1], [1, 1, 0, 0], [1, 1, 0, 0]]
    np.testing.assert_array_equal(binarize(X, {"method": "topk", "k": 2}), np.array(expected, bool))
    assert binarize(X, {"method": "topk", "k": 9}).all()


def test_quantile_and_zscore_use_statistics():
    thresholds = np.array([0.5, 2.5, 0.0, 1.0])
    expected = [[0, 0, 0, 1], [1, 1, 1, 0], [1, 0, 0, 0]]
    np.testing.assert_array_equal(
        binarize(X, {"method": "quantile", "q": 0.9}, thresholds=thresholds), np.array(expected, bool)
    )
    mean, std = np.array([1.0, 1.0, 0.0, 0.0]), np.array([1.0, 0.5, 0.0, 2.0])
    # z = (x - mean) / std > 1.5; unit 2 has std 0 and is never active
    expected = [[0, 1, 0, 1], [1, 1, 0, 0], [0, 0, 0, 0]]
    np.testing.assert_array_equal(
        binarize(X, {"method": "zscore", "z": 1.5}, mean=mean, std=std), np.array(expected, bool)
    )


def test_specs():
    assert parse_spec("quantile:0.99") == {"method": "quantile", "q": 0.99}
    assert parse_spec("topk:5") == {"method": "topk", "k": 5}
    for bad, msg in (
        ("quantile:0.7", "q in"),
        ("median", "METHOD:VALUE"),
        ("topk:x", "not a number"),
        ("topk:0", "k >= 1"),
    ):
        with pytest.raises(SpecError, match=msg):
            parse_spec(bad)
    with pytest.raises(SpecError, match="needs the neurons statistics"):
        binarize(X, {"method": "quantile", "q": 0.9})


def test_float16_blocks_are_compared_as_numpy_compares_them_widened():
    """Float16 blocks go through a kernel that widens each row on the fly: every float16 bit
    pattern (subnormals, signed zeros, infinities, NaN) against thresholds on, between and
    beyond float16 values gives numpy's float32 answer, for both methods that compare."""
    every = np.arange(65536, dtype=np.uint16).view(np.float16)
    limits = np.array(
        [0.0, -0.0, 1.0, 1.0004, 2**-24, 1e-7, -1e-7, -2.5, 65504.0, 7e4, np.inf, -np.inf, np.nan], np.float32
    )
    block = np.ascontiguousarray(np.repeat(every[:, None], limits.size, axis=1))
    want = block.astype(np.float32) > limits[None, :]
    got = binarize(block, {"method": "quantile", "q": 0.9}, thresholds=limits)
    assert got.dtype == bool and np.array_equal(got, want)
    for t in (0.0, -0.0, 0.33, -7.0):
        assert np.array_equal(binarize(block, {"method": "absolute", "threshold": t}), block.astype(np.float32) > t)
    strided = block[::3, ::2]  # a view: compared as its values
    assert np.array_equal(binarize(strided, {"method": "absolute", "threshold": 0.5}), strided.astype(np.float32) > 0.5)
