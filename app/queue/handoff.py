"""Handing a job straight to an idle worker: pickup in one hop instead of a wake-up and a claim.

A worker whose poll of its queue leaves it a free slot enters its process in the queue's idle
set (`workhorse:idle:<queue>`, scored by its lock TTL; the claim script does this). An enqueue
of a job that is due now pops one live process from that set and, in the same script, claims
the job for it (lock, attempt counted) and publishes the claimed job, record included, on the
process's own channel. The worker starts it from the message: no claim round trip.

What keeps it safe:
- The claim is the same as a poll's: the lock names the process, so a process that died before
  the message arrived loses the job to the others through liveness (app/queue/claims.py).
- A lost message (the pub/sub connection dropped) leaves a job locked by a live process that is
  not running it: that process's next poll takes it (without counting the attempt again).
- The message and a poll can race (the poll's script runs after the enqueue's, but its answer
  is read before the message): whichever arrives second finds the job running, or finished
  moments ago with the same record, and drops it. A message the process cannot take (no free
  slot any more, paused, stopping) is given back: lock released, attempt refunded, a wake-up
  published.
- Paused queues and deferred jobs are never handed off; an enqueue hands off at most one job per
  queue (the others wake the workers as before).
"""

from __future__ import annotations

import time
from collections import OrderedDict

from redis.asyncio import Redis

from app.queue import keys
from app.queue.claims import COUNT_ATTEMPT_LUA, Claimed
from app.queue.lua import LuaScript

# A Lua function for the enqueue script (app/queue/enqueue.py): hand job `id` (due now, record
# `data`, score string `score`) of queue `q` to an idle live process; false when none takes it.
# The message: "<queue> <score> <attempt> <id bytes>\n<id><record>".
HAND_OFF_LUA = COUNT_ATTEMPT_LUA + """
local function hand_off(q, id, score, data)
  if redis.call('SISMEMBER', '%(paused)s', q) == 1 then return false end
  local idle = '%(idle)s' .. q
  for _ = 1, 3 do
    local popped = redis.call('ZPOPMIN', idle)
    if #popped == 0 then return false end
    local who, ttl = popped[1], popped[2]
    if redis.call('EXISTS', '%(alive)s' .. who) == 1 then
      if not redis.call('SET', '%(lock)s' .. id, who, 'NX', 'PX', ttl) then return false end
      local attempt = count_attempt(id)
      redis.call('PUBLISH', '%(channel)s' .. who,
                 q .. ' ' .. score .. ' ' .. attempt .. ' ' .. #id .. '\\n' .. id .. data)
      return true
    end
  end
  return false
end
""" % {"paused": keys.PAUSED_SET, "idle": keys.idle_workers_key(""), "alive": keys.alive_key(""),
       "lock": keys.IN_PROGRESS_PREFIX, "channel": keys.handoff_channel("")}

# KEYS: the job's lock, its attempt counter. ARGV: this instance, the queue's wake channel.
# Gives back a job handed to us that we cannot take: released only while the lock is ours.
_GIVE_BACK_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('DECR', KEYS[2])
end
redis.call('PUBLISH', ARGV[2], '1')
return 0
"""

# How long a finished job's id is remembered, to ignore a late message for it.
_FINISHED_MEMORY_S = 30.0


class MalformedHandoff(ValueError):
    """A message on our handoff channel that is not one."""


def parse(message: bytes) -> tuple[str, Claimed]:
    """(queue, the claimed job) from a handoff message."""
    header, _, rest = message.partition(b"\n")
    try:
        queue, score, attempt, id_length = header.decode().split(" ")
        n = int(id_length)
        if not 0 < n < len(rest):  # an id, then a record
            raise ValueError("no id and record after the header")
        claim = Claimed(rest[:n].decode(), int(float(score)), False, True, rest[n:], int(attempt), None)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedHandoff(f"not a handoff message: {header[:80]!r}") from exc
    return queue, claim


class GiveBack:
    """Returns handed-off jobs this process cannot take to their queue."""

    def __init__(self, redis: Redis, instance: str) -> None:
        self.instance = instance
        self._script = LuaScript(redis, _GIVE_BACK_LUA)

    async def __call__(self, queue: str, job_id: str) -> None:
        await self._script(keys=[keys.IN_PROGRESS_PREFIX + job_id, keys.RETRY_PREFIX + job_id],
                           args=[self.instance, keys.wake_channel(queue)])


async def leave_idle_sets(redis: Redis, queues: list[str], instance: str) -> None:
    """No more handoffs to the process `instance` (it is stopping)."""
    async with redis.pipeline(transaction=False) as pipe:
        for queue in queues:
            pipe.zrem(keys.idle_workers_key(queue), instance)
        await pipe.execute()


class RunsHere:
    """The jobs a worker runs, and those it finished in the last half minute, each with a
    fingerprint of the record it ran. A handoff (or a poll's claim of a job locked by this
    process) carrying one of those records is a late message for a run already started; a job
    enqueued again under the same id (a dead letter retried, say) has a new record and runs."""

    def __init__(self, memory_s: float = _FINISHED_MEMORY_S) -> None:
        self.memory_s = memory_s
        self._running: dict[str, int] = {}
        self._finished: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def started(self, claim: Claimed) -> None:
        self._running[claim.job_id] = _fingerprint(claim)

    def abandoned(self, job_id: str) -> None:
        """A run that ended without its finish written (Redis failed it): the job is still
        queued and locked by this process, and the next poll that claims it must run it."""
        self._running.pop(job_id, None)

    def finished(self, job_id: str) -> None:
        """Idempotent: the worker tells it from the job's done callback and from its reaping,
        whichever comes first."""
        fingerprint = self._running.pop(job_id, None)
        if fingerprint is None:
            return
        now = time.monotonic()
        self._finished[job_id] = (fingerprint, now)
        self._finished.move_to_end(job_id)
        while self._finished and next(iter(self._finished.values()))[1] < now - self.memory_s:
            self._finished.popitem(last=False)

    def has(self, claim: Claimed) -> bool:
        """Whether this run of the job is running here, or finished here moments ago."""
        if claim.job_id in self._running:
            return True
        known = self._finished.get(claim.job_id)
        return known is not None and known[0] == _fingerprint(claim)


def _fingerprint(claim: Claimed) -> int:
    # A new enqueue writes a new record (its enqueue time at least).
    return hash(claim.record)
