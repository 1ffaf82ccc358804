"""Compact HTML summaries for Jupyter (``_repr_html_``) of what the Python API returns."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

__all__ = ["card", "html_table"]


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return html.escape(", ".join(str(v) for v in value))
    return html.escape("" if value is None else str(value))


def html_table(table: pa.Table | Sequence[dict], max_rows: int = 10, columns: Sequence[str] | None = None) -> str:
    """The first ``max_rows`` rows of ``table`` as an HTML table, with the count of the rest."""
    rows = table.slice(0, max_rows).to_pylist() if isinstance(table, pa.Table) else list(table)[:max_rows]
    total = table.num_rows if isinstance(table, pa.Table) else len(table)
    names = (
        list(columns)
        if columns
        else (table.column_names if isinstance(table, pa.Table) else list(rows[0]) if rows else [])
    )
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    body = "".join("<tr>" + "".join(f"<td>{_cell(r.get(n))}</td>" for n in names) + "</tr>" for r in rows)
    more = f"<p><i>{total - len(rows):,} more rows</i></p>" if total > len(rows) else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}"


def card(title: str, facts: Sequence[tuple[str, Any]], table: str = "") -> str:
    """A title, a two-column table of facts, and optionally an HTML table below."""
    rows = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>{_cell(v)}</td></tr>" for k, v in facts)
    return f"<div><b>{html.escape(title)}</b><table>{rows}</table>{table}</div>"
