"""Row-space planning: pack utterances into work units before any inference.

Every captured layer of a run is one array of shape ``(rows, units)`` whose row *i*
is output frame ``frame_id = i``. The planner fixes which rows each utterance gets
from its exact frame count, and groups utterances into work units. A unit owns a
contiguous range of whole shards, so two writers never touch the same shard
(partial-shard writes from two processes lose data in Zarr 3).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from neurolake.errors import PlanError

DEFAULT_ROWS_PER_SHARD = 4096
DEFAULT_CHUNK_ROWS = 256
DEFAULT_UNIT_ROWS = 65536


@dataclass(frozen=True)
class PlannedUtterance:
    """One utterance's place in the row space: rows ``[first_row, first_row + n_frames)``."""

    utterance_id: str
    first_row: int
    n_frames: int


@dataclass(frozen=True)
class WorkUnit:
    """A contiguous, shard-aligned row range and the utterances that fill its head.

    ``row_start``/``row_stop`` are multiples of the shard size; rows
    ``[row_start + rows_used, row_stop)`` are padding that no frame references.
    """

    unit_id: str
    index: int
    row_start: int
    row_stop: int
    utterances: tuple[PlannedUtterance, ...]

    @functools.cached_property
    def rows_used(self) -> int:
        return sum(u.n_frames for u in self.utterances)

    @property
    def used_stop(self) -> int:
        """One past the last row that holds a frame."""
        return self.row_start + self.rows_used

    @property
    def utterance_ids(self) -> list[str]:
        return [u.utterance_id for u in self.utterances]

    def to_dict(self) -> dict:
        return {
            "unit_id": self.unit_id,
            "index": self.index,
            "row_start": self.row_start,
            "row_stop": self.row_stop,
            "utterances": [[u.utterance_id, u.first_row, u.n_frames] for u in self.utterances],
        }

    @classmethod
    def from_dict(cls, d: dict) -> WorkUnit:
        return cls(
            unit_id=d["unit_id"],
            index=int(d["index"]),
            row_start=int(d["row_start"]),
            row_stop=int(d["row_stop"]),
            utterances=tuple(PlannedUtterance(str(u), int(r), int(n)) for u, r, n in d["utterances"]),
        )


@dataclass(frozen=True)
class Plan:
    """The whole row space of a run."""

    rows_per_shard: int
    chunk_rows: int
    units: tuple[WorkUnit, ...]

    @property
    def total_rows(self) -> int:
        """Rows of every layer array (a multiple of ``rows_per_shard``)."""
        return self.units[-1].row_stop if self.units else 0

    @property
    def n_frames(self) -> int:
        return sum(u.rows_used for u in self.units)

    @property
    def n_utterances(self) -> int:
        return sum(len(u.utterances) for u in self.units)

    def unit(self, unit_id: str) -> WorkUnit:
        for u in self.units:
            if u.unit_id == unit_id:
                return u
        raise PlanError(
            f"no work unit {unit_id!r} in the plan (units: {self.units[0].unit_id}..{self.units[-1].unit_id})"
            if self.units
            else "the plan has no work units"
        )

    def to_dict(self) -> dict:
        return {
            "rows_per_shard": self.rows_per_shard,
            "chunk_rows": self.chunk_rows,
            "total_rows": self.total_rows,
            "n_frames": self.n_frames,
            "n_utterances": self.n_utterances,
            "units": [u.to_dict() for u in self.units],
        }

    @classmethod
    def from_dict(cls, d: dict) -> Plan:
        return cls(
            rows_per_shard=int(d["rows_per_shard"]),
            chunk_rows=int(d["chunk_rows"]),
            units=tuple(WorkUnit.from_dict(u) for u in d["units"]),
        )


def unit_name(index: int) -> str:
    return f"u{index:06d}"


def plan_work_units(
    utterances: Iterable[tuple[str, int]] | Sequence[tuple[str, int]],
    rows_per_shard: int = DEFAULT_ROWS_PER_SHARD,
    unit_rows: int = DEFAULT_UNIT_ROWS,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> Plan:
    """Pack ``(utterance_id, n_frames)`` pairs, in the given order, into work units.

    A unit is closed once it holds at least ``unit_rows`` frames (an utterance is never
    split), and its end is rounded up to the next shard boundary; the next unit starts
    there. The result depends only on the input, so planning twice gives the same plan.

    ``chunk_rows`` is the Zarr inner-chunk height (the unit of a partial read) and must
    divide ``rows_per_shard``.
    """
    if rows_per_shard <= 0 or chunk_rows <= 0 or unit_rows <= 0:
        raise PlanError("rows_per_shard, chunk_rows and unit_rows must be positive")
    if rows_per_shard % chunk_rows:
        raise PlanError(f"chunk_rows ({chunk_rows}) must divide rows_per_shard ({rows_per_shard})")
    seen: set[str] = set()
    units: list[WorkUnit] = []
    current: list[PlannedUtterance] = []
    unit_start = 0
    cursor = 0

    def close() -> None:
        nonlocal unit_start, cursor, current
        stop = -(-cursor // rows_per_shard) * rows_per_shard
        units.append(WorkUnit(unit_name(len(units)), len(units), unit_start, stop, tuple(current)))
        unit_start = cursor = stop
        current = []

    for utterance_id, n_frames in utterances:
        utterance_id = str(utterance_id)
        n_frames = int(n_frames)
        if utterance_id in seen:
            raise PlanError(f"utterance id {utterance_id!r} appears twice in the corpus")
        if n_frames <= 0:
            raise PlanError(f"utterance {utterance_id!r} has {n_frames} output frames; it must have at least one")
        seen.add(utterance_id)
        current.append(PlannedUtterance(utterance_id, cursor, n_frames))
        cursor += n_frames
        if cursor - unit_start >= unit_rows:
            close()
    if current:
        close()
    return Plan(rows_per_shard=rows_per_shard, chunk_rows=chunk_rows, units=tuple(units))
