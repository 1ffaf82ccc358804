"""Neuron statistics: one streaming pass per layer over the committed frames.

Per unit: mean, std, max, quantiles q50/q90/q99 and the active rate (fraction of
frames with a value > 0). The pass is a dask reduction over shard-sized blocks of the
committed rows, so memory stays bounded by a few blocks whatever the run's size.
Quantiles come from a per-unit histogram of ``bins`` equal bins between the unit's min
and max (a second pass over the same blocks); their error is at most one bin width,
``(max - min) / bins``. Stored as derived data and shown by the ``neurons`` view;
binarisation in mining uses them as thresholds.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import dask
import dask.array as da
import numpy as np
import pyarrow as pa

from neurolake.errors import RunError
from neurolake.query.fingerprint import commits_fingerprint
from neurolake.schemas import NEURONS
from neurolake.store import Lake, Run
from neurolake.store.commit import CommitMarker
from neurolake.store.tables import decode_parquet, encode_parquet

log = logging.getLogger(__name__)
KIND = "neurons"
QUANTILES = (0.5, 0.9, 0.99)


def committed_layer(run: Run, layer: str, commits: Mapping[str, CommitMarker] | None = None) -> da.Array:
    """The committed frame rows of a layer, ``[frames, units]`` as float32 dask blocks.

    ``commits`` is a snapshot of ``run.commits()``: readers of several layers take one, so that
    every layer covers the same units while an ingest commits more.
    """
    whole = run.layer_dask(layer)
    markers = sorted((run.commits() if commits is None else commits).values(), key=lambda m: m.row_start)
    if not markers:
        return whole[:0].astype(np.float32)
    return da.concatenate([whole[m.row_start : m.used_stop] for m in markers]).astype(np.float32)


def _histogram_block(block: np.ndarray, lo: np.ndarray, width: np.ndarray, bins: int) -> np.ndarray:
    idx = np.clip(((block - lo) / width).astype(np.int64), 0, bins - 1)
    flat = idx + np.arange(block.shape[1], dtype=np.int64) * bins
    return np.bincount(flat.ravel(), minlength=block.shape[1] * bins).reshape(1, block.shape[1], bins)


def _quantiles_from_histogram(hist: np.ndarray, lo: np.ndarray, width: np.ndarray, qs: Sequence[float]) -> np.ndarray:
    """``[units, len(qs)]``: linear interpolation inside the bin where the cumulative count crosses q."""
    cum = np.cumsum(hist, axis=1)
    total = cum[:, -1:]
    out = np.empty((hist.shape[0], len(qs)))
    for j, q in enumerate(qs):
        target = q * total[:, 0]
        b = np.minimum((cum < target[:, None]).sum(axis=1), hist.shape[1] - 1)
        before = np.where(b > 0, cum[np.arange(len(b)), b - 1], 0)
        inside = hist[np.arange(len(b)), b]
        frac = np.where(inside > 0, (target - before) / np.maximum(inside, 1), 0.0)
        out[:, j] = lo + (b + frac) * width
    return out


def layer_statistics(x: da.Array, bins: int = 2048) -> dict[str, np.ndarray]:
    """Statistics per unit of ``x`` ``[frames, units]`` (two passes over its blocks)."""
    n = x.shape[0]
    mean, sq, mx, mn, active = dask.compute(
        x.mean(axis=0), (x * x).mean(axis=0), x.max(axis=0), x.min(axis=0), (x > 0).mean(axis=0)
    )
    width = np.maximum((mx - mn) / bins, np.finfo(np.float32).tiny)
    # dask's stubs type map_blocks as a method of arrays only (it takes any callable)
    blocks = x.map_blocks(_histogram_block, mn, width, bins, dtype=np.int64, new_axis=2, chunks=(1, x.shape[1], bins))  # type: ignore[arg-type]
    hist = blocks.sum(axis=0).compute()
    q = _quantiles_from_histogram(hist, mn.astype(np.float64), width.astype(np.float64), QUANTILES)
    q = np.minimum(np.maximum(q, mn[:, None]), mx[:, None])
    return {
        "mean": mean.astype(np.float64),
        "std": np.sqrt(np.maximum(sq - mean * mean, 0)).astype(np.float64),
        "q50": q[:, 0],
        "q90": q[:, 1],
        "q99": q[:, 2],
        "max": mx.astype(np.float64),
        "active_rate": active.astype(np.float64),
        "n_frames": np.full(x.shape[1], n, dtype=np.int64),
    }


def neuron_statistics(lake: Lake, run_id: str, layers: Sequence[str] | None = None, bins: int = 2048) -> pa.Table:
    """Statistics of every unit of ``layers`` (default: all) over the committed frames.

    Reused from the lake when computed before for the same layers over the same
    committed parts; otherwise computed and stored.
    """
    run = lake.run(run_id)
    names = list(layers) if layers else run.layer_names
    for name in names:
        run.layer(name)
    snapshot = run.commits()  # one snapshot for every layer, whatever an ingest commits meanwhile
    if not snapshot:
        raise RunError(
            f"run {run_id!r} has no committed parts yet; neuron statistics need ingested frames (see `neurolake runs`)"
        )
    spec = {"layers": names, "bins": int(bins), "commits": commits_fingerprint(run, snapshot)}
    derived = run.derived(KIND, spec)
    if derived.complete:
        return decode_parquet(derived.read_bytes("neurons.parquet"))
    parts = []
    for name in names:
        log.info("neuron statistics of %s/%s", run_id, name)
        stats = layer_statistics(committed_layer(run, name, snapshot), bins=bins)
        units = run.layer(name).units
        parts.append(
            pa.table(
                {
                    "run_id": pa.array([run_id] * units),
                    "layer": pa.array([name] * units),
                    "unit": np.arange(units, dtype=np.int64),
                    **stats,
                },
                schema=NEURONS,
            )
        )
    table = pa.concat_tables(parts)
    derived.write_bytes(encode_parquet(table), "neurons.parquet")
    derived.commit()
    return table
