"""The direct shard reader returns exactly what Zarr reads, reads only the chunks a request
touches, and refuses a damaged chunk index."""

from __future__ import annotations

import math
import os
from functools import partial

import dask
import numpy as np
import pytest
from dask.callbacks import Callback

from neurolake.errors import IntegrityError
from neurolake.store import Lake, cube
from neurolake.store.reader import LayerReader, read_threads
from neurolake.store.run import LayerArray
from tests.store.partdata import CHUNK_ROWS, ROWS_PER_SHARD, create_run, expected_rows, write_part


def _run_with_gap(url, options):
    """A run whose parts are all committed except the second (its shards never written)."""
    lake = Lake.create(url, options)
    run = create_run(lake, n_utterances=30, part_rows=600)
    parts = [p.part_id for p in run.plan.parts]
    for part_id in parts[:1] + parts[2:]:
        write_part(run, part_id)
    return Lake.open(url, options).run("r1")


@pytest.fixture(params=["local", "s3"])
def gap_run(request, tmp_path):
    if request.param == "local":
        return _run_with_gap(str(tmp_path / "lake"), {})
    bucket, options = request.getfixturevalue("s3_bucket")
    return _run_with_gap(f"s3://{bucket}/lake", options)


def test_reads_equal_zarr_on_every_backend(gap_run, monkeypatch):
    run = gap_run
    rng = np.random.default_rng(3)
    ids = run.committed_frame_ids()
    for li, layer in enumerate(run.layers):
        reader = run._reader(layer.name, False)
        assert reader is not None  # the lake's own shards: read directly
        zarr_array = run._array(layer.name)
        whole = zarr_array[:]
        # Zarr's own read is the oracle: real rows where parts committed, zeros elsewhere.
        np.testing.assert_array_equal(whole[ids], expected_rows(li, layer.units, ids))
        np.testing.assert_array_equal(run.layer_dask(layer.name).compute(), whole)
        rps = run.plan.rows_per_shard
        for size, shards_per_block in (("1B", 1), ("1TiB", None)):  # one shard a block; as big as the rule allows
            with dask.config.set({"array.chunk-size": size}):
                lazy = run.layer_dask(layer.name)
            blocks = lazy.chunks[0]
            assert all(b % rps == 0 for b in blocks[:-1]) and sum(blocks) == whole.shape[0]
            if shards_per_block is not None:
                assert blocks[0] == rps * shards_per_block
            else:  # the layer's shards shared out as about four blocks per decoding thread
                shards = math.ceil(whole.shape[0] / rps)
                assert blocks[0] == rps * math.ceil(shards / (4 * read_threads()))
            np.testing.assert_array_equal(lazy.compute(), whole)
            np.testing.assert_array_equal(dask.compute(lazy)[0], whole)  # the graph, block by block
        np.testing.assert_array_equal(reader.read_range(0, whole.shape[0]), whole)
        np.testing.assert_array_equal(reader.read_range(0, whole.shape[0], parallel=False), whole)
        for _ in range(20 if run.loc.is_local else 4):  # ranges that start and stop inside chunks and shards
            a, b = np.sort(rng.integers(0, whole.shape[0], 2))
            np.testing.assert_array_equal(reader.read_range(int(a), int(b) + 1), whole[a : b + 1])
        # Gathers: scattered, clustered runs, unsorted with repeats (Run.read_rows), one row.
        scattered = np.sort(rng.choice(ids, 97, replace=False))
        np.testing.assert_array_equal(reader.read_rows(scattered), whole[scattered])
        clustered = ids[(ids % 300) < 40]
        np.testing.assert_array_equal(reader.read_rows(clustered), whole[clustered])
        for wanted in (scattered, clustered, ids):  # streamed a few chunks at a time to a visitor
            np.testing.assert_array_equal(_visited(run, layer.name, wanted), whole[wanted])
            with dask.config.set({"array.chunk-size": "1B"}):  # and lazily, a block per touched shard
                lazy = run.layer_dask(layer.name, frame_ids=wanted)
            assert len(lazy.chunks[0]) == np.unique(wanted // rps).size
            np.testing.assert_array_equal(lazy.compute(), whole[wanted])
            np.testing.assert_array_equal(dask.compute(lazy)[0], whole[wanted])
            np.testing.assert_array_equal(run.layer_dask(layer.name, frame_ids=wanted).compute(), whole[wanted])
        assert run.layer_dask(layer.name, frame_ids=ids[:0]).compute().shape == (0, layer.units)
        with pytest.raises(ValueError, match="sorted, distinct"):
            run.layer_dask(layer.name, frame_ids=ids[[1, 0]])
        shuffled = rng.choice(ids, 200, replace=True)
        np.testing.assert_array_equal(run.read_rows(layer.name, shuffled), whole[shuffled])
        np.testing.assert_array_equal(run.read_rows(layer.name, ids[:1]), whole[ids[:1]])
        # Into a buffer the caller reuses (what block passes do): the same rows, in place.
        buffer = np.full((clustered.size, layer.units), 7, dtype=whole.dtype)
        for wanted in (clustered, scattered):
            got = run.read_rows(layer.name, wanted, out=buffer[: wanted.size])
            assert np.shares_memory(got, buffer)
            np.testing.assert_array_equal(buffer[: wanted.size], whole[wanted])
        with pytest.raises(ValueError, match="sorted, distinct"):
            run.read_rows(layer.name, scattered[::-1], out=buffer[: scattered.size])
        with pytest.raises(ValueError, match="C-contiguous"):
            run.read_rows(layer.name, scattered, out=buffer[: scattered.size + 1])
        lo, hi = int(ids[5]), int(ids[5]) + 50
        np.testing.assert_array_equal(run.read_range(layer.name, lo, hi), whole[lo:hi])
        # From object storage a few tasks are fetched at a time: with one task per fetch, the same.
        with monkeypatch.context() as m:
            m.setattr("neurolake.store.reader._REMOTE_BATCH_BYTES", 1)
            batches: list[int] = []
            m.setattr(reader, "_remote_work", partial(_counted_fetch, batches, reader._remote_work))
            np.testing.assert_array_equal(reader.read_rows(clustered), whole[clustered])
            np.testing.assert_array_equal(_visited(run, layer.name, ids), whole[ids])
            np.testing.assert_array_equal(reader.read_range(0, whole.shape[0]), whole)
            if not run.loc.is_local:
                assert len(batches) > 3 and set(batches) == {1}


def _counted_fetch(batches, fetch, tasks):
    """A reader's ``_remote_work`` noting the size of every batch of tasks it fetches."""
    batches.append(len(tasks))
    return fetch(tasks)


def _visited(run, layer, ids):
    """The rows ``Run.visit_rows`` hands its visitor, put back in place; each row exactly once."""
    out = np.zeros((ids.size, run.layer(layer).units), dtype=np.float16)
    seen = np.zeros(ids.size, dtype=np.int64)

    def visit(rows, start):
        out[start : start + rows.shape[0]] = rows
        seen[start : start + rows.shape[0]] += 1

    run.visit_rows(layer, ids, visit)
    assert (seen == 1).all()
    return out


class _Tasks(Callback):
    """Counts the tasks a dask scheduler runs."""

    def __init__(self) -> None:
        super().__init__()
        self.n = 0

    def _pretask(self, key, dsk, state):
        self.n += 1


def test_layer_dask_compute_decodes_into_its_result(tmp_path):
    """``compute()`` and ``np.asarray`` of ``layer_dask``'s array and of its row slices read
    the rows at once, running no task; dask's own compute, other selections and other
    schedulers run the graph; both give the same rows."""
    run = _run_with_gap(str(tmp_path / "lake"), {})
    layer = run.layers[0].name
    whole = run._array(layer)[:]
    ids = run.committed_frame_ids()
    wanted = ids[(ids % 300) < 40]
    lazy, gathered = run.layer_dask(layer), run.layer_dask(layer, frame_ids=wanted)
    n = whole.shape[0]
    cases = [
        (lazy, whole),
        (lazy[5 : n - 7], whole[5 : n - 7]),
        (lazy[300:1200, :], whole[300:1200]),
        (lazy[-50:], whole[-50:]),
        (lazy[10:5], whole[10:5]),
        (lazy[100:900][17:400], whole[100:900][17:400]),
        (gathered, whole[wanted]),
        (gathered[3:60], whole[wanted][3:60]),
    ]
    for array, want in cases:
        assert type(array) is LayerArray
        with _Tasks() as tasks:
            np.testing.assert_array_equal(array.compute(), want)
            np.testing.assert_array_equal(np.asarray(array), want)
            with dask.config.set(scheduler="synchronous"):
                np.testing.assert_array_equal(array.compute(), want)
        assert tasks.n == 0
        with _Tasks() as tasks:
            np.testing.assert_array_equal(dask.compute(array)[0], want)
            np.testing.assert_array_equal(array.compute(scheduler="threads"), want)
        assert tasks.n > 0 or want.size == 0
    # Not whole rows, or not a slice: a plain dask array, computed by its graph.
    for array, want in [(lazy[::2], whole[::2]), (lazy[:, 1:3], whole[:, 1:3]), (lazy + 1, whole + 1)]:
        assert type(array) is not LayerArray
        with _Tasks() as tasks:
            np.testing.assert_array_equal(array.compute(), want)
        assert tasks.n > 0


def test_a_gather_reads_only_the_chunks_it_touches(tmp_path, monkeypatch):
    lake = Lake.create(str(tmp_path / "lake"))
    run = create_run(lake, n_utterances=30, part_rows=600)
    for part in run.plan.parts:
        write_part(run, part.part_id)
    run = Lake.open(str(tmp_path / "lake")).run("r1")
    layer = run.layers[0]
    reader = run._reader(layer.name, False)
    assert reader is not None
    index_bytes = (ROWS_PER_SHARD // CHUNK_ROWS) * 16 + 4

    def chunk_length(row: int) -> int:
        shard, chunk = divmod(row // CHUNK_ROWS, ROWS_PER_SHARD // CHUNK_ROWS)
        data = (run.cube_loc.child(cube.shard_key(layer.name, shard))).read_bytes()
        index = np.frombuffer(data[-index_bytes:-4], "<u8").reshape(-1, 2)
        return int(index[chunk, 1])

    read: list[int] = []
    real_pread = os.pread

    def counting_pread(fd, n, offset):
        data = real_pread(fd, n, offset)
        read.append(len(data))
        return data

    real_preadv = os.preadv

    def counting_preadv(fd, buffers, offset):
        n = real_preadv(fd, buffers, offset)
        read.append(n)
        return n

    monkeypatch.setattr(os, "pread", counting_pread)
    monkeypatch.setattr(os, "preadv", counting_preadv)
    # Rows inside two chunks of two different shards: two indexes and two chunks are read.
    rows = np.array([3, 5, 60, ROWS_PER_SHARD * 2 + CHUNK_ROWS + 1], dtype=np.int64)
    got = reader.read_rows(rows, parallel=False)
    np.testing.assert_array_equal(got, expected_rows(0, layer.units, rows))
    assert sorted(read) == sorted([index_bytes, index_bytes, chunk_length(3), chunk_length(int(rows[-1]))])
    # Two adjacent chunks of one shard: one index read, then each chunk's bytes by themselves
    # (a chunk's size stays in a core's cache while it is decoded).
    read.clear()
    reader.read_range(CHUNK_ROWS - 2, CHUNK_ROWS + 2, parallel=False)
    assert read == [index_bytes, chunk_length(CHUNK_ROWS - 2), chunk_length(CHUNK_ROWS)]


def _one_part_run(tmp_path):
    """A lake of the test run with its first part written, opened afresh."""
    lake = Lake.create(str(tmp_path / "lake"))
    run = create_run(lake, n_utterances=30, part_rows=600)
    write_part(run, run.plan.parts[0].part_id)
    return Lake.open(str(tmp_path / "lake")).run("r1")


def test_a_damaged_index_is_refused(tmp_path):
    run = _one_part_run(tmp_path)
    layer = run.layers[1].name
    path = run.cube_loc.path + "/" + cube.shard_key(layer, 0)
    data = bytearray(open(path, "rb").read())
    data[-10] ^= 0xFF  # a bit of the chunk index
    open(path, "wb").write(bytes(data))
    with pytest.raises(IntegrityError, match="chunk index of .* is damaged"):
        run.read_rows(layer, [1, 2])
    # The other layer's shards are intact and still read.
    np.testing.assert_array_equal(run.read_rows(run.layers[0].name, [1, 2]), expected_rows(0, 24, np.array([1, 2])))


def test_a_chunk_past_the_end_of_its_shard_is_refused(tmp_path):
    """An index whose last chunk runs past the file's end (its checksum right) is an
    IntegrityError naming the shard, on every read path; the chunks before it still read."""
    import google_crc32c

    run = _one_part_run(tmp_path)
    layer = run.layers[0]
    path = run.cube_loc.path + "/" + cube.shard_key(layer.name, 0)
    data = open(path, "rb").read()
    n = ROWS_PER_SHARD // CHUNK_ROWS
    index = np.frombuffer(data[-(n * 16 + 4) : -4], "<u8").reshape(n, 2).copy()
    stored = np.flatnonzero(index[:, 0] != 2**64 - 1)
    assert stored.size >= 2
    last = int(stored[-1])
    index[last, 1] += 4096  # the last chunk said to run past the file
    body = index.tobytes()
    open(path, "wb").write(data[: -(n * 16 + 4)] + body + google_crc32c.value(body).to_bytes(4, "little"))
    rows = np.arange(last * CHUNK_ROWS, last * CHUNK_ROWS + 3)
    with pytest.raises(IntegrityError, match=r"c/0/0 is shorter than its chunk index says"):
        run.read_rows(layer.name, rows)
    with pytest.raises(IntegrityError, match=r"c/0/0 is shorter than its chunk index says"):
        run.read_range(layer.name, 0, (last + 1) * CHUNK_ROWS)
    first = np.arange(3)
    np.testing.assert_array_equal(run.read_rows(layer.name, first), expected_rows(0, layer.units, first))


def _rewrite_shard(path: str, frame_of) -> np.ndarray:
    """Re-encode a shard file's chunks with ``frame_of(raw_chunk_bytes)``; returns the old index."""
    import google_crc32c
    import zstandard

    data = open(path, "rb").read()
    n = ROWS_PER_SHARD // CHUNK_ROWS
    index = np.frombuffer(data[-(n * 16 + 4) : -4], "<u8").reshape(n, 2)
    parts, new, offset = [], np.full((n, 2), 2**64 - 1, dtype="<u8"), 0
    for i, (o, length) in enumerate(index.tolist()):
        if o == 2**64 - 1:
            continue
        frame = frame_of(zstandard.ZstdDecompressor().decompress(data[o : o + length], max_output_size=1 << 24))
        parts.append(frame)
        new[i] = (offset, len(frame))
        offset += len(frame)
    body = new.tobytes()
    crc = google_crc32c.value(body).to_bytes(4, "little")
    open(path, "wb").write(b"".join([*parts, body, crc]))
    return index


def test_frames_without_a_size_are_read_and_wrong_sizes_refused(tmp_path):
    """Chunks decode straight into the output when their frame states the chunk's size; a frame
    from another zstd writer (no size in its header) is still read, and a frame that decodes to
    the wrong size or is cut short is refused, not read as rows."""
    import zstandard

    run = _one_part_run(tmp_path)
    layer = run.layers[0]
    path = run.cube_loc.path + "/" + cube.shard_key(layer.name, 0)
    ids = run.committed_frame_ids()
    ids = ids[ids < ROWS_PER_SHARD]
    want = expected_rows(0, layer.units, ids)
    sizeless = zstandard.ZstdCompressor(level=3, write_content_size=False)
    _rewrite_shard(path, lambda raw: sizeless.compress(raw))
    assert zstandard.frame_content_size(open(path, "rb").read(64)) == -1
    reader = run._reader(layer.name, False)
    assert reader is not None
    np.testing.assert_array_equal(reader.read_rows(ids), want)
    np.testing.assert_array_equal(reader.read_range(0, int(ids[-1]) + 1)[ids], want)
    # A frame of one row too few, with its (true) size in the header.
    short = zstandard.ZstdCompressor(level=1)
    _rewrite_shard(path, lambda raw: short.compress(raw[: -layer.units * 2]))
    with pytest.raises(IntegrityError, match="decodes to .* bytes"):
        reader.read_range(0, CHUNK_ROWS)
    # A frame that claims the chunk's size but whose blocks stop early.
    _rewrite_shard(path, lambda raw: zstandard.ZstdCompressor(level=1).compress(raw)[:-40])
    with pytest.raises((IntegrityError, zstandard.ZstdError)):
        reader.read_range(0, CHUNK_ROWS)


def test_arrays_not_in_the_lake_format_are_read_by_zarr(tmp_path):
    """A layer array with another codec than the lake writes is read through Zarr."""
    import zarr
    from zarr.codecs import BloscCodec

    lake = Lake.create(str(tmp_path / "lake"))
    run = create_run(lake, n_utterances=30, part_rows=600)
    write_part(run, run.plan.parts[0].part_id)
    layer = run.layers[1]
    group = zarr.open_group(cube.zarr_store(run.cube_loc), mode="a", zarr_format=3)
    old = group[layer.name][:]
    del group[layer.name]
    arr = group.create_array(
        layer.name,
        shape=old.shape,
        dtype="float16",
        chunks=(CHUNK_ROWS, layer.units),
        shards=(ROWS_PER_SHARD, layer.units),
        compressors=[BloscCodec()],
    )
    arr[:] = old
    run = Lake.open(str(tmp_path / "lake")).run("r1")
    assert run._reader(layer.name, False) is None
    assert run._reader(run.layers[0].name, False) is not None
    rows = np.array([0, 7, 300, 301], dtype=np.int64)
    np.testing.assert_array_equal(run.read_rows(layer.name, rows), expected_rows(1, layer.units, rows))
    np.testing.assert_array_equal(run.layer_dask(layer.name)[:302].compute(), old[:302])
    np.testing.assert_array_equal(run.layer_dask(layer.name, frame_ids=rows).compute(), old[rows])
    np.testing.assert_array_equal(_visited(run, layer.name, rows), expected_rows(1, layer.units, rows))
    # Neuron statistics read it block by block through Zarr: the same numbers as numpy's.
    from neurolake.query.neurons import layer_statistics

    stats = layer_statistics(run, layer.name, run.commits(), bins=65536)
    x = expected_rows(1, layer.units, run.committed_frame_ids()).astype(np.float64)
    np.testing.assert_allclose(stats["mean"], x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(stats["std"], x.std(axis=0), rtol=1e-9)
    np.testing.assert_array_equal(stats["max"], x.max(axis=0))
    np.testing.assert_array_equal(stats["n_frames"], np.full(layer.units, x.shape[0]))
    # The direct reader itself cannot decode Blosc frames: the format check is what routes them.
    reader = LayerReader(run.cube_loc, layer.name, layer.units, "float16", ROWS_PER_SHARD, CHUNK_ROWS)
    with pytest.raises(Exception):  # noqa: B017 - zstd refuses a Blosc frame
        reader.read_range(0, 64)


def _read_in_child(url: str, queue) -> None:
    run = Lake.open(url).run("r1")
    ids = run.committed_frame_ids()
    queue.put(bool(np.array_equal(run.read_rows(run.layers[0].name, ids), expected_rows(0, 24, ids))))


def test_a_forked_child_reads_after_its_parent_did(tmp_path):
    """DataLoader workers are forked from a process whose decoding pool already runs: the child
    must start its own pool, not wait forever on threads that fork did not copy."""
    import multiprocessing

    url = str(tmp_path / "lake")
    run = create_run(Lake.create(url), n_utterances=30, part_rows=600)
    for part in run.plan.parts:
        write_part(run, part.part_id)
    run = Lake.open(url).run("r1")
    ids = run.committed_frame_ids()
    np.testing.assert_array_equal(run.read_rows(run.layers[0].name, ids), expected_rows(0, 24, ids))  # pool started
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_read_in_child, args=(url, queue))
    child.start()
    child.join(60)
    if child.is_alive():
        child.kill()
        pytest.fail("the forked child hung reading")
    assert child.exitcode == 0 and queue.get(timeout=5) is True


def test_decoding_jobs_stop_at_the_first_error():
    """Items made as they are taken all run once; after one fails no job takes another, and
    the error reaches the caller, also when it is the making of an item that fails."""
    import time

    from neurolake.store.reader import _run_all

    ran: list[int] = []
    _run_all((partial(ran.append, i) for i in range(500)), parallel=True)
    assert sorted(ran) == list(range(500))

    def slow(i: int) -> None:
        time.sleep(0.002)
        ran.append(i)

    def fail() -> None:
        raise ValueError("item 10")

    ran.clear()
    items = [partial(slow, i) for i in range(10)] + [fail] + [partial(slow, i) for i in range(11, 500)]
    with pytest.raises(ValueError, match="item 10"):
        _run_all(items, parallel=True)
    # The other jobs finish the item they hold and take no more: nearly all 489 after the
    # failing one (about 1 s of work) are left.
    assert 10 <= len(ran) < 100

    def made():
        yield from (partial(ran.append, i) for i in range(5))
        raise RuntimeError("making item 5")

    with pytest.raises(RuntimeError, match="making item 5"):
        _run_all(made(), parallel=True)


def test_task_size_in_chunks_follows_the_bytes_of_a_chunk():
    """About 1.5 MB of decoded rows a task, at least four chunks, within a shard: 768 float16
    units in 256-row chunks (384 KB) four a task, 250 units (128 KB) twelve, 40 units all 16 of
    the shard, 4,096 units four; a shard of two chunks, two."""
    from neurolake.store.reader import task_chunks

    assert [task_chunks(256 * units * 2, 16) for units in (768, 250, 40, 4096)] == [4, 12, 16, 4]
    assert task_chunks(256 * 250 * 2, 2) == 2 and task_chunks(0, 1) == 1


@pytest.mark.parametrize("chunks", [1, 3, 4])
def test_reads_are_the_same_whatever_the_task_size(tmp_path, chunks):
    """Tasks of one chunk, of three (cut inside a four-chunk shard) and of a whole shard give the
    same rows for whole reads, ranges, gathers and visits."""
    run = _run_with_gap(str(tmp_path / "lake"), {})
    ids = run.committed_frame_ids()
    rng = np.random.default_rng(chunks)
    for layer in run.layers:
        reader = run._reader(layer.name, False)
        whole = run._array(layer.name)[:]
        reader.task_chunks = chunks
        np.testing.assert_array_equal(reader.read_range(0, whole.shape[0]), whole)
        a, b = np.sort(rng.integers(0, whole.shape[0], 2))
        np.testing.assert_array_equal(reader.read_range(int(a), int(b) + 1), whole[a : b + 1])
        scattered = np.sort(rng.choice(ids, 97, replace=False))
        for wanted in (scattered, ids):
            np.testing.assert_array_equal(reader.read_rows(wanted), whole[wanted])
            np.testing.assert_array_equal(_visited(run, layer.name, wanted), whole[wanted])
