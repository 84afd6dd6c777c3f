"""The layout's promises, checked: arq stays behind app/queue/, and every module says why it exists."""

from __future__ import annotations

import ast
from pathlib import Path

from app.settings import PROJECT_ROOT

APP = PROJECT_ROOT / "app"


def modules() -> list[Path]:
    return sorted(APP.rglob("*.py"))


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_only_the_engine_imports_arq() -> None:
    """Everything outside app/queue/ uses the engine's own names (Enqueuer, JobHandle, RedisPool …),
    so an arq upgrade is a change to one package."""
    outside = [p.relative_to(PROJECT_ROOT) for p in modules()
               if "arq" in imported(p) and APP / "queue" not in p.parents]
    assert outside == []


def test_every_module_opens_with_a_docstring() -> None:
    """A newcomer reads why a module exists before what it does."""
    missing = [p.relative_to(PROJECT_ROOT) for p in modules() if ast.get_docstring(ast.parse(p.read_text())) is None]
    assert missing == []
