"""The container images of infra/docker, read as Docker reads them: what they start FROM, what
they copy, how they install the project (from the lock) and that the build runs ``neurolake
doctor``. Docker itself cannot run here; these are the facts a build depends on."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from tests.infra.commands import REPO, lock_pins, parse_neurolake, pip_constraint_files, program, shell_commands

DOCKER = REPO / "infra" / "docker"
IMAGES = ("Dockerfile.cpu", "Dockerfile.cuda")


def instructions(path: Path) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` of a Dockerfile, continuation lines joined, comments dropped."""
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    found = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def run_commands(path: Path) -> list[list[str]]:
    return [argv for op, text in instructions(path) if op == "RUN" for argv in shell_commands(text)]


def base_image(path: Path) -> str:
    (image,) = [text for op, text in instructions(path) if op == "FROM"]
    return image


@pytest.mark.parametrize("name", IMAGES)
def test_the_image_installs_the_project_from_the_lock_and_runs_doctor(name):
    path = DOCKER / name
    installs = [argv for argv in run_commands(path) if argv[:2] == ["pip", "install"] and "." in argv]
    assert len(installs) == 1, f"{name}: one `pip install .` of the project, found {installs}"
    (install,) = installs
    assert pip_constraint_files(install) == ["constraints.txt", "infra/docker/cluster-constraints.txt"]
    assert "ray[default]" in install  # the dashboard: KubeRay's probes and `ray job submit` need it

    # Everything the install reads is copied in first, from paths that exist in the repository.
    copied = {}
    for op, text in instructions(path):
        if op == "COPY":
            *sources, target = shlex.split(text)
            for source in sources:
                assert (REPO / source).exists(), f"{name} copies {source}, which is not in the repository"
                copied[source.rstrip("/")] = target
    assert {"pyproject.toml", "README.md", "constraints.txt", "neurolake"} <= set(copied)
    assert copied["infra/docker/cluster-constraints.txt"] == "infra/docker/"

    # The build fails unless doctor passes, after the install, as the user the image runs as.
    ops = [op for op, _ in instructions(path)]
    doctors = [argv for argv in run_commands(path) if program(argv) == "neurolake"]
    assert len(doctors) == 1
    args = parse_neurolake(doctors[0])
    assert args.verb == "doctor"
    if name == "Dockerfile.cpu":
        assert args.constraints == "/opt/neurolake/constraints.txt"  # exactly the lock CI tests
    last_run = max(i for i, (op, text) in enumerate(instructions(path)) if op == "RUN" and "neurolake doctor" in text)
    assert "USER" in ops[:last_run] and ops.index("USER") > ops.index("RUN")


def test_the_cpu_image_has_the_python_the_lock_was_resolved_for():
    header = (REPO / "constraints.txt").read_text(encoding="utf-8").splitlines()[1]
    (python,) = re.findall(r"--python-version (\d+\.\d+)", header)
    assert base_image(DOCKER / "Dockerfile.cpu") == f"python:{python}-slim-bookworm"


def test_the_cuda_base_image_holds_the_pinned_torch_for_the_locks_cuda():
    """pytorch/pytorch:<torch>-cuda<major.minor>-cudnn<N>-runtime: its torch is the one
    pyproject.toml pins exactly and the lock holds, built for the CUDA of the lock's torch."""
    image = base_image(DOCKER / "Dockerfile.cuda")
    found = re.fullmatch(r"pytorch/pytorch:(?P<torch>[\d.]+)-cuda(?P<cuda>\d+\.\d+)-cudnn(?P<cudnn>\d+)-runtime", image)
    assert found, image
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    (pinned,) = re.findall(r'"torch==([\d.]+)"', pyproject)
    lock = lock_pins(REPO / "constraints.txt")
    assert found["torch"] == pinned == lock["torch"]
    assert lock["cuda-toolkit"].startswith(found["cuda"] + ".")  # PyPI's torch 2.11.0 is a CUDA 13.0 build
    assert lock["nvidia-cudnn-cu13"].split(".")[0] == found["cudnn"]
    # ...and the build refuses a base whose torch is another (pip would replace it quietly).
    guard = [
        text for op, text in instructions(DOCKER / "Dockerfile.cuda") if op == "RUN" and "m.version('torch')" in text
    ]
    assert guard and "constraints.txt" in guard[0]


def test_the_cluster_lock_only_adds_to_the_project_lock():
    """cluster-constraints.txt was resolved against constraints.txt: every package both pin has
    one version, and the Ray it locks the dashboard for is the lock's Ray."""
    project = lock_pins(REPO / "constraints.txt")
    cluster = lock_pins(DOCKER / "cluster-constraints.txt")
    assert cluster["ray"] == project["ray"]
    differ = {
        name: (project[name], cluster[name])
        for name in project.keys() & cluster.keys()
        if project[name] != cluster[name]
    }
    assert not differ, f"regenerate infra/docker/cluster-constraints.txt (command at its top): {differ}"
    assert {"aiohttp-cors", "opencensus", "prometheus-client", "google-api-python-client"} <= cluster.keys()
    (requested,) = [line for line in (DOCKER / "cluster.in").read_text().splitlines() if line.startswith("ray[")]
    assert requested == f"ray[default]=={project['ray']}"
