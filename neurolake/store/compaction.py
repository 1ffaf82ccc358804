"""Compaction manifests: which compacted table files stand in for which parts' own files.

``runs/<run>/compaction.json`` is the switch. It names the compacted files of one generation
(``compacted/<generation>/<table>/<n>.parquet``, checksums and the rows each part holds in them)
and carries the commit markers of the parts it covers, as they were committed, so a reader needs
one object instead of one marker per part. It is written whole and last (a rename on a local
disk, one PUT on an object store): readers see the old manifest or the new one, never a mix, and
a compaction that stops before it leaves only unreferenced files.

A part is read from the compacted files iff the manifest covers it and its marker is listed in
``commits/``; a covered part whose marker is gone is not visible, and its rows in the compacted
files are skipped. :meth:`Run.uncommit` removes a covered part from the manifest after removing
its marker, so a part that is committed again is read from its own, new files.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from neurolake.errors import CorruptFileError
from neurolake.store.commit import CommitMarker
from neurolake.store.location import Location

COMPACTION_VERSION = 1
MANIFEST = "compaction.json"
DIRECTORY = "compacted"


class PartSlice(NamedTuple):
    """The rows ``[offset, offset + rows)`` of a compacted file that hold one part's rows (a
    tuple: a manifest holds one per part and table, and readers build them all at start-up)."""

    part_id: str
    offset: int
    rows: int


@dataclass(frozen=True)
class CompactedFile:
    """One compacted Parquet file of a table: its key (relative to the run), rows and checksum."""

    key: str
    rows: int
    sha256: str
    parts: tuple[PartSlice, ...]


@dataclass(frozen=True)
class Compaction:
    """The content of ``compaction.json``: compacted files by table, and the markers they cover."""

    generation: int
    markers: dict[str, CommitMarker]
    files: dict[str, tuple[CompactedFile, ...]]

    def to_dict(self) -> dict:
        return {
            "compaction_version": COMPACTION_VERSION,
            "generation": self.generation,
            "markers": {part_id: m.to_dict() for part_id, m in sorted(self.markers.items())},
            "tables": {
                name: [
                    {
                        "key": f.key,
                        "rows": f.rows,
                        "sha256": f.sha256,
                        "parts": [[s.part_id, s.offset, s.rows] for s in f.parts],
                    }
                    for f in files
                ]
                for name, files in sorted(self.files.items())
            },
        }

    @classmethod
    def from_dict(cls, d: dict, where: str) -> Compaction:
        try:
            if int(d["compaction_version"]) > COMPACTION_VERSION:
                raise CorruptFileError(
                    f"{where} has compaction version {d['compaction_version']}, newer than this "
                    f"neurolake reads ({COMPACTION_VERSION}); upgrade neurolake"
                )
            markers = {str(p): CommitMarker.from_dict(m, f"{where} (part {p})") for p, m in d["markers"].items()}
            files = {
                str(name): tuple(
                    CompactedFile(
                        key=str(f["key"]),
                        rows=int(f["rows"]),
                        sha256=str(f["sha256"]),
                        parts=tuple(PartSlice(str(p), int(o), int(n)) for p, o, n in f["parts"]),
                    )
                    for f in entries
                )
                for name, entries in d["tables"].items()
            }
            compaction = cls(generation=int(d["generation"]), markers=markers, files=files)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CorruptFileError(
                f"compaction manifest {where} is malformed ({exc!r}); remove it to read every part's own files"
            ) from exc
        compaction.check(where)
        return compaction

    def check(self, where: str) -> None:
        """Raise :class:`CorruptFileError` unless every slice is a covered part's whole table, inside its file."""
        for name, files in self.files.items():
            for f in files:
                for s in f.parts:
                    marker = self.markers.get(s.part_id)
                    entry = marker.tables.get(name) if marker is not None else None
                    if entry is None or entry.rows != s.rows or s.offset < 0 or s.offset + s.rows > f.rows:
                        raise CorruptFileError(
                            f"compaction manifest {where}: rows of part {s.part_id} in {f.key} disagree with "
                            "its commit marker; remove the manifest to read every part's own files"
                        )

    def without(self, part_ids: Iterable[str]) -> Compaction:
        """This manifest with ``part_ids`` no longer covered (their rows in the files are skipped;
        a file left with no covered rows is dropped)."""
        gone = set(part_ids)
        files: dict[str, tuple[CompactedFile, ...]] = {}
        for name, entries in self.files.items():
            kept = []
            for f in entries:
                slices = tuple(s for s in f.parts if s.part_id not in gone)
                if slices:
                    kept.append(CompactedFile(f.key, f.rows, f.sha256, slices))
            files[name] = tuple(kept)
        markers = {p: m for p, m in self.markers.items() if p not in gone}
        return Compaction(self.generation, markers, files)

    def keys(self) -> set[str]:
        """Keys (relative to the run) of every file the manifest names."""
        return {f.key for entries in self.files.values() for f in entries}


def file_key(generation: int, table: str, index: int) -> str:
    """Where compacted file ``index`` of ``table`` in a generation lives, relative to the run."""
    return f"{DIRECTORY}/{generation:06d}/{table}/{index:06d}.parquet"


def read_manifest(run_loc: Location) -> Compaction | None:
    """The run's compaction manifest, or ``None`` where the run was never compacted."""
    try:
        data = run_loc.read_json(MANIFEST)
    except FileNotFoundError:
        return None
    where = run_loc.describe(MANIFEST)
    if not isinstance(data, dict):
        raise CorruptFileError(f"compaction manifest {where} is not a JSON object")
    return Compaction.from_dict(data, where)


def write_manifest(run_loc: Location, compaction: Compaction) -> None:
    """Switch readers to ``compaction``: one atomic write of the whole manifest."""
    run_loc.write_json(compaction.to_dict(), MANIFEST)
