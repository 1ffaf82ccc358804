from neurolake.cli import main
from neurolake.corpora.synth import synthesize_corpus
from neurolake.ingest.pipeline import plan_ingest
from neurolake.query.engine import QueryEngine
from neurolake.store import Lake

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


def test_the_ingest_writes_the_frames_and_bytes_the_dry_run_printed(tmp_path, capsys):
    import re

    synthesize_corpus(str(tmp_path / "c"), n_utterances=10, seed=4, holdout_accent=None, test_fraction=0.0)
    corpus = str(tmp_path / "c" / "train")
    (tmp_path / "c" / "train" / "1000" / "1" / "1000-1-0000.flac").write_bytes(b"RIFF")  # one bad file
    argv = ["ingest", "--corpus", corpus, "--model", MODEL, "--layers", "conv1,conv3", "--part-rows", "300"]
    assert main([*argv, "--dry-run"]) == 0
    dry = capsys.readouterr().out
    frames = re.search(r"^  frames       ([\d,]+) \(rows", dry, re.M)
    size = re.search(r"^  activations  (\S+ \S+) uncompressed in 2 layers", dry, re.M)
    assert frames and size and "9 planned, 1 with errors" in dry, dry
    _, planned = plan_ingest(corpus, MODEL, ["conv1", "conv3"], part_rows=300)
    units = sum(layer.units for layer in planned.layers)
    assert planned.activation_bytes() == planned.plan.n_frames * units * 2 < sum(planned.bytes_per_layer().values())
    assert main([*argv, "--lake", str(tmp_path / "lake"), "--run", "r", "--quiet"]) == 0
    real = capsys.readouterr().out
    assert "9 done, 1 failed" in real, real
    assert f"  frames      {frames.group(1)} (" in real and f"), {size.group(1)} of activations" in real, real
    lake = Lake.open(str(tmp_path / "lake"))
    n_frames = QueryEngine(lake).sql("SELECT count(*) AS n FROM frames").column("n")[0].as_py()
    assert f"{n_frames:,}" == frames.group(1) and n_frames == planned.plan.n_frames
    assert lake.run("r").manifest["plan"] == planned.plan.to_dict()
    import ray

    ray.shutdown()  # the ingest started a local Ray
