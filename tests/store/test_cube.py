"""The shard encoder writes exactly what Zarr's sharding codec writes, and Zarr reads it back:
with zstd frames only (codec "zstd") and with zero-mask chunks where the values have zeros
(codec "zeromask", Zarr codec ``neurolake.zeromask``)."""

import numpy as np
import pytest
import zarr
from zarr.codecs import ZstdCodec

from neurolake.store.cube import bytes_digest, encode_shard
from neurolake.store.zeromask import MAGIC, ZeroMaskCodec


def _zarr_array(tmp_path, level, codec="zstd"):
    g = zarr.open_group(zarr.storage.LocalStore(str(tmp_path)), mode="a")
    return g.create_array(
        "x",
        shape=(1024, 33),
        dtype="float16",
        chunks=(128, 33),
        shards=(512, 33),
        compressors=[ZstdCodec(level=level) if codec == "zstd" else ZeroMaskCodec(level=level)],
        filters=None,
        fill_value=0,
    )


def _compressible(seed, shape):
    """ReLU-like values: half zeros, which zstd shrinks by far more than MIN_SAVING."""
    return np.maximum(np.random.default_rng(seed).standard_normal(shape), 0).astype(np.float16)


@pytest.mark.parametrize("codec", ["zstd", "zeromask"])
@pytest.mark.parametrize("level", [1, 3])
def test_shard_bytes_equal_zarr(tmp_path, level, codec):
    a = _zarr_array(tmp_path, level, codec)
    block = _compressible(level, (512, 33))
    block[128:256] = 0  # an empty inner chunk: Zarr leaves it out of the shard
    block[384:512] = 0
    block[400, 7] = 1.5  # compresses to almost nothing, yet is not empty
    with zarr.config.set({"array.write_empty_chunks": True}):
        a[0:512] = block
    data, digest = encode_shard(block, 128, level, codec)
    assert (tmp_path / "x" / "c" / "0" / "0").read_bytes() == data
    assert digest == bytes_digest(data)
    index = np.frombuffer(data[-4 - 4 * 16 : -4], "<u8").reshape(4, 2)
    assert index[1].tolist() == [2**64 - 1] * 2  # left out
    first, last = (data[int(o) : int(o) + int(n)] for o, n in index[[0, 3]])
    if codec == "zstd":
        assert index[3, 1] < 64 and first[:4] == last[:4] == b"\x28\xb5\x2f\xfd"  # kept though tiny
    else:  # half zeros, and one value: both in zero-mask form (header, one bit per value, values)
        assert first[:4] == last[:4] == MAGIC
        assert first[9] == 0 and len(first) == 12 + 128 * 33 // 8 + 2 * np.count_nonzero(block[:128])
        assert last[9] == 1 and len(last) < 64  # one bit set of 4,224: the mask compressed

    # Our bytes as the second shard, including an all-zero shard, read back by Zarr.
    (tmp_path / "x" / "c" / "1").mkdir()
    (tmp_path / "x" / "c" / "1" / "0").write_bytes(encode_shard(block[::-1].copy(), 128, level, codec)[0])
    np.testing.assert_array_equal(a[512:], block[::-1])
    zeros = np.zeros((512, 33), np.float16)
    (tmp_path / "x" / "c" / "1" / "0").write_bytes(encode_shard(zeros, 128, level, codec)[0])
    assert not a[512:].any()
    # The digest changes with any row.
    other = block.copy()
    other[500, 3] += 1
    assert encode_shard(other, 128, level, codec)[1] != digest


@pytest.mark.parametrize("codec", ["zstd", "zeromask"])
@pytest.mark.parametrize("level", [1, 3])
def test_a_shard_that_does_not_compress_is_written_at_the_fast_level(tmp_path, level, codec):
    """Dense values save less than MIN_SAVING at ``level``: the shard holds the frames Zarr
    writes at FAST_LEVEL (which decode at memory speed), and Zarr reads it back whatever
    level its metadata names. The level is decided per shard."""
    import zstandard

    from neurolake.store.cube import FAST_LEVEL, MIN_SAVING

    block = (np.random.default_rng(level).standard_normal((512, 33)) * 3).astype(np.float16)
    chunk = block[:128].tobytes()
    assert len(zstandard.ZstdCompressor(level=level).compress(chunk)) > (1 - MIN_SAVING) * len(chunk)
    fast = _zarr_array(tmp_path / "fast", FAST_LEVEL, codec)
    with zarr.config.set({"array.write_empty_chunks": True}):
        fast[0:512] = block
    data, _ = encode_shard(block, 128, level, codec)
    assert (tmp_path / "fast" / "x" / "c" / "0" / "0").read_bytes() == data

    # Zarr's array at ``level`` writes other frames, and reads ours, and a compressible shard beside it.
    a = _zarr_array(tmp_path / "level", level, codec)
    with zarr.config.set({"array.write_empty_chunks": True}):
        a[0:512] = block
    assert (tmp_path / "level" / "x" / "c" / "0" / "0").read_bytes() != data
    (tmp_path / "level" / "x" / "c" / "0" / "0").write_bytes(data)
    other = _compressible(7, (512, 33))
    (tmp_path / "level" / "x" / "c" / "1").mkdir()
    (tmp_path / "level" / "x" / "c" / "1" / "0").write_bytes(encode_shard(other, 128, level, codec)[0])
    np.testing.assert_array_equal(a[:512], block)
    np.testing.assert_array_equal(a[512:], other)
    assert len(encode_shard(other, 128, level, codec)[0]) < 0.8 * other.nbytes  # that one kept its level
