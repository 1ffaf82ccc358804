"""``neurolake report``: one self-contained HTML page per run, with figures, of what the lake holds.

A report is a list of sections; each section is a small function of the lake that returns
``None`` when the run has none of its results (no scan yet, no probes yet), so the page grows as
the analyses are run. Every figure is a PNG drawn with matplotlib next to ``index.html`` (or, with
``embed``, inlined as a data URI) and carries the ``neurolake`` command that reproduces its data.
Nothing is fetched from the network when the page is viewed: the worst utterances' audio is
put beside it for the page's players (a local file copied, audio elsewhere, such as object storage
or a dataset's rows, decoded and written as 16 kHz WAV).
"""

from __future__ import annotations

import html
import io
import json
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import soundfile as sf

from neurolake.corpora.audio import SAMPLE_RATE, load_audio
from neurolake.errors import InputError, SpecError
from neurolake.introspect.figures import pyplot
from neurolake.query.engine import QueryEngine
from neurolake.store import Lake, Run
from neurolake.store.derived import Derived, list_derived

__all__ = ["SECTIONS", "Figure", "Report", "Section", "report"]


@dataclass
class Figure:
    name: str  # file stem
    png: bytes
    caption: str
    command: str  # the neurolake command whose data it shows


@dataclass
class Section:
    key: str  # the id of its <section>
    title: str
    body: str = ""  # HTML
    figures: list[Figure] = field(default_factory=list)


@dataclass
class Report:
    path: Path  # index.html
    sections: list[str]  # keys of the sections written
    figures: int
    seconds: float


@dataclass
class _Context:
    lake: Lake
    run: Run
    q: QueryEngine
    lake_arg: str
    out: Path
    _results: dict[str, list[Derived]] = field(default_factory=dict)

    def sql(self, query: str, params: Sequence[Any] = ()) -> pa.Table:
        return self.q.sql(query, [self.run.run_id, *params])

    def cmd(self, verb: str, *args: str) -> str:
        return " ".join(["neurolake", verb, "--lake", self.lake_arg, "--run", self.run.run_id, *args])

    def results(self, kind: str) -> list[Derived]:
        """The run's complete derived results of ``kind``, listed once per report."""
        if kind not in self._results:
            self._results[kind] = list_derived(self.run.loc.child("derived"), kind)
        return self._results[kind]

    @cached_property
    def latest_scan(self) -> str | None:
        """The run's scan committed last among those that found something."""
        return _latest(
            self, "scans", self.sql("SELECT DISTINCT scan_id FROM findings WHERE run_id = ?").column(0).to_pylist()
        )


def _png(fig: Any) -> bytes:
    plt = pyplot()
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def _table(header: Sequence[str] | None, rows: Sequence[Sequence[Any]], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header) if header else ""
    body = "".join("<tr>" + "".join(_td(v) for v in row) + "</tr>" for row in rows)
    thead = f"<thead><tr>{head}</tr></thead>" if head else ""
    return f'<table class="{cls}">{thead}<tbody>{body}</tbody></table>'


# Cells of more characters than this may break inside a word.
_UNBROKEN_CHARS = 30


def _td(value: Any) -> str:
    """A table cell; long text (a hypothesis, a list of units) may break anywhere, so that a
    word longer than the window (a model early in training emits some) cannot widen the page,
    while numbers and ids keep whole."""
    text = _cell(value)
    long = not isinstance(value, _Raw) and len(text) > _UNBROKEN_CHARS
    return f'<td class="text">{text}</td>' if long else f"<td>{text}</td>"


def _cell(value: Any) -> str:
    if isinstance(value, _Raw):
        return value.html
    if isinstance(value, float):
        return f"{value:.3f}"
    return html.escape("" if value is None else str(value))


@dataclass
class _Raw:
    html: str


# --- sections ------------------------------------------------------------------------------------


