import json

import pytest

from neurolake.cli import build_parser, main
from neurolake.query.engine import QueryEngine
from neurolake.store import Lake
from tests.browser import check_in_browser
from tests.store.partdata import create_run, write_part


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
    assert {
        "demo",
        "runs",
        "verify",
        "compact",
        "corpus synth",
        "models show",
        "ingest",
        "sql",
        "group create",
        "group list",
        "group show",
        "group export",
        "neurons",
    } <= set(leaves)
    for verb in leaves:
        try:
            main(verb.split() + ["--help"])
        except SystemExit as exc:
            assert exc.code == 0
        out = capsys.readouterr().out
        assert out.startswith(f"usage: neurolake {verb}")
        assert "--lake" in out or verb in ("corpus synth", "corpus textgrids", "corpus lhotse", "models show")


def test_corpus_synth(tmp_path, capsys):
    from neurolake.corpora import read_librispeech

    assert main(["corpus", "synth", str(tmp_path / "c"), "--utterances", "12", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("wrote 12 utterances") and "held-out accent: en-029" in out
    assert len(read_librispeech(str(tmp_path / "c")).utterances) == 12
    assert main(["corpus", "synth", str(tmp_path / "c"), "--utterances", "12"]) == 2  # not empty
    assert capsys.readouterr().err.startswith("neurolake: error: ")


def test_runs_lists_runs(tmp_path, capsys):
    url = str(tmp_path / "lake")
    run = create_run(Lake.create(url))
    write_part(run, run.plan.parts[0].part_id)
    assert main(["runs", "--lake", url, "--format", "json"]) == 0
    (info,) = json.loads(capsys.readouterr().out)
    assert info["run_id"] == "r1" and info["status"] == "partial"
    assert info["parts_committed"] == 1 and info["frames_committed"] == run.plan.parts[0].rows_used
    assert main(["runs", "--lake", url]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split()[:3] == ["run", "status", "parts"]
    assert f"1/{len(run.plan.parts)}" in table


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
    assert "failure slices found by themselves" in out and "findings at p <= 0.05" in out
    assert "the top finding's units" in out and "random units #3" in out and "slice frames" in out
    with QueryEngine(Lake.open(url)) as q:  # the demo's scan and ablation are in the lake's views
        assert q.sql("SELECT count(*) AS n FROM findings").column("n")[0].as_py() > 0
        assert q.sql("SELECT count(*) AS n FROM ablations WHERE slice IS NOT NULL").column("n")[0].as_py() == 5
    worst = max(utts.column("wer").to_pylist())
    assert f"{round(worst, 2)}" in out
    index = tmp_path / "lake" / "report" / "index.html"  # the report, beside the lake
    assert f"report: {index} (3 sections" in out and index.stat().st_size > 5000
    assert (tmp_path / "lake" / "report" / "figures" / "ablations.png").is_file()
    check_in_browser(index, ["run", "phonemes", "findings"], 4, tmp_path)  # the demo's report, in a browser
    # a second demo reuses the corpus and the committed parts
    assert main(["demo", "--lake", url, "--utterances", "30"]) == 0
    assert "already synthesised" in capsys.readouterr().out
    ray.shutdown()


def test_verify_reports_problems(tmp_path, capsys, monkeypatch):
    url = str(tmp_path / "lake")
    run = create_run(Lake.create(url))
    write_part(run, run.plan.parts[0].part_id)
    monkeypatch.setenv("NEUROLAKE_LAKE", url)
    assert main(["verify"]) == 0
    assert "1 run(s) checked, 0 problem(s)" in capsys.readouterr().out
    (tmp_path / "lake" / "runs" / "r1" / "tables" / "frames" / "p000000.parquet").write_bytes(b"garbage")
    assert main(["verify", "--run", "r1"]) == 1
    out = capsys.readouterr().out
    assert "checksum mismatch" in out and "1 problem(s)" in out


def test_compact_merges_a_runs_table_files(tmp_path, capsys, monkeypatch):
    url = str(tmp_path / "lake")
    run = create_run(Lake.create(url))
    for part in run.plan.parts:
        write_part(run, part.part_id)
    monkeypatch.setenv("NEUROLAKE_LAKE", url)
    n = len(run.plan.parts)
    assert main(["compact", "--run", "r1"]) == 0
    assert capsys.readouterr().out == (
        f"run r1: compacted {n} part(s) into generation 1: {3 * n} table files -> 3 "
        f"(errors 0, frames {run.plan.n_frames:,}, utterances 30 rows)\n"
    )
    assert main(["compact", "--run", "r1", "--prune"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"run r1: already compact (generation 1, 3 table files for {n} part(s))",
        f"removed {3 * n} superseded file(s)",
    ]
    assert not (tmp_path / "lake" / "runs" / "r1" / "tables" / "frames").exists() or not list(
        (tmp_path / "lake" / "runs" / "r1" / "tables" / "frames").iterdir()
    )
    assert main(["verify"]) == 0
    assert "1 run(s) checked, 0 problem(s)" in capsys.readouterr().out
    for args, message in (
        (["--run", "r2"], "no run 'r2'"),
        (["--run", "r1", "--rows-per-file", "0"], "rows_per_file must be at least 1, got 0"),
    ):
        assert main(["compact", *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("neurolake: error: ") and message in err[0]


def test_ingest_rejects_counts_below_one(tmp_path, capsys):
    for flag in ("--actors", "--threads"):
        args = ["ingest", "--lake", str(tmp_path / "lake"), "--corpus", str(tmp_path), "--model", "demo", flag, "0"]
        assert main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"neurolake: error: {flag[2:]} must be at least 1, got 0"]
    assert not (tmp_path / "lake").exists()


def test_unreachable_storage_and_missing_out_dir_are_one_line(tmp_path, monkeypatch, capsys):
    from tests.conftest import _free_port

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_free_port()}")  # nothing listens there
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()  # an instance made earlier would keep its endpoint
    assert main(["runs", "--lake", "s3://some-bucket/lake"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("neurolake: error:") and "127.0.0.1" in err

    lake = Lake.create(str(tmp_path / "lake"))
    create_run(lake)
    out = tmp_path / "no" / "such" / "dir" / "x.csv"
    assert main(["sql", "SELECT 1 AS x", "--format", "csv", "--out", str(out), "--lake", str(tmp_path / "lake")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err


def test_names_with_a_trailing_newline_are_refused(tmp_path, capsys):
    lake = Lake.create(str(tmp_path / "lake"))
    create_run(lake)
    assert main(["neurons", "--run", "r1\n", "--lake", str(tmp_path / "lake")]) == 2
    assert "run id" in capsys.readouterr().err.lower()
    assert main(["group", "create", "g\n", "--run", "r1", "--where", "true", "--lake", str(tmp_path / "lake")]) == 2
    assert "invalid group name" in capsys.readouterr().err


def test_a_lake_of_the_format_before_parts_is_refused_in_one_line(tmp_path, capsys):
    """Version 1 named a piece of ingest work a "unit" (``commits/u000000.json``, ``unit_id``)."""
    import json

    lake_dir = tmp_path / "lake"
    create_run(Lake.create(str(lake_dir)))
    (lake_dir / "lake.json").write_text(json.dumps({"format": "neurolake", "version": 1}))
    for verb in (["runs"], ["sql", "SELECT 1"], ["verify"]):
        assert main([*verb, "--lake", str(lake_dir)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "format version 1, older than this neurolake reads (2)" in err, err
