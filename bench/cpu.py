"""What a worker process and Redis spend per job while a backlog drains: CPU, and the time the
worker was ready to run but waiting for a core. Beside a throughput that misses its goal, these
say what bounds it: its own CPU per job, the cores it shares, or Redis.

Read over the processing rate's window (from the first finished job to the last), from Linux's
/proc (the worker's CPU counts all its threads; the wait is its main thread's, where the event
loop runs) and Redis's `INFO cpu`. bench/peers/bullmq/bullmq_peer.cjs reads the same for BullMQ.
"""

from __future__ import annotations

import math
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from redis.asyncio import Redis

from bench.report import median


@dataclass(frozen=True, slots=True)
class CpuPerJob:
    worker_s: float = math.nan
    """CPU of the worker process per job."""
    worker_wait_s: float = math.nan
    """Time its main thread was runnable but not running (waiting for a core) per job."""
    redis_s: float = math.nan
    """CPU of the Redis server per job."""

    @staticmethod
    def from_answer(answer: dict[str, object]) -> CpuPerJob:
        """From a peer script's JSON answer, which may carry none of it."""
        def field(name: str) -> float:
            value = answer.get(name)
            return float(value) if isinstance(value, int | float) else math.nan
        return CpuPerJob(field("worker_cpu_s_per_job"), field("worker_wait_s_per_job"), field("redis_cpu_s_per_job"))

    @staticmethod
    def median_of(runs: list[CpuPerJob]) -> CpuPerJob:
        return CpuPerJob(median([r.worker_s for r in runs]), median([r.worker_wait_s for r in runs]),
                         median([r.redis_s for r in runs]))


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) process `pid` has used so far, its children not included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_queue_wait_s(pid: int) -> float:
    """Seconds the main thread of `pid` has spent runnable but waiting for a core."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9


async def redis_cpu_s(redis: Redis) -> float:
    """CPU seconds (user + system) the Redis server has used so far (`INFO cpu`)."""
    info = await redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


class CpuWindow:
    """The readings above from the drain's first finished job (where the processing rate starts
    counting) until `per_job()`; the first reading costs one INFO."""

    def __init__(self, redis: Redis, pid: int) -> None:
        self.redis = redis
        self.pid = pid
        self.first: tuple[float, float, float] | None = None

    def watching(self, remaining: Callable[[], Awaitable[int]], jobs: int) -> Callable[[], Awaitable[int]]:
        """`remaining`, taking the first reading once it is below `jobs`."""
        async def left() -> int:
            n = await remaining()
            if self.first is None and n < jobs:
                self.first = await self._now()
            return n
        return left

    async def per_job(self, jobs: int) -> CpuPerJob:
        """Since the first reading, divided by the `jobs` finished since."""
        assert self.first is not None
        now = await self._now()
        worker, wait, redis = (b - a for a, b in zip(self.first, now, strict=True))
        return CpuPerJob(worker / jobs, wait / jobs, redis / jobs)

    async def _now(self) -> tuple[float, float, float]:
        return process_cpu_s(self.pid), run_queue_wait_s(self.pid), await redis_cpu_s(self.redis)
