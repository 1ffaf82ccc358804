"""Neuron rankings: each criterion against an oracle or a hand-computed case, and a label planted in
known units of a lake found by every ranking, its minimal subset and redundancy, a random control
not; bad input is one line."""

from __future__ import annotations

import numpy as np
import pytest

from neurolake.errors import SpecError
from neurolake.introspect.ranking import (
    class_mean_scores,
    discretise,
    minimal_k,
    mutual_information,
    probe_weight_scores,
    rank_neurons,
    redundancy_clusters,
    streaming_correlation,
)
from neurolake.query.engine import QueryEngine
from neurolake.store import Lake, LayerSpec, plan_parts
from tests.store.partdata import CHUNK_ROWS, ROWS_PER_SHARD, part_tables, utterance_lengths

PHONEMES = ["AA", "IY", "S", "M", "SIL"]
PLANTED = [3, 11, 17, 29]  # unit PLANTED[c] fires on class c; none on SIL
COPY = 35  # a near copy of unit 3: redundant with it
UNITS = 40


def test_mutual_information_matches_scikit_learn():
    from sklearn.metrics import mutual_info_score

    rng = np.random.default_rng(0)
    y = rng.choice(PHONEMES, 600)
    x = rng.standard_normal((600, 6))
    x[:, 2] += (y == "S") * 1.5
    binned = discretise(x, 8)
    assert binned.min() == 0 and binned.max() == 7
    assert np.all(np.abs(np.bincount(binned[:, 0]) - 75) <= 1)  # quantile bins hold equal shares
    overall, per_class = mutual_information(binned, y, sorted(PHONEMES))
    for j in range(6):
        assert overall[j] == pytest.approx(mutual_info_score(binned[:, j], y), abs=1e-12)
        for i, c in enumerate(sorted(PHONEMES)):
            assert per_class[i, j] == pytest.approx(mutual_info_score(binned[:, j], y == c), abs=1e-12)
    assert overall.argmax() == 2 and per_class[sorted(PHONEMES).index("S")].argmax() == 2


def test_class_means_and_weight_mass_by_hand():
    x = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [0.0, 4.0], [5.0, 1.0], [7.0, 1.0]])
    y = np.array(["a", "a", "b", "b", "c", "c"])
    overall, per_class = class_mean_scores(x, y, ["a", "b", "c"])
    # class means: a (2, 0), b (0, 3), c (6, 1); pairs |a-b| + |a-c| + |b-c|
    np.testing.assert_allclose(overall, [2 + 4 + 6, 3 + 1 + 2])
    # a against the rest's mean (3, 2): |2-3|, |0-2|
    np.testing.assert_allclose(per_class[0], [1.0, 2.0])
    coef = np.array([[0.5, -2.0, 0.0]])  # a binary probe: one row
    overall, per_class = probe_weight_scores(coef, 2)
    np.testing.assert_allclose(overall, [0.5, 2.0, 0.0])
    assert per_class.shape == (2, 3)
    overall, _ = probe_weight_scores(np.array([[1.0, -1.0], [-2.0, 0.5], [1.0, 0.5]]), 3)
    np.testing.assert_allclose(overall, [4.0, 2.0])


def test_streaming_correlation_and_redundancy_clusters():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1000, 5))
    x[:, 3] = 2 * x[:, 0] + 0.05 * rng.standard_normal(1000)  # copy of 0
    x[:, 4] = -x[:, 1] + 0.05 * rng.standard_normal(1000)  # anti-copy of 1: redundant too
    blocks = [x[i : i + 128] for i in range(0, 1000, 128)]
    corr = streaming_correlation(blocks)
    np.testing.assert_allclose(corr, np.corrcoef(x.T), atol=1e-10)
    clusters = redundancy_clusters(corr, 0.8)
    assert clusters[0] == clusters[3] and clusters[1] == clusters[4]
    assert len({clusters[0], clusters[1], clusters[2]}) == 3
    constant = np.ones((10, 2))
    constant[:, 1] = np.arange(10)
    assert streaming_correlation([constant])[0, 1] == 0.0  # a silent unit correlates with nothing
    with pytest.raises(SpecError, match="at least 2 rows"):
        streaming_correlation([])


def test_minimal_k_bisects_between_the_curve_points():
    calls = []

    def accuracy_of(k: int) -> float:
        calls.append(k)
        return min(1.0, k / 37)

    curve = {k: accuracy_of(k) for k in (1, 2, 4, 8, 16, 32, 64)}
    calls.clear()
    assert minimal_k(curve, 0.9, accuracy_of) == 34  # 34 / 37 >= 0.9 > 33 / 37
    assert set(calls) <= set(range(33, 64)) and len(calls) <= 5  # bisection between 32 and 64
    assert minimal_k(curve, 1.1, accuracy_of) is None
    assert minimal_k({1: 0.95, 2: 0.96}, 0.9, accuracy_of) == 1


