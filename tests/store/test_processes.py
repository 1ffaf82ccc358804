"""Several writer processes at once, and a writer killed before its commit."""

import multiprocessing
import os
import signal
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from neurolake.store import Lake
from tests.store.partdata import LAYERS, create_run, expected_rows, write_units_in_process

REPO = Path(__file__).resolve().parents[2]


def test_concurrent_writers(shared_target):
    url, opts = shared_target
    run = create_run(Lake.create(url, opts), n_utterances=60, part_rows=300)
    parts = [u.part_id for u in run.plan.parts]
    assert len(parts) >= 8
    batches = [parts[i::4] for i in range(4)]
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=4, mp_context=ctx) as pool:
        done = list(pool.map(write_units_in_process, [url] * 4, [opts] * 4, ["r1"] * 4, batches))
    assert sorted(u for b in done for u in b) == sorted(parts)

    run = Lake.open(url, opts).run("r1")
    assert run.info().status == "complete"
    everything = np.arange(run.plan.total_rows)
    committed = run.committed_frame_ids()
    assert committed.size == run.plan.n_frames
    for li, layer in enumerate(LAYERS):
        np.testing.assert_array_equal(run.read_rows(layer.name, committed), expected_rows(li, layer.units, committed))
        # padding rows are zeros, frames exactly as written
        whole = run.layer_dask(layer.name).compute()
        padding = np.setdiff1d(everything, committed)
        assert not whole[padding].any()
    assert run.read_table("frames").column("frame_id").to_pylist() == committed.tolist()
    assert run.verify() == []


CRASHING_WRITER = """
import os, signal, sys
from neurolake.store import Lake
from tests.store.partdata import write_part
run = Lake.open(sys.argv[1]).run("r1")
write_part(run, sys.argv[2], commit=False)   # every shard and table written ...
os.kill(os.getpid(), signal.SIGKILL)          # ... and the process dies before its commit
"""


def _unit_files(lake_dir: Path, part) -> dict[str, bytes]:
    run_dir = lake_dir / "runs" / "r1"
    out = {}
    for path in sorted(run_dir.rglob("*")):
        rel = path.relative_to(run_dir).as_posix()
        if path.is_file() and (part.part_id in rel or _in_unit_shards(rel, part)):
            out[rel] = path.read_bytes()
    return out


def _in_unit_shards(rel: str, part) -> bool:
    parts = rel.split("/")
    if len(parts) == 5 and parts[0] == "activations.zarr" and parts[2] == "c":
        return part.row_start // 256 <= int(parts[3]) < part.row_stop // 256
    return False


def test_killed_writer_leaves_unit_invisible_and_rerun_is_identical(tmp_path):
    crashed, clean = tmp_path / "crashed", tmp_path / "clean"
    run = create_run(Lake.create(str(crashed)))
    create_run(Lake.create(str(clean)))
    part = run.plan.parts[1]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", CRASHING_WRITER, str(crashed), part.part_id], env=env, cwd=REPO)
    assert proc.returncode == -signal.SIGKILL

    run = Lake.open(str(crashed)).run("r1")
    files = _unit_files(crashed, part)
    assert any(k.startswith("activations.zarr/") for k in files), "the writer should have written shards"
    assert any(k.startswith("tables/frames/") for k in files)
    assert run.commits() == {} and run.info().frames_committed == 0
    assert run.read_table("frames").num_rows == 0
    with pytest.raises(Exception, match="not rows of a committed part"):
        run.read_rows("enc.conv1", [part.row_start])
    assert [u.part_id for u in run.pending_parts()] == [u.part_id for u in run.plan.parts]

    # Run the part again in a healthy process; and once, undisturbed, in the clean lake.
    rerun = subprocess.run(
        [
            sys.executable,
            "-c",
            CRASHING_WRITER.replace("commit=False", "commit=True").split("os.kill")[0],
            str(crashed),
            part.part_id,
        ],
        env=env,
        cwd=REPO,
    )
    assert rerun.returncode == 0
    from tests.store.partdata import write_part

    write_part(Lake.open(str(clean)).run("r1"), part.part_id)
    assert list(Lake.open(str(crashed)).run("r1").commits()) == [part.part_id]
    a, b = _unit_files(crashed, part), _unit_files(clean, part)
    assert a.keys() == b.keys() and f"commits/{part.part_id}.json" in a
    assert all(a[k] == b[k] for k in a)
