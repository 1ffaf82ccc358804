"""Activation cubes: one Zarr v3 group per run, one ``(rows, units)`` array per layer.

Arrays are chunked by rows (``chunk_rows``, the unit of a partial read) and sharded
(``rows_per_shard``, the unit of a write and of a file). Only :mod:`neurolake.store.run`
decides *which* rows may be written or read; this module only talks to Zarr.
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass
from typing import Any

import google_crc32c
import numpy as np
import zarr
import zstandard
from zarr.codecs import ZstdCodec
from zarr.errors import ContainsArrayError, ContainsGroupError
from zarr.storage import FsspecStore, LocalStore

from neurolake.errors import SpecError
from neurolake.store import zeromask
from neurolake.store.location import Location

# Zarr node names may not contain "/" nor start with "__"; module paths are dotted names.
_LAYER_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-:\[\]]*\Z")

DEFAULT_DTYPE = "float16"
DEFAULT_ZSTD_LEVEL = 1
# How a layer's chunks are stored: "zeromask" (the default) puts a chunk with enough zero
# items in zero-mask form and any other chunk in a zstd frame (:mod:`neurolake.store.zeromask`,
# Zarr codec ``neurolake.zeromask``); "zstd" stores zstd frames only (Zarr's standard codec,
# readable without this package; runs made before zero-mask chunks existed say "zstd").
CODECS = ("zeromask", "zstd")
DEFAULT_CODEC = "zeromask"
# A shard whose first stored chunk zstd shrinks by less than MIN_SAVING is written at
# FAST_LEVEL instead. Dense float16 activations (transformer outputs, every value non-zero)
# save about 6 % at level 1, and those frames decode at 0.4-1 GB/s per core, slower than the
# disk; at a negative level zstd leaves the literals as they are and the frames decode at
# memory speed (the layer read goes from 0.35 to 0.9 of reading raw ``.npy`` files). Values
# that do compress (half zeros after a ReLU: 40 % saved) keep the chosen level. Every frame
# is an ordinary zstd frame: Zarr and any zstd reader decode either.
MIN_SAVING = 0.10
FAST_LEVEL = -1


@dataclass(frozen=True)
class LayerSpec:
    """A captured layer: ``units`` values per frame, stored as ``dtype``.

    ``module`` is the module path inside the model the values were captured from.
    """

    name: str
    units: int
    module: str = ""
    dtype: str = DEFAULT_DTYPE

    def __post_init__(self) -> None:
        if not _LAYER_NAME.match(self.name) or self.name.startswith("__"):
            raise SpecError(
                f"layer name {self.name!r} is not usable as an array name "
                "(letters, digits and _ . - : [ ] only, not starting with '__')"
            )
        if int(self.units) <= 0:
            raise SpecError(f"layer {self.name!r} must have at least one unit, got {self.units}")
        np.dtype(self.dtype)

    def to_dict(self) -> dict:
        return {"name": self.name, "module": self.module, "units": int(self.units), "dtype": self.dtype}

    @classmethod
    def from_dict(cls, d: dict) -> LayerSpec:
        return cls(
            name=d["name"], units=int(d["units"]), module=d.get("module", ""), dtype=d.get("dtype", DEFAULT_DTYPE)
        )


def zarr_store(loc: Location, read_only: bool = False) -> Any:
    """The Zarr store for a location: a plain ``LocalStore`` on disk, fsspec elsewhere."""
    if loc.is_local:
        return LocalStore(loc.path, read_only=read_only)
    return FsspecStore.from_url(loc.url, storage_options=loc.storage_options or None, read_only=read_only)


def create_cube(
    loc: Location,
    layers: list[LayerSpec],
    total_rows: int,
    rows_per_shard: int,
    chunk_rows: int,
    zstd_level: int = DEFAULT_ZSTD_LEVEL,
    codec: str = DEFAULT_CODEC,
) -> None:
    """Create the group and every layer's array (metadata only); existing arrays are kept."""
    try:
        group = zarr.open_group(zarr_store(loc), mode="a", zarr_format=3)
    except ContainsGroupError:  # made by a process creating the same run at this moment
        group = zarr.open_group(zarr_store(loc), mode="r+", zarr_format=3)
    existing = set(group.array_keys())
    for layer in layers:
        if layer.name in existing:
            continue
        try:
            _create_layer(group, layer, total_rows, rows_per_shard, chunk_rows, zstd_level, codec)
        except ContainsArrayError:
            pass  # likewise: the same run's manifest, so the same array


def _create_layer(
    group: zarr.Group,
    layer: LayerSpec,
    total_rows: int,
    rows_per_shard: int,
    chunk_rows: int,
    zstd_level: int,
    codec: str,
) -> None:
    check_codec(codec)
    compressor = zeromask.ZeroMaskCodec(level=zstd_level) if codec == "zeromask" else ZstdCodec(level=zstd_level)
    group.create_array(
        layer.name,
        shape=(total_rows, layer.units),
        dtype=layer.dtype,
        chunks=(chunk_rows, layer.units),
        shards=(rows_per_shard, layer.units),
        filters=None,
        compressors=[compressor],
        fill_value=0,
        dimension_names=("frame", "unit"),
        attributes={"module": layer.module},
    )


def check_codec(codec: str) -> None:
    if codec not in CODECS:
        raise SpecError(f"unknown storage codec {codec!r}; codecs are {', '.join(CODECS)}")


def open_layer(loc: Location, layer: str, writable: bool = False) -> zarr.Array:
    return zarr.open_array(zarr_store(loc, read_only=not writable), path=layer, mode="r+" if writable else "r")


