"""The job families' own benchmarks (OCR, SLA scan, reminders), included when their module exists.

Each is `bench/<name>.py` with an `async def run(...)`: either `run()` returning (measure,
figure) pairs, or `run(env)` returning table rows; a `quick` keyword, when it takes one, asks
for a smaller load (each module says how much smaller in its rows). A missing module is a
"not present" row; a failing one is a row that says why, so one family never hides the others'
figures.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import cast

from bench.env import BenchEnv
from bench.report import Row

FAMILIES = ("ocr", "sla", "reminders")

Runner = Callable[..., Awaitable[Sequence[Row | tuple[str, str]]]]


def _load(name: str) -> Runner | None:
    module_name = f"bench.{name}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return None
        raise
    # The modules are written to the contract above; the import system cannot say so.
    return cast(Runner, module.run)


async def _rows(name: str, runner: Runner, env: BenchEnv, quick: bool) -> list[Row]:
    params = inspect.signature(runner).parameters
    wants_env = any(p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                    for p in params.values())
    kwargs = {"quick": quick} if "quick" in params else {}
    found = await (runner(env, **kwargs) if wants_env else runner(**kwargs))
    return [r if isinstance(r, Row) else Row(f"family: {name}", r[0], r[1]) for r in found]


async def run(env: BenchEnv, *, quick: bool = False, load_only: bool = False) -> list[Row]:
    """Every family's rows (a smaller load each when `quick`); with `load_only`, only whether
    each module loads."""
    rows: list[Row] = []
    for name in FAMILIES:
        try:
            runner = _load(name)
            if runner is None or load_only:
                figure = "not present" if runner is None else "present (not run)"
                rows.append(Row(f"family: {name}", f"bench/{name}.py", figure))
                continue
            rows += await _rows(name, runner, env, quick)
        except Exception as exc:  # one family's failure must not lose the rest of the table
            rows.append(Row(f"family: {name}", f"bench/{name}.py", f"failed: {type(exc).__name__}: {exc}"))
    return rows
