"""The lake: ``lake.json`` at the root of any fsspec URL, and the runs below it."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from neurolake.errors import CorruptFileError, LakeError, LakeVersionError, NotALakeError
from neurolake.store.cube import DEFAULT_CODEC, DEFAULT_ZSTD_LEVEL, LayerSpec
from neurolake.store.location import Location, canonical_json
from neurolake.store.plan import Plan
from neurolake.store.run import Run, RunInfo

log = logging.getLogger(__name__)

FORMAT = "neurolake"
#: 2: pieces of ingest work are "parts" (``p000000``, ``part_id``); 1 called them "units".
VERSION = 2


def _readable_header(loc: Location) -> bool:
    """Whether ``lake.json`` exists; access problems become one clear :class:`LakeError`."""
    try:
        return loc.exists("lake.json")
    except PermissionError as exc:
        raise LakeError(
            f"access to {loc.url} was refused ({exc}); check the credentials "
            "(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, a profile, or storage_options)"
        ) from exc
    except OSError as exc:
        raise LakeError(f"cannot reach {loc.url} ({exc}); check the URL and the endpoint") from exc


class Lake:
    """A neurolake lake at a URL (directory path, ``file://``, ``memory://``, ``s3://``, ``gs://``)."""

    def __init__(self, loc: Location):
        self.loc = loc

    @property
    def url(self) -> str:
        return self.loc.url

    def __repr__(self) -> str:
        return f"Lake({self.url!r})"

    @classmethod
    def open(cls, url: str | Location, storage_options: Mapping[str, Any] | None = None, create: bool = False) -> Lake:
        """Open the lake at ``url``; with ``create=True`` make one where nothing is yet.

        A location that exists and holds other files but no ``lake.json`` is never turned
        into a lake: that is :class:`NotALakeError`, as is a missing location without ``create``.
        ``url`` may be a :class:`Location`, which carries its storage options.
        """
        loc = Location.of(url, storage_options)
        if _readable_header(loc):
            cls._check_header(loc)
            return cls(loc)
        if not create:
            raise NotALakeError(
                f"{loc.url} is not a neurolake lake (no lake.json); "
                "check --lake / $NEUROLAKE_LAKE, or create one with `neurolake demo` or Lake.create()"
            )
        return cls.create(url, storage_options)

    @classmethod
    def create(cls, url: str | Location, storage_options: Mapping[str, Any] | None = None) -> Lake:
        """Create a lake at ``url`` (or open the one already there)."""
        loc = Location.of(url, storage_options)
        if _readable_header(loc):
            cls._check_header(loc)
            return cls(loc)
        # A racing creator's half-written header (".lake.json.<id>.tmp") is not someone else's data.
        others = [n for n in loc.list_names() if not (n.startswith(".lake.json.") and n.endswith(".tmp"))]
        if others and not _readable_header(loc):  # (another process may have just made it)
            raise NotALakeError(
                f"{loc.url} exists and is not empty but holds no lake.json; "
                "refusing to turn it into a lake: choose an empty or new location"
            )
        loc.makedirs()
        header = canonical_json({"format": FORMAT, "version": VERSION}, indent=1).encode("utf-8")
        if loc.create_exclusive(header, "lake.json"):
            log.info("created lake at %s", loc.url)
        cls._check_header(loc)  # made by this call or by a process racing it
        return cls(loc)

    @staticmethod
    def _check_header(loc: Location) -> None:
        header = loc.read_json("lake.json")
        where = loc.describe("lake.json")
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise NotALakeError(
                f"{where} does not describe a neurolake lake (format {header.get('format') if isinstance(header, dict) else header!r})"
            )
        version = header.get("version")
        if not isinstance(version, int):
            raise CorruptFileError(f"{where} has no integer version")
        if version > VERSION:
            raise LakeVersionError(
                f"{where} has format version {version}, newer than this neurolake reads ({VERSION}); upgrade neurolake"
            )
        if version < VERSION:
            raise LakeVersionError(
                f"{where} has format version {version}, older than this neurolake reads ({VERSION}); "
                "ingest the runs again into a new lake"
            )

    # ------------------------------------------------------------ runs

    def list_runs(self) -> list[str]:
        return [name for name in self.loc.list_names("runs") if self.loc.exists("runs", name, "run.json")]

    def run(self, run_id: str) -> Run:
        return Run.load(self.loc, run_id)

    def create_run(
        self,
        run_id: str,
        *,
        model: Mapping[str, Any],
        corpus: Mapping[str, Any],
        layers: Sequence[LayerSpec],
        plan: Plan,
        zstd_level: int = DEFAULT_ZSTD_LEVEL,
        relevance: Sequence[str] = (),
        codec: str = DEFAULT_CODEC,
    ) -> Run:
        return Run.create(
            self.loc,
            run_id,
            model=model,
            corpus=corpus,
            layers=layers,
            plan=plan,
            zstd_level=zstd_level,
            relevance=relevance,
            codec=codec,
        )

    def run_infos(self, with_size: bool = True) -> list[RunInfo]:
        return [self.run(r).info(with_size=with_size) for r in self.list_runs()]
