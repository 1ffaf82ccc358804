"""Linear probes over the lake: how well each layer's activations tell a property of the frames
or of the utterances.

Examples and labels come from the lake's metadata: a ``frames`` column (phoneme, reference token,
word error, ...) at frame level, or an ``utterances`` column (speaker, ...) at utterance level,
where an utterance's representation is the mean of its frames' activations (read in one
streaming pass, :func:`neurolake.introspect.naps.layer_sums`). The split never shares a speaker
between train and test: whole speakers, in a seeded order, go to the test side until it holds
``test_share`` of the examples. When the speaker is the target, whole utterances are held out
instead (frames at random when some speaker has a single utterance). Frame-level runs larger than ``max_frames`` are probed on a seeded
sample of that many frames (the output says so); rows are read chunk by chunk, never the run.

The probe is a multinomial logistic regression (scikit-learn) on standardised activations, L2-
regularised and fitted by L-BFGS; ``l1_ratio`` > 0 makes it an elastic net fitted by SAGA (slower:
on 8,000 frames x 256 units x 38 phonemes an elastic-net SGD fit took 41 s where L-BFGS took 7 s). Reported per layer: accuracy, macro-F1,
the majority-class baseline (the most frequent training class), and selectivity (Hewitt & Liang):
accuracy less that of the same probe on a control task whose labels are re-assigned at random per
type (per word for frame-level targets, per transcript for utterance-level ones), keeping the
label distribution. Classes with fewer than ``min_per_class`` training examples are left out and
listed. Results are derived data ``probes`` and the ``probes`` view.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from neurolake.errors import SpecError
from neurolake.query.engine import QueryEngine
from neurolake.query.fingerprint import commits_fingerprint
from neurolake.schemas import PROBES, SCHEMAS
from neurolake.store import Lake
from neurolake.store.tables import decode_parquet, encode_parquet

__all__ = ["Examples", "ProbeResult", "features", "prepare", "probe", "speaker_split", "standardised"]

LEVELS = ("frame", "utterance")


@dataclass(frozen=True)
class ProbeResult:
    run_id: str
    probe_id: str
    target: str
    level: str
    table: pa.Table  # one row per layer, the probes view's schema
    dropped: dict[str, int]  # classes left out -> their training examples
    sampled: bool
    seconds: float
    reused: bool


def speaker_split(speakers: np.ndarray, test_share: float, seed: int, what: str = "speakers") -> np.ndarray:
    """``[n] bool`` test mask: whole speakers (or any other groups), in a seeded order, until
    ``test_share`` of the examples."""
    names, counts = np.unique(speakers, return_counts=True)
    if names.size < 2:
        raise SpecError(f"a split that keeps {what} apart needs at least 2 {what}")
    order = np.random.default_rng(seed).permutation(names.size)
    chosen, held = [], 0
    for i in order:
        if held >= test_share * speakers.size or len(chosen) == names.size - 1:
            break
        chosen.append(names[i])
        held += counts[i]
    return np.isin(speakers, chosen)


def _examples(lake: Lake, run_id: str, target: str, level: str):
    frames = {f.name for f in SCHEMAS["frames"]}
    utterances = {f.name for f in SCHEMAS["utterances"]} - {"run_id"}
    quoted = '"' + target.replace('"', '""') + '"'
    with QueryEngine(lake) as q:
        if level == "frame":
            if target not in frames | utterances:
                raise SpecError(
                    f"--target {target!r} is not a frames or utterances column; frames has {', '.join(sorted(frames))}"
                )
            column = f"f.{quoted}" if target in frames else f"u.{quoted}"
            rows = q.sql(
                f"SELECT f.frame_id AS id, CAST({column} AS VARCHAR) AS label, u.speaker_id AS speaker, "
                "f.word AS type, u.first_frame_id AS utterance FROM frames f JOIN utterances u ON f.run_id = u.run_id "
                f"AND f.frame_id - f.frame_index = u.first_frame_id WHERE f.run_id = ? AND {column} IS NOT NULL "
                "ORDER BY f.frame_id",
                [run_id],
            )
        else:
            if target not in utterances:
                raise SpecError(
                    f"--target {target!r} is not an utterances column; utterances has {', '.join(sorted(utterances))}"
                )
            rows = q.sql(
                f"SELECT first_frame_id AS id, n_frames, CAST({quoted} AS VARCHAR) AS label, speaker_id AS speaker, "
                f"reference AS type, first_frame_id AS utterance FROM utterances WHERE run_id = ? AND {quoted} IS NOT NULL ORDER BY first_frame_id",
                [run_id],
            )
    return rows


@dataclass(frozen=True)
class Examples:
    """The labelled examples of a probe, sampled and split (what :func:`prepare` returns)."""

    ids: np.ndarray  # frame ids (frame level) or utterances' first frame ids (utterance level)
    labels: np.ndarray  # str
    control: np.ndarray  # str: the control task's labels
    train: np.ndarray  # bool: usable training examples
    test: np.ndarray  # bool: usable test examples
    classes: list[str]  # the classes kept
    dropped: dict[str, int]  # classes left out -> their training examples
    split: str
    sampled: bool
    utterances: pa.Table | None  # utterance level: the rows (with n_frames) for mean-pooling


def prepare(
    lake: Lake,
    run_id: str,
    target: str,
    *,
    level: str = "frame",
    max_frames: int = 50_000,
    test_share: float = 0.25,
    min_per_class: int = 10,
    seed: int = 0,
) -> Examples:
    """The examples of ``target``: read, sampled to ``max_frames``, split so that no speaker is on
    both sides (whole utterances when the target is the speaker), rare classes left out, and the
    control task's labels (module docstring). Every bad input is one :class:`SpecError`."""
    if level not in LEVELS:
        raise SpecError(f"--level must be one of {', '.join(LEVELS)}, got {level!r}")
    if not 0 < test_share < 1 or max_frames < 10 or min_per_class < 1:
        raise SpecError("test_share must lie in (0, 1), max_frames >= 10, min_per_class >= 1")
    rows = _examples(lake, run_id, target, level)
    labels = np.asarray(rows.column("label").to_pylist(), dtype=object)
    classes = sorted(set(labels.tolist()))
    if len(classes) < 2:
        raise SpecError(f"--target {target!r} has {len(classes)} class in run {run_id!r}; a probe needs at least 2")
    ids = rows.column("id").to_numpy().astype(np.int64)
    speakers = np.asarray(rows.column("speaker").to_pylist(), dtype=object).astype(str)
    types = np.asarray(rows.column("type").to_pylist(), dtype=object).astype(str)
    utterance_of = rows.column("utterance").to_numpy().astype(np.int64)
    sampled = level == "frame" and ids.size > max_frames
    if sampled:
        keep = np.sort(np.random.default_rng(seed).choice(ids.size, size=max_frames, replace=False))
        ids, labels, speakers, types, utterance_of = (
            ids[keep],
            labels[keep],
            speakers[keep],
            types[keep],
            utterance_of[keep],
        )
    if target == "speaker_id":  # speakers are the classes: hold out whole utterances, not speakers
        pairs = np.unique(np.stack([speakers, utterance_of.astype(str)]), axis=1)
        if np.unique(pairs[0], return_counts=True)[1].min() >= 2:
            test = speaker_split(utterance_of, test_share, seed, what="utterances")
            split = "utterance-disjoint (the target is the speaker)"
        else:  # some speaker has one utterance: its frames are split
            test = np.random.default_rng(seed).random(ids.size) < test_share
            split = "random (the target is the speaker, some with one utterance)"
    else:
        test = speaker_split(speakers, test_share, seed)
        split = "speaker-disjoint"
    train_counts = {c: int(((labels == c) & ~test).sum()) for c in classes}
    dropped = {c: n for c, n in train_counts.items() if n < min_per_class}
    usable = ~np.isin(labels, list(dropped))
    if len(classes) - len(dropped) < 2:
        raise SpecError(
            f"--target {target!r}: fewer than 2 classes have {min_per_class} training examples "
            f"({', '.join(f'{c}: {n}' for c, n in train_counts.items())}); lower --min-per-class"
        )
    if not (usable & test).any():
        raise SpecError("no test example is left after the split; raise --test-share")
    # Control task: every type gets a random label, drawn from the label distribution.
    rng = np.random.default_rng(seed + 1)
    distinct_types = np.unique(types)
    control_of = dict(zip(distinct_types, rng.choice(labels[usable], size=distinct_types.size), strict=True))
    control = np.array([control_of[t] for t in types], dtype=object).astype(str)
    return Examples(
        ids=ids,
        labels=labels.astype(str),
        control=control,
        train=usable & ~test,
        test=usable & test,
        classes=[c for c in classes if c not in dropped],
        dropped=dropped,
        split=split,
        sampled=bool(sampled),
        utterances=rows if level == "utterance" else None,
    )


