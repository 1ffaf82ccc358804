"""Ablation: re-run a run's utterances with chosen units held fixed, and measure what changes.

Mining finds units that fire together when the model errs; an ablation asks the model itself
whether they matter. The run's own model (its weights hash checked against the run) decodes the
chosen utterances three ways: as it is, with the units changed by forward hooks (set to zero or
to their mean over the run's frames), and with random unit sets of the same size in the same
layers (``controls`` draws). The effect of the units is the change in character and word error
rates, set beside the changes the random sets cause: an effect outside their range is evidence
that these units, and not any units, carry the behaviour.

Given a slice (the SQL predicate of a scan's finding), the utterances with frames in it are
decoded first, with a seeded sample of the others as a control, and each condition's decoding is
labelled again (:func:`~neurolake.labels.frames.label_utterance`; the phonemes are the run's own,
frame by frame) so that the slice's frames are counted under every condition: a finding whose
units cause the error leaves few of them when ablated, random units leave them be.

Utterances run one at a time, so an edit never reaches padding frames.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import torch

from neurolake.corpora.audio import load_audio
from neurolake.errors import SpecError
from neurolake.labels.ctc import greedy_decode
from neurolake.labels.frames import hypothesis_text, label_utterance, normalise_transcript
from neurolake.labels.wer import align_sequences
from neurolake.models import ModelAdapter, UnitEdit, load_model
from neurolake.schemas import ABLATIONS
from neurolake.store import Lake, Run
from neurolake.store.tables import decode_parquet, encode_parquet

log = logging.getLogger(__name__)

__all__ = ["MODES", "AblationResult", "Scores", "ablate", "parse_units", "pattern_units", "run_model"]

MODES = ("zero", "mean", "patch")


def pattern_units(lake: Lake, pattern: str) -> tuple[str, list[str]]:
    """``MINING_ID/PATTERN_ID`` (from the ``patterns`` view) -> ``(run_id, ["layer:unit", ...])``."""
    from neurolake.query.engine import QueryEngine

    mining_id, sep, number = pattern.partition("/")
    if not sep or not mining_id or not number.isdigit():
        raise SpecError(f"pattern {pattern!r}: write MINING_ID/PATTERN_ID as the patterns view shows them")
    with QueryEngine(lake) as engine:
        rows = engine.sql(
            "SELECT run_id, items FROM patterns WHERE mining_id = ? AND pattern_id = ?", [mining_id, int(number)]
        ).to_pylist()
    if not rows:
        raise SpecError(f'no pattern {pattern!r} in the lake (see: neurolake sql "SELECT * FROM patterns")')
    return str(rows[0]["run_id"]), list(rows[0]["items"])


def parse_units(spec: str | Sequence[str], run: Run) -> dict[str, list[int]]:
    """``"conv7:3,conv7:9,head:2"`` (or its items) -> ``{"conv7": [3, 9], "head": [2]}``,
    checked against the layers the run captured and their widths."""
    items = [x.strip() for x in (spec.split(",") if isinstance(spec, str) else spec) if x.strip()]
    if not items:
        raise SpecError("give the units to ablate as LAYER:UNIT,...")
    widths = {layer.name: layer.units for layer in run.layers}
    units: dict[str, list[int]] = {}
    for item in items:
        layer, sep, index = item.rpartition(":")
        if not sep or not layer or not index.strip().lstrip("-").isdigit():
            raise SpecError(f"unit {item!r}: write LAYER:UNIT, e.g. conv7:12")
        if layer not in widths:
            raise SpecError(f"unit {item!r}: run {run.run_id!r} did not capture layer {layer!r}")
        unit = int(index)
        if not 0 <= unit < widths[layer]:
            raise SpecError(f"unit {item!r}: layer {layer!r} has units 0..{widths[layer] - 1}")
        if unit not in units.setdefault(layer, []):
            units[layer].append(unit)
    return units


@dataclass(frozen=True)
class Scores:
    """Corpus-level error rates of one condition: edits over reference characters / words, and
    the frames of the slice asked about (``None`` without one)."""

    cer: float
    wer: float
    slice_frames: int | None = None


@dataclass
class AblationResult:
    """What an ablation measured (stored as derived data ``ablations``; the ``ablations`` view).

    Attributes:
        ablation_id: the hash of what was asked (units, mode, utterances, controls, seed, weights).
        units: the ablated units as ``layer:unit``.
        mode: ``zero`` or ``mean``.
        utterances: the utterance ids decoded.
        base: error rates of the model as it is.
        ablated: error rates with the units held fixed.
        controls: error rates with random unit sets of the same size per layer.
    """

    run_id: str
    ablation_id: str
    units: list[str]
    mode: str
    utterances: list[str]
    base: Scores
    ablated: Scores
    controls: list[Scores] = field(default_factory=list)
    control_units: list[list[str]] = field(default_factory=list)
    reused: bool = False
    slice: str | None = None

    def _repr_html_(self) -> str:
        from neurolake.notebook import card, html_table

        facts = [
            ("run", self.run_id),
            ("units", ", ".join(self.units)),
            ("mode", self.mode),
            ("utterances", len(self.utterances)),
            ("slice", self.slice or "none"),
        ]
        columns = ["condition", "draw", "cer", "wer", "cer_change", "slice_frames"]
        return card(f"ablation {self.ablation_id}", facts, html_table(self.table(), columns=columns))

    def table(self) -> pa.Table:
        """One row per condition, in the ``ablations`` view's schema."""
        conditions = [("base", 0, [], self.base), ("ablated", 0, self.units, self.ablated)]
        conditions += [
            ("control", i + 1, units, scores)
            for i, (units, scores) in enumerate(zip(self.control_units, self.controls, strict=True))
        ]
        return pa.Table.from_pylist(
            [
                {
                    "run_id": self.run_id,
                    "ablation_id": self.ablation_id,
                    "condition": condition,
                    "draw": draw,
                    "units": list(units),
                    "mode": self.mode,
                    "n_utterances": len(self.utterances),
                    "cer": scores.cer,
                    "wer": scores.wer,
                    "cer_change": scores.cer - self.base.cer,
                    "slice": self.slice,
                    "slice_frames": scores.slice_frames,
                }
                for condition, draw, units, scores in conditions
            ],
            schema=ABLATIONS,
        )

    @classmethod
    def from_table(cls, table: pa.Table, utterances: list[str]) -> AblationResult:
        rows = table.to_pylist()
        by = {(r["condition"], r["draw"]): r for r in rows}
        controls = sorted((r for r in rows if r["condition"] == "control"), key=lambda r: r["draw"])
        return cls(
            run_id=rows[0]["run_id"],
            ablation_id=rows[0]["ablation_id"],
            units=list(by[("ablated", 0)]["units"]),
            mode=rows[0]["mode"],
            utterances=utterances,
            base=_scores(by[("base", 0)]),
            ablated=_scores(by[("ablated", 0)]),
            controls=[_scores(r) for r in controls],
            control_units=[list(r["units"]) for r in controls],
            reused=True,
            slice=rows[0].get("slice"),
        )

    @property
    def slice_change(self) -> float | None:
        """Relative change of the slice's frames under the ablation (``-1``: all gone)."""
        return _relative(self.ablated.slice_frames, self.base.slice_frames)

    @property
    def control_slice_changes(self) -> list[float]:
        return [v for c in self.controls if (v := _relative(c.slice_frames, self.base.slice_frames)) is not None]

    @property
    def cer_change(self) -> float:
        return self.ablated.cer - self.base.cer

    @property
    def control_cer_changes(self) -> list[float]:
        return [c.cer - self.base.cer for c in self.controls]


