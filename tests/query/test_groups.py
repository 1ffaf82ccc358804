"""Contrast groups, activation gather and neuron statistics against numpy/pyarrow."""

import numpy as np
import pyarrow.compute as pc
import pytest

from neurolake.errors import GroupError, OutOfRangeError, QueryError, RunError, RunNotFoundError
from neurolake.query.engine import QueryEngine
from neurolake.query.gather import gather_activations
from neurolake.query.groups import create_group, get_group, list_groups, ranges_to_ids
from neurolake.query.neurons import neuron_statistics
from neurolake.store import Lake
from tests.store.partdata import LAYERS, create_run, expected_rows, write_part


@pytest.fixture
def lake(tmp_path):
    lake = Lake.create(str(tmp_path / "lake"))
    run = create_run(lake)
    for u in run.plan.parts[:-1]:
        write_part(run, u.part_id)
    return lake


def _frames(lake):
    return lake.run("r1").read_table("frames")


def test_group_of_misrecognised_word_frames(lake):
    frames = _frames(lake)
    g = create_group(lake, "errors", "r1", "word_error")
    expected = frames.filter(frames.column("word_error")).column("frame_id").to_numpy()
    np.testing.assert_array_equal(g.frame_ids(), expected)
    assert g.n_frames == expected.size > 0
    # the complement, through the group_frames view
    c = create_group(lake, "correct", "r1", "frame_id NOT IN (SELECT frame_id FROM group_frames WHERE name = 'errors')")
    assert np.intersect1d(c.frame_ids(), g.frame_ids()).size == 0
    assert c.n_frames + g.n_frames == frames.num_rows
    with QueryEngine(lake) as q:
        rows = q.arrow("SELECT name, run_id, predicate, n_frames FROM groups ORDER BY name").to_pylist()
    assert rows == [
        {"name": "correct", "run_id": "r1", "predicate": c.predicate, "n_frames": c.n_frames},
        {"name": "errors", "run_id": "r1", "predicate": "word_error", "n_frames": g.n_frames},
    ]
    assert [x.name for x in list_groups(lake)] == ["correct", "errors"]


def test_group_predicates_over_utterances_and_phonemes(lake):
    frames = _frames(lake)
    g = create_group(lake, "early-A", "r1", "ref_token = 'A' AND frame_index < 20 AND wer > 0.3")
    mask = pc.and_(pc.equal(frames.column("ref_token"), "A"), pc.less(frames.column("frame_index"), 20))
    np.testing.assert_array_equal(g.frame_ids(), frames.filter(mask).column("frame_id").to_numpy())
    p = create_group(lake, "AH", "r1", "phoneme = 'AH'")
    assert p.n_frames == frames.num_rows


def test_group_over_utterance_columns_only_equals_the_join(lake):
    """A predicate over utterance columns takes whole utterances from their row ranges."""
    run = lake.run("r1")
    frames, utterances = _frames(lake), run.read_table("utterances")
    median = float(np.median(utterances.column("duration_s").to_numpy()))
    long_ids = set(
        utterances.filter(pc.greater(utterances.column("duration_s"), median)).column("utterance_id").to_pylist()
    )
    assert 0 < len(long_ids) < utterances.num_rows
    in_long = np.array([u in long_ids for u in frames.column("utterance_id").to_pylist()])
    g = create_group(lake, "long", "r1", f"duration_s > {median}")
    np.testing.assert_array_equal(g.frame_ids(), frames.column("frame_id").to_numpy()[in_long])
    # the same utterances through the join (a frame column in the predicate)
    both = create_group(lake, "long-errors", "r1", f"duration_s > {median} AND word_error")
    expected = frames.column("frame_id").to_numpy()[
        in_long & frames.column("word_error").to_numpy(zero_copy_only=False)
    ]
    np.testing.assert_array_equal(both.frame_ids(), expected)
    with pytest.raises(GroupError, match="selects no frames"):
        create_group(lake, "none", "r1", "n_frames < 0")


