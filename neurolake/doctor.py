"""``neurolake doctor``: is this installation able to do its job, and if not, what to do.

Each check exercises the real thing (loads torchaudio's extension, starts Ray and runs a task,
loads DuckDB's httpfs from its wheel, synthesises a word with espeak-ng, runs the numba mining
kernels against a hand-computed answer, writes a probe file into the lake) and reports one line.
A problem's line ends with what to do about it. ``--constraints FILE`` also checks that every
package the lock pins is installed at exactly its pinned version (CI runs it before the tests).
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
import platform
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

OK, INFO, FAIL = "ok", "info", "FAIL"

# The stack a bug report needs, in the order printed.
STACK = (
    "torch",
    "torchaudio",
    "ray",
    "duckdb",
    "duckdb-extension-httpfs",
    "numba",
    "numpy",
    "zarr",
    "pyarrow",
    "fsspec",
    "s3fs",
    "espeakng-loader",
)


@dataclass(frozen=True)
class Finding:
    """The outcome of one check: ``status`` is ok, info (worth knowing, not wrong) or FAIL."""

    check: str
    status: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.status:<5} {self.check:<11} {self.detail}"
        return f"{text} -> {self.fix}" if self.fix else text


def _installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _first_line(exc: BaseException) -> str:
    """``Type: first line`` of an exception, with its cause's (the undefined symbol of a failed load)."""
    parts = []
    seen: BaseException | None = exc
    while seen is not None and len(parts) < 2:
        text = str(seen).strip().splitlines()
        parts.append(f"{type(seen).__name__}: {text[0] if text else ''}".rstrip(": "))
        seen = seen.__cause__ or seen.__context__
    return " (".join(parts) + (")" if len(parts) > 1 else "")


def _own_pins() -> dict[str, str]:
    """The exact versions neurolake's metadata pins (``name==version``), by canonical name."""
    pins = {}
    for raw in metadata.requires("neurolake") or []:
        req = Requirement(raw)
        for spec in req.specifier:
            if spec.operator == "==" and "*" not in spec.version:
                pins[canonicalize_name(req.name)] = spec.version
    return pins


def _pin_hint(*names: str) -> str:
    pins = _own_pins()
    wanted = [f"{n}=={pins[canonicalize_name(n)]}" for n in names if canonicalize_name(n) in pins]
    return "pip install " + " ".join(wanted) if wanted else "reinstall neurolake"


# ------------------------------------------------------------------ checks


def check_python() -> Finding:
    return Finding(
        "python",
        OK,
        f"{platform.python_version()} on {platform.system()} {platform.machine()}, "
        f"neurolake {_installed('neurolake') or 'not installed'}",
    )


def check_requirements() -> Finding:
    """Every requirement in neurolake's metadata is installed at a version it admits."""
    env = default_environment()
    problems = []
    for raw in metadata.requires("neurolake") or []:
        req = Requirement(raw)
        if req.marker is not None and not req.marker.evaluate({**env, "extra": ""}):
            continue  # an extra (tests) or another platform's requirement
        have = _installed(req.name)
        if have is None:
            problems.append(f"{req.name} is missing")
        elif req.specifier and not req.specifier.contains(have, prereleases=True):
            problems.append(f"{req.name} {have} is installed, neurolake needs {req.specifier}")
    versions = ", ".join(f"{name} {_installed(name)}" for name in STACK if _installed(name))
    if problems:
        return Finding(
            "packages", FAIL, "; ".join(problems), "reinstall with the lock: pip install -c constraints.txt -e ."
        )
    return Finding("packages", OK, versions)


def read_constraints(path: str) -> dict[str, tuple[str, str]]:
    """``name -> (version, line)`` of every ``==`` pin in a constraints file that applies here."""
    env = default_environment()
    pins = {}
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            text = line.split("#", 1)[0].strip()
            if not text or text.startswith("-"):
                continue
            try:
                req = Requirement(text)
            except InvalidRequirement as exc:
                raise ValueError(f"{path}:{number}: not a requirement ({exc})") from exc
            if req.marker is not None and not req.marker.evaluate({**env, "extra": ""}):
                continue
            exact = [s.version for s in req.specifier if s.operator == "=="]
            if exact:
                pins[canonicalize_name(req.name)] = (exact[0], f"{path}:{number}")
    return pins


