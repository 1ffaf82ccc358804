"""Topographic activation maps: a layer's units laid out in 2D so that units with similar activation
profiles sit together, and each group's profile painted onto that layout.

A unit's features are its NAP over the groups compared (:mod:`neurolake.introspect.naps`), one
value per group, z-scored per unit so that units are near when they prefer the same groups,
whatever their scale. Units that never respond (the same NAP value in every group) are dropped.
Layouts, all through well-kept libraries: ``som`` (``minisom``: each unit at its best-matching
node of a square map), ``force`` (``networkx`` spring layout of the graph joining every unit to its
8 most similar units by cosine similarity), ``pca``, ``tsne`` (``scikit-learn``) and ``umap``
(``umap-learn``). Positions are scaled into the unit square.

A map is rendered per group on a ``size x size`` grid: each cell is the mean NAP value of the units
in it, empty cells filled by normalised Gaussian smoothing, one colour scale shared by every
group's map. Smoothness, as ANN-topomaps measures it, is the mean squared difference between a
rendered map and its blurred copy plus that against a copy downscaled by 4 and scaled back,
over the map's variance: lower is smoother, a random layout scores high.

Layouts are derived data of the run (``topomaps``, and the ``topomaps`` view: one row per unit
and layout with its position): the same request reads them back instead of laying out again.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from neurolake.errors import SpecError
from neurolake.schemas import TOPOMAPS
from neurolake.store.tables import decode_parquet, encode_parquet

__all__ = ["METHODS", "MIN_UNITS", "TopoMap", "layout", "render", "smoothness", "topomap", "unit_features"]

METHODS = ("som", "force", "pca", "tsne", "umap")
#: Fewest responding units each layout needs.
MIN_UNITS = {"som": 4, "force": 4, "pca": 3, "tsne": 6, "umap": 6}


def unit_features(profiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(kept unit indices, [kept, groups] features)`` from NAPs ``[groups, units]``: units
    that respond differently to some group, each z-scored over the groups."""
    spread = profiles.std(axis=0)
    kept = np.flatnonzero(spread > 1e-12 * max(1.0, float(np.abs(profiles).max(initial=0.0))))
    features = (profiles[:, kept] - profiles[:, kept].mean(axis=0)) / spread[kept]
    return kept, features.T


def layout(features: np.ndarray, method: str, seed: int = 0) -> np.ndarray:
    """``[units, 2]`` positions in the unit square for ``features`` ``[units, dims]``."""
    if method not in METHODS:
        raise SpecError(f"unknown layout {method!r}; use one of {', '.join(METHODS)}")
    n = features.shape[0]
    if n < MIN_UNITS[method]:
        raise SpecError(f"the {method} layout needs at least {MIN_UNITS[method]} responding units, got {n}")
    if method == "pca":
        from sklearn.decomposition import PCA

        pos = PCA(n_components=2, random_state=seed).fit_transform(_pad(features))
    elif method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = float(min(30.0, (n - 1) / 3))
        pos = TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(_pad(features))
    elif method == "umap":
        import umap

        pos = umap.UMAP(n_neighbors=min(15, n - 1), random_state=seed, n_jobs=1).fit_transform(_pad(features))
    elif method == "som":
        from minisom import MiniSom

        side = max(2, int(np.ceil(np.sqrt(n))))
        som = MiniSom(side, side, features.shape[1], sigma=max(1.0, side / 4), learning_rate=0.5, random_seed=seed)
        som.random_weights_init(features)
        som.train_random(features, 200 * n)
        jitter = np.random.default_rng(seed).uniform(-0.3, 0.3, (n, 2))  # units sharing a node stay visible
        pos = np.array([som.winner(x) for x in features], dtype=np.float64) + jitter
    else:
        import networkx as nx

        unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
        similarity = unit @ unit.T
        graph = nx.Graph()
        graph.add_nodes_from(range(n))
        k = min(8, n - 1)
        for i in range(n):
            for j in np.argsort(-similarity[i])[1 : k + 1]:
                graph.add_edge(i, int(j), weight=float(max(similarity[i, j], 0.0)) + 1e-3)
        placed = nx.spring_layout(graph, seed=seed, weight="weight")
        pos = np.array([placed[i] for i in range(n)])
    pos = np.asarray(pos, dtype=np.float64)
    low, span = pos.min(axis=0), np.ptp(pos, axis=0)
    return (pos - low) / np.where(span > 0, span, 1.0)


