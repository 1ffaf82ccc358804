"""What a user's SQL may be: one SELECT over the lake's views, checked on DuckDB's own parse tree.

DuckDB has no read-only mode for an in-memory connection that still reads files, so the seal has
layers, and the first one is ours because DuckDB cannot enforce it:

1. **Statement.** DuckDB's parser (``json_serialize_sql``, which serialises SELECT statements only)
   must see exactly one SELECT. ``EXPLAIN <select>`` is allowed; ``EXPLAIN ANALYZE`` is not, since
   it executes what follows it. Everything else (COPY, ATTACH, CREATE, SET, PRAGMA, INSTALL, ...)
   never reaches DuckDB. DuckDB's ``allowed_paths`` are readable *and writable*, so a COPY to a
   committed file would overwrite it: only this check keeps writes out.
2. **Sources.** Every table named in the tree is one of the lake's views or a CTE of the query, so
   replacement scans (``FROM '/etc/passwd'``, ``FROM 's3://other/x.parquet'``) are refused by name;
   table functions only from :data:`TABLE_FUNCTIONS` (no ``read_*``, ``glob``, ``query``,
   ``duckdb_settings``, ``duckdb_secrets``, ...); scalar functions that read settings or variables
   are refused.
3. **DuckDB.** The engine then reads exactly the committed files (``allowed_paths``, not a
   directory), has external access off, no temporary directory, credentials only in a secret and
   its configuration locked (see :mod:`neurolake.query.engine`).
4. **Limits.** A memory limit and a wall-clock limit per query (the engine interrupts it).

A group predicate is parsed by DuckDB as exactly one expression (:func:`parse_predicate`) before
anything runs, and the SELECT built around it passes the same checks.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import duckdb

from neurolake.errors import QueryError, one_line

# Table functions that read nothing but their arguments.
TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest"})

# Scalar functions that reveal the connection's configuration or state.
REFUSED_FUNCTIONS = frozenset(
    {
        "current_setting",
        "getvariable",
        "getenv",
        "current_database",
        "current_schema",
        "current_schemas",
        "current_catalog",
        "version",
    }
)

_parser_lock = threading.Lock()
_parser_con: duckdb.DuckDBPyConnection | None = None


def _parser() -> duckdb.DuckDBPyConnection:
    """An in-memory connection that only parses (made at first use; callers hold ``_parser_lock``)."""
    global _parser_con
    if _parser_con is None:
        _parser_con = duckdb.connect(":memory:")
    return _parser_con


def _serialise(sql: str) -> dict[str, Any]:
    """DuckDB's own parse of ``sql`` as JSON; an error for anything but SELECT statements."""
    try:
        with _parser_lock:
            raw = _parser().execute("SELECT json_serialize_sql(?)", [sql]).fetchone()
    except duckdb.Error as exc:
        raise QueryError(one_line(exc)) from exc
    return json.loads(raw[0]) if raw else {"error": True, "error_message": "no result"}


def _nodes(tree: Any) -> Iterator[dict[str, Any]]:
    """Every object of a serialised parse tree, depth first."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            yield node
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def _cte_names(tree: Any) -> set[str]:
    names: set[str] = set()
    for node in _nodes(tree):
        cte_map = node.get("cte_map")
        if isinstance(cte_map, dict):
            names.update(str(entry.get("key", "")).lower() for entry in cte_map.get("map", []))
    return names


def _statement_tokens(sql: str) -> list[tuple[int, str]]:
    """``(offset, text)`` of the tokens of ``sql`` that are not comments."""
    try:
        tokens = duckdb.tokenize(sql)
    except duckdb.Error as exc:
        raise QueryError(one_line(exc)) from exc
    out = []
    for i, (start, kind) in enumerate(tokens):
        if kind == duckdb.token_type.comment:
            continue
        end = tokens[i + 1][0] if i + 1 < len(tokens) else len(sql)
        out.append((start, sql[start:end].strip()))
    return out


def check_select(sql: str, tables: set[str]) -> str:
    """The text to run for ``sql`` if it is one allowed SELECT (or ``EXPLAIN`` of one).

    ``tables`` are the names a query may read (the lake's views). Raises :class:`QueryError`
    with one line otherwise.
    """
    if not sql or not sql.strip():
        raise QueryError("give one SELECT statement")
    try:
        with _parser_lock:
            statements = _parser().extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryError(one_line(exc)) from exc
    if len(statements) != 1:
        raise QueryError(f"give exactly one SQL statement, got {len(statements)}")
    kind = statements[0].type
    prefix = ""
    body = sql
    if kind == duckdb.StatementType.EXPLAIN:
        tokens = _statement_tokens(sql)
        if len(tokens) < 2 or tokens[0][1].upper() != "EXPLAIN":
            raise QueryError("only EXPLAIN <SELECT ...> is allowed")
        if tokens[1][1].upper() in ("ANALYZE", "ANALYSE", "("):
            raise QueryError("EXPLAIN ANALYZE runs the statement; only a plain EXPLAIN of a SELECT is allowed")
        prefix, body = "EXPLAIN ", sql[tokens[1][0] :]
    elif kind != duckdb.StatementType.SELECT:
        raise QueryError(f"only SELECT queries are allowed here (got {kind.name}); the lake is read-only through SQL")

    tree = _serialise(body)
    if tree.get("error"):
        raise QueryError("only SELECT queries are allowed here: " + str(tree.get("error_message", "")).strip())
    if len(tree.get("statements", [])) != 1:
        raise QueryError(f"give exactly one SQL statement, got {len(tree.get('statements', []))}")
    check_tree(tree, tables)
    return prefix + body


def check_tree(tree: Any, tables: set[str]) -> None:
    """Refuse a parse tree that names a table, table function or scalar function outside the lake."""
    allowed = {t.lower() for t in tables} | _cte_names(tree)
    for node in _nodes(tree):
        kind = node.get("type")
        if kind == "BASE_TABLE":
            name = str(node.get("table_name", ""))
            if node.get("schema_name") or node.get("catalog_name") or name.lower() not in allowed:
                shown = ".".join(p for p in (node.get("catalog_name"), node.get("schema_name"), name) if p)
                raise QueryError(f"{shown!r} is not a table of the lake; query the views: {', '.join(sorted(tables))}")
        elif kind == "TABLE_FUNCTION":
            function = node.get("function") or {}
            name = str(function.get("function_name", "")).lower()
            if name not in TABLE_FUNCTIONS:
                raise QueryError(
                    f"table function {name}() is not allowed here (only {', '.join(sorted(TABLE_FUNCTIONS))}); "
                    "the query surface reads the lake's views only"
                )
        elif node.get("class") == "FUNCTION":
            name = str(node.get("function_name", "")).lower()
            if name in REFUSED_FUNCTIONS:
                raise QueryError(f"function {name}() is not allowed here")


def parse_predicate(text: str) -> str:
    """DuckDB's rendering of ``text`` parsed as exactly one SQL expression; one line if it is not one."""
    if not text or not text.strip():
        raise QueryError('give a predicate, e.g. --where "word_error"')
    try:
        expression = duckdb.SQLExpression(text)
    except (duckdb.Error, duckdb.InvalidInputException) as exc:
        raise QueryError(f"the predicate is not one SQL expression: {one_line(exc)}") from exc
    return str(expression)
