"""One writer per run: the lease, its expiry, a dead holder, and writers that lost it."""

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from neurolake.errors import RunBusyError, RunLeaseLostError
from neurolake.store import Lake
from neurolake.store.lease import RunLease
from tests.store.partdata import create_run, take_lease_in_process, write_part

REPO = Path(__file__).resolve().parents[2]


def test_of_processes_taking_the_lease_at_once_one_wins(shared_target):
    url, opts = shared_target
    create_run(Lake.create(url, opts))
    n = 4
    with ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context("spawn")) as pool:
        start_at = time.time() + 8
        outcomes = list(pool.map(take_lease_in_process, [url] * n, [opts] * n, [start_at] * n))
    assert sum(o.startswith("took") for o in outcomes) == 1, outcomes
    busy = [o for o in outcomes if o.startswith("busy")]
    assert len(busy) == n - 1
    assert all("one writer per run" in o or "at this moment" in o for o in busy)


def test_expired_lease_is_taken_over_and_the_old_writer_cannot_commit(tmp_path):
    lake = Lake.create(str(tmp_path / "lake"))
    run = create_run(lake)
    first = RunLease(run.loc, ttl_s=0.6).acquire()
    with pytest.raises(RunBusyError, match=f"pid {os.getpid()}"):
        RunLease(run.loc).acquire()
    first._stop.set()  # the holder hangs: no more heartbeats
    time.sleep(1.0)
    second = RunLease(run.loc).acquire()
    assert second.epoch == first.epoch + 1
    # the first writer finishes a part, but its commit is refused: the part stays invisible
    part = run.plan.parts[0]
    with pytest.raises(RunLeaseLostError, match="another ingest"):
        write_part(run, part.part_id, lease=first.token)
    assert run.commits() == {}
    write_part(run, part.part_id, lease=second.token)  # the holder's commit goes through
    assert list(run.commits()) == [part.part_id]
    second.release()
    # released: the next writer takes it at once
    third = RunLease(run.loc).acquire()
    assert third.epoch == second.epoch + 1
    third.release()


def test_a_killed_holder_on_this_host_does_not_block(tmp_path):
    lake = Lake.create(str(tmp_path / "lake"))
    run = create_run(lake)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from neurolake.store import Lake\n"
            "from neurolake.store.lease import RunLease\n"
            "RunLease(Lake.open(sys.argv[1]).loc.child('runs', 'r1')).acquire()\n"
            "print('held', flush=True)\n"
            "time.sleep(600)\n",
            str(tmp_path / "lake"),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(RunBusyError, match=f"pid {holder.pid}"):
        RunLease(run.loc).acquire()
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    lease = RunLease(run.loc).acquire()  # no need to wait for the 60 s expiry
    assert lease.epoch == 2
    lease.release()
