"""A short identifier of a run's committed parts, so derived data follows a growing run."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from neurolake.store import Run


def commits_fingerprint(run: Run, commits: Iterable[str] | None = None) -> str:
    """16 hex digits that change whenever a part is committed (of ``commits``, a snapshot of
    ``run.commits()`` taken once by a caller that reads several layers, else the current one)."""
    ids = run.commits() if commits is None else commits
    return hashlib.sha256(",".join(sorted(ids)).encode()).hexdigest()[:16]
