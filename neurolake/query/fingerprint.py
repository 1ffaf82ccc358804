"""A short identifier of a run's committed units, so derived data follows a growing run."""

from __future__ import annotations

import hashlib

from neurolake.store import Run


def commits_fingerprint(run: Run) -> str:
    """16 hex digits that change whenever a unit is committed."""
    return hashlib.sha256(",".join(sorted(run.commits())).encode()).hexdigest()[:16]
