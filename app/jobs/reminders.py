"""Event reminders: the cron scan that queues due ones, and the send of one reminder."""

from __future__ import annotations

from pydantic import Field

from app.jobs._pending import not_built_yet
from app.payload import Payload
from app.registry import JobSpec

QUEUE = "scheduling-reminders"


class ScanReminders(Payload):
    batch_size: int = Field(500, ge=1, le=10_000)


class SendReminder(Payload):
    reminder_id: int


SPECS = (
    JobSpec(name="scan_reminders", queue=QUEUE, payload=ScanReminders, run=not_built_yet,
            description="queue every due PENDING reminder (cron every 5 min)"),
    JobSpec(name="send_reminder", queue=QUEUE, payload=SendReminder, run=not_built_yet,
            description="send one reminder by email (.ics) and SMS"),
)
