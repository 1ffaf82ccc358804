"""Mining a run: the neurons that fire together in a target group of frames and not in a background.

Pipeline: the two groups' frames -> activations of the chosen layers (decoded a few chunks
at a time) -> binarised items ``layer:unit`` (thresholds from the ``neurons`` statistics),
compared and packed on the decoding threads -> packed bit matrices (derived data ``bits``)
-> closed itemsets of the target (LCM, in one process or over Ray workers by first-level
branches) or DiffNorm's pattern sets -> supports in both groups, scores and Holm-corrected
significance -> derived data ``patterns`` (the ``patterns`` view) and a per-layer summary.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from neurolake.errors import GroupError, SpecError
from neurolake.mining.binarize import QUANTILE_COLUMNS, as_spec, binarize
from neurolake.mining.significance import fisher_greater, holm, relative_risk, wracc
from neurolake.query._stats_kernels import pack_greater, pack_greater_f16
from neurolake.query.groups import Group, get_group
from neurolake.query.neurons import neuron_statistics
from neurolake.schemas import PATTERNS
from neurolake.store import Lake, Run
from neurolake.store.tables import decode_parquet, encode_parquet

if TYPE_CHECKING:
    from neurolake.mining.diffnorm import BitMatrix as Words

log = logging.getLogger(__name__)

ALGORITHMS = ("lcm", "diffnorm")


@dataclass(frozen=True)
class BitMatrix:
    """Binarised frames of one group: ``bits`` ``[frames, ceil(items / 8)]`` uint8 (np.packbits rows)."""

    frame_ids: np.ndarray
    items: list[str]
    bits: np.ndarray

    def dense(self) -> np.ndarray:
        """``[frames, items]`` bool."""
        return np.unpackbits(self.bits, axis=1, count=len(self.items)).astype(bool)

    def words(self) -> Words:
        """The frames packed 64 items to a word (:class:`neurolake.mining.diffnorm.BitMatrix`,
        the form DiffNorm counts and LCM prepares without a ``[frames, items]`` matrix)."""
        from neurolake.mining.diffnorm import BitMatrix

        return BitMatrix.from_packbits(self.bits, len(self.items))


@dataclass(frozen=True)
class MiningResult:
    mining_id: str
    run_id: str
    target: str
    background: str
    patterns: pa.Table
    layers: pa.Table
    n_target: int
    n_background: int
    n_items: int
    seconds: float
    reused: bool
    details: dict = field(default_factory=dict)  # algorithm figures, e.g. DiffNorm's L%

    def _repr_html_(self) -> str:
        from neurolake.notebook import card, html_table

        facts = [
            ("run", self.run_id),
            (
                "target / background",
                f"{self.target} ({self.n_target:,} frames) / {self.background} ({self.n_background:,})",
            ),
            ("items", f"{self.n_items:,}"),
            ("patterns", f"{self.patterns.num_rows:,}"),
            ("seconds", f"{self.seconds:.1f}" + (" (reused)" if self.reused else "")),
        ]
        columns = ["pattern_id", "items", "support_target", "support_background", "relative_risk", "p_value"]
        return card(f"mining {self.mining_id}", facts, html_table(self.patterns, columns=columns))


def items_for(run: Run, layers: Sequence[str]) -> list[str]:
    return [f"{layer}:{unit}" for layer in layers for unit in range(run.layer(layer).units)]


def binarised_group(
    lake: Lake, run: Run, group: Group, layers: Sequence[str], spec: Mapping[str, Any], stats: pa.Table | None
) -> BitMatrix:
    """Bits of a group's frames for ``layers`` under ``spec``, stored once as derived data ``bits``."""
    derived = run.derived(
        "bits", {"group": group.derived.spec_hash, "layers": list(layers), "binarization": dict(spec)}
    )
    items = items_for(run, layers)
    if derived.complete:
        data = np.load(io.BytesIO(derived.read_bytes("bits.npz")))
        return BitMatrix(data["frame_ids"], items, data["bits"])
    ids = group.frame_ids()
    bits = packed_binarised(run, ids, layers, spec, stats)
    buf = io.BytesIO()
    np.savez(buf, frame_ids=ids, bits=bits)
    derived.write_bytes(buf.getvalue(), "bits.npz")
    derived.commit()
    return BitMatrix(ids, items, bits)


