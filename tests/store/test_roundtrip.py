"""Round trips through the store on a local directory, memory:// and a moto S3 server."""

import numpy as np
import pytest

from neurolake.errors import OutOfRangeError, RunConflictError
from neurolake.store import Lake, LayerSpec
from tests.store.partdata import LAYERS, create_run, expected_rows, part_tables, write_part


def test_lake_json_and_runs(lake_target):
    url, opts = lake_target
    lake = Lake.create(url, opts)
    assert lake.loc.read_json("lake.json") == {"format": "neurolake", "version": 2}
    assert Lake.open(url, opts).list_runs() == []
    run = create_run(lake)
    assert Lake.open(url, opts).list_runs() == ["r1"]
    info = run.info()
    assert (info.status, info.parts_committed, info.frames_committed) == ("planned", 0, 0)
    assert info.parts_total == len(run.plan.parts) > 2


def test_write_read_round_trip(lake_target):
    url, opts = lake_target
    lake = Lake.create(url, opts)
    run = create_run(lake)
    parts = run.plan.parts
    for part in parts[:-1]:
        write_part(run, part.part_id)
    run = Lake.open(url, opts).run("r1")
    info = run.info()
    assert info.status == "partial"
    assert info.parts_committed == len(parts) - 1
    assert info.frames_committed == sum(u.rows_used for u in parts[:-1])

    committed = run.committed_frame_ids()
    assert committed.size == info.frames_committed
    rng = np.random.default_rng(0)
    ids = rng.choice(committed, size=300)  # with repeats, unsorted
    for li, layer in enumerate(LAYERS):
        got = run.read_rows(layer.name, ids)
        assert got.dtype == np.float16 and got.shape == (300, layer.units)
        np.testing.assert_array_equal(got, expected_rows(li, layer.units, ids))
    # A whole part range, and the dask view of the whole layer.
    u = parts[1]
    np.testing.assert_array_equal(
        run.read_range("enc.conv2", u.row_start, u.used_stop), expected_rows(1, 10, np.arange(u.row_start, u.used_stop))
    )
    dask_layer = run.layer_dask("enc.conv1")
    assert dask_layer.shape == (run.plan.total_rows, 24)
    np.testing.assert_array_equal(dask_layer[committed].compute(), expected_rows(0, 24, committed))
    # Rows of the uncommitted part are not visible.
    with pytest.raises(OutOfRangeError, match="not rows of a committed part"):
        run.read_rows("enc.conv1", [parts[-1].row_start])

    frames = run.read_table("frames")
    assert frames.num_rows == info.frames_committed
    assert frames.column("frame_id").to_pylist() == committed.tolist()
    assert set(frames.column("run_id").to_pylist()) == {"r1"}
    expected_utts = [p.utterance_id for u in parts[:-1] for p in u.utterances]
    assert run.read_table("utterances").column("utterance_id").to_pylist() == expected_utts
    assert run.read_table("errors").num_rows == 0
    assert run.verify() == []

    # Committing the last part completes the run.
    write_part(run, parts[-1].part_id)
    assert run.info().status == "complete"
    assert run.read_table("frames").num_rows == run.plan.n_frames


def test_rerun_rewrites_same_bytes(lake_target):
    url, opts = lake_target
    lake = Lake.create(url, opts)
    run = create_run(lake)
    part = run.plan.parts[0]
    write_part(run, part.part_id, block_rows=100)
    before = {k: lake.loc.read_bytes("runs", "r1", k) for k in _unit_keys(run, part)}
    write_part(run, part.part_id, block_rows=77)
    after = {k: lake.loc.read_bytes("runs", "r1", k) for k in _unit_keys(run, part)}
    assert before == after and len(before) >= 3 + 2 * (part.row_stop - part.row_start) // 256


