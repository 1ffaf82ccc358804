"""SQL over the lake: an in-process DuckDB connection with the views of DESIGN §5.

The views read the committed Parquet files only (a unit is visible iff its commit
marker exists), straight from the lake's storage: local files directly, S3 through
DuckDB's httpfs extension (loaded from the ``duckdb-extension-httpfs`` wheel, no
download), and anything else (``memory://``, ``gs://``, or S3 without httpfs) through the
lake's own fsspec filesystem registered with DuckDB.

It is a query surface: only one read-only statement at a time, and once the views are
defined the connection may read nothing but the lake (``enable_external_access`` off,
``allowed_directories`` the lake, configuration locked).
"""

from __future__ import annotations

import glob
import logging
import os
from typing import Any

import duckdb
import pyarrow as pa

from neurolake.errors import QueryError
from neurolake.query import schemas
from neurolake.query.fingerprint import commits_fingerprint
from neurolake.schemas import SCHEMAS
from neurolake.store import Lake, Run
from neurolake.store.derived import list_derived

log = logging.getLogger(__name__)

_ALLOWED_STATEMENTS = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}


def httpfs_extension_path() -> str | None:
    try:
        import duckdb_extension_httpfs
    except ImportError:
        return None
    base = os.path.dirname(duckdb_extension_httpfs.__file__)
    found = glob.glob(os.path.join(base, "extensions", f"v{duckdb.__version__}", "*.duckdb_extension*"))
    return found[0] if found else None


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _sql_list(values: list[str]) -> str:
    return "[" + ", ".join(_sql_string(v) for v in values) + "]"


