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
import pyarrow.compute as pc
import torch

from neurolake.corpora.audio import load_audio
from neurolake.errors import SpecError
from neurolake.introspect.ablation import AblationResult, ablate, parse_units, run_model, slice_frames
from neurolake.introspect.scan import get_finding
from neurolake.models import ModelAdapter, UnitEdit
from neurolake.store import Lake

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
    return block
