"""The `workhorse` command: run, migrate, queues, dlq, jobs.

Every sub-command reads Settings once and connects through open_resources(), so it finds the
same Redis and PostgreSQL as the worker (a running embedded default included). Output is a
readable table; --json prints JSON for scripts. Errors print one line and exit non-zero.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from app import logs
from app.cli import dlq_cmd, jobs_cmd, queues_cmd, run_cmd, search_cmd
from app.db.migrate import MigrationError
from app.db.pool import DatabaseUnavailable
from app.errors import AppError
from app.queue.connections import RedisUnavailable
from app.runtime.embedded import EmbeddedUnavailable
from app.settings import Settings, SettingsError, UnknownQueue

Handler = Callable[[Settings, argparse.Namespace], Coroutine[Any, Any, int]]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="workhorse", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (run_cmd, queues_cmd, dlq_cmd, jobs_cmd, search_cmd):
        module.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.load()
    except SettingsError as exc:
        print(f"workhorse: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level, settings.log_format)
    handler: Handler = args.handler
    return run_reporting("workhorse", handler(settings, args))


# Failures of set-up (a setting, a server that is not there) exit 2 like a bad argument; a
# refused operation (unknown id, invalid payload) exits 1. Either way: one line, no traceback.
_SETUP_ERRORS: tuple[type[BaseException], ...] = (
    SettingsError, EmbeddedUnavailable, RedisUnavailable, DatabaseUnavailable, MigrationError, UnknownQueue,
)


def run_reporting(prog: str, coro: Coroutine[Any, Any, int]) -> int:
    """Run a command; report what it raised on one line of stderr and turn it into an exit code."""
    try:
        code: int = run_async(coro)
        return code
    except _SETUP_ERRORS as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    except AppError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, asyncio.CancelledError):
        return 130


def run_async(coro: Awaitable[Any]) -> Any:
    """Run on uvloop when it is installed (faster loop), else asyncio's."""
    async def wrapper() -> Any:
        return await coro

    try:
        import uvloop
    except ImportError:
        return asyncio.run(wrapper())
    return uvloop.run(wrapper())


