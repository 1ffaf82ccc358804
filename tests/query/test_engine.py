"""SQL views over lakes built with the store API; results checked against pyarrow/numpy."""

import pyarrow.compute as pc
import pytest

from neurolake.errors import QueryError
from neurolake.query.engine import QueryEngine
from neurolake.store import Lake
from tests.store.partdata import create_run, write_part


@pytest.fixture
def two_runs(lake_target):
    url, opts = lake_target
    lake = Lake.create(url, opts)
    a = create_run(lake, "ra")
    for u in a.plan.parts:
        write_part(a, u.part_id)
    b = create_run(lake, "rb", n_utterances=12)
    write_part(b, b.plan.parts[0].part_id)
    return lake, a, b


def test_views_match_the_tables(two_runs):
    lake, a, b = two_runs
    with QueryEngine(lake) as q:
        runs = q.arrow(
            "SELECT run_id, status, parts_committed, parts_total, n_frames FROM runs ORDER BY run_id"
        ).to_pylist()
        assert runs == [
            {
                "run_id": "ra",
                "status": "complete",
                "parts_committed": len(a.plan.parts),
                "parts_total": len(a.plan.parts),
                "n_frames": a.plan.n_frames,
            },
            {
                "run_id": "rb",
                "status": "partial",
                "parts_committed": 1,
                "parts_total": len(b.plan.parts),
                "n_frames": b.plan.n_frames,
            },
        ]
        assert q.arrow("SELECT layer, units FROM layers WHERE run_id = 'ra' ORDER BY layer").to_pylist() == [
            {"layer": "enc.conv1", "units": 24},
            {"layer": "enc.conv2", "units": 10},
        ]
        rows = q.arrow("SELECT run_id, count(*) AS n FROM frames GROUP BY run_id").to_pylist()
        counts = {r["run_id"]: r["n"] for r in rows}
        assert counts == {"ra": a.plan.n_frames, "rb": b.plan.parts[0].rows_used}
        frames = a.read_table("frames")
        expected = pc.sum(pc.and_(frames.column("word_error"), pc.greater(frames.column("frame_index"), 10))).as_py()
        got = (
            q.arrow("SELECT count(*) AS n FROM frames WHERE run_id = 'ra' AND word_error AND frame_index > 10")
            .column("n")[0]
            .as_py()
        )
        assert got == expected > 0
        joined = (
            q.arrow(
                "SELECT count(*) AS n FROM frames f JOIN utterances u USING (run_id, utterance_id) WHERE u.wer > 0.3 AND f.run_id = 'rb'"
            )
            .column("n")[0]
            .as_py()
        )
        assert joined == b.plan.parts[0].rows_used
        assert q.arrow("SELECT count(*) AS n FROM errors").column("n")[0].as_py() == 0
        assert q.arrow("SELECT count(*) AS n FROM patterns").column("n")[0].as_py() == 0
        if lake.loc.protocol == "s3":
            assert q.via == "httpfs"


def test_uncommitted_units_are_invisible_and_refresh_sees_growth(tmp_path):
    lake = Lake.create(str(tmp_path / "lake"))
    run = create_run(lake)
    q = QueryEngine(lake)
    assert q.arrow("SELECT count(*) AS n FROM frames").column("n")[0].as_py() == 0
    write_part(run, run.plan.parts[0].part_id, commit=False)  # written, not committed
    q.refresh()
    assert q.arrow("SELECT count(*) AS n FROM frames").column("n")[0].as_py() == 0
    write_part(run, run.plan.parts[0].part_id)
    assert q.arrow("SELECT count(*) AS n FROM frames").column("n")[0].as_py() == 0  # a snapshot ...
    q.refresh()  # ... until refreshed
    assert q.arrow("SELECT count(*) AS n FROM frames").column("n")[0].as_py() == run.plan.parts[0].rows_used
    q.close()


