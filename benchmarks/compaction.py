"""Compaction: engine start-up and group queries on a run of many parts, before and after.

Builds, through the store API (no activations: a run with no layers), the same rows twice: as
a run of ``--units`` parts (default 10,000, one 100-frame utterance each) and as a run of 100
parts, each in a lake of its own. Times, for (a) the many-part run, (b) the same run after
``compact``, (c) the 100-part run: the query engine's start-up (``QueryEngine(lake)``: commit
markers, views, Parquet footers) and the frame-id queries behind ``group create``, printing
each as a ratio to (c) (target after compaction: within 1.2x). With ``--s3``, the lakes are on
a moto S3 server on loopback (its own process), read through httpfs.

    python benchmarks/compaction.py [--units 10000] [--s3] [--skip-before]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa

from neurolake.query.engine import QueryEngine
from neurolake.query.groups import group_frame_ids
from neurolake.store import Lake, plan_parts
from neurolake.store.compact import compact

FRAMES_PER_UTT = 100
PHONES = ["AA", "AE", "AH", "AO", "B", "D", "EH", "IY", "K", "L", "M", "N", "S", "T", "Z"]
LETTERS = ["-", " ", "'"] + [chr(c) for c in range(ord("A"), ord("Z") + 1)]
GROUPS = {
    "frames in misrecognised words": "word_error",
    "frames of utterances, WER > 0.3 (join)": "wer > 0.3",
    "frames of phoneme AH": "phoneme = 'AH'",
}
REPEATS = 3


def synthetic_rows(n_utts: int, seed: int = 0) -> tuple[pa.Table, pa.Table]:
    """The utterances and frames tables of ``n_utts`` utterances of 100 frames, frame ids from 0."""
    rng = np.random.default_rng(seed)
    n = n_utts * FRAMES_PER_UTT
    ids = np.array([f"spk{i % 40:03d}-{i:08d}" for i in range(n_utts)])
    wer = rng.beta(1.2, 5.0, n_utts)
    utterances = pa.table(
        {
            "utterance_id": ids,
            "speaker_id": [i[:6] for i in ids],
            "chapter_id": ["1"] * n_utts,
            "audio_uri": [f"s3://corpus/{i}.flac" for i in ids],
            "duration_s": np.full(n_utts, FRAMES_PER_UTT / 50),
            "n_frames": np.full(n_utts, FRAMES_PER_UTT),
            "first_frame_id": np.arange(n_utts, dtype=np.int64) * FRAMES_PER_UTT,
            "reference": ["REF"] * n_utts,
            "hypothesis": ["HYP"] * n_utts,
            "wer": wer,
            "cer": wer / 2,
            "n_word_errors": np.zeros(n_utts, np.int32),
        }
    )
    frame_index = np.tile(np.arange(FRAMES_PER_UTT, dtype=np.int32), n_utts)
    frames = pa.table(
        {
            "frame_id": np.arange(n, dtype=np.int64),
            "utterance_id": np.repeat(ids, FRAMES_PER_UTT),
            "frame_index": frame_index,
            "start_s": frame_index / 50.0,
            "end_s": (frame_index + 1) / 50.0,
            "ref_token": np.array(LETTERS)[rng.integers(0, len(LETTERS), n)],
            "pred_token": np.array(LETTERS)[rng.integers(0, len(LETTERS), n)],
            "pred_prob": rng.random(n, dtype=np.float32),
            "phoneme": np.array(PHONES)[rng.integers(0, len(PHONES), n)],
            "word": np.array([f"W{i}" for i in range(500)])[rng.integers(0, 500, n)],
            "word_index": (frame_index // 25).astype(np.int32),
            "word_error": rng.random(n) < np.repeat(wer, FRAMES_PER_UTT),
            "token_error": rng.random(n) < 0.1,
        }
    )
    return utterances, frames


def build_run(lake: Lake, n_parts: int, utterances: pa.Table, frames: pa.Table) -> None:
    """Run ``r`` of ``n_parts`` parts holding these rows (no layers: tables and markers only)."""
    n_utts = utterances.num_rows
    plan = plan_parts(
        [(u, FRAMES_PER_UTT) for u in utterances.column("utterance_id").to_pylist()],
        rows_per_shard=FRAMES_PER_UTT,
        chunk_rows=FRAMES_PER_UTT,
        part_rows=(n_utts // n_parts) * FRAMES_PER_UTT,
    )
    assert len(plan.parts) == n_parts, (len(plan.parts), n_parts)
    run = lake.create_run("r", model={"spec": "bench"}, corpus={"spec": "bench"}, layers=[], plan=plan)

    def write(index: int) -> None:
        part = plan.parts[index]
        first = part.row_start // FRAMES_PER_UTT
        writer = run.part_writer(part.part_id)
        writer.write_table("utterances", utterances.slice(first, len(part.utterances)))
        writer.write_table("frames", frames.slice(part.row_start, part.rows_used))
        writer.commit()

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(write, range(n_parts)))


def timed(work) -> tuple[float, object]:
    times, result = [], None
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def measure(lake: Lake) -> dict[str, tuple[float, object]]:
    def start() -> int:
        with QueryEngine(lake) as q:
            return len(q._files)

    out: dict[str, tuple[float, object]] = {"engine start-up": timed(start)}
    with QueryEngine(lake) as q:
        for name, predicate in GROUPS.items():
            out[name] = timed(lambda p=predicate: group_frame_ids(q, "r", p).size)
    return out


def moto_server() -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while True:
        try:
            urllib.request.urlopen(endpoint + "/moto-api/", timeout=1)
            return proc, endpoint
        except OSError:
            if time.time() > deadline:
                proc.kill()
                raise
            time.sleep(0.1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--units", type=int, default=10_000, help="parts of the many-part run (a multiple of 100)")
    ap.add_argument("--s3", action="store_true", help="lakes on a moto S3 server on loopback")
    ap.add_argument("--dir", default=None, help="directory for local lakes (default: a temp dir)")
    ap.add_argument(
        "--skip-before", action="store_true", help="do not time (a), the many-part run before compaction (slow)"
    )
    args = ap.parse_args()
    if args.dir:
        Path(args.dir).mkdir(parents=True, exist_ok=True)
    if args.units % 100 or args.units < 100:
        ap.error("--units must be a multiple of 100")
    base = Path(tempfile.mkdtemp(prefix="nl-compact-", dir=args.dir))
    server = None
    try:
        if args.s3:
            import boto3

            server, endpoint = moto_server()
            os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
            os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
            bucket = f"bench-{uuid.uuid4().hex[:8]}"
            boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
            options = {"client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"}}
            urls = {k: f"s3://{bucket}/{k}" for k in ("many", "few")}
        else:
            options = {}
            urls = {k: str(base / k) for k in ("many", "few")}
        utterances, frames = synthetic_rows(args.units)
        print(
            f"rows: {utterances.num_rows:,} utterances, {frames.num_rows:,} frames; storage: {'S3 (moto, loopback)' if args.s3 else 'local disk'}"
        )
        lakes = {}
        for key, n_parts in (("many", args.units), ("few", 100)):
            lakes[key] = Lake.create(urls[key], options)
            t0 = time.perf_counter()
            build_run(lakes[key], n_parts, utterances, frames)
            print(f"built the {n_parts:,}-part run in {time.perf_counter() - t0:.1f} s")
        results = {} if args.skip_before else {"(a) before": measure(lakes["many"])}
        t0 = time.perf_counter()
        summary = compact(lakes["many"].run("r"))
        print(
            f"compacted {summary.parts:,} parts in {time.perf_counter() - t0:.1f} s: "
            f"{summary.files_before:,} table files -> {summary.files_after}"
        )
        results["(b) after"] = measure(lakes["many"])
        results["(c) 100 parts"] = measure(lakes["few"])
        reference = results["(c) 100 parts"]
        for name, (t_ref, value) in reference.items():
            unit = "files" if name == "engine start-up" else "ids"
            print(f"\n{name} (median of {REPEATS}; {value:,} {unit} in (c))")
            for label, got in results.items():
                t, v = got[name]
                if name != "engine start-up":
                    assert v == value, f"{label}: {v} ids, (c) has {value}"
                extra = f"  ({v:,} files)" if name == "engine start-up" else ""
                print(f"  {label:14s} {t:8.3f} s  x{t / t_ref:6.2f}{extra}")
    finally:
        if server is not None:
            server.kill()
            server.wait()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
