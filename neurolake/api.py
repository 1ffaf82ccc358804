"""The whole Python API from one object: ``nl = neurolake.open("./lake")``.

Every method is the library function of the same name with the lake filled in, so a notebook
goes from a lake to a finding, its ablation and its map without hunting for modules::

    import neurolake

    nl = neurolake.open("./lake")
    nl.runs()                                   # what the lake holds
    nl.sql("SELECT phoneme, avg(word_error::INT) FROM frames GROUP BY 1")
    found = nl.scan("demo")                     # failure slices, ranked
    nl.ablate("demo", found.findings["items"][0].as_py(), slice=found.findings["target"][0].as_py())
    nl.topomap("demo", "conv7", by="phoneme", methods=["som"], out_dir="maps")

Results show a compact HTML summary in Jupyter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from neurolake.store import Lake, Run

__all__ = ["Workbench", "open_lake"]


class Workbench:
    """A lake and everything that can be asked of it (module docstring)."""

    def __init__(self, lake: Lake):
        self.lake = lake

    def __repr__(self) -> str:
        return f"neurolake.open({str(self.lake.url)!r})"

    def _repr_html_(self) -> str:
        from neurolake.notebook import card, html_table

        return card(f"lake {self.lake.url}", [("runs", len(self.lake.list_runs()))], html_table(self.runs()))

    # --- the lake and SQL
    def runs(self) -> pa.Table:
        """One row per run: status, model, corpus, sizes (the ``runs`` view)."""
        return self.sql("SELECT * FROM runs ORDER BY run_id")

    def run(self, run_id: str) -> Run:
        return self.lake.run(run_id)

    def compact(self, run_id: str, **kwargs: Any) -> Any:
        """Merge a run's per-part table files into a few large ones (``neurolake compact``)."""
        from neurolake.store.compact import compact

        return compact(self.lake.run(run_id), **kwargs)

    def sql(self, query: str, params: Sequence[Any] | None = None) -> pa.Table:
        """A read-only SQL statement over the lake's views, as an Arrow table."""
        from neurolake.query.engine import QueryEngine

        with QueryEngine(self.lake) as q:
            return q.sql(query, list(params or []))

    def group(self, name: str, run_id: str | None = None, where: str | None = None, replace: bool = False) -> Any:
        """The group ``name``; with ``run_id`` and ``where``, created (or replaced) first."""
        from neurolake.query.groups import create_group, get_group

        if where is None:
            return get_group(self.lake, name)
        if run_id is None:
            raise ValueError("a new group needs run_id and where")
        return create_group(self.lake, name, run_id, where, replace=replace)

    # --- mining and the debugging loop
    def mine(self, target: str, background: str, **kwargs: Any) -> Any:
        from neurolake.mining.mine import mine

        return mine(self.lake, target, background, **kwargs)

    def scan(self, run_id: str, **kwargs: Any) -> Any:
        from neurolake.introspect.scan import scan

        return scan(self.lake, run_id, **kwargs)

    def finding(self, finding: str) -> dict:
        """A finding (``SCAN_ID/FINDING_ID``) as a dict of the ``findings`` view's columns."""
        from neurolake.introspect.scan import get_finding

        return dict(get_finding(self.lake, finding))

    def ablate(self, run_id: str, units: str | Sequence[str], **kwargs: Any) -> Any:
        from neurolake.introspect.ablation import ablate

        return ablate(self.lake, run_id, units, **kwargs)

    def blocks(self, finding: str, **kwargs: Any) -> Any:
        from neurolake.introspect.blocks import blocks

        return blocks(self.lake, finding, **kwargs)

    # --- introspection
    def naps(self, run_id: str, **kwargs: Any) -> Any:
        from neurolake.introspect.naps import naps

        return naps(self.lake, run_id, **kwargs)

    def gradnaps(self, run_id: str, **kwargs: Any) -> Any:
        from neurolake.introspect.naps import gradnaps

        return gradnaps(self.lake, run_id, **kwargs)

    def topomap(self, run_id: str, layer: str, **kwargs: Any) -> Any:
        from neurolake.introspect.topomap import topomap

        return topomap(self.lake, run_id, layer, **kwargs)

    def probe(self, run_id: str, target: str, **kwargs: Any) -> Any:
        from neurolake.introspect.probe import probe

        return probe(self.lake, run_id, target, **kwargs)

    def rank(self, run_id: str, target: str, **kwargs: Any) -> Any:
        from neurolake.introspect.ranking import rank_neurons

        return rank_neurons(self.lake, run_id, target, **kwargs)

    def report(self, run_id: str, out_dir: str | Path, **kwargs: Any) -> Any:
        from neurolake.report import report

        return report(self.lake, run_id, out_dir, **kwargs)


def open_lake(url: str = "lake", storage_options: Mapping[str, Any] | None = None) -> Workbench:
    """The lake at ``url`` (a directory, ``s3://`` or ``gs://``) with the whole API on it."""
    return Workbench(Lake.open(url, storage_options))
