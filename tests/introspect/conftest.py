"""The lake the slow introspection tests share, ingested once per test session."""

from __future__ import annotations

import pytest

from tests.introspect import synthetic_lake

CONFUSION = "python:tests.introspect.faulty_demo:build_confusion"
BLOCK = "python:tests.introspect.faulty_demo:build_block"


@pytest.fixture(scope="session")
def scanned_lake(tmp_path_factory):
    """24 synthetic utterances through the faulty model (run ``z``), the clean one (``clean``) and
    the model whose fault reaches down into conv6 (``b``)."""
    runs = {"z": CONFUSION, "clean": "demo", "b": BLOCK}
    return synthetic_lake(tmp_path_factory.mktemp("scan"), 24, runs, ["conv6", "conv7"])