def _pad(features: np.ndarray) -> np.ndarray:
    """At least two feature columns (a map of two groups has only one informative one)."""
    return features if features.shape[1] >= 2 else np.hstack([features, np.zeros_like(features)])


def render(positions: np.ndarray, values: np.ndarray, size: int = 32, sigma: float = 1.0) -> np.ndarray:
    """``[size, size]`` map: each cell the mean value of the units in it, empty cells filled by
    normalised Gaussian smoothing (cells far from every unit are NaN)."""
    from scipy.ndimage import gaussian_filter

    cells = np.minimum((positions * size).astype(int), size - 1)
    total = np.zeros((size, size))
    count = np.zeros((size, size))
    np.add.at(total, (cells[:, 1], cells[:, 0]), values)
    np.add.at(count, (cells[:, 1], cells[:, 0]), 1.0)
    smooth_total, smooth_count = gaussian_filter(total, sigma), gaussian_filter(count, sigma)
    with np.errstate(invalid="ignore", divide="ignore"):
        image = np.where(count > 0, total / np.maximum(count, 1), smooth_total / smooth_count)
    image[(count == 0) & (smooth_count < 1e-3)] = np.nan
    return image


def smoothness(image: np.ndarray) -> float:
    """ANN-topomaps' smoothness of a map (lower is smoother): squared differences against a
    blurred copy and against a 4x downscaled-and-upscaled copy, over the map's variance."""
    from scipy.ndimage import gaussian_filter, zoom

    filled = np.where(np.isnan(image), np.nanmean(image), image)
    variance = float(filled.var())
    if variance == 0:
        return 0.0
    blurred = gaussian_filter(filled, 1.0)
    small = zoom(filled, 0.25, order=1)
    back = zoom(small, np.array(filled.shape) / np.array(small.shape), order=1)
    return float((np.mean((filled - blurred) ** 2) + np.mean((filled - back) ** 2)) / variance)


@dataclass(frozen=True)
class TopoMap:
    """One layout of one layer: ``units`` kept, their ``positions``, one map per group.

    ``topomap_id`` names the stored layout (derived data ``topomaps``, the ``topomaps`` view);
    ``reused`` says it was read back rather than computed, ``seconds`` is the layout's runtime
    when it was computed."""

    layer: str
    method: str
    groups: list[str]
    units: np.ndarray
    positions: np.ndarray
    maps: np.ndarray  # [groups, size, size]
    smoothness: float  # mean over the groups' maps
    seconds: float
    topomap_id: str
    nap_id: str
    reused: bool
    figure: str | None = None


