"""Row-space planning: pack utterances into parts before any inference.

Every captured layer of a run is one array of shape ``(rows, units)`` whose row *i*
is output frame ``frame_id = i``. The planner fixes which rows each utterance gets
from its exact frame count, and groups utterances into parts. A part owns a
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
DEFAULT_PART_ROWS = 65536


@dataclass(frozen=True)
class PlannedUtterance:
    """One utterance's place in the row space: rows ``[first_row, first_row + n_frames)``."""

    utterance_id: str
    first_row: int
    n_frames: int


@dataclass(frozen=True)
class Part:
    """A contiguous, shard-aligned row range and the utterances that fill its head.

    ``row_start``/``row_stop`` are multiples of the shard size; rows
    ``[row_start + rows_used, row_stop)`` are padding that no frame references.
    """

    part_id: str
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
            "part_id": self.part_id,
            "index": self.index,
            "row_start": self.row_start,
            "row_stop": self.row_stop,
            "utterances": [[u.utterance_id, u.first_row, u.n_frames] for u in self.utterances],
        }

    @classmethod
    def from_dict(cls, d: dict) -> Part:
        return cls(
            part_id=d["part_id"],
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
    parts: tuple[Part, ...]

    @property
    def total_rows(self) -> int:
        """Rows of every layer array (a multiple of ``rows_per_shard``)."""
        return self.parts[-1].row_stop if self.parts else 0

    @property
    def n_frames(self) -> int:
        return sum(u.rows_used for u in self.parts)

    @property
    def n_utterances(self) -> int:
        return sum(len(u.utterances) for u in self.parts)

    def part(self, part_id: str) -> Part:
        for u in self.parts:
            if u.part_id == part_id:
                return u
        raise PlanError(
            f"no part {part_id!r} in the plan (parts: {self.parts[0].part_id}..{self.parts[-1].part_id})"
            if self.parts
            else "the plan has no parts"
        )

    def to_dict(self) -> dict:
        return {
            "rows_per_shard": self.rows_per_shard,
            "chunk_rows": self.chunk_rows,
            "total_rows": self.total_rows,
            "n_frames": self.n_frames,
            "n_utterances": self.n_utterances,
            "parts": [u.to_dict() for u in self.parts],
        }

    @classmethod
    def from_dict(cls, d: dict) -> Plan:
        return cls(
            rows_per_shard=int(d["rows_per_shard"]),
            chunk_rows=int(d["chunk_rows"]),
            parts=tuple(Part.from_dict(u) for u in d["parts"]),
        )


def part_name(index: int) -> str:
    return f"p{index:06d}"


def plan_parts(
    utterances: Iterable[tuple[str, int]] | Sequence[tuple[str, int]],
    rows_per_shard: int = DEFAULT_ROWS_PER_SHARD,
    part_rows: int = DEFAULT_PART_ROWS,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> Plan:
    """Pack ``(utterance_id, n_frames)`` pairs, in the given order, into parts.

    A part is closed once it holds at least ``part_rows`` frames (an utterance is never
    split), and its end is rounded up to the next shard boundary; the next part starts
    there. The result depends only on the input, so planning twice gives the same plan.

    ``chunk_rows`` is the Zarr inner-chunk height (the unit of a partial read) and must
    divide ``rows_per_shard``.
    """
    if rows_per_shard <= 0 or chunk_rows <= 0 or part_rows <= 0:
        raise PlanError("rows_per_shard, chunk_rows and part_rows must be positive")
    if rows_per_shard % chunk_rows:
        raise PlanError(f"chunk_rows ({chunk_rows}) must divide rows_per_shard ({rows_per_shard})")
    seen: set[str] = set()
    parts: list[Part] = []
    current: list[PlannedUtterance] = []
    part_start = 0
    cursor = 0

    def close() -> None:
        nonlocal part_start, cursor, current
        stop = -(-cursor // rows_per_shard) * rows_per_shard
        parts.append(Part(part_name(len(parts)), len(parts), part_start, stop, tuple(current)))
        part_start = cursor = stop
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
        if cursor - part_start >= part_rows:
            close()
    if current:
        close()
    return Plan(rows_per_shard=rows_per_shard, chunk_rows=chunk_rows, parts=tuple(parts))
