"""Reading a layer's shards directly: the touched chunks' bytes, decoded on every core.

The lake writes every shard itself (:func:`neurolake.store.cube.encode_shard`): chunks of
``chunk_rows`` rows back to back (zstd frames, or zero-mask chunks, see
:mod:`neurolake.store.zeromask`), then an index of (offset, length) pairs and its
CRC32C. Reading them back through ``zarr.Array`` costs several times the decompression
itself (its codec pipeline copies each chunk, and runs on one core here). This reader
does what a read needs and nothing else:

- it reads each touched shard's index (the file's last bytes), checks its CRC32C, and
  then only the byte ranges of the chunks a request touches (adjacent chunks in one
  read), so a group of frames costs the chunks it touches, not the layer;
- it decompresses chunks on a thread pool as wide as the machine (zstd releases the
  GIL) straight into the caller's output rows, without intermediate arrays;
- on object storage, every index and every range of a request is fetched concurrently
  (``cat_ranges``), so a read costs a few round trips whatever the number of shards.

A shard file that does not exist reads as zeros (rows of parts not yet committed, as
Zarr reads them); callers that need committed rows check shards first (see
:meth:`neurolake.store.Run.read_rows`). An index whose checksum does not match raises
:class:`~neurolake.errors.IntegrityError`.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import wait
from dataclasses import dataclass
from functools import partial

import google_crc32c
import numpy as np
import zstandard

from neurolake.errors import IntegrityError
from neurolake.store import zeromask
from neurolake.store.location import Location
from neurolake.store.pools import SharedPool, usable_cpus

_NO_CHUNK = 2**64 - 1
# Decoded bytes per read-and-decode task: enough to amortise a read and the task's Python
# work, small enough to share out and to stay in a core's cache for a streaming pass (four
# chunks of 256 rows of 768 float16 units).
TASK_BYTES = 1536 << 10
_REMOTE_BATCH_BYTES = 256 << 20  # rows fetched from object storage in one go
_local = threading.local()


def task_chunks(chunk_bytes: int, chunks_per_shard: int) -> int:
    """Chunks per read-and-decode task, within one shard: at least four, and more for narrow
    layers, up to about :data:`TASK_BYTES` of decoded rows, since a task's fixed costs do not
    shrink with its rows. With four chunks of a 250-unit layer (128 KB each), streaming passes
    over 8 such layers took 1.03-1.66 times as long as with 12 (the binarise-and-pack pass of
    a scan, NAP sums, neuron statistics; 1 M frames)."""
    return max(1, min(chunks_per_shard, max(4, round(TASK_BYTES / max(1, chunk_bytes)))))


def read_threads() -> int:
    """Decoding threads: the CPUs this process can keep busy (:func:`~neurolake.store.pools.usable_cpus`)."""
    return usable_cpus()


_decode_pool = SharedPool(read_threads(), "neurolake-read")


def _run_all(items: Iterable[Callable[[], None]], parallel: bool = True) -> None:
    """Run every item, on every decoding thread when ``parallel``: one job per thread that takes
    the next item until none is left, not one future per item (thousands per read, whose
    hand-offs cost the calling thread more than the items on a few cores). ``items`` may be
    made as they are taken, the making overlapping the other threads' work. After an error no
    job takes another item; it is raised once every job has stopped."""
    pending = iter(items)
    head = list(itertools.islice(pending, 2))
    if not parallel or len(head) <= 1:
        for item in itertools.chain(head, pending):
            item()
        return
    pending = itertools.chain(head, pending)
    lock = threading.Lock()
    failed = threading.Event()

    def drain() -> None:
        while not failed.is_set():
            try:
                with lock:
                    item = next(pending, None)
                if item is None:
                    return
                item()
            except BaseException:
                failed.set()
                raise

    pool = _decode_pool.get()
    futures = [pool.submit(drain) for _ in range(_decode_pool.threads)]
    wait(futures)
    for future in futures:
        future.result()


def _scratch(nbytes: int, name: str = "chunk") -> np.ndarray:
    """This thread's buffer ``name`` of at least ``nbytes`` bytes, kept between reads: the file
    bytes of a task ("io"), a chunk only partly wanted ("chunk")."""
    buffers = getattr(_local, "buffers", None)
    if buffers is None:
        buffers = _local.buffers = {}
    buf = buffers.get(name)
    if buf is None or buf.size < nbytes:
        buf = buffers[name] = np.empty(nbytes, dtype=np.uint8)
    return buf[:nbytes]


def _sliced(data: memoryview, base: int, offset: int, length: int) -> memoryview:
    """The bytes ``offset:offset + length`` of a file, of which ``data`` holds those from ``base``."""
    return data[offset - base : offset - base + length]


def _decompressor() -> zstandard.ZstdDecompressor:
    d = getattr(_local, "decompressor", None)
    if d is None:
        d = _local.decompressor = zstandard.ZstdDecompressor()
    return d


@dataclass(frozen=True)
class _Piece:
    """One chunk's contribution to the output: rows ``dst`` of the output take the chunk's
    rows ``src`` (a slice start..stop, or an index array)."""

    chunk: int  # chunk index within its shard
    dst_start: int
    dst_stop: int
    src_start: int
    src_index: np.ndarray | None  # rows of the chunk, when not a contiguous run


@dataclass
class _Task:
    """A run of adjacent touched chunks of one shard: one read, several decodes. Its pieces
    write rows ``dst - dst_base`` of the array they are given."""

    shard: int
    first_chunk: int
    last_chunk: int
    pieces: list[_Piece]
    dst_base: int = 0


class LayerReader:
    """Rows of one layer array of a cube, read shard file by shard file."""

    def __init__(self, loc: Location, layer: str, units: int, dtype: str, rows_per_shard: int, chunk_rows: int) -> None:
        self.loc = loc
        self.layer = layer
        self.units = int(units)
        self.dtype = np.dtype(dtype)
        self.rows_per_shard = int(rows_per_shard)
        self.chunk_rows = int(chunk_rows)
        self.chunks_per_shard = self.rows_per_shard // self.chunk_rows
        self._index_bytes = self.chunks_per_shard * 16 + 4
        self._chunk_bytes = self.chunk_rows * self.units * self.dtype.itemsize
        self.task_chunks = task_chunks(self._chunk_bytes, self.chunks_per_shard)

    def _path(self, shard: int) -> str:
        return self.loc.join(self.layer, "c", str(shard), "0")

    # ------------------------------------------------------------ public

    def read_range(self, start: int, stop: int, out: np.ndarray | None = None, parallel: bool = True) -> np.ndarray:
        """Rows ``[start, stop)``, ``[stop - start, units]``."""
        n = max(0, stop - start)
        if out is None:
            out = np.empty((n, self.units), dtype=self.dtype)
        if n == 0:
            return out
        cr, cps = self.chunk_rows, self.chunks_per_shard
        pieces = []
        for c in range(start // cr, (stop - 1) // cr + 1):
            lo, hi = max(start, c * cr), min(stop, (c + 1) * cr)
            pieces.append((c // cps, _Piece(c % cps, lo - start, hi - start, lo - c * cr, None)))
        self._run(self._tasks(pieces), out, parallel)
        return out

    def read_rows(self, ids: np.ndarray, out: np.ndarray | None = None, parallel: bool = True) -> np.ndarray:
        """Rows at ``ids`` (sorted, unique), ``[len(ids), units]``, into ``out`` if given; each
        touched chunk is read once."""
        ids = np.asarray(ids, dtype=np.int64)
        if out is None:
            out = np.empty((ids.size, self.units), dtype=self.dtype)
        if ids.size == 0:
            return out
        self._run(self._row_tasks(ids), out, parallel)
        return out

    def visit_rows(self, ids: np.ndarray, visit: Callable[[np.ndarray, int], None], parallel: bool = True) -> None:
        """Call ``visit(rows, start)`` with the rows at ``ids`` (sorted, unique) a few chunks at a
        time: ``rows`` are those of ``ids[start : start + len(rows)]``.

        Each call runs on the decoding thread that just decoded its rows, into that thread's
        reused buffer, so they are still in its cache and no output array is made: a streaming
        pass (sums, counts) costs the decoding and its own arithmetic. Calls run concurrently,
        in no set order; ``rows`` is only valid during the call.
        """
        ids = np.asarray(ids, dtype=np.int64)
        if ids.size == 0:
            return
        nbytes = self.units * self.dtype.itemsize

        def run(fill: Callable[[np.ndarray], None], start: int, n: int) -> None:
            rows = _scratch(n * nbytes, "visit").view(self.dtype).reshape(n, self.units)
            fill(rows)
            visit(rows, start)

        def items() -> Iterator[Callable[[], None]]:
            for t, fill in self._work(self._row_tasks(ids)):
                t.dst_base = t.pieces[0].dst_start  # the task's rows from row 0 of its own buffer
                yield partial(run, fill, t.dst_base, t.pieces[-1].dst_stop - t.dst_base)

        _run_all(items(), parallel)

    def _row_tasks(self, ids: np.ndarray) -> Iterator[_Task]:
        chunks = ids // self.chunk_rows
        starts = np.flatnonzero(np.diff(chunks, prepend=-1))
        stops = np.append(starts[1:], ids.size)
        first = chunks[starts]
        src_starts = ids[starts] - first * self.chunk_rows
        contiguous = ids[stops - 1] - ids[starts] == stops - starts - 1
        cps = self.chunks_per_shard
        pieces = (
            (c // cps, _Piece(c % cps, a, b, src, None if whole else ids[a:b] - c * self.chunk_rows))
            for c, a, b, src, whole in zip(
                first.tolist(), starts.tolist(), stops.tolist(), src_starts.tolist(), contiguous.tolist(), strict=True
            )
        )
        return self._tasks(pieces)

    # ------------------------------------------------------------ internals

    def _tasks(self, pieces: Iterable[tuple[int, _Piece]]) -> Iterator[_Task]:
        """(shard, piece) pairs in row order grouped into tasks, each made as it is wanted."""
        last: _Task | None = None
        for shard, piece in pieces:
            if (
                last is not None
                and last.shard == shard
                and piece.chunk <= last.last_chunk + 1
                and piece.chunk - last.first_chunk < self.task_chunks
            ):
                last.last_chunk = piece.chunk
                last.pieces.append(piece)
                continue
            if last is not None:
                yield last
            last = _Task(shard, piece.chunk, piece.chunk, [piece])
        if last is not None:
            yield last

    def _work(self, tasks: Iterable[_Task]) -> Iterator[tuple[_Task, Callable[[np.ndarray], None]]]:
        """Each task and a call that fills its rows of the array it is given, made as they are
        wanted: from local files one by one, from object storage a batch of tasks holding up
        to ``_REMOTE_BATCH_BYTES`` of rows at a time (one concurrent fetch per batch), so that
        a streamed pass over a large layer never holds more than a batch of its bytes."""
        if self.loc.is_local:
            yield from ((t, partial(self._local_task, t)) for t in tasks)
            return
        row_bytes = self.units * self.dtype.itemsize
        batch: list[_Task] = []
        size = 0
        for t in itertools.chain(tasks, [None]):
            if t is not None:
                batch.append(t)
                size += (t.pieces[-1].dst_stop - t.pieces[0].dst_start) * row_bytes
            if batch and (t is None or size >= _REMOTE_BATCH_BYTES):
                yield from zip(batch, self._remote_work(batch), strict=True)
                batch, size = [], 0

    def _run(self, tasks: Iterable[_Task], out: np.ndarray, parallel: bool) -> None:
        _run_all((partial(fill, out) for _, fill in self._work(tasks)), parallel)

    def _parse_index(self, shard: int, raw: bytes) -> np.ndarray:
        body, crc = raw[:-4], raw[-4:]
        if len(raw) != self._index_bytes or google_crc32c.value(body) != int.from_bytes(crc, "little"):
            raise IntegrityError(
                f"the chunk index of {self.loc.describe(self.layer, 'c', str(shard), '0')} is damaged "
                "(checksum mismatch); `neurolake verify --repair` re-does the part that owns it"
            )
        return np.frombuffer(body, dtype="<u8").reshape(self.chunks_per_shard, 2)

    def _local_task(self, task: _Task, out: np.ndarray) -> None:
        try:
            fd = os.open(self._path(task.shard), os.O_RDONLY)
        except FileNotFoundError:
            self._zeros(task, out)
            return

        def frame(offset: int, length: int) -> memoryview:
            # One chunk's bytes at a time into this thread's reused buffer: a chunk's size
            # stays in the core's cache while it is decoded (a task's span did not, on a core
            # with 512 KB of L2), and a fresh buffer per read costs a page fault per 4 KB.
            data = _scratch(length, "io").data
            if os.preadv(fd, [data], offset) != length:
                raise IntegrityError(
                    f"{self.loc.describe(self.layer, 'c', str(task.shard), '0')} is shorter than its chunk index says"
                )
            return data

        try:
            size = os.fstat(fd).st_size
            index = self._parse_index(task.shard, os.pread(fd, self._index_bytes, size - self._index_bytes))
            self._decode(task, index, frame, out)
        finally:
            os.close(fd)

    def _remote_work(self, tasks: list[_Task]) -> list[Callable[[np.ndarray], None]]:
        shards = sorted({t.shard for t in tasks})
        paths = [self._path(s) for s in shards]
        raws = self.loc.fs.cat_ranges(paths, [-self._index_bytes] * len(paths), [None] * len(paths), on_error="return")
        indexes: dict[int, np.ndarray | None] = {}
        for shard, raw in zip(shards, raws, strict=True):
            if isinstance(raw, FileNotFoundError):
                indexes[shard] = None
            elif isinstance(raw, BaseException):
                raise raw
            else:
                indexes[shard] = self._parse_index(shard, raw)
        spans: list[tuple[_Task, np.ndarray, int, int]] = []
        for t in tasks:
            index = indexes[t.shard]
            if index is not None:
                lo, hi = self._span(index, t)
                spans.append((t, index, lo, hi))
        fetch = [s for s in spans if s[3] > s[2]]
        datas = self.loc.fs.cat_ranges(
            [self._path(t.shard) for t, _, _, _ in fetch],
            [lo for _, _, lo, _ in fetch],
            [hi for _, _, _, hi in fetch],
            on_error="raise",
        )
        got = {id(t): d for (t, _, _, _), d in zip(fetch, datas, strict=True)}
        decodes = {
            id(t): partial(self._decode, t, index, partial(_sliced, memoryview(got.get(id(t), b"")), lo))
            for t, index, lo, _ in spans
        }
        # In the tasks' order, as visit_rows pairs them.
        return [decodes.get(id(t), partial(self._zeros, t)) for t in tasks]

    @staticmethod
    def _span(index: np.ndarray, task: _Task) -> tuple[int, int]:
        """Byte range covering the task's stored chunks (empty chunks have no bytes)."""
        lo, hi = -1, 0
        for offset, length in index[task.first_chunk : task.last_chunk + 1].tolist():  # a few chunks
            if offset != _NO_CHUNK:
                lo = offset if lo < 0 else min(lo, offset)
                hi = max(hi, offset + length)
        return (0, 0) if lo < 0 else (lo, hi)

    def _decode(
        self, task: _Task, index: np.ndarray, frame_at: Callable[[int, int], memoryview], out: np.ndarray
    ) -> None:
        """Decode the task's chunks into ``out``; ``frame_at(offset, length)`` gives a stored
        chunk's bytes."""
        dctx = _decompressor()
        shape = (self.chunk_rows, self.units)
        whole = out.flags.c_contiguous and out.dtype == self.dtype and self.dtype.byteorder in "=<|"
        for p in task.pieces:
            offset, length = int(index[p.chunk, 0]), int(index[p.chunk, 1])
            a, b = p.dst_start - task.dst_base, p.dst_stop - task.dst_base
            if offset == _NO_CHUNK:
                out[a:b] = 0
                continue
            frame = frame_at(offset, length)
            if whole and p.src_index is None and p.src_start == 0 and b - a == self.chunk_rows:
                # The chunk is rows of the output: decompressed straight into them.
                self._decompress_into(dctx, frame, out[a:b], task, p)
                continue
            chunk = _scratch(self._chunk_bytes).view(self.dtype.newbyteorder("<")).reshape(shape)
            self._decompress_into(dctx, frame, chunk, task, p)
            if p.src_index is None:
                out[a:b] = chunk[p.src_start : p.src_start + b - a]
            else:
                out[a:b] = chunk[p.src_index]

    def _decompress_into(
        self, dctx: zstandard.ZstdDecompressor, frame: memoryview, dst: np.ndarray, task: _Task, p: _Piece
    ) -> None:
        """Decode one chunk (a zstd frame or a zero-mask chunk) into ``dst`` (C-contiguous, the
        chunk's size)."""
        if zeromask.is_zeromask(frame):
            try:
                zeromask.decode_into(frame, dst)
            except ValueError as exc:
                raise IntegrityError(
                    f"chunk {p.chunk} of {self.loc.describe(self.layer, 'c', str(task.shard), '0')} {exc}"
                ) from None
            return
        try:
            size = zstandard.frame_content_size(frame)
        except zstandard.ZstdError:  # not a frame header: decompress() says what is wrong
            size = -1
        if size != self._chunk_bytes:
            # A frame written without its size (another zstd writer) is decoded whole and checked.
            raw = dctx.decompress(frame, max_output_size=self._chunk_bytes + 1) if size == -1 else b""
            if len(raw) != self._chunk_bytes:
                raise IntegrityError(
                    f"chunk {p.chunk} of {self.loc.describe(self.layer, 'c', str(task.shard), '0')} decodes to "
                    f"{len(raw) if size == -1 else size} bytes, {self._chunk_bytes} expected"
                )
            dst.view(np.uint8).reshape(-1)[:] = np.frombuffer(raw, dtype=np.uint8)
            return
        target = dst.view(np.uint8).reshape(-1).data
        done = 0
        with dctx.stream_reader(frame, read_size=len(frame)) as reader:
            while done < self._chunk_bytes:
                n = reader.readinto(target[done:])
                if n == 0:
                    break
                done += n
        if done != self._chunk_bytes:
            raise IntegrityError(
                f"chunk {p.chunk} of {self.loc.describe(self.layer, 'c', str(task.shard), '0')} is truncated "
                f"({done} of {self._chunk_bytes} bytes decode)"
            )

    @staticmethod
    def _zeros(task: _Task, out: np.ndarray) -> None:
        for p in task.pieces:
            out[p.dst_start - task.dst_base : p.dst_stop - task.dst_base] = 0