def run_model(run: Run, adapter: ModelAdapter | None = None) -> ModelAdapter:
    """The run's own model (loaded from its spec unless given), checked against the weights the
    run was ingested with: an edit or an attribution means nothing on other weights."""
    model = run.manifest["model"]
    adapter = adapter if adapter is not None else load_model(str(model["spec"]))
    expected = model.get("weights_sha256")
    if expected and expected != adapter.spec.get("weights_sha256"):
        raise SpecError(
            f"model {model['spec']!r} now has other weights than run {run.run_id!r} was ingested with; "
            "ablations and attributions need the same model"
        )
    return adapter


def _scores(row: Mapping) -> Scores:
    return Scores(row["cer"], row["wer"], row.get("slice_frames"))


def _relative(value: int | None, base: int | None) -> float | None:
    if value is None or not base:
        return None
    return value / base - 1.0


def ablate(
    lake: Lake,
    run_id: str,
    units: str | Sequence[str],
    *,
    mode: str = "zero",
    slice: str | None = None,
    patch_group: str | None = None,
    utterances: Sequence[str] | None = None,
    max_utterances: int = 100,
    controls: int = 5,
    seed: int = 0,
    adapter: ModelAdapter | None = None,
    workers: int | None = None,
    gpus: int | None = None,
) -> AblationResult:
    """Decode utterances of ``run_id`` with ``units`` ablated, and with ``controls`` random sets.

    Args:
        units: ``LAYER:UNIT`` items of layers the run captured.
        mode: ``zero`` sets the units to 0; ``mean`` to their mean over the run's frames
            (from ``neurolake neurons``, computed if missing); ``patch`` to their mean over
            the frames of ``patch_group`` (say, the slice's background: the same sounds
            recognised correctly).
        slice: an SQL predicate over ``frames`` and ``utterances`` (a finding's ``target``):
            its frames are counted under every condition, and the utterances decoded by default
            are those with the most frames in it (up to ``max_utterances``) and as many others
            again, at most 10, drawn with ``seed``.
        utterances: ids to decode; default the first ``max_utterances`` of the run by id.
        controls: random unit sets (same count per layer, drawn from the other units).
        adapter: the model, if already loaded (it must have the run's weights).
        workers: decode on this many Ray actors, the utterances split between them (default
            with ``gpus``: one per GPU; more than the GPUs share them); ``None``/1: in this process.
        gpus: the GPUs the actors use in all (default: those the Ray cluster has now; give it
            on a cluster whose autoscaler adds GPU nodes on demand; 0: the models run on CPUs).
    """
    if mode not in MODES:
        raise SpecError(f"ablation mode {mode!r} unknown; use one of {', '.join(MODES)}")
    if gpus is not None and gpus < 0:
        raise SpecError(f"--gpus must be at least 0, got {gpus}")
    if (mode == "patch") != (patch_group is not None):
        raise SpecError("--mode patch takes --patch-group NAME (the frames whose mean the units get), other modes none")
    if controls < 0 or max_utterances < 1:
        raise SpecError("controls must be >= 0 and max_utterances >= 1")
    run = lake.run(run_id)
    chosen = parse_units(units, run)
    adapter = run_model(run, adapter)
    if slice is not None and utterances is None:
        utterances = _slice_utterances(lake, run_id, slice, max_utterances, seed)
    records = _utterances(run, utterances, max_utterances)
    spec = {
        "run_id": run_id,
        "units": [f"{layer}:{u}" for layer, idx in chosen.items() for u in idx],
        "mode": mode,
        "patch_group": patch_group,
        "utterances": [r["utterance_id"] for r in records],
        "controls": controls,
        "seed": seed,
        "weights_sha256": adapter.spec.get("weights_sha256"),
        **({"slice": slice} if slice is not None else {}),
    }
    derived = run.derived("ablations", spec)
    if derived.complete:
        return AblationResult.from_table(decode_parquet(derived.read_bytes("ablation.parquet")), spec["utterances"])
    means: dict[str, np.ndarray] = {}
    if mode == "mean":
        means = _unit_means(lake, run_id, list(chosen))
    elif mode == "patch":
        means = _group_means(lake, run_id, str(patch_group), list(chosen))
    counter = _SliceCounter(lake, run_id, slice, records) if slice is not None else None

    def edits_of(layer_units: Mapping[str, Sequence[int]]) -> dict[str, UnitEdit]:
        return {
            layer: UnitEdit(tuple(idx), tuple(float(means[layer][i]) for i in idx) if means else None)
            for layer, idx in layer_units.items()
        }

    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(controls):
        draw = {}
        for layer, idx in chosen.items():
            others = np.setdiff1d(np.arange(run.layer(layer).units), idx)
            if others.size < len(idx):
                raise SpecError(f"layer {layer!r} has too few other units for a random control of {len(idx)}")
            draw[layer] = sorted(int(u) for u in rng.choice(others, size=len(idx), replace=False))
        draws.append(draw)
    conditions = [{}, edits_of(chosen), *(edits_of(d) for d in draws)]
    if (workers and workers > 1) or gpus:
        tallies = _decode_on_ray(str(run.manifest["model"]["spec"]), conditions, records, counter, workers, gpus)
    else:
        audio = {r["utterance_id"]: load_audio(r["audio_uri"], adapter.sample_rate) for r in records}
        references = {r["utterance_id"]: r["reference"] for r in records}
        tallies = [_decode_tally(adapter, audio, references, edits, counter) for edits in conditions]
    base, ablated, *control_scores = [t.scores(counter) for t in tallies]
    control_units = [[f"{layer}:{u}" for layer, idx in d.items() for u in idx] for d in draws]
    result = AblationResult(
        run_id=run_id,
        ablation_id=derived.spec_hash,
        units=[f"{layer}:{u}" for layer, idx in chosen.items() for u in idx],
        mode=mode,
        utterances=[r["utterance_id"] for r in records],
        base=base,
        ablated=ablated,
        controls=control_scores,
        control_units=control_units,
        slice=slice,
    )
    derived.write_bytes(encode_parquet(result.table()), "ablation.parquet")
    derived.commit()
    return result


