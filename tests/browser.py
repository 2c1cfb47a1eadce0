"""Headless Chromium (Debian's package) for the tests of the pages the gateway serves."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# No sandbox (CI runs as root), and nothing that would reach the network by itself.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def needs_chromium(page: str) -> pytest.MarkDecorator:
    """
    Skip, saying so, where Debian's chromium is not installed; CI installs it (.ci/run),
    so there a missing browser fails the test instead of hiding the gap.
    """
    return pytest.mark.skipif(
        not Path(CHROMIUM).exists() and not os.environ.get("CI"),
        reason=f"chromium is not installed (apt-get install chromium); {page} is untested",
    )
