"""Mining a run end to end on a lake built with the store: planted co-active neurons are found."""

import numpy as np
import pytest

from neurolake.errors import GroupError, SpecError
from neurolake.mining.mine import mine, supports
from neurolake.query.engine import QueryEngine
from neurolake.query.groups import create_group, get_group
from neurolake.store import Lake, LayerSpec, plan_parts

PLANTED = [("a", 3), ("a", 7), ("b", 2)]  # fire together in target frames


def _planted_lake(url, storage_options=None):
    rng = np.random.default_rng(0)
    lengths = [(f"u{i:03d}", 50) for i in range(40)]
    plan = plan_parts(lengths, rows_per_shard=256, part_rows=500, chunk_rows=64)
    lake = Lake.create(str(url), storage_options)
    run = lake.create_run(
        "m", model={"spec": "t"}, corpus={"spec": "t"}, layers=[LayerSpec("a", 12), LayerSpec("b", 6)], plan=plan
    )
    for unit in plan.parts:
        ids = np.arange(unit.row_start, unit.used_stop)
        target = (ids % 4) == 0  # every 4th frame is a "word error" frame
        acts = {"a": rng.normal(0, 1, (ids.size, 12)), "b": rng.normal(0, 1, (ids.size, 6))}
        fire = target & (rng.random(ids.size) < 0.8)
        for layer, unit_index in PLANTED:
            acts[layer][fire, unit_index] = 4.0 + rng.random(fire.sum())
        w = run.part_writer(unit.part_id)
        for layer in ("a", "b"):
            w.append(layer, acts[layer])
        n = ids.size
        utts = unit.utterances
        w.write_table(
            "utterances",
            {
                "utterance_id": [u.utterance_id for u in utts],
                "speaker_id": ["s"] * len(utts),
                "chapter_id": ["c"] * len(utts),
                "audio_uri": ["x"] * len(utts),
                "duration_s": [1.0] * len(utts),
                "n_frames": [u.n_frames for u in utts],
                "first_frame_id": [u.first_row for u in utts],
                "reference": ["R"] * len(utts),
                "hypothesis": ["H"] * len(utts),
                "wer": [0.0] * len(utts),
                "cer": [0.0] * len(utts),
                "n_word_errors": [0] * len(utts),
            },
        )
        w.write_table(
            "frames",
            {
                "frame_id": ids,
                "utterance_id": np.repeat([u.utterance_id for u in utts], 50),
                "frame_index": ids % 50,
                "start_s": np.zeros(n),
                "end_s": np.zeros(n),
                "ref_token": ["A"] * n,
                "pred_token": ["A"] * n,
                "pred_prob": np.ones(n),
                "phoneme": ["AH"] * n,
                "word": ["A"] * n,
                "word_index": np.zeros(n, int),
                "word_error": target,
                "token_error": np.zeros(n, bool),
            },
        )
        w.commit()
    create_group(lake, "errors", "m", "word_error")
    create_group(lake, "correct", "m", "NOT word_error")
    return lake


def test_supports_hand_computed():
    dense = np.array([[1, 1, 0], [1, 1, 1], [0, 1, 1], [1, 0, 1]], bool)
    assert supports(dense, [(0,), (0, 1), (1, 2), (0, 1, 2), ()]).tolist() == [3, 2, 2, 1, 4]


def test_packed_supports_equal_brute_force_across_bytes():
    """Itemsets within one byte, across bytes and at the last partial byte, counted on packed
    rows, equal a count on the dense rows."""
    from neurolake.mining.mine import packed_supports

    rng = np.random.default_rng(5)
    dense = rng.random((500, 21)) < 0.6
    itemsets = [(), (0,), (7, 8), (0, 1, 2), (3, 15, 20), (20,), (6, 7, 8, 9, 16), tuple(range(21))]
    itemsets += [tuple(sorted(rng.choice(21, k, replace=False))) for k in (2, 3, 4) for _ in range(10)]
    want = [int(dense[:, list(s)].all(axis=1).sum()) for s in itemsets]
    assert packed_supports(np.packbits(dense, axis=1), itemsets).tolist() == want
    assert supports(dense, itemsets).tolist() == want