def probe(
    lake: Lake,
    run_id: str,
    target: str,
    *,
    level: str = "frame",
    layers: Sequence[str] | None = None,
    max_frames: int = 50_000,
    test_share: float = 0.25,
    min_per_class: int = 10,
    l1_ratio: float = 0.0,
    seed: int = 0,
    out_dir: str | Path | None = None,
    progress: bool | None = None,
) -> ProbeResult:
    """Linear probes of ``target`` on every layer (module docstring)."""
    from neurolake.cluster.progress import progress_bar

    t0 = time.perf_counter()
    if not 0 <= l1_ratio <= 1:
        raise SpecError("l1_ratio must lie in [0, 1]")
    run = lake.run(run_id)
    layers = list(layers) if layers else run.layer_names
    for layer in layers:
        run.layer(layer)
    spec = {
        "run_id": run_id,
        "target": target,
        "level": level,
        "layers": layers,
        "max_frames": max_frames,
        "test_share": test_share,
        "min_per_class": min_per_class,
        "l1_ratio": l1_ratio,
        "seed": seed,
        "commits": commits_fingerprint(run),
    }
    derived = run.derived("probes", spec)
    ex = prepare(
        lake,
        run_id,
        target,
        level=level,
        max_frames=max_frames,
        test_share=test_share,
        min_per_class=min_per_class,
        seed=seed,
    )
    if derived.complete:
        table = decode_parquet(derived.read_bytes("probes.parquet"))
        if out_dir is not None:
            _render_curve(table, Path(out_dir) / f"probe-{target}-{level}.png")
        return ProbeResult(
            run_id, derived.spec_hash, target, level, table, ex.dropped, ex.sampled, time.perf_counter() - t0, True
        )

    out = []
    y_train, y_test = ex.labels[ex.train], ex.labels[ex.test]
    majority = max(set(y_train.tolist()), key=y_train.tolist().count)
    with progress_bar(len(layers), "probe", unit="layer", enabled=progress) as bar:
        for layer in layers:
            x_train, x_test = standardised(features(run, layer, ex), ex)
            accuracy, macro_f1 = _fit_score(x_train, x_test, y_train, y_test, seed, l1_ratio)
            control_accuracy, _ = _fit_score(x_train, x_test, ex.control[ex.train], ex.control[ex.test], seed, l1_ratio)
            out.append(
                {
                    "run_id": run_id,
                    "probe_id": derived.spec_hash,
                    "target": target,
                    "level": level,
                    "layer": layer,
                    "split": ex.split,
                    "n_train": int(ex.train.sum()),
                    "n_test": int(ex.test.sum()),
                    "n_classes": len(ex.classes),
                    "accuracy": accuracy,
                    "macro_f1": macro_f1,
                    "baseline": float(np.mean(y_test == majority)),
                    "control_accuracy": control_accuracy,
                    "selectivity": accuracy - control_accuracy,
                    "sampled": ex.sampled,
                }
            )
            bar.update(1)
    table = pa.Table.from_pylist(out, schema=PROBES)
    derived.write_bytes(encode_parquet(table), "probes.parquet")
    derived.commit()
    if out_dir is not None:
        _render_curve(table, Path(out_dir) / f"probe-{target}-{level}.png")
    return ProbeResult(
        run_id, derived.spec_hash, target, level, table, ex.dropped, ex.sampled, time.perf_counter() - t0, False
    )


