"""Where a DiffNorm search's time goes: one process against the search on Ray workers.

    python benchmarks/diffnorm_ray.py [--frames N] [--iterations N] [--speakers S] [--workers 0 1 2 2b 2n]

Runs the ``--large`` contrast of ``benchmarks/diffnorm.py`` (N frames x 2,000 units, 5 %
active, target-only groups planted; with ``--speakers S``, its rows in a corpus's order: S runs
of frames, each unit's rate varying by run, ``speaker_contrast``) once per entry of
``--workers``: 0 is one process; k deals the rows out to k Ray actors, the first of which runs
the search (even for k = 1, where it holds every row); ``kb`` gives each actor one contiguous
block of rows instead, as before they were dealt, and ``kn`` runs the search with channels that
do not spin between trips (see :mod:`neurolake.cluster.channel`). For each run it prints its
time and the ratio to the one-process run before it (interleave them: this machine's speed
drifts), the time of the search's steps (in the process or the actor that searched) and, for
each actor, the compute time of every method it ran; the counting methods of the searching
actor include its share of the rows, and ``usage_changes_held`` / ``co_usage_deltas_held`` are
the other actors' trips (their counting is inside them), and on the searching actor "waits for
the other actors" is the time it spent waiting for their answers after counting its own rows
(the rest of the search, less its counting and these waits, is what the other actors idle
through). The runs must find the same model; the script ends with a summary of the counting
ratios (each against the one-process run before it, their median, and the fastest run of each
kind against each other). Each run prints its counting, the time the search spent in its
counter's calls (every part of the rows counted and summed, trips and waits included), against
the one-process run's: the scaling target for DiffNorm's counting (2 workers >= 1.8x, 1 worker
within 1.1x; the closed candidates and the search's own steps are not counting). Each run also
prints its CPU seconds (this process and the actors' processes) and what they leave possible on
this machine's cores against the one-process run, and, on Linux, the CPU time the host took
from this (virtual) machine while it ran (``stolen_seconds``); the next run starts once its
actors have exited. Before and after each run on several workers, the machine checks print
what 2 busy processes gain over 1 at that moment (below 2x when other work shares the cores,
which caps the run's ratio) and what 2 threads counting the halves of the rows with the usage
kernels gain over 1 counting them all (``CountingCheck``: the memory the counting streams, which the busy
loop does not touch); checks that differ bracket a run during which the machine's speed
changed, and a run can change more than a check of a few seconds sees.
"""

from __future__ import annotations

import argparse
import collections
import functools
import gc
import os
import resource
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from diffnorm import large_contrast, speaker_contrast
from mining import available_parallelism, stolen_seconds

import neurolake.mining.diffnorm as dn
from neurolake.cluster.ray_env import connect
from neurolake.mining import _diffnorm_kernels as kernels

# The steps of a search, timed wherever it runs: (owner, attribute, label).
STEPS = [
    (dn.DiffNorm, "_closed_candidates", "closed candidates"),
    (dn.DiffNorm, "_slim_candidates", "Slim's list (with its co-usage updates)"),
    (dn.DiffNorm, "_co_usages_now", "co-usage updates"),
    (dn.DiffNorm, "_first_improving", "candidates evaluated"),
    (kernels, "slim_gains_tabled", "pair gains (kernel)"),
    (dn.LocalUsageCounter, "usages", "usages (one-process counter)"),
    (dn.LocalUsageCounter, "usage_changes", "usage changes (one-process counter)"),
    (dn.LocalUsageCounter, "co_usages", "first co-usages (one-process counter)"),
    (dn.LocalUsageCounter, "co_usage_sequence", "co-usage changes (one-process counter)"),
    # Each step's sparse change over the rows this process holds (all of them in one process;
    # on Ray, the searching actor's partition).
    (dn.LocalUsageCounter, "co_usage_delta", "co-usage deltas (the rows of this process)"),
    (dn.PartitionedUsageCounter, "usages", "usages (partitioned counter)"),
    (dn.PartitionedUsageCounter, "usage_changes", "usage changes (partitioned counter)"),
    (dn.PartitionedUsageCounter, "co_usages", "first co-usages (partitioned counter)"),
    (dn.PartitionedUsageCounter, "co_usage_sequence", "co-usage changes (partitioned counter)"),
]

