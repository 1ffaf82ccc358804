"""Compaction manifests: which compacted table files stand in for which parts' own files.

``runs/<run>/compaction.json`` is the switch. It is small, so that opening a run of any number of
parts stays cheap: the generation, the compacted files of each table
(``compacted/<generation>/<table>/<n>.parquet``, with rows, checksum and the first frame row they
hold), the ids of the parts it covers with their frame counts, and the key and checksum of the
generation's detail file. The detail (``compacted/<generation>/detail.json``, written once before
the switch and never changed) carries the covered parts' commit markers, as they were committed,
and the rows each part holds in each file; it is read only by what needs a marker's contents or
a file's part rows (verify, a table read part by part, a part uncovered since).

The manifest is written whole and last (a rename on a local disk, one PUT on an object store):
readers see the old manifest or the new one, never a mix, and a compaction that stops before it
leaves only unreferenced files.

A part is read from the compacted files iff the manifest covers it and its marker is listed in
``commits/``; a covered part whose marker is gone is not visible, and its rows in the compacted
files are skipped. :meth:`Run.uncommit` removes a covered part from the manifest after removing
its marker (the detail stays as written: the manifest's part list is what counts), so a part that
is committed again is read from its own, new files.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from neurolake.errors import CorruptFileError, IntegrityError
from neurolake.store.commit import CommitMarker, sha256_hex
from neurolake.store.location import Location, canonical_json

COMPACTION_VERSION = 2
MANIFEST = "compaction.json"
DIRECTORY = "compacted"


class PartSlice(NamedTuple):
    """The rows ``[offset, offset + rows)`` of a compacted file that hold one part's rows."""

    part_id: str
    offset: int
    rows: int


@dataclass(frozen=True)
class CompactedFile:
    """One compacted Parquet file of a table: its key (relative to the run), rows, checksum, and
    the first frame row of the parts it holds (files of a table are in row order)."""

    key: str
    rows: int
    sha256: str
    row_start: int


@dataclass(frozen=True)
class CompactionDetail:
    """The detail of one generation: the covered parts' markers, and each file's part slices by key."""

    markers: dict[str, CommitMarker]
    slices: dict[str, tuple[PartSlice, ...]]

    def encode(self) -> bytes:
        """The detail file's bytes (compact JSON: it is read whole, by programs)."""
        return canonical_json(self.to_dict()).encode("utf-8")

    def to_dict(self) -> dict:
        return {
            "compaction_version": COMPACTION_VERSION,
            "markers": {part_id: m.to_dict() for part_id, m in sorted(self.markers.items())},
            "slices": {
                key: [[s.part_id, s.offset, s.rows] for s in parts] for key, parts in sorted(self.slices.items())
            },
        }

    @classmethod
    def from_dict(cls, d: Mapping, where: str) -> CompactionDetail:
        markers = {str(p): CommitMarker.from_dict(m, f"{where} (part {p})") for p, m in d["markers"].items()}
        slices = {
            str(key): tuple(PartSlice(str(p), int(o), int(n)) for p, o, n in parts)
            for key, parts in d["slices"].items()
        }
        return cls(markers, slices)


class _DetailSource:
    """A generation's detail, read on first use and kept; or made here, with the bytes of its
    file until :func:`write_detail` stores them."""

    def __init__(
        self,
        load: Callable[[], CompactionDetail] | None = None,
        detail: CompactionDetail | None = None,
        unwritten: bytes | None = None,
    ):
        self._load = load
        self._detail = detail
        self.unwritten = unwritten

    def get(self) -> CompactionDetail:
        if self._detail is None:
            if self._load is None:
                raise RuntimeError("this compaction manifest has no detail to read")
            self._detail = self._load()
        return self._detail


