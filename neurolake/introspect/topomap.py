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
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from neurolake.errors import SpecError
from neurolake.schemas import TOPOMAPS
from neurolake.store.tables import decode_parquet, encode_parquet

__all__ = [
    "METHODS",
    "MIN_UNITS",
    "REFINEMENTS",
    "Swarm",
    "TopoMap",
    "layout",
    "neighbour_distance",
    "refine_pso",
    "render",
    "render_many",
    "smoothness",
    "smoothness_many",
    "topomap",
    "unit_features",
]

METHODS = ("som", "force", "pca", "tsne", "umap")
#: Fewest responding units each layout needs.
MIN_UNITS = {"som": 4, "force": 4, "pca": 3, "tsne": 6, "umap": 6}
#: Refinements a layout may get after it is made.
REFINEMENTS = ("pso",)


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
    return render_many(positions[None], values[None], size, sigma)[0, 0]


def render_many(layouts: np.ndarray, values: np.ndarray, size: int = 32, sigma: float = 1.0) -> np.ndarray:
    """``[layouts, groups, size, size]``: :func:`render` of every group's ``values``
    ``[groups, units]`` on every layout of ``layouts`` ``[layouts, units, 2]``, at once."""
    from scipy.ndimage import gaussian_filter

    n_layouts, n_units, _ = layouts.shape
    n_groups = values.shape[0]
    cells = np.minimum((layouts * size).astype(int), size - 1)
    flat = cells[..., 1] * size + cells[..., 0]  # [layouts, units]: row y, column x
    plane = size * size
    slot = (np.arange(n_layouts)[:, None] * n_groups + np.arange(n_groups)[None, :])[:, :, None] * plane
    total = np.bincount(
        (slot + flat[:, None, :]).ravel(),
        weights=np.broadcast_to(values[None], (n_layouts, n_groups, n_units)).ravel(),
        minlength=n_layouts * n_groups * plane,
    ).reshape(n_layouts, n_groups, size, size)
    cell_of = (np.arange(n_layouts)[:, None] * plane + flat).ravel()
    count = np.bincount(cell_of, minlength=n_layouts * plane).reshape(n_layouts, 1, size, size)
    smooth_total = gaussian_filter(total, (0, 0, sigma, sigma))
    smooth_count = gaussian_filter(count.astype(np.float64), (0, 0, sigma, sigma))
    with np.errstate(invalid="ignore", divide="ignore"):
        image = np.where(count > 0, total / np.maximum(count, 1), smooth_total / smooth_count)
    image[np.broadcast_to((count == 0) & (smooth_count < 1e-3), image.shape)] = np.nan
    return image


def smoothness(image: np.ndarray) -> float:
    """ANN-topomaps' smoothness of a map (lower is smoother): squared differences against a
    blurred copy and against a 4x downscaled-and-upscaled copy, over the map's variance."""
    return float(smoothness_many(image[None, None])[0, 0])


