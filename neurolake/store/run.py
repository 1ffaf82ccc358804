"""A run: one model over one corpus, its immutable manifest, its parts and their data."""

from __future__ import annotations

import datetime as _dt
import json
import logging
import platform
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from importlib import metadata
from typing import Any, NamedTuple

import dask.array as da
import numpy as np
import pyarrow as pa
from zarr.codecs import Endian, ZstdCodec

from neurolake.errors import (
    CorruptFileError,
    IntegrityError,
    LayerNotFoundError,
    OutOfRangeError,
    RunConflictError,
    RunError,
    RunNotFoundError,
    SchemaError,
)
from neurolake.store import cube, tables
from neurolake.store.commit import CommitMarker, LayerEntry, TableEntry, sha256_hex
from neurolake.store.compaction import (
    MANIFEST,
    CompactedFile,
    Compaction,
    PartSlice,
    read_manifest,
    write_manifest,
)
from neurolake.store.cube import LayerSpec
from neurolake.store.derived import Derived
from neurolake.store.lease import LeaseToken
from neurolake.store.location import Location, canonical_json
from neurolake.store.plan import Part, Plan
from neurolake.store.pools import SharedPool, usable_cpus
from neurolake.store.reader import LayerReader, read_threads
from neurolake.store.zeromask import ZeroMaskCodec

log = logging.getLogger(__name__)

#: How stored relevance is kept: gradients x activations are small numbers, below float16's
#: resolution for many units.
RELEVANCE_DTYPE = "float32"
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
MANIFEST_VERSION = 1
# Keys of run.json that may differ between two creations of "the same" run.
_INCIDENTAL_KEYS = ("created_at", "software")


# Shards are compressed and written on a pool shared by every writer of the process
# (zstd, CRC32C and file I/O release the GIL).
_WRITE_THREADS = max(2, usable_cpus())
_write_pool = SharedPool(_WRITE_THREADS, "neurolake-shard")
# Table files are fetched this many at a time (small objects: latency, not bandwidth, bounds them).
_READ_THREADS = 16
# Parts whose files verify reads ahead of the part whose problems it collects.
_VERIFY_PARTS_AHEAD = 32


def check_run_id(run_id: str) -> str:
    if not isinstance(run_id, str) or not RUN_ID.match(run_id):
        raise RunError(
            f"invalid run id {run_id!r}: use letters, digits, '.', '_' and '-' (at most 128, not starting with a symbol)"
        )
    return run_id


