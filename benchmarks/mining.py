"""Speed of closed itemset mining: LCM against pyfim, and the Ray miner with 2 workers against 1.

    python benchmarks/mining.py [--quick] [--data DIR] [--part all|pyfim|distributed]

Part 1 times ``neurolake.mining.lcm.closed_itemsets`` against pyfim's fastest closed miner
(the better of ``fpgrowth`` and ``eclat`` with ``target='c'``) in the same process, best of
several runs, on the FIMI benchmarks (chess 60 %, mushroom 5 %, retail 0.1 %), on sparse
market-basket rows from the IBM Quest generator (T10I4D100K: 100k rows of 10 items on average
from 2,000 patterns of 4 over 1,000 items, at 0.1 %) and on an activation-like matrix (200k
frames x 1,000 units, 10 % active, planted co-active groups). Each miner gets its natural
input: ours a CSR matrix or the boolean frame matrix (the conversion is timed), pyfim lists
of lists (not timed). Target: ours/pyfim <= 1 everywhere.

Part 2 times ``closed_itemsets(..., workers=2)`` and ``workers=1`` on Ray (the first-level
branches mined as Ray tasks) against the best single-process run (no Ray) of the same miner,
on a task that takes 30 s or more in one process (100k frames x 200 units, about 40 s), after
a warm-up that starts Ray and its workers. Targets: 2 workers >= 1.8x the single process,
1 worker within 1.1x of it. A busy-loop check first prints how much parallelism the machine
offers at that moment (shared machines give less than 2; the 2-worker target needs 2).
``--quick`` shrinks the generated data so that everything runs in about a minute (the targets
are only meaningful at full size).
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import sys
import time
from pathlib import Path

import fim
import numpy as np

from neurolake.mining.lcm import Transactions, closed_itemsets, read_fimi

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fimi"


def activation_like(
    n_frames: int, n_units: int, rate: float, n_groups: int, seed: int
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Binarised activations ``[n_frames, n_units] bool`` with planted structure.

    Every unit is active independently with probability ``rate``; on top of that each of
    ``n_groups`` groups of 4-11 units fires together in 4 % of the frames, each member
    joining with probability 0.9 (so group subsets have distinct supports).
    """
    rng = np.random.default_rng(seed)
    groups = [rng.choice(n_units, size=int(rng.integers(4, 12)), replace=False) for _ in range(n_groups)]
    frames = np.empty((n_frames, n_units), bool)
    step = 20_000
    for start in range(0, n_frames, step):
        stop = min(start + step, n_frames)
        frames[start:stop] = rng.random((stop - start, n_units), dtype=np.float32) < rate
    for group in groups:
        on = np.flatnonzero(rng.random(n_frames) < 0.04)
        joined = rng.random((on.size, group.size)) < 0.9
        frames[np.ix_(on, group)] |= joined
    return frames, groups


