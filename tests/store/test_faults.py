"""Faults of object storage: a proxy in front of the loopback S3 server answers 500 and 503
(SlowDown), resets connections, cuts answers after a write was applied and delays requests.

"The same lake" here: the same files, byte for byte, under the run (shards and array metadata of
every layer, every table file, every commit marker), and a ``run.json`` that differs at most in
its creation time and software versions (:func:`run_files`); lease records are the writers' own.
"""

from __future__ import annotations

from pathlib import Path

import boto3
import botocore.config
import botocore.exceptions
import pytest

from neurolake.query.engine import QueryEngine
from neurolake.store import Lake, Location
from neurolake.store.lease import RunLease
from neurolake.store.run import _identity
from tests.faults import FaultProxy
from tests.store.partdata import create_run, write_part

REPO = Path(__file__).resolve().parents[2]
MODEL = "python:tests.models.demo_factory:build"
#: One request in four fails, one in twenty is delayed.
MODERATE = {"500": 0.08, "503": 0.08, "reset": 0.05, "drop": 0.04, "latency": 0.05}
FRAMES = "SELECT * FROM frames ORDER BY run_id, frame_id"


@pytest.fixture
def proxy(s3_server):
    with FaultProxy(s3_server, seed=11, latency_s=0.02) as p:
        yield p


def _through(options: dict, endpoint: str) -> dict:
    return dict(options, client_kwargs=dict(options["client_kwargs"], endpoint_url=endpoint))


def run_files(loc: Location, run_id: str) -> tuple[dict, dict[str, bytes]]:
    """A run's manifest without its incidental keys, and the bytes of each of its files but
    ``run.json`` and the lease records, by path below the run."""
    run_loc = loc.child("runs", run_id)
    files = {
        rel: run_loc.read_bytes(rel)
        for rel in run_loc.find()
        if rel != "run.json" and not rel.startswith(("lease/", "derived/"))
    }
    return _identity(run_loc.read_json("run.json")), files


def test_the_proxy_forwards_faithfully_and_injects_each_kind(s3_server, proxy):
    def client(endpoint: str, attempts: int = 1):
        return boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="t",
            aws_secret_access_key="t",
            region_name="us-east-1",
            config=botocore.config.Config(retries={"total_max_attempts": attempts, "mode": "standard"}),
        )

    direct, via = client(s3_server), client(proxy.endpoint)
    via.create_bucket(Bucket="faithful")
    data = bytes(range(256)) * 4096
    via.put_object(Bucket="faithful", Key="a/x", Body=data)
    upload = via.create_multipart_upload(Bucket="faithful", Key="a/multi")["UploadId"]
    pieces = [b"p" * (5 << 20), b"q" * 1000]
    etags = [
        via.upload_part(Bucket="faithful", Key="a/multi", UploadId=upload, PartNumber=i + 1, Body=b)["ETag"]
        for i, b in enumerate(pieces)
    ]
    via.complete_multipart_upload(
        Bucket="faithful",
        Key="a/multi",
        UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": i + 1, "ETag": e} for i, e in enumerate(etags)]},
    )
    assert direct.get_object(Bucket="faithful", Key="a/multi")["Body"].read() == b"".join(pieces)
    for c in (direct, via):
        ranged = c.get_object(Bucket="faithful", Key="a/x", Range="bytes=1000-1999")
        assert ranged["Body"].read() == data[1000:2000] and ranged["ContentRange"] == f"bytes 1000-1999/{len(data)}"
        assert c.get_object(Bucket="faithful", Key="a/x", Range="bytes=-16")["Body"].read() == data[-16:]
        head = c.head_object(Bucket="faithful", Key="a/x")
        assert head["ContentLength"] == len(data)
        assert [o["Key"] for o in c.list_objects_v2(Bucket="faithful", Prefix="a/")["Contents"]] == ["a/multi", "a/x"]
    assert head["ETag"] == direct.head_object(Bucket="faithful", Key="a/x")["ETag"]
    assert sum(proxy.injected.values()) == 0

    expected = {
        "500": (botocore.exceptions.ClientError, "InternalError"),
        "503": (botocore.exceptions.ClientError, "SlowDown"),
        "reset": (botocore.exceptions.ConnectionClosedError, "Connection was closed"),
        "drop": (botocore.exceptions.ResponseStreamingError, "reset by peer"),
    }
    for kind, (error, text) in expected.items():
        proxy.set_faults({kind: 1.0})
        with pytest.raises(error, match=text):
            via.get_object(Bucket="faithful", Key="a/x")["Body"].read()
    # a dropped PUT is applied, only its answer is lost
    proxy.set_faults({"drop": 1.0}, methods={"PUT"})
    with pytest.raises(botocore.exceptions.ConnectionClosedError):
        via.put_object(Bucket="faithful", Key="a/dropped", Body=b"applied")
    assert direct.get_object(Bucket="faithful", Key="a/dropped")["Body"].read() == b"applied"
    # retries get through faults that end; latency delays without failing
    proxy.set_faults({"503": 1.0, "latency": 1.0}, limit=2)
    assert client(proxy.endpoint, attempts=3).get_object(Bucket="faithful", Key="a/x")["Body"].read() == data
    assert proxy.injected == {"500": 1, "503": 3, "reset": 1, "drop": 2, "latency": 2}


