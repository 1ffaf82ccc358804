"""SQL over the lake: an in-process DuckDB connection with the views of :mod:`neurolake.schemas`.

The views read the committed Parquet files only (a part is visible iff its commit
marker exists), straight from the lake's storage: local files directly, S3 through
DuckDB's httpfs extension (loaded from the ``duckdb-extension-httpfs`` wheel, no
download), and anything else (``memory://``, ``gs://``, or S3 without httpfs) through the
lake's own fsspec filesystem registered with DuckDB.

It is a query surface, sealed as :mod:`neurolake.query.guard` describes: a user's text reaches
DuckDB only as one SELECT over the views; once the views are defined the connection may read
exactly the committed files they name (``allowed_paths``), has external access off, no temporary
directory, a memory limit, credentials only in a DuckDB secret, and its configuration locked;
each query runs under a wall-clock limit.
"""

from __future__ import annotations

import gc
import glob
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import duckdb
import pyarrow as pa

from neurolake import schemas
from neurolake.errors import QueryError, one_line
from neurolake.query import DEFAULT_TIMEOUT_S, registry
from neurolake.query import rows as view_rows
from neurolake.query.fingerprint import commits_fingerprint
from neurolake.query.guard import check_select, parse_predicate
from neurolake.schemas import PATTERNS, SCHEMAS
from neurolake.store import Lake, Run
from neurolake.store.derived import Derived, list_derived

log = logging.getLogger(__name__)

VIEWS = (
    "runs",
    "layers",
    "utterances",
    "frames",
    "errors",
    "neurons",
    "groups",
    "group_frames",
    "patterns",
    "ablations",
    "findings",
    "slices",
    "naps",
    "probes",
    "neuron_rankings",
    "ranking_curves",
    "blocks",
    "topomaps",
    "nap_clusters",
    "phonetics",
)

# Listings of derived results in object storage at once, at the engine's start.
_LISTING_THREADS = 16

#: How httpfs retries a request to S3 that failed (an error answer such as 500 or 503 SlowDown, a
#: reset connection): 8 more tries, after 0.1 s and twice as long each time (25 s at most in all),
#: where DuckDB's own default gives up after 3 (2.1 s). The lake's fsspec reads retry as
#: :data:`neurolake.store.location.S3_RETRIES` says.
HTTPFS_RETRIES = {"http_retries": 8, "http_retry_wait_ms": 100, "http_retry_backoff": 2}

#: Views over derived data: (view, derived kind, file in each result's folder, schema).
DERIVED_VIEWS: tuple[tuple[str, str, str, pa.Schema], ...] = (
    ("patterns", "patterns", "patterns.parquet", PATTERNS),
    ("ablations", "ablations", "ablation.parquet", schemas.ABLATIONS),
    ("findings", "scans", "findings.parquet", schemas.FINDINGS),
    ("slices", "scans", "slices.parquet", schemas.SLICES),
    ("naps", "naps", "naps.parquet", schemas.NAPS),
    ("nap_clusters", "nap_clusters", "clusters.parquet", schemas.NAP_CLUSTERS),
    ("topomaps", "topomaps", "topomap.parquet", schemas.TOPOMAPS),
    ("probes", "probes", "probes.parquet", schemas.PROBES),
    ("neuron_rankings", "rankings", "rankings.parquet", schemas.NEURON_RANKINGS),
    ("ranking_curves", "rankings", "curves.parquet", schemas.RANKING_CURVES),
    ("blocks", "blocks", "block.parquet", schemas.BLOCKS),
    ("phonetics", "phonetics", "phonetics.parquet", schemas.PHONETICS),
)