def test_planted_pattern_is_the_top_pattern(tmp_path):
    lake = _planted_lake(tmp_path / "lake")
    result = mine(lake, "errors", "correct", binarization="absolute:3.0", min_support=0.5, max_size=4)
    top = result.patterns.to_pylist()[0]
    assert sorted(top["items"]) == ["a:3", "a:7", "b:2"]
    # its supports, counted directly from the data
    run = lake.run("m")
    ids_t = np.sort(run.committed_frame_ids()[run.committed_frame_ids() % 4 == 0])
    both = lambda ids: int(
        ((run.read_rows("a", ids)[:, [3, 7]] > 3).all(1) & (run.read_rows("b", ids)[:, 2] > 3)).sum()
    )
    ids_b = np.setdiff1d(run.committed_frame_ids(), ids_t)
    assert (top["support_target"], top["support_background"]) == (both(ids_t), both(ids_b))
    assert top["p_value"] < 1e-10 and top["support_background"] == 0
    summary = {r["layer"]: r for r in result.layers.to_pylist()}
    assert summary["a"]["share_of_items"] == pytest.approx(2 / 3, abs=0.1) and summary["b"]["significant_patterns"] >= 1
    # stored: the same request is reused, and the patterns view shows it
    again = mine(lake, "errors", "correct", binarization="absolute:3.0", min_support=0.5, max_size=4)
    assert again.reused and again.mining_id == result.mining_id
    with QueryEngine(lake) as q:
        n = q.arrow("SELECT count(*) AS n FROM patterns WHERE mining_id = ?", [result.mining_id]).column("n")[0].as_py()
    assert n == result.patterns.num_rows


def test_groups_and_patterns_on_s3_equal_those_on_a_local_disk(tmp_path, s3_auth_server):
    """The same planted lake on S3 and on a local disk: the same groups, the same patterns, and the
    stored patterns are queried back through httpfs. The S3 server runs in its own process: DuckDB
    holds the GIL while it binds a query, so a server in this process never answers its reads."""
    import uuid

    _, bucket, options = s3_auth_server
    local = _planted_lake(tmp_path / "lake")
    remote = _planted_lake(f"s3://{bucket}/mine-{uuid.uuid4().hex[:8]}", options)
    for name in ("errors", "correct"):
        np.testing.assert_array_equal(get_group(remote, name).frame_ids(), get_group(local, name).frame_ids())
    kwargs = dict(binarization="absolute:3.0", min_support=0.5, max_size=4)
    here, there = mine(local, "errors", "correct", **kwargs), mine(remote, "errors", "correct", **kwargs)
    assert there.mining_id == here.mining_id and there.patterns.num_rows == here.patterns.num_rows > 0
    assert there.patterns.to_pylist() == here.patterns.to_pylist()
    assert sorted(there.patterns.to_pylist()[0]["items"]) == ["a:3", "a:7", "b:2"]
    with QueryEngine(remote) as q:
        assert q.via == "httpfs"
        stored = q.arrow("SELECT count(*) AS n FROM patterns WHERE mining_id = ?", [there.mining_id])
    assert stored.column("n")[0].as_py() == there.patterns.num_rows


def test_quantile_binarisation_uses_neuron_statistics(tmp_path):
    lake = _planted_lake(tmp_path / "lake")
    result = mine(lake, "errors", "correct", binarization="quantile:0.5", min_support=0.6, max_size=3)
    assert sorted(result.patterns.to_pylist()[0]["items"]) == ["a:3", "a:7", "b:2"]


def test_bad_requests(tmp_path):
    lake = _planted_lake(tmp_path / "lake")
    with pytest.raises(GroupError, match="no group named 'nope'"):
        mine(lake, "nope", "correct")
    with pytest.raises(SpecError, match="unknown mining algorithm"):
        mine(lake, "errors", "correct", algo="apriori")
    with pytest.raises(SpecError, match="min_support"):
        mine(lake, "errors", "correct", min_support=3)
    with pytest.raises(SpecError, match="binarisation"):
        mine(lake, "errors", "correct", binarization="median")


