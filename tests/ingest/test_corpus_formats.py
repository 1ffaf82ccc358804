"""Corpora in other formats, ingested end to end against the same corpus read as a LibriSpeech
tree: the synthetic corpus's ground truth as lhotse manifests (the frames' phonemes must equal
those of its own sidecars), and as a Hugging Face ``datasets`` dataset."""

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
    from tests.ingest import assert_words_follow_timings

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
        # the supervisions' word alignments give the frames' words
        assert assert_words_follow_timings(q, "lhotse", synthetic / "c") > 0.5 * total
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


@pytest.mark.slow
def test_ingest_of_a_datasets_corpus_equals_that_of_its_librispeech_tree(synthetic, tmp_path):
    """The synthetic corpus as a LibriSpeech-format HF dataset (``file``, ``audio``, ``text``,
    ``speaker_id``, ``chapter_id``, ``id``), saved to disk and as Parquet shards, ingests to the
    utterances, transcripts and frame counts of the tree it was made from."""
    import ray
    from datasets import Audio, Dataset, DatasetDict, load_from_disk

    from neurolake.corpora import read_librispeech
    from neurolake.ingest.pipeline import ingest
    from neurolake.query.engine import QueryEngine
    from neurolake.store import Lake

    tree = str(synthetic / "c" / "train")
    rows = read_librispeech(tree).utterances
    dataset = Dataset.from_dict(
        {
            "file": [u.audio_uri for u in rows],
            "audio": [u.audio_uri for u in rows],
            "text": [u.transcript for u in rows],
            "speaker_id": [int(u.speaker_id or 0) for u in rows],
            "chapter_id": [int(u.chapter_id or 0) for u in rows],
            "id": [u.utterance_id for u in rows],
        }
    ).cast_column("audio", Audio(sampling_rate=16_000))
    DatasetDict({"train": dataset}).save_to_disk(str(tmp_path / "saved"), num_shards={"train": 2})
    saved = load_from_disk(str(tmp_path / "saved"))["train"]  # the audio bytes embedded by save_to_disk
    for i in range(2):
        saved.shard(2, i, contiguous=True).to_parquet(str(tmp_path / "pq" / "data" / f"train-0000{i}-of-00002.parquet"))

    from neurolake.corpora import open_corpus

    # the audio is read from the shards' rows, not from the tree's files
    for corpus in (str(tmp_path / "saved"), str(tmp_path / "pq")):
        assert all("#audio=" in u.audio_uri for u in open_corpus(corpus))
    lake = str(tmp_path / "lake")
    if ray.is_initialized():
        ray.shutdown()
    try:
        for run, corpus in (("tree", tree), ("saved", str(tmp_path / "saved")), ("parquet", str(tmp_path / "pq"))):
            ingest(lake, corpus, "demo", layers=["conv7"], run_id=run, progress=False)
    finally:
        ray.shutdown()
    with QueryEngine(Lake.open(lake)) as q:
        found = q.sql(
            "SELECT run_id, utterance_id, reference, n_frames FROM utterances ORDER BY utterance_id"
        ).to_pylist()
        errors = q.sql("SELECT count(*) FROM errors").column(0).to_pylist()[0]
    by_run = {
        run: [(r["utterance_id"], r["reference"], r["n_frames"]) for r in found if r["run_id"] == run]
        for run in ("tree", "saved", "parquet")
    }
    assert len(by_run["tree"]) == len(rows) == 6 and errors == 0
    assert by_run["saved"] == by_run["tree"] and by_run["parquet"] == by_run["tree"]
    assert [u for u, _, _ in by_run["tree"]] == sorted(u.utterance_id for u in rows)
