"""The official `bullmq` package behind one class per BullMQ queue: jobs taken, their locks kept,
their progress reported and their outcomes recorded the way BullMQ documents processing jobs by
hand (a `Worker` without a processor, `getNextJob(token)`, `moveToCompleted` / `moveToFailed`).
The outcomes that arrive together are recorded in one round trip: the library's own arguments
and script, pipelined (app/batching.py).

Why by hand and not a processor: a processor-driven Worker holds at most `concurrency` jobs and,
in the Python port, waits on all of them at once (`asyncio.wait` over every task on each turn),
so a thousand jobs waiting on Workhorse would cost a thousand callbacks per finished job. Taken
by hand, a job in hand costs a task, and the library's LockManager renews all their locks in one
script call.

Decisions:
- The library's Redis client is ours: `decode_responses` (the library wants text) with bytes
  that are not UTF-8 replaced, as BullMQ's Node workers read them, instead of an exception that
  would leave the job taken and unreadable; otherwise the engine's own (app/queue/connections.py):
  RESP2, the cheaper checkout, and no retries by the client (a script re-sent after a lost reply
  would take a second job).
- Nothing the producer wrote is parsed by the library before our limits have looked at it: the
  data is read with `loads_limited` (1 MB, 32 levels), and data beyond them reaches the library as
  `null`; a job hash the library cannot read at all still comes back, refused, so its BullMQ job
  can be failed instead of stalling for ever.
- BullMQ's stall limit (`maxStalledCount`) is lifted: re-delivering a job whose hand-over was cut
  short only attaches to the Workhorse job again, so no number of crashes should fail it (a
  poison pill is Workhorse's to stop: it dead-letters the job after its crash recoveries).
- The Redis version is asked once, so blocking waits use fractions of a second (Redis >= 6): a
  delayed job is taken when due, not at the next whole second.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any

import bullmq
import structlog
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError

from app.batching import GroupCommit
from app.errors import AppError
from app.queue.bullmq.handover import BullJob, unreadable
from app.queue.connections import CONNECT_TIMEOUT_S, CheapCheckoutPool
from app.queue.payload import loads_limited

log = structlog.get_logger(__name__)

NO_STALL_LIMIT = 1_000_000
"""maxStalledCount: how often a job may be re-delivered after its taker died (never fails it)."""
DRAIN_DELAY_S = 10
"""An idle queue's blocking wait (the library's ceiling): two commands per queue per 10 s."""


class LostJob(Exception):
    """BullMQ refused to record the outcome: the job's lock is gone (it was taken again since), or
    the job is; the message is BullMQ's reason."""


@dataclass(slots=True)
class Taken:
    """A BullMQ job in hand: what was read of it, and the library's job to record its outcome."""

    job: BullJob
    token: str
    handle: Any  # bullmq.Job: the library is untyped


class _ByHand(bullmq.Worker):  # type: ignore[misc]  # the library is untyped
    """A Worker that reads job data within our limits and returns unreadable jobs, refused."""

    async def nextJobFromJobData(self, job_data: dict[str, str] | None = None, job_id: str | None = None,
                                 limit_until: int = 0, delay_until: int = 0, token: str | None = None) -> Any:
        payload: Any = None
        refusal: AppError | None = None
        if job_data:
            job_data = dict(job_data)
            try:
                payload = loads_limited(job_data.get("name") or "(unnamed)", job_data.get("data") or "null")
            except AppError as exc:
                refusal, job_data["data"] = exc, "null"
        try:
            job = await super().nextJobFromJobData(job_data, job_id, limit_until, delay_until, token)
        except Exception as exc:  # a hash that is not BullMQ's: the job is ours (locked) all the same
            name = (job_data or {}).get("name") or ""
            job = bullmq.Job(self, name, None, {}, job_id)
            job.token, payload, refusal = token, None, unreadable(name, f"{type(exc).__name__}: {exc}")
        if job is not None:
            job.workhorse_payload, job.workhorse_refusal = payload, refusal
        return job


def bullmq_client(url: str) -> Redis:
    # redis-py 8 gives up on a reply after 5 s by default: BullMQ's idle wait (BZPOPMIN) would fail
    # every time. Replies may take the wait and 5 s more.
    pool = CheapCheckoutPool.from_url(url, decode_responses=True, encoding_errors="replace", protocol=2,
                                      retry=Retry(NoBackoff(), 0), socket_connect_timeout=CONNECT_TIMEOUT_S,
                                      socket_timeout=DRAIN_DELAY_S + 5)
    return Redis.from_pool(pool)