def quest_transactions(
    n_transactions: int,
    avg_size: float,
    avg_pattern_size: float,
    n_items: int,
    n_patterns: int = 2000,
    correlation: float = 0.5,
    seed: int = 0,
) -> list[list[int]]:
    """Market-basket rows from the IBM Quest generator (Agrawal & Srikant, VLDB 1994, 2.4.3).

    ``n_patterns`` potentially large itemsets get Poisson(``avg_pattern_size``) items, a
    fraction of them (exponential, mean ``correlation``) taken from the previous pattern,
    the rest at random; each pattern has a pick weight (exponential, mean 1) and a
    corruption level (normal, mean 0.5, variance 0.1). A row gets a Poisson(``avg_size``)
    target size and is filled with weighted picks of patterns, each corrupted by dropping
    random items while a uniform draw stays below its corruption level. A pattern that
    overflows the row goes in anyway half of the time, and otherwise opens the next row.
    T10I4D100K is ``quest_transactions(100_000, 10, 4, 1000)``.
    """
    rng = np.random.default_rng(seed)
    patterns: list[list[int]] = []
    previous: list[int] = []
    for _ in range(n_patterns):
        size = max(1, int(rng.poisson(avg_pattern_size)))
        n_shared = min(len(previous), size, round(rng.exponential(correlation) * size))
        chosen = set(rng.choice(previous, n_shared, replace=False).tolist()) if n_shared else set()
        while len(chosen) < size:
            chosen.add(int(rng.integers(n_items)))
        previous = sorted(chosen)
        patterns.append(previous)
    weights = rng.exponential(1.0, n_patterns)
    weights /= weights.sum()
    corruption = np.clip(rng.normal(0.5, np.sqrt(0.1), n_patterns), 0.0, 1.0)
    sizes = rng.poisson(avg_size, n_transactions).tolist()
    picks = iter(rng.choice(n_patterns, size=2 * sum(sizes) + 1000, p=weights).tolist())
    rows: list[list[int]] = []
    carried: list[int] | None = None
    for size in sizes:
        row: set[int] = set()
        while len(row) < max(1, size):
            if carried is not None:
                items, carried = carried, None
            else:
                k = next(picks)
                items = list(patterns[k])
                while items and rng.random() < corruption[k]:
                    items.pop(int(rng.integers(len(items))))
            if row and len(row) + len(items) > size and rng.random() < 0.5:
                carried = items
                break
            row.update(items)
        rows.append(sorted(row))
    return rows


def best_time(fn, repeats: int) -> tuple[float, object]:
    """Shortest wall time of ``repeats`` calls (seconds) and the last result."""
    best = math.inf
    result = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def compare_with_pyfim(
    label: str, ours_input, rows: list[list[int]], fraction: float, target: float, repeats: int
) -> None:
    minsup = math.ceil(round(fraction * len(rows), 9))
    ours_s, ours = best_time(lambda: closed_itemsets(ours_input, minsup), repeats)
    timings = {}
    counts = {}
    for algo in ("fpgrowth", "eclat"):
        miner = getattr(fim, algo)
        timings[algo], found = best_time(lambda miner=miner: miner(rows, target="c", supp=-minsup, report="a"), repeats)
        counts[algo] = len(found)
    fastest = min(timings, key=timings.get)
    # pyfim leaves out the closure of the whole database (items in every row).
    ours_count = int(np.sum(ours.support < len(rows)))
    agree = "same count" if ours_count == counts[fastest] else f"COUNT DIFFERS ({counts})"
    ratio = ours_s / timings[fastest]
    verdict = "ok" if ratio <= target else "MISSED"
    print(
        f"{label:<34} {len(ours):>9,d} sets  ours {ours_s:8.3f} s  pyfim {fastest:<8} "
        f"{timings[fastest]:8.3f} s  ratio {ratio:5.2f} (target <= {target:g}: {verdict})  "
        f"{agree}",
        flush=True,
    )


def part_pyfim(data_dir: Path, quick: bool) -> None:
    print("== LCM vs pyfim (best of runs, same process) ==", flush=True)
    for name, fraction in (("chess", 0.60), ("mushroom", 0.05), ("retail", 0.001)):
        path = data_dir / f"{name}.dat"
        if not path.exists():
            print(f"{name}: {path} not found, skipped", flush=True)
            continue
        db = read_fimi(str(path))
        compare_with_pyfim(f"{name} {fraction:.1%}", db, db.to_lists(), fraction, 1.0, 3 if quick else 5)
    n_rows = 20_000 if quick else 100_000
    rows = quest_transactions(n_rows, 10, 4, 1_000)
    label = f"quest T10I4D{n_rows // 1000}K @ 0.1%"
    compare_with_pyfim(label, Transactions.from_any(rows), rows, 0.001, 1.0, 3 if quick else 5)
    n_frames = 50_000 if quick else 200_000
    frames, _ = activation_like(n_frames, 1_000, 0.10, n_groups=20, seed=0)
    rows = Transactions.from_any(frames).to_lists()
    compare_with_pyfim(f"activations {n_frames // 1000}k x 1000 @ 2%", frames, rows, 0.02, 1.0, 1 if quick else 2)


