"""End-to-end ingest on a real local Ray: bad input, resume, conflicts, killed actors, S3."""

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from neurolake.corpora.synth import synthesize_corpus
from neurolake.errors import RunConflictError
from neurolake.ingest.pipeline import ingest
from neurolake.store import Lake, Location

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
MODEL = "python:tests.models.demo_factory:build"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    synthesize_corpus(str(root), n_utterances=24, seed=4, holdout_accent=None, test_fraction=0.0)
    return root / "train"


def _ingest_cli(corpus: Path, run_id: str, lake: str | None = None) -> list[str]:
    """``neurolake ingest`` of the test corpus with the test model, as a command line."""
    cmd = [os.sys.executable, "-m", "neurolake.cli", "ingest", "--corpus", str(corpus), "--model", MODEL]
    cmd += ["--run", run_id, "--part-rows", "200", "--quiet"]
    return cmd + (["--lake", lake] if lake else [])


def _run_files(lake_dir: Path, run_id: str) -> dict[str, bytes]:
    base = lake_dir / "runs" / run_id
    return {
        p.relative_to(base).as_posix(): p.read_bytes()
        for p in sorted(base.rglob("*"))
        if p.is_file() and p.name != "run.json" and not p.relative_to(base).as_posix().startswith(("derived", "lease"))
    }


def test_ingest_resume_and_conflicts(ray_session, corpus, tmp_path, monkeypatch):
    lake_dir = tmp_path / "lake"
    monkeypatch.chdir(corpus.parent)  # the corpus named relative to the working directory
    s = ingest(str(lake_dir), corpus.name, MODEL, run_id="r", part_rows=300, progress=False)
    assert Lake.open(str(lake_dir)).run("r").manifest["corpus"]["spec"] == str(corpus)  # recorded absolute
    run = Lake.open(str(lake_dir)).run("r")
    info = run.info()
    assert info.status == "complete" and s.parts_run == info.parts_total > 2
    assert s.utterances_done == info.n_utterances and s.utterances_failed == 0
    utts = run.read_table("utterances")
    frames = run.read_table("frames")
    assert frames.num_rows == run.plan.n_frames == s.frames
    # every utterance's frames are its planned rows, in order
    for p in (p for u in run.plan.parts for p in u.utterances):
        row = utts.filter(utts.column("utterance_id").to_numpy(zero_copy_only=False) == p.utterance_id).to_pylist()[0]
        assert (row["first_frame_id"], row["n_frames"]) == (p.first_row, p.n_frames)
    assert run.verify() == []

    # The query side on an ingested run: SQL, a group, its activations.
    from neurolake.query.engine import QueryEngine
    from neurolake.query.gather import gather_activations
    from neurolake.query.groups import create_group

    lake = Lake.open(str(lake_dir))
    with QueryEngine(lake) as q:
        n_err = q.arrow("SELECT count(*) AS n FROM frames WHERE run_id = 'r' AND word_error").column("n")[0].as_py()
    err_ids = frames.filter(frames.column("word_error")).column("frame_id").to_numpy()
    assert n_err == err_ids.size > 0
    group = create_group(lake, "r-errors", "r", "word_error")
    np.testing.assert_array_equal(group.frame_ids(), err_ids)
    got = gather_activations(lake, ["conv2"], group="r-errors")
    np.testing.assert_array_equal(got.layers["conv2"], run.read_rows("conv2", err_ids))
    before = _run_files(lake_dir, "r")

    # Resume: nothing to do, from another directory too; a lost part is redone byte for byte.
    assert ingest(str(lake_dir), str(corpus), MODEL, run_id="r", part_rows=300, progress=False).parts_run == 0
    monkeypatch.chdir(tmp_path)
    relative = os.path.relpath(corpus, tmp_path)
    assert ingest(str(lake_dir), relative, MODEL, run_id="r", part_rows=300, progress=False).parts_run == 0
    victim = run.plan.parts[1].part_id
    (lake_dir / "runs" / "r" / "commits" / f"{victim}.json").unlink()
    again = ingest(str(lake_dir), str(corpus), MODEL, run_id="r", part_rows=300, progress=False)
    assert (again.parts_run, again.parts_already_committed) == (1, info.parts_total - 1)
    assert _run_files(lake_dir, "r") == before

    # A different layer set or model under the same run id is refused.
    with pytest.raises(RunConflictError, match="layers"):
        ingest(str(lake_dir), str(corpus), MODEL, layers=["conv1*"], run_id="r", part_rows=300, progress=False)
    with pytest.raises(RunConflictError, match="model"):
        ingest(
            str(lake_dir),
            str(corpus),
            "python:tests.models.toy_factory:build",
            run_id="r",
            part_rows=300,
            progress=False,
        )


