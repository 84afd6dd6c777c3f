"""The job functions a queue's worker runs: parse the payload, enforce the timeout, and on
failure ask `retries.decide()` whether to retry (`RetryLater`) or to dead-letter. This is the one
broad `except` of the project. app/queue/running.py calls these functions for claimed jobs.

A cancellation says who asked for it in its message: the process stopping (the run does not
count: its attempt is given back) or `Job.abort()` (the job ends, aborted).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from redis.exceptions import RedisError

from app.config.queue_table import RetryPolicy
from app.errors import JobSkipped, JobTimedOut
from app.queue import codec, keys, tracing
from app.queue.context import JobContext
from app.queue.finishing import Ownership
from app.queue.payload import Payload, parse
from app.queue.registry import JobSpec, Registry
from app.queue.resources import EngineResources
from app.queue.retries import RetryLater, classify, decide

log = structlog.get_logger("app.jobs")
# The stdlib logger under `log`: its level check is cached, so asking it is cheaper than the
# structlog chain an event below LOG_LEVEL would still go through.
_jobs_logger = logging.getLogger("app.jobs")

# How long past its scheduled time a retried job's definition is kept (arq's is one day, fixed).
_JOB_KEY_EXTRA_S = 86_400


SHUTDOWN = "workhorse: process stopping"
"""The message of a cancellation by shutdown: the job is queued again, its attempt given back."""
ABORTED = "workhorse: aborted"
"""The message of a cancellation by `Job.abort()` (arq's abort set): the job ends, aborted."""
LOCK_LOST = "workhorse: lock lost"
"""The message of a cancellation because another process holds the job's lock now (this one was
cut off or stalled past its liveness): the job is that process's; this run ends, writing nothing."""


def cancelled_by(exc: asyncio.CancelledError) -> str | None:
    """Who cancelled: SHUTDOWN, ABORTED, LOCK_LOST, or None (anything else, a timeout's own included)."""
    return exc.args[0] if exc.args and exc.args[0] in (SHUTDOWN, ABORTED, LOCK_LOST) else None


class DeadLettered(Exception):
    """The job failed for good and its dead letter is stored; its result records this failure:
    `error` is the job's own error class, so a client reading the result sees what went wrong."""

    def __init__(self, error_class: str, message: str) -> None:
        super().__init__(message)
        self.error_class = error_class


@dataclass(frozen=True, slots=True)
class JobFunction:
    """One job as its queue's runner (app/queue/running.py) calls it."""

    name: str
    call: Callable[..., Awaitable[Any]]
    """(job_id, attempt, enqueued_ms, payload, traceparent=None): the result, or raises
    RetryLater or DeadLettered."""
    timeout_s: float
    max_tries: int
    """Runs past this many are refused. Our policy decides every last attempt, so only jobs whose
    runs were cut short by crashes get here."""


def job_functions(registry: Registry, queue: str, res: EngineResources,
                  ownership: Ownership) -> dict[str, JobFunction]:
    functions = {}
    for spec in registry.for_queue(queue):
        policy = registry.policy(spec, queue)
        timeout_s = registry.timeout_s(spec, queue)
        wrapped = _Wrapped(spec, queue, policy, timeout_s, res, ownership)
        functions[spec.name] = JobFunction(spec.name, wrapped.run, timeout_s, max_tries=policy.attempts + 1)
    return functions


class _Wrapped:
    """The coroutine function run for one job: parse, run, and decide on failure."""

    def __init__(self, spec: JobSpec[Any], queue: str, policy: RetryPolicy, timeout_s: float,
                 res: EngineResources, ownership: Ownership) -> None:
        self.spec, self.queue, self.policy, self.timeout_s, self.res = spec, queue, policy, timeout_s, res
        self.ownership = ownership
        self.metrics = res.metrics.job(queue, spec.name)

    def run(self, job_id: str, attempt: int, enqueued_ms: int, payload: Any = None,
            traceparent: str | None = None) -> Awaitable[Any]:
        # Not a coroutine itself: the runner awaits the attempt directly (one frame fewer per job).
        if tracing.active is not None:  # tracing: the job runs in a span (app/queue/tracing.py)
            return tracing.active.run_job(self._attempt(job_id, attempt, enqueued_ms, payload),
                                          name=self.spec.name, queue=self.queue, job_id=job_id,
                                          attempt=attempt, traceparent=traceparent)
        return self._attempt(job_id, attempt, enqueued_ms, payload)

    async def _attempt(self, job_id: str, attempt: int, enqueued_ms: int, payload: Any) -> Any:
        started = time.perf_counter()
        res = self.res
        job: JobContext[Any] = JobContext(res, job_id, self.spec.name, self.queue, attempt, enqueued_ms, res.redis,
                                          res.settings.keep.result_s)
        parsed: Payload | None = None
        deadline = asyncio.timeout(self.timeout_s)
        try:
            parsed = parse(self.spec.name, self.spec.payload, payload)
            async with deadline:
                result = await self.spec.run(job, parsed)
        except JobSkipped as skip:
            self._finished(started, "skipped")
            job.log.info("job_skipped", reason=skip.reason)
            return {"status": "skipped", "reason": skip.reason}
        except asyncio.CancelledError as cancel:
            if cancelled_by(cancel) == SHUTDOWN:
                # Stopped by a deploy, not by its own fault: the run does not count.
                await self._refund_attempt(job_id)
                job.log.info("job_requeued_on_shutdown")
            elif cancelled_by(cancel) == ABORTED:
                self._finished(started, "aborted")
                job.log.info("job_aborted")
            elif cancelled_by(cancel) == LOCK_LOST:
                job.log.warning("job_lock_lost")
            raise
        except Exception as caught:
            exc: Exception = caught
            if deadline.expired():  # ours, not a TimeoutError from inside the job
                exc = JobTimedOut(self.timeout_s)
                exc.__cause__ = caught  # the dead letter's traceback shows where it was cancelled
            self._finished(started, "failed")
            await self._failed(job, payload, exc)
            await self._on_dead_letter(job, parsed, exc)
            raise DeadLettered(type(exc).__name__, str(exc) or repr(exc)) from exc
        self._finished(started, "completed")
        if _jobs_logger.isEnabledFor(logging.INFO):  # most runs end here: no logger bound below INFO
            job.log.info("job_completed", duration_s=round(time.perf_counter() - started, 4))
        return result

    def _finished(self, started: float, outcome: str) -> None:
        m = self.metrics
        m.processed.inc()
        m.duration.observe(time.perf_counter() - started)
        if outcome == "failed":
            m.failed.inc()
        elif outcome == "skipped":
            m.skipped.inc()
        self.res.stats.count(self.queue, outcome)

    async def _refund_attempt(self, job_id: str) -> None:
        """Give back the attempt the claim counted (shutdown, open breaker). Best effort: with
        Redis away the retry still happens, it just counts."""
        try:
            await self.res.redis.decr(keys.RETRY_PREFIX + job_id)
        except (RedisError, OSError) as exc:
            log.warning("attempt_refund_failed", job_id=job_id, error=str(exc))

    async def _failed(self, job: JobContext[Any], payload: Any, exc: Exception) -> None:
        """Raise RetryLater, or store the dead letter and return."""
        job_id, attempt, bound = job.job_id, job.attempt, job.log
        decision = decide(exc, attempt, self.policy)
        error_class = classify(exc)
        if not decision.dead_letter:
            assert decision.retry_after_s is not None
            if not decision.uses_attempt:
                await self._refund_attempt(job_id)
            with contextlib.suppress(RedisError, OSError):  # only lengthens the record's life
                await self.res.redis.expire(keys.JOB_PREFIX + job_id, int(decision.retry_after_s) + _JOB_KEY_EXTRA_S)
            self.metrics.retried.inc()
            self.res.stats.count(self.queue, "retried")
            bound.warning("job_retry_scheduled", delay_s=round(decision.retry_after_s, 3),
                          reason=decision.reason, error_class=error_class, error=str(exc))
            raise RetryLater(decision.retry_after_s) from exc
        try:
            if not await self.ownership.holds(job_id):
                # Another process took the job over (this one was cut off from Redis, or stalled
                # past its lock): its outcome stands, and this one's finish will be refused too.
                bound.warning("job_dead_letter_fenced", error_class=error_class)
                raise RetryLater(None) from exc
            dl_id = await self.res.dlq.put(
                job_id=job_id, job_name=self.spec.name, queue=self.queue, payload=payload,
                attempts=attempt, error_class=error_class, error_message=str(exc) or repr(exc),
                traceback="".join(traceback.format_exception(exc)),
            )
        except RetryLater:
            raise
        except Exception as store_exc:
            # The dead letter could not be written (Redis or PostgreSQL away): keep the job, try later.
            await self._refund_attempt(job_id)
            delay = self.policy.backoff_s(max(attempt, 1))
            bound.error("dead_letter_write_failed", error=str(store_exc), retry_in_s=delay)
            raise RetryLater(delay) from store_exc
        self.metrics.dead_lettered.inc()
        self.res.stats.count(self.queue, "dead_lettered")
        log_method = bound.error if error_class == "bug" else bound.warning
        log_method("job_dead_lettered", dead_letter_id=dl_id, reason=decision.reason,
                   error_class=error_class, error=str(exc))

    async def _on_dead_letter(self, job: JobContext[Any], parsed: Payload | None, exc: Exception) -> None:
        """The job's own failure hook; its errors are logged: the dead letter is already stored."""
        if self.spec.on_dead_letter is None or parsed is None:
            return
        try:
            await self.spec.on_dead_letter(job, parsed, exc)
        except Exception as hook_exc:
            job.log.error("dead_letter_hook_failed", error=f"{type(hook_exc).__name__}: {hook_exc}")


async def dead_letter_before_start(res: EngineResources, queue: str, job_id: str, raw: bytes | None, *, job_name: str,
                                   attempts: int, error_class: str, message: str) -> None:
    """A job that could not start (record expired, undecodable, unknown job, past its attempts):
    store its dead letter with the reason and what the record held."""
    payload, raw_text = _decode_record(raw)
    dl_id = await res.dlq.put(
        job_id=job_id, job_name=job_name, queue=queue, payload=payload, raw_payload=raw_text,
        attempts=attempts, error_class=error_class, error_message=message,
    )
    res.metrics.job(queue, job_name).dead_lettered.inc()
    res.stats.count(queue, "dead_lettered")
    res.stats.count(queue, "failed")
    log.warning("job_dead_lettered", queue=queue, job=job_name, job_id=job_id, dead_letter_id=dl_id,
                reason="failed_before_start", error=message)


def _decode_record(raw: bytes | None) -> tuple[Any, str | None]:
    """(payload, raw text if the record is undecodable)."""
    if raw is None:
        return None, None
    try:
        job = codec.loads_job(raw)
    except codec.NotJson:
        # Escaped like a bytes literal: PostgreSQL text cannot hold NUL bytes.
        return None, repr(raw[:10_000])[2:-1]
    args = job.get("a") or [None]
    return args[0], None