def test_a_lost_answer_to_the_lease_put_still_takes_the_lease(s3_bucket, proxy):
    """The conditional PUT of a lease epoch is applied but its answer lost; botocore's retry then
    finds the key taken (412). Before: "run is being written by another ingest" (this one)."""
    bucket, options = s3_bucket
    proxy.set_faults({"drop": 1.0}, methods={"PUT"}, match="/lease/", limit=1)
    loc = Location.from_url(f"s3://{bucket}/lake/runs/r", _through(options, proxy.endpoint))
    lease = RunLease(loc).acquire()
    assert lease.epoch == 1 and proxy.injected["drop"] == 1
    lease.release()
    other = RunLease(loc).acquire()  # it was released, so free again
    assert other.epoch == 2
    other.release()


def test_s3_retries_are_configured_unless_given():
    assert Location.from_url("s3://b/lake").storage_options["config_kwargs"]["retries"] == {
        "total_max_attempts": 10,
        "mode": "adaptive",
    }
    own = {"config_kwargs": {"retries": {"max_attempts": 2}, "connect_timeout": 5}}
    assert Location.from_url("s3://b/lake", own).storage_options["config_kwargs"] == own["config_kwargs"]
    assert Location.from_url("memory://lake").storage_options == {}


def test_an_endpoint_where_nothing_listens_fails_at_once_and_one_that_went_away_is_retried(s3_bucket, monkeypatch):
    """A refused first connection is a LakeError in milliseconds, not after ten backed-off
    attempts; an endpoint reached once is not probed again, so a later outage meets the retries
    (and ``with_retries``, which asks whether storage came back, never probes)."""
    import time

    from neurolake.errors import LakeError
    from neurolake.store import location
    from tests.conftest import _free_port

    bucket, options = s3_bucket
    dead = f"http://127.0.0.1:{_free_port()}"
    start = time.perf_counter()
    with pytest.raises(LakeError, match=f"cannot reach the storage endpoint {dead} .*refused"):
        Lake.open(f"s3://{bucket}/lake", _through(options, dead))
    assert time.perf_counter() - start < 2
    monkeypatch.setenv("AWS_ENDPOINT_URL", dead)  # the environment's endpoint is probed alike
    with pytest.raises(LakeError, match="cannot reach"):
        Location.from_url(f"s3://{bucket}/lake", {})
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    assert location.s3_endpoint(options) == options["client_kwargs"]["endpoint_url"]
    with FaultProxy(options["client_kwargs"]["endpoint_url"]) as proxy:
        through = _through(options, proxy.endpoint)
        Lake.create(f"s3://{bucket}/lake", through)
        endpoint = proxy.endpoint
    # the proxy is gone: a Location of the endpoint reached before is still made (its requests
    # would be retried), and so is the few-attempts copy that asks whether it answers again
    loc = Location.from_url(f"s3://{bucket}/lake", _through(options, endpoint))
    assert loc.with_retries(2).storage_options["config_kwargs"]["retries"]["total_max_attempts"] == 2
    with pytest.raises(Exception) as caught:
        loc.with_retries(1).exists("lake.json")
    assert not isinstance(caught.value, LakeError)
    # other protocols and AWS itself are not probed
    assert Location.from_url("memory://nowhere").protocol == "memory"
    assert Location.from_url("s3://b/lake", {}).protocol == "s3"