def section_run(ctx: _Context) -> Section:
    """The run, and its error rates by speaker and duration, and the worst utterances."""
    run = ctx.run
    manifest = run.manifest
    info = run.info()
    utts = ctx.sql(
        "SELECT utterance_id, speaker_id, duration_s, wer, cer, reference, hypothesis, audio_uri "
        "FROM utterances WHERE run_id = ? ORDER BY utterance_id"
    )
    n_errors = ctx.sql("SELECT count(*) FROM errors WHERE run_id = ?").column(0)[0].as_py()
    hours = float(np.sum(utts.column("duration_s").to_numpy())) / 3600 if utts.num_rows else 0.0
    corpus = manifest.get("corpus", {})
    facts = [
        ("model", manifest["model"].get("spec")),
        ("corpus", corpus.get("spec")),
        ("utterances", f"{utts.num_rows:,}"),
        ("audio", f"{hours * 60:.1f} min"),
        ("frames", f"{info.frames_committed:,}"),
        ("layers", ", ".join(f"{layer.name} ({layer.units})" for layer in run.layers)),
        ("utterances that failed", f"{n_errors:,}"),
        ("created", manifest.get("created_at")),
    ]
    section = Section("run", f"Run {html.escape(run.run_id)}", _table(None, facts, "facts"))
    if not utts.num_rows:
        return section
    plt = pyplot()
    wer = utts.column("wer").to_numpy(zero_copy_only=False)
    cer = utts.column("cer").to_numpy(zero_copy_only=False)
    duration = utts.column("duration_s").to_numpy()
    speakers = np.asarray(utts.column("speaker_id").to_pylist(), dtype=object).astype(str)
    splits = _splits(corpus.get("spec"), utts.column("audio_uri").to_pylist())
    fig, axes = plt.subplots(1, 4 if splits is not None else 3, figsize=(15 if splits is not None else 12, 3.4))
    axes[0].hist([wer, cer], bins=20, label=["WER", "CER"])
    axes[0].set_xlabel("error rate per utterance")
    axes[0].set_ylabel("utterances")
    axes[0].legend()
    names = sorted(set(speakers), key=lambda s: -float(np.mean(wer[speakers == s])))[:30]
    axes[1].bar(range(len(names)), [float(np.mean(wer[speakers == s])) for s in names], color="#4c72b0")
    axes[1].set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    axes[1].set_ylabel("mean WER")
    axes[1].set_title("by speaker (worst 30)")
    quarters = np.quantile(duration, [0.25, 0.5, 0.75])
    which = np.searchsorted(quarters, duration, side="right")
    axes[2].boxplot([wer[which == i] for i in range(4)], tick_labels=["Q1", "Q2", "Q3", "Q4"])
    axes[2].set_xlabel("duration quarter (shortest first)")
    axes[2].set_ylabel("WER")
    if splits is not None:
        names = sorted(set(splits))
        axes[3].boxplot([cer[splits == n] for n in names], tick_labels=names)
        axes[3].set_ylabel("CER")
        axes[3].set_title("by split")
    section.figures.append(
        Figure(
            "error-rates",
            _png(fig),
            f"Word and character error rates of {utts.num_rows:,} utterances: overall, by speaker, by duration"
            + (" and by the corpus's split." if splits is not None else "."),
            f'neurolake sql --lake {ctx.lake_arg} "SELECT speaker_id, avg(wer) FROM utterances WHERE run_id = '
            f"'{ctx.run.run_id}' GROUP BY 1 ORDER BY 2 DESC\"",
        )
    )
    worst = sorted(utts.to_pylist(), key=lambda r: (-(r["wer"] or 0), -(r["cer"] or 0)))[:10]
    rows = []
    for r in worst:
        rows.append(
            (
                r["utterance_id"],
                r["speaker_id"],
                r["wer"],
                r["cer"],
                r["reference"],
                r["hypothesis"],
                _Raw(_audio(ctx, r["audio_uri"], r["utterance_id"])),
            )
        )
    section.body += "<h3>Worst utterances</h3>" + _table(
        ("utterance", "speaker", "WER", "CER", "reference", "hypothesis", "audio"), rows, "worst"
    )
    return section


def _splits(corpus: str | None, uris: Sequence[str | None]) -> np.ndarray | None:
    """Each utterance's split (the first folder of its audio below the corpus), when there are several."""
    if not corpus:
        return None
    root = corpus.rstrip("/") + "/"
    parts = [u[len(root) :].split("/") if u and u.startswith(root) else [] for u in uris]
    if not all(len(p) >= 2 for p in parts):
        return None
    splits = np.array([p[0] for p in parts])
    return splits if np.unique(splits).size >= 2 else None


