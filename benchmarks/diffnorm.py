"""DiffNorm runtime and compression (L%) on FIMI files and an activation-like matrix.

    python benchmarks/diffnorm.py [--quick] [--data DIR] [--no-ray] [--demo-lake DIR] [--large FRAMES]

Part 1: chess and mushroom split in two groups, the first and the second half of the
transactions (default subsets: each half alone and both together). Part 2: binarised
activations (20k frames x 200 units, each unit active in 10 % of the frames, co-active
unit groups planted only in label-1 frames, only in label-0 frames, or in both), split by
the label; the same matrix without planted groups gives the reference L% of independent
noise. Every case is run in one process and, unless ``--no-ray``, with the counting on 2
Ray workers, checking that both find the same model. ``--quick`` halves the frames.

Part 3: the demo lake's contrast, as ``neurolake mine --algo diffnorm`` runs it: the frames of
misrecognised words against those of correct words, every captured unit binarised at its 90th
percentile (``--demo-lake`` names a lake the demo wrote; without it the demo is run into a
temporary lake first). Its time is set against a 30 s target, and the first 40 acceptances are
timed with Slim's pair counts recounted in full at every step (the earlier search) against
updated incrementally, the same search either way.

Part 4 (``--large FRAMES``): a synthetic contrast of FRAMES frames x 2,000 units (5 % active),
with target-only co-active groups planted in a fifth of the frames, on 2 Ray workers.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import ray

from neurolake.cluster.ray_env import connect
from neurolake.mining.diffnorm import DiffNorm, DiffNormResult, LocalUsageCounter, UsageCounter
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


class _Recounting(LocalUsageCounter):
    """The earlier search's counting: Slim's pair counts from scratch after every change."""

    co_usage_sequence = UsageCounter.co_usage_sequence  # step by step, each a full count

    def co_usage_change(self, group, counts, old, new, within, pos, add):  # type: ignore[no-untyped-def]
        return UsageCounter.co_usage_change(self, group, counts, old, new, within, pos, add)


class _RecountingDiffNorm(DiffNorm):
    def _make_counter(self, groups, n_items):  # type: ignore[no-untyped-def]
        return _Recounting(groups, n_items)


def demo_contrast(lake_dir: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """The demo lake's error-word and correct-word frames, binarised as ``mine`` does."""
    import tempfile

    from neurolake.demo import DEMO_RUN, run_demo
    from neurolake.mining.binarize import as_spec
    from neurolake.mining.mine import binarised_group
    from neurolake.query.groups import get_group
    from neurolake.query.neurons import neuron_statistics
    from neurolake.store import Lake

    if lake_dir is None:
        lake_dir = Path(tempfile.mkdtemp(prefix="neurolake-demo-")) / "lake"
        with open(lake_dir.parent / "demo.log", "w") as log:
            run_demo(str(lake_dir), log, progress=False)
    lake = Lake.open(str(lake_dir))
    target, background = get_group(lake, "demo-error-words"), get_group(lake, "demo-correct-words")
    run = lake.run(DEMO_RUN)
    spec = as_spec("quantile:0.9")
    stats = neuron_statistics(lake, run.run_id, run.layer_names)
    return (
        binarised_group(lake, run, target, run.layer_names, spec, stats).dense(),
        binarised_group(lake, run, background, run.layer_names, spec, stats).dense(),
    )


def plant_target_groups(target: np.ndarray, rng: np.random.Generator) -> list[tuple[int, ...]]:
    """Plant 6 groups of 5 units (drawn by ``rng``) that fire together in 8 % of the
    ``target`` frames; the groups, each as increasing units."""
    units = rng.permutation(target.shape[1])
    planted = []
    for g in range(6):
        members = units[5 * g : 5 * g + 5]
        on = np.flatnonzero(rng.random(target.shape[0]) < 0.08)
        target[np.ix_(on, members)] = True
        planted.append(tuple(sorted(int(u) for u in members)))
    return planted


def random_below(rng: np.random.Generator, n_rows: int, n_units: int, rate: float) -> np.ndarray:
    """``[n_rows, n_units]`` bool, each True with probability ``rate``: ``rng.random(...) <
    rate``, drawn 100,000 rows at a time (the same numbers, without the whole float32 matrix:
    13 GB for 1.6 M frames of 2,000 units)."""
    out = np.empty((n_rows, n_units), bool)
    for start in range(0, n_rows, 100_000):
        stop = min(n_rows, start + 100_000)
        out[start:stop] = rng.random((stop - start, n_units), dtype=np.float32) < rate
    return out