# The counter's methods the search calls: their time, outermost calls only, is the search's
# counting (every part of the rows counted and summed, trips and waits included).
COUNTER_METHODS = ("supports", "usages", "usage_changes", "co_usages", "co_usage_sequence")
COUNTING = "counting (the counter's calls)"


def instrument(spent: dict[str, float], calls: collections.Counter) -> None:
    """Wrap every step of ``STEPS`` (in this process) to add its time to ``spent``."""
    for owner, name, key in STEPS:
        original = getattr(owner, name)
        original = getattr(original, "untimed", original)  # not numba's __wrapped__: its Python code

        def wrapper(*args: Any, __original: Any = original, __key: str = key, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return __original(*args, **kwargs)
            finally:
                spent[__key] += time.perf_counter() - start
                calls[__key] += 1

        functools.update_wrapper(wrapper, original)
        wrapper.untimed = original  # type: ignore[attr-defined]
        setattr(owner, name, wrapper)
    depth = [0]
    for owner in (dn.LocalUsageCounter, dn.PartitionedUsageCounter):
        for name in COUNTER_METHODS:
            original = getattr(owner, name)

            def counted(*args: Any, __original: Any = original, **kwargs: Any) -> Any:
                depth[0] += 1
                start = time.perf_counter()
                try:
                    return __original(*args, **kwargs)
                finally:
                    depth[0] -= 1
                    if depth[0] == 0:
                        spent[COUNTING] += time.perf_counter() - start
                        calls[COUNTING] += 1

            functools.update_wrapper(counted, original)
            setattr(owner, name, counted)


def wait_timed(spent: dict[str, float], calls: collections.Counter) -> None:
    """Time, in this process, the waits for the other actors' answers once this process
    has counted its own rows (``PartitionedUsageCounter._parts``)."""
    original = dn.PartitionedUsageCounter._parts

    def parts(self: dn.PartitionedUsageCounter, *args: Any, **kwargs: Any) -> Any:
        answers = original(self, *args, **kwargs)

        def waited() -> Any:
            start = time.perf_counter()
            try:
                return answers()
            finally:
                spent["waits for the other actors"] += time.perf_counter() - start
                calls["waits for the other actors"] += 1

        return waited

    dn.PartitionedUsageCounter._parts = parts  # type: ignore[method-assign]


class TimedPartition(dn._RowPartition):
    """The actors' partition, timing its methods (and, on the actor that searches, the
    search's steps)."""

    # The channels' spin in seconds for the search (0: an ``n`` run), set before each run's
    # actors start: the class travels to them by value.
    spin = dn._TRIP_SPIN_S

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.spent: dict[str, float] = collections.defaultdict(float)
        self.calls: collections.Counter = collections.Counter()
        self.steps: dict[str, float] = collections.defaultdict(float)
        self.step_calls: collections.Counter = collections.Counter()
        # The chunks of each partition this actor counted, summed over its claimed counts.
        self.claimed: np.ndarray | None = None

    def _timed(self, name: str, *args: Any) -> Any:
        start = time.perf_counter()
        try:
            return getattr(super(), name)(*args)
        finally:
            self.spent[name] += time.perf_counter() - start
            self.calls[name] += 1

    def supports(self, *args: Any) -> Any:
        return self._timed("supports", *args)

    def usages_stacked(self, *args: Any) -> Any:
        return self._timed("usages_stacked", *args)

    def usages_held(self, *args: Any) -> Any:
        return self._timed("usages_held", *args)

    def usage_changes_stacked(self, *args: Any) -> Any:
        return self._timed("usage_changes_stacked", *args)

    def usage_changes_held(self, *args: Any) -> Any:
        return self._timed("usage_changes_held", *args)

    def co_usages(self, *args: Any) -> Any:
        return self._timed("co_usages", *args)

    def co_usages_claimed(self, *args: Any) -> Any:
        answer = self._timed("co_usages_claimed", *args)
        self.claimed = answer[1] if self.claimed is None else self.claimed + answer[1]
        return answer

    def co_usage_delta(self, *args: Any) -> Any:
        return self._timed("co_usage_delta", *args)

    def co_usage_deltas_held(self, *args: Any) -> Any:
        return self._timed("co_usage_deltas_held", *args)

    def search(self, *args: Any) -> Any:
        dn._TRIP_SPIN_S = self.spin  # read where the search opens its channels, in this process
        instrument(self.steps, self.step_calls)
        wait_timed(self.steps, self.step_calls)
        return self._timed("search", *args)

    def times(self) -> tuple[dict[str, float], dict[str, int], dict[str, float], dict[str, int], Any, float, int]:
        """The times above, the chunks it claimed, the CPU seconds of this process in its
        life (Ray's worker start included) and its pid."""
        return (
            dict(self.spent),
            dict(self.calls),
            dict(self.steps),
            dict(self.step_calls),
            self.claimed,
            cpu_seconds(),
            os.getpid(),
        )


def cpu_seconds() -> float:
    """CPU seconds (user and system, every thread) this process has used."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def wait_gone(pids: list[int], limit_s: float = 60.0) -> float:
    """Wait until the processes ``pids`` (the last run's actors, killed at its end) have
    exited: until then their memory is being freed on the CPUs the next run times."""
    start = time.perf_counter()
    while time.perf_counter() - start < limit_s:
        alive = []
        for pid in pids:
            try:
                os.kill(pid, 0)
                alive.append(pid)
            except ProcessLookupError:
                pass
        if not alive:
            break
        time.sleep(0.05)
    return time.perf_counter() - start


class CountingCheck:
    """What two threads counting the two halves of the rows at once (dealt as the actors get
    them) gain over one thread counting every row, with DiffNorm's own usage kernels (they
    release the interpreter lock) on the benchmark's rows: the machine check for this work,
    which streams memory where the busy loop of :func:`available_parallelism` does not, so a
    machine whose memory other work shares scores lower here than there. The requests are
    fixed: ``requests`` item supports' rows each covered by ``patterns`` random pairs of items.
    """

    def __init__(self, packed: list[dn.BitMatrix], requests: int = 8, patterns: int = 30, seed: int = 0) -> None:
        words = [p.words for p in packed]
        n_items, n_words = packed[0].n_items, words[0].shape[1]
        self.whole = dn.LocalUsageCounter(words, n_items)
        dealt = [dn._deal(w, np.ones(2)) for w in words]
        self.halves = [dn.LocalUsageCounter([parts[h] for parts in dealt], n_items) for h in range(2)]
        rng = np.random.default_rng(seed)
        pairs = [tuple(sorted(rng.choice(n_items, 2, replace=False).tolist())) for _ in range(patterns)]
        table = np.stack([dn._itemset_bits(x, n_words) for x in pairs])
        self.requests = [
            (i, table, dn._itemset_bits((int(x),), n_words))
            for i in range(len(words))
            for x in rng.choice(n_items, requests, replace=False)
        ]

    def _count(self, counter: dn.LocalUsageCounter) -> None:
        # The kernels themselves: the counter's methods are timed as the search's counting.
        for i, table, within in self.requests:
            kernels.cover_usage_of(counter.groups[i], counter._within(i, within), table, counter.n_items)

    def __call__(self, rounds: int = 5) -> float:
        """The speed-up, best of ``rounds`` of each (interleaved)."""
        one, two = float("inf"), float("inf")
        with ThreadPoolExecutor(2) as pool:
            self._count(self.halves[0])  # compiled and the threads up
            for _ in range(rounds):
                start = time.perf_counter()
                self._count(self.whole)
                one = min(one, time.perf_counter() - start)
                start = time.perf_counter()
                list(pool.map(self._count, self.halves))
                two = min(two, time.perf_counter() - start)
        return one / two


class OnRay(dn.DiffNorm):
    """The search on ``workers`` Ray actors, even for one."""

    def _search_workers(self) -> int:
        return self.workers


class Kind(NamedTuple):
    """An entry of ``--workers``."""

    workers: int
    blocks: bool = False  # contiguous blocks of rows instead of dealt
    still: bool = False  # channels that do not spin between trips
    share: float | None = None  # the searching actor's share of rows (None: _searcher_share's)


def run_kind(text: str) -> Kind:
    """An entry of ``--workers``: a number of workers, then ``b`` for contiguous blocks or
    ``n`` for channels that do not spin, then ``@s`` for a share of rows ``s`` times each
    other actor's on the searching actor (``2@1.1``)."""
    text, _, share = text.partition("@")
    suffix = text[-1] if text[-1:] in ("b", "n") else ""
    number = text[: len(text) - len(suffix)]
    if not number.isdigit() or ((suffix or share) and int(number) < 2):
        raise argparse.ArgumentTypeError(
            f"{text!r}: a number of workers (0: one process), 'b' or 'n' and '@share' after 2 or more"
        )
    try:
        weight = float(share) if share else None
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{share!r}: a share is a number (1: as many rows as each other actor)"
        ) from None
    return Kind(int(number), suffix == "b", suffix == "n", weight)


