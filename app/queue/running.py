"""Running one claimed job to its finish (the lifecycle's start, run and finish steps).

The claim (app/queue/claims.py) has already locked the job, counted the attempt and read the
record, so starting a job costs no Redis command; its finish goes out in one script call with the
finishes written beside it (app/queue/finishing.py). A job that cannot run — record expired,
undecodable, naming an unknown job, past its attempts — is dead-lettered with the reason and never
runs; one that `Job.abort()` asked to stop ends aborted, whether it was waiting or running.
Results are arq's result records (app/queue/codec.py), which `JobHandle`, `jobs show` and arq's
own `Job` read alike.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from enum import Enum
from typing import Any

import structlog
from redis import exceptions as redis_errors

from app.backoff import REDIS_OUTAGE_BACKOFF
from app.queue import codec, keys
from app.queue.claims import RETRY_COUNTER_TTL_S, Claimed
from app.queue.clock import now_ms
from app.queue.execution import ABORTED, LOCK_LOST, DeadLettered, JobFunction, cancelled_by, dead_letter_before_start
from app.queue.finishing import Finish, FinishBatcher
from app.queue.resources import EngineResources
from app.queue.retries import RetryLater

log = structlog.get_logger(__name__)

ABORTED_RESULT = codec.failure("CancelledError", "aborted by Job.abort()")
"""An aborted job's result: arq's client raises CancelledError for it given an exception-aware
deserializer (README: arq clients), so `Job.abort()` returns True."""


ARQ_ABORT_SCORE = 1
"""The score arq's `Job.abort()` gives a deferred job (due at once), before it records the abort."""
ABORT_RECORD_GRACE_S = 0.2
"""How long a job claimed at that score waits for its abort to be recorded: claimed in between
(a keyspace wake-up is that fast), it would run the job it is about to abort."""


class Ended(Enum):
    """How a run ended, for the worker's counters and bookkeeping."""

    COMPLETED = "completed"  # success or skipped: the result is kept the shorter, completed TTL
    FAILED = "failed"  # dead-lettered (by the job's policy, or before it could start)
    ABORTED = "aborted"  # stopped by Job.abort(): a failed result, no dead letter
    RETRIED = "retried"  # queued again, for a later attempt
    REQUEUED = "requeued"  # cancelled by shutdown: queued again at its own score
    LOST = "lost"  # another process took the job over (its lock is theirs): nothing is written


