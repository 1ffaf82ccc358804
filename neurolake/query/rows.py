"""Rows of the views built from run manifests and group files (their schemas are in :mod:`neurolake.schemas`)."""

from __future__ import annotations

from neurolake.store.cube import LayerSpec
from neurolake.store.derived import Derived
from neurolake.store.run import RunInfo


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