def _audio(ctx: _Context, uri: str | None, utterance_id: str) -> str:
    """An audio player for an utterance: its local file copied beside the report; audio
    elsewhere (object storage, a dataset's row) decoded and written there as 16 kHz WAV; nothing
    where the audio cannot be read (a corpus moved or deleted since the run)."""
    if not uri:
        return ""
    folder = ctx.out / "audio"
    name = re.sub(r"[^A-Za-z0-9._-]", "_", utterance_id)
    source = Path(uri)
    if "://" not in uri and source.is_file():
        target = folder / f"{name}{source.suffix}"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    else:
        try:
            samples = load_audio(uri, SAMPLE_RATE, storage_options=ctx.lake.loc.storage_options)
        except (InputError, OSError):
            return ""
        target = folder / f"{name}.wav"
        folder.mkdir(parents=True, exist_ok=True)
        sf.write(target, samples, SAMPLE_RATE, subtype="PCM_16")
    return f'<audio controls preload="none" src="audio/{html.escape(target.name)}"></audio>'


def section_phonemes(ctx: _Context) -> Section | None:
    """Error rate per phoneme, and the token confusion matrix of the segment labels."""
    rates = ctx.sql(
        "SELECT phoneme, avg(CAST(segment_error AS DOUBLE)) AS rate, count(*) AS n FROM frames "
        "WHERE run_id = ? AND phoneme IS NOT NULL AND segment_error IS NOT NULL GROUP BY 1 ORDER BY 2 DESC"
    )
    if not rates.num_rows:
        return None
    plt = pyplot()
    section = Section("phonemes", "Errors by phoneme and token")
    fig, ax = plt.subplots(figsize=(12, 3.2))
    ax.bar(rates.column("phoneme").to_pylist(), rates.column("rate").to_numpy(), color="#c44e52")
    ax.set_ylabel("share of frames in error")
    ax.tick_params(axis="x", labelsize=7, rotation=90)
    section.figures.append(
        Figure(
            "phoneme-errors",
            _png(fig),
            "Share of each phoneme's frames whose token is substituted or deleted (segment_error).",
            f'neurolake sql --lake {ctx.lake_arg} "SELECT phoneme, avg(CAST(segment_error AS DOUBLE)) FROM frames '
            f"WHERE run_id = '{ctx.run.run_id}' GROUP BY 1 ORDER BY 2 DESC\"",
        )
    )
    pairs = ctx.sql(
        "SELECT ref_segment AS ref, CASE WHEN segment_error THEN confusion ELSE ref_segment END AS read, "
        "count(*) AS n FROM frames WHERE run_id = ? AND ref_segment IS NOT NULL AND confusion IS DISTINCT FROM "
        "'<ins>' GROUP BY 1, 2"
    ).to_pylist()
    if any(p["read"] != p["ref"] for p in pairs):
        refs = sorted({p["ref"] for p in pairs})
        reads = refs + sorted({p["read"] for p in pairs} - set(refs))
        matrix = np.zeros((len(refs), len(reads)))
        for p in pairs:
            matrix[refs.index(p["ref"]), reads.index(p["read"])] += p["n"]
        matrix /= np.maximum(matrix.sum(axis=1, keepdims=True), 1)
        for i in range(len(refs)):  # the errors only: the diagonal would drown them
            matrix[i, i] = np.nan
        size = max(4.0, 0.22 * len(reads))
        fig, ax = plt.subplots(figsize=(size + 1.5, max(3.5, 0.22 * len(refs))))
        image = ax.imshow(matrix, cmap="magma_r", vmin=0, vmax=float(np.nanmax(matrix)) or 1.0, aspect="auto")
        ax.set_xticks(range(len(reads)), reads, fontsize=6, rotation=90)
        ax.set_yticks(range(len(refs)), refs, fontsize=6)
        ax.set_xlabel("token read")
        ax.set_ylabel("reference token")
        fig.colorbar(image, ax=ax, label="share of the reference's frames")
        section.figures.append(
            Figure(
                "confusions",
                _png(fig),
                "Token confusions over frames: the share of each reference token's frames read as another "
                "token (<del>: deleted); the diagonal, read correctly, is left blank.",
                f'neurolake sql --lake {ctx.lake_arg} "SELECT ref_segment, confusion, count(*) FROM frames WHERE '
                f"run_id = '{ctx.run.run_id}' AND segment_error GROUP BY 1, 2 ORDER BY 3 DESC\"",
            )
        )
    return section


