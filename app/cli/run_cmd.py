"""`workhorse run` (the worker) and `workhorse migrate`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import asyncpg

from app.config import Settings
from app.db import migrate, pool
from app.jobs import build_registry
from app.runtime import embedded_home
from app.runtime.embedded import EmbeddedUnavailable
from app.runtime.process import serve
from app.runtime.startup import open_resources


def add_parsers(sub: Any) -> None:
    run = sub.add_parser("run", help="run the worker (every queue, or --queues)")
    run.add_argument("--queues", help="comma-separated subset of queues (default: WORKHORSE_QUEUES or all)")
    run.set_defaults(handler=run_worker)
    mig = sub.add_parser("migrate", help="apply pending database migrations")
    mig.add_argument("--status", action="store_true", help="list pending migrations, apply nothing")
    mig.set_defaults(handler=run_migrate)


async def run_worker(settings: Settings, args: argparse.Namespace) -> int:
    queues = settings.served_queues(args.queues)
    registry = build_registry(settings)
    try:
        return await serve(settings, registry, queues)
    except EmbeddedUnavailable as exc:
        print(f"workhorse: {exc}", file=sys.stderr)
        return 2


async def run_migrate(settings: Settings, args: argparse.Namespace) -> int:
    if args.status:
        return await _status(settings)
    async with open_resources(settings, build_registry(settings), apply_migrations=True):
        print("database is up to date")
    return 0


async def _status(settings: Settings) -> int:
    """The pending migrations. Nothing is started to answer: without a database it says so."""
    _, database_url, attached = await asyncio.to_thread(embedded_home.resolve, settings, start=False)
    try:
        await pool.wait_for(database_url, timeout_s=settings.db_connect_timeout_s)
        conn = await asyncpg.connect(database_url)
        try:
            waiting = await migrate.pending(conn)
        finally:
            await conn.close()
    finally:
        if attached is not None:
            await asyncio.to_thread(attached.leave)
    print("pending: " + (", ".join(waiting) if waiting else "none"))
    return 0
