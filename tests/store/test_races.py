"""Processes racing to create one lake, one run and one group name."""

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest

from neurolake.errors import QueryError
from neurolake.query.engine import QueryEngine
from neurolake.query.groups import create_group, get_group, list_groups
from neurolake.store import Lake
from tests.store.partdata import create_group_in_process, create_lake_and_run_in_process, create_run, write_part


def _pool(n):
    return ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context("spawn"))


def test_lake_and_run_creation_races(shared_target):
    url, opts = shared_target
    n = 4
    with _pool(n) as pool:
        # the processes start, import everything, then all create at one moment
        start_at = time.time() + 8
        manifests = list(pool.map(create_lake_and_run_in_process, [url] * n, [opts] * n, [start_at] * n))
    # every process got the one run that was written (same manifest, created_at included)
    stored = Lake.open(url, opts).run("r1").manifest
    assert all(m == stored for m in manifests)
    assert Lake.open(url, opts).list_runs() == ["r1"]


@pytest.fixture
def lake(tmp_path):
    lake = Lake.create(str(tmp_path / "lake"))
    run = create_run(lake)
    for u in run.plan.parts:
        write_part(run, u.part_id)
    return lake


def test_one_name_two_processes_one_group(lake):
    predicates = ["word_error", "token_error"]
    with _pool(2) as pool:
        start_at = time.time() + 8
        outcomes = list(
            pool.map(create_group_in_process, [lake.url] * 2, ["g"] * 2, predicates, [False] * 2, [start_at] * 2)
        )
    created = [o for o in outcomes if o.startswith("created")]
    refused = [o for o in outcomes if o.startswith("refused")]
    assert len(created) == 1 and len(refused) == 1, outcomes
    assert "'g'" in refused[0] and "--replace" in refused[0]
    winner = created[0].split(" ", 1)[1]
    g = get_group(lake, "g")
    assert g.predicate == winner and [x.name for x in list_groups(lake)] == ["g"]
    frames = lake.run("r1").read_table("frames")
    expected = frames.filter(frames.column(winner)).column("frame_id").to_numpy()
    with QueryEngine(lake) as q:
        ids = q.arrow("SELECT frame_id FROM group_frames WHERE name = 'g' ORDER BY frame_id").column("frame_id")
    np.testing.assert_array_equal(ids.to_numpy(), expected)  # one group's frames, not the union


def test_replace_is_atomic_and_keeps_the_old_group_on_failure(lake):
    old = create_group(lake, "g", "r1", "word_error")
    # a replacement whose query fails leaves the old group untouched
    with pytest.raises(QueryError, match="no_such_column"):
        create_group(lake, "g", "r1", "no_such_column", replace=True)
    assert get_group(lake, "g").predicate == "word_error"
    np.testing.assert_array_equal(get_group(lake, "g").frame_ids(), old.frame_ids())
    # a successful replacement: the new frames, one group of that name, the old files gone
    new = create_group(lake, "g", "r1", "token_error", replace=True)
    assert [(x.name, x.predicate) for x in list_groups(lake)] == [("g", "token_error")]
    assert not old.derived.loc.exists("frames.parquet")
    with QueryEngine(lake) as q:
        n = q.arrow("SELECT count(*) AS n FROM group_frames WHERE name = 'g'").column("n")[0].as_py()
    assert n == new.n_frames


def test_two_replacements_at_once_leave_one_group(lake):
    create_group(lake, "g", "r1", "word_error")
    predicates = ["token_error", "NOT word_error"]
    with _pool(2) as pool:
        start_at = time.time() + 8
        outcomes = list(
            pool.map(create_group_in_process, [lake.url] * 2, ["g"] * 2, predicates, [True] * 2, [start_at] * 2)
        )
    assert all(o.startswith("created") for o in outcomes), outcomes
    (g,) = list_groups(lake)
    assert g.predicate in predicates
    with QueryEngine(lake) as q:
        n = q.arrow("SELECT count(*) AS n FROM group_frames WHERE name = 'g'").column("n")[0].as_py()
    assert n == g.n_frames