def check_lock(path: str) -> list[Finding]:
    """One finding per installed package whose version differs from the lock's pin."""
    try:
        pins = read_constraints(path)
    except (OSError, ValueError) as exc:
        return [Finding("lock", FAIL, f"cannot read {path}: {exc}", "pass the constraints.txt of the repository")]
    found = []
    checked = 0
    for name, (version, where) in sorted(pins.items()):
        have = _installed(name)
        if have is None:
            continue  # a constraint only limits what is installed
        checked += 1
        if have != version:
            found.append(
                Finding(
                    "lock",
                    FAIL,
                    f"{name} {have} is installed, {where} pins {version}",
                    f"pip install -c {path} '{name}=={version}'",
                )
            )
    return found or [Finding("lock", OK, f"{checked} installed packages at the versions {path} pins")]


def check_torchaudio() -> Finding:
    """torchaudio imports, its compiled extension loads, and the transforms neurolake uses run."""
    torch_version = _installed("torch")
    audio_version = _installed("torchaudio")
    try:
        import torch
        import torchaudio

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wave = torch.sin(torch.arange(16000, dtype=torch.float32) * 0.05).unsqueeze(0)
            mel = torchaudio.transforms.MelSpectrogram(sample_rate=16000, n_mels=40)(wave)
            torchaudio.transforms.Resample(22050, 16000)(wave)
            emissions = torch.randn(1, 20, 5).log_softmax(-1)
            torchaudio.functional.forced_align(emissions, torch.tensor([[1, 2, 3]], dtype=torch.int32), blank=0)
    except Exception as exc:
        return Finding(
            "torchaudio",
            FAIL,
            f"torchaudio {audio_version} with torch {torch_version} does not work: {_first_line(exc)}",
            _pin_hint("torch", "torchaudio"),
        )
    return Finding(
        "torchaudio",
        OK,
        f"{audio_version} with torch {torch_version}: extension loaded, "
        f"MelSpectrogram {tuple(mel.shape)}, Resample and forced_align run",
    )


def _square(x: int) -> int:
    return x * x


def check_ray() -> Finding:
    """A local Ray starts (or the configured cluster answers) and runs a task."""
    try:
        from neurolake.cluster.pool import task_map
        from neurolake.cluster.ray_env import connect, connected, disconnect

        started_here = not connected()
        t0 = time.perf_counter()
        resources = connect(num_cpus=1)
        (value,) = task_map(_square, [7], workers=1)
        seconds = time.perf_counter() - t0
        if started_here:
            disconnect()
    except Exception as exc:
        return Finding(
            "ray",
            FAIL,
            f"Ray {_installed('ray')} did not run a task: {_first_line(exc)}",
            "run `ray stop --force`, unset RAY_ADDRESS unless you mean a cluster, and retry with -v",
        )
    if value != 49:
        return Finding("ray", FAIL, f"a Ray task returned {value!r} for 7*7", "reinstall ray")
    where = os.environ.get("RAY_ADDRESS") or "local instance"
    return Finding(
        "ray",
        OK,
        f"{_installed('ray')}: {where} started and ran a task in {seconds:.1f} s ({resources.get('CPU', 0):g} CPUs)",
    )


def check_duckdb() -> Finding:
    """DuckDB loads httpfs from the ``duckdb-extension-httpfs`` wheel, without a download."""
    import duckdb

    from neurolake.query.engine import load_httpfs

    try:
        con = duckdb.connect(":memory:")
        con.execute("SET autoinstall_known_extensions = false")
        con.execute("SET autoload_known_extensions = false")
        path = load_httpfs(con)
        loaded = con.execute("SELECT loaded FROM duckdb_extensions() WHERE extension_name = 'httpfs'").fetchone()
        con.close()
    except duckdb.Error as exc:
        return Finding(
            "duckdb",
            FAIL,
            f"DuckDB {duckdb.__version__} cannot load httpfs: {_first_line(exc)}",
            _pin_hint("duckdb", "duckdb-extension-httpfs"),
        )
    if path is None:
        return Finding(
            "duckdb",
            FAIL,
            f"no httpfs build for DuckDB {duckdb.__version__} in duckdb-extension-httpfs "
            f"{_installed('duckdb-extension-httpfs')}",
            _pin_hint("duckdb", "duckdb-extension-httpfs"),
        )
    if not loaded or not loaded[0]:
        return Finding(
            "duckdb", FAIL, "httpfs installed but not loaded", _pin_hint("duckdb", "duckdb-extension-httpfs")
        )
    return Finding("duckdb", OK, f"{duckdb.__version__}: httpfs loaded from the wheel (S3 lakes are read natively)")


