"""Groups clustered by their activation profiles, per layer, as the NAP papers cluster them.

Each group's profile in a layer is its contrastive NAP (:mod:`neurolake.introspect.naps`), every
offset's units one after the other for event-aligned NAPs. Groups are joined by average linkage
with optimal leaf ordering (scipy) over cosine (default) or Euclidean distances between the
profiles, and the tree is cut into ``k`` clusters (``maxclust``) or where the merge distance
exceeds a ``threshold``, scipy's ``fcluster`` either way: cluster ids are fcluster's, and
``leaf_order`` is a group's place among the dendrogram's leaves (0 first), the order to list the
groups in so that similar ones sit together.

Assignments are derived data ``nap_clusters`` of the run and the ``nap_clusters`` view.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from scipy.cluster.hierarchy import fcluster, leaves_list, linkage
from scipy.spatial.distance import pdist

from neurolake.errors import SpecError
from neurolake.introspect.naps import NapResult
from neurolake.query.fingerprint import commits_fingerprint
from neurolake.schemas import NAP_CLUSTERS
from neurolake.store import Lake
from neurolake.store.tables import decode_parquet, encode_parquet

__all__ = ["METRICS", "NapClusters", "cluster_naps", "profile_linkage"]

METRICS = ("cosine", "euclidean")


def profile_linkage(profiles: np.ndarray, metric: str = "cosine") -> np.ndarray:
    """scipy linkage matrix of ``profiles`` ``[groups, dims]``: average linkage with optimal
    leaf ordering over ``metric`` distances."""
    if metric not in METRICS:
        raise SpecError(f"unknown distance {metric!r}; use one of {', '.join(METRICS)}")
    if profiles.shape[0] < 2:
        raise SpecError(f"clustering needs at least 2 groups, got {profiles.shape[0]}")
    distances = pdist(profiles, metric)
    if not np.all(np.isfinite(distances)):
        raise SpecError(
            f"some {metric} distances between the profiles are undefined (a profile of zeros or of a group "
            "without frames at some offset); use --metric euclidean or other groups"
        )
    return linkage(distances, method="average", optimal_ordering=True)


@dataclass(frozen=True)
class NapClusters:
    """Cluster of every group per layer: ``table`` in the ``nap_clusters`` view's rows,
    ``linkage[layer]`` the scipy linkage matrix."""

    run_id: str
    clustering_id: str
    nap_id: str
    metric: str
    k: int | None
    threshold: float | None
    table: pa.Table
    linkage: dict[str, np.ndarray]
    seconds: float
    reused: bool


def cluster_naps(
    lake: Lake, result: NapResult, *, k: int | None = None, threshold: float | None = None, metric: str = "cosine"
) -> NapClusters:
    """Clusters of the groups of ``result`` in each of its layers: ``k`` clusters, or cut at
    merge distance ``threshold`` (exactly one of the two)."""
    t0 = time.perf_counter()
    if (k is None) == (threshold is None):
        raise SpecError("give the number of clusters (--cluster K) or a distance to cut at (--cluster-threshold T)")
    n_groups = len(result.groups)
    if k is not None and not 1 <= k <= n_groups:
        raise SpecError(f"--cluster {k}: the number of clusters must lie in 1..{n_groups} (the groups)")
    if threshold is not None and not threshold >= 0:
        raise SpecError(f"--cluster-threshold {threshold}: a merge distance is at least 0")
    trees = {
        layer: profile_linkage(contrast.reshape(n_groups, -1), metric) for layer, contrast in result.contrastive.items()
    }
    run = lake.run(result.run_id)
    spec = {
        "run_id": result.run_id,
        "nap_id": result.nap_id,
        "metric": metric,
        "k": k,
        "threshold": threshold,
        "commits": commits_fingerprint(run),
    }
    derived = run.derived("nap_clusters", spec)
    reused = derived.complete
    if reused:
        table = decode_parquet(derived.read_bytes("clusters.parquet"))
    else:
        parts = []
        for layer, tree in trees.items():
            labels = fcluster(tree, k, "maxclust") if k is not None else fcluster(tree, threshold, "distance")
            leaf_order = np.empty(n_groups, dtype=np.int64)
            leaf_order[leaves_list(tree)] = np.arange(n_groups)
            parts.append(
                pa.table(
                    {
                        "run_id": pa.array([result.run_id] * n_groups, pa.string()),
                        "clustering_id": pa.array([derived.spec_hash] * n_groups, pa.string()),
                        "nap_id": pa.array([result.nap_id] * n_groups, pa.string()),
                        "layer": pa.array([layer] * n_groups, pa.string()),
                        "metric": pa.array([metric] * n_groups, pa.string()),
                        "group": pa.array(result.groups, pa.string()),
                        "cluster": pa.array(labels.astype(np.int64), pa.int64()),
                        "leaf_order": pa.array(leaf_order, pa.int64()),
                    },
                    schema=NAP_CLUSTERS,
                )
            )
        table = pa.concat_tables(parts)
        derived.write_bytes(encode_parquet(table), "clusters.parquet")
        derived.commit()
    return NapClusters(
        result.run_id,
        derived.spec_hash,
        result.nap_id,
        metric,
        k,
        threshold,
        table,
        trees,
        time.perf_counter() - t0,
        reused,
    )
