"""retry_task, and what a dead-lettered step leaves on its task for it.

When a step (process_inbox, schedule_meeting, ...) is dead-lettered, its task goes FAILED with
the step's name and payload (a failed send_response keeps the task's status: the meeting is
booked all the same; only the reply is owed). A step that failed for a passing reason (its attempts ran out)
queues retry_task itself; the web app may queue it too. retry_task runs the failed step again
after min(previousAttempts x 5 s, 60 s); once previousAttempts reaches
SCHEDULING_MAX_TASK_RETRIES the task goes NEEDS_REVIEW instead.
"""

from __future__ import annotations

from typing import Any

import structlog

from app.errors import JobSkipped, PermanentError
from app.jobs.resources import Job
from app.jobs.scheduling.payloads import RetryTask
from app.jobs.scheduling.respond import advance
from app.jobs.scheduling.tasks import load_task, update_task
from app.queue import outbox
from app.queue.enqueue import JobRequest
from app.queue.payload import Payload

log = structlog.get_logger(__name__)

RETRY_STEP_S = 5.0
RETRY_MAX_DELAY_S = 60.0


def retry_delay_s(previous_attempts: int) -> float:
    """Pure core: min(previousAttempts x 5 s, 60 s)."""
    return min(max(previous_attempts, 0) * RETRY_STEP_S, RETRY_MAX_DELAY_S)


async def retry_task(job: Job, p: RetryTask) -> dict[str, Any]:
    db = job.res.db
    task = await load_task(db, p.task_id, p.user_id)
    if not task.failed_step:
        raise JobSkipped(f"task {task.id} is {task.status}: no failed step to retry")
    if p.previous_attempts >= job.res.settings.scheduling.max_task_retries:
        await update_task(db, task.id, "NEEDS_REVIEW", error=f"gave up after {p.previous_attempts} retries: {p.reason}")
        log.warning("agent_task_needs_review", task_id=task.id, retries=p.previous_attempts)
        return {"taskId": task.id, "status": "NEEDS_REVIEW"}
    delay_s = retry_delay_s(p.previous_attempts)
    status = "PENDING" if task.status == "FAILED" else task.status
    again = JobRequest(task.failed_step, task.failed_payload or {}, defer_s=delay_s,
                       job_id=f"{task.failed_step}:{task.id}:retry{p.previous_attempts}")
    await advance(job, task.id, status, [again], retry_count=p.previous_attempts, failed_step=None)
    log.info("agent_task_retry_scheduled", task_id=task.id, step=task.failed_step, delay_s=delay_s)
    return {"taskId": task.id, "status": status, "step": task.failed_step, "delayS": delay_s}


_RECORD_FAILURE = (
    "UPDATE scheduling_agent_tasks SET status = CASE WHEN $3 = 'send_response' THEN status ELSE 'FAILED' END,"
    " error = $2, failed_step = $3, failed_payload = $4, updated_at = now() WHERE id = $1 RETURNING retry_count")


async def record_step_failure(job: Job, p: Payload, exc: BaseException) -> None:
    """on_dead_letter of every step: the task FAILED with the step; retried when that may help."""
    task_id, user_id = getattr(p, "task_id", None), getattr(p, "user_id", None)
    if not isinstance(task_id, str) or not isinstance(user_id, str):
        return
    # The failure and the retry it calls for, in one transaction (the outbox enqueues the retry).
    async with job.res.db.acquire() as conn, conn.transaction():
        error = f"{type(exc).__name__}: {exc}"[:2000]
        row = await conn.fetchrow(_RECORD_FAILURE, task_id, error, job.name, p.to_json())
        if row is None or isinstance(exc, PermanentError):
            return
        attempts = int(row["retry_count"]) + 1
        retry = RetryTask(task_id=task_id, user_id=user_id, reason=str(exc)[:2000], previous_attempts=attempts)
        await outbox.put(conn, job.res.registry, [JobRequest.of(retry, job_id=f"retry_task:{task_id}:{attempts}")])
