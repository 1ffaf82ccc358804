"""Zero-mask chunks: a chunk's zero items as a bitmask, its other items as they are.

Activations after a ReLU are zero in about half of their values, at no predictable place.
zstd shrinks such a chunk (float16, half zeros) to about 0.6 of its size, but decodes it at
about 0.5-0.9 GB/s per core, a third of the speed at which the same bytes are read raw. This
form stores it in 0.56 of its size (one bit per item, then the non-zero items) and decodes at
several GB/s per core, so a layer of such values reads about as fast as raw ``.npy`` files.

A zero-mask chunk (all integers little-endian)::

    b"NLZM"   uint32 items   uint8 item size   uint8 flags   2 zero bytes    (12-byte header)
    mask      ceil(items / 8) bytes: bit b of byte g set when item 8 g + b is not zero
              (flags bit 0 set: uint32 length, then the mask as a zstd frame of that length)
    values    the non-zero items, in order, item size bytes each

The mask is stored as a zstd frame when that saves :data:`MIN_SAVING` of the chunk: in real
activations (90 % zeros after a ReLU, whole units or frames silent) it is a third of the
chunk and zstd shrinks it several times; half zeros at random places leave it as it is. It
is 1/16 of a float16 chunk's size, so decompressing it costs little of the decoding.

Decoding puts each value in place by its rank among the set bits of its mask byte (tables,
eight items per byte: about 1.3-3 GB/s of float16 per core); on x86 CPUs, 16 bytes of items
per SSSE3 byte shuffle (7.5-8.5 GB/s of float16 with half zeros on one core of an AMD EPYC,
in cache); for 2-byte items where numba compiles for AVX-512 VBMI2, 32 items per
expand-load instruction (about 30-40 GB/s in cache; the 1 GB half-zero layer of
``benchmarks/read_path.py`` then read at 0.96-1.14 of raw ``.npy`` instead of 0.50-0.59).

"Zero" is bitwise: every byte of the item zero (``-0.0`` is kept as a value), so the round
trip is exact for any dtype. The codec :class:`ZeroMaskCodec` (Zarr v3 name
``neurolake.zeromask``, registered with Zarr by this package's entry point) decodes both
these chunks and zstd frames, and encodes each chunk in zero-mask form where
:func:`worth_it` says so, so a layer holds zero-mask chunks where the values have zeros and ordinary zstd
frames where they do not.
"""

from __future__ import annotations

import asyncio
import struct
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numba
import numpy as np
import zstandard
from llvmlite import ir as llvm_ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic
from zarr.abc.codec import BytesBytesCodec
from zarr.core.common import parse_named_configuration
from zarr.registry import register_codec

from neurolake.store._cpu import numba_cpu_features

if TYPE_CHECKING:
    from zarr.core.array_spec import ArraySpec
    from zarr.core.buffer import Buffer

NAME = "neurolake.zeromask"
MAGIC = b"NLZM"
HEADER = 12
MASK_ZSTD = 1  # flags bit: the mask is a zstd frame
MASK_LEVEL = 1  # zstd level of compressed masks
ITEM_SIZES = (1, 2, 4, 8)
# A chunk is stored in this form when that saves at least this much of its raw size (the
# same bar as cube.MIN_SAVING): for float16 that means at least 16.25 % zero items.
MIN_SAVING = 0.10
_UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
_HEAD = struct.Struct("<4sIBB2x")  # magic, items, item size, flags
_LENGTH = struct.Struct("<I")
_local = threading.local()


@numba.njit(nogil=True, cache=True)
def _count_nonzero(items: np.ndarray) -> int:  # pragma: no cover - numba
    n = 0
    for i in range(items.size):
        n += items[i] != 0
    return n