def slice_frames(lake: Lake, run_id: str, predicate: str) -> dict[str, np.ndarray]:
    """The frames of a slice (an SQL predicate over ``frames`` and ``utterances``) by utterance:
    ``utterance_id -> frame_index`` ascending, utterances with the most frames first."""
    from neurolake.query.engine import QueryEngine
    from neurolake.query.groups import group_frame_ids

    with QueryEngine(lake) as engine:
        ids = group_frame_ids(engine, run_id, predicate)
        spans = engine.sql(
            "SELECT utterance_id, first_frame_id FROM utterances WHERE run_id = ? ORDER BY first_frame_id", [run_id]
        ).to_pylist()
    if ids.size == 0:
        raise SpecError(f"the slice {predicate!r} has no frames in run {run_id!r}")
    first = np.array([r["first_frame_id"] for r in spans], dtype=np.int64)
    owner = np.searchsorted(first, ids, side="right") - 1
    out = {spans[i]["utterance_id"]: ids[owner == i] - first[i] for i in np.unique(owner).tolist()}
    return dict(sorted(out.items(), key=lambda kv: (-kv[1].size, kv[0])))


def _slice_utterances(lake: Lake, run_id: str, predicate: str, limit: int, seed: int) -> list[str]:
    """The utterances with the most frames in the slice (up to ``limit``), then a seeded sample
    of the others: as many again, at most 10."""
    chosen = list(slice_frames(lake, run_id, predicate))[:limit]
    everything = lake.run(run_id).read_table("utterances").column("utterance_id").to_pylist()
    others = sorted(set(everything) - set(chosen))
    n_more = min(len(others), len(chosen), 10)
    if n_more:
        chosen += sorted(np.random.default_rng(seed).choice(others, size=n_more, replace=False).tolist())
    return chosen


