"""The shard encoder writes exactly what Zarr's sharding codec writes, and Zarr reads it back."""

import numpy as np
import pytest
import zarr
from zarr.codecs import ZstdCodec

from neurolake.store.cube import bytes_digest, encode_shard


@pytest.mark.parametrize("level", [1, 3])
def test_shard_bytes_equal_zarr(tmp_path, level):
    g = zarr.open_group(zarr.storage.LocalStore(str(tmp_path)), mode="a")
    a = g.create_array(
        "x",
        shape=(1024, 33),
        dtype="float16",
        chunks=(128, 33),
        shards=(512, 33),
        compressors=[ZstdCodec(level=level)],
        filters=None,
        fill_value=0,
    )
    block = np.random.default_rng(level).standard_normal((512, 33)).astype(np.float16)
    block[128:256] = 0  # an empty inner chunk: Zarr leaves it out of the shard
    block[384:512] = 0
    block[400, 7] = 1.5  # compresses to almost nothing, yet is not empty
    with zarr.config.set({"array.write_empty_chunks": True}):
        a[0:512] = block
    data, digest = encode_shard(block, 128, level)
    assert (tmp_path / "x" / "c" / "0" / "0").read_bytes() == data
    assert digest == bytes_digest(data)
    index = np.frombuffer(data[-4 - 4 * 16 : -4], "<u8").reshape(4, 2)
    assert index[1].tolist() == [2**64 - 1] * 2 and index[3, 1] < 64  # left out; kept though tiny

    # Our bytes as the second shard, including an all-zero shard, read back by Zarr.
    (tmp_path / "x" / "c" / "1").mkdir()
    (tmp_path / "x" / "c" / "1" / "0").write_bytes(encode_shard(block[::-1].copy(), 128, level)[0])
    np.testing.assert_array_equal(a[512:], block[::-1])
    (tmp_path / "x" / "c" / "1" / "0").write_bytes(encode_shard(np.zeros((512, 33), np.float16), 128, level)[0])
    assert not a[512:].any()
    # The digest changes with any row.
    other = block.copy()
    other[500, 3] += 1
    assert encode_shard(other, 128, level)[1] != digest
