"""Google Calendar full/incremental sync into scheduling events (sync arrives later)."""

from __future__ import annotations

from app.jobs._pending import not_built_yet
from app.queue.payload import Payload
from app.queue.registry import JobSpec


class SyncCalendar(Payload):
    connection_id: str
    org_id: str | None = None
    full_sync: bool = False


SPEC = JobSpec(name="sync_calendar", queue="calendar-sync", payload=SyncCalendar, run=not_built_yet,
               description="sync one calendar connection (incremental unless fullSync)")
