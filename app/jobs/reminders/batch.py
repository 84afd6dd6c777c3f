"""Send many due reminders in one job: the scan's batches.

One job per reminder on a queue of concurrency 5 sends at most five reminders at a time, each
waiting on its own SMTP round trips. A batch job sends its reminders side by side (at most
REMINDER_SEND_CONCURRENCY at once, over the SMTP connection pool), so the queue's concurrency
bounds jobs, not messages. Every message keeps its own idempotency key, so a retried batch
sends only what did not go out: reminders already SENT are skipped at once.

The batch's reminders are read in one query and those sent are marked SENT in one statement
once all have settled. Per reminder: nothing to send → SKIPPED; a permanent failure (every
address refused, say) → FAILED at once with its reason, the others unaffected. Any other
failure makes the batch fail after the others have settled, so the queue's policy retries it;
each failed reminder's error is noted on its row first, so a batch dead-lettered for good marks
its unsent reminders FAILED with their own reasons (the batch's error only for a reminder that
noted none, as when the batch failed before sending).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from pydantic import Field

from app.errors import CircuitOpen, JobSkipped, PermanentError
from app.jobs.reminders.send import MESSAGE_OUTCOMES, deliver, load, mark_failed, mark_sent, note_errors
from app.jobs.resources import Job
from app.queue.payload import Payload

MAX_BATCH = 500


class SendReminders(Payload):
    reminder_ids: list[int] = Field(min_length=1, max_length=MAX_BATCH)


def batch_job_id(reminder_ids: list[int]) -> str:
    """Stable for a set of reminders (a repeated enqueue of the same batch is harmless)."""
    ids = sorted(reminder_ids)
    return f"reminders:{ids[0]}" if len(ids) == 1 else f"reminders:{ids[0]}-{ids[-1]}:{len(ids)}"


async def send_reminders(job: Job, p: SendReminders) -> dict[str, Any]:
    slots = asyncio.Semaphore(job.res.settings.reminder.send_concurrency)
    rows = await load(job, p.reminder_ids)

    async def one(reminder_id: int) -> dict[str, Any]:
        async with slots:
            try:
                return await deliver(job, reminder_id, rows.get(reminder_id))
            except JobSkipped:
                return {"status": "skipped"}
            except PermanentError as exc:
                job.log.warning("reminder_failed", reminder_id=reminder_id, error=str(exc))
                await mark_failed(job, [reminder_id], exc)
                return {"status": "failed"}

    outcomes = await asyncio.gather(*(one(r) for r in p.reminder_ids), return_exceptions=True)
    sent = [r for r, o in zip(p.reminder_ids, outcomes, strict=True) if isinstance(o, dict) and o["status"] == "sent"]
    if sent:
        await mark_sent(job, sent)
    failures = {r: o for r, o in zip(p.reminder_ids, outcomes, strict=True) if isinstance(o, BaseException)}
    if failures:
        await note_errors(job, failures)
        # An open breaker defers the batch without using an attempt; anything else retries it.
        errors = list(failures.values())
        raise next((f for f in errors if isinstance(f, CircuitOpen)), errors[0])
    done = [o for o in outcomes if isinstance(o, dict)]
    messages: Counter[str] = Counter()
    for d in done:
        messages.update({k: int(d.get(k, 0)) for k in MESSAGE_OUTCOMES})
    return {"reminders": dict(Counter(str(d["status"]) for d in done)), "messages": dict(messages)}


async def record_batch_failure(job: Job, p: SendReminders, exc: BaseException) -> None:
    """Dead-lettered for good: the reminders of the batch that were not sent are FAILED, each
    with the error it noted, else the batch's."""
    await mark_failed(job, p.reminder_ids, exc, keep_own=True)
