"""The reminder scan: claim due PENDING reminders and queue them in batches of
REMINDER_BATCH_SIZE (`send_reminders`, app/jobs/reminders/batch.py).

`FOR UPDATE SKIP LOCKED` gives each concurrent scan (several processes, or a manual trigger
beside the cron) its own rows. A claim's rows become QUEUED in the same transaction that
enqueues their jobs, committed only after Redis has them: a failure leaves them PENDING for
the next scan, and a batch's job id (`reminders:<ids>`) makes a repeated enqueue harmless.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from pydantic import Field

from app.jobs.reminders.batch import SendReminders, batch_job_id
from app.jobs.resources import Job
from app.queue.enqueue import JobRequest
from app.queue.payload import Payload

# Claim, judge and mark one batch. Reminders of cancelled events, and 24 h / 2 h reminders
# that came due only after their event started, are SKIPPED with the reason instead.
_CLAIM_BATCH = """
WITH due AS (
    SELECT r.id, r.kind, r.event_id FROM event_reminders r
    WHERE r.status = 'PENDING' AND r.reminder_time <= now()
    ORDER BY r.reminder_time
    LIMIT $1
    FOR UPDATE SKIP LOCKED
), judged AS (
    SELECT due.id, CASE
        WHEN e.status = 'CANCELLED' THEN 'event cancelled'
        WHEN due.kind <> 'follow_up' AND e.start_at <= now() THEN 'event already started'
    END AS skip_reason
    FROM due JOIN scheduling_events e ON e.id = due.event_id
)
UPDATE event_reminders r
SET status = CASE WHEN j.skip_reason IS NULL THEN 'QUEUED' ELSE 'SKIPPED' END,
    skip_reason = j.skip_reason,
    queued_at = now()
FROM judged j
WHERE r.id = j.id
RETURNING r.id, r.status
"""


class ScanReminders(Payload):
    batch_size: int = Field(500, ge=1, le=10_000)
    max_batches: int = Field(1000, ge=1)
    """Bounds one scan; whatever is left is due at the next tick."""


@dataclass(slots=True)
class ScanResult:
    scanned: int = 0
    queued: int = 0
    skipped: int = 0
    errors: int = 0


async def scan_reminders(job: Job, p: ScanReminders) -> dict[str, int]:
    result = ScanResult()
    for _ in range(p.max_batches):
        try:
            claimed = await _one_batch(job, p.batch_size, result)
        except Exception as exc:
            # The batch rolled back: its rows stay PENDING for the next scan.
            result.errors += 1
            job.log.error("reminder_batch_failed", error=f"{type(exc).__name__}: {exc}")
            if result.scanned == 0:
                raise
            break
        if claimed < p.batch_size:
            break
    job.log.info("reminders_scanned", **asdict(result))
    return asdict(result)


async def _one_batch(job: Job, batch_size: int, result: ScanResult) -> int:
    async with job.res.db.acquire() as conn, conn.transaction():
        rows = await conn.fetch(_CLAIM_BATCH, batch_size)
        to_send = [r["id"] for r in rows if r["status"] == "QUEUED"]
        size = job.res.settings.reminder.batch_size
        batches = [to_send[i:i + size] for i in range(0, len(to_send), size)]
        if batches:
            await job.res.enqueuer.enqueue_many(
                [JobRequest.of(SendReminders(reminder_ids=ids), job_id=batch_job_id(ids)) for ids in batches])
    result.scanned += len(rows)
    result.queued += len(to_send)
    result.skipped += len(rows) - len(to_send)
    return len(rows)