@pytest.mark.parametrize(
    "statement, message",
    [
        ("DROP VIEW frames", "only SELECT queries"),
        ("CREATE TABLE t AS SELECT 1", "only SELECT queries"),
        ("COPY (SELECT 1) TO 'x.csv'", "only SELECT queries"),
        ("SELECT 1; SELECT 2", "exactly one SQL statement"),
        ("SELEC frame_id FROM frames", "syntax error"),
        ("SELECT nope FROM frames", "nope"),
        ("SELECT * FROM read_csv('/etc/passwd')", "table function read_csv\\(\\) is not allowed"),
        ("SELECT * FROM read_parquet('/etc/hostname')", "table function read_parquet\\(\\) is not allowed"),
        ("ATTACH 'other.db'", "only SELECT queries"),
        ("SET enable_external_access = true", "only SELECT queries"),
    ],
)
def test_statements_that_are_refused(tmp_path, statement, message):
    lake = Lake.create(str(tmp_path / "lake"))
    create_run(lake)
    with QueryEngine(lake) as q:
        with pytest.raises(QueryError, match=message) as info:
            q.arrow(statement)
        assert "\n" not in str(info.value)
    assert sorted(p.name for p in (tmp_path).iterdir()) == ["lake"]


def test_s3_through_fsspec_fallback(s3_bucket):
    bucket, opts = s3_bucket
    lake = Lake.create(f"s3://{bucket}/lake", opts)
    run = create_run(lake)
    write_part(run, run.plan.parts[0].part_id)
    with QueryEngine(lake, use_httpfs=False) as q:
        assert q.via == "fsspec"
        n = q.arrow("SELECT count(*) AS n FROM frames").column("n")[0].as_py()
    assert n == run.plan.parts[0].rows_used


def test_the_engine_lists_only_the_derived_kinds_a_run_has(s3_bucket, s3_server):
    """On object storage each listing is a round trip, and one of a folder that is not there two:
    the engine's start lists a run's ``derived`` folder, then only the kinds in it (none here),
    not each of the kinds its views read."""
    from neurolake.query.engine import DERIVED_VIEWS
    from tests.faults import FaultProxy

    bucket, opts = s3_bucket
    lake = Lake.create(f"s3://{bucket}/lake", opts)
    run = create_run(lake, n_utterances=6)
    for part in run.plan.parts:
        write_part(run, part.part_id)
    listings: list[str] = []

    class Recording(FaultProxy):
        def draw(self, method: str, path: str) -> tuple[str | None, bool]:
            if method == "GET" and path.strip("/") == bucket:
                listings.append(path)
            return super().draw(method, path)

    with Recording(s3_server) as proxy:
        through = dict(opts, client_kwargs=dict(opts["client_kwargs"], endpoint_url=proxy.endpoint))
        with QueryEngine(Lake.open(f"s3://{bucket}/lake", through), use_httpfs=False) as q:
            n = q.arrow("SELECT count(*) AS n FROM frames").column("n")[0].as_py()
            assert q.arrow("SELECT count(*) AS n FROM groups").column("n")[0].as_py() == 0
    assert n == run.plan.n_frames
    kinds = {kind for _, kind, _, _ in DERIVED_VIEWS} | {"neurons", "groups"}
    # the lake's runs, the run's commits and compaction record, its derived folder, the group
    # name pointers: 10 at most, where listing each kind took two listings a kind and more
    assert 0 < len(listings) <= 10 < 2 * len(kinds), listings


def test_s3_wrong_credentials_is_one_clear_error(s3_auth_server, monkeypatch, capsys):
    import s3fs

    from neurolake.cli import main
    from neurolake.errors import LakeError

    endpoint, bucket, good = s3_auth_server
    lake = Lake.create(f"s3://{bucket}/lake", good)
    run = create_run(lake)
    write_part(run, run.plan.parts[0].part_id)
    with QueryEngine(Lake.open(f"s3://{bucket}/lake", good)) as q:
        assert q.arrow("SELECT count(*) AS n FROM frames").column("n")[0].as_py() == run.plan.parts[0].rows_used
    bad = dict(good, key="AKIAWRONGWRONGWRONG", secret="wrong")
    with pytest.raises(LakeError, match=f"access to s3://{bucket}/lake was refused.*check the credentials"):
        Lake.open(f"s3://{bucket}/lake", bad)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAWRONGWRONGWRONG")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    # s3fs caches file systems by their options, not by the environment: an earlier test's
    # instance (other credentials, another endpoint) would answer instead of this one
    s3fs.S3FileSystem.clear_instance_cache()
    assert main(["sql", "SELECT 1", "--lake", f"s3://{bucket}/lake"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "was refused" in err
