"""NAPs: exact against numpy on a run whose every activation is known, by column and by named
groups, event-aligned windows by hand, contrastive profiles, storage and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from neurolake.errors import SpecError
from neurolake.introspect import naps as naps_module
from neurolake.introspect.naps import naps
from neurolake.query.engine import QueryEngine
from neurolake.query.groups import create_group
from neurolake.store import Lake
from neurolake.store.pools import KeptScratch
from tests.store.partdata import LAYERS, create_run, expected_rows, write_part


@pytest.fixture(autouse=True, params=["per-thread sums", "shared sums", "blocks of rows"])
def sums_path(request, monkeypatch):
    """Every test on the three ways of summing: each reading thread into its own sums as rows
    are decoded; (for more slots than fit a copy per thread) every thread into one shared sums,
    slots cut by a read task summed apart and added under a lock; blocks of rows split by slot."""
    if request.param != "per-thread sums":
        monkeypatch.setattr(naps_module, "_PRIVATE_SUMS_BYTES", 0)
        monkeypatch.setattr(naps_module, "_SHARED_LOCAL_SHARE", np.inf if request.param == "shared sums" else -1.0)
    return request.param


@pytest.fixture
def lake(tmp_path):
    lake = Lake.create(str(tmp_path / "lake"))
    run = create_run(lake)
    for part in run.plan.parts:
        write_part(run, part.part_id)
    return lake


def _frames(lake):
    with QueryEngine(lake) as q:
        return q.sql(
            "SELECT f.frame_id, f.frame_index, f.word_error, u.speaker_id, u.n_frames FROM frames f "
            "JOIN utterances u ON f.run_id = u.run_id AND f.utterance_id = u.utterance_id ORDER BY f.frame_id"
        ).to_pydict()


# One block; many blocks cutting groups; blocks sized by the sums (3 groups' float64 sums twice
# over: 24 float16 rows).
@pytest.mark.parametrize("block_rows", [65_536, 97, 1])
def test_naps_by_a_column_equal_numpy(lake, monkeypatch, block_rows):
    monkeypatch.setattr(naps_module, "BLOCK_ROWS", block_rows)
    assert naps_module._block_rows(3 * 10 * 8, 10 * 2) == max(block_rows, 24)
    f = _frames(lake)
    ids, speakers = np.array(f["frame_id"]), np.array(f["speaker_id"])
    result = naps(lake, "r1", by="speaker_id", progress=False)
    assert result.groups == ["spk0", "spk1", "spk2"] and result.offsets == [0]
    for li, spec in enumerate(LAYERS):
        x = expected_rows(li, spec.units, ids).astype(np.float64)
        expected = np.stack([x[speakers == s].mean(axis=0) for s in result.groups])
        np.testing.assert_allclose(result.mean[spec.name][:, 0], expected, rtol=0, atol=1e-12)
        np.testing.assert_allclose(
            result.contrastive[spec.name][:, 0], expected - expected.mean(axis=0), rtol=0, atol=1e-12
        )
    assert result.counts[:, 0].tolist() == [int((speakers == s).sum()) for s in result.groups]


def test_naps_of_named_overlapping_groups_and_weighted_contrast(lake):
    create_group(lake, "errors", "r1", "word_error")
    create_group(lake, "spk1", "r1", "speaker_id = 'spk1'")  # overlaps "errors"
    f = _frames(lake)
    ids = np.array(f["frame_id"])
    masks = [np.array(f["word_error"]), np.array(f["speaker_id"]) == "spk1"]
    result = naps(lake, "r1", groups=["errors", "spk1"], layers=["enc.conv2"], weighted=True, progress=False)
    x = expected_rows(1, 10, ids).astype(np.float64)
    means = np.stack([x[m].mean(axis=0) for m in masks])
    sizes = np.array([m.sum() for m in masks], dtype=np.float64)
    np.testing.assert_allclose(result.mean["enc.conv2"][:, 0], means, atol=1e-12)
    centre = (means * sizes[:, None]).sum(axis=0) / sizes.sum()
    np.testing.assert_allclose(result.contrastive["enc.conv2"][:, 0], means - centre, atol=1e-12)


def test_event_aligned_naps_by_hand(lake):
    # Every frame of an utterance has the same speaker, so each utterance is one event of its
    # speaker: the centre is frame (n - 1) // 2 and offset o reads frame centre + o.
    f = _frames(lake)
    ids, index, n = np.array(f["frame_id"]), np.array(f["frame_index"]), np.array(f["n_frames"])
    speakers = np.array(f["speaker_id"])
    result = naps(lake, "r1", by="speaker_id", layers=["enc.conv1"], window=2, progress=False)
    assert result.offsets == [-2, -1, 0, 1, 2]
    centres = ids[(index == (n - 1) // 2)]
    for g, speaker in enumerate(result.groups):
        mine = centres[speakers[np.searchsorted(ids, centres)] == speaker]
        for k, offset in enumerate(result.offsets):
            expected = expected_rows(0, 24, mine + offset).astype(np.float64).mean(axis=0)
            np.testing.assert_allclose(result.mean["enc.conv1"][g, k], expected, atol=1e-12)
            assert result.counts[g, k] == mine.size


def test_naps_are_stored_reused_and_queryable(lake):
    first = naps(lake, "r1", by="speaker_id", progress=False)
    again = naps(lake, "r1", by="speaker_id", progress=False)
    assert again.reused and again.nap_id == first.nap_id
    for layer in first.mean:
        np.testing.assert_array_equal(again.mean[layer], first.mean[layer])
    with QueryEngine(lake) as q:
        rows = q.sql(
            "SELECT mean FROM naps WHERE nap_id = ? AND layer = 'enc.conv2' AND \"group\" = 'spk2' ORDER BY unit",
            [first.nap_id],
        ).column("mean")
    np.testing.assert_allclose(rows.to_numpy(), first.mean["enc.conv2"][2, 0])


def test_bad_requests_are_one_line(lake):
    with pytest.raises(SpecError, match="--groups G1,G2,.. or --by COLUMN"):
        naps(lake, "r1")
    with pytest.raises(SpecError, match="not a column of frames or utterances"):
        naps(lake, "r1", by="accent")
    with pytest.raises(SpecError, match="more than --max-groups 10"):
        naps(lake, "r1", by="frame_index", max_groups=10)
    with pytest.raises(SpecError, match="aligns events of a --by column"):
        create_group(lake, "g", "r1", "word_error")
        naps(lake, "r1", groups=["g"], window=3)
    with pytest.raises(SpecError, match="names no group"):
        naps(lake, "r1", groups=[])
    from neurolake.errors import GroupError

    with pytest.raises(GroupError, match="an empty group cannot"):  # an empty group is never made
        create_group(lake, "none", "r1", "frame_index < 0")
    with pytest.raises(GroupError, match="no group named 'nope'"):
        naps(lake, "r1", groups=["nope"])


def test_naps_cli(lake, capsys):
    from neurolake.cli import main

    url = str(lake.loc.url)
    assert (
        main(["naps", "--lake", url, "--run", "r1", "--by", "speaker_id", "--layers", "enc.conv2", "--top", "2"]) == 0
    )
    out = capsys.readouterr().out
    assert "3 groups x 1 layers" in out and "spk0" in out and "SELECT * FROM naps" in out
    assert main(["naps", "--lake", url, "--run", "r1", "--by", "frame_index", "--max-groups", "5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "more than --max-groups 5" in err


def test_separation_is_eta_squared_against_numpy(lake):
    from neurolake.introspect.naps import separation

    f = _frames(lake)
    ids, speakers = np.array(f["frame_id"]), np.array(f["speaker_id"])
    got = separation(lake, "r1", "speaker_id", ["enc.conv1", "enc.conv2"])
    for li, spec in enumerate(LAYERS):
        x = expected_rows(li, spec.units, ids).astype(np.float64)
        grand = x.mean(axis=0)
        between = sum(
            (speakers == s).sum() * ((x[speakers == s].mean(axis=0) - grand) ** 2).sum() for s in set(speakers)
        )
        assert got[spec.name] == pytest.approx(between / ((x - grand) ** 2).sum(), rel=1e-9)


def test_layer_sums_choose_shared_sums_for_slots_that_follow_the_frames(lake, monkeypatch, sums_path):
    """With more slots than fit a copy per thread: slots of whole utterances, or few slots,
    are summed into shared sums (few slots cut by a read task); 200 slots spread over every
    part (frame id % 200: nearly every slot cut by every task) by blocks of rows. Each way
    gives numpy's sums of the rows, squares included."""
    from neurolake.introspect.naps import Pairs, layer_sums

    monkeypatch.setattr(naps_module, "_SHARED_LOCAL_SHARE", 0.25)
    f = _frames(lake)
    ids, index = np.array(f["frame_id"]), np.array(f["frame_index"])
    run = lake.run("r1")
    x = expected_rows(0, LAYERS[0].units, ids).astype(np.float64)
    utterance = np.cumsum(index == 0) - 1
    for slots, private, shared in [
        (utterance, "private", "shared"),
        (ids % 3, "private", "shared"),
        (ids % 200, "private", "blocks"),
    ]:
        n_slots = int(slots.max()) + 1
        pairs = Pairs.of(ids, slots)
        for budget, want in [(1 << 30, private), (0, shared)]:
            monkeypatch.setattr(naps_module, "_PRIVATE_SUMS_BYTES", budget)
            assert naps_module._summing(run, pairs, n_slots, LAYERS[0].units * 8, LAYERS[0].units * 2)[0] == want
            sums, squares = layer_sums(run, LAYERS[0].name, pairs, n_slots, squares=True)
            expected, expected2 = np.zeros((n_slots, x.shape[1])), np.zeros((n_slots, x.shape[1]))
            np.add.at(expected, slots, x)
            np.add.at(expected2, slots, x * x)
            np.testing.assert_allclose(sums, expected, rtol=1e-12, atol=1e-9)
            np.testing.assert_allclose(squares, expected2, rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("sums_path", ["blocks of rows"], indirect=True)  # the kept block is the blocks' buffer
def test_blocks_of_rows_reuse_one_kept_block_and_sum_right_after_a_larger_pass(lake, monkeypatch, sums_path):
    """A pass by blocks of rows gives its block back; the next pass (another layer, fewer
    frames, so the block's tail holds the last pass's rows) reads into the same memory and
    still gives numpy's sums."""
    from neurolake.introspect.naps import Pairs, layer_sums

    taken = []

    class Recorded(KeptScratch):
        def take(self, nbytes):
            taken.append(super().take(nbytes))
            return taken[-1]

    monkeypatch.setattr(naps_module, "_SCRATCH", Recorded(naps_module._BLOCK_BYTES))
    monkeypatch.setattr(naps_module, "BLOCK_ROWS", 64)
    f = _frames(lake)
    ids = np.array(f["frame_id"])
    run = lake.run("r1")
    for li, frames in [(0, ids), (1, ids[: ids.size // 3])]:
        spec = LAYERS[li]
        slots = frames % 7
        sums = layer_sums(run, spec.name, Pairs.of(frames, slots), 7)
        expected = np.zeros((7, spec.units))
        np.add.at(expected, slots, expected_rows(li, spec.units, frames).astype(np.float64))
        np.testing.assert_allclose(sums, expected, rtol=1e-12, atol=1e-9)
    assert len(taken) == 2 and taken[1].nbytes < taken[0].nbytes and np.shares_memory(taken[0], taken[1])
