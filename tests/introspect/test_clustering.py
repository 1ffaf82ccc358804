"""NAP clusters: the same labels and leaf order as scipy on the same profiles, planted clusters
found, stored and reused, queryable, and bad input as one line."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.cluster.hierarchy import fcluster, leaves_list, linkage
from scipy.spatial.distance import pdist

from neurolake.errors import SpecError
from neurolake.introspect.clustering import cluster_naps, profile_linkage
from neurolake.introspect.naps import naps
from neurolake.query.engine import QueryEngine
from neurolake.store import Lake
from tests.store.partdata import LAYERS, create_run, expected_rows, write_part


@pytest.fixture
def lake(tmp_path):
    lake = Lake.create(str(tmp_path / "lake"))
    run = create_run(lake)
    for part in run.plan.parts:
        write_part(run, part.part_id)
    return lake


def test_planted_clusters_of_profiles_are_found():
    rng = np.random.default_rng(0)
    prototypes = rng.standard_normal((3, 40))
    planted = np.repeat(np.arange(3), [4, 3, 5])
    profiles = prototypes[planted] + 0.1 * rng.standard_normal((12, 40))
    labels = fcluster(profile_linkage(profiles), 3, "maxclust")
    # the same partition as planted, whatever the numbering
    assert len({(a, b) for a, b in zip(planted, labels, strict=True)}) == 3 and len(set(labels)) == 3
    order = leaves_list(profile_linkage(profiles))
    assert np.count_nonzero(np.diff(planted[order])) == 2  # each planted cluster is contiguous in leaf order


@pytest.mark.parametrize(("metric", "k", "threshold"), [("cosine", 2, None), ("euclidean", None, 1.0)])
def test_stored_clusters_equal_scipy_on_the_same_profiles(lake, metric, k, threshold):
    result = naps(lake, "r1", by="utterance_id", max_groups=30, progress=False)
    clusters = cluster_naps(lake, result, k=k, threshold=threshold, metric=metric)
    assert not clusters.reused and clusters.table.num_rows == 30 * len(LAYERS)
    first = _first_frames(lake, result.groups)
    for li, spec in enumerate(LAYERS):
        # the profiles from the known activations, not from the NAP code
        means = np.stack(
            [
                expected_rows(li, spec.units, np.arange(f, f + n)).astype(np.float64).mean(axis=0)
                for f, n in zip(first, result.counts[:, 0], strict=True)
            ]
        )
        tree = linkage(pdist(means - means.mean(axis=0), metric), method="average", optimal_ordering=True)
        expected = fcluster(tree, k, "maxclust") if k is not None else fcluster(tree, threshold, "distance")
        rows = clusters.table.filter(np.asarray(clusters.table.column("layer").to_pylist()) == spec.name).to_pydict()
        assert rows["group"] == result.groups
        assert rows["cluster"] == expected.tolist(), spec.name
        assert [rows["group"][i] for i in np.argsort(rows["leaf_order"])] == [
            result.groups[i] for i in leaves_list(tree)
        ]
        assert 1 < len(set(expected)) < 30  # the cut is neither trivial nor all singletons
    again = cluster_naps(lake, result, k=k, threshold=threshold, metric=metric)
    assert again.reused and again.clustering_id == clusters.clustering_id and again.table.equals(clusters.table)
    with QueryEngine(lake) as q:
        view = q.sql(
            'SELECT layer, "group", cluster, leaf_order FROM nap_clusters WHERE clustering_id = ? ORDER BY layer, leaf_order',
            [clusters.clustering_id],
        ).to_pylist()
    stored = sorted(
        clusters.table.select(["layer", "group", "cluster", "leaf_order"]).to_pylist(),
        key=lambda r: (r["layer"], r["leaf_order"]),
    )
    assert view == stored


def _first_frames(lake, utterances):
    with QueryEngine(lake) as q:
        rows = q.sql("SELECT utterance_id, first_frame_id FROM utterances").to_pylist()
    first = {r["utterance_id"]: r["first_frame_id"] for r in rows}
    return [first[u] for u in utterances]


def test_bad_clustering_requests_are_one_line(lake, capsys):
    from neurolake.cli import main

    result = naps(lake, "r1", by="speaker_id", progress=False)
    with pytest.raises(SpecError, match="--cluster K"):
        cluster_naps(lake, result)
    with pytest.raises(SpecError, match="must lie in 1..3"):
        cluster_naps(lake, result, k=4)
    with pytest.raises(SpecError, match="unknown distance 'manhattan'"):
        cluster_naps(lake, result, k=2, metric="manhattan")
    with pytest.raises(SpecError, match="at least 2 groups"):
        profile_linkage(np.ones((1, 3)))
    with pytest.raises(SpecError, match="use --metric euclidean"):
        profile_linkage(np.array([[0.0, 0.0], [1.0, 2.0], [2.0, 1.0]]))
    url = str(lake.loc.url)
    argv = ["naps", "--lake", url, "--run", "r1", "--by", "speaker_id", "--layers", "enc.conv1"]
    assert main([*argv, "--cluster", "2"]) == 0
    out = capsys.readouterr().out
    assert "2 clusters" in out and "SELECT * FROM nap_clusters" in out
    assert main([*argv, "--cluster", "2", "--cluster-threshold", "0.5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--cluster K" in err
