"""A page checked in a real browser: headless Chromium (Debian's ``chromium``), which ``.ci/run``
installs. Without one the check skips and says why, unless ``NEUROLAKE_REQUIRE_BROWSER`` is set."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest


def browser() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    return None


def check_in_browser(page: Path, sections: Sequence[str], n_images: int, scratch: Path) -> None:
    """Every section is in the rendered page, every image decoded, the page no wider than a
    1280-pixel window, the console is empty, and a screenshot is not blank."""
    from matplotlib.image import imread

    found = browser()
    if found is None:
        if os.environ.get("NEUROLAKE_REQUIRE_BROWSER"):
            pytest.fail("NEUROLAKE_REQUIRE_BROWSER is set but no chromium is installed")
        pytest.skip("no chromium on this machine (apt-get install chromium): the page was checked without a browser")
    flags = [found, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={scratch / 'profile'}"]
    url = page.resolve().as_uri()
    dumped = subprocess.run(
        [
            *flags,
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1280,3000",
            "--virtual-time-budget=10000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    assert f'data-images="{n_images}/{n_images}"' in dumped.stdout  # every image decoded
    assert 'data-wider="false"' in dumped.stdout  # no sideways scrolling
    for key in sections:
        assert f'<section id="{key}">' in dumped.stdout
    console = [line for line in dumped.stderr.splitlines() if ":CONSOLE" in line]
    assert console == []
    shot = scratch / "page.png"
    subprocess.run(
        [*flags, f"--screenshot={shot}", "--window-size=1280,3000", "--virtual-time-budget=10000", url],
        capture_output=True,
        timeout=120,
        check=True,
    )
    pixels = imread(shot)
    assert pixels.shape[:2] == (3000, 1280) and np.std(pixels) > 0.05
