"""Round trips to object storage: ``verify`` and the query engine's start on an S3 endpoint where
every request waits, with the reads and listings on threads against one at a time.

    python benchmarks/s3_latency.py [--parts N] [--latency-ms MS] [--rounds R]

A run of N parts (the store tests' synthetic parts: three tables and two layers each) is written
to a loopback moto server, then read through a proxy that delays every request by MS
milliseconds (S3 in the same region answers a small GET in tens of milliseconds). Printed per
round: ``verify`` (every table file and shard read and checksummed) and the engine's start (the
run's listings, its derived results' listings, DuckDB's view set-up), each with the lake's
threads and with one thread (the baseline, measured in the same process), the requests each
made and the ratio. The engine's start also reads each table file's footer (DuckDB's own
reads, one file after the other): that part grows with the file count until the run is
compacted (``benchmarks/compaction.py``).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the repository: tests.faults, tests.store.partdata

BUCKET = "latency-bench"


def timed(proxy: Any, work: Callable[[], object]) -> tuple[float, int]:
    before = sum(proxy.requests.values())
    start = time.perf_counter()
    work()
    return time.perf_counter() - start, sum(proxy.requests.values()) - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", type=int, default=20)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    import boto3
    from moto.server import ThreadedMotoServer

    import neurolake.query.engine as engine_module
    import neurolake.store.run as run_module
    from neurolake.query.engine import QueryEngine
    from neurolake.store import Lake
    from tests.faults import FaultProxy
    from tests.store.partdata import create_run, write_part

    for key, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
        os.environ.setdefault(key, value)
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=BUCKET)
        options = {"key": "testing", "secret": "testing", "client_kwargs": {"endpoint_url": endpoint}}
        # 30 utterances of the synthetic run make 10 parts of 600 rows.
        run = create_run(Lake.create(f"s3://{BUCKET}/lake", options), n_utterances=3 * args.parts)
        for part in run.plan.parts:
            write_part(run, part.part_id)
        print(
            f"run of {len(run.plan.parts)} parts ({len(run.layers)} layers, 3 tables each) on loopback S3; "
            f"every request delayed {args.latency_ms:g} ms"
        )
        with FaultProxy(endpoint, {"latency": 1.0}, latency_s=args.latency_ms / 1000) as proxy:
            slow = dict(options, client_kwargs={"endpoint_url": proxy.endpoint})
            lake = Lake.open(f"s3://{BUCKET}/lake", slow)
            threads = (run_module._READ_THREADS, engine_module._LISTING_THREADS)
            for r in range(args.rounds):
                results = {}
                for label, (reads, listings) in (("threads", threads), ("one thread", (1, 1))):
                    run_module._READ_THREADS, engine_module._LISTING_THREADS = reads, listings
                    try:
                        verify = timed(proxy, lambda: lake.run(run.run_id).verify())
                        start = timed(proxy, lambda: QueryEngine(lake).close())
                    finally:
                        run_module._READ_THREADS, engine_module._LISTING_THREADS = threads
                    results[label] = (verify, start)
                for i, what in enumerate(("verify", "engine start")):
                    (fast, n_fast), (slow_s, n_slow) = results["threads"][i], results["one thread"][i]
                    print(
                        f"  round {r + 1}: {what:12s} {fast:6.2f} s ({n_fast} requests) on threads, "
                        f"{slow_s:6.2f} s ({n_slow}) on one: x{slow_s / fast:.1f}"
                    )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
