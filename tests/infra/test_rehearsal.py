"""The local rehearsal of infra/compose without containers: the loopback S3 server stands in for
MinIO, `ray start --head` and `ray start --address` for the head and worker services (with the
compose file's own flags), and the rehearsal service's neurolake commands run verbatim, in order,
with its environment pointed at those stand-ins."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import _free_port
from tests.infra.commands import REPO, load_yaml_documents, parse_ray_start, shell_commands

pytestmark = pytest.mark.slow

COMPOSE = REPO / "infra" / "compose" / "compose.yaml"


def _service(name: str) -> dict:
    (compose,) = load_yaml_documents(COMPOSE)
    return compose["services"][name]


def _rehearsal_script() -> str:
    command = _service("rehearsal")["command"]
    assert command[:2] == ["sh", "-euxc"], command
    return command[2]


def _local_ray_start(argv: list[str], port: int) -> list[str]:
    """A compose service's `ray start` as a process on loopback: the head's port and the worker's
    address become the free port, and the dashboard (Ray's `default` extra, which the test
    environment does not install) stays off."""
    parse_ray_start(argv)  # the compose file's own flags are valid
    local = []
    for word in argv[2:]:
        if word.startswith("--port="):
            word = f"--port={port}"
        elif word.startswith("--address="):
            word = f"--address=127.0.0.1:{port}"
        elif word.startswith("--dashboard-host="):
            continue
        local.append(word)
    if "--head" in local:
        local.append("--include-dashboard=false")
    ray = os.path.join(os.path.dirname(sys.executable), "ray")
    return [ray, "start", *local, "--node-ip-address=127.0.0.1"]


def _alive_nodes(env: dict[str, str]) -> int:
    probe = "import ray; ray.init(log_to_driver=False); print(sum(n['Alive'] for n in ray.nodes()))"
    proc = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    return int(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else 0


@pytest.fixture
def rehearsal_cluster(s3_server):
    """The compose topology as processes: a bucket on the loopback S3 server, a Ray head and one
    worker node; yields the rehearsal service's environment pointed at them."""
    import boto3
    import ray

    if ray.is_initialized():  # a Ray of an earlier test in this process; the CLI runs its own
        ray.shutdown()
    port = _free_port()
    environment = {k: str(v) for k, v in _service("rehearsal")["environment"].items()}
    assert environment["AWS_ENDPOINT_URL"] == "http://minio:9000" and environment["RAY_ADDRESS"] == "ray-head:6379"
    assert environment["RAY_AUTH_MODE"] == "token" and len(environment["RAY_AUTH_TOKEN"]) == 64
    environment["AWS_ENDPOINT_URL"] = s3_server
    environment["RAY_ADDRESS"] = f"127.0.0.1:{port}"
    boto3.client(
        "s3",
        endpoint_url=s3_server,
        aws_access_key_id=environment["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=environment["AWS_SECRET_ACCESS_KEY"],
        region_name=environment["AWS_DEFAULT_REGION"],
    ).create_bucket(Bucket="neurolake")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "AWS_"))}
    env.update(environment, PYTHONPATH=str(REPO))
    nodes = []
    try:
        for service in ("ray-head", "ray-worker"):
            argv = _local_ray_start(_service(service)["command"], port)
            nodes.append(
                subprocess.Popen(
                    argv,
                    env=env,
                    cwd=REPO,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
            if service == "ray-head":
                time.sleep(3)  # let the head's GCS come up before the worker dials it
        deadline = time.time() + 120
        while _alive_nodes(env) < 2:
            assert all(node.poll() is None for node in nodes), "a Ray node process exited"
            assert time.time() < deadline, "the worker node did not join the head within 120 s"
            time.sleep(1)
        yield env
    finally:
        # Both nodes at once, a few seconds to stop cleanly: one at a time with 15 s each, the
        # teardown took 15.7 s.
        for node in reversed(nodes):
            os.killpg(node.pid, signal.SIGTERM)
        deadline = time.time() + 5
        for node in reversed(nodes):
            try:
                node.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                os.killpg(node.pid, signal.SIGKILL)
                node.wait()


def _number(pattern: str, text: str) -> int:
    found = re.search(pattern, text, re.M)
    assert found, f"{pattern!r} not in:\n{text}"
    return int(found.group(1).replace(",", ""))


def test_the_rehearsal_ingests_into_s3_through_the_worker_and_queries_the_lake(rehearsal_cluster, s3_server):
    import boto3

    env = rehearsal_cluster
    outputs = []
    for argv in shell_commands(_rehearsal_script()):
        assert argv[0] == "neurolake", argv
        proc = subprocess.run(
            [sys.executable, "-m", "neurolake.cli", *argv[1:]],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=400,
        )
        assert proc.returncode == 0, f"`{shlex.join(argv)}` failed:\n{proc.stderr[-3000:]}"
        outputs.append(proc.stdout)
    synth, dry_run, ingest, runs, sql = outputs

    made = _number(r"^wrote (\d+) utterances", synth)
    assert made == 6
    planned = _number(r"^\s+utterances\s+([\d,]+) planned, 0 with errors", dry_run)
    frames = _number(r"^\s+frames\s+([\d,]+) \(rows", dry_run)
    parts = _number(r"^\s+parts\s+([\d,]+)$", dry_run)
    assert planned == made and frames > 0 and parts >= 2  # --part-rows 512 splits the run

    assert _number(r"^\s+utterances\s+([\d,]+) done, 0 failed", ingest) == planned
    assert _number(r"^\s+frames\s+([\d,]+) \(", ingest) == frames
    # The head has no CPUs (--num-cpus=0): every part was written by the worker node.
    assert _number(r"^\s+nodes\s+(\d+)$", ingest) == 1
    assert re.search(r"^\s*rehearsal\s.*\bcomplete\b", runs, re.M), runs

    # The query's one row: 6 utterances, the planned frames, a word error rate in [0, 1].
    row = next(line for line in sql.splitlines() if re.match(r"^\s*\d", line))
    utterances, total_frames, wer = row.split()
    assert (int(utterances), int(total_frames)) == (planned, frames) and 0.0 <= float(wer) <= 1.0

    # The lake is in the bucket: one commit marker per planned part.
    s3 = boto3.client(
        "s3", endpoint_url=s3_server, aws_access_key_id="x", aws_secret_access_key="x", region_name="us-east-1"
    )
    listed = s3.list_objects_v2(Bucket="neurolake", Prefix="lake/runs/rehearsal/commits/").get("Contents", [])
    assert len(listed) == parts
