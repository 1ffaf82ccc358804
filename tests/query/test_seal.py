"""The SQL surface is sealed: a zoo of escape attempts, each refused in one line with nothing written.

Every attempt runs against a real lake, and afterwards the whole directory tree around it (the
lake, its parent and the working directory, where DuckDB would put ``.tmp/``) is compared byte for
byte with what it was before.
"""

import hashlib
import os
import time
from pathlib import Path

import duckdb
import numpy as np
import pytest

from neurolake.cli import main
from neurolake.errors import NeurolakeError, QueryError
from neurolake.query.engine import QueryEngine
from neurolake.query.groups import create_group, list_groups
from neurolake.store import Lake
from tests.store.partdata import create_run, write_part


def _tree(root: Path) -> dict[str, str]:
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "link"
    return out


@pytest.fixture
def sealed(tmp_path, monkeypatch):
    """A lake with one committed unit and a group; the working directory is ``tmp_path/cwd``."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("do not read me\n")
    lake = Lake.create(str(tmp_path / "lake"))
    run = create_run(lake)
    write_part(run, run.plan.parts[0].part_id)
    create_group(lake, "err", "r1", "word_error")
    # A symbolic link inside the lake pointing outside it.
    os.symlink(secret, tmp_path / "lake" / "runs" / "r1" / "tables" / "link.txt")
    return lake, tmp_path


def _committed_file(lake: Lake) -> str:
    run = lake.run("r1")
    return f"{lake.loc.path}/runs/r1/{run.table_keys('frames')[0]}"


ESCAPES = [
    # statements that execute or write, directly or under EXPLAIN ANALYZE
    "EXPLAIN ANALYZE COPY (SELECT 42 AS x) TO '{lake}/pwned.csv'",
    "EXPLAIN ANALYZE COPY (SELECT 42 AS x) TO '{lake}/lake.json' (FORMAT csv)",
    "EXPLAIN ANALYZE COPY (SELECT 1) TO '{frames_file}' (FORMAT parquet, USE_TMP_FILE false)",
    "EXPLAIN ANALYZE CREATE TABLE t AS SELECT 1",
    "EXPLAIN ANALYZE DROP VIEW frames",
    "explain analyse copy (select 1) to '{lake}/p.csv'",
    "EXPLAIN /* a comment */ ANALYZE COPY (SELECT 1) TO '{lake}/p.csv'",
    "EXPLAIN (ANALYZE) COPY (SELECT 1) TO '{lake}/p.csv'",
    "EXPLAIN ANALYZE COPY (SELECT 1) TO '{cwd}/.tmp/x.csv'",
    "EXPLAIN COPY (SELECT 1) TO '{lake}/p.csv'",
    "COPY (SELECT 1) TO '{lake}/runs/r1/commits/zz.json'",
    "COPY frames TO '{lake}/p.parquet'",
    "ATTACH '{lake}/evil.duckdb'",
    "DETACH memory",
    "CREATE TABLE t AS SELECT 1",
    "CREATE SECRET s (TYPE s3, KEY_ID 'a', SECRET 'b')",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET enable_external_access = true",
    "RESET lock_configuration",
    "PRAGMA database_list",
    "CALL duckdb_settings()",
    "EXPORT DATABASE '{lake}/dump'",
    "CHECKPOINT",
    "USE memory",
    "SELECT 1; COPY (SELECT 1) TO '{lake}/p.csv'",
    "SELECT 1 -- comment\n; DROP VIEW frames",
    "/* SELECT */ DROP VIEW frames",
    # reading outside the views: replacement scans, table functions, paths, URLs
    "SELECT * FROM '/etc/passwd'",
    "SELECT * FROM '{secret}'",
    "SELECT * FROM '{lake}/lake.json'",
    "SELECT * FROM '{frames_file}'",
    'SELECT * FROM "{lake}/runs/r1/tables/link.txt"',
    "SELECT * FROM '{lake}/runs/r1/../../outside/secret.txt'",
    "SELECT * FROM 's3://other-bucket/x.parquet'",
    "SELECT * FROM 'https://example.com/x.csv'",
    "SELECT * FROM read_text('{secret}')",
    "SELECT * FROM read_text('{lake}/lake.json')",
    "SELECT * FROM read_blob('{lake}/runs/r1/tables/link.txt')",
    "SELECT * FROM read_parquet('{frames_file}')",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM glob('{lake}/*')",
    "SELECT * FROM query('COPY (SELECT 1) TO ''{lake}/q.csv''')",
    "SELECT * FROM query_table('frames')",
    "SELECT * FROM duckdb_settings()",
    "SELECT * FROM duckdb_secrets()",
    "SELECT * FROM duckdb_extensions()",
    "SELECT * FROM pragma_version()",
    "SELECT * FROM which_secret('s3://x/y', 's3')",
    "SELECT current_setting('s3_secret_access_key')",
    "SELECT current_setting('allowed_paths')",
    "SELECT getvariable('x')",
    "SELECT * FROM _nl_runs",
    "SELECT * FROM main.frames",
    "SELECT * FROM system.main.duckdb_tables",
    "WITH x AS (SELECT * FROM '/etc/passwd') SELECT * FROM x",
    "SELECT * FROM frames WHERE frame_id IN (SELECT 1 FROM read_csv('{secret}'))",
    "SELECT (SELECT count(*) FROM read_text('{secret}')) AS n",
    "SELECT * FROM frames f, LATERAL (SELECT * FROM read_text('{secret}')) t",
    "SELECT * FROM frames UNION ALL SELECT * FROM read_parquet('{frames_file}')",
]


def _fill(template: str, lake: Lake, root: Path) -> str:
    return template.format(
        lake=lake.loc.path, cwd=root / "cwd", secret=root / "outside" / "secret.txt", frames_file=_committed_file(lake)
    )


@pytest.mark.parametrize("template", ESCAPES)
def test_escape_attempts_are_refused_and_write_nothing(sealed, template):
    lake, root = sealed
    query = _fill(template, lake, root)
    before = _tree(root)
    with QueryEngine(lake) as q:
        with pytest.raises(QueryError) as info:
            q.arrow(query)
    assert "\n" not in str(info.value) and str(info.value)
    assert _tree(root) == before


@pytest.mark.parametrize("template", ESCAPES[:4] + ESCAPES[28:33])
def test_cli_refusal_is_one_line_and_exit_2(sealed, template, capsys):
    lake, root = sealed
    before = _tree(root)
    assert main(["sql", _fill(template, lake, root), "--lake", lake.loc.path]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and captured.err.startswith("neurolake: error:")
    assert _tree(root) == before


def test_what_is_allowed_still_works(sealed):
    lake, _ = sealed
    n = lake.run("r1").plan.parts[0].rows_used
    with QueryEngine(lake) as q:
        assert q.arrow("SELECT count(*) AS n FROM frames").column("n")[0].as_py() == n
        assert q.arrow("  -- a leading comment\nSELECT count(*) AS n FROM frames").column("n")[0].as_py() == n
        assert q.arrow("WITH a AS (SELECT * FROM frames) SELECT count(*) AS n FROM a").column("n")[0].as_py() == n
        assert q.arrow("SELECT sum(range) AS s FROM range(5)").column("s")[0].as_py() == 10
        assert q.arrow("SELECT unnest([1, 2]) AS u").column("u").to_pylist() == [1, 2]
        assert q.arrow("SELECT count(*) AS n FROM frames WHERE run_id = ?", ["r1"]).column("n")[0].as_py() == n
        plan = q.arrow("EXPLAIN SELECT count(*) FROM frames JOIN group_frames USING (run_id, frame_id)")
        assert plan.num_rows >= 1 and "explain_value" in plan.column_names
        assert q.arrow("explain select 1").num_rows >= 1


def test_duckdb_itself_reads_only_the_committed_files(sealed):
    """Below the statement check: the connection's own settings refuse other files and every write."""
    lake, root = sealed
    with QueryEngine(lake) as q:
        con = q.con  # bypasses the statement check on purpose
        assert con.execute(f"SELECT count(*) FROM read_parquet('{_committed_file(lake)}')").fetchone()[0] > 0
        for sql in (
            f"SELECT * FROM read_text('{lake.loc.path}/lake.json')",
            f"SELECT * FROM read_text('{root}/outside/secret.txt')",
            f"SELECT * FROM read_text('{lake.loc.path}/runs/r1/tables/link.txt')",
            f"COPY (SELECT 1) TO '{lake.loc.path}/x.csv'",
            f"COPY (SELECT 1) TO '{root}/cwd/.tmp/x.csv'",
            "SET enable_external_access = true",
            "SET allowed_directories = ['/']",
        ):
            with pytest.raises(duckdb.Error, match="(?i)permission|disabled|locked|configuration"):
                con.execute(sql)
        settings = dict(con.execute("SELECT name, value FROM duckdb_settings()").fetchall())
        assert settings["enable_external_access"] == "false" and settings["lock_configuration"] == "true"
        assert settings["allowed_directories"] == "[]" and settings["temp_directory"] == ""
    assert not (root / "cwd" / ".tmp").exists()


