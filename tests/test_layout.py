"""The layout's promises, checked: arq is a protocol, not a dependency, and every module says why
it exists."""

from __future__ import annotations

import ast
from pathlib import Path

from app.config import PROJECT_ROOT

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


def test_no_module_imports_arq() -> None:
    """The engine speaks arq's protocol with code of its own (tests/queue/test_arq_protocol.py holds it to
    the real client): arq is not installed with Workhorse, and nothing imports it."""
    assert [p.relative_to(PROJECT_ROOT) for p in modules() if "arq" in imported(p)] == []


def test_every_module_opens_with_a_docstring() -> None:
    """A newcomer reads why a module exists before what it does."""
    missing = [p.relative_to(PROJECT_ROOT) for p in modules() if ast.get_docstring(ast.parse(p.read_text())) is None]
    assert missing == []
