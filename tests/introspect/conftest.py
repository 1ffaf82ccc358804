"""The lake the slow introspection tests share, ingested once per test session."""

from __future__ import annotations

import shutil
from pathlib import Path

try:
    import fcntl
except ImportError:  # no file locks (Windows): each test process ingests its own
    fcntl = None  # type: ignore[assignment]

import pytest

from neurolake.store import Lake
from tests.introspect import synthetic_lake

CONFUSION = "python:tests.introspect.faulty_demo:build_confusion"
BLOCK = "python:tests.introspect.faulty_demo:build_block"


def _ingest(root: Path) -> None:
    synthetic_lake(root, 24, {"z": CONFUSION, "clean": "demo", "b": BLOCK}, ["conv6", "conv7"])


def _copy(template: Path, to: Path) -> Lake:
    shutil.copytree(template, to)
    return Lake.open(str(to))


@pytest.fixture(scope="session")
def _scanned_template(tmp_path_factory, worker_id) -> Path:
    """The ingested lake, never written to again: each fixture below hands out a copy. The
    test processes of ``pytest -n`` share one, made by the first that needs it under a lock in
    their common temporary folder: ``test_scan.py`` and ``test_report.py`` often run in
    different processes, minutes apart (two of three logged runs), and the ingest takes about 26 s."""
    if worker_id == "master" or fcntl is None:
        root = tmp_path_factory.mktemp("scan")
        _ingest(root)
        return root / "lake"
    root = tmp_path_factory.getbasetemp().parent / "scanned-template"
    with open(f"{root}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not (root / "ingested").exists():
                shutil.rmtree(root, ignore_errors=True)  # what a process that failed half-way left
                root.mkdir()
                _ingest(root)
                (root / "ingested").touch()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return root / "lake"


@pytest.fixture(scope="session")
def scanned_lake(_scanned_template, tmp_path_factory) -> Lake:
    """24 synthetic utterances through the faulty model (run ``z``), the clean one (``clean``) and
    the model whose fault reaches down into conv6 (``b``); shared by the tests that only add results."""
    return _copy(_scanned_template, tmp_path_factory.mktemp("scanned") / "lake")


@pytest.fixture
def own_scanned_lake(_scanned_template, tmp_path) -> Lake:
    """The same lake, as ingested, for one test whose outcome depends on what else is in it (the
    latest scan, the latest NAPs): whichever tests ran before it in this process."""
    return _copy(_scanned_template, tmp_path / "scanned")