def in_blocks(n_rows: int, weights: np.ndarray) -> np.ndarray:
    """Rows to actors in contiguous blocks, as the actors held them before rows were dealt
    (:func:`neurolake.mining.diffnorm._row_owners`)."""
    ends = np.cumsum(weights, dtype=np.float64)
    cuts = np.round(ends[:-1] / ends[-1] * n_rows).astype(np.int64)
    return np.searchsorted(cuts, np.arange(n_rows), side="right")


def label_of(kind: Kind) -> str:
    workers, blocks, still, share = kind
    if workers == 0:
        return "one process"
    label = f"{workers} Ray worker{'s' if workers > 1 else ''}"
    if share is not None:
        label += f" (the searching actor's share {share:g})"
    if blocks:
        return label + " (contiguous blocks of rows)"
    return label + " (channels not spinning)" if still else label


def print_steps(spent: dict[str, float], calls: dict[str, int]) -> None:
    for key in sorted(spent, key=lambda k: -spent[k]):
        print(f"   {key:<45} {spent[key]:7.2f} s {calls[key]:6d} calls {1000 * spent[key] / calls[key]:8.2f} ms/call")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument(
        "--workers",
        type=run_kind,
        nargs="+",
        default=[Kind(0), Kind(1), Kind(2)],
        help="0: one process; k: k Ray workers; kb: k Ray workers holding contiguous blocks of rows;"
        " kn: k Ray workers whose channels do not spin",
    )
    parser.add_argument(
        "--speakers", type=int, default=0, help="rows in a corpus's order, N speakers (speaker_contrast)"
    )
    args = parser.parse_args(argv)
    connect(num_cpus=2)  # a local Ray as neurolake starts one (its workers not reniced)
    groups, _ = speaker_contrast(args.frames, speakers=args.speakers) if args.speakers else large_contrast(args.frames)
    packed = [dn.BitMatrix.from_dense(g) for g in groups]
    del groups
    # Start Ray's workers and load the kernels outside the timings.
    dn.DiffNorm(workers=2).fit([np.eye(4, dtype=bool)] * 2)
    dn.DiffNorm().fit([np.eye(4, dtype=bool)] * 2)
    check = CountingCheck(packed) if any(kind.workers > 1 for kind in args.workers) else None
    spent: dict[str, float] = collections.defaultdict(float)
    calls: collections.Counter = collections.Counter()
    instrument(spent, calls)
    hosted, closing, dealt = dn._RowPartition, dn.PartitionedUsageCounter.close, dn._row_owners
    searcher_share = dn._searcher_share
    first, alone, alone_counting = None, None, None
    # Each run's counting and the ratio to the one-process run before it, by workers.
    countings: dict[Kind, list[tuple[float, float]]] = collections.defaultdict(list)
    for kind in args.workers:
        workers, blocks, still, share = kind
        spent.clear()
        calls.clear()
        actor_times: list[Any] = []

        def close(self: dn.PartitionedUsageCounter, into: list[Any] = actor_times) -> None:
            if self._pool is not None and self._pool._owner:
                into.extend(self._pool.broadcast("times"))
            closing(self)

        if workers > 1:
            print_checks(check)
        dn.PartitionedUsageCounter.close = close  # type: ignore[method-assign]
        dn._RowPartition = TimedPartition  # type: ignore[misc]
        dn._row_owners = in_blocks if blocks else dealt
        dn._searcher_share = searcher_share if share is None else lambda _, share=share: share  # type: ignore[misc]
        TimedPartition.spin = 0.0 if still else dn._TRIP_SPIN_S
        model = (OnRay if workers else dn.DiffNorm)(
            min_support=0.05, max_iterations=args.iterations, workers=max(workers, 1)
        )
        start, cpu_start, stolen_start = time.perf_counter(), cpu_seconds(), stolen_seconds()
        try:
            model.fit(packed)
        finally:
            dn._RowPartition = hosted  # type: ignore[misc]
            dn._row_owners = dealt
            dn._searcher_share = searcher_share
            dn.PartitionedUsageCounter.close = closing  # type: ignore[method-assign]
        elapsed, cpu = time.perf_counter() - start, cpu_seconds() - cpu_start
        stolen_end = stolen_seconds()
        stolen = None if stolen_start is None or stolen_end is None else stolen_end - stolen_start
        alone = elapsed if workers == 0 or alone is None else alone
        result = model.discover()
        first = first or result
        same = result.patterns == first.patterns and result.total_length == first.total_length
        label = label_of(kind)
        print(
            f"== {label}: {elapsed:.1f} s ({elapsed / alone:.2f} of the last one-process run), {result.n_accepted} accepted,"
            f" L% {result.l_percent:.3f} ({'same model' if same else 'MODEL DIFFERS'})",
            flush=True,
        )
        # Work on 2 cores takes at least half its CPU seconds: with the one-process run's
        # time, what this run's CPU leaves possible.
        actors_cpu = sum(t[-2] for t in actor_times)
        cores = os.cpu_count() or 1
        floor = (cpu + actors_cpu) / cores
        where = f" + {actors_cpu:.1f} s in the actors (their processes' lives)" if actor_times else ""
        print(
            f"   CPU: {cpu:.1f} s here{where} = {cpu + actors_cpu:.1f} core-seconds: on {cores} cores at least"
            f" {floor:.1f} s, at most {alone / floor:.2f}x the last one-process run",
            flush=True,
        )
        if stolen is not None:
            print(
                f"   steal: the host took {stolen:.2f} s of this machine's CPUs during it, {stolen / elapsed / cores:.1%}"
                f" of each of its {cores} cores",
                flush=True,
            )
        counting = spent.get(COUNTING, 0.0) + sum(t[2].get(COUNTING, 0.0) for t in actor_times)
        alone_counting = counting if workers == 0 or alone_counting is None else alone_counting
        countings[kind].append((counting, alone_counting / counting))
        print(
            f"   counting: {counting:.2f} s in the search's counter calls, {alone_counting / counting:.2f}x"
            " the last one-process run's",
            flush=True,
        )
        print_steps(spent, calls)
        for a, (own, own_calls, steps, step_calls, claimed, *_) in enumerate(actor_times):
            print(f"   actor {a}: " + ", ".join(f"{k} {v:.2f} s / {own_calls[k]}" for k, v in own.items()), flush=True)
            if claimed is not None:
                chunks = ", ".join(f"{n} of actor {w}'s" for w, n in enumerate(claimed.tolist()))
                print(f"   actor {a} counted the first co-usages' chunks: {chunks}", flush=True)
            if steps:
                print_steps(steps, step_calls)
        del model, result
        gc.collect()
        if actor_times:
            print(f"   (its actors exited {wait_gone([t[-1] for t in actor_times]):.1f} s after it)", flush=True)
        if workers > 1:
            print_checks(check, "after it")
    print_summary(countings)
    return 0


