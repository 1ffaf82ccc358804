"""Compaction: large row-ordered table files switched in by one manifest, on a local disk and S3."""

import io

import pyarrow.parquet as pq
import pytest

from neurolake.errors import IntegrityError, RunBusyError
from neurolake.query.engine import QueryEngine
from neurolake.store import Lake, Location
from neurolake.store import compaction as manifest
from neurolake.store.compact import compact
from neurolake.store.lease import RunLease
from tests.store.partdata import create_run, write_part

TABLES = ("utterances", "frames", "errors")


def _lake_of_parts(url: str, opts: dict) -> Lake:
    lake = Lake.create(url, opts)
    run = create_run(lake, n_utterances=60, part_rows=300)
    assert len(run.plan.parts) >= 30
    for part in run.plan.parts[:-1]:
        write_part(run, part.part_id)
    return lake


@pytest.fixture
def many_parts(shared_target):
    """A lake with run ``r1`` of ~40 small parts, all committed but the last one."""
    return _lake_of_parts(*shared_target)


@pytest.fixture
def local_parts(tmp_path):
    """The same on a local disk only (for what concerns the format, not the storage)."""
    return _lake_of_parts(str(tmp_path / "lake"), {})


def _contents(lake: Lake) -> tuple[dict[str, list[dict]], int]:
    """Every view of the run's tables in full (sorted), and how many files the engine reads."""
    with QueryEngine(lake) as q:
        rows = {name: q.sql(f"SELECT * FROM {name} ORDER BY ALL").to_pylist() for name in TABLES}
        return rows, len(q._files)


def _read_tables(lake: Lake) -> dict[str, list[dict]]:
    run = lake.run("r1")
    return {name: run.read_table(name).to_pylist() for name in TABLES}


def _frames_of(run, part_ids) -> int:
    return sum(run.plan.part(p).rows_used for p in part_ids)


def test_compaction_keeps_every_row_and_the_engine_reads_three_files(many_parts, monkeypatch):
    lake = many_parts
    run = lake.run("r1")
    n_parts = len(run.commits())
    before, files_before = _contents(lake)
    tables_before = _read_tables(lake)
    assert files_before == 3 * n_parts
    assert len(before["frames"]) == _frames_of(run, run.commits()) > 10_000

    summary = compact(run)
    assert summary.changed and summary.generation == 1 and summary.parts == n_parts
    assert (summary.files_before, summary.files_after) == (3 * n_parts, 3)
    assert summary.rows == {"errors": 0, "frames": len(before["frames"]), "utterances": len(before["utterances"])}

    after, files_after = _contents(lake)
    assert after == before and files_after == 3
    assert _read_tables(lake) == tables_before  # in row order, as before

    # The compacted frames file: one row group (fewer rows than a row group), ordered by frame_id.
    (frames_file,) = lake.run("r1").table_files("frames")
    assert frames_file.key == "compacted/000001/frames/000000.parquet" and frames_file.whole
    data = lake.loc.child("runs", "r1").read_bytes(frames_file.key)
    meta = pq.ParquetFile(io.BytesIO(data)).metadata
    assert (meta.num_row_groups, meta.num_rows) == (1, len(before["frames"]))
    ids = pq.read_table(io.BytesIO(data)).column("frame_id").to_pylist()
    assert ids == sorted(ids)

    # Start-up reads no commit marker: the manifest carries them all.
    reads: list[str] = []
    real_read = Location.read_bytes

    def counting_read(self, *parts):
        reads.append(self.join(*parts))
        return real_read(self, *parts)

    monkeypatch.setattr(Location, "read_bytes", counting_read)
    with QueryEngine(lake) as q:
        assert q.sql("SELECT count(*) AS n FROM frames").column("n")[0].as_py() == len(before["frames"])
    assert not [r for r in reads if "/commits/" in r or r.endswith("/detail.json")]
    assert sum(r.endswith("/compaction.json") for r in reads) == 1


def test_files_hold_whole_parts_in_row_order(many_parts):
    lake = many_parts
    run = lake.run("r1")
    compact(run, rows_per_file=2000)
    m = run.compaction()
    assert m is not None and set(m.markers) == set(run.commits())
    files = m.files["frames"]
    assert len(files) > 3
    expected_first = 0
    for f in files:
        table = pq.read_table(io.BytesIO(run.loc.read_bytes(f.key)))
        assert table.num_rows == f.rows == sum(s.rows for s in m.slices(f))
        assert f.rows <= 2000 or len(m.slices(f)) == 1  # a part is never split between files
        ids = table.column("frame_id").to_pylist()
        assert f.row_start == ids[0]
        for s in m.slices(f):  # each part's rows are exactly its frame range, at its offset
            part = run.plan.part(s.part_id)
            assert ids[s.offset : s.offset + s.rows] == list(range(part.row_start, part.used_stop))
        assert ids[0] >= expected_first
        expected_first = ids[-1] + 1


