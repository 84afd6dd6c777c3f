"""Five-field cron expressions ("*/15 * * * *") and the ticker that fires them once across
every process: a tick is claimed with SET NX, and its job is enqueued under the fixed id
`cron:<entry>`, so a tick never overlaps a previous run that is still queued or running.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog
from redis.exceptions import RedisError

from app.queue import keys
from app.queue.awaitable import awaited

if TYPE_CHECKING:
    from app.cron import CronEntry
    from app.runtime.resources import Resources

log = structlog.get_logger(__name__)

_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day", 1, 31), ("month", 1, 12), ("weekday", 0, 6))
# A claim outlives any clock skew between processes by far.
_CLAIM_TTL_MS = 3_600_000


class CronSyntaxError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class CronExpr:
    text: str
    minute: frozenset[int]
    hour: frozenset[int]
    day: frozenset[int]
    month: frozenset[int]
    weekday: frozenset[int]  # 0 = Sunday, as in crontab

    @classmethod
    def parse(cls, text: str) -> CronExpr:
        parts = text.split()
        if len(parts) != 5:
            raise CronSyntaxError(f"{text!r}: expected 5 fields (minute hour day month weekday)")
        sets = [_parse_field(p, name, lo, hi) for p, (name, lo, hi) in zip(parts, _FIELDS, strict=True)]
        return cls(text, *sets)

    def next_after(self, after: dt.datetime) -> dt.datetime:
        """The first matching minute strictly after `after` (aware, UTC)."""
        t = after.astimezone(dt.UTC).replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
        for _ in range(366 * 24 * 60):
            if (t.month in self.month and t.day in self.day and (t.isoweekday() % 7) in self.weekday
                    and t.hour in self.hour and t.minute in self.minute):
                return t
            if t.month not in self.month or t.day not in self.day or (t.isoweekday() % 7) not in self.weekday:
                t = (t + dt.timedelta(days=1)).replace(hour=0, minute=0)
            elif t.hour not in self.hour:
                t = (t + dt.timedelta(hours=1)).replace(minute=0)
            else:
                t += dt.timedelta(minutes=1)
        raise CronSyntaxError(f"{self.text!r} never matches")


def _parse_field(text: str, name: str, lo: int, hi: int) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        rng, _, step_s = item.partition("/")
        try:
            step = int(step_s) if step_s else 1
            if rng == "*":
                start, end = lo, hi
            elif "-" in rng:
                a, b = rng.split("-", 1)
                start, end = int(a), int(b)
            else:
                start = int(rng)
                end = hi if step_s else start
        except ValueError:
            raise CronSyntaxError(f"{name} field {text!r} is not a number, range or */step") from None
        if step < 1 or not lo <= start <= end <= hi:
            raise CronSyntaxError(f"{name} field {text!r} is outside {lo}-{hi}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


class CronTicker:
    """Fires the cron entries whose job runs on a queue this process serves."""

    def __init__(self, res: Resources, entries: Iterable[CronEntry], *,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> None:
        self.res = res
        self.entries = list(entries)
        self.clock = clock
        self.next_runs: dict[str, dt.datetime] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        now = self.clock()
        self.next_runs = {e.name: e.schedule.next_after(now) for e in self.entries}
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
                    self.next_runs[entry.name] = entry.schedule.next_after(now)
                    try:
                        await self.fire(entry, tick)
                    except (RedisError, OSError) as exc:
                        log.warning("cron_tick_failed", entry=entry.name, error=str(exc))

    async def fire(self, entry: CronEntry, tick: dt.datetime) -> str:
        """Fire one tick unless another process has; returns what happened."""
        tick_ms = int(tick.timestamp() * 1000)
        redis = self.res.redis
        claimed = await redis.set(keys.cron_claim_key(entry.name, tick_ms), "1", nx=True, px=_CLAIM_TTL_MS)
        if not claimed:
            return "claimed_elsewhere"
        job_id = f"cron:{entry.name}"
        enqueued = await self.res.enqueuer.enqueue(entry.job, entry.payload, job_id=job_id, replace_result=True)
        outcome = "enqueued" if enqueued else "skipped_overlap"
        await awaited(redis.hset(keys.CRON_LAST_RUN, entry.name, json.dumps(
            {"tick": tick.isoformat(), "firedAt": self.clock().isoformat(), "jobId": job_id, "outcome": outcome}
        )))
        log.info("cron_tick", entry=entry.name, job=entry.job, outcome=outcome)
        return outcome

    async def describe(self) -> list[dict[str, Any]]:
        raw = await awaited(self.res.redis.hgetall(keys.CRON_LAST_RUN))
        last = {k.decode(): json.loads(v) for k, v in raw.items()}
        return [
            {"name": e.name, "schedule": e.schedule.text, "job": e.job,
             "nextRun": self.next_runs[e.name].isoformat() if e.name in self.next_runs else None,
             "lastRun": last.get(e.name)}
            for e in self.entries
        ]
