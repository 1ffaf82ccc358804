"""Writing query results and exported activations to the terminal or to files."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from typing import TextIO

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from neurolake.errors import QueryError
from neurolake.query.gather import gather_activations
from neurolake.store import Lake
from neurolake.store.report import format_table

MAX_TABLE_ROWS = 100


def _cell(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _check_out(out: str) -> None:
    directory = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(directory):
        raise QueryError(f"cannot write {out!r}: the directory {directory} does not exist")


def _flat(table: pa.Table) -> pa.Table:
    """CSV holds no nested values: list, struct and map cells become JSON text (``["a:3", "b:2"]``)."""
    nested = (
        pa.types.is_list,
        pa.types.is_large_list,
        pa.types.is_fixed_size_list,
        pa.types.is_struct,
        pa.types.is_map,
    )
    for i, field in enumerate(table.schema):
        if any(test(field.type) for test in nested):
            text = [None if v is None else json.dumps(v, default=str) for v in table.column(i).to_pylist()]
            table = table.set_column(i, pa.field(field.name, pa.string()), pa.array(text, pa.string()))
    return table


def write_table(table: pa.Table, fmt: str, out: str | None, stdout: TextIO) -> None:
    """Print ``table`` as a readable table, CSV or JSON lines, or write it to ``out``."""
    if out:
        _check_out(out)
    if fmt == "parquet":
        if not out:
            raise QueryError("--format parquet needs --out FILE")
        pq.write_table(table, out, compression="zstd")
        return
    if fmt == "csv":
        buf = io.BytesIO()
        pacsv.write_csv(_flat(table), buf)
        text = buf.getvalue().decode("utf-8")
    elif fmt == "json":
        text = "".join(json.dumps(row, default=str) + "\n" for row in table.to_pylist())
    else:
        rows = table.slice(0, MAX_TABLE_ROWS).to_pylist()
        text = format_table(table.column_names, [[_cell(r[c]) for c in table.column_names] for r in rows]) + "\n"
        if table.num_rows > MAX_TABLE_ROWS:
            text += f"({table.num_rows} rows, first {MAX_TABLE_ROWS} shown; use --format csv --out FILE for all)\n"
        else:
            text += f"({table.num_rows} row{'s' if table.num_rows != 1 else ''})\n"
    if out:
        with open(out, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        stdout.write(text)


def export_activations(lake: Lake, group: str, layers: Sequence[str], out: str) -> str:
    """Write a group's activations: ``.npy`` (one layer, ``[frames, units]``), ``.npz``
    (``frame_ids`` and one array per layer) or ``.parquet`` (``frame_id`` and one
    fixed-size list column per layer). Returns the path written."""
    ext = os.path.splitext(out)[1].lower()
    if ext not in (".npy", ".npz", ".parquet"):
        raise QueryError(f"cannot export to {out!r}: use a .npy, .npz or .parquet file name")
    if ext == ".npy" and len(layers) != 1:
        raise QueryError(".npy holds one layer; name one layer or write .npz / .parquet")
    _check_out(out)
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
