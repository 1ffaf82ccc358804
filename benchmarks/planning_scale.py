"""Planning at corpus scale: reading every audio header of a LibriSpeech-sized tree.

    python benchmarks/planning_scale.py [--utterances 100000] [--s3-utterances 5000] [--latency-ms 20]
                                        [--workers N]

Writes a LibriSpeech-layout tree of ``--utterances`` short WAV files (0.5-3 s, 100 per chapter,
with their transcripts) and times the ingest plan of it (``neurolake ingest --dry-run``'s work:
listing, transcripts, every header, the parts) twice: in one process (``workers=1``: a pool of
header threads) and by ``--workers`` Ray tasks over batches of whole chapters (default: the
machine's CPUs), and checks that both plans are the same. The baseline is measured in the same
run: one thread calling ``soundfile.info`` on every file. The same is done for
``--s3-utterances`` files on a moto S3 server on loopback behind a proxy that delays every
request by ``--latency-ms`` (an object store's first-byte latency); there the baseline is the
same headers read one after another through s3fs. The server and the proxy run in processes of
their own, so that they do not share the planner's interpreter. Printed: seconds, files per
second, the ratio to the baseline, and the time 281,241 utterances (LibriSpeech 960 h) would
take at that rate.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the repository: tests.faults (the latency proxy)

LIBRISPEECH = 281_241


def write_tree(root: Path, n: int, per_chapter: int = 100, seed: int = 0) -> list[Path]:
    """``n`` WAV files in ``root/SPEAKER/CHAPTER/``, with a transcript per chapter."""
    rng = np.random.default_rng(seed)
    noise = (rng.normal(0, 0.05, 16_000 * 3) * 32767).astype(np.int16)
    files = []
    for start in range(0, n, per_chapter):
        speaker, chapter = 1000 + start // (per_chapter * 10), start // per_chapter
        folder = root / str(speaker) / str(chapter)
        folder.mkdir(parents=True, exist_ok=True)
        lines = []
        for k in range(min(per_chapter, n - start)):
            uid = f"{speaker}-{chapter}-{k:04d}"
            length = int(rng.integers(8_000, 48_000))
            path = folder / f"{uid}.wav"
            sf.write(path, noise[:length], 16_000, subtype="PCM_16")
            files.append(path)
            lines.append(f"{uid} A SHORT SENTENCE NUMBER {k}\n")
        (folder / f"{speaker}-{chapter}.trans.txt").write_text("".join(lines))
    return files


def plan_seconds(corpus: str, workers: int, storage_options: dict | None = None) -> tuple[float, int, str]:
    """Seconds to plan ``corpus``, utterances planned, and the plan as JSON."""
    from neurolake.ingest.pipeline import plan_ingest
    from neurolake.store.location import canonical_json

    start = time.perf_counter()
    _, planned = plan_ingest(
        corpus, "demo", layers=["conv7"], storage_options=storage_options, workers=workers, progress=False
    )
    return time.perf_counter() - start, len(planned.utterances), canonical_json(planned.plan.to_dict())


def compare(label: str, corpus: str, files: int, baseline: float, workers: int, options: dict | None = None) -> None:
    """Plan ``corpus`` in one process and by Ray tasks; print both, check they agree."""
    serial, planned, plan = plan_seconds(corpus, 1, options)
    assert planned == files, (planned, files)
    report(f"{label}, one process", serial, planned, baseline)
    parallel, planned, plan_parallel = plan_seconds(corpus, workers, options)
    assert planned == files and plan_parallel == plan, "the Ray tasks planned otherwise"
    report(f"{label}, {workers} Ray tasks", parallel, planned, baseline)
    print(f"{label}: Ray tasks / one process: {serial / parallel:.2f}x faster; the same plan", flush=True)


def report(label: str, seconds: float, files: int, baseline: float) -> None:
    rate = files / seconds
    print(
        f"{label}: {files:,d} files in {seconds:.1f} s ({rate:,.0f} files/s); one-thread headers {baseline:.1f} s "
        f"(ratio {seconds / baseline:.2f}); {LIBRISPEECH:,d} utterances would take {LIBRISPEECH / rate / 60:.1f} min",
        flush=True,
    )


def start_ray(workers: int) -> None:
    from neurolake.cluster.ray_env import connect

    t0 = time.perf_counter()
    connect(num_cpus=workers)
    print(f"Ray started in {time.perf_counter() - t0:.1f} s (not counted below)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--utterances", type=int, default=100_000)
    parser.add_argument("--s3-utterances", type=int, default=5_000)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--tree", type=Path, help="keep (or reuse) the local tree here")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="Ray tasks at once")
    args = parser.parse_args()
    # the moto server's credentials, set before Ray starts: its workers read the environment then
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    start_ray(args.workers)
    base = Path(tempfile.mkdtemp(prefix="nl-plan-bench-"))
    try:
        tree = args.tree or base / "tree"
        if not (tree.exists() and any(tree.iterdir())):
            t0 = time.perf_counter()
            write_tree(tree, args.utterances)
            print(f"wrote {args.utterances:,d} files in {time.perf_counter() - t0:.1f} s", flush=True)
        files = sorted(tree.rglob("*.wav"))
        t0 = time.perf_counter()
        for path in files:
            sf.info(str(path))
        baseline = time.perf_counter() - t0
        compare("local tree", str(tree), len(files), baseline, args.workers)
        if args.s3_utterances:
            s3(base, args.s3_utterances, args.latency_ms / 1000, args.workers)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def serve(code: str) -> tuple[subprocess.Popen, str]:
    """A server in a process of its own; ``code`` prints its endpoint, then serves until killed."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


MOTO = """
import logging
from moto.server import ThreadedMotoServer
from tests.conftest import _free_port
logging.disable(logging.CRITICAL)
port = _free_port()
server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
server.start()
print(f"http://127.0.0.1:{port}", flush=True)
__import__("threading").Event().wait()
"""

PROXY = """
import threading
from tests.faults import FaultProxy
proxy = FaultProxy({upstream!r}, {{"latency": 1.0}}, latency_s={latency_s!r})
print(proxy.endpoint, flush=True)
threading.Event().wait()
"""


def s3(base: Path, n: int, latency_s: float, workers: int) -> None:
    import boto3
    import fsspec

    moto, upstream = serve(MOTO)
    proxy = None
    try:
        client = boto3.client("s3", endpoint_url=upstream, region_name="us-east-1")
        client.create_bucket(Bucket="corpus")
        local = base / "s3tree"
        write_tree(local, n, seed=1)
        for path in local.rglob("*"):
            if path.is_file():
                client.upload_file(str(path), "corpus", f"train/{path.relative_to(local)}")
        proxy, endpoint = serve(PROXY.format(upstream=upstream, latency_s=latency_s))
        options = {"client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"}}
        fs = fsspec.filesystem("s3", **options)
        keys = sorted(k for k in fs.find("corpus/train") if k.endswith(".wav"))
        t0 = time.perf_counter()
        for key in keys[:200]:  # one after another: 200 are enough to time one header
            with fs.open(key, "rb", block_size=64 * 1024) as handle:
                sf.info(handle)
        baseline = (time.perf_counter() - t0) * len(keys) / 200
        compare(
            f"S3 on loopback, {latency_s * 1000:.0f} ms a request",
            "s3://corpus/train",
            len(keys),
            baseline,
            workers,
            options,
        )
    finally:
        for proc in (proxy, moto):
            if proc is not None:
                proc.kill()
                proc.wait()


if __name__ == "__main__":
    main()
