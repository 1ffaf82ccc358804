"""Derived data: results computed from a run (statistics, bit matrices, mining results).

Each result lives in ``derived/<kind>/<spec-hash>/`` with the ``spec.json`` that produced
it. ``spec.json`` is written last, so its presence means the result is complete, and
asking again with an equal spec finds and reuses it.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from neurolake.errors import SpecError
from neurolake.store.location import Location, canonical_json

_KIND = re.compile(r"^[a-z][a-z0-9_-]{0,63}\Z")


def spec_hash(spec: Mapping[str, Any]) -> str:
    """Stable 16-hex-digit hash of a JSON-able spec (key order does not matter)."""
    try:
        text = canonical_json(dict(spec))
    except TypeError as exc:
        raise SpecError(f"spec is not JSON-serialisable: {exc}") from exc
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Derived:
    """One derived result: its folder, its spec, and whether it is complete."""

    loc: Location
    kind: str
    spec: dict
    spec_hash: str

    @classmethod
    def at(cls, base: Location, kind: str, spec: Mapping[str, Any]) -> Derived:
        if not _KIND.match(kind):
            raise SpecError(f"invalid derived-data kind {kind!r} (lower-case letters, digits, '-', '_')")
        h = spec_hash(spec)
        normalised = json.loads(canonical_json(dict(spec)))
        return cls(loc=base.child(kind, h), kind=kind, spec=normalised, spec_hash=h)

    @property
    def complete(self) -> bool:
        """True when a result for exactly this spec has been committed."""
        if not self.loc.exists("spec.json"):
            return False
        return self.loc.read_json("spec.json") == self.spec

    def write_bytes(self, data: bytes, name: str) -> None:
        self.loc.write_bytes(data, name)

    def read_bytes(self, name: str) -> bytes:
        return self.loc.read_bytes(name)

    def write_json(self, obj: Any, name: str) -> None:
        self.loc.write_json(obj, name)

    def read_json(self, name: str) -> Any:
        return self.loc.read_json(name)

    def commit(self) -> None:
        """Mark the result complete; call after every file of it is written."""
        self.loc.write_json(self.spec, "spec.json")

    def committed_at(self) -> datetime.datetime:
        """When the result was committed (its ``spec.json`` written), by the storage's clock."""
        modified: datetime.datetime = self.loc.fs.modified(self.loc.join("spec.json"))
        return modified


def list_derived(base: Location, kind: str) -> list[Derived]:
    """Complete results of one kind."""
    out = []
    for h in base.list_names(kind):
        loc = base.child(kind, h)
        if loc.exists("spec.json"):
            spec = loc.read_json("spec.json")
            out.append(Derived(loc=loc, kind=kind, spec=spec, spec_hash=h))
    return out
