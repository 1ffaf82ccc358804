"""A lake on ``gs://``: written, verified, queried with SQL and gathered through gcsfs against a
GCS emulator on loopback."""

from __future__ import annotations

import numpy as np

from neurolake.query.engine import QueryEngine
from neurolake.query.gather import gather_activations
from neurolake.query.groups import create_group
from neurolake.store import Lake
from tests.store.partdata import create_run, expected_rows, write_part


def test_a_lake_on_gcs_is_written_verified_queried_and_gathered(gcs_bucket):
    bucket, options = gcs_bucket
    url = f"gs://{bucket}/lake"
    lake = Lake.create(url, options)
    run = create_run(lake)
    for part in run.plan.parts:
        write_part(run, part.part_id)
    lake = Lake.open(url, options)
    run = lake.run("r1")
    assert lake.list_runs() == ["r1"] and run.verify() == []
    ids = run.committed_frame_ids()
    np.testing.assert_array_equal(run.read_rows("enc.conv1", ids[::7]), expected_rows(0, 24, ids[::7]))
    with QueryEngine(lake) as q:
        n = q.sql("SELECT count(*) AS n FROM frames WHERE run_id = 'r1'").column("n")[0].as_py()
        assert q.via == "fsspec"
    assert n == ids.size
    group = create_group(lake, "odd", "r1", "frame_index % 2 = 1")
    got = gather_activations(lake, ["enc.conv2"], group="odd")
    np.testing.assert_array_equal(got.frame_ids, group.frame_ids())
    np.testing.assert_array_equal(got.layers["enc.conv2"], expected_rows(1, 10, got.frame_ids))
