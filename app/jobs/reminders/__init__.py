"""Event reminders: the cron scan that queues due ones in batches, the send of a batch, and the
send of one reminder (as the web app enqueues it)."""

from __future__ import annotations

from app.jobs.reminders.batch import SendReminders, record_batch_failure, send_reminders
from app.jobs.reminders.scan import ScanReminders, scan_reminders
from app.jobs.reminders.send import SendReminder, record_failure, send_reminder
from app.queue.registry import JobSpec

QUEUE = "scheduling-reminders"

SPECS = (
    JobSpec(name="scan_reminders", queue=QUEUE, payload=ScanReminders, run=scan_reminders,
            description="queue every due PENDING reminder (cron every 5 min)"),
    JobSpec(name="send_reminder", queue=QUEUE, aliases=("scheduling-reminders",),
            payload=SendReminder, run=send_reminder, on_dead_letter=record_failure,
            description="send one reminder by email (.ics) and SMS"),
    JobSpec(name="send_reminders", queue=QUEUE, payload=SendReminders, run=send_reminders,
            on_dead_letter=record_batch_failure,
            description="send a batch of due reminders side by side (queued by the scan)"),
)

__all__ = ["SPECS", "ScanReminders", "SendReminder", "SendReminders"]