@numba.njit(nogil=True, cache=True)
def _pack(items: np.ndarray, mask: np.ndarray, values: np.ndarray) -> int:  # pragma: no cover - numba
    """Set ``mask`` (``ceil(n / 8)`` bytes) and write the non-zero ``items`` to the front of
    ``values`` (room for ``n``); returns how many there are. Branch-free: zeros fall at
    random, and each item is written whether or not the count then moves past it."""
    n = items.size
    k = 0
    for g in range(n // 8):
        m = 0
        for b in range(8):
            v = items[g * 8 + b]
            values[k] = v
            nz = v != 0
            k += nz
            m |= nz << b
        mask[g] = m
    if n % 8:
        m = 0
        for i in range(n - n % 8, n):
            v = items[i]
            values[k] = v
            nz = v != 0
            k += nz
            m |= nz << (i % 8)
        mask[n // 8] = m
    return k


def _tables() -> tuple[np.ndarray, np.ndarray, dict[int, np.ndarray]]:
    """For every mask byte ``m``: ``rank[m, b]``, how many of bits 0..b-1 are set (the value
    item ``b`` takes when its own bit is set); ``count[m]``, how many bits are set; and
    ``keep[size][m, b]``, all ones where bit ``b`` is set and zero elsewhere, per item size."""
    m = np.arange(256)[:, None]
    bits = (m >> np.arange(8)[None, :]) & 1
    rank = (np.cumsum(bits, axis=1) - bits).astype(np.uint8)
    count = bits.sum(axis=1).astype(np.uint8)
    keep = {size: (-bits).astype(_UINT[size]) for size in ITEM_SIZES}  # -1 wraps to all ones
    return rank, count, keep


_RANK, _COUNT, _KEEP = _tables()


@numba.njit(nogil=True, cache=True, inline="always")
def _unpack_rest(mask: np.ndarray, values: np.ndarray, out: np.ndarray, start: int, k: int) -> int:  # pragma: no cover
    """Items ``start:`` of ``out`` one at a time, from value ``k`` on; returns how many values
    were used in all, or -1 when the mask asks for more than there are."""
    for i in range(start, out.size):
        if (mask[i // 8] >> (i % 8)) & 1:
            if k >= values.size:
                return -1
            out[i] = values[k]
            k += 1
        else:
            out[i] = 0
    return k


@numba.njit(nogil=True, cache=True)
def _unpack(
    mask: np.ndarray, values: np.ndarray, out: np.ndarray, rank: np.ndarray, count: np.ndarray, keep: np.ndarray
) -> int:  # pragma: no cover - numba
    """Fill ``out`` from ``mask`` and ``values``; returns how many values were used, or -1
    when the mask asks for more than there are. Eight items per mask byte, each from its
    rank among the byte's set bits (tables from :func:`_tables`), so the eight are
    independent of each other; the count moves once per byte."""
    n = out.size
    nnz = values.size
    k = 0
    g = 0
    while g < n // 8 and k + 8 <= nnz:
        m = mask[g]
        for b in range(8):
            out[g * 8 + b] = values[k + rank[m, b]] & keep[m, b]
        k += count[m]
        g += 1
    return _unpack_rest(mask, values, out, g * 8, k)


@intrinsic
def _popcount32(typingctx: Any, word: Any) -> Any:  # pragma: no cover - numba
    """How many bits of ``word`` (``uint32``) are set (LLVM's ``ctpop``, one instruction)."""
    if word != types.uint32:
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.zext(builder.ctpop(args[0]), llvm_ir.IntType(64))

    return types.int64(types.uint32), codegen


@intrinsic
def _expand32(typingctx: Any, values: Any, start: Any, mask: Any, out: Any, at: Any) -> Any:  # pragma: no cover - numba
    """Write 32 ``uint16`` items at ``out[at:]``: item ``i`` is the next of ``values[start:]``
    where bit ``i`` of ``mask`` is set, zero elsewhere; reads only as many values as bits are
    set. LLVM's masked expand-load, one instruction (``vpexpandw``) where the CPU has
    AVX-512 VBMI2; elsewhere LLVM writes it out item by item, so it is only used there."""
    u16 = types.Array(types.uint16, 1, "C")
    if values not in (u16, types.Array(types.uint16, 1, "C", readonly=True)) or out != u16 or mask != types.uint32:
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        src = builder.gep(context.make_array(signature.args[0])(context, builder, args[0]).data, [args[1]])
        dst = builder.gep(context.make_array(signature.args[3])(context, builder, args[3]).data, [args[4]])
        vector = llvm_ir.VectorType(llvm_ir.IntType(16), 32)
        lanes = builder.bitcast(args[2], llvm_ir.VectorType(llvm_ir.IntType(1), 32))
        fn = cgutils.get_or_insert_function(
            builder.module,
            llvm_ir.FunctionType(vector, [src.type, lanes.type, vector]),
            "llvm.masked.expandload.v32i16",
        )
        result = builder.call(fn, [src, lanes, llvm_ir.Constant(vector, None)])
        builder.store(result, builder.bitcast(dst, vector.as_pointer()), align=2)
        return context.get_dummy_value()

    return types.none(values, types.intp, types.uint32, out, types.intp), codegen


@numba.njit(nogil=True, cache=True)
def _unpack_expand16(mask: np.ndarray, values: np.ndarray, out: np.ndarray) -> int:  # pragma: no cover - numba
    """:func:`_unpack` for 2-byte items, 32 at a time by one expand-load each (the mask's
    bytes read four at a time, little-endian: bit ``i`` stands for item ``i``)."""
    n = out.size
    nnz = values.size
    k = 0
    g = 0
    while g < n // 32:
        b = 4 * g
        word = np.uint32(
            np.uint32(mask[b])
            | (np.uint32(mask[b + 1]) << np.uint32(8))
            | (np.uint32(mask[b + 2]) << np.uint32(16))
            | (np.uint32(mask[b + 3]) << np.uint32(24))
        )
        used: int = _popcount32(word)  # type: ignore[call-arg]  # typed by numba
        if k + used > nnz:
            return -1
        _expand32(values, k, word, out, g * 32)
        k += used
        g += 1
    return _unpack_rest(mask, values, out, g * 32, k)


def _shuffle_tables() -> dict[int, np.ndarray]:
    """Per item size (2, 4 or 8 bytes): for every pattern ``m`` of the ``16 / size`` mask bits
    of 16 bytes of items, the 16 byte indices that move the values of its set bits (packed at
    the front of 16 loaded bytes) to their items' places: item ``b`` takes bytes ``size r`` to
    ``size r + size - 1``, ``r`` its rank among the set bits, and 0x80 (a zero byte) where its
    bit is clear. Flat, 16 bytes per pattern."""
    tables = {}
    for size in (2, 4, 8):
        per = 16 // size
        m = np.arange(1 << per)[:, None]
        bits = (m >> np.arange(per)[None, :]) & 1
        first = size * (np.cumsum(bits, axis=1) - bits)
        moves = (first[:, :, None] + np.arange(size)[None, None, :]).reshape(-1, 16)
        tables[size] = np.where(np.repeat(bits, size, axis=1) == 1, moves, 0x80).astype(np.uint8).reshape(-1)
    return tables


_SHUFFLES = _shuffle_tables()


@intrinsic
def _shuffle16(
    typingctx: Any, values: Any, start: Any, table: Any, m: Any, out: Any, at: Any
) -> Any:  # pragma: no cover - numba
    """Write the 16 bytes ``out[at:at + 16]`` from the 16 bytes at ``values[start:]`` (however
    many of them the mask bits use) moved by the 16 byte indices at ``table[16 m:]``
    (:func:`_shuffle_tables`): one byte shuffle (SSSE3's ``pshufb``, whose indices with the
    top bit set give a zero byte), so only used where numba compiles for SSSE3."""
    u8 = types.Array(types.uint8, 1, "C")
    readable = (u8, types.Array(types.uint8, 1, "C", readonly=True))
    if values not in readable or table not in readable or out != u8:
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        bytes16 = llvm_ir.VectorType(llvm_ir.IntType(8), 16)
        src = builder.gep(context.make_array(signature.args[0])(context, builder, args[0]).data, [args[1]])
        index = builder.mul(args[3], llvm_ir.Constant(args[3].type, 16))
        tab = builder.gep(context.make_array(signature.args[2])(context, builder, args[2]).data, [index])
        dst = builder.gep(context.make_array(signature.args[4])(context, builder, args[4]).data, [args[5]])
        fn = cgutils.get_or_insert_function(
            builder.module, llvm_ir.FunctionType(bytes16, [bytes16, bytes16]), "llvm.x86.ssse3.pshuf.b.128"
        )
        loaded = builder.load(builder.bitcast(src, bytes16.as_pointer()), align=1)
        moves = builder.load(builder.bitcast(tab, bytes16.as_pointer()), align=1)
        builder.store(builder.call(fn, [loaded, moves]), builder.bitcast(dst, bytes16.as_pointer()), align=1)
        return context.get_dummy_value()

    return types.none(values, types.intp, table, types.intp, out, types.intp), codegen


@numba.njit(nogil=True, cache=True)
def _unpack_shuffle(
    mask: np.ndarray, values: np.ndarray, out: np.ndarray, size: int, table: np.ndarray
) -> int:  # pragma: no cover - numba
    """:func:`_unpack` for items of ``size`` bytes (2, 4 or 8; ``values`` and ``out`` as bytes),
    16 bytes of items at a time by one byte shuffle. The 16 bytes loaded may run past the
    values the mask bits use, never past the values' end: the last few values (under 16
    bytes) are shuffled from a copy padded to 32 bytes."""
    per = 16 // size
    low = (1 << per) - 1
    n = out.size // size
    nnz = values.size // size
    k = 0
    q = 0
    if size == 2:  # a mask byte per shuffle: the loop float16 layers spend their reads in
        while q < n // 8 and k + 8 <= nnz:
            m = mask[q]
            _shuffle16(values, 2 * k, table, m, out, 16 * q)  # type: ignore[call-arg]  # typed by numba
            k += _popcount32(np.uint32(m))
            q += 1
    else:
        while q < n // per and k + per <= nnz:
            m = (mask[(q * per) >> 3] >> ((q * per) & 7)) & low
            _shuffle16(values, k * size, table, m, out, q * 16)  # type: ignore[call-arg]  # typed by numba
            k += _popcount32(np.uint32(m))
            q += 1
    rest = nnz - k
    if q < n // per:
        tail = np.zeros(32, np.uint8)
        tail[: rest * size] = values[k * size :]
        values = tail
        k = 0
        while q < n // per:
            m = (mask[(q * per) >> 3] >> ((q * per) & 7)) & low
            _shuffle16(values, k * size, table, m, out, q * 16)  # type: ignore[call-arg]  # typed by numba
            k += _popcount32(np.uint32(m))
            if k > rest:
                return -1
            q += 1
    else:
        rest = k + rest
    # The last items (fewer than 16 bytes), one at a time.
    for i in range(q * per, n):
        if (mask[i >> 3] >> (i & 7)) & 1:
            if k >= rest:
                return -1
            for j in range(size):
                out[i * size + j] = values[k * size + j]
            k += 1
        else:
            for j in range(size):
                out[i * size + j] = 0
    return nnz - (rest - k)


# How items are unpacked: 2-byte items 32 at a time by AVX-512 expand-loads where numba
# compiles for VBMI2 (13x the table version's speed on one core of an AVX-512 machine, in
# cache; compiled without VBMI2 the expand-load was 4x slower than it); items of 2, 4 or 8
# bytes 16 bytes at a time by SSSE3 byte shuffles on other x86 CPUs (float16 with half zeros
# 8.2-8.5 GB/s on one core of an AMD EPYC without AVX-512, in cache, against 1.3-1.6 by the
# tables); by tables elsewhere.
EXPAND16 = {"+avx512vbmi2", "+avx512bw"} <= numba_cpu_features()
SHUFFLE = "+ssse3" in numba_cpu_features()


def items_of(data: np.ndarray) -> np.ndarray:
    """A C-contiguous array's bytes as unsigned integers of its item size (a view)."""
    size = data.dtype.itemsize
    if size not in _UINT:
        raise ValueError(f"zero-mask chunks hold items of {ITEM_SIZES} bytes, not {size}")
    if not data.flags.c_contiguous:
        raise ValueError("zero-mask chunks are read from and decoded into C-contiguous arrays")
    return data.reshape(-1).view(_UINT[size])


def stored_size(items: int, nonzero: int, item_size: int) -> int:
    """Bytes of the zero-mask form of a chunk of ``items`` with ``nonzero`` of them not zero,
    its mask stored as it is (a compressed mask makes it smaller)."""
    return HEADER + (items + 7) // 8 + nonzero * item_size


def nonzero(items: np.ndarray) -> int:
    """How many of ``items`` (from :func:`items_of`) are not zero."""
    return int(_count_nonzero(items))


def worth_it(items: np.ndarray, nonzero_items: int) -> bool:
    """Whether the zero-mask form saves at least :data:`MIN_SAVING` of the raw size."""
    raw = items.size * items.dtype.itemsize
    return stored_size(items.size, nonzero_items, items.dtype.itemsize) <= (1 - MIN_SAVING) * raw


def encode(items: np.ndarray) -> bytes:
    """The zero-mask form of ``items`` (from :func:`items_of`), its mask compressed when that
    saves :data:`MIN_SAVING` of the chunk."""
    n, size = items.size, items.dtype.itemsize
    n_mask = (n + 7) // 8
    body = HEADER + n_mask
    scratch = getattr(_local, "scratch", None)
    if scratch is None or scratch.size < body + n * size:
        scratch = _local.scratch = np.empty(body + n * size, np.uint8)
    k = int(_pack(items, scratch[HEADER:body], scratch[body : body + n * size].view(items.dtype)))
    values = scratch[body : body + k * size]
    packed = _compressor(MASK_LEVEL).compress(scratch[HEADER:body].data)
    if n_mask - (4 + len(packed)) >= MIN_SAVING * (body + values.size):
        header = MAGIC + struct.pack("<IBB2xI", n, size, MASK_ZSTD, len(packed))
        return b"".join([header, packed, values.data])
    return b"".join([MAGIC + struct.pack("<IB3x", n, size), scratch[HEADER : body + k * size].data])


def is_zeromask(frame: bytes | memoryview | np.ndarray) -> bool:
    """Whether a stored chunk is in this form (a zstd frame starts with other bytes)."""
    return bytes(frame[:4]) == MAGIC


def decode_into(frame: bytes | memoryview, out: np.ndarray) -> None:
    """Decode a zero-mask chunk into ``out`` (C-contiguous, the chunk's size and item size).

    Raises ``ValueError`` saying what does not fit when the chunk is malformed or of
    another size."""
    if len(frame) < HEADER:
        raise ValueError("not a zero-mask chunk")
    magic, n, size, flags = _HEAD.unpack_from(frame)
    if magic != MAGIC:
        raise ValueError("not a zero-mask chunk")
    if out.dtype.itemsize not in _UINT or not out.flags.c_contiguous:
        items_of(out)  # says what is wrong
    if size != out.dtype.itemsize or n != out.size:
        raise ValueError(f"holds {n} items of {size} bytes, {out.size} of {out.dtype.itemsize} expected")
    if flags & ~MASK_ZSTD:
        raise ValueError(f"has unknown flags {flags:#x}")
    n_mask = (n + 7) // 8
    data = np.frombuffer(frame, np.uint8)
    if flags & MASK_ZSTD:
        if len(frame) < HEADER + 4:
            raise ValueError(f"is truncated ({len(frame)} bytes)")
        body = HEADER + 4 + _LENGTH.unpack_from(frame, HEADER)[0]
        if len(frame) < body:
            raise ValueError(f"is truncated ({len(frame)} bytes)")
        try:
            raw = _decompressor().decompress(frame[HEADER + 4 : body], max_output_size=n_mask)
        except zstandard.ZstdError as exc:
            raise ValueError(f"has a damaged mask ({exc})") from None
        if len(raw) != n_mask:
            raise ValueError(f"has a mask of {len(raw)} bytes, {n_mask} expected")
        mask = np.frombuffer(raw, np.uint8)
    else:
        body = HEADER + n_mask
        if len(frame) < body:
            raise ValueError(f"is truncated ({len(frame)} bytes)")
        mask = data[HEADER:body]
    if (len(frame) - body) % size:
        raise ValueError(f"is truncated ({len(frame)} bytes)")
    nnz = (len(frame) - body) // size
    if size > 1 and SHUFFLE and not (size == 2 and EXPAND16):
        used = int(_unpack_shuffle(mask, data[body:], out.reshape(-1).view(np.uint8), size, _SHUFFLES[size]))
    else:
        items = items_of(out)
        values = data[body:].view(items.dtype)
        if size == 2 and EXPAND16:
            used = int(_unpack_expand16(mask, values, items))
        else:
            used = int(_unpack(mask, values, items, _RANK, _COUNT, _KEEP[size]))
    if used != nnz:
        raise ValueError(f"has {nnz} values where its mask marks {'more' if used < 0 else used}")


def _decompressor() -> zstandard.ZstdDecompressor:
    d = getattr(_local, "decompressor", None)
    if d is None:
        d = _local.decompressor = zstandard.ZstdDecompressor()
    return d


def _compressor(level: int) -> zstandard.ZstdCompressor:
    cache = getattr(_local, "compressors", None)
    if cache is None:
        cache = _local.compressors = {}
    if level not in cache:
        cache[level] = zstandard.ZstdCompressor(level=level)
    return cache[level]


@dataclass(frozen=True)
class ZeroMaskCodec(BytesBytesCodec):
    """Zarr v3 bytes-to-bytes codec ``neurolake.zeromask``: each chunk either in zero-mask
    form (when that saves :data:`MIN_SAVING`) or a zstd frame at ``level``; decodes both.

    The lake's writer encodes shards itself with the same choice per chunk (and, like for
    zstd arrays, may write a shard's zstd frames at a faster level: any level decodes);
    this class is what lets Zarr read the arrays, and write them, where this package is
    installed."""

    is_fixed_size = False
    level: int = 1

    def __init__(self, *, level: int = 1) -> None:
        if not isinstance(level, int) or level >= 23:
            raise ValueError(f"zstd level must be an int below 23, got {level!r}")
        object.__setattr__(self, "level", level)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ZeroMaskCodec:
        _, config = parse_named_configuration(data, NAME)
        level = config.get("level", 1)
        if not isinstance(level, int):
            raise ValueError(f"zstd level must be an int below 23, got {level!r}")
        return cls(level=level)

    def to_dict(self) -> dict[str, Any]:
        return {"name": NAME, "configuration": {"level": self.level}}

    def _decode_sync(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> Buffer:
        data = chunk_bytes.as_numpy_array()
        if is_zeromask(data):
            dtype = chunk_spec.dtype.to_native_dtype()
            out = np.empty(int(np.prod(chunk_spec.shape)), dtype=_UINT[dtype.itemsize])
            decode_into(data.data, out)
            return chunk_spec.prototype.buffer.from_array_like(out.view(np.uint8))
        raw = _decompressor().decompress(data.tobytes())
        return chunk_spec.prototype.buffer.from_bytes(raw)

    async def _decode_single(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> Buffer:
        return await asyncio.to_thread(self._decode_sync, chunk_bytes, chunk_spec)

    def _encode_sync(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> Buffer | None:
        data = chunk_bytes.as_numpy_array().view(np.uint8)
        size = chunk_spec.dtype.to_native_dtype().itemsize
        if size in _UINT and data.size % size == 0:
            items = data.view(_UINT[size])
            if worth_it(items, nonzero(items)):
                return chunk_spec.prototype.buffer.from_bytes(encode(items))
        return chunk_spec.prototype.buffer.from_bytes(_compressor(self.level).compress(data.tobytes()))

    async def _encode_single(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> Buffer | None:
        return await asyncio.to_thread(self._encode_sync, chunk_bytes, chunk_spec)

    def compute_encoded_size(self, _input_byte_length: int, _chunk_spec: ArraySpec) -> int:
        raise NotImplementedError


register_codec(NAME, ZeroMaskCodec)
