"""All text neurolake shows or writes: tables for the terminal, run/ingest/mining summaries, and
query results as a table, CSV, JSON lines or Parquet.

Only pyarrow and the standard library at import; the summaries' types are imported for
annotations only, so ``neurolake runs`` does not load torch.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from neurolake.errors import QueryError

if TYPE_CHECKING:
    from neurolake.ingest.pipeline import IngestSummary
    from neurolake.ingest.planning import PlannedCorpus
    from neurolake.introspect.ablation import AblationResult
    from neurolake.introspect.blocks import Block
    from neurolake.introspect.clustering import NapClusters
    from neurolake.introspect.naps import NapResult
    from neurolake.introspect.scan import ScanResult
    from neurolake.mining.mine import MiningResult
    from neurolake.store.run import RunInfo

# ------------------------------------------------------------------ tables


def human_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


def format_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [list(map(str, header))] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_runs_table(infos: Sequence[RunInfo]) -> str:
    if not infos:
        return "no runs yet"
    rows = [
        (
            i.run_id,
            i.status,
            f"{i.parts_committed}/{i.parts_total} ({100 * i.progress:.0f}%)",
            i.n_utterances,
            f"{i.frames_committed}/{i.n_frames}",
            i.layers,
            human_bytes(i.size_bytes),
            i.model,
            i.corpus,
        )
        for i in infos
    ]
    return format_table(("run", "status", "parts", "utterances", "frames", "layers", "size", "model", "corpus"), rows)


# ------------------------------------------------------------------ ingest


def format_dry_run(planned: PlannedCorpus, run_id: str) -> str:
    plan = planned.plan
    per_layer = planned.bytes_per_layer()
    lines = [
        f"run {run_id}: {planned.corpus_spec}",
        f"  utterances   {plan.n_utterances:,} planned, {len(planned.errors):,} with errors, {planned.skipped:,} audio files without transcript skipped",
        f"  audio        {planned.audio_seconds / 3600:,.2f} h",
        f"  frames       {plan.n_frames:,} (rows {plan.total_rows:,}, {plan.rows_per_shard:,} per shard)",
        f"  parts        {len(plan.parts):,}",
        # the frames' bytes, as the ingest's summary reports them; the arrays also hold each
        # shard's padding
        f"  activations  {human_bytes(planned.activation_bytes())} uncompressed in {len(per_layer)} layers "
        f"({human_bytes(sum(per_layer.values()))} with the shards' padding)",
        "",
        format_table(
            ("layer", "units", "bytes"),
            [(layer.name, layer.units, human_bytes(per_layer[layer.name])) for layer in planned.layers],
        ),
    ]
    if planned.errors:
        lines += ["", f"first problems ({min(5, len(planned.errors))} of {len(planned.errors)}):"]
        lines += [f"  {e['stage']}: {e['message']}" for e in planned.errors[:5]]
    return "\n".join(lines)


def format_summary(s: IngestSummary) -> str:
    if s.parts_run == 0:
        return f"run {s.run_id} in {s.lake_url}: all {s.parts_total} parts already committed; nothing to do"
    rate = s.audio_seconds / s.wall_seconds if s.wall_seconds else 0.0
    failed = [f"  FAILED      {line}" for line in s.parts_failed]
    if failed:
        failed.append(f"  {len(s.parts_failed)} part(s) not committed: run the same ingest again to retry them")
    return "\n".join(
        [
            f"run {s.run_id} in {s.lake_url}: {s.parts_run - len(s.parts_failed)} parts ingested"
            + (f" ({s.parts_already_committed} were already committed)" if s.parts_already_committed else ""),
            f"  utterances  {s.utterances_done:,} done, {s.utterances_failed:,} failed, {s.utterances_skipped:,} skipped",
            f"  audio       {s.audio_seconds / 3600:,.3f} h in {s.wall_seconds:,.1f} s ({rate:,.1f} s of audio per second)",
            f"  frames      {s.frames:,} ({s.frames / max(s.wall_seconds, 1e-9):,.0f} per second), {human_bytes(s.bytes_raw)} of activations",
            f"  nodes       {len(s.nodes)}",
        ]
        + failed
    )


# ------------------------------------------------------------------ mining


def format_ablation(result: AblationResult) -> str:
    """The error rates with the units ablated beside the model as it is and the random controls
    (and, for a slice, its frames under each)."""
    with_slice = result.base.slice_frames is not None

    def row(name: str, scores, change: str) -> tuple:
        cells = (name, f"{scores.cer:.3f}", f"{scores.wer:.3f}", change)
        return cells + (scores.slice_frames,) if with_slice else cells

    rows = [row("model as it is", result.base, "")]
    n = len(result.units)
    rows.append(row(f"{n} unit{'s' if n != 1 else ''}, {result.mode}", result.ablated, f"{result.cer_change:+.3f}"))
    for i, control in enumerate(result.controls, 1):
        rows.append(row(f"random units #{i}", control, f"{control.cer - result.base.cer:+.3f}"))
    header = ("condition", "CER", "WER", "CER change") + (("slice frames",) if with_slice else ())
    lines = [
        f"ablation of {', '.join(result.units)} in run {result.run_id} ({len(result.utterances)} utterances)",
    ]
    if with_slice:
        lines.append(f"slice: {result.slice}")
    lines.append(format_table(header, rows))
    changes = result.control_cer_changes
    if changes:
        lines.append(_against_controls("CER", result.cer_change, changes, "{:+.3f}"))
    slice_change = result.slice_change
    if slice_change is not None and result.control_slice_changes:
        lines.append(_against_controls("slice's frames", slice_change, result.control_slice_changes, "{:+.0%}"))
    return "\n".join(lines)


def _against_controls(what: str, value: float, controls: Sequence[float], fmt: str) -> str:
    low, high = min(controls), max(controls)
    # Outside the range by less than the range's own width is weak evidence, and says so.
    weak = ", by less than the random sets' spread: weak evidence" if high - low > 0 else ""
    if value < low:
        where = "below every random set" + (weak if low - value < high - low else "")
    elif value > high:
        where = "above every random set" + (weak if value - high < high - low else "")
    else:
        where = "within the random sets' range: no evidence that these units matter more than any"
    return (
        f"random units change the {what} by {fmt.format(min(controls))} .. {fmt.format(max(controls))}; "
        f"these units by {fmt.format(value)} ({where})"
    )


def format_mining(result: MiningResult, top: int = 10) -> str:
    p = result.patterns
    n_sig = sum(1 for v in p.column("p_value").to_pylist() if v <= 0.05)
    head = (
        f"mining {result.mining_id} of run {result.run_id}: {result.target} ({result.n_target:,} frames) vs "
        f"{result.background} ({result.n_background:,} frames), {result.n_items:,} items; "
        f"{p.num_rows:,} patterns, {n_sig:,} significant at 0.05 (Holm)"
        + (" [reused]" if result.reused else f" in {result.seconds:.1f} s")
    )
    rows = [
        (
            r["pattern_id"],
            " ".join(r["items"]),
            r["support_target"],
            r["support_background"],
            f"{r['score']:.4f}",
            f"{r['relative_risk']:.2f}",
            f"{r['p_value']:.2e}",
        )
        for r in p.slice(0, top).to_pylist()
    ]
    lines = [head]
    diffnorm = "l_percent" in result.details
    if diffnorm:
        sets = result.details["pattern_sets"]
        accepted, limit = result.details.get("n_accepted"), result.details.get("max_iterations")
        stopped = f"; the search stopped at its limit of {limit} accepted patterns" if accepted == limit else ""
        lines.append(
            f"DiffNorm: L% = {result.details['l_percent']:.2f} (length relative to singletons only); pattern sets: "
            f"target {sets['target']}, background {sets['background']}, shared {sets['shared']}{stopped}"
        )
    lines.append("")
    if rows:
        lines.append(
            format_table(("id", "neurons", "in target", "in background", "WRAcc", "rel. risk", "p (Holm)"), rows)
        )
    elif diffnorm:
        sets = result.details["pattern_sets"]
        lines.append(
            f"DiffNorm's target set is empty: what fires together in the target frames is described as well by the "
            f"{sets['shared']} shared and {sets['background']} background patterns; nothing at this binarisation "
            "sets the target apart (try another --binarize or layer, or LCM with a background contrast)"
        )
    else:
        lines.append("no pattern reaches the minimum support; lower --min-support or change --binarize")
    lines += ["", "per layer (significant patterns: how many touch it, the share of their units that it holds):"]
    lines.append(
        format_table(
            ("layer", "patterns", "share of their units", "best WRAcc"),
            [
                (
                    r["layer"],
                    r["significant_patterns"],
                    f"{r['share_of_items']:.2f}",
                    "-" if r["best_score"] != r["best_score"] else f"{r['best_score']:.4f}",
                )
                for r in result.layers.to_pylist()
            ],
        )
    )
    lines.append(
        f"\nall patterns: neurolake sql \"SELECT * FROM patterns WHERE mining_id = '{result.mining_id}' ORDER BY score DESC\""
    )
    return "\n".join(lines)


def format_scan(result: ScanResult, top: int = 10) -> str:
    """The top findings of a scan, with how to reproduce, query and test them."""
    f = result.findings
    head = (
        f"scan {result.scan_id} of run {result.run_id}: {result.slices.num_rows} slices mined, "
        f"{result.n_tests:,} patterns tested, {f.num_rows:,} findings at p <= 0.05 (Holm over the whole scan)"
        + (" [reused]" if result.reused else f" in {result.seconds:.1f} s")
    )
    lines = [head, ""]
    if not result.slices.num_rows:
        lines.append(
            result.no_slices
            or "no slice: no candidate slice has enough frames in it and in its background; try --min-frames or --confident"
        )
        return "\n".join(lines)
    if not f.num_rows:
        lines.append("no finding: no slice has a pattern that sets it apart; try --min-support, --binarize or --layers")
        return "\n".join(lines)
    rows = [
        (
            r["finding_id"],
            r["slice"],
            " ".join(r["items"]),
            f"{r['support_target']}/{r['n_target']}",
            f"{r['support_background']}/{r['n_background']}",
            f"{r['excess_frames']:.1f}",
            f"{r['relative_risk']:.2f}",
            f"{r['p_value']:.1e}",
        )
        for r in f.slice(0, top).to_pylist()
    ]
    lines.append(
        format_table(("id", "slice", "neurons", "in slice", "in background", "excess", "rel. risk", "p (Holm)"), rows)
    )
    first = f.slice(0, 1).to_pylist()[0]
    lines += [
        "",
        f"slice of finding 1: {first['target']}",
        f"its background:     {first['background']}",
        f"test it in the model: neurolake ablate --finding {result.scan_id}/1",
        f"all findings: neurolake sql \"SELECT * FROM findings WHERE scan_id = '{result.scan_id}' ORDER BY finding_id\"",
    ]
    return "\n".join(lines)


def format_block(block: Block) -> str:
    """A finding's block: its layers and units with their scores, where it is active, its ablation."""
    lines = [
        f"block of finding {block.finding} in run {block.run_id}: {len(block.layers)} layers "
        f"({', '.join(block.layers)}), {len(block.items())} units; slice {block.slice}",
        f"({block.n_frames} slice frames in {block.n_utterances} utterances)",
        "",
    ]
    rows = []
    for layer, units in block.units.items():
        seeds = set(block.seeds.get(layer, []))
        shown = [
            f"{u}" if u in seeds else f"{u} ({score:+.3g})" for u, score in zip(units, block.scores[layer], strict=True)
        ]
        role = "finding" if seeds else "connected"
        rows.append((layer, role, " ".join(shown), f"{block.layer_share[layer]:.0%}"))
    lines.append(format_table(("layer", "units from", "units (score)", "active on slice"), rows))
    lines.append(f"the whole block is active on {block.active_share:.0%} of the slice's frames")
    if block.ablation is not None:
        lines += ["", "the whole block, zeroed in the model:", format_ablation(block.ablation)]
    return "\n".join(lines)


