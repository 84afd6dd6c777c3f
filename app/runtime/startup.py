"""Opening a process's resources at start-up: attach to (or start) the embedded default, wait
for Redis and PostgreSQL to come up, check or apply the schema, then build the Resources every
job, the sidecar and the CLI share (app/jobs/resources.py).

Only the worker and `workhorse migrate` apply migrations; read-only commands find a database
without the schema and say so.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import TypeVar

import structlog

from app.config import Settings, redact_url
from app.db import migrate, pool
from app.db.pool import DatabaseUnavailable
from app.jobs.resources import Resources, build_resources
from app.queue.connections import RedisUnavailable, wait_for_redis
from app.queue.registry import Registry
from app.runtime import embedded_home

T = TypeVar("T")

log = structlog.get_logger(__name__)


@asynccontextmanager
async def open_resources(settings: Settings, registry: Registry, *, start_embedded: bool = True,
                         apply_migrations: bool = False) -> AsyncIterator[Resources]:
    """Connect everything (embedded default if nothing is configured); close it all on exit.

    With `start_embedded` False, an embedded default that does not run is an error instead of
    being started. With `apply_migrations` False (every read-only command), a database without
    the schema raises migrate.SchemaMissing instead of being changed."""
    redis_url, database_url, attached = await asyncio.to_thread(embedded_home.resolve, settings, start=start_embedded)
    try:
        redis = await _named(wait_for_redis(redis_url, timeout_s=settings.db_connect_timeout_s),
                             settings.redis.variable, redis_url)
        try:
            await _named(pool.wait_for(database_url, timeout_s=settings.db_connect_timeout_s),
                         "DATABASE_URL", database_url)
            if apply_migrations:
                await migrate.migrate(database_url)
            else:
                await migrate.require_schema(database_url)
            db = await pool.create_pool(database_url)
            try:
                res = build_resources(settings, registry, redis_url, database_url, redis, db,
                             embedded_alone=attached is not None and attached.alone)
                try:
                    yield res
                finally:
                    await res.providers.aclose()
            finally:
                await db.close()
        finally:
            await redis.aclose(close_connection_pool=True)
    finally:
        if attached is not None:
            await asyncio.to_thread(attached.leave)


async def _named(waiting: Awaitable[T], variable: str, url: str) -> T:
    """What waiting for a server raised, as one line naming the variable and the (redacted) URL."""
    try:
        return await waiting
    except RedisUnavailable as exc:
        raise RedisUnavailable(f"{variable} {redact_url(url)}: {exc}") from None
    except DatabaseUnavailable as exc:
        raise DatabaseUnavailable(f"{variable} {redact_url(url)}: {exc}") from None


__all__ = ["open_resources"]
