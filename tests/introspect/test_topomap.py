"""Topographic maps: units with planted shared preferences land together in every layout, the
maps of a real layout are smoother than those of a shuffled one, and bad input is one line."""

from __future__ import annotations

import numpy as np
import pytest

from neurolake.errors import SpecError
from neurolake.introspect.topomap import METHODS, layout, render, smoothness, topomap, unit_features


def _planted(seed: int = 0, per_cluster: int = 20):
    """NAPs ``[8 groups, 60 units]``: three clusters of units, each preferring its own groups,
    plus noise; and 5 units that never respond."""
    rng = np.random.default_rng(seed)
    prototypes = rng.standard_normal((3, 8)) * 3
    units = np.concatenate([prototypes[c] + 0.3 * rng.standard_normal((per_cluster, 8)) for c in range(3)])
    labels = np.repeat(np.arange(3), per_cluster)
    silent = np.full((5, 8), 2.0)  # the same response to every group
    return np.concatenate([units, silent]).T, labels


def test_silent_units_are_dropped_and_features_are_z_scored():
    profiles, _ = _planted()
    kept, features = unit_features(profiles)
    assert kept.tolist() == list(range(60))
    np.testing.assert_allclose(features.mean(axis=1), 0, atol=1e-9)
    np.testing.assert_allclose(features.std(axis=1), 1, atol=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_units_with_planted_preferences_land_together(method):
    profiles, labels = _planted()
    _, features = unit_features(profiles)
    pos = layout(features, method, seed=1)
    assert pos.shape == (60, 2) and pos.min() >= 0 and pos.max() <= 1
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    same = labels[:, None] == labels[None]
    np.fill_diagonal(same, False)
    other = labels[:, None] != labels[None]
    assert d[same].mean() < 0.6 * d[other].mean(), method
    # the map of a real layout is smoother than the map of the same values on shuffled positions
    values = profiles[0, :60]
    shuffled = pos[np.random.default_rng(2).permutation(60)]
    assert smoothness(render(pos, values, 16)) < smoothness(render(shuffled, values, 16)), method


def test_render_by_hand():
    # two units in opposite corners of a 4 x 4 map: their cells hold their values
    image = render(np.array([[0.0, 0.0], [0.99, 0.99]]), np.array([1.0, 3.0]), size=4, sigma=0.5)
    assert image[0, 0] == 1.0 and image[3, 3] == 3.0
    assert smoothness(np.ones((8, 8))) == 0.0


def test_too_few_units_and_unknown_layouts_are_one_line():
    features = np.random.default_rng(0).standard_normal((3, 4))
    with pytest.raises(SpecError, match="needs at least 6 responding units, got 3"):
        layout(features, "tsne")
    with pytest.raises(SpecError, match="unknown layout 'mds'"):
        layout(features, "mds")


def test_topomap_of_a_stored_run_and_the_cli(tmp_path, capsys):
    from neurolake.cli import main
    from neurolake.store import Lake
    from tests.store.partdata import create_run, write_part

    lake = Lake.create(str(tmp_path / "lake"))
    run = create_run(lake)
    for part in run.plan.parts:
        write_part(run, part.part_id)
    maps = topomap(lake, "r1", "enc.conv1", by="speaker_id", methods=("pca", "som"), size=8, out_dir=tmp_path)
    assert [m.method for m in maps] == ["pca", "som"]
    assert maps[0].maps.shape == (3, 8, 8) and maps[0].units.size <= 24
    plain = (tmp_path / "topomap-enc.conv1-pca.png").read_bytes()
    assert plain[:4] == b"\x89PNG"
    marked = topomap(
        lake, "r1", "enc.conv1", by="speaker_id", methods=("pca",), size=8, out_dir=tmp_path / "m", mark=[3]
    )
    assert (tmp_path / "m" / "topomap-enc.conv1-pca.png").read_bytes() != plain  # the unit is circled
    np.testing.assert_array_equal(marked[0].maps, maps[0].maps)
    url = str(tmp_path / "lake")
    assert (
        main(
            [
                "topomap",
                "--lake",
                url,
                "--run",
                "r1",
                "--layer",
                "enc.conv1",
                "--by",
                "speaker_id",
                "--methods",
                "pca,force",
            ]
        )
        == 0
    )
    assert "smoothness" in capsys.readouterr().out
    assert (
        main(
            ["topomap", "--lake", url, "--run", "r1", "--layer", "enc.conv1", "--by", "speaker_id", "--methods", "mds"]
        )
        == 2
    )
    assert "unknown layout 'mds'" in capsys.readouterr().err


def test_layouts_are_stored_reused_and_queryable(tmp_path):
    from neurolake.query.engine import QueryEngine
    from neurolake.store import Lake
    from tests.store.partdata import create_run, write_part

    lake = Lake.create(str(tmp_path / "lake"))
    run = create_run(lake)
    for part in run.plan.parts:
        write_part(run, part.part_id)
    first = topomap(lake, "r1", "enc.conv1", by="speaker_id", methods=("pca", "som"), size=8, seed=3)
    again = topomap(lake, "r1", "enc.conv1", by="speaker_id", methods=("pca", "som"), size=8, seed=3)
    assert [m.reused for m in first] == [False, False] and [m.reused for m in again] == [True, True]
    for a, b in zip(first, again, strict=True):
        assert a.topomap_id == b.topomap_id and a.nap_id == b.nap_id and a.seconds == b.seconds
        np.testing.assert_array_equal(a.units, b.units)
        np.testing.assert_array_equal(a.positions, b.positions)
        np.testing.assert_array_equal(a.maps, b.maps)
        assert a.smoothness == b.smoothness
    other_seed = topomap(lake, "r1", "enc.conv1", by="speaker_id", methods=("som",), size=8, seed=4)[0]
    assert not other_seed.reused and other_seed.topomap_id != first[1].topomap_id
    with QueryEngine(lake) as q:
        rows = q.sql(
            "SELECT layer, method, unit, x, y, smoothness, seconds, nap_id FROM topomaps "
            "WHERE run_id = 'r1' AND topomap_id = ? ORDER BY unit",
            [first[1].topomap_id],
        ).to_pydict()
        n_layouts = q.sql("SELECT count(DISTINCT topomap_id) AS n FROM topomaps").column("n")[0].as_py()
    som = first[1]
    order = np.argsort(som.units)
    assert rows["unit"] == som.units[order].tolist() and set(rows["method"]) == {"som"}
    np.testing.assert_array_equal(np.column_stack([rows["x"], rows["y"]]), som.positions[order])
    assert set(rows["smoothness"]) == {som.smoothness} and set(rows["seconds"]) == {som.seconds}
    assert set(rows["layer"]) == {"enc.conv1"} and set(rows["nap_id"]) == {som.nap_id}
    assert n_layouts == 3
    # a run that grows gets new layouts: the spec holds its commits
    write_part(run, run.plan.parts[-1].part_id)  # rewriting the same bytes keeps the commits
    assert topomap(lake, "r1", "enc.conv1", by="speaker_id", methods=("pca",), size=8, seed=3)[0].reused
    with pytest.raises(SpecError, match="at least 4 cells"):
        topomap(lake, "r1", "enc.conv1", by="speaker_id", methods=("pca",), size=2)


def _reference_render(positions, values, size, sigma=1.0):
    """The map cell by cell, one at a time (the oracle of the batched rendering)."""
    from scipy.ndimage import gaussian_filter

    total, count = np.zeros((size, size)), np.zeros((size, size))
    for (x, y), v in zip(positions, values, strict=True):
        col, row = min(int(x * size), size - 1), min(int(y * size), size - 1)
        total[row, col] += v
        count[row, col] += 1
    smooth_total, smooth_count = gaussian_filter(total, sigma), gaussian_filter(count, sigma)
    image = np.full((size, size), np.nan)
    for r in range(size):
        for c in range(size):
            if count[r, c]:
                image[r, c] = total[r, c] / count[r, c]
            elif smooth_count[r, c] >= 1e-3:
                image[r, c] = smooth_total[r, c] / smooth_count[r, c]
    return image


def _reference_smoothness(image):
    from scipy.ndimage import gaussian_filter, zoom

    filled = np.where(np.isnan(image), np.nanmean(image), image)
    if filled.var() == 0:
        return 0.0
    back = zoom(zoom(filled, 0.25, order=1), 4, order=1)
    return (np.mean((filled - gaussian_filter(filled, 1.0)) ** 2) + np.mean((filled - back) ** 2)) / filled.var()


def test_batched_maps_and_smoothness_equal_one_map_at_a_time():
    from neurolake.introspect.topomap import render_many, smoothness_many

    rng = np.random.default_rng(4)
    layouts, values = rng.random((3, 40, 2)), rng.standard_normal((5, 40))
    layouts[1, :20] = layouts[1, 0]  # 20 units in one cell
    layouts[2] *= 0.3  # a corner: far cells are empty
    maps = render_many(layouts, values, 16)
    scores = smoothness_many(maps)
    assert maps.shape == (3, 5, 16, 16) and scores.shape == (3, 5) and np.isnan(maps[2]).any()
    for p in range(3):
        for g in range(5):
            expected = _reference_render(layouts[p], values[g], 16)
            np.testing.assert_allclose(maps[p, g], expected, rtol=1e-12, atol=1e-12, equal_nan=True)
            assert scores[p, g] == pytest.approx(_reference_smoothness(expected), rel=1e-9)


def test_neighbour_distance_by_hand():
    from neurolake.introspect.topomap import neighbour_distance

    # four units on a line at 0, 0.1, 0.5, 0.6; features make units 0 and 3 alike
    features = np.array([[0.0], [5.0], [9.0], [1.0]])
    distances = np.abs(features - features.T)
    line = np.array([[[0.0, 0.0], [0.1, 0.0], [0.5, 0.0], [0.6, 0.0]]])
    # nearest: 0 -> 1 (5), 1 -> 0 (5), 2 -> 3 (8), 3 -> 2 (8)
    assert neighbour_distance(line, distances, k=1)[0] == pytest.approx((5 + 5 + 8 + 8) / 4)
    swapped = line[:, [0, 3, 2, 1]]  # units 0 and 3 side by side, 1 and 2 side by side
    assert neighbour_distance(swapped, distances, k=1)[0] == pytest.approx((1 + 1 + 4 + 4) / 4)


def test_particle_swarm_smooths_planted_maps_and_keeps_neighbours_alike():
    from neurolake.introspect.topomap import Swarm, neighbour_distance, refine_pso

    profiles, labels = _planted()
    kept, features = unit_features(profiles)
    values = profiles[:, kept]
    size = 16
    distances = np.linalg.norm(features[:, None] - features[None], axis=-1)

    def score(pos):
        return float(np.mean([smoothness(render(pos, v, size)) for v in values]))

    rng = np.random.default_rng(11)
    random_scores = [score(rng.random((60, 2))) for _ in range(5)]
    start = layout(features, "pca", seed=1)
    refined = refine_pso(start, values, features, size, seed=0)
    assert refined.shape == start.shape and refined.min() >= 0 and refined.max() <= 1
    assert score(refined) <= score(start) < min(random_scores)
    assert score(refined) < 0.8 * score(start)  # the swarm found smoother maps, not only kept the start
    assert neighbour_distance(refined[None], distances)[0] <= 1.05 * neighbour_distance(start[None], distances)[0]
    np.testing.assert_array_equal(refine_pso(start, values, features, size, seed=0), refined)  # seeded
    assert not np.array_equal(refine_pso(start, values, features, size, seed=1), refined)
    # From a random layout the swarm moves a long way: its maps become far smoother.
    scattered = np.random.default_rng(5).random((60, 2))
    assert score(refine_pso(scattered, values, features, size, seed=0)) < 0.5 * score(scattered)
    with pytest.raises(SpecError, match="particles >= 2"):
        refine_pso(start, values, features, size, swarm=Swarm(particles=1))


def test_refined_topomaps_are_stored_apart_and_the_cli_refines(tmp_path, capsys):
    from neurolake.cli import main
    from neurolake.query.engine import QueryEngine
    from neurolake.store import Lake
    from tests.store.partdata import create_run, write_part

    lake = Lake.create(str(tmp_path / "lake"))
    run = create_run(lake)
    for part in run.plan.parts:
        write_part(run, part.part_id)
    kwargs = {"by": "speaker_id", "methods": ("pca",), "size": 8, "seed": 2}
    (plain,) = topomap(lake, "r1", "enc.conv1", **kwargs)
    (refined,) = topomap(lake, "r1", "enc.conv1", refine="pso", **kwargs)
    assert refined.refine == "pso" and plain.refine is None and refined.topomap_id != plain.topomap_id
    assert refined.smoothness <= plain.smoothness and not np.array_equal(refined.positions, plain.positions)
    assert topomap(lake, "r1", "enc.conv1", refine="pso", **kwargs)[0].reused
    with QueryEngine(lake) as q:
        rows = q.sql("SELECT DISTINCT topomap_id, refine FROM topomaps ORDER BY refine NULLS FIRST").to_pylist()
    assert rows == [
        {"topomap_id": plain.topomap_id, "refine": None},
        {"topomap_id": refined.topomap_id, "refine": "pso"},
    ]
    url = str(tmp_path / "lake")
    argv = ["topomap", "--lake", url, "--run", "r1", "--layer", "enc.conv1", "--by", "speaker_id", "--size", "8"]
    assert main([*argv, "--methods", "pca", "--seed", "2", "--refine", "pso"]) == 0
    out = capsys.readouterr().out
    assert "pca + pso" in out and refined.topomap_id in out and "(reused)" in out
    assert main([*argv, "--refine", "anneal"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown refinement 'anneal'" in err