def _layer_thresholds(spec: Mapping[str, Any], stats: pa.Table | None, layer: str, units: int) -> np.ndarray:
    """``[units]`` float32: the thresholds of a threshold binarisation (absolute, quantile) of
    ``layer``, as :func:`neurolake.mining.binarize.binarize` compares them."""
    if spec["method"] == "absolute":
        return np.full(units, spec["threshold"], dtype=np.float32)
    if stats is None:
        raise SpecError("quantile binarisation needs the neurons statistics of the layer")
    rows = stats.filter(pc.equal(stats.column("layer"), layer))
    return np.asarray(rows.column(QUANTILE_COLUMNS[spec["q"]]).to_numpy(), dtype=np.float32)


def packed_binarised(
    run: Run,
    ids: np.ndarray,
    layers: Sequence[str],
    spec: Mapping[str, Any],
    stats: pa.Table | None,
    progress: Any = None,
    block: int = 32_768,
) -> np.ndarray:
    """``[len(ids), ceil(items / 8)]`` uint8: :func:`binarised_rows` packed as ``np.packbits``
    packs it, one layer after the other. A threshold binarisation (absolute, quantile) is
    compared and packed on the threads that decode the rows (:meth:`Run.visit_rows`), straight
    into the packed rows, so no float or bool block is made; the others binarise ``block``
    frames at a time. ``progress`` (a bar) is told the frames done, once per layer."""
    spec = as_spec(spec)
    units = [run.layer(layer).units for layer in layers]
    out = np.zeros((ids.size, (sum(units) + 7) // 8), dtype=np.uint8)
    if spec["method"] not in ("absolute", "quantile"):
        for start in range(0, ids.size, block):
            rows = ids[start : start + block]
            out[start : start + rows.size] = np.packbits(binarised_rows(run, rows, layers, spec, stats), axis=1)
            if progress is not None:
                progress.update(rows.size * len(layers))
        return out
    lock = threading.Lock()
    bit = 0
    for layer, n_units in zip(layers, units, strict=True):
        limits = _layer_thresholds(spec, stats, layer, n_units)

        def visit(rows: np.ndarray, start: int, limits: np.ndarray = limits, bit: int = bit) -> None:
            if rows.dtype == np.float16:
                pack_greater_f16(np.ascontiguousarray(rows).view(np.uint16), limits, out, start, bit)
            else:
                pack_greater(np.ascontiguousarray(rows, dtype=np.float32), limits, out, start, bit)
            if progress is not None:
                with lock:
                    progress.update(rows.shape[0])

        run.visit_rows(layer, ids, visit)
        bit += n_units
    return out


def binarised_rows(
    run: Run, ids: np.ndarray, layers: Sequence[str], spec: Mapping[str, Any], stats: pa.Table | None
) -> np.ndarray:
    """``[len(ids), items]`` bool: the frames ``ids`` (ascending) of ``layers`` binarised under
    ``spec``, thresholds from the ``neurons`` statistics ``stats``; read chunk by chunk."""
    out = np.empty((ids.size, sum(run.layer(layer).units for layer in layers)), dtype=bool)
    start = 0
    for layer in layers:
        x = run.read_rows(layer, ids)
        kw: dict[str, np.ndarray] = {}
        if spec["method"] == "quantile":
            kw["thresholds"] = _layer_thresholds(spec, stats, layer, x.shape[1])
        elif spec["method"] == "zscore" and stats is not None:
            rows = stats.filter(pc.equal(stats.column("layer"), layer))
            kw["mean"], kw["std"] = rows.column("mean").to_numpy(), rows.column("std").to_numpy()
        out[:, start : start + x.shape[1]] = binarize(x, spec, **kw)
        start += x.shape[1]
    return out


def supports(dense: np.ndarray, itemsets: Sequence[Sequence[int]]) -> np.ndarray:
    """Rows of ``dense`` ``[rows, items]`` containing each itemset. ``[n] int64``"""
    return packed_supports(np.packbits(np.asarray(dense, dtype=bool), axis=1), itemsets)


def packed_supports(bits: np.ndarray, itemsets: Sequence[Sequence[int]]) -> np.ndarray:
    """Rows of ``bits`` (``np.packbits`` rows: item ``j`` is bit ``7 - j % 8`` of byte ``j // 8``)
    containing each itemset. ``[n] int64``

    Only the bytes an itemset touches are read, a few per row: packing the rows' items into
    columns instead would read every bit of the matrix.
    """
    out = np.empty(len(itemsets), dtype=np.int64)
    for i, itemset in enumerate(itemsets):
        items = np.asarray(itemset, dtype=np.int64)
        if items.size == 0:
            out[i] = bits.shape[0]
            continue
        columns, where = np.unique(items // 8, return_inverse=True)
        masks = np.zeros(columns.size, dtype=np.uint8)
        np.bitwise_or.at(masks, where, (0x80 >> (items % 8)).astype(np.uint8))
        out[i] = int(np.count_nonzero(np.all((bits[:, columns] & masks) == masks, axis=1)))
    return out


def _mining_spec(target: Group, background: Group, layers, binarization, algo, min_support, max_size, params) -> dict:
    return {
        "target": target.name,
        "target_group": target.derived.spec_hash,
        "background": background.name,
        "background_group": background.derived.spec_hash,
        "layers": list(layers),
        "binarization": binarization,
        "algo": algo,
        "min_support": min_support,
        "max_size": max_size,
        **params,
    }


def mine(
    lake: Lake,
    target: str,
    background: str,
    *,
    layers: Sequence[str] | None = None,
    binarization: Mapping[str, Any] | str = "quantile:0.9",
    algo: str = "lcm",
    min_support: float = 0.1,
    max_size: int | None = 4,
    workers: int | None = None,
    diffnorm_params: Mapping[str, Any] | None = None,
) -> MiningResult:
    """Patterns of co-active neurons that tell ``target`` frames from ``background`` frames.

    ``min_support`` is a fraction of the target frames (LCM) or of each group (DiffNorm's
    candidates). With ``workers`` > 1, LCM's search space is split over Ray workers.
    """
    t0 = time.perf_counter()
    if algo not in ALGORITHMS:
        raise SpecError(f"unknown mining algorithm {algo!r}; use one of {', '.join(ALGORITHMS)}")
    if not 0 < float(min_support) <= 1:
        raise SpecError(f"min_support is a fraction of the frames in (0, 1], got {min_support}")
    spec = as_spec(binarization)
    g_t, g_b = get_group(lake, target), get_group(lake, background)
    if g_t.run_id != g_b.run_id:
        raise GroupError(
            f"groups {target!r} (run {g_t.run_id}) and {background!r} (run {g_b.run_id}) belong to different runs"
        )
    run = lake.run(g_t.run_id)
    layers = list(layers) if layers else run.layer_names
    for layer in layers:
        run.layer(layer)
    params = dict(diffnorm_params or {}) if algo == "diffnorm" else {}
    mspec = _mining_spec(g_t, g_b, layers, spec, algo, float(min_support), max_size, params)
    derived = run.derived("patterns", mspec)
    if derived.complete:
        return MiningResult(
            derived.spec_hash,
            run.run_id,
            target,
            background,
            decode_parquet(derived.read_bytes("patterns.parquet")),
            decode_parquet(derived.read_bytes("layers.parquet")),
            g_t.n_frames,
            g_b.n_frames,
            len(items_for(run, layers)),
            time.perf_counter() - t0,
            True,
            derived.read_json("details.json"),
        )
    stats = neuron_statistics(lake, run.run_id, layers) if spec["method"] in ("quantile", "zscore") else None
    bt = binarised_group(lake, run, g_t, layers, spec, stats)
    bb = binarised_group(lake, run, g_b, layers, spec, stats)
    T, B = bt.words(), bb.words()
    details: dict = {}
    if algo == "lcm":
        itemsets = lcm_patterns(T, float(min_support), max_size, workers)
    else:
        itemsets, details = _diffnorm(T, B, float(min_support), params, workers)
    itemsets = [tuple(s) for s in itemsets if len(s) > 0]
    a = packed_supports(bt.bits, itemsets)
    c = packed_supports(bb.bits, itemsets)
    n_t, n_b = len(T), len(B)
    p_raw = np.array([fisher_greater(int(x), n_t, int(y), n_b) for x, y in zip(a, c, strict=False)])
    p_adj = holm(p_raw)
    scores = wracc(a, n_t, c, n_b)
    order = np.lexsort((-a, -scores))  # best score first, then larger target support
    items = bt.items
    table = pa.table(
        {
            "run_id": pa.array([run.run_id] * len(order), pa.string()),
            "mining_id": pa.array([derived.spec_hash] * len(order), pa.string()),
            "pattern_id": pa.array(np.arange(len(order)), pa.int64()),
            "items": pa.array([[items[i] for i in itemsets[j]] for j in order], pa.list_(pa.string())),
            "size": pa.array([len(itemsets[j]) for j in order], pa.int64()),
            "support_target": pa.array(a[order], pa.int64()),
            "support_background": pa.array(c[order], pa.int64()),
            "score": pa.array(scores[order], pa.float64()),
            "p_value": pa.array(p_adj[order], pa.float64()),
            "relative_risk": pa.array(relative_risk(a, n_t, c, n_b)[order], pa.float64()),
            "p_value_raw": pa.array(p_raw[order], pa.float64()),
            "target": pa.array([target] * len(order), pa.string()),
            "background": pa.array([background] * len(order), pa.string()),
        },
        schema=PATTERNS,  # the contract the patterns view reads
    )
    summary = layer_summary(table, layers)
    derived.write_bytes(encode_parquet(table), "patterns.parquet")
    derived.write_bytes(encode_parquet(summary), "layers.parquet")
    derived.write_json(details, "details.json")
    derived.commit()
    return MiningResult(
        derived.spec_hash,
        run.run_id,
        target,
        background,
        table,
        summary,
        n_t,
        n_b,
        len(items),
        time.perf_counter() - t0,
        False,
        details,
    )


def layer_summary(patterns: pa.Table, layers: Sequence[str], alpha: float = 0.05) -> pa.Table:
    """Per layer: significant patterns touching it, the share of their items it holds, best score."""
    rows = {
        layer: {"significant_patterns": 0, "items_in_significant": 0, "best_score": float("nan")} for layer in layers
    }
    total_items = 0
    for items, p, score in zip(
        patterns.column("items").to_pylist(),
        patterns.column("p_value").to_pylist(),
        patterns.column("score").to_pylist(),
        strict=False,
    ):
        if p > alpha:
            continue
        touched = set()
        for item in items:
            layer = item.rsplit(":", 1)[0]
            rows[layer]["items_in_significant"] += 1
            total_items += 1
            touched.add(layer)
        for layer in touched:
            rows[layer]["significant_patterns"] += 1
            best = rows[layer]["best_score"]
            rows[layer]["best_score"] = score if best != best or score > best else best
    return pa.table(
        {
            "layer": list(rows),
            "significant_patterns": [r["significant_patterns"] for r in rows.values()],
            "share_of_items": [r["items_in_significant"] / total_items if total_items else 0.0 for r in rows.values()],
            "best_score": [r["best_score"] for r in rows.values()],
        }
    )


def lcm_patterns(
    T: Words, min_support: float, max_size: int | None, workers: int | None = None
) -> list[tuple[int, ...]]:
    """LCM's closed itemsets of ``T`` (packed rows, :class:`neurolake.mining.diffnorm.BitMatrix`),
    prepared from their bits (no ``[frames, items]`` matrix or CSR of their items)."""
    from neurolake.mining.lcm import PackedRows, closed_itemsets

    return closed_itemsets(PackedRows((T.words,), T.n_items), min_support, max_size, workers=workers or 1).items


def _diffnorm(
    T: Words | np.ndarray, B: Words | np.ndarray, min_support: float, params: Mapping[str, Any], workers: int | None
) -> tuple[list[tuple[int, ...]], dict]:
    """Patterns of DiffNorm's target-only pattern set (what characterises the target), and
    the model's figures: L% (total length relative to singletons only) and set sizes.

    With ``workers`` > 1 the cover and usage counting runs over row partitions on Ray
    workers and the search on the first of them (same result).
    """
    from neurolake.mining.diffnorm import DiffNorm

    model = DiffNorm(min_support=min_support, workers=workers or 1, **params).fit([T, B])
    result = model.discover()
    sizes = {
        "target": len(model.patterns_for((0,))),
        "background": len(model.patterns_for((1,))),
        "shared": len(model.patterns_for((0, 1))),
    }
    details = {
        "l_percent": float(result.l_percent),
        "total_length_bits": float(result.total_length),
        "pattern_sets": sizes,
        "n_accepted": int(result.n_accepted),
        "max_iterations": int(model.max_iterations),
    }
    return model.patterns_for((0,)), details
