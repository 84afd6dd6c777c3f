"""What one queue's worker tells Redis about its jobs besides their records: running jobs'
locks extended, running jobs published for stats and `jobs stuck`, the retention of completed
results (at most the newest `keep_results_per_queue` per queue, like BullMQ's removeOnComplete
count) — batched into one round trip per beat, off the hot path — and arq's health record, which
`arq --check` reads, every HEALTH_CHECK_INTERVAL_S.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import NamedTuple

from redis.asyncio import Redis

from app.queue import keys, stats
from app.queue.clock import now_ms
from app.queue.lua import LuaScript

# Running jobs are published to other processes at most this often.
_RUNNING_SYNC_S = 1.0

# KEYS: the queue's completed ZSET. ARGV: keep, then id, finished_ms pairs. Adds the newly
# completed ids, then drops the oldest beyond `keep` with their result keys, but for pinned ones
# (keys.PINNED_RESULTS), whose results are left to their TTL. The pins are looked up only while
# there are any, so a process without the BullMQ ingress pays one EXISTS per trim, not per job.
_RETAIN_LUA = """
local keep = tonumber(ARGV[1])
for i = 2, #ARGV, 2 do redis.call('ZADD', KEYS[1], ARGV[i + 1], ARGV[i]) end
local over = redis.call('ZCARD', KEYS[1]) - keep
if over > 0 then
  local old = redis.call('ZRANGE', KEYS[1], 0, over - 1)
  local pinned = redis.call('EXISTS', '%(pins)s') == 1
  for _, id in ipairs(old) do
    if not (pinned and redis.call('ZSCORE', '%(pins)s', id)) then redis.call('DEL', '%(result)s' .. id) end
  end
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, over - 1)
end
return over
""" % {"result": keys.RESULT_PREFIX, "pins": keys.PINNED_RESULTS}

# KEYS: the locks of the jobs running here. ARGV: this instance, the lock TTL ms. Extends each
# lock this instance holds; 0 for one another process holds (it took the job over), 1 otherwise
# (a lock that is gone is left to the finish script's rule, app/queue/finishing.py).
_EXTEND_LUA = """
local out = {}
for i, lock in ipairs(KEYS) do
  local owner = redis.call('GET', lock)
  if owner == ARGV[1] then
    redis.call('PEXPIRE', lock, ARGV[2])
    out[i] = 1
  elseif owner then
    out[i] = 0
  else
    out[i] = 1
  end
end
return out
"""


class Health(NamedTuple):
    """A worker's counts, as arq's health record gives them."""

    completed: int
    failed: int
    retried: int
    running: int
    queued: int
    """What the last poll saw (at most its read limit)."""


class Bookkeeping:
    """The running and just-finished jobs of one queue in this process."""

    def __init__(self, pool: Redis, queue: str, instance: str, *, lock_ttl_s: float, heartbeat_s: float,
                 keep_results: int, health_every_s: float) -> None:
        self.pool, self.queue, self.instance = pool, queue, instance
        self.lock_ttl_ms = int(lock_ttl_s * 1000)
        self.heartbeat_s = heartbeat_s
        self.keep_results = keep_results
        self.started_ms: dict[str, int] = {}
        """Jobs running here: id -> when they were claimed (ms)."""
        self._published: set[str] = set()
        """Running jobs other processes have been told of (only those need a delete when done)."""
        self._finished: list[str] = []
        self._completed: list[tuple[str, int]] = []
        self._synced_at_ms = 0
        self._last_lock_refresh = 0.0
        self._last_running_sync = 0.0
        self._retain = LuaScript(pool, _RETAIN_LUA)
        self._extend = LuaScript(pool, _EXTEND_LUA)
        self.health_every_s = health_every_s
        self.health_key = keys.health_check_key(queue)
        self._health_written = float("-inf")

    def started(self, job_id: str, now_ms: int) -> None:
        self.started_ms[job_id] = now_ms

    def finished(self, job_id: str, *, completed: bool) -> None:
        if self.started_ms.pop(job_id, None) is not None:
            if job_id in self._published:
                # A job that ended before the next publication was never announced: nothing to take back.
                self._published.discard(job_id)
                self._finished.append(job_id)
            if completed and not job_id.startswith(keys.OUTBOX_JOB_PREFIX):
                # An outbox job's result is the relay's proof of dispatch: kept its full TTL.
                self._completed.append((job_id, now_ms()))

    def next_lock_refresh_in_s(self) -> float | None:
        """Seconds until running jobs' locks must be extended, or None when none runs."""
        if not self.started_ms:
            return None
        return self._last_lock_refresh + self.heartbeat_s - time.monotonic()

    async def beat(self, health: Health) -> list[str]:
        """Extend locks every heartbeat; publish changes (and trim results) at most every second;
        write the health record when it is due. Returns the running jobs whose lock another
        process holds now."""
        now = time.monotonic()
        lost: list[str] = []
        if now - self._health_written >= self.health_every_s:
            self._health_written = now
            await self._write_health(health)
        if now - self._last_lock_refresh >= self.heartbeat_s:
            self._last_lock_refresh = self._last_running_sync = now
            lost = await self._extend_locks()
            await self._sync(everything=True)
        elif now - self._last_running_sync >= _RUNNING_SYNC_S and (self._finished or self._unsynced()):
            self._last_running_sync = now
            await self._sync(everything=False)
        return lost

    def _unsynced(self) -> bool:
        return any(ms >= self._synced_at_ms for ms in self.started_ms.values())

    async def _extend_locks(self) -> list[str]:
        """Extend the locks this process holds; the running jobs whose lock another process
        holds now (it took them over while this one was cut off or stalled)."""
        if not self.started_ms:
            return []
        running = list(self.started_ms)
        held = await self._extend(keys=[keys.IN_PROGRESS_PREFIX + j for j in running],
                                  args=[self.instance, self.lock_ttl_ms])
        return [job_id for job_id, mine in zip(running, held, strict=True) if mine == 0]

    async def _sync(self, *, everything: bool) -> None:
        running = self.started_ms if everything else {
            j: ms for j, ms in self.started_ms.items() if ms >= self._synced_at_ms}
        finished, self._finished = self._finished, []
        completed, self._completed = self._completed, []
        self._synced_at_ms = now_ms()
        self._published.update(running)
        try:
            if running or finished:
                await stats.sync_running(self.pool, self.queue, dict(running), finished,
                                         ttl_s=self.heartbeat_s * 3)
            if completed:
                await self._retain(keys=[keys.completed_key(self.queue)],
                                   args=[self.keep_results, *(x for pair in completed for x in pair)])
        except BaseException:
            self._finished[:0], self._completed[:0] = finished, completed  # next beat tries again
            raise

    async def _write_health(self, h: Health) -> None:
        """arq's health record, in arq's words; it lives one interval and a second, so a stopped
        worker's record lapses."""
        info = (f"{datetime.now():%b-%d %H:%M:%S} j_complete={h.completed} j_failed={h.failed} "
                f"j_retried={h.retried} j_ongoing={h.running} queued={h.queued}")
        await self.pool.psetex(self.health_key, int((self.health_every_s + 1) * 1000), info.encode())

    async def forget_health(self) -> None:
        await self.pool.delete(self.health_key)