def _planted_lake(root) -> Lake:
    """30 utterances of 3 speakers; every frame has a phoneme of 5 and layer ``enc`` 40 units of
    noise, but unit ``PLANTED[c]`` fires on phoneme ``c`` (none on SIL) and unit ``COPY`` repeats
    unit 3."""
    lake = Lake.create(str(root / "lake"))
    plan = plan_parts(utterance_lengths(30), rows_per_shard=ROWS_PER_SHARD, part_rows=600, chunk_rows=CHUNK_ROWS)
    run = lake.create_run(
        "p",
        model={"spec": "test-model", "sha256": "0" * 64, "tokens": ["-", " ", "A"], "frame_rate_hz": 50},
        corpus={"spec": "test-corpus", "n_utterances": 30},
        layers=[LayerSpec("enc", UNITS, module="enc")],
        plan=plan,
    )
    rng = np.random.default_rng(2)
    for part in run.plan.parts:
        utterances, frames = part_tables(run, part)
        n = part.used_stop - part.row_start
        label = rng.integers(0, len(PHONEMES), n)
        x = rng.standard_normal((n, UNITS))
        fires = label < len(PLANTED)
        x[np.flatnonzero(fires), np.asarray(PLANTED)[label[fires]]] += 3.0
        x[:, COPY] = x[:, PLANTED[0]] + 0.1 * rng.standard_normal(n)
        frames["phoneme"] = [PHONEMES[c] for c in label]
        writer = run.part_writer(part.part_id)
        writer.append("enc", x.astype(np.float16))
        writer.write_table("utterances", utterances)
        writer.write_table("frames", frames)
        writer.commit()
    return lake


def test_a_label_planted_in_known_units_is_ranked_and_a_random_subset_is_not(tmp_path, capsys):
    from neurolake.cli import main

    lake = _planted_lake(tmp_path)
    result = rank_neurons(lake, "p", "phoneme", share=0.9, out_dir=tmp_path / "fig", progress=False)
    planted = {*PLANTED, COPY}
    for method in ("probe", "classmean", "mi"):
        assert set(result.order("enc", method)[:5]) == planted, method
    for c, unit in zip(PHONEMES[:4], PLANTED, strict=True):  # per class, the class's own unit first
        assert result.order("enc", "classmean", c)[0] == unit
        assert result.order("enc", "mi", c)[0] in ({unit, COPY} if unit == PLANTED[0] else {unit})
    (summary,) = result.layers
    assert summary["accuracy"] > 0.85 and summary["baseline"] < 0.35
    curves = {(r["subset"], r["k"]): r["accuracy"] for r in result.curves.to_pylist()}
    assert curves["probe", 4] > 0.8 > 0.45 > curves["random", 4]
    assert curves["bottom", 16] < 0.35  # forty units, the bottom sixteen are all noise
    k = summary["minimal_k"]["probe"]
    assert 3 <= k <= 5
    with QueryEngine(lake) as q:
        minimal = q.sql(
            "SELECT unit, cluster FROM neuron_rankings WHERE ranking_id = ? AND method = 'probe' AND in_minimal",
            [result.ranking_id],
        ).to_pylist()
        clusters = dict(
            q.sql(
                "SELECT unit, cluster FROM neuron_rankings WHERE ranking_id = ? AND method = 'probe' AND class IS NULL",
                [result.ranking_id],
            )
            .to_pandas()
            .values.tolist()
        )
        curve_rows = q.sql("SELECT count(*) FROM ranking_curves WHERE ranking_id = ?", [result.ranking_id])
    assert len(minimal) == k and {r["unit"] for r in minimal} <= planted
    # every planted signal is in the minimal subset, unit 3 or its copy: one redundancy cluster
    assert {clusters[r["unit"]] for r in minimal} >= {clusters[u] for u in PLANTED}
    assert clusters[PLANTED[0]] == clusters[COPY] and len({clusters[u] for u in PLANTED}) == 4
    assert summary["clusters"] == UNITS - 1
    assert curve_rows.column(0)[0].as_py() == 5 * 7  # 5 subsets x k in 1, 2, 4, ..., 32, 40
    assert (tmp_path / "fig" / "ranking-phoneme-enc.png").stat().st_size > 10_000
    assert rank_neurons(lake, "p", "phoneme", share=0.9, progress=False).reused

    lake_url = str(lake.loc.url)
    assert main(["rank", "--lake", lake_url, "--run", "p", "--target", "phoneme", "--top", "5"]) == 0
    out = capsys.readouterr().out
    assert f"probe: {k} of 40 units reach 90%" in out and "split by speaker" in out
    assert main(["rank", "--lake", lake_url, "--run", "p", "--target", "accent"]) == 2
    assert "not a frames or utterances column" in capsys.readouterr().err
    with pytest.raises(SpecError, match="only 40 units"):
        rank_neurons(lake, "p", "phoneme", ablate=40)
    with pytest.raises(SpecError, match="share must lie"):
        rank_neurons(lake, "p", "phoneme", share=0)
