"""``neurolake doctor`` and the lock it checks against."""

import os
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from neurolake.doctor import FAIL, OK, check_lake, check_lock, check_zarr, main_exit_code, read_constraints

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "constraints.txt"


def _pyproject_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    raw = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    return [Requirement(r) for r in raw]


def test_doctor_is_clean_here_and_keeps_ray_quiet(tmp_path):
    """The real command, in its own process: every check passes and Ray's banner stays out."""
    lake = tmp_path / "lake"
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    proc = subprocess.run(
        [sys.executable, "-m", "neurolake", "doctor", "--lake", str(lake), "--constraints", str(LOCK)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    statuses = {line.split()[1]: line.split()[0] for line in lines[1:-1]}
    assert statuses == {
        "python": OK,
        "packages": OK,
        "lock": OK,
        "torchaudio": OK,
        "ray": OK,
        "duckdb": OK,
        "espeak-ng": OK,
        "numba": OK,
        "zarr": OK,
        "lake": OK,
        "gpu": statuses["gpu"],
    }
    assert statuses["gpu"] in ("ok", "info")
    assert lines[-1] == "all 11 checks passed"
    assert f"torch {metadata.version('torch')}" in proc.stdout
    # Nothing from Ray's loggers (its token-authentication banner among them) without -v.
    assert "Token authentication" not in proc.stdout + proc.stderr
    assert "ray" not in proc.stderr.lower(), proc.stderr
    assert not lake.exists()  # the check does not create the lake


def test_lock_mismatch_names_the_package_and_fails(tmp_path):
    numpy = metadata.version("numpy")
    torch = metadata.version("torch")
    bad = tmp_path / "constraints.txt"
    bad.write_text(
        "# a lock with one wrong pin\n"
        f"torch=={torch}    # via neurolake\n"
        "numpy==1.0.0\n"
        "not-installed-anywhere==1.2.3\n"
        "pywin32==312 ; sys_platform == 'win32'\n"
    )
    findings = check_lock(str(bad))
    assert [(f.check, f.status) for f in findings] == [("lock", FAIL)]
    assert findings[0].detail == f"numpy {numpy} is installed, {bad}:3 pins 1.0.0"
    assert "numpy==1.0.0" in findings[0].fix
    assert main_exit_code(findings) == 1

    good = tmp_path / "good.txt"
    good.write_text(f"torch=={torch}\nnumpy=={numpy}\nnot-installed-anywhere==1.2.3\n")
    assert [(f.status, f.detail) for f in check_lock(str(good))] == [
        (OK, f"2 installed packages at the versions {good} pins")
    ]


def test_lake_check(tmp_path):
    existing = tmp_path / "lake"
    existing.mkdir()
    finding = check_lake(str(existing))
    assert finding.status == OK and "is writable" in finding.detail
    assert list(existing.iterdir()) == []  # the probe file is gone

    assert check_lake(str(tmp_path / "new" / "lake")).status == OK
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    finding = check_lake(str(blocker / "lake"))
    assert finding.status == FAIL and "is a file" in finding.detail and finding.fix


def test_lock_pins_every_dependency_and_agrees_with_pyproject():
    """A dependency added to pyproject.toml without regenerating the lock fails here."""
    pins = {name: version for name, (version, _) in read_constraints(str(LOCK)).items()}
    for req in _pyproject_requirements():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not in constraints.txt: regenerate it (see its first lines)"
        assert req.specifier.contains(pins[name], prereleases=True), f"{req.name}: lock {pins[name]} vs {req.specifier}"


def test_fragile_pairs_are_exact():
    """torch/torchaudio and duckdb/httpfs are pinned exactly, never with a wildcard."""
    reqs = {canonicalize_name(r.name): r for r in _pyproject_requirements()}
    for name in ("torch", "torchaudio", "duckdb", "duckdb-extension-httpfs"):
        (spec,) = reqs[name].specifier
        assert spec.operator == "==" and "*" not in spec.version, f"{name} {spec}"
    assert reqs["duckdb"].specifier == reqs["duckdb-extension-httpfs"].specifier


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    blocks = [b.split("```", 1)[0].strip() for b in readme.split("```bash\n")[1:]]
    demo, tests = blocks[0], blocks[1]
    assert "-c constraints.txt" in demo and demo.endswith("neurolake demo")
    assert "-c constraints.txt" in tests and "neurolake doctor --constraints constraints.txt" in tests
    assert (
        tests.index("ruff check .") < tests.index("ruff format --check .") < tests.index("mypy") < tests.index("pytest")
    )
    script = (ROOT / ".ci" / "run").read_text()
    assert "PIP_NO_CACHE_DIR=1" in script
    # The command .ci/run extracts from the README is exactly the README's test command.
    (assignment,) = [line for line in script.splitlines() if line.startswith("cmd=")]
    extracted = subprocess.run(
        ["bash", "-c", assignment + '; printf %s "$cmd"'], capture_output=True, text=True, cwd=ROOT, check=True
    ).stdout
    assert extracted == tests


def test_zarr_check_fails_without_the_codec_entry_point(monkeypatch):
    """An install without this package's entry points (a copied source tree) is one FAIL line
    saying what breaks and how to fix it."""
    assert check_zarr().status == OK
    everything = metadata.entry_points

    def without_ours(**kwargs):
        points = everything(**kwargs)
        return [e for e in points if e.name != "neurolake.zeromask"] if kwargs.get("group") == "zarr.codecs" else points

    monkeypatch.setattr(metadata, "entry_points", without_ours)
    finding = check_zarr()
    assert finding.status == FAIL
    assert "no entry point for the lake's codec 'neurolake.zeromask'" in finding.detail
    assert "reinstall neurolake with pip" in finding.fix


def test_a_missing_package_fails_its_check_and_the_others_still_run(tmp_path):
    """Without DuckDB (a GPU machine's bundle of ingest's packages has none), the command line
    still builds its parser, and the doctor prints a FAIL line for DuckDB's check and goes on."""
    code = (
        "import sys\n"
        "sys.modules['duckdb'] = None  # import duckdb now raises ImportError\n"
        "import neurolake.cli, neurolake.doctor as d\n"
        "neurolake.cli.build_parser()\n"
        "skip = ('packages', 'torchaudio', 'ray', 'espeak-ng', 'numba', 'gpu')\n"
        f"findings = d.run_doctor({str(tmp_path / 'lake')!r}, sys.stdout, skip=skip)\n"
        "sys.exit(d.main_exit_code(findings))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    statuses = {line.split()[1]: line.split()[0] for line in lines[:-1]}
    assert statuses == {"python": OK, "duckdb": FAIL, "zarr": OK, "lake": OK}, proc.stdout
    duckdb_line = next(line for line in lines if line.split()[1] == "duckdb")
    assert "cannot import duckdb" in duckdb_line and "pip install -c constraints.txt" in duckdb_line
    assert lines[-1] == "1 problem(s): duckdb"