def shard_key(layer: str, shard_index: int) -> str:
    """Key of a shard file relative to the cube (Zarr v3 default chunk key encoding)."""
    return f"{layer}/c/{shard_index}/0"


_NO_CHUNK = np.uint64(2**64 - 1)
_SMALL = 64  # bytes: more than zstd's frame header plus one run-length block
_local = threading.local()


def _compressor(level: int) -> zstandard.ZstdCompressor:
    """This thread's zstd compressor for ``level``, kept between calls.

    It writes the same frames as Zarr's codec (numcodecs: one-shot, content size, no
    checksum), but reuses its context: numcodecs builds one per chunk, ~10 % of the time
    of compressing a 128 KB chunk at level 1.
    """
    cache = getattr(_local, "compressors", None)
    if cache is None:
        cache = _local.compressors = {}
    compressor = cache.get(level)
    if compressor is None:
        compressor = cache[level] = zstandard.ZstdCompressor(level=level)
    return compressor


def encode_shard(
    block: np.ndarray, chunk_rows: int, zstd_level: int, codec: str = DEFAULT_CODEC
) -> tuple[bytes, bytes]:
    """The bytes of one shard file, exactly as Zarr's sharding codec writes them, and its digest.

    ``block`` is the whole shard ``[rows_per_shard, units]``. Layout (Zarr v3 sharding,
    index at the end): the non-empty inner chunks of ``chunk_rows`` rows, each
    little-endian C-order bytes either in zero-mask form (``codec`` "zeromask", for a chunk
    whose zero items make that save :data:`zeromask.MIN_SAVING`) or zstd-compressed (at
    ``zstd_level``, or at :data:`FAST_LEVEL` in a shard that does not compress, see
    :data:`MIN_SAVING`), back to back; then the index,
    ``[n_chunks, 1, 2]`` uint64 (offset, length; all ones for an all-zero chunk, which
    Zarr leaves out and reads back as zeros); then the CRC32C of the index. The file is
    written even when every chunk is zero, so a missing shard file always means lost data.

    The digest is :func:`bytes_digest` of the file: the shard is identified by its bytes
    (equal bytes, equal rows; re-runs write identical bytes), which is also the cheapest
    thing to check again without decoding.

    Encoding here instead of through ``zarr.Array.__setitem__`` lets the writer compress
    shards on all cores at once; the arrays are still read by Zarr, and a test checks the
    bytes are identical to Zarr's own at the level each shard was written with.
    """
    parts, index = encode_chunks(block, chunk_rows, zstd_level, codec)
    index_bytes = index.tobytes()
    crc = np.uint32(google_crc32c.value(index_bytes)).astype("<u4").tobytes()
    data = b"".join([*parts, index_bytes, crc])  # one copy of the shard, not two
    return data, bytes_digest(data)


def encode_chunks(
    block: np.ndarray, chunk_rows: int, zstd_level: int, codec: str = DEFAULT_CODEC
) -> tuple[list[bytes], np.ndarray]:
    """The stored bytes of a shard's non-empty chunks, in order, and the shard's index
    (``[n_chunks, 1, 2]`` uint64 offsets and lengths into their concatenation): the part of
    :func:`encode_shard` that runs in C and numba code without the interpreter lock."""
    check_codec(codec)
    n = block.shape[0] // chunk_rows
    compress = _compressor(zstd_level).compress
    probe = zstd_level > FAST_LEVEL
    little = block.astype(block.dtype.newbyteorder("<"), copy=False)
    masks = codec == "zeromask" and little.dtype.itemsize in zeromask.ITEM_SIZES
    parts = []
    index = np.full((n, 1, 2), _NO_CHUNK, dtype="<u8")
    offset = 0
    for i in range(n):
        chunk = np.ascontiguousarray(little[i * chunk_rows : (i + 1) * chunk_rows])
        data = None
        if masks:
            items = zeromask.items_of(chunk)
            nonzero = zeromask.nonzero(items)
            if nonzero == 0:
                continue  # all-zero bits: Zarr's empty chunk, left out
            if zeromask.worth_it(items, nonzero):
                data = zeromask.encode(items)
        if data is None:
            data = compress(chunk.data)
            if len(data) <= _SMALL + chunk.nbytes // 2048:
                # All-zero bits is Zarr's empty chunk, left out. zstd turns zeros into run-length
                # blocks of a few bytes per 128 KB, so only a chunk that compressed to almost
                # nothing can be all zeros; only those are tested (bitwise: float16 arithmetic
                # is slow in numpy).
                if not chunk.view(np.uint8).any():
                    continue
            elif probe:
                # The shard's first zstd chunk with content decides its level (see MIN_SAVING).
                probe = False
                if len(data) > (1 - MIN_SAVING) * chunk.nbytes:
                    compress = _compressor(FAST_LEVEL).compress
                    data = compress(chunk.data)
        parts.append(data)
        index[i, 0] = (offset, len(data))
        offset += len(data)
    return parts, index


def bytes_digest(data: bytes) -> bytes:
    """CRC32C of a shard file's bytes, 4 bytes big-endian.

    CRC32C (hardware-accelerated, ~8 GB/s) catches corrupted, truncated or swapped shards;
    the per-part checksum in the commit marker is a SHA-256 over these shard digests.
    """
    return google_crc32c.value(data).to_bytes(4, "big")


def combine_digests(digests: list[bytes]) -> str:
    """A layer's checksum over a part: SHA-256 of its shards' CRC32C digests, in row order."""
    return hashlib.sha256(b"".join(digests)).hexdigest()
