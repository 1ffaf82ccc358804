"""Arrow schemas of the SQL views that are not plain Parquet tables of the store."""

from __future__ import annotations

import pyarrow as pa

from neurolake.store.cube import LayerSpec
from neurolake.store.derived import Derived
from neurolake.store.run import RunInfo

RUNS = pa.schema(
    [
        ("run_id", pa.string()),
        ("status", pa.string()),
        ("model", pa.string()),
        ("corpus", pa.string()),
        ("n_utterances", pa.int64()),
        ("n_frames", pa.int64()),
        ("frames_committed", pa.int64()),
        ("parts_committed", pa.int64()),
        ("parts_total", pa.int64()),
        ("n_layers", pa.int64()),
        ("created_at", pa.string()),
    ]
)

LAYERS = pa.schema(
    [
        ("run_id", pa.string()),
        ("layer", pa.string()),
        ("units", pa.int64()),
        ("dtype", pa.string()),
        ("module", pa.string()),
    ]
)

NEURONS = pa.schema(
    [
        ("run_id", pa.string()),
        ("layer", pa.string()),
        ("unit", pa.int64()),
        ("mean", pa.float64()),
        ("std", pa.float64()),
        ("q50", pa.float64()),
        ("q90", pa.float64()),
        ("q99", pa.float64()),
        ("max", pa.float64()),
        ("active_rate", pa.float64()),
        ("n_frames", pa.int64()),
    ]
)

GROUPS = pa.schema(
    [
        ("name", pa.string()),
        ("run_id", pa.string()),
        ("predicate", pa.string()),
        ("n_frames", pa.int64()),
        ("created_at", pa.string()),
    ]
)

GROUP_FRAMES = pa.schema([("name", pa.string()), ("run_id", pa.string()), ("frame_id", pa.int64())])


def run_row(info: RunInfo) -> dict:
    return {
        "run_id": info.run_id,
        "status": info.status,
        "model": info.model,
        "corpus": info.corpus,
        "n_utterances": info.n_utterances,
        "n_frames": info.n_frames,
        "frames_committed": info.frames_committed,
        "parts_committed": info.parts_committed,
        "parts_total": info.parts_total,
        "n_layers": info.layers,
        "created_at": info.created_at,
    }


def layer_row(run_id: str, layer: LayerSpec) -> dict:
    return {"run_id": run_id, "layer": layer.name, "units": layer.units, "dtype": layer.dtype, "module": layer.module}


def group_row(d: Derived) -> dict:
    """A ``groups`` row from a group's spec and its ``group.json`` (size, creation time)."""
    info = d.read_json("group.json")
    return {
        "name": d.spec["name"],
        "run_id": d.spec["run_id"],
        "predicate": d.spec["predicate"],
        "n_frames": int(info["n_frames"]),
        "created_at": str(info["created_at"]),
    }
