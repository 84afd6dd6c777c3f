"""Running one job under arq: parse the payload, enforce the timeout, and on failure ask
`retries.decide()` whether to retry (arq's `Retry`) or to dead-letter. This is the one broad
`except` of the project, and the only code that touches arq's ctx or `Retry`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import traceback
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import structlog
from arq.worker import Function, Retry, func
from redis.exceptions import RedisError

from app.errors import JobSkipped, JobTimedOut
from app.queue import codec, keys, tracing
from app.queue.context import JobContext
from app.queue.engine import Engine
from app.queue.payload import Payload, parse
from app.queue.registry import JobSpec, Registry
from app.queue.retries import classify, decide
from app.queue_table import RetryPolicy

log = structlog.get_logger("app.jobs")

# arq's own timeout is only a backstop behind ours, so a timeout is always decided by policy.
_ARQ_TIMEOUT_MARGIN_S = 10.0
# How long past its scheduled time a retried job's definition is kept (arq's is one day, fixed).
_JOB_KEY_EXTRA_S = 86_400


class DeadLettered(Exception):
    """The job failed for good and its dead letter is stored; arq records this as the failure."""


def arq_functions(registry: Registry, queue: str, runtime: Runtime) -> list[Function]:
    """The arq functions a queue's Worker registers."""
    functions = []
    for spec in registry.for_queue(queue):
        policy = registry.policy(spec, queue)
        timeout = registry.timeout_s(spec, queue)
        wrapped = _Wrapped(spec, queue, policy, timeout, runtime)
        functions.append(
            func(
                wrapped.as_coroutine_function(),  # type: ignore[arg-type]  # arq's alias wants a Protocol
                name=spec.name,
                # Our policy decides the last attempt; arq must not refuse it first.
                max_tries=policy.attempts + 1,
                timeout=timeout + _ARQ_TIMEOUT_MARGIN_S,
            )
        )
    return functions


class Runtime:
    """What wrapped job functions share with the process that runs them."""

    def __init__(self, res: Engine) -> None:
        self.res = res
        self.shutting_down = False
        self.outcomes: dict[str, bool] = {}
        """Job id -> True (completed or skipped) / False (dead-lettered) until the worker has
        finished the job's bookkeeping; a retried attempt leaves no entry."""


