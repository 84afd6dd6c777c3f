"""retry_task through the real worker: a FAILED task's step runs again after its delay, until
the maximum, when the task needs review instead."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from app.config import Settings
from app.jobs.resources import Resources
from tests.support.jobs import result_of
from tests.support.scheduling import QUEUE, at, meeting_day, status_is, task
from tests.support.worker import in_process_worker


async def test_retry_task_reruns_the_failed_step_after_its_delay_then_gives_up(
        make_settings: Callable[..., Settings], res: Resources) -> None:
    """A FAILED task's step runs again after previousAttempts x 5 s; at the maximum the task
    goes NEEDS_REVIEW instead."""
    day = meeting_day()
    step = {"taskId": "f1", "userId": "user_1", "schedulingData": {
        "title": "Again", "startTime": at(day, 9).isoformat(), "endTime": at(day, 10).isoformat()}}
    await task(res, "f1")
    await task(res, "f2")
    for task_id in ("f1", "f2"):
        await res.db.execute("UPDATE scheduling_agent_tasks SET status = 'FAILED', failed_step = 'schedule_meeting',"
                             " failed_payload = $2 WHERE id = $1", task_id, step)
    async with in_process_worker(make_settings(poll_fallback_ms=50), [QUEUE]):
        retried = await result_of(res, await res.enqueuer.enqueue("retry-task", {
            "taskId": "f1", "userId": "user_1", "reason": "timeout", "previousAttempts": 2}), QUEUE)
        job_id = "schedule_meeting:f1:retry2"
        async with asyncio.timeout(10):  # queued by the outbox relay once retry_task committed
            while (score := await res.redis.zscore(QUEUE, job_id)) is None:
                await asyncio.sleep(0.02)
        run_at_s = score / 1000
        assert 8 < run_at_s - time.time() <= 10
        await res.redis.zadd(QUEUE, {job_id: int(time.time() * 1000)})
        await status_is(res, "f1", "SCHEDULED")
        gave_up = await result_of(res, await res.enqueuer.enqueue("retry_task", {
            "taskId": "f2", "userId": "user_1", "reason": "timeout", "previousAttempts": 3}), QUEUE)
    assert (retried["status"], retried["delayS"]) == ("PENDING", 10)
    assert gave_up["status"] == "NEEDS_REVIEW"
    assert await res.db.fetchval("SELECT status FROM scheduling_agent_tasks WHERE id = 'f2'") == "NEEDS_REVIEW"