@dataclass(frozen=True)
class Compaction:
    """The content of ``compaction.json``: compacted files by table, the covered parts (id ->
    frames), and where the generation's detail is; the detail is read on first use."""

    generation: int
    parts: dict[str, int]
    files: dict[str, tuple[CompactedFile, ...]]
    detail_key: str
    detail_sha256: str
    #: Parts the generation was written with; equal to ``len(parts)`` until one is uncovered.
    parts_written: int
    source: _DetailSource = field(default_factory=_DetailSource, compare=False, repr=False)

    @classmethod
    def new(
        cls,
        generation: int,
        markers: Mapping[str, CommitMarker],
        written: Mapping[str, tuple[tuple[CompactedFile, tuple[PartSlice, ...]], ...]],
    ) -> Compaction:
        """A manifest for files just written (each with its part slices); its detail file is
        written by :func:`write_detail`."""
        detail = CompactionDetail(dict(markers), {f.key: s for entries in written.values() for f, s in entries})
        files = {name: tuple(f for f, _ in entries) for name, entries in written.items()}
        data = detail.encode()
        return cls(
            generation,
            {p: m.rows_used for p, m in markers.items()},
            files,
            detail_file_key(generation),
            sha256_hex(data),
            len(markers),
            _DetailSource(detail=detail, unwritten=data),
        )

    @property
    def whole(self) -> bool:
        """Whether every covered part of the generation is still covered (every file's rows are)."""
        return len(self.parts) == self.parts_written

    def detail(self) -> CompactionDetail:
        """The generation's markers and part slices (read once, checked against its checksum)."""
        return self.source.get()

    @property
    def markers(self) -> dict[str, CommitMarker]:
        """Markers of the covered parts (reads the detail)."""
        markers = self.detail().markers
        return {p: markers[p] for p in self.parts}

    def slices(self, f: CompactedFile) -> tuple[PartSlice, ...]:
        """The covered parts' rows in file ``f`` (reads the detail)."""
        return tuple(s for s in self.detail().slices[f.key] if s.part_id in self.parts)

    def to_dict(self) -> dict:
        ids = sorted(self.parts)
        return {
            "compaction_version": COMPACTION_VERSION,
            "generation": self.generation,
            "parts": ids,
            "rows_used": [self.parts[p] for p in ids],
            "parts_written": self.parts_written,
            "detail": {"key": self.detail_key, "sha256": self.detail_sha256},
            "tables": {
                name: [{"key": f.key, "rows": f.rows, "sha256": f.sha256, "row_start": f.row_start} for f in files]
                for name, files in sorted(self.files.items())
            },
        }

    @classmethod
    def from_dict(cls, d: dict, where: str, run_loc: Location | None = None) -> Compaction:
        try:
            version = int(d["compaction_version"])
            if version > COMPACTION_VERSION:
                raise CorruptFileError(
                    f"{where} has compaction version {version}, newer than this neurolake reads "
                    f"({COMPACTION_VERSION}); upgrade neurolake"
                )
            if version == 1:
                return cls._from_v1(d, where)
            ids, rows = d["parts"], d["rows_used"]
            if len(ids) != len(rows):
                raise ValueError("parts and rows_used differ in length")
            files = {
                str(name): tuple(
                    CompactedFile(str(f["key"]), int(f["rows"]), str(f["sha256"]), int(f["row_start"])) for f in entries
                )
                for name, entries in d["tables"].items()
            }
            compaction = cls(
                generation=int(d["generation"]),
                parts=dict(zip(map(str, ids), map(int, rows), strict=True)),
                files=files,
                detail_key=str(d["detail"]["key"]),
                detail_sha256=str(d["detail"]["sha256"]),
                parts_written=int(d["parts_written"]),
            )
            if run_loc is not None:
                object.__setattr__(
                    compaction, "source", _DetailSource(lambda: _read_detail(run_loc, compaction, where))
                )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CorruptFileError(
                f"compaction manifest {where} is malformed ({exc!r}); remove it to read every part's own files"
            ) from exc
        return compaction

    @classmethod
    def _from_v1(cls, d: dict, where: str) -> Compaction:
        """A manifest of the first version (markers and slices inline), as one with its detail read."""
        markers = {str(p): CommitMarker.from_dict(m, f"{where} (part {p})") for p, m in d["markers"].items()}
        written = {
            str(name): tuple(
                (
                    CompactedFile(
                        str(f["key"]),
                        int(f["rows"]),
                        str(f["sha256"]),
                        min(markers[str(p)].row_start for p, _, _ in f["parts"]),
                    ),
                    tuple(PartSlice(str(p), int(o), int(n)) for p, o, n in f["parts"]),
                )
                for f in entries
            )
            for name, entries in d["tables"].items()
        }
        compaction = cls.new(int(d["generation"]), markers, written)
        # The first version dropped an uncovered part's slices, so a file is whole iff its slices add up.
        whole = all(sum(s.rows for s in parts) == f.rows for entries in written.values() for f, parts in entries)
        compaction = replace(compaction, parts_written=len(markers) + (0 if whole else 1))
        compaction.check(where)
        return compaction

    def check(self, where: str, detail: CompactionDetail | None = None) -> None:
        """Raise :class:`CorruptFileError` unless every slice is a covered part's whole table, inside its file."""
        detail = detail or self.detail()
        for name, files in self.files.items():
            for f in files:
                slices = detail.slices.get(f.key)
                if slices is None:
                    raise CorruptFileError(f"compaction manifest {where}: {f.key} has no entry in {self.detail_key}")
                for s in slices:
                    marker = detail.markers.get(s.part_id)
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
        parts = {p: n for p, n in self.parts.items() if p not in gone}
        slices = self.detail().slices
        files = {
            name: tuple(f for f in entries if any(s.part_id in parts for s in slices[f.key]))
            for name, entries in self.files.items()
        }
        return replace(self, parts=parts, files=files)

    def keys(self) -> set[str]:
        """Keys (relative to the run) of every file the manifest names, its detail included."""
        return {f.key for entries in self.files.values() for f in entries} | {self.detail_key}


