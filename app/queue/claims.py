"""Claiming due jobs: one Lua round trip reads the queue, claims what is due and starts it
(reads each job's record and counts the attempt), however many jobs that is. The same round trip
keeps the process in (or out of) the queue's idle set, through which enqueues hand jobs straight
to it (app/queue/handoff.py).

A claim takes a job whose lock is free, or whose lock belongs to a process that is no longer
alive (app/queue/liveness.py): the jobs of a killed process are taken over within seconds.

It also reads arq's abort set for the jobs it claims, only when the set is not empty (one
EXISTS per claim otherwise): a job `Job.abort()` asked to stop after it was enqueued ends aborted
instead of running (app/queue/running.py). arq never ages its entries out (arq #485: an abort of
an unknown id kills a later job of that id); here an entry older than the job's enqueue is
ignored, and entries older than a day are dropped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from redis.asyncio import Redis

from app.config.queue_table import RateLimit
from app.queue import keys
from app.queue.lua import LuaScript
from app.queue.priorities import PRIORITY_SCORE_LUA

# An abort request older than this is dropped at the next claim that sees the set (a job waiting
# longer than a day past its time has expired anyway, as in arq).
ABORT_HORIZON_MS = 86_400_000

# How long an attempt count outlives the job's last claim: arq's own figure (88,400 s), so a
# record written by arq or by us ages out the same way.
RETRY_COUNTER_TTL_S = 88_400

# A Lua function: count a new attempt of job `id` and return it; the counter is kept as long as
# arq keeps it. A first attempt, the usual case, is one write (SET NX) instead of INCR + EXPIRE.
COUNT_ATTEMPT_LUA = """
local function count_attempt(id)
  local retry = '%(retry)s' .. id
  if redis.call('SET', retry, 1, 'NX', 'EX', %(retry_ttl)d) then return 1 end
  local attempt = redis.call('INCR', retry)
  redis.call('EXPIRE', retry, %(retry_ttl)d)
  return attempt
