"""The Ray cluster-launcher configurations of infra/cluster: valid against the schema Ray ships
(``ray/autoscaler/ray-schema.json``) and after Ray merges in its provider's defaults, and every
command they run on the nodes is real: ``pip install`` from both locks, ``neurolake`` verbs with
valid flags, ``ray start`` with valid flags and a head that runs no work."""

from __future__ import annotations

import copy
import json
import os

import jsonschema
import pytest

from tests.infra.commands import (
    REPO,
    load_yaml_documents,
    lock_pins,
    parse_neurolake,
    parse_ray_start,
    pip_constraint_files,
    program,
    shell_commands,
)
from tests.infra.test_images import base_image

CLOUDS = ("aws", "gcp")


def _config(cloud: str) -> dict:
    (config,) = load_yaml_documents(REPO / "infra" / "cluster" / f"{cloud}.yaml")
    return config


def _ray_schema() -> dict:
    import ray.autoscaler

    with open(os.path.join(os.path.dirname(ray.autoscaler.__file__), "ray-schema.json"), encoding="utf-8") as fh:
        return json.load(fh)


def _schema_errors(config: dict) -> list[str]:
    return [e.message for e in jsonschema.Draft7Validator(_ray_schema()).iter_errors(config)]


def _commands(config: dict, *keys: str) -> list[list[str]]:
    return [argv for key in keys for line in config.get(key, []) for argv in shell_commands(line)]


@pytest.mark.parametrize("cloud", CLOUDS)
def test_the_config_is_valid_for_rays_cluster_launcher(cloud):
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = _config(cloud)
    assert config["provider"]["type"] == cloud
    assert _schema_errors(config) == []
    prepared = prepare_config(copy.deepcopy(config))  # merged with Ray's defaults for the provider
    validate_config(prepared)
    assert prepared["head_node_type"] == "head"
    assert prepared["available_node_types"]["head"]["max_workers"] == 0
    gpu = prepared["available_node_types"]["gpu"]
    assert 0 == gpu["min_workers"] < gpu["max_workers"] <= prepared["max_workers"]


@pytest.mark.parametrize(
    "break_it, complaint",
    [
        (lambda c: c.update({"max_worker": 8}), "'max_worker' was unexpected"),
        (lambda c: c.update({"idle_timeout_minutes": "ten"}), "'ten' is not of type 'number'"),
        (lambda c: c["available_node_types"]["gpu"].pop("node_config"), "'node_config' is a required property"),
        (lambda c: c["docker"].update({"image": ["pytorch"]}), "is not of type 'string'"),
    ],
)
def test_a_broken_config_is_refused(break_it, complaint):
    for cloud in CLOUDS:
        broken = copy.deepcopy(_config(cloud))
        break_it(broken)
        errors = _schema_errors(broken)
        assert any(complaint in e for e in errors), errors


@pytest.mark.parametrize("cloud", CLOUDS)
def test_nodes_run_the_pinned_torch_image_and_install_this_checkout_from_the_locks(cloud):
    config = _config(cloud)
    assert config["docker"]["image"] == base_image(REPO / "infra" / "docker" / "Dockerfile.cuda")
    assert config["docker"]["worker_run_options"] == ["--gpus all"]
    (remote,) = [r for r, local in config["file_mounts"].items() if local == "."]  # the repository root
    installs = [
        argv for argv in _commands(config, "setup_commands", "head_setup_commands") if argv[:2] == ["pip", "install"]
    ]
    assert len(installs) == 2
    for argv in installs:
        assert pip_constraint_files(argv) == [
            f"{remote}/constraints.txt",
            f"{remote}/infra/docker/cluster-constraints.txt",
        ]
    project, autoscaler = installs
    assert project[-2:] == [remote, "ray[default]"]
    # The head's autoscaler needs the cloud's client library, pinned by the cluster lock.
    client = {"aws": "boto3", "gcp": "google-api-python-client"}[cloud]
    assert autoscaler[-1] == client and client in lock_pins(REPO / "infra" / "docker" / "cluster-constraints.txt")
    neurolake = [argv for argv in _commands(config, "setup_commands") if program(argv) == "neurolake"]
    assert [parse_neurolake(argv).verb for argv in neurolake] == ["doctor"]


@pytest.mark.parametrize("cloud", CLOUDS)
def test_ray_starts_a_head_that_runs_no_work_and_workers_that_join_it(cloud):
    config = _config(cloud)
    starts = {}
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        argvs = _commands(config, key)
        assert [program(a) for a in argvs] == ["ray", "ulimit", "ray"], argvs  # ray stop; ulimit; ray start
        assert argvs[0][1] == "stop"
        starts[key] = parse_ray_start(argvs[2])
    head, worker = starts["head_start_ray_commands"], starts["worker_start_ray_commands"]
    assert head["head"] and head["num_cpus"] == 0 == config["available_node_types"]["head"]["resources"]["CPU"]
    assert head["autoscaling_config"] == "~/ray_bootstrap_config.yaml"
    assert not worker["head"] and worker["address"] == f"$RAY_HEAD_IP:{head['port']}"


def test_gpu_workers_are_gpu_machines_of_each_cloud():
    aws = _config("aws")["available_node_types"]["gpu"]["node_config"]
    assert aws["InstanceType"].startswith(("g5.", "g6.", "p4d.", "p5."))
    assert aws["ImageId"].startswith("resolve:ssm:/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu")
    gcp = _config("gcp")["available_node_types"]["gpu"]["node_config"]
    assert gcp["machineType"].startswith(("g2-", "a2-", "a3-"))  # machine types that come with their GPUs
    assert {"onHostMaintenance": "TERMINATE"} in gcp["scheduling"]
    (disk,) = gcp["disks"]
    assert "nvidia-5" in disk["initializeParams"]["sourceImage"]  # a driver for CUDA 13.0 (580 or newer)