def test_a_crash_before_the_manifest_leaves_readers_on_the_old_files(many_parts, monkeypatch):
    lake = many_parts
    before, files_before = _contents(lake)

    def crash(run_loc, compaction):
        raise OSError("power cut before the switch")

    monkeypatch.setattr(manifest, "write_manifest", crash)
    with pytest.raises(OSError, match="power cut"):
        compact(lake.run("r1"))
    run = lake.run("r1")
    assert run.compaction() is None
    assert len(run.loc.find("compacted")) == 4  # three tables and the detail, named by no manifest
    assert _contents(lake) == (before, files_before)
    assert run.verify() == []

    monkeypatch.undo()
    summary = compact(lake.run("r1"))  # the lease was released; the same generation is written again
    assert summary.changed and summary.generation == 1
    assert _contents(lake) == (before, 3)


def test_a_part_committed_after_compaction_is_visible_once(many_parts):
    lake = many_parts
    run = lake.run("r1")
    compact(run)
    last = run.plan.parts[-1]
    write_part(run, last.part_id)
    rows, n_files = _contents(lake)
    assert n_files == 3 + 3
    ids = [r["frame_id"] for r in rows["frames"]]
    assert len(ids) == len(set(ids)) == run.plan.n_frames
    assert [u["utterance_id"] for u in rows["utterances"]] == sorted(
        u.utterance_id for p in run.plan.parts for u in p.utterances
    )
    assert (
        lake.run("r1").read_table("frames").column("frame_id").to_pylist()
        == lake.run("r1").committed_frame_ids().tolist()
    )

    summary = compact(lake.run("r1"))
    assert summary.changed and summary.generation == 2 and summary.parts == len(run.plan.parts)
    assert _contents(lake) == (rows, 3)


def test_recompaction_is_idempotent_and_prune_removes_only_superseded_files(many_parts):
    lake = many_parts
    run = lake.run("r1")
    before, _ = _contents(lake)
    compact(run)
    raw = run.loc.read_bytes(manifest.MANIFEST)
    again = compact(lake.run("r1"))
    assert not again.changed and again.generation == 1 and again.files_after == 3
    assert run.loc.read_bytes(manifest.MANIFEST) == raw

    pruned = compact(lake.run("r1"), prune=True)
    assert not pruned.changed and pruned.pruned == 3 * len(run.commits())
    assert run.loc.find("tables") == []
    assert sorted(run.loc.find("compacted")) == sorted(k.removeprefix("compacted/") for k in run.compaction().keys())
    assert _contents(lake) == (before, 3)
    assert lake.run("r1").verify() == []


