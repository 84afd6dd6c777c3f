"""Pause, resume and drain queues across every process (state lives in Redis)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from redis.asyncio import Redis

from app.queue import keys, stats
from app.queue.replies import text


async def pause(redis: Redis, queue: str) -> None:
    await redis.sadd(keys.PAUSED_SET, queue)
    await redis.publish(keys.CONTROL_CHANNEL, f"pause:{queue}")


async def resume(redis: Redis, queue: str) -> None:
    await redis.srem(keys.PAUSED_SET, queue)
    await redis.publish(keys.CONTROL_CHANNEL, f"resume:{queue}")
    # Jobs that waited while paused start now, not at the next fallback poll.
    await redis.publish(keys.wake_channel(queue), "1")


async def paused(redis: Redis) -> set[str]:
    return {text(m) for m in await redis.smembers(keys.PAUSED_SET)}


async def drain(
    redis: Redis, queues: str | Sequence[str], *, timeout_s: float, poll_s: float = 0.25,
    on_progress: Callable[[list[stats.QueueStats]], None] | None = None,
) -> bool:
    """Wait until every one of `queues` has no waiting and no running jobs (workers keep
    processing). Returns False on timeout. Delayed jobs (retries, deferred) do not hold a drain up.
    """
    names = [queues] if isinstance(queues, str) else list(queues)
    deadline = time.monotonic() + timeout_s
    while True:
        current = list((await stats.read(redis, names)).values())
        if on_progress is not None:
            on_progress(current)
        if all(s.waiting == 0 and s.active == 0 for s in current):
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))
