"""Text for ``neurolake mine``: the top patterns and the per-layer summary."""

from __future__ import annotations

from neurolake.mining.mine import MiningResult
from neurolake.store.report import format_table


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
    if "l_percent" in result.details:
        sets = result.details["pattern_sets"]
        lines.append(
            f"DiffNorm: L% = {result.details['l_percent']:.2f} (length relative to singletons only); pattern sets: "
            f"target {sets['target']}, background {sets['background']}, shared {sets['shared']}"
        )
    lines.append("")
    if rows:
        lines.append(
            format_table(("id", "neurons", "in target", "in background", "WRAcc", "rel. risk", "p (Holm)"), rows)
        )
    else:
        lines.append("no pattern reaches the minimum support; lower --min-support or change --binarize")
    lines += ["", "per layer (significant patterns):"]
    lines.append(
        format_table(
            ("layer", "patterns", "share of items", "best WRAcc"),
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