@pytest.mark.parametrize(
    "use_httpfs",
    [True, pytest.param(False, marks=pytest.mark.slow)],  # botocore's backoff: ~15 s of waits
    ids=["httpfs", "fsspec"],
)
def test_queries_ride_out_error_answers_longer_than_the_default_retries(s3_bucket, proxy, use_httpfs):
    """500s in a row on one table file, more than DuckDB httpfs's and botocore's default retries
    take, fewer than the lake's retries (``HTTPFS_RETRIES``, ``S3_RETRIES``)."""
    bucket, options = s3_bucket
    lake = Lake.create(f"s3://{bucket}/lake", options)
    run = create_run(lake, n_utterances=12)
    for part in run.plan.parts:
        write_part(run, part.part_id)
    expected = QueryEngine(lake, use_httpfs=use_httpfs).sql(FRAMES)
    # one more than the defaults take: httpfs's 3 retries, botocore's 5 attempts
    errors = 4 if use_httpfs else 5
    proxy.set_faults({"500": 1.0}, methods={"GET"}, match=r"tables/frames/p000001\.parquet$", limit=errors)
    engine = QueryEngine(Lake.open(f"s3://{bucket}/lake", _through(options, proxy.endpoint)), use_httpfs=use_httpfs)
    assert engine.via == ("httpfs" if use_httpfs else "fsspec")
    assert engine.sql(FRAMES).equals(expected) and expected.num_rows == run.plan.n_frames
    assert proxy.injected["500"] == errors


@pytest.mark.slow
def test_parts_written_and_read_through_faults_are_those_written_without(s3_bucket, proxy):
    """Every request of creating a lake and a run, writing and committing its parts, verifying
    them and querying them goes through a store that fails one in four."""
    bucket, options = s3_bucket
    clean = Lake.create(f"s3://{bucket}/clean", options)
    run = create_run(clean, n_utterances=8)
    for part in run.plan.parts:
        write_part(run, part.part_id)

    proxy.set_faults(MODERATE)
    faulty = Lake.create(f"s3://{bucket}/faulty", _through(options, proxy.endpoint))
    disturbed = create_run(faulty, n_utterances=8)
    for part in disturbed.plan.parts:
        write_part(disturbed, part.part_id)
    assert disturbed.verify() == []
    rows = QueryEngine(faulty).sql(FRAMES)
    assert min(proxy.injected[k] for k in MODERATE) > 0

    proxy.set_faults({})
    assert run_files(faulty.loc, "r1") == run_files(clean.loc, "r1")
    assert len(disturbed.commits()) == len(run.plan.parts) > 1
    assert rows.equals(QueryEngine(clean).sql(FRAMES)) and rows.num_rows == run.plan.n_frames


# ------------------------------------------------------------ ingest on Ray


@pytest.fixture(scope="module")
def ray_corpus(tmp_path_factory):
    import ray

    from neurolake.corpora.synth import synthesize_corpus

    root = tmp_path_factory.mktemp("faults")
    synthesize_corpus(str(root / "c"), n_utterances=6, seed=5, holdout_accent=None, test_fraction=0.0)
    if ray.is_initialized():
        ray.shutdown()
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}},
    )
    yield root / "c" / "train"
    ray.shutdown()


