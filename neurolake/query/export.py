"""Activations out to a Hugging Face ``datasets`` dataset on disk.

:func:`export_datasets` writes the frames of a run or of a group: ``frame_id``, one fixed-length
list column per layer (``float16`` as the lake stores them, or ``float32``), and any ``frames`` or
``utterances`` column asked for, nulls kept. Frames are read in blocks of whole chunks (each chunk
decoded once) and streamed into one Arrow file, so memory stays bounded by a block whatever the
size of the run; ``datasets`` then saves it (``save_to_disk``, sharded) where it was asked, a
local directory or any fsspec URL. Read it back with ``datasets.load_from_disk``::

    from datasets import load_from_disk

    data = load_from_disk("vowels-conv7").with_format("torch")
    x, y = data["conv7"], data["phoneme"]
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from neurolake.errors import SpecError
from neurolake.query.loader import frame_columns, frames_of

__all__ = ["ExportResult", "export_datasets"]

DTYPES = ("float16", "float32")


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_datasets` wrote."""

    path: str
    run_id: str
    group: str | None
    layers: list[str]
    columns: list[str]
    rows: int
    bytes: int  # of the Arrow data saved


def export_datasets(
    lake_url: str,
    out: str,
    *,
    run_id: str | None = None,
    group: str | None = None,
    layers: Sequence[str],
    columns: Sequence[str] = (),
    dtype: str = "float16",
    block_chunks: int = 16,
    max_shard_size: str | int = "500MB",
    storage_options: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> ExportResult:
    """Save the frames of ``run_id`` (or of ``group``) as a ``datasets`` dataset at ``out``.

    Raises:
        SpecError: no run or group, an unknown layer or column or dtype, or ``out`` not empty.
    """
    import datasets
    from tqdm.auto import tqdm

    from neurolake.store import Lake

    if dtype not in DTYPES:
        raise SpecError(f"dtype {dtype!r} unknown; use one of {', '.join(DTYPES)}")
    lake = Lake.open(lake_url, storage_options)
    run, ids = frames_of(lake, run_id, group)
    if not layers:
        raise SpecError(f"name at least one layer; run {run.run_id!r} has: {', '.join(run.layer_names)}")
    units = {layer: run.layer(layer).units for layer in layers}
    from neurolake.corpora.records import open_url

    fs, path = open_url(out, storage_options)
    if fs.exists(path) and (not fs.isdir(path) or fs.ls(path)):
        raise SpecError(f"{out} exists and is not an empty directory; export into a new one")
    metadata = frame_columns(lake, run.run_id, ids, columns)
    fields = [pa.field("frame_id", pa.int64())]
    fields += [pa.field(layer, pa.list_(pa.from_numpy_dtype(np.dtype(dtype)), units[layer])) for layer in layers]
    fields += [metadata.schema.field(c) for c in columns]
    features = datasets.Features.from_arrow_schema(pa.schema(fields))
    schema = features.arrow_schema
    block_rows = run.plan.chunk_rows * block_chunks
    bounds = np.flatnonzero(np.diff(ids // block_rows)) + 1 if ids.size else np.array([], np.int64)
    with tempfile.TemporaryDirectory(prefix="neurolake-export-") as tmp:
        arrow = os.path.join(tmp, "frames.arrow")
        start = 0
        with pa.OSFile(arrow, "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
            bar = tqdm(total=int(ids.size), unit="frame", desc=f"export {group or run.run_id}", disable=not progress)
            for stop in [*bounds.tolist(), int(ids.size)]:
                block = ids[start:stop]
                arrays: list[pa.Array] = [pa.array(block, pa.int64())]
                for layer in layers:
                    rows = np.ascontiguousarray(run.read_rows(layer, block), dtype=dtype)
                    arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(rows.reshape(-1)), units[layer]))
                arrays += [metadata.column(c).slice(start, stop - start).combine_chunks() for c in columns]
                writer.write_batch(pa.record_batch(arrays, schema=schema))
                bar.update(len(block))
                start = stop
            bar.close()
        data = datasets.Dataset.from_file(arrow)
        data.info.description = json.dumps(
            {"lake": str(lake.loc.url), "run_id": run.run_id, "group": group, "layers": list(layers), "dtype": dtype}
        )
        size = int(data.data.nbytes)
        data.save_to_disk(out, max_shard_size=max_shard_size, storage_options=dict(storage_options or {}) or None)
    return ExportResult(out, run.run_id, group, list(layers), list(columns), int(ids.size), size)