def topomap(
    lake,
    run_id: str,
    layer: str,
    *,
    groups: Sequence[str] | None = None,
    by: str | None = None,
    methods: Sequence[str] = METHODS,
    size: int = 32,
    seed: int = 0,
    out_dir: str | Path | None = None,
    mark: Sequence[int] = (),
    progress: bool | None = None,
) -> list[TopoMap]:
    """Topographic maps of ``layer`` over the groups' NAPs, one per layout method; with
    ``out_dir`` one PNG per method (a panel per group, one shared colour scale), the units
    ``mark`` (say, a finding's) circled where they sit.

    Each layout is derived data ``topomaps`` keyed by the NAPs it lays out (their id names the
    groups and the run's commits), the method, map size and seed: asked again, it is read back,
    not computed."""
    from neurolake.introspect.naps import naps
    from neurolake.query.fingerprint import commits_fingerprint

    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise SpecError(f"unknown layout {unknown[0]!r}; use some of {', '.join(METHODS)}")
    if size < 4:
        raise SpecError(f"--size must be at least 4 cells, got {size}")
    result = naps(lake, run_id, groups=groups, by=by, layers=[layer], progress=progress)
    profiles = result.mean[layer][:, 0]  # [groups, units]
    if profiles.shape[0] < 2:
        raise SpecError("a topographic map compares at least 2 groups")
    kept, features = unit_features(profiles)
    run = lake.run(run_id)
    commits = commits_fingerprint(run)
    out = []
    for method in methods:
        spec = {
            "run_id": run_id,
            "layer": layer,
            "nap_id": result.nap_id,
            "method": method,
            "size": size,
            "seed": seed,
            "commits": commits,
        }
        derived = run.derived("topomaps", spec)
        reused = derived.complete
        if reused:
            stored = decode_parquet(derived.read_bytes("topomap.parquet"))
            units = stored.column("unit").to_numpy()
            positions = np.column_stack([stored.column("x").to_numpy(), stored.column("y").to_numpy()])
            seconds = float(stored.column("seconds")[0].as_py())
            score = float(stored.column("smoothness")[0].as_py())
            maps = _maps(positions, profiles[:, units], size)
        else:
            units = kept
            t0 = time.perf_counter()
            positions = layout(features, method, seed)
            seconds = time.perf_counter() - t0
            maps = _maps(positions, profiles[:, units], size)
            score = float(np.mean([smoothness(m) for m in maps]))
            table = _table(run_id, derived.spec_hash, result.nap_id, layer, method, units, positions, score, seconds)
            derived.write_bytes(encode_parquet(table), "topomap.parquet")
            derived.commit()
        figure = None
        if out_dir is not None:
            marked = positions[np.isin(units, list(mark))] * size - 0.5
            path = Path(out_dir) / f"topomap-{layer}-{method}.png"
            figure = str(_render_maps(maps, result.groups, path, layer, method, marked))
        out.append(
            TopoMap(
                layer,
                method,
                list(result.groups),
                units,
                positions,
                maps,
                score,
                seconds,
                derived.spec_hash,
                result.nap_id,
                reused,
                figure,
            )
        )
    return out


def _maps(positions: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    """``[groups, size, size]``: one map per row of ``values`` ``[groups, units]``."""
    return np.stack([render(positions, row, size) for row in values])


def _table(run_id, topomap_id, nap_id, layer, method, units, positions, score, seconds) -> pa.Table:
    n = units.size
    return pa.table(
        {
            "run_id": pa.array([run_id] * n, pa.string()),
            "topomap_id": pa.array([topomap_id] * n, pa.string()),
            "nap_id": pa.array([nap_id] * n, pa.string()),
            "layer": pa.array([layer] * n, pa.string()),
            "method": pa.array([method] * n, pa.string()),
            "unit": pa.array(units, pa.int64()),
            "x": pa.array(positions[:, 0], pa.float64()),
            "y": pa.array(positions[:, 1], pa.float64()),
            "smoothness": pa.array([score] * n, pa.float64()),
            "seconds": pa.array([seconds] * n, pa.float64()),
        },
        schema=TOPOMAPS,
    )


def _render_maps(
    maps: np.ndarray, groups: Sequence[str], path: Path, layer: str, method: str, marked: np.ndarray
) -> Path:
    from neurolake.introspect.figures import pyplot

    plt = pyplot()

    path.parent.mkdir(parents=True, exist_ok=True)
    n = len(groups)
    cols = min(n, 6)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.2 * rows + 0.4), squeeze=False)
    low, high = float(np.nanmin(maps)), float(np.nanmax(maps))
    for ax in axes.ravel():
        ax.axis("off")
    image = None
    for g, name in enumerate(groups):
        ax = axes.ravel()[g]
        image = ax.imshow(maps[g], vmin=low, vmax=high, cmap="viridis", origin="lower")
        if marked.size:
            ax.scatter(marked[:, 0], marked[:, 1], s=40, facecolors="none", edgecolors="#ff3b30", linewidths=1.2)
        ax.set_title(str(name), fontsize=9)
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, label="mean activation")
    fig.suptitle(f"{layer}: {method} layout" + (" (circled: the finding's units)" if marked.size else ""))
    fig.savefig(path)
    plt.close(fig)
    return path
