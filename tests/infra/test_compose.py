"""infra/compose/compose.yaml, read as compose reads it: the Ray nodes and the driver run the
CPU image with one environment, the head runs no work, every neurolake and `ray start` command
parses with the real parsers, and MinIO's credentials are the ones the nodes use.
(test_rehearsal.py runs the same commands against the same topology.)"""

from __future__ import annotations

from tests.infra.commands import REPO, load_yaml_documents, parse_neurolake, parse_ray_start, shell_commands

COMPOSE = REPO / "infra" / "compose" / "compose.yaml"


def _services() -> dict:
    (compose,) = load_yaml_documents(COMPOSE)
    return compose["services"]


def test_the_nodes_run_the_cpu_image_with_one_environment():
    services = _services()
    nodes = ("ray-head", "ray-worker", "rehearsal")
    for name in nodes:
        build = services[name]["build"]
        assert services[name]["image"] == "neurolake:0.1.0-cpu"
        assert (COMPOSE.parent / build["context"]).resolve() == REPO
        assert build["dockerfile"] == "infra/docker/Dockerfile.cpu"
    head_env = services["ray-head"]["environment"]
    assert services["ray-worker"]["environment"] == head_env
    assert services["rehearsal"]["environment"] == {**head_env, "RAY_ADDRESS": "ray-head:6379"}
    minio = services["minio"]["environment"]
    assert (minio["MINIO_ROOT_USER"], minio["MINIO_ROOT_PASSWORD"]) == (
        head_env["AWS_ACCESS_KEY_ID"],
        head_env["AWS_SECRET_ACCESS_KEY"],
    )
    assert head_env["AWS_ENDPOINT_URL"] == "http://minio:9000" and head_env["NEUROLAKE_LAKE"].startswith(
        "s3://neurolake/"
    )
    (bucket,) = [argv for argv in shell_commands(services["bucket"]["entrypoint"][2]) if argv[:2] == ["mc", "mb"]]
    assert bucket[-1] == "local/neurolake"


def test_the_head_runs_no_work_and_the_worker_joins_it():
    services = _services()
    head = parse_ray_start(services["ray-head"]["command"])
    worker = parse_ray_start(services["ray-worker"]["command"])
    assert head["head"] and head["block"] and head["num_cpus"] == 0
    assert not worker["head"] and worker["block"] and worker["num_cpus"] >= 2
    assert worker["address"] == f"ray-head:{head['port']}"


def test_the_rehearsal_runs_real_neurolake_commands():
    script = _services()["rehearsal"]["command"][2]
    parsed = [parse_neurolake(argv) for argv in shell_commands(script)]
    assert [(a.verb, getattr(a, "corpus_verb", None)) for a in parsed] == [
        ("corpus", "synth"),
        ("ingest", None),
        ("ingest", None),
        ("runs", None),
        ("sql", None),
    ]
    synth, dry_run, ingest = parsed[:3]
    assert dry_run.dry_run and not ingest.dry_run
    # The dry run plans exactly what the ingest runs, from the corpus synth wrote.
    for key in ("corpus", "model", "run", "layers", "part_rows"):
        assert getattr(dry_run, key) == getattr(ingest, key), key
    assert ingest.corpus == synth.out and synth.out.startswith("s3://neurolake/")