end
""" % {"retry": keys.RETRY_PREFIX, "retry_ttl": RETRY_COUNTER_TTL_S}

# KEYS: the queue, its idle set, its prioritised ZSET, its priorities hash, its rate-limit counter.
# ARGV: now_ms, lock_ttl_ms, limit, this instance, read_limit, whether handoffs can reach this
# process now ('1'/'0'), the rate limit's max (0: none) and window (ms), then the ids this process
# runs already (skipped without a lookup).
# Reads up to read_limit due ids of the queue; moves the prioritised ones among them to the
# prioritised ZSET (app/queue/priorities.py); claims up to `limit` of the others, then fills the
# slots left from the prioritised ZSET (moving each into the queue, where a running job is). A job
# is claimed when its lock is free, held by a process whose alive key has expired (killed), or
# held by this process for a job it does not run (a handoff whose message was lost: its attempt
# is counted already). The lock holds the instance; each claimed job's attempt is counted (arq's
# retry counter, kept as long as arq keeps it) and its record read. A paused queue is read but
# nothing is claimed (the process's paused set may lag behind a pause by a message); a rate-limited
# one claims no more than its window allows, and its workers never wait in the idle set (a handoff
# would bypass the limit). With a slot left over (and its handoff channel listened to), the
# process enters the queue's idle set (app/queue/handoff.py); else it leaves it.
# Returns {due jobs seen (prioritised ones included), the next deferred score (or the end of a
# rate limit window holding due jobs back) or -1, then per claim: id, score, whose lock it was
# (0 free, 1 a dead process's, 2 ours), record (false when it has expired), attempt, the time
# Job.abort() asked for it (ms) or -1, 1 if prioritised else 0}.
_CLAIM_DUE_LUA = COUNT_ATTEMPT_LUA + PRIORITY_SCORE_LUA + """
local queue, idle, prioritized, priorities, rate = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local now, ttl, limit, me = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local rate_max, rate_window = tonumber(ARGV[7]), tonumber(ARGV[8])
local running_here = {}
for i = 9, #ARGV do running_here[ARGV[i]] = true end
local due = redis.call('ZRANGEBYSCORE', queue, '-inf', now, 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[5]))
local has_priorities = redis.call('EXISTS', priorities) == 1
local waiting_prioritized = 0
if has_priorities then
  local kept = {}
  for i = 1, #due, 2 do
    local id = due[i]
    local p = redis.call('HGET', priorities, id)
    if p and not running_here[id] and redis.call('EXISTS', '%(lock)s' .. id) == 0 then
      redis.call('ZREM', queue, id)
      redis.call('ZADD', prioritized, priority_score(queue, p), id)
    else
      kept[#kept+1] = id
      kept[#kept+1] = due[i + 1]
    end
  end
  due = kept
  waiting_prioritized = redis.call('ZCARD', prioritized)
end
local waiting = #due / 2 + waiting_prioritized
local later = redis.call('ZRANGEBYSCORE', queue, '(' .. now, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
local out = {waiting, later[2] or -1}
local aborts = waiting > 0 and redis.call('EXISTS', '%(abort)s') == 1
if aborts then redis.call('ZREMRANGEBYSCORE', '%(abort)s', '-inf', now - %(abort_horizon)d) end
if waiting > 0 and redis.call('SISMEMBER', '%(paused)s', queue) == 1 then limit = 0 end
if rate_max > 0 and waiting > 0 and limit > 0 then
  local used = tonumber(redis.call('GET', rate) or '0')
  if used >= rate_max then
    local reopens = now + math.max(redis.call('PTTL', rate), 1)
    if out[2] == -1 or reopens < tonumber(out[2]) then out[2] = reopens end
  end
  limit = math.max(0, math.min(limit, rate_max - used))
end
local claimed = 0
local function claim(id, score, is_prioritized)
  local lock = '%(lock)s' .. id
  local taken, dead, mine = redis.call('SET', lock, me, 'NX', 'PX', ttl), false, false
  if not taken then
    local owner = redis.call('GET', lock)
    mine = owner == me
    dead = owner and not mine and owner ~= '1' and redis.call('EXISTS', '%(alive)s' .. owner) == 0
    if dead or mine then redis.call('PSETEX', lock, ttl, me) end
  end
  if not (taken or dead or mine) then return end
  claimed = claimed + 1
  local attempt = mine and tonumber(redis.call('GET', '%(retry)s' .. id) or '') or nil
  if attempt then
    redis.call('EXPIRE', '%(retry)s' .. id, %(retry_ttl)d)
  else
    attempt = count_attempt(id)
  end
  out[#out+1] = id
  out[#out+1] = score
  out[#out+1] = dead and 1 or (mine and 2 or 0)
  out[#out+1] = redis.call('GET', '%(job)s' .. id)
  out[#out+1] = attempt
  out[#out+1] = aborts and redis.call('ZSCORE', '%(abort)s', id) or -1
  out[#out+1] = is_prioritized and 1 or 0
end
for i = 1, #due, 2 do
  if claimed >= limit then break end
  if not running_here[due[i]] then claim(due[i], due[i + 1], false) end
end
if claimed < limit and waiting_prioritized > 0 then
  for _, id in ipairs(redis.call('ZRANGE', prioritized, 0, limit - claimed - 1)) do
    redis.call('ZREM', prioritized, id)
    redis.call('ZADD', queue, now, id)
    claim(id, now, true)
  end
end
if claimed > 0 and rate_max > 0 and redis.call('INCRBY', rate, claimed) == claimed then
  redis.call('PEXPIRE', rate, rate_window)
end
if claimed < limit and ARGV[6] == '1' and rate_max == 0 then
  redis.call('ZADD', idle, ttl, me)
else
  redis.call('ZREM', idle, me)
end
return out
""" % {"lock": keys.IN_PROGRESS_PREFIX, "alive": keys.alive_key(""), "retry": keys.RETRY_PREFIX,
       "job": keys.JOB_PREFIX, "retry_ttl": RETRY_COUNTER_TTL_S, "paused": keys.PAUSED_SET,
       "abort": keys.ABORT_SET, "abort_horizon": ABORT_HORIZON_MS}


class Claimed(NamedTuple):
    """One claimed job (a tuple: made for every job, on the path to its start)."""

    job_id: str
    score: int
    taken_over: bool
    """The lock belonged to a process that died."""
    was_ours: bool
    """The lock was this process's already: a handoff whose message may still be on its way."""
    record: bytes | None
    """The job's record as it was claimed; None when it has expired."""
    attempt: int
    """This run's attempt, counted by the claim (1 on the first run)."""
    aborted_ms: float | None = None
    """When `Job.abort()` asked for this job id (ms), if it did: it applies only to a job enqueued
    before that."""
    prioritized: bool = False
    """It has a priority (its finish forgets it: app/queue/priorities.py)."""


@dataclass(frozen=True, slots=True)
class Poll:
    """What one poll of the queue found and took."""

    claimed: list[Claimed]
    due: int
    """Due jobs seen (running ones included, at most the read limit, plus the waiting prioritised)."""
    next_deferred_ms: float | None
    """The score of the first job not due yet, or when a full rate limit window reopens."""


class Claimer:
    def __init__(self, pool: Redis, queue: str, instance: str, *, lock_ttl_s: float, read_limit: int,
                 rate_limit: RateLimit | None = None) -> None:
        self.queue, self.instance = queue, instance
        self.keys = [queue, keys.idle_workers_key(queue), keys.prioritized_key(queue), keys.priorities_key(queue),
                     keys.rate_key(queue)]
        self.lock_ttl_ms = int(lock_ttl_s * 1000)
        self.read_limit = read_limit
        self.rate = (rate_limit.max, rate_limit.duration_ms) if rate_limit else (0, 0)
        self._script = LuaScript(pool, _CLAIM_DUE_LUA)

    async def claim_due(self, *, now_ms: int, limit: int, running_here: Iterable[str] = (),
                        reachable: bool = False) -> Poll:
        """Read the queue, lock up to `limit` due jobs free for this process and start them, in one
        round trip. `reachable`: handoffs can reach this process now (its hub is listening)."""
        flat = await self._script(keys=self.keys,
                                  args=[now_ms, self.lock_ttl_ms, limit, self.instance, self.read_limit,
                                        "1" if reachable else "0", *self.rate, *running_here])
        claimed = [Claimed(flat[i].decode(), int(float(flat[i + 1])), flat[i + 2] == 1, flat[i + 2] == 2,
                           flat[i + 3] or None, int(flat[i + 4]), _aborted(flat[i + 5]), flat[i + 6] == 1)
                   for i in range(2, len(flat), 7)]
        next_ms = float(flat[1])
        return Poll(claimed, int(flat[0]), None if next_ms < 0 else next_ms)


def _aborted(score: bytes | int) -> float | None:
    """The abort set's score as the script returned it (a ZSCORE's bulk string, or -1 for none)."""
    return None if score == -1 else float(score)
