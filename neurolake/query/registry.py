"""Which group owns a name: ``groups/<name>.json`` at the lake's root points at one stored group.

A group's frames live in its run's derived data (``derived/groups/<spec-hash>/``); the pointer
says which of them carries the name. A name is taken by creating its pointer exclusively (a hard
link on a local disk, a conditional PUT on S3), so of two processes creating one name only one
succeeds; a replacement is committed first, hidden because the pointer still names the old group,
and then the pointer is overwritten in one atomic write, so a reader sees the old group or the new
one, never both and never neither.

Lakes written before pointers existed: a stored group without a pointer is visible under its
name as long as no pointer claims that name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from neurolake.store import Derived, Lake, Run
from neurolake.store.derived import list_derived
from neurolake.store.location import canonical_json

POINTERS = "groups"
KIND = "groups"


def pointer_bytes(run_id: str, derived: Derived) -> bytes:
    return canonical_json(
        {"name": derived.spec["name"], "run_id": run_id, "spec_hash": derived.spec_hash}, indent=1
    ).encode("utf-8")


def read_pointer(lake: Lake, name: str) -> dict[str, Any] | None:
    if not lake.loc.exists(POINTERS, f"{name}.json"):
        return None
    return lake.loc.read_json(POINTERS, f"{name}.json")


def claim(lake: Lake, run_id: str, derived: Derived) -> bool:
    """Take the name for ``derived`` if no pointer holds it yet; ``True`` if this call took it."""
    return lake.loc.create_exclusive(pointer_bytes(run_id, derived), POINTERS, f"{derived.spec['name']}.json")


def switch(lake: Lake, run_id: str, derived: Derived) -> None:
    """Point the name at ``derived`` (one atomic write)."""
    lake.loc.write_bytes(pointer_bytes(run_id, derived), POINTERS, f"{derived.spec['name']}.json")


def visible_groups(
    lake: Lake, runs: Sequence[Run] | None = None, stored: Mapping[str, list[Derived]] | None = None
) -> list[tuple[str, Derived]]:
    """``(run_id, derived)`` of every group a reader sees: the one each pointer names, and
    stored groups of names no pointer claims. ``runs``: the lake's runs, where the caller has
    loaded them already; ``stored``: each run's stored groups by run id, where the caller has
    listed them already."""
    pointers = {}
    for entry in lake.loc.list_names(POINTERS):
        if entry.endswith(".json"):
            p = lake.loc.read_json(POINTERS, entry)
            pointers[str(p.get("name"))] = (str(p.get("run_id")), str(p.get("spec_hash")))
    out = []
    for run in runs if runs is not None else [lake.run(r) for r in lake.list_runs()]:
        groups = stored[run.run_id] if stored is not None else list_derived(run.loc.child("derived"), KIND)
        for d in groups:
            held = pointers.get(str(d.spec.get("name")))
            if held is None or held == (run.run_id, d.spec_hash):
                out.append((run.run_id, d))
    return out
