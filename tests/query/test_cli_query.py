"""The query verbs of the CLI: output formats, groups, export, one-line errors."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from neurolake.cli import main
from neurolake.store import Lake
from tests.store.partdata import create_run, expected_rows, write_part


@pytest.fixture
def url(tmp_path):
    url = str(tmp_path / "lake")
    run = create_run(Lake.create(url))
    for u in run.plan.parts:
        write_part(run, u.part_id)
    return url


def test_sql_formats(url, tmp_path, capsys):
    q = "SELECT utterance_id, count(*) AS n FROM frames GROUP BY utterance_id ORDER BY utterance_id LIMIT 3"
    assert main(["sql", q, "--lake", url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["utterance_id", "n"] and lines[-1] == "(3 rows)"
    assert main(["sql", q, "--lake", url, "--format", "json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    lengths = {u.utterance_id: u.n_frames for unit in Lake.open(url).run("r1").plan.parts for u in unit.utterances}
    assert rows == [{"utterance_id": k, "n": lengths[k]} for k in sorted(lengths)[:3]]
    assert main(["sql", q, "--lake", url, "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == '"utterance_id","n"'
    out = tmp_path / "r.parquet"
    assert main(["sql", q, "--lake", url, "--format", "parquet", "--out", str(out)]) == 0
    assert pq.read_table(out).to_pylist() == rows


def test_sql_errors_are_one_line(url, capsys):
    for bad in ("DELETE FROM frames", "SELECT * FROM nowhere", "SELECT * FROM read_text('/etc/passwd')"):
        assert main(["sql", bad, "--lake", url]) == 2
        err = capsys.readouterr().err
        assert err.startswith("neurolake: error: ") and err.count("\n") == 1


def test_group_verbs_and_export(url, tmp_path, capsys):
    assert main(["group", "create", "errs", "--run", "r1", "--where", "word_error", "--lake", url]) == 0
    assert "group errs:" in capsys.readouterr().out
    assert main(["group", "list", "--lake", url]) == 0
    assert "errs" in capsys.readouterr().out
    assert main(["group", "show", "errs", "--lake", url, "--sample", "4"]) == 0
    shown = capsys.readouterr().out
    assert "predicate: word_error" in shown and "(4 rows)" in shown
    assert main(["group", "create", "none", "--run", "r1", "--where", "frame_index < 0", "--lake", url]) == 2
    assert "selects no frames" in capsys.readouterr().err

    frames = Lake.open(url).run("r1").read_table("frames")
    ids = frames.filter(frames.column("word_error")).column("frame_id").to_numpy()
    npz = tmp_path / "a.npz"
    assert main(["group", "export", "errs", "--layers", "enc.conv1,enc.conv2", "--out", str(npz), "--lake", url]) == 0
    data = np.load(npz)
    np.testing.assert_array_equal(data["frame_ids"], ids)
    np.testing.assert_array_equal(data["enc.conv2"], expected_rows(1, 10, ids))
    pqf = tmp_path / "a.parquet"
    assert main(["group", "export", "errs", "--layers", "enc.conv1", "--out", str(pqf), "--lake", url]) == 0
    t = pq.read_table(pqf)
    np.testing.assert_array_equal(
        np.stack(t.column("enc.conv1").to_numpy(zero_copy_only=False)), expected_rows(0, 24, ids).astype(np.float32)
    )
    assert (
        main(
            [
                "group",
                "export",
                "errs",
                "--layers",
                "enc.conv1,enc.conv2",
                "--out",
                str(tmp_path / "x.npy"),
                "--lake",
                url,
            ]
        )
        == 2
    )


def test_neurons_verb(url, capsys):
    import numpy as np

    from neurolake.query.neurons import neuron_statistics
    from neurolake.store import Lake

    assert main(["neurons", "--run", "r1", "--layers", "enc.conv2", "--lake", url]) == 0
    assert "10 units" in capsys.readouterr().out
    assert main(["sql", "SELECT count(*) AS n FROM neurons", "--lake", url, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"n": 10}
    # Quantiles from a 7-frame sample: the same figures as the API's, not the default's.
    assert main(["neurons", "--run", "r1", "--layers", "enc.conv2", "--quantile-frames", "7", "--lake", url]) == 0
    capsys.readouterr()
    query = "SELECT q50, q90 FROM neurons WHERE layer = 'enc.conv2' ORDER BY unit"
    assert main(["sql", query, "--lake", url, "--format", "json"]) == 0
    shown = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    sampled = neuron_statistics(Lake.open(url), "r1", ["enc.conv2"], quantile_rows=7)
    everything = neuron_statistics(Lake.open(url), "r1", ["enc.conv2"])
    # The view shows each layer's statistics once: the most precise computed (here the default's).
    assert [r["q90"] for r in shown] == pytest.approx(everything.column("q90").to_pylist())
    assert sampled.column("q90").to_pylist() != everything.column("q90").to_pylist()
    assert main(["neurons", "--run", "r1", "--layers", "enc.conv2", "--quantile-frames", "0", "--lake", url]) == 0
    capsys.readouterr()
    assert main(["sql", "SELECT count(*) AS n FROM neurons", "--lake", url, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"n": 10}
    assert main(["neurons", "--run", "r1", "--quantile-frames", "-1", "--lake", url]) == 2
    assert "--quantile-frames must be 0" in capsys.readouterr().err
    assert main(["neurons", "--run", "r1", "--lake", url]) == 0
    out = capsys.readouterr().out
    # A line per layer: units, median mean and std, largest value, never / always active, constant.
    table = neuron_statistics(Lake.open(url), "r1")
    for layer in dict.fromkeys(table.column("layer").to_pylist()):
        rows = [r for r in table.to_pylist() if r["layer"] == layer]
        active = np.array([r["active_rate"] for r in rows])
        std = np.array([r["std"] for r in rows])
        expected = [
            layer,
            str(len(rows)),
            f"{np.median([r['mean'] for r in rows]):+.3g}",
            f"{np.median(std):.3g}",
            f"{max(r['max'] for r in rows):.3g}",
            str(int((active == 0).sum())),
            str(int((active == 1).sum())),
            str(int((std == 0).sum())),
        ]
        assert next(line.split() for line in out.splitlines() if line.startswith(layer + " ")) == expected
    assert f"neuron statistics of {table.num_rows} units of run r1" in out


def test_csv_of_a_list_column_and_full_schemas_on_an_empty_lake(tmp_path, capsys):
    import csv
    import io
    import json

    from neurolake.cli import main
    from neurolake.store import Lake

    Lake.create(str(tmp_path / "lake"))
    lake = str(tmp_path / "lake")
    # every column writers produce is in the views before any file exists
    assert main(["sql", "SELECT relative_risk, p_value_raw, target FROM patterns", "--lake", lake]) == 0
    assert main(["sql", "SELECT n_reference_words, phoneme_source FROM utterances", "--lake", lake]) == 0
    capsys.readouterr()
    # a list column written as CSV: one JSON list per cell, read back equal
    query = "SELECT * FROM (VALUES (1, ['a:3', 'b:2']), (2, []), (3, NULL)) AS t(id, items) ORDER BY id"
    assert main(["sql", query, "--format", "csv", "--lake", lake]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [json.loads(r["items"]) if r["items"] else None for r in rows] == [["a:3", "b:2"], [], None]
