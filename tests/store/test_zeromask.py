"""Zero-mask chunks: exact round trips, the layout by hand, damaged chunks refused, the choice
per chunk in a lake's shards, runs that keep zstd frames, and Zarr reading them by itself."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from neurolake.errors import IntegrityError, RunError, SpecError
from neurolake.store import Lake, cube, zeromask
from neurolake.store._cpu import numba_cpu_features
from tests.store.partdata import CHUNK_ROWS, ROWS_PER_SHARD, create_run, expected_rows, write_part

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


@pytest.fixture(params=["table", "shuffle", "expand"])
def unpacking(request, monkeypatch):
    """Every way of unpacking items: by tables (every CPU), by SSSE3 byte shuffles (x86) and,
    for 2-byte items, by AVX-512 expand-loads, where numba compiles for a CPU that has them."""
    features = numba_cpu_features()
    if request.param == "expand" and not {"+avx512vbmi2", "+avx512bw"} <= features:
        pytest.skip("numba does not compile for AVX-512 VBMI2 here")
    if request.param == "shuffle" and "+ssse3" not in features:
        pytest.skip("numba does not compile for SSSE3 here")
    monkeypatch.setattr(zeromask, "EXPAND16", request.param == "expand")
    monkeypatch.setattr(zeromask, "SHUFFLE", request.param == "shuffle")
    return request.param


def test_the_layout_by_hand(unpacking):
    items = np.array([0, 5, 0, 0, 7, 0, 0, 0, 9], dtype=np.uint16)
    frame = zeromask.encode(items)
    assert frame == (
        b"NLZM"
        + (9).to_bytes(4, "little")
        + bytes([2, 0, 0, 0])  # header: items, item size
        + bytes([0b00010010, 0b00000001])  # items 1 and 4 of the first eight, item 8
        + np.array([5, 7, 9], "<u2").tobytes()
    )
    assert zeromask.stored_size(9, 3, 2) == len(frame)
    out = np.full(9, 0xFFFF, np.uint16)
    zeromask.decode_into(frame, out)
    np.testing.assert_array_equal(out, items)


@pytest.mark.parametrize("dtype", ["float16", "float32", "uint8", "float64"])
def test_round_trips_are_exact(dtype, unpacking):
    rng = np.random.default_rng(0)
    for n in (0, 1, 7, 8, 9, 63, 64, 65, 1000, 12_347):
        for zeros in (0.0, 0.3, 0.5, 0.97, 1.0):
            x = (rng.standard_normal(n) * 100).astype(dtype)
            x[rng.random(n) < zeros] = 0
            if n > 4 and np.dtype(dtype).kind == "f":
                x[1], x[2], x[3] = -0.0, np.nan, -np.inf  # kept bit for bit; -0.0 is not a zero item
            items = zeromask.items_of(x)
            frame = zeromask.encode(items)
            plain = zeromask.stored_size(n, int(np.count_nonzero(items)), x.itemsize)
            assert len(frame) == plain if frame[9] == 0 else len(frame) < 0.9 * plain
            if n >= 1000 and zeros >= 0.97:
                assert frame[9] == zeromask.MASK_ZSTD  # a mask of few bits set is compressed
            if n >= 1000 and zeros in (0.3, 0.5):
                assert frame[9] == 0  # bits set at random: left as it is
            out = np.empty_like(x)
            zeromask.decode_into(memoryview(frame), out)
            np.testing.assert_array_equal(out.view(items.dtype), items)


def test_a_compressed_mask_by_hand(unpacking):
    """A mask of few bits set is stored as a zstd frame after its length, flags bit 0 set."""
    import zstandard

    x = np.zeros(8000, np.float16)
    x[[3, 999, 7000]] = [1.5, -2.0, 0.25]
    items = zeromask.items_of(x)
    frame = zeromask.encode(items)
    assert frame[:12] == b"NLZM" + (8000).to_bytes(4, "little") + bytes([2, 1, 0, 0])
    length = int.from_bytes(frame[12:16], "little")
    mask = zstandard.ZstdDecompressor().decompress(frame[16 : 16 + length])
    assert mask == np.packbits(items != 0, bitorder="little").tobytes()
    assert frame[16 + length :] == x[[3, 999, 7000]].astype("<f2").tobytes()
    out = np.empty_like(x)
    zeromask.decode_into(frame, out)
    np.testing.assert_array_equal(out.view(np.uint16), items)


def test_damaged_chunks_are_refused(unpacking):
    x = np.maximum(np.random.default_rng(1).standard_normal(1000), 0).astype(np.float16)
    frame = zeromask.encode(zeromask.items_of(x))
    out = np.empty_like(x)
    with pytest.raises(ValueError, match="values where its mask marks more"):
        zeromask.decode_into(frame[:-2], out)  # one value short
    with pytest.raises(ValueError, match="values where its mask marks"):
        zeromask.decode_into(frame + b"\0\0", out)  # one value too many
    with pytest.raises(ValueError, match="truncated"):
        zeromask.decode_into(frame[:50], out)  # inside the mask
    with pytest.raises(ValueError, match="1000 items of 2 bytes, 999 of 2 expected"):
        zeromask.decode_into(frame, out[:999])
    with pytest.raises(ValueError, match="not a zero-mask chunk"):
        zeromask.decode_into(b"\x28\xb5\x2f\xfd" + frame[4:], out)
    with pytest.raises(ValueError, match="unknown flags 0x2"):
        zeromask.decode_into(frame[:9] + b"\x02" + frame[10:], out)
    sparse = np.zeros(1000, np.float16)
    sparse[[5, 500]] = 1.0
    packed = zeromask.encode(zeromask.items_of(sparse))
    assert packed[9] == zeromask.MASK_ZSTD
    with pytest.raises(ValueError, match="damaged mask"):
        zeromask.decode_into(packed[:16] + bytes(len(packed) - 20) + packed[-4:], out)
    with pytest.raises(ValueError, match="truncated"):
        zeromask.decode_into(packed[:20], out)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_values_short_or_over_are_refused_at_any_place(dtype, unpacking):
    """Values cut short anywhere (the last few shuffled from a padded copy, or the mask running
    out of values long before its end) or left over are refused, never read past or ignored;
    the values that are there decode the same as the whole chunk's."""
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(4099) * 10).astype(dtype)
    x[rng.random(x.size) < 0.5] = 0
    items = zeromask.items_of(x)
    frame = zeromask.encode(items)
    assert frame[9] == 0
    size, nnz = x.itemsize, int(np.count_nonzero(items))
    for short in (1, 2, 3, 7, 8, 9, 15, 17, 100, nnz // 2, nnz - 1, nnz):
        with pytest.raises(ValueError, match="values where its mask marks more"):
            zeromask.decode_into(frame[: len(frame) - short * size], np.empty_like(x))
    for over in (1, 8, 33):
        with pytest.raises(ValueError, match=f"has {nnz + over} values where its mask marks {nnz}$"):
            zeromask.decode_into(frame + bytes(over * size), np.empty_like(x))
    out = np.full_like(x, 7)
    zeromask.decode_into(frame, out)
    np.testing.assert_array_equal(out.view(items.dtype), items)


def _shard_frames(run, layer: str, shard: int) -> list[bytes]:
    data = open(run.cube_loc.path + "/" + cube.shard_key(layer, shard), "rb").read()
    n = ROWS_PER_SHARD // CHUNK_ROWS
    index = np.frombuffer(data[-(n * 16 + 4) : -4], "<u8").reshape(n, 2)
    return [data[o : o + length] for o, length in index.tolist() if o != 2**64 - 1]


def test_a_lake_stores_relu_layers_as_zero_masks_and_reads_them_back(tmp_path):
    """Layer 1 of the test run is after a ReLU (half zeros): its chunks are zero masks, stored in
    about 0.56 of their bytes; layer 0 is dense: zstd frames. Both read back exactly, by the
    lake's reader and by Zarr; a damaged zero-mask chunk is an IntegrityError naming its shard."""
    lake = Lake.create(str(tmp_path / "lake"))
    run = create_run(lake)
    write_part(run, run.plan.parts[0].part_id)
    run = Lake.open(str(tmp_path / "lake")).run("r1")
    assert run.manifest["storage"]["codec"] == "zeromask"
    dense, relu = (_shard_frames(run, layer.name, 0) for layer in run.layers)
    assert dense and all(f[:4] == ZSTD_MAGIC for f in dense)
    assert relu and all(f[:4] == zeromask.MAGIC for f in relu)
    raw = CHUNK_ROWS * run.layers[1].units * 2
    assert all(len(f) < 0.62 * raw for f in relu)
    ids = run.committed_frame_ids()
    for li, layer in enumerate(run.layers):
        want = expected_rows(li, layer.units, ids)
        np.testing.assert_array_equal(run.read_rows(layer.name, ids), want)
        np.testing.assert_array_equal(run._array(layer.name)[:][ids], want)

    path = run.cube_loc.path + "/" + cube.shard_key(run.layers[1].name, 0)
    data = bytearray(open(path, "rb").read())
    data[12] ^= 0xFF  # the first chunk's mask now marks other values than it holds
    open(path, "wb").write(bytes(data))
    run = Lake.open(str(tmp_path / "lake")).run("r1")
    with pytest.raises(IntegrityError, match=r"chunk 0 of .*enc.conv2/c/0/0 has \d+ values where its mask marks"):
        run.read_rows(run.layers[1].name, ids[:5])


def test_zarr_alone_reads_a_zeromask_layer(tmp_path):
    """The codec is registered with Zarr through this package's entry point: a script that
    imports only Zarr opens the array and reads the same rows (Zarr loads the codec class)."""
    lake = Lake.create(str(tmp_path / "lake"))
    run = create_run(lake)
    write_part(run, run.plan.parts[0].part_id)
    ids = run.committed_frame_ids()
    code = (
        "import json, zarr\n"
        f"a = zarr.open_array({run.cube_loc.path!r}, path='enc.conv2', mode='r')\n"
        f"rows = a[{int(ids[0])}:{int(ids[-1]) + 1}]\n"
        "print(json.dumps([a.metadata.to_dict()['codecs'][0]['configuration']['codecs'][1]['name'],"
        " rows.astype(float).tolist()]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    name, rows = json.loads(out.stdout)
    assert name == "neurolake.zeromask"
    assert ids.tolist() == list(range(int(ids[0]), int(ids[-1]) + 1))
    np.testing.assert_array_equal(np.array(rows), expected_rows(1, 10, ids).astype(float))


def test_a_zstd_run_keeps_zstd_frames_also_when_resumed(tmp_path):
    lake = Lake.create(str(tmp_path / "lake"))
    plan_run = create_run(lake, run_id="probe")
    kwargs = {
        "model": plan_run.manifest["model"],
        "corpus": plan_run.manifest["corpus"],
        "layers": plan_run.layers,
        "plan": plan_run.plan,
    }
    run = lake.create_run("z", codec="zstd", **kwargs)
    assert run.manifest["storage"]["codec"] == "zstd"
    # Created again with the default codec (a newer version resuming the ingest): the same run.
    again = lake.create_run("z", **kwargs)
    assert again.manifest["storage"]["codec"] == "zstd"
    write_part(again, again.plan.parts[0].part_id)
    from zarr.codecs import ZstdCodec

    for layer in run.layers:
        assert all(f[:4] == ZSTD_MAGIC for f in _shard_frames(run, layer.name, 0))
        assert isinstance(run._array(layer.name).compressors[0], ZstdCodec)
    ids = run.committed_frame_ids()
    np.testing.assert_array_equal(run.read_rows("enc.conv2", ids), expected_rows(1, 10, ids))
    with pytest.raises(SpecError, match="unknown storage codec 'lz4'; codecs are zeromask, zstd"):
        lake.create_run("y", codec="lz4", **kwargs)


def test_a_run_with_a_codec_this_version_does_not_know_is_refused_in_one_line(tmp_path):
    lake = Lake.create(str(tmp_path / "lake"))
    run = create_run(lake)
    path = tmp_path / "lake" / "runs" / "r1" / "run.json"
    manifest = json.loads(path.read_text())
    manifest["storage"]["codec"] = "future"
    path.write_text(json.dumps(manifest))
    with pytest.raises(RunError, match="run 'r1' stores its chunks with codec 'future', which this version"):
        Lake.open(str(tmp_path / "lake")).run(run.run_id)
