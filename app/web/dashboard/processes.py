"""Which worker processes are alive and which queues each serves, for the dashboard.

Liveness comes from the engine's `workhorse:alive:<instance>` keys (app/queue/liveness.py);
running jobs from the running-jobs hashes. The queues a process serves are not in either, so
each process's sidecar announces them in the PROCESSES hash (instance -> JSON {queues,
startedMs}) when it starts and withdraws them when it stops. An entry whose alive key is gone is
ignored, and removed once it is older than ANNOUNCE_GRACE_MS (a process killed with -9 leaves
one behind; one that just started may not have set its alive key yet).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from redis.asyncio import Redis

from app.queue import keys, stats
from app.queue.replies import octets, text

ANNOUNCE_GRACE_MS = 60_000
_ALIVE_PREFIX = keys.alive_key("")


@dataclass(frozen=True, slots=True)
class WorkerProcess:
    instance: str
    """host:pid:nonce, as in the alive key."""
    host: str
    pid: str
    queues: tuple[str, ...] | None
    """None: the process did not announce its queues (an older version)."""
    uptime_s: float | None
    running: int


async def announce(redis: Redis, instance: str, queues: list[str], started_ms: int) -> None:
    await redis.hset(keys.PROCESSES, instance, json.dumps({"queues": queues, "startedMs": started_ms}))


async def withdraw(redis: Redis, instance: str) -> None:
    await redis.hdel(keys.PROCESSES, instance)


async def _alive_instances(redis: Redis) -> set[str]:
    found: set[str] = set()
    async for key in redis.scan_iter(match=_ALIVE_PREFIX + "*", count=500):
        found.add(key.decode()[len(_ALIVE_PREFIX):])
    return found


def _decode(raw: bytes) -> tuple[tuple[str, ...] | None, int | None]:
    try:
        info = json.loads(raw)
        return tuple(str(q) for q in info["queues"]), int(info["startedMs"])
    except (ValueError, KeyError, TypeError):
        return None, None


async def live_processes(redis: Redis, queues: list[str]) -> list[WorkerProcess]:
    """Every process with a fresh alive key, with what it announced and how many jobs it runs."""
    alive = await _alive_instances(redis)
    announced = {text(k): octets(v) for k, v in (await redis.hgetall(keys.PROCESSES)).items()}
    running: dict[str, int] = {}
    for job in await stats.running_jobs(redis, queues):
        running[job.process] = running.get(job.process, 0) + 1
    now_ms = int(time.time() * 1000)
    stale = [i for i, raw in announced.items()
             if i not in alive and now_ms - (_decode(raw)[1] or 0) > ANNOUNCE_GRACE_MS]
    if stale:
        await redis.hdel(keys.PROCESSES, *stale)
    out = []
    for instance in sorted(alive):
        host, _, rest = instance.partition(":")
        pid = rest.partition(":")[0]
        served, started_ms = _decode(announced[instance]) if instance in announced else (None, None)
        out.append(WorkerProcess(instance, host, pid, served,
                                 None if started_ms is None else max(0.0, (now_ms - started_ms) / 1000),
                                 running.get(f"{host}:{pid}", 0)))
    return out