def test_verify_checks_the_compacted_files_and_repair_supersedes_them(many_parts):
    lake = many_parts
    before, _ = _contents(lake)
    run = lake.run("r1")
    compact(run, rows_per_file=3000)
    assert run.verify() == []

    m = run.compaction()
    victim = m.files["frames"][1]
    covered = {s.part_id for s in m.slices(victim)}
    assert len(covered) >= 2
    data = bytearray(run.loc.read_bytes(victim.key))
    data[len(data) // 2] ^= 0xFF
    run.loc.write_bytes(bytes(data), victim.key)
    damaged = lake.run("r1").damaged_parts()
    assert set(damaged) == covered
    assert all(victim.key in problems[0] and "checksum mismatch" in problems[0] for problems in damaged.values())

    # What `verify --repair` does: uncommit the damaged parts, then write them again.
    run = lake.run("r1")
    run.uncommit(*sorted(damaged))
    assert victim.key not in run.compaction().keys() and not covered & set(run.compaction().markers)
    rows, _ = _contents(lake)
    assert len(rows["frames"]) == len(before["frames"]) - _frames_of(run, covered)
    for part_id in sorted(covered):
        write_part(run, part_id)
    assert lake.run("r1").verify() == []
    assert _contents(lake)[0] == before  # the re-done parts once, from their own files
    assert compact(lake.run("r1")).generation == 2
    assert _contents(lake) == (before, 3)


def test_a_part_uncommitted_from_an_intact_compacted_file_is_skipped_there(many_parts):
    lake = many_parts
    before, _ = _contents(lake)
    tables_before = _read_tables(lake)
    run = lake.run("r1")
    compact(run)
    gone = run.plan.parts[3]
    run.uncommit(gone.part_id)
    (frames_file,) = lake.run("r1").table_files("frames")
    assert not frames_file.whole and len(frames_file.ranges) == 2
    rows, n_files = _contents(lake)
    assert n_files == 3
    assert rows["frames"] == [r for r in before["frames"] if not gone.row_start <= r["frame_id"] < gone.used_stop]
    assert rows["utterances"] == [r for r in before["utterances"] if r["utterance_id"] not in gone.utterance_ids]

    write_part(run, gone.part_id)
    assert _contents(lake) == (before, 6)
    assert _read_tables(lake) == tables_before


def test_compaction_takes_the_run_lease(many_parts):
    lake = many_parts
    run = lake.run("r1")
    with RunLease(run.loc, purpose="ingest"):
        with pytest.raises(RunBusyError, match="being written by another ingest"):
            compact(run)
    assert run.compaction() is None


def _as_first_version(m: manifest.Compaction) -> dict:
    """``m`` written the way the first manifest version was: markers and part slices inline."""
    return {
        "compaction_version": 1,
        "generation": m.generation,
        "markers": {p: marker.to_dict() for p, marker in m.markers.items()},
        "tables": {
            name: [
                {"key": f.key, "rows": f.rows, "sha256": f.sha256, "parts": [list(s) for s in m.slices(f)]}
                for f in files
            ]
            for name, files in m.files.items()
        },
    }


def test_the_detail_is_read_only_when_needed_and_checked(many_parts):
    lake = many_parts
    before, _ = _contents(lake)
    run = lake.run("r1")
    compact(run)
    detail_key = run.compaction().detail_key
    assert detail_key == "compacted/000001/detail.json"
    # The small manifest names every covered part with its frames, and no marker.
    head = run.loc.read_json(manifest.MANIFEST)
    assert "markers" not in head and head["parts"] == sorted(run.commits())
    assert sum(head["rows_used"]) == run.info().frames_committed == len(before["frames"])

    data = bytearray(run.loc.read_bytes(detail_key))
    data[len(data) // 2] ^= 0x01
    run.loc.write_bytes(bytes(data), detail_key)
    assert _contents(lake) == (before, 3)  # start-up and queries need no marker
    with pytest.raises(IntegrityError, match=r"checksum mismatch for .*detail\.json.*remove the manifest"):
        lake.run("r1").verify()
    run.loc.remove(detail_key)
    with pytest.raises(IntegrityError, match=r"detail\.json.*is missing"):
        lake.run("r1").read_table("frames")


def test_a_first_version_manifest_is_read_whole_or_partly_covered(local_parts):
    lake = local_parts
    before, _ = _contents(lake)
    tables_before = _read_tables(lake)
    run = lake.run("r1")
    compact(run, rows_per_file=3000)
    m = run.compaction()
    run.loc.write_json(_as_first_version(m), manifest.MANIFEST)
    old = lake.run("r1").compaction()
    assert old.whole and old.parts == m.parts and old.files == m.files
    assert _contents(lake) == (before, len(m.keys()) - 1)
    assert _read_tables(lake) == tables_before and lake.run("r1").verify() == []

    # The first version dropped an uncovered part's slices: the file is then read in ranges.
    gone = run.plan.parts[2]
    partial = _as_first_version(m.without([gone.part_id]))
    run.loc.remove("commits", f"{gone.part_id}.json")
    run.loc.write_json(partial, manifest.MANIFEST)
    old = lake.run("r1").compaction()
    assert not old.whole and gone.part_id not in old.parts
    rows, _ = _contents(lake)
    assert rows["frames"] == [r for r in before["frames"] if not gone.row_start <= r["frame_id"] < gone.used_stop]


def test_uncommitting_from_a_first_version_manifest_writes_its_detail(local_parts):
    lake = local_parts
    before, _ = _contents(lake)
    run = lake.run("r1")
    compact(run)
    m = run.compaction()
    run.loc.write_json(_as_first_version(m), manifest.MANIFEST)
    run.loc.remove(m.detail_key)
    gone = run.plan.parts[1]
    lake.run("r1").uncommit(gone.part_id)  # rewrites the manifest in the current version
    head = run.loc.read_json(manifest.MANIFEST)
    assert head["compaction_version"] == manifest.COMPACTION_VERSION and gone.part_id not in head["parts"]
    assert lake.run("r1").verify() == []  # its detail was written with it
    write_part(run, gone.part_id)
    assert _contents(lake)[0] == before
