"""Job priorities (BullMQ's semantics) and per-queue rate limits, on every way in: waiting jobs
run unprioritised first, then by priority; a deferred or retried job keeps its priority; a rate
limit holds across processes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest

from app.config import Settings
from app.errors import InvalidPayload
from app.jobs.resources import Resources
from app.queue import control, keys, outbox
from app.queue.clock import now_ms
from app.queue.enqueue import JobRequest
from tests.support.jobs import RUNS_KEY
from tests.support.worker import in_process_worker, start_worker, wait_for_runs

QUEUE = "intake-routing"


async def _started(res: Resources) -> list[str]:
    return [r["tag"] for r in map(json.loads, await res.redis.lrange(RUNS_KEY, 0, -1)) if r["event"] == "start"]


async def test_waiting_jobs_run_unprioritised_first_then_lowest_priority_first(
        make_settings: Callable[..., Settings], res: Resources) -> None:
    """Enqueued while the queue is paused (one slot): jobs without a priority (or priority 0) run
    first in their order, then priority 1 before 3 before 5, ties in arrival order; the waiting
    ones show as queued, and the stats count the prioritised."""
    await control.pause(res.redis, QUEUE)
    order = [("a", None), ("b", 5), ("c", 1), ("d", 3), ("e", 0), ("f", 1)]
    await res.enqueuer.enqueue_many([JobRequest("probe", {"tag": t}, queue=QUEUE, job_id=t, priority=p)
                                     for t, p in order])
    assert await res.enqueuer.job("c", QUEUE).status() == "queued"
    async with in_process_worker(make_settings(intake_routing_concurrency=1), [QUEUE]):
        await control.resume(res.redis, QUEUE)
        await wait_for_runs(res, "b", "done", 1)
    assert await _started(res) == ["a", "e", "c", "f", "d", "b"]
    assert await res.redis.exists(keys.priorities_key(QUEUE), keys.prioritized_key(QUEUE)) == 0


async def test_a_deferred_or_retried_job_keeps_its_priority(
        make_settings: Callable[..., Settings], res: Resources) -> None:
    """A prioritised job deferred past the others' enqueue, and one that failed and was retried,
    run by their priority among the waiting once due."""
    settings = make_settings(intake_routing_concurrency=1, intake_routing_base_delay_s=0.2)
    async with in_process_worker(settings, [QUEUE]):
        await res.enqueuer.enqueue("probe", {"tag": "retried", "failTimes": 1}, queue=QUEUE, priority=1)
        await wait_for_runs(res, "retried", "fail", 1)
        await control.pause(res.redis, QUEUE)
        await res.enqueuer.enqueue("probe", {"tag": "deferred"}, queue=QUEUE, priority=2, defer_s=0.3)
        await res.enqueuer.enqueue_many([JobRequest("probe", {"tag": f"low{n}"}, queue=QUEUE, priority=9)
                                         for n in range(3)])
        async with asyncio.timeout(5):  # both fall due while paused
            while await res.redis.zcount(QUEUE, f"({now_ms()}", "+inf"):
                await asyncio.sleep(0.05)
        await control.resume(res.redis, QUEUE)
        await wait_for_runs(res, "low2", "done", 1)
    assert await _started(res) == ["retried", "retried", "deferred", "low0", "low1", "low2"]


async def test_priority_is_honoured_from_the_api_and_the_outbox_and_checked(
        make_settings: Callable[..., Settings], res: Resources) -> None:
    """A priority given in an outbox row is kept with the job; an out-of-range one is refused
    naming the field; withdrawing a waiting prioritised job leaves nothing of it behind."""
    await control.pause(res.redis, QUEUE)
    async with res.db.acquire() as conn, conn.transaction():
        await outbox.put(conn, res.registry, [JobRequest("probe", {"tag": "boxed"}, queue=QUEUE, job_id="boxed",
                                                         priority=4)])
    async with in_process_worker(make_settings(), [QUEUE]):
        async with asyncio.timeout(10):
            while await res.redis.hget(keys.priorities_key(QUEUE), "boxed") is None:
                await asyncio.sleep(0.05)
    assert await res.redis.hget(keys.priorities_key(QUEUE), "boxed") == b"4"
    for bad in (-1, 2_097_153, True):
        with pytest.raises(InvalidPayload, match="priority"):
            await res.enqueuer.enqueue("probe", {"tag": "x"}, queue=QUEUE, priority=bad)
    await res.enqueuer.job("boxed", QUEUE).abort()
    assert await res.redis.exists(keys.priorities_key(QUEUE), keys.prioritized_key(QUEUE)) == 0


async def test_a_rate_limit_holds_across_two_processes(make_env: Callable[..., dict[str, str]],
                                                       res: Resources) -> None:
    """INTAKE_ROUTING_RATE_LIMIT_MAX=5 per minute, two worker processes, twelve jobs: five start,
    the other seven wait while the window lasts, whatever the processes poll meanwhile."""
    limited = dict(intake_routing_rate_limit_max=5, intake_routing_rate_limit_duration_ms=60_000,
                   poll_fallback_ms=100)
    workers = []
    try:
        for _ in range(2):
            workers.append(await start_worker(make_env(**limited), "--queues", QUEUE))
        await res.enqueuer.enqueue_many([JobRequest("probe", {"tag": f"r{n}"}, queue=QUEUE) for n in range(12)])
        async with asyncio.timeout(20):
            while len(await _started(res)) < 5:
                await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # ten fallback polls of each process, and more: none may start a job
        assert len(await _started(res)) == 5
        assert await res.redis.zcard(QUEUE) == 7
        assert 50_000 < await res.redis.pttl(keys.rate_key(QUEUE)) <= 60_000
    finally:
        for worker in workers:
            await worker.stop()
