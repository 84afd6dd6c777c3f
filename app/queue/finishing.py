"""Writing finished jobs' outcomes: the jobs of one queue that finish in the same loop turn go
to Redis in one MULTI/EXEC instead of one round trip each.

What one finish writes is arq's `finish_job` (lock deleted, result stored with its TTL, retry
counter and record deleted, id removed from the queue; or, for a retry, the score moved on),
without its ZREM of arq's abort set (abort is off, see the package docstring), and written so
that applying it twice changes nothing: the retry's new score is absolute, and the lock is
deleted only while this process holds it. A batch is
atomic, so a job is never half-finished; a batch that fails fails every finish in it, and each
caller retries its own (app/queue/worker.py holds outcomes through a Redis outage).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from arq.connections import ArqRedis
from redis.asyncio.client import Pipeline

from app.queue import keys
from app.queue.liveness import INSTANCE_ID

# KEYS: a job's lock. ARGV: this instance. Deletes the lock only while it is ours: a finish
# written late (after an outage) must not release a lock another process has taken since.
_RELEASE_LUA = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


@dataclass(frozen=True, slots=True)
class Finish:
    job_id: str
    result: bytes | None
    result_ttl_ms: int | None
    """None: keep the result forever; 0: keep none."""
    done: bool
    """False: a retry; the job stays queued, due at `next_score_ms`."""
    next_score_ms: int | None = None

    def write(self, tr: Pipeline, queue: str) -> None:
        """The finish's commands. Each is idempotent (an absolute score, a compare-and-delete),
        so a finish written twice — its reply lost, then retried — does no harm."""
        if self.done:
            if self.result is not None and self.result_ttl_ms != 0:
                tr.set(keys.RESULT_PREFIX + self.job_id, self.result, px=self.result_ttl_ms)
            tr.zrem(queue, self.job_id)
            tr.delete(keys.RETRY_PREFIX + self.job_id, keys.JOB_PREFIX + self.job_id)
        elif self.next_score_ms is not None:
            tr.zadd(queue, {self.job_id: self.next_score_ms}, xx=True)
        tr.eval(_RELEASE_LUA, 1, keys.IN_PROGRESS_PREFIX + self.job_id, INSTANCE_ID)


class FinishBatcher:
    """Coalesces the finishes of one queue's jobs into one transaction per loop turn."""

    def __init__(self, pool: ArqRedis, queue: str) -> None:
        self.pool, self.queue = pool, queue
        self._pending: list[tuple[Callable[[Pipeline], None], asyncio.Future[None]]] = []
        self._flush_scheduled = False
        self.batches = 0
        self.finishes = 0

    async def write(self, finish: Finish) -> None:
        """Return once `finish` is in Redis; raise what the batch it went in raised."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((lambda tr: finish.write(tr, self.queue), future))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._start_flush)
        await future

    def _start_flush(self) -> None:
        # call_soon runs after the callbacks already scheduled, so every job that finished in
        # this turn of the loop has added its finish by now.
        self._flush_scheduled = False
        batch, self._pending = self._pending, []
        if batch:
            asyncio.get_running_loop().create_task(self._flush(batch))

    async def _flush(self, batch: list[tuple[Callable[[Pipeline], None], asyncio.Future[None]]]) -> None:
        try:
            async with self.pool.pipeline(transaction=True) as tr:
                for add, _ in batch:
                    add(tr)
                await tr.execute()
        except BaseException as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            self.batches += 1
            self.finishes += len(batch)
            for _, future in batch:
                if not future.done():
                    future.set_result(None)
