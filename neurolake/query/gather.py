"""Activation gather: the rows of one or more layers for a group or a list of frame ids."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from neurolake.errors import GroupError
from neurolake.query.groups import get_group
from neurolake.store import Lake


@dataclass(frozen=True)
class Gathered:
    """Activations in frame-id order.

    ``frame_ids``: ``[n] int64`` ascending; ``layers``: layer name -> ``[n, units]``
    (numpy float16, or dask when asked for).
    """

    run_id: str
    frame_ids: np.ndarray
    layers: dict


def gather_activations(
    lake: Lake,
    layers: Sequence[str],
    *,
    group: str | None = None,
    run_id: str | None = None,
    frame_ids: Sequence[int] | np.ndarray | None = None,
    as_dask: bool = False,
) -> Gathered:
    """Activations of ``layers`` for a group's frames, or for ``frame_ids`` of ``run_id``.

    Frame ids are sorted and de-duplicated; rows are read chunk by chunk (each touched
    chunk decoded once), never row by row.
    """
    if (group is None) == (frame_ids is None):
        raise GroupError("give either a group or frame ids")
    if group is not None:
        g = get_group(lake, group)
        if run_id is not None and run_id != g.run_id:
            raise GroupError(f"group {group!r} belongs to run {g.run_id!r}, not {run_id!r}")
        run_id, ids = g.run_id, g.frame_ids()
    else:
        if run_id is None:
            raise GroupError("frame ids need the run they belong to")
        ids = np.unique(np.asarray(frame_ids, dtype=np.int64))
    run = lake.run(run_id)
    if not layers:
        raise GroupError(f"name at least one layer; run {run_id!r} has: {', '.join(run.layer_names)}")
    out: dict[str, Any] = {}
    for layer in layers:
        run.layer(layer)
        if as_dask:
            out[layer] = run.layer_dask(layer, frame_ids=ids)
        else:
            out[layer] = run.read_rows(layer, ids)
    return Gathered(run_id=run_id, frame_ids=ids, layers=out)
