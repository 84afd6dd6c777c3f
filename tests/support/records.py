"""Job records written straight into Redis, as a producer other than the Enqueuer would (the
shape is arq's `serialize_job`; tests/queue/test_arq_protocol.py holds it to the real arq client)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis

from app.queue import codec, keys
from app.queue.clock import now_ms


def arq_record(name: str, *args: Any, kwargs: dict[str, Any] | None = None, enqueued_ms: int = 0,
               serializer: Callable[[Any], bytes] = codec.dumps) -> bytes:
    """The record arq's `enqueue_job(name, *args, **kwargs)` writes (try count null)."""
    return serializer({"t": None, "f": name, "a": args, "k": kwargs or {}, "et": enqueued_ms})


async def write_job(redis: Redis, queue: str, name: str, payload: Any, *, job_id: str,
                    score_ms: int | None = None) -> None:
    """Enqueue as a stock arq client does (the record, then ZADD; no wake-up published)."""
    now = now_ms()
    await redis.psetex(keys.JOB_PREFIX + job_id, 86_400_000, arq_record(name, payload, enqueued_ms=now))
    await redis.zadd(queue, {job_id: now if score_ms is None else score_ms})
