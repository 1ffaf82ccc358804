"""The KubeRay manifests of infra/k8s: valid against KubeRay's CRD schemas (the compact subset in
kuberay_crds.yaml, derived from KubeRay's own CRDs), and what they say about the cluster holds:
the Ray version is the lock's, the images are the ones infra/docker builds, the head runs no
work, the GPU group autoscales within bounds, every container gets the object store's
credentials from the Secret that docs/deploy.md creates, and the job's entrypoint is a real
``neurolake ingest``."""

from __future__ import annotations

import copy
import re
import shlex
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.infra.commands import REPO, load_yaml_documents, lock_pins, parse_neurolake, parse_ray_start
from tests.infra.commands import ray_start_params_to_argv as start_argv

K8S = REPO / "infra" / "k8s"
SCHEMAS = Path(__file__).with_name("kuberay_crds.yaml")


def _schemas() -> dict:
    with open(SCHEMAS, encoding="utf-8") as fh:
        return yaml.safe_load(fh)["schemas"]


def _errors(manifest: dict) -> list[str]:
    validator = jsonschema.Draft7Validator(_schemas()[manifest["kind"]])
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(manifest)]


def _manifest(name: str) -> dict:
    (doc,) = load_yaml_documents(K8S / name)
    return doc


def _cluster_specs() -> list[tuple[str, dict]]:
    return [
        ("raycluster.yaml", _manifest("raycluster.yaml")["spec"]),
        ("rayjob.yaml", _manifest("rayjob.yaml")["spec"]["rayClusterSpec"]),
    ]


def _containers(spec: dict) -> list[tuple[str, dict]]:
    groups = [("head", spec["headGroupSpec"])] + [(g["groupName"], g) for g in spec["workerGroupSpecs"]]
    return [(name, c) for name, group in groups for c in group["template"]["spec"]["containers"]]


@pytest.mark.parametrize("name", ["raycluster.yaml", "rayjob.yaml"])
def test_the_manifest_is_valid_against_kuberays_crd(name):
    manifest = _manifest(name)
    assert manifest["apiVersion"] == "ray.io/v1" and manifest["kind"] in ("RayCluster", "RayJob")
    assert _errors(manifest) == []


@pytest.mark.parametrize(
    "break_it, complaint",
    [
        # rayStartParams are strings: `num-cpus: 0` is refused by the API server
        (lambda s: s["headGroupSpec"]["rayStartParams"].update({"num-cpus": 0}), "0 is not of type 'string'"),
        # KubeRay 1.7 requires the autoscaling bounds of every worker group
        (lambda s: s["workerGroupSpecs"][0].pop("maxReplicas"), "'maxReplicas' is a required property"),
        # a misspelt field is an unknown field
        (lambda s: s.update({"workerGroupSpec": s.pop("workerGroupSpecs")}), "'workerGroupSpec' was unexpected"),
        # a container without a name
        (lambda s: s["headGroupSpec"]["template"]["spec"]["containers"][0].pop("name"), "'name' is a required"),
        # a replica count that is not a number
        (lambda s: s["workerGroupSpecs"][0].update({"replicas": "two"}), "'two' is not of type 'integer'"),
        # an autoscaler mode KubeRay does not have
        (lambda s: s["autoscalerOptions"].update({"upscalingMode": "Eager"}), "'Eager' is not one of"),
        # a quantity that is not one
        (
            lambda s: s["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["resources"]["limits"].update(
                {"memory": "28 gigs"}
            ),
            "does not match",
        ),
    ],
)
def test_a_broken_manifest_is_refused(break_it, complaint):
    for manifest, spec_of in (
        (_manifest("raycluster.yaml"), lambda m: m["spec"]),
        (_manifest("rayjob.yaml"), lambda m: m["spec"]["rayClusterSpec"]),
    ):
        broken = copy.deepcopy(manifest)
        break_it(spec_of(broken))
        errors = _errors(broken)
        assert any(complaint in e for e in errors), errors


def test_the_job_and_the_standing_cluster_are_the_same_cluster():
    (_, cluster), (_, job) = _cluster_specs()
    assert job == cluster


@pytest.mark.parametrize("name, spec", _cluster_specs())
def test_the_cluster_runs_the_locks_ray_in_the_projects_images(name, spec):
    assert spec["rayVersion"] == lock_pins(REPO / "constraints.txt")["ray"]
    version = re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M).group(1)
    images = {group: c["image"] for group, c in _containers(spec)}
    assert images == {"head": f"neurolake:{version}-cpu", "gpu": f"neurolake:{version}-cuda"}
    # ...the tags the Dockerfiles' own build commands give
    for image in images.values():
        kind = image.rsplit("-", 1)[1]
        assert f"-t {image} " in (REPO / "infra" / "docker" / f"Dockerfile.{kind}").read_text()


