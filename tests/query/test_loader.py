"""The activation loader: every frame once across workers and ranks, the stored values with their
metadata, a bounded shuffle that reorders, and a group's frames only."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from neurolake.errors import SpecError
from neurolake.query.groups import create_group
from neurolake.query.loader import ActivationDataset
from neurolake.store import Lake
from tests.store.partdata import create_run, expected_rows, write_part


@pytest.fixture
def lake(tmp_path):
    lake = Lake.create(str(tmp_path / "lake"))
    run = create_run(lake)
    for part in run.plan.parts:
        write_part(run, part.part_id)
    return lake


def test_every_frame_once_with_its_values_and_metadata_across_workers(lake):
    url = str(lake.loc.url)
    data = ActivationDataset(
        url, "r1", ["enc.conv1", "enc.conv2"], columns=["frame_index", "speaker_id"], buffer_size=500
    )
    assert len(data) == lake.run("r1").committed_frame_ids().size
    batches = list(DataLoader(data, batch_size=64, num_workers=2))
    ids = torch.cat([b["frame_id"] for b in batches]).numpy()
    assert np.array_equal(np.sort(ids), lake.run("r1").committed_frame_ids())  # each once
    assert not np.array_equal(ids, np.sort(ids))  # shuffled
    conv1 = torch.cat([b["enc.conv1"] for b in batches]).numpy()
    np.testing.assert_array_equal(conv1, expected_rows(0, 24, ids).astype(np.float32))
    assert batches[0]["enc.conv2"].shape[1] == 10 and batches[0]["enc.conv2"].dtype == torch.float32
    index = torch.cat([b["frame_index"] for b in batches]).numpy()
    run = lake.run("r1")
    first = {u.first_row: u for p in run.plan.parts for u in p.utterances}
    starts = np.array(sorted(first))
    owner = starts[np.searchsorted(starts, ids, side="right") - 1]
    np.testing.assert_array_equal(index, ids - owner)
    speakers = [s for b in batches for s in b["speaker_id"]]
    assert speakers[0] == first[int(owner[0])].utterance_id.split("-")[0]
    # the same seed and epoch: the same order; another epoch: another one
    again = [b["frame_id"] for b in DataLoader(data, batch_size=64, num_workers=2)]
    assert np.array_equal(torch.cat(again).numpy(), ids)
    data.set_epoch(1)
    assert not np.array_equal(torch.cat([b["frame_id"] for b in DataLoader(data, batch_size=64)]).numpy(), ids)


def test_ranks_split_the_frames_and_a_group_limits_them(lake):
    url = str(lake.loc.url)
    shards = [
        {int(x["frame_id"]) for x in ActivationDataset(url, "r1", ["enc.conv2"], rank=r, world_size=3, shuffle=False)}
        for r in range(3)
    ]
    assert not (shards[0] & shards[1]) and not (shards[1] & shards[2]) and not (shards[0] & shards[2])
    assert sorted(shards[0] | shards[1] | shards[2]) == lake.run("r1").committed_frame_ids().tolist()
    ordered = [
        int(x["frame_id"]) for x in ActivationDataset(url, "r1", ["enc.conv2"], rank=0, world_size=1, shuffle=False)
    ]
    assert ordered == sorted(ordered)
    group = create_group(lake, "odd", "r1", "frame_index % 2 = 1")
    data = ActivationDataset(url, None, ["enc.conv2"], group="odd", columns=["frame_index", "word"], buffer_size=1)
    items = list(data)
    assert sorted(x["frame_id"] for x in items) == group.frame_ids().tolist()
    assert all(x["frame_index"] % 2 == 1 for x in items)
    # a null word (every fifth frame) comes as "", so that batches hold it
    assert {x["word"] for x in items} == {"A", ""}
    assert all((x["word"] == "") == (x["frame_index"] % 5 == 0) for x in items)
    with pytest.raises(SpecError, match="not a frames or utterances column"):
        ActivationDataset(url, "r1", ["enc.conv2"], columns=["accent"])
    with pytest.raises(SpecError, match="at least one layer"):
        ActivationDataset(url, "r1", [])


def test_whole_batches_from_the_array_buffer(lake):
    url = str(lake.loc.url)
    run = lake.run("r1")
    data = ActivationDataset(url, "r1", ["enc.conv1"], columns=["frame_index", "word"], buffer_size=300, batch_size=100)
    batches = list(DataLoader(data, batch_size=None, num_workers=2))
    ids = torch.cat([b["frame_id"] for b in batches]).numpy()
    assert np.array_equal(np.sort(ids), run.committed_frame_ids()) and not np.array_equal(ids, np.sort(ids))
    assert max(b["frame_id"].numel() for b in batches) == 100
    np.testing.assert_array_equal(
        torch.cat([b["enc.conv1"] for b in batches]).numpy(), expected_rows(0, 24, ids).astype(np.float32)
    )
    index = torch.cat([b["frame_index"] for b in batches]).numpy()
    words = [w for b in batches for w in b["word"]]
    assert index.dtype == np.int32 and [w == "" for w in words] == list(index % 5 == 0)
    in_order = ActivationDataset(url, "r1", ["enc.conv1"], shuffle=False, batch_size=64, rank=0, world_size=1)
    ordered = torch.cat([b["frame_id"] for b in in_order]).numpy()
    assert np.array_equal(ordered, run.committed_frame_ids())