class QueryEngine:
    """DuckDB views over one lake. Build a new engine (or :meth:`refresh`) to see new commits."""

    def __init__(self, lake: Lake, use_httpfs: bool = True):
        self.lake = lake
        self._use_httpfs = use_httpfs
        self.con = self._connect()

    # ------------------------------------------------------------ set-up

    def _connect(self) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect(":memory:")
        self._prefix = self._attach_storage(con)
        runs = [self.lake.run(r) for r in self.lake.list_runs()]
        self._define_views(con, runs)
        allowed = self._prefix.rstrip("/") + "/"
        con.execute(f"SET allowed_directories = {_sql_list([allowed])}")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        return con

    def refresh(self) -> None:
        """Re-read commit markers and group lists (a run being ingested grows meanwhile)."""
        self.con.close()
        self.con = self._connect()

    def _attach_storage(self, con: duckdb.DuckDBPyConnection) -> str:
        """Make the lake readable by DuckDB; return the URL prefix its files are read under."""
        loc = self.lake.loc
        if loc.is_local:
            return loc.path
        if loc.protocol in ("s3", "s3a") and self._use_httpfs and self._attach_httpfs(con):
            return f"s3://{loc.path.lstrip('/')}"
        con.register_filesystem(loc.fs)
        self.via = "fsspec"
        return loc.url

    def _attach_httpfs(self, con: duckdb.DuckDBPyConnection) -> bool:
        path = httpfs_extension_path()
        if path is None:
            log.info("httpfs extension wheel not found; reading S3 through fsspec")
            return False
        try:
            con.execute(f"INSTALL {_sql_string(path)}")
            con.execute("LOAD httpfs")
        except duckdb.Error as exc:
            log.warning("could not load httpfs (%s); reading S3 through fsspec", exc)
            return False
        opts = self.lake.loc.storage_options
        client = opts.get("client_kwargs", {}) or {}
        key = opts.get("key") or os.environ.get("AWS_ACCESS_KEY_ID")
        secret = opts.get("secret") or os.environ.get("AWS_SECRET_ACCESS_KEY")
        token = opts.get("token") or os.environ.get("AWS_SESSION_TOKEN")
        region = client.get("region_name") or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        endpoint = client.get("endpoint_url") or opts.get("endpoint_url") or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        parts = ["TYPE s3"]
        if key and secret:
            parts += [f"KEY_ID {_sql_string(key)}", f"SECRET {_sql_string(secret)}"]
            if token:
                parts.append(f"SESSION_TOKEN {_sql_string(token)}")
        else:
            parts.append("PROVIDER credential_chain")
        if region:
            parts.append(f"REGION {_sql_string(region)}")
        if endpoint:
            scheme, _, host = endpoint.partition("://")
            parts += [f"ENDPOINT {_sql_string(host.rstrip('/'))}", "URL_STYLE 'path'", f"USE_SSL {'true' if scheme == 'https' else 'false'}"]
        try:
            con.execute(f"CREATE SECRET neurolake_s3 ({', '.join(parts)})")
        except duckdb.Error as exc:
            log.warning("could not configure S3 credentials for httpfs (%s); reading S3 through fsspec", exc)
            return False
        self.via = "httpfs"
        return True

    def _url(self, run: Run, key: str) -> str:
        return f"{self._prefix}/runs/{run.run_id}/{key}"

    def _define_views(self, con: duckdb.DuckDBPyConnection, runs: list[Run]) -> None:
        infos = [r.info() for r in runs]
        con.register("_nl_runs", pa.Table.from_pylist([schemas.run_row(i) for i in infos], schema=schemas.RUNS))
        layer_rows = [schemas.layer_row(r.run_id, layer) for r in runs for layer in r.layers]
        con.register("_nl_layers", pa.Table.from_pylist(layer_rows, schema=schemas.LAYERS))
        con.execute("CREATE VIEW runs AS SELECT * FROM _nl_runs")
        con.execute("CREATE VIEW layers AS SELECT * FROM _nl_layers")

        for name in ("utterances", "frames", "errors"):
            files = [self._url(r, key) for r in runs for key in r.table_keys(name)]
            self._parquet_view(con, name, files, SCHEMAS[name])

        neuron_files, group_files, group_rows, pattern_files = [], [], [], []
        for run in runs:
            base = run.loc.child("derived")
            current = commits_fingerprint(run)
            for d in list_derived(base, "neurons"):
                if d.spec.get("commits") != current:
                    continue  # statistics of an earlier state of a growing run
                neuron_files.append(self._url(run, f"derived/neurons/{d.spec_hash}/neurons.parquet"))
            for d in list_derived(base, "groups"):
                group_files.append(self._url(run, f"derived/groups/{d.spec_hash}/frames.parquet"))
                group_rows.append(schemas.group_row(d))
            for d in list_derived(base, "patterns"):
                pattern_files.append(self._url(run, f"derived/patterns/{d.spec_hash}/patterns.parquet"))
        self._parquet_view(con, "neurons", neuron_files, schemas.NEURONS)
        self._parquet_view(con, "group_frames", group_files, schemas.GROUP_FRAMES)
        self._parquet_view(con, "patterns", pattern_files, schemas.PATTERNS)
        con.register("_nl_groups", pa.Table.from_pylist(group_rows, schema=schemas.GROUPS))
        con.execute("CREATE VIEW groups AS SELECT * FROM _nl_groups")

    @staticmethod
    def _parquet_view(con: duckdb.DuckDBPyConnection, name: str, files: list[str], schema: pa.Schema) -> None:
        if files:
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet({_sql_list(files)}, union_by_name = true)")
        else:
            con.register(f"_nl_empty_{name}", schema.empty_table())
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM _nl_empty_{name}")

    # ------------------------------------------------------------ queries

    def sql(self, query: str, params: list[Any] | None = None) -> duckdb.DuckDBPyRelation:
        """Run one read-only statement; returns a lazy DuckDB relation (``.to_arrow_table()``, ``.df()``).

        With ``params`` (``?`` placeholders) the statement runs at once and an Arrow table comes back.
        """
        self.check_statement(query)
        try:
            if params:
                return self.con.execute(query, params).to_arrow_table()
            return self.con.sql(query)
        except duckdb.Error as exc:
            raise QueryError(_one_line(exc)) from exc

    def arrow(self, query: str, params: list[Any] | None = None) -> pa.Table:
        """Run one read-only statement and return its rows as an Arrow table."""
        result = self.sql(query, params)
        if isinstance(result, pa.Table):
            return result
        try:
            return result.to_arrow_table()
        except duckdb.Error as exc:
            raise QueryError(_one_line(exc)) from exc

    def check_statement(self, query: str) -> None:
        """Refuse anything but a single SELECT/EXPLAIN statement, with one clear line."""
        try:
            statements = self.con.extract_statements(query)
        except duckdb.Error as exc:
            raise QueryError(_one_line(exc)) from exc
        if len(statements) != 1:
            raise QueryError(f"give exactly one SQL statement, got {len(statements)}")
        kind = statements[0].type
        if kind not in _ALLOWED_STATEMENTS:
            raise QueryError(
                f"only SELECT queries are allowed here (got {kind.name}); the lake is read-only through SQL"
            )

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> "QueryEngine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) < 500 else text[:497] + "..."
