"""DiffNorm runtime and compression (L%) on FIMI files and an activation-like matrix.

    python benchmarks/diffnorm.py [--quick] [--data DIR] [--no-ray]

Part 1: chess and mushroom split in two groups, the first and the second half of the
transactions (default subsets: each half alone and both together). Part 2: binarised
activations (20k frames x 200 units, each unit active in 10 % of the frames, co-active
unit groups planted only in label-1 frames, only in label-0 frames, or in both), split by
the label; the same matrix without planted groups gives the reference L% of independent
noise. Every case is run in one process and, unless ``--no-ray``, with the counting on 2
Ray workers, checking that both find the same model. ``--quick`` halves the frames.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import ray

from neurolake.mining.diffnorm import DiffNorm, DiffNormResult
from neurolake.mining.lcm import read_fimi

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fimi"


def fimi_halves(path: Path) -> list[np.ndarray]:
    """The transactions of a FIMI file as two ``[rows, items] bool`` groups (first half,
    second half), over the item ids that occur."""
    db = read_fimi(str(path))
    n_rows = len(db)
    n_items = int(db.indices.max()) + 1
    dense = np.zeros((n_rows, n_items), bool)
    rows = np.repeat(np.arange(n_rows), np.diff(db.indptr))
    dense[rows, db.indices] = True
    dense = dense[:, dense.any(axis=0)]
    return [dense[: n_rows // 2], dense[n_rows // 2 :]]


def activation_groups(
    n_frames: int, n_units: int, rate: float, seed: int, plant: bool = True
) -> tuple[list[np.ndarray], dict[str, list[tuple[int, ...]]]]:
    """Binarised activations split by a planted label, ``[frames, units] bool`` per label.

    Units fire independently with probability ``rate``. A third of the frames carry label 1.
    With ``plant``, 8 groups of 4-7 units fire together (each member joining with
    probability 0.95) in 6 % of the frames they are planted in: 3 groups in label-1 frames
    only, 2 in label-0 frames only, 3 in all frames.
    """
    rng = np.random.default_rng(seed)
    frames = rng.random((n_frames, n_units), dtype=np.float32) < rate
    label = rng.random(n_frames) < 1 / 3
    units = rng.permutation(n_units)
    planted: dict[str, list[tuple[int, ...]]] = {"label 1": [], "label 0": [], "both": []}
    if plant:
        start = 0
        for where, count in (("label 1", 3), ("label 0", 2), ("both", 3)):
            for _ in range(count):
                size = int(rng.integers(4, 8))
                group = units[start : start + size]
                start += size
                allowed = {"label 1": label, "label 0": ~label, "both": np.ones_like(label)}
                on = np.flatnonzero(allowed[where] & (rng.random(n_frames) < 0.06))
                frames[np.ix_(on, group)] |= rng.random((on.size, group.size)) < 0.95
                planted[where].append(tuple(sorted(int(u) for u in group)))
    return [frames[~label], frames[label]], planted


def describe(result: DiffNormResult) -> str:
    counts = ", ".join(f"{'+'.join(map(str, s))}: {len(ps)}" for s, ps in result.by_subset().items())
    return f"L% {result.l_percent:6.2f}  patterns [{counts}]"


def run_case(label: str, groups: list[np.ndarray], params: dict, use_ray: bool) -> DiffNormResult:
    rows = " / ".join(f"{g.shape[0]:,d}" for g in groups)
    start = time.perf_counter()
    result = DiffNorm(**params).fit(groups).discover()
    single = time.perf_counter() - start
    print(
        f"{label:<38} rows {rows:>15}  items {groups[0].shape[1]:>4}  {describe(result)}  "
        f"single process {single:6.2f} s",
        flush=True,
    )
    if use_ray:
        start = time.perf_counter()
        remote = DiffNorm(**params, workers=2).fit(groups).discover()
        elapsed = time.perf_counter() - start
        same = remote.patterns == result.patterns and abs(remote.total_length - result.total_length) <= 1e-9
        print(
            f"{'':<38} Ray, 2 workers: {elapsed:6.2f} s ({'same model' if same else 'MODEL DIFFERS'})",
            flush=True,
        )
    return result


def recovered(result: DiffNormResult, planted: dict[str, list[tuple[int, ...]]]) -> str:
    """How many planted groups come out as a pattern of the right subset: the planted
    units exactly, or a pattern holding at least all but one of them and nothing else."""
    where = {"label 0": (0,), "label 1": (1,), "both": (0, 1)}
    found = result.by_subset()
    parts = []
    for name, groups in planted.items():
        hits = 0
        for group in groups:
            members = set(group)
            hits += any(set(p.itemset) <= members and len(p.itemset) >= len(members) - 1 for p in found[where[name]])
        parts.append(f"{name}: {hits}/{len(groups)}")
    return ", ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="half the generated frames")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="FIMI .dat directory")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray runs")
    args = parser.parse_args(argv)
    use_ray = not args.no_ray
    if use_ray and not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False)
        # Start the actors and compile their kernels outside the timings.
        DiffNorm(workers=2).fit([np.eye(4, dtype=bool)] * 2)
    DiffNorm().fit([np.eye(4, dtype=bool)] * 2)

    print("== FIMI files, first half vs second half ==", flush=True)
    for name, support in (("chess", 0.75), ("mushroom", 0.1)):
        path = args.data / f"{name}.dat"
        if not path.exists():
            print(f"{name}: {path} not found, skipped", flush=True)
            continue
        run_case(f"{name} (closed @ {support:.0%})", fimi_halves(path), {"min_support": support}, use_ray)

    print("== activation-like matrix, split by a planted label ==", flush=True)
    n_frames = 10_000 if args.quick else 20_000
    params = {"min_support": 0.02}
    groups, planted = activation_groups(n_frames, 200, 0.10, seed=0)
    result = run_case(f"{n_frames // 1000}k x 200, 10 % active, planted", groups, params, use_ray)
    print(f"{'':<38} planted groups recovered: {recovered(result, planted)}", flush=True)
    noise, _ = activation_groups(n_frames, 200, 0.10, seed=0, plant=False)
    run_case(f"{n_frames // 1000}k x 200, 10 % active, noise only", noise, params, use_ray)
    return 0


if __name__ == "__main__":
    sys.exit(main())