def check_espeak() -> Finding:
    """espeak-ng synthesises a phrase with phone timings (the synthetic corpora need both)."""
    try:
        from neurolake.corpora.espeak import SpeechRequest, synthesize_speech

        speech = synthesize_speech(SpeechRequest("hello world"))
    except Exception as exc:
        return Finding(
            "espeak-ng",
            FAIL,
            f"espeak-ng did not synthesise: {_first_line(exc)}",
            "pip install --force-reinstall espeakng-loader",
        )
    if speech.duration_s <= 0 or not speech.phones:
        return Finding(
            "espeak-ng",
            FAIL,
            "espeak-ng returned no audio or no phone timings",
            "pip install --force-reinstall espeakng-loader",
        )
    return Finding(
        "espeak-ng",
        OK,
        f"'hello world': {speech.duration_s:.2f} s at {speech.sample_rate} Hz, {len(speech.phones)} timed phones",
    )


def check_numba() -> Finding:
    """The mining kernels compile and give the hand-computed closed itemsets of a tiny table."""
    try:
        import numba

        from neurolake.mining.lcm import closed_itemsets

        t0 = time.perf_counter()
        result = closed_itemsets([[0, 1], [0, 1, 2], [1, 2]], min_support=2)
        seconds = time.perf_counter() - t0
        got = {tuple(items): int(support) for items, support in result}
    except Exception as exc:
        return Finding("numba", FAIL, f"the mining kernels failed: {_first_line(exc)}", _pin_hint("numba", "numpy"))
    expected = {(1,): 3, (0, 1): 2, (1, 2): 2}
    if got != expected:
        return Finding(
            "numba", FAIL, f"LCM found {got}, expected {expected}", "reinstall numba and numpy, then report it"
        )
    return Finding(
        "numba", OK, f"{numba.__version__}: LCM kernels compiled and mined a known answer in {seconds:.1f} s"
    )


def check_zarr() -> Finding:
    """Zarr finds the lake's chunk codec through this package's entry point (so a layer opens
    with plain ``zarr.open_array``), and a half-zero chunk round-trips in zero-mask form."""
    try:
        import tempfile

        import numpy as np
        import zarr

        from neurolake.store import zeromask

        points = [e for e in metadata.entry_points(group="zarr.codecs") if e.name == zeromask.NAME]
        if not points or points[0].load() is not zeromask.ZeroMaskCodec:
            return Finding(
                "zarr",
                FAIL,
                f"Zarr {zarr.__version__} has no entry point for the lake's codec {zeromask.NAME!r}: "
                "zarr.open_array cannot read layers without importing neurolake first",
                "reinstall neurolake with pip (pip install -e . in a checkout) so its entry points are registered",
            )
        values = np.maximum(np.random.default_rng(0).standard_normal((64, 48)), 0).astype(np.float16)
        with tempfile.TemporaryDirectory(prefix="neurolake-doctor-") as tmp:
            array = zarr.create_array(
                tmp, shape=values.shape, chunks=values.shape, dtype="float16", compressors=[zeromask.ZeroMaskCodec()]
            )
            array[:] = values
            with open(os.path.join(tmp, "c", "0", "0"), "rb") as f:
                stored = f.read()
            back = zarr.open_array(tmp, mode="r")[:]
    except Exception as exc:
        return Finding("zarr", FAIL, f"the lake's chunk codec failed: {_first_line(exc)}", _pin_hint("zarr"))
    if not zeromask.is_zeromask(stored) or not np.array_equal(back, values):
        return Finding("zarr", FAIL, "a zero-mask chunk did not round-trip through Zarr", "report it")
    return Finding(
        "zarr",
        OK,
        f"{zarr.__version__}: codec {zeromask.NAME} registered; a half-zero chunk stored in "
        f"{len(stored) / values.nbytes:.2f} of its bytes and read back",
    )