def section_findings(ctx: _Context) -> Section | None:
    """The latest scan's findings, each with its ablation against random controls when it has one."""
    scan_id = ctx.latest_scan
    if scan_id is None:
        return None
    findings = ctx.sql(
        "SELECT * FROM findings WHERE run_id = ? AND scan_id = ? ORDER BY finding_id LIMIT 15", [scan_id]
    ).to_pylist()
    ablations = ctx.sql(
        "SELECT ablation_id, slice, condition, units, slice_frames FROM ablations WHERE run_id = ? "
        "AND slice IS NOT NULL AND mode = 'zero' ORDER BY ablation_id, condition, draw"
    ).to_pylist()
    by_ablation: dict[str, dict[str, list]] = {}
    for a in ablations:
        by_ablation.setdefault(a["ablation_id"], {}).setdefault(a["condition"], []).append(a)
    # a finding's ablation: its slice, exactly its units
    of_finding = {
        (c["ablated"][0]["slice"], tuple(sorted(c["ablated"][0]["units"]))): c
        for c in by_ablation.values()
        if c.get("ablated") and c.get("base")
    }
    layer_order = {name: i for i, name in enumerate(ctx.run.layer_names)}
    blocks: dict[str, dict[str, Any]] = {}
    for b in ctx.sql(
        "SELECT finding, layer, count(*) AS n, any_value(active_share) AS active, any_value(ablation_id) AS ablation "
        "FROM blocks WHERE run_id = ? GROUP BY finding, layer, block_id"
    ).to_pylist():
        entry = blocks.setdefault(b["finding"], {"layers": {}, "active": b["active"], "ablation": b["ablation"]})
        entry["layers"][b["layer"]] = b["n"]
    rows, effects = [], []
    for f in findings:
        block = blocks.get(f"{f['scan_id']}/{f['finding_id']}")
        block_text = ""
        if block:
            block_text = (
                " -> ".join(
                    f"{layer} ({n})"
                    for layer, n in sorted(block["layers"].items(), key=lambda kv: layer_order.get(kv[0], 0))
                )
                + f"; active on {block['active']:.0%} of the slice"
            )
            ablated = by_ablation.get(block["ablation"] or "", {})
            if ablated.get("ablated") and ablated.get("base") and ablated["base"][0]["slice_frames"]:
                base = ablated["base"][0]["slice_frames"]
                block_text += f"; zeroed: {(ablated['ablated'][0]['slice_frames'] - base) / base:+.0%} slice frames"
        found = of_finding.get((f["target"], tuple(sorted(f["items"]))), {})
        effect = ""
        if found.get("ablated") and found.get("base"):
            base = found["base"][0]["slice_frames"] or 0
            change = (found["ablated"][0]["slice_frames"] - base) / base if base else 0.0
            controls = [((c["slice_frames"] - base) / base if base else 0.0) for c in found.get("control", [])]
            effect = f"{change:+.0%} slice frames" + (
                f" (random: {min(controls):+.0%} .. {max(controls):+.0%})" if controls else ""
            )
            effects.append((f["finding_id"], change, controls))
        rows.append(
            (
                f"{f['scan_id']}/{f['finding_id']}",
                f["kind"],
                f["slice"],
                ", ".join(f["items"]),
                f"{f['support_target']}/{f['n_target']}",
                f"{f['support_background']}/{f['n_background']}",
                f["effect"],
                f"{f['p_value']:.2g}",
                effect,
                block_text,
            )
        )
    section = Section(
        "findings",
        "Failure slices found by the scan",
        _table(
            (
                "finding",
                "kind",
                "slice",
                "units",
                "in slice",
                "in background",
                "effect",
                "p (Holm)",
                "ablation",
                "block across layers",
            ),
            rows,
            "findings",
        )
        + f"<p class=cmd>{html.escape(ctx.cmd('scan'))}; blocks: neurolake blocks --lake {html.escape(ctx.lake_arg)} "
        "--finding SCAN_ID/FINDING_ID</p>",
    )
    if effects:
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(6, 3))
        for i, (_, change, controls) in enumerate(effects):
            ax.scatter(
                [i] * len(controls), controls, color="#999999", marker="x", label="random units" if i == 0 else None
            )
            ax.scatter([i], [change], color="#c44e52", s=60, label="finding's units" if i == 0 else None)
        ax.axhline(0, color="#444444", lw=0.6)
        ax.set_xticks(range(len(effects)), [f"#{e[0]}" for e in effects])
        ax.set_ylabel("change of the slice's frames")
        ax.legend(fontsize=8)
        section.figures.append(
            Figure(
                "ablations",
                _png(fig),
                "Each finding's units zeroed in the model: the change of its slice's frames against random units.",
                ctx.cmd("ablate", "--finding", f"{scan_id}/{effects[0][0]}"),
            )
        )
    return section


