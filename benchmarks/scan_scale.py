"""Scale of ``neurolake scan``: a 1 M-frame run with 2,000 units on this machine.

Writes a run through the store (8 layers x 250 units, float16, standard normal activations;
frames with segment labels: 12 % segment errors spread over substitutions, deletions and
insertions of random letters) with one planted fault: on 700 frames where the model reads E as Z,
four units of ``layer4`` are raised by 3 standard deviations. Then, in a child process whose
peak memory is measured, times the scan from scratch (neuron statistics included, which read
the whole run once) and again with the statistics cached, beside the baseline of one plain
chunked read of every layer of the run, measured in the same child. Prints the ratios and checks
that the planted pattern is finding 1.

Targets: the scan in minutes on 2 cores (scan / one full read <= 3 with the statistics cached),
and a peak memory well below the run's size (no whole run in RAM).

    python benchmarks/scan_scale.py [--frames 1000000] [--layers 8] [--units 250] [--dir DIR]
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from neurolake.store import Lake, LayerSpec, plan_parts

FRAMES_PER_UTT = 500
LETTERS = [chr(c) for c in range(ord("A"), ord("Z") + 1)] + [" "]
PLANTED_LAYER, PLANTED_UNITS, PLANTED_FRAMES = "layer4", (10, 20, 30, 40), 700


def _strings(values: np.ndarray) -> pa.Array:
    return pa.array(values.tolist(), pa.string())


def build_run(lake: Lake, n_frames: int, n_layers: int, units: int, seed: int = 0) -> None:
    n_utts = n_frames // FRAMES_PER_UTT
    plan = plan_parts(((f"u{i:07d}", FRAMES_PER_UTT) for i in range(n_utts)), rows_per_shard=4096, part_rows=131072)
    layers = [LayerSpec(f"layer{i}", units) for i in range(n_layers)]
    run = lake.create_run("big", model={"spec": "bench"}, corpus={"spec": "bench"}, layers=layers, plan=plan)
    rng = np.random.default_rng(seed)
    letters = np.array(LETTERS, dtype=object)
    planted_left = PLANTED_FRAMES
    for part in plan.parts:
        n, utts = part.rows_used, part.utterances
        ref = letters[rng.integers(0, len(LETTERS), n)]
        error = rng.random(n) < 0.12
        kind = rng.random(n)
        wrong = letters[rng.integers(0, len(LETTERS) - 1, n)]
        confusion = np.full(n, None, dtype=object)
        confusion[error & (kind < 0.5)] = wrong[error & (kind < 0.5)]
        confusion[error & (kind >= 0.5) & (kind < 0.9)] = "<del>"
        confusion[error & (kind >= 0.9)] = "<ins>"
        emitting = rng.random(n) < 0.4
        pred = np.where(emitting, ref, "-").astype(object)
        substituted = error & (kind < 0.5)
        pred[substituted & emitting] = confusion[substituted & emitting]
        # The planted confusion: E read as Z on some emitting frames, with four units raised.
        candidates = np.flatnonzero((ref == "E") & ~error)
        planted = rng.choice(candidates, size=min(planted_left, candidates.size, n // 200), replace=False)
        planted_left -= planted.size
        error[planted], confusion[planted], pred[planted] = True, "Z", "Z"
        prob = np.where(error, rng.uniform(0.2, 0.9, n), rng.uniform(0.7, 1.0, n)).astype(np.float32)

        writer = run.part_writer(part.part_id)
        for spec in layers:
            block = rng.standard_normal((n, units), dtype=np.float32)
            if spec.name == PLANTED_LAYER:
                block[np.ix_(planted, PLANTED_UNITS)] += 3.0
            writer.append(spec.name, block.astype(np.float16))
        ids = [u.utterance_id for u in utts]
        frame_index = np.tile(np.arange(FRAMES_PER_UTT, dtype=np.int32), len(utts))
        writer.write_table(
            "utterances",
            {
                "utterance_id": ids,
                "speaker_id": [f"s{int(i[1:]) % 40}" for i in ids],
                "chapter_id": ["1"] * len(ids),
                "audio_uri": [f"s3://corpus/{i}.flac" for i in ids],
                "duration_s": np.full(len(ids), FRAMES_PER_UTT / 50),
                "n_frames": np.full(len(ids), FRAMES_PER_UTT),
                "first_frame_id": [u.first_row for u in utts],
                "reference": ["REF"] * len(ids),
                "hypothesis": ["HYP"] * len(ids),
                "wer": np.zeros(len(ids)),
                "cer": np.zeros(len(ids)),
                "n_word_errors": np.zeros(len(ids), np.int32),
            },
        )
        writer.write_table(
            "frames",
            pa.table(
                {
                    "frame_id": np.arange(part.row_start, part.used_stop, dtype=np.int64),
                    "utterance_id": _strings(np.repeat(np.array(ids, dtype=object), FRAMES_PER_UTT)),
                    "frame_index": frame_index,
                    "start_s": frame_index / 50.0,
                    "end_s": (frame_index + 1) / 50.0,
                    "ref_token": _strings(np.where(emitting, ref, "-")),
                    "pred_token": _strings(pred),
                    "pred_prob": prob,
                    "phoneme": pa.nulls(n, pa.string()),
                    "word": pa.nulls(n, pa.string()),
                    "word_index": np.full(n, -1, np.int32),
                    "word_error": error,
                    "token_error": error & emitting,
                    "ref_segment": _strings(ref),
                    "pred_segment": _strings(np.where(substituted, confusion, ref)),
                    "segment_error": error,
                    "confusion": _strings(confusion),
                }
            ),
        )
        writer.commit()


def read_every_layer(run) -> float:
    """The baseline: seconds for one plain chunked read of every layer of every part."""
    t0 = time.perf_counter()
    for layer in run.layer_names:
        for part in run.plan.parts:
            for start in range(part.row_start, part.used_stop, 65536):
                run.read_rows(layer, np.arange(start, min(start + 65536, part.used_stop)))
    return time.perf_counter() - t0


def _child(url: str, queue) -> None:
    from neurolake.introspect.scan import scan

    lake = Lake.open(url)
    run = lake.run("big")
    full_read = read_every_layer(run)
    t0 = time.perf_counter()
    first = scan(lake, "big", progress=False)
    cold = time.perf_counter() - t0
    for d in __import__("neurolake.store.derived", fromlist=["list_derived"]).list_derived(
        run.loc.child("derived"), "scans"
    ):
        d.loc.remove_tree()  # scan again, the neuron statistics now cached
    t0 = time.perf_counter()
    second = scan(lake, "big", progress=False)
    warm = time.perf_counter() - t0
    top = second.findings.slice(0, 1).to_pylist()[0] if second.findings.num_rows else {}
    queue.put(
        {
            "full_read": full_read,
            "cold": cold,
            "warm": warm,
            "slices": second.slices.num_rows,
            "tests": second.n_tests,
            "findings": second.findings.num_rows,
            "top": (top.get("slice"), top.get("items")),
            "same": first.findings.equals(second.findings),
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=1_000_000)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--units", type=int, default=250)
    ap.add_argument("--dir", default=None, help="directory for the lake (default: a temp dir)")
    args = ap.parse_args()
    if args.dir:
        Path(args.dir).mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="nl-scan-", dir=args.dir))
    try:
        lake = Lake.create(str(base / "lake"))
        t0 = time.perf_counter()
        build_run(lake, args.frames, args.layers, args.units)
        size_gb = args.frames * args.layers * args.units * 2 / 1e9
        print(
            f"wrote {args.frames:,} frames x {args.layers * args.units:,} units ({size_gb:.1f} GB of float16) "
            f"in {time.perf_counter() - t0:.0f} s"
        )
        queue = multiprocessing.get_context("spawn").Queue()
        child = multiprocessing.get_context("spawn").Process(target=_child, args=(str(base / "lake"), queue))
        child.start()
        child.join()
        if child.exitcode != 0:
            raise SystemExit(f"the scanning process failed (exit code {child.exitcode})")
        r = queue.get()
        print(f"one chunked read of every layer (baseline): {r['full_read']:.1f} s")
        print(f"scan from scratch (neuron statistics included): {r['cold']:.1f} s")
        print(
            f"scan with statistics cached: {r['warm']:.1f} s; {r['slices']} slices, {r['tests']:,} patterns tested, "
            f"{r['findings']:,} findings"
        )
        print(f"ratio scan (cached statistics) / one full read: {r['warm'] / r['full_read']:.2f}  (target <= 3)")
        print(f"ratio scan from scratch / one full read: {r['cold'] / r['full_read']:.2f}")
        print(
            f"peak memory of the scanning process: {r['peak_mb']:.0f} MB = {r['peak_mb'] / 1e3 / size_gb:.2f} x the "
            f"run's activations (target well below 1)"
        )
        planted = sorted(f"{PLANTED_LAYER}:{u}" for u in PLANTED_UNITS)
        slice_name, items = r["top"]
        print(f"finding 1: {slice_name} {items} (planted: E -> Z {planted}); same findings both times: {r['same']}")
        assert slice_name == "E -> Z" and sorted(items or []) == planted, "the planted pattern is not finding 1"
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