def format_neurons(table: pa.Table, run_id: str) -> str:
    """Per layer, what a glance at its units should catch: units never active (value > 0 on no
    frame, dead after a ReLU), always active, or constant (standard deviation 0), beside the
    layer's typical mean, spread and largest value."""
    rows = []
    for layer in dict.fromkeys(table.column("layer").to_pylist()):
        mine = table.filter(pc.equal(table.column("layer"), layer))
        mean, std = (mine.column(c).to_numpy(zero_copy_only=False) for c in ("mean", "std"))
        active, peak = (mine.column(c).to_numpy(zero_copy_only=False) for c in ("active_rate", "max"))
        rows.append(
            (
                layer,
                mine.num_rows,
                f"{np.median(mean):+.3g}",
                f"{np.median(std):.3g}",
                f"{np.max(peak):.3g}",
                int(np.sum(active == 0)),
                int(np.sum(active == 1)),
                int(np.sum(std == 0)),
            )
        )
    header = ("layer", "units", "median mean", "median std", "largest", "never active", "always active", "constant")
    return "\n".join(
        [
            f"neuron statistics of {table.num_rows:,} units of run {run_id} (active: value > 0)",
            format_table(header, rows),
            f"\nevery unit: neurolake sql \"SELECT * FROM neurons WHERE run_id = '{run_id}'\"",
        ]
    )


