"""Fault rates an ingest and its queries survive on S3: a proxy in front of a loopback moto
server fails a share of the requests, and the lake must come out as it does without faults.

    python benchmarks/s3_faults.py [--rates 0.1,0.25,0.4] [--utterances N] [--seed S]

A rate ``r`` fails that share of all requests, split evenly between 500 InternalError, 503
SlowDown, a reset connection and an answer cut after the request was applied (a write that
happened although the client saw it fail, a read cut mid-body); a tenth of the requests also
wait 20 ms. For each rate, one run of the synthetic corpus through the test model (layers conv1
and conv3) is ingested into its own prefix through the proxy, then verified and queried through
it (``frames``, DuckDB httpfs). Printed per rate: whether the run converged (every part committed,
the same files byte for byte as the undisturbed run, ``run.json`` but its creation time; verify
clean; the same rows), the ingest's wall time against the undisturbed one in the same process,
and the faults injected. Retries: the lake's defaults (``S3_RETRIES``, ``HTTPFS_RETRIES``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the repository: tests.faults, the test model

MODEL = "python:tests.models.demo_factory:build"
FRAMES = "SELECT * FROM frames ORDER BY frame_id"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="0.1,0.25,0.4", help="shares of failed requests, comma-separated")
    parser.add_argument("--utterances", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]

    import boto3
    import ray
    from moto.server import ThreadedMotoServer

    from neurolake.corpora.synth import synthesize_corpus
    from neurolake.ingest.pipeline import ingest
    from neurolake.query.engine import QueryEngine
    from neurolake.store import Lake, Location
    from tests.conftest import _free_port
    from tests.faults import KINDS, FaultProxy
    from tests.store.test_faults import run_files

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    for key, value in (("AWS_ACCESS_KEY_ID", "t"), ("AWS_SECRET_ACCESS_KEY", "t"), ("AWS_DEFAULT_REGION", "us-east-1")):
        os.environ.setdefault(key, value)
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="bench")
    proxy = FaultProxy(endpoint, seed=args.seed, latency_s=0.02)

    def options(url: str) -> dict:
        return {"key": "t", "secret": "t", "client_kwargs": {"endpoint_url": url, "region_name": "us-east-1"}}

    with tempfile.TemporaryDirectory() as tmp:
        synthesize_corpus(f"{tmp}/c", n_utterances=args.utterances, seed=5, holdout_accent=None, test_fraction=0.0)
        ray.init(
            address="local",
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}},
        )

        def run(prefix: str, endpoint_url: str):
            t0 = time.perf_counter()
            summary = ingest(
                f"s3://bench/{prefix}",
                f"{tmp}/c/train",
                MODEL,
                layers=["conv1", "conv3"],
                run_id="r",
                storage_options=options(endpoint_url),
                part_rows=150,
                progress=False,
            )
            return summary, time.perf_counter() - t0

        clean, clean_s = run("clean", endpoint)
        direct = Location.from_url("s3://bench", options(endpoint))
        reference = run_files(direct.child("clean"), "r")
        rows = QueryEngine(Lake.open("s3://bench/clean", options(endpoint))).sql(FRAMES)
        print(f"undisturbed: {clean.parts_run} parts, {clean.frames:,} frames, {clean_s:.1f} s")
        print(
            f"{'rate':>5}  {'converged':>9}  {'ingest s':>8}  {'x clean':>7}  {'verify+query s':>14}  faults injected"
        )
        for rate in rates:
            prefix = f"rate{rate:g}"
            proxy.injected.clear()
            proxy.requests.clear()
            proxy.set_faults({kind: rate / len(KINDS) for kind in KINDS} | {"latency": 0.1})
            try:
                summary, seconds = run(prefix, proxy.endpoint)
                t0 = time.perf_counter()
                lake = Lake.open(f"s3://bench/{prefix}", options(proxy.endpoint))
                problems = lake.run("r").verify()
                same_rows = QueryEngine(lake).sql(FRAMES).equals(rows)
                checked_s = time.perf_counter() - t0
                proxy.set_faults({})
                converged = (
                    not summary.parts_failed
                    and not problems
                    and same_rows
                    and run_files(direct.child(prefix), "r") == reference
                )
                outcome = "yes" if converged else f"NO ({len(summary.parts_failed)} parts failed)"
            except Exception as exc:  # a run stopped by faults is a result here, not a crash
                proxy.set_faults({})
                outcome, seconds, checked_s = f"NO ({type(exc).__name__})", float("nan"), float("nan")
            injected = ", ".join(f"{k} {v}" for k, v in sorted(proxy.injected.items()))
            print(
                f"{rate:>5.2f}  {outcome:>9}  {seconds:>8.1f}  {seconds / clean_s:>7.2f}  {checked_s:>14.1f}  "
                f"{injected} of {sum(proxy.requests.values()):,} requests"
            )
        ray.shutdown()
    proxy.close()
    server.stop()


if __name__ == "__main__":
    main()
