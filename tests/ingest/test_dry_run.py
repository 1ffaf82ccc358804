from neurolake.cli import main
from neurolake.corpora.synth import synthesize_corpus
from neurolake.ingest.pipeline import plan_ingest

MODEL = "python:tests.models.demo_factory:build"


def test_dry_run_prints_the_plan(tmp_path, capsys):
    synthesize_corpus(str(tmp_path / "c"), n_utterances=12, seed=2, holdout_accent=None, test_fraction=0.0)
    corpus = str(tmp_path / "c" / "train")
    (tmp_path / "c" / "train" / "1000" / "1" / "1000-1-0000.flac").write_bytes(b"")  # one bad file
    adapter, planned = plan_ingest(corpus, MODEL, ["conv?"])
    assert [layer.name for layer in planned.layers] == ["conv1", "conv2", "conv3"]
    assert planned.plan.n_utterances == 11 and len(planned.errors) == 1
    expected_bytes = planned.plan.total_rows * sum(layer.units for layer in planned.layers) * 2
    assert sum(planned.bytes_per_layer().values()) == expected_bytes
    assert (
        main(
            [
                "ingest",
                "--corpus",
                corpus,
                "--model",
                MODEL,
                "--layers",
                "conv?",
                "--dry-run",
                "--lake",
                str(tmp_path / "lake"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "utterances   11 planned, 1 with errors" in out
    assert f"frames       {planned.plan.n_frames:,}" in out and "parts        1" in out
    assert "header: " in out and "audio file is empty" in out
    assert not (tmp_path / "lake").exists()  # a dry run writes nothing