def test_bad_input_becomes_error_rows(ray_session, corpus, tmp_path):
    bad = tmp_path / "bad"
    import shutil

    shutil.copytree(corpus, bad)
    flacs = sorted(bad.rglob("*.flac"))
    flacs[0].write_bytes(b"this is not audio at all" * 50)  # non-audio
    data = flacs[1].read_bytes()
    flacs[1].write_bytes(data[: len(data) // 2])  # truncated
    flacs[2].write_bytes(b"")  # empty
    audio, rate = sf.read(flacs[3])
    sf.write(flacs[3], audio[::2], rate // 2, format="FLAC")  # wrong sample rate
    trans = sorted(bad.rglob("*.trans.txt"))[0]
    chapter = trans.name.replace(".trans.txt", "")
    (trans.parent / f"{chapter}-0090.flac").write_bytes(flacs[4].read_bytes())
    (trans.parent / f"{chapter}-0091.flac").write_bytes(flacs[4].read_bytes())
    with open(trans, "ab") as fh:
        fh.write(f"{chapter}-0090\n".encode())  # empty transcript line
        fh.write(f"{chapter}-0091 CAF\xe9 OLE\n".encode("latin-1"))  # not UTF-8
    ids = {f.name.replace(".flac", "") for f in flacs[:4]}

    s = ingest(str(tmp_path / "lake"), str(bad), MODEL, run_id="bad", part_rows=300, progress=False)
    run = Lake.open(str(tmp_path / "lake")).run("bad")
    errors = run.read_table("errors").to_pylist()
    by_id = {e["utterance_id"]: e for e in errors}
    assert ids | {f"{chapter}-0090", f"{chapter}-0091"} <= set(by_id)
    assert "sample rate" in by_id[flacs[3].name[:-5]]["message"]
    assert by_id[flacs[1].name[:-5]]["stage"] in ("header", "decode")
    assert {by_id[f"{chapter}-0090"]["stage"], by_id[f"{chapter}-0091"]["stage"]} == {"corpus"}
    import re

    assert not any(re.search(r"line (\d+):? line \1", e["message"]) for e in errors)  # said once
    good = {p.utterance_id for u in run.plan.parts for p in u.utterances} - set(by_id)
    assert set(run.read_table("utterances").column("utterance_id").to_pylist()) == good
    assert s.utterances_done == len(good) == 24 - 4
    assert run.info().status == "complete"


def test_killed_actor_is_replaced_and_lake_is_unchanged(ray_session, corpus, tmp_path):
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    ingest(str(clean), str(corpus), MODEL, run_id="k", part_rows=300, progress=False)
    kills = []

    # this Ray's actors only (children of its raylet): another test process may be ingesting too
    from ray._private.worker import _global_node

    raylet = _global_node.all_processes["raylet"][0].process.pid

    def kill_once(result):
        if not kills:
            kills.append(subprocess.run(["pkill", "-9", "-P", str(raylet), "-f", "ray::ModelWorker"]).returncode)

    s = ingest(str(killed), str(corpus), MODEL, run_id="k", part_rows=300, progress=False, on_part_done=kill_once)
    assert kills == [0]
    assert s.parts_run == Lake.open(str(killed)).run("k").info().parts_committed
    assert _run_files(killed, "k") == _run_files(clean, "k")


def test_as_many_actors_as_cpus_gives_the_same_lake(ray_session, corpus, tmp_path):
    """Two actors on two CPUs hold every CPU; decoding must still run (it asks for none).

    Both runs use one torch thread per actor: on some CPUs the thread count changes the last
    bits of a forward pass, and the untrained test model's argmax can flip on them.
    """
    one, two = tmp_path / "one", tmp_path / "two"
    ingest(str(one), str(corpus), MODEL, run_id="a", part_rows=300, progress=False, actors=1, threads=1)
    s = ingest(str(two), str(corpus), MODEL, run_id="a", part_rows=300, progress=False, actors=2)
    assert s.parts_run == s.parts_total > 2 and s.utterances_done == 24
    assert _run_files(two, "a") == _run_files(one, "a")


def test_lake_on_s3(ray_session, corpus, s3_bucket):
    bucket, opts = s3_bucket
    url = f"s3://{bucket}/lake"
    s = ingest(url, str(corpus), MODEL, run_id="s3", part_rows=600, progress=False, storage_options=opts)
    run = Lake.open(url, opts).run("s3")
    assert run.info().status == "complete" and s.utterances_done == run.plan.n_utterances
    assert run.read_table("frames").num_rows == run.plan.n_frames
    assert run.verify() == []


def test_a_lake_location_carries_its_storage_options_to_the_actors(ray_session, corpus, s3_bucket):
    """The lake is given as one Location (URL and options) and no separate options: the driver,
    the model actors and repair all reach the S3 endpoint through it."""
    bucket, opts = s3_bucket
    loc = Location.from_url(f"s3://{bucket}/lake-loc", opts)
    s = ingest(loc, str(corpus), MODEL, run_id="l", part_rows=600, progress=False)
    run = Lake.open(loc).run("l")
    assert run.info().status == "complete" and s.utterances_done == run.plan.n_utterances == 24
    first = run.plan.parts[0]
    loc.child("runs", "l").remove("commits", f"{first.part_id}.json")  # one part lost
    redone = ingest(loc, str(corpus), MODEL, run_id="l", part_rows=600, progress=False)
    assert redone.parts_run == 1 and Lake.open(loc).run("l").verify() == []


def test_length_batches_by_hand():
    from neurolake.ingest.part import length_batches

    lengths = [100, 100, 100, 150, 400, 410, 90]
    # 90,100,100 fill a batch of 3; 100+150 would be 17 % padding; 150+400 too; 400+410 is 1 %.
    assert length_batches(lengths, 3, 10_000, 0.15) == [[6, 0, 1], [2], [3], [4, 5]]
    assert length_batches(lengths, 3, 800, 0.15) == [[6, 0, 1], [2], [3], [4], [5]]
    assert length_batches(lengths, 8, 10_000, 1.0) == [[6, 0, 1, 2, 3, 4, 5]]
    rng = np.random.default_rng(0)
    many = rng.integers(10_000, 70_000, 500).tolist()
    batches = length_batches(many, 16, 16_000 * 160, 0.15)
    assert sorted(i for b in batches for i in b) == list(range(500))
    for b in batches:
        longest = max(many[i] for i in b)
        assert len(b) <= 16 and (len(b) == 1 or longest * len(b) - sum(many[i] for i in b) <= 0.15 * longest * len(b))


def test_verify_repair_redoes_exactly_the_damaged_units(ray_session, corpus, tmp_path, capsys):
    from neurolake.cli import main

    lake_dir = tmp_path / "lake"
    ingest(str(lake_dir), str(corpus), MODEL, run_id="r", part_rows=300, progress=False)
    run = Lake.open(str(lake_dir)).run("r")
    before = _run_files(lake_dir, "r")
    parts = run.plan.parts
    assert len(parts) >= 3
    # damage two parts: flip a byte of a shard of one, delete a table file of another
    shard = (
        lake_dir
        / "runs"
        / "r"
        / "activations.zarr"
        / run.layer_names[0]
        / "c"
        / str(parts[1].row_start // run.plan.rows_per_shard)
        / "0"
    )
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    marker = run.commits()[parts[2].part_id]
    (lake_dir / "runs" / "r" / marker.tables["frames"].key).unlink()
    assert sorted(run.damaged_parts()) == sorted([parts[1].part_id, parts[2].part_id])
    untouched = {
        u.part_id: (lake_dir / "runs" / "r" / "commits" / f"{u.part_id}.json").stat().st_mtime_ns
        for u in parts
        if u not in parts[1:3]
    }

    assert main(["verify", "--lake", str(lake_dir)]) == 1
    assert "verify --repair" in capsys.readouterr().out
    assert main(["verify", "--repair", "--lake", str(lake_dir)]) == 0
    out = capsys.readouterr().out
    assert f"re-did 2 damaged part(s): {', '.join(sorted([parts[1].part_id, parts[2].part_id]))}" in out
    assert out.strip().endswith("1 run(s) checked, 0 problem(s)")
    assert _run_files(lake_dir, "r") == before  # byte for byte what the first ingest wrote
    for part_id, mtime in untouched.items():  # the intact parts were not re-done
        assert (lake_dir / "runs" / "r" / "commits" / f"{part_id}.json").stat().st_mtime_ns == mtime


def _plant_faults(corpus: Path, target: Path, n: int = 2) -> set[str]:
    """A copy of the corpus whose n chosen utterances start with the faulty model's marker."""
    import shutil

    from tests.ingest.faulty_factory import MARKER_SAMPLES, MARKER_VALUE

    shutil.copytree(corpus, target)
    flacs = sorted(target.rglob("*.flac"))
    chosen = [flacs[3], flacs[len(flacs) - 5]][:n]
    for f in chosen:
        audio, rate = sf.read(f, dtype="float32")
        audio[: MARKER_SAMPLES * rate // 16000] = MARKER_VALUE
        sf.write(f, audio, rate, format="FLAC", subtype="PCM_16")
    return {f.name[: -len(".flac")] for f in chosen}


@pytest.mark.parametrize(
    "factory, reason",
    [
        ("build_raising", "planted fault"),
        ("build_crashing", "model process died"),
    ],
)
def test_utterances_the_model_fails_on_are_isolated(ray_session, corpus, tmp_path, factory, reason):
    bad = _plant_faults(corpus, tmp_path / "corpus")
    s = ingest(
        str(tmp_path / "lake"),
        str(tmp_path / "corpus"),
        f"python:tests.ingest.faulty_factory:{factory}",
        run_id="f",
        part_rows=300,
        progress=False,
    )
    run = Lake.open(str(tmp_path / "lake")).run("f")
    assert run.info().status == "complete" and s.parts_failed == []
    errors = {e["utterance_id"]: e for e in run.read_table("errors").to_pylist()}
    assert set(errors) == bad  # exactly the planted ones, found by the probes
    assert all(e["stage"] == "model" and reason in e["message"] for e in errors.values())
    ingested = set(run.read_table("utterances").column("utterance_id").to_pylist())
    assert ingested == {p.utterance_id for u in run.plan.parts for p in u.utterances} - bad
    assert s.utterances_failed == len(bad) and s.utterances_done == len(ingested)


def test_overlong_utterances_are_error_rows(ray_session, corpus, tmp_path):
    lengths = {f.name[: -len(".flac")]: sf.info(f).duration for f in corpus.rglob("*.flac")}
    limit = sorted(lengths.values())[-3]  # the two longest are over it
    ingest(str(tmp_path / "lake"), str(corpus), MODEL, run_id="l", part_rows=300, progress=False, max_duration_s=limit)
    run = Lake.open(str(tmp_path / "lake")).run("l")
    errors = {e["utterance_id"]: e for e in run.read_table("errors").to_pylist()}
    assert set(errors) == {u for u, d in lengths.items() if d > limit} and len(errors) == 2
    assert all(e["stage"] == "header" and "--max-duration" in e["message"] for e in errors.values())


def test_ingest_with_relevance_stores_the_models_relevance_and_gradnaps_read_it(ray_session, tmp_path, capsys):
    import torch

    from neurolake.cli import main
    from neurolake.corpora.audio import load_audio
    from neurolake.introspect.naps import gradnaps
    from neurolake.models import load_model
    from neurolake.query.groups import create_group

    synthesize_corpus(str(tmp_path / "c"), n_utterances=4, seed=9, holdout_accent=None, test_fraction=0.0)
    lake_dir = tmp_path / "lake"
    argv = ["ingest", "--lake", str(lake_dir), "--corpus", str(tmp_path / "c" / "train"), "--model", MODEL]
    assert main([*argv, "--run", "g", "--layers", "conv1,conv3", "--part-rows", "300", "--quiet", "--relevance"]) == 0
    lake = Lake.open(str(lake_dir))
    run = lake.run("g")
    # conv1 is pooled onto the output grid, so only conv3 has a per-frame relevance
    assert run.manifest["relevance"] == ["conv3"] and run.info().status == "complete" and run.verify() == []
    adapter = load_model(MODEL)
    utterances = sorted(run.read_table("utterances").to_pylist(), key=lambda r: r["first_frame_id"])
    for row in utterances[:2]:
        wave = torch.from_numpy(load_audio(row["audio_uri"], adapter.sample_rate))
        targets = adapter.forward(wave[None], [wave.numel()]).log_probs[0].argmax(dim=-1).tolist()
        expected = adapter.relevance(wave, "conv3", targets).numpy()
        stored = run.read_rows("conv3", np.arange(row["n_frames"]) + row["first_frame_id"], relevance=True)
        assert stored.dtype == np.float32 and np.abs(expected).max() > 0
        np.testing.assert_allclose(stored, expected, rtol=1e-5, atol=1e-7 * np.abs(expected).max())
    create_group(lake, "first", "g", f"utterance_id = '{utterances[0]['utterance_id']}'")
    create_group(lake, "errors", "g", "segment_error")
    stored = gradnaps(lake, "g", groups=["first", "errors"], layers=["conv3"], progress=False)
    recomputed = gradnaps(lake, "g", groups=["first", "errors"], layers=["conv3"], from_model=True, progress=False)
    assert (stored.source, recomputed.source) == ("lake", "model") and stored.nap_id != recomputed.nap_id
    scale = np.abs(recomputed.mean["conv3"]).max()
    np.testing.assert_allclose(stored.mean["conv3"], recomputed.mean["conv3"], rtol=1e-5, atol=1e-7 * scale)
    np.testing.assert_array_equal(stored.counts, recomputed.counts)
    with pytest.raises(Exception, match="stores no relevance of layer 'conv1'"):
        run.read_rows("conv1", [0], relevance=True)
    url = str(lake_dir)
    assert (
        main(["naps", "--lake", url, "--run", "g", "--groups", "first,errors", "--layers", "conv3", "--relevance"]) == 0
    )
    out = capsys.readouterr().out
    assert "relevance read from the lake" in out
    # Relevance is small: each top unit's contrastive value is printed readably, not as +0.00.
    contrast = stored.contrastive["conv3"][:, stored.offsets.index(0)]
    assert np.abs(contrast).max() < 0.05
    for g, name in enumerate(stored.groups):
        top = int(contrast[g].argmax())
        line = next(row for row in out.splitlines() if row.startswith(f"{name} "))
        printed = float(line.split(f" {top} (", 1)[1].split(")", 1)[0])
        assert printed == pytest.approx(contrast[g, top], rel=0.01) and printed != 0


# Tests that start Ray themselves (a cluster of two nodes, the CLI in processes of its own) shut
# down the module's shared instance: they come last, so that the tests above share one.


def test_two_node_cluster(corpus, tmp_path):
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    cluster.add_node(num_cpus=2)
    try:
        ray.init(address=cluster.address, runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}}, log_to_driver=False)
        s = ingest(str(tmp_path / "lake"), str(corpus), MODEL, run_id="two", part_rows=200, actors=2, progress=False)
        assert len(s.nodes) == 2 and sum(s.nodes.values()) == s.parts_run
        assert Lake.open(str(tmp_path / "lake")).run("two").info().status == "complete"
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_killed_driver_converges(corpus, tmp_path):
    import signal
    import time

    import ray

    if ray.is_initialized():
        ray.shutdown()
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    subprocess.run(_ingest_cli(corpus, "d", str(clean)), env=env, check=True, cwd=REPO)
    proc = subprocess.Popen(_ingest_cli(corpus, "d", str(killed)), env=env, cwd=REPO, start_new_session=True)
    commits = killed / "runs" / "d" / "commits"
    deadline = time.time() + 120
    while time.time() < deadline and not (commits.exists() and any(commits.glob("*.json"))):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = Lake.open(str(killed)).run("d").info()
    assert 1 <= partial.parts_committed < partial.parts_total
    subprocess.run(_ingest_cli(corpus, "d", str(killed)), env=env, check=True, cwd=REPO)
    assert _run_files(killed, "d") == _run_files(clean, "d")


def test_a_second_ingest_of_a_run_stops_and_the_run_never_shrinks(corpus, tmp_path):
    import time

    import ray

    if ray.is_initialized():
        ray.shutdown()
    lake_dir = tmp_path / "lake"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    cmd = _ingest_cli(corpus, "d", str(lake_dir))
    first = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lease_dir = lake_dir / "runs" / "d" / "lease"
    deadline = time.time() + 120
    while time.time() < deadline and not any(lease_dir.glob("*.json")):
        time.sleep(0.05)
    second = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert second.returncode == 2, second.stderr
    assert second.stderr.count("\n") == 1 and "being written by another ingest" in second.stderr
    assert f"pid {first.pid}" in second.stderr
    seen = []
    while first.poll() is None:
        if (lake_dir / "runs" / "d" / "run.json").exists():
            seen.append(Lake.open(str(lake_dir)).run("d").info().frames_committed)
        time.sleep(0.2)
    assert first.returncode == 0, first.stderr
    assert seen == sorted(seen)  # readers never saw the run shrink
    run = Lake.open(str(lake_dir)).run("d")
    assert run.info().status == "complete" and run.verify() == []
    # the lease was released: a third ingest (nothing left to do) runs at once
    third = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert third.returncode == 0, third.stderr


def test_storage_outage_mid_ingest_is_one_line_and_keeps_the_commits(corpus, tmp_path):
    """The S3 endpoint goes away during an ingest: one line, exit 2, committed parts kept."""
    import sys
    import time
    import urllib.request

    import boto3
    import ray

    from tests.conftest import _free_port

    if ray.is_initialized():
        ray.shutdown()
    port = _free_port()
    moto = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 30
        while True:
            try:
                urllib.request.urlopen(endpoint + "/moto-api/", timeout=1)
                break
            except OSError:
                assert time.time() < deadline
                time.sleep(0.1)
        s3 = boto3.client(
            "s3", endpoint_url=endpoint, aws_access_key_id="t", aws_secret_access_key="t", region_name="us-east-1"
        )
        s3.create_bucket(Bucket="outage")
        env = dict(
            os.environ,
            PYTHONPATH=str(REPO),
            AWS_ACCESS_KEY_ID="t",
            AWS_SECRET_ACCESS_KEY="t",
            AWS_ENDPOINT_URL=endpoint,
            AWS_DEFAULT_REGION="us-east-1",
            # the user's retry setting replaces the lake's default of 10 attempts: the outage
            # is found after a few seconds of backoff, not a minute
            AWS_MAX_ATTEMPTS="3",
        )
        cmd = _ingest_cli(corpus, "o", "s3://outage/lake")
        proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 120
        while time.time() < deadline:
            listed = s3.list_objects_v2(Bucket="outage", Prefix="lake/runs/o/commits/").get("Contents", [])
            if listed:
                break
            time.sleep(0.1)
        committed = len(listed)
        assert committed >= 1
    finally:
        moto.kill()
        moto.wait()
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 2, err
    assert err.count("\n") == 1 and "the lake's storage failed" in err and "run the same ingest again" in err
    assert "Traceback" not in err
