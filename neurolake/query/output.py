"""Exporting a group's activations to ``.npy``, ``.npz`` or ``.parquet`` files."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from neurolake.errors import QueryError
from neurolake.query.gather import gather_activations
from neurolake.render import check_out
from neurolake.store import Lake


def export_activations(lake: Lake, group: str, layers: Sequence[str], out: str) -> str:
    """Write a group's activations: ``.npy`` (one layer, ``[frames, units]``), ``.npz``
    (``frame_ids`` and one array per layer) or ``.parquet`` (``frame_id`` and one
    fixed-size list column per layer). Returns the path written."""
    ext = os.path.splitext(out)[1].lower()
    if ext not in (".npy", ".npz", ".parquet"):
        raise QueryError(f"cannot export to {out!r}: use a .npy, .npz or .parquet file name")
    if ext == ".npy" and len(layers) != 1:
        raise QueryError(".npy holds one layer; name one layer or write .npz / .parquet")
    check_out(out)
    got = gather_activations(lake, layers, group=group)
    if ext == ".npy":
        np.save(out, got.layers[layers[0]])
    elif ext == ".npz":
        np.savez(out, frame_ids=got.frame_ids, **{name: arr for name, arr in got.layers.items()})
    else:
        columns = {"frame_id": pa.array(got.frame_ids, pa.int64())}
        for name, arr in got.layers.items():
            flat = pa.array(np.ascontiguousarray(arr, dtype=np.float32).ravel())
            columns[name] = pa.FixedSizeListArray.from_arrays(flat, arr.shape[1])
        pq.write_table(pa.table(columns), out, compression="zstd")
    return out
