"""Resources: what jobs, the sidecar and the CLI share — pools, clients, breakers, metrics.

Built once per process by `open_resources()`, which also finds or starts the embedded default,
waits for Redis and PostgreSQL to come up, and applies migrations. Provider clients are built
lazily from settings; a provider that is not configured is None and its jobs finish `skipped`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import structlog
from arq.connections import ArqRedis, RedisSettings, create_pool
from redis.exceptions import RedisError

from app.db import migrate, pool
from app.metrics import Metrics
from app.providers.breakers import Breakers, State
from app.queue import codec
from app.queue.dead_letters import DeadLetters
from app.queue.enqueue import Enqueuer
from app.queue.registry import Registry
from app.queue.stats import StatsBuffer
from app.runtime import embedded
from app.settings import Settings

log = structlog.get_logger(__name__)


class RedisUnavailable(RuntimeError):
    """Redis did not answer within the start-up budget."""


@dataclass
class Resources:
    settings: Settings
    registry: Registry
    redis_url: str
    database_url: str
    redis: ArqRedis
    db: asyncpg.Pool
    metrics: Metrics
    breakers: Breakers
    enqueuer: Enqueuer
    dlq: DeadLetters
    stats: StatsBuffer = field(default_factory=StatsBuffer)
    clients: dict[str, Any] = field(default_factory=dict)
    """Provider clients built on first use (app/clients/*), closed with the resources."""

    async def new_redis(self) -> ArqRedis:
        """A separate pool (each arq Worker closes the pool it was given)."""
        return await connect_redis(self.redis_url)


async def connect_redis(url: str) -> ArqRedis:
    settings = RedisSettings.from_dsn(url)
    settings.conn_timeout = 5
    settings.conn_retries = 0
    return await create_pool(settings, job_serializer=codec.dumps, job_deserializer=codec.loads)


async def wait_for_redis(url: str, *, timeout_s: float) -> ArqRedis:
    """A pool once Redis answers PING; retries with backoff, then RedisUnavailable."""
    deadline = time.monotonic() + timeout_s
    delay = 0.2
    while True:
        try:
            redis = await connect_redis(url)
            await redis.ping()
            return redis
        except (RedisError, OSError) as exc:
            if time.monotonic() + delay > deadline:
                raise RedisUnavailable(f"Redis did not answer within {timeout_s:.0f}s: {exc}") from exc
            log.warning("redis_unavailable_retrying", error=str(exc), retry_in_s=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


@asynccontextmanager
async def open_resources(settings: Settings, registry: Registry, *, start_embedded: bool = True,
                         apply_migrations: bool = True) -> AsyncIterator[Resources]:
    """Connect everything (embedded default if nothing is configured); close it all on exit."""
    started: embedded.Embedded | None = None
    if start_embedded:
        redis_url, database_url, started = await asyncio.to_thread(
            embedded.resolve, settings.redis_url, settings.database_url, settings.workhorse_home
        )
    else:
        found = embedded.discover(settings.workhorse_home)
        redis_url = settings.redis_url or found.get("redis_url", "")
        database_url = settings.database_url or found.get("database_url", "")
    try:
        redis = await wait_for_redis(redis_url, timeout_s=settings.db_connect_timeout_s)
        try:
            await pool.wait_for(database_url, timeout_s=settings.db_connect_timeout_s)
            if apply_migrations:
                await migrate.migrate(database_url)
            db = await pool.create_pool(database_url)
            try:
                metrics = Metrics()
                breakers = Breakers(
                    failure_threshold=settings.breaker_failure_threshold,
                    reset_timeout_s=settings.breaker_reset_timeout_s,
                    on_change=lambda p, s: metrics.breaker_state.labels(p).set(int(s)),
                )
                for provider, state in breakers.states().items():
                    metrics.breaker_state.labels(provider).set(int(state))
                res = Resources(
                    settings=settings, registry=registry, redis_url=redis_url, database_url=database_url,
                    redis=redis, db=db, metrics=metrics, breakers=breakers,
                    enqueuer=Enqueuer(redis, registry), dlq=DeadLetters(db),
                )
                try:
                    yield res
                finally:
                    await _close_clients(res)
            finally:
                await db.close()
        finally:
            await redis.aclose(close_connection_pool=True)
    finally:
        if started is not None:
            await asyncio.to_thread(started.stop)


async def _close_clients(res: Resources) -> None:
    for name, client in list(res.clients.items()):
        closer = getattr(client, "aclose", None) or getattr(client, "close", None)
        if closer is None:
            continue
        try:
            result = closer()
            if asyncio.iscoroutine(result):
                await result
        except Exception as exc:  # closing is best effort; the process is stopping anyway
            log.warning("client_close_failed", client=name, error=str(exc))
    res.clients.clear()


__all__ = ["Resources", "State", "open_resources", "wait_for_redis"]