def test_ranges_to_ids():
    got = ranges_to_ids(np.array([10, 3, 20, 7]), np.array([3, 0, 2, 1]))
    np.testing.assert_array_equal(got, [10, 11, 12, 20, 21, 7])
    assert ranges_to_ids(np.array([], np.int64), np.array([], np.int64)).dtype == np.int64


def test_group_reuse_conflicts_and_errors(lake):
    g = create_group(lake, "errors", "r1", "word_error")
    assert create_group(lake, "errors", "r1", "word_error").derived.spec_hash == g.derived.spec_hash
    with pytest.raises(GroupError, match="already exists"):
        create_group(lake, "errors", "r1", "token_error")
    r = create_group(lake, "errors", "r1", "token_error", replace=True)
    assert [x.predicate for x in list_groups(lake)] == ["token_error"] and r.n_frames > 0
    with pytest.raises(GroupError, match="selects no frames"):
        create_group(lake, "none", "r1", "frame_index < 0")
    with pytest.raises(QueryError, match="nope"):
        create_group(lake, "bad", "r1", "nope > 3")
    with pytest.raises(QueryError):
        create_group(lake, "bad", "r1", "word_error AND AND")
    with pytest.raises(RunNotFoundError):
        create_group(lake, "x", "r9", "word_error")
    with pytest.raises(GroupError, match="no group named 'nope'.*groups in this lake: errors"):
        get_group(lake, "nope")
    with pytest.raises(GroupError, match="invalid group name"):
        create_group(lake, "1 bad", "r1", "word_error")


def test_gather_group_and_ids(lake):
    g = create_group(lake, "errors", "r1", "word_error")
    got = gather_activations(lake, ["enc.conv2", "enc.conv1"], group="errors")
    np.testing.assert_array_equal(got.frame_ids, g.frame_ids())
    for li, layer in enumerate(LAYERS):
        np.testing.assert_array_equal(got.layers[layer.name], expected_rows(li, layer.units, g.frame_ids()))
    lazy = gather_activations(lake, ["enc.conv1"], run_id="r1", frame_ids=[40, 3, 3, 17], as_dask=True)
    np.testing.assert_array_equal(lazy.frame_ids, [3, 17, 40])
    np.testing.assert_array_equal(lazy.layers["enc.conv1"].compute(), expected_rows(0, 24, [3, 17, 40]))
    last = lake.run("r1").plan.parts[-1]
    with pytest.raises(OutOfRangeError):
        gather_activations(lake, ["enc.conv1"], run_id="r1", frame_ids=[last.row_start])
    from neurolake.errors import LayerNotFoundError

    with pytest.raises(LayerNotFoundError):
        gather_activations(lake, ["enc.conv7"], group="errors")