def test_mine_cli(tmp_path, capsys):
    from neurolake.cli import main

    _planted_lake(tmp_path / "lake")
    args = [
        "mine",
        "--lake",
        str(tmp_path / "lake"),
        "--target",
        "errors",
        "--background",
        "correct",
        "--binarize",
        "absolute:3",
        "--min-support",
        "0.5",
        "--top",
        "3",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "a:3 a:7 b:2" in out.splitlines()[4] and "per layer" in out
    assert main(args + ["--run", "other"]) == 2
    assert "does not belong to run 'other'" in capsys.readouterr().err


def test_diffnorm_finds_the_planted_pattern(tmp_path):
    lake = _planted_lake(tmp_path / "lake")
    result = mine(lake, "errors", "correct", algo="diffnorm", binarization="absolute:3.0", min_support=0.05)
    patterns = result.patterns.to_pylist()
    assert patterns, "DiffNorm should keep the planted pattern in the target's code table"
    assert sorted(patterns[0]["items"]) == ["a:3", "a:7", "b:2"]
    assert patterns[0]["support_background"] == 0


def test_diffnorm_on_ray_workers_gives_the_same_patterns(tmp_path):
    import ray

    lake = _planted_lake(tmp_path / "lake")
    kwargs = dict(algo="diffnorm", binarization="absolute:3.0", min_support=0.05)
    single = mine(lake, "errors", "correct", **kwargs).patterns
    from neurolake.mining.mine import _diffnorm
    from neurolake.query.groups import get_group

    run = lake.run("m")
    dense = lambda g: np.concatenate(
        [run.read_rows(layer, get_group(lake, g).frame_ids()) > 3.0 for layer in ("a", "b")], axis=1
    )
    try:
        on_ray, details = _diffnorm(dense("errors"), dense("correct"), 0.05, {}, workers=2)
    finally:
        ray.shutdown()
    names = [f"a:{i}" for i in range(12)] + [f"b:{i}" for i in range(6)]
    assert sorted(sorted(names[i] for i in p) for p in on_ray) == sorted(
        sorted(p) for p in single.column("items").to_pylist()
    )


def test_diffnorm_reports_l_percent(tmp_path, capsys):
    from neurolake.cli import main

    _planted_lake(tmp_path / "lake")
    args = [
        "mine",
        "--lake",
        str(tmp_path / "lake"),
        "--target",
        "errors",
        "--background",
        "correct",
        "--algo",
        "diffnorm",
        "--binarize",
        "absolute:3",
        "--min-support",
        "0.05",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("DiffNorm: L% = "))
    l_percent = float(line.split("L% = ")[1].split()[0])
    assert 0 < l_percent < 100  # the planted pattern compresses the data
    assert main(args) == 0
    again = capsys.readouterr().out
    assert "[reused]" in again and line in again  # the figures are stored with the patterns


@pytest.mark.slow
def test_mine_with_workers_on_a_separately_started_cluster(tmp_path):
    """`ray start --head` on loopback, then `neurolake mine --workers 2 --ray-address`: the
    planted pattern comes out, as it does in one process."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    import ray

    from tests.conftest import _free_port

    if ray.is_initialized():
        ray.shutdown()
    repo = Path(__file__).resolve().parents[2]
    lake = _planted_lake(tmp_path / "lake")
    port = _free_port()
    # A machine where a local Ray has run has a token, and `ray start` then turns token
    # authentication on by itself: the client given the address must present it.
    env = dict(os.environ, PYTHONPATH=str(repo), RAY_AUTH_TOKEN="0123456789abcdef" * 4)
    for name in ("RAY_ADDRESS", "RAY_AUTH_MODE"):  # RAY_AUTH_MODE: what a local ray.init here set
        env.pop(name, None)
    head = subprocess.Popen(
        [
            os.path.join(os.path.dirname(sys.executable), "ray"),
            "start",
            "--head",
            "--block",
            f"--port={port}",
            "--node-ip-address=127.0.0.1",
            "--num-cpus=2",
            "--include-dashboard=false",
            "--disable-usage-stats",
        ],
        env=env,
        cwd=repo,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        address = f"127.0.0.1:{port}"
        cmd = [
            sys.executable,
            "-m",
            "neurolake.cli",
            "-v",
            "mine",
            "--lake",
            str(tmp_path / "lake"),
            "--target",
            "errors",
            "--background",
            "correct",
            "--binarize",
            "absolute:3.0",
            "--min-support",
            "0.5",
            "--max-size",
            "4",
            "--workers",
            "2",
            "--ray-address",
            address,
        ]
        deadline = time.time() + 120
        while True:  # until the head answers
            proc = subprocess.run(cmd, env=env, cwd=repo, capture_output=True, text=True, timeout=600)
            if proc.returncode == 0 or time.time() > deadline:
                break
            time.sleep(2)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert f"connecting to Ray at {address}" in proc.stderr
    finally:
        # `ray start --block` took 33 s to exit on SIGTERM: a few seconds, then SIGKILL.
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
    stored = mine(lake, "errors", "correct", binarization="absolute:3.0", min_support=0.5, max_size=4)
    assert stored.reused  # the cluster's run stored it
    local = mine(
        _planted_lake(tmp_path / "again"), "errors", "correct", binarization="absolute:3.0", min_support=0.5, max_size=4
    )
    key = lambda t: sorted(
        (tuple(sorted(r["items"])), r["support_target"], r["support_background"]) for r in t.to_pylist()
    )
    assert key(stored.patterns) == key(local.patterns)
    assert sorted(stored.patterns.to_pylist()[0]["items"]) == ["a:3", "a:7", "b:2"]


def test_an_empty_target_set_is_reported_as_what_diffnorm_found(tmp_path, capsys):
    """The planted pattern fires in both halves of the error frames: DiffNorm puts it in the shared
    set, and the output says so instead of blaming the support threshold."""
    from neurolake.cli import main

    lake = _planted_lake(tmp_path / "lake")
    create_group(lake, "errors-even", "m", "word_error AND frame_id % 8 = 0")
    create_group(lake, "errors-odd", "m", "word_error AND frame_id % 8 = 4")
    args = ["mine", "--lake", str(tmp_path / "lake"), "--target", "errors-even", "--background", "errors-odd"]
    assert main([*args, "--algo", "diffnorm", "--binarize", "absolute:3", "--min-support", "0.05"]) == 0
    out = capsys.readouterr().out
    sets = next(x for x in out.splitlines() if x.startswith("DiffNorm: L% = "))
    assert "target 0," in sets and "shared 0" not in sets
    assert "DiffNorm's target set is empty" in out and "minimum support" not in out
    assert main([*args, "--binarize", "absolute:3", "--min-support", "0.99"]) == 0  # LCM keeps its hint
    assert "no pattern reaches the minimum support" in capsys.readouterr().out


@pytest.mark.parametrize("binarization", ["quantile:0.5", "absolute:0.5", "zscore:1", "topk:3"])
def test_packed_binarised_rows_equal_packbits_of_the_bool_rows(tmp_path, binarization):
    """The packed bits mining and scans use, threshold binarisations packed on the decoding
    threads (layers of 12 and 6 units: the second starts inside a byte), the others from bool
    blocks of 7 frames: byte for byte ``np.packbits`` of ``binarised_rows``, on frames that
    skip some and cross parts."""
    from neurolake.mining.binarize import as_spec
    from neurolake.mining.mine import binarised_rows, packed_binarised
    from neurolake.query.neurons import neuron_statistics

    lake = _planted_lake(tmp_path / "lake")
    run = lake.run("m")
    stats = neuron_statistics(lake, "m")
    ids = run.committed_frame_ids()
    ids = ids[(ids % 3 != 1) & (ids % 11 != 0)]
    spec = as_spec(binarization)
    flags = binarised_rows(run, ids, ["a", "b"], spec, stats)
    assert 0 < flags[:, :12].mean() < 1 and 0 < flags[:, 12:].mean() < 1
    got = packed_binarised(run, ids, ["a", "b"], spec, stats, block=7)
    np.testing.assert_array_equal(got, np.packbits(flags, axis=1))
    np.testing.assert_array_equal(packed_binarised(run, ids[:0], ["a", "b"], spec, stats), np.zeros((0, 3), np.uint8))
