"""Commit markers: a part is visible iff ``runs/<run>/commits/<part>.json`` exists.

The marker is written last, after every shard and table file of the part, and says
what a reader may trust: the part's row range, its utterances, row counts and checksums.
It carries no timestamp, so re-running a part rewrites byte-identical keys.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from neurolake.errors import CorruptFileError

MARKER_VERSION = 1


@dataclass(frozen=True)
class TableEntry:
    key: str
    rows: int
    sha256: str


@dataclass(frozen=True)
class LayerEntry:
    rows: int
    sha256: str


@dataclass(frozen=True)
class CommitMarker:
    part_id: str
    row_start: int
    row_stop: int
    rows_used: int
    utterance_ids: tuple[str, ...]
    tables: dict[str, TableEntry] = field(default_factory=dict)
    layers: dict[str, LayerEntry] = field(default_factory=dict)
    relevance: dict[str, LayerEntry] = field(default_factory=dict)  # the relevance cube's layers, if any

    @property
    def used_stop(self) -> int:
        return self.row_start + self.rows_used

    def to_dict(self) -> dict:
        return {
            "marker_version": MARKER_VERSION,
            "part_id": self.part_id,
            "row_start": self.row_start,
            "row_stop": self.row_stop,
            "rows_used": self.rows_used,
            "utterance_ids": list(self.utterance_ids),
            "tables": {k: {"key": t.key, "rows": t.rows, "sha256": t.sha256} for k, t in self.tables.items()},
            "layers": {k: {"rows": v.rows, "sha256": v.sha256} for k, v in self.layers.items()},
        } | (
            {"relevance": {k: {"rows": v.rows, "sha256": v.sha256} for k, v in self.relevance.items()}}
            if self.relevance
            else {}
        )

    @classmethod
    def from_dict(cls, d: dict, where: str) -> CommitMarker:
        try:
            return cls(
                part_id=str(d["part_id"]),
                row_start=int(d["row_start"]),
                row_stop=int(d["row_stop"]),
                rows_used=int(d["rows_used"]),
                utterance_ids=tuple(str(u) for u in d["utterance_ids"]),
                tables={k: TableEntry(str(t["key"]), int(t["rows"]), str(t["sha256"])) for k, t in d["tables"].items()},
                layers={k: LayerEntry(int(v["rows"]), str(v["sha256"])) for k, v in d["layers"].items()},
                relevance={k: LayerEntry(int(v["rows"]), str(v["sha256"])) for k, v in d.get("relevance", {}).items()},
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CorruptFileError(f"commit marker {where} is malformed ({exc!r}); re-run its part") from exc


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
