"""``neurolake demo``: the main job end to end on embedded defaults."""

from __future__ import annotations

from typing import TextIO

from neurolake.store import Lake
from neurolake.store.report import format_runs_table


def run_demo(lake_url: str, out: TextIO) -> Lake:
    """Create (or open) the lake at ``lake_url`` and show what it holds."""
    lake = Lake.open(lake_url, create=True)
    out.write(f"lake: {lake.url}\n")
    out.write(format_runs_table(lake.run_infos()) + "\n")
    return lake