def print_checks(check: CountingCheck | None, when: str = "") -> None:
    """The machine checks: the busy loop's and the counting kernels' (see CountingCheck)."""
    label = f"machine check {when}:" if when else "machine check:"
    print(f"   {label} 2 busy processes run {available_parallelism():.2f}x faster than 1", flush=True)
    if check is not None:
        print(
            f"   {label} 2 threads counting halves of the rows run {check():.2f}x faster than 1 counting all",
            flush=True,
        )


def print_summary(countings: dict[Kind, list[tuple[float, float]]]) -> None:
    """The counting of every Ray run against the one-process run before it (the pairs
    compare at one moment), their median, and the fastest runs against each other."""
    if Kind(0) not in countings:
        return
    print("== counting (target: 2 workers >= 1.8x, 1 worker within 1.1x of one process)", flush=True)
    best_alone = min(c for c, _ in countings[Kind(0)])
    for kind in sorted((k for k in countings if k.workers), key=lambda k: (*k[:3], k.share or 0.0)):
        ratios = [r for _, r in countings[kind]]
        best = min(c for c, _ in countings[kind])
        print(
            f"   {label_of(kind)}: {', '.join(f'{r:.2f}x' for r in ratios)} against the"
            f" one-process run before each (median {float(np.median(ratios)):.2f}x); fastest one-process counting"
            f" {best_alone:.2f} s against fastest {best:.2f} s: {best_alone / best:.2f}x",
            flush=True,
        )


if __name__ == "__main__":
    sys.exit(main())
