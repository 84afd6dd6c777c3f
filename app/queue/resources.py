"""What the engine's parts share in a process: settings, the registry, the Redis client and
PostgreSQL pool, metrics, the enqueuer, dead letters and buffered stats.

The jobs' `Resources` extends it with breakers and provider clients, so jobs get one typed object
and the engine never imports what is built above it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg
from redis.asyncio import Redis

from app.config import Settings
from app.metrics import Metrics
from app.queue.connections import connect_redis
from app.queue.dead_letters import DeadLetters
from app.queue.durability import Durability
from app.queue.enqueue import Enqueuer
from app.queue.registry import Registry
from app.queue.stats import StatsBuffer


@dataclass(frozen=True, kw_only=True)
class EngineResources:
    settings: Settings
    registry: Registry
    redis_url: str
    database_url: str
    redis: Redis
    db: asyncpg.Pool
    metrics: Metrics
    enqueuer: Enqueuer
    dlq: DeadLetters
    stats: StatsBuffer = field(default_factory=StatsBuffer)

    @property
    def durability(self) -> Durability:
        """What an acknowledged write waits for (REDIS_MIN_REPLICAS_ACK, app/queue/durability.py)."""
        return durability_of(self.settings)

    def new_redis(self) -> Redis:
        """A client on a pool of its own: each queue's worker has one, so a busy queue's commands
        never wait behind another's for a connection."""
        return connect_redis(self.redis_url)


def durability_of(settings: Settings) -> Durability:
    return Durability(settings.redis.min_replicas_ack, settings.redis.replicas_ack_timeout_ms)