class Runner:
    """Runs one queue's claimed jobs and writes their finishes."""

    def __init__(self, res: EngineResources, queue: str, functions: Mapping[str, JobFunction],
                 finisher: FinishBatcher, *, slot_freed: Callable[[str], None], keep_completed_s: float,
                 keep_failed_s: float, lock_ttl_s: float, heartbeat_s: float) -> None:
        self.res, self.queue, self.functions, self.finisher = res, queue, functions, finisher
        self.slot_freed = slot_freed
        self.keep_completed_ms = int(keep_completed_s * 1000)
        self.keep_failed_ms = int(keep_failed_s * 1000)
        # The lock was extended at most one heartbeat ago; a held finish stops retrying well before
        # it lapses, since past that point another process may already run the job again.
        self.hold_for_s = lock_ttl_s - heartbeat_s - 1
        self.in_function: dict[str, asyncio.Task[Any]] = {}
        """Jobs whose function is running (what shutdown and aborts may cancel): id -> their task."""
        self.enqueued_ms: dict[str, int] = {}
        """Jobs running here: id -> when their record says they were enqueued (an abort asked
        before that is for an earlier job of the same id)."""

    async def run(self, claim: Claimed) -> Ended:
        """Run the job, free its slot, then write its finish. The slot is freed before the finish is
        written, so the next claim and this finish travel to Redis together instead of in turn."""
        try:
            ended, finish = await self._attempt(claim)
        finally:
            self.slot_freed(claim.job_id)
            self.enqueued_ms.pop(claim.job_id, None)
        if finish is None:  # Ended.LOST: the outcome is the new owner's to write
            self.res.metrics.fenced.labels(self.queue).inc()
            return ended
        # Not shielded (a task each): shutdown cancels jobs only while their function runs, and a
        # finish handed to the batcher is written even if its waiter goes away.
        await self._write(finish)
        if ended is Ended.REQUEUED:
            raise asyncio.CancelledError  # the finish is written; the task ends as it was asked to
        return ended

    async def _attempt(self, claim: Claimed) -> tuple[Ended, Finish | None]:
        start_ms = now_ms()
        job_id, attempt = claim.job_id, claim.attempt
        if claim.record is None:
            return await self._refuse(claim, "<unknown>", attempt, "JobExecutionFailed", "job expired", start_ms)
        try:
            record = codec.loads_job(claim.record)
        except codec.NotJson as exc:
            return await self._refuse(claim, "<unknown>", attempt, "DeserializationError", str(exc), start_ms)
        name: str = record["f"]
        args: list[Any] = record["a"] or [None]
        kwargs: dict[str, Any] = record.get("k") or {}
        enqueued_ms: int = record["et"]
        aborted_ms = claim.aborted_ms
        if aborted_ms is None and claim.score == ARQ_ABORT_SCORE:
            aborted_ms = await self._abort_recorded_soon(job_id)
        if aborted_ms is not None and aborted_ms >= enqueued_ms:
            log.info("job_aborted_before_start", queue=self.queue, job=name, job_id=job_id)
            return Ended.ABORTED, self._result(claim, name, args, kwargs, attempt, enqueued_ms, start_ms,
                                              ended=Ended.ABORTED, result=ABORTED_RESULT)
        function = self.functions.get(name)
        if function is None:
            return await self._refuse(claim, name, attempt, "JobExecutionFailed", f"function {name!r} not found",
                                      start_ms)
        if record["t"] is not None and record["t"] > attempt:
            # The enqueuer asked for a later attempt (arq's `_job_try`): the counter follows it.
            attempt = record["t"]
            await self.res.redis.setex(keys.RETRY_PREFIX + job_id, RETRY_COUNTER_TTL_S, str(attempt))
        if attempt > function.max_tries:
            # Only crash recoveries get here: our policy decides every other last attempt.
            return await self._refuse(claim, name, attempt, "JobExecutionFailed",
                                      f"max {function.max_tries} retries exceeded", start_ms)
        self.enqueued_ms[job_id] = enqueued_ms
        ended, result, next_score = await self._call(function, claim, attempt, enqueued_ms, args[0], kwargs)
        if ended is Ended.LOST:
            return ended, None
        if ended is Ended.RETRIED or ended is Ended.REQUEUED:
            return ended, Finish(job_id, None, None, done=False, next_score_ms=next_score,
                                 prioritized=claim.prioritized)
        return ended, self._result(claim, name, args, kwargs, attempt, enqueued_ms, start_ms, ended=ended,
                                   result=result)

    def _result(self, claim: Claimed, name: str, args: list[Any], kwargs: dict[str, Any], attempt: int,
                enqueued_ms: int, start_ms: int, *, ended: Ended, result: Any) -> Finish:
        data = codec.dump_result(name=name, args=args, kwargs=kwargs, attempt=attempt, enqueued_ms=enqueued_ms,
                                 success=ended is Ended.COMPLETED, result=result, started_ms=start_ms,
                                 finished_ms=now_ms(), queue=self.queue, job_id=claim.job_id)
        ttl = self.keep_completed_ms if ended is Ended.COMPLETED else self.keep_failed_ms
        return Finish(claim.job_id, data, ttl, done=True, aborted=ended is Ended.ABORTED,
                      prioritized=claim.prioritized)

    async def _abort_recorded_soon(self, job_id: str) -> float | None:
        await asyncio.sleep(ABORT_RECORD_GRACE_S)
        try:
            score = await self.res.redis.zscore(keys.ABORT_SET, job_id)
        except (redis_errors.RedisError, OSError):
            return None  # Redis away: no abort could have been recorded meanwhile either
        return None if score is None else float(score)

    async def _call(self, function: JobFunction, claim: Claimed, attempt: int, enqueued_ms: int, payload: Any,
                    kwargs: dict[str, Any]) -> tuple[Ended, Any, int | None]:
        """Run the job function: (how it ended, its result or error, a retry's new score)."""
        task = asyncio.current_task()
        assert task is not None
        self.in_function[claim.job_id] = task
        try:
            result = await function.call(claim.job_id, attempt, enqueued_ms, payload, **kwargs)
        except RetryLater as retry:
            # No delay: due again at once, at its old score (arq's Retry(defer=None) too).
            next_score = claim.score if retry.defer_s is None else now_ms() + int(retry.defer_s * 1000)
            return Ended.RETRIED, None, next_score
        except asyncio.CancelledError as cancel:
            if cancelled_by(cancel) == ABORTED:
                return Ended.ABORTED, ABORTED_RESULT, None
            if cancelled_by(cancel) == LOCK_LOST:
                return Ended.LOST, None, None
            return Ended.REQUEUED, None, None
        except DeadLettered as exc:  # the wrapper has stored its dead letter (app/queue/execution.py)
            return Ended.FAILED, codec.failure(exc.error_class, str(exc)), None
        except Exception as exc:
            return Ended.FAILED, codec.failure(type(exc).__name__, str(exc)), None
        finally:
            del self.in_function[claim.job_id]
        return Ended.COMPLETED, result, None

    async def _refuse(self, claim: Claimed, name: str, attempt: int, error: str, message: str,
                      start_ms: int) -> tuple[Ended, Finish]:
        """A job that cannot run: its dead letter first, then a failed result in arq's shape."""
        await dead_letter_before_start(self.res, self.queue, claim.job_id, claim.record, job_name=name,
                                       attempts=attempt, error_class=error, message=message)
        return Ended.FAILED, self._result(claim, name, [], {}, attempt, 0, start_ms, ended=Ended.FAILED,
                                          result=codec.failure(error, message))

    async def _write(self, finish: Finish) -> None:
        """Write the finish, holding it through a Redis outage: the job's work is done, so its
        outcome is kept in memory and written once Redis answers (the lock is still ours
        meanwhile: it is extended as soon as Redis is back), instead of the job running twice."""
        deadline = time.monotonic() + self.hold_for_s
        failures = 0
        while True:
            try:
                applied = await self.finisher.write(finish)
            except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError) as exc:
                # Only the connection failing is an outage worth waiting out: an error reply
                # (ResponseError) would fail the same way again.
                failures += 1
                if time.monotonic() >= deadline:
                    raise
                if failures == 1:
                    log.warning("job_outcome_held", queue=self.queue, job_id=finish.job_id, error=str(exc))
                await asyncio.sleep(max(0.0, min(REDIS_OUTAGE_BACKOFF.delay_s(failures), deadline - time.monotonic())))
            else:
                if not applied:
                    # Another process holds the job now (this one was cut off, or stalled past its
                    # lock): its outcome stands, not this late one (app/queue/finishing.py).
                    self.res.metrics.fenced.labels(self.queue).inc()
                    log.warning("job_outcome_fenced", queue=self.queue, job_id=finish.job_id,
                                outcome="done" if finish.done else "retry")
                elif failures:
                    log.info("job_outcome_written", queue=self.queue, job_id=finish.job_id, tries=failures + 1)
                return