def format_naps(result: NapResult, top: int = 5) -> str:
    """Per layer and group: frames averaged and the units most set apart (contrastive NAP)."""
    centre = result.offsets.index(0)
    relevance = result.table.num_rows and result.table.column("measure")[0].as_py() == "relevance"
    lines = [
        f"{'GradNAPs' if relevance else 'NAPs'} "
        f"{result.nap_id} of run {result.run_id}: {len(result.groups)} groups x {len(result.mean)} layers"
        + (
            (" (relevance read from the lake)" if result.source == "lake" else " (relevance computed by the model now)")
            if relevance
            else ""
        )
        + (f", offsets {result.offsets[0]}..{result.offsets[-1]}" if len(result.offsets) > 1 else "")
        + (" [reused]" if result.reused else f" in {result.seconds:.1f} s"),
    ]
    for layer, contrast in result.contrastive.items():
        rows = []
        # Two decimals, or three significant digits where every value is under 0.05, as
        # relevance (gradient x activation) often is: otherwise they would all read +0.00.
        largest = float(np.nanmax(np.abs(contrast[:, centre]))) if contrast.size else 0.0
        shown = "{:+.2f}" if largest >= 0.05 or not largest > 0 else "{:+.2e}"
        for g, name in enumerate(result.groups):
            values = contrast[g, centre]
            best = [int(u) for u in values.argsort()[::-1][:top]]
            rows.append(
                (name, int(result.counts[g, centre]), " ".join(f"{u} ({shown.format(values[u])})" for u in best))
            )
        lines += ["", f"{layer}:", format_table(("group", "frames", f"top {top} units (contrastive NAP)"), rows)]
    lines.append(f"\nall profiles: neurolake sql \"SELECT * FROM naps WHERE nap_id = '{result.nap_id}'\"")
    return "\n".join(lines)


