"""The lake the slow introspection tests share, ingested once per test session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from neurolake.store import Lake
from tests.introspect import synthetic_lake

CONFUSION = "python:tests.introspect.faulty_demo:build_confusion"
BLOCK = "python:tests.introspect.faulty_demo:build_block"


@pytest.fixture(scope="session")
def _scanned_template(tmp_path_factory) -> Path:
    """The ingested lake, never written to again: each fixture below hands out a copy."""
    root = tmp_path_factory.mktemp("scan")
    synthetic_lake(root, 24, {"z": CONFUSION, "clean": "demo", "b": BLOCK}, ["conv6", "conv7"])
    return root / "lake"


@pytest.fixture(scope="session")
def scanned_lake(_scanned_template, tmp_path_factory) -> Lake:
    """24 synthetic utterances through the faulty model (run ``z``), the clean one (``clean``) and
    the model whose fault reaches down into conv6 (``b``); shared by the tests that only add results."""
    copy = tmp_path_factory.mktemp("scanned") / "lake"
    shutil.copytree(_scanned_template, copy)
    return Lake.open(str(copy))


@pytest.fixture
def own_scanned_lake(_scanned_template, tmp_path) -> Lake:
    """The same lake, as ingested, for one test whose outcome depends on what else is in it (the
    latest scan, the latest NAPs): whichever tests ran before it in this process."""
    copy = tmp_path / "scanned"
    shutil.copytree(_scanned_template, copy)
    return Lake.open(str(copy))