class Fetcher:
    """One BullMQ queue, taken by hand."""

    def __init__(self, queue: str, *, prefix: str, url: str, lock_ms: int) -> None:
        self.queue = queue
        self.lock_ms = lock_ms
        self.client = bullmq_client(url)
        self.worker = _ByHand(queue, None, {
            "connection": self.client, "prefix": prefix, "autorun": False, "lockDuration": lock_ms,
            "stalledInterval": lock_ms, "maxStalledCount": NO_STALL_LIMIT, "drainDelay": DRAIN_DELAY_S})
        self.worker.on("error", self._library_error)
        self._finishes: GroupCommit[tuple[Taken, str, Any], str | Exception | None] = GroupCommit(
            self._write_finishes)

    async def prepare(self) -> None:
        """Ask the server's version (blocking waits in fractions of a second) and start renewing locks."""
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            await self.worker.backend.blocking_connection.getRedisVersion()
        for warning in said:  # the library warns when Redis may evict keys; BullMQ needs noeviction
            log.warning("bullmq_redis_warning", queue=self.queue, detail=str(warning.message))
        self.worker.lockManager.start()

    async def take(self, token: str) -> Taken | None:
        """The next job, locked for us, waiting for one if need be; None after an idle wait (or
        when a delayed job is not due yet)."""
        return self._taken(await self.worker.getNextJob(token), token)

    async def take_ready(self, token: str) -> Taken | None:
        """The next job if one is waiting, without waiting: what extra takers call in a burst
        (only one caller may wait on the queue's marker, or the others would spin)."""
        return self._taken(await self.worker.moveToActive(token), token)

    def _taken(self, handle: Any, token: str) -> Taken | None:
        if handle is None:
            return None
        job = BullJob(queue=self.queue, id=str(handle.id), name=handle.name or "", payload=handle.workhorse_payload,
                      opts=handle.opts or {}, attempts_made=int(handle.attemptsMade or 0),
                      priority=int(handle.priority or 0), refusal=handle.workhorse_refusal)
        return Taken(job, token, handle)

    def hold(self, taken: Taken) -> None:
        """Keep the job's lock renewed while it is in hand."""
        self.worker.lockManager.track_job(taken.job.id, taken.token, int(time.time() * 1000))

    def let_go(self, taken: Taken) -> None:
        """Stop renewing its lock: unless its outcome was recorded, BullMQ re-delivers it once the
        lock lapses."""
        self.worker.lockManager.untrack_job(taken.job.id)

    async def complete(self, taken: Taken, value: Any) -> None:
        """Completed with `value` as its return value."""
        await self._finish(taken, "returnvalue", value)

    async def fail(self, taken: Taken, reason: str) -> None:
        """Failed for good: no BullMQ retry (the Workhorse queue's policy has decided), no stack
        trace (it would be the ingress's, not the job's: the reason names the job's error)."""
        await self._finish(taken, "failedReason", reason)

    async def _finish(self, taken: Taken, field: str, value: Any) -> None:
        answer = await self._finishes.submit((taken, field, value))
        if isinstance(answer, Exception):
            raise answer
        if answer is not None:
            raise LostJob(answer)

    async def _write_finishes(self, batch: list[tuple[Taken, str, Any]]) -> list[str | Exception | None]:
        """The library's moveToFinished for each outcome, pipelined: what `Job.moveToCompleted` and
        `Job.moveToFailed` (with UnrecoverableError) send, one round trip for all. Each answer is
        None, why BullMQ refused (lock gone, job gone), or the error Redis answered for it alone."""
        scripts = self.worker.backend.scripts
        script = scripts.commands["moveToFinished"]
        async with self.client.pipeline(transaction=False) as pipe:
            for taken, field, value in batch:
                job, token = taken.handle, taken.token
                if field == "returnvalue":
                    keys, args = scripts.moveToCompletedArgs(job, value, job.opts.get("removeOnComplete", False),
                                                             token, False)
                else:
                    keys, args = scripts.moveToFailedArgs(job, value, job.opts.get("removeOnFail", False), token,
                                                          False, {"failedReason": value, "stacktrace": "[]"})
                pipe.evalsha(script.sha, len(keys), *keys, *args)
            replies = await pipe.execute(raise_on_error=False)
        if any(isinstance(r, NoScriptError) for r in replies):  # Redis restarted: load it, send again
            await self.client.script_load(script.script)
            return await self._write_finishes(batch)
        answers: list[str | Exception | None] = []
        for (taken, _, _), reply in zip(batch, replies, strict=True):
            code = reply if isinstance(reply, int) and reply < 0 else None
            answers.append(reply if isinstance(reply, Exception) else None if code is None else str(
                scripts.finishedErrors({"code": code, "jobId": taken.job.id, "command": "moveToFinished",
                                        "state": "active"})))
        return answers

    async def progress(self, taken: Taken, value: Any) -> None:
        await taken.handle.updateProgress(value)

    async def check_stalled(self) -> list[str]:
        """BullMQ's stalled-job check: jobs whose taker died go back to wait (at most once per
        interval across all of BullMQ's workers)."""
        moved = await self.worker.backend.moveStalledJobsToWait(NO_STALL_LIMIT, self.lock_ms)
        return [str(job_id) for job_id in moved or ()]

    async def close(self) -> None:
        """Stop renewing locks and close the connections (jobs still in hand are left to lapse)."""
        await self.worker.close(force=True)

    def _library_error(self, error: BaseException, *_: Any) -> None:
        log.warning("bullmq_library_error", queue=self.queue, error=f"{type(error).__name__}: {error}")
