"""Probes: the speaker-disjoint split, planted labels found and random ones not, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from neurolake.errors import SpecError
from neurolake.introspect.probe import _fit_score, probe, speaker_split
from neurolake.store import Lake
from tests.store.partdata import create_run, write_part


def test_the_split_never_shares_a_speaker():
    speakers = np.repeat([f"s{i}" for i in range(10)], np.arange(1, 11) * 10)
    test = speaker_split(speakers, 0.25, seed=3)
    assert not set(speakers[test]) & set(speakers[~test])
    assert 0.25 <= test.mean() < 0.25 + 0.1 + 1e-9  # whole speakers, stopping past the share
    with pytest.raises(SpecError, match="at least 2 speakers"):
        speaker_split(np.array(["a"] * 5), 0.25, 0)


def test_a_planted_label_is_probed_and_a_random_one_is_not():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 2000).astype(str)
    x = rng.standard_normal((2000, 50))
    x[np.arange(2000), y.astype(int)] += 2.0  # the label lives in units 0..3
    accuracy, f1 = _fit_score(x[:1500], x[1500:], y[:1500], y[1500:], 0, 0.0)
    assert accuracy > 0.8 and f1 > 0.8
    shuffled = rng.permutation(y)
    chance, _ = _fit_score(x[:1500], x[1500:], shuffled[:1500], shuffled[1500:], 0, 0.0)
    assert chance < 0.35
    sparse, _ = _fit_score(x[:1500], x[1500:], y[:1500], y[1500:], 0, 0.5)  # elastic net
    assert sparse > 0.8


def test_bad_targets_are_one_line(tmp_path):
    lake = Lake.create(str(tmp_path / "lake"))
    run = create_run(lake)
    for part in run.plan.parts:
        write_part(run, part.part_id)
    with pytest.raises(SpecError, match="not a frames or utterances column"):
        probe(lake, "r1", "accent")
    with pytest.raises(SpecError, match="has 1 class"):
        probe(lake, "r1", "phoneme")  # every frame of this run is AH
    with pytest.raises(SpecError, match="--level must be one of"):
        probe(lake, "r1", "speaker_id", level="word")
    result = probe(lake, "r1", "word_error", layers=["enc.conv2"], progress=False)
    row = result.table.to_pylist()[0]
    assert row["split"] == "speaker-disjoint" and row["n_classes"] == 2 and 0 <= row["accuracy"] <= 1
