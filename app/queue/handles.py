"""Looking at one job from outside: its status, progress and outcome, waiting for it, aborting it.

Reads the job's keys in one round trip and decodes them with our codec, so a key holding bytes
that are not JSON shows as undecodable instead of raising. A job's queue is found from where it
sits (the queue ZSET) or from its stored result, never guessed from the first queue asked:
the lock and result keys of arq are the same whatever the queue.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from app.errors import AppError, NotFound
from app.queue import codec, keys
from app.queue.lua import LuaScript
from app.queue.replies import octets

# KEYS: the queue, its prioritised ZSET, its priorities hash. ARGV: job id, result json, result
# ttl ms. Withdraws a job that is not running: ZREM from where it waits, DEL the job key (and its
# priority), store an "aborted" result. Returns 1, 0 (running) or -1 (gone).
_ABORT_LUA = """
if redis.call('EXISTS', '%(lock)s' .. ARGV[1]) == 1 then return 0 end
if redis.call('ZREM', KEYS[1], ARGV[1]) + redis.call('ZREM', KEYS[2], ARGV[1]) == 0 then return -1 end
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('DEL', '%(job)s' .. ARGV[1])
redis.call('PSETEX', '%(result)s' .. ARGV[1], ARGV[3], ARGV[2])
return 1
""" % {"lock": keys.IN_PROGRESS_PREFIX, "job": keys.JOB_PREFIX, "result": keys.RESULT_PREFIX}


class JobFailed(AppError):
    """`JobHandle.result()` of a job that failed for good; the message is its error."""


class JobRunning(AppError):
    """Abort was asked of a job that is running; running jobs finish (or time out) on their own."""


@dataclass(frozen=True, slots=True)
class JobOutcome:
    """A finished job's stored result."""

    success: bool
    result: Any
    attempt: int
    job: str
    queue: str
    enqueued_at: dt.datetime | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None

    @classmethod
    def decode(cls, raw: bytes) -> JobOutcome:
        try:
            d = codec.loads(raw)
        except codec.NotJson as exc:
            return cls(False, f"undecodable result: {exc}", 0, "<unknown>", "<unknown>", None, None, None)
        return cls(bool(d.get("s")), d.get("r"), int(d.get("t") or 0), str(d.get("f", "<unknown>")),
                   str(d.get("q", "<unknown>")), _when(d.get("et")), _when(d.get("st")), _when(d.get("ft")))


def _when(ms: Any) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC) if isinstance(ms, int | float) else None


class JobHandle:
    """One job, by id; `queues` are where to look for it when its queue is not known."""

    def __init__(self, redis: Redis, job_id: str, queues: list[str]) -> None:
        self.redis, self.job_id, self.queues = redis, job_id, queues
        self._abort = LuaScript(redis, _ABORT_LUA)

    async def describe(self) -> dict[str, Any]:
        """Status, queue, progress and, once finished, the outcome; JSON-ready."""
        id_ = self.job_id
        async with self.redis.pipeline(transaction=False) as pipe:
            for q in self.queues:
                pipe.zscore(q, id_)
                pipe.zscore(keys.prioritized_key(q), id_)
            pipe.get(keys.RESULT_PREFIX + id_)
            pipe.exists(keys.IN_PROGRESS_PREFIX + id_)
            pipe.get(keys.progress_key(id_))
            pipe.get(keys.JOB_PREFIX + id_)
            *scores, result, locked, progress, record = await pipe.execute()
        # A prioritised job waiting is due (its score there is its priority, not a time).
        waits = [(q, s if s is not None else (0.0 if p is not None else None))
                 for q, s, p in zip(self.queues, scores[::2], scores[1::2], strict=True)]
        sitting = [(q, s) for q, s in waits if s is not None]
        out: dict[str, Any] = {"jobId": id_, "queue": sitting[0][0] if sitting else None,
                               "status": _status(result, bool(locked), sitting[0][1] if sitting else None)}
        if progress is not None:
            out["progress"] = _decoded(progress)
        if record is not None:
            out.update(_record_fields(record))
        if result is not None:
            o = JobOutcome.decode(result)
            out.update(queue=out["queue"] or o.queue, success=o.success, result=o.result, attempt=o.attempt,
                       job=o.job, finishedAt=o.finished_at)
        return out

    async def status(self) -> str:
        return str((await self.describe())["status"])

    async def outcome(self) -> JobOutcome | None:
        raw = await self.redis.get(keys.RESULT_PREFIX + self.job_id)
        return None if raw is None else JobOutcome.decode(octets(raw))

    async def progress(self) -> Any:
        raw = await self.redis.get(keys.progress_key(self.job_id))
        return None if raw is None else _decoded(octets(raw))

    async def wait(self, timeout_s: float, poll_delay: float = 0.05) -> JobOutcome:
        """The outcome once the job has finished; TimeoutError after `timeout_s` seconds."""
        deadline = time.monotonic() + timeout_s
        while (found := await self.outcome()) is None:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"job {self.job_id} did not finish within {timeout_s:g}s")
            await asyncio.sleep(poll_delay)
        return found

    async def result(self, timeout_s: float, poll_delay: float = 0.05) -> Any:
        """The job's return value; JobFailed when it failed for good."""
        found = await self.wait(timeout_s, poll_delay)
        if not found.success:
            raise JobFailed(f"job {self.job_id} failed: {found.result}")
        return found.result

    async def abort(self, *, keep_result_s: int = 3600) -> None:
        """Withdraw a queued or deferred job; JobRunning for a running one, NotFound when gone."""
        body = codec.dumps({"t": 0, "f": "<aborted>", "s": False, "id": self.job_id,
                            "r": {"error": "Aborted", "message": "aborted before it ran"},
                            "ft": int(time.time() * 1000)})
        for q in self.queues:
            done = await self._abort(keys=[q, keys.prioritized_key(q), keys.priorities_key(q)],
                                     args=[self.job_id, body, max(keep_result_s, 1) * 1000])
            if done == 1:
                return
            if done == 0:
                raise JobRunning(f"job {self.job_id} is running; it cannot be aborted, only waited for")
        raise NotFound(f"job {self.job_id} is not queued (unknown, finished or already aborted)")


def _status(result: bytes | None, locked: bool, score: float | None) -> str:
    if result is not None:
        return "complete"
    if locked:
        return "in_progress"
    if score is None:
        return "not_found"
    return "deferred" if score > time.time() * 1000 else "queued"


def _record_fields(raw: bytes) -> dict[str, Any]:
    """What a job's record says of a job not finished yet: its name, payload and enqueue time."""
    try:
        job = codec.loads_job(raw)
    except codec.NotJson as exc:
        return {"record": {"undecodable": str(exc)}}
    args = job.get("a") or [None]
    return {"job": job["f"], "payload": args[0], "enqueuedAt": _when(job.get("et"))}


def _decoded(raw: bytes) -> Any:
    try:
        return codec.loads(raw)
    except codec.NotJson:
        return {"undecodable": repr(raw[:200])}
