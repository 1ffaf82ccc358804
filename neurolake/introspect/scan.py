"""Scan: find, without being told where to look, the slices of frames where a model errs, and the
neuron patterns that single each slice out.

A scan reads a run's own labels (the segment labels of :func:`neurolake.labels.frames.label_utterance`)
and proposes candidate slices, each an SQL predicate over ``frames`` joined with ``utterances``
(the language of ``neurolake group create``) with a matched background, the same sound or
token recognised correctly and confidently, so that a pattern explains the error and not the
sound:

- ``confusion``: the frames where the model emits token Y on reference token X
  (``ref_segment = X AND confusion = Y AND pred_token = Y``) against frames emitting X on X,
  correct and confident. Only the emitting frames: the cause of a wrong token sits in the frames
  that emit it, not in the blanks around it.
- ``deletion``: the frames of reference tokens X the hypothesis leaves out, against the frames
  of X's that it keeps (correct and confident).
- ``insertion``: the frames emitting a token Y the hypothesis adds, against frames emitting Y
  where it belongs.
- ``phoneme``: a phoneme's error frames against its correct, confident frames.
- ``low_confidence``: speech frames whose greedy token has probability below ``low`` against
  correct, confident speech frames.
- ``utterance``: for each value of an utterance column (``speaker_id`` by default, any column
  named) and each quarter of the duration range whose frame error rate stands out (one-sided
  Fisher test, Bonferroni over the values, p < 0.01), that value's error frames against correct,
  confident frames of the other values.

Each slice is mined (LCM closed patterns of its frames, or DiffNorm over all slices at once:
what each slice has of its own), every pattern is tested against its slice's background
(one-sided Fisher), and the p-values are corrected with Holm over every test of the whole scan.
Within a slice a significant pattern gives way to a significant superset that keeps 90 % of its
excess frames (the fuller pattern of the same effect). Findings are ranked by their excess
frames ``a - c * n_t / n_b`` (target frames with the pattern beyond the background's rate): how
much error a pattern accounts for and how specific it is to the error, in one number.
``error_share`` divides it by the run's segment-error frames.

The frames of every slice and background are found in one pass of the ``frames`` table per 63
predicates. Those frames (each side at most ``max_frames``, a seeded sample beyond that) are
read once per layer and binarised into packed bits on the threads that decode them: a chunk
of the run is decoded once however many slices share it, and memory holds bits, never the
run. Mining runs per slice in this process or as Ray tasks (``workers`` > 1) that receive the
slice's bits. Results are derived data ``scans`` of the run, shown by the ``findings`` and
``slices`` views.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from neurolake.errors import SpecError
from neurolake.labels.frames import DELETED, INSERTED
from neurolake.mining.binarize import as_spec
from neurolake.mining.mine import items_for, lcm_patterns, packed_binarised, packed_supports
from neurolake.mining.significance import fisher_greater, holm, relative_risk
from neurolake.query.engine import QueryEngine
from neurolake.query.fingerprint import commits_fingerprint
from neurolake.query.groups import group_frame_ids_many
from neurolake.schemas import FINDINGS, SCHEMAS, SLICES
from neurolake.store import Lake
from neurolake.store.tables import decode_parquet, encode_parquet

log = logging.getLogger(__name__)

__all__ = ["KINDS", "Slice", "ScanResult", "candidate_slices", "get_finding", "scan"]

KINDS = ("confusion", "deletion", "insertion", "phoneme", "low_confidence", "utterance")
ALGORITHMS = ("lcm", "diffnorm")
ABSORB = 0.9  # a superset keeping this share of a pattern's excess frames replaces it


@dataclass(frozen=True)
class Slice:
    """A candidate slice: ``target`` and ``background`` are SQL predicates for ``group create``."""

    kind: str
    name: str
    target: str
    background: str
    n_frames: int  # target frames, from the candidate query


@dataclass(frozen=True)
class ScanResult:
    run_id: str
    scan_id: str
    findings: pa.Table
    slices: pa.Table
    n_tests: int
    n_error_frames: int
    seconds: float
    reused: bool
    #: Why no slice was mined, when none was (what the run lacks and which option to change).
    no_slices: str = ""

    def _repr_html_(self) -> str:
        from neurolake.notebook import card, html_table

        facts = [
            ("run", self.run_id),
            ("error frames", f"{self.n_error_frames:,}"),
            ("slices", f"{self.slices.num_rows:,}"),
            ("tests (Holm over all)", f"{self.n_tests:,}"),
            ("findings", f"{self.findings.num_rows:,}"),
        ]
        if self.no_slices:
            facts.append(("why no slice", self.no_slices))
        columns = ["finding_id", "kind", "slice", "items", "support_target", "n_target", "excess_frames", "p_value"]
        return card(f"scan {self.scan_id}", facts, html_table(self.findings, columns=columns))


def _lit(value: object) -> str:
    """An SQL literal of a string or number."""
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpecError(f"cannot slice on the value {value!r}")
    return repr(value)


DEL, INS = _lit(DELETED), _lit(INSERTED)  # the confusion markers as SQL literals


def _show(token: str | None) -> str:
    return {" ": "<space>", "|": "<space>"}.get(token or "", token or "")


def _ident(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'


def candidate_slices(
    engine: QueryEngine,
    run_id: str,
    *,
    min_frames: int = 10,
    confident: float = 0.8,
    low: float = 0.5,
    columns: Sequence[str] = ("speaker_id",),
    kinds: Sequence[str] = KINDS,
) -> list[Slice]:
    """The candidate slices of a run, largest first (see the module's docstring)."""
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise SpecError(f"unknown slice kind {unknown[0]!r}; use some of {', '.join(KINDS)}")
    good = f"NOT segment_error AND pred_prob >= {confident!r}"
    out: list[Slice] = []

    def grouped(kind: str, query: str, make) -> None:
        """One slice per row of ``query`` (``?`` = run id, least frames) that ``make`` describes
        as ``(name, target, background)``."""
        if kind in kinds:
            for r in engine.sql(query, [run_id, min_frames]).to_pylist():
                out.append(Slice(kind, *make(r), int(r["n"])))

    having = "GROUP BY ALL HAVING count(*) >= ? ORDER BY n DESC"
    grouped(
        "confusion",
        "SELECT ref_segment AS ref, confusion AS got, count(*) AS n FROM frames WHERE run_id = ? AND segment_error "
        f"AND ref_segment IS NOT NULL AND confusion NOT IN ({DEL}, {INS}) AND pred_token = confusion {having}, ref, got",
        lambda r: (
            f"{_show(r['ref'])} -> {_show(r['got'])}",
            f"ref_segment = {_lit(r['ref'])} AND confusion = {_lit(r['got'])} AND pred_token = {_lit(r['got'])}",
            f"ref_segment = {_lit(r['ref'])} AND pred_token = {_lit(r['ref'])} AND {good}",
        ),
    )
    grouped(
        "deletion",
        f"SELECT ref_segment AS ref, count(*) AS n FROM frames WHERE run_id = ? AND confusion = {DEL} {having}, ref",
        lambda r: (
            f"{_show(r['ref'])} deleted",
            f"ref_segment = {_lit(r['ref'])} AND confusion = {DEL}",
            f"ref_segment = {_lit(r['ref'])} AND {good}",
        ),
    )
    grouped(
        "insertion",
        f"SELECT pred_segment AS got, count(*) AS n FROM frames WHERE run_id = ? AND confusion = {INS} "
        f"AND pred_token = pred_segment {having}, got",
        lambda r: (
            f"{_show(r['got'])} inserted",
            f"confusion = {INS} AND pred_segment = {_lit(r['got'])} AND pred_token = {_lit(r['got'])}",
            f"pred_token = {_lit(r['got'])} AND {good}",
        ),
    )
    grouped(
        "phoneme",
        "SELECT phoneme, count(*) AS n FROM frames WHERE run_id = ? AND segment_error AND phoneme IS NOT NULL "
        f"{having}, phoneme",
        lambda r: (
            f"/{r['phoneme']}/ errors",
            f"phoneme = {_lit(r['phoneme'])} AND segment_error",
            f"phoneme = {_lit(r['phoneme'])} AND {good}",
        ),
    )
    if "low_confidence" in kinds:
        n = engine.sql(
            f"SELECT count(*) AS n FROM frames WHERE run_id = ? AND ref_segment IS NOT NULL AND pred_prob < {low!r}",
            [run_id],
        ).to_pylist()[0]["n"]
        if n >= min_frames:
            out.append(
                Slice(
                    "low_confidence",
                    f"confidence < {low:g}",
                    f"ref_segment IS NOT NULL AND pred_prob < {low!r}",
                    f"ref_segment IS NOT NULL AND {good}",
                    int(n),
                )
            )
    if "utterance" in kinds:
        out += _utterance_slices(engine, run_id, columns, min_frames, good)
    out.sort(key=lambda s: -s.n_frames)
    return out


def _utterance_slices(
    engine: QueryEngine, run_id: str, columns: Sequence[str], min_frames: int, good: str
) -> list[Slice]:
    known = [f.name for f in SCHEMAS["utterances"] if f.name not in ("run_id", "utterance_id")]
    joined = (
        "FROM frames f JOIN utterances u ON f.run_id = u.run_id AND f.frame_id - f.frame_index = u.first_frame_id "
        "WHERE f.run_id = ?"
    )
    cases: list[tuple[str, str, list[dict]]] = []
    for column in columns:
        if column not in known:
            raise SpecError(f"utterance column {column!r} unknown; the utterances table has {', '.join(known)}")
        col = _ident(column)
        table = engine.sql(
            f"SELECT u.{col} AS value, sum(f.segment_error::INT) AS errors, count(*) AS n {joined} "
            f"AND u.{col} IS NOT NULL GROUP BY 1 ORDER BY 1",
            [run_id],
        ).to_pylist()
        cases.append((column, col, [dict(r, predicate=f"{col} = {_lit(r['value'])}") for r in table]))
    edges = engine.sql(
        "SELECT quantile_cont(duration_s, [0.25, 0.5, 0.75]) AS q FROM utterances WHERE run_id = ?", [run_id]
    ).to_pylist()[0]["q"]
    if edges:
        bounds = [-math.inf, *edges, math.inf]
        bins = []
        for lo, hi in zip(bounds, bounds[1:], strict=False):
            if lo == hi:
                continue
            where = " AND ".join(
                ([f"duration_s >= {lo!r}"] if lo != -math.inf else [])
                + ([f"duration_s < {hi!r}"] if hi != math.inf else [])
            )
            row = engine.sql(
                f"SELECT sum(f.segment_error::INT) AS errors, count(*) AS n {joined} AND {where}", [run_id]
            ).to_pylist()[0]
            if row["n"]:
                label = f"duration {'' if lo == -math.inf else f'{lo:.1f}'}..{'' if hi == math.inf else f'{hi:.1f}'} s"
                bins.append(dict(row, value=label, predicate=where))
        cases.append(("duration", "", bins))
    out = []
    for column, _, values in cases:
        total_errors = sum(int(v["errors"] or 0) for v in values)
        total = sum(int(v["n"]) for v in values)
        for v in values:
            errors, n = int(v["errors"] or 0), int(v["n"])
            if errors < min_frames or n == total:
                continue
            p = fisher_greater(errors, n, total_errors - errors, total - n) * len(values)
            if p >= 0.01:
                continue
            name = v["value"] if column == "duration" else f"{column} = {v['value']}"
            out.append(
                Slice(
                    "utterance",
                    str(name),
                    f"{v['predicate']} AND segment_error",
                    f"NOT ({v['predicate']}) AND ref_segment IS NOT NULL AND {good}",
                    errors,
                )
            )
    return out


def _sample(ids: np.ndarray, limit: int, seed: int) -> np.ndarray:
    if ids.size <= limit:
        return ids
    return np.sort(np.random.default_rng(seed).choice(ids, size=limit, replace=False))


def _union_bits(
    run: Any,
    ids: np.ndarray,
    layers: Sequence[str],
    spec: Mapping[str, Any],
    stats: pa.Table | None,
    progress: bool | None,
) -> np.ndarray:
    """Packed bits ``[len(ids), ceil(items / 8)]`` of the frames ``ids`` (ascending): every
    slice's and background's frames binarised in one pass per layer
    (:func:`neurolake.mining.mine.packed_binarised`), so each chunk of the run is decoded
    once however many slices share it."""
    from neurolake.cluster.progress import progress_bar

    with progress_bar(ids.size * len(layers), "scan: gather", unit="row", enabled=progress) as bar:
        return packed_binarised(run, ids, layers, spec, stats, bar)


def _mine_slice(job: Mapping[str, Any]) -> dict[str, Any]:
    """One slice's LCM patterns and their supports (runs in this process or as a Ray task)."""
    from neurolake.mining.diffnorm import BitMatrix

    T = BitMatrix.from_packbits(job["target"], job["n_items"])
    itemsets = [tuple(s) for s in lcm_patterns(T, job["min_support"], job["max_size"]) if len(s) > 0]
    return {
        "itemsets": itemsets,
        "a": packed_supports(job["target"], itemsets),
        "c": packed_supports(job["background"], itemsets),
    }


def _diffnorm_slices(
    jobs: Sequence[Mapping[str, Any]], pooled: np.ndarray, min_support: float, workers: int
) -> list[dict[str, Any]]:
    """DiffNorm over every slice at once (the slices and their pooled backgrounds): each slice's
    own patterns, with supports in the slice and in its own background."""
    from neurolake.mining.diffnorm import BitMatrix, DiffNorm

    n_items = jobs[0]["n_items"]
    targets = [BitMatrix.from_packbits(job["target"], n_items) for job in jobs]
    model = DiffNorm(min_support=min_support, workers=workers).fit([*targets, BitMatrix.from_packbits(pooled, n_items)])
    out = []
    for i, job in enumerate(jobs):
        itemsets = [tuple(s) for s in model.patterns_for((i,)) if len(s) > 0]
        a, c = packed_supports(job["target"], itemsets), packed_supports(job["background"], itemsets)
        out.append({"itemsets": itemsets, "a": a, "c": c})
    return out


def _absorb(itemsets: Sequence[tuple[int, ...]], excess: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """``keep`` less the patterns a kept strict superset replaces (one keeping ``ABSORB`` of their excess)."""
    keep = keep.copy()
    sets = [frozenset(s) for s in itemsets]
    candidates = np.flatnonzero(keep)
    for i in candidates:
        for j in candidates:
            if i != j and sets[i] < sets[j] and excess[j] >= ABSORB * excess[i]:
                keep[i] = False
                break
    return keep


def scan(
    lake: Lake,
    run_id: str,
    *,
    layers: Sequence[str] | None = None,
    algo: str = "lcm",
    binarization: Mapping[str, Any] | str = "quantile:0.9",
    min_support: float = 0.2,
    max_size: int | None = 4,
    min_frames: int = 10,
    max_slices: int = 40,
    max_frames: int = 20_000,
    confident: float = 0.8,
    low: float = 0.5,
    columns: Sequence[str] = ("speaker_id",),
    kinds: Sequence[str] = KINDS,
    alpha: float = 0.05,
    workers: int | None = None,
    seed: int = 0,
    progress: bool | None = None,
) -> ScanResult:
    """Scan run ``run_id`` for error slices and the patterns that single them out (module docstring).

    Args:
        layers: layers whose units are the items (default: all the run captured).
        algo: ``lcm`` (closed patterns per slice) or ``diffnorm`` (all slices at once).
        min_support: fraction of a slice's frames a pattern must be active in (LCM; DiffNorm's
            candidate support).
        min_frames: least frames in a slice and in its background.
        max_slices: the largest this many candidate slices are mined.
        max_frames: a slice or background larger than this is sampled down to it (``seed``).
        confident: least greedy-token probability of a background frame.
        low: greedy-token probability below which a speech frame is a low-confidence frame.
        columns: utterance columns whose values may form slices.
        alpha: significance level of the Holm-corrected p-values; findings are the patterns at
            or below it.
        workers: Ray workers mining slices in parallel (``None``/1: this process).
    """
    from neurolake.cluster.progress import progress_bar
    from neurolake.query.neurons import neuron_statistics

    t0 = time.perf_counter()
    if algo not in ALGORITHMS:
        raise SpecError(f"unknown mining algorithm {algo!r}; use one of {', '.join(ALGORITHMS)}")
    if not 0 < float(min_support) <= 1:
        raise SpecError(f"min_support is a fraction of a slice's frames in (0, 1], got {min_support}")
    if min_frames < 1 or max_slices < 1 or max_frames < min_frames:
        raise SpecError("min_frames and max_slices must be >= 1 and max_frames >= min_frames")
    if not (0 <= float(confident) <= 1 and 0 <= float(low) <= 1):
        raise SpecError(f"confident and low are probabilities in [0, 1], got {confident} and {low}")
    spec = as_spec(binarization)
    run = lake.run(run_id)
    layers = list(layers) if layers else run.layer_names
    for layer in layers:
        run.layer(layer)
    params = {
        "run_id": run_id,
        "layers": layers,
        "algo": algo,
        "binarization": dict(spec),
        "min_support": float(min_support),
        "max_size": max_size,
        "min_frames": int(min_frames),
        "max_slices": int(max_slices),
        "max_frames": int(max_frames),
        "confident": float(confident),
        "low": float(low),
        "columns": list(columns),
        "kinds": list(kinds),
        "alpha": float(alpha),
        "seed": int(seed),
        "commits": commits_fingerprint(run),
    }
    derived = run.derived("scans", params)
    if derived.complete:
        info = derived.read_json("scan.json")
        return ScanResult(
            run_id,
            derived.spec_hash,
            decode_parquet(derived.read_bytes("findings.parquet")),
            decode_parquet(derived.read_bytes("slices.parquet")),
            int(info["n_tests"]),
            int(info["n_error_frames"]),
            time.perf_counter() - t0,
            True,
            str(info.get("no_slices", "")),
        )

    with QueryEngine(lake) as engine:
        labelled = engine.sql(
            "SELECT count(segment_error) AS labelled, count(*) FILTER (WHERE segment_error) AS errors, "
            "count(*) FILTER (WHERE NOT segment_error AND pred_prob >= ?) AS good, max(pred_prob) AS top "
            "FROM frames WHERE run_id = ?",
            [float(confident), run_id],
        ).to_pylist()[0]
        if not labelled["labelled"]:
            if run.manifest.get("model", {}).get("transcribes"):
                raise SpecError(
                    f"run {run_id!r} has no per-frame error labels: its model transcribes with a decoder (Whisper), "
                    "so no frame emits a token; scan needs a CTC model (naps, probe, topomap and mine over groups "
                    "of words or phonemes work on this run)"
                )
            raise SpecError(
                f"run {run_id!r} has no segment labels (it was ingested before them); ingest it again to scan it"
            )
        n_errors = int(labelled["errors"])
        candidates = candidate_slices(
            engine, run_id, min_frames=min_frames, confident=confident, low=low, columns=columns, kinds=kinds
        )
        slices: list[tuple[Slice, np.ndarray, np.ndarray, int, int]] = []
        small = {"target": 0, "background": 0}
        pending = iter(candidates)
        # The first max_slices candidates with enough frames on both sides, their frames
        # found for as many candidates as are still wanted at a time, in one pass of the run.
        while batch := list(itertools.islice(pending, max_slices - len(slices))):
            found = group_frame_ids_many(engine, run_id, [p for s in batch for p in (s.target, s.background)])
            for s, target, background in zip(batch, found[::2], found[1::2], strict=True):
                if target.size < min_frames or background.size < min_frames:
                    small["target" if target.size < min_frames else "background"] += 1
                    continue
                k = len(slices)
                slices.append(
                    (
                        s,
                        _sample(target, max_frames, seed + 2 * k),
                        _sample(background, max_frames, seed + 2 * k + 1),
                        int(target.size),
                        int(background.size),
                    )
                )
    stats = neuron_statistics(lake, run_id, layers) if spec["method"] in ("quantile", "zscore") else None
    union = np.unique(np.concatenate([ids for _, t, b, _, _ in slices for ids in (t, b)])) if slices else np.zeros(0)
    bits = _union_bits(run, union.astype(np.int64), layers, spec, stats, progress)
    items = items_for(run, layers)
    n_items = len(items)
    jobs = [
        {
            "target": bits[np.searchsorted(union, t)],
            "background": bits[np.searchsorted(union, b)],
            "n_items": n_items,
            "min_support": float(min_support),
            "max_size": max_size,
        }
        for _, t, b, _, _ in slices
    ]
    n_workers = int(workers or 1)
    if not jobs:
        mined: list[dict[str, Any]] = []
    elif algo == "diffnorm":
        pooled = bits[np.searchsorted(union, np.unique(np.concatenate([b for _, _, b, _, _ in slices])))]
        mined = _diffnorm_slices(jobs, pooled, float(min_support), n_workers)
    elif n_workers > 1:
        from neurolake.cluster.pool import task_map

        mined = task_map(_mine_slice, jobs, workers=n_workers)
    else:
        mined = []
        with progress_bar(len(jobs), "scan: mine", unit="slice", enabled=progress) as bar:
            for job in jobs:
                mined.append(_mine_slice(job))
                bar.update(1)

    p_raw_all = []
    for (_, t, b, _, _), m in zip(slices, mined, strict=True):
        m["p_raw"] = np.array(
            [fisher_greater(int(x), t.size, int(y), b.size) for x, y in zip(m["a"], m["c"], strict=True)]
        )
        p_raw_all.append(m["p_raw"])
    n_tests = int(sum(p.size for p in p_raw_all))
    p_adj_all = holm(np.concatenate(p_raw_all)) if n_tests else np.zeros(0)
    rows, slice_rows, offset = [], [], 0
    for k, ((s, t, b, n_t_all, n_b_all), m) in enumerate(zip(slices, mined, strict=True)):
        n_t, n_b = t.size, b.size
        p_adj = p_adj_all[offset : offset + m["p_raw"].size]
        offset += m["p_raw"].size
        a, c = np.asarray(m["a"], np.float64), np.asarray(m["c"], np.float64)
        excess = a - c * n_t / n_b
        keep = _absorb(m["itemsets"], excess, (p_adj <= alpha) & (excess > 0))
        rr = relative_risk(a, n_t, c, n_b)
        for i in np.flatnonzero(keep):
            rows.append(
                {
                    "run_id": run_id,
                    "scan_id": derived.spec_hash,
                    "finding_id": 0,
                    "slice_id": k,
                    "kind": s.kind,
                    "slice": s.name,
                    "target": s.target,
                    "background": s.background,
                    "items": [items[j] for j in m["itemsets"][i]],
                    "size": len(m["itemsets"][i]),
                    "support_target": int(a[i]),
                    "n_target": int(n_t),
                    "support_background": int(c[i]),
                    "n_background": int(n_b),
                    "relative_risk": float(rr[i]),
                    "effect": float(a[i] / n_t - c[i] / n_b),
                    "excess_frames": float(excess[i]),
                    "error_share": float(excess[i] / n_errors) if n_errors else 0.0,
                    "p_value": float(p_adj[i]),
                    "p_value_raw": float(m["p_raw"][i]),
                }
            )
        slice_rows.append(
            {
                "run_id": run_id,
                "scan_id": derived.spec_hash,
                "slice_id": k,
                "kind": s.kind,
                "slice": s.name,
                "target": s.target,
                "background": s.background,
                "n_target": n_t_all,
                "n_background": n_b_all,
                "n_target_mined": int(n_t),
                "n_background_mined": int(n_b),
                "n_tested": int(m["p_raw"].size),
                "n_findings": int(keep.sum()),
            }
        )
    rows.sort(key=lambda r: (-r["excess_frames"], r["p_value"], r["slice_id"], r["items"]))
    for rank, row in enumerate(rows, 1):
        row["finding_id"] = rank
    findings = pa.Table.from_pylist(rows, schema=FINDINGS)
    slice_table = pa.Table.from_pylist(slice_rows, schema=SLICES)
    derived.write_bytes(encode_parquet(findings), "findings.parquet")
    derived.write_bytes(encode_parquet(slice_table), "slices.parquet")
    no_slices = (
        ""
        if slices
        else _no_slices(len(candidates), small, n_errors, int(labelled["good"]), labelled["top"], min_frames, confident)
    )
    derived.write_json({"n_tests": n_tests, "n_error_frames": n_errors, "no_slices": no_slices}, "scan.json")
    derived.commit()
    return ScanResult(
        run_id, derived.spec_hash, findings, slice_table, n_tests, n_errors, time.perf_counter() - t0, False, no_slices
    )


def _no_slices(
    n_candidates: int,
    small: Mapping[str, int],
    n_errors: int,
    n_good: int,
    top: float | None,
    min_frames: int,
    confident: float,
) -> str:
    """Why a scan mined no slice: no kind of error with ``min_frames`` frames, or candidates
    whose backgrounds (frames right and confident) or targets came out smaller than that."""
    if n_candidates == 0:
        return (
            f"no slice: no kind of error reaches {min_frames} frames (the run has {n_errors:,} frames in errors); "
            "lower --min-frames"
        )
    if small["background"] >= small["target"]:
        highest = "no frame has a probability" if top is None else f"its frames' highest is {top:.2f}"
        return (
            f"no slice: {small['background']} of the {n_candidates} candidate slices have fewer than {min_frames} "
            f"frames in their background, drawn from the frames the model got right with greedy-token probability "
            f">= {confident:g}; the run has {n_good:,} such frames ({highest}); lower --confident"
        )
    return (
        f"no slice: {small['target']} of the {n_candidates} candidate slices have fewer than {min_frames} frames "
        "of their own; lower --min-frames"
    )


def get_finding(lake: Lake, finding: str) -> dict[str, Any]:
    """``SCAN_ID/FINDING_ID`` (from the ``findings`` view) -> the finding's row."""
    scan_id, sep, number = finding.partition("/")
    if not sep or not scan_id or not number.isdigit():
        raise SpecError(f"finding {finding!r}: write SCAN_ID/FINDING_ID as the findings view shows them")
    with QueryEngine(lake) as engine:
        rows = engine.sql(
            "SELECT * FROM findings WHERE scan_id = ? AND finding_id = ?", [scan_id, int(number)]
        ).to_pylist()
    if not rows:
        raise SpecError(f'no finding {finding!r} in the lake (see: neurolake sql "SELECT * FROM findings")')
    return rows[0]
