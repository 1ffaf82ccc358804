"""Text for ``neurolake ingest``: the dry-run plan and the final summary."""

from __future__ import annotations

from neurolake.ingest.pipeline import IngestSummary
from neurolake.ingest.planning import PlannedCorpus
from neurolake.store.report import format_table, human_bytes


def format_dry_run(planned: PlannedCorpus, run_id: str) -> str:
    plan = planned.plan
    per_layer = planned.bytes_per_layer()
    lines = [
        f"run {run_id}: {planned.corpus_spec}",
        f"  utterances   {plan.n_utterances:,} planned, {len(planned.errors):,} with errors, {planned.skipped:,} audio files without transcript skipped",
        f"  audio        {planned.audio_seconds / 3600:,.2f} h",
        f"  frames       {plan.n_frames:,} (rows {plan.total_rows:,}, {plan.rows_per_shard:,} per shard)",
        f"  work units   {len(plan.units):,}",
        f"  activations  {human_bytes(sum(per_layer.values()))} uncompressed in {len(per_layer)} layers",
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
    if s.units_run == 0:
        return f"run {s.run_id} in {s.lake_url}: all {s.units_total} units already committed; nothing to do"
    rate = s.audio_seconds / s.wall_seconds if s.wall_seconds else 0.0
    failed = [f"  FAILED      {line}" for line in s.units_failed]
    if failed:
        failed.append(f"  {len(s.units_failed)} unit(s) not committed: run the same ingest again to retry them")
    return "\n".join(
        [
            f"run {s.run_id} in {s.lake_url}: {s.units_run - len(s.units_failed)} units ingested"
            + (f" ({s.units_already_committed} were already committed)" if s.units_already_committed else ""),
            f"  utterances  {s.utterances_done:,} done, {s.utterances_failed:,} failed, {s.utterances_skipped:,} skipped",
            f"  audio       {s.audio_seconds / 3600:,.3f} h in {s.wall_seconds:,.1f} s ({rate:,.1f} s of audio per second)",
            f"  frames      {s.frames:,} ({s.frames / max(s.wall_seconds, 1e-9):,.0f} per second), {human_bytes(s.bytes_raw)} of activations",
            f"  nodes       {len(s.nodes)}",
        ]
        + failed
    )