def section_naps(ctx: _Context) -> Section | None:
    """The latest NAPs: contrastive profiles of the groups (rows in dendrogram order) per layer."""
    profiled = ctx.sql(
        'SELECT nap_id FROM naps WHERE run_id = ? AND "offset" = 0 GROUP BY 1 HAVING count(DISTINCT "group") >= 3'
    )
    nap_id = _latest(ctx, "naps", profiled.column(0).to_pylist())
    if nap_id is None:
        return None
    rows = ctx.sql(
        'SELECT layer, "group", unit, contrastive FROM naps WHERE run_id = ? AND nap_id = ? AND "offset" = 0',
        [nap_id],
    )
    from scipy.cluster.hierarchy import dendrogram, linkage, optimal_leaf_ordering
    from scipy.spatial.distance import pdist

    section = Section("naps", "Neuron activation profiles")
    layers = [layer for layer in ctx.run.layer_names if layer in set(rows.column("layer").to_pylist())][-3:]
    table = rows.to_pandas()
    plt = pyplot()
    for layer in layers:
        sub = table[table["layer"] == layer].pivot(index="group", columns="unit", values="contrastive")
        values = sub.to_numpy(dtype=np.float64)
        distances = pdist(values, metric="cosine")
        distances = np.nan_to_num(distances, nan=1.0)
        tree = optimal_leaf_ordering(linkage(distances, method="average"), distances)
        fig, (top, heat) = plt.subplots(2, 1, figsize=(10, 5.2), gridspec_kw={"height_ratios": [1, 3]})
        order = dendrogram(tree, ax=top, labels=list(sub.index), no_labels=True, color_threshold=0)["leaves"]
        top.set_axis_off()
        limit = float(np.quantile(np.abs(values), 0.99)) or 1.0
        image = heat.imshow(values[order], aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="none")
        heat.set_yticks(range(len(order)), [str(sub.index[i]) for i in order], fontsize=6)
        heat.set_xlabel("unit")
        fig.colorbar(image, ax=heat, label="contrastive NAP")
        section.figures.append(
            Figure(
                f"naps-{layer}",
                _png(fig),
                f"{layer}: each group's mean response per unit less the mean over groups, groups in the order of "
                "their average-linkage dendrogram (cosine distance).",
                _nap_command(ctx, nap_id),
            )
        )
    return section


def _latest(ctx: _Context, kind: str, ids: Sequence[str]) -> str | None:
    """Of the run's results of ``kind`` with these ids, the one committed last (None if none)."""
    wanted = set(ids)
    found = [d for d in ctx.results(kind) if d.spec_hash in wanted]
    return max(found, key=lambda d: (d.committed_at(), d.spec_hash)).spec_hash if found else None


def _nap_spec(ctx: _Context, nap_id: str) -> dict:
    return next((d.spec for d in ctx.results("naps") if d.spec_hash == nap_id), {})


