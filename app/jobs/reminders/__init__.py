"""Event reminders: the cron scan that queues due ones, and the send of one reminder."""

from __future__ import annotations

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
)

__all__ = ["SPECS", "ScanReminders", "SendReminder"]
