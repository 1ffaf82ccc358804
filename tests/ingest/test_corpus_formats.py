"""Corpora in other formats, ingested end to end against the same corpus read as a LibriSpeech
tree: the synthetic corpus's ground truth as lhotse manifests (the frames' phonemes must equal
those of its own sidecars)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    from neurolake.corpora.synth import synthesize_corpus

    root = tmp_path_factory.mktemp("formats")
    synthesize_corpus(str(root / "c"), n_utterances=6, seed=5, holdout_accent=None, test_fraction=0.0)
    return root


@pytest.mark.slow
def test_ingest_of_lhotse_manifests_labels_frames_with_their_alignments(synthetic, tmp_path, capsys):
    import ray

    from neurolake.cli import main
    from neurolake.query.engine import QueryEngine
    from neurolake.store import Lake

    corpus = str(synthetic / "c")
    manifests = str(tmp_path / "lhotse")
    assert main(["corpus", "lhotse", corpus, manifests]) == 0
    assert "wrote 6 utterances as lhotse recordings and supervisions" in capsys.readouterr().out
    lake = str(tmp_path / "lake")
    if ray.is_initialized():
        ray.shutdown()
    common = ["--lake", lake, "--model", "demo", "--layers", "conv7"]
    try:
        assert main(["ingest", *common, "--corpus", str(synthetic / "c" / "train"), "--run", "sidecar"]) == 0
        assert main(["ingest", *common, "--corpus", manifests, "--run", "lhotse"]) == 0
    finally:
        ray.shutdown()
    capsys.readouterr()
    with QueryEngine(Lake.open(lake)) as q:
        utterances = q.sql(
            "SELECT run_id, utterance_id, reference, n_frames, phoneme_source FROM utterances ORDER BY 1, 2"
        ).to_pylist()
        frames = q.sql(
            "SELECT l.phoneme_source AS source, l.phoneme IS NOT DISTINCT FROM s.phoneme AS same, "
            "l.phoneme IS NOT NULL AS labelled, count(*) AS n FROM frames l JOIN frames s "
            "ON l.utterance_id = s.utterance_id AND l.frame_index = s.frame_index AND s.run_id = 'sidecar' "
            "WHERE l.run_id = 'lhotse' GROUP BY 1, 2, 3"
        ).to_pylist()
        total = q.sql("SELECT count(*) FROM frames WHERE run_id = 'lhotse'").column(0).to_pylist()[0]
    by_run = {run: [u for u in utterances if u["run_id"] == run] for run in ("sidecar", "lhotse")}
    assert len(by_run["lhotse"]) == 6
    strip = [{k: v for k, v in u.items() if k not in ("run_id", "phoneme_source")} for u in by_run["lhotse"]]
    assert strip == [{k: v for k, v in u.items() if k not in ("run_id", "phoneme_source")} for u in by_run["sidecar"]]
    assert {u["phoneme_source"] for u in by_run["sidecar"]} == {"sidecar"}
    assert {u["phoneme_source"] for u in by_run["lhotse"]} == {"lhotse"}
    # The same timings through lhotse's manifests: the same phoneme on every frame, most labelled.
    assert {r["source"] for r in frames} == {"lhotse"} and all(r["same"] for r in frames)
    assert sum(r["n"] for r in frames) == total
    assert sum(r["n"] for r in frames if r["labelled"]) > 0.8 * total
