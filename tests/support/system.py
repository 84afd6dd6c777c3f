"""What the machine offers the tests: system binaries (tesseract, redis-server, promtool, ...)
found or reported, and whether this run is CI, where a missing one is a failure, not a skip."""

from __future__ import annotations

import os
import shutil

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_binary(name: str) -> str:
    """The path of a system binary the test needs; fails in CI, skips elsewhere, if missing."""
    found = shutil.which(name)
    if found:
        return found
    if IN_CI:
        pytest.fail(f"{name} is not installed; CI must install it (.ci/run)")
    pytest.skip(f"{name} is not installed")
