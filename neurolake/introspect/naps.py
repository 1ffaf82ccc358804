"""Neuron activation profiles (NAPs) of groups of frames, computed in one streaming pass.

The NAP of a group in a layer is every unit's mean response over the group's frames; the
contrastive NAP subtracts the mean of the groups' NAPs (optionally weighted by group size), so
that what all groups share cancels and what sets a group apart remains.

Groups are named groups of the lake (``neurolake group create``), or one group per value of a
column of ``frames`` or ``utterances`` (``by="phoneme"``). With ``window=W`` the NAPs are
event-aligned: an event is an occurrence of a value (a run of consecutive frames of one
utterance with that value, say one phoneme), and the profile is the mean response at each
offset ``-W..W`` frames from the event's centre frame, ``[offsets, units]`` per group, as in an
event-related potential.

Each layer is read once over the frames any group needs, and its rows are summed into their
groups (a frame may belong to several) in float64 a few chunks at a time, on the thread that
has just decoded them (:meth:`neurolake.store.Run.visit_rows`), each thread into its own copy
of the sums, or, for more slots than a copy per thread allows (a probe's utterances over a
corpus), into one copy shared by all threads (:func:`layer_sums`). Memory holds the sums and a
few chunks per thread, never the run. Results are derived data ``naps`` of the run and the ``naps`` view.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from neurolake.errors import SpecError
from neurolake.query import _stats_kernels as _kernels
from neurolake.query.engine import QueryEngine
from neurolake.query.fingerprint import commits_fingerprint
from neurolake.query.groups import get_groups
from neurolake.schemas import NAPS, SCHEMAS
from neurolake.store import Lake, Run
from neurolake.store.pools import KeptScratch, SharedPool
from neurolake.store.reader import read_threads, task_chunks
from neurolake.store.run import RELEVANCE_DTYPE
from neurolake.store.tables import decode_parquet, encode_parquet

__all__ = ["NapResult", "Pairs", "gradnaps", "layer_sums", "naps", "separation"]

# Rows of a block of _block_sums: at least this many, more where the sums are larger (see
# _block_rows), up to _BLOCK_BYTES.
BLOCK_ROWS = 65_536
_BLOCK_BYTES = 256 << 20
_THREADS = read_threads()
# Threads for the sums kernel (it releases the interpreter lock); a forked child starts its own.
_POOL = SharedPool(_THREADS, "neurolake-naps")
# The block _block_sums reads rows into, kept for its next pass (see KeptScratch).
_SCRATCH = KeptScratch(_BLOCK_BYTES)
# Float16 rows are widened by the CPU's conversion where it has F16C, else in integer code.
_SLOT_SUMS_F16 = _kernels.slot_sums_f16c if _kernels.F16C else _kernels.slot_sums_f16
_SPLIT_SUMS_F16 = _kernels.split_slot_sums_f16c if _kernels.F16C else _kernels.split_slot_sums_f16
# Sums of at most this many bytes get a copy per reading thread (summed as rows are decoded);
# more slots than that (a probe's utterances) are summed into one shared copy (see _summing).
_PRIVATE_SUMS_BYTES = 64 << 20
# Shared sums when the slots summed apart and added under a lock take at most this share of
# the pairs' rows; otherwise blocks of rows split by slot.
_SHARED_LOCAL_SHARE = 0.25


@dataclass(frozen=True)
class NapResult:
    """NAPs of groups: ``mean[layer]`` and ``contrastive[layer]`` are ``[groups, offsets, units]``
    float64 (one offset, 0, without a window); ``table`` is the same in the ``naps`` view's rows."""

    run_id: str
    nap_id: str
    groups: list[str]
    offsets: list[int]
    counts: np.ndarray  # [groups, offsets] frames averaged
    mean: dict[str, np.ndarray]
    contrastive: dict[str, np.ndarray]
    table: pa.Table
    seconds: float
    reused: bool
    source: str = "activations"  # GradNAPs: relevance read from the "lake" or computed by the "model"