class _Wrapped:
    """The coroutine function arq calls for one job: parse, run, and decide on failure."""

    def __init__(self, spec: JobSpec[Any], queue: str, policy: RetryPolicy, timeout_s: float, rt: Runtime):
        self.spec, self.queue, self.policy, self.timeout_s, self.rt = spec, queue, policy, timeout_s, rt
        self.metrics = rt.res.metrics.job(queue, spec.name)

    def as_coroutine_function(self) -> Callable[..., Awaitable[Any]]:
        # arq asserts asyncio.iscoroutinefunction(), which a callable object does not pass.
        async def run(ctx: dict[str, Any], payload: Any = None, traceparent: str | None = None) -> Any:
            if tracing.active is not None:  # tracing: the job runs in a span (app/queue/tracing.py)
                return await tracing.active.run_job(self(ctx, payload), name=self.spec.name, queue=self.queue,
                                                    job_id=ctx["job_id"], attempt=ctx["job_try"],
                                                    traceparent=traceparent)
            return await self(ctx, payload)

        run.__qualname__ = run.__name__ = self.spec.name
        return run

    async def __call__(self, ctx: dict[str, Any], payload: Any = None) -> Any:
        job_id: str = ctx["job_id"]
        attempt: int = ctx["job_try"]
        bound = log.bind(queue=self.queue, job=self.spec.name, job_id=job_id, attempt=attempt)
        started = time.perf_counter()
        res = self.rt.res
        job: JobContext[Any] = JobContext(res, job_id, self.spec.name, self.queue, attempt,
                                          ctx.get("enqueue_time") or datetime.now(UTC), bound,
                                          res.redis, res.settings.keep_result_s)
        parsed: Payload | None = None
        deadline = asyncio.timeout(self.timeout_s)
        try:
            parsed = parse(self.spec.name, self.spec.payload, payload)
            async with deadline:
                result = await self.spec.run(job, parsed)
        except JobSkipped as skip:
            self.rt.outcomes[job_id] = True
            self._finished(started, "skipped")
            bound.info("job_skipped", reason=skip.reason)
            return {"status": "skipped", "reason": skip.reason}
        except asyncio.CancelledError:
            if self.rt.shutting_down:
                # Stopped by a deploy, not by its own fault: the run does not count.
                await self._refund_attempt(ctx, job_id)
                bound.info("job_requeued_on_shutdown")
            raise
        except Exception as caught:
            exc: Exception = caught
            if deadline.expired():  # ours, not a TimeoutError from inside the job
                exc = JobTimedOut(self.timeout_s)
                exc.__cause__ = caught  # the dead letter's traceback shows where it was cancelled
            self._finished(started, "failed")
            await self._failed(ctx, job, payload, exc)
            await self._on_dead_letter(job, parsed, exc)
            self.rt.outcomes[job_id] = False
            raise DeadLettered(f"{classify(exc)}: {exc}") from exc
        self.rt.outcomes[job_id] = True
        self._finished(started, "completed")
        bound.info("job_completed", duration_s=round(time.perf_counter() - started, 4))
        return result

    def _finished(self, started: float, outcome: str) -> None:
        m = self.metrics
        m.processed.inc()
        m.duration.observe(time.perf_counter() - started)
        if outcome == "failed":
            m.failed.inc()
        elif outcome == "skipped":
            m.skipped.inc()
        self.rt.res.stats.count(self.queue, outcome)

    async def _refund_attempt(self, ctx: dict[str, Any], job_id: str) -> None:
        """Give back the attempt arq counted (shutdown, open breaker). Best effort: with Redis
        away the retry still happens, it just counts."""
        try:
            await ctx["redis"].decr(keys.RETRY_PREFIX + job_id)
        except (RedisError, OSError) as exc:
            log.warning("attempt_refund_failed", job_id=job_id, error=str(exc))

    async def _failed(self, ctx: dict[str, Any], job: JobContext[Any], payload: Any, exc: Exception) -> None:
        """Raise arq's Retry, or store the dead letter and return."""
        job_id, attempt, bound = job.job_id, job.attempt, job.log
        decision = decide(exc, attempt, self.policy)
        error_class = classify(exc)
        if not decision.dead_letter:
            assert decision.retry_after_s is not None
            if not decision.uses_attempt:
                await self._refund_attempt(ctx, job_id)
            with contextlib.suppress(RedisError, OSError):  # only lengthens the record's life
                await ctx["redis"].expire(keys.JOB_PREFIX + job_id, int(decision.retry_after_s) + _JOB_KEY_EXTRA_S)
            self.metrics.retried.inc()
            self.rt.res.stats.count(self.queue, "retried")
            bound.warning("job_retry_scheduled", delay_s=round(decision.retry_after_s, 3),
                          reason=decision.reason, error_class=error_class, error=str(exc))
            raise Retry(defer=decision.retry_after_s) from exc
        try:
            dl_id = await self.rt.res.dlq.put(
                job_id=job_id, job_name=self.spec.name, queue=self.queue, payload=payload,
                attempts=attempt, error_class=error_class, error_message=str(exc) or repr(exc),
                traceback="".join(traceback.format_exception(exc)),
            )
        except Exception as store_exc:
            # The dead letter could not be written (PostgreSQL away): keep the job, try later.
            await self._refund_attempt(ctx, job_id)
            delay = self.policy.backoff_s(max(attempt, 1))
            bound.error("dead_letter_write_failed", error=str(store_exc), retry_in_s=delay)
            raise Retry(defer=delay) from store_exc
        self.metrics.dead_lettered.inc()
        self.rt.res.stats.count(self.queue, "dead_lettered")
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


async def dead_letter_before_start(res: Engine, queue: str, job_id: str, raw: bytes | None,
                                   result_data: bytes | None) -> None:
    """arq failed a job before our wrapper ran (expired, unknown function, malformed record, too
    many crash recoveries): store its dead letter with the reason and what the record held."""
    info: dict[str, Any] = {}
    if result_data:
        info = codec.loads(result_data)
    error = info.get("r") if isinstance(info.get("r"), dict) else {}
    assert isinstance(error, dict)
    payload, raw_text, name_in_record, decode_problem = _decode_record(raw)
    job_name = info.get("f") if info.get("f") not in (None, "<unknown>") else name_in_record
    dl_id = await res.dlq.put(
        job_id=job_id, job_name=str(job_name or "<unknown>"), queue=queue, payload=payload, raw_payload=raw_text,
        attempts=int(info.get("t") or 0), error_class=str(error.get("error", "JobExecutionFailed")),
        error_message=decode_problem or str(error.get("message", "failed before it ran")),
    )
    res.metrics.job(queue, str(job_name)).dead_lettered.inc()
    res.stats.count(queue, "dead_lettered")
    res.stats.count(queue, "failed")
    log.warning("job_dead_lettered", queue=queue, job=job_name, job_id=job_id, dead_letter_id=dl_id,
                reason="failed_before_start", error=decode_problem or error.get("message"))


def _decode_record(raw: bytes | None) -> tuple[Any, str | None, str | None, str | None]:
    """(payload, raw text if undecodable, the job name it names, why it is undecodable)."""
    if raw is None:
        return None, None, None, None
    try:
        job = codec.loads_job(raw)
    except codec.NotJson as exc:
        # Escaped like a bytes literal: PostgreSQL text cannot hold NUL bytes.
        return None, repr(raw[:10_000])[2:-1], None, str(exc)
    args = job.get("a") or [None]
    return args[0], None, job["f"], None