def software_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for dist in ("neurolake", "numpy", "zarr", "pyarrow", "torch", "torchaudio", "ray", "duckdb"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _identity(manifest: Mapping[str, Any]) -> dict:
    """What makes two manifests the same run. How chunks are encoded is not part of it: a run
    made with zstd chunks only, resumed by a version that would choose zero-mask chunks,
    keeps its own codec (the writers read it from the manifest; either decodes the same rows).
    Nor are the corpus's spec and, for a model whose weights have a digest, the model's."""
    same = {k: v for k, v in manifest.items() if k not in _INCIDENTAL_KEYS}
    # Where the corpus and the weights were read from is not what they are: the plan pins the
    # corpus's utterances and their frames, and the weights' digest the model. So the same corpus
    # named by another path (relative from another directory, absolute, moved) resumes the run.
    dropped = {"storage": "codec", "corpus": "spec"}
    if isinstance(same.get("model"), dict) and same["model"].get("weights_sha256"):
        dropped["model"] = "spec"
    for section, key in dropped.items():
        if isinstance(same.get(section), dict):
            same[section] = {k: v for k, v in same[section].items() if k != key}
    return same


# One check of verify on a part: a problem found already (str), a table file's problem to come
# (a future of str or None), or a layer's shard digests to come with its checksum and the
# problem should they differ.
_Check = str | Future | tuple[list[Future], str, str]


def _shard_digest(loc: Location, key: str) -> bytes:
    """The digest of a stored shard file (see :func:`cube.bytes_digest`)."""
    return cube.bytes_digest(loc.read_bytes(key))


@dataclass(frozen=True)
class RunInfo:
    """What ``neurolake runs`` shows for one run."""

    run_id: str
    status: str
    model: str
    corpus: str
    n_utterances: int
    n_frames: int
    frames_committed: int
    parts_committed: int
    parts_total: int
    layers: int
    created_at: str
    size_bytes: int | None = None

    @property
    def progress(self) -> float:
        return self.parts_committed / self.parts_total if self.parts_total else 1.0

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["progress"] = round(self.progress, 4)
        return d


def _spec_label(spec: Any) -> str:
    if isinstance(spec, Mapping):
        return str(spec.get("spec") or spec.get("name") or canonical_json(spec))
    return str(spec)


class _ReaderArray:
    """A layer as the array-like dask's ``from_array`` slices: one row range per block."""

    ndim = 2

    def __init__(self, reader: LayerReader, total_rows: int) -> None:
        self.reader = reader
        self.shape = (int(total_rows), reader.units)
        self.dtype = reader.dtype

    def __getitem__(self, key: tuple[slice, ...]) -> np.ndarray:
        rows, cols = key if isinstance(key, tuple) else (key, slice(None))
        start, stop, step = rows.indices(self.shape[0])
        block = self.reader.read_range(start, stop, parallel=False)
        return block[::step, cols] if step != 1 or cols != slice(None) else block


class LayerArray(da.Array):
    """The dask array of :meth:`Run.layer_dask` (every operation on it gives a plain one) whose
    own ``compute()`` (and so ``np.asarray``) on dask's local schedulers reads its rows
    as :meth:`Run.read_range` does, decoded in parallel straight into the result, instead of
    into a block per task that dask then copies into the result: a whole layer of 684,493 x 768
    float16 (1.05 GB) in 0.27 s instead of 0.52. A slice of whole rows (``x[a:b]``, all units)
    is a ``LayerArray`` too; ``dask.compute``, ``persist`` and other schedulers run the graph.
    """

    _reader: LayerReader
    _rows: tuple[int, int] | np.ndarray  # a range of rows, or sorted frame ids

    @classmethod
    def of(cls, array: da.Array, reader: LayerReader, rows: tuple[int, int] | np.ndarray) -> LayerArray:
        out = cls(array.dask, array.name, array.chunks, meta=array._meta)
        out._reader, out._rows = reader, rows
        return out

    def compute(self, **kwargs: Any) -> Any:
        import dask.local
        import dask.threaded
        from dask.base import get_scheduler

        if kwargs or get_scheduler(collections=[self]) not in (dask.threaded.get, dask.local.get_sync):
            return super().compute(**kwargs)
        if isinstance(self._rows, tuple):
            return self._reader.read_range(*self._rows)
        return self._reader.read_rows(self._rows)

    def __getitem__(self, index: Any) -> Any:
        out = super().__getitem__(index)
        rows = _whole_rows(index, self.shape)
        if rows is None:
            return out
        a, b = rows
        sub = (self._rows[0] + a, self._rows[0] + b) if isinstance(self._rows, tuple) else self._rows[a:b]
        return LayerArray.of(out, self._reader, sub)


def _whole_rows(index: Any, shape: tuple[int, ...]) -> tuple[int, int] | None:
    """``(a, b)`` where ``index`` picks rows ``a..b-1`` with every column (``[a:b]``,
    ``[a:b, :]``), else None."""
    if not isinstance(index, tuple):
        index = (index,)
    if not 1 <= len(index) <= 2 or not all(isinstance(i, slice) for i in index):
        return None
    if len(index) == 2 and index[1].indices(shape[1]) != (0, shape[1], 1):
        return None
    start, stop, step = index[0].indices(shape[0])
    return (start, max(start, stop)) if step == 1 else None


def _read_rows_block(reader: LayerReader, ids: np.ndarray) -> np.ndarray:
    """One block of :meth:`Run.layer_dask` over frame ids: their rows, decoded on the calling
    (dask) thread."""
    return reader.read_rows(ids, parallel=False)


class VisibleMarkers(Mapping[str, CommitMarker]):
    """The visible parts' commit markers by part id, in listing order: those read from
    ``commits/`` and, for the parts a compaction covers, those in its detail, read on the first
    access to one of them (ids, counts and frames need no marker)."""

    def __init__(self, ids: list[str], own: dict[str, CommitMarker], compaction: Compaction | None):
        self._ids = ids
        self._own = own
        self._compaction = compaction

    def __getitem__(self, part_id: str) -> CommitMarker:
        marker = self._own.get(part_id)
        if marker is not None:
            return marker
        if self._compaction is not None and part_id in self._compaction.parts and part_id in self._id_set:
            return self._compaction.detail().markers[part_id]
        raise KeyError(part_id)

    @cached_property
    def _id_set(self) -> frozenset[str]:
        return frozenset(self._ids)

    def __contains__(self, part_id: object) -> bool:
        return part_id in self._id_set

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def uncovered(self) -> dict[str, CommitMarker]:
        """Markers of the visible parts no compaction covers (read from their own files)."""
        return self._own

    def n_covered(self) -> int:
        """How many visible parts the compaction covers."""
        return len(self._ids) - len(self._own)

    def rows_used(self) -> int:
        """Frames of the visible parts."""
        covered = self._compaction.parts if self._compaction is not None else {}
        return sum(m.rows_used for m in self._own.values()) + sum(covered[p] for p in self._ids if p not in self._own)


class RunSnapshot(NamedTuple):
    """A run's visible parts at one moment: their markers by part id, and the compaction manifest."""

    markers: VisibleMarkers
    compaction: Compaction | None


@dataclass(frozen=True)
class TableFile:
    """A committed Parquet file of a table (key relative to the run) and its rows that belong to
    visible parts, as ``[start, stop)`` ranges of the file's rows (all of them, mostly)."""

    key: str
    rows: int
    sha256: str
    ranges: tuple[tuple[int, int], ...]

    @property
    def whole(self) -> bool:
        return self.ranges == ((0, self.rows),)


def _row_ranges(slices: Iterable[PartSlice]) -> tuple[tuple[int, int], ...]:
    """Adjacent slices of a file merged into ``[start, stop)`` ranges, in file order."""
    ranges: list[tuple[int, int]] = []
    for s in sorted(slices, key=lambda s: s.offset):
        if ranges and ranges[-1][1] == s.offset:
            ranges[-1] = (ranges[-1][0], s.offset + s.rows)
        else:
            ranges.append((s.offset, s.offset + s.rows))
    return tuple(ranges)


class Run:
    """Handle on ``runs/<run_id>/`` of a lake. Create runs with :meth:`Lake.create_run`."""

    def __init__(self, lake_loc: Location, run_id: str, manifest: dict):
        self.run_id = run_id
        self.loc = lake_loc.child("runs", run_id)
        self.manifest = manifest
        self._shards_seen: dict[str, set[int]] = {}
        self._markers: dict[str, CommitMarker] = {}
        self._readers: dict[str, LayerReader | None] = {}
        self._compaction: tuple[str | None, Compaction | None] = (None, None)

    def _repr_html_(self) -> str:
        import html

        info = self.info()
        facts = [
            ("status", f"{info.status} ({info.parts_committed}/{info.parts_total} parts)"),
            ("model", info.model),
            ("corpus", info.corpus),
            ("utterances", f"{info.n_utterances:,}"),
            ("frames", f"{info.frames_committed:,} of {info.n_frames:,}"),
            ("layers", ", ".join(f"{layer.name} ({layer.units})" for layer in self.layers)),
            ("created", info.created_at),
        ]
        rows = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
            for k, v in facts
        )
        return f"<div><b>run {html.escape(self.run_id)}</b><table>{rows}</table></div>"

    # ------------------------------------------------------------ creation / loading

    @classmethod
    def load(cls, lake_loc: Location, run_id: str) -> Run:
        check_run_id(run_id)
        loc = lake_loc.child("runs", run_id)
        if not loc.exists("run.json"):
            known = lake_loc.list_names("runs")
            hint = f"; runs in this lake: {', '.join(known)}" if known else "; the lake has no runs yet"
            raise RunNotFoundError(f"no run {run_id!r} in {lake_loc.url}{hint}")
        manifest = loc.read_json("run.json")
        where = loc.describe("run.json")
        if not isinstance(manifest, dict) or manifest.get("run_id") != run_id:
            raise CorruptFileError(f"{where} does not describe run {run_id!r}")
        for key in ("plan", "layers", "model", "corpus"):
            if key not in manifest:
                raise CorruptFileError(f"{where} lacks the key {key!r}")
        codec = manifest.get("storage", {}).get("codec", "zstd")
        if codec not in cube.CODECS:
            raise RunError(
                f"run {run_id!r} stores its chunks with codec {codec!r}, which this version of neurolake "
                f"does not read (it reads {', '.join(cube.CODECS)}); upgrade neurolake"
            )
        run = cls(lake_loc, run_id, manifest)
        try:  # the layers and the plan's totals now, so a corrupt manifest fails here, naming the file
            _ = run.layers, run.plan_totals
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptFileError(f"{where} is malformed ({exc!r})") from exc
        return run

    @classmethod
    def create(
        cls,
        lake_loc: Location,
        run_id: str,
        *,
        model: Mapping[str, Any],
        corpus: Mapping[str, Any],
        layers: Sequence[LayerSpec],
        plan: Plan,
        zstd_level: int = cube.DEFAULT_ZSTD_LEVEL,
        relevance: Sequence[str] = (),
        codec: str = cube.DEFAULT_CODEC,
    ) -> Run:
        """Write ``run.json`` (once) and the cube's array metadata.

        ``codec`` says how chunks are stored (see :data:`cube.CODECS`): "zeromask" (chunks
        with enough zeros as a bitmask and their other values, the rest zstd frames) or
        "zstd" (zstd frames only, Zarr's standard codec).

        ``relevance`` names layers whose per-frame relevance is stored beside their activations,
        in a second cube on the same frame grid and shards (``relevance.zarr``, float32); the
        manifest lists them under ``relevance`` (absent when none, as in runs made before).

        Creating a run that exists with the same manifest returns it (so a crashed
        creation or a resumed ingest can call this again); a different manifest is refused.
        """
        check_run_id(run_id)
        cube.check_codec(codec)
        names = [layer.name for layer in layers]
        if len(set(names)) != len(names):
            raise RunError(f"layer names repeat in {names}")
        unknown = [name for name in relevance if name not in names]
        if unknown or len(set(relevance)) != len(relevance):
            raise RunError(
                f"relevance layers {list(relevance)} must be distinct layers of the run ({', '.join(names)})"
            )
        manifest = {
            "run_id": run_id,
            "manifest_version": MANIFEST_VERSION,
            "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "model": dict(model),
            "corpus": dict(corpus),
            "layers": [layer.to_dict() for layer in layers],
            "plan": plan.to_dict(),
            "storage": {"codec": codec, "zstd_level": int(zstd_level), "chunk_rows": plan.chunk_rows},
            "software": software_versions(),
        }
        if relevance:
            manifest["relevance"] = list(relevance)
        # Round-trip through JSON so comparisons see what a reader would see.
        manifest = json.loads(canonical_json(manifest))
        loc = lake_loc.child("runs", run_id)
        # run.json is created once, exclusively: of processes creating a run at once one writes
        # it and the others compare their manifest with it.
        if not loc.create_exclusive(canonical_json(manifest, indent=1).encode("utf-8"), "run.json"):
            existing = cls.load(lake_loc, run_id)
            old, new = _identity(existing.manifest), _identity(manifest)
            if old != new:
                differ = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
                raise RunConflictError(
                    f"run {run_id!r} already exists in {lake_loc.url} with a different "
                    f"{', '.join(differ)}; choose another run id or remove the old run"
                )
            run = existing
        else:
            run = cls(lake_loc, run_id, manifest)
        storage = run.manifest.get("storage", {})
        level, codec = int(storage.get("zstd_level", zstd_level)), storage.get("codec", "zstd")
        grid = (plan.total_rows, plan.rows_per_shard, plan.chunk_rows)
        cube.create_cube(run.cube_loc, list(layers), *grid, level, codec)
        if run.relevance_layers:
            cube.create_cube(run.relevance_loc, run.relevance_layers, *grid, level, codec)
        return run

    # ------------------------------------------------------------ manifest views

    @cached_property
    def plan(self) -> Plan:
        """The run's parts (parsed on first use: a run of many parts is opened without it)."""
        try:
            return Plan.from_dict(self.manifest["plan"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptFileError(f"{self.loc.describe('run.json')} is malformed ({exc!r})") from exc

    @cached_property
    def plan_totals(self) -> tuple[int, int, int]:
        """Parts, utterances and frames of the plan, from its header."""
        plan = self.manifest["plan"]
        if not isinstance(plan.get("parts"), list):
            raise TypeError("the plan's parts are not a list")
        return len(plan["parts"]), int(plan["n_utterances"]), int(plan["n_frames"])

    @cached_property
    def layers(self) -> list[LayerSpec]:
        return [LayerSpec.from_dict(d) for d in self.manifest["layers"]]

    @property
    def layer_names(self) -> list[str]:
        return [layer.name for layer in self.layers]

    def layer(self, name: str) -> LayerSpec:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise LayerNotFoundError(
            f"run {self.run_id!r} has no layer {name!r}; its layers are: {', '.join(self.layer_names)}"
        )

    @property
    def cube_loc(self) -> Location:
        return self.loc.child("activations.zarr")

    @cached_property
    def relevance_layers(self) -> list[LayerSpec]:
        """Layers whose relevance is stored (float32, the activations' units), in manifest order."""
        by_name = {layer.name: layer for layer in self.layers}
        return [
            LayerSpec(name, by_name[name].units, module=by_name[name].module, dtype=RELEVANCE_DTYPE)
            for name in self.manifest.get("relevance", [])
        ]

    @property
    def relevance_loc(self) -> Location:
        return self.loc.child("relevance.zarr")

    def has_relevance(self, layer: str) -> bool:
        return any(spec.name == layer for spec in self.relevance_layers)

    # ------------------------------------------------------------ commits

    def commits(self) -> VisibleMarkers:
        """Commit markers of the visible (committed) parts, by part id.

        One listing of ``commits/`` per call. The markers of parts a compaction covers come from
        its manifest (one object, re-read only when replaced); any other marker is read once and
        cached, since a part's marker only ever reappears with the same content (re-runs rewrite
        identical data).
        """
        return self.snapshot().markers

    def compaction(self) -> Compaction | None:
        """The run's compaction manifest (``None`` if never compacted), re-read only when replaced."""
        stamp = self.loc.stamp(MANIFEST)
        if stamp is None:
            self._compaction = (None, None)
            return None
        if stamp and self._compaction[0] == stamp:
            return self._compaction[1]
        compaction = read_manifest(self.loc)
        self._compaction = (stamp, compaction)
        return compaction

    def snapshot(self) -> RunSnapshot:
        """The visible parts' markers and the compaction manifest they were read with (a reader
        of several tables takes one and passes it on, so all see the same parts)."""
        compaction = self.compaction()
        covered = compaction.parts if compaction is not None else {}
        names = [n for n in self.loc.list_names("commits") if n.endswith(".json") and not n.startswith(".")]
        read: dict[str, CommitMarker] = {}
        ids: list[str] = []
        own: dict[str, CommitMarker] = {}
        for name in names:
            part_id = name[: -len(".json")]
            if part_id in covered:
                ids.append(part_id)
                continue
            marker = self._markers.get(name)
            if marker is None:
                where = self.loc.describe("commits", name)
                try:
                    marker = CommitMarker.from_dict(self.loc.read_json("commits", name), where)
                except FileNotFoundError:
                    continue  # uncommitted since the listing
            read[name] = marker
            ids.append(marker.part_id)
            own[marker.part_id] = marker
        self._markers = read
        return RunSnapshot(VisibleMarkers(ids, own, compaction), compaction)

    def committed_parts(self) -> list[Part]:
        done = self.commits()
        return [u for u in self.plan.parts if u.part_id in done]

    def pending_parts(self) -> list[Part]:
        """Parts without a commit marker: what a resumed ingest still has to run."""
        done = self.commits()
        return [u for u in self.plan.parts if u.part_id not in done]

    def committed_frame_ids(self) -> np.ndarray:
        """Every row that holds a frame of a committed part, ascending. ``[frames] int64``"""
        parts = [np.arange(m.row_start, m.used_stop, dtype=np.int64) for m in self._sorted_markers()]
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def _sorted_markers(self) -> list[CommitMarker]:
        return sorted(self.commits().values(), key=lambda m: m.row_start)

    def part_writer(self, part_id: str) -> PartWriter:
        return PartWriter(self, self.plan.part(part_id))

    # ------------------------------------------------------------ activations

    def _array(self, layer: str, relevance: bool = False) -> Any:  # a zarr.Array, whose stubs type indexing too loosely
        self._spec(layer, relevance)
        return cube.open_layer(self.relevance_loc if relevance else self.cube_loc, layer)

    def _spec(self, layer: str, relevance: bool) -> LayerSpec:
        spec = self.layer(layer)
        if not relevance:
            return spec
        for stored in self.relevance_layers:
            if stored.name == layer:
                return stored
        raise LayerNotFoundError(
            f"run {self.run_id!r} stores no relevance of layer {layer!r}"
            + (
                f" (only of {', '.join(s.name for s in self.relevance_layers)})"
                if self.relevance_layers
                else "; ingest with --relevance to store it"
            )
        )

    def _check_shards(self, layer: str, shard_indices: Iterable[int], relevance: bool = False) -> None:
        needed = set(int(s) for s in shard_indices)
        key = f"relevance/{layer}" if relevance else layer
        loc = self.relevance_loc if relevance else self.cube_loc
        seen = self._shards_seen.get(key)
        if seen is None or not needed <= seen:
            seen = set()
            for rel in loc.find(layer, "c"):
                head = rel.split("/", 1)[0]
                if head.isdigit():
                    seen.add(int(head))
            self._shards_seen[key] = seen
        missing = sorted(needed - seen)
        if missing:
            path = loc.describe(cube.shard_key(layer, missing[0]))
            raise IntegrityError(
                f"{len(missing)} shard(s) of committed data are missing, first {path}; "
                f"`neurolake verify --repair` re-does the part that owns rows from {missing[0] * self.plan.rows_per_shard}"
            )

    def _committed_ranges(self) -> tuple[np.ndarray, np.ndarray]:
        """The committed parts' first rows and used stops, in row order."""
        markers = self._sorted_markers()
        starts = np.array([m.row_start for m in markers], dtype=np.int64)
        stops = np.array([m.used_stop for m in markers], dtype=np.int64)
        return starts, stops

    def _shards_of(self, sorted_ids: np.ndarray) -> np.ndarray:
        """The shards holding ``sorted_ids``: where ``id // rows_per_shard`` changes (no hashing)."""
        shards = sorted_ids // self.plan.rows_per_shard
        return shards[np.flatnonzero(np.diff(shards, prepend=-1))]

    def check_frame_ids(self, frame_ids: np.ndarray) -> None:
        """Raise :class:`OutOfRangeError` unless every id is a frame row of a committed part."""
        starts, stops = self._committed_ranges()
        idx = np.searchsorted(starts, frame_ids, side="right") - 1
        ok = idx >= 0
        ok[ok] &= frame_ids[ok] < stops[idx[ok]]
        if not ok.all():
            bad = frame_ids[~ok]
            raise OutOfRangeError(
                f"{bad.size} frame id(s) of run {self.run_id!r} are not rows of a committed part "
                f"(first: {int(bad[0])}; the run has {self.plan.n_frames} planned frames, "
                f"{int((stops - starts).sum())} committed)"
            )

    def read_rows(
        self,
        layer: str,
        frame_ids: Sequence[int] | np.ndarray,
        relevance: bool = False,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """Activations of ``layer`` at the given frames, in the order given. ``[n, units]``

        Rows are gathered chunk by chunk (each touched chunk is decoded once, whatever
        the number of rows taken from it). Frames outside committed parts are refused.
        With ``relevance``, the layer's stored relevance (float32) instead. ``out`` (C-contiguous,
        ``[n, units]`` of the layer's dtype; the frames sorted and distinct) receives the rows
        and is returned: a pass reading block after block into one buffer skips the fresh
        pages of a new array per block, which cost about as much as decoding the rows.
        """
        ids = np.asarray(frame_ids, dtype=np.int64).reshape(-1)
        spec = self._spec(layer, relevance)
        if out is not None:
            if out.shape != (ids.size, spec.units) or out.dtype != np.dtype(spec.dtype) or not out.flags.c_contiguous:
                raise ValueError(
                    f"read_rows: out must be a C-contiguous {spec.dtype} array of shape {(ids.size, spec.units)}, "
                    f"not {out.dtype} {out.shape}"
                )
            if ids.size > 1 and not bool(np.all(ids[1:] > ids[:-1])):
                raise ValueError("read_rows into out takes sorted, distinct frame ids")
        if ids.size == 0:
            return np.zeros((0, spec.units), dtype=spec.dtype) if out is None else out
        self.check_frame_ids(ids)
        uniq, inverse = (ids, None) if out is not None else np.unique(ids, return_inverse=True)
        self._check_shards(layer, self._shards_of(uniq), relevance)
        reader = self._reader(layer, relevance)
        if reader is not None:
            data = reader.read_rows(uniq, out=out)
        elif out is not None:
            out[...] = self._array(layer, relevance).get_orthogonal_selection((uniq, slice(None)))
            data = out
        else:
            data = self._array(layer, relevance).get_orthogonal_selection((uniq, slice(None)))
        return data if inverse is None or (uniq.size == ids.size and np.array_equal(uniq, ids)) else data[inverse]

    def visit_rows(
        self,
        layer: str,
        frame_ids: np.ndarray,
        visit: Callable[[np.ndarray, int], None],
        relevance: bool = False,
    ) -> None:
        """Stream ``layer``'s rows at ``frame_ids`` (sorted, unique) through ``visit(rows, start)``,
        a few chunks at a time: ``rows`` are those of ``frame_ids[start : start + len(rows)]``.

        For passes that reduce rows (sums, counts): each call runs on the thread that decoded
        its rows, while they are in its cache, and no output array is made. Calls run
        concurrently and in no set order; ``rows`` is only valid during the call. Arrays
        that Zarr reads (not in the lake's format) are visited 16 shards' frames at a time.
        Frames outside committed parts are refused, as by :meth:`read_rows`.
        """
        ids = self._checked_sorted_ids(layer, frame_ids, relevance, "visit_rows")
        if ids.size == 0:
            return
        spec = self._spec(layer, relevance)
        reader = self._reader(layer, relevance)
        if reader is not None:
            reader.visit_rows(ids, visit)
            return
        array = self._array(layer, relevance)
        step = 16 * self.plan.rows_per_shard  # through Zarr, a block of frames at a time
        for start in range(0, ids.size, step):
            rows = array.get_orthogonal_selection((ids[start : start + step], slice(None)))
            visit(np.asarray(rows, spec.dtype), start)

    def _checked_sorted_ids(
        self, layer: str, frame_ids: Sequence[int] | np.ndarray, relevance: bool, caller: str
    ) -> np.ndarray:
        """``frame_ids`` as int64, refused unless sorted, distinct, frames of committed parts
        and in shards that exist (sorted ids are checked by counting them per committed range,
        not by a search per id)."""
        ids = np.asarray(frame_ids, dtype=np.int64).reshape(-1)
        if ids.size > 1 and not bool(np.all(ids[1:] > ids[:-1])):
            raise ValueError(f"{caller} takes sorted, distinct frame ids")
        if ids.size:
            starts, stops = self._committed_ranges()
            if int((np.searchsorted(ids, stops) - np.searchsorted(ids, starts)).sum()) != ids.size:
                self.check_frame_ids(ids)
            self._check_shards(layer, self._shards_of(ids), relevance)
        return ids

    def read_range(self, layer: str, row_start: int, row_stop: int) -> np.ndarray:
        """Rows ``[row_start, row_stop)`` of a layer, which must lie in committed parts."""
        if row_stop <= row_start:
            return np.zeros((0, self.layer(layer).units), dtype=self.layer(layer).dtype)
        self.check_frame_ids(np.array([row_start, row_stop - 1], dtype=np.int64))
        rps = self.plan.rows_per_shard
        self._check_shards(layer, range(row_start // rps, (row_stop - 1) // rps + 1))
        reader = self._reader(layer, False)
        if reader is not None:
            return reader.read_range(row_start, row_stop)
        return self._array(layer)[row_start:row_stop]

    def layer_dask(
        self, layer: str, relevance: bool = False, frame_ids: Sequence[int] | np.ndarray | None = None
    ) -> da.Array:
        """The whole layer as a dask array ``[total_rows, units]``, or with ``frame_ids``
        (sorted, distinct frames of committed parts) those rows only, ``[len(frame_ids), units]``.

        Rows of uncommitted parts and padding rows read as zeros; select real frames with
        :meth:`committed_frame_ids`. A block is a run of whole shards, read and decoded by the
        block's dask task (dask's threads decode blocks in parallel): as many shards as fit in
        dask's ``array.chunk-size`` (128 MiB unless configured), but no more than the layer's
        shards shared out as four blocks per decoding thread. Per-task costs of dask's scheduler
        made one-shard blocks (6 MB for 768 float16 units) read at about half the speed of
        the numpy path. With ``frame_ids`` a block holds the ids of the same shards and reads
        only the chunks they touch.
        """
        import dask.array as da
        from dask.base import tokenize

        spec = self._spec(layer, relevance)
        rps, total = self.plan.rows_per_shard, self.plan.total_rows
        block_rows = rps * self._dask_block_shards(spec.units * np.dtype(spec.dtype).itemsize)
        ids = None if frame_ids is None else self._checked_sorted_ids(layer, frame_ids, relevance, "layer_dask")
        if ids is not None and ids.size == 0:
            return da.zeros((0, spec.units), dtype=spec.dtype)
        reader = self._reader(layer, relevance)
        if reader is None:
            arr = self._array(layer, relevance)
            whole = da.from_zarr(arr, chunks=(block_rows, arr.shape[1]))
            return whole if ids is None else whole[ids]
        if ids is not None:
            cuts = np.searchsorted(ids, np.arange(block_rows, int(ids[-1]) + 1, block_rows))
            blocks = [b for b in np.split(ids, cuts) if b.size]
            name = "neurolake-rows-" + tokenize(reader.loc.url, layer, relevance, ids)
            graph = {(name, i, 0): (_read_rows_block, reader, block) for i, block in enumerate(blocks)}
            chunks = (tuple(b.size for b in blocks), (spec.units,))
            return LayerArray.of(da.Array(graph, name, chunks, dtype=spec.dtype), reader, ids)
        whole = da.from_array(
            _ReaderArray(reader, total),
            chunks=(block_rows, spec.units),
            asarray=False,
            fancy=False,
            lock=False,
            name="neurolake-" + tokenize(reader.loc.url, layer, relevance, total, block_rows),
        )
        return LayerArray.of(whole, reader, (0, total))

    def _dask_block_shards(self, row_bytes: int) -> int:
        """Shards per block of :meth:`layer_dask` for rows of ``row_bytes``."""
        import dask
        from dask.utils import parse_bytes

        rps = self.plan.rows_per_shard
        fit = int(parse_bytes(dask.config.get("array.chunk-size"))) // (rps * row_bytes)
        shards = -(-self.plan.total_rows // rps)
        return max(1, min(fit, -(-shards // (4 * read_threads()))))

    def _reader(self, layer: str, relevance: bool) -> LayerReader | None:
        """The direct shard reader of a layer, or None where its array is not in the format
        :func:`cube.encode_shard` writes (then Zarr reads it)."""
        key = f"relevance/{layer}" if relevance else layer
        if key not in self._readers:
            spec = self._spec(layer, relevance)
            arr = self._array(layer, relevance)
            plain = (
                tuple(arr.shards or ()) == (self.plan.rows_per_shard, spec.units)
                and tuple(arr.chunks) == (self.plan.chunk_rows, spec.units)
                and len(arr.compressors) == 1
                and isinstance(arr.compressors[0], ZstdCodec | ZeroMaskCodec)
                and not arr.filters
                and getattr(arr.serializer, "endian", None) in (None, Endian.little)
                and np.dtype(arr.dtype) == np.dtype(spec.dtype)
            )
            loc = self.relevance_loc if relevance else self.cube_loc
            self._readers[key] = (
                LayerReader(loc, layer, spec.units, spec.dtype, self.plan.rows_per_shard, self.plan.chunk_rows)
                if plain
                else None
            )
        return self._readers[key]

    # ------------------------------------------------------------ tables

    def table_files(self, name: str, snapshot: RunSnapshot | None = None) -> list[TableFile]:
        """The committed Parquet files of a table, in row order, each with the rows of it that
        belong to visible parts: the compacted files for the parts a compaction covers, the
        parts' own files for the others."""
        if name not in tables.SCHEMAS:
            raise SchemaError(f"unknown table {name!r}; tables are {', '.join(tables.TABLE_NAMES)}")
        markers, compaction = snapshot or self.snapshot()
        sources: list[tuple[int, TableFile]] = []
        if compaction is not None:
            every_row = compaction.whole and markers.n_covered() == len(compaction.parts)
            for f in compaction.files.get(name, ()):
                if every_row:  # no covered part gone since: whole files, no detail needed
                    sources.append((f.row_start, TableFile(f.key, f.rows, f.sha256, ((0, f.rows),))))
                    continue
                visible = [s for s in compaction.slices(f) if s.part_id in markers]
                if visible:
                    first = min(markers[s.part_id].row_start for s in visible)
                    sources.append((first, TableFile(f.key, f.rows, f.sha256, _row_ranges(visible))))
        for marker in markers.uncovered().values():
            entry = marker.tables.get(name)
            if entry is not None:
                sources.append((marker.row_start, TableFile(entry.key, entry.rows, entry.sha256, ((0, entry.rows),))))
        return [f for _, f in sorted(sources, key=lambda source: source[0])]

    def table_keys(self, name: str) -> list[str]:
        """Paths (relative to the run) of the committed Parquet files of a table."""
        return [f.key for f in self.table_files(name)]

    def read_table(self, name: str, verify: bool = True) -> pa.Table:
        """The committed rows of a table, in row order, checked against their checksums."""
        if name not in tables.SCHEMAS:
            raise SchemaError(f"unknown table {name!r}; tables are {', '.join(tables.TABLE_NAMES)}")
        parts = [table for _, table in self.part_tables(name, verify)]
        if not parts:
            return tables.SCHEMAS[name].empty_table()
        return pa.concat_tables(parts, promote_options="default")

    def part_tables(self, name: str, verify: bool = True) -> Iterator[tuple[CommitMarker, pa.Table]]:
        """Each visible part's rows of a table, in row order, from wherever they are stored (a
        compacted file is read once for all its parts). Files are fetched a few at a time ahead
        of the consumer and checked against their checksums."""
        markers, compaction = self.snapshot()
        stored: dict[str, tuple[str, str, PartSlice | None]] = {}  # part -> key, sha256, slice
        if compaction is not None:
            for f in compaction.files.get(name, ()):
                for s in compaction.slices(f):
                    stored[s.part_id] = (f.key, f.sha256, s)
        order = []
        for marker in sorted(markers.values(), key=lambda m: m.row_start):
            if compaction is not None and marker.part_id in compaction.parts:
                if marker.part_id in stored:
                    order.append((marker, *stored[marker.part_id]))
            elif name in marker.tables:
                entry = marker.tables[name]
                order.append((marker, entry.key, entry.sha256, None))
        last_use = {key: i for i, (_, key, _, _) in enumerate(order)}

        def fetch(key: str, sha256: str) -> pa.Table:
            return tables.decode_parquet(self._read_table_bytes(key, sha256, verify))

        with ThreadPoolExecutor(max_workers=_READ_THREADS, thread_name_prefix="neurolake-read") as pool:
            fetched: dict[str, Future] = {}
            ahead = 0
            for i, (marker, key, _, piece) in enumerate(order):
                while ahead < len(order) and ahead < i + 4 * _READ_THREADS:
                    _, k, sha, _ = order[ahead]
                    if k not in fetched:
                        fetched[k] = pool.submit(fetch, k, sha)
                    ahead += 1
                table = fetched[key].result()
                if last_use[key] == i:
                    del fetched[key]
                yield marker, table if piece is None else table.slice(piece.offset, piece.rows)

    def _read_table_bytes(self, key: str, sha256: str, verify: bool) -> bytes:
        where = self.loc.describe(key)
        try:
            data = self.loc.read_bytes(key)
        except FileNotFoundError as exc:
            raise IntegrityError(
                f"{where} is missing although its parts are committed; `neurolake verify --repair` re-does them"
            ) from exc
        if verify and sha256_hex(data) != sha256:
            raise IntegrityError(
                f"checksum mismatch for {where}; the file changed after commit; `neurolake verify --repair` re-does "
                "the parts it holds"
            )
        return data

    # ------------------------------------------------------------ checks and status

    def verify(self) -> list[str]:
        """Check every committed part: files present, checksums equal. Returns the problems found."""
        return [message for messages in self.damaged_parts().values() for message in messages]

    def damaged_parts(self) -> dict[str, list[str]]:
        """``part_id -> problems`` of the committed parts whose files are missing or differ from
        their commit marker's checksums (empty when every committed part is intact). A part a
        compaction covers is checked against the compacted files that hold its rows (each read
        once), not its own table files.

        Files are read and checksummed on a pool of threads, the parts a few dozen ahead of the
        one whose problems are collected (in object storage each read is a round trip: one at
        a time, a run of thousands of parts took as many round trips end to end).
        """
        damaged: dict[str, list[str]] = {}
        self._shards_seen.clear()
        markers, compaction = self.snapshot()
        compacted: dict[str, list[CompactedFile]] = {}
        if compaction is not None:
            for files in compaction.files.values():
                for f in files:
                    for s in compaction.slices(f):
                        compacted.setdefault(s.part_id, []).append(f)
        rps = self.plan.rows_per_shard
        with ThreadPoolExecutor(max_workers=_READ_THREADS, thread_name_prefix="neurolake-verify") as pool:
            table_checks: dict[str, Future] = {}  # a file's problem, each file read once

            def table_check(key: str, sha256: str) -> Future:
                if key not in table_checks:
                    table_checks[key] = pool.submit(self._table_problem, key, sha256)
                return table_checks[key]

            def start(marker: CommitMarker) -> list[_Check]:
                checks: list[_Check] = []
                if compaction is not None and marker.part_id in compaction.parts:
                    checks += [table_check(f.key, f.sha256) for f in compacted.get(marker.part_id, [])]
                else:
                    checks += [table_check(entry.key, entry.sha256) for entry in marker.tables.values()]
                entries = [(name, entry, False) for name, entry in marker.layers.items()]
                entries += [(name, entry, True) for name, entry in marker.relevance.items()]
                for layer_name, layer_entry, relevance in entries:
                    shards = range(marker.row_start // rps, marker.row_stop // rps)
                    loc = self.relevance_loc if relevance else self.cube_loc
                    try:
                        self._check_shards(layer_name, shards, relevance)
                    except IntegrityError as exc:
                        checks.append(str(exc))
                        continue
                    digests = [pool.submit(_shard_digest, loc, cube.shard_key(layer_name, i)) for i in shards]
                    what = "relevance of layer" if relevance else "layer"
                    problem = (
                        f"checksum mismatch for {what} {layer_name!r} rows [{marker.row_start}, {marker.row_stop}) "
                        f"of part {marker.part_id} in {loc.describe(layer_name)}; "
                        "`neurolake verify --repair` re-does the part"
                    )
                    checks.append((digests, layer_entry.sha256, problem))
                return checks

            def finish(marker: CommitMarker, checks: list[_Check]) -> None:
                problems = damaged.setdefault(marker.part_id, [])
                for check in checks:
                    if isinstance(check, str):
                        problems.append(check)
                    elif isinstance(check, Future):
                        if (found := check.result()) is not None:
                            problems.append(found)
                    else:
                        digests, sha256, problem = check
                        if cube.combine_digests([d.result() for d in digests]) != sha256:
                            problems.append(problem)

            pending: deque[tuple[CommitMarker, list[_Check]]] = deque()
            for marker in sorted(markers.values(), key=lambda m: m.row_start):
                pending.append((marker, start(marker)))
                if len(pending) > _VERIFY_PARTS_AHEAD:
                    finish(*pending.popleft())
            while pending:
                finish(*pending.popleft())
        return {part: problems for part, problems in damaged.items() if problems}

    def _table_problem(self, key: str, sha256: str) -> str | None:
        """What is wrong with a committed table file (missing, or not its checksum), or None."""
        try:
            self._read_table_bytes(key, sha256, verify=True)
        except IntegrityError as exc:
            return str(exc)
        return None

    def uncommit(self, *part_ids: str) -> None:
        """Remove parts' commit markers (they become pending: invisible, and re-done by ingest).

        A compaction covering them stops covering them afterwards (their rows in the compacted
        files are skipped from then on), so a part committed again is read from its own new
        files. A process stopped in between leaves the part invisible all the same: a covered
        part is visible only while its marker exists.
        """
        for part_id in part_ids:
            self.plan.part(part_id)
        for part_id in part_ids:
            self.loc.remove("commits", f"{part_id}.json")
        compaction = self.compaction()
        if compaction is not None and set(part_ids) & set(compaction.parts):
            write_manifest(self.loc, compaction.without(part_ids))

    def info(self, with_size: bool = False, snapshot: RunSnapshot | None = None) -> RunInfo:
        markers = (snapshot or self.snapshot()).markers
        n_parts, n_utterances, n_frames = self.plan_totals
        if not markers:
            status = "planned"
        elif len(markers) < n_parts:
            status = "partial"
        else:
            status = "complete"
        return RunInfo(
            run_id=self.run_id,
            status=status,
            model=_spec_label(self.manifest["model"]),
            corpus=_spec_label(self.manifest["corpus"]),
            n_utterances=n_utterances,
            n_frames=n_frames,
            frames_committed=markers.rows_used(),
            parts_committed=len(markers),
            parts_total=n_parts,
            layers=len(self.layers),
            created_at=str(self.manifest.get("created_at", "")),
            size_bytes=self.loc.size() if with_size else None,
        )

    # ------------------------------------------------------------ derived data

    def derived(self, kind: str, spec: Mapping[str, Any]) -> Derived:
        """Derived data of this run for a spec: ``derived/<kind>/<spec-hash>/``."""
        return Derived.at(self.loc.child("derived"), kind, spec)


class _CubeRows:
    """The rows one part writes into one cube (activations or relevance): whole shards only,
    compressed and written on the shared pool, with backpressure."""

    def __init__(self, run: Run, part: Part, loc: Location, layers: Sequence[LayerSpec], what: str):
        self.run = run
        self.part = part
        self.loc = loc
        self.what = what
        self.layers = {layer.name: layer for layer in layers}
        self._pending: dict[str, list[np.ndarray]] = {name: [] for name in self.layers}
        self._pending_rows = dict.fromkeys(self.layers, 0)
        self._flushed = dict.fromkeys(self.layers, 0)
        self._shard_digests: dict[str, list[Future]] = {name: [] for name in self.layers}
        self._in_flight: deque[Future] = deque()
        storage = run.manifest.get("storage", {})
        self._zstd_level = int(storage.get("zstd_level", cube.DEFAULT_ZSTD_LEVEL))
        self._codec = storage.get("codec", "zstd")

    def append(self, layer: str, block: np.ndarray) -> None:
        spec = self.layers.get(layer)
        if spec is None and self.what == "activations":
            raise LayerNotFoundError(
                f"run {self.run.run_id!r} has no layer {layer!r}; its layers are: {', '.join(self.layers)}"
            )
        if spec is None:
            raise LayerNotFoundError(
                f"run {self.run.run_id!r} stores no {self.what} of layer {layer!r}; "
                f"it stores that of: {', '.join(self.layers) or 'no layer'}"
            )
        block = np.asarray(block)
        if block.ndim != 2 or block.shape[1] != spec.units:
            raise SchemaError(f"layer {layer!r} takes [rows, {spec.units}] blocks, got shape {block.shape}")
        written = self._flushed[layer] + self._pending_rows[layer]
        if written + block.shape[0] > self.part.rows_used:
            first = self.part.row_start + written
            raise OutOfRangeError(
                f"part {self.part.part_id} of run {self.run.run_id!r} owns frame rows "
                f"[{self.part.row_start}, {self.part.used_stop}); refusing rows [{first}, {first + block.shape[0]}) "
                f"of layer {layer!r}"
            )
        self._pending[layer].append(block.astype(spec.dtype, copy=False))
        self._pending_rows[layer] += block.shape[0]
        rps = self.run.plan.rows_per_shard
        if self._pending_rows[layer] >= rps:
            self._flush(layer, whole_shards_only=True)

    def _flush(self, layer: str, whole_shards_only: bool) -> None:
        rps = self.run.plan.rows_per_shard
        data = np.concatenate(self._pending[layer]) if len(self._pending[layer]) > 1 else self._pending[layer][0]
        if whole_shards_only:
            n = (data.shape[0] // rps) * rps
            head, rest = data[:n], data[n:]
        else:
            pad = self.part.row_stop - self.part.row_start - self._flushed[layer] - data.shape[0]
            head = np.concatenate([data, np.zeros((pad, data.shape[1]), dtype=data.dtype)]) if pad else data
            rest = data[:0]
        start = self.part.row_start + self._flushed[layer]
        for lo in range(0, head.shape[0], rps):
            self._submit_shard(layer, (start + lo) // rps, head[lo : lo + rps])
        self._flushed[layer] += head.shape[0]
        self._pending[layer] = [rest] if rest.shape[0] else []
        self._pending_rows[layer] = rest.shape[0]

    def _submit_shard(self, layer: str, shard_index: int, block: np.ndarray) -> None:
        # Backpressure: at most a few shards per core wait to be compressed and written,
        # so a slow disk or bucket holds the producer back instead of filling memory.
        while len(self._in_flight) >= 2 * _WRITE_THREADS:
            self._in_flight.popleft().result()
        future = _write_pool.get().submit(self._write_shard, layer, shard_index, block)
        self._in_flight.append(future)
        self._shard_digests[layer].append(future)

    def _write_shard(self, layer: str, shard_index: int, block: np.ndarray) -> bytes:
        data, digest = cube.encode_shard(block, self.run.plan.chunk_rows, self._zstd_level, self._codec)
        self.loc.write_bytes(data, cube.shard_key(layer, shard_index))
        return digest

    def flush(self) -> None:
        while self._in_flight:
            self._in_flight.popleft().result()

    def check_complete(self) -> None:
        for layer in self.layers:
            got = self._flushed[layer] + self._pending_rows[layer]
            if got != self.part.rows_used:
                what = "layer" if self.what == "activations" else f"the {self.what} of layer"
                raise IntegrityError(
                    f"part {self.part.part_id}: {what} {layer!r} got {got} rows but the part has {self.part.rows_used} frames"
                )

    def finish(self) -> dict[str, LayerEntry]:
        """Pad and write every layer's last shard; the layers' marker entries."""
        for layer in self.layers:
            if self._flushed[layer] < self.part.row_stop - self.part.row_start:
                self._flush(layer, whole_shards_only=False)
        entries = {
            name: LayerEntry(
                rows=self.part.row_stop - self.part.row_start,
                sha256=cube.combine_digests([f.result() for f in futures]),
            )
            for name, futures in self._shard_digests.items()
        }
        self._in_flight.clear()
        return entries


class PartWriter:
    """Writes one part: layer rows (whole shards only), table files, then the marker.

    Rows are appended per layer in frame order; each time a shard fills up it is
    written. A run that stores relevance takes each of those layers' relevance rows too
    (:meth:`append_relevance`), written the same way into its own cube. :meth:`commit` pads the
    last shards, writes the tables not yet written and finally the commit marker, so a part
    that never commits leaves no visible activations nor relevance. A committed part's marker
    is never removed here: ingest writes pending parts only, under the run's lease, and a
    damaged part is uncommitted explicitly (:meth:`Run.uncommit`) before it is written again.
    """

    def __init__(self, run: Run, part: Part):
        self.run = run
        self.part = part
        self._activations = _CubeRows(run, part, run.cube_loc, run.layers, "activations")
        self._relevance = _CubeRows(run, part, run.relevance_loc, run.relevance_layers, "relevance")
        self._tables: dict[str, TableEntry] = {}

    # ------------------------------------------------------------ activations

    def append(self, layer: str, block: np.ndarray) -> None:
        """Append ``[n, units]`` rows of ``layer`` after those already appended."""
        self._activations.append(layer, block)

    def append_relevance(self, layer: str, block: np.ndarray) -> None:
        """Append ``[n, units]`` rows of ``layer``'s relevance after those already appended."""
        self._relevance.append(layer, block)

    def flush(self) -> None:
        """Wait until every whole shard appended so far is on storage (the part stays invisible)."""
        self._activations.flush()
        self._relevance.flush()

    # ------------------------------------------------------------ tables

    def write_table(self, name: str, data: pa.Table | Mapping[str, Any]) -> TableEntry:
        """Write this part's rows of ``utterances``, ``frames`` or ``errors``."""
        table = tables.conform(name, data, self.run.run_id)
        lo, hi = self.part.row_start, self.part.used_stop
        id_column = {"frames": "frame_id", "utterances": "first_frame_id"}.get(name)
        if id_column and table.num_rows:
            ids = table.column(id_column).to_numpy(zero_copy_only=False)
            if ids.min() < lo or ids.max() >= hi:
                raise OutOfRangeError(
                    f"table {name!r} of part {self.part.part_id} has {id_column} values outside the part's rows [{lo}, {hi})"
                )
        key = f"tables/{name}/{self.part.part_id}.parquet"
        data_bytes = tables.encode_parquet(table)
        self.run.loc.write_bytes(data_bytes, key)
        entry = TableEntry(key=key, rows=table.num_rows, sha256=sha256_hex(data_bytes))
        self._tables[name] = entry
        return entry

    # ------------------------------------------------------------ commit

    def commit(self, lease: LeaseToken | None = None) -> CommitMarker:
        """Finish every layer, write missing tables, then the marker that makes the part visible
        (only while ``lease``, where given, is still the run's write lease)."""
        self._activations.check_complete()
        self._relevance.check_complete()
        layers = self._activations.finish()
        relevance = self._relevance.finish()
        for name in ("utterances", "frames"):
            if name not in self._tables:
                raise SchemaError(f"part {self.part.part_id}: write the {name!r} table before committing")
        if "errors" not in self._tables:
            self.write_table("errors", {})
        marker = CommitMarker(
            part_id=self.part.part_id,
            row_start=self.part.row_start,
            row_stop=self.part.row_stop,
            rows_used=self.part.rows_used,
            utterance_ids=tuple(self.part.utterance_ids),
            tables=dict(sorted(self._tables.items())),
            layers=layers,
            relevance=relevance,
        )
        if lease is not None:
            lease.check()  # a writer that lost the run's lease never makes its part visible
        self.run.loc.write_json(marker.to_dict(), "commits", f"{self.part.part_id}.json")
        log.debug("committed part %s of run %s", self.part.part_id, self.run.run_id)
        return marker
