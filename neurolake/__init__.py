"""neurolake: a distributed activation data lake and query engine for ASR debugging."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from neurolake.api import Workbench

__version__ = "0.1.0"


def open(url: str = "lake", storage_options: dict[str, Any] | None = None) -> Workbench:
    """The lake at ``url`` with the whole Python API on it (:class:`neurolake.api.Workbench`)."""
    from neurolake.api import open_lake

    return open_lake(url, storage_options)
