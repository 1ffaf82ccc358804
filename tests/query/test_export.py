"""A group's activations out to a Hugging Face ``datasets`` dataset: read back with
``datasets.load_from_disk``, the stored values, the group's frames in order and the metadata with
its nulls; the CLI writes the same."""

from __future__ import annotations

import numpy as np
import pytest

from neurolake.errors import SpecError
from neurolake.query.engine import QueryEngine
from neurolake.query.export import export_datasets
from neurolake.query.groups import create_group
from neurolake.store import Lake
from tests.store.partdata import create_run, expected_rows, write_part


@pytest.fixture
def lake(tmp_path):
    lake = Lake.create(str(tmp_path / "lake"))
    run = create_run(lake)
    for part in run.plan.parts:
        write_part(run, part.part_id)
    create_group(lake, "odd", "r1", "frame_index % 2 = 1")
    return lake


def test_a_group_saved_as_a_datasets_dataset_reads_back_with_its_values_and_metadata(lake, tmp_path):
    from datasets import load_from_disk

    from neurolake.query.groups import get_group

    url = str(lake.loc.url)
    columns = ["frame_index", "utterance_id", "speaker_id", "phoneme", "token_error"]
    result = export_datasets(
        url,
        str(tmp_path / "odd"),
        group="odd",
        layers=["enc.conv1", "enc.conv2"],
        columns=columns,
        block_chunks=1,
        progress=False,
    )
    ids = get_group(lake, "odd").frame_ids()
    assert result.rows == ids.size > 0 and result.run_id == "r1"
    data = load_from_disk(str(tmp_path / "odd"))
    assert data.num_rows == ids.size
    assert data.features["enc.conv1"].length == 24 and data.features["enc.conv1"].feature.dtype == "float16"
    np.testing.assert_array_equal(np.asarray(data["frame_id"]), ids)
    as_numpy = data.with_format("numpy")[:]
    np.testing.assert_array_equal(as_numpy["enc.conv1"], expected_rows(0, 24, ids))
    np.testing.assert_array_equal(as_numpy["enc.conv2"], expected_rows(1, 10, ids))
    with QueryEngine(lake) as q:
        expected = q.sql(
            "SELECT f.frame_index, f.utterance_id, u.speaker_id, f.phoneme, f.token_error FROM frames f "
            "JOIN utterances u USING (run_id, utterance_id) WHERE f.run_id = 'r1' AND f.frame_index % 2 = 1 "
            "ORDER BY f.frame_id"
        ).to_pylist()
    assert [{c: row[c] for c in columns} for row in data.select_columns(columns)] == expected
    assert all(i % 2 == 1 for i in data["frame_index"])
    # float32 on request; an existing directory is not overwritten; a bad column is one line
    wide = export_datasets(
        url, str(tmp_path / "wide"), run_id="r1", layers=["enc.conv2"], dtype="float32", progress=False
    )
    back = load_from_disk(wide.path).with_format("numpy")[:]
    assert back["enc.conv2"].shape == (lake.run("r1").committed_frame_ids().size, 10)
    assert back["enc.conv2"].dtype == np.float32
    with pytest.raises(SpecError, match="not an empty directory"):
        export_datasets(url, str(tmp_path / "odd"), group="odd", layers=["enc.conv1"], progress=False)
    with pytest.raises(SpecError, match="not a frames or utterances column"):
        export_datasets(url, str(tmp_path / "x"), group="odd", layers=["enc.conv1"], columns=["nope"], progress=False)


def test_group_export_to_a_directory_writes_a_datasets_dataset(lake, tmp_path, capsys):
    from datasets import load_from_disk

    from neurolake.cli import main

    url = str(lake.loc.url)
    out = str(tmp_path / "ds")
    assert (
        main(["group", "export", "--lake", url, "odd", "--layers", "enc.conv2", "--out", out, "--columns", "phoneme"])
        == 0
    )
    assert "as a datasets dataset" in capsys.readouterr().out
    data = load_from_disk(out)
    assert data.column_names == ["frame_id", "enc.conv2", "phoneme"]
    assert (
        main(
            [
                "group",
                "export",
                "--lake",
                url,
                "odd",
                "--layers",
                "enc.conv2",
                "--out",
                str(tmp_path / "a.npz"),
                "--columns",
                "phoneme",
            ]
        )
        == 2
    )
    assert "are for a datasets export" in capsys.readouterr().err
