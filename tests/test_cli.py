import json

import pytest

from neurolake.cli import build_parser, main
from neurolake.store import Lake

from tests.store.unitdata import create_run, write_unit


def _leaf_verbs(parser, prefix=()):
    import argparse

    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield prefix
        return
    for name, sub in subs[0].choices.items():
        yield from _leaf_verbs(sub, prefix + (name,))


def test_every_verb_has_help(capsys):
    leaves = [" ".join(v) for v in _leaf_verbs(build_parser())]
    assert {"demo", "runs", "verify", "corpus synth", "models show", "ingest", "sql", "group create", "group list", "group show",
            "group export", "neurons"} <= set(leaves)
    for verb in leaves:
        try:
            main(verb.split() + ["--help"])
        except SystemExit as exc:
            assert exc.code == 0
        out = capsys.readouterr().out
        assert out.startswith(f"usage: neurolake {verb}")
        assert "--lake" in out or verb in ("corpus synth", "models show")


def test_corpus_synth(tmp_path, capsys):
    from neurolake.ingest.corpora import read_librispeech

    assert main(["corpus", "synth", str(tmp_path / "c"), "--utterances", "12", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("wrote 12 utterances") and "held-out accent: en-029" in out
    assert len(read_librispeech(str(tmp_path / "c")).utterances) == 12
    assert main(["corpus", "synth", str(tmp_path / "c"), "--utterances", "12"]) == 2  # not empty
    assert capsys.readouterr().err.startswith("neurolake: error: ")


def test_runs_lists_runs(tmp_path, capsys):
    url = str(tmp_path / "lake")
    run = create_run(Lake.create(url))
    write_unit(run, run.plan.units[0].unit_id)
    assert main(["runs", "--lake", url, "--format", "json"]) == 0
    (info,) = json.loads(capsys.readouterr().out)
    assert info["run_id"] == "r1" and info["status"] == "partial"
    assert info["units_committed"] == 1 and info["frames_committed"] == run.plan.units[0].rows_used
    assert main(["runs", "--lake", url]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split()[:3] == ["run", "status", "units"]
    assert f"1/{len(run.plan.units)}" in table


@pytest.mark.slow
def test_demo_end_to_end(tmp_path, capsys):
    import ray

    if ray.is_initialized():
        ray.shutdown()
    url = str(tmp_path / "lake")
    assert main(["demo", "--lake", url, "--utterances", "30"]) == 0
    out = capsys.readouterr().out
    run = Lake.open(url).run("demo")
    info = run.info()
    assert info.status == "complete" and info.n_utterances == 30
    utts = run.read_table("utterances")
    assert utts.num_rows == 30 and run.read_table("errors").num_rows == 0
    assert "worst utterances:" in out and "overall WER" in out and "test-holdout" in out
    assert "neurons active together inside misrecognised words" in out and "per layer" in out
    worst = max(utts.column("wer").to_pylist())
    assert f"{round(worst, 2)}" in out
    # a second demo reuses the corpus and the committed units
    assert main(["demo", "--lake", url, "--utterances", "30"]) == 0
    assert "already synthesised" in capsys.readouterr().out
    ray.shutdown()


def test_verify_reports_problems(tmp_path, capsys, monkeypatch):
    url = str(tmp_path / "lake")
    run = create_run(Lake.create(url))
    write_unit(run, run.plan.units[0].unit_id)
    monkeypatch.setenv("NEUROLAKE_LAKE", url)
    assert main(["verify"]) == 0
    assert "1 run(s) checked, 0 problem(s)" in capsys.readouterr().out
    (tmp_path / "lake" / "runs" / "r1" / "tables" / "frames" / "u000000.parquet").write_bytes(b"garbage")
    assert main(["verify", "--run", "r1"]) == 1
    out = capsys.readouterr().out
    assert "checksum mismatch" in out and "1 problem(s)" in out


def test_ingest_rejects_counts_below_one(tmp_path, capsys):
    for flag in ("--actors", "--threads"):
        args = ["ingest", "--lake", str(tmp_path / "lake"), "--corpus", str(tmp_path), "--model", "demo", flag, "0"]
        assert main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"neurolake: error: {flag[2:]} must be at least 1, got 0"]
    assert not (tmp_path / "lake").exists()
