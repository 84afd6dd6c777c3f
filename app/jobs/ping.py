"""`ping`: an end-to-end probe of one queue (operators) and a no-op (benchmarks)."""

from __future__ import annotations

import asyncio
import datetime as dt

from pydantic import Field

from app.jobs.resources import Job
from app.queue.payload import Payload
from app.queue.registry import ANY_QUEUE, JobSpec

MAX_SLEEP_MS = 600_000


class Ping(Payload):
    sleep_ms: int = Field(0, ge=0, le=MAX_SLEEP_MS, description="how long to hold a slot (capped)")
    note: str | None = Field(None, max_length=200)


async def ping(job: Job, p: Ping) -> dict[str, object]:
    started = dt.datetime.now(dt.UTC)
    if p.sleep_ms:
        await asyncio.sleep(p.sleep_ms / 1000)
    return {
        "pong": True,
        "queue": job.queue,
        "attempt": job.attempt,
        "enqueuedAt": job.enqueued_at.isoformat(),
        "startedAt": started.isoformat(),
        "note": p.note,
    }


SPEC = JobSpec(name="ping", queue=ANY_QUEUE, payload=Ping, run=ping,
               description="reply pong with enqueue/start times; any queue (--queue)")