def default_memory_limit() -> str:
    """Half of this machine's memory, the default cap of one query engine."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return "4GB"
    return f"{max(1, total // 2 // 2**20)}MB"


def httpfs_extension_path() -> str | None:
    try:
        import duckdb_extension_httpfs
    except ImportError:
        return None
    base = os.path.dirname(duckdb_extension_httpfs.__file__)
    found = glob.glob(os.path.join(base, "extensions", f"v{duckdb.__version__}", "*.duckdb_extension*"))
    return found[0] if found else None


def load_httpfs(con: duckdb.DuckDBPyConnection) -> str | None:
    """Install and load httpfs on ``con`` from the wheel (never a download); the extension file
    used, or ``None`` when the wheel has no build for this DuckDB. Raises ``duckdb.Error``."""
    path = httpfs_extension_path()
    if path is None:
        return None
    con.execute(f"INSTALL {_sql_string(path)}")
    con.execute("LOAD httpfs")
    return path


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _sql_list(values: list[str]) -> str:
    return "[" + ", ".join(_sql_string(v) for v in values) + "]"


class QueryEngine:
    """DuckDB views over one lake. Build a new engine (or :meth:`refresh`) to see new commits."""

    def __init__(
        self,
        lake: Lake,
        use_httpfs: bool = True,
        timeout_s: float | None = DEFAULT_TIMEOUT_S,
        memory_limit: str | None = None,
    ):
        """``timeout_s`` bounds each query's wall time (None: no bound); ``memory_limit`` DuckDB's
        memory (``"8GB"``; default half of this machine's memory). A query past either stops with a
        :class:`QueryError`."""
        self.lake = lake
        self._use_httpfs = use_httpfs
        self.timeout_s = timeout_s
        self.memory_limit = memory_limit or default_memory_limit()
        self.con = self._connect()

    # ------------------------------------------------------------ set-up

    def _connect(self, attempts: int = 3) -> duckdb.DuckDBPyConnection:
        """A connection with the views; built again (up to ``attempts`` times) when a file the
        listing named is gone before DuckDB reads it (a group replaced meanwhile by another
        process)."""
        con = duckdb.connect(":memory:")
        # Committed files never change under their keys: their footers, read once at start-up
        # (the views), are kept, so binding a query does not read every file's footer again.
        con.execute("SET parquet_metadata_cache = true")
        self._prefix = self._attach_storage(con)
        self._files: list[str] = []
        # Start-up builds many small objects (markers and plans of runs with thousands of parts)
        # that all live on: the cyclic collector's passes over them would be most of its time.
        collecting = gc.isenabled()
        gc.disable()
        try:  # views over Parquet read each file's footer now: storage that fails shows here first
            runs = [self.lake.run(r) for r in self.lake.list_runs()]
            self._define_views(con, runs)
        except duckdb.Error as exc:
            con.close()
            if attempts > 1 and isinstance(exc, duckdb.IOException) and "No files found" in str(exc):
                return self._connect(attempts - 1)  # listed, then removed: list again
            raise QueryError(f"cannot read the tables of {self.lake.url}: {one_line(exc)}") from exc
        finally:
            if collecting:
                gc.enable()
        try:
            con.execute(f"SET memory_limit = {_sql_string(self.memory_limit)}")
        except duckdb.Error as exc:
            con.close()
            raise QueryError(f"invalid memory limit {self.memory_limit!r}: {one_line(exc)}") from exc
        # Exactly the committed files the views name, no directory: DuckDB would otherwise also
        # allow its temporary directory, so there is none (a query past the memory limit fails
        # instead of spilling).
        con.execute(f"SET allowed_paths = {_sql_list(sorted(set(self._files)))}")
        con.execute("SET allowed_directories = []")
        con.execute("SET temp_directory = ''")
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
        # DuckDB's worker threads call back into Python for every read of a registered
        # filesystem; with several of them, a query over an asynchronous one (gcsfs) can stall
        # waiting for the interpreter. One thread reads it from the calling thread.
        con.execute("SET threads = 1")
        self.via = "fsspec"
        return loc.url

    def _attach_httpfs(self, con: duckdb.DuckDBPyConnection) -> bool:
        try:
            if load_httpfs(con) is None:
                log.info("httpfs extension wheel not found; reading S3 through fsspec")
                return False
        except duckdb.Error as exc:
            log.warning("could not load httpfs (%s); reading S3 through fsspec", exc)
            return False
        opts = self.lake.loc.storage_options
        client = opts.get("client_kwargs", {}) or {}
        key = opts.get("key") or os.environ.get("AWS_ACCESS_KEY_ID")
        secret = opts.get("secret") or os.environ.get("AWS_SECRET_ACCESS_KEY")
        token = opts.get("token") or os.environ.get("AWS_SESSION_TOKEN")
        region = client.get("region_name") or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        endpoint = (
            client.get("endpoint_url")
            or opts.get("endpoint_url")
            or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL")
        )
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
            parts += [
                f"ENDPOINT {_sql_string(host.rstrip('/'))}",
                "URL_STYLE 'path'",
                f"USE_SSL {'true' if scheme == 'https' else 'false'}",
            ]
        for setting, value in HTTPFS_RETRIES.items():
            con.execute(f"SET {setting} = {value}")
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
        snapshots = {r.run_id: r.snapshot() for r in runs}  # one listing of each run's commits
        infos = [r.info(snapshot=snapshots[r.run_id]) for r in runs]
        con.register("_nl_runs", pa.Table.from_pylist([view_rows.run_row(i) for i in infos], schema=schemas.RUNS))
        layer_rows = [view_rows.layer_row(r.run_id, layer) for r in runs for layer in r.layers]
        con.register("_nl_layers", pa.Table.from_pylist(layer_rows, schema=schemas.LAYERS))
        con.execute("CREATE VIEW runs AS SELECT * FROM _nl_runs")
        con.execute("CREATE VIEW layers AS SELECT * FROM _nl_layers")

        self._run_views: dict[tuple[str, str], str] = {}
        for name in schemas.TABLE_NAMES:
            # Whole files in one read; a compacted file that also holds rows of parts uncommitted
            # since (a repair under way) is read with its other rows filtered out. Each run's
            # files also make a view of their own (every row of them is the run's), so that a
            # query narrowed to one run neither lists nor filters the others' rows.
            files, partial = [], []
            for i, r in enumerate(runs):
                run_files, run_partial = [], []
                for f in r.table_files(name, snapshots[r.run_id]):
                    if f.whole:
                        run_files.append(self._url(r, f.key))
                    else:
                        run_partial.append((self._url(r, f.key), f.ranges))
                self._run_views[(name, r.run_id)] = f"_nl_{name}_{i}"
                self._parquet_view(con, f"_nl_{name}_{i}", run_files, SCHEMAS[name], run_partial)
                files += run_files
                partial += run_partial
            self._parquet_view(con, name, files, SCHEMAS[name], partial)
            self._files += files + [url for url, _ in partial]

        neuron_files, group_files, group_rows = [], [], []
        neuron_layers: list[list[str]] = []
        derived_files: dict[str, list[str]] = {view: [] for view, _, _, _ in DERIVED_VIEWS}
        listed = self._list_derived(
            runs, ["neurons", registry.KIND, *dict.fromkeys(kind for _, kind, _, _ in DERIVED_VIEWS)]
        )
        for run in runs:
            current = commits_fingerprint(run, snapshots[run.run_id].markers)
            # Statistics of an earlier state of a growing run are left out; of those left, each
            # layer's most precise (every frame histogrammed before a sample, then most bins).
            best: dict[str, tuple[tuple[int, int, str], str]] = {}
            for d in listed[run.run_id, "neurons"]:
                if d.spec.get("commits") != current:
                    continue
                sample = int(d.spec.get("quantile_rows", 0))
                rank = (sample if sample > 0 else 2**62, int(d.spec.get("bins", 0)), d.spec_hash)
                for layer in d.spec.get("layers", []):
                    if layer not in best or rank > best[layer][0]:
                        best[layer] = (rank, d.spec_hash)
            chosen: dict[str, list[str]] = {}
            for layer, (_, h) in sorted(best.items()):
                chosen.setdefault(h, []).append(layer)
            for h, layers in sorted(chosen.items()):
                neuron_files.append(self._url(run, f"derived/neurons/{h}/neurons.parquet"))
                neuron_layers.append(layers)
            for view, kind, file_name, _ in DERIVED_VIEWS:
                for d in listed[run.run_id, kind]:
                    derived_files[view].append(self._url(run, f"derived/{kind}/{d.spec_hash}/{file_name}"))
        by_id = {run.run_id: run for run in runs}
        stored_groups = {run.run_id: listed[run.run_id, registry.KIND] for run in runs}
        for run_id, d in registry.visible_groups(self.lake, runs, stored_groups):  # the group each name points at
            group_files.append(self._url(by_id[run_id], f"derived/groups/{d.spec_hash}/frames.parquet"))
            group_rows.append(view_rows.group_row(d))
        self._files += neuron_files + group_files + [f for files in derived_files.values() for f in files]
        if neuron_files:
            con.execute(
                "CREATE VIEW neurons AS "
                + " UNION ALL BY NAME ".join(
                    f"SELECT * FROM read_parquet({_sql_string(url)}) WHERE layer IN ({', '.join(map(_sql_string, layers))})"
                    for url, layers in zip(neuron_files, neuron_layers, strict=True)
                )
            )
        else:
            self._parquet_view(con, "neurons", [], schemas.NEURONS)
        self._parquet_view(con, "group_frames", group_files, schemas.GROUP_FRAMES)
        for view, _, _, schema in DERIVED_VIEWS:
            self._parquet_view(con, view, derived_files[view], schema)
        con.register("_nl_groups", pa.Table.from_pylist(group_rows, schema=schemas.GROUPS))
        con.execute("CREATE VIEW groups AS SELECT * FROM _nl_groups")

    def _list_derived(self, runs: list[Run], kinds: list[str]) -> dict[tuple[str, str], list[Derived]]:
        """The complete derived results of each kind of each run, by ``(run_id, kind)``. In
        object storage each listing is a round trip, and a kind that is not there two (the
        engine's start made 29 listings for a run without derived results when it listed every
        kind): each run's ``derived`` folder is listed first, then only the kinds in it, on
        threads."""

        def listing(pair: tuple[Run, str]) -> list[Derived]:
            return list_derived(pair[0].loc.child("derived"), pair[1])

        if self.lake.loc.is_local:
            return {(run.run_id, kind): listing((run, kind)) for run in runs for kind in kinds}

        def present(run: Run) -> list[str]:
            return run.loc.child("derived").list_names()

        with ThreadPoolExecutor(_LISTING_THREADS, thread_name_prefix="neurolake-list") as pool:
            there = dict(zip((run.run_id for run in runs), pool.map(present, runs), strict=True))
            pairs = [(run, kind) for run in runs for kind in kinds if kind in there[run.run_id]]
            found = dict(zip(((run.run_id, kind) for run, kind in pairs), pool.map(listing, pairs), strict=True))
        return {(run.run_id, kind): found.get((run.run_id, kind), []) for run in runs for kind in kinds}

    @staticmethod
    def _parquet_view(
        con: duckdb.DuckDBPyConnection,
        name: str,
        files: list[str],
        schema: pa.Schema,
        partial: Sequence[tuple[str, tuple[tuple[int, int], ...]]] = (),
    ) -> None:
        """A view over whole Parquet files, and over the ``[start, stop)`` row ranges of others."""
        selects = [f"SELECT * FROM read_parquet({_sql_list(files)}, union_by_name = true)"] if files else []
        for url, ranges in partial:
            keep = " OR ".join(f"(file_row_number >= {int(a)} AND file_row_number < {int(b)})" for a, b in ranges)
            selects.append(
                f"SELECT * EXCLUDE (file_row_number) FROM read_parquet({_sql_string(url)}, file_row_number = true) "
                f"WHERE {keep}"
            )
        if selects:
            con.execute(f"CREATE VIEW {name} AS " + " UNION ALL BY NAME ".join(selects))
        else:
            con.register(f"_nl_empty_{name}", schema.empty_table())
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM _nl_empty_{name}")

    # ------------------------------------------------------------ queries

    def check(self, query: str) -> str:
        """The text that will run for ``query`` if it is one allowed SELECT; else a :class:`QueryError`."""
        return check_select(query, set(VIEWS))

    def sql(self, query: str, params: list[Any] | None = None) -> pa.Table:
        """Run one read-only SELECT (``?`` placeholders bound from ``params``) under the engine's
        limits; returns its rows as an Arrow table."""
        text = self.check(query)
        return self._run(lambda: self.con.execute(text, params or []).to_arrow_table())

    arrow = sql

    def check_predicate(self, predicate: str) -> str:
        """DuckDB's rendering of ``predicate`` if it is exactly one expression that an allowed
        SELECT may hold (views only, no table functions or settings); else a :class:`QueryError`."""
        expression = parse_predicate(predicate)
        self.check(f"SELECT frame_id FROM frames WHERE {expression}")
        return expression

    def relation(self, view: str, run_id: str | None = None) -> duckdb.DuckDBPyRelation:
        """A view as a DuckDB relation, narrowed to ``run_id`` when given.

        ``utterances``, ``frames`` and ``errors`` of a run come from a view over that run's files
        only; other views are filtered on the run id, a constant (not a parameter), so DuckDB
        prunes Parquet row groups with it at planning time; no SQL text is assembled. Relations bind when
        built: a bad column in a later ``filter`` raises there.
        """
        if view not in VIEWS:
            raise QueryError(f"no view {view!r}; the views are {', '.join(VIEWS)}")
        own = self._run_views.get((view, run_id)) if run_id is not None else None
        if own is not None:  # the run's own files: no other run's rows to filter out
            return self.con.view(own)
        rel = self.con.view(view)
        if run_id is not None:
            rel = rel.filter(duckdb.ColumnExpression("run_id") == duckdb.ConstantExpression(run_id))
        return rel

    def rows(self, build: Callable[[], duckdb.DuckDBPyRelation]) -> pa.Table:
        """Build a relation and run it under the engine's limits; its rows as an Arrow table."""
        return self._run(lambda: build().to_arrow_table())

    def binds_relation(self, build: Callable[[], duckdb.DuckDBPyRelation]) -> bool:
        """Whether a relation binds (its columns exist), without running it."""
        try:
            self._run(build)
            return True
        except QueryError:
            return False

    def _run(self, work: Any) -> Any:
        """``work()`` under the wall-clock limit: a timer interrupts the connection."""
        stopped = threading.Event()

        def stop() -> None:
            stopped.set()
            self.con.interrupt()

        timer = threading.Timer(self.timeout_s, stop) if self.timeout_s else None
        t0 = time.monotonic()
        if timer is not None:
            timer.daemon = True
            timer.start()
        try:
            return work()
        except duckdb.Error as exc:
            if stopped.is_set():
                raise QueryError(
                    f"the query ran past its time limit of {self.timeout_s:g} s and was stopped "
                    f"(raise it with --timeout)"
                ) from exc
            if isinstance(exc, duckdb.OutOfMemoryException):
                raise QueryError(
                    f"the query needs more than its memory limit of {self.memory_limit} "
                    f"(raise it with --memory-limit): {one_line(exc)}"
                ) from exc
            raise QueryError(one_line(exc)) from exc
        finally:
            if timer is not None:
                timer.cancel()
            log.debug("query ran %.3f s", time.monotonic() - t0)

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> QueryEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
