"""The import arrow of ../shared/STYLE.md holds: the contracts in pyproject.toml's
[tool.importlinter] (layers, and job families independent of each other), checked by
import-linter over the whole `app` package."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from app.config import PROJECT_ROOT


def test_the_import_contracts_are_kept() -> None:
    """`lint-imports` reports every contract kept; a broken one fails with the offending import chain."""
    lint_imports = Path(sys.executable).with_name("lint-imports")
    run = subprocess.run([str(lint_imports), "--no-cache"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "0 broken" in run.stdout