def standardised(x: np.ndarray, ex: Examples) -> tuple[np.ndarray, np.ndarray]:
    """``(train, test)`` rows of ``x``, standardised with the training rows' mean and deviation."""
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x[ex.train])
    return scaler.transform(x[ex.train]), scaler.transform(x[ex.test])


def _fit(x_train: np.ndarray, y_train: np.ndarray, seed: int, l1_ratio: float, tol: float = 1e-4) -> Any:
    """A multinomial logistic probe fitted on ``x_train``: L2-regularised (L-BFGS) when
    ``l1_ratio`` is 0, elastic net (SAGA) otherwise, to tolerance ``tol``."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    if l1_ratio > 0:
        clf = LogisticRegression(l1_ratio=l1_ratio, solver="saga", C=1.0, max_iter=200, tol=tol, random_state=seed)
    else:
        clf = LogisticRegression(C=1.0, max_iter=300, tol=tol, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return clf.fit(x_train, y_train)


def _fit_score(
    x_train: np.ndarray, x_test: np.ndarray, y_train: np.ndarray, y_test: np.ndarray, seed: int, l1_ratio: float
) -> tuple[float, float]:
    """Test accuracy and macro-F1 of a probe fitted on the training rows (:func:`_fit`)."""
    from sklearn.metrics import accuracy_score, f1_score

    predicted = _fit(x_train, y_train, seed, l1_ratio).predict(x_test)
    return float(accuracy_score(y_test, predicted)), float(
        f1_score(y_test, predicted, average="macro", zero_division=0)
    )


def features(run, layer: str, ex: Examples) -> np.ndarray:
    """``layer``'s rows of the examples (float32): frame rows, or each utterance's mean over its
    frames in one streaming pass."""
    ids, utterances = ex.ids, ex.utterances
    if utterances is None:
        return np.asarray(run.read_rows(layer, ids), dtype=np.float32)
    from neurolake.introspect.naps import Pairs, layer_sums

    counts = utterances.column("n_frames").to_numpy().astype(np.int64)
    frame_ids = np.repeat(ids, counts) + (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts))
    slots = np.repeat(np.arange(ids.size), counts)

    sums = layer_sums(run, layer, Pairs.of(frame_ids, slots), ids.size)
    return (sums / counts[:, None]).astype(np.float32)


def _render_curve(table: pa.Table, path: Path) -> Path:
    from neurolake.introspect.figures import pyplot

    plt = pyplot()

    path.parent.mkdir(parents=True, exist_ok=True)
    rows = table.to_pylist()
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(x, [r["accuracy"] for r in rows], marker="o", label="probe")
    ax.plot(x, [r["control_accuracy"] for r in rows], marker="s", label="control task")
    ax.plot(x, [r["baseline"] for r in rows], ls="--", color="#888888", label="majority class")
    ax.set_xticks(x, [r["layer"] for r in rows], rotation=30, ha="right")
    ax.set_ylabel(f"test accuracy ({rows[0]['split'].split(' (')[0]} split)")
    ax.set_title(f"{rows[0]['target']} ({rows[0]['level']} level)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