def _read_detail(run_loc: Location, compaction: Compaction, where: str) -> CompactionDetail:
    detail_where = run_loc.describe(compaction.detail_key)
    try:
        data = run_loc.read_bytes(compaction.detail_key)
    except FileNotFoundError as exc:
        raise IntegrityError(
            f"{detail_where}, named by {where}, is missing; remove the manifest to read every part's own files"
        ) from exc
    if sha256_hex(data) != compaction.detail_sha256:
        raise IntegrityError(
            f"checksum mismatch for {detail_where}, named by {where}; remove the manifest to read every part's own files"
        )
    try:
        detail = CompactionDetail.from_dict(json.loads(data.decode("utf-8")), detail_where)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CorruptFileError(
            f"{detail_where} is malformed ({exc!r}); remove {where} to read every part's own files"
        ) from exc
    compaction.check(where, detail)
    return detail


def file_key(generation: int, table: str, index: int) -> str:
    """Where compacted file ``index`` of ``table`` in a generation lives, relative to the run."""
    return f"{DIRECTORY}/{generation:06d}/{table}/{index:06d}.parquet"


def detail_file_key(generation: int) -> str:
    """Where a generation's detail (markers and part slices) lives, relative to the run."""
    return f"{DIRECTORY}/{generation:06d}/detail.json"


def read_manifest(run_loc: Location) -> Compaction | None:
    """The run's compaction manifest, or ``None`` where the run was never compacted."""
    try:
        data = run_loc.read_json(MANIFEST)
    except FileNotFoundError:
        return None
    where = run_loc.describe(MANIFEST)
    if not isinstance(data, dict):
        raise CorruptFileError(f"compaction manifest {where} is not a JSON object")
    return Compaction.from_dict(data, where, run_loc)


def write_detail(run_loc: Location, compaction: Compaction) -> None:
    """Write the detail of a manifest made here (a new generation, or one read in the first
    version), once: the bytes its checksum was taken of. Nothing for a detail already stored."""
    data = compaction.source.unwritten
    if data is not None:
        run_loc.write_bytes(data, compaction.detail_key)
        compaction.source.unwritten = None


def write_manifest(run_loc: Location, compaction: Compaction) -> None:
    """Switch readers to ``compaction``: its detail first if not yet stored, then one atomic
    write of the whole manifest."""
    write_detail(run_loc, compaction)
    run_loc.write_json(compaction.to_dict(), MANIFEST)
