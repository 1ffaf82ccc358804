"""Threads, and whether channels spin, follow the CPUs a process can keep busy: its affinity, a container's CPU limit."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

# What a fresh process sizes its pools to (importing the modules that make them).
REPORT = """
import json
from neurolake.cluster import channel, ray_env  # noqa: F401  (ray_env: imports cleanly)
from neurolake.introspect import naps
from neurolake.query import neurons
from neurolake.store import pools, reader, run
print(json.dumps({
    "usable": pools.usable_cpus(),
    "decode": reader._decode_pool.threads,
    "write": run._WRITE_THREADS,
    "naps": naps._POOL.threads,
    "stats": neurons._POOL.threads,
    # the most processes whose channels spin
    "spin": sum(channel.spin_where_cores(k, 0.02) > 0 for k in range(1, 257)),
}))
"""


def _sizes(prefix: list[str] | None = None, **env: str) -> dict[str, int]:
    environ = {k: v for k, v in os.environ.items() if k != "LOKY_MAX_CPU_COUNT"} | env
    out = subprocess.run(
        [*(prefix or []), sys.executable, "-c", REPORT], env=environ, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_pools_take_the_cpus_of_the_affinity_and_the_configured_cap():
    cores = len(os.sched_getaffinity(0))
    assert _sizes() == {
        "usable": cores,
        "decode": cores,
        "write": max(2, cores),
        "naps": cores,
        "stats": cores,
        "spin": cores,
    }
    capped = _sizes(LOKY_MAX_CPU_COUNT="1")
    assert capped == {"usable": 1, "decode": 1, "write": 2, "naps": 1, "stats": 1, "spin": 1}
    if cores > 1:
        pinned = _sizes(["taskset", "-c", "0"]) if shutil.which("taskset") else None
        assert pinned is None or pinned["decode"] == 1


def _cpu_controller() -> Path | None:
    """cgroup v1's cpu controller, where this process may make a cgroup."""
    root = Path("/sys/fs/cgroup/cpu")
    if os.geteuid() != 0 or not (root / "cpu.cfs_quota_us").exists() or not shutil.which("unshare"):
        return None
    return root if os.access(root, os.W_OK) else None


@pytest.mark.skipif(_cpu_controller() is None, reason="needs root, cgroup v1's cpu controller and unshare")
def test_pools_keep_within_a_container_cpu_limit():
    """A Kubernetes pod's CPU limit is a CFS quota while every core of the node stays in the
    affinity: a cgroup of one CPU's quota, seen as a container sees its own (bound over the
    controller's root in a private mount namespace), sizes every pool to one thread."""
    root = _cpu_controller()
    assert root is not None
    cores = len(os.sched_getaffinity(0))
    if cores < 2:
        pytest.skip("needs 2 cores for a limit of one to differ")
    group = root / f"neurolake-test-{uuid.uuid4().hex[:8]}"
    group.mkdir()
    try:
        (group / "cpu.cfs_period_us").write_text("100000")
        (group / "cpu.cfs_quota_us").write_text("100000")
        enter = (
            f"echo $$ > {group}/cgroup.procs && "
            f'exec unshare --mount sh -c \'mount --bind {group} {root} && exec "$@"\' sh "$0" "$@"'
        )
        limited = _sizes(["sh", "-c", enter])
        assert limited == {"usable": 1, "decode": 1, "write": 2, "naps": 1, "stats": 1, "spin": 1}
        # the same cgroup without its quota: the affinity's cores again
        (group / "cpu.cfs_quota_us").write_text("-1")
        assert _sizes(["sh", "-c", enter])["decode"] == cores
    finally:
        group.rmdir()
