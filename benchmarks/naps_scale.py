"""NAPs of 100 groups over a 1 M-frame, 2,000-unit run: time against one read of the layers.

Writes the run of ``benchmarks/scan_scale.py`` (8 layers x 250 units, float16), makes 100 named
groups (``frame_id % 100 = k``, every frame in exactly one), then in a child process whose peak
memory is measured times one plain chunked read of every layer (the baseline) and
``neurolake.introspect.naps.naps`` of the 100 groups over every layer, and checks two groups'
profiles against numpy on a sample of units.

Targets: NAPs / one full read <= 1.5; peak memory well below the run's activations.

    python benchmarks/naps_scale.py [--frames 1000000] [--groups 100] [--dir DIR]
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scan_scale import build_run, read_every_layer

from neurolake.store import Lake


def _child(url: str, n_groups: int, queue) -> None:
    from neurolake.introspect.naps import naps

    lake = Lake.open(url)
    run = lake.run("big")
    full_read = read_every_layer(run)
    t0 = time.perf_counter()
    result = naps(lake, "big", groups=[f"g{k}" for k in range(n_groups)], progress=False)
    seconds = time.perf_counter() - t0
    # numpy check: group 7 on layer3, units 0..9, over its frames
    ids = np.concatenate([np.arange(p.row_start, p.used_stop) for p in run.plan.parts])
    members = ids[ids % n_groups == 7]
    expected = np.asarray(run.read_rows("layer3", members), dtype=np.float64)[:, :10].mean(axis=0)
    ok = bool(np.allclose(result.mean["layer3"][7, 0, :10], expected, rtol=0, atol=1e-9))
    queue.put(
        {
            "full_read": full_read,
            "naps": seconds,
            "ok": ok,
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=1_000_000)
    ap.add_argument("--groups", type=int, default=100)
    ap.add_argument("--dir", default=None, help="directory for the lake (default: a temp dir)")
    args = ap.parse_args()
    if args.dir:
        Path(args.dir).mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="nl-naps-", dir=args.dir))
    try:
        from neurolake.query.groups import create_group

        lake = Lake.create(str(base / "lake"))
        t0 = time.perf_counter()
        build_run(lake, args.frames, 8, 250)
        for k in range(args.groups):
            create_group(lake, f"g{k}", "big", f"frame_id % {args.groups} = {k}")
        size_gb = args.frames * 2000 * 2 / 1e9
        print(
            f"wrote {args.frames:,} frames x 2,000 units ({size_gb:.1f} GB) and {args.groups} groups in {time.perf_counter() - t0:.0f} s"
        )
        ctx = multiprocessing.get_context("spawn")
        queue = ctx.Queue()
        child = ctx.Process(target=_child, args=(str(base / "lake"), args.groups, queue))
        child.start()
        child.join()
        if child.exitcode != 0:
            raise SystemExit(f"the profiling process failed (exit code {child.exitcode})")
        r = queue.get()
        print(f"one chunked read of every layer (baseline): {r['full_read']:.1f} s")
        print(f"NAPs of {args.groups} groups over every layer: {r['naps']:.1f} s")
        print(f"ratio NAPs / one full read: {r['naps'] / r['full_read']:.2f}  (target <= 1.5)")
        print(f"peak memory: {r['peak_mb']:.0f} MB = {r['peak_mb'] / 1e3 / size_gb:.2f} x the run's activations")
        print(f"profiles equal numpy on a sample: {r['ok']}")
        assert r["ok"], "the NAPs differ from numpy"
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
