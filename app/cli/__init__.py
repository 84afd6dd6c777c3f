"""The `workhorse` command: run, migrate, queues, dlq, jobs.

Every sub-command reads Settings once and connects through open_resources(), so it finds the
same Redis and PostgreSQL as the worker (a running embedded default included). Output is a
readable table; --json prints JSON for scripts. Errors print one line and exit non-zero.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import structlog

from app import logs
from app.cli import calendar_cmd, dlq_cmd, jobs_cmd, queues_cmd, run_cmd, search_cmd
from app.config import Settings, SettingsError, UnknownQueue
from app.db.migrate import MigrationError
from app.db.pool import DatabaseUnavailable
from app.errors import AppError
from app.queue.connections import RedisUnavailable
from app.runtime.embedded import EmbeddedUnavailable

log = structlog.get_logger(__name__)

Handler = Callable[[Settings, argparse.Namespace], Coroutine[Any, Any, int]]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="workhorse", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (run_cmd, queues_cmd, dlq_cmd, jobs_cmd, search_cmd, calendar_cmd):
        module.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.load()
    except SettingsError as exc:
        print(f"workhorse: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log.level, settings.log.format)
    handler: Handler = args.handler
    return run_reporting("workhorse", handler(settings, args))


# Failures of set-up (a setting, a server that is not there) exit 2 like a bad argument; a
# refused operation (unknown id, invalid payload) exits 1. Either way: one line, no traceback.
_SETUP_ERRORS: tuple[type[BaseException], ...] = (
    SettingsError, EmbeddedUnavailable, RedisUnavailable, DatabaseUnavailable, MigrationError, UnknownQueue,
)


def run_reporting(prog: str, coro: Coroutine[Any, Any, int]) -> int:
    """Run a command; report what it raised on one line of stderr and turn it into an exit code."""
    code = _report(prog, coro)
    _exit_if_threads_stuck(code)
    return code


def _report(prog: str, coro: Coroutine[Any, Any, int]) -> int:
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


# asyncio.run() ends by joining the default executor's threads without a time limit
# (shutdown_default_executor), and the interpreter joins them again at exit. A thread blocked
# for good (open() of a FIFO, a hung network mount; asyncio cannot cancel a thread) kept a
# stopped worker alive forever, past SHUTDOWN_TIMEOUT_MS. So run_async() runs the loop itself,
# lets the executor go without waiting, and the process gives leftover threads this long
# before it exits regardless.
THREAD_GRACE_S = 1.0


def run_async(coro: Awaitable[Any]) -> Any:
    """Run on uvloop when it is installed (faster loop), else asyncio's; never wait for
    threads of the default executor once `coro` is done (see THREAD_GRACE_S)."""
    try:
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    executor = ThreadPoolExecutor(thread_name_prefix="workhorse-thread")
    loop.set_default_executor(executor)
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(coro)
    finally:
        try:
            _cancel_remaining_tasks(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            executor.shutdown(wait=False, cancel_futures=True)
            asyncio.set_event_loop(None)
            loop.close()


def _cancel_remaining_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """What asyncio.run() does with tasks still pending when the main coroutine returns."""
    pending = asyncio.all_tasks(loop)
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))


def _exit_if_threads_stuck(code: int, grace_s: float = THREAD_GRACE_S) -> None:
    """Give non-daemon threads `grace_s` to end; if any is still blocked, exit now with `code`
    (os._exit: the interpreter's own exit would join that thread forever)."""
    deadline = time.monotonic() + grace_s
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join(max(0.0, deadline - time.monotonic()))
    stuck = [t.name for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon
             and t.is_alive()]
    if stuck:
        log.warning("threads_abandoned_at_exit", threads=stuck, grace_s=grace_s)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