def _group_args(spec: dict) -> list[str]:
    """``--by COLUMN`` or ``--groups G1,G2`` of a stored NAP spec."""
    if spec.get("by"):
        return ["--by", str(spec["by"])]
    return ["--groups", ",".join(g[0] for g in spec.get("groups") or [])]


def _nap_command(ctx: _Context, nap_id: str) -> str:
    """The ``neurolake naps`` command of a stored NAP result, from its spec."""
    spec = _nap_spec(ctx, nap_id)
    args = [*_group_args(spec), "--layers", ",".join(spec.get("layers", []))]
    if spec.get("measure") == "relevance":
        args.append("--relevance")
    return ctx.cmd("naps", *args)


# Panels of a topographic map figure in the report.
_MAP_GROUPS = 18


def section_maps(ctx: _Context) -> Section | None:
    """The per-layer phonetic agreement of phoneme NAPs, and the stored topographic maps with the
    top finding's units circled."""
    phonetics = ctx.sql(
        "SELECT * FROM phonetics WHERE run_id = ? AND phonetics_id = (SELECT phonetics_id FROM phonetics "
        "WHERE run_id = ? GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1)",
        [ctx.run.run_id],
    ).to_pylist()
    layouts = ctx.sql(
        "SELECT topomap_id, any_value(nap_id) AS nap_id, any_value(layer) AS layer, any_value(method) AS method, "
        "any_value(refine) AS refine, any_value(smoothness) AS smoothness FROM topomaps WHERE run_id = ? "
        "GROUP BY 1 ORDER BY layer, method, refine NULLS FIRST"
    ).to_pylist()
    scan_id = ctx.latest_scan
    findings = ctx.sql(
        "SELECT items FROM findings WHERE run_id = ? AND scan_id = ? ORDER BY finding_id LIMIT 1", [scan_id]
    ).to_pylist()
    top_items = findings[0]["items"] if findings else []
    # The maps of the layers that hold the top finding's units first (where they are circled).
    top_layers = {item.rsplit(":", 1)[0] for item in top_items}
    layouts = sorted(layouts, key=lambda m: m["layer"] not in top_layers)[:3]
    if not phonetics and not layouts:
        return None
    plt = pyplot()
    section = Section("maps", "Phonetic structure and topographic maps")
    order = {name: i for i, name in enumerate(ctx.run.layer_names)}
    if phonetics:
        rows = sorted(phonetics, key=lambda r: order.get(r["layer"], 0))
        x = np.arange(len(rows))
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.4))
        left.plot(x, [r["r"] for r in rows], marker="o", color="#1f5fa8")
        for i, r in enumerate(rows):
            if r["p_value"] < 0.05:
                left.annotate("*", (i, r["r"]), textcoords="offset points", xytext=(0, 6), ha="center")
        left.axhline(0, color="#999999", lw=0.8)
        left.set_ylabel("cophenetic r (* p < 0.05)")
        left.set_title("phoneme NAP clustering vs articulatory distance")
        right.plot(x, [r["eta2_phoneme"] for r in rows], marker="o", label="phoneme")
        right.plot(x, [r["eta2_grapheme"] for r in rows], marker="s", label="grapheme (letter)")
        right.set_ylabel("share of variance explained")
        right.legend(fontsize=8)
        for ax in (left, right):
            ax.set_xticks(x, [r["layer"] for r in rows], rotation=30, ha="right")
        section.figures.append(
            Figure(
                "phonetics",
                _png(fig),
                "Per layer: how well the dendrogram of phoneme NAPs follows articulatory similarity (panphon "
                "features), and how much of the activations' variance phonemes and letters explain.",
                ctx.cmd("phonetics"),
            )
        )
    if layouts:
        from neurolake.introspect.topomap import _maps, _render_maps

        for m in layouts:
            stored = ctx.sql(
                "SELECT unit, x, y FROM topomaps WHERE run_id = ? AND topomap_id = ? ORDER BY unit", [m["topomap_id"]]
            )
            naps = ctx.sql(
                'SELECT "group", unit, mean, n_frames FROM naps WHERE run_id = ? AND nap_id = ? AND layer = ? '
                'AND "offset" = 0',
                [m["nap_id"], m["layer"]],
            ).to_pandas()
            if naps.empty:
                continue
            table = naps.pivot(index="group", columns="unit", values="mean")
            units = stored.column("unit").to_numpy()
            positions = np.column_stack([stored.column("x").to_numpy(), stored.column("y").to_numpy()])
            # At most _MAP_GROUPS panels: the groups with the most frames, in name order.
            frames = naps.groupby("group")["n_frames"].first()
            shown = sorted(sorted(frames.index, key=lambda g: (-int(frames[g]), str(g)))[:_MAP_GROUPS], key=str)
            groups = [str(g) for g in shown]
            values = table.loc[shown, units].to_numpy(dtype=np.float64)
            maps = _maps(positions, values, 32)
            mine = [int(i.rsplit(":", 1)[1]) for i in top_items if i.rsplit(":", 1)[0] == m["layer"]]
            marked = positions[np.isin(units, mine)] * 32 - 0.5
            name = m["method"] + (f"-{m['refine']}" if m["refine"] else "")
            path = _render_maps(
                maps, groups, ctx.out / "figures" / f"topomap-{m['layer']}-{name}.png", m["layer"], name, marked
            )
            args = ["--layer", m["layer"], *_group_args(_nap_spec(ctx, m["nap_id"])), "--methods", m["method"]]
            section.figures.append(
                Figure(
                    f"topomap-{m['layer']}-{name}",
                    path.read_bytes(),
                    f"{m['layer']}: units laid out by their profiles ({name}, smoothness {m['smoothness']:.3f}), "
                    "each group's mean activation painted on the layout"
                    + (
                        f" (the {len(shown)} of {len(frames)} groups with the most frames)"
                        if len(shown) < len(frames)
                        else ""
                    )
                    + ("; circled: the top finding's units." if marked.size else "."),
                    ctx.cmd("topomap", *args, *(["--refine", m["refine"]] if m["refine"] else [])),
                )
            )
    return section


