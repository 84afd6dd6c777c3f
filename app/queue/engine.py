"""The engine's share of a process's resources: what queue code needs to run jobs.

The runtime's `Resources` extends it with breakers and provider clients, so jobs get one typed
object and the engine never imports what is built above it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg
from arq.connections import ArqRedis

from app.metrics import Metrics
from app.queue.connections import connect_redis
from app.queue.dead_letters import DeadLetters
from app.queue.enqueue import Enqueuer
from app.queue.registry import Registry
from app.queue.stats import StatsBuffer
from app.settings import Settings


@dataclass(frozen=True, kw_only=True)
class Engine:
    settings: Settings
    registry: Registry
    redis_url: str
    database_url: str
    redis: ArqRedis
    db: asyncpg.Pool
    metrics: Metrics
    enqueuer: Enqueuer
    dlq: DeadLetters
    stats: StatsBuffer = field(default_factory=StatsBuffer)

    async def new_redis(self) -> ArqRedis:
        """A separate pool (each arq Worker closes the pool it was given)."""
        return await connect_redis(self.redis_url)
