"""How many model actors an ingest starts, and what share of a GPU and of the CPUs each gets."""

import json
import math
import subprocess
import sys
import textwrap

import pytest

from neurolake.errors import PlanError
from neurolake.ingest.pipeline import actor_shares, ingest


@pytest.mark.parametrize(
    ("actors", "threads", "cpus", "gpus", "expected"),
    [
        (None, None, 2, 0, (1, 0.0, 2)),  # CPU: one actor per two CPUs, every core its threads
        (None, None, 16, 0, (8, 0.0, 2)),
        (2, None, 2, 0, (2, 0.0, 1)),
        (None, None, 16, 1, (1, 1.0, 1)),  # GPU: one actor per GPU, one thread
        (None, None, 64, 8, (8, 1.0, 1)),
        (2, None, 16, 1, (2, 0.5, 1)),  # two actors share one GPU
        (3, None, 16, 2, (3, 0.5, 1)),  # not 2/3 each: the third would never fit
        (5, None, 16, 2, (5, 1 / 3, 1)),
        (1, None, 16, 4, (1, 1.0, 1)),
        (2, 4, 16, 1, (2, 0.5, 4)),
    ],
)
def test_actor_shares_by_hand(actors, threads, cpus, gpus, expected):
    assert actor_shares(actors, threads, cpus, gpus) == pytest.approx(expected)


def test_every_actor_fits_on_the_gpus_and_no_share_is_smaller_than_it_must_be():
    for gpus in range(1, 9):
        for actors in range(1, 41):
            _, share, _ = actor_shares(actors, None, 64, gpus)
            per_gpu = math.floor(1 / share + 1e-9)
            assert per_gpu * gpus >= actors, (gpus, actors, share)
            # One actor fewer per GPU would not fit them all: the share is as large as it can be.
            assert (per_gpu - 1) * gpus < actors, (gpus, actors, share)


def test_a_negative_gpu_count_is_a_clear_error_before_anything_starts(tmp_path):
    with pytest.raises(PlanError, match="gpus must be at least 0, got -1"):
        ingest(str(tmp_path / "lake"), str(tmp_path / "no-corpus"), "demo", gpus=-1)
    assert not (tmp_path / "lake").exists()


def _answer(stdout: str):
    """The JSON a test script printed after ``answer:``. Ray may print a line of its own after it
    (once: an actor's call failing as the pool's close killed it)."""
    return json.loads(
        next(line for line in stdout.splitlines() if line.startswith("answer: ")).removeprefix("answer: ")
    )


def test_shared_gpus_place_every_actor_on_a_real_ray():
    """Five actors on a Ray node with two (logical) GPUs all start, three or two on a GPU."""
    script = textwrap.dedent(
        """
        import json, ray
        from neurolake.cluster.pool import ActorPool
        from neurolake.ingest.pipeline import actor_shares

        class Gpu:
            def ids(self):
                return ray.get_gpu_ids()

        ray.init(address="local", num_cpus=6, num_gpus=2, include_dashboard=False, log_to_driver=False)
        n, share, _ = actor_shares(5, None, 6, 2)
        pool = ActorPool(Gpu, [()] * n, num_cpus=1, num_gpus=share)
        print("answer:", json.dumps([pool.call(a, "ids", timeout=120) for a in range(n)]))
        pool.close()
        ray.shutdown()
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    ids = _answer(done.stdout)
    assert len(ids) == 5 and all(len(each) == 1 for each in ids)
    counts = sorted([each[0] for each in ids].count(g) for g in {each[0] for each in ids})
    assert counts == [2, 3]


def test_gpus_0_runs_the_models_on_cpus_on_a_cluster_with_a_gpu(tmp_path):
    """``gpus=0`` overrides the cluster's GPU: the actor loads the model on the CPU and answers
    (on this machine, with no CUDA, an actor given the GPU could not load it)."""
    script = textwrap.dedent(
        f"""
        import json, ray
        from neurolake.ingest.pipeline import _start_actors
        from neurolake.store import Location

        ray.init(address="local", num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
        pool = _start_actors(None, None, 0, None, Location.from_url({str(tmp_path / "lake")!r}), "r", "demo", ["head"], 16)
        print("answer:", json.dumps([len(pool), pool.call(0, "device", timeout=120)]))
        pool.close()
        ray.shutdown()
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert _answer(done.stdout) == [1, "cpu"]


@pytest.mark.parametrize(
    ("workers", "gpus", "expected"),
    [
        (None, 0, (1, 0.0)),
        (2, 0, (2, 0.0)),
        (None, 4, (4, 1.0)),  # one per GPU, the cluster's or --gpus
        (2, 4, (2, 1.0)),
        (4, 2, (4, 0.5)),  # more actors than GPUs share them (before: capped at the GPUs)
        (3, 2, (3, 0.5)),
    ],
)
def test_an_ablations_decoding_actors_and_their_gpu_shares(workers, gpus, expected):
    from neurolake.introspect.ablation import decode_actors

    assert decode_actors(workers, gpus) == pytest.approx(expected)


def test_a_negative_gpu_count_for_an_ablation_is_a_clear_error(tmp_path):
    from neurolake.errors import SpecError
    from neurolake.introspect.ablation import ablate
    from neurolake.store import Lake

    with pytest.raises(SpecError, match="--gpus must be at least 0, got -2"):
        ablate(Lake.create(str(tmp_path / "lake")), "r", ["conv1:0"], gpus=-2)