def _column_expr(column: str) -> str:
    frames = {f.name for f in SCHEMAS["frames"]}
    utterances = {f.name for f in SCHEMAS["utterances"]} - {"run_id", "utterance_id"}
    quoted = '"' + column.replace('"', '""') + '"'
    if column in frames:
        return f"f.{quoted}"
    if column in utterances:
        return f"u.{quoted}"
    raise SpecError(
        f"--by {column!r}: not a column of frames or utterances; frames: {', '.join(sorted(frames))}; "
        f"utterances: {', '.join(sorted(utterances))}"
    )


def _natural(value: str) -> tuple:
    """Numbers in numeric order, then text: ``"2" < "10" < "AA"``."""
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)


def _by_members(
    lake: Lake, run_id: str, column: str, max_groups: int, window: int | None
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``(group names, frame ids, slot per id)`` for one group per value of ``column``."""
    expr = _column_expr(column)
    joined = (
        "FROM frames f JOIN utterances u ON f.run_id = u.run_id AND f.frame_id - f.frame_index = u.first_frame_id "
        f"WHERE f.run_id = ? AND {expr} IS NOT NULL"
    )
    with QueryEngine(lake) as engine:
        n_values = engine.sql(f"SELECT count(DISTINCT {expr}) AS n {joined}", [run_id]).column("n")[0].as_py()
        if n_values == 0:
            raise SpecError(f"--by {column!r}: the column has no values in run {run_id!r}")
        if n_values > max_groups:
            raise SpecError(
                f"--by {column!r} gives {n_values:,} groups, more than --max-groups {max_groups}; "
                "choose a coarser column or name groups with --groups"
            )
        rows = engine.sql(
            f"SELECT f.frame_id AS frame_id, CAST({expr} AS VARCHAR) AS value, f.frame_index AS frame_index, "
            f"u.n_frames AS n_frames {joined} ORDER BY f.frame_id",
            [run_id],
        )
    ids = rows.column("frame_id").to_numpy()
    values = np.asarray(rows.column("value").to_pylist(), dtype=object)
    names = sorted(set(values.tolist()), key=_natural)
    position = {name: g for g, name in enumerate(names)}
    group = np.fromiter((position[v] for v in values), dtype=np.int64, count=values.size)
    if window is None:
        return names, ids, group
    # Events: runs of one value on consecutive frames of one utterance; the centre frame of each.
    index = rows.column("frame_index").to_numpy().astype(np.int64)
    n_frames = rows.column("n_frames").to_numpy().astype(np.int64)
    new = np.ones(ids.size, dtype=bool)
    new[1:] = (group[1:] != group[:-1]) | (ids[1:] != ids[:-1] + 1) | (index[1:] == 0)
    starts = np.flatnonzero(new)
    ends = np.append(starts[1:], ids.size) - 1
    centre = (starts + ends) // 2
    first = ids[centre] - index[centre]  # the utterance's first frame id
    out_ids, out_slots = [], []
    width = 2 * window + 1
    for k, offset in enumerate(range(-window, window + 1)):
        at = ids[centre] + offset
        inside = (at >= first) & (at < first + n_frames[centre])
        out_ids.append(at[inside])
        out_slots.append(group[centre][inside] * width + k)
    return names, np.concatenate(out_ids), np.concatenate(out_slots)


def _group_members(lake: Lake, run_id: str, groups: Sequence[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    ids, slots = [], []
    for g, (name, group) in enumerate(zip(groups, get_groups(lake, groups), strict=True)):
        if group.run_id != run_id:
            raise SpecError(f"group {name!r} belongs to run {group.run_id!r}, not {run_id!r}")
        members = group.frame_ids()
        ids.append(members)
        slots.append(np.full(members.size, g, dtype=np.int64))
    return list(groups), np.concatenate(ids), np.concatenate(slots)


def _members(
    lake: Lake, run_id: str, groups: Sequence[str] | None, by: str | None, max_groups: int, window: int | None
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``(group names, frame ids, slot per id)`` of named ``groups`` or of the values of ``by``."""
    if groups is not None:
        if not groups:
            raise SpecError("--groups names no group")
        return _group_members(lake, run_id, groups)
    return _by_members(lake, run_id, str(by), max_groups, window)


def _spec(lake: Lake, run, measure: str, groups, by, layers, window, weighted) -> dict:
    """What a NAP is keyed by (the groups by their stored spec, the run by its commits)."""
    if (groups is None) == (by is None):
        raise SpecError("give the groups to profile: --groups G1,G2,.. or --by COLUMN")
    return {
        "run_id": run.run_id,
        "measure": measure,
        "groups": [[g.name, g.derived.spec_hash] for g in get_groups(lake, groups)] if groups is not None else None,
        "by": by,
        "layers": list(layers),
        "window": window,
        "weighted": weighted,
        "commits": commits_fingerprint(run),
    }


def _result(
    derived, run_id, names, offsets, counts, layers, t0, *, sums=None, weighted=False, measure="", source="activations"
) -> NapResult:
    """The stored NAPs (``sums`` None), or those of ``sums`` stored now."""
    if sums is None:
        table = decode_parquet(derived.read_bytes("naps.parquet"))
        mean, contrastive = _arrays(table, layers, len(names), len(offsets))
    else:
        mean, contrastive = _profiles(sums, counts, weighted)
        table = _table(run_id, derived.spec_hash, names, offsets, counts, mean, contrastive, measure)
        derived.write_bytes(encode_parquet(table, plain_floats=True), "naps.parquet")
        derived.commit()
    return NapResult(
        run_id,
        derived.spec_hash,
        names,
        offsets,
        counts,
        mean,
        contrastive,
        table,
        time.perf_counter() - t0,
        sums is None,
        source,
    )


def _distinct_sorted(ordered: np.ndarray) -> np.ndarray:
    """The different values of sorted ``ordered``: numpy's ``unique`` would hash them again,
    several times slower on integers."""
    first = np.ones(ordered.size, dtype=bool)
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    return ordered[first]


@dataclass(frozen=True)
class Pairs:
    """(frame, slot) pairs ready for :func:`layer_sums`, prepared once for every layer: the
    distinct frame ids in order, and the pairs sorted by frame, those of ``distinct[d]`` being
    ``first[d] .. first[d + 1]``, pair ``p`` adding row ``rows[p]`` of ``distinct`` to slot
    ``slots[p]``."""

    distinct: np.ndarray
    first: np.ndarray
    rows: np.ndarray
    slots: np.ndarray

    @classmethod
    def of(cls, ids: np.ndarray, slots: np.ndarray) -> Pairs:
        """Frame ``ids[i]`` goes to slot ``slots[i]``; a frame may have several slots."""
        order = np.argsort(ids, kind="stable")
        ids = ids[order]
        distinct = _distinct_sorted(ids)
        first = np.append(np.searchsorted(ids, distinct), ids.size)
        rows = np.repeat(np.arange(distinct.size, dtype=np.int64), np.diff(first))
        return cls(distinct, first, rows, np.ascontiguousarray(slots[order], dtype=np.int64))


def layer_sums(
    run: Run,
    layer: str,
    pairs: Pairs,
    n_slots: int,
    progress: Any = None,
    squares: bool = False,
    relevance: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Per slot, the sum of ``layer``'s rows of the ``pairs``' frames, in one pass over the
    distinct frames. ``[n_slots, units]`` float64; with ``squares`` also the sums of squares;
    with ``relevance`` the rows of the layer's stored relevance. ``progress`` (a bar) is told
    the rows read. Three ways, chosen by :func:`_summing`: on the decoding threads, each into
    its own sums (:func:`_streamed_sums`), or into sums shared by all (:func:`_shared_sums`);
    or ``BLOCK_ROWS`` rows at a time, the pairs split among the cores at slot boundaries
    (:func:`_block_sums`)."""
    spec = run.layer(layer)
    units = spec.units
    row_bytes = units * np.dtype(RELEVANCE_DTYPE if relevance else spec.dtype).itemsize  # the rows read
    how, spans = _summing(run, pairs, n_slots, units * 8 * (2 if squares else 1), row_bytes)
    if how == "private":
        return _streamed_sums(run, layer, pairs, n_slots, units, progress, squares, relevance)
    if how == "shared":
        return _shared_sums(run, layer, pairs, n_slots, units, progress, squares, relevance, spans)
    return _block_sums(run, layer, pairs, n_slots, units, row_bytes, progress, squares, relevance)


def _summing(run: Run, pairs: Pairs, n_slots: int, slot_bytes: int, row_bytes: int) -> tuple[str, Any]:
    """How :func:`layer_sums` sums: ``"private"`` where a copy of the sums per thread fits in
    ``_PRIVATE_SUMS_BYTES``; else ``"shared"`` where the slots that :func:`_shared_sums` would
    sum apart and add under its lock (reckoned for the reader's tasks, rows of ``row_bytes``) come
    to at most ``_SHARED_LOCAL_SHARE`` of the pairs, as for slots that follow the frames
    (utterances); else ``"blocks"`` (slots spread over the run, such as event-aligned offsets).
    With the first and last row of every slot, for the shared sums."""
    if n_slots * slot_bytes <= _PRIVATE_SUMS_BYTES:
        return "private", None
    spans = _kernels.slot_row_spans(pairs.rows, pairs.slots, n_slots)
    plan = run.plan
    chunks = task_chunks(plan.chunk_rows * row_bytes, plan.rows_per_shard // plan.chunk_rows)
    local = _kernels.shared_slot_rows(pairs.distinct, pairs.rows, pairs.slots, *spans, chunks * plan.chunk_rows)
    return ("shared" if local <= _SHARED_LOCAL_SHARE * pairs.rows.size else "blocks"), spans


def _block_sums(
    run: Run,
    layer: str,
    pairs: Pairs,
    n_slots: int,
    units: int,
    row_bytes: int,
    progress: Any,
    squares: bool,
    relevance: bool,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """:func:`layer_sums` ``BLOCK_ROWS`` rows at a time: each block read whole, then its pairs
    split at slot boundaries, one share per core, so that no two shares add to one slot."""
    distinct, first, pair_rows, slots = pairs.distinct, pairs.first, pairs.rows, pairs.slots
    sums = np.zeros((n_slots, units))
    sums2 = np.zeros((n_slots, units)) if squares else np.zeros((0, units))
    block_rows = min(_block_rows(sums.nbytes + sums2.nbytes, row_bytes), distinct.size)
    # Every block is read into one buffer, kept for the next pass: fresh pages for each block
    # cost as much as decoding it (20,000 slots spread over 684,493 frames x 768 units: 0.42
    # -> 0.33-0.35 s), and the next layer's pass skips the first block's too (0.77 -> 0.84 of
    # the layer read, best of 12 interleaved rounds).
    scratch = _SCRATCH.take(block_rows * row_bytes)
    buffer = scratch.view(RELEVANCE_DTYPE if relevance else run.layer(layer).dtype).reshape(block_rows, units)
    for start in range(0, distinct.size, block_rows):
        block = distinct[start : start + block_rows]
        x = run.read_rows(layer, block, relevance=relevance, out=buffer[: block.size])
        lo, hi = first[start], first[start + block.size]
        by_slot = np.argsort(slots[lo:hi], kind="stable")
        rows_in_order = np.ascontiguousarray(pair_rows[lo:hi][by_slot])
        slots_in_order = np.ascontiguousarray(slots[lo:hi][by_slot])
        if progress is not None:
            progress.update(block.size)
        values = np.ascontiguousarray(x).view(np.uint16) if x.dtype == np.float16 else np.ascontiguousarray(x)
        kernel = _SLOT_SUMS_F16 if x.dtype == np.float16 else _kernels.slot_sums
        cuts = np.searchsorted(
            slots_in_order, slots_in_order[np.linspace(0, slots_in_order.size, _THREADS + 1)[1:-1].astype(int)]
        )
        edges = np.unique(np.concatenate([[0], cuts, [slots_in_order.size]]))
        futures = [
            _POOL.get().submit(kernel, values, rows_in_order[a:b], start, slots_in_order[a:b], sums, sums2)
            for a, b in zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True)
            if b > a
        ]
        for future in futures:
            future.result()
    _SCRATCH.give(scratch)
    return (sums, sums2) if squares else sums


def _block_rows(sums_bytes: int, row_bytes: int) -> int:
    """Rows of a block of :func:`_block_sums`: each block's pass over the sums reads and writes
    every slot that it adds to (all of them, for slots spread over the run), so a block holds
    at least twice the sums' bytes of rows, ``BLOCK_ROWS`` at the least and ``_BLOCK_BYTES``
    at the most. 20,000 slots (123 MB of sums) over 684,493 frames x 768 float16 units, five
    interleaved rounds: blocks of 65,536 rows 0.78-0.81 of the layer read, of 160,000 rows
    (twice the sums) 0.81-0.84."""
    return max(BLOCK_ROWS, min(2 * sums_bytes, _BLOCK_BYTES) // row_bytes)


def _streamed_sums(
    run: Run,
    layer: str,
    pairs: Pairs,
    n_slots: int,
    units: int,
    progress: Any,
    squares: bool,
    relevance: bool,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """:func:`layer_sums` with the rows summed on the reading threads as they are decoded, each
    thread into its own sums (added up at the end): the rows never leave the cache of the core
    that decoded them, no block of rows is made, and the layer is one read whose threads never
    wait for each other. The bar is told from those threads."""
    first, pair_rows, slots = pairs.first, pairs.rows, pairs.slots
    own: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    lock = threading.Lock()

    def visit(rows: np.ndarray, d: int) -> None:
        mine = own.get(threading.get_ident())
        if mine is None:
            with lock:
                mine = own[threading.get_ident()] = (
                    np.zeros((n_slots, units)),
                    np.zeros((n_slots if squares else 0, units)),
                )
        lo, hi = first[d], first[d + rows.shape[0]]
        if rows.dtype == np.float16:
            _SLOT_SUMS_F16(rows.view(np.uint16), pair_rows[lo:hi], d, slots[lo:hi], *mine)
        else:
            _kernels.slot_sums(rows, pair_rows[lo:hi], d, slots[lo:hi], *mine)
        if progress is not None:
            with lock:
                progress.update(rows.shape[0])

    run.visit_rows(layer, pairs.distinct, visit, relevance=relevance)
    sums = np.zeros((n_slots, units))
    sums2 = np.zeros((n_slots if squares else 0, units))
    for a, b in own.values():
        sums += a
        sums2 += b
    return (sums, sums2) if squares else sums


def _shared_sums(
    run: Run,
    layer: str,
    pairs: Pairs,
    n_slots: int,
    units: int,
    progress: Any,
    squares: bool,
    relevance: bool,
    spans: tuple[np.ndarray, np.ndarray],
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """:func:`layer_sums` for more slots than fit a copy per thread (a probe's utterances over a
    corpus): one ``sums`` for every thread, still summed on the decoding threads. A slot whose
    frames all lie in the rows of one ``visit`` (an utterance inside a few chunks) belongs to
    that call alone, which adds to it directly; the others (a speaker's frames, spread over the
    run, or an utterance cut by a task boundary) are summed into a few rows of the thread's
    own and added to ``sums`` under a lock as the call ends: a handful of rows for slots that
    follow the frames. On 684,493 frames x 768 units in 21,391 slots of 32 frames (125 MB of
    sums), the pass took 0.66-0.92 of the time of :func:`_block_sums` (eight interleaved
    rounds, dense and half-zero values): 1.22 / 0.72 of the layer read against 0.87 / 0.57
    in ``benchmarks/read_path.py``."""
    first, pair_rows, slots = pairs.first, pairs.rows, pairs.slots
    row_first, row_last = spans
    sums = np.zeros((n_slots, units))
    sums2 = np.zeros((n_slots if squares else 0, units))
    own = threading.local()  # per thread: its local rows and the map of slots to them
    lock = threading.Lock()

    def visit(rows: np.ndarray, d: int) -> None:
        lo, hi = first[d], first[d + rows.shape[0]]
        need = max(1, min(n_slots, hi - lo))  # the most slots this call can leave to local rows
        if not hasattr(own, "local_of"):
            own.local_of = np.full(n_slots, -1, dtype=np.int64)
        if getattr(own, "size", 0) < need:  # np.empty: the pages of rows never used are never touched
            own.size = need
            own.local, own.local2 = np.empty((need, units)), np.empty((need if squares else 0, units))
            own.local_slots = np.empty(need, np.int64)
        local, local2, local_of, local_slots = own.local, own.local2, own.local_of, own.local_slots
        args = (
            pair_rows[lo:hi],
            d,
            slots[lo:hi],
            row_first,
            row_last,
            sums,
            sums2,
            local,
            local2,
            local_of,
            local_slots,
        )
        if rows.dtype == np.float16:
            k = _SPLIT_SUMS_F16(rows.view(np.uint16), *args)
        else:
            k = _kernels.split_slot_sums(rows, *args)
        with lock:
            if k:
                _kernels.add_slot_rows(sums, sums2, local, local2, local_slots, k)
            if progress is not None:
                progress.update(rows.shape[0])

    run.visit_rows(layer, pairs.distinct, visit, relevance=relevance)
    return (sums, sums2) if squares else sums


def separation(lake: Lake, run_id: str, column: str, layers: Sequence[str], max_groups: int = 200) -> dict[str, float]:
    """Per layer, how much of the activations' variance the values of ``column`` explain: the
    between-group sum of squares over the total, summed over units (eta squared), over the frames
    where ``column`` is not null. One streaming pass per layer."""
    run = lake.run(run_id)
    names, ids, slots = _by_members(lake, run_id, column, max_groups, None)
    counts = np.bincount(slots, minlength=len(names)).astype(np.float64)
    n = counts.sum()
    out = {}
    pairs = Pairs.of(ids, slots)
    for layer in layers:
        sums, squares = layer_sums(run, layer, pairs, len(names), squares=True)
        grand = sums.sum(axis=0) / n
        total = squares.sum(axis=0) - n * grand**2
        between = (sums**2 / counts[:, None]).sum(axis=0) - n * grand**2
        out[layer] = float(between.sum() / total.sum())
    return out


def naps(
    lake: Lake,
    run_id: str,
    *,
    groups: Sequence[str] | None = None,
    by: str | None = None,
    layers: Sequence[str] | None = None,
    window: int | None = None,
    weighted: bool = False,
    max_groups: int = 200,
    progress: bool | None = None,
) -> NapResult:
    """NAPs of ``groups`` (named groups) or of one group per value of column ``by``.

    Args:
        layers: layers to profile (default: all the run captured).
        window: with ``by``, event-aligned NAPs at offsets ``-window..window`` from each
            occurrence's centre frame.
        weighted: the contrastive NAP subtracts the groups' mean weighted by their frames.
        max_groups: most values ``by`` may have (a column with more is refused).
    """
    from neurolake.cluster.progress import progress_bar

    t0 = time.perf_counter()
    if window is not None and (by is None or window < 0):
        raise SpecError("--window W (>= 0) aligns events of a --by column")
    run = lake.run(run_id)
    layers = list(layers) if layers else run.layer_names
    for layer in layers:
        run.layer(layer)
    derived = run.derived("naps", _spec(lake, run, "activation", groups, by, layers, window, weighted))
    names, ids, slots = _members(lake, run_id, groups, by, max_groups, window)
    offsets = list(range(-window, window + 1)) if window is not None else [0]
    n_slots = len(names) * len(offsets)
    counts = np.bincount(slots, minlength=n_slots).reshape(len(names), len(offsets))
    empty = [names[g] for g in range(len(names)) if counts[g].sum() == 0]
    if empty:
        raise SpecError(f"group {empty[0]!r} has no frames in run {run_id!r}; a NAP of no frames is undefined")
    if derived.complete:
        return _result(derived, run_id, names, offsets, counts, layers, t0)
    pairs = Pairs.of(ids, slots)
    with progress_bar(pairs.distinct.size * len(layers), "naps", unit="frame", enabled=progress) as bar:
        sums = {layer: layer_sums(run, layer, pairs, n_slots, bar) for layer in layers}
    return _result(
        derived, run_id, names, offsets, counts, layers, t0, sums=sums, weighted=weighted, measure="activation"
    )


def _profiles(sums: dict[str, np.ndarray], counts: np.ndarray, weighted: bool) -> tuple[dict, dict]:
    """Means ``[groups, offsets, units]`` from per-slot sums, and the contrastive profiles."""
    mean, contrastive = {}, {}
    for layer, total in sums.items():
        with np.errstate(invalid="ignore", divide="ignore"):
            m = total.reshape(counts.shape[0], counts.shape[1], -1) / counts[:, :, None]
        if weighted:
            centre = np.nansum(m * counts[:, :, None], axis=0) / counts.sum(axis=0)[:, None]
        else:
            centre = np.nanmean(m, axis=0)
        mean[layer], contrastive[layer] = m, m - centre[None]
    return mean, contrastive


def gradnaps(
    lake: Lake,
    run_id: str,
    *,
    groups: Sequence[str] | None = None,
    by: str | None = None,
    layers: Sequence[str],
    weighted: bool = False,
    max_groups: int = 200,
    from_model: bool = False,
    token: str = "predicted",
    progress: bool | None = None,
) -> NapResult:
    """Gradient-adjusted NAPs: NAPs over relevance instead of activation.

    Each frame's relevance is gradient x activation of the log-probability of the token the
    model predicts there (:meth:`~neurolake.models.adapter.ModelAdapter.relevance`), and a
    group's GradNAP is the mean relevance per unit over its frames. A run ingested with
    ``--relevance`` stores it for its output-grid layers: then it is read in one streaming pass,
    like a NAP (``source`` "lake"). Otherwise the groups' utterances are decoded
    again by the run's model (its weights checked), one backward pass per frame (``source``
    "model"; so with ``from_model`` even where the run stores it): meant for groups of up to some
    thousands of utterances on a CPU.

    ``token="reference"`` takes the gradient of the reference token's log-probability instead
    (the forced alignment's token of each frame, ``frames.ref_token``): where the model errs,
    what would have made it right rather than what it did. Always computed by the model.
    """
    from neurolake.cluster.progress import progress_bar

    t0 = time.perf_counter()
    run = lake.run(run_id)
    layers = list(layers)
    if not layers:
        raise SpecError("name the layers whose relevance to profile")
    for layer in layers:
        run.layer(layer)
    if token not in ("predicted", "reference"):
        raise SpecError(f"--token must be predicted or reference, got {token!r}")
    if token == "predicted" and not from_model and all(run.has_relevance(layer) for layer in layers):
        spec = _spec(lake, run, "relevance", groups, by, layers, None, weighted)
        weights = run.manifest["model"].get("weights_sha256")
        derived = run.derived("naps", {**spec, "weights_sha256": weights, "source": "stored"})
        names, ids, slots = _members(lake, run_id, groups, by, max_groups, None)
        counts = np.bincount(slots, minlength=len(names)).reshape(len(names), 1)
        if derived.complete:
            return _result(derived, run_id, names, [0], counts, layers, t0, source="lake")
        pairs = Pairs.of(ids, slots)
        with progress_bar(pairs.distinct.size * len(layers), "gradnaps", unit="frame", enabled=progress) as bar:
            sums = {layer: layer_sums(run, layer, pairs, len(names), bar, relevance=True) for layer in layers}
        return _result(
            derived,
            run_id,
            names,
            [0],
            counts,
            layers,
            t0,
            sums=sums,
            weighted=weighted,
            measure="relevance",
            source="lake",
        )
    return _gradnaps_by_model(lake, run, groups, by, layers, weighted, max_groups, progress, t0, token)


def _reference_targets(lake: Lake, run_id: str, utterance_ids: Sequence[str], tokens: Sequence[str]) -> dict:
    """``utterance_id -> [frames]`` token ids of each frame's reference token (``ref_token``)."""
    index = {t: i for i, t in enumerate(tokens)}
    with QueryEngine(lake) as q:
        rows = q.sql(
            "SELECT utterance_id, frame_index, ref_token FROM frames WHERE run_id = ? AND utterance_id IN "
            "(SELECT unnest(?)) ORDER BY utterance_id, frame_index",
            [run_id, list(utterance_ids)],
        ).to_pylist()
    out: dict[str, list[int]] = {}
    for r in rows:
        if r["ref_token"] not in index:
            raise SpecError(f"frame {r['frame_index']} of {r['utterance_id']!r} has no reference token the model knows")
        out.setdefault(r["utterance_id"], []).append(index[r["ref_token"]])
    return out


def _gradnaps_by_model(lake, run, groups, by, layers, weighted, max_groups, progress, t0, token) -> NapResult:
    """GradNAPs with the relevance computed now, by the run's model (:func:`gradnaps`)."""
    import torch

    from neurolake.cluster.progress import progress_bar
    from neurolake.corpora.audio import load_audio
    from neurolake.introspect.ablation import run_model

    run_id = run.run_id
    adapter = run_model(run)
    spec = _spec(lake, run, "relevance", groups, by, layers, None, weighted)
    spec = {**spec, "weights_sha256": adapter.spec.get("weights_sha256")}
    derived = run.derived("naps", spec if token == "predicted" else {**spec, "token": token})
    names, ids, slots = _members(lake, run_id, groups, by, max_groups, None)
    counts = np.bincount(slots, minlength=len(names)).reshape(len(names), 1)
    if derived.complete:
        return _result(derived, run_id, names, [0], counts, layers, t0, source="model")
    utterances = run.read_table("utterances").select(["utterance_id", "audio_uri", "first_frame_id", "n_frames"])
    first = utterances.column("first_frame_id").to_numpy().astype(np.int64)
    order = np.argsort(first)
    owner = order[np.searchsorted(first[order], ids, side="right") - 1]
    sums = {layer: np.zeros((len(names), run.layer(layer).units)) for layer in layers}
    rows = utterances.to_pylist()
    touched = np.unique(owner)
    targets = (
        _reference_targets(lake, run_id, [rows[u]["utterance_id"] for u in touched.tolist()], adapter.tokens)
        if token == "reference"
        else {}
    )
    with progress_bar(touched.size, "gradnaps", unit="utt", enabled=progress) as bar:
        for u in touched.tolist():
            mine = owner == u
            frame_index, slot = ids[mine] - first[u], slots[mine]
            wave = torch.from_numpy(load_audio(rows[u]["audio_uri"], adapter.sample_rate))
            _, found = adapter.relevances(wave, layers, targets.get(rows[u]["utterance_id"]))
            for layer in layers:
                np.add.at(sums[layer], slot, found[layer].numpy()[frame_index])
            bar.update(1)
    return _result(
        derived,
        run_id,
        names,
        [0],
        counts,
        layers,
        t0,
        sums=sums,
        weighted=weighted,
        measure="relevance",
        source="model",
    )


def _table(run_id, nap_id, names, offsets, counts, mean, contrastive, measure) -> pa.Table:
    parts = []
    for layer, m in mean.items():
        g, o, u = np.meshgrid(np.arange(len(names)), np.arange(len(offsets)), np.arange(m.shape[2]), indexing="ij")
        n = m.size
        parts.append(
            pa.table(
                {
                    "run_id": pa.array([run_id] * n, pa.string()),
                    "nap_id": pa.array([nap_id] * n, pa.string()),
                    "measure": pa.array([measure] * n, pa.string()),
                    "layer": pa.array([layer] * n, pa.string()),
                    "group": pa.array(np.asarray(names, dtype=object)[g.ravel()], pa.string()),
                    "offset": pa.array(np.asarray(offsets)[o.ravel()], pa.int64()),
                    "unit": pa.array(u.ravel(), pa.int64()),
                    "mean": pa.array(m.ravel(), pa.float64()),
                    "contrastive": pa.array(contrastive[layer].ravel(), pa.float64()),
                    "n_frames": pa.array(counts[g.ravel(), o.ravel()], pa.int64()),
                },
                schema=NAPS,
            )
        )
    return pa.concat_tables(parts) if parts else NAPS.empty_table()


def _arrays(table: pa.Table, layers, n_groups: int, n_offsets: int) -> tuple[dict, dict]:
    mean, contrastive = {}, {}
    names = np.asarray(table.column("layer").to_pylist())
    for layer in layers:
        rows = table.filter(pa.array(names == layer))
        shape = (n_groups, n_offsets, -1)
        mean[layer] = rows.column("mean").to_numpy().reshape(shape)
        contrastive[layer] = rows.column("contrastive").to_numpy().reshape(shape)
    return mean, contrastive