def section_probes(ctx: _Context) -> Section | None:
    """Probe accuracy and selectivity per layer and target; the rankings' top-k curves."""
    probes = ctx.sql(
        "SELECT target, level, layer, accuracy, baseline, control_accuracy, selectivity, split FROM probes "
        "WHERE run_id = ?"
    ).to_pylist()
    curves = ctx.sql("SELECT * FROM ranking_curves WHERE run_id = ?").to_pylist()
    if not probes and not curves:
        return None
    plt = pyplot()
    section = Section("probes", "What each layer encodes")
    order = {name: i for i, name in enumerate(ctx.run.layer_names)}
    by_target: dict[tuple[str, str], list[dict]] = {}
    for p in probes:
        by_target.setdefault((p["target"], p["level"]), []).append(p)
    for (target, level), rows in sorted(by_target.items()):
        rows = sorted({r["layer"]: r for r in rows}.values(), key=lambda r: order.get(r["layer"], 0))
        x = np.arange(len(rows))
        fig, ax = plt.subplots(figsize=(7, 3.2))
        ax.plot(x, [r["accuracy"] for r in rows], marker="o", label="probe")
        ax.plot(x, [r["control_accuracy"] for r in rows], marker="s", label="control task")
        ax.plot(x, [r["baseline"] for r in rows], ls="--", color="#888888", label="majority class")
        ax.plot(x, [r["selectivity"] for r in rows], ls=":", marker="^", color="#2a9d8f", label="selectivity")
        ax.set_xticks(x, [r["layer"] for r in rows], rotation=30, ha="right")
        ax.set_ylabel("test accuracy, selectivity")
        ax.set_title(f"{target} ({level} level, {rows[0]['split'].split(' (')[0]} split)")
        ax.legend(fontsize=8)
        section.figures.append(
            Figure(
                f"probe-{target}-{level}",
                _png(fig),
                f"Linear probes of {target} per layer against the majority class and the control task, "
                "and their selectivity (accuracy less the control task's).",
                ctx.cmd("probe", "--target", target, "--level", level),
            )
        )
    by_ranking: dict[tuple[str, str], list[dict]] = {}
    for c in curves:
        by_ranking.setdefault((c["target"], c["layer"]), []).append(c)
    for (target, layer), rows in sorted(by_ranking.items()):
        fig, ax = plt.subplots(figsize=(6, 3.2))
        for subset in ("probe", "classmean", "mi", "bottom", "random"):
            points = sorted((r["k"], r["accuracy"]) for r in rows if r["subset"] == subset)
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", ms=3, label=subset)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("units kept (k)")
        ax.set_ylabel("probe test accuracy")
        ax.set_title(f"{target} from {layer}")
        ax.legend(fontsize=7)
        section.figures.append(
            Figure(
                f"ranking-{target}-{layer}",
                _png(fig),
                f"Probes of {target} retrained on the top k units of each ranking, the bottom k and random k.",
                ctx.cmd("rank", "--target", target, "--layers", layer),
            )
        )
    return section


