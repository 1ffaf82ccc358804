"""``neurolake compact``: a run's per-part table files merged into a few large ones.

Each table's rows, in row order (``frames`` by ``frame_id``, ``utterances`` by
``first_frame_id``: the order group queries and gathers read in, so row-group statistics prune
row ranges), are written into files of at most ``rows_per_file`` rows in row groups of
:data:`neurolake.store.tables.ROW_GROUP_SIZE`, a part never split between two files, under a new
generation ``compacted/<generation>/``. Then, under the run's write lease, one manifest
(:mod:`neurolake.store.compaction`) switches readers to them. Nothing is deleted unless asked
(``prune``), and then only after the switch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import pyarrow as pa

from neurolake.errors import RunError
from neurolake.store import compaction as manifest
from neurolake.store import tables
from neurolake.store.commit import CommitMarker, sha256_hex
from neurolake.store.compaction import CompactedFile, Compaction, PartSlice
from neurolake.store.lease import DEFAULT_TTL_S, RunLease
from neurolake.store.run import Run

log = logging.getLogger(__name__)

#: Rows per compacted file: four row groups; a run of 100 M frames becomes about 100 files.
DEFAULT_ROWS_PER_FILE = 4 * tables.ROW_GROUP_SIZE

#: The column each table is ordered by (``errors`` keeps its parts' order).
SORT_COLUMNS = {"frames": "frame_id", "utterances": "first_frame_id"}


@dataclass(frozen=True)
class CompactionSummary:
    """What one ``compact`` did."""

    run_id: str
    generation: int
    parts: int
    files_before: int
    files_after: int
    rows: dict[str, int]
    changed: bool
    pruned: int = 0


def compact(
    run: Run,
    *,
    rows_per_file: int = DEFAULT_ROWS_PER_FILE,
    prune: bool = False,
    lease_ttl_s: float = DEFAULT_TTL_S,
    on_part: Callable[[str], None] | None = None,
) -> CompactionSummary:
    """Merge the table files of every committed part of ``run`` into a new compacted generation
    and switch readers to it; a run already compact is left as it is.

    Holds the run's write lease throughout (an ingest or repair of the run meanwhile is refused
    with :class:`~neurolake.errors.RunBusyError`, and this waits for none). ``on_part`` is called
    with each part id as its rows are read (once per table). With ``prune``, after the switch,
    the covered parts' own table files and every compacted file the new manifest does not name
    are deleted: readers opened before then must refresh.
    """
    if rows_per_file < 1:
        raise RunError(f"rows_per_file must be at least 1, got {rows_per_file}")
    with RunLease(run.loc, ttl_s=lease_ttl_s, purpose="compact") as lease:
        markers = run.commits()
        current = run.compaction()
        files_before = sum(len(run.table_files(name)) for name in tables.TABLE_NAMES)
        if (current is None and not markers) or _is_compact(current, markers):
            summary = CompactionSummary(
                run.run_id,
                current.generation if current is not None else 0,
                len(markers),
                files_before,
                files_before,
                _rows(current) if current is not None else {},
                changed=False,
            )
        else:
            generation = current.generation + 1 if current is not None else 1
            written = {name: _write_table(run, name, generation, rows_per_file, on_part) for name in tables.TABLE_NAMES}
            new = Compaction.new(generation, markers, written)
            new.check(run.loc.describe(manifest.MANIFEST))
            manifest.write_detail(run.loc, new)
            lease.token.check()  # a compactor that lost the run's lease never switches readers
            manifest.write_manifest(run.loc, new)
            log.info("run %s: compaction generation %d covers %d parts", run.run_id, generation, len(markers))
            current = new
            summary = CompactionSummary(
                run.run_id,
                generation,
                len(markers),
                files_before,
                sum(len(f) for f in new.files.values()),
                _rows(new),
                changed=True,
            )
        if prune:
            lease.token.check()
            summary = _prune(run, current, summary)
        return summary


def _is_compact(current: Compaction | None, markers: Mapping[str, CommitMarker]) -> bool:
    """Whether ``current`` covers exactly the committed parts and every row of its files."""
    return current is not None and current.whole and set(current.parts) == set(markers)


def _rows(compaction: Compaction) -> dict[str, int]:
    return {name: sum(f.rows for f in files) for name, files in sorted(compaction.files.items())}


def _write_table(
    run: Run, name: str, generation: int, rows_per_file: int, on_part: Callable[[str], None] | None
) -> tuple[tuple[CompactedFile, tuple[PartSlice, ...]], ...]:
    """Write one table's compacted files, each with its part slices; each holds whole parts, in row order."""
    written: list[tuple[CompactedFile, tuple[PartSlice, ...]]] = []
    pending: list[pa.Table] = []
    slices: list[PartSlice] = []
    rows = 0
    row_start = 0

    def flush() -> None:
        nonlocal pending, slices, rows
        merged = pa.concat_tables(pending, promote_options="default") if pending else pa.table({})
        data = tables.encode_parquet(tables.conform(name, merged, run.run_id))
        key = manifest.file_key(generation, name, len(written))
        run.loc.write_bytes(data, key)
        written.append((CompactedFile(key, rows, sha256_hex(data), row_start), tuple(slices)))
        pending, slices, rows = [], [], 0

    column = SORT_COLUMNS.get(name)
    for marker, table in run.part_tables(name):
        if on_part is not None:
            on_part(marker.part_id)
        if column is not None and table.num_rows > 1:
            table = table.sort_by(column)
        if rows and rows + table.num_rows > rows_per_file:
            flush()
        if not slices:
            row_start = marker.row_start
        pending.append(table)
        slices.append(PartSlice(marker.part_id, rows, table.num_rows))
        rows += table.num_rows
    if slices:
        flush()
    return tuple(written)


def _prune(run: Run, live: Compaction | None, summary: CompactionSummary) -> CompactionSummary:
    """Delete what ``live`` makes unreachable: covered parts' own table files, other generations."""
    if live is None:
        return summary
    keep = live.keys()
    superseded = {entry.key for m in live.markers.values() for entry in m.tables.values()}
    present = [f"{manifest.DIRECTORY}/{rel}" for rel in run.loc.find(manifest.DIRECTORY)]
    present += [f"tables/{rel}" for rel in run.loc.find("tables")]
    doomed = [
        key for key in present if (key.startswith(f"{manifest.DIRECTORY}/") and key not in keep) or key in superseded
    ]
    run.loc.remove_many(doomed)
    return replace(summary, pruned=len(doomed))