def format_nap_clusters(clusters: NapClusters) -> str:
    """Per layer, the clusters of groups, each listed in dendrogram order, clusters in the order
    their first group comes."""
    cut = (
        f"{clusters.k} clusters"
        if clusters.k is not None
        else f"cut at {clusters.metric} distance {clusters.threshold:g}"
    )
    lines = [
        f"clusters {clusters.clustering_id} of NAPs {clusters.nap_id} ({clusters.metric}, average linkage, {cut})"
        + (" [reused]" if clusters.reused else "")
    ]
    rows = []
    for layer in dict.fromkeys(clusters.table.column("layer").to_pylist()):
        mine = sorted((r for r in clusters.table.to_pylist() if r["layer"] == layer), key=lambda r: r["leaf_order"])
        members: dict[int, list[str]] = {}
        for r in mine:
            members.setdefault(r["cluster"], []).append(r["group"])
        rows += [(layer, str(c), " ".join(groups)) for c, groups in members.items()]
    lines.append(format_table(("layer", "cluster", "groups (dendrogram order)"), rows))
    lines.append(
        f"all assignments: neurolake sql \"SELECT * FROM nap_clusters WHERE clustering_id = '{clusters.clustering_id}'\""
    )
    return "\n".join(lines)


# ------------------------------------------------------------------ query results


MAX_TABLE_ROWS = 100