class _SliceCounter:
    """Counts a slice's frames in a decoding: the decoding labelled again, the run's own phonemes
    and utterance columns joined, the slice's predicate run over it in DuckDB."""

    def __init__(self, lake: Lake, run_id: str, predicate: str, records: Sequence[Mapping]):
        from neurolake.query.engine import QueryEngine

        ids = [r["utterance_id"] for r in records]
        with QueryEngine(lake) as engine:
            predicate = engine.check_predicate(predicate)  # one allowed expression, or nothing runs
            utterances = engine.sql(
                "SELECT * EXCLUDE (run_id, hypothesis, wer, cer, n_word_errors) FROM utterances "
                "WHERE run_id = ? AND list_contains(?, utterance_id)",
                [run_id, ids],
            )
            phonemes = engine.sql(
                "SELECT frame_id, phoneme FROM frames WHERE run_id = ? AND list_contains(?, utterance_id)",
                [run_id, ids],
            )
        self.checked = predicate
        self.utterances = {r["utterance_id"]: r for r in utterances.to_pylist()}
        frame_ids, phoneme = phonemes.column("frame_id").to_pylist(), phonemes.column("phoneme").to_pylist()
        self.phonemes = dict(zip(frame_ids, phoneme, strict=True))

    def count(self, tables: Sequence[pa.Table]) -> int:
        import duckdb

        frames = pa.concat_tables(tables)
        with duckdb.connect() as con:
            con.register("_frames", frames)
            return int(
                con.execute(f"SELECT count(*) FROM _frames AS frames WHERE {self.checked}").fetchone()[0]  # type: ignore[index]
            )

    def labelled(self, adapter: ModelAdapter, utterance_id: str, log_probs: np.ndarray, reference: str) -> pa.Table:
        row = self.utterances[utterance_id]
        labels = label_utterance(
            log_probs,
            adapter.tokens,
            reference,
            frame_shift_s=adapter.frame_shift_s,
            utterance_id=utterance_id,
            first_frame_id=int(row["first_frame_id"]),
        )
        frames = labels.frames_table()
        ids = frames.column("frame_id").to_pylist()
        frames = frames.set_column(
            frames.schema.get_field_index("phoneme"),
            "phoneme",
            pa.array([self.phonemes.get(i) for i in ids], pa.string()),
        )
        # The utterance's columns beside each frame, as the lake's join gives them; the error
        # rates are this decoding's.
        values = {**row, **{k: labels.utterance[k] for k in ("hypothesis", "wer", "cer", "n_word_errors")}}
        for name, value in values.items():
            if name not in frames.column_names:
                frames = frames.append_column(name, pa.array([value] * frames.num_rows))
        return frames


