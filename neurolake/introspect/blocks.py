"""Faulty blocks: the units of a finding connected across the captured layers.

A scan's finding names units of one or two layers. The block asks what feeds them and what they
feed, in the model itself, over the frames of the finding's slice:

- **down**: for the captured layer below the block's lowest layer, every unit's gradient x
  activation on the block's units there, summed over the utterance and averaged over the slice's
  frames (:meth:`~neurolake.models.adapter.ModelAdapter.attribution`; for a convolution or a linear
  map this is the share of the block's activation that flows through each unit, weights times
  activations, and it works for any architecture);
- **up**: for the captured layer above the block's highest layer, how much every unit's activation
  drops over the slice's frames when the block's units there are zeroed;

and keeps, per layer, the units that stand out: a robust z-score (median and MAD over the
layer's units) of at least ``z``, at most ``per_layer`` of them. It goes ``depth`` layers each
way, stopping where no unit stands out. The output layer (as wide as the token list) is left out:
its units are the token scores themselves.

The block is reported with the layers it spans, its units per layer with their scores, the share
of the slice's frames where it is active (in every layer of the block, at least half of its
units there above their 90th percentile) and the ablation of the whole block, counting the slice's
frames, beside random units of the same size per layer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from neurolake.corpora.audio import load_audio
from neurolake.errors import SpecError
from neurolake.introspect.ablation import AblationResult, ablate, parse_units, run_model, slice_frames
from neurolake.introspect.scan import get_finding
from neurolake.models import ModelAdapter, UnitEdit
from neurolake.query.fingerprint import commits_fingerprint
from neurolake.schemas import BLOCKS
from neurolake.store import Lake
from neurolake.store.derived import list_derived
from neurolake.store.tables import decode_parquet, encode_parquet

log = logging.getLogger(__name__)

__all__ = ["Block", "blocks"]


@dataclass
class Block:
    """A finding's units connected across layers (see the module's docstring).

    Attributes:
        units: layer -> units of the block, layers in the model's order.
        scores: layer -> the score of each unit (``seed`` for the finding's own units: ``nan``).
        active_share: share of the slice's frames where the whole block is active.
        layer_share: layer -> share of the slice's frames where its part of the block is active.
    """

    run_id: str
    finding: str
    slice: str
    units: dict[str, list[int]]
    scores: dict[str, list[float]]
    active_share: float
    layer_share: dict[str, float]
    n_frames: int
    n_utterances: int
    ablation: AblationResult | None = None
    seeds: dict[str, list[int]] = field(default_factory=dict)
    block_id: str = ""
    reused: bool = False

    @property
    def layers(self) -> list[str]:
        return list(self.units)

    def items(self) -> list[str]:
        return [f"{layer}:{u}" for layer, units in self.units.items() for u in units]


def _standing_out(scores: np.ndarray, z: float, limit: int, exclude: set[int]) -> list[int]:
    """Units whose robust z-score is at least ``z`` (largest first, at most ``limit``)."""
    median = float(np.median(scores))
    mad = float(np.median(np.abs(scores - median))) * 1.4826
    if mad == 0:
        mad = float(np.std(scores)) or 1.0
    robust = (scores - median) / mad
    order = [int(i) for i in np.argsort(-robust, kind="stable") if robust[i] >= z and int(i) not in exclude]
    return order[:limit]


def blocks(
    lake: Lake,
    finding: str,
    *,
    depth: int = 2,
    per_layer: int = 8,
    z: float = 4.0,
    max_utterances: int = 20,
    controls: int = 3,
    seed: int = 0,
    adapter: ModelAdapter | None = None,
    with_ablation: bool = True,
) -> Block:
    """The block of units connected to a finding's units (``SCAN_ID/FINDING_ID``)."""
    from neurolake.query.neurons import neuron_statistics

    if depth < 0 or per_layer < 1 or max_utterances < 1:
        raise SpecError("depth must be >= 0, per_layer and max_utterances >= 1")
    row = get_finding(lake, finding)
    run_id = str(row["run_id"])
    run = lake.run(run_id)
    seeds = parse_units(list(row["items"]), run)
    adapter = run_model(run, adapter)
    spec = {
        "run_id": run_id,
        "finding": finding,
        "items": list(row["items"]),
        "slice": str(row["target"]),
        "depth": depth,
        "per_layer": per_layer,
        "z": z,
        "max_utterances": max_utterances,
        "controls": controls,
        "seed": seed,
        "with_ablation": with_ablation,
        "weights_sha256": adapter.spec.get("weights_sha256"),
        "commits": commits_fingerprint(run),
    }
    derived = run.derived("blocks", spec)
    if derived.complete:
        return _from_table(decode_parquet(derived.read_bytes("block.parquet")), lake, adapter)
    # The captured layers in the model's order, without the output layer (token scores).
    module_order = {name: i for i, (name, _) in enumerate(adapter.module.named_modules())}
    layers = sorted(run.layer_names, key=lambda name: module_order.get(name, len(module_order)))
    layers = [name for name in layers if run.layer(name).units != len(adapter.tokens) or name in seeds]
    frames_of = dict(list(slice_frames(lake, run_id, str(row["target"])).items())[:max_utterances])
    records = {
        r["utterance_id"]: r
        for r in run.read_table("utterances").select(["utterance_id", "audio_uri", "first_frame_id"]).to_pylist()
        if r["utterance_id"] in frames_of
    }
    audio = {u: torch.from_numpy(load_audio(records[u]["audio_uri"], adapter.sample_rate)) for u in frames_of}
    n_frames = sum(int(f.size) for f in frames_of.values())

    units = {layer: list(seeds[layer]) for layer in layers if layer in seeds}
    scores: dict[str, list[float]] = {layer: [float("nan")] * len(idx) for layer, idx in units.items()}
    positions = [layers.index(layer) for layer in units]
    low, high = min(positions), max(positions)
    for k in range(low, max(0, low - depth), -1):  # down: what feeds the block
        upper, lower = layers[k], layers[k - 1]
        total = np.zeros(run.layer(lower).units)
        for utterance_id, frames in frames_of.items():
            total += adapter.attribution(audio[utterance_id], lower, upper, units[upper], frames.tolist()).numpy()
        chosen = _standing_out(total / n_frames, z, per_layer, set(units.get(lower, [])))
        if not chosen:
            break
        units[lower] = sorted(set(units.get(lower, [])) | set(chosen))
        scores[lower] = [float(total[u] / n_frames) if u in chosen else float("nan") for u in units[lower]]
    for k in range(high, min(len(layers) - 1, high + depth)):  # up: what the block feeds
        lower, upper = layers[k], layers[k + 1]
        drop = np.zeros(run.layer(upper).units)
        for utterance_id, frames in frames_of.items():
            wave = audio[utterance_id][None, :]
            plain = adapter.forward(wave, [wave.shape[1]], [upper]).captured[upper][0]
            edited = adapter.forward(
                wave, [wave.shape[1]], [upper], edits={lower: UnitEdit(tuple(units[lower]))}
            ).captured[upper][0]
            drop += (plain[frames] - edited[frames]).double().sum(dim=0).numpy()
        chosen = _standing_out(drop / n_frames, z, per_layer, set(units.get(upper, [])))
        if not chosen:
            break
        units[upper] = sorted(set(units.get(upper, [])) | set(chosen))
        scores[upper] = [float(drop[u] / n_frames) if u in chosen else float("nan") for u in units[upper]]
    units = {layer: units[layer] for layer in layers if layer in units}
    scores = {layer: scores[layer] for layer in units}

    # Where the block is active: the slice's frames, binarised as the scan does.
    stats = neuron_statistics(lake, run_id, list(units))
    ids = np.sort(np.concatenate([records[u]["first_frame_id"] + f for u, f in frames_of.items()]))
    per_layer_active = []
    layer_share: dict[str, float] = {}
    for layer, idx in units.items():
        rows = stats.filter(pc.equal(stats.column("layer"), layer))
        q90 = rows.column("q90").to_numpy()
        x = np.asarray(run.read_rows(layer, ids), dtype=np.float32)[:, idx]
        on = (x > q90[idx]).sum(axis=1) * 2 >= len(idx)
        per_layer_active.append(on)
        layer_share[layer] = float(on.mean())
    active_share = float(np.logical_and.reduce(per_layer_active).mean()) if per_layer_active else 0.0

    block = Block(
        run_id=run_id,
        finding=finding,
        slice=str(row["target"]),
        units=units,
        scores=scores,
        active_share=active_share,
        layer_share=layer_share,
        n_frames=n_frames,
        n_utterances=len(frames_of),
        seeds={layer: list(idx) for layer, idx in seeds.items()},
    )
    if with_ablation:
        block.ablation = ablate(
            lake,
            run_id,
            block.items(),
            slice=block.slice,
            controls=controls,
            max_utterances=max_utterances,
            seed=seed,
            adapter=adapter,
        )
    block.block_id = derived.spec_hash
    derived.write_bytes(encode_parquet(_table(block)), "block.parquet")
    derived.commit()
    return block


def _table(block: Block) -> pa.Table:
    """The ``blocks`` view's rows of ``block``."""
    rows = []
    for layer, idx in block.units.items():
        seeds = set(block.seeds.get(layer, []))
        for unit, score in zip(idx, block.scores[layer], strict=True):
            rows.append(
                {
                    "run_id": block.run_id,
                    "block_id": block.block_id,
                    "finding": block.finding,
                    "slice": block.slice,
                    "layer": layer,
                    "unit": unit,
                    "seed": unit in seeds,
                    "score": None if np.isnan(score) else score,
                    "layer_share": block.layer_share[layer],
                    "active_share": block.active_share,
                    "n_frames": block.n_frames,
                    "n_utterances": block.n_utterances,
                    "ablation_id": block.ablation.ablation_id if block.ablation else None,
                }
            )
    return pa.Table.from_pylist(rows, schema=BLOCKS)


def _from_table(table: pa.Table, lake: Lake, adapter: ModelAdapter) -> Block:
    """A stored block, its ablation read back from the ``ablations`` it was stored with."""
    rows = table.to_pylist()
    first = rows[0]
    units: dict[str, list[int]] = {}
    scores: dict[str, list[float]] = {}
    seeds: dict[str, list[int]] = {}
    for r in rows:
        units.setdefault(r["layer"], []).append(r["unit"])
        scores.setdefault(r["layer"], []).append(float("nan") if r["score"] is None else r["score"])
        if r["seed"]:
            seeds.setdefault(r["layer"], []).append(r["unit"])
    block = Block(
        run_id=first["run_id"],
        finding=first["finding"],
        slice=first["slice"],
        units=units,
        scores=scores,
        active_share=first["active_share"],
        layer_share={r["layer"]: r["layer_share"] for r in rows},
        n_frames=first["n_frames"],
        n_utterances=first["n_utterances"],
        seeds=seeds,
        block_id=str(first["block_id"]),
    )
    if first["ablation_id"]:
        run = lake.run(block.run_id)
        ablations = [
            d for d in list_derived(run.loc.child("derived"), "ablations") if d.spec_hash == first["ablation_id"]
        ]
        if ablations:
            block.ablation = AblationResult.from_table(
                decode_parquet(ablations[0].read_bytes("ablation.parquet")), list(ablations[0].spec["utterances"])
            )
    block.reused = True
    return block