@pytest.mark.parametrize("name, spec", _cluster_specs())
def test_the_head_runs_no_work_and_gpu_workers_autoscale_within_bounds(name, spec):
    head = parse_ray_start(start_argv(spec["headGroupSpec"]["rayStartParams"], head=True))
    assert head["head"] and head["num_cpus"] == 0 and head["dashboard_host"] == "0.0.0.0"
    assert spec["enableInTreeAutoscaling"] is True
    (gpu,) = spec["workerGroupSpecs"]
    parse_ray_start(start_argv(gpu["rayStartParams"], head=False))
    assert 0 <= gpu["minReplicas"] <= gpu["replicas"] <= gpu["maxReplicas"] and gpu["maxReplicas"] >= 1
    (worker,) = gpu["template"]["spec"]["containers"]
    resources = worker["resources"]
    assert int(resources["limits"]["nvidia.com/gpu"]) == int(resources["requests"]["nvidia.com/gpu"]) == 1
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in gpu["template"]["spec"][
        "tolerations"
    ]
    # Ray's object store gets a memory-backed /dev/shm in every pod.
    for group in [spec["headGroupSpec"], gpu]:
        pod = group["template"]["spec"]
        (shm,) = [v for v in pod["volumes"] if v.get("emptyDir", {}).get("medium") == "Memory"]
        mounts = {m["name"]: m["mountPath"] for c in pod["containers"] for m in c["volumeMounts"]}
        assert mounts[shm["name"]] == "/dev/shm"


def _deploy_commands() -> list[list[str]]:
    from tests.infra.commands import shell_commands

    text = (REPO / "docs" / "deploy.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    return [argv for block in blocks for argv in shell_commands(block)]


@pytest.mark.parametrize("name, spec", _cluster_specs())
def test_every_container_gets_the_credentials_and_the_config_docs_deploy_creates(name, spec):
    kubectl = [argv for argv in _deploy_commands() if argv[:2] == ["kubectl", "create"]]
    secrets = {argv[4]: argv for argv in kubectl if argv[2:4] == ["secret", "generic"]}
    configmaps = {argv[3]: argv for argv in kubectl if argv[2] == "configmap"}
    for group, container in _containers(spec):
        refs = {
            ("secret" if "secretRef" in e else "configmap"): next(iter(e.values()))["name"]
            for e in container["envFrom"]
        }
        assert refs["secret"] in secrets, f"{group}: docs/deploy.md creates no Secret {refs['secret']}"
        assert refs["configmap"] in configmaps, f"{group}: docs/deploy.md creates no ConfigMap {refs['configmap']}"
        literals = " ".join(secrets[refs["secret"]])
        assert "--from-literal=AWS_ACCESS_KEY_ID=" in literals and "--from-literal=AWS_SECRET_ACCESS_KEY=" in literals
        config = " ".join(configmaps[refs["configmap"]])
        assert "--from-literal=NEUROLAKE_LAKE=s3://" in config and "--from-literal=NEUROLAKE_CORPUS=s3://" in config


def test_the_jobs_entrypoint_is_an_ingest_of_the_configured_corpus():
    job = _manifest("rayjob.yaml")["spec"]
    argv = shlex.split(job["entrypoint"])
    args = parse_neurolake(argv)
    assert args.verb == "ingest" and not args.dry_run
    # The corpus comes from the head's environment (the ConfigMap), the lake from NEUROLAKE_LAKE.
    assert args.corpus == "$NEUROLAKE_CORPUS" and args.lake is None
    assert args.model == "wav2vec2:WAV2VEC2_ASR_BASE_960H" and args.run == "librispeech-960h"
    # The cluster starts with no GPU worker: the ingest asks for one actor per GPU the
    # autoscaler may add (else it would see none and run the model on a CPU).
    (gpu,) = job["rayClusterSpec"]["workerGroupSpecs"]
    (worker,) = gpu["template"]["spec"]["containers"]
    assert gpu["minReplicas"] == 0
    assert args.gpus == gpu["maxReplicas"] * int(worker["resources"]["limits"]["nvidia.com/gpu"])
    assert job["shutdownAfterJobFinishes"] is True and job["backoffLimit"] >= 1  # a retry resumes
