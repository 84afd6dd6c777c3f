"""The asyncpg pool: waits for PostgreSQL to come up, then decodes json/jsonb and vectors."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import asyncpg
import structlog

log = structlog.get_logger(__name__)

# Errors that mean "the server is not there (yet)", worth waiting for at start-up.
CONNECT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.ConnectionDoesNotExistError,
    TimeoutError,
)


class DatabaseUnavailable(RuntimeError):
    """PostgreSQL did not answer within the start-up budget."""


async def _init_connection(conn: asyncpg.Connection) -> None:
    for kind in ("json", "jsonb"):
        await conn.set_type_codec(kind, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    has_vector = await conn.fetchval("SELECT 1 FROM pg_type WHERE typname = 'vector'")
    if has_vector:
        from pgvector.asyncpg import register_vector

        await register_vector(conn)


async def wait_for(url: str, *, timeout_s: float) -> None:
    """Return once PostgreSQL accepts a connection; retry with backoff until `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    delay = 0.2
    while True:
        try:
            conn = await asyncpg.connect(url, timeout=min(10.0, timeout_s))
        except CONNECT_ERRORS as exc:
            if time.monotonic() + delay > deadline:
                raise DatabaseUnavailable(f"PostgreSQL did not answer within {timeout_s:.0f}s: {exc}") from exc
            log.warning("database_unavailable_retrying", error=str(exc), retry_in_s=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
        else:
            await conn.close()
            return


async def create_pool(url: str, *, min_size: int = 1, max_size: int = 20, **kwargs: Any) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        url, min_size=min_size, max_size=max_size, init=_init_connection, command_timeout=60, **kwargs
    )
    assert pool is not None  # create_pool only returns None when awaited lazily
    return pool
