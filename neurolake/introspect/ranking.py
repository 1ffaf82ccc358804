"""Neuron rankings: which units of a layer carry a property, how few of them suffice, which of
them say the same thing, and what the model loses without them.

The examples, split and control labels are the probe's (:func:`neurolake.introspect.probe.prepare`:
speaker-disjoint, sampled to ``max_frames``). Three rankings of a layer's units, each over all
classes and per class, on the standardised training rows:

- ``probe``: the weight mass of the full probe (L2 multinomial logistic regression), ``|w_ci|``
  per class and ``sum_c |w_ci|`` overall, as NeuroX orders neurons;
- ``classmean``: probeless (Antverg & Belinkov, 2022): the summed absolute differences between a
  unit's class means over all pairs of classes; per class, the class mean against the rest's;
- ``mi``: the mutual information between the unit's activation, cut into ``bins`` quantile bins
  of the training rows, and the label (plug-in estimate in nats); per class, with its indicator.

For each overall ranking, probes are retrained on its top ``k`` units for ``k = 1, 2, 4, ...`` up
to all, against the ``bottom`` k of the probe ranking and ``random`` k (the mean over ``draws``
seeded draws). The minimal subset of a ranking is its smallest top k whose accuracy reaches
``share`` of the full probe's, found by bisection between the curve's points (accuracy is taken to
grow with k).

Redundancy: the units' correlations over the examples, accumulated block by block (sums and
``X^T X``, never the rows at once), clustered by average linkage on ``1 - |r|`` and cut where
``|r| >= redundancy``: units of one cluster carry the same signal.

In the model: ``ablate=K`` sets the top K units of the probe ranking (over all classes, or of
``ablate_class``) to zero while the run's utterances are decoded again
(:func:`neurolake.introspect.ablation.ablate`, with random K-unit controls), which tells whether
what a probe reads is what the model uses.

Results are derived data ``rankings`` with the ``neuron_rankings`` and ``ranking_curves`` views.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from neurolake.errors import SpecError
from neurolake.introspect.probe import Examples, _fit, features, prepare, standardised
from neurolake.query.fingerprint import commits_fingerprint
from neurolake.schemas import NEURON_RANKINGS, RANKING_CURVES
from neurolake.store import Lake, Run
from neurolake.store.tables import decode_parquet, encode_parquet

__all__ = [
    "METHODS",
    "Ranking",
    "class_mean_scores",
    "minimal_k",
    "mutual_information",
    "probe_weight_scores",
    "rank_neurons",
    "redundancy_clusters",
    "streaming_correlation",
]

METHODS = ("probe", "classmean", "mi")
BLOCK_ROWS = 16_384


@dataclass
class Ranking:
    """What :func:`rank_neurons` found (also stored; the views hold the tables)."""

    run_id: str
    ranking_id: str
    target: str
    level: str
    rankings: pa.Table  # the neuron_rankings view's rows
    curves: pa.Table  # the ranking_curves view's rows
    layers: list[dict[str, Any]]  # per layer: accuracy, baseline, minimal k, clusters, ablation
    split: str = ""
    sampled: bool = False
    dropped: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    reused: bool = False

    def order(self, layer: str, method: str = "probe", cls: str | None = None) -> list[int]:
        """Units of ``layer``, most telling first."""
        rows = [
            r for r in self.rankings.to_pylist() if r["layer"] == layer and r["method"] == method and r["class"] == cls
        ]
        return [r["unit"] for r in sorted(rows, key=lambda r: r["rank"])]


def probe_weight_scores(coef: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """``(overall [units], per class [classes, units])`` weight mass of a fitted logistic probe's
    ``coef_`` (a binary probe has one row, the second class's; the first's is its negative)."""
    per_class = np.abs(coef)
    if n_classes == 2 and coef.shape[0] == 1:
        per_class = np.vstack([per_class, per_class])
    overall = np.abs(coef).sum(axis=0)
    return overall, per_class


def class_mean_scores(x: np.ndarray, y: np.ndarray, classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Probeless scores: overall ``sum_{c<c'} |mean_c - mean_c'|`` per unit, and per class
    ``|mean_c - mean of the other rows|``."""
    means = np.stack([x[y == c].mean(axis=0) for c in classes])  # [classes, units]
    overall = np.abs(means[:, None, :] - means[None, :, :]).sum(axis=(0, 1)) / 2
    per_class = np.stack([np.abs(means[i] - x[y != c].mean(axis=0)) for i, c in enumerate(classes)])
    return overall, per_class


