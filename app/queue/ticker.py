"""The ticker that fires cron entries once across every process.

A tick is claimed with SET NX, and its job is enqueued under the fixed id `cron:<entry>`, so a
tick never overlaps a previous run that is still queued or running. What the ticker needs of
the process and of an entry is spelled out as Protocols, so this module depends on nothing
above app/queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.queue import keys
from app.queue.cron_expr import CronExpr
from app.queue.enqueue import Enqueuer
from app.queue.replies import text

log = structlog.get_logger(__name__)

# A claim outlives any clock skew between processes by far.
_CLAIM_TTL_MS = 3_600_000


class TickerResources(Protocol):
    """What the ticker uses of the process's resources (app/jobs/resources.py)."""

    @property
    def redis(self) -> Redis: ...

    @property
    def enqueuer(self) -> Enqueuer: ...


class TickerEntry(Protocol):
    """What the ticker uses of a cron entry (app/cron.py)."""

    @property
    def name(self) -> str: ...

    @property
    def expr(self) -> CronExpr: ...

    @property
    def job(self) -> str: ...

    @property
    def payload(self) -> dict[str, Any]: ...


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class CronTicker:
    """Fires the cron entries whose job runs on a queue this process serves."""

    def __init__(self, res: TickerResources, entries: Iterable[TickerEntry], *,
                 clock: Callable[[], dt.datetime] = _utc_now) -> None:
        self.res = res
        self.entries = list(entries)
        self.clock = clock
        self.next_runs: dict[str, dt.datetime] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        now = self.clock()
        self.next_runs = {e.name: e.expr.next_after(now) for e in self.entries}
        if self.entries:
            self._task = asyncio.create_task(self._run(), name="cron")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            soonest = min(self.next_runs.values())
            await asyncio.sleep(max(0.0, (soonest - self.clock()).total_seconds()))
            now = self.clock()
            for entry in self.entries:
                tick = self.next_runs[entry.name]
                if tick <= now:
                    self.next_runs[entry.name] = entry.expr.next_after(now)
                    try:
                        await self.fire(entry, tick)
                    except (RedisError, OSError) as exc:
                        log.warning("cron_tick_failed", entry=entry.name, error=str(exc))

    async def fire(self, entry: TickerEntry, tick: dt.datetime) -> str:
        """Fire one tick unless another process has; returns what happened."""
        tick_ms = int(tick.timestamp() * 1000)
        redis = self.res.redis
        claimed = await redis.set(keys.cron_claim_key(entry.name, tick_ms), "1", nx=True, px=_CLAIM_TTL_MS)
        if not claimed:
            return "claimed_elsewhere"
        job_id = f"cron:{entry.name}"
        enqueued = await self.res.enqueuer.enqueue(entry.job, entry.payload, job_id=job_id, replace_result=True)
        outcome = "enqueued" if enqueued else "skipped_overlap"
        await redis.hset(keys.CRON_LAST_RUN, entry.name, json.dumps(
            {"tick": tick.isoformat(), "firedAt": self.clock().isoformat(), "jobId": job_id, "outcome": outcome}
        ))
        log.info("cron_tick", entry=entry.name, job=entry.job, outcome=outcome)
        return outcome

    async def describe(self) -> list[dict[str, Any]]:
        raw = await self.res.redis.hgetall(keys.CRON_LAST_RUN)
        last = {text(k): json.loads(v) for k, v in raw.items()}
        return [
            {"name": e.name, "schedule": e.expr.text, "timeZone": e.expr.time_zone, "job": e.job,
             "nextRun": self.next_runs[e.name].isoformat() if e.name in self.next_runs else None,
             "lastRun": last.get(e.name)}
            for e in self.entries
        ]
