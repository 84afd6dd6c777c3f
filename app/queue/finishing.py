"""Writing finished jobs' outcomes: the jobs of one queue that finish together go to Redis in
one script call instead of a round trip (and a handful of commands to encode) each.

What one finish writes is arq's `finish_job` (lock deleted, result stored with its TTL, retry
counter and record deleted, id removed from the queue; or, for a retry, the score moved on), with
the abort set's entry removed only for a job that was aborted, and the priority forgotten only for
a prioritised one (every other finish is spared those commands), and written so that applying it twice changes
nothing: the retry's new score is absolute, and the lock is
deleted only while this process holds it. A batch is one script, so it is applied whole and a
job is never half-finished; a batch that fails fails every finish in it, and each caller
retries its own (app/queue/running.py holds outcomes through a Redis outage).
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from app.batching import GroupCommit
from app.queue import keys
from app.queue.durability import NONE, Durability
from app.queue.lua import LuaScript

# KEYS: the queue. ARGV: this instance, then five per finish: id, kind ('d' done, 'a' done by an
# abort, 'r' retry; a 'p' after it: the job is prioritised),
# result ('' for none), result TTL ms (-1 forever, 0 none), next score ms ('' stays where it is).
# Fencing: a finish is applied only while the lock names this instance, or when the lock is gone
# and the job still waits in its queue with no result (nobody took it over meanwhile); a finish
# whose result is already stored is the same finish again (its reply was lost). Any other is
# refused: a process that lost its lock (a partition, a long stall) must not overwrite the
# outcome of the process that took the job over. Returns 1 (applied) or 0 (refused) per finish.
_FINISH_LUA = """
local me = ARGV[1]
local out = {}
for i = 2, #ARGV, 5 do
  local id, kind, result, ttl, score = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3]), ARGV[i + 4]
  local done, prioritized = string.sub(kind, 1, 1), string.sub(kind, 2, 2) == 'p'
  local lock, rkey = '%(lock)s' .. id, '%(result)s' .. id
  local owner = redis.call('GET', lock)
  local ours = owner == me
  if not owner then
    ours = (redis.call('ZSCORE', KEYS[1], id) and redis.call('EXISTS', rkey) == 0)
        or (result ~= '' and redis.call('GET', rkey) == result)
  end
  out[#out + 1] = ours and 1 or 0
  if ours and done ~= 'r' then
    if result ~= '' and ttl ~= 0 then
      if ttl < 0 then
        redis.call('SET', rkey, result)
      else
        redis.call('SET', rkey, result, 'PX', ttl)
      end
    end
    redis.call('ZREM', KEYS[1], id)
    redis.call('DEL', '%(retry)s' .. id, '%(job)s' .. id)
    if done == 'a' then redis.call('ZREM', '%(abort)s', id) end
    if prioritized then redis.call('HDEL', '%(priorities)s' .. KEYS[1], id) end
  elseif ours and score ~= '' then
    redis.call('ZADD', KEYS[1], 'XX', score, id)
  end
  if owner == me then redis.call('DEL', lock) end
end
return out
""" % {"result": keys.RESULT_PREFIX, "retry": keys.RETRY_PREFIX, "job": keys.JOB_PREFIX,
       "lock": keys.IN_PROGRESS_PREFIX, "abort": keys.ABORT_SET, "priorities": keys.priorities_key("")}


# KEYS: the job's lock, the queue, the job's result. ARGV: this instance, the job id. The finish
# script's rule, asked ahead of a step that cannot be undone (a dead letter in PostgreSQL).
_HOLDS_LUA = """
local owner = redis.call('GET', KEYS[1])
if owner then return owner == ARGV[1] and 1 or 0 end
return (redis.call('ZSCORE', KEYS[2], ARGV[2]) and redis.call('EXISTS', KEYS[3]) == 0) and 1 or 0
"""


class Ownership:
    """Whether this process may still finish a job of `queue` (the finish script's own rule)."""

    def __init__(self, pool: Redis, queue: str, instance: str) -> None:
        self.queue, self.instance = queue, instance
        self._script = LuaScript(pool, _HOLDS_LUA)

    async def holds(self, job_id: str) -> bool:
        keys_ = [keys.IN_PROGRESS_PREFIX + job_id, self.queue, keys.RESULT_PREFIX + job_id]
        return bool(await self._script(keys=keys_, args=[self.instance, job_id]))


@dataclass(frozen=True, slots=True)
class Finish:
    job_id: str
    result: bytes | None
    result_ttl_ms: int | None
    """None: keep the result forever; 0: keep none."""
    done: bool
    """False: a retry; the job stays queued, due at `next_score_ms`."""
    next_score_ms: int | None = None
    aborted: bool = False
    """Done because Job.abort() asked: its abort set entry goes too."""
    prioritized: bool = False
    """Its priority is kept until it is done (app/queue/priorities.py)."""

    def args(self) -> tuple[str | bytes | int, ...]:
        """The finish's five script arguments. Each effect is idempotent (an absolute score, a
        compare-and-delete), so a finish written twice — its reply lost, then retried — does no harm."""
        ttl = -1 if self.result_ttl_ms is None else self.result_ttl_ms
        score = "" if self.next_score_ms is None else self.next_score_ms
        kind = (("a" if self.aborted else "d") if self.done else "r") + ("p" if self.prioritized else "")
        return self.job_id, kind, self.result or b"", ttl, score


class FinishBatcher:
    """Coalesces the finishes of one queue's jobs into one script call: those of a loop turn, and
    those that arrive while a call is in flight (app/batching.py)."""

    def __init__(self, pool: Redis, queue: str, instance: str, *, durability: Durability = NONE) -> None:
        self.queue, self.instance = queue, instance
        self._script = LuaScript(pool, _FINISH_LUA, durability=durability)
        self._group: GroupCommit[Finish, bool] = GroupCommit(self._write_batch)

    async def write(self, finish: Finish) -> bool:
        """Return once `finish` is in Redis: True, or False when it was refused (another process
        holds the job's lock now); raise what the batch it went in raised."""
        return await self._group.submit(finish)

    async def _write_batch(self, batch: list[Finish]) -> list[bool]:
        args: list[str | bytes | int] = [self.instance]
        for finish in batch:
            args.extend(finish.args())
        applied = await self._script(keys=[self.queue], args=args)
        return [flag == 1 for flag in applied]
