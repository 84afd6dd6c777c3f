"""Enqueueing: the one path by which any job enters a queue (CLI, trigger, cron, DLQ retry,
the web app's Python side and, later, the HTTP API).

Jobs are validated against the registry first, so an unknown job or a bad payload is refused
with a message naming the field. Any number of jobs go to Redis in one round trip (a Lua
script that writes each job the way arq does, hands a due job to an idle worker and publishes
one wake-up per queue touched), so workers start them within a millisecond or two instead of
at their next poll.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from app.queue import codec, keys, priorities, tracing
from app.queue.clock import now_ms
from app.queue.durability import NONE, Durability
from app.queue.handles import JobHandle
from app.queue.handoff import HAND_OFF_LUA
from app.queue.ids import new_job_id
from app.queue.lua import LuaScript
from app.queue.payload import Payload
from app.queue.priorities import PRIORITY_SCORE_LUA
from app.queue.registry import Registry

# arq's default: a job not started within a day after its time expires.
EXPIRES_EXTRA_MS = 86_400_000

# ARGV: now_ms, expires_extra_ms, then 6 values per job: queue, id, score, data, flags ('r':
# replace_result, 'p': pin_result), priority ('' for none). A pinned job's id goes into
# keys.PINNED_RESULTS first, taken or not. Writes each job like arq's enqueue_job (job key + ZADD)
# unless its id is taken; a prioritised job due now waits in the queue's prioritised ZSET instead,
# and its priority is kept until it finishes (app/queue/priorities.py). The first job due now
# (without a priority) of each queue goes straight to an idle worker when there is one
# (app/queue/handoff.py), and every other queue that received a job gets one wake-up. Returns 1/0
# per job (enqueued / duplicate id).
_ENQUEUE_LUA = HAND_OFF_LUA + PRIORITY_SCORE_LUA + """
local now, extra = tonumber(ARGV[1]), tonumber(ARGV[2])
local out, woken, offered = {}, {}, {}
for i = 3, #ARGV, 6 do
  local q, id, score, data, flags = ARGV[i], ARGV[i+1], tonumber(ARGV[i+2]), ARGV[i+3], ARGV[i+4]
  local priority = ARGV[i+5]
  local jk, rk = '%(job)s' .. id, '%(result)s' .. id
  if flags ~= '' then
    if string.find(flags, 'p', 1, true) then redis.call('ZADD', '%(pins)s', now, id) end
    if string.find(flags, 'r', 1, true) and redis.call('EXISTS', jk) == 0 then redis.call('DEL', rk) end
  end
  if redis.call('EXISTS', jk, rk) > 0 then
    out[#out+1] = 0
  elseif priority ~= '' then
    redis.call('PSETEX', jk, math.max(score - now, 0) + extra, data)
    redis.call('HSET', '%(priorities)s' .. q, id, priority)
    if score <= now then
      redis.call('ZADD', '%(prioritized)s' .. q, priority_score(q, priority), id)
    else
      redis.call('ZADD', q, score, id)
    end
    out[#out+1] = 1
    woken[q] = true
  else
    redis.call('PSETEX', jk, math.max(score - now, 0) + extra, data)
    redis.call('ZADD', q, score, id)
    out[#out+1] = 1
    local handed = false
    if score <= now and not offered[q] then
      offered[q] = true
      handed = hand_off(q, id, ARGV[i+2], data)
    end
    if not handed then woken[q] = true end
  end
end
for q, _ in pairs(woken) do redis.call('PUBLISH', '%(wake)s' .. q, '1') end
return out
""" % {"job": keys.JOB_PREFIX, "result": keys.RESULT_PREFIX, "wake": keys.wake_channel(""),
       "priorities": keys.priorities_key(""), "prioritized": keys.prioritized_key(""),
       "pins": keys.PINNED_RESULTS}


# The name of a JobRequest made with `of()`: resolved from the payload's model at enqueue time.
_BY_MODEL = "<by payload model>"


@dataclass(frozen=True, slots=True)
class JobRequest:
    """One job to enqueue. `payload` is the job's payload model, or a dict with camelCase or
    snake_case field names."""

    @classmethod
    def of(cls, payload: Payload, *, job_id: str | None = None, defer_s: float | None = None,
           priority: int | None = None) -> JobRequest:
        """A request for the job whose payload model `payload` is (its name is looked up)."""
        return cls(_BY_MODEL, payload, job_id=job_id, defer_s=defer_s, priority=priority)

    name: str
    payload: Any = None
    queue: str | None = None
    job_id: str | None = None
    defer_s: float | None = None
    run_at: dt.datetime | None = None
    replace_result: bool = False
    """Enqueue even if a finished job with this id still has its result kept (cron, DLQ retry)."""
    priority: int | None = None
    """BullMQ's: lower runs first; None or 0 (none) before any (app/queue/priorities.py)."""
    pin_result: bool = False
    """Pin the id, in the same script: its result is left out of the per-queue count trim until
    someone unpins it (keys.PINNED_RESULTS; the BullMQ ingress, which must read it after a crash)."""


@dataclass(frozen=True, slots=True)
class Enqueued:
    job_id: str
    name: str
    queue: str
    run_at_ms: int


class Enqueuer:
    def __init__(self, redis: Redis, registry: Registry, *, durability: Durability = NONE) -> None:
        self.redis = redis
        self.registry = registry
        self._script = LuaScript(redis, _ENQUEUE_LUA, durability=durability)

    async def enqueue(
        self, name: str, payload: Any = None, *, queue: str | None = None, job_id: str | None = None,
        defer_s: float | None = None, run_at: dt.datetime | None = None, replace_result: bool = False,
        priority: int | None = None,
    ) -> Enqueued | None:
        """Enqueue one job; None when a job with that id is queued, running or has a result."""
        request = JobRequest(name, payload, queue, job_id, defer_s, run_at, replace_result, priority)
        return (await self.enqueue_many([request]))[0]

    async def enqueue_many(self, requests: Sequence[JobRequest]) -> list[Enqueued | None]:
        """Validate every request first (all or nothing), then enqueue them in one round trip."""
        now = now_ms()
        argv: list[Any] = [now, EXPIRES_EXTRA_MS]
        planned: list[Enqueued] = []
        # tracing: the enqueuer's trace context rides in each record (app/queue/tracing.py)
        kwargs = tracing.active.job_kwargs() if tracing.active is not None else {}
        for r in requests:
            name = self.registry.spec_for(r.payload).name if r.name == _BY_MODEL else r.name
            spec, parsed, queue = self.registry.validate(name, r.payload, r.queue)
            job_id = r.job_id or new_job_id()
            score = _score(now, r.defer_s, r.run_at)
            # Stored under the job's own name, whichever alias the enqueuer used.
            data = codec.dump_job(spec.name, parsed.json_bytes(), kwargs, now)
            priority = priorities.checked(r.priority, spec.name)
            flags = ("r" if r.replace_result else "") + ("p" if r.pin_result else "")
            argv += [queue, job_id, score, data, flags, priority or ""]
            planned.append(Enqueued(job_id, spec.name, queue, score))
        if not planned:
            return []
        flags = await self._script(args=argv)
        return [p if flag else None for p, flag in zip(planned, flags, strict=True)]

    async def send(self, payload: Payload, *, job_id: str | None = None, defer_s: float | None = None,
                   run_at: dt.datetime | None = None) -> Enqueued | None:
        """Enqueue the job whose payload model `payload` is: how one job enqueues another, typed."""
        return await self.enqueue(self.registry.spec_for(payload).name, payload, job_id=job_id, defer_s=defer_s,
                                  run_at=run_at)

    def job(self, job_id: str, queue: str | None = None) -> JobHandle:
        """A handle on a job: status, progress, result, abort. Without `queue`, every queue is
        searched where it matters (status, abort)."""
        return JobHandle(self.redis, job_id, [queue] if queue else list(self.registry.table.queues))


def _score(now_ms: int, defer_s: float | None, run_at: dt.datetime | None) -> int:
    if run_at is not None:
        if run_at.tzinfo is None:
            raise ValueError("run_at must be timezone-aware")
        return int(run_at.timestamp() * 1000)
    if defer_s:
        return now_ms + int(defer_s * 1000)
    return now_ms
