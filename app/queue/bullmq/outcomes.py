"""Waiting for the outcomes of the Workhorse jobs that BullMQ jobs were handed to: one watcher per
process, however many jobs it waits for, and the pins that keep their results until read.

How it learns of an outcome. A job that ends in this process is announced by its worker
(`QueueWorker.on_finished`): the watcher reads its result at once. Jobs that run in another
process are looked for: each job first after FIRST_LOOK_S, then at doubling intervals up to
LONGEST_LOOK_S, every look due at the same moment in one pipelined round trip (looks fall on a
LOOK_GRID_S grid, so many jobs share each one: at most 200 round trips a second when many jobs
are young, two when all are old), of a few commands whatever their number. A look reads a job's
place in its queue before its result: the finish script removes the one and writes the other at
once, so a job found in neither was not running then. Its record is read next (before its result
again): a job with neither record nor result has really gone (its result expired, or Redis lost
it) and is reported as such instead of waited for in vain.

Progress: a look that finds the progress changed hands its percent to the waiter (the ingress
mirrors it to `job.updateProgress`), so progress reaches BullMQ within half a second.

Pins. A BullMQ job re-delivered after its taker died (app/queue/bullmq/ingress.py) reads its
outcome from the Workhorse job's result, possibly long after the job finished: the per-queue
count trim (app/queue/bookkeeping.py) must not take that result first, on a busy queue within a
second. So each hand-over pins its job id (keys.PINNED_RESULTS) in the enqueue's own script
(`JobRequest.pin_result`: no round trip of its own, and no moment at which the job is enqueued
but not pinned), the trim leaves pinned results to their TTL (KEEP_RESULT_S, KEEP_FAILED_S), and
the pin goes once the BullMQ job records the outcome. Pins left behind by a process killed in
between are dropped after PIN_MAX_AGE_S.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.backoff import REDIS_OUTAGE_BACKOFF
from app.queue import codec, keys
from app.queue.clock import now_ms
from app.queue.handles import JobOutcome

log = structlog.get_logger(__name__)

FIRST_LOOK_S = 0.01
LONGEST_LOOK_S = 0.5
LOOK_GRID_S = 0.005
UNPIN_EVERY_S = 1.0
PIN_MAX_AGE_S = 8 * 86_400
"""Longer than any result is kept (KEEP_FAILED_S defaults to 7 days): a pin older than this is stale."""
STALE_PINS_EVERY_S = 600.0

OnProgress = Callable[[Any], None]


class Gone:
    """The outcome of a job that is neither queued, running nor holding a result any more."""


GONE = Gone()


@dataclass(slots=True)
class _Watch:
    queue: str
    due: float
    interval: float = FIRST_LOOK_S
    finished: bool = False
    """Its worker in this process said it has finished: only its result is read."""
    enqueued_at: float | None = None
    """When the job was known to be in Redis (`wait`): only a look begun after it may find it gone,
    as one begun before may have read before the enqueue landed."""
    waiters: list[tuple[asyncio.Future[JobOutcome | Gone], OnProgress | None]] = field(default_factory=list)
    progress: bytes | None = None


def _on_grid(t: float) -> float:
    return math.ceil(t / LOOK_GRID_S) * LOOK_GRID_S


class OutcomeWatcher:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._watches: dict[str, _Watch] = {}
        self._poked = asyncio.Event()
        self._unpins: list[str] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="bullmq-outcomes")

    async def stop(self) -> None:
        if self._task is not None:
            await cancelled([self._task])
        with contextlib.suppress(RedisError, OSError):
            await self._flush_unpins()

    def unpin(self, job_id: str) -> None:
        """The outcome is recorded in BullMQ: the result may be trimmed again (batched, in the background)."""
        self._unpins.append(job_id)

    def expect(self, job_id: str, queue: str) -> None:
        """Watch the job from before it is enqueued: a job that runs here may end before `wait` is
        called, and its worker's announcement must not find nobody listening."""
        self._watch(job_id, queue)

    async def wait(self, job_id: str, queue: str, on_progress: OnProgress | None = None) -> JobOutcome | Gone:
        """The job's outcome once it has one (GONE when it vanished without one)."""
        watch = self._watch(job_id, queue)
        watch.enqueued_at = watch.enqueued_at or time.monotonic()
        future: asyncio.Future[JobOutcome | Gone] = asyncio.get_running_loop().create_future()
        watch.waiters.append((future, on_progress))
        try:
            return await future
        finally:
            if future.cancelled() or not future.done():  # forget this waiter, and the job if it was the last
                watch.waiters = [w for w in watch.waiters if w[0] is not future]
                if not watch.waiters and self._watches.get(job_id) is watch:
                    del self._watches[job_id]

    def _watch(self, job_id: str, queue: str) -> _Watch:
        watch = self._watches.get(job_id)
        if watch is None:
            watch = self._watches[job_id] = _Watch(queue, _on_grid(time.monotonic() + FIRST_LOOK_S))
            self._poked.set()
        return watch

    def finished_here(self, job_id: str) -> None:
        """A worker of this process has just written the job's result: look now."""
        watch = self._watches.get(job_id)
        if watch is not None:
            watch.due, watch.finished = 0.0, True
            self._poked.set()

    async def _run(self) -> None:
        failures = 0
        next_unpin = time.monotonic() + UNPIN_EVERY_S
        next_stale = time.monotonic()
        while True:
            await self._until_due(next_unpin)
            now = time.monotonic()
            due = [job_id for job_id, w in self._watches.items() if w.due <= now]
            try:
                if due:
                    self._settle(await self._look(due), looked_at=now)
                if now >= next_unpin:
                    next_unpin = now + UNPIN_EVERY_S
                    await self._flush_unpins(stale=now >= next_stale)
                    next_stale = now + STALE_PINS_EVERY_S if now >= next_stale else next_stale
            except (RedisError, OSError) as exc:
                failures += 1
                delay = REDIS_OUTAGE_BACKOFF.delay_s(failures)
                if failures == 1:
                    log.warning("bullmq_outcomes_unreadable", error=str(exc), retry_in_s=round(delay, 3))
                await asyncio.sleep(delay)
                continue
            failures = 0

    async def _until_due(self, next_unpin: float) -> None:
        self._poked.clear()
        soonest = min((w.due for w in self._watches.values()), default=math.inf)
        wait_s = min(soonest, next_unpin) - time.monotonic()
        if wait_s > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await self._poked.wait()

    async def _look(self, job_ids: list[str]) -> dict[str, tuple[Any, bool, Any]]:
        """(result, still there, progress) of each job, in one round trip however many they are:
        their places in their queues (one ZMSCORE a queue), then their results and progress (an
        MGET each). A job neither queued nor finished is looked at again, record first, in a second
        round trip (rare: it is gone, run by another queue under the same id, or not enqueued yet)."""
        watches = self._watches
        other = [j for j in job_ids if not watches[j].finished]
        by_queue: dict[str, list[str]] = {}
        for job_id in other:
            by_queue.setdefault(watches[job_id].queue, []).append(job_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            for queue, ids in by_queue.items():  # before the results: see the module's docstring
                pipe.zmscore(queue, ids)
            pipe.mget([keys.RESULT_PREFIX + j for j in job_ids])
            if other:
                pipe.mget([keys.progress_key(j) for j in other])
            replies = list(await pipe.execute())
        queued = {j for ids, scores in zip(by_queue.values(), replies, strict=False)
                  for j, score in zip(ids, scores, strict=True) if score is not None}
        results = dict(zip(job_ids, replies[len(by_queue)], strict=True))
        progress = dict(zip(other, replies[len(by_queue) + 1], strict=True)) if other else {}
        found = {j: (results[j], results[j] is None and (j in queued or watches[j].finished), progress.get(j))
                 for j in job_ids}
        unsure = [j for j, (result, there, _) in found.items() if result is None and not there]
        if unsure:
            async with self.redis.pipeline(transaction=False) as pipe:
                for job_id in unsure:  # record first, then result: see the module's docstring
                    pipe.exists(keys.JOB_PREFIX + job_id)
                    pipe.get(keys.RESULT_PREFIX + job_id)
                again = list(await pipe.execute())
            for n, job_id in enumerate(unsure):
                found[job_id] = (again[2 * n + 1], bool(again[2 * n]), found[job_id][2])
        return found

    def _settle(self, found: dict[str, tuple[Any, bool, Any]], *, looked_at: float) -> None:
        now = time.monotonic()
        for job_id, (result, there, progress) in found.items():
            watch = self._watches.get(job_id)
            if watch is None:
                continue  # its waiters went away meanwhile
            gone = not there and watch.enqueued_at is not None and watch.enqueued_at < looked_at
            if result is not None or gone:
                del self._watches[job_id]
                outcome = JobOutcome.decode(result) if result is not None else GONE
                for future, _ in watch.waiters:
                    if not future.done():
                        future.set_result(outcome)
                continue
            watch.finished = False  # announced, yet no result (kept none?): looked for as any other
            if progress is not None and progress != watch.progress:
                watch.progress = progress
                _tell_progress(watch, progress)
            watch.interval = min(watch.interval * 2, LONGEST_LOOK_S)
            watch.due = _on_grid(now + watch.interval)

    async def _flush_unpins(self, *, stale: bool = False) -> None:
        """Drop the pins of outcomes recorded since the last flush (and, when `stale`, pins left by
        processes killed before they could)."""
        unpins, self._unpins = self._unpins, []
        if not unpins and not stale:
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                if unpins:
                    pipe.zrem(keys.PINNED_RESULTS, *unpins)
                if stale:
                    pipe.zremrangebyscore(keys.PINNED_RESULTS, "-inf", now_ms() - PIN_MAX_AGE_S * 1000)
                await pipe.execute()
        except BaseException:
            self._unpins[:0] = unpins
            raise


async def cancelled(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel `tasks` and return once they have all ended, cancelling again every second: in
    Python 3.11 a cancellation that arrives as an `asyncio.wait_for` completes (redis-py awaits
    its reads and writes with it) is lost, and the task carries on."""
    pending = {t for t in tasks if not t.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=1.0)


def _tell_progress(watch: _Watch, raw: bytes) -> None:
    try:
        reported = codec.loads(raw)
    except codec.NotJson:
        return
    percent = reported.get("percent") if isinstance(reported, dict) else None
    if isinstance(percent, int | float) and not isinstance(percent, bool):
        for _, on_progress in watch.waiters:
            if on_progress is not None:
                on_progress(percent)