def _utterances(run: Run, wanted: Sequence[str] | None, limit: int) -> list[dict]:
    """``utterance_id``, ``audio_uri`` and normalised ``reference`` of the utterances to decode,
    from the run's own ``utterances`` table (committed ones only)."""
    rows = {
        r["utterance_id"]: r
        for r in run.read_table("utterances").select(["utterance_id", "audio_uri", "reference"]).to_pylist()
    }
    committed = sorted(rows)
    if wanted is None:
        ids = committed[:limit]
    else:
        missing = sorted(set(wanted) - set(committed))
        if missing:
            raise SpecError(f"run {run.run_id!r} has no committed utterance {missing[0]!r}")
        ids = list(dict.fromkeys(wanted))
    if not ids:
        raise SpecError(f"run {run.run_id!r} has no committed utterances to decode")
    return [rows[i] for i in ids]


def _unit_means(lake: Lake, run_id: str, layers: Sequence[str]) -> dict[str, np.ndarray]:
    """Every unit's mean over the run's frames, per layer (the ``neurons`` statistics)."""
    from neurolake.query.neurons import neuron_statistics

    table = neuron_statistics(lake, run_id, list(layers))
    names = np.asarray(table.column("layer").to_pylist())
    units, means = table.column("unit").to_numpy(), table.column("mean").to_numpy()
    out: dict[str, np.ndarray] = {}
    for layer in layers:
        mine = names == layer
        out[layer] = np.zeros(int(units[mine].max()) + 1)
        out[layer][units[mine]] = means[mine]
    return out


def _group_means(lake: Lake, run_id: str, group: str, layers: Sequence[str]) -> dict[str, np.ndarray]:
    """Every unit's mean over a group's frames, per layer (gathered chunk by chunk)."""
    from neurolake.query.gather import gather_activations
    from neurolake.query.groups import get_group

    if get_group(lake, group).run_id != run_id:
        raise SpecError(f"group {group!r} belongs to run {get_group(lake, group).run_id!r}, not {run_id!r}")
    gathered = gather_activations(lake, layers, group=group)
    return {layer: np.asarray(gathered.layers[layer], dtype=np.float64).mean(axis=0) for layer in layers}


@dataclass
class _Tally:
    """Edit counts (and, with a slice, the labelled frames) of some utterances under one condition."""

    char_edits: int = 0
    char_total: int = 0
    word_edits: int = 0
    word_total: int = 0
    labelled: list[pa.Table] = field(default_factory=list)

    def add(self, other: _Tally) -> _Tally:
        return _Tally(
            self.char_edits + other.char_edits,
            self.char_total + other.char_total,
            self.word_edits + other.word_edits,
            self.word_total + other.word_total,
            self.labelled + other.labelled,
        )

    def scores(self, counter: _SliceCounter | None) -> Scores:
        return Scores(
            cer=self.char_edits / max(1, self.char_total),
            wer=self.word_edits / max(1, self.word_total),
            slice_frames=counter.count(self.labelled) if counter is not None else None,
        )


