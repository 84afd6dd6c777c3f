"""Retention as BullMQ users expect: completed results kept for a day and at most the newest N
per queue, failed jobs' results for a week, dead letters until purged."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from app.config import Settings
from app.jobs.resources import Resources
from app.queue import keys
from tests.support.worker import in_process_worker

QUEUE = "intake-routing"


async def test_completed_results_are_trimmed_to_the_newest_n_and_failures_kept_longer(
        make_settings: Callable[..., Settings], res: Resources) -> None:
    """With KEEP_RESULTS_PER_QUEUE=3, five completed pings leave the newest three results; a
    completed result lives KEEP_RESULT_S, a failed one KEEP_FAILED_S, and its dead letter stays."""
    settings = make_settings(keep_results_per_queue=3, keep_result_s=600, keep_failed_s=7200)
    ids = [f"kept-{n}" for n in range(5)]
    async with in_process_worker(settings, [QUEUE]):
        for job_id in ids:
            await res.enqueuer.enqueue("ping", {}, queue=QUEUE, job_id=job_id)
            await res.enqueuer.job(job_id, QUEUE).wait(timeout_s=10, poll_delay=0.01)
        await res.enqueuer.enqueue("probe", {"tag": "lost", "failTimes": 9, "error": "permanent"},
                                   queue=QUEUE, job_id="failed-1")
        await res.enqueuer.job("failed-1", QUEUE).wait(timeout_s=10, poll_delay=0.01)
        async with asyncio.timeout(10):  # the trim happens with the next bookkeeping beat (≤ 1 s)
            while await res.redis.zcard(keys.completed_key(QUEUE)) != 3 or await res.redis.exists(
                    keys.RESULT_PREFIX + ids[1]):
                await asyncio.sleep(0.05)
    kept = [job_id for job_id in ids if await res.redis.exists(keys.RESULT_PREFIX + job_id)]
    assert kept == ids[2:]
    assert 590 <= await res.redis.ttl(keys.RESULT_PREFIX + ids[-1]) <= 600
    assert 7190 <= await res.redis.ttl(keys.RESULT_PREFIX + "failed-1") <= 7200
    assert [d.job_id for d in await res.dlq.list()] == ["failed-1"]