def smoothness_many(images: np.ndarray) -> np.ndarray:
    """:func:`smoothness` of every map of ``images`` ``[..., size, size]``; ``[...]``."""
    from scipy.ndimage import gaussian_filter, zoom

    lead = images.shape[:-2]
    maps = images.reshape(-1, *images.shape[-2:])
    with np.errstate(invalid="ignore"):
        fill = np.nanmean(maps, axis=(1, 2), keepdims=True)
    filled = np.where(np.isnan(maps), fill, maps)
    variance = filled.var(axis=(1, 2))
    blurred = gaussian_filter(filled, (0, 1.0, 1.0))
    small = zoom(filled, (1, 0.25, 0.25), order=1)
    back = zoom(small, (1, filled.shape[1] / small.shape[1], filled.shape[2] / small.shape[2]), order=1)
    error = ((filled - blurred) ** 2).mean(axis=(1, 2)) + ((filled - back) ** 2).mean(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        score = np.where(variance > 0, error / variance, 0.0)
    return score.reshape(lead)


def neighbour_distance(layouts: np.ndarray, distances: np.ndarray, k: int = 8) -> np.ndarray:
    """``[layouts]``: per layout ``[layouts, units, 2]``, the mean feature distance
    (``distances`` ``[units, units]``) from each unit to its ``k`` nearest units on the layout.
    Low when neighbours on the map respond alike; a random layout scores the mean distance."""
    n = layouts.shape[1]
    k = min(k, n - 1)
    apart = np.linalg.norm(layouts[:, :, None, :] - layouts[:, None, :, :], axis=-1)
    apart[:, np.arange(n), np.arange(n)] = np.inf
    nearest = np.argpartition(apart, k - 1, axis=2)[:, :, :k]
    return np.take_along_axis(np.broadcast_to(distances, apart.shape), nearest, axis=2).mean(axis=(1, 2))


@dataclass(frozen=True)
class Swarm:
    """Particle-swarm settings: Clerc and Kennedy's constriction coefficients (``inertia``,
    ``cognitive``, ``social``), the particles' start spread around the layout (standard deviation,
    in map widths; steps are capped at twice it), and how much worse the neighbour distance may
    get (a share of the start's)."""

    particles: int = 16
    iterations: int = 60
    inertia: float = 0.7298
    cognitive: float = 1.49618
    social: float = 1.49618
    spread: float = 0.05
    tolerance: float = 0.05


def refine_pso(
    positions: np.ndarray,
    values: np.ndarray,
    features: np.ndarray,
    size: int = 32,
    *,
    seed: int = 0,
    swarm: Swarm = Swarm(),
) -> np.ndarray:
    """A layout ``[units, 2]`` refined by a global-best particle swarm to make the maps smoother.

    Each particle is a whole layout; the swarm starts at ``positions`` (one particle exactly
    there, the others displaced by Gaussian noise of sd ``spread``) and moves by
    ``v <- inertia v + cognitive r1 (own best - x) + social r2 (swarm best - x)``, ``r1, r2``
    uniform per coordinate, steps capped at ``2 spread``, positions kept in the unit square
    (settings in ``swarm``).
    A particle's cost is the mean :func:`smoothness` of the groups' maps (``values``
    ``[groups, units]`` rendered at ``size``), on condition that its :func:`neighbour_distance`
    over ``features`` ``[units, dims]`` is at most ``1 + tolerance`` times the start's: without
    it the swarm smooths the maps by mixing units of unlike profiles into shared cells (on
    three planted clusters of units laid out by PCA, the share of each unit's 3 nearest units
    from its own cluster fell from 100 % to 93 %). The start is a particle and feasible, so the result is never less
    smooth than it. Seeded: the same arguments give the same layout.
    """
    from scipy.spatial.distance import pdist, squareform

    particles, spread = swarm.particles, swarm.spread
    if particles < 2 or swarm.iterations < 1 or spread <= 0 or swarm.tolerance < 0:
        raise SpecError("a particle swarm needs particles >= 2, iterations >= 1, spread > 0, tolerance >= 0")
    rng = np.random.default_rng(seed)
    distances = squareform(pdist(features))
    limit = float(neighbour_distance(positions[None], distances)[0]) * (1 + swarm.tolerance)

    def cost(layouts: np.ndarray) -> np.ndarray:
        score = smoothness_many(render_many(layouts, values, size)).mean(axis=1)
        return np.where(neighbour_distance(layouts, distances) <= limit, score, np.inf)

    x = np.clip(positions[None] + rng.normal(0.0, spread, (particles, *positions.shape)), 0.0, 1.0)
    x[0] = positions
    velocity = rng.normal(0.0, spread / 2, x.shape)
    own_best, own_cost = x.copy(), cost(x)
    best = int(np.argmin(own_cost))
    for _ in range(swarm.iterations):
        r1, r2 = rng.random(x.shape), rng.random(x.shape)
        velocity = (
            swarm.inertia * velocity + swarm.cognitive * r1 * (own_best - x) + swarm.social * r2 * (own_best[best] - x)
        )
        velocity = np.clip(velocity, -2 * spread, 2 * spread)
        x = np.clip(x + velocity, 0.0, 1.0)
        now = cost(x)
        better = now < own_cost
        own_best[better], own_cost[better] = x[better], now[better]
        best = int(np.argmin(own_cost))
    return own_best[best].copy()


@dataclass(frozen=True)
class TopoMap:
    """One layout of one layer: ``units`` kept, their ``positions``, one map per group.

    ``topomap_id`` names the stored layout (derived data ``topomaps``, the ``topomaps`` view);
    ``reused`` says it was read back rather than computed, ``seconds`` is the layout's runtime
    when it was computed."""

    layer: str
    method: str
    refine: str | None
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
    refine: str | None = None,
    progress: bool | None = None,
) -> list[TopoMap]:
    """Topographic maps of ``layer`` over the groups' NAPs, one per layout method; with
    ``out_dir`` one PNG per method (a panel per group, one shared colour scale), the units
    ``mark`` (say, a finding's) circled where they sit. ``refine="pso"`` refines every layout
    with :func:`refine_pso` (default :class:`Swarm` settings, seeded by ``seed``).

    Each layout is derived data ``topomaps`` keyed by the NAPs it lays out (their id names the
    groups and the run's commits), the method, its refinement, map size and seed: asked again,
    it is read back, not computed."""
    from neurolake.introspect.naps import naps
    from neurolake.query.fingerprint import commits_fingerprint

    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise SpecError(f"unknown layout {unknown[0]!r}; use some of {', '.join(METHODS)}")
    if refine is not None and refine not in REFINEMENTS:
        raise SpecError(f"unknown refinement {refine!r}; use {', '.join(REFINEMENTS)}")
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
            "refine": refine,
            "swarm": asdict(Swarm()) if refine == "pso" else None,
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
            if refine == "pso":
                positions = refine_pso(positions, profiles[:, units], features, size, seed=seed)
            seconds = time.perf_counter() - t0
            maps = _maps(positions, profiles[:, units], size)
            score = float(smoothness_many(maps).mean())
            table = _table(
                run_id, derived.spec_hash, result.nap_id, layer, method, refine, units, positions, score, seconds
            )
            derived.write_bytes(encode_parquet(table), "topomap.parquet")
            derived.commit()
        figure = None
        if out_dir is not None:
            marked = positions[np.isin(units, list(mark))] * size - 0.5
            name = method + (f"-{refine}" if refine else "")
            path = Path(out_dir) / f"topomap-{layer}-{name}.png"
            figure = str(_render_maps(maps, result.groups, path, layer, name, marked))
        out.append(
            TopoMap(
                layer,
                method,
                refine,
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
    return render_many(positions[None], values, size)[0]


def _table(run_id, topomap_id, nap_id, layer, method, refine, units, positions, score, seconds) -> pa.Table:
    n = units.size
    return pa.table(
        {
            "run_id": pa.array([run_id] * n, pa.string()),
            "topomap_id": pa.array([topomap_id] * n, pa.string()),
            "nap_id": pa.array([nap_id] * n, pa.string()),
            "layer": pa.array([layer] * n, pa.string()),
            "method": pa.array([method] * n, pa.string()),
            "refine": pa.array([refine] * n, pa.string()),
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
