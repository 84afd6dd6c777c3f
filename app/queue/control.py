"""Pause, resume and drain queues across every process (state lives in Redis)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from arq.connections import ArqRedis

from app.queue import keys, stats
from app.queue.awaitable import awaited


async def pause(redis: ArqRedis, queue: str) -> None:
    await awaited(redis.sadd(keys.PAUSED_SET, queue))
    await redis.publish(keys.CONTROL_CHANNEL, f"pause:{queue}")


async def resume(redis: ArqRedis, queue: str) -> None:
    await awaited(redis.srem(keys.PAUSED_SET, queue))
    await redis.publish(keys.CONTROL_CHANNEL, f"resume:{queue}")
    # Jobs that waited while paused start now, not at the next fallback poll.
    await redis.publish(keys.wake_channel(queue), "1")


async def paused(redis: ArqRedis) -> set[str]:
    return {m.decode() for m in await awaited(redis.smembers(keys.PAUSED_SET))}


async def drain(
    redis: ArqRedis, queue: str, *, timeout_s: float, poll_s: float = 0.25,
    on_progress: Callable[[stats.QueueStats], None] | None = None,
) -> bool:
    """Wait until `queue` has no waiting and no running jobs (workers keep processing).

    Returns False on timeout. Delayed jobs (retries, deferred) do not hold a drain up.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        current = (await stats.read(redis, [queue]))[queue]
        if on_progress is not None:
            on_progress(current)
        if current.waiting == 0 and current.active == 0:
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))