def _unit_keys(run, part):
    keys = [f"commits/{part.part_id}.json"] + [
        f"tables/{t}/{part.part_id}.parquet" for t in ("utterances", "frames", "errors")
    ]
    for layer in LAYERS:
        for s in range(part.row_start // 256, part.row_stop // 256):
            keys.append(f"activations.zarr/{layer.name}/c/{s}/0")
    return keys


def test_create_run_again(lake_target):
    url, opts = lake_target
    lake = Lake.create(url, opts)
    first = create_run(lake)
    again = create_run(lake)  # same manifest: the existing run
    assert again.manifest == first.manifest
    with pytest.raises(RunConflictError, match="different corpus, plan"):
        create_run(lake, n_utterances=31)

    with pytest.raises(RunConflictError, match="layers"):
        lake.create_run(
            "r1",
            model=first.manifest["model"],
            corpus=first.manifest["corpus"],
            layers=[LayerSpec("enc.conv1", 24, module="enc.0")],
            plan=first.plan,
        )
    # The same corpus and weights named by other paths (another directory, moved): the same run.
    # The weights are the same where their digests are; a model without one is its spec.
    corpus = first.manifest["corpus"]
    model = {"spec": "hf:./model", "weights_sha256": "a" * 64, "tokens": ["-", " ", "A"], "frame_rate_hz": 50}
    second = lake.create_run("r2", model=model, corpus=corpus, layers=LAYERS, plan=first.plan)
    elsewhere = lake.create_run(
        "r2",
        model={**model, "spec": "hf:/home/me/model"},
        corpus={**corpus, "spec": "/data/moved/corpus"},
        layers=LAYERS,
        plan=first.plan,
    )
    assert elsewhere.manifest == second.manifest  # the run as first written
    with pytest.raises(RunConflictError, match="model"):  # other weights
        lake.create_run(
            "r2", model={**model, "weights_sha256": "b" * 64}, corpus=corpus, layers=LAYERS, plan=first.plan
        )
    with pytest.raises(RunConflictError, match="model"):  # no digest: another spec is another model
        lake.create_run(
            "r1", model={**first.manifest["model"], "spec": "other"}, corpus=corpus, layers=LAYERS, plan=first.plan
        )
    assert Lake.open(url, opts).run("r1").manifest == first.manifest


def test_writer_refuses_rows_outside_its_range(lake_target):
    url, opts = lake_target
    run = create_run(Lake.create(url, opts))
    part = run.plan.parts[0]
    writer = run.part_writer(part.part_id)
    writer.append("enc.conv2", np.zeros((part.rows_used - 5, 10)))
    with pytest.raises(OutOfRangeError, match=f"owns frame rows \\[0, {part.used_stop}\\)"):
        writer.append("enc.conv2", np.zeros((6, 10)))
    utterances, frames = part_tables(run, part)
    frames["frame_id"] = frames["frame_id"] + 1  # last frame now falls outside the part
    with pytest.raises(OutOfRangeError, match="outside the part's rows"):
        writer.write_table("frames", frames)
    from neurolake.errors import IntegrityError

    with pytest.raises(IntegrityError, match="got 0 rows"):
        writer.commit()
    assert run.commits() == {}


def test_a_parts_shards_are_the_same_bytes_however_its_rows_were_appended(tmp_path):
    """Whole parts in one block (shards that are the block's own rows), and the same rows in
    blocks of 1 to 700 rows, strided ones among them (shards filled from several blocks, the
    rest of a block carried over, the part's last shard padded): the same shard files, byte
    for byte, the same digests, and the rows read back."""
    rng = np.random.default_rng(11)
    runs = []
    for way in ("whole", "pieces"):
        run = create_run(Lake.create(str(tmp_path / way)))
        for part in run.plan.parts:
            writer = run.part_writer(part.part_id)
            rows = np.arange(part.row_start, part.used_stop)
            for li, layer in enumerate(run.layers):
                values = expected_rows(li, layer.units, rows)
                if way == "whole":
                    writer.append(layer.name, values)
                    continue
                lo = 0
                while lo < rows.size:
                    n = int(rng.choice([1, 7, 63, 64, 255, 256, 257, 700]))
                    block = values[lo : lo + n]
                    if rng.random() < 0.3:  # a strided view of the same rows
                        block = np.asfortranarray(block)[:, ::-1][:, ::-1]
                    writer.append(layer.name, block)
                    lo += n
            utterances, frames = part_tables(run, part)
            writer.write_table("utterances", utterances)
            writer.write_table("frames", frames)
            writer.commit()
        runs.append(run)
    whole, pieces = runs
    files = {
        p.relative_to(tmp_path / "whole"): p.read_bytes()
        for p in (tmp_path / "whole").rglob("*")
        if p.is_file() and "/c/" in str(p)
    }
    assert len(files) == len(whole.layers) * whole.plan.parts[-1].row_stop // whole.plan.rows_per_shard
    for name, data in files.items():
        assert (tmp_path / "pieces" / name).read_bytes() == data, name
    assert [m.layers for m in whole.commits().values()] == [m.layers for m in pieces.commits().values()]
    n = whole.plan.parts[-1].used_stop
    for li, layer in enumerate(whole.layers):
        got = pieces.read_range(layer.name, 0, n)
        used = np.concatenate([np.arange(p.row_start, p.used_stop) for p in whole.plan.parts])
        np.testing.assert_array_equal(got[used], expected_rows(li, layer.units, used))
