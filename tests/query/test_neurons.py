"""The neuron statistics pass on layers wide enough for every path of its kernels: float16
and float32 layers, sampled rows histogrammed in many small batches, the Zarr fallback."""

import numpy as np
import pytest

import neurolake.query.neurons as neurons
from neurolake.store import Lake, LayerSpec, Run, plan_parts
from tests.store.partdata import part_tables, utterance_lengths

WIDE = [LayerSpec("wide16", 72), LayerSpec("wide32", 40, dtype="float32")]


def values(layer: int, rows: np.ndarray, units: int) -> np.ndarray:
    """Per-unit scaled normal values, some units half zeros; a known function of the rows."""
    out = np.empty((rows.size, units), np.float32)
    for i, r in enumerate(rows.tolist()):
        rng = np.random.default_rng([layer, r])
        out[i] = rng.standard_normal(units, dtype=np.float32) * (1 + np.arange(units) % 5)
    out[:, ::3] = np.maximum(out[:, ::3], 0)
    return out.astype(np.float16) if layer == 0 else out


@pytest.fixture
def run(tmp_path) -> Run:
    lake = Lake.create(str(tmp_path / "lake"))
    plan = plan_parts(utterance_lengths(12), rows_per_shard=256, part_rows=700, chunk_rows=64)
    run = lake.create_run(
        "w",
        model={"spec": "test-model", "tokens": ["-", " ", "A"], "frame_rate_hz": 50},
        corpus={"spec": "test-corpus"},
        layers=WIDE,
        plan=plan,
    )
    assert len(plan.parts) > 2 and plan.parts[1].row_start > plan.parts[0].used_stop  # padding between parts
    for part in plan.parts:
        writer = run.part_writer(part.part_id)
        rows = np.arange(part.row_start, part.used_stop)
        for li, layer in enumerate(WIDE):
            writer.append(layer.name, values(li, rows, layer.units))
        utterances, frames = part_tables(run, part)
        writer.write_table("utterances", utterances)
        writer.write_table("frames", frames)
        writer.commit()
    return run


def check_against_numpy(stats: dict, x: np.ndarray, sampled: np.ndarray) -> None:
    d = x.astype(np.float64)
    np.testing.assert_allclose(stats["mean"], d.mean(0), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(stats["std"], d.std(0), rtol=1e-7, atol=1e-9)
    np.testing.assert_array_equal(stats["max"], d.max(0))
    np.testing.assert_array_equal(stats["active_rate"], (d > 0).mean(0))
    assert np.all(stats["n_frames"] == x.shape[0])
    s = sampled.astype(np.float16).astype(np.float64)  # float32 layers are binned by their float16 rounding
    for q, col in ((0.5, "q50"), (0.9, "q90"), (0.99, "q99")):
        order_stat = np.sort(s, axis=0)[int(np.ceil(q * s.shape[0])) - 1]
        above = [s[:, u][s[:, u] > order_stat[u]] for u in range(s.shape[1])]
        nxt = np.array([a.min() if a.size else o for a, o in zip(above, order_stat, strict=True)])
        got = stats[col]
        assert np.all((got >= order_stat - 1e-12) & (got <= nxt + 1e-12)), col


@pytest.mark.parametrize("buffer_rows", [None, 3])
@pytest.mark.parametrize("quantile_rows", [0, 500])
def test_statistics_of_wide_layers_match_numpy(run, monkeypatch, buffer_rows, quantile_rows):
    """Every frame or every k-th frame histogrammed (k = 7 here), the sampled rows batched as
    they come or three at a time (a batch ends inside the rows one thread decoded)."""
    ids = run.committed_frame_ids()
    commits = run.commits()
    k = -(-ids.size // quantile_rows) if quantile_rows else 1
    assert k > 1 or not quantile_rows
    for li, layer in enumerate(WIDE):
        if buffer_rows:
            monkeypatch.setattr(neurons, "SAMPLE_BUFFER_BYTES", buffer_rows * 2 * layer.units)
        stats = neurons.layer_statistics(run, layer.name, commits, bins=65536, quantile_rows=quantile_rows)
        x = values(li, ids, layer.units)
        check_against_numpy(stats, x, x[ids % k == 0])


def test_zarr_fallback_gives_the_same_statistics(run, monkeypatch):
    """A layer whose array the direct reader cannot read (Zarr reads it) gets the same numbers."""
    commits = run.commits()
    direct = {layer.name: neurons.layer_statistics(run, layer.name, commits, quantile_rows=500) for layer in WIDE}
    monkeypatch.setattr(Run, "_reader", lambda self, layer, relevance: None)
    for layer in WIDE:
        fallback = neurons.layer_statistics(run, layer.name, commits, quantile_rows=500)
        for key, value in direct[layer.name].items():
            if key in ("mean", "std"):  # summed in another order
                np.testing.assert_allclose(fallback[key], value, rtol=1e-12, atol=1e-15)
            else:
                np.testing.assert_array_equal(fallback[key], value)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_accumulators_merge_every_unit_range_and_widen_counts_past_31_bits(threads):
    """Per-thread accumulators add up unit range by unit range (7 units: ranges of unequal
    size); once the rows reach 2**31 the histogram is widened to 64 bits before adding, so no
    bin wraps."""
    rng = np.random.default_rng(4)
    accs = [neurons._Accumulator(7, 8) for _ in range(3)]
    for acc in accs:
        acc.total[:] = rng.standard_normal(7)
        acc.squares[:] = rng.random(7)
        acc.high[:], acc.low[:] = rng.random(7) + 1, -rng.random(7)
        acc.active[:] = rng.integers(0, 100, 7)
        acc.hist[:] = rng.integers(0, 1000, acc.hist.shape)
        acc.rows = 100
    want_hist = sum(a.hist.astype(np.int64) for a in accs)
    want = {
        "total": sum(a.total for a in accs),
        "high": np.max([a.high for a in accs], axis=0),
        "low": np.min([a.low for a in accs], axis=0),
        "active": sum(a.active for a in accs),
    }
    accs[0].merge(accs[1:], threads)
    assert accs[0].hist.dtype == np.int32 and accs[0].rows == 300
    np.testing.assert_array_equal(accs[0].hist, want_hist)
    for key, value in want.items():
        np.testing.assert_allclose(getattr(accs[0], key), value, rtol=1e-15)

    big = [neurons._Accumulator(7, 8) for _ in range(2)]
    for acc in big:
        acc.hist[:, 5] = 2**31 - 10  # every row of one bin: the sum needs 32 bits
        acc.rows = 2**31 - 10
    big[0].merge(big[1:], threads)
    assert big[0].hist.dtype == np.int64
    np.testing.assert_array_equal(big[0].hist[:, 5], 2 * (2**31 - 10))
    assert big[0].rows == 2 * (2**31 - 10)
