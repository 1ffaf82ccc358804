"""Shared fixtures: lakes on a local directory, in memory, and on a real S3 endpoint on loopback."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import pytest


def pytest_configure(config):
    """With test workers (``-n``), a local Ray that starts first on this machine writes its token
    (``~/.ray/auth_token``) while the other worker's may read it half written: the token is written
    here, in the controller, before the workers start."""
    if os.environ.get("PYTEST_XDIST_WORKER") or not config.getoption("numprocesses", None):
        return
    if not (Path.home() / ".ray" / "auth_token").exists():
        from ray._private.authentication.authentication_token_setup import generate_and_save_token

        generate_and_save_token()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """A moto S3 server in this process, on 127.0.0.1 only; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="session")
def gcs_server():
    """A GCS emulator (``gcp-storage-emulator``'s handlers) in this process, on 127.0.0.1 only, in memory;
    yields the storage options that point gcsfs at it. gcsfs's probe of a bucket's layout goes
    over gRPC, which the emulator does not speak: it is turned off (before gcsfs is imported)."""
    import threading
    from functools import partial
    from http.server import ThreadingHTTPServer

    from gcp_storage_emulator.server import RequestHandler
    from gcp_storage_emulator.storage import Storage

    os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"
    import gcsfs.core
    from fsspec.asyn import AsyncFileSystem

    # The emulator answers only "bytes=START-END" ranges; a suffix range ("bytes=-N", which Zarr
    # uses for a shard's index) gets the whole object. Real GCS serves both: for the emulator,
    # suffix ranges are sent as START-END.
    async def _process_limits(self, url, start, end):
        if start is not None and start < 0 and end is None:
            start = max(0, (await self._info(url))["size"] + start)
        return await AsyncFileSystem._process_limits(self, url, start, end)

    gcsfs.core.GCSFileSystem._process_limits = _process_limits
    # The emulator's own server answers one request at a time, and a reader that leaves a
    # response unread (DuckDB's prefetching through fsspec does) then stalls it: its request
    # handler and in-memory storage are served by a threading HTTP server instead.
    httpd = ThreadingHTTPServer(("127.0.0.1", _free_port()), partial(RequestHandler, Storage(use_memory_fs=True)))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield {"endpoint_url": f"http://127.0.0.1:{httpd.server_address[1]}", "token": "anon", "project": "test"}
    httpd.shutdown()
    httpd.server_close()
    del gcsfs.core.GCSFileSystem._process_limits


@pytest.fixture
def gcs_bucket(gcs_server):
    """A fresh bucket on the emulator; returns ``(bucket_name, storage_options)`` for gcsfs."""
    import gcsfs

    name = f"lake-{uuid.uuid4().hex[:12]}"
    gcsfs.GCSFileSystem(**gcs_server).mkdir(name)
    return name, dict(gcs_server)


@pytest.fixture
def s3_bucket(s3_server, monkeypatch):
    """A fresh bucket; returns ``(bucket_name, storage_options)`` for s3fs."""
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    name = f"lake-{uuid.uuid4().hex[:12]}"
    boto3.client(
        "s3",
        endpoint_url=s3_server,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    ).create_bucket(Bucket=name)
    options = {
        "key": "testing",
        "secret": "testing",
        "client_kwargs": {"endpoint_url": s3_server, "region_name": "us-east-1"},
    }
    return name, options


@pytest.fixture(params=["local", "memory", "s3"])
def lake_target(request, tmp_path):
    """``(url, storage_options)`` of an empty place for a lake, on each backend."""
    if request.param == "local":
        yield str(tmp_path / "lake"), {}
    elif request.param == "memory":
        import fsspec

        url = f"memory://lake-{uuid.uuid4().hex[:12]}"
        yield url, {}
        fsspec.filesystem("memory").rm(url.replace("memory://", "/"), recursive=True)
    else:
        bucket, options = request.getfixturevalue("s3_bucket")
        yield f"s3://{bucket}/lake", options


@pytest.fixture(scope="session")
def s3_auth_server(tmp_path_factory):
    """A moto S3 server (own process, 127.0.0.1) that checks credentials.

    Yields ``(endpoint, bucket, good_storage_options)``: a user allowed ``s3:*`` and a
    bucket made with its keys; any other key is refused.
    """
    import json
    import subprocess
    import sys
    import time
    import urllib.request

    import boto3

    port = _free_port()
    # The first three requests (create the user, its key and its policy) need no signature.
    env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="3")
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while True:
        try:
            urllib.request.urlopen(endpoint + "/moto-api/", timeout=1)
            break
        except OSError:
            if time.time() > deadline:
                proc.kill()
                raise
            time.sleep(0.1)
    iam = boto3.client(
        "iam", endpoint_url=endpoint, aws_access_key_id="x", aws_secret_access_key="x", region_name="us-east-1"
    )
    iam.create_user(UserName="researcher")
    key = iam.create_access_key(UserName="researcher")["AccessKey"]
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
    iam.put_user_policy(UserName="researcher", PolicyName="s3", PolicyDocument=json.dumps(policy))
    good = {
        "key": key["AccessKeyId"],
        "secret": key["SecretAccessKey"],
        "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"},
    }
    boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=good["key"],
        aws_secret_access_key=good["secret"],
        region_name="us-east-1",
    ).create_bucket(Bucket="private")
    yield endpoint, "private", good
    proc.kill()
    proc.wait()


@pytest.fixture(params=["local", "s3"])
def shared_target(request, tmp_path):
    """``(url, storage_options)`` of an empty place for a lake that other processes can reach:
    a local directory and a bucket of the loopback S3 server."""
    if request.param == "local":
        return str(tmp_path / "lake"), {}
    bucket, options = request.getfixturevalue("s3_bucket")
    return f"s3://{bucket}/lake", options


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray for the module, unless one is already running."""
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=2, include_dashboard=False)
    yield
    if started:
        ray.shutdown()
