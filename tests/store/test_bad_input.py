"""Bad input: each a clear error naming the path."""

import json
import os

import numpy as np
import pytest

from neurolake.cli import main
from neurolake.errors import (
    CorruptFileError,
    IntegrityError,
    LakeVersionError,
    LayerNotFoundError,
    NotALakeError,
    OutOfRangeError,
    RunError,
    RunNotFoundError,
)
from neurolake.store import Lake
from tests.store.partdata import create_run, write_part


def test_not_a_lake(tmp_path):
    with pytest.raises(NotALakeError, match=f"{tmp_path / 'nothing'} is not a neurolake lake"):
        Lake.open(str(tmp_path / "nothing"))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("hello")
    with pytest.raises(NotALakeError, match="not empty but holds no lake.json"):
        Lake.open(str(tmp_path / "other"), create=True)
    (tmp_path / "other" / "lake.json").write_text(json.dumps({"format": "parquet-thing", "version": 1}))
    with pytest.raises(NotALakeError, match="lake.json does not describe a neurolake lake"):
        Lake.open(str(tmp_path / "other"))


def test_newer_version(tmp_path):
    Lake.create(str(tmp_path))
    (tmp_path / "lake.json").write_text(json.dumps({"format": "neurolake", "version": 3}))
    with pytest.raises(LakeVersionError, match=f"{tmp_path}/lake.json has format version 3, newer"):
        Lake.open(str(tmp_path))


def test_corrupt_lake_json(tmp_path):
    Lake.create(str(tmp_path))
    (tmp_path / "lake.json").write_text("{not json")
    with pytest.raises(CorruptFileError, match=f"{tmp_path}/lake.json is not valid JSON"):
        Lake.open(str(tmp_path))


def test_corrupt_run_json(tmp_path):
    lake = Lake.create(str(tmp_path))
    create_run(lake)
    path = tmp_path / "runs" / "r1" / "run.json"
    path.write_text(path.read_text()[:200])
    with pytest.raises(CorruptFileError, match=f"{path} is not valid JSON"):
        lake.run("r1")
    path.write_text(json.dumps({"run_id": "r1", "plan": {}, "layers": [], "model": {}, "corpus": {}}))
    with pytest.raises(CorruptFileError, match=f"{path} is malformed"):
        lake.run("r1")


def test_unknown_run_and_layer(tmp_path):
    lake = Lake.create(str(tmp_path))
    with pytest.raises(RunNotFoundError, match="no run 'nope'.*has no runs yet"):
        lake.run("nope")
    run = create_run(lake)
    with pytest.raises(RunNotFoundError, match="runs in this lake: r1"):
        lake.run("nope")
    with pytest.raises(LayerNotFoundError, match="its layers are: enc.conv1, enc.conv2"):
        run.read_rows("enc.conv9", [0])
    with pytest.raises(RunError, match="invalid run id"):
        lake.run("../etc")


def test_out_of_range_rows(tmp_path):
    run = create_run(Lake.create(str(tmp_path)))
    part = run.plan.parts[0]
    write_part(run, part.part_id)
    ok = run.read_rows("enc.conv1", [0, part.used_stop - 1])
    assert ok.shape == (2, 24)
    for bad in ([-1], [part.used_stop], [run.plan.total_rows + 5]):  # negative, padding, beyond the array
        with pytest.raises(OutOfRangeError, match=f"first: {bad[0]}"):
            run.read_rows("enc.conv1", bad)


def test_missing_shard_of_committed_unit(tmp_path):
    run = create_run(Lake.create(str(tmp_path)))
    part = run.plan.parts[0]
    write_part(run, part.part_id)
    shard = tmp_path / "runs" / "r1" / "activations.zarr" / "enc.conv2" / "c" / "1" / "0"
    os.remove(shard)
    run = Lake.open(str(tmp_path)).run("r1")
    np.testing.assert_array_equal(run.read_rows("enc.conv1", [300]).shape, (1, 24))  # other layer intact
    with pytest.raises(IntegrityError, match=f"missing, first {shard}"):
        run.read_rows("enc.conv2", [300])
    problems = run.verify()
    assert len(problems) == 1 and str(shard) in problems[0]


def test_checksum_mismatch(tmp_path):
    run = create_run(Lake.create(str(tmp_path)))
    part = run.plan.parts[0]
    write_part(run, part.part_id)
    table = tmp_path / "runs" / "r1" / "tables" / "frames" / f"{part.part_id}.parquet"
    good = table.read_bytes()
    # Same rows, different bytes: rewrite with another compression.
    import pyarrow.parquet as pq

    pq.write_table(pq.read_table(table), table, compression="snappy")
    with pytest.raises(IntegrityError, match=f"checksum mismatch for {table}"):
        run.read_table("frames")
    table.write_bytes(good)
    assert run.read_table("frames").num_rows == part.rows_used

    # Overwrite one shard with another part's valid shard: readable, but not what was committed.
    write_part(run, run.plan.parts[1].part_id)
    cdir = tmp_path / "runs" / "r1" / "activations.zarr" / "enc.conv1" / "c"
    first_of_unit1 = run.plan.parts[1].row_start // 256
    (cdir / "0" / "0").write_bytes((cdir / str(first_of_unit1) / "0").read_bytes())
    problems = run.verify()
    assert (
        len(problems) == 1 and "checksum mismatch for layer 'enc.conv1'" in problems[0] and part.part_id in problems[0]
    )


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["runs", "--lake", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("neurolake: error: ") and "not a neurolake lake" in err
    Lake.create(str(tmp_path / "lk"))
    (tmp_path / "lk" / "lake.json").write_text(json.dumps({"format": "neurolake", "version": 9}))
    assert main(["runs", "--lake", str(tmp_path / "lk")]) == 2
    assert "newer than this neurolake reads" in capsys.readouterr().err


def test_verify_names_each_damaged_part_once_with_its_problems(tmp_path, monkeypatch):
    """Verify reads ahead on threads (here two parts ahead, of ten): each part's problems still
    come out under that part, and intact parts have none."""
    import neurolake.store.run as run_module

    monkeypatch.setattr(run_module, "_VERIFY_PARTS_AHEAD", 2)
    run = create_run(Lake.create(str(tmp_path)))
    parts = run.plan.parts
    assert len(parts) >= 8
    for part in parts:
        write_part(run, part.part_id)
    root = tmp_path / "runs" / "r1"
    table = root / "tables" / "utterances" / f"{parts[2].part_id}.parquet"
    table.write_bytes(table.read_bytes()[:-10])  # truncated
    rps = run.plan.rows_per_shard
    missing = root / "activations.zarr" / "enc.conv2" / "c" / str(parts[5].row_start // rps) / "0"
    os.remove(missing)
    swapped = root / "activations.zarr" / "enc.conv1" / "c"
    last = parts[-1].row_start // rps
    (swapped / str(last) / "0").write_bytes((swapped / str(parts[0].row_start // rps) / "0").read_bytes())

    damaged = Lake.open(str(tmp_path)).run("r1").damaged_parts()
    assert list(damaged) == [parts[2].part_id, parts[5].part_id, parts[-1].part_id]
    assert [len(p) for p in damaged.values()] == [1, 1, 1]
    assert f"checksum mismatch for {table}" in damaged[parts[2].part_id][0]
    assert "missing" in damaged[parts[5].part_id][0] and "enc.conv2" in damaged[parts[5].part_id][0]
    assert "checksum mismatch for layer 'enc.conv1'" in damaged[parts[-1].part_id][0]