def _ingest(url: str, corpus: Path, options: dict):
    from neurolake.ingest.pipeline import ingest

    return ingest(
        url, str(corpus), MODEL, layers=["conv1", "conv3"], run_id="r", storage_options=options, part_rows=150
    )


@pytest.mark.slow
def test_an_ingest_through_faults_converges_to_the_undisturbed_lake(ray_corpus, s3_bucket, proxy, monkeypatch, capsys):
    import s3fs

    from neurolake.cli import main

    bucket, options = s3_bucket
    clean = _ingest(f"s3://{bucket}/clean", ray_corpus, options)
    assert clean.parts_failed == [] and clean.parts_run > 1

    proxy.set_faults(MODERATE)
    faulty = _ingest(f"s3://{bucket}/faulty", ray_corpus, _through(options, proxy.endpoint))
    assert faulty.parts_failed == [] and faulty.parts_run == clean.parts_run
    assert min(proxy.injected[k] for k in MODERATE) > 0, proxy.injected
    during_ingest = sum(proxy.injected.values())

    # verify and queries through the CLI, through the same faults
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
    # s3fs keeps instances by their arguments, not the environment: one made by an earlier test
    # with the same (default) options would keep that test's endpoint and credentials
    s3fs.S3FileSystem.clear_instance_cache()
    capsys.readouterr()
    assert main(["verify", "--lake", f"s3://{bucket}/faulty", "--run", "r"]) == 0
    assert capsys.readouterr().out.strip() == "1 run(s) checked, 0 problem(s)"
    query = "SELECT frame_id, utterance_id, word, phoneme FROM frames ORDER BY frame_id"
    assert main(["sql", "--lake", f"s3://{bucket}/faulty", "--format", "csv", query]) == 0
    disturbed_rows = capsys.readouterr().out
    assert sum(proxy.injected.values()) > during_ingest

    proxy.set_faults({})
    direct = Location.from_url(f"s3://{bucket}", options)
    assert run_files(direct.child("faulty"), "r") == run_files(direct.child("clean"), "r")
    monkeypatch.setenv("AWS_ENDPOINT_URL", options["client_kwargs"]["endpoint_url"])
    s3fs.S3FileSystem.clear_instance_cache()
    assert main(["sql", "--lake", f"s3://{bucket}/clean", "--format", "csv", query]) == 0
    assert capsys.readouterr().out == disturbed_rows and disturbed_rows.count("\n") > 100


@pytest.mark.slow
def test_a_part_whose_writes_keep_failing_fails_alone_and_a_resume_fills_it_in(ray_corpus, s3_bucket, proxy):
    from neurolake.render import format_summary

    bucket, options = s3_bucket
    reference = _ingest(f"s3://{bucket}/clean", ray_corpus, options)
    # Retries of the user's own, short: every PUT of part p000001's files answers 503 SlowDown.
    short = _through(options, proxy.endpoint) | {
        "config_kwargs": {"retries": {"total_max_attempts": 2, "mode": "standard"}}
    }
    proxy.set_faults({"503": 1.0}, methods={"PUT"}, match=r"/p000001\.")
    summary = _ingest(f"s3://{bucket}/faulty", ray_corpus, short)
    assert len(summary.parts_failed) == 1, summary.parts_failed
    failure = summary.parts_failed[0]
    assert (
        failure.startswith("p000001: the lake's storage failed while it was written")
        and "reduce your request rate" in failure
    )
    assert "\n" not in failure and f"FAILED      {failure}" in format_summary(summary)
    run = Lake.open(f"s3://{bucket}/faulty", options).run("r")
    assert [p.part_id for p in run.pending_parts()] == ["p000001"]
    assert len(run.commits()) == reference.parts_run - 1 and run.verify() == []

    proxy.set_faults({})
    resumed = _ingest(f"s3://{bucket}/faulty", ray_corpus, short)
    assert resumed.parts_run == 1 and resumed.parts_failed == [] and run.info().status == "complete"
    direct = Location.from_url(f"s3://{bucket}", options)
    assert run_files(direct.child("faulty"), "r") == run_files(direct.child("clean"), "r")
