"""Queue statistics shared by every process: counters, running jobs, depths, paused state.

Counters are buffered in memory and flushed in one pipeline every second, so the hot path of
a job costs no extra Redis round trip. Running jobs stay in arq's queue ZSET until they
finish, so "waiting" is the due count minus what processes report as running.
"""

from __future__ import annotations

import json
import os
import socket
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from pydantic.alias_generators import to_camel
from redis.asyncio import Redis

from app.queue import keys
from app.queue.clock import now_ms

PROCESS_ID = f"{socket.gethostname()}:{os.getpid()}"
COUNTERS = ("completed", "failed", "retried", "dead_lettered", "skipped")


@dataclass(frozen=True, slots=True)
class QueueStats:
    queue: str
    waiting: int
    active: int
    delayed: int
    completed: int
    failed: int
    retried: int
    dead_lettered: int
    skipped: int
    paused: bool
    oldest_waiting_age_s: float | None
    prioritized: int = 0
    """Of the waiting, those with a priority (app/queue/priorities.py)."""

    def as_json(self) -> dict[str, Any]:
        """The counts as every JSON output shows them (API, `queues --json`, /health/detailed):
        camelCase, as the web app's own JSON is."""
        return {to_camel(f): getattr(self, f) for f in self.__slots__}


@dataclass
class StatsBuffer:
    """Per-process counters not yet written to Redis."""

    pending: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))

    def count(self, queue: str, outcome: str) -> None:
        self.pending[queue][outcome] += 1

    async def flush(self, redis: Redis) -> None:
        if not self.pending:
            return
        batch, self.pending = self.pending, defaultdict(Counter)
        try:
            async with redis.pipeline(transaction=False) as pipe:
                for queue, counts in batch.items():
                    for outcome, n in counts.items():
                        pipe.hincrby(keys.stats_key(queue), outcome, n)
                await pipe.execute()
        except BaseException:
            # Keep the counts for the next flush rather than losing them.
            for queue, counts in batch.items():
                self.pending[queue].update(counts)
            raise


async def sync_running(redis: Redis, queue: str, running: dict[str, int], finished: list[str],
                       ttl_s: float) -> None:
    """Publish this process's running jobs of `queue` (job id -> start ms); entries expire if
    the process dies, so a crash never leaves phantom active jobs."""
    expires = now_ms() + int(ttl_s * 1000)
    async with redis.pipeline(transaction=False) as pipe:
        key = keys.running_key(queue)
        if finished:
            pipe.hdel(key, *finished)
        for job_id, started_ms in running.items():
            pipe.hset(key, job_id, json.dumps({"startedMs": started_ms, "expiresMs": expires,
                                               "process": PROCESS_ID}))
        await pipe.execute()


@dataclass(frozen=True, slots=True)
class RunningJob:
    job_id: str
    queue: str
    started_ms: int
    process: str


async def running_jobs(redis: Redis, queues: list[str]) -> list[RunningJob]:
    """Jobs that live processes report as running."""
    now = now_ms()
    async with redis.pipeline(transaction=False) as pipe:
        for q in queues:
            pipe.hgetall(keys.running_key(q))
        results = await pipe.execute()
    out = []
    for q, entries in zip(queues, results, strict=True):
        for job_id, raw in entries.items():
            info = json.loads(raw)
            if info["expiresMs"] > now:
                out.append(RunningJob(job_id.decode(), q, info["startedMs"], info["process"]))
    return out


async def read(redis: Redis, queues: list[str]) -> dict[str, QueueStats]:
    """Stats of `queues` in one round trip."""
    now = now_ms()
    async with redis.pipeline(transaction=False) as pipe:
        pipe.smembers(keys.PAUSED_SET)
        for q in queues:
            pipe.zcount(q, "-inf", now)
            pipe.zcount(q, f"({now}", "+inf")
            pipe.hgetall(keys.stats_key(q))
            pipe.hgetall(keys.running_key(q))
            pipe.zrange(q, 0, 0, withscores=True)
            pipe.zcard(keys.prioritized_key(q))
        results = await pipe.execute()
    paused = {p.decode() for p in results[0]}
    out: dict[str, QueueStats] = {}
    for i, q in enumerate(queues):
        due, delayed, counters, active_raw, first, prioritized = results[1 + i * 6 : 7 + i * 6]
        active = sum(1 for v in active_raw.values() if json.loads(v)["expiresMs"] > now)
        counts = {k.decode(): int(v) for k, v in counters.items()}
        oldest = (now - first[0][1]) / 1000 if first and first[0][1] <= now and due > active else None
        out[q] = QueueStats(
            queue=q, waiting=max(due - active, 0) + prioritized, active=min(active, due), delayed=delayed,
            paused=q in paused, oldest_waiting_age_s=oldest, prioritized=prioritized,
            **{c: counts.get(c, 0) for c in COUNTERS},
        )
    return out


async def prune_running(redis: Redis, queues: list[str]) -> None:
    """Remove entries of processes that stopped reporting (crashed)."""
    now = now_ms()
    for q in queues:
        entries = await redis.hgetall(keys.running_key(q))
        dead = [k for k, v in entries.items() if json.loads(v)["expiresMs"] <= now]
        if dead:
            await redis.hdel(keys.running_key(q), *dead)