def _decode_tally(
    adapter: ModelAdapter,
    audio: Mapping[str, np.ndarray],
    references: Mapping[str, str],
    edits: Mapping[str, UnitEdit],
    counter: _SliceCounter | None = None,
) -> _Tally:
    tally = _Tally()
    for utterance_id, samples in audio.items():
        wave = torch.from_numpy(np.asarray(samples, dtype=np.float32))[None, :]
        out = adapter.forward(wave, [wave.shape[1]], edits=edits)
        log_probs = out.log_probs[0, : int(out.frame_lengths[0])].cpu().numpy()
        if out.hypotheses is not None:  # a model that transcribes (Whisper): its decoder's text
            if counter is not None:
                raise SpecError(
                    f"{adapter.spec['spec']}: a slice's frames cannot be counted again after an ablation of a model "
                    "without per-frame token posteriors (Whisper); ablate without a finding"
                )
            hypothesis = normalise_transcript(out.hypotheses[0])
        else:
            hypothesis = hypothesis_text(greedy_decode(log_probs).token_ids, adapter.tokens)
        reference = references[utterance_id]
        tally.char_edits += align_sequences(reference, hypothesis).distance
        tally.char_total += len(reference)
        tally.word_edits += align_sequences(reference.split(), hypothesis.split()).distance
        tally.word_total += len(reference.split())
        if counter is not None:
            tally.labelled.append(counter.labelled(adapter, utterance_id, log_probs, reference))
    return tally


class DecodeWorker:
    """Inside a Ray actor: the run's model (on the actor's GPU when it has one) decoding
    utterances under edits. Audio is read once per utterance and kept."""

    def __init__(self, spec: str, device: str, counter: _SliceCounter | None) -> None:
        self.adapter = load_model(spec, device)
        self.counter = counter
        self.audio: dict[str, np.ndarray] = {}

    def decode(self, edits: Mapping[str, UnitEdit], records: Sequence[Mapping]) -> _Tally:
        for r in records:
            if r["utterance_id"] not in self.audio:
                self.audio[r["utterance_id"]] = load_audio(r["audio_uri"], self.adapter.sample_rate)
        audio = {r["utterance_id"]: self.audio[r["utterance_id"]] for r in records}
        references = {r["utterance_id"]: r["reference"] for r in records}
        return _decode_tally(self.adapter, audio, references, edits, self.counter)


def _decode_on_ray(
    spec: str,
    conditions: Sequence[Mapping[str, UnitEdit]],
    records: Sequence[Mapping],
    counter,
    workers: int | None,
    gpus: int | None = None,
) -> list[_Tally]:
    """Every condition's tally, the utterances split over ``workers`` model actors (by default
    one per GPU; see :func:`decode_actors`)."""
    from neurolake.cluster.pool import ActorPool, cluster_gpus

    n_actors, share = decode_actors(workers, cluster_gpus(gpus))
    chunks = [list(records[i::n_actors]) for i in range(n_actors) if records[i::n_actors]]
    pending = [(c, j) for c in range(len(conditions)) for j in range(len(chunks))]
    tallies = [_Tally() for _ in conditions]
    args = [(spec, "cuda" if share else "cpu", counter)] * len(chunks)
    with ActorPool(DecodeWorker, args, num_gpus=share) as pool:
        while pending or pool.busy:
            while pending and (a := pool.free_actor()) is not None:
                c, j = pending.pop(0)
                pool.submit(a, "decode", conditions[c], chunks[j], tag=c)
            c, _, value, error = pool.next_done()
            if error is not None:
                raise error
            tallies[c] = tallies[c].add(value)
    return tallies


def decode_actors(workers: int | None, gpus: int) -> tuple[int, float]:
    """``(actors, GPUs each)`` for :func:`ablate`'s decoding on ``gpus`` GPUs: ``workers``
    actors (default one per GPU, at least one), sharing the GPUs where they outnumber them."""
    from neurolake.cluster.pool import gpu_share

    n_actors = workers or max(1, gpus)
    return n_actors, gpu_share(n_actors, gpus)
