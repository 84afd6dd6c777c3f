"""The asyncpg pool: waits for PostgreSQL to come up, then decodes json/jsonb and vectors."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import structlog

from app.backoff import CONNECT_BACKOFF, Deadline, retry_until

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
    async def connect() -> None:
        conn = await asyncpg.connect(url, timeout=min(10.0, timeout_s))
        await conn.close()

    try:
        await retry_until(connect, backoff=CONNECT_BACKOFF, timeout_s=timeout_s, retry_on=CONNECT_ERRORS,
                          on_retry=lambda exc, delay: log.warning("database_unavailable_retrying",
                                                                  error=str(exc), retry_in_s=delay))
    except Deadline as exc:
        raise DatabaseUnavailable(f"PostgreSQL did not answer within {timeout_s:.0f}s: {exc}") from exc
    except (asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
        # A refusal that waiting will not change (wrong password, unknown role or database, a bad
        # option such as sslmode=bogus, a host name that cannot be encoded): say so at once.
        raise DatabaseUnavailable(f"PostgreSQL refused the connection: {type(exc).__name__}: {exc}") from None


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Connections go back to the pool as they are. asyncpg's default reset (advisory unlock,
    CLOSE ALL, UNLISTEN, RESET ALL) costs a round trip on every release, i.e. per query; nothing
    in the project leaves session state behind: settings are SET LOCAL, advisory locks are
    transaction-level, LISTEN has its own connection (the outbox relay)."""


async def create_pool(url: str, *, min_size: int = 1, max_size: int = 20, **kwargs: Any) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        url, min_size=min_size, max_size=max_size, init=_init_connection, reset=_keep_session, command_timeout=60,
        **kwargs,
    )
    assert pool is not None  # create_pool only returns None when awaited lazily
    return pool