def discretise(x: np.ndarray, bins: int) -> np.ndarray:
    """``[rows, units]`` bin numbers ``0..bins-1`` by each unit's quantiles."""
    edges = np.quantile(x, np.linspace(0, 1, bins + 1)[1:-1], axis=0)  # [bins-1, units]
    return np.stack([np.searchsorted(edges[:, j], x[:, j], side="right") for j in range(x.shape[1])], axis=1)


def _mi(joint: np.ndarray) -> np.ndarray:
    """Plug-in mutual information (nats) of ``[units, a, b]`` contingency counts."""
    n = joint.sum(axis=(1, 2), keepdims=True)
    p = joint / n
    outer = p.sum(axis=2, keepdims=True) * p.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p / outer), 0.0)
    return terms.sum(axis=(1, 2))


def mutual_information(binned: np.ndarray, y: np.ndarray, classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(overall [units], per class [classes, units])`` mutual information between each unit's
    bins and the label (overall) or the indicator of each class."""
    label = np.searchsorted(np.asarray(classes), y)
    n_bins = int(binned.max()) + 1
    joint = np.stack(
        [
            np.bincount(binned[:, j] * len(classes) + label, minlength=n_bins * len(classes))
            for j in range(binned.shape[1])
        ]
    ).reshape(binned.shape[1], n_bins, len(classes))
    overall = _mi(joint.astype(np.float64))
    per_class = []
    for c in range(len(classes)):
        inside = joint[:, :, c]
        per_class.append(_mi(np.stack([inside, joint.sum(axis=2) - inside], axis=2).astype(np.float64)))
    return overall, np.stack(per_class)


def streaming_correlation(blocks: Iterable[np.ndarray]) -> np.ndarray:
    """Pearson correlation ``[units, units]`` of the rows of ``blocks`` (float64 sums and
    cross-products, one block at a time). Units that never vary correlate 0 with all others."""
    n, total, cross = 0, None, None
    for block in blocks:
        block = np.asarray(block, dtype=np.float64)
        if total is None:
            total, cross = np.zeros(block.shape[1]), np.zeros((block.shape[1], block.shape[1]))
        n += block.shape[0]
        total += block.sum(axis=0)
        cross += block.T @ block
    if total is None or cross is None or n < 2:
        raise SpecError("a correlation needs at least 2 rows")
    mean = total / n
    cov = cross / n - np.outer(mean, mean)
    std = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = cov / np.outer(std, std)
    corr[~np.isfinite(corr)] = 0.0
    np.fill_diagonal(corr, 1.0)
    return np.clip(corr, -1.0, 1.0)


def redundancy_clusters(corr: np.ndarray, threshold: float) -> np.ndarray:
    """``[units]`` cluster numbers (from 1): average linkage on ``1 - |r|``, cut at ``1 - threshold``."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    if corr.shape[0] < 2:
        return np.ones(corr.shape[0], dtype=np.int64)
    distance = 1.0 - np.abs(corr)
    np.fill_diagonal(distance, 0.0)
    tree = linkage(squareform(distance, checks=False), method="average")
    return fcluster(tree, t=1.0 - threshold, criterion="distance").astype(np.int64)


def minimal_k(curve: dict[int, float], target: float, accuracy_of: Callable[[int], float]) -> int | None:
    """Smallest k with ``accuracy_of(k) >= target``: the first curve point that reaches it, then
    bisection down to the previous point (accuracy taken to grow with k). ``None``: no point does."""
    ks = sorted(curve)
    reached = [k for k in ks if curve[k] >= target]
    if not reached:
        return None
    hi = reached[0]
    below = [k for k in ks if k < hi]
    lo = below[-1] if below else 0  # accuracy_of(lo) < target (0 units: nothing)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if accuracy_of(mid) >= target:
            hi = mid
        else:
            lo = mid
    return hi


def _ks(n: int) -> list[int]:
    return sorted({*(2**i for i in range(int(np.log2(n)) + 1)), n})


def _accuracy(
    x_train: np.ndarray,
    x_test: np.ndarray,
    y_train: np.ndarray,
    y_test: np.ndarray,
    units: np.ndarray,
    seed: int,
) -> float:
    # Curve points to tolerance 1e-3: on the demo's conv7 (3,000 frames, 38 phonemes) that halved
    # the fits' time and moved accuracy by under 0.5 points.
    clf = _fit(x_train[:, units], y_train, seed, 0.0, tol=1e-3)
    return float(np.mean(clf.predict(x_test[:, units]) == y_test))


def _layer(
    run: Run,
    layer: str,
    ex: Examples,
    *,
    share: float,
    draws: int,
    bins: int,
    redundancy: float,
    seed: int,
) -> tuple[list[dict], list[dict], dict]:
    """One layer's ranking rows, curve rows and summary (without the ablation)."""
    x = features(run, layer, ex)
    x_train, x_test = standardised(x, ex)
    y_train, y_test = ex.labels[ex.train], ex.labels[ex.test]
    n_units = x.shape[1]

    full = _fit(x_train, y_train, seed, 0.0)
    full_accuracy = float(np.mean(full.predict(x_test) == y_test))
    fitted = [str(c) for c in full.classes_]
    scores: dict[str, tuple[np.ndarray, np.ndarray]] = {
        "probe": probe_weight_scores(full.coef_, len(fitted)),
        "classmean": class_mean_scores(x_train, y_train, fitted),
        "mi": mutual_information(discretise(x_train, bins), y_train, fitted),
    }
    used = np.flatnonzero(ex.train | ex.test)
    blocks = (x[used[i : i + BLOCK_ROWS]] for i in range(0, used.size, BLOCK_ROWS))
    clusters = redundancy_clusters(streaming_correlation(blocks), redundancy)

    orders = {m: np.argsort(-scores[m][0], kind="stable") for m in METHODS}
    target = share * full_accuracy
    ks = _ks(n_units)
    cache: dict[tuple[str, int], float] = {}

    def top(method: str) -> Callable[[int], float]:
        def accuracy_of(k: int) -> float:
            if k == n_units:
                return full_accuracy
            if (method, k) not in cache:
                cache[method, k] = _accuracy(x_train, x_test, y_train, y_test, orders[method][:k], seed)
            return cache[method, k]

        return accuracy_of

    curve_rows: list[dict] = []
    minimal: dict[str, int | None] = {}
    rng = np.random.default_rng(seed)
    for subset in (*METHODS, "bottom", "random"):
        points = {}
        for k in ks:
            if subset in METHODS:
                points[k] = top(subset)(k)
            elif subset == "bottom":
                points[k] = (
                    full_accuracy
                    if k == n_units
                    else _accuracy(x_train, x_test, y_train, y_test, orders["probe"][::-1][:k], seed)
                )
            else:
                points[k] = (
                    full_accuracy
                    if k == n_units
                    else float(
                        np.mean(
                            [
                                _accuracy(x_train, x_test, y_train, y_test, rng.choice(n_units, k, replace=False), seed)
                                for _ in range(draws)
                            ]
                        )
                    )
                )
            curve_rows.append(
                {
                    "layer": layer,
                    "subset": subset,
                    "k": k,
                    "accuracy": points[k],
                    "share_of_full": points[k] / full_accuracy,
                }
            )
        if subset in METHODS:
            minimal[subset] = minimal_k(points, target, top(subset))

    rank_rows: list[dict] = []
    for method in METHODS:
        overall, per_class = scores[method]
        chosen = set(orders[method][: minimal[method]].tolist()) if minimal[method] else set()
        for cls, values in [(None, overall), *zip(fitted, per_class, strict=True)]:
            order = np.argsort(-values, kind="stable")
            rank = np.empty(n_units, dtype=np.int64)
            rank[order] = np.arange(1, n_units + 1)
            rank_rows += [
                {
                    "layer": layer,
                    "method": method,
                    "class": cls,
                    "unit": u,
                    "rank": int(rank[u]),
                    "score": float(values[u]),
                    "cluster": int(clusters[u]),
                    "in_minimal": cls is None and u in chosen,
                }
                for u in range(n_units)
            ]
    summary = {
        "layer": layer,
        "units": n_units,
        "n_train": int(ex.train.sum()),
        "n_test": int(ex.test.sum()),
        "accuracy": full_accuracy,
        "baseline": float(np.mean(y_test == max(set(y_train.tolist()), key=y_train.tolist().count))),
        "minimal_k": minimal,
        "clusters": int(clusters.max()),
        "minimal_clusters": {
            m: (int(np.unique(clusters[orders[m][:k]]).size) if k else None) for m, k in minimal.items()
        },
    }
    return rank_rows, curve_rows, summary


def rank_neurons(
    lake: Lake,
    run_id: str,
    target: str,
    *,
    level: str = "frame",
    layers: Sequence[str] | None = None,
    max_frames: int = 20_000,
    test_share: float = 0.25,
    min_per_class: int = 10,
    share: float = 0.9,
    draws: int = 3,
    bins: int = 10,
    redundancy: float = 0.8,
    ablate: int | None = None,
    ablate_class: str | None = None,
    controls: int = 5,
    max_utterances: int = 50,
    workers: int | None = None,
    gpus: int | None = None,
    seed: int = 0,
    out_dir: str | Path | None = None,
    progress: bool | None = None,
) -> Ranking:
    """Rank every unit of ``layers`` for ``target`` (module docstring)."""
    from neurolake.cluster.progress import progress_bar

    t0 = time.perf_counter()
    if not 0 < share <= 1 or draws < 1 or bins < 2 or not 0 < redundancy < 1:
        raise SpecError("share must lie in (0, 1], draws >= 1, bins >= 2 and redundancy in (0, 1)")
    if ablate is not None and ablate < 1:
        raise SpecError("--ablate takes the number of top units to ablate (>= 1)")
    if ablate_class is not None and ablate is None:
        raise SpecError("--ablate-class CLASS needs --ablate K (how many of its top units)")
    run = lake.run(run_id)
    layers = list(layers) if layers else run.layer_names
    for layer in layers:
        units = run.layer(layer).units
        if ablate is not None and ablate >= units:
            raise SpecError(f"--ablate {ablate}: layer {layer!r} has only {units} units")
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
    spec = {
        "run_id": run_id,
        "target": target,
        "level": level,
        "layers": layers,
        "max_frames": max_frames,
        "test_share": test_share,
        "min_per_class": min_per_class,
        "share": share,
        "draws": draws,
        "bins": bins,
        "redundancy": redundancy,
        "ablate": ablate,
        "ablate_class": ablate_class,
        "controls": controls,
        "max_utterances": max_utterances,
        "seed": seed,
        "commits": commits_fingerprint(run),
    }
    if ablate is not None and ablate_class is not None and ablate_class not in ex.classes:
        # before any probe is fitted: a misspelt class costs nothing
        raise SpecError(f"--ablate-class {ablate_class!r} is not a class of {target!r} here: {', '.join(ex.classes)}")
    derived = run.derived("rankings", spec)
    result = Ranking(
        run_id, derived.spec_hash, target, level, pa.table({}), pa.table({}), [], ex.split, ex.sampled, ex.dropped
    )
    if derived.complete:
        result.rankings = decode_parquet(derived.read_bytes("rankings.parquet"))
        result.curves = decode_parquet(derived.read_bytes("curves.parquet"))
        result.layers = derived.read_json("layers.json")
        result.reused, result.seconds = True, time.perf_counter() - t0
        return result

    ids = {"run_id": run_id, "ranking_id": derived.spec_hash, "target": target}
    rank_rows: list[dict] = []
    curve_rows: list[dict] = []
    with progress_bar(len(layers), "rank", unit="layer", enabled=progress) as bar:
        for layer in layers:
            ranks, curve, summary = _layer(
                run, layer, ex, share=share, draws=draws, bins=bins, redundancy=redundancy, seed=seed
            )
            rank_rows += [{**ids, "level": level, **r} for r in ranks]
            curve_rows += [{**ids, **r} for r in curve]
            result.layers.append(summary)
            bar.update(1)
    result.rankings = pa.Table.from_pylist(rank_rows, schema=NEURON_RANKINGS)
    result.curves = pa.Table.from_pylist(curve_rows, schema=RANKING_CURVES)
    if ablate is not None:
        from neurolake.introspect.ablation import ablate as run_ablation

        for summary in result.layers:
            top = result.order(summary["layer"], "probe", ablate_class)[:ablate]
            done = run_ablation(
                lake,
                run_id,
                [f"{summary['layer']}:{u}" for u in top],
                controls=controls,
                max_utterances=max_utterances,
                seed=seed,
                workers=workers,
                gpus=gpus,
            )
            summary["ablation"] = {
                "ablation_id": done.ablation_id,
                "k": ablate,
                "class": ablate_class,
                "units": top,
                "cer": done.base.cer,
                "cer_ablated": done.ablated.cer,
                "cer_change": done.cer_change,
                "control_cer_changes": done.control_cer_changes,
            }
    derived.write_bytes(encode_parquet(result.rankings), "rankings.parquet")
    derived.write_bytes(encode_parquet(result.curves), "curves.parquet")
    derived.write_json(result.layers, "layers.json")
    derived.commit()
    if out_dir is not None:
        for summary in result.layers:
            render_curves(result, summary["layer"], Path(out_dir) / f"ranking-{target}-{summary['layer']}.png", share)
    result.seconds = time.perf_counter() - t0
    return result


def render_curves(result: Ranking, layer: str, path: Path, share: float) -> Path:
    """Accuracy against k (log scale) for every subset of ``layer``, with the full probe's share."""
    from neurolake.introspect.figures import pyplot

    plt = pyplot()
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [r for r in result.curves.to_pylist() if r["layer"] == layer]
    summary = next(s for s in result.layers if s["layer"] == layer)
    styles = {
        "probe": ("o", "-"),
        "classmean": ("s", "-"),
        "mi": ("^", "-"),
        "bottom": ("v", ":"),
        "random": ("x", "--"),
    }
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for subset, (marker, line) in styles.items():
        points = sorted((r["k"], r["accuracy"]) for r in rows if r["subset"] == subset)
        label = f"top k by {subset}" if subset in METHODS else f"{subset} k"
        ax.plot(*zip(*points, strict=True), marker=marker, ls=line, label=label)
    ax.axhline(share * summary["accuracy"], color="#888888", lw=0.8)
    ax.axhline(summary["baseline"], color="#bbbbbb", lw=0.8, ls="--")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("units kept (k)")
    ax.set_ylabel("probe test accuracy")
    ax.set_title(f"{result.target} from {layer}: minimal k {summary['minimal_k'].get('probe')}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