def test_neuron_statistics_match_numpy(lake):
    run = lake.run("r1")
    ids = run.committed_frame_ids()
    table = neuron_statistics(lake, "r1", bins=65536)  # every float16 value its own bin
    assert table.num_rows == 24 + 10
    for li, layer in enumerate(LAYERS):
        x = expected_rows(li, layer.units, ids).astype(np.float64)
        sub = table.filter(pc.equal(table.column("layer"), layer.name))
        assert sub.column("unit").to_pylist() == list(range(layer.units))
        np.testing.assert_allclose(sub.column("mean").to_numpy(), x.mean(0), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(sub.column("std").to_numpy(), x.std(0), rtol=1e-7, atol=1e-7)
        np.testing.assert_array_equal(sub.column("max").to_numpy(), x.max(0))
        np.testing.assert_allclose(sub.column("active_rate").to_numpy(), (x > 0).mean(0))
        assert sub.column("n_frames").to_pylist() == [ids.size] * layer.units
        for q, col in ((0.5, "q50"), (0.9, "q90"), (0.99, "q99")):
            order_stat = np.sort(x, axis=0)[int(np.ceil(q * ids.size)) - 1]  # the value where the count reaches q
            # exact bins: the order statistic, up to the step to the next distinct value
            got = sub.column(col).to_numpy()
            above = [x[:, u][x[:, u] > order_stat[u]] for u in range(layer.units)]
            nxt = np.array([a.min() if a.size else s for a, s in zip(above, order_stat, strict=True)])
            assert np.all((got >= order_stat - 1e-12) & (got <= nxt + 1e-12)), col
    # stored once, reused, visible in SQL
    again = neuron_statistics(lake, "r1", bins=65536)
    assert again.equals(table)
    with QueryEngine(lake) as q:
        n = (
            q.arrow("SELECT count(*) AS n FROM neurons WHERE run_id = 'r1' AND layer = 'enc.conv2'")
            .column("n")[0]
            .as_py()
        )
    assert n == 10


def test_default_quantile_bins_stay_within_their_width(lake):
    exact = neuron_statistics(lake, "r1", bins=65536)
    coarse = neuron_statistics(lake, "r1")  # the default 8,192 bins: 8 float16 values each
    for col in ("q50", "q90", "q99"):
        e, c = exact.column(col).to_numpy(), coarse.column(col).to_numpy()
        # a bin spans less than 2**-7 of its values (normal numbers; 8 steps of 2**-24 below them)
        assert np.all(np.abs(c - e) <= np.abs(e) * 2**-7 + 8 * 2**-24), col
        assert not np.array_equal(c, e) or col == "q99"  # the coarse bins are really used
    for col in ("mean", "std", "max", "active_rate"):
        np.testing.assert_array_equal(coarse.column(col).to_numpy(), exact.column(col).to_numpy())
    with pytest.raises(ValueError, match="power of two"):
        neuron_statistics(lake, "r1", bins=1000)


def test_quantiles_of_large_runs_come_from_every_kth_frame(lake):
    ids = lake.run("r1").committed_frame_ids()
    k = -(-ids.size // 1000)
    sampled = neuron_statistics(lake, "r1", bins=65536, quantile_rows=1000)
    everything = neuron_statistics(lake, "r1", bins=65536)
    for col in ("mean", "std", "max", "active_rate", "n_frames"):  # moments still over every frame
        np.testing.assert_array_equal(sampled.column(col).to_numpy(), everything.column(col).to_numpy())
    for li, layer in enumerate(LAYERS):
        x = expected_rows(li, layer.units, ids[ids % k == 0]).astype(np.float64)
        sub = sampled.filter(pc.equal(sampled.column("layer"), layer.name))
        for q, col in ((0.5, "q50"), (0.9, "q90"), (0.99, "q99")):
            order_stat = np.sort(x, axis=0)[int(np.ceil(q * x.shape[0])) - 1]
            got = sub.column(col).to_numpy()
            assert np.all((got >= order_stat) & (got < order_stat + np.maximum(np.abs(order_stat), 1e-3) * 2**-9)), col


def test_neuron_statistics_use_one_snapshot_while_units_commit(tmp_path, monkeypatch):
    import neurolake.query.neurons as neurons

    lake = Lake.create(str(tmp_path / "lake"))
    run = create_run(lake)
    first, *rest = run.plan.parts
    write_part(run, first.part_id)
    real = neurons.layer_statistics
    calls = []

    def commit_more_after_the_first_layer(run_, layer, commits, **options):
        out = real(run_, layer, commits, **options)
        if not calls:
            for u in rest:  # an ingest commits the other units meanwhile
                write_part(run, u.part_id)
        calls.append(1)
        return out

    monkeypatch.setattr(neurons, "layer_statistics", commit_more_after_the_first_layer)
    table = neuron_statistics(lake, "r1")
    assert len(calls) == len(LAYERS) > 1
    assert set(table.column("n_frames").to_pylist()) == {first.rows_used}


def test_neuron_statistics_of_an_empty_run_is_one_clear_error(tmp_path, capsys):
    from neurolake.cli import main

    lake = Lake.create(str(tmp_path / "lake"))
    create_run(lake)
    with pytest.raises(RunError, match="no committed parts yet"):
        neuron_statistics(lake, "r1")
    assert main(["neurons", "--run", "r1", "--lake", str(tmp_path / "lake")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no committed parts yet" in err


def test_ids_come_back_ascending_before_and_after_compaction(tmp_path):
    """The ids of a frames-only group arrive in the files' order (sorted when that is frame
    order, and then not sorted again); a join's arrive unordered and are sorted."""
    from neurolake.query.groups import group_frame_ids
    from neurolake.store.compact import compact

    lake = Lake.create(str(tmp_path / "lake"))
    run = create_run(lake)
    for u in reversed(run.plan.parts):
        write_part(run, u.part_id)
    frames = run.read_table("frames")
    wer = dict(zip(*run.read_table("utterances").select(["utterance_id", "wer"]).to_pydict().values(), strict=True))
    high = np.array([wer[u] > 0.3 for u in frames.column("utterance_id").to_pylist()])
    every = np.sort(frames.column("frame_id").to_numpy())
    mixed = np.sort(frames.column("frame_id").to_numpy()[high & (frames.column("frame_index").to_numpy() % 3 == 0)])
    assert 0 < mixed.size < every.size
    for compacted in (False, True):
        if compacted:
            compact(lake.run("r1"))
        with QueryEngine(lake) as q:
            np.testing.assert_array_equal(group_frame_ids(q, "r1", "frame_index >= 0"), every)
            np.testing.assert_array_equal(group_frame_ids(q, "r1", "frame_index % 3 = 0 AND wer > 0.3"), mixed)


def test_many_predicates_in_one_pass_equal_one_at_a_time(tmp_path):
    """Frame-column predicates and frame-and-utterance ones are read one batch per pass (here
    batches of 2, so several), utterance-only ones from the utterance rows: each gives the same
    ascending ids as ``group_frame_ids``, on parts written out of order; a predicate given twice,
    one that is NULL on some frames (not chosen, as in WHERE) and one that chooses nothing
    included. A bad predicate is the same one-line error."""
    from neurolake.query.groups import group_frame_ids, group_frame_ids_many

    lake = Lake.create(str(tmp_path / "lake"))
    run = create_run(lake)
    for u in reversed(run.plan.parts):
        write_part(run, u.part_id)
    median = float(np.median(run.read_table("utterances").column("duration_s").to_numpy()))
    predicates = [
        "word_error",
        "CASE WHEN frame_index % 3 = 0 THEN NULL ELSE word_error END",
        "ref_token = 'A' AND frame_index < 20 AND wer > 0.3",
        f"duration_s > {median}",
        "word_error",
        "frame_index < 0",
        "phoneme = 'AH' AND speaker_id = 'spk1'",
        "ref_token = 'A'",
    ]
    with QueryEngine(lake) as q:
        one_by_one = [group_frame_ids(q, "r1", p) for p in predicates]
        assert [ids.size for ids in one_by_one][5] == 0 and all(ids.size for i, ids in enumerate(one_by_one) if i != 5)
        assert one_by_one[1].size < one_by_one[0].size
        # batches of 2: the first all over frame columns, the others mixed; of 63: one
        for batch in (2, 63):
            together = group_frame_ids_many(q, "r1", predicates, batch=batch)
            for want, got in zip(one_by_one, together, strict=True):
                np.testing.assert_array_equal(got, want)
        with pytest.raises(QueryError) as many_error:
            group_frame_ids_many(q, "r1", ["word_error", "no_such_column > 1"])
        with pytest.raises(QueryError) as one_error:
            group_frame_ids(q, "r1", "no_such_column > 1")
        assert str(many_error.value) == str(one_error.value)
