"""Human-readable summaries of lake contents."""

from __future__ import annotations

from collections.abc import Sequence

from neurolake.store.run import RunInfo


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
            f"{i.units_committed}/{i.units_total} ({100 * i.progress:.0f}%)",
            i.n_utterances,
            f"{i.frames_committed}/{i.n_frames}",
            i.layers,
            human_bytes(i.size_bytes),
            i.model,
            i.corpus,
        )
        for i in infos
    ]
    return format_table(("run", "status", "units", "utterances", "frames", "layers", "size", "model", "corpus"), rows)