def _spin(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def available_parallelism() -> float:
    """Speed-up of 2 processes over 1 on a pure-Python busy loop: what this machine can
    give a 2-worker run right now (below 2 when other work shares the cores). The best of
    three rounds of each, interleaved, since this machine's speed drifts from one second to
    the next. The processes are spawned, not forked (a fork of a process running Ray
    inherits its signal handlers), and started before the timing."""
    n = 5_000_000
    serial, parallel = math.inf, math.inf
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pool.map(time.sleep, [0.5, 0.5], chunksize=1)  # both processes up
        for _ in range(3):
            start = time.perf_counter()
            _spin(n)
            _spin(n)
            serial = min(serial, time.perf_counter() - start)
            start = time.perf_counter()
            pool.map(_spin, [n, n], chunksize=1)
            parallel = min(parallel, time.perf_counter() - start)
    return serial / parallel


def stolen_seconds() -> float | None:
    """Seconds of CPU time the host has taken from this virtual machine's CPUs since it
    booted, all CPUs together (the steal column of ``/proc/stat``): time a CPU of this machine
    wanted to run and the hypervisor ran something else. None where the kernel does not say.
    A run's share of it, against its time on every core, is what the machine lost under it
    (the busy loop of :func:`available_parallelism` can run in a moment without any)."""
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
    except OSError:
        return None
    if fields[:1] != ["cpu"] or len(fields) < 9:
        return None
    return int(fields[8]) / os.sysconf("SC_CLK_TCK")


def part_distributed(quick: bool) -> None:
    print("== distributed LCM on Ray: 2 workers and 1 vs the single process ==", flush=True)
    parallelism = available_parallelism()
    print(f"  machine check: 2 busy processes run {parallelism:.2f}x faster than 1", flush=True)
    # Start Ray and both workers (each loads the compiled kernels once) outside the timings.
    warm_up = np.random.default_rng(0).random((2000, 40)) < 0.3
    for _ in range(3):
        closed_itemsets(warm_up, 0.05, workers=2)
    n_frames = 30_000 if quick else 100_000
    fraction = 0.01 if quick else 0.009
    frames, _ = activation_like(n_frames, 200, 0.20, n_groups=10, seed=1)
    db = Transactions.from_any(frames)
    label = f"activations {n_frames // 1000}k x 200, 20 % active @ {fraction:.1%}"
    repeats = 1 if quick else 2
    single_s, single = best_time(lambda: closed_itemsets(db, fraction), repeats)
    print(f"{label}: single process {single_s:.2f} s (best of {repeats}), {len(single):,d} sets", flush=True)
    expected = set(single)
    times = {}
    for workers in (1, 2):
        times[workers], found = best_time(lambda workers=workers: closed_itemsets(db, fraction, workers=workers), 1)
        same = "same result" if set(found) == expected else "RESULT DIFFERS"
        print(f"  Ray, {workers} worker(s): {times[workers]:.2f} s  ({same})", flush=True)
    one, two = times[1] / single_s, single_s / times[2]
    print(f"  1 worker / single process: {one:.2f} (target <= 1.1: {'ok' if one <= 1.1 else 'MISSED'})", flush=True)
    print(
        f"  single process / 2 workers: {two:.2f}x (target >= 1.8: {'ok' if two >= 1.8 else 'MISSED'}; "
        f"the machine offered {parallelism:.2f}x)",
        flush=True,
    )
    print(f"  speed-up 2 workers vs 1: {times[1] / times[2]:.2f}x", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller generated data")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="FIMI .dat directory")
    parser.add_argument("--part", choices=("all", "pyfim", "distributed"), default="all", help="run one part only")
    args = parser.parse_args(argv)
    # Compile (or load) the kernels outside the timings.
    closed_itemsets([[1, 2], [1, 2, 3], [2]], 1)
    closed_itemsets(np.random.default_rng(0).random((5000, 30)) < 0.3, 0.05)
    if args.part in ("all", "pyfim"):
        part_pyfim(args.data, args.quick)
    if args.part in ("all", "distributed"):
        part_distributed(args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
