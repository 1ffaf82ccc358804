"""The one progress facility: a tqdm bar on stderr (quiet when not a terminal or when asked)."""

from __future__ import annotations

import sys
from typing import Any

from tqdm.auto import tqdm


def progress_bar(total: float, desc: str, unit: str = "it", enabled: bool | None = None, **kwargs: Any) -> tqdm:
    """A bar that stays out of the way of piped output unless explicitly enabled."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, file=sys.stderr, dynamic_ncols=True, **kwargs)