def large_contrast(n_frames: int, n_units: int = 2000, seed: int = 0) -> tuple[list[np.ndarray], list[tuple[int, ...]]]:
    """``n_frames`` x ``n_units`` at 5 % activity; 6 groups of 5 units fire together in 8 % of
    the target frames (a fifth of all) only."""
    rng = np.random.default_rng(seed)
    n_target = n_frames // 5
    groups = [random_below(rng, n, n_units, 0.05) for n in (n_target, n_frames - n_target)]
    return groups, plant_target_groups(groups[0], rng)


def speaker_contrast(
    n_frames: int, n_units: int = 2000, speakers: int = 20, seed: int = 0
) -> tuple[list[np.ndarray], list[tuple[int, ...]]]:
    """:func:`large_contrast` with its rows in a corpus's order: each group is ``speakers``
    runs of consecutive frames, and each unit fires at 5 % times a rate of the speaker's own
    (log-normal, sigma 0.7, a unit's mean over speakers 1), as a unit's activity varies with
    the voice and the recording; the planted groups as in :func:`large_contrast`."""
    rng = np.random.default_rng(seed)
    n_target = n_frames // 5
    rates = rng.lognormal(0.0, 0.7, (speakers, n_units))
    rates *= 0.05 / rates.mean(axis=0)
    groups = []
    for n in (n_target, n_frames - n_target):
        bounds = np.linspace(0, n, speakers + 1).astype(np.int64)
        g = np.empty((n, n_units), bool)
        for k in range(speakers):
            g[bounds[k] : bounds[k + 1]] = rng.random((bounds[k + 1] - bounds[k], n_units), dtype=np.float32) < rates[k]
        groups.append(g)
    return groups, plant_target_groups(groups[0], rng)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="half the generated frames")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="FIMI .dat directory")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray runs")
    parser.add_argument("--demo-lake", type=Path, help="a lake the demo wrote (default: run the demo first)")
    parser.add_argument("--skip-demo", action="store_true", help="skip the demo lake's contrast")
    parser.add_argument("--large", type=int, metavar="FRAMES", help="also run a FRAMES x 2,000-unit contrast on Ray")
    parser.add_argument("--skip-fimi", action="store_true", help="skip parts 1 and 2")
    args = parser.parse_args(argv)
    use_ray = not args.no_ray
    if use_ray and not ray.is_initialized():
        connect(num_cpus=2)  # a local Ray as neurolake starts one (its workers not reniced)
        # Start the actors and compile their kernels outside the timings.
        DiffNorm(workers=2).fit([np.eye(4, dtype=bool)] * 2)
    DiffNorm().fit([np.eye(4, dtype=bool)] * 2)

    if not args.skip_demo:
        print("== the demo lake: error-word frames vs correct-word frames (mine's defaults) ==", flush=True)
        target, background = demo_contrast(args.demo_lake)
        params = {"min_support": 0.1}
        start = time.perf_counter()
        model = DiffNorm(**params).fit([target, background])
        elapsed = time.perf_counter() - start
        result = model.discover()
        sets = {
            name: len(model.patterns_for(s)) for name, s in (("target", (0,)), ("background", (1,)), ("shared", (0, 1)))
        }
        print(
            f"{target.shape[0]:,d} vs {background.shape[0]:,d} frames, {target.shape[1]:,d} units: {elapsed:.1f} s "
            f"(target 30 s, ratio {elapsed / 30:.2f}); L% {result.l_percent:.2f}, {result.n_accepted} accepted, "
            f"sets {sets}",
            flush=True,
        )
        short = {"min_support": 0.1, "max_iterations": 40}
        start = time.perf_counter()
        recounted = _RecountingDiffNorm(**short).fit([target, background]).discover()
        t_recount = time.perf_counter() - start
        start = time.perf_counter()
        updated = DiffNorm(**short).fit([target, background]).discover()
        t_update = time.perf_counter() - start
        same = updated.patterns == recounted.patterns and updated.total_length == recounted.total_length
        print(
            f"first 40 acceptances: pair counts recounted {t_recount:.1f} s, updated {t_update:.1f} s "
            f"(ratio {t_update / t_recount:.2f}; {'same model' if same else 'MODEL DIFFERS'})",
            flush=True,
        )
    if args.large:
        print(f"== {args.large:,d} frames x 2,000 units, target-only groups planted, 2 Ray workers ==", flush=True)
        groups, planted = large_contrast(args.large)
        start = time.perf_counter()
        model = DiffNorm(min_support=0.05, workers=2).fit(groups)
        elapsed = time.perf_counter() - start
        target_set = {p for p in model.patterns_for((0,))}
        hits = sum(any(set(p) <= set(g) and len(p) >= 4 for p in target_set) for g in planted)
        print(
            f"{elapsed:.1f} s; L% {model.discover().l_percent:.2f}; planted target groups found {hits}/{len(planted)}",
            flush=True,
        )
    if args.skip_fimi:
        return 0

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
