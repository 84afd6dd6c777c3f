"""Pause holds while wake-ups keep arriving; it pauses one queue, not the process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from app.config import Settings
from app.jobs.resources import Resources
from app.queue import control, keys
from app.queue.enqueue import JobRequest
from app.runtime.process import Process
from tests.support.jobs import recorded_runs
from tests.support.worker import in_process_worker, wait_for_runs

QUEUE = "intake-routing"
OTHER = "sla-monitor"
FALLBACK_MS = 100


async def _let_the_worker_look(process: Process, *, for_s: float) -> None:
    """Until a sweep has begun `for_s` from now: by then the worker has woken many times."""
    since = time.monotonic() + for_s
    async with asyncio.timeout(for_s + 5):
        while not process.engine.hub.swept_since(since):
            await asyncio.sleep(FALLBACK_MS / 1000)


async def test_paused_queue_runs_nothing_under_a_stream_of_wake_ups_then_runs_all_on_resume(
        make_settings: Callable[..., Settings], res: Resources) -> None:
    """While a queue is paused, neither 40 separately published enqueues, a bulk enqueue, extra
    wake-up messages, a deferred job falling due nor fallback polls start a job; resume starts
    them all, each once."""
    settings = make_settings(poll_fallback_ms=FALLBACK_MS)
    async with in_process_worker(settings, [QUEUE]) as process:
        await control.pause(res.redis, QUEUE)
        async with asyncio.timeout(5):
            while not process.engine.hub.is_paused(QUEUE):
                await asyncio.sleep(0.01)
        tags = [f"p{n}" for n in range(40)]
        for tag in tags:
            await res.enqueuer.enqueue("probe", {"tag": tag}, queue=QUEUE)
        bulk = [JobRequest("probe", {"tag": f"b{n}"}, queue=QUEUE) for n in range(20)]
        await res.enqueuer.enqueue_many(bulk)
        await res.enqueuer.enqueue("probe", {"tag": "due"}, queue=QUEUE, defer_s=0.2)
        for _ in range(20):
            await res.redis.publish(keys.wake_channel(QUEUE), "1")
        await _let_the_worker_look(process, for_s=1.0)
        assert await recorded_runs(res) == []
        await control.resume(res.redis, QUEUE)
        for tag in [*tags, *(f"b{n}" for n in range(20)), "due"]:
            assert len(await wait_for_runs(res, tag, "done", 1, timeout_s=10)) == 1


async def test_pausing_one_queue_leaves_the_others_waking_at_once(
        make_settings: Callable[..., Settings], res: Resources) -> None:
    """A paused queue does not slow the process's other queues: a job enqueued on another
    queue starts within a second under a 5 s fallback, while the paused one's job waits."""
    settings = make_settings(poll_fallback_ms=5000)
    async with in_process_worker(settings, [QUEUE, OTHER]) as process:
        await control.pause(res.redis, QUEUE)
        async with asyncio.timeout(5):
            while not process.engine.hub.is_paused(QUEUE):
                await asyncio.sleep(0.01)
        await res.enqueuer.enqueue("probe", {"tag": "held"}, queue=QUEUE)
        enqueued_at = time.time()
        await res.enqueuer.enqueue("probe", {"tag": "free"}, queue=OTHER)
        [start] = await wait_for_runs(res, "free", "start", 1, timeout_s=10)
        assert start["t"] - enqueued_at < 1.0
        assert [r["tag"] for r in await recorded_runs(res) if r["tag"] == "held"] == []
        await control.resume(res.redis, QUEUE)
        await wait_for_runs(res, "held", "done", 1, timeout_s=10)
