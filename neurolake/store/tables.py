"""The per-part Parquet tables: conforming rows to their schema, and their encoding."""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from neurolake.errors import SchemaError
from neurolake.schemas import SCHEMAS, TABLE_NAMES, is_optional

__all__ = ["SCHEMAS", "TABLE_NAMES", "conform", "decode_parquet", "encode_parquet"]

# Parquet row groups: DuckDB parallelises over row groups and prunes with their statistics.
ROW_GROUP_SIZE = 256 * 1024


def conform(name: str, data: pa.Table | Mapping[str, Any], run_id: str) -> pa.Table:
    """Return ``data`` as a table of schema ``SCHEMAS[name]`` (plus any extra columns).

    ``run_id`` is filled in when absent. Missing required columns, or values that cannot
    be cast to the schema's types, raise :class:`SchemaError` naming the column.
    """
    if name not in SCHEMAS:
        raise SchemaError(f"unknown table {name!r}; tables are {', '.join(TABLE_NAMES)}")
    schema = SCHEMAS[name]
    table = data if isinstance(data, pa.Table) else pa.table(dict(data)) if data else pa.table({})
    n = table.num_rows
    columns: list[pa.Array] = []
    for f in schema:
        if f.name in table.column_names:
            col = table.column(f.name)
        elif f.name == "run_id":
            col = pa.array([run_id] * n, pa.string())
        elif n == 0 or is_optional(f):
            col = pa.nulls(n, f.type)
        else:
            raise SchemaError(f"table {name!r} lacks the column {f.name!r} ({f.type})")
        try:
            columns.append(col.cast(f.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise SchemaError(f"column {name}.{f.name} cannot be read as {f.type}: {exc}") from exc
    fields = list(schema)
    for extra in table.column_names:
        if extra not in schema.names:
            columns.append(table.column(extra))
            fields.append(table.schema.field(extra))
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


def encode_parquet(table: pa.Table, plain_floats: bool = False) -> bytes:
    """Parquet bytes (zstd); the same table always gives the same bytes.

    Integer columns (``frame_id``, ``frame_index``, ...) are delta-encoded instead of
    dictionary-encoded: ``frame_id`` counts up by one, so it packs to almost nothing,
    and DuckDB scans it without a dictionary (group queries over 100 M frames take
    0.8-1.4 s instead of 1.6-2.1 s). With ``plain_floats``, float columns are not
    dictionary-encoded either: for continuous values (profiles, scores), which rarely
    repeat, the attempt costs more than the write (NAPs of 200,000 rows: 0.14 s against
    0.03 s) and the file comes out larger.
    """
    ints = [f.name for f in table.schema if pa.types.is_integer(f.type)]
    floats = [f.name for f in table.schema if pa.types.is_floating(f.type)] if plain_floats else []
    others = [f.name for f in table.schema if f.name not in ints and f.name not in floats]
    buf = io.BytesIO()
    pq.write_table(
        table,
        buf,
        compression="zstd",
        row_group_size=ROW_GROUP_SIZE,
        use_dictionary=others,
        column_encoding={name: "DELTA_BINARY_PACKED" for name in ints},
    )
    return buf.getvalue()


def decode_parquet(data: bytes) -> pa.Table:
    # No thread pool: one left behind by a threaded read (or by pre-buffering, which uses the I/O
    # pool) can abort the interpreter at exit ("terminate called without an active exception",
    # apache/arrow#34314); these files are small. ParquetFile rather than read_table, which
    # imports pyarrow.dataset (and pandas with it: 0.2 s) for one file in memory.
    return pq.ParquetFile(io.BytesIO(data), pre_buffer=False).read(use_threads=False)