def _cell(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def check_out(out: str) -> None:
    """Refuse, in one line, an output file whose directory does not exist."""
    directory = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(directory):
        raise QueryError(f"cannot write {out!r}: the directory {directory} does not exist")


def _flat(table: pa.Table) -> pa.Table:
    """CSV holds no nested values: list, struct and map cells become JSON text (``["a:3", "b:2"]``)."""
    nested = (
        pa.types.is_list,
        pa.types.is_large_list,
        pa.types.is_fixed_size_list,
        pa.types.is_struct,
        pa.types.is_map,
    )
    for i, field in enumerate(table.schema):
        if any(test(field.type) for test in nested):
            text = [None if v is None else json.dumps(v, default=str) for v in table.column(i).to_pylist()]
            table = table.set_column(i, pa.field(field.name, pa.string()), pa.array(text, pa.string()))
    return table


def write_table(table: pa.Table, fmt: str, out: str | None, stdout: TextIO) -> None:
    """Print ``table`` as a readable table, CSV or JSON lines, or write it to ``out``."""
    if out:
        check_out(out)
    if fmt == "parquet":
        if not out:
            raise QueryError("--format parquet needs --out FILE")
        pq.write_table(table, out, compression="zstd")
        return
    if fmt == "csv":
        buf = io.BytesIO()
        pacsv.write_csv(_flat(table), buf)
        text = buf.getvalue().decode("utf-8")
    elif fmt == "json":
        text = "".join(json.dumps(row, default=str) + "\n" for row in table.to_pylist())
    else:
        rows = table.slice(0, MAX_TABLE_ROWS).to_pylist()
        text = format_table(table.column_names, [[_cell(r[c]) for c in table.column_names] for r in rows]) + "\n"
        if table.num_rows > MAX_TABLE_ROWS:
            text += f"({table.num_rows} rows, first {MAX_TABLE_ROWS} shown; use --format csv --out FILE for all)\n"
        else:
            text += f"({table.num_rows} row{'s' if table.num_rows != 1 else ''})\n"
    if out:
        with open(out, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        stdout.write(text)


def format_ranking(result: Any, top: int, share: float) -> str:
    """Per layer of a :class:`~neurolake.introspect.ranking.Ranking`: the full probe, the minimal
    subsets, the top units of each ranking, the curves and the ablation in the model."""
    from neurolake.introspect.ranking import METHODS

    lines = []
    curves = result.curves.to_pylist()
    for summary in result.layers:
        layer = summary["layer"]
        lines.append(
            f"layer {layer} ({summary['units']} units): full probe accuracy {summary['accuracy']:.3f} "
            f"(majority baseline {summary['baseline']:.3f}); {summary['clusters']} redundancy clusters"
        )
        for method in METHODS:
            k = summary["minimal_k"][method]
            if k is None:
                lines.append(f"  {method}: no top k reaches {share:.0%} of the full probe's accuracy")
            else:
                lines.append(
                    f"  {method}: {k} of {summary['units']} units reach {share:.0%} of the full probe's accuracy "
                    f"({summary['minimal_clusters'][method]} redundancy clusters among them)"
                )
        lines.append(
            format_table(
                ("ranking", f"top {top} units (most telling first)"),
                [(m, ", ".join(str(u) for u in result.order(layer, m)[:top])) for m in METHODS],
            )
        )
        subsets = (*METHODS, "bottom", "random")
        points = {(r["subset"], r["k"]): r["accuracy"] for r in curves if r["layer"] == layer}
        ks = sorted({k for _, k in points})
        lines.append(
            format_table(
                ("k", *(f"top {s}" if s in METHODS else s for s in subsets)),
                [(k, *(f"{points[s, k]:.3f}" for s in subsets)) for k in ks],
            )
        )
        ablation = summary.get("ablation")
        if ablation:
            lines.append(
                f"  in the model: top {ablation['k']} probe units"
                + (f" of class {ablation['class']}" if ablation.get("class") else "")
                + f" zeroed ({', '.join(str(u) for u in ablation['units'])}), CER {ablation['cer']:.3f} -> "
                f"{ablation['cer_ablated']:.3f}"
            )
            if ablation["control_cer_changes"]:
                lines.append(
                    "  " + _against_controls("CER", ablation["cer_change"], ablation["control_cer_changes"], "{:+.3f}")
                )
    return "\n".join(lines)