SECTIONS: list[Callable[[_Context], Section | None]] = [
    section_run,
    section_phonemes,
    section_findings,
    section_naps,
    section_maps,
    section_probes,
]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: .85em; margin: .8em 0; }
td, th { border: 1px solid #ddd; padding: .25em .5em; text-align: left; vertical-align: top; }
td.text { overflow-wrap: anywhere; }
th { background: #f4f4f4; } figure { margin: 1.2em 0; } img { max-width: 100%; }
figcaption { font-size: .9em; } .cmd { font-family: monospace; font-size: .8em; color: #555; }
nav a { margin-right: 1em; }
"""

# Marks, once everything has loaded, how many images decoded and whether the page is wider than
# the window (a hypothesis without spaces, from a model early in training, once was), for checks
# in a browser.
_SCRIPT = """
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var loaded = images.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute("data-images", loaded + "/" + images.length);
  var page = document.documentElement;
  document.body.setAttribute("data-wider", String(page.scrollWidth > page.clientWidth));
});
"""


def report(
    lake: Lake,
    run_id: str,
    out_dir: str | Path,
    *,
    embed: bool = False,
    lake_arg: str | None = None,
) -> Report:
    """Write the report of ``run_id`` to ``out_dir/index.html`` (module docstring)."""
    import base64

    t0 = time.perf_counter()
    run = lake.run(run_id)
    if not run.committed_parts():
        raise SpecError(f"run {run_id!r} has no committed part yet; nothing to report")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "figures").mkdir(exist_ok=True)
    with QueryEngine(lake) as q:
        ctx = _Context(lake, run, q, lake_arg or str(lake.loc.url), out)
        sections = [s for s in (make(ctx) for make in SECTIONS) if s is not None]
    parts, n_figures = [], 0
    for s in sections:
        figures = []
        for f in s.figures:
            if embed:
                src = "data:image/png;base64," + base64.b64encode(f.png).decode("ascii")
            else:
                (out / "figures" / f"{f.name}.png").write_bytes(f.png)
                src = f"figures/{f.name}.png"
            figures.append(
                f'<figure><img alt="{html.escape(f.caption)}" src="{html.escape(src)}">'
                f"<figcaption>{html.escape(f.caption)}<div class=cmd>{html.escape(f.command)}</div></figcaption>"
                "</figure>"
            )
            n_figures += 1
        parts.append(f'<section id="{s.key}"><h2>{html.escape(s.title)}</h2>{s.body}{"".join(figures)}</section>')
    nav = "".join(f'<a href="#{s.key}">{html.escape(s.title)}</a>' for s in sections)
    page = (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        f"<title>neurolake report: {html.escape(run_id)}</title><style>{_STYLE}</style>"
        f"<script>{_SCRIPT}</script></head><body>"
        f"<h1>neurolake report: run {html.escape(run_id)}</h1><nav>{nav}</nav>{''.join(parts)}"
        f"<p class=cmd>{html.escape(ctx.cmd('report'))}</p>"
        f'<script type="application/json" id="sections">{json.dumps([s.key for s in sections])}</script>'
        "</body></html>"
    )
    path = out / "index.html"
    path.write_text(page, encoding="utf-8")
    return Report(path, [s.key for s in sections], n_figures, time.perf_counter() - t0)
