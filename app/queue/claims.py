"""Claiming due jobs: one Lua round trip for many ids instead of arq's WATCH/MULTI per id.

A claim takes a job whose lock is free, or whose lock belongs to a process that is no longer
alive (app/queue/liveness.py): the jobs of a killed process are taken over within seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

from arq.connections import ArqRedis

from app.queue import keys
from app.queue.liveness import INSTANCE_ID

# ARGV: now_ms, lock_ttl_ms, limit, this instance, ids...; claims due ids up to limit whose lock
# is free or held by a process whose alive key has expired (killed). The lock holds the
# instance. Returns a flat list id, score, taken-over flag (1/0), ...
_CLAIM_LUA = """
local now, ttl, limit, me = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local out = {}
for i = 5, #ARGV do
  if #out >= 3 * limit then break end
  local id = ARGV[i]
  local score = redis.call('ZSCORE', KEYS[1], id)
  if score and tonumber(score) <= now then
    local lock = '%(lock)s' .. id
    local owner = redis.call('GET', lock)
    local dead = owner and owner ~= me and owner ~= '1' and redis.call('EXISTS', '%(alive)s' .. owner) == 0
    if not owner or dead then
      redis.call('PSETEX', lock, ttl, me)
      out[#out+1] = id
      out[#out+1] = score
      out[#out+1] = dead and 1 or 0
    end
  end
end
return out
""" % {"lock": keys.IN_PROGRESS_PREFIX, "alive": keys.alive_key("")}


@dataclass(frozen=True, slots=True)
class Claimed:
    job_id: str
    score: int
    taken_over: bool
    """The lock belonged to a process that died."""


class Claimer:
    def __init__(self, pool: ArqRedis, queue: str, *, lock_ttl_s: float) -> None:
        self.queue = queue
        self.lock_ttl_ms = int(lock_ttl_s * 1000)
        self._script = pool.register_script(_CLAIM_LUA)

    async def claim(self, job_ids: list[bytes], *, now_ms: int, limit: int) -> list[Claimed]:
        """Lock up to `limit` of `job_ids` that are due and free for this process."""
        flat = await self._script(keys=[self.queue], args=[now_ms, self.lock_ttl_ms, limit, INSTANCE_ID, *job_ids])
        return [Claimed(flat[i].decode(), int(float(flat[i + 1])), bool(flat[i + 2])) for i in range(0, len(flat), 3)]
