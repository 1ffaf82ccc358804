"""The relevance cube: written beside the activations with the same parts, shards and commit
protocol; a part without its relevance never commits; runs and markers without it still read."""

from __future__ import annotations

import json

import numpy as np
import pytest

from neurolake.errors import IntegrityError, LayerNotFoundError, RunError
from neurolake.store import Lake, plan_parts
from tests.store.partdata import CHUNK_ROWS, LAYERS, ROWS_PER_SHARD, expected_rows, part_tables, utterance_lengths


def _relevance(rows: np.ndarray, units: int) -> np.ndarray:
    """Known float32 values below float16's resolution, as relevance is."""
    return (np.sin(rows[:, None] * 0.37 + np.arange(units)[None] * 1.3) * 1e-6).astype(np.float32)


def _create(lake: Lake, relevance=("enc.conv2",)):
    plan = plan_parts(utterance_lengths(12), rows_per_shard=ROWS_PER_SHARD, part_rows=600, chunk_rows=CHUNK_ROWS)
    return lake.create_run(
        "r1",
        model={"spec": "test-model", "sha256": "0" * 64, "tokens": ["-", " ", "A"], "frame_rate_hz": 50},
        corpus={"spec": "test-corpus", "n_utterances": 12},
        layers=LAYERS,
        plan=plan,
        relevance=list(relevance),
    )


def _write(run, part, with_relevance=True):
    writer = run.part_writer(part.part_id)
    rows = np.arange(part.row_start, part.used_stop)
    for li, layer in enumerate(run.layers):
        writer.append(layer.name, expected_rows(li, layer.units, rows))
    if with_relevance:
        for lo in range(0, rows.size, 97):  # blocks that do not align with shards
            writer.append_relevance("enc.conv2", _relevance(rows[lo : lo + 97], 10))
    utterances, frames = part_tables(run, part)
    writer.write_table("utterances", utterances)
    writer.write_table("frames", frames)
    return writer


def test_relevance_round_trip_verify_and_the_commit_protocol(tmp_path):
    lake = Lake.create(str(tmp_path / "lake"))
    run = _create(lake)
    assert run.manifest["relevance"] == ["enc.conv2"] and [s.dtype for s in run.relevance_layers] == ["float32"]
    first, second = run.plan.parts[0], run.plan.parts[1]
    # A part whose relevance is missing is refused at commit and stays invisible.
    with pytest.raises(IntegrityError, match="the relevance of layer 'enc.conv2' got 0 rows"):
        _write(run, first, with_relevance=False).commit()
    assert run.commits() == {}
    _write(run, first).commit()
    _write(run, second).commit()
    run = lake.run("r1")
    ids = np.concatenate([np.arange(p.row_start, p.used_stop) for p in (first, second)])[::7]
    np.testing.assert_array_equal(run.read_rows("enc.conv2", ids, relevance=True), _relevance(ids, 10))
    np.testing.assert_array_equal(run.read_rows("enc.conv2", ids), expected_rows(1, 10, ids))
    into = np.zeros((ids.size, 10), np.float32)  # into a buffer of the relevance's dtype, not the layer's
    run.read_rows("enc.conv2", ids, relevance=True, out=into)
    np.testing.assert_array_equal(into, _relevance(ids, 10))
    with pytest.raises(ValueError, match="float32"):
        run.read_rows("enc.conv2", ids, relevance=True, out=into.astype(np.float16))
    marker = json.loads((tmp_path / "lake/runs/r1/commits" / f"{first.part_id}.json").read_text())
    assert set(marker["relevance"]) == {"enc.conv2"} and set(marker["layers"]) == {"enc.conv1", "enc.conv2"}
    with pytest.raises(LayerNotFoundError, match="stores no relevance of layer 'enc.conv1'"):
        run.read_rows("enc.conv1", ids, relevance=True)
    with pytest.raises(LayerNotFoundError, match="stores no relevance of layer 'enc.conv1'"):
        run.part_writer(second.part_id).append_relevance("enc.conv1", np.zeros((3, 24)))
    assert run.verify() == []
    shard = tmp_path / "lake/runs/r1/relevance.zarr/enc.conv2/c/0/0"
    shard.write_bytes(shard.read_bytes()[:-8] + b"\0" * 8)
    problems = lake.run("r1").damaged_parts()
    assert list(problems) == [first.part_id] and "relevance of layer 'enc.conv2'" in problems[first.part_id][0]
    with pytest.raises(RunError, match="must be distinct layers of the run"):
        _create(Lake.create(str(tmp_path / "other")), relevance=("enc.conv9",))


def test_runs_and_markers_without_relevance_still_read(tmp_path):
    lake = Lake.create(str(tmp_path / "lake"))
    run = _create(lake, relevance=())
    assert "relevance" not in run.manifest and run.relevance_layers == []
    part = run.plan.parts[0]
    _write(run, part, with_relevance=False).commit()
    marker = json.loads((tmp_path / "lake/runs/r1/commits" / f"{part.part_id}.json").read_text())
    assert "relevance" not in marker  # the marker format of runs written before
    run = lake.run("r1")
    ids = np.arange(part.row_start, part.used_stop)
    np.testing.assert_array_equal(run.read_rows("enc.conv1", ids), expected_rows(0, 24, ids))
    assert run.verify() == [] and not run.has_relevance("enc.conv2")
    with pytest.raises(LayerNotFoundError, match="ingest with --relevance"):
        run.read_rows("enc.conv2", ids, relevance=True)