def check_lake(url: str) -> Finding:
    """The lake (or, before it exists, the place it will be made) takes a write."""
    from neurolake.store.location import Location

    try:
        loc = Location.from_url(url)
    except Exception as exc:
        return Finding("lake", FAIL, f"{url}: {_first_line(exc)}", "check the URL and its credentials")
    probe = f".neurolake-doctor-{uuid.uuid4().hex}"
    if loc.is_local and not os.path.exists(loc.path):
        parent = os.path.dirname(os.path.abspath(loc.path))
        while not os.path.exists(parent):
            parent = os.path.dirname(parent)
        if not os.path.isdir(parent):
            return Finding(
                "lake",
                FAIL,
                f"{loc.url} cannot be made: {parent} is a file",
                "pass --lake with a writable place or set NEUROLAKE_LAKE",
            )
        if os.access(parent, os.W_OK):
            return Finding("lake", OK, f"{loc.url} does not exist yet; {parent} is writable, so it can be made")
        return Finding(
            "lake",
            FAIL,
            f"{loc.url} does not exist and {parent} is not writable",
            "pass --lake with a writable place or set NEUROLAKE_LAKE",
        )
    try:
        loc.write_bytes(b"neurolake doctor\n", probe)
        back = loc.read_bytes(probe)
        loc.remove(probe)
    except Exception as exc:
        return Finding(
            "lake",
            FAIL,
            f"{loc.url} is not writable: {_first_line(exc)}",
            "check permissions or credentials, or pass --lake with a writable place",
        )
    if back != b"neurolake doctor\n":
        return Finding("lake", FAIL, f"{loc.url} returned other bytes than were written", "check the storage")
    return Finding("lake", OK, f"{loc.url} is writable")


def check_gpu() -> Finding:
    """Whether torch sees a GPU (not a problem when it does not: ingest runs on the CPUs)."""
    try:
        import torch

        if torch.cuda.is_available():
            names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            return Finding(
                "gpu",
                OK,
                f"{len(names)} visible to torch {torch.__version__} (CUDA {torch.version.cuda}): " + ", ".join(names),
            )
    except Exception as exc:
        return Finding("gpu", INFO, f"torch could not query CUDA ({_first_line(exc)}); ingest runs on the CPUs")
    return Finding("gpu", INFO, "none visible; ingest runs on the CPUs")


# ------------------------------------------------------------------ driver


def run_doctor(lake_url: str, out: TextIO, constraints: str | None = None, skip: tuple[str, ...] = ()) -> list[Finding]:
    """Run every check, print one line each as it finishes, and a verdict; returns the findings."""
    checks: list[tuple[str, Callable[[], Finding | list[Finding]]]] = [
        ("python", check_python),
        ("packages", check_requirements),
    ]
    if constraints:
        checks.append(("lock", lambda: check_lock(constraints)))
    checks += [
        ("torchaudio", check_torchaudio),
        ("ray", check_ray),
        ("duckdb", check_duckdb),
        ("espeak-ng", check_espeak),
        ("numba", check_numba),
        ("zarr", check_zarr),
        ("lake", lambda: check_lake(lake_url)),
        ("gpu", check_gpu),
    ]
    findings: list[Finding] = []
    for name, check in checks:
        if name in skip:
            continue
        try:
            result = check()
        except ImportError as exc:  # a package missing or broken: this check fails, the others run
            result = Finding(
                name,
                FAIL,
                f"cannot import {exc.name or 'a module'}: {_first_line(exc)}",
                "reinstall with the lock: pip install -c constraints.txt -e .",
            )
        for finding in result if isinstance(result, list) else [result]:
            findings.append(finding)
            out.write(finding.line() + "\n")
            out.flush()
    problems = [f for f in findings if f.status == FAIL]
    if problems:
        out.write(f"{len(problems)} problem(s): " + ", ".join(sorted({f.check for f in problems})) + "\n")
    else:
        out.write(f"all {len(findings)} checks passed\n")
    return findings


def main_exit_code(findings: list[Finding]) -> int:
    return 1 if any(f.status == FAIL for f in findings) else 0
