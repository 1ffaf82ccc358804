"""The lake format (``docs/architecture.md``, "Lake format"): catalog, run manifests, activation cubes, tables, commits.

Knows nothing about models; every path is an fsspec URL.
"""

from neurolake.store.commit import CommitMarker
from neurolake.store.cube import LayerSpec
from neurolake.store.derived import Derived, spec_hash
from neurolake.store.lake import Lake
from neurolake.store.location import Location
from neurolake.store.plan import Part, Plan, PlannedUtterance, plan_parts
from neurolake.store.run import PartWriter, Run, RunInfo

__all__ = [
    "CommitMarker",
    "Derived",
    "Lake",
    "LayerSpec",
    "Location",
    "Plan",
    "PlannedUtterance",
    "Run",
    "RunInfo",
    "PartWriter",
    "Part",
    "plan_parts",
    "spec_hash",
]
