"""docs/deploy.md: every command it tells a reader to run is real. neurolake commands (also
those inside `ray exec` and `kubectl exec ... sh -c`) parse with the CLI's own parser; the files
that docker, compose, kubectl and ray are given exist; the images it builds are the ones the
manifests run; and README.md links to it."""

from __future__ import annotations

import re
import shlex

import pytest

from tests.infra.commands import REPO, load_yaml_documents, parse_neurolake, program, shell_commands

DOC = REPO / "docs" / "deploy.md"


def _commands() -> list[list[str]]:
    blocks = re.findall(r"```bash\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 8
    found = []
    for argv in (argv for block in blocks for argv in shell_commands(block)):
        found.append(argv)
        # the command a remote shell runs: ray exec CONFIG 'CMD', kubectl exec POD -- sh -c 'CMD'
        if argv[:2] == ["ray", "exec"]:
            found += shell_commands(argv[3])
        if program(argv) == "kubectl" and argv[1] == "exec":
            inner = argv[argv.index("--") + 1 :]
            found += shell_commands(inner[2]) if inner[:2] == ["sh", "-c"] else [inner]
    return found


def test_every_neurolake_command_in_the_guide_parses():
    verbs = [parse_neurolake(argv).verb for argv in _commands() if program(argv) == "neurolake"]
    assert verbs.count("ingest") >= 4 and {"runs", "verify", "sql"} <= set(verbs)


def test_every_sweep_on_an_autoscaling_cluster_asks_for_its_gpus():
    """The clusters start with no GPU worker, so an ingest run on one (``ray exec``, ``kubectl
    exec``) gives ``--gpus``: the GPU workers' maximum, one GPU each."""
    from tests.infra.test_cluster_launcher import _config

    most = {_config(cloud)["available_node_types"]["gpu"]["max_workers"] for cloud in ("aws", "gcp")}
    (gpu,) = load_yaml_documents(REPO / "infra" / "k8s" / "raycluster.yaml")[0]["spec"]["workerGroupSpecs"]
    assert most == {gpu["maxReplicas"]}
    sweeps = [
        parse_neurolake(argv)
        for argv in _commands()
        if program(argv) == "neurolake" and argv[1] == "ingest" and "--dry-run" not in argv and "--corpus" in argv
    ]
    remote = [args for args in sweeps if args.model == "wav2vec2:WAV2VEC2_ASR_BASE_960H"]
    assert len(remote) == 3 and all(args.gpus == gpu["maxReplicas"] for args in remote)


def test_the_files_the_guide_hands_to_tools_exist_and_the_images_are_the_manifests():
    commands = _commands()
    builds = {
        argv[argv.index("-t") + 1]: argv[argv.index("-f") + 1] for argv in commands if argv[:2] == ["docker", "build"]
    }
    assert builds == {
        "neurolake:0.1.0-cpu": "infra/docker/Dockerfile.cpu",
        "neurolake:0.1.0-cuda": "infra/docker/Dockerfile.cuda",
    }
    assert all((REPO / path).is_file() for path in builds.values())
    images = {
        c["image"]
        for name in ("raycluster.yaml", "rayjob.yaml")
        for doc in load_yaml_documents(REPO / "infra" / "k8s" / name)
        for spec in [doc["spec"].get("rayClusterSpec", doc["spec"])]
        for group in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
        for c in group["template"]["spec"]["containers"]
    }
    assert images == set(builds)
    given = []
    for argv in commands:
        takes_file = program(argv) == "docker" or argv[:2] in (["kubectl", "apply"], ["kubectl", "delete"])
        if "-f" in argv and takes_file:
            given.append(argv[argv.index("-f") + 1])
        if argv[:2] in (["ray", "up"], ["ray", "exec"], ["ray", "down"]) and not argv[2].endswith(".mine.yaml"):
            given.append(argv[2])
    paths = {p for p in given if p != "-"}
    assert {"infra/compose/compose.yaml", "infra/k8s/raycluster.yaml", "infra/cluster/aws.yaml"} <= paths
    assert all((REPO / p).is_file() for p in paths), paths
    (compose,) = [argv for argv in commands if argv[:2] == ["docker", "compose"]]
    (services,) = load_yaml_documents(REPO / "infra" / "compose" / "compose.yaml")
    assert compose[-1] in services["services"] and "run" in compose


def test_the_guides_arithmetic_holds():
    """The extrapolation table: 960.9 h of audio at 50 frames per second less one per utterance,
    18,432 bytes per frame (12 x 768 float16), parts of 12,288 rows."""
    text = DOC.read_text(encoding="utf-8")
    seconds = round(960.9 * 3600)
    frames = seconds * 50 - 281_241
    assert f"{seconds:,} s" in text and f"**{frames / 1e6:.1f} million**" in text
    assert 12 * 768 * 2 == 18_432 and f"**{frames * 18_432 / 1e12:.2f} TB** ({frames * 18_432 / 2**40:.2f} TiB)" in text
    from neurolake.ingest.planning import part_rows_for
    from neurolake.store import LayerSpec

    layers = [LayerSpec(name=f"l{i}", units=768, dtype="float16") for i in range(12)]
    assert part_rows_for(layers) == 12_288 and f"**at least {-(-frames // 12_288):,}** parts" in text


@pytest.mark.parametrize("block", [0, 1])
def test_the_readme_links_the_guide_and_keeps_its_first_two_commands(block):
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "[docs/deploy.md](docs/deploy.md)" in readme
    first_two = re.findall(r"```bash\n(.*?)```", readme, re.S)[:2]
    assert shlex.split(first_two[block])[0] == "python3"