def test_time_and_memory_limits(sealed, capsys):
    lake, _ = sealed
    with QueryEngine(lake, timeout_s=1.0) as q:
        for sql in (
            "SELECT count(*) FROM range(100000000000)",
            "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r",
        ):
            t0 = time.monotonic()
            with pytest.raises(QueryError, match="time limit of 1 s"):
                q.arrow(sql)
            assert time.monotonic() - t0 < 15
        # the engine is still usable after an interrupted query
        assert q.arrow("SELECT 1 AS x").column("x")[0].as_py() == 1
    with QueryEngine(lake, memory_limit="64MB") as q:
        with pytest.raises(QueryError, match="memory limit of 64MB"):
            q.arrow("SELECT count(DISTINCT range::VARCHAR || 'x') FROM range(30000000)")
    assert main(["sql", "SELECT count(*) FROM range(100000000000)", "--timeout", "1", "--lake", lake.loc.path]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--timeout" in err


GROUP_ESCAPES = [
    "true); COPY (SELECT 'x' AS x) TO '{lake}/runs/r1/commits/zz.json'; SELECT (1",
    "true); ATTACH '{lake}/evil.duckdb' AS e; SELECT (1",
    "true) UNION ALL SELECT 999999999 --",
    "true) UNION ALL SELECT frame_id FROM frames --",
    "true) OR (true",
    "word_error, true",
    "word_error; DROP VIEW frames",
    "frame_id IN (SELECT 1 FROM read_text('{secret}'))",
    "frame_id IN (SELECT * FROM '/etc/passwd')",
    "EXISTS (SELECT * FROM duckdb_settings())",
    "current_setting('threads') IS NOT NULL",
    "(SELECT count(*) FROM range(100000000000)) > 0",
]


@pytest.mark.parametrize("template", GROUP_ESCAPES)
def test_group_predicate_escapes(sealed, template):
    lake, root = sealed
    before = _tree(root)
    with pytest.raises(NeurolakeError) as info:
        create_group(lake, "g", "r1", _fill(template, lake, root), timeout_s=1.0)
    assert "\n" not in str(info.value)
    assert _tree(root) == before
    assert [g.name for g in list_groups(lake)] == ["err"]


def test_group_cli_injection_exits_2_and_writes_nothing(sealed, capsys):
    lake, root = sealed
    before = _tree(root)
    where = _fill(GROUP_ESCAPES[0], lake, root)
    assert main(["group", "create", "g", "--run", "r1", "--where", where, "--lake", lake.loc.path]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "one SQL expression" in err
    assert _tree(root) == before


def test_group_ids_are_the_committed_frames(sealed):
    lake, _ = sealed
    frames = lake.run("r1").read_table("frames")
    g = create_group(lake, "everything", "r1", "true")
    np.testing.assert_array_equal(g.frame_ids(), np.sort(frames.column("frame_id").to_numpy()))
    # a predicate over utterance columns takes the range path; the ids are still exactly the frames
    u = create_group(lake, "all-utts", "r1", "wer >= 0")
    np.testing.assert_array_equal(u.frame_ids(), g.frame_ids())


def test_s3_lake_is_sealed_too(s3_auth_server):
    """On S3 (through httpfs): no '..' escape to other objects, and the secret key is in no setting."""
    import boto3

    endpoint, bucket, good = s3_auth_server
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=good["key"],
        aws_secret_access_key=good["secret"],
        region_name="us-east-1",
    )
    s3.put_object(Bucket=bucket, Key="other/secret.txt", Body=b"do not read me")
    lake = Lake.create(f"s3://{bucket}/sealed", good)
    run = create_run(lake)
    write_part(run, run.plan.parts[0].part_id)
    escape = f"s3://{bucket}/sealed/runs/r1/../../../other/secret.txt"
    with QueryEngine(Lake.open(f"s3://{bucket}/sealed", good)) as q:
        assert q.via == "httpfs"
        assert q.arrow("SELECT count(*) AS n FROM frames").column("n")[0].as_py() == run.plan.parts[0].rows_used
        for sql in (
            f"SELECT * FROM read_text('{escape}')",
            f"SELECT * FROM '{escape}'",
            f"EXPLAIN ANALYZE COPY (SELECT 1) TO 's3://{bucket}/other/pwned.csv'",
            "SELECT value FROM duckdb_settings() WHERE name LIKE 's3%'",
        ):
            with pytest.raises(QueryError):
                q.arrow(sql)
        con = q.con  # below the statement check: DuckDB's own settings
        for sql in (
            f"SELECT * FROM read_text('{escape}')",
            f"SELECT * FROM read_text('s3://{bucket}/other/secret.txt')",
            f"COPY (SELECT 1) TO 's3://{bucket}/other/pwned.csv'",
        ):
            with pytest.raises(duckdb.Error, match="(?i)permission|disabled"):
                con.execute(sql).fetchall()
        values = " ".join(str(v) for (v,) in con.execute("SELECT value FROM duckdb_settings()").fetchall())
        assert good["secret"] not in values and good["key"] not in values
        secrets = " ".join(str(r) for r in con.execute("SELECT * FROM duckdb_secrets()").fetchall())
        assert good["secret"] not in secrets
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert "other/pwned.csv" not in keys
