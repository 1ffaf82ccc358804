"""Activation cubes: one Zarr v3 group per run, one ``(rows, units)`` array per layer.

Arrays are chunked by rows (``chunk_rows``, the unit of a partial read) and sharded
(``rows_per_shard``, the unit of a write and of a file). Only :mod:`neurolake.store.run`
decides *which* rows may be written or read; this module only talks to Zarr.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr
from zarr.codecs import ZstdCodec
from zarr.storage import FsspecStore, LocalStore

from neurolake.errors import SpecError
from neurolake.store.location import Location

# Zarr node names may not contain "/" nor start with "__"; module paths are dotted names.
_LAYER_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-:\[\]]*$")

DEFAULT_DTYPE = "float16"
DEFAULT_ZSTD_LEVEL = 1


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
    def from_dict(cls, d: dict) -> "LayerSpec":
        return cls(name=d["name"], units=int(d["units"]), module=d.get("module", ""), dtype=d.get("dtype", DEFAULT_DTYPE))


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
) -> None:
    """Create the group and every layer's array (metadata only); existing arrays are kept."""
    group = zarr.open_group(zarr_store(loc), mode="a", zarr_format=3)
    existing = set(group.array_keys())
    for layer in layers:
        if layer.name in existing:
            continue
        group.create_array(
            layer.name,
            shape=(total_rows, layer.units),
            dtype=layer.dtype,
            chunks=(chunk_rows, layer.units),
            shards=(rows_per_shard, layer.units),
            filters=None,
            compressors=[ZstdCodec(level=zstd_level)],
            fill_value=0,
            dimension_names=("frame", "unit"),
            attributes={"module": layer.module},
        )


def open_layer(loc: Location, layer: str, writable: bool = False) -> zarr.Array:
    return zarr.open_array(zarr_store(loc, read_only=not writable), path=layer, mode="r+" if writable else "r")


def shard_key(layer: str, shard_index: int) -> str:
    """Key of a shard file relative to the cube (Zarr v3 default chunk key encoding)."""
    return f"{layer}/c/{shard_index}/0"


def write_rows(array: zarr.Array, row_start: int, block: np.ndarray) -> None:
    """Write whole shards; empty shards are written too, so a missing file always means lost data."""
    with zarr.config.set({"array.write_empty_chunks": True}):
        array[row_start : row_start + block.shape[0]] = block
